"""QSD-Transformer's fine-grained distillation (QSD, arXiv 2501.13492) as a loss of the one distiller.

The same computation as ``zoo.distill.fgd.FGDDistiller`` (its docstring and docs/qsd_transformer.md give the
choices): the token-similarity (Gram) matrices of a student Q-SDSA block's query and key spikes are matched
to the teacher's query and key tokens with an MSE. Named ``QSDFineGrainedLoss`` to keep it apart from the
focal-and-global FGD of detectors (``FocalGlobalLoss``).

Recorders: the student's ``...attn.q_lif`` and ``...attn.k_lif`` outputs ``(T * B, C, h, w)``; the teacher's
``blocks.i.attn.qkv`` output ``(B, N, 3 C)`` (ViT teachers) or any ``(B, C, H, W)`` map (used for both q
and k). One loss per student block; ``FGDDistiller``'s ``fgd_weight`` averaged over ``n`` blocks is
``loss_weight = fgd_weight / n`` here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.registry import MODELS

from ..fgd import _grid_tokens, token_gram

__all__ = ['QSDFineGrainedLoss']


@MODELS.register_module()
class QSDFineGrainedLoss(nn.Module):
    """``loss_weight * (MSE(G(q_S), G(q_T)) + MSE(G(k_S), G(k_T))) / 2`` with ``G`` the token Gram matrix.

    Args:
        T: the student's time steps (its spikes are ``(T * B, ...)``, averaged over ``T``).
        num_prefix_tokens: class / register tokens at the front of a ViT teacher's sequence (dropped).
        loss_weight: overall factor.

    ``forward(s_q, s_k, t_qkv=None, t_feature=None)``: exactly one teacher input. Teacher grids are
    average-pooled to the student's ``(h, w)``; a ViT's token sequence is taken as a square grid.
    """

    def __init__(self, T: int = 1, num_prefix_tokens: int = 0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.T, self.num_prefix_tokens, self.loss_weight = int(T), int(num_prefix_tokens), loss_weight

    def _student_tokens(self, spikes: torch.Tensor) -> torch.Tensor:
        """``(T * B, C, h, w)`` -> ``(B, h * w, C)``, averaged over ``T``."""
        return spikes.unflatten(0, (self.T, -1)).mean(0).flatten(2).transpose(1, 2)

    def forward(
        self,
        s_q: torch.Tensor,
        s_k: torch.Tensor,
        t_qkv: torch.Tensor | None = None,
        t_feature: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if (t_qkv is None) == (t_feature is None):
            raise ValueError('QSDFineGrainedLoss takes exactly one of t_qkv and t_feature')
        hw = tuple(s_q.shape[-2:])
        if t_qkv is not None:
            B, N, C3 = t_qkv.shape
            tq, tk, _ = t_qkv.detach().reshape(B, N, 3, C3 // 3).unbind(2)
            tq, tk = tq[:, self.num_prefix_tokens :], tk[:, self.num_prefix_tokens :]
            side = int(round(tq.shape[1] ** 0.5))

            def grid(t: torch.Tensor) -> torch.Tensor:
                return _grid_tokens(t.transpose(1, 2).reshape(B, -1, side, side), hw)

            tq, tk = grid(tq), grid(tk)
        else:
            tq = tk = _grid_tokens(t_feature.detach(), hw)
        sq, sk = self._student_tokens(s_q), self._student_tokens(s_k)
        loss = F.mse_loss(token_gram(sq), token_gram(tq)) + F.mse_loss(token_gram(sk), token_gram(tk))
        return self.loss_weight * loss / 2
