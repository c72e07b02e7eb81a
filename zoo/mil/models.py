"""MIL heads over bags of patch features: ACMIL_GA, ACMIL_MHA, ABMIL, mean and max pooling.

ACMIL (Zhang et al., ECCV 2024, arXiv:2311.07125) in our own words, with the official parameter names
(``dimreduction.fc1``, ``attention.attention_V.0``, ``classifier.{i}.fc``, ``Slide_classifier.fc``, ...)
so an official ``checkpoint-*.pth['model']`` loads through :func:`checkpoint_filter_fn`.

Every head takes one bag ``x`` of shape ``(N, D_feat)`` (or ``(1, N, D_feat)``) and returns the
official triple ``(sub_logits, slide_logits, attn_logits)``:

* ``sub_logits``  ``(M, n_class)``: one prediction per attention branch (``None`` for heads without
  branches),
* ``slide_logits`` ``(1, n_class)``,
* ``attn_logits`` ``(H, M, N)``: pre-softmax attention per branch, after STKIM masking in training
  (``H = 1`` for gated attention, ``H = num_heads`` for ACMIL_MHA; ``None`` for mean/max pooling).

Choices the paper leaves open (see also ``docs/acmil.md``):

* STKIM masks ``int(K * mask_drop)`` of the ``K = min(n_masked_patch, N)`` highest logits of each
  branch (and, in ACMIL_MHA, of each head), drawn uniformly without replacement, training only.
* The slide attention of ACMIL_GA is the mean over branches of the (masked) softmaxed branch maps,
  as in the official code; ACMIL_MHA feeds that mean to its value-only ``bag_attention`` layer.
* Mean/max pooling baselines follow the official ``MeanMIL``/``MaxMIL``: an instance-level MLP
  (``head``: Linear, ReLU, Dropout 0.25, Linear) whose logits are pooled over the bag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn as nn

from zoo.hub import unwrap_state_dict
from zoo.layers.fast_inference import float32_region
from zoo.registry import MODELS

MILOutput = tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]


def stkim_mask(
    logits: torch.Tensor, n_masked_patch: int, mask_drop: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Stochastic top-K instance masking.

    For every row of ``logits`` (``(..., N)``), takes the ``K = min(n_masked_patch, N)`` largest
    entries and sets ``int(K * mask_drop)`` of them, chosen at random, to ``-1e9`` so the softmax
    gives them (numerically) zero weight. Returns a new tensor of the same shape.
    """
    n = logits.shape[-1]
    k = min(n_masked_patch, n)
    n_drop = int(k * mask_drop)
    if k <= 0 or n_drop <= 0:
        return logits
    rows = logits.reshape(-1, n)
    top = rows.topk(k, dim=-1).indices  # (R, K)
    # a random permutation of the K slots per row; its first n_drop entries are masked
    noise = torch.rand(top.shape, device=logits.device, generator=generator)
    pick = noise.argsort(dim=-1)[:, :n_drop]
    drop = top.gather(-1, pick)
    mask = torch.zeros_like(rows, dtype=torch.bool).scatter_(-1, drop, True)
    return rows.masked_fill(mask, -1e9).reshape(logits.shape)


def _bag(x: torch.Tensor) -> torch.Tensor:
    """(1, N, D) or (N, D) -> (N, D)."""
    if x.dim() == 3:
        if x.shape[0] != 1:
            raise ValueError(f'MIL heads take one bag at a time, got {x.shape[0]} (use batch_size=1)')
        x = x[0]
    if x.dim() != 2:
        raise ValueError(f'a bag must have shape (N, D) or (1, N, D), got {tuple(x.shape)}')
    return x


class DimReduction(nn.Module):
    """Linear (no bias) + ReLU: ``(N, D_feat) -> (N, D_inner)``."""

    def __init__(self, in_dim: int, out_dim: int, device=None, dtype=None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, out_dim, bias=False, device=device, dtype=dtype)
        self.relu1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu1(self.fc1(x))


class Classifier1fc(nn.Module):
    """Optional dropout + one linear layer (official ``Classifier_1fc``)."""

    def __init__(self, in_dim: int, num_classes: int, droprate: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes, device=device, dtype=dtype)
        self.dropout = nn.Dropout(droprate) if droprate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


def attention_pool(logits: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(logits) @ h`` in float32 with autocast off (under ``--bf16`` as well): the weights of thousands
    of instances sum to 1, and bfloat16's 8-bit mantissa would round most of them (and their sum) away.
    Returns the attention weights (float32) and the pooled features, summed in float32 and handed on in ``h``'s dtype
    (what the classifiers take: bfloat16 under autocast or in a model built in bfloat16)."""
    with float32_region(h):
        attn = logits.float().softmax(dim=-1)
        return attn, (attn @ h.float()).to(h.dtype)


class GatedAttention(nn.Module):
    """Gated attention (Ilse et al. 2018) with ``K`` output rows: ``(N, L) -> (K, N)`` logits.

    ``A = W (tanh(V x) * sigmoid(U x))``.
    """

    def __init__(self, in_dim: int = 512, attn_dim: int = 128, n_branches: int = 1, device=None, dtype=None) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.attention_V = nn.Sequential(nn.Linear(in_dim, attn_dim, **dd), nn.Tanh())
        self.attention_U = nn.Sequential(nn.Linear(in_dim, attn_dim, **dd), nn.Sigmoid())
        self.attention_weights = nn.Linear(attn_dim, n_branches, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention_weights(self.attention_V(x) * self.attention_U(x)).transpose(0, 1)


@MODELS.register_module(name='ACMIL_GA')
class ACMILGA(nn.Module):
    """ACMIL with gated multiple-branch attention (the paper's default).

    Args:
        in_dim: patch feature size ``D_feat`` (512 for ResNet-18 features, 384 for ViT-S/16).
        inner_dim: ``D_inner`` after ``dimreduction`` (256 / 128 in the official configs).
        num_classes: slide classes.
        n_token: number of attention branches ``M`` (MBA); 1 gives ABMIL.
        n_masked_patch: ``K`` of STKIM (top-K instances per branch); 0 disables masking.
        mask_drop: fraction of the top-K that is masked in each training step.
        attn_dim: hidden size of the gated attention (128).
        droprate: dropout before the classifiers (0 officially).
        device, dtype: where and in which dtype parameters are made (timm's convention; ``'meta'`` allocates none).
    """

    def __init__(
        self,
        in_dim: int = 512,
        inner_dim: int = 256,
        num_classes: int = 2,
        n_token: int = 5,
        n_masked_patch: int = 10,
        mask_drop: float = 0.6,
        attn_dim: int = 128,
        droprate: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.n_token = n_token
        self.n_masked_patch = n_masked_patch
        self.mask_drop = mask_drop
        self.num_classes = num_classes
        self.dimreduction = DimReduction(in_dim, inner_dim, **dd)
        self.attention = GatedAttention(inner_dim, attn_dim, n_token, **dd)
        self.classifier = nn.ModuleList(Classifier1fc(inner_dim, num_classes, droprate, **dd) for _ in range(n_token))
        self.Slide_classifier = Classifier1fc(inner_dim, num_classes, droprate, **dd)

    def forward(self, x: torch.Tensor) -> MILOutput:
        """``x``: (N, D_feat) -> sub (M, C), slide (1, C), attention logits (1, M, N)."""
        h = self.dimreduction(_bag(x))  # (N, D)
        logits = self.attention(h)  # (M, N)
        if self.training and self.n_masked_patch > 0:
            logits = stkim_mask(logits, self.n_masked_patch, self.mask_drop)
        attn, branch_feats = attention_pool(logits, h)  # (M, N), (M, D)
        # one classifier per branch: stack the M weight matrices into one batched product
        w = torch.stack([c.fc.weight for c in self.classifier])  # (M, C, D)
        b = torch.stack([c.fc.bias for c in self.classifier])  # (M, C)
        branch_feats = self.classifier[0].dropout(branch_feats)
        sub = torch.einsum('md,mcd->mc', branch_feats, w) + b
        with float32_region(h):
            bag_feat = (attn.mean(dim=0, keepdim=True) @ h.float()).to(h.dtype)  # (1, D)
        return sub, self.Slide_classifier(bag_feat), logits.unsqueeze(0)


class MaskedMultiHeadAttention(nn.Module):
    """Cross-attention of one learned query over the bag, with STKIM on its attention logits.

    Official ``MutiHeadAttention`` names: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``layer_norm``.
    ``forward(q (1, 1, D), kv (1, N, D))`` returns the attended feature ``(1, D)`` and logits ``(H, 1, N)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        dropout: float = 0.1,
        n_masked_patch: int = 0,
        mask_drop: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if dim % num_heads:
            raise ValueError(f'inner_dim {dim} must be divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.n_masked_patch = n_masked_patch
        self.mask_drop = mask_drop
        self.q_proj = nn.Linear(dim, dim, **dd)
        self.k_proj = nn.Linear(dim, dim, **dd)
        self.v_proj = nn.Linear(dim, dim, **dd)
        self.out_proj = nn.Linear(dim, dim, **dd)
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (1, T, D) -> (1, H, T, D/H)
        b, t, d = x.shape
        return x.reshape(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        qh, kh, vh = self._heads(self.q_proj(q)), self._heads(self.k_proj(kv)), self._heads(self.v_proj(kv))
        logits = qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1])  # (1, H, 1, N)
        if self.training and self.n_masked_patch > 0:
            logits = stkim_mask(logits, self.n_masked_patch, self.mask_drop)
        out = attention_pool(logits, vh)[1]  # (1, H, 1, D/H)
        out = out.transpose(1, 2).flatten(2)  # (1, 1, D)
        out = self.layer_norm(self.dropout(self.out_proj(out)))
        return out[0], logits[0]


class BagAttention(nn.Module):
    """Value-only multi-head pooling with given attention weights (official ``MutiHeadAttention_modify``).

    ``forward(v (1, N, D), attn (H, 1, N))`` -> ``(1, D)``.
    """

    def __init__(self, dim: int, num_heads: int = 8, dropout: float = 0.1, device=None, dtype=None) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.num_heads = num_heads
        self.v_proj = nn.Linear(dim, dim, **dd)
        self.out_proj = nn.Linear(dim, dim, **dd)
        self.layer_norm = nn.LayerNorm(dim, eps=1e-6, **dd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, v: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        _, n, d = v.shape
        vh = self.v_proj(v).reshape(1, n, self.num_heads, d // self.num_heads).transpose(1, 2)
        with float32_region(vh):
            out = (attn.unsqueeze(0).float() @ vh.float()).transpose(1, 2).flatten(2).to(vh.dtype)  # (1, 1, D)
        return self.layer_norm(self.dropout(self.out_proj(out)))[0]


@MODELS.register_module(name='ACMIL_MHA')
class ACMILMHA(nn.Module):
    """ACMIL with multi-head cross-attention branches (supplementary Table 4 variant).

    Each of the ``M`` branches is one learned query (``q``, shape ``(1, M, D_inner)``) attending over
    the bag with ``num_heads`` heads and STKIM; the slide feature pools the bag with the mean of the
    branches' softmaxed maps through ``bag_attention``. Same args as :class:`ACMILGA` plus ``num_heads``.
    """

    def __init__(
        self,
        in_dim: int = 512,
        inner_dim: int = 256,
        num_classes: int = 2,
        n_token: int = 5,
        n_masked_patch: int = 10,
        mask_drop: float = 0.6,
        num_heads: int = 8,
        dropout: float = 0.1,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.n_token = n_token
        self.num_classes = num_classes
        self.dimreduction = DimReduction(in_dim, inner_dim, **dd)
        self.sub_attention = nn.ModuleList(
            MaskedMultiHeadAttention(inner_dim, num_heads, dropout, n_masked_patch, mask_drop, **dd)
            for _ in range(n_token)
        )
        self.bag_attention = BagAttention(inner_dim, num_heads, dropout, **dd)
        self.q = nn.Parameter(torch.randn(1, n_token, inner_dim, **dd) * 1e-6)
        self.classifier = nn.ModuleList(Classifier1fc(inner_dim, num_classes, **dd) for _ in range(n_token))
        self.Slide_classifier = Classifier1fc(inner_dim, num_classes, **dd)

    def forward(self, x: torch.Tensor) -> MILOutput:
        """``x``: (N, D_feat) -> sub (M, C), slide (1, C), attention logits (H, M, N)."""
        h = self.dimreduction(_bag(x)).unsqueeze(0)  # (1, N, D)
        subs, logits = [], []
        for i in range(self.n_token):  # M is small (5); each branch has its own projections
            feat, lg = self.sub_attention[i](self.q[:, i : i + 1], h)
            subs.append(self.classifier[i](feat))
            logits.append(lg)
        logits = torch.cat(logits, dim=1)  # (H, M, N)
        bag = self.bag_attention(h, logits.float().softmax(dim=-1).mean(dim=1, keepdim=True))
        return torch.cat(subs, dim=0), self.Slide_classifier(bag), logits


@MODELS.register_module()
class ABMIL(nn.Module):
    """Gated-attention MIL (Ilse et al. 2018) with the official ACMIL repo's module names.

    Returns ``(None, slide (1, C), attention logits (1, 1, N))``.
    """

    def __init__(
        self,
        in_dim: int = 512,
        inner_dim: int = 256,
        num_classes: int = 2,
        attn_dim: int = 128,
        droprate: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.dimreduction = DimReduction(in_dim, inner_dim, **dd)
        self.attention = GatedAttention(inner_dim, attn_dim, 1, **dd)
        self.classifier = Classifier1fc(inner_dim, num_classes, droprate, **dd)

    def forward(self, x: torch.Tensor) -> MILOutput:
        h = self.dimreduction(_bag(x))
        logits = self.attention(h)  # (1, N)
        return None, self.classifier(attention_pool(logits, h)[1]), logits.unsqueeze(0)


class _PoolMIL(nn.Module):
    pool = 'mean'

    def __init__(
        self,
        in_dim: int = 512,
        inner_dim: int = 256,
        num_classes: int = 2,
        dropout: float = 0.25,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.head = nn.Sequential(
            nn.Linear(in_dim, inner_dim, **dd), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner_dim, num_classes, **dd)
        )

    def forward(self, x: torch.Tensor) -> MILOutput:
        logits = self.head(_bag(x))  # (N, C) instance logits
        pooled = logits.mean(dim=0) if self.pool == 'mean' else logits.amax(dim=0)
        return None, pooled.unsqueeze(0), None


@MODELS.register_module()
class MeanMIL(_PoolMIL):
    """Instance MLP, logits averaged over the bag. Returns ``(None, slide (1, C), None)``."""

    pool = 'mean'


@MODELS.register_module()
class MaxMIL(_PoolMIL):
    """Instance MLP, logits max-pooled over the bag. Returns ``(None, slide (1, C), None)``."""

    pool = 'max'


def checkpoint_filter_fn(state_dict: Mapping, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Map an official ACMIL checkpoint (or ours) to the keys of ``model``.

    Accepts the raw state dict, or one wrapped in ``model`` (official ``utils.save_model``),
    ``state_dict`` (mmengine) or ``state_dict_ema``; strips ``module.`` (DataParallel). When
    ``model`` is a :class:`zoo.mil.classifier.MILClassifier` the head keys get its ``head.`` prefix,
    and a MILClassifier checkpoint loads into a bare head by dropping it.
    """
    out = unwrap_state_dict(state_dict)
    if model is not None:
        # per key: keep it, add the MILClassifier's ``head.`` prefix, or drop it, whichever matches
        target = model.state_dict()
        fixed = {}
        for k, v in out.items():
            for cand in (k, f'head.{k}', k.removeprefix('head.')):
                if cand in target:
                    fixed[cand] = v
                    break
            else:
                fixed[k] = v  # unknown key: load_state_dict(strict=True) reports it
        out = fixed
    return out
