"""Patch feature extraction with any timm model (zoo or timm) built with ``num_classes=0``.

One HDF5 file per slide, ``<out>/<slide>.h5``:

* ``feat``   ``(N, D)`` float16 (as the official pipeline) or float32,
* ``coords`` ``(N, 2)`` int64 level-0 ``(x, y)`` of each patch,
* attributes: ``extractor`` (timm name), ``extractor_cfg`` (JSON of the model's pretrained cfg and the
  kwargs it was built with), ``slide_path`` and the tiling attributes (``read_level``, ``read_size``,
  ``patch_size_level0``, ``step_level0``, ``target_size``, ``magnification``).

Resumable per slide: the file is written as ``<slide>.h5.part`` and renamed when complete, so a slide
whose ``.h5`` exists is finished and is skipped (unless its extractor differs, which is an error).
A slide that cannot be read is reported and skipped; the batch goes on.

Patches are read by DataLoader workers (each opens its own openslide handle) and resized there to
the tiling's ``target_size`` (PIL bilinear, which antialiases when shrinking); scaling to [0, 1] and the
extractor's mean/std normalisation run on the whole batch on the model's device.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .tiling import SlideReadError, TilingConfig, load_coords, open_slide, save_coords, tile_slide


class PatchDataset(Dataset):
    """Patches of one slide as uint8 ``(3, S, S)`` tensors, ``S = target_size``.

    The slide is opened lazily in each worker process (openslide handles are not fork-safe to share).
    """

    def __init__(
        self, slide_path: str | Path, coords: np.ndarray, read_level: int, read_size: int, target_size: int
    ) -> None:
        self.slide_path = str(slide_path)
        self.coords = coords
        self.read_level = int(read_level)
        self.read_size = int(read_size)
        self.target_size = int(target_size)
        self._slide = None

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._slide is None:
            self._slide = open_slide(self.slide_path)
        x, y = (int(v) for v in self.coords[i])
        try:
            region = self._slide.read_region((x, y), self.read_level, (self.read_size, self.read_size))
        except Exception as err:
            raise SlideReadError(f'{self.slide_path}: reading patch ({x}, {y}) failed: {err}') from None
        rgb = region.convert('RGB')
        if self.read_size != self.target_size:
            from PIL import Image

            rgb = rgb.resize((self.target_size, self.target_size), Image.BILINEAR, reducing_gap=None)
        return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


@dataclass
class Extractor:
    """A timm model without classifier plus its normalisation; ``__call__`` maps uint8 ``(B, 3, S, S)``
    to features ``(B, D)``."""

    name: str
    model: torch.nn.Module
    mean: torch.Tensor
    std: torch.Tensor
    input_size: int | None = None
    cfg: dict = field(default_factory=dict)
    channels_last: bool = False  # hand the model NHWC batches (tools/wsi_extract.py --channels-last)

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        dev = self.mean.device
        x = batch.to(dev, non_blocking=True).float().div_(255.0)
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode='bilinear', antialias=True, align_corners=False
            )
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).float()


def build_extractor(
    model: str,
    pretrained: bool = False,
    checkpoint: str | None = None,
    device: str = 'cpu',
    input_size: int | None = None,
    model_kwargs: dict | None = None,
) -> Extractor:
    """``timm.create_model(model, num_classes=0, ...)`` in eval mode with its mean/std.

    Args:
        model: any timm or zoo model name.
        pretrained: load the cfg's weights (needs network or a cached file; offline, a one-line
            ``zoo.hub.DownloadError`` names the source and the ways round it).
        checkpoint: a local weights file (``pretrained_cfg_overlay=dict(file=...)``), implies pretrained.
        input_size: resize incoming patches to this side on the model's device (default: use the
            patches as they come, i.e. at the tiling's ``target_size``; timm CNNs take any size, ViTs
            need ``model_kwargs=dict(img_size=...)`` or ``dynamic_img_size=True``).
    """
    import zoo  # noqa: F401  (registers the zoo's models with timm)
    from zoo.hub import create_model

    kwargs = dict(model_kwargs or {})
    if checkpoint:
        kwargs['pretrained_cfg_overlay'] = dict(file=str(checkpoint))
        pretrained = True
    try:
        # the zoo's weight route: fails within seconds offline, names a bad checkpoint file
        net = create_model(model, pretrained=pretrained, num_classes=0, **kwargs)
    except RuntimeError as err:
        if 'Unknown model' in str(err):
            raise ValueError(f"extractor '{model}' is not a timm/zoo model name") from None
        raise
    net.eval().to(device)
    data_cfg = timm.data.resolve_data_config(model=net)
    size = int(input_size) if input_size else None
    mean = torch.tensor(data_cfg['mean'], device=device).view(1, 3, 1, 1)
    std = torch.tensor(data_cfg['std'], device=device).view(1, 3, 1, 1)
    cfg = dict(
        model=model,
        pretrained=bool(pretrained),
        checkpoint=str(checkpoint) if checkpoint else None,
        input_size=size,
        mean=list(data_cfg['mean']),
        std=list(data_cfg['std']),
        num_features=int(net.num_features),
        model_kwargs={k: v for k, v in kwargs.items() if k != 'pretrained_cfg_overlay'},
    )
    return Extractor(name=model, model=net, mean=mean, std=std, input_size=size, cfg=cfg)


@dataclass
class SlideOutcome:
    """What happened to one slide: ``status`` is 'done', 'skipped' (already extracted) or 'failed'."""

    slide: str
    status: str
    n_patches: int = 0
    seconds: float = 0.0
    message: str = ''


def extract_slide(
    slide_path: str | Path,
    out_path: str | Path,
    extractor: Extractor,
    tiling: dict | TilingConfig | None = None,
    coords_path: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    dtype: str = 'float16',
    progress=None,
) -> SlideOutcome:
    """Extract the features of one slide into ``out_path`` (HDF5, written atomically).

    Coordinates come from ``coords_path`` (written by ``tools/wsi_tile.py``) when it exists,
    otherwise the slide is tiled here with ``tiling``. ``progress``: an optional tqdm bar advanced by
    the number of patches of each batch. Raises :class:`SlideReadError` naming the file.
    """
    t0 = time.perf_counter()
    slide_path, out_path = Path(slide_path), Path(out_path)
    if coords_path is not None and Path(coords_path).is_file():
        coords, attrs = load_coords(coords_path)
    else:
        res = tile_slide(slide_path, tiling)
        coords, attrs = res.coords, res.attrs()
        if coords_path is not None:
            save_coords(res, coords_path)
    tcfg = TilingConfig.from_dict(tiling)
    target = int(attrs.get('target_size', tcfg.target_size))
    ds = PatchDataset(slide_path, coords, int(attrs['read_level']), int(attrs['read_size']), target)
    open_slide(slide_path).close()  # fail early with a clear message, before workers start
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle=False,
        pin_memory=extractor.mean.device.type == 'cuda',
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    np_dtype = np.float16 if dtype == 'float16' else np.float32
    feats = np.zeros((len(ds), extractor.cfg['num_features']), np_dtype)
    i = 0
    for batch in loader:
        f = extractor(batch)
        feats[i : i + len(f)] = f.cpu().numpy().astype(np_dtype)
        i += len(f)
        if progress is not None:
            progress.update(len(f))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + '.part')
    with h5py.File(tmp, 'w') as h5:
        h5.create_dataset('feat', data=feats)
        h5.create_dataset('coords', data=coords.astype(np.int64))
        h5.attrs['extractor'] = extractor.name
        h5.attrs['extractor_cfg'] = json.dumps(extractor.cfg)
        h5.attrs['slide_path'] = str(slide_path)
        for k, v in attrs.items():
            if k != 'slide':
                h5.attrs[k] = v
    tmp.replace(out_path)
    return SlideOutcome(slide_path.stem, 'done', len(ds), time.perf_counter() - t0)


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(feat (N, D), coords (N, 2), attrs)`` of one feature file."""
    with h5py.File(path, 'r') as f:
        return f['feat'][:], f['coords'][:], dict(f.attrs)


def extract_slides(
    slides: list[str | Path],
    out_dir: str | Path,
    extractor: Extractor,
    tiling: dict | TilingConfig | None = None,
    coords_dir: str | Path | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    dtype: str = 'float16',
    show_progress: bool = True,
    log=print,
) -> list[SlideOutcome]:
    """Extract every slide into ``out_dir/<slide>.h5``; finished slides are skipped, unreadable ones
    reported through ``log`` and skipped (the batch goes on); at the end ``log`` gets
    :func:`failure_summary` (one line per failed slide and its reason)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    outcomes: list[SlideOutcome] = []
    bar = tqdm(total=0, unit='patch', desc='extract', disable=not show_progress, dynamic_ncols=True)
    try:
        for sp in tqdm(slides, unit='slide', desc='slides', disable=not show_progress, position=1, leave=False):
            sp = Path(sp)
            out = out_dir / f'{sp.stem}.h5'
            if out.is_file():
                done_by = _extractor_of(out)
                if done_by == extractor.name:
                    outcomes.append(SlideOutcome(sp.stem, 'skipped', message='already extracted'))
                    continue
                outcomes.append(
                    SlideOutcome(
                        sp.stem,
                        'failed',
                        message=(
                            f'{out}: extracted with {done_by!r}, not {extractor.name!r}; use another --out folder'
                        ),
                    )
                )
                log(f'FAILED {outcomes[-1].message}')
                continue
            cpath = Path(coords_dir) / f'{sp.stem}.h5' if coords_dir else None
            try:
                n = len(load_coords(cpath)[0]) if cpath is not None and cpath.is_file() else None
                if n is not None:
                    bar.total += n
                    bar.refresh()
                outcome = extract_slide(
                    sp,
                    out,
                    extractor,
                    tiling,
                    cpath,
                    batch_size,
                    num_workers,
                    dtype,
                    progress=bar if n is not None else None,
                )
                if n is None:
                    bar.total += outcome.n_patches
                    bar.update(outcome.n_patches)
                outcomes.append(outcome)
            except (SlideReadError, OSError, ValueError) as err:
                msg = str(err) if str(sp) in str(err) else f'{sp}: {err}'
                outcomes.append(SlideOutcome(sp.stem, 'failed', message=msg))
                log(f'FAILED {msg} -- skipped')
    finally:
        bar.close()
    for line in failure_summary(outcomes):
        log(line)
    return outcomes


def failure_summary(outcomes: list[SlideOutcome]) -> list[str]:
    """The end-of-run list of slides that were skipped because they failed: a count line, then one line
    per slide with its reason (empty when nothing failed)."""
    failed = [o for o in outcomes if o.status == 'failed']
    if not failed:
        return []
    return [f'skipped slides: {len(failed)} of {len(outcomes)} failed and have no features:'] + [
        f'  {o.message}' for o in failed
    ]


def _extractor_of(path: Path) -> str | None:
    try:
        with h5py.File(path, 'r') as f:
            return str(f.attrs.get('extractor'))
    except OSError:
        return None


def bare_forward_throughput(
    extractor: Extractor, n: int, batch_size: int, size: int | None = None, warmup: int = 1
) -> float:
    """Images per second of the extractor alone on random uint8 batches (the benchmark's baseline)."""
    size = size or extractor.input_size or 224
    x = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    for _ in range(warmup):
        extractor(x)
    if extractor.mean.device.type == 'cuda':
        torch.cuda.synchronize()
    steps = max(1, -(-n // batch_size))  # whole batches covering n images
    t0 = time.perf_counter()
    for _ in range(steps):
        extractor(x)
    if extractor.mean.device.type == 'cuda':
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)
