"""Weights: the manifest of published checkpoints, download with sha256 check, safe loading,
safetensors export and official-checkpoint conversion.

Loading never unpickles arbitrary objects: ``.pth`` files go through ``torch.load(weights_only=True)``
(with mmengine's own checkpoint types allow-listed, see ``zoo.engine.safe_load``), ``.safetensors``
through safetensors.
"""

from __future__ import annotations

import csv
import hashlib
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

MANIFEST = Path(__file__).resolve().parent.parent / 'weights' / 'manifest.csv'
MANIFEST_FIELDS = ('name', 'url', 'sha256', 'format', 'license', 'conversion')


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupt, or not a checkpoint)."""


class ChecksumError(RuntimeError):
    """A downloaded or local file whose sha256 differs from the manifest's."""


@dataclass(frozen=True)
class WeightEntry:
    """One row of ``weights/manifest.csv``."""

    name: str  # timm model name with tag, e.g. 'mambaout_femto.official'
    url: str
    sha256: str  # '' where the publisher gives none
    format: str  # 'pth' (official state dict) or 'safetensors' (ours)
    license: str
    conversion: str  # how the file maps onto zoo keys


def read_manifest(path: str | os.PathLike = MANIFEST) -> dict[str, WeightEntry]:
    """``{name: WeightEntry}`` from a manifest CSV; unknown or missing columns raise naming them."""
    with open(path, newline='') as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != MANIFEST_FIELDS:
            raise ValueError(f'{path}: manifest columns must be {MANIFEST_FIELDS}, got {reader.fieldnames}')
        return {row['name']: WeightEntry(**row) for row in reader}


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise ``ChecksumError`` (one line, naming the file) unless ``path`` hashes to ``expected``."""
    got = sha256_file(path)
    if got != expected.lower():
        raise ChecksumError(f'{path}: sha256 mismatch: expected {expected.lower()}, got {got}')


def download_weights(name: str, cache_dir: str | os.PathLike | None = None,
                     manifest: str | os.PathLike = MANIFEST, progress: bool = True) -> str:
    """Download the manifest entry ``name`` into the cache (once), verify its sha256, return the path.

    A file whose hash does not match is removed and ``ChecksumError`` is raised, so a broken
    download is never used or kept.
    """
    entries = read_manifest(manifest)
    if name not in entries:
        raise KeyError(f"'{name}' is not in {manifest}; known: {', '.join(sorted(entries))}")
    entry = entries[name]
    cache = Path(cache_dir or Path(torch.hub.get_dir()) / 'attention-zoo')
    cache.mkdir(parents=True, exist_ok=True)
    # named after the entry: some hosts' URLs end in '/' or a query, not a file name
    dst = cache / f'{entry.name}.{entry.format}'
    if not dst.exists():
        tmp = dst.with_suffix(dst.suffix + '.part')
        torch.hub.download_url_to_file(entry.url, str(tmp), progress=progress)
        os.replace(tmp, dst)
    if entry.sha256:
        try:
            verify_sha256(dst, entry.sha256)
        except ChecksumError:
            dst.unlink()
            raise
    return str(dst)


def load_checkpoint_file(path: str | os.PathLike) -> dict:
    """Read a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` checkpoint without unpickling code.

    Returns the object as stored (a state dict, or a dict wrapping one). Raises
    ``FileNotFoundError`` or ``CheckpointError`` with a one-line message naming the file.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f'{path}: truncated or corrupt safetensors file ({err})') from None
    from zoo.engine.safe_load import allow_mmengine_checkpoints

    allow_mmengine_checkpoints()
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, pickle.UnpicklingError) as err:
        text = str(err)
        if 'Unsupported global' in text or 'Weights only load failed' in text:
            glob = text.split('Unsupported global: ')[-1].split(' was not')[0] if 'Unsupported global' in text else '?'
            raise CheckpointError(f'{path}: contains a pickled object that weights_only loading refuses '
                                  f'({glob}); not loading it') from None
        reason = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        raise CheckpointError(f'{path}: truncated or corrupt checkpoint ({reason})') from None


def unwrap_state_dict(obj: Mapping) -> dict[str, torch.Tensor]:
    """The tensor state dict inside a published checkpoint (``model``, ``state_dict``,
    ``state_dict_ema``, ``model_ema`` wrappers; ``module.`` prefixes removed)."""
    for key in ('state_dict_ema', 'model_ema', 'state_dict', 'model'):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    return {k.removeprefix('module.'): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> str:
    """Write tensors to ``path`` (safetensors needs contiguous, unshared storage: copies are made)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return str(path)


def convert_checkpoint(model_name: str, src: str | os.PathLike, dst: str | os.PathLike,
                       **model_kwargs) -> str:
    """Official checkpoint -> zoo safetensors, through the model's own ``checkpoint_filter_fn``.

    The model is built by ``timm.create_model(model_name, pretrained=True,
    pretrained_cfg_overlay=dict(file=src))``: exactly the path a user's load takes, so a file
    that converts also loads.
    """
    import timm

    import zoo  # noqa: F401

    load_checkpoint_file(src)  # one-line error for truncated/corrupt files before timm sees them
    model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(src)),
                              **model_kwargs)
    meta = dict(model=model_name, source=os.path.basename(str(src)), format='zoo')
    return save_safetensors(model.state_dict(), dst, metadata=meta)


def create_model(name: str, pretrained: bool = False, cache_dir: str | None = None, **kwargs) -> torch.nn.Module:
    """``timm.create_model`` with the zoo's verified download: for a ``name`` in the manifest and
    ``pretrained=True``, the file is downloaded once, checked against its sha256, then loaded
    through timm's ``file`` route (and the model's ``checkpoint_filter_fn``)."""
    import timm

    import zoo  # noqa: F401

    if pretrained and name in read_manifest():
        path = download_weights(name, cache_dir=cache_dir)
        arch = name.split('.')[0]
        overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {}, file=path)
        return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    return timm.create_model(name, pretrained=pretrained, **kwargs)
