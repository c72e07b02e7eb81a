"""ACAM-KD: adaptive and cooperative attention masking (Lan and Tian, arXiv 2503.06307, ICCV 2025).

Two training-only modules per distillation point, then a mask-weighted feature loss:

* **STCA-FF** (Sec. 3.2, student-teacher cross-attention feature fusion): queries from the teacher map,
  keys and values from the (channel-aligned) student map, ``C_q = C / 2`` query/key channels, one softmax
  over positions: ``F_fused = softmax(Q K^T / sqrt(C_q)) V``.
* **ASCM** (Sec. 3.3, adaptive spatial-channel masking): ``M`` spatial masks ``sigmoid(m_s z)`` with
  ``z = flatten(F_fused)`` and ``M`` channel masks ``sigmoid(m_c * GAP(F_fused))``, recomputed every step.
* **Losses** (Sec. 3.4): the spatial and channel mask-weighted feature distances ``L^s``, ``L^c`` and the
  Dice diversity loss ``L_div``; ``L = L_task + alpha (L^c + L^s) + lambda L_div`` with ``alpha = lambda = 1``.

There is no official code; every reading of an ambiguous formula is named in the argument docs and in
docs/distillation.md, and the alternative is kept as an option.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.registry import MODELS

__all__ = [
    'ACAMKDLoss',
    'ASCMasks',
    'STCAFusion',
    'dice_diversity',
    'mask_spatial_spread',
    'masked_feature_losses',
    'mask_contrast',
    'mask_decorrelation',
]


class STCAFusion(nn.Module):
    """Student-teacher cross-attention feature fusion (arXiv 2503.06307, Sec. 3.2).

    ``Q = W_q F_T``, ``K = W_k F_S`` (``C -> C_q``), ``V = W_v F_S`` (``C -> C``), all 1x1 convolutions
    without bias (the paper writes plain linear maps); single head, no residual, no output projection.
    The attention runs through ``F.scaled_dot_product_attention`` (scale ``1 / sqrt(C_q)``) with Q and K
    zero-padded to V's width, so a flash kernel applies on CPU and CUDA and the ``HW x HW`` matrix is never
    materialised (FPN P3 at 800x1333 is ~16.8k tokens).

    Args:
        channels: ``C`` of both maps (the student is aligned to the teacher before the fusion).
        qk_channels: ``C_q``; default ``C // 2`` as in the paper.
        detach_student: stop the gradient from the fusion into the student's features (the paper does
            not say; default off, so the student also learns through the masks it helps to form).
        pad_qk: zero-pad Q and K to V's width inside the attention call so a flash kernel applies (same
            result; ``C_q`` stays the projection width and sets the scale).
    """

    def __init__(
        self, channels: int, qk_channels: int | None = None, detach_student: bool = False, pad_qk: bool = True
    ) -> None:
        super().__init__()
        self.qk_channels = qk_channels or max(channels // 2, 1)
        self.q = nn.Conv2d(channels, self.qk_channels, 1, bias=False)
        self.k = nn.Conv2d(channels, self.qk_channels, 1, bias=False)
        self.v = nn.Conv2d(channels, channels, 1, bias=False)
        self.detach_student = detach_student
        self.pad_qk = pad_qk

    @staticmethod
    def _tokens(x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 1, H * W, C)`` (one head), contiguous: fused kernels need a unit stride
        on the channel axis."""
        return x.flatten(2).transpose(1, 2).unsqueeze(1).contiguous()

    def forward(self, f_t: torch.Tensor, f_s: torch.Tensor) -> torch.Tensor:
        """``f_t (B, C, H, W)``, ``f_s (B, C, H', W')`` -> fused ``(B, C, H, W)`` on the teacher's grid."""
        if self.detach_student:
            f_s = f_s.detach()
        B, C, H, W = f_t.shape
        q, k, v = self._tokens(self.q(f_t)), self._tokens(self.k(f_s)), self._tokens(self.v(f_s))
        if self.pad_qk and q.shape[-1] < C:
            # The flash kernels (CPU and CUDA) need one width for q, k and v: zero channels add nothing to
            # Q K^T, and the scale stays 1 / sqrt(C_q). Without this, CPU falls back to the math kernel,
            # which forms the HW x HW matrix (3.3 GB on P3 at 800x1333, measured).
            q, k = F.pad(q, (0, C - q.shape[-1])), F.pad(k, (0, C - k.shape[-1]))
        out = F.scaled_dot_product_attention(q, k, v, scale=self.qk_channels**-0.5)  # (B, 1, HW, C)
        return out.squeeze(1).transpose(1, 2).reshape(B, C, H, W)

    @torch.no_grad()
    def attention_rows(self, f_t: torch.Tensor, f_s: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The attention of the teacher positions ``rows`` (flat indices) over the student's positions:
        ``(B, len(rows), H' * W')``; only these rows are formed (for visualisation)."""
        q = self._tokens(self.q(f_t))[:, 0, rows]  # (B, R, C_q)
        k = self._tokens(self.k(f_s))[:, 0]  # (B, N, C_q)
        return torch.softmax(q @ k.transpose(1, 2) / self.qk_channels**0.5, dim=-1)


class ASCMasks(nn.Module):
    """Adaptive spatial-channel masks from the fused map (arXiv 2503.06307, Sec. 3.3).

    Spatial: ``M^s = sigmoid(m_s z)``, ``m_s (M, C)``, ``z = flatten(F_fused) (C, HW)`` -> ``(B, M, HW)``
    (the mask-token product of MasKD, arXiv 2205.14589).
    Channel: ``M^c = sigmoid(m_c * v)``, ``v = GAP(F_fused) (C,)`` -> ``(B, M, C)``.

    Args:
        channels: ``C``.
        num_masks: ``M`` (6 for detection, 19 = classes for Cityscapes in the paper).
        standardize: bring each channel of the fused map to zero mean and unit variance over the positions
            before the spatial token product (our addition, default off here, on in ``ACAMKDLoss``): the
            spatial logits then hold no offset common to all positions, so a mask cannot saturate to a map
            that is 0 or 1 everywhere.
        channel_mask: ``'elementwise'`` (default): ``m_c (M, C)`` and ``M^c_{m,k} = sigmoid(m_c[m, k] v_k)``.
            ``'outer'``: ``m_c (M, 1)`` as the formula is transcribed, an outer product; every channel mask is
            then a monotone function of the same ``v`` (one scalar per mask), so ``M`` masks can hardly
            differ and the diversity loss has little to act on, which is why it is not the default.
        logit_temp: if set (our addition), each spatial mask's logits are brought to zero mean and unit
            variance over the positions and multiplied by ``logit_temp``: every mask then has the same
            sharpness (``sigmoid(+-logit_temp)`` one standard deviation out), so no loss can saturate a mask
            by growing its logits, and growing one direction of the fused map no longer pays.
    """

    def __init__(
        self,
        channels: int,
        num_masks: int,
        channel_mask: str = 'elementwise',
        standardize: bool = False,
        logit_temp: float | None = None,
    ) -> None:
        super().__init__()
        self.standardize, self.logit_temp = standardize, logit_temp
        if channel_mask not in ('elementwise', 'outer'):
            raise ValueError(f"channel_mask must be 'elementwise' or 'outer', got {channel_mask!r}")
        self.channel_mask = channel_mask
        # small tokens: every mask starts near 0.5 (MasKD initialises its tokens with std 0.01)
        self.spatial_tokens = nn.Parameter(torch.randn(num_masks, channels) * 0.01)
        width = channels if channel_mask == 'elementwise' else 1
        self.channel_tokens = nn.Parameter(torch.randn(num_masks, width) * 0.01)

    def forward(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W)`` -> spatial masks ``(B, M, H * W)`` and channel masks ``(B, M, C)``."""
        z = fused.flatten(2)  # (B, C, HW)
        if self.standardize:
            # each channel to zero mean and unit variance over the positions: the spatial logits then carry
            # only where a channel is high, never a constant offset, so no mask can be switched on or off
            # everywhere at once
            z = (z - z.mean(-1, keepdim=True)) / (z.std(-1, keepdim=True, unbiased=False) + 1e-5)
        logits = torch.einsum('mc,bcn->bmn', self.spatial_tokens, z)  # (B, M, HW)
        if self.logit_temp is not None:
            mu, sd = logits.mean(-1, keepdim=True), logits.std(-1, keepdim=True, unbiased=False)
            logits = self.logit_temp * (logits - mu) / (sd + 1e-5)
        spatial = torch.sigmoid(logits)
        v = fused.mean(dim=(2, 3))  # (B, C)
        channel = torch.sigmoid(self.channel_tokens.unsqueeze(0) * v.unsqueeze(1))  # (B, M, C)
        return spatial, channel


def masked_feature_losses(
    f_t: torch.Tensor,
    f_s: torch.Tensor,
    spatial: torch.Tensor,
    channel: torch.Tensor,
    normalize: str = 'paper',
    eps: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The spatial and channel mask-weighted feature distances (arXiv 2503.06307, Sec. 3.4).

    With ``D = F_T - F_S`` (``(B, C, H, W)``, ``N = HW`` positions, ``M`` masks), averaged over the batch:

    * ``normalize='paper'`` (default, the transcribed ``1/C`` and ``1/HW`` factors, reading the leading
      ``M_{m,k}`` as the mask that the Hadamard product applies):
      ``L^s = 1/M sum_m 1/C sum_p sum_k (M^s_{m,p} D_{k,p})^2`` and
      ``L^c = 1/M sum_m 1/N sum_k sum_p (M^c_{m,k} D_{k,p})^2``.
    * ``normalize='mask_mass'`` (MasKD's normalisation): each mask's term is divided by its mass
      ``sum_p M^s_{m,p}`` (resp. ``sum_k M^c_{m,k}``) as well.

    Args:
        f_t, f_s: ``(B, C, H, W)`` teacher and aligned student maps.
        spatial: ``(B, M, H * W)``; channel: ``(B, M, C)``.

    Returns:
        ``(L^s, L^c)``, two scalars.
    """
    if normalize not in ('paper', 'mask_mass'):
        raise ValueError(f"normalize must be 'paper' or 'mask_mass', got {normalize!r}")
    B, C, H, W = f_t.shape
    d2 = (f_t - f_s).pow(2).flatten(2)  # (B, C, N)
    per_pos = d2.sum(1)  # (B, N): sum over channels
    per_chan = d2.sum(2)  # (B, C): sum over positions
    ls = torch.einsum('bmn,bn->bm', spatial.pow(2), per_pos) / C
    lc = torch.einsum('bmc,bc->bm', channel.pow(2), per_chan) / (H * W)
    if normalize == 'mask_mass':
        ls = ls / (spatial.sum(-1) + eps)
        lc = lc / (channel.sum(-1) + eps)
    return ls.mean(), lc.mean()


def dice_diversity(masks: torch.Tensor, mode: str = 'pairwise', eps: float = 1e-12) -> torch.Tensor:
    """Dice overlap between different masks (arXiv 2503.06307, Sec. 3.4; MasKD, arXiv 2205.14589).

    Args:
        masks: ``(B, M, N)``.
        mode: ``'pairwise'`` (default, MasKD's form): the mean over the batch and the ``M (M - 1)`` ordered
            pairs ``i != j`` of ``2 <M_i, M_j> / (|M_i|^2 + |M_j|^2)``; each pair counts equally whatever
            the masks' mass. ``'global'``: the transcribed single ratio
            ``2 sum_i sum_{j != i} <M_i, M_j> / (sum_i |M_i|^2 + sum_j |M_j|^2)``, averaged over the batch.

    Returns:
        a scalar in ``[0, 1]`` for ``'pairwise'``; ``0`` when ``M == 1``.
    """
    B, M, _ = masks.shape
    if M < 2:
        return masks.sum() * 0.0
    inner = masks @ masks.transpose(1, 2)  # (B, M, M)
    sq = inner.diagonal(dim1=1, dim2=2)  # (B, M)
    off = ~torch.eye(M, dtype=torch.bool, device=masks.device)
    if mode == 'pairwise':
        dice = 2 * inner / (sq.unsqueeze(2) + sq.unsqueeze(1) + 2 * eps)
        return dice[:, off].mean()
    if mode == 'global':
        num = 2 * inner[:, off].sum(-1)
        return (num / (2 * sq.sum(-1) + eps)).mean()
    raise ValueError(f"mode must be 'pairwise' or 'global', got {mode!r}")


def mask_decorrelation(masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The mean over the batch and the ordered pairs ``i != j`` of the squared cosine between the centred masks
    ``M_i - mean_n M_i`` (our addition to the Dice term).

    Dice cannot tell ``M`` masks apart when each covers about half of the positions: for binary masks of mass
    ``N/2``, ``sum_{i<j} <M_i, M_j>`` only depends on how many masks cover each position, so
    ``{p, p, 1-p, 1-p}`` (two patterns, equal or complementary) scores the same pairwise Dice as four different
    halves. The squared cosine of the centred masks is 1 for an equal and for a complementary pair and 0 for
    unrelated patterns, so it penalises exactly that degenerate set.

    Args:
        masks: ``(B, M, N)``.

    Returns:
        a scalar in ``[0, 1]``; ``0`` when ``M == 1``.
    """
    B, M, _ = masks.shape
    if M < 2:
        return masks.sum() * 0.0
    c = masks - masks.mean(-1, keepdim=True)
    c = c / (c.norm(dim=-1, keepdim=True) + eps)
    cos = c @ c.transpose(1, 2)  # (B, M, M)
    off = ~torch.eye(M, dtype=torch.bool, device=masks.device)
    return cos[:, off].pow(2).mean()


def mask_contrast(masks: torch.Tensor, dist: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """How much of the student-teacher distance each mask selects: the objective the masks *ascend* under
    ``mask_grad='adversarial'``.

    ``dist`` is rescaled by its mean over the ``N`` entries, so the value does not depend on the feature
    scale, then each mask's squared weights select it, divided by the mask's mass (MasKD's normalisation):
    ``G = mean_{b,m} sum_n M_{m,n}^2 d_n / sum_n M_{m,n}`` with ``d = dist / mean_n dist``.
    A mask that covers everything scores 1 (up to the ``M^2``/``M`` ratio), one that keeps only the entries
    where the student is farthest from the teacher scores ``max d``; an empty mask scores 0, so ascending
    ``G`` holds masks up where the Dice term alone would switch them off.

    Args:
        masks: ``(B, M, N)`` in ``[0, 1]``.
        dist: ``(B, N)`` non-negative distances (treated as constants by the caller).

    Returns:
        a scalar.
    """
    d = dist / (dist.mean(-1, keepdim=True) + eps)  # (B, N)
    sel = torch.einsum('bmn,bn->bm', masks.pow(2), d)
    return (sel / (masks.sum(-1) + eps)).mean()


def mask_spatial_spread(masks: torch.Tensor) -> torch.Tensor:
    """``(B, M, N)`` -> the mean over the batch and masks of each mask's standard deviation over ``N``
    (0 for a mask that is constant over the image, saturated or not; at most 0.5 for values in [0, 1])."""
    return masks.std(-1, unbiased=False).mean()


@MODELS.register_module()
class ACAMKDLoss(nn.Module):
    """ACAM-KD at one distillation point: STCA-FF, ASCM masks, ``alpha (L^s + L^c) + lambda L_div``.

    One instance per point (every FPN level has its own fusion and masks, as MasKD keeps one mask module
    per level). The student map is aligned to the teacher's channels by a connector before this loss.

    Args:
        channels: ``C`` (teacher channels).
        num_masks: ``M``.
        alpha: weight of ``L^s + L^c``; lambda_div: weight of ``L_div`` (both 1 in the paper).
        qk_channels, detach_student: see ``STCAFusion``.
        channel_mask: see ``ASCMasks``; normalize: see ``masked_feature_losses``; dice: see ``dice_diversity``.
        diversity_on: which masks the diversity loss applies to (``'spatial'``, ``'channel'``; the paper's
            wording covers the masks in general, so both by default).
        diversity: ``'dice+decorrelation'`` (default): the paper's Dice term plus ``mask_decorrelation``
            (our addition: Dice alone is indifferent between ``M`` different half-image masks and masks that are
            equal or complementary, and on the tiny case they end that way); ``'dice'``: the paper's term alone.
        mask_norm: ``'standardize_logits'`` (default): ``ASCMasks(standardize=True, logit_temp=mask_temp)``,
            every spatial mask with zero-mean, unit-variance logits times ``mask_temp``; ``'standardize'``:
            ``ASCMasks(standardize=True)`` only (the previous default, whose logits grow until the masks are
            binary and the fused map collapses to one spatial pattern, measured); ``'none'``: the paper's
            ``sigmoid(m_s z)`` on the raw fused map, whose masks end constant over the image (measured).
        mask_temp: the logit scale of ``'standardize_logits'`` (3: a mask is 0.95 / 0.05 one standard
            deviation above / below its mean logit).
        mask_grad: ``'adversarial'`` (default): the distances that train the student see detached masks,
            and the fusion and the masks *ascend* ``mask_contrast`` (the share of the detached
            student-teacher distance that each mask selects, mass-normalised) while descending ``L_div``:
            the masks look for the regions where the student still differs from the teacher, and the Dice
            term spreads them over different regions. The student's features enter the fusion detached
            (they still shape the masks, but the ascent never trains the student). The term is added as
            ``G.detach() - G``: value 0, so the logged losses keep the paper's values, and the mask's
            ascent gradient is scaled by ``alpha``. ``'diversity_only'``: the distances see detached masks,
            and the masks learn from ``L_div`` alone, which is minimised by switching masks off; they end
            at about 0 or 1 everywhere (measured, docs/distillation.md). ``'joint'``: the total loss as
            written, where the distances also train the fusion and the masks: their gradient with respect
            to every mask weight is ``2 M D^2 >= 0``, so they pull every mask towards 0, and Dice is
            scale-invariant, so nothing holds the masks up. On the COCO fixture, the spatial mask mass fell
            from 0.49 to about 0.01 within 40 steps (docs/distillation.md).
        loss_weight: overall factor.

    ``forward(s_feature, t_feature)`` takes ``(B, C, H, W)`` maps and returns
    ``dict(spatial=, channel=, div=)`` (weighted scalars; the distiller sums them) and statistics, logged only:
    the mean mask values ``stat_spatial_mass``, ``stat_channel_mass``, the masks' mean spread over the image
    ``stat_spatial_std``, and under ``'adversarial'`` the contrast ``stat_contrast``.
    """

    def __init__(
        self,
        channels: int,
        num_masks: int = 6,
        alpha: float = 1.0,
        lambda_div: float = 1.0,
        qk_channels: int | None = None,
        detach_student: bool = False,
        channel_mask: str = 'elementwise',
        normalize: str = 'paper',
        dice: str = 'pairwise',
        diversity_on: tuple[str, ...] = ('spatial', 'channel'),
        diversity: str = 'dice+decorrelation',
        mask_grad: str = 'adversarial',
        mask_norm: str = 'standardize_logits',
        mask_temp: float = 3.0,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if mask_norm not in ('standardize_logits', 'standardize', 'none'):
            raise ValueError(f"mask_norm must be 'standardize_logits', 'standardize' or 'none', got {mask_norm!r}")
        if diversity not in ('dice+decorrelation', 'dice'):
            raise ValueError(f"diversity must be 'dice+decorrelation' or 'dice', got {diversity!r}")
        if mask_grad not in ('adversarial', 'joint', 'diversity_only'):
            raise ValueError(f"mask_grad must be 'adversarial', 'joint' or 'diversity_only', got {mask_grad!r}")
        self.fusion = STCAFusion(channels, qk_channels, detach_student or mask_grad == 'adversarial')
        self.masks = ASCMasks(
            channels,
            num_masks,
            channel_mask,
            standardize=mask_norm != 'none',
            logit_temp=mask_temp if mask_norm == 'standardize_logits' else None,
        )
        self.diversity = diversity
        self.alpha, self.lambda_div, self.loss_weight = alpha, lambda_div, loss_weight
        self.normalize, self.dice, self.mask_grad = normalize, dice, mask_grad
        self.diversity_on = tuple(diversity_on)
        self.last_masks: tuple[torch.Tensor, torch.Tensor] | None = None  # for visualisation

    def forward(self, s_feature: torch.Tensor, t_feature: torch.Tensor) -> dict[str, torch.Tensor]:
        t_feature = t_feature.detach()
        if s_feature.shape[-2:] != t_feature.shape[-2:]:
            raise ValueError(f'student map {tuple(s_feature.shape)} and teacher map {tuple(t_feature.shape)} differ')
        fused = self.fusion(t_feature, s_feature)
        spatial, channel = self.masks(fused)
        self.last_masks = (spatial.detach(), channel.detach())
        ws, wc = (spatial, channel) if self.mask_grad == 'joint' else (spatial.detach(), channel.detach())
        ls, lc = masked_feature_losses(t_feature, s_feature, ws, wc, self.normalize)
        div = fused.new_zeros(())
        for kind, m in (('spatial', spatial), ('channel', channel)):
            if kind in self.diversity_on:
                div = div + dice_diversity(m, self.dice)
                if self.diversity == 'dice+decorrelation':
                    div = div + mask_decorrelation(m)
        w = self.loss_weight
        out = dict(
            spatial=w * self.alpha * ls,
            channel=w * self.alpha * lc,
            div=w * self.lambda_div * div,
            # mask statistics, logged (not summed): the mean value (collapse towards 0) and each mask's spread
            # over the image (saturation to a constant map, which the mean cannot see)
            stat_spatial_mass=spatial.detach().mean(),
            stat_channel_mass=channel.detach().mean(),
            stat_spatial_std=mask_spatial_spread(spatial.detach()),
        )
        if self.mask_grad == 'adversarial':
            d2 = (t_feature - s_feature.detach()).pow(2).flatten(2)  # (B, C, N)
            g = mask_contrast(spatial, d2.sum(1)) + mask_contrast(channel, d2.sum(2))
            # value 0, gradient -alpha * dG: the masks ascend G; summed with the distances, so it is logged
            out['spatial'] = out['spatial'] + w * self.alpha * (g.detach() - g)
            out['stat_contrast'] = g.detach()
        return out
