"""Synthetic whole-slide images: small tiled pyramidal TIFFs that openslide reads (needs ``tifffile``).

Each slide is a white background with one elliptical "tissue" region (pink, sparse small nuclei).
Positive slides also hold "tumour" discs: dense, large, dark nuclei. Level 0 is ``size`` pixels at
0.5 um/px (20x); the pyramid halves the resolution ``levels - 1`` times; tiles are 256 px, zlib.

:func:`make_slide_fixture` writes a labelled cohort in the layout of ``configs/mil``
(``<root>/slides/*.tif`` and ``<root>/slides.csv`` with ``slide,label,split``); every slide is drawn
from its own random stream, so the val and test slides are held out.
CLI: ``python tools/make_fixtures.py slides --out DIR [--seed S]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKGROUND = np.array([243, 241, 245], np.float32)
STROMA = np.array([232, 168, 200], np.float32)
NORMAL_NUCLEUS = np.array([170, 110, 175], np.float32)
TUMOUR_STROMA = np.array([205, 130, 185], np.float32)
TUMOUR_NUCLEUS = np.array([70, 30, 110], np.float32)


@dataclass
class SyntheticSlide:
    path: Path
    label: int
    tumours: list[tuple[float, float, float]]  # (cx, cy, r) in level-0 pixels
    size: int

    def in_tumour(self, xy: np.ndarray, patch: float) -> np.ndarray:
        """Whether the centre of each patch ``(N, 2)`` (top-left, level 0) lies in a tumour disc."""
        c = xy + patch / 2
        out = np.zeros(len(xy), bool)
        for cx, cy, r in self.tumours:
            out |= (c[:, 0] - cx) ** 2 + (c[:, 1] - cy) ** 2 <= r**2
        return out


def _blocks(rng: np.random.Generator, size: int, cell: int, density: float) -> np.ndarray:
    """(size, size) bool: random square "nuclei" on a ``cell``-pixel lattice."""
    n = -(-size // cell)
    coarse = rng.random((n, n)) < density
    return coarse.repeat(cell, 0).repeat(cell, 1)[:size, :size]


def render(size: int, tumours: list[tuple[float, float, float]], seed: int) -> np.ndarray:
    """RGB uint8 ``(size, size, 3)`` image of one synthetic slide."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[0:size, 0:size]
    yy, xx = yy.astype(np.float32), xx.astype(np.float32)
    # tissue: an ellipse around the centre
    cx, cy = size * (0.5 + 0.05 * rng.standard_normal(2))
    ax, ay = size * rng.uniform(0.33, 0.42, 2)
    tissue = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1.0
    tumour = np.zeros((size, size), bool)
    for tx, ty, r in tumours:
        tumour |= (xx - tx) ** 2 + (yy - ty) ** 2 <= r**2
    tumour &= tissue
    # class map -> palette: 0 background, 1 stroma, 2 normal nucleus, 3 tumour stroma, 4/5 tumour nuclei
    lab = tissue.astype(np.uint8)
    lab[tissue & _blocks(rng, size, 8, 0.08)] = 2
    lab[tumour] = 3
    lab[tumour & _blocks(rng, size, 16, 0.45)] = 4
    lab[tumour & _blocks(rng, size, 8, 0.25)] = 5
    palette = (
        np.stack([BACKGROUND, STROMA, NORMAL_NUCLEUS, TUMOUR_STROMA, TUMOUR_NUCLEUS, TUMOUR_NUCLEUS * 1.3])
        .clip(0, 255)
        .astype(np.int16)
    )
    img = palette[lab]
    # slow staining variation over the tissue (64-px cells)
    shade = rng.normal(0, 6, (-(-size // 64),) * 2).astype(np.int16).repeat(64, 0).repeat(64, 1)[:size, :size]
    img += (shade * tissue)[..., None]
    return img.clip(0, 255).astype(np.uint8)


def write_pyramid_tiff(path: Path, img: np.ndarray, levels: int = 4, mpp: float = 0.5, tile: int = 256) -> None:
    """Tiled, multi-level TIFF (one IFD per level, reduced-resolution subfile type), as openslide's
    generic-tiff reader expects; the resolution tags give openslide its mpp."""
    import tifffile

    res = 1e4 / mpp  # pixels per centimetre
    with tifffile.TiffWriter(path) as tw:
        level = img
        for i in range(levels):
            tw.write(
                level,
                tile=(tile, tile),
                photometric='rgb',
                compression='zlib',
                compressionargs=dict(level=1),
                resolution=(res / 2**i, res / 2**i),
                resolutionunit='CENTIMETER',
                subfiletype=0 if i == 0 else 1,
            )
            # next level: every other pixel (the textures are blocky, no aliasing to speak of)
            level = np.ascontiguousarray(level[::2, ::2])


def make_cohort(root: Path, n_pos: int, n_neg: int, size: int = 2048, seed: int = 0) -> list[SyntheticSlide]:
    """Write ``n_pos`` positive and ``n_neg`` negative slides to ``root`` and describe them."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    slides = []
    for i in range(n_pos + n_neg):
        label = int(i < n_pos)
        tumours = []
        if label:
            for _ in range(int(rng.integers(1, 3))):
                ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.2) * size
                tumours.append(
                    (size / 2 + rad * np.cos(ang), size / 2 + rad * np.sin(ang), float(rng.uniform(0.08, 0.12) * size))
                )
        path = root / f'slide_{i:02d}_{"pos" if label else "neg"}.tif'
        write_pyramid_tiff(path, render(size, tumours, seed=seed * 1000 + i))
        slides.append(SyntheticSlide(path, label, tumours, size))
    return slides


def make_slide_fixture(
    root: str | Path, n_train: int = 6, n_val: int = 2, n_test: int = 4, size: int = 2048, seed: int = 0
) -> dict:
    """A labelled cohort: ``<root>/slides/slide_XX_{pos,neg}.tif`` and ``<root>/slides.csv``.

    Each split holds as many positive as negative slides (``n_*`` must be even). Returns
    ``dict(slide_dir, csv_path, slides=[SyntheticSlide], split={slide stem: split})``.
    """
    counts = dict(train=n_train, val=n_val, test=n_test)
    if any(n < 2 or n % 2 for n in counts.values()):
        raise ValueError(f'make_slide_fixture: n_train, n_val and n_test must be even and >= 2, got {counts}')
    root = Path(root)
    n_half = sum(counts.values()) // 2
    slides = make_cohort(root / 'slides', n_pos=n_half, n_neg=n_half, size=size, seed=seed)
    # slides[:n_half] are positive, the rest negative: give each split the next pairs of both
    order = [i for k in range(n_half) for i in (k, n_half + k)]
    names = [s for s, n in counts.items() for _ in range(n)]
    split = {slides[i].path.stem: name for i, name in zip(order, names)}
    csv_path = root / 'slides.csv'
    with open(csv_path, 'w') as f:
        f.write('slide,label,split\n')
        f.writelines(f'{s.path.stem},{s.label},{split[s.path.stem]}\n' for s in slides)
    return dict(slide_dir=str(root / 'slides'), csv_path=str(csv_path), slides=slides, split=split)


def write_corrupt_slides(root: Path, good: Path) -> list[Path]:
    """A file that is no slide at all, and a real slide truncated mid-way (header readable, tiles not)."""
    junk = root / 'corrupt_junk.svs'
    junk.write_bytes(b'this is not a slide\n' * 100)
    data = good.read_bytes()
    trunc = root / 'corrupt_truncated.tif'
    trunc.write_bytes(data[: len(data) // 3])
    return [junk, trunc]
