"""What every benchmark writes: ``<out>.csv`` (one row per measured entry) and ``<out>.png`` (panels side
by side, bars for one input size or setting per entry, lines over a swept quantity)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

__all__ = ['Panel', 'write_csv', 'write_png', 'write_report']


@dataclass
class Panel:
    """One subplot.

    ``kind='bar'``: ``series`` maps a legend label to one value per entry of ``groups`` (the x ticks);
    several series make grouped bars. ``kind='line'``: ``series`` maps a label to ``(x, y)`` points.
    ``notes`` maps a series label to one text per point, written next to it (e.g. a speed-up). ``hlines`` maps
    a y value to the label of a dashed horizontal line (e.g. a target); ``ylim`` fixes the y range.
    """

    ylabel: str
    series: dict[str, list]
    kind: str = 'bar'
    groups: list[str] = field(default_factory=list)
    xlabel: str = ''
    title: str = ''
    log: bool = False  # line panels: log-log axes
    notes: dict[str, list[str]] = field(default_factory=dict)
    hlines: dict[float, str] = field(default_factory=dict)
    ylim: tuple[float, float] | None = None


def write_csv(rows: list[dict], path: str, digits: int | None = None) -> str:
    """Rows as CSV with the first row's keys as header; ``digits``: floats as ``%.{digits}g``."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: f'{v:.{digits}g}' if digits and isinstance(v, float) else v for k, v in r.items()})
    return path


def _draw(ax, panel: Panel) -> None:
    if panel.kind == 'bar':
        n = len(panel.series)
        width = 0.8 / n
        for j, (label, values) in enumerate(panel.series.items()):
            xs = [i + (j - (n - 1) / 2) * width for i in range(len(panel.groups))]
            ax.bar(xs, values, width, label=label if n > 1 else None)
            for x, y, note in zip(xs, values, panel.notes.get(label, [])):
                ax.text(x, y, note, ha='center', va='bottom', fontsize=8)
        ax.set_xticks(range(len(panel.groups)), panel.groups, fontsize=8)
        if len(panel.groups) > 3 or max((len(ln) for g in panel.groups for ln in g.split('\n')), default=0) > 16:
            ax.tick_params(axis='x', rotation=30)
            for tick in ax.get_xticklabels():
                tick.set_ha('right')
    else:
        for label, pts in panel.series.items():
            ax.plot(*zip(*pts), marker='o', label=label)
            for (x, y), note in zip(pts, panel.notes.get(label, [])):
                ax.annotate(note, (x, y), textcoords='offset points', xytext=(4, -12), fontsize=8)
        if panel.log:
            ax.set(xscale='log', yscale='log')
    for y, label in panel.hlines.items():
        ax.axhline(y, color='tab:red', linestyle='--', linewidth=1, label=label)
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    if len(panel.series) > 1 or panel.hlines:
        ax.legend(fontsize=7)
    ax.set(xlabel=panel.xlabel, ylabel=panel.ylabel, title=panel.title)


def write_png(panels: list[Panel], path: str, title: str = '') -> str:
    """The panels side by side in one figure, each at least 4 inches wide (wider for many bars)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    widths = [max(4.5, 0.45 * len(p.groups) * len(p.series) + 2) if p.kind == 'bar' else 5.0 for p in panels]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(sum(widths), 4.2), squeeze=False, gridspec_kw=dict(width_ratios=widths)
    )
    for ax, panel in zip(axes[0], panels):
        _draw(ax, panel)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    rows: list[dict], panels: list[Panel], out: str, title: str = '', digits: int | None = None
) -> tuple[str, str]:
    """``<out>.csv`` from ``rows`` and ``<out>.png`` from ``panels``; returns both paths."""
    return write_csv(rows, f'{out}.csv', digits), write_png(panels, f'{out}.png', title)
