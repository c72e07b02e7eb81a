"""ACMIL loss terms (the official code computes them in its training script, not in the model).

``L = CE(sub_logits, y repeated M times) + CE(slide_logits, y) + L_div``, all weights 1 officially.
The semantic (branch) term is used only when there is more than one branch.

``L_div`` is the mean, over the ``M(M-1)/2`` branch pairs, of the cosine similarity between the
branches' softmaxed attention maps; for multi-head attention maps ``(H, M, N)`` the similarity is
averaged over heads first (as the official code does). Minimising it pushes branches apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diversity_loss(attn_logits: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine similarity of branch attention maps.

    Args:
        attn_logits: ``(H, M, N)`` pre-softmax attention (``H`` heads, ``M`` branches, ``N`` instances).

    Returns:
        scalar tensor; 0 when ``M == 1``.
    """
    h, m, _ = attn_logits.shape
    if m < 2:
        return attn_logits.new_zeros(())
    a = F.normalize(attn_logits.softmax(dim=-1), dim=-1)
    sim = a @ a.transpose(1, 2)  # (H, M, M) cosine similarities
    iu = torch.triu_indices(m, m, offset=1, device=a.device)
    return sim[:, iu[0], iu[1]].mean(dim=0).sum() / (m * (m - 1) / 2)


def acmil_losses(
    sub_logits: torch.Tensor | None,
    slide_logits: torch.Tensor,
    attn_logits: torch.Tensor | None,
    label: torch.Tensor,
    weights: dict[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """The three ACMIL loss terms for one bag.

    Args:
        sub_logits: ``(M, C)`` branch predictions, or ``None``.
        slide_logits: ``(1, C)``.
        attn_logits: ``(H, M, N)`` attention logits, or ``None``.
        label: ``(1,)`` or scalar class index.
        weights: optional multipliers for the keys ``slide``, ``sub`` and ``div`` (default 1).

    Returns:
        ``dict(loss_slide=..., loss_sub=..., loss_div=...)``; terms that do not apply are omitted.
    """
    w = {'slide': 1.0, 'sub': 1.0, 'div': 1.0, **(weights or {})}
    label = label.reshape(1).long()
    out = dict(loss_slide=w['slide'] * F.cross_entropy(slide_logits, label))
    if sub_logits is not None and sub_logits.shape[0] > 1:
        out['loss_sub'] = w['sub'] * F.cross_entropy(sub_logits, label.expand(sub_logits.shape[0]))
    if attn_logits is not None and attn_logits.shape[1] > 1:
        out['loss_div'] = w['div'] * diversity_loss(attn_logits)
    return out
