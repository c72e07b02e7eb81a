"""MEDUSA's encoder-decoder self-attention: one U-Net "body" whose single sigmoid map gates several scales of a
main network through small "heads" (Aboutalebi et al., arXiv 2110.06063).

Facts (layer widths, one output channel, 7x7 heads, the fusion ``x + x * A``) come from the authors' Keras
development code, ``github.com/lindawangg/COVID-Net`` branch ``tf_dataset@a5d43a7``: ``model/build_model.py``
(``build_UNet2D_4L``) and ``model/resnet1.py`` (``set_attention`` / ``apply_attention``). The code here is our
own; choices the sources leave open are marked in the docstrings and listed in ``docs/medusa.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function, trunc_normal_
from torch import nn

__all__ = ['GRAY_WEIGHTS', 'GateHead', 'UNetBody', 'body_view', 'gate_fuse']

# ITU-R BT.601 luma weights: what OpenCV's ``cvtColor(BGR2GRAY)`` / ``imread(..., 0)`` use in the reference code.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def body_view(
    x: torch.Tensor,
    size: int | tuple[int, int],
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    eps: float = 1e-6,
) -> torch.Tensor:
    """The body's input derived from the main input: grayscale, resize, per-image z-score.

    Args:
        x: ``(B, 3, H, W)`` main-network input, normalised as ``(raw - mean) / std`` per channel (or
            ``(B, 1, H, W)``, taken as grayscale).
        size: body input size (256 in the reference).
        mean, std: the normalisation of ``x``; undone first, so the gray value is the luma of the raw image.
        eps: added to the standard deviation (a constant image gives zeros, not NaN).

    Returns:
        ``(B, 1, size, size)``, zero mean and unit (population) standard deviation per image.

    Resizing is bilinear with half-pixel centres and no antialiasing (``align_corners=False``), the
    convention of OpenCV's ``INTER_LINEAR`` that the reference's ``cv2.resize`` uses **[inferred: the
    reference resizes the uint8 image before the z-score; here the z-score follows the resize, which is
    the same up to the rounding to uint8]**.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f'body_view: expected a (B, 3, H, W) or (B, 1, H, W) tensor, got {tuple(x.shape)}')
    if x.shape[1] == 3:
        m = x.new_tensor(mean).view(1, 3, 1, 1)
        s = x.new_tensor(std).view(1, 3, 1, 1)
        w = x.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
        x = ((x * s + m) * w).sum(1, keepdim=True)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
    mu = x.mean(dim=(2, 3), keepdim=True)
    sd = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mu) / (sd + eps)


def _conv_relu(cin: int, cout: int, **dd: Any) -> nn.Sequential:
    # Keras Conv2D(3x3, 'same', relu), bias on
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, **dd), nn.ReLU(inplace=True))


@register_notrace_function  # FX: a size check on the traced input
@torch.fx.wrap
def check_body_input(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-1] % 16 or x.shape[-2] % 16:
        raise ValueError(f'UNetBody: input sides must be multiples of 16, got {tuple(x.shape[-2:])}')
    return x


@register_notrace_function  # FX: compares the traced sizes
@torch.fx.wrap
def resize_map(attn: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, C, *size)``, bilinear (``align_corners=False``); ``attn`` itself when the size
    is unchanged."""
    size = tuple(int(s) for s in size)
    if tuple(attn.shape[-2:]) == size:
        return attn
    return F.interpolate(attn, size=size, mode='bilinear', align_corners=False)


class UNetBody(nn.Module):
    """The 4-level U-Net body (``build_UNet2D_4L``): 3x3 'same' convs with bias and ReLU, no normalisation.

    Encoder: two convs per level (widths ``dims[0..3]``), max-pool 2 after each, one bottleneck conv
    (``dims[4]``). Decoder level ``i`` (deepest first): nearest 2x upsampling, two convs of
    ``decoder_dims[i]``, concatenation ``[encoder level, upsampled]`` (channel order of the Keras code), one conv
    of ``decoder_dims[i]``. A 3x3 conv to
    one channel and a sigmoid give the attention map.

    With the defaults (32, 64, 64, 128 | 256 and 256, 256, 128, 64) it has 5,468,897 parameters, the count of
    the authors' Keras definition.

    Input ``(B, in_chans, H, W)`` with ``H`` and ``W`` divisible by 16; output ``(B, 1, H, W)`` in ``(0, 1)``.
    """

    def __init__(
        self,
        in_chans: int = 1,
        dims: Sequence[int] = (32, 64, 64, 128, 256),
        decoder_dims: Sequence[int] = (256, 256, 128, 64),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if len(dims) != 5 or len(decoder_dims) != 4:
            raise ValueError(f'UNetBody: dims needs 5 widths and decoder_dims 4, got {dims} and {decoder_dims}')
        self.dims = tuple(int(d) for d in dims)
        self.decoder_dims = tuple(int(d) for d in decoder_dims)
        enc, cin = [], in_chans
        for d in self.dims[:4]:
            enc.append(nn.Sequential(_conv_relu(cin, d, **dd), _conv_relu(d, d, **dd)))
            cin = d
        self.encoder = nn.ModuleList(enc)
        self.bottleneck = _conv_relu(cin, self.dims[4], **dd)
        cin = self.dims[4]
        up, fuse = [], []
        for d, skip in zip(self.decoder_dims, reversed(self.dims[:4])):
            up.append(nn.Sequential(_conv_relu(cin, d, **dd), _conv_relu(d, d, **dd)))
            fuse.append(_conv_relu(d + skip, d, **dd))
            cin = d
        self.decoder = nn.ModuleList(up)
        self.fuse = nn.ModuleList(fuse)
        self.out = nn.Conv2d(cin, 1, 3, padding=1, **dd)

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this."""
        return 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> sigmoid map ``(B, 1, H, W)``."""
        x = check_body_input(x)
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, fuse, skip in zip(self.decoder, self.fuse, reversed(skips)):
            x = up(F.interpolate(x, scale_factor=2.0, mode='nearest'))
            x = fuse(torch.cat([skip, x], dim=1))  # skip first, as the Keras concatenate: converted weights line up
        return torch.sigmoid(self.out(x))


class GateHead(nn.Module):
    """One multi-scale head: the body map resized to a feature map's size, then a 7x7 conv to its channels.

    No activation and no normalisation follow the conv (``resnet1.py``: ``Conv2D(C, 7, 'same',
    he_normal)``), so the gate ``A`` is unbounded. Resizing is bilinear with half-pixel centres (TF2
    ``tf.image.resize``'s default; ``align_corners=False`` here). Weights: He-normal (truncated, fan-in, as
    Keras' ``he_normal``), zero bias.

    ``forward(attn, size)``: ``(B, 1, h, w)`` body map -> ``(B, channels, *size)`` gate.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        in_chans: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.conv = nn.Conv2d(in_chans, channels, kernel_size, padding=kernel_size // 2, **dd)
        fan_in = in_chans * kernel_size * kernel_size
        std = (2.0 / fan_in) ** 0.5
        trunc_normal_(self.conv.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.conv.bias)

    def forward(self, attn: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.conv(resize_map(attn, size))


def gate_fuse(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """MEDUSA's residual multiplicative fusion ``x + x * A`` (``apply_attention`` in ``resnet1.py``)."""
    return x + x * gate
