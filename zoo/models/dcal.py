"""DCAL: Dual Cross-Attention Learning for fine-grained categorisation (FGVC) and object re-identification
(Zhu et al., CVPR 2022, arXiv:2205.02151), on timm's ``VisionTransformer``.

Three branches share one ViT:

* **SA**: the stock DeiT / ViT (timm keys, so timm's ImageNet weights load unchanged, position embedding
  resampled to the model's grid).
* **GLCA** (global-local cross-attention, :mod:`zoo.layers.cross_attention`): one extra block with its own
  weights (``glca.*``, timm ``Block`` layout), own final norm (``glca_norm``) and classifier (``glca_head``).
  Its queries are the class token plus the top ``R`` patches of the attention rollout
  (:mod:`zoo.layers.rollout`, class-token row over all SA blocks); keys and values are all tokens.
* **PWCA** (pair-wise cross-attention, training only): the SA blocks' own weights, image 1's queries attend
  over the keys and values of image 1 and of a partner image 2 under one softmax; it uses the SA
  classifier and image 1's label.

Choices the paper leaves open (reasons in ``docs/dcal.md``):

* GLCA runs **in parallel with the last SA block** (``glca_placement='parallel'``: input = the input of
  block ``L``, queries ranked by the rollout over blocks ``1..L``); ``'stacked'`` runs it after block ``L``.
  Both cost the same; the paper's ``Ŝ_i`` / ``Q_i`` of the same block ``i`` read as parallel.
* GLCA is initialised as a copy of the last SA block (and ``glca_norm`` / ``glca_head`` as copies of
  ``norm`` / ``head``), so every key of a timm ViT checkpoint is used and the model starts at two equal heads.
* ``R = round(ratio · N_patches)``; ``local_query_ratio`` 0.1 (FGVC) or 0.3 (Re-ID); the class token is
  always a query. Rollout: head mean, ``S̄ = 0.5 S + 0.5 I``.
* PWCA partners: a random derangement of the batch (no image is its own partner); the partner's keys and
  values are the ones its SA pass already computed, detached by default (``pwca_partner_grad``).
* Loss: Kendall / FairMOT uncertainty weighting, ``½ Σ (e^{-w_i} L_i + w_i)``, ``w_i`` learnable, init 0
  **[inferred: the paper only cites FairMOT]**. Re-ID: each branch CE + batch-hard triplet under one ``w_i``.

Outputs. ``model(x)``: FGVC: ``log(p_SA + p_GLCA)`` (``exp`` of it is the paper's sum of class
probabilities, its softmax their mean, same argmax); Re-ID (``task='reid'``): the concatenated SA and GLCA
class tokens ``(B, 2C)``. ``model(x, target)`` / :meth:`DCALMixin.forward_train`: every branch's logits and
embeddings plus the weighted loss (``'loss'``). :func:`wrap_dcal` turns any timm ViT with a class token
into a DCAL model in place.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from timm.layers import get_device_dtype
from timm.models import register_model
from timm.models._manipulate import checkpoint
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as vit_checkpoint_filter_fn
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from zoo.hub import build_model_with_weights, unwrap_state_dict, zoo_default_cfgs
from zoo.layers.agent_attention import AgentAttention
from zoo.layers.cross_attention import GLCABlock, block_forward, check_dcal_block
from zoo.layers.rollout import rollout_cls_row, select_local_queries

__all__ = [
    'DCALLoss',
    'DCALMixin',
    'DCALVisionTransformer',
    'PAPER_FACTS',
    'batch_hard_triplet_loss',
    'checkpoint_filter_fn',
    'sample_partners',
    'wrap_dcal',
]

BRANCHES = ('sa', 'glca', 'pwca')
_PLACEMENTS = ('parallel', 'stacked')
_TASKS = ('fgvc', 'reid')


def sample_partners(batch_size: int, device: torch.device | str | None = None, generator=None) -> torch.Tensor:
    """PWCA partner of each image: a uniformly shuffled batch without fixed points (``partner[b] != b``
    whenever ``batch_size > 1``; a batch of one is its own partner and PWCA then equals SA)."""
    perm = torch.randperm(batch_size, generator=generator)
    if batch_size > 1:
        fixed = (perm == torch.arange(batch_size)).nonzero().flatten()
        if len(fixed) == 1:  # swap with another position: both end up away from home
            f = int(fixed[0])
            j = int(torch.randint(batch_size - 1, (1,), generator=generator))
            j = j + (j >= f)
            perm[f], perm[j] = perm[j].clone(), perm[f].clone()
        elif len(fixed) > 1:  # rotate the fixed points among themselves
            perm[fixed] = fixed.roll(1)
    return perm.to(device) if device is not None else perm


def batch_hard_triplet_loss(emb: torch.Tensor, target: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al., 2017) on Euclidean distances of ``(B, D)`` embeddings.

    Anchors without a positive (another image of the same id) or without a negative are skipped; a
    batch with none left gives 0.
    """
    d = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    same = target.unsqueeze(1) == target.unsqueeze(0)
    eye = torch.eye(len(target), dtype=torch.bool, device=emb.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not valid.any():
        return emb.sum() * 0.0
    hardest_pos = d.masked_fill(~pos_mask, float('-inf')).amax(1)
    hardest_neg = d.masked_fill(~neg_mask, float('inf')).amin(1)
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hard labels ``(B,)`` or soft targets ``(B, K)`` (timm Mixup / CutMix)."""
    if target.ndim == logits.ndim and target.is_floating_point():
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


class DCALLoss(nn.Module):
    """Uncertainty-weighted multi-task loss over the DCAL branches (Kendall et al., CVPR 2018, as in FairMOT).

    ``L = ½ Σ_i (e^{-w_i} L_i + w_i)`` over the branches present in the outputs; ``w_i`` learnable
    (init ``init``). **[inferred]**: DCAL only says "We follow [FairMOT] to adopt dynamic loss weights".
    ``L_i`` is cross-entropy (FGVC) or cross-entropy + batch-hard triplet on the branch embedding (Re-ID,
    one ``w_i`` per branch for both terms).

    Args:
        branches: branch names, one weight each (``'sa'``, ``'glca'``, ``'pwca'``).
        init: initial ``w_i`` (0: every branch starts at weight ½).
        task: ``'fgvc'`` or ``'reid'``.
        triplet_margin: Re-ID triplet margin (None: CE only).
        label_smoothing: for hard-label CE.
    """

    def __init__(
        self,
        branches: tuple[str, ...] = BRANCHES,
        init: float = 0.0,
        task: str = 'fgvc',
        triplet_margin: float | None = 0.3,
        label_smoothing: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        unknown = [b for b in branches if b not in BRANCHES]
        if unknown or not branches:
            raise ValueError(f'DCALLoss branches must be a non-empty subset of {BRANCHES}, got {branches}')
        if task not in _TASKS:
            raise ValueError(f'task must be one of {_TASKS}, got {task!r}')
        self.branches = tuple(branches)
        self.task = task
        self.triplet_margin = triplet_margin
        self.label_smoothing = label_smoothing
        self.w = nn.Parameter(torch.full((len(self.branches),), float(init), **dd))

    def branch_loss(self, logits: torch.Tensor, emb: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
        loss = _cross_entropy(logits, target, self.label_smoothing)
        if self.task == 'reid' and self.triplet_margin is not None and emb is not None:
            loss = loss + batch_hard_triplet_loss(emb, target, self.triplet_margin)
        return loss

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``outputs``: ``logits_<branch>`` (and ``emb_<branch>``) per branch -> ``loss``, ``loss_<branch>``
        and the current weights ``weight_<branch> = e^{-w}`` (detached, for logging)."""
        present = [i for i, b in enumerate(self.branches) if f'logits_{b}' in outputs]
        if not present:
            raise ValueError(f'outputs hold no logits_<branch> for any of {self.branches}')
        out: dict[str, torch.Tensor] = {}
        total = 0.0
        for i in present:
            b = self.branches[i]
            li = self.branch_loss(outputs[f'logits_{b}'], outputs.get(f'emb_{b}'), target)
            total = total + torch.exp(-self.w[i]) * li + self.w[i]
            out[f'loss_{b}'] = li.detach()
            out[f'weight_{b}'] = torch.exp(-self.w[i]).detach()
        out['loss'] = 0.5 * total
        return out


class DCALMixin:
    """The DCAL branches on top of a timm ``VisionTransformer`` (mixed in before it; see
    :class:`DCALVisionTransformer` and :func:`wrap_dcal`). Adds ``glca``, ``glca_norm``, ``glca_head`` and
    ``dcal_loss``; the ViT's own modules and keys are untouched."""

    def _init_dcal(
        self,
        use_glca: bool = True,
        local_query_ratio: float = 0.1,
        glca_placement: str = 'parallel',
        task: str = 'fgvc',
        pwca_partner_grad: bool = False,
        loss_weight_init: float = 0.0,
        rollout_residual: float = 0.5,
        triplet_margin: float | None = 0.3,
    ) -> None:
        if glca_placement not in _PLACEMENTS:
            raise ValueError(f'glca_placement must be one of {_PLACEMENTS}, got {glca_placement!r}')
        if task not in _TASKS:
            raise ValueError(f'task must be one of {_TASKS}, got {task!r}')
        if not 0.0 < local_query_ratio <= 1.0:
            raise ValueError(f'local_query_ratio must be in (0, 1], got {local_query_ratio}')
        if getattr(self, 'cls_token', None) is None:
            raise ValueError(f'DCAL needs a class token; {type(self).__name__} has class_token=False')
        if getattr(self, 'attn_pool', None) is not None:
            raise ValueError(
                f'DCAL reads the class token; global_pool={self.global_pool!r} (attention pooling) is not supported'
            )
        for i, blk in enumerate(self.blocks):
            check_dcal_block(blk, f'blocks.{i}')
        self.task = task
        self.local_query_ratio = float(local_query_ratio)
        self.glca_placement = glca_placement
        self.pwca_partner_grad = pwca_partner_grad
        self.rollout_residual = float(rollout_residual)
        if use_glca:
            # GLCA starts as a copy of the last SA block, its norm and head (docs/dcal.md, choice 7)
            self.glca = GLCABlock.from_block(self.blocks[-1])
            self.glca_norm = copy.deepcopy(self.norm if not isinstance(self.norm, nn.Identity) else self.fc_norm)
            self.glca_head = copy.deepcopy(self.head)
        else:
            self.glca = self.glca_norm = self.glca_head = None
        branches = BRANCHES if use_glca else ('sa', 'pwca')
        self.dcal_loss = DCALLoss(
            branches, init=loss_weight_init, task=task, triplet_margin=triplet_margin, **get_device_dtype(self)
        )
        self.set_inference_branches(*(('sa', 'glca') if use_glca else ('sa',)))

    # ---------------------------------------------------------------- configuration
    def set_inference_branches(self, *branches: str) -> None:
        """Which classifiers ``model(x)`` uses: ``('sa', 'glca')`` (the paper's default), ``('sa',)`` (the plain
        ViT: same output and cost as without DCAL) or ``('glca',)`` (the supplement's variants)."""
        allowed = ('sa', 'glca') if self.glca is not None else ('sa',)
        if not branches or any(b not in allowed for b in branches) or len(set(branches)) != len(branches):
            raise ValueError(f'inference branches must be a non-empty subset of {allowed}, got {branches}')
        self.inference_branches = tuple(b for b in ('sa', 'glca') if b in branches)
        self.head_hidden_size = self.embed_dim * len(self.inference_branches)

    def _glca_active(self) -> bool:
        return self.glca is not None and 'glca' in self.inference_branches

    # ---------------------------------------------------------------- timm API
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set(super().no_weight_decay()) | {'dcal_loss.w'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        matcher = dict(super().group_matcher(coarse))
        # the GLCA block and norm sit with the last block; glca_head is a classifier like head (the last group)
        matcher['blocks'] = [(r'^blocks\.(\d+)', None), (r'^norm|^glca\.|^glca_norm|^dcal_loss', (99999,))]
        return matcher

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        super().reset_classifier(num_classes, global_pool)
        if getattr(self, 'glca_head', None) is not None:
            self.glca_head = copy.deepcopy(self.head)  # a fresh Linear like head (or Identity)
            if isinstance(self.glca_head, nn.Linear):
                self.glca_head.reset_parameters()

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """As the ViT's; GLCA belongs to the last block and the heads, so it is removed too."""
        self.glca = self.glca_norm = self.glca_head = None
        self.set_inference_branches('sa')
        return super().prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=prune_head)

    # ---------------------------------------------------------------- internals
    def _embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> block-0 input tokens, exactly the backbone's route."""
        if hasattr(self, '_embed'):  # zoo Agent-DeiT: tokens + grid (its blocks learn the grid here)
            return self._embed(x)[0]
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        return self.norm_pre(x)

    def _run_block(
        self,
        blk: nn.Module,
        x: torch.Tensor,
        partner_kv=None,
        need_map: bool = False,
        map_rows: int | None = None,
        map_out: torch.Tensor | None = None,
    ):
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(block_forward, blk, x, partner_kv, need_map, map_rows)
        return block_forward(blk, x, partner_kv, need_map, map_rows, map_out)

    def _sa_stream(self, x: torch.Tensor, need_maps: bool, keep_kv: bool = False):
        """SA blocks; returns the last block's output, the per-block maps, keys / values (``keep_kv``, for PWCA;
        else an empty list) and the last block's input.

        The class-token rollout uses only the class-token row of the last block's map, so that block returns
        that row alone ``(B, 1, N)`` and keeps the fused attention kernel. Without autograd the other blocks write
        their maps into :meth:`_rollout_buffer`. Eval keeps no keys / values: each block's would hold its whole
        ``qkv`` output alive through the stream, and the MLP's fresh activations then land in new pages.
        """
        maps, kvs = [], []
        last_in = x
        depth = len(self.blocks)
        # slots in the kept map storage for blocks 1..L-1 with softmax attention (agent attention makes its own)
        slots = {
            i: n
            for n, i in enumerate(i for i in range(depth - 1) if not isinstance(self.blocks[i].attn, AgentAttention))
        }
        buf = None
        traced = torch.compiler.is_compiling() or is_fx_symbolic_tracing()  # graphs keep no state between calls
        if need_maps and not torch.is_grad_enabled() and slots and not traced:
            buf = self._rollout_buffer(len(slots), x)
        for i, blk in enumerate(self.blocks):
            last = i == depth - 1
            if last:
                last_in = x
            map_out = None if buf is None or i not in slots else buf[slots[i]]
            x, amap, kv = self._run_block(blk, x, None, need_maps, 1 if last else None, map_out)
            maps.append(amap)
            if keep_kv:
                kvs.append(kv)
            del kv
        return x, maps, kvs, last_in

    def _rollout_buffer(self, num_maps: int, x: torch.Tensor) -> torch.Tensor:
        """``(num_maps, B, N, N)`` storage for the eval maps of one forward, kept between calls of the same shape.

        A new buffer of this size (217 MB for DeiT-T at 448², batch 8) comes from fresh pages on every call, and
        first touching them cost ~85 ms per forward on CPU, about 5 % of the model. Holding it costs that memory
        between calls; :meth:`release_rollout_buffer` frees it.
        """
        shape = (num_maps, x.shape[0], x.shape[1], x.shape[1])
        buf = getattr(self, '_rollout_maps', None)
        if buf is None or buf.shape != shape or buf.dtype != x.dtype or buf.device != x.device:
            self._rollout_maps = None  # free the old one before allocating
            buf = self._rollout_maps = x.new_empty(shape)
        return buf

    def release_rollout_buffer(self) -> None:
        """Free the map storage :meth:`_rollout_buffer` keeps between eval calls."""
        self._rollout_maps = None

    def _glca_tokens(self, last_in: torch.Tensor, out: torch.Tensor, maps: list[torch.Tensor]):
        """GLCA block output for the class token + top-R rollout tokens: ``((B, 1 + R, C), indices, rollout)``."""
        scores = rollout_cls_row(maps, residual=self.rollout_residual)
        idx = select_local_queries(scores, self.local_query_ratio, self.num_prefix_tokens)
        g_in = last_in if self.glca_placement == 'parallel' else out
        return self.glca(g_in, idx), idx, scores

    def _sa_pre_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """The ViT's own pooling / fc_norm / head dropout on normed SA tokens."""
        return super().forward_head(tokens, pre_logits=True)

    @staticmethod
    def fuse_logits(logits: list[torch.Tensor]) -> torch.Tensor:
        """One branch: its logits. Several: ``log Σ_b softmax(logits_b)`` (the paper's probability sum, in logs)."""
        if len(logits) == 1:
            return logits[0]
        return torch.logsumexp(torch.stack([F.log_softmax(z, dim=-1) for z in logits]), dim=0)

    # ---------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> normed tokens. Without GLCA in the inference branches: the ViT's
        ``(B, P + N, C)``. With it: those tokens plus the GLCA class token at the end, ``(B, P + N + 1, C)``."""
        if not self._glca_active():
            return super().forward_features(x)
        t = self._embed_tokens(x)
        out, maps, _, last_in = self._sa_stream(t, need_maps=True)
        g, _, _ = self._glca_tokens(last_in, out, maps)
        return torch.cat([self.norm(out), self.glca_norm(g[:, :1])], dim=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens of :meth:`forward_features` -> fused logits, or with ``pre_logits`` (or no classifier) the
        concatenated embeddings of the inference branches ``(B, head_hidden_size)``."""
        if not self._glca_active():
            return super().forward_head(x, pre_logits=pre_logits)
        embs, heads = [], []
        if 'sa' in self.inference_branches:
            embs.append(self._sa_pre_logits(x[:, :-1]))
            heads.append(self.head)
        embs.append(self.head_drop(x[:, -1]))
        heads.append(self.glca_head)
        if pre_logits or self.num_classes == 0:
            return torch.cat(embs, dim=-1)
        return self.fuse_logits([h(e) for h, e in zip(heads, embs)])

    def forward(
        self, x: torch.Tensor, target: torch.Tensor | None = None, partner_idx: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """``model(x)``: FGVC fused logits / Re-ID embedding. ``model(x, target)``: :meth:`forward_train`
        (so DDP-wrapped training goes through ``forward``). FX traces the inference route: ``target`` is then a
        graph placeholder, not a value, and a traced graph ignores it."""
        if target is not None and not is_fx_symbolic_tracing():
            return self.forward_train(x, target, partner_idx)
        return self.forward_head(self.forward_features(x), pre_logits=self.task == 'reid')

    def forward_branches(
        self, x: torch.Tensor, partner_idx: torch.Tensor | None = None, pwca: bool = True
    ) -> dict[str, torch.Tensor]:
        """Every branch, as in training.

        Args:
            x: ``(B, 3, H, W)``.
            partner_idx: ``(B,)`` PWCA partner of each image (default :func:`sample_partners`).
            pwca: run the PWCA branch.

        Returns:
            ``logits_sa``, ``emb_sa`` (SA pre-logits ``(B, C)``), ``logits_glca``, ``emb_glca``,
            ``query_idx`` (``(B, 1 + R)``), ``rollout`` (``(B, P + N)``) when GLCA exists, and
            ``logits_pwca``, ``emb_pwca``, ``partner_idx`` with PWCA.
        """
        t = self._embed_tokens(x)
        use_glca = self.glca is not None
        out, maps, kvs, last_in = self._sa_stream(t, need_maps=use_glca, keep_kv=pwca)
        res: dict[str, torch.Tensor] = {}
        res['emb_sa'] = self._sa_pre_logits(self.norm(out))
        res['logits_sa'] = self.head(res['emb_sa'])
        if use_glca:
            g, idx, scores = self._glca_tokens(last_in, out, maps)
            res['emb_glca'] = self.head_drop(self.glca_norm(g[:, 0]))
            res['logits_glca'] = self.glca_head(res['emb_glca'])
            res['query_idx'], res['rollout'] = idx, scores
        if pwca:
            B = x.shape[0]
            if partner_idx is None:
                partner_idx = sample_partners(B, device=x.device)
            elif partner_idx.shape != (B,):
                raise ValueError(f'partner_idx must have shape ({B},), got {tuple(partner_idx.shape)}')
            p = t
            for blk, (k, v) in zip(self.blocks, kvs):
                k2, v2 = k[partner_idx], v[partner_idx]
                if not self.pwca_partner_grad:
                    k2, v2 = k2.detach(), v2.detach()
                p, _, _ = self._run_block(blk, p, partner_kv=(k2, v2))
            res['emb_pwca'] = self._sa_pre_logits(self.norm(p))
            res['logits_pwca'] = self.head(res['emb_pwca'])
            res['partner_idx'] = partner_idx
        return res

    def forward_train(
        self, x: torch.Tensor, target: torch.Tensor, partner_idx: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """:meth:`forward_branches` plus :class:`DCALLoss`: ``loss`` (to backpropagate), ``loss_<branch>``,
        ``weight_<branch>`` and the branch outputs."""
        if self.num_classes == 0:
            raise ValueError('forward_train needs classifiers: the model was built or reset with num_classes=0')
        res = self.forward_branches(x, partner_idx=partner_idx, pwca=True)
        res.update(self.dcal_loss(res, target))
        return res


class DCALVisionTransformer(DCALMixin, VisionTransformer):
    """timm ``VisionTransformer`` with DCAL's GLCA and PWCA branches.

    Args:
        use_glca: build the GLCA block (False: SA + PWCA only, e.g. the paper's Swin-T setting).
        local_query_ratio: share ``R`` of patch tokens used as GLCA queries (0.1 FGVC, 0.3 Re-ID).
        glca_placement: ``'parallel'`` (input of the last block) or ``'stacked'`` (its output).
        task: ``'fgvc'`` (fused class probabilities) or ``'reid'`` (concatenated class tokens, triplet loss).
        pwca_partner_grad: let the PWCA loss reach the partner's keys / values.
        loss_weight_init: initial uncertainty weights ``w_i``.
        rollout_residual: identity weight in ``S̄ = (1 - a) S + a I``.
        triplet_margin: Re-ID triplet margin (None: CE only).
        **kwargs: ``VisionTransformer`` arguments (``img_size=(256, 128)`` etc.).
    """

    def __init__(
        self,
        *,
        use_glca: bool = True,
        local_query_ratio: float = 0.1,
        glca_placement: str = 'parallel',
        task: str = 'fgvc',
        pwca_partner_grad: bool = False,
        loss_weight_init: float = 0.0,
        rollout_residual: float = 0.5,
        triplet_margin: float | None = 0.3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs, device=device, dtype=dtype)
        self._init_dcal(
            use_glca=use_glca,
            local_query_ratio=local_query_ratio,
            glca_placement=glca_placement,
            task=task,
            pwca_partner_grad=pwca_partner_grad,
            loss_weight_init=loss_weight_init,
            rollout_residual=rollout_residual,
            triplet_margin=triplet_margin,
        )


_WRAPPED_CLASSES: dict[type, type] = {VisionTransformer: DCALVisionTransformer}


def _dcal_class(base: type) -> type:
    """``DCALMixin`` over ``base``, made once per base class (what :func:`wrap_dcal` turns a model into)."""
    cls = _WRAPPED_CLASSES.get(base)
    if cls is None:
        cls = type(
            f'DCAL{base.__name__}',
            (DCALMixin, base),
            {'__module__': __name__, '__doc__': DCALMixin.__doc__, '__reduce_ex__': _reduce_wrapped},
        )
        _WRAPPED_CLASSES[base] = cls
    return cls


def _new_wrapped(base: type) -> nn.Module:
    cls = _dcal_class(base)
    return cls.__new__(cls)


def _reduce_wrapped(self: nn.Module, protocol: int):
    """Pickle / deepcopy a wrapped model through its base class (the DCAL class is made at run time)."""
    return _new_wrapped, (type(self).__bases__[1],), self.__getstate__()


def wrap_dcal(model: nn.Module, **dcal_kwargs) -> nn.Module:
    """Add DCAL's branches to an existing timm ViT in place (its weights and keys stay) and return it.

    Any ``timm.models.vision_transformer.VisionTransformer`` (or subclass) with a class token and timm
    ``Block`` layers works, e.g. ``wrap_dcal(timm.create_model('vit_small_patch16_224', pretrained=True),
    local_query_ratio=0.3, task='reid')``, and so does the zoo's Agent-DeiT (``agent_deit_small``: rollout
    through the agent attention maps, PWCA through the agents, GLCA a softmax block initialised from the
    last agent block's shared weights). GLCA is initialised from the (pretrained) last block.
    ``dcal_kwargs`` are those of :class:`DCALVisionTransformer`.
    """
    if isinstance(model, DCALMixin):
        raise ValueError(f'{type(model).__name__} is already a DCAL model')
    if not isinstance(model, VisionTransformer) and not hasattr(model, '_embed'):
        raise TypeError(
            f'wrap_dcal needs a timm VisionTransformer or the zoo Agent-DeiT (token sequence, class token, '
            f'pre-norm blocks); got {type(model).__name__}'
        )
    base = type(model)
    model.__class__ = _dcal_class(base)
    try:
        model._init_dcal(**dcal_kwargs)
    except Exception:
        model.__class__ = base
        raise
    return model


def checkpoint_filter_fn(state_dict: dict, model: DCALMixin) -> dict[str, torch.Tensor]:
    """A timm / official DeiT or ViT checkpoint (raw, ``{'model': ...}`` or ``{'state_dict': ...}``) -> DCAL keys.

    The ViT part goes through timm's own filter (position embedding resampled to the model's grid, patch
    embedding adapted). A checkpoint without GLCA keys gets them from its last block (``glca.*``), final
    norm (``glca_norm.*``) and head (``glca_head.*``); the loss weights take the model's initial values.
    A DCAL checkpoint passes through with only the ViT adaptation.
    """
    state_dict = unwrap_state_dict(state_dict)
    state_dict = {k: v for k, v in state_dict.items() if k != 'dist_token' and not k.startswith('head_dist.')}
    out = vit_checkpoint_filter_fn(state_dict, model)
    if model.glca is not None and not any(k.startswith('glca.') for k in out):
        last = f'blocks.{len(model.blocks) - 1}.'
        if not any(k.startswith(last) for k in out):
            raise KeyError(f'checkpoint has no {last}* keys to initialise GLCA from (model depth {len(model.blocks)})')
        norm = 'norm.' if any(k.startswith('norm.') for k in out) else 'fc_norm.'
        for k, v in list(out.items()):
            if k.startswith(last):
                out['glca.' + k[len(last) :]] = v.clone()
            elif k.startswith(norm):
                out['glca_norm.' + k[len(norm) :]] = v.clone()
            elif k.startswith('head.'):
                out['glca_' + k] = v.clone()
    for k, v in model.dcal_loss.state_dict().items():
        out.setdefault(f'dcal_loss.{k}', v.detach().clone())
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> DCALVisionTransformer:
    out_indices = kwargs.pop('out_indices', 3)
    if kwargs.get('features_only') and kwargs.get('feature_cls') == 'fx':
        # the GLCA inference route runs the SA blocks through block_forward (which also returns the maps for
        # rollout), so no graph node is a block's output: an FX extractor would return the MLP output instead
        raise ValueError("DCAL: feature_cls='fx' is not supported (blocks run as functions); use the default 'getter'")
    return build_model_with_weights(
        DCALVisionTransformer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(hf_hub_id: str, **kwargs) -> dict:
    return {
        'hf_hub_id': hf_hub_id,
        'num_classes': 1000,
        'input_size': (3, 448, 448),
        'pool_size': None,
        'crop_pct': 448 / 550,  # paper: resize 550, crop 448
        'interpolation': 'bicubic',
        'fixed_input_size': True,
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj',
        'classifier': ('head', 'glca_head'),
        'license': 'apache-2.0',
        'paper_ids': 'arXiv:2205.02151',
        'paper_name': (
            'Dual Cross-Attention Learning for Fine-Grained Visual Categorization and Object Re-Identification'
        ),
        'origin_url': 'https://huggingface.co/' + hf_hub_id,
        **kwargs,
    }


# DCAL paper (Zhu et al., CVPR 2022, arXiv 2205.02151): CUB-200-2011 top-1 at 448 from its Table 1, read from the
# markdown transcription mossbee/final_dcal dual_cross_attention_learning.md (not checked against the PDF), and the
# +9% params / +2% FLOPs overheads stated in the paper's text for DeiT-T at 448. Kept under cub_* keys: the zoo's
# generic 'top1' is ImageNet. No absolute parameter counts and no DCAL weights were published.
_SRC = 'arXiv:2205.02151 Table 1 (CUB-200-2011, 448x448)'
PAPER_FACTS: dict[str, dict] = {
    'dcal_deit_tiny_patch16_448': dict(
        cub_top1=84.6, cub_baseline_top1=82.1, img_size=448, params_overhead=0.09, flops_overhead=0.02, source=_SRC
    ),
    'dcal_deit_small_patch16_448': dict(cub_top1=87.6, cub_baseline_top1=85.8, img_size=448, source=_SRC),
    'dcal_deit_base_patch16_448': dict(cub_top1=88.8, cub_baseline_top1=88.0, img_size=448, source=_SRC),
    'dcal_vit_base_patch16_448': dict(cub_top1=91.4, cub_baseline_top1=90.8, img_size=448, source=_SRC),
}

# The SA branch's ImageNet weights are timm's own (no DCAL checkpoint was ever published); GLCA is filled from
# the last block by checkpoint_filter_fn. ViT-B/16 IN-21k: timm's augreg_in21k weights (docs/dcal.md, choice 8).
default_cfgs = zoo_default_cfgs(
    {
        'dcal_deit_tiny_patch16_448.fb_in1k': _cfg('timm/deit_tiny_patch16_224.fb_in1k'),
        'dcal_deit_small_patch16_448.fb_in1k': _cfg('timm/deit_small_patch16_224.fb_in1k'),
        'dcal_deit_base_patch16_448.fb_in1k': _cfg('timm/deit_base_patch16_224.fb_in1k'),
        'dcal_vit_base_patch16_448.augreg_in21k': _cfg(
            'timm/vit_base_patch16_224.augreg_in21k',
            num_classes=21843,
            mean=IMAGENET_INCEPTION_MEAN,
            std=IMAGENET_INCEPTION_STD,
        ),
    },
    paper=PAPER_FACTS,
)

_ARCH = {
    'tiny': dict(embed_dim=192, depth=12, num_heads=3),
    'small': dict(embed_dim=384, depth=12, num_heads=6),
    'base': dict(embed_dim=768, depth=12, num_heads=12),
}


def _model(variant: str, size: str, pretrained: bool, kwargs: dict) -> DCALVisionTransformer:
    args = dict(img_size=448, patch_size=16, local_query_ratio=0.1, **_ARCH[size])
    return _create(variant, pretrained, **{**args, **kwargs})


@register_model
def dcal_deit_tiny_patch16_448(pretrained: bool = False, **kwargs) -> DCALVisionTransformer:
    """DCAL on DeiT-T/16 at 448 (R = 10 %); SA weights: timm ``deit_tiny_patch16_224.fb_in1k``."""
    return _model('dcal_deit_tiny_patch16_448', 'tiny', pretrained, kwargs)


@register_model
def dcal_deit_small_patch16_448(pretrained: bool = False, **kwargs) -> DCALVisionTransformer:
    """DCAL on DeiT-S/16 at 448 (R = 10 %); SA weights: timm ``deit_small_patch16_224.fb_in1k``."""
    return _model('dcal_deit_small_patch16_448', 'small', pretrained, kwargs)


@register_model
def dcal_deit_base_patch16_448(pretrained: bool = False, **kwargs) -> DCALVisionTransformer:
    """DCAL on DeiT-B/16 at 448 (R = 10 %); SA weights: timm ``deit_base_patch16_224.fb_in1k``."""
    return _model('dcal_deit_base_patch16_448', 'base', pretrained, kwargs)


@register_model
def dcal_vit_base_patch16_448(pretrained: bool = False, **kwargs) -> DCALVisionTransformer:
    """DCAL on ViT-B/16 at 448 (R = 10 %); SA weights: timm ``vit_base_patch16_224.augreg_in21k`` (IN-21k)."""
    return _model('dcal_vit_base_patch16_448', 'base', pretrained, kwargs)
