"""Attention heatmaps over the slide thumbnail: one panel per branch and one for the bag.

The bag map is the mean over branches of the softmaxed attention (what the slide classifier pools
with, in eval mode: no STKIM masking); multi-head maps are averaged over heads. Each map's scores
are scaled to [0, 1] by its own min and max (``norm='minmax'``, default: a few attended patches
stand out, as attention is peaked), or shown as percentile ranks (``norm='rank'``, as CLAM's
heatmaps: spreads the colours evenly, also over noise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .tiling import open_slide, patch_raster


def attention_maps(model: torch.nn.Module, feats: torch.Tensor | np.ndarray) -> np.ndarray:
    """Branch and bag attention of one slide: ``feats (N, D)`` -> ``(M + 1, N)``, last row = bag.

    ``model``: a :class:`zoo.mil.classifier.MILClassifier` or a bare head with attention.
    """
    feats = torch.as_tensor(np.asarray(feats, dtype=np.float32) if isinstance(feats, np.ndarray) else feats)
    head = getattr(model, 'head', model)
    was_training = head.training
    head.eval()
    try:
        with torch.no_grad():
            dev = next(head.parameters()).device
            _, _, logits = head(feats.float().to(dev))
    finally:
        head.train(was_training)
    if logits is None:
        raise ValueError(f'{type(head).__name__} has no attention to show (mean/max pooling)')
    branches = logits.softmax(dim=-1).mean(dim=0)  # (M, N), heads averaged
    return torch.cat([branches, branches.mean(dim=0, keepdim=True)]).cpu().numpy()


def normalise(scores: np.ndarray, norm: str = 'minmax') -> np.ndarray:
    """Scores ``(N,)`` -> [0, 1]: percentile rank (``'rank'``) or min-max (``'minmax'``)."""
    if len(scores) == 0:
        return scores
    if norm == 'rank':
        order = scores.argsort(kind='stable').argsort(kind='stable')
        return order / max(len(scores) - 1, 1)
    lo, hi = scores.min(), scores.max()
    return (scores - lo) / (hi - lo) if hi > lo else np.zeros_like(scores)


def overlay(
    thumb: np.ndarray, cells: np.ndarray | None, values: np.ndarray, cmap: str = 'jet', alpha: float = 0.5
) -> np.ndarray:
    """Blend ``cmap(values[cells])`` over ``thumb`` ``(h, w, 3)`` where ``cells >= 0``."""
    import matplotlib

    out = thumb.astype(np.float32).copy()
    if cells is None:
        return thumb
    inside = cells >= 0
    colors = matplotlib.colormaps[cmap](values)[:, :3] * 255.0  # (N, 3)
    out[inside] = (1 - alpha) * out[inside] + alpha * colors[cells[inside]]
    return out.clip(0, 255).astype(np.uint8)


def render_heatmaps(
    slide_path: str | Path,
    coords: np.ndarray,
    maps: np.ndarray,
    attrs: dict,
    out_png: str | Path,
    size: int = 768,
    norm: str = 'minmax',
    title: str = '',
) -> Path:
    """Write one PNG with the thumbnail and one heatmap panel per row of ``maps`` ``(M + 1, N)``.

    ``attrs``: the feature file's tiling attributes (``patch_size_level0``, ``step_level0``).
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    slide = open_slide(slide_path)
    try:
        thumb = np.asarray(slide.get_thumbnail((size, size)).convert('RGB'))
        dims0 = slide.dimensions
    finally:
        slide.close()
    patch0 = float(attrs['patch_size_level0'])
    step0 = float(attrs.get('step_level0', patch0))
    cells = patch_raster(coords, step0, patch0, dims0, (thumb.shape[1], thumb.shape[0]))
    names = ['thumbnail'] + [f'branch {i}' for i in range(len(maps) - 1)] + ['bag']
    panels = [thumb] + [overlay(thumb, cells, normalise(m, norm)) for m in maps]
    cols = min(len(panels), 4)
    rows = (len(panels) + cols - 1) // cols
    aspect = thumb.shape[0] / thumb.shape[1]
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows * aspect + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis('off')
    for ax, img, name in zip(axes.flat, panels, names):
        ax.imshow(img)
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    # One colour bar for every heatmap panel: all use the same colour map over [0, 1].
    cax = fig.add_axes((0.915, 0.12, 0.018, 0.76))
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap='jet'), cax=cax)
    bar.set_label(
        'attention, percentile rank within the slide' if norm == 'rank' else 'attention, min-max scaled per map',
        fontsize=8,
    )
    bar.ax.tick_params(labelsize=7)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
