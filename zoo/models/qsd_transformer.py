"""QSD-Transformer (Qiu et al., ICLR 2025, arXiv:2501.13492) and Meta-SpikeFormer / Spike-driven
Transformer v2 (Yao et al., ICLR 2024, arXiv:2404.03663), pure PyTorch (no CuPy, no spikingjelly).

Both share the Meta-SpikeFormer macro design (``Spiking_vit_MetaFormer`` in ``classification/models.py``
of the official repos bollossom/QSD-Transformer and BICLab/Spike-Driven-Transformer-V2):
two conv stages (stride 4 and 8) of ``MS_ConvBlock`` (SepConv + 3x3 conv MLP), then
``int(0.75 * depth)`` and ``int(0.25 * depth)`` spike-driven attention blocks at stride 16 (the last
downsampling has stride 1), global average pooling, a spiking neuron and a linear head averaged
over ``T``.

* **QSD-Transformer** (``qsd_transformer_{15,31,55}m``; the paper's 1.8M / 3.9M / 6.8M models, which are
  the 15M / 31M / 55M full-precision builders at 4 bits): every conv / linear is LSQ-quantised
  (``wbits=4``), neurons are integer multi-spike neurons (levels 0..4, ``MultiSpike``), attention
  ``q (k^T v) * 0.25`` with the attention neuron emitting {0, 0.5, ..., 2}, LayerScale 1e-6.
* **Meta-SpikeFormer** (``meta_spikeformer_{15,31,55}m``): full-precision weights, binary LIF neurons
  (tau 2, threshold 1, attention threshold 0.5, hard reset), scale 0.125, no LayerScale.

Shapes: ``forward(x)`` takes ``(B, 3, H, W)`` with ``H, W`` divisible by 16 and returns ``(B, classes)``
(logits averaged over ``T``). Internally the input is repeated ``T`` times and time is folded into the
batch (``(T * B, C, H, W)``); ``forward_features`` returns ``(T, B, C, H/16, W/16)``; intermediates
and ``features_only`` maps are averaged over ``T``: ``(B, C_i, H / r_i, W / r_i)`` with reductions
4, 8, 16, 16.

Spike-driven inference: ``model.set_spike_driven(True)`` makes every multi-spike neuron emit a count
``k`` as ``k`` binary spikes over ``D = 4`` virtual steps; each synaptic layer then integrates
{0, 1} planes (``zoo.layers.spiking.integrate``). The outputs equal integer mode (tested).

Checkpoints: parameter and buffer names are the official ones (``downsample1_1.encode_conv.alpha``,
``block3.0.attn.q_conv.0.body.1.bn.running_mean``, ...), so :func:`checkpoint_filter_fn` only unwraps
``model`` / ``state_dict`` / ``state_dict_ema``, strips ``module.`` and handles these cases:

* QSD's unused ``ActLSQ`` keys (``*.act.alpha``, ``*.act.zero_point``, ``*.act.init_state``,
  ``*.act.signed``): **kept** by default as persistent buffers (our LSQ layers carry the same unused
  placeholders, so the state dict is 1:1 with the official 1669 tensors); **dropped** when the model is
  built with ``act_placeholders=False``. Being buffers, they are not parameters: nothing uses them, so
  they could never be trained, and the parameter count is that of the real parameters (15.16M / 31.40M /
  55.44M: the official ``classification/models.py`` count of 15.25M / 31.53M / 55.61M less the
  placeholders' 0.09M / 0.12M / 0.17M).
* QSD weights into a full-precision model (``wbits=None``): each weight becomes its dequantised
  4-bit value ``round(clamp(w / alpha, -8, 7)) * alpha`` and ``alpha`` / ``init_state`` are dropped,
  so the FP model computes the same function.
* SDT v2 ``head_kd.*`` (the 55M KD checkpoint): when the model has no ``head_kd``, the two heads are
  averaged into ``head`` -- exactly the official evaluation output ``(head + head_kd) / 2``.
* A head whose class count differs from the model's is dropped (fine-tuning on other classes).

Verified against the official code (run in /tmp, not part of the zoo): the official QSD ``models.py``
(pure PyTorch) state dict loads strictly and gives bit-identical logits at T=1 and T=2 (eval), identical
train-mode logits, and gradients equal to within 3e-6 of the largest one; the official SDT v2 ``models.py``
with a pure-torch stand-in for spikingjelly's LIF gives identical logits at T=1 and T=4.

Choices the papers / code leave open (documented here and in ``docs/qsd_transformer.md``):

1. LSQ step init: the official rule ``2 * mean|w| / sqrt(Qp)`` computed over the whole tensor and
   copied to every output channel, on the first training batch (``init_state``); we also apply it at
   construction so an untrained model in eval mode is well defined.
2. ``ActLSQ`` is an identity in the released code; we keep its tensors as persistent buffers, only for
   checkpoint compatibility (as parameters they would never receive a gradient).
3. The LIF for Meta-SpikeFormer follows spikingjelly 0.0.0.0.12 ``MultiStepLIFNode`` (decay_input, hard
   reset to 0, detached reset, sigmoid surrogate alpha 4); the membrane starts at 0 in every forward.
4. ``drop_path_rate`` is accepted and applied to both residual branches (the official blocks build
   DropPath but never call it; the default 0 reproduces them).
5. Intermediate / dense features are the residual stream averaged over ``T`` (real-valued, like the
   membrane input of the next spiking layer).
6. ``T`` is a model argument (default 1, the official ImageNet default; T=4 fine-tuning is ``T=4``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    calculate_drop_path_rates,
    get_device_dtype,
    register_notrace_function,
    trunc_normal_,
)
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from zoo.hub import build_model_with_weights, unwrap_state_dict, zoo_default_cfgs
from zoo.layers.spiking import (
    LinearLSQ,
    MultiSpike,
    MultiStepLIF,
    RepConv,
    conv_factory,
    integrate,
    lsq_quantize,
    set_spike_driven,
    synapse,
)

__all__ = ['SpikeDrivenMetaFormer', 'checkpoint_filter_fn', 'PAPER_FACTS']

QSD_HF = 'https://huggingface.co/Xuerui123/QSD_Transformer'
SDT2_DRIVE = 'https://drive.google.com/drive/folders/12JcIRG8BF6JcgPsXIetSS14udtHXeSSx'

# params_m: counted by instantiating the official model definitions, classification/models.py of
# bollossom/QSD-Transformer (QSD counts include the LSQ steps but not the unused ActLSQ placeholders, which
# the official code declares as parameters -- 15.25M / 31.53M / 55.61M with them -- and the zoo keeps as
# buffers) and of
# BICLab/Spike-Driven-Transformer-V2 (31.3M / 55.35M; its paper's 15.1M size exists only as QSD's 15M
# builder, counted without LSQ steps). paper_size_m: the QSD paper's 1.8M / 3.9M / 6.8M (arXiv
# 2501.13492); which builder each one is, is inferred (full-precision params / 8, and the checkpoint names
# SD_Transformer_v2-L_6.8M_1x4_w4a1t4_80_3.pth / 15M_1x4_w4a1t4_74_5.pth that the third-party
# Tianshi-Xu/QSD-Transformer classification/train.sh loads). top1 (ImageNet-1k, 224): QSD 80.3 from the
# official README and the abstract; QSD 74.5 inferred from that 15M file name; QSD 3.9M: no source we
# could check states it; Meta-SpikeFormer 80.0 (T=4 + KD) is the headline of arXiv 2404.03663, 74.1 / 77.2
# are unverified against that paper. energy_mj: a secondary summary of the papers (the QSD README figure
# shows ~9 / ~52 mJ). weights: the SDT-v2 Google Drive folder linked in BICLab/Spike-Driven-Transformer-V2
# issue #5.
PAPER_FACTS: dict[str, dict] = {
    'qsd_transformer_15m': dict(
        params_m=15.16,
        paper_size_m=1.8,
        gmacs=None,
        top1=74.5,
        T=1,
        D=4,
        wbits=4,
        source='official models.py count; top-1 from checkpoint file name',
    ),
    'qsd_transformer_31m': dict(
        params_m=31.40,
        paper_size_m=3.9,
        gmacs=None,
        top1=None,
        T=1,
        D=4,
        wbits=4,
        source='official models.py count; 3.9M top-1 not stated',
    ),
    'qsd_transformer_55m': dict(
        params_m=55.44,
        paper_size_m=6.8,
        gmacs=None,
        top1=80.3,
        T=1,
        D=4,
        wbits=4,
        energy_mj=8.7,
        source='official models.py count; top-1 README, abstract',
    ),
    'meta_spikeformer_15m': dict(
        params_m=15.1,
        gmacs=None,
        top1=74.1,
        T=4,
        source='SDT-v2 models.py count; top-1 unverified (arXiv 2404.03663)',
    ),
    'meta_spikeformer_31m': dict(
        params_m=31.3,
        gmacs=None,
        top1=77.2,
        T=4,
        source='SDT-v2 models.py count; top-1 unverified (arXiv 2404.03663)',
    ),
    'meta_spikeformer_55m': dict(
        params_m=55.35,
        gmacs=None,
        top1=80.0,
        T=4,
        energy_mj=52.4,
        weights_page=SDT2_DRIVE,  # a Google Drive folder: downloaded by hand
        source='SDT-v2 models.py count; arXiv 2404.03663 (T=4 + KD)',
    ),
}


# ----------------------------------------------------------------------------------------------
# Blocks. Every tensor is (T * B, C, ...): time folded into the batch.
# ----------------------------------------------------------------------------------------------
@register_notrace_function  # FX: a shape check on the traced input
@torch.fx.wrap
def check_input(x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 4:
        raise ValueError(f'x must be (B, C, H, W), got shape {tuple(x.shape)}')
    if x.shape[-2] % 16 or x.shape[-1] % 16:
        raise ValueError(f'input height and width must be divisible by 16, got {tuple(x.shape[-2:])}')
    return x


class _Spec:
    """What distinguishes QSD from Meta-SpikeFormer: neurons, weight bits and attention constants."""

    def __init__(self, kind: str, T: int, wbits: int | None, levels: int, act_placeholders: bool) -> None:
        if kind not in ('multispike', 'lif'):
            raise ValueError(f"neuron must be 'multispike' or 'lif', got {kind!r}")
        self.kind, self.T, self.levels = kind, T, levels
        self.conv = conv_factory(wbits, act_placeholders, dim=2)
        self.conv1d = conv_factory(wbits, act_placeholders, dim=1)

    def neuron(self) -> nn.Module:
        return MultiSpike(self.levels) if self.kind == 'multispike' else MultiStepLIF(self.T)

    def attn_neuron(self) -> nn.Module:
        # QSD: counts 0..D shown as k / (D / 2); SDT v2: LIF with threshold 0.5.
        if self.kind == 'multispike':
            return MultiSpike(self.levels, norm=self.levels / 2)
        return MultiStepLIF(self.T, v_threshold=0.5)


class MS_DownSampling(nn.Module):
    """(spike ->) conv (with bias) -> BN. The first one takes the real-valued image (no spike)."""

    def __init__(
        self,
        spec: _Spec,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        padding: int,
        first_layer: bool,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.encode_conv = spec.conv(in_chs, out_chs, kernel_size, stride, padding, **dd)
        self.encode_bn = nn.BatchNorm2d(out_chs, **dd)
        self.encode_lif = None if first_layer else spec.neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encode_lif is None:
            return self.encode_bn(self.encode_conv(x))
        x = integrate(self.encode_lif, x, self.encode_conv)
        return self.encode_bn(x)


class SepConv(nn.Module):
    """Spike -> pw 1x1 (2x) -> BN -> spike -> dw 7x7 -> pw 1x1 -> BN (inverted separable conv)."""

    def __init__(
        self,
        spec: _Spec,
        dim: int,
        expansion: int = 2,
        kernel_size: int = 7,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        med = dim * expansion
        self.lif1 = spec.neuron()
        self.pwconv1 = spec.conv(dim, med, 1, 1, 0, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(med, **dd)
        self.lif2 = spec.neuron()
        self.dwconv = spec.conv(med, med, kernel_size, 1, kernel_size // 2, groups=med, bias=False, **dd)
        self.pwconv2 = spec.conv(med, dim, 1, 1, 0, bias=False, **dd)
        self.bn2 = nn.BatchNorm2d(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(integrate(self.lif1, x, self.pwconv1))
        return self.bn2(integrate(self.lif2, x, self.dwconv, self.pwconv2))


class MS_ConvBlock(nn.Module):
    """``x += SepConv(x)``; ``x += BN(conv3x3(spike(BN(conv3x3(spike(x))))))`` with 4x expansion."""

    def __init__(
        self,
        spec: _Spec,
        dim: int,
        mlp_ratio: int = 4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.Conv = SepConv(spec, dim, **dd)
        self.lif1 = spec.neuron()
        self.conv1 = spec.conv(dim, dim * mlp_ratio, 3, 1, 1, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(dim * mlp_ratio, **dd)
        self.lif2 = spec.neuron()
        self.conv2 = spec.conv(dim * mlp_ratio, dim, 3, 1, 1, bias=False, **dd)
        self.bn2 = nn.BatchNorm2d(dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv(x) + x
        y = self.bn1(integrate(self.lif1, x, self.conv1))
        return x + self.bn2(integrate(self.lif2, y, self.conv2))


class MS_MLP(nn.Module):
    """Token MLP as 1x1 Conv1d: spike -> fc1 (4x) -> BN1d -> spike -> fc2 -> BN1d. ``(N, C, H, W)`` in/out."""

    def __init__(
        self,
        spec: _Spec,
        dim: int,
        hidden: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.fc1_conv = spec.conv1d(dim, hidden, 1, 1, **dd)
        self.fc1_bn = nn.BatchNorm1d(hidden, **dd)
        self.fc1_lif = spec.neuron()
        self.fc2_conv = spec.conv1d(hidden, dim, 1, 1, **dd)
        self.fc2_bn = nn.BatchNorm1d(dim, **dd)
        self.fc2_lif = spec.neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        x = self.fc1_bn(integrate(self.fc1_lif, x.flatten(2), self.fc1_conv))
        x = self.fc2_bn(integrate(self.fc2_lif, x, self.fc2_conv))
        return x.reshape(N, C, H, W)


class SpikeDrivenSelfAttention(nn.Module):
    """(Q-)SDSA, linear in tokens and softmax-free: ``out = q (k^T v) * scale`` per head.

    ``x = spike(x)``; ``q/k/v = spike(BN(RepConv(x)))``; ``out = spike_attn(q @ (k^T @ v) * scale)``;
    ``proj = BN(RepConv(out))``. Official module name ``MS_Attention_RepConv_qkv_id``.
    ``(N, C, H, W)`` in and out, ``N = T * B``.
    """

    def __init__(
        self,
        spec: _Spec,
        dim: int,
        num_heads: int,
        scale: float,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} must be divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = scale
        self.head_lif = spec.neuron()
        self.q_conv = nn.Sequential(RepConv(dim, dim, spec.conv, **dd), nn.BatchNorm2d(dim, **dd))
        self.k_conv = nn.Sequential(RepConv(dim, dim, spec.conv, **dd), nn.BatchNorm2d(dim, **dd))
        self.v_conv = nn.Sequential(RepConv(dim, dim, spec.conv, **dd), nn.BatchNorm2d(dim, **dd))
        self.q_lif = spec.neuron()
        self.k_lif = spec.neuron()
        self.v_lif = spec.neuron()
        self.attn_lif = spec.attn_neuron()
        self.proj_conv = nn.Sequential(RepConv(dim, dim, spec.conv, **dd), nn.BatchNorm2d(dim, **dd))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # (..., C, H, W) -> (..., heads, HW, C / heads); channel c = head * d + j as in the official code
        return t.unflatten(-3, (self.num_heads, -1)).flatten(-2).transpose(-1, -2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        if getattr(self.head_lif, 'binary', False):
            return self._forward_binary(x)
        s = self.head_lif(x)
        # All three convs run on the head spikes before the q/k/v neurons fire (hook order = data flow).
        q, k, v = (conv[1](synapse(conv[0], s, self.head_lif)) for conv in (self.q_conv, self.k_conv, self.v_conv))
        q, k, v = self._heads(self.q_lif(q)), self._heads(self.k_lif(k)), self._heads(self.v_lif(v))
        out = (q @ (k.transpose(-2, -1) @ v)) * self.scale  # (N, heads, HW, d)
        out = out.transpose(-1, -2).reshape(N, C, H, W)
        return self.proj_conv[1](synapse(self.proj_conv[0], self.attn_lif(out), self.attn_lif))

    def _forward_binary(self, x: torch.Tensor) -> torch.Tensor:
        """Spike-driven inference: every matmul operand is a {0, 1} plane; planes are summed after."""
        N, C, H, W = x.shape
        D = self.q_lif.levels

        def qkv(conv: nn.Sequential, lif: nn.Module) -> torch.Tensor:
            pre = conv[1](conv[0].forward_spikes(self.head_lif, x))
            return self._heads(lif.spike_planes(pre).unflatten(0, (D, N)))  # (D, N, heads, HW, d)

        q, k, v = qkv(self.q_conv, self.q_lif), qkv(self.k_conv, self.k_lif), qkv(self.v_conv, self.v_lif)
        # k^T v over every pair of virtual steps (binary x binary: AND + popcount), then q planes @ kv.
        kv = (k.transpose(-2, -1).unsqueeze(1) @ v.unsqueeze(0)).sum((0, 1))
        out = (q @ kv).sum(0)
        out = out * (self.scale / (self.q_lif.norm * self.k_lif.norm * self.v_lif.norm))
        out = out.transpose(-1, -2).reshape(N, C, H, W)
        return self.proj_conv[1](self.proj_conv[0].forward_spikes(self.attn_lif, out))


class MS_Block(nn.Module):
    """``x += ls1 * attn(x)``; ``x += ls2 * mlp(x)`` (LayerScale only for QSD)."""

    def __init__(
        self,
        spec: _Spec,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        attn_scale: float,
        layer_scale_init: float | None,
        drop_path: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.attn = SpikeDrivenSelfAttention(spec, dim, num_heads, attn_scale, **dd)
        self.mlp = MS_MLP(spec, dim, int(dim * mlp_ratio), **dd)
        if layer_scale_init is not None:
            self.layer_scale1 = nn.Parameter(torch.full((dim,), float(layer_scale_init), **dd))
            self.layer_scale2 = nn.Parameter(torch.full((dim,), float(layer_scale_init), **dd))
        else:
            self.layer_scale1 = self.layer_scale2 = None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, m = self.attn(x), None
        if self.layer_scale1 is not None:
            a = a * self.layer_scale1.view(1, -1, 1, 1)
        x = x + self.drop_path(a)
        m = self.mlp(x)
        if self.layer_scale2 is not None:
            m = m * self.layer_scale2.view(1, -1, 1, 1)
        return x + self.drop_path(m)


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
# Stage -> top-level modules, in execution order (official attribute names).
_STAGES: tuple[tuple[str, ...], ...] = (
    ('downsample1_1', 'ConvBlock1_1', 'downsample1_2', 'ConvBlock1_2'),
    ('downsample2', 'ConvBlock2_1', 'ConvBlock2_2'),
    ('downsample3', 'block3'),
    ('downsample4', 'block4'),
)
_REDUCTIONS = (4, 8, 16, 16)


class SpikeDrivenMetaFormer(nn.Module):
    """Meta-SpikeFormer macro architecture, as QSD-Transformer (multi-spike, LSQ) or SDT v2 (LIF, FP).

    Args:
        embed_dim: channels of the four stages ``(C0, C1, C2, C3)``; stage 0 starts at ``C0 / 2``.
        depths: transformer blocks; ``int(0.75 * depths)`` at ``C2`` and ``int(0.25 * depths)`` at ``C3``.
        num_heads: attention heads.
        mlp_ratio: MLP expansion of the transformer blocks (ConvBlocks always expand 4x).
        T: time steps (the image is repeated ``T`` times; logits averaged over ``T``).
        neuron: ``'multispike'`` (QSD IE-LIF) or ``'lif'`` (binary LIF, SDT v2).
        spike_levels: ``D`` of the multi-spike neurons (virtual time steps at inference).
        wbits: LSQ weight bits; ``None`` or 32 for full-precision convs (timm's ``create_model`` drops
            ``None`` kwargs, so pass ``wbits=32`` there).
        act_placeholders: keep the official unused ``ActLSQ`` tensors as buffers (checkpoint compatibility).
        attn_scale: ``q (k^T v)`` scale (QSD 0.25, SDT v2 0.125).
        layer_scale_init: LayerScale init (QSD 1e-6), ``None`` or 0 for none (SDT v2).
        kd_head: add SDT v2's distillation head ``head_kd`` (training returns the mean of both heads).
    """

    def __init__(
        self,
        embed_dim: tuple[int, int, int, int] = (64, 128, 256, 360),
        depths: int = 8,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = 'avg',
        T: int = 1,
        neuron: str = 'multispike',
        spike_levels: int = 4,
        wbits: int | None = 4,
        act_placeholders: bool = True,
        attn_scale: float = 0.25,
        layer_scale_init: float | None = 1e-6,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        kd_head: bool = False,
        img_size: Any = None,  # accepted for timm / config compatibility; any multiple of 16 works
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if T < 1:
            raise ValueError(f'T must be >= 1, got {T}')
        if global_pool not in ('avg', ''):
            raise ValueError(f"global_pool must be 'avg', got {global_pool!r}")
        wbits = None if wbits in (None, 0, 32) else int(wbits)
        layer_scale_init = layer_scale_init or None
        self.T = int(T)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.wbits = wbits
        self.neuron_kind = neuron
        self.grad_checkpointing = False
        spec = _Spec(neuron, self.T, wbits, spike_levels, act_placeholders)
        c0, c1, c2, c3 = embed_dim
        n3, n4 = int(depths * 0.75), int(depths * 0.25)
        dpr = calculate_drop_path_rates(drop_path_rate, n3 + n4)  # one linear rule over both transformer stages

        self.downsample1_1 = MS_DownSampling(spec, in_chans, c0 // 2, 7, 2, 3, first_layer=True, **dd)
        self.ConvBlock1_1 = nn.ModuleList([MS_ConvBlock(spec, c0 // 2, **dd)])
        self.downsample1_2 = MS_DownSampling(spec, c0 // 2, c0, 3, 2, 1, first_layer=False, **dd)
        self.ConvBlock1_2 = nn.ModuleList([MS_ConvBlock(spec, c0, **dd)])
        self.downsample2 = MS_DownSampling(spec, c0, c1, 3, 2, 1, first_layer=False, **dd)
        self.ConvBlock2_1 = nn.ModuleList([MS_ConvBlock(spec, c1, **dd)])
        self.ConvBlock2_2 = nn.ModuleList([MS_ConvBlock(spec, c1, **dd)])
        self.downsample3 = MS_DownSampling(spec, c1, c2, 3, 2, 1, first_layer=False, **dd)
        self.block3 = nn.ModuleList(
            [MS_Block(spec, c2, num_heads, mlp_ratio, attn_scale, layer_scale_init, dpr[j], **dd) for j in range(n3)]
        )
        self.downsample4 = MS_DownSampling(spec, c2, c3, 3, 1, 1, first_layer=False, **dd)
        self.block4 = nn.ModuleList(
            [
                MS_Block(spec, c3, num_heads, mlp_ratio, attn_scale, layer_scale_init, dpr[n3 + j], **dd)
                for j in range(n4)
            ]
        )

        self.num_features = self.head_hidden_size = c3
        self.feature_info = [
            dict(num_chs=c, reduction=r, module=names[-1])
            for c, r, names in zip((c0, c1, c2, c3), _REDUCTIONS, _STAGES)
        ]
        self._num_stages = len(_STAGES)
        self.lif = spec.neuron()
        self.head_drop = nn.Dropout(drop_rate)
        # Plain attributes (no lambdas), so the model pickles and deepcopies cleanly (mmengine EMA).
        self._head_wbits = wbits
        self._act_placeholders = act_placeholders
        self.head = self._make_head(num_classes)
        self.head_kd = self._make_head(num_classes) if kd_head else None
        self.apply(self._init_weights)
        for m in self.modules():  # LSQ steps follow the final initial weights
            if hasattr(m, 'reset_alpha'):
                m.reset_alpha()

    def _make_head(self, num_classes: int) -> nn.Module:
        """Classifier ``(N, num_features) -> (N, num_classes)``: LSQ-quantised when the model is."""
        if num_classes <= 0:
            return nn.Identity()
        dd = get_device_dtype(self)
        if self._head_wbits is not None:
            return LinearLSQ(
                self.num_features, num_classes, nbits=self._head_wbits, act_placeholder=self._act_placeholders, **dd
            )
        return nn.Linear(self.num_features, num_classes, **dd)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # Official init: only Linear layers are re-initialised (convs keep PyTorch's default).
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # -- timm API ------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if 'layer_scale' in n or n.endswith('.alpha')}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        # Stages as in _STAGES (stem: the first downsampling); fine: one group per transformer block,
        # after its stage's downsampling.
        def stage(i: int, name: str) -> list[tuple[str, tuple]]:
            if coarse:
                return [(rf'^(?:downsample{i + 1}|{name})\.', (i,))]
            return [(rf'^downsample{i + 1}\.', (i, -1))] + [
                (rf'^{name}\.{j}\.', (i, j)) for j in range(len(getattr(self, name)))
            ]

        return dict(
            stem=r'^downsample1_1\.',
            blocks=[
                (r'^(?:ConvBlock1_1|downsample1_2|ConvBlock1_2)\.', (0,)),
                (r'^(?:downsample2|ConvBlock2_\d)\.', (1,)),
                *stage(2, 'block3'),
                *stage(3, 'block4'),
                (r'^lif', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ('avg', ''):
                raise ValueError(f"global_pool must be 'avg', got {global_pool!r}")
            self.global_pool = global_pool
        self.head = self._make_head(num_classes)
        if self.head_kd is not None:
            self.head_kd = self._make_head(num_classes)

    def set_T(self, T: int) -> None:
        """Change the number of time steps (also inside every LIF neuron)."""
        if T < 1:
            raise ValueError(f'T must be >= 1, got {T}')
        self.T = int(T)
        for m in self.modules():
            if isinstance(m, MultiStepLIF):
                m.T = self.T

    def set_spike_driven(self, enabled: bool = True) -> SpikeDrivenMetaFormer:
        """Binary spike-driven inference (every integer spike k -> k binary spikes over D steps)."""
        set_spike_driven(self, enabled)
        return self

    # -- forward -------------------------------------------------------------------------------
    def _expand_time(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input(x)
        return x.unsqueeze(0).expand(self.T, -1, -1, -1, -1).flatten(0, 1)  # (T * B, C, H, W)

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        mod = getattr(self, name)
        if isinstance(mod, nn.ModuleList):
            for blk in mod:
                x = checkpoint(blk, x) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x)
            return x
        return mod(x)

    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        for name in _STAGES[i]:
            x = self._run(name, x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(T, B, C3, H / 16, W / 16)`` (residual stream, before the last spike)."""
        x = self._expand_time(x)
        for i in range(self._num_stages):
            x = self._stage(i, x)
        return x.unflatten(0, (self.T, -1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(T, B, C, h, w)`` -> logits ``(B, classes)`` or, with ``pre_logits``, mean spikes ``(B, C)``."""
        T = x.shape[0]
        x = x.flatten(0, 1).mean((-2, -1))  # (T * B, C)
        if pre_logits:
            return self.head_drop(self.lif(x).unflatten(0, (T, -1)).mean(0))
        if self.head_kd is not None:
            # Official SDT v2 with kd: training returns two heads; we return their mean (the eval output).
            s = self.head_drop(self.lif(x))
            out = (self.head(s) + self.head_kd(s)) / 2
        else:
            if getattr(self.lif, 'binary', False) and isinstance(self.head, nn.Linear):
                out = integrate(self.lif, x, self.head)  # spike-driven inference (eval: no dropout)
            else:
                out = self.head(self.head_drop(self.lif(x)))
        return out.unflatten(0, (T, -1)).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs averaged over ``T``: ``(B, C_i, H / r_i, W / r_i)``, ``r = 4, 8, 16, 16``.

        Returns the intermediates, or ``(final (T, B, C3, H/16, W/16), intermediates)``.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = feature_take_indices(self._num_stages, indices)
        x = self._expand_time(x)
        last = max_index if (stop_early or intermediates_only) else self._num_stages - 1
        inter = []
        for i in range(last + 1):
            x = self._stage(i, x)
            if i in take:
                inter.append(x.unflatten(0, (self.T, -1)).mean(0))
        if intermediates_only:
            return inter
        return x.unflatten(0, (self.T, -1)), inter

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last requested one (and the head); returns the kept indices."""
        take, max_index = feature_take_indices(self._num_stages, indices)
        for names in _STAGES[max_index + 1 : self._num_stages]:
            for name in names:
                setattr(self, name, nn.Identity() if 'block' not in name else nn.ModuleList())
        pruned_end = max_index < self._num_stages - 1
        self._num_stages = max_index + 1
        if pruned_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or pruned_end:
            self._head_wbits = None  # a pruned model gets a full-precision head
            self.head_kd = None
            self.reset_classifier(0)
        return take


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def checkpoint_filter_fn(state_dict: dict[str, Any], model: SpikeDrivenMetaFormer) -> dict[str, torch.Tensor]:
    """Map an official QSD-Transformer / SDT v2 checkpoint (as published) onto ``model``'s keys.

    Accepts the raw state dict or one wrapped in ``model`` / ``state_dict`` / ``state_dict_ema`` /
    ``model_ema``. See the module docstring for the kept / dropped keys.
    """
    sd = unwrap_state_dict(state_dict)
    own = model.state_dict()
    has_act = any('.act.' in k for k in own)

    # SDT v2 KD checkpoint into a single-head model: (head + head_kd) / 2 is the official eval output.
    if 'head_kd.weight' in sd and 'head_kd.weight' not in own:
        for p in ('weight', 'bias'):
            if f'head.{p}' in sd and f'head_kd.{p}' in sd:
                sd[f'head.{p}'] = (sd[f'head.{p}'] + sd[f'head_kd.{p}']) / 2
        sd = {k: v for k, v in sd.items() if not k.startswith('head_kd.')}

    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if '.act.' in k and not has_act:
            continue  # QSD's unused ActLSQ placeholders: dropped unless the model keeps them (as buffers)
        if (k.endswith('.alpha') or k.endswith('.init_state')) and k not in own:
            continue  # LSQ step of a layer that is full precision here: folded into the weight below
        if k.endswith('.weight') and k[:-7] + '.alpha' in sd and k[:-7] + '.alpha' not in own:
            v = lsq_quantize(v.float(), sd[k[:-7] + '.alpha'].float(), 4).to(v.dtype).detach()
        out[k] = v

    # Different class count: drop the whole head (weights and its LSQ step / placeholders).
    for head in ('head', 'head_kd'):
        w = out.get(f'{head}.weight')
        if w is not None and (f'{head}.weight' not in own or own[f'{head}.weight'].shape != w.shape):
            out = {k: v for k, v in out.items() if not k.startswith(f'{head}.')}
    return out


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------
def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> SpikeDrivenMetaFormer:
    return build_model_with_weights(
        SpikeDrivenMetaFormer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'),
        **kwargs,
    )


def _cfg(origin_url: str, paper_id: str, license: str, **kwargs: Any) -> dict[str, Any]:
    return dict(
        url='',
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=(14, 14),
        crop_pct=0.875,
        interpolation='bicubic',
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv='downsample1_1.encode_conv',
        classifier='head',
        license=license,
        paper_ids=paper_id,
        origin_url=origin_url,
        **kwargs,
    )


_NOLIC = 'unknown (no LICENSE file)'
_SDT2_GH = 'https://github.com/BICLab/Spike-Driven-Transformer-V2'
_QSD_NOTE = (
    'official weights on the HF hub repo Xuerui123/QSD_Transformer (file names unverified); '
    'load a downloaded file with pretrained_cfg_overlay=dict(file=PATH)'
)
default_cfgs = zoo_default_cfgs(
    {
        'qsd_transformer_15m.in1k': _cfg(QSD_HF, 'arXiv:2501.13492', _NOLIC, notes=_QSD_NOTE),
        'qsd_transformer_31m.in1k': _cfg(QSD_HF, 'arXiv:2501.13492', _NOLIC, notes=_QSD_NOTE),
        'qsd_transformer_55m.in1k': _cfg(QSD_HF, 'arXiv:2501.13492', _NOLIC, notes=_QSD_NOTE),
        'meta_spikeformer_15m.in1k': _cfg(_SDT2_GH, 'arXiv:2404.03663', _NOLIC),
        'meta_spikeformer_31m.in1k': _cfg(_SDT2_GH, 'arXiv:2404.03663', _NOLIC),
        'meta_spikeformer_55m.in1k': _cfg(
            SDT2_DRIVE, 'arXiv:2404.03663', _NOLIC, notes='official 55M KD checkpoint (Google Drive); head_kd is merged'
        ),
    },
    paper=PAPER_FACTS,
)

_DIMS = {'15m': (64, 128, 256, 360), '31m': (96, 192, 384, 480), '55m': (128, 256, 512, 640)}
_QSD = dict(neuron='multispike', wbits=4, attn_scale=0.25, layer_scale_init=1e-6)
_SDT2 = dict(neuron='lif', wbits=None, attn_scale=0.125, layer_scale_init=None)


@register_model
def qsd_transformer_15m(pretrained: bool = False, **kwargs: Any) -> SpikeDrivenMetaFormer:
    """QSD-Transformer "1.8M" (official ``spikformer_8_15M_CAFormer``, 4-bit weights, W4-A1-T4)."""
    return _create('qsd_transformer_15m', pretrained, **{**_QSD, 'embed_dim': _DIMS['15m'], **kwargs})


@register_model
def qsd_transformer_31m(pretrained: bool = False, **kwargs: Any) -> SpikeDrivenMetaFormer:
    """QSD-Transformer "3.9M" (official ``spikformer_8_384_CAFormer``)."""
    return _create('qsd_transformer_31m', pretrained, **{**_QSD, 'embed_dim': _DIMS['31m'], **kwargs})


@register_model
def qsd_transformer_55m(pretrained: bool = False, **kwargs: Any) -> SpikeDrivenMetaFormer:
    """QSD-Transformer "6.8M" (official ``spikformer_8_512_CAFormer``; 80.3% top-1)."""
    return _create('qsd_transformer_55m', pretrained, **{**_QSD, 'embed_dim': _DIMS['55m'], **kwargs})


@register_model
def meta_spikeformer_15m(pretrained: bool = False, **kwargs: Any) -> SpikeDrivenMetaFormer:
    """Meta-SpikeFormer / SDT v2 15.1M (embed 64-128-256-360; defined only in QSD's models.py)."""
    return _create('meta_spikeformer_15m', pretrained, **{**_SDT2, 'embed_dim': _DIMS['15m'], **kwargs})


@register_model
def meta_spikeformer_31m(pretrained: bool = False, **kwargs: Any) -> SpikeDrivenMetaFormer:
    """Meta-SpikeFormer / SDT v2 31.3M (official ``metaspikformer_8_384``)."""
    return _create('meta_spikeformer_31m', pretrained, **{**_SDT2, 'embed_dim': _DIMS['31m'], **kwargs})


@register_model
def meta_spikeformer_55m(pretrained: bool = False, **kwargs: Any) -> SpikeDrivenMetaFormer:
    """Meta-SpikeFormer / SDT v2 55.4M (official ``metaspikformer_8_512``; 80.0% with T=4 + KD)."""
    return _create('meta_spikeformer_55m', pretrained, **{**_SDT2, 'embed_dim': _DIMS['55m'], **kwargs})
