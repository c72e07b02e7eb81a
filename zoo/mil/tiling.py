"""Whole-slide tiling: tissue mask on a low-resolution level, patch grid, coordinates, thumbnail.

Any format openslide reads works (``.svs``, ``.tif``, ``.ndpi``, ``.mrxs``, generic tiled TIFF, ...).

Pipeline for one slide (all parameters in ``TilingConfig``, i.e. the ``wsi.tiling`` dict of a
``configs/mil`` config):

1. **Tissue mask** on the level whose downsample is closest to ``seg_downsample`` (64, roughly CLAM's
   automatic ``seg_level``): HSV saturation, median blur (``mthresh``), threshold (``sthresh``, or
   Otsu with ``method='otsu'``), morphological closing with a ``close``-pixel square kernel, then
   connected components smaller than ``min_area_patches`` patch areas are dropped.
2. **Grid** of ``patch_size`` pixels at ``magnification`` (or at pyramid ``level`` when
   ``magnification`` is None), non-overlapping by default (``stride``). A cell is kept when at least
   ``min_tissue`` of its footprint is tissue. The slide's magnification is ``openslide.objective-power``,
   else ``10 / mpp`` (0.25 um/px -> 40x), else ``assume_magnification`` with a warning.
3. Patches are resized to ``target_size`` (512 px at 20x resized to 224 by default, as in the
   official pipeline). With ``read_pyramid=True`` (default) they are read from the coarsest pyramid
   level that still has at least ``target_size`` pixels across the patch (e.g. level 1 of a 40x slide
   for 512 px at 20x -> 224), which reads up to 4x fewer pixels than the official level-0 read; the
   difference to resizing level 0 is the scanner's own downsampling. ``read_pyramid=False`` reads at
   the level of the requested magnification, as the official code.

Coordinates are level-0 top-left corners ``(x, y)``; ``save_coords`` writes them to HDF5 with the
read parameters as attributes.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np

SLIDE_EXTENSIONS = ('.svs', '.tif', '.tiff', '.ndpi', '.vms', '.vmu', '.scn', '.mrxs', '.svslide', '.bif')


class SlideReadError(RuntimeError):
    """A slide file that openslide cannot open or read."""


@dataclass
class TilingConfig:
    """Tiling parameters (see the module docstring)."""

    patch_size: int = 512
    magnification: float | None = 20.0
    level: int = 0
    stride: int | None = None
    target_size: int = 224
    seg_downsample: float = 64.0
    method: str = 'saturation'
    sthresh: int = 8
    mthresh: int = 7
    close: int = 4
    min_area_patches: float = 0.5
    min_tissue: float = 0.25
    assume_magnification: float = 20.0
    thumbnail_size: int = 1024
    read_pyramid: bool = True

    @classmethod
    def from_dict(cls, cfg: dict | TilingConfig | None) -> TilingConfig:
        if isinstance(cfg, TilingConfig):
            return cfg
        cfg = dict(cfg or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(cfg) - names
        if unknown:
            raise ValueError(f'wsi.tiling: unknown key(s) {sorted(unknown)}; known: {sorted(names)}')
        if cfg.get('method', 'saturation') not in ('saturation', 'otsu'):
            raise ValueError(f"wsi.tiling.method must be 'saturation' or 'otsu', got {cfg['method']!r}")
        return cls(**cfg)


@dataclass
class TilingResult:
    """Patch grid of one slide. ``coords``: (N, 2) int64 level-0 ``(x, y)`` of each patch."""

    slide: str
    coords: np.ndarray
    read_level: int
    read_size: int
    patch_size_level0: float
    step_level0: float
    target_size: int
    magnification: float
    mask: np.ndarray = field(repr=False)
    mask_downsample: float = 1.0

    def attrs(self) -> dict:
        return dict(
            slide=self.slide,
            read_level=self.read_level,
            read_size=self.read_size,
            patch_size_level0=self.patch_size_level0,
            step_level0=self.step_level0,
            target_size=self.target_size,
            magnification=self.magnification,
        )


def open_slide(path: str | Path):
    """``openslide.OpenSlide(path)`` with a one-line error naming the file."""
    import openslide

    path = Path(path)
    if not path.is_file():
        raise SlideReadError(f'{path}: no such slide file')
    try:
        return openslide.OpenSlide(str(path))
    except Exception as err:  # OpenSlideUnsupportedFormatError, OpenSlideError
        raise SlideReadError(f'{path}: openslide cannot read it ({type(err).__name__}: {err})') from None


def list_slides(inputs: list[str | Path], extensions: tuple[str, ...] = SLIDE_EXTENSIONS) -> list[Path]:
    """Slide files from a mix of files and folders (folders: files with a slide extension, sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in extensions and f.is_file())
        else:
            out.append(p)  # a missing file is reported by the caller, which goes on
    return out


def slide_magnification(slide, assume: float = 20.0) -> float:
    """Objective power of level 0: from the vendor property, else ``10 / mpp``, else ``assume``."""
    props = slide.properties
    power = props.get('openslide.objective-power')
    if power:
        return float(power)
    mpp = props.get('openslide.mpp-x')
    if mpp and float(mpp) > 0:
        return 10.0 / float(mpp)
    warnings.warn(f'slide has no objective power or mpp; assuming {assume}x at level 0', stacklevel=2)
    return float(assume)


def tissue_mask(rgb: np.ndarray, cfg: TilingConfig, patch_area: float = 0.0) -> np.ndarray:
    """Boolean tissue mask of an RGB image ``(H, W, 3)`` uint8 -> ``(H, W)`` bool.

    ``patch_area``: area of one patch in mask pixels, for the ``min_area_patches`` filter.
    """
    sat = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)[..., 1]
    if cfg.mthresh > 1:
        sat = cv2.medianBlur(sat, cfg.mthresh | 1)  # kernel must be odd
    if cfg.method == 'otsu':
        _, m = cv2.threshold(sat, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    else:
        _, m = cv2.threshold(sat, cfg.sthresh, 255, cv2.THRESH_BINARY)
    if cfg.close > 0:
        # Closing = dilation, then erosion by the *reflected* square. cv2.morphologyEx(MORPH_CLOSE) uses
        # the same anchor for both, which for an even side (the default 4) moves the whole mask one
        # pixel down and right: one 64 px cell at level 0. Reflecting the anchor keeps it in place.
        # The zero margin makes the outside of the slide background: cv2's erosion treats it as
        # foreground, which let tissue within `close` pixels of the edge grow to the edge.
        k = cfg.close
        kernel = np.ones((k, k), np.uint8)
        m = cv2.copyMakeBorder(m, k, k, k, k, cv2.BORDER_CONSTANT, value=0)
        m = cv2.erode(cv2.dilate(m, kernel, anchor=(k // 2,) * 2), kernel, anchor=(k - 1 - k // 2,) * 2)
        m = m[k:-k, k:-k]
    if cfg.min_area_patches > 0 and patch_area > 0:
        n, lab, stats, _ = cv2.connectedComponentsWithStats((m > 0).astype(np.uint8), connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= cfg.min_area_patches * patch_area
        keep[0] = False  # background label
        return keep[lab]
    return m > 0


def _read_level_rgb(slide, level: int) -> np.ndarray:
    w, h = slide.level_dimensions[level]
    return np.asarray(slide.read_region((0, 0), level, (w, h)).convert('RGB'))


def tile_slide(path: str | Path, cfg: dict | TilingConfig | None = None) -> TilingResult:
    """Tissue mask + patch grid of one slide. Raises :class:`SlideReadError` naming the file."""
    cfg = TilingConfig.from_dict(cfg)
    path = Path(path)
    slide = open_slide(path)
    try:
        if cfg.magnification is not None:
            mag0 = slide_magnification(slide, cfg.assume_magnification)
            scale = mag0 / cfg.magnification  # level-0 pixels per requested pixel
            magnification = float(cfg.magnification)
        else:
            if not 0 <= cfg.level < slide.level_count:
                raise ValueError(f'{path}: wsi.tiling.level {cfg.level} is not in 0..{slide.level_count - 1}')
            scale = float(slide.level_downsamples[cfg.level])
            magnification = slide_magnification(slide, cfg.assume_magnification) / scale
        if scale < 1 - 1e-3:
            raise ValueError(f'{path}: {cfg.magnification}x is above the level-0 magnification')
        patch0 = cfg.patch_size * scale  # patch footprint in level-0 pixels
        step0 = (cfg.stride or cfg.patch_size) * scale
        # the coarsest level that keeps >= target_size pixels across the patch (or the requested one)
        read_ds = scale * max(cfg.patch_size / cfg.target_size, 1.0) if cfg.read_pyramid else scale
        read_level = slide.get_best_level_for_downsample(read_ds + 1e-6)
        read_size = int(round(patch0 / slide.level_downsamples[read_level]))

        seg_level = int(np.argmin([abs(d - cfg.seg_downsample) for d in slide.level_downsamples]))
        ds = float(slide.level_downsamples[seg_level])
        if ds >= cfg.seg_downsample / 2:
            rgb = _read_level_rgb(slide, seg_level)
        else:  # a shallow pyramid: let openslide downscale instead of reading a huge level
            w0, h0 = slide.dimensions
            rgb = np.asarray(
                slide.get_thumbnail((int(w0 / cfg.seg_downsample), int(h0 / cfg.seg_downsample))).convert('RGB')
            )
            ds = w0 / rgb.shape[1]
        mask = tissue_mask(rgb, cfg, patch_area=(patch0 / ds) ** 2)
        coords = grid_coords(mask, ds, slide.dimensions, patch0, step0, cfg.min_tissue)
    except SlideReadError:
        raise
    except ValueError:
        raise
    except Exception as err:  # openslide errors on damaged tiles
        raise SlideReadError(f'{path}: reading failed ({type(err).__name__}: {err})') from None
    finally:
        slide.close()
    return TilingResult(
        slide=path.stem,
        coords=coords,
        read_level=int(read_level),
        read_size=read_size,
        patch_size_level0=float(patch0),
        step_level0=float(step0),
        target_size=cfg.target_size,
        magnification=magnification,
        mask=mask,
        mask_downsample=ds,
    )


def grid_coords(
    mask: np.ndarray, mask_ds: float, dims0: tuple[int, int], patch0: float, step0: float, min_tissue: float
) -> np.ndarray:
    """Level-0 ``(x, y)`` of grid cells whose tissue fraction in ``mask`` is at least ``min_tissue``.

    The fraction of every cell is read from an integral image of the mask in one batched lookup.
    """
    w0, h0 = dims0
    xs = np.arange(0, w0 - patch0 + 1, step0)
    ys = np.arange(0, h0 - patch0 + 1, step0)
    if len(xs) == 0 or len(ys) == 0:
        return np.zeros((0, 2), np.int64)
    gx, gy = np.meshgrid(xs, ys)  # row-major: y then x
    integ = np.pad(mask.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    mh, mw = mask.shape

    def idx(v: np.ndarray, lim: int) -> np.ndarray:
        return np.clip(np.round(v / mask_ds).astype(np.int64), 0, lim)

    x0, x1 = idx(gx, mw), idx(gx + patch0, mw)
    y0, y1 = idx(gy, mh), idx(gy + patch0, mh)
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    tissue = integ[y1, x1] - integ[y0, x1] - integ[y1, x0] + integ[y0, x0]
    keep = tissue / area >= min_tissue
    return np.stack([gx[keep], gy[keep]], axis=1).round().astype(np.int64)


def save_coords(result: TilingResult, path: str | Path, extra: dict | None = None) -> None:
    """Write ``coords`` (N, 2) int64 and the read parameters (attributes) to an HDF5 file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.part')
    with h5py.File(tmp, 'w') as f:
        f.create_dataset('coords', data=result.coords)
        for k, v in {**result.attrs(), **(extra or {})}.items():
            f.attrs[k] = v if not isinstance(v, dict) else json.dumps(v)
    tmp.replace(path)  # atomic: a crash never leaves a half-written coords file


def load_coords(path: str | Path) -> tuple[np.ndarray, dict]:
    """Read ``(coords (N, 2), attrs)`` written by :func:`save_coords`."""
    with h5py.File(path, 'r') as f:
        return f['coords'][:], dict(f.attrs)


def draw_thumbnail(path: str | Path, result: TilingResult, size: int = 1024) -> np.ndarray:
    """Slide thumbnail ``(h, w, 3)`` uint8 with the tissue mask tinted green and kept patches outlined.

    The outline is drawn with array ops over the grid, not per patch.
    """
    slide = open_slide(path)
    try:
        thumb = np.asarray(slide.get_thumbnail((size, size)).convert('RGB')).copy()
        w0, h0 = slide.dimensions
    finally:
        slide.close()
    th, tw = thumb.shape[:2]
    # tissue mask resized to the thumbnail: tint
    m = cv2.resize(result.mask.astype(np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST).astype(bool)
    thumb[m] = (0.7 * thumb[m] + 0.3 * np.array([0, 200, 0])).astype(np.uint8)
    cells = patch_raster(result.coords, result.step_level0, result.patch_size_level0, (w0, h0), (tw, th))
    if cells is not None:
        # a pixel is on an outline where the patch covering it differs from its left or upper neighbour
        edge = np.zeros(cells.shape, dtype=bool)
        edge[:, 1:] |= cells[:, 1:] != cells[:, :-1]
        edge[1:, :] |= cells[1:, :] != cells[:-1, :]
        thumb[edge] = (30, 30, 220)
    return thumb


def patch_raster(
    coords: np.ndarray, step0: float, patch0: float, dims0: tuple[int, int], out_wh: tuple[int, int]
) -> np.ndarray | None:
    """Map each pixel of an ``out_wh = (w, h)`` image of the slide to the index of the patch covering it.

    Returns ``(h, w)`` int64, -1 where no patch is. Patches of side ``patch0`` lie on a regular grid
    of pitch ``step0`` (level-0 pixels).
    """
    if len(coords) == 0:
        return None
    w0, h0 = dims0
    tw, th = out_wh
    ox, oy = coords[:, 0].min(), coords[:, 1].min()
    gx = np.round((coords[:, 0] - ox) / step0).astype(np.int64)
    gy = np.round((coords[:, 1] - oy) / step0).astype(np.int64)
    grid = -np.ones((gy.max() + 1, gx.max() + 1), np.int64)
    grid[gy, gx] = np.arange(len(coords))
    # level-0 position of each output pixel centre -> grid cell
    px = (np.arange(tw) + 0.5) * (w0 / tw)
    py = (np.arange(th) + 0.5) * (h0 / th)
    cx = np.floor((px - ox) / step0).astype(np.int64)
    cy = np.floor((py - oy) / step0).astype(np.int64)
    vx = (cx >= 0) & (cx < grid.shape[1])
    vy = (cy >= 0) & (cy < grid.shape[0])
    out = -np.ones((th, tw), np.int64)
    sub = grid[np.clip(cy, 0, grid.shape[0] - 1)][:, np.clip(cx, 0, grid.shape[1] - 1)]
    out[np.ix_(vy, vx)] = sub[np.ix_(vy, vx)]
    # a cell is covered only inside its own footprint (stride may exceed the patch size)
    inside_x = ((px - ox) - cx * step0) < patch0
    inside_y = ((py - oy) - cy * step0) < patch0
    out[~inside_y, :] = -1
    out[:, ~inside_x] = -1
    return out


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Save an RGB uint8 image as PNG (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
