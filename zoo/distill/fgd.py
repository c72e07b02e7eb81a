"""Fine-grained distillation (FGD) for QSD-Transformer from an ANN teacher (QSD, arXiv:2501.13492).

The paper aligns the distribution of the quantised spike-driven self-attention (Q-SDSA) with that
of the full-precision ANN's self-attention; the released code has no FGD (no teacher arguments), so
the exact tensors, loss and weights are not known. Choices made here (also in docs/qsd_transformer.md):

1. **What is aligned.** Per student Q-SDSA block, the token-similarity (Gram) matrices of the query
   and key spikes, ``G = norm(X) norm(X)^T`` over tokens (``(B, N, N)``, rows L2-normalised over
   channels, spikes averaged over ``T``). Token-by-token similarity is independent of channel counts
   and head layout, so any teacher with a spatial token grid works, and matching it transfers the
   attention pattern ``softmax(q k^T)`` is built from (as Q-ViT's distribution-guided distillation,
   which QSD's FGD resembles).
2. **Teacher tensors.** ViT-style timm teachers (``blocks[i].attn.qkv``): their query and key tokens
   (prefix / class tokens dropped). Any other timm model: its ``forward_intermediates`` maps (the same
   map stands for both q and k). Teacher grids are average-pooled to the student's token grid.
3. **Layer mapping.** Student attention blocks (block3 then block4) are mapped to teacher layers spaced
   evenly over the teacher's depth (first to first, last to last), unless ``teacher_layers`` is given.
4. **Loss.** ``L = CE(student, y) + fgd_weight * mean_blocks mean_{q,k} MSE(G_S, G_T)``
   ``+ kd_weight * KL(softmax(z_T / tau) || softmax(z_S / tau)) * tau^2`` (logit KD off by default).
   The teacher is frozen and in eval mode.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel

from zoo.engine.classifier import labels_of
from zoo.registry import MODELS

__all__ = ['FGDDistiller', 'token_gram']


def token_gram(x: torch.Tensor) -> torch.Tensor:
    """``(B, N, C)`` tokens -> ``(B, N, N)`` cosine similarities between tokens."""
    x = F.normalize(x.float(), dim=-1, eps=1e-6)
    return x @ x.transpose(1, 2)


def _grid_tokens(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """``(B, C, H, W)`` -> tokens ``(B, h * w, C)`` after average-pooling to the target grid ``hw``."""
    if tuple(x.shape[-2:]) != tuple(hw):
        x = F.adaptive_avg_pool2d(x, hw)
    return x.flatten(2).transpose(1, 2)


@MODELS.register_module()
class FGDDistiller(BaseModel):
    """Cross-entropy training of a spiking student with FGD from an ANN teacher.

    Args:
        student: ``dict(model_name=..., model_kwargs=dict(...))`` for ``timm.create_model`` (a zoo spiking
            model: ``qsd_transformer_*`` / ``meta_spikeformer_*``).
        teacher: the same for the ANN teacher (any timm model); ``model_kwargs`` may load weights with
            ``pretrained=True, pretrained_cfg_overlay=dict(file=PATH)``.
        fgd_weight: weight of the attention-distribution loss.
        kd_weight, tau: optional soft-logit distillation (0 disables it).
        teacher_layers: teacher block / intermediate indices, one per student attention block.
        label_smoothing: for the cross-entropy.

    Batches: ``dict(inputs=(B, 3, H, W), data_samples=dict(gt_label=(B,)))`` as for ``TimmClassifier``.
    ``mode='loss'`` returns ``dict(loss_ce, loss_fgd[, loss_kd])``.
    """

    def __init__(
        self,
        student: dict,
        teacher: dict,
        fgd_weight: float = 1.0,
        kd_weight: float = 0.0,
        tau: float = 1.0,
        teacher_layers: list[int] | None = None,
        label_smoothing: float = 0.0,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        import zoo  # noqa: F401  (registers the zoo models)
        from zoo.models.qsd_transformer import SpikeDrivenSelfAttention

        self.backbone = timm.create_model(student['model_name'], **dict(student.get('model_kwargs') or {}))
        self.teacher = timm.create_model(teacher['model_name'], **dict(teacher.get('model_kwargs') or {}))
        self.teacher.eval().requires_grad_(False)
        self.fgd_weight, self.kd_weight, self.tau = fgd_weight, kd_weight, tau
        self.label_smoothing = label_smoothing

        self._attn = [m for m in self.backbone.modules() if isinstance(m, SpikeDrivenSelfAttention)]
        if not self._attn:
            raise ValueError(f"student.model_name '{student['model_name']}' has no spike-driven attention")
        self._student_qk: dict[int, dict[str, torch.Tensor]] = {}

        blocks = getattr(self.teacher, 'blocks', None)
        self._teacher_is_vit = blocks is not None and all(hasattr(b, 'attn') and hasattr(b.attn, 'qkv') for b in blocks)
        depth = len(blocks) if self._teacher_is_vit else len(self.teacher.feature_info)
        n = len(self._attn)
        if teacher_layers is None:
            teacher_layers = [round(i * (depth - 1) / max(n - 1, 1)) for i in range(n)]
        if len(teacher_layers) != n or not all(0 <= i < depth for i in teacher_layers):
            raise ValueError(f'teacher_layers must list {n} indices in [0, {depth}), got {teacher_layers}')
        self.teacher_layers = list(teacher_layers)
        self._teacher_qk: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if self._teacher_is_vit:
            for i in sorted(set(self.teacher_layers)):
                blocks[i].attn.qkv.register_forward_hook(self._teacher_hook(i, blocks[i].attn))

    # -- hooks -----------------------------------------------------------------------------------
    def _teacher_hook(self, idx: int, attn: nn.Module):
        def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            B, N, C3 = out.shape
            q, k, _ = out.reshape(B, N, 3, C3 // 3).unbind(2)
            self._teacher_qk[idx] = (q, k)

        return hook

    def _capture_student(self) -> list:
        """Hooks storing the q / k spikes of every attention block for this forward."""
        self._student_qk = {i: {} for i in range(len(self._attn))}
        handles = []
        for i, a in enumerate(self._attn):
            for tag, lif in (('q', a.q_lif), ('k', a.k_lif)):
                handles.append(
                    lif.register_forward_hook(
                        lambda m, inp, out, i=i, tag=tag: self._student_qk[i].__setitem__(tag, out)
                    )
                )
        return handles

    # -- loss ------------------------------------------------------------------------------------
    def _student_grams(self, T: int) -> list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]:
        out = []
        for i in range(len(self._attn)):
            q, k = self._student_qk[i]['q'], self._student_qk[i]['k']  # (T * B, C, h, w) spikes
            hw = tuple(q.shape[-2:])
            qs = q.unflatten(0, (T, -1)).mean(0).flatten(2).transpose(1, 2)
            ks = k.unflatten(0, (T, -1)).mean(0).flatten(2).transpose(1, 2)
            out.append((token_gram(qs), token_gram(ks), hw))
        return out

    def _teacher_tokens(self, x: torch.Tensor, hw_list: list[tuple[int, int]]) -> tuple[list, torch.Tensor]:
        with torch.no_grad():
            if self._teacher_is_vit:
                self._teacher_qk.clear()
                logits = self.teacher(x)
                npre = getattr(self.teacher, 'num_prefix_tokens', 0)
                res = []
                for idx, hw in zip(self.teacher_layers, hw_list):
                    q, k = self._teacher_qk[idx]
                    q, k = q[:, npre:], k[:, npre:]
                    side = int(round(q.shape[1] ** 0.5))  # square token grid
                    res.append(
                        tuple(_grid_tokens(t.transpose(1, 2).reshape(t.shape[0], -1, side, side), hw) for t in (q, k))
                    )
            else:
                final, feats = self.teacher.forward_intermediates(x, indices=sorted(set(self.teacher_layers)))
                logits = self.teacher.forward_head(final)
                by_idx = dict(zip(sorted(set(self.teacher_layers)), feats))
                res = []
                for idx, hw in zip(self.teacher_layers, hw_list):
                    t = _grid_tokens(by_idx[idx], hw)
                    res.append((t, t))
        return res, logits

    def loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        handles = self._capture_student()
        try:
            logits = self.backbone(inputs)
        finally:
            for h in handles:
                h.remove()
        losses = dict(loss_ce=F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing))
        grams = self._student_grams(getattr(self.backbone, 'T', 1))
        teacher, t_logits = self._teacher_tokens(inputs, [g[2] for g in grams])
        fgd = 0.0
        for (gq, gk, _), (tq, tk) in zip(grams, teacher):
            fgd = fgd + F.mse_loss(gq, token_gram(tq)) + F.mse_loss(gk, token_gram(tk))
        losses['loss_fgd'] = self.fgd_weight * fgd / (2 * len(grams))
        if self.kd_weight > 0 and t_logits.shape == logits.shape:
            kd = (
                F.kl_div(
                    F.log_softmax(logits / self.tau, 1),
                    F.softmax(t_logits.float() / self.tau, 1),
                    reduction='batchmean',
                )
                * self.tau**2
            )
            losses['loss_kd'] = self.kd_weight * kd
        self._student_qk = {}
        return losses

    def train(self, mode: bool = True) -> FGDDistiller:
        super().train(mode)
        self.teacher.eval()  # the teacher stays in eval mode (BN statistics, dropout)
        return self

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The student's own keys (what ``pretrained_cfg_overlay=dict(file=...)`` loads)."""
        return self.backbone.state_dict()

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = 'tensor') -> Any:
        if mode == 'loss':
            return self.loss(inputs, labels_of(data_samples, inputs.device))
        logits = self.backbone(inputs)
        if mode == 'tensor':
            return logits
        if mode == 'predict':
            labels = labels_of(data_samples, logits.device)
            scores = logits.float().softmax(dim=1)
            return [dict(pred_score=s, gt_label=lab) for s, lab in zip(scores, labels)]
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
