"""MHS-VM (Ji, arXiv:2406.05992): Multi-Head Scanning in parallel subspaces for Vision Mamba.

The released model is a VM-UNet (U-shaped encoder-decoder of MHS blocks) for binary skin-lesion
segmentation (ISIC 2017 / 2018), trained from scratch. This module provides:

* :class:`MHSVMUNet`, the full segmentation network (a plain ``nn.Module``; logits out): 17.26 M
  parameters with 4 heads (``mhs_vm_unet_4h``), 17.39 M with 3 heads (``mhs_vm_unet_3h``);
  build with :func:`create_mhs_vm_unet`.
* its encoder, registered with timm as a backbone (``mhs_vm_encoder_4h``, ``mhs_vm_encoder_3h``):
  classifier head on pooled encoder features, ``features_only`` / ``forward_intermediates`` over
  the four encoder stages (reductions 4, 8, 16, 32), so it plugs into ``zoo.mm`` and mmseg.
* :func:`checkpoint_filter_fn`, which maps the official ``best_4h.pth`` / ``best_3h.pth`` (raw
  state dict of the official ``VMUNet`` wrapper) onto either model: it strips the ``vmunet.``
  prefix and drops the aliased duplicate keys (``mhs.x_ssproj_W`` = ``mhs.x_ssproj.weight``;
  ``scanhead_*.scanning.seq2seq_engine.*`` = ``scanhead_*.mambaeng.*``), after checking that
  each alias holds the same values.

Differences from the official code (which needs mamba_ssm's CUDA kernel and a precomputed route
file for 256x256 inputs): the selective scan is ``zoo.layers.selective_scan`` (pure PyTorch, any
device), the scan routes are generated for any grid and kept as non-persistent buffers, so any
input whose sides divide by 32 works (the official routes give identical results at 256x256).

Choices the paper and code leave open, made here:

* ``gfu_t`` (the Scan Route Attention threshold ``t``) defaults to 0.5, the released ISIC 2018
  training value; the ISIC 2017 config trains with 0.0, and the official ``test.py`` overrides it
  to 0.4 for the published test numbers (set ``gfu_t=0.4`` / :meth:`MHSVMUNet.set_gfu_t` to match).
* :class:`MHSVMUNet` returns logits; the official wrapper applies a sigmoid for one class. Our
  loss (``zoo.lesion_seg.BceDiceLoss``) takes logits and applies the sigmoid itself.
* The timm encoder adds a ``NormMlpClassifierHead`` (pool, LayerNorm, Linear) for classification:
  the official model has no classifier, so ``head.*`` stays at its initialisation when loading an
  official checkpoint; the encoder keys load exactly.
* Encoder features (``features_only``) are the outputs of each stage's blocks, before the patch
  merging; the U-Net's skips are, as in the official code, the inputs of each encoder stage.
* Pretrained cfg normalisation: the official pipeline min-max scales every image to [0, 255] (its
  per-dataset mean/std cancel out in that scaling), so the cfg uses ``mean=0, std=1/255`` on [0, 1]
  inputs; ``zoo.lesion_seg.ISICSegDataset`` reproduces the per-image min-max scaling.
* Scan Route Attention takes the square root of the unbiased variance with a zero gradient where
  all K routes agree exactly (``torch.std`` returns a NaN gradient there and training diverges).
* All heads of an MHS module run through one selective-scan call (their K-direction groups are
  stacked); the result equals one call per head (tested).
* Training recipe (``configs/segmentation/mhs_vm``): the official schedule, except that the best
  checkpoint is chosen by validation DSC (the official code keeps the lowest "val" loss) and masks
  are resized with nearest-neighbour interpolation (the official code resizes them bilinearly).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from timm.layers import (
    DropPath,
    LayerNorm2d,
    NormMlpClassifierHead,
    calculate_drop_path_rates,
    register_notrace_function,
)
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from zoo.hub import build_model_with_weights, unwrap_state_dict, zoo_default_cfgs
from zoo.layers.multi_head_scan import MultiHeadScan
from zoo.layers.weight_init import init_linear_layernorm

__all__ = [
    'MHSVMEncoder',
    'MHSVMUNet',
    'create_mhs_vm_unet',
    'load_official_checkpoint',
    'checkpoint_filter_fn',
    'PAPER_FACTS',
    'UNET_FACTS',
    'UNET_CONFIGS',
]

ORIGIN_URL = 'https://github.com/PixDeep/MHS-VM'
OFFICIAL_WEIGHTS = 'https://github.com/PixDeep/MHS-VM/raw/main/pretrained/best_{}.pth'

# MHS-VM (arXiv 2406.05992), official repo PixDeep/MHS-VM. params_m: unique parameters of the whole
# VM-UNet, 1 class, counted by instantiating the official definition (models/vmunet/vmunet.py with the
# depths of configs/config_setting.py); mIoU / DSC: the repo README (trained on ISIC 2018; test.py --h 4,
# whose hard-coded gfu_t = 0.4 applies, on VM-UNet's ISIC 2018 / 2017 test splits); weights: the repo's
# pretrained/best_{3h,4h}.pth.
UNET_FACTS: dict[str, dict] = {
    'mhs_vm_unet_4h': dict(
        params_m=17.26,
        miou_isic18=0.8085,
        dsc_isic18=0.8941,
        miou_isic17=0.8202,
        dsc_isic17=0.9012,
    ),
    'mhs_vm_unet_3h': dict(params_m=17.39),
}
# The official repo gives no numbers for the encoders alone (no parameter count, no classification
# result; its README reports the whole VM-UNet's segmentation only, and the paper's tables were not
# checked), so the timm entries carry only their weights' source; the VM-UNet counts are tested in
# tests/test_mhs_vm.py.
PAPER_FACTS: dict[str, dict] = {
    'mhs_vm_encoder_4h': dict(task='segmentation (ISIC 2018)'),
    'mhs_vm_encoder_3h': dict(task='segmentation (ISIC 2018)'),
}

# Released configuration (configs/config_setting.py of the official repo).
UNET_CONFIGS: dict[str, dict] = {
    'mhs_vm_unet_4h': dict(head_num=4, depths=(2, 2, 2, 2), depths_decoder=(2, 2, 2, 1)),
    'mhs_vm_unet_3h': dict(head_num=3, depths=(2, 2, 2, 2), depths_decoder=(2, 2, 2, 1)),
}


@register_notrace_function  # FX: a shape check on the traced input
@torch.fx.wrap
def check_input(x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    if x.ndim != 4 or x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise ValueError(
            f'x: MHS-VM needs (B, C, H, W) input with H and W divisible by {multiple}, got shape {tuple(x.shape)}'
        )
    return x


class PatchEmbed(nn.Module):
    """4x4 patchify conv + LayerNorm: (B, C, H, W) -> (B, H/4, W/4, D)."""

    def __init__(
        self,
        in_chans: int = 3,
        embed_dim: int = 96,
        patch_size: int = 4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, **dd)
        self.norm = nn.LayerNorm(embed_dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """2x2 space-to-channel, LayerNorm(4C), Linear(4C -> 2C): (B, H, W, C) -> (B, H/2, W/2, 2C)."""

    def __init__(self, dim: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False, **dd)
        self.norm = nn.LayerNorm(4 * dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channel order (row, col) offsets (0,0), (1,0), (0,1), (1,1), as in the official weights
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


def _pixel_unshuffle_last(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, H, W, s*s*c) -> (B, H*s, W*s, c), channels ordered (row offset, col offset, c)."""
    b, h, w, ch = x.shape
    c = ch // (scale * scale)
    x = x.view(b, h, w, scale, scale, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * scale, w * scale, c)


class PatchExpand(nn.Module):
    """Linear(2d -> 4d) then 2x2 channel-to-space and LayerNorm(d): (B, H, W, 2d) -> (B, 2H, 2W, d)."""

    def __init__(self, dim: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.expand = nn.Linear(2 * dim, 4 * dim, bias=False, **dd)
        self.norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_pixel_unshuffle_last(self.expand(x), 2))


class FinalPatchExpand(nn.Module):
    """Linear(d -> 4d) then 4x4 channel-to-space and LayerNorm(d/4): (B, H, W, d) -> (B, 4H, 4W, d/4)."""

    def __init__(
        self, dim: int, scale: int = 4, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.scale = scale
        self.expand = nn.Linear(dim, scale * dim, bias=False, **dd)
        self.norm = nn.LayerNorm(dim // scale, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_pixel_unshuffle_last(self.expand(x), self.scale))


class MHSGate(nn.Module):
    """The official ``VSSGate``: in_proj -> (x, z); x -> dwconv3x3 + SiLU -> MHS -> LN; out = . * SiLU(z).

    Expansion 1 (inner width = model width). (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        head_num: int = 4,
        gfu_t: float = 0.5,
        with_proj: bool = True,
        grid_size: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.in_proj = nn.Linear(dim, 2 * dim, bias=False, **dd)
        self.conv2d = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, bias=True, **dd)
        self.act = nn.SiLU()
        self.mhs = MultiHeadScan(dim, d_state, head_num, gfu_t, with_proj, grid_size, **dd)
        self.out_norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = self.act(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self.out_norm(self.mhs(x))
        return y * nn.functional.silu(z)


class MHSBlock(nn.Module):
    """x + DropPath(MHSGate(LN(x))) (no MLP, as the official ``VSSBlock``). (B, H, W, C) in and out."""

    def __init__(
        self,
        dim: int,
        drop_path: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **gate_kwargs,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, **dd)
        self.self_attention = MHSGate(dim, **gate_kwargs, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.self_attention(self.ln_1(x)))


class MHSStage(nn.Module):
    """Encoder stage (official ``VSSLayer``): blocks, then an optional PatchMerging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        drop_path: Sequence[float],
        downsample: bool,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **gate_kwargs,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.grad_checkpointing = False
        self.blocks = nn.ModuleList([MHSBlock(dim, drop_path[i], **gate_kwargs, **dd) for i in range(depth)])
        self.downsample = PatchMerging(dim, **dd) if downsample else None

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = checkpoint(blk, x) if self.grad_checkpointing and torch.is_grad_enabled() else blk(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_blocks(x)
        return self.downsample(x) if self.downsample is not None else x


class MHSStageUp(nn.Module):
    """Decoder stage (official ``VSSLayer_up``): an optional PatchExpand, then blocks."""

    def __init__(
        self,
        dim: int,
        depth: int,
        drop_path: Sequence[float],
        upsample: bool,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **gate_kwargs,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.grad_checkpointing = False
        self.upsample = PatchExpand(dim, **dd) if upsample else None
        self.blocks = nn.ModuleList([MHSBlock(dim, drop_path[i], **gate_kwargs, **dd) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for blk in self.blocks:
            x = checkpoint(blk, x) if self.grad_checkpointing and torch.is_grad_enabled() else blk(x)
        return x


def _build_encoder(
    module: nn.Module,
    in_chans: int,
    dims: Sequence[int],
    depths: Sequence[int],
    d_state: int,
    head_num: int,
    gfu_t: float,
    with_proj: bool,
    drop_path_rate: float,
    img_size: int | tuple[int, int],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Adds ``patch_embed`` and ``layers`` (official names) to ``module``."""
    dd = {'device': device, 'dtype': dtype}
    hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    module.patch_embed = PatchEmbed(in_chans, dims[0], **dd)
    dpr = calculate_drop_path_rates(drop_path_rate, sum(depths))
    module.layers = nn.ModuleList()
    for i, (dim, depth) in enumerate(zip(dims, depths)):
        grid = (hw[0] // (4 * 2**i), hw[1] // (4 * 2**i))
        module.layers.append(
            MHSStage(
                dim,
                depth,
                dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                downsample=i < len(depths) - 1,
                d_state=d_state,
                head_num=head_num,
                gfu_t=gfu_t,
                with_proj=with_proj,
                grid_size=grid,
                **dd,
            )
        )


def _multi_head_scans(module: nn.Module) -> list[MultiHeadScan]:
    return [m for m in module.modules() if isinstance(m, MultiHeadScan)]


class MHSVMEncoder(nn.Module):
    """The MHS-VM (VM-UNet) encoder as a timm backbone: patch embed + 4 MHS stages + classifier head.

    Args:
        in_chans: input channels.
        num_classes: classifier classes (0: no classifier, the forward returns pooled features).
        dims: stage widths.
        depths: blocks per stage (released: 2, 2, 2, 2).
        d_state: SSM state size N.
        head_num: scan heads per MHS module (3: C, X, S; 4: C, X, S, Z).
        gfu_t: Scan Route Attention threshold t.
        with_proj: LayerNorm + projection after concatenating the heads.
        drop_path_rate: stochastic depth, linear over the blocks.
        global_pool: classifier pooling ('avg', 'max', ...).
        drop_rate: dropout before the classifier.
        img_size: the grid the scan-route buffers are built for (others are made on first use).
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        dims: Sequence[int] = (96, 192, 384, 768),
        depths: Sequence[int] = (2, 2, 2, 2),
        d_state: int = 16,
        head_num: int = 4,
        gfu_t: float = 0.5,
        with_proj: bool = True,
        drop_path_rate: float = 0.2,
        global_pool: str = 'avg',
        drop_rate: float = 0.0,
        img_size: int | tuple[int, int] = 256,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = dims[-1]
        self.grad_checkpointing = False
        _build_encoder(
            self, in_chans, dims, depths, d_state, head_num, gfu_t, with_proj, drop_path_rate, img_size, **dd
        )
        # each feature is a stage's last block (the stage's map before its patch merging), so that module hooks
        # and FX graphs find it under that name
        self.feature_info = [
            dict(num_chs=d, reduction=4 * 2**i, module=f'layers.{i}.blocks.{n - 1}')
            for i, (d, n) in enumerate(zip(dims, depths))
        ]
        self.head = NormMlpClassifierHead(
            dims[-1], num_classes, pool_type=global_pool, drop_rate=drop_rate, norm_layer=LayerNorm2d, **dd
        )
        self.apply(init_linear_layernorm)  # the official VSSM init

    def set_gfu_t(self, t: float) -> None:
        """Sets the Scan Route Attention threshold of every MHS module."""
        for m in _multi_head_scans(self):
            m.set_gfu_t(t)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        # layers.{i}.downsample runs after the blocks of layer i and makes the input of layer i + 1
        # (feature i is taken before it), so it groups with layer i + 1.
        downsamples = [
            (rf'^layers\.{i}\.downsample', (i + 1,) if coarse else (i + 1, -1)) for i in range(len(self.layers))
        ]
        return dict(
            stem=r'^patch_embed',
            blocks=downsamples
            + (
                [(r'^layers\.(\d+)', None)]
                if coarse
                else [
                    (r'^layers\.(\d+)\.blocks\.(\d+)', None),
                ]
            ),
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for s in self.layers:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        # SSM log-decays and skips (ndim <= 1 parameters are skipped by timm anyway).
        return {n for n, _ in self.named_parameters() if n.endswith(('A_logs', 'Ds'))}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head.reset(num_classes, pool_type=global_pool)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (before each patch merging) as (B, C_i, H/r_i, W/r_i), and the final features."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt: expected 'NCHW' or 'NHWC', got {output_fmt!r}")
        x = check_input(x)
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        intermediates = []
        x = self.patch_embed(x)
        stages = self.layers if torch.jit.is_scripting() or not stop_early else self.layers[: max_index + 1]
        for i, stage in enumerate(stages):
            x = stage.forward_blocks(x)
            if i in take_indices:
                intermediates.append(x if output_fmt == 'NHWC' else x.permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x)
        if intermediates_only:
            return intermediates
        return x.permute(0, 3, 1, 2), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drops the stages after the last requested one (and the head); returns the kept indices."""
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        self.layers[-1].downsample = None
        self.feature_info = self.feature_info[: max_index + 1]
        if prune_head:
            self.reset_classifier(0, '')
            self.head.norm = nn.Identity()
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C_4, H/32, W/32)."""
        x = check_input(x)
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return x.permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class MHSVMUNet(nn.Module):
    """MHS-VM segmentation network (the official ``VSSM`` of ``models/vmunet/vmamba.py``).

    Encoder: patch embed (/4), 4 stages of MHS blocks with patch merging; decoder: 4 stages with
    patch expanding, fed with the additive skips (the input of each encoder stage), then a 4x
    expansion and a 1x1 conv. Parameter and module names match the official ones (minus the
    ``vmunet.`` wrapper prefix), so official weights load through :func:`checkpoint_filter_fn`.

    Args:
        in_chans: input channels (a 1-channel input is repeated to 3 when ``in_chans == 3``, as the
            official wrapper does).
        num_classes: output channels (1 for binary segmentation).
        dims, depths, depths_decoder: widths and blocks; the decoder widths are ``dims`` reversed.
        d_state, head_num, gfu_t, with_proj: MHS module settings (see :class:`MHSVMEncoder`).
        drop_path_rate: stochastic depth, linear over the encoder and reversed over the decoder.
        img_size: grid for the pre-built route buffers; any size divisible by 32 runs.

    Forward: (B, in_chans, H, W) -> logits (B, num_classes, H, W); H, W divisible by 32.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1,
        dims: Sequence[int] = (96, 192, 384, 768),
        depths: Sequence[int] = (2, 2, 2, 2),
        depths_decoder: Sequence[int] = (2, 2, 2, 1),
        d_state: int = 16,
        head_num: int = 4,
        gfu_t: float = 0.5,
        with_proj: bool = True,
        drop_path_rate: float = 0.2,
        img_size: int | tuple[int, int] = 256,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if len(depths_decoder) != len(depths):
            raise ValueError(f'depths_decoder: needs {len(depths)} entries like depths, got {depths_decoder}')
        self.in_chans = in_chans
        self.num_classes = num_classes
        hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        _build_encoder(self, in_chans, dims, depths, d_state, head_num, gfu_t, with_proj, drop_path_rate, hw, **dd)
        dims_dec = list(dims)[::-1]
        n = len(dims)
        dpr = calculate_drop_path_rates(drop_path_rate, sum(depths_decoder))[::-1]
        self.layers_up = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(dims_dec, depths_decoder)):
            level = n - 1 - i  # decoder stage i runs on the grid of encoder stage n-1-i
            grid = (hw[0] // (4 * 2**level), hw[1] // (4 * 2**level))
            self.layers_up.append(
                MHSStageUp(
                    dim,
                    depth,
                    dpr[sum(depths_decoder[:i]) : sum(depths_decoder[: i + 1])],
                    upsample=i > 0,
                    d_state=d_state,
                    head_num=head_num,
                    gfu_t=gfu_t,
                    with_proj=with_proj,
                    grid_size=grid,
                    **dd,
                )
            )
        self.final_up = FinalPatchExpand(dims_dec[-1], 4, **dd)
        self.final_conv = nn.Conv2d(dims_dec[-1] // 4, num_classes, 1, **dd)
        self.apply(init_linear_layernorm)  # the official VSSM init

    def set_gfu_t(self, t: float) -> None:
        """Sets the Scan Route Attention threshold of every MHS module (official test.py uses 0.4)."""
        for m in _multi_head_scans(self):
            m.set_gfu_t(t)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for s in list(self.layers) + list(self.layers_up):
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith(('A_logs', 'Ds'))}

    def forward_encoder(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, C, H, W) -> bottleneck (B, H/32, W/32, C_4) and the skips (inputs of each stage, NHWC)."""
        x = check_input(x)
        if x.shape[1] == 1 and self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        x = self.patch_embed(x)
        skips = []
        for stage in self.layers:
            skips.append(x)
            x = stage(x)
        return x, skips

    def forward_decoder(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Bottleneck + skips -> logits (B, num_classes, H, W)."""
        for i, stage in enumerate(self.layers_up):
            x = stage(x if i == 0 else x + skips[-i])
        x = self.final_up(x).permute(0, 3, 1, 2)
        return self.final_conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_decoder(*self.forward_encoder(x))


def _is_alias(key: str) -> bool:
    return key.endswith('.x_ssproj_W') or '.scanning.seq2seq_engine.' in key


def _alias_target(key: str) -> str:
    if key.endswith('.x_ssproj_W'):
        return key[: -len('x_ssproj_W')] + 'x_ssproj.weight'
    return key.replace('.scanning.seq2seq_engine.', '.mambaeng.')


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict[str, torch.Tensor]:
    """Maps an official MHS-VM checkpoint (``best_4h.pth`` / ``best_3h.pth``) onto ``model``.

    Accepts the raw official state dict (keys ``vmunet.*``) or one wrapped in ``model`` /
    ``state_dict`` / ``state_dict_ema``; zoo-layout dicts pass through. Aliased duplicates are
    checked against their targets and dropped. For an :class:`MHSVMEncoder` the decoder keys are
    dropped and the classifier head (absent from the official weights) is taken from ``model``.
    """
    state_dict = unwrap_state_dict(state_dict)
    sd = {(k[len('vmunet.') :] if k.startswith('vmunet.') else k): v for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if _is_alias(k):
            target = _alias_target(k)
            if target in sd and not torch.equal(sd[target], v):
                raise ValueError(f'state_dict: alias {k} differs from {target}; inconsistent checkpoint')
            if target not in sd:
                out[target] = v
            continue
        out[k] = v
    if isinstance(model, MHSVMEncoder):
        own = model.state_dict()
        decoder = ('layers_up.', 'final_up.', 'final_conv.')
        out = {k: v for k, v in out.items() if k in own or not k.startswith(decoder)}
        for k, v in own.items():
            if k.startswith('head.') and k not in out:
                out[k] = v  # the official model has no classifier
        n_stages = len(model.layers)
        out = {k: v for k, v in out.items() if not (k.startswith('layers.') and int(k.split('.')[1]) >= n_stages)}
        if model.layers[-1].downsample is None:
            last = f'layers.{n_stages - 1}.downsample.'
            out = {k: v for k, v in out.items() if not k.startswith(last)}
    return out


def load_official_checkpoint(model: nn.Module, path: str, strict: bool = True):
    """Loads an official (or zoo) checkpoint file into ``model`` (``weights_only`` torch.load)."""
    state = torch.load(path, map_location='cpu', weights_only=True)
    return model.load_state_dict(checkpoint_filter_fn(state, model), strict=strict)


def create_mhs_vm_unet(name: str = 'mhs_vm_unet_4h', checkpoint_path: str | None = None, **kwargs) -> MHSVMUNet:
    """Builds the released VM-UNet (``mhs_vm_unet_4h`` / ``mhs_vm_unet_3h``), optionally loading a
    checkpoint (official layout or ours). ``kwargs`` override :class:`MHSVMUNet` arguments."""
    if name not in UNET_CONFIGS:
        raise ValueError(f'name: expected one of {sorted(UNET_CONFIGS)}, got {name!r}')
    model = MHSVMUNet(**{**UNET_CONFIGS[name], **kwargs})
    if checkpoint_path is not None:
        load_official_checkpoint(model, checkpoint_path)
    return model


def _cfg(url: str = '', **kwargs) -> dict:
    return {
        'url': url,
        'num_classes': 0,
        'input_size': (3, 256, 256),
        'pool_size': (8, 8),
        'crop_pct': 1.0,
        'interpolation': 'bilinear',
        'mean': (0.0, 0.0, 0.0),
        'std': (1 / 255, 1 / 255, 1 / 255),
        'first_conv': 'patch_embed.proj',
        'classifier': 'head.fc',
        'license': 'apache-2.0',
        'paper_ids': 'arXiv:2406.05992',
        'paper_name': 'MHS-VM: Multi-Head Scanning in Parallel Subspaces for Vision Mamba',
        'origin_url': ORIGIN_URL,
        **kwargs,
    }


default_cfgs = zoo_default_cfgs(
    {
        'mhs_vm_encoder_4h.isic2018': _cfg(url=OFFICIAL_WEIGHTS.format('4h')),
        'mhs_vm_encoder_3h.isic2018': _cfg(url=OFFICIAL_WEIGHTS.format('3h')),
    },
    paper=PAPER_FACTS,
)


def _create_encoder(variant: str, pretrained: bool = False, **kwargs) -> MHSVMEncoder:
    return build_model_with_weights(
        MHSVMEncoder,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'),
        **kwargs,
    )


@register_model
def mhs_vm_encoder_4h(pretrained: bool = False, **kwargs) -> MHSVMEncoder:
    """Encoder of the released 4-head MHS-VM (patterns C, X, S, Z; depths 2-2-2-2)."""
    return _create_encoder('mhs_vm_encoder_4h', pretrained, **dict(dict(head_num=4), **kwargs))


@register_model
def mhs_vm_encoder_3h(pretrained: bool = False, **kwargs) -> MHSVMEncoder:
    """Encoder of the 3-head MHS-VM (patterns C, X, S; depths 2-2-2-2)."""
    return _create_encoder('mhs_vm_encoder_3h', pretrained, **dict(dict(head_num=3), **kwargs))
