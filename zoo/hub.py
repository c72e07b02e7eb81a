"""Weights: where pretrained weights come from, how they are downloaded and checked, and how they load.

A model's pretrained cfg (a :class:`ZooPretrainedCfg`, made by :func:`zoo_default_cfgs` next to the family's
``@register_model`` functions) is the one source of its weights' metadata: the source (``url`` /
``hf_hub_id``), the sha256 where the publisher gives one, the license, ``paper_ids`` and the paper's numbers.
``weights/manifest.csv`` (:func:`manifest_csv`) and the README model table are generated from the cfgs.

There is one download route, timm's ``timm.create_model(name, pretrained=True)``: the zoo families build
through :func:`build_model_with_weights`, which makes the cfg's source (``file``, ``hf_hub_id`` or ``url``) a
checked local file first, then timm loads that file through its own ``file`` route and the model's
``checkpoint_filter_fn``. (Models timm builds itself, MambaOut, take timm's own download code; wrapping them
in :func:`create_model` adds the same checks.) On the way:

* URLs are downloaded once into timm's cache (``<TORCH_HOME>/hub/checkpoints``) under the file name
  the cfg gives (``url=(URL, FILE_NAME)``, timm's own form): publishers' URLs such as
  ``https://cloud.tsinghua.edu.cn/f/<id>/?dl=1`` have no file name of their own. A file lock makes
  the ranks of a distributed run share one download; the sha256 is checked where the cfg records one
  (a mismatching download is not kept).
* No network is told within seconds (``ZOO_NETWORK_TIMEOUT``, default 5 s, to reach the host)
  instead of after the Hugging Face client's retries, and ``HF_HUB_OFFLINE=1`` is honoured for every
  download (files already in a cache still load). A failed download raises :class:`DownloadError`:
  one line naming the URL or hub id and how to go on without it.
* A local file is checked before timm reads it: a missing, empty, truncated or foreign file, or one
  holding no tensors, raises one line naming the file; so does a file whose keys do not fit the model.

Loading never unpickles arbitrary objects: ``.pth`` files go through ``torch.load(weights_only=True)``
(with mmengine's own checkpoint types allow-listed, see ``zoo.engine.safe_load``), ``.safetensors``
through safetensors.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import json
import os
import pickle
import re
import socket
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from timm.models import PretrainedCfg

MANIFEST = Path(__file__).resolve().parent.parent / 'weights' / 'manifest.csv'
MANIFEST_FIELDS = ('name', 'url', 'sha256', 'format', 'license', 'conversion')

# Seconds to open a connection to a download host before calling the machine offline.
NETWORK_TIMEOUT = float(os.environ.get('ZOO_NETWORK_TIMEOUT', '5'))
# Seconds a started download may stall (no byte received) before it is given up.
READ_TIMEOUT = 60.0

LOCAL_WEIGHTS_HINT = (
    'use a local file with pretrained_cfg_overlay=dict(file=PATH) (tools: --checkpoint PATH) '
    'or no pretrained weights with pretrained=False (tools: --no-pretrained)'
)


class WeightsError(RuntimeError):
    """Pretrained weights that cannot be had or used; the message is one line naming the file or source."""


class CheckpointError(WeightsError):
    """A checkpoint file that cannot be read (empty, truncated, corrupt, not a checkpoint, no tensors)
    or whose keys do not fit the model."""


class ChecksumError(WeightsError):
    """A downloaded or local file whose sha256 differs from the one its cfg or overlay gives."""


class DownloadError(WeightsError):
    """Weights that could not be downloaded (offline, host unreachable, HTTP error)."""


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


# ------------------------------------------------------------------------------------------------
# Network: offline detection and downloads
# ------------------------------------------------------------------------------------------------
def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` set (in the environment now, or when huggingface_hub was imported)."""
    if os.environ.get('HF_HUB_OFFLINE', '').strip().upper() in ('1', 'ON', 'YES', 'TRUE'):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def unreachable(url: str, timeout: float | None = None) -> str | None:
    """Why ``url``'s host (or the proxy for it) cannot be reached, or ``None`` when a TCP connection
    opens within ``timeout`` seconds. Fails within seconds where an HTTP client would retry for long."""
    parts = urlparse(url)
    if parts.scheme not in ('http', 'https') or not parts.hostname:
        return None  # file:// and the like need no network
    host, port = parts.hostname, parts.port or (443 if parts.scheme == 'https' else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlparse(proxy if '://' in proxy else f'http://{proxy}')
        host, port = p.hostname or host, p.port or 80
    try:
        socket.create_connection((host, port), timeout=NETWORK_TIMEOUT if timeout is None else timeout).close()
    except OSError as err:
        why = err.strerror or str(err) or type(err).__name__
        return f'no network? cannot reach {host}:{port}: {why}'
    return None


def _fail(what: str, source: str, reason: str) -> DownloadError:
    return DownloadError(f'cannot download {what} from {source} ({reason}); {LOCAL_WEIGHTS_HINT}')


def download_file(
    url: str, dst: str | os.PathLike, sha256: str = '', progress: bool = True, what: str = 'weights'
) -> str:
    """Download ``url`` to ``dst`` unless it is there; return ``dst``.

    Concurrent callers (the ranks of a distributed run) share one download through a file lock. The
    file is written under a temporary name and moved into place only when complete and, if ``sha256``
    is given, matching (else ``ChecksumError``, nothing kept). Offline, an unreachable host, an HTTP
    error or a stalled transfer raise ``DownloadError`` naming ``what`` and ``url``.
    """
    from filelock import FileLock

    dst = Path(dst)
    if dst.is_file():
        return str(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dst) + '.lock'):
        if dst.is_file():  # another process finished it while this one waited
            return str(dst)
        if is_offline():
            raise _fail(what, url, f'HF_HUB_OFFLINE is set and {dst} is not in the cache')
        reason = unreachable(url)
        if reason:
            raise _fail(what, url, reason)
        tmp = dst.with_name(f'{dst.name}.{os.getpid()}.part')
        try:
            got, n, total = _fetch(url, tmp, progress)
            if total and n != total:
                raise _fail(what, url, f'the connection closed after {n} of {total} bytes')
            if sha256 and got != sha256.lower():
                raise ChecksumError(
                    f'{url} -> {dst}: sha256 mismatch: expected {sha256.lower()}, got {got} (download discarded)'
                )
            os.replace(tmp, dst)
        except urllib.error.HTTPError as err:
            raise _fail(what, url, f'HTTP {err.code} {err.reason}') from None
        except urllib.error.URLError as err:
            raise _fail(what, url, str(err.reason)) from None
        except TimeoutError:
            raise _fail(what, url, f'no data for {READ_TIMEOUT:.0f} s') from None
        except (OSError, http.client.HTTPException) as err:
            raise _fail(what, url, _first_line(err)) from None
        finally:
            tmp.unlink(missing_ok=True)
    return str(dst)


def _fetch(url: str, tmp: Path, progress: bool) -> tuple[str, int, int]:
    """Stream ``url`` into ``tmp``; returns (sha256, bytes received, Content-Length or 0)."""
    req = urllib.request.Request(url, headers={'User-Agent': 'attention-zoo'})
    h, n = hashlib.sha256(), 0
    with urllib.request.urlopen(req, timeout=READ_TIMEOUT) as r, open(tmp, 'wb') as f:
        total = int(r.headers.get('Content-Length') or 0)
        bar = None
        if progress:
            try:
                from tqdm import tqdm

                bar = tqdm(total=total or None, unit='B', unit_scale=True, desc=tmp.name.split('.part')[0])
            except ImportError:
                pass
        while chunk := r.read(1 << 20):
            f.write(chunk)
            h.update(chunk)
            n += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    return h.hexdigest(), n, total


def cache_file_name(url: str | tuple[str, str], name: str) -> str:
    """The cache file name for a cfg ``url``: the name a ``(URL, FILE_NAME)`` pair gives, else the URL's
    own file name (torch.hub's rule, so caches are shared), else ``<name>-<hash of the URL>.pth`` for
    URLs that end in '/' or a query (torch.hub would derive an empty name there)."""
    if isinstance(url, (tuple, list)):
        return url[1]
    base = os.path.basename(urlparse(url).path)
    if base and '.' in base:
        return base
    return f'{name}-{hashlib.sha256(url.encode()).hexdigest()[:10]}.pth'


# the fields ZooPretrainedCfg adds to timm's, kept out of model.pretrained_cfg
ZOO_CFG_FIELDS = ('sha256', 'paper')


@dataclass
class ZooPretrainedCfg(PretrainedCfg):
    """timm's ``PretrainedCfg`` plus what the zoo records about the weights and the paper, so that one cfg is
    the only source of a model's metadata (``weights/manifest.csv`` and the README model table are generated
    from the cfgs):

    * ``sha256``: the weights file's sha256 where the publisher gives one (checked on download);
    * ``paper``: the paper's numbers for the architecture (``params_m``, ``gmacs``, ``top1``, ...; each family
      names their sources in a comment above its table).

    Both stay out of :meth:`to_dict`, so ``model.pretrained_cfg`` and a Hub folder's ``config.json`` hold
    timm's fields only and load in plain timm.
    """

    sha256: str | None = None
    paper: dict | None = None

    def to_dict(self, remove_source: bool = False, remove_null: bool = True) -> dict:
        out = super().to_dict(remove_source=remove_source, remove_null=remove_null)
        for key in ZOO_CFG_FIELDS:
            out.pop(key, None)
        return out


def zoo_default_cfgs(
    cfgs: Mapping[str, dict], paper: Mapping[str, dict] | None = None, name_files: bool = True
) -> dict:
    """timm's ``generate_default_cfgs`` over :class:`ZooPretrainedCfg`: every ``'arch.tag'`` cfg gets
    ``paper=paper[arch]`` and, with ``name_files``, a URL gets the cache file name ``url=(URL, 'arch.tag.pth')``
    (the form timm's Hub cfgs use; publishers' URLs such as ``https://cloud.tsinghua.edu.cn/f/<id>/?dl=1`` have no
    file name). Zoo builders understand that form; timm's own builders need a plain URL (``name_files=False``)."""
    from timm.models import generate_default_cfgs, split_model_name_tag

    paper = paper or {}
    out = {}
    for key, cfg in cfgs.items():
        arch = split_model_name_tag(key)[0]
        cfg = dict(cfg, paper=paper.get(arch, cfg.get('paper')))
        if name_files and isinstance(cfg.get('url'), str) and cfg['url']:
            cfg['url'] = (cfg['url'], f'{key}.pth')
        out[key] = ZooPretrainedCfg(**cfg)
    return generate_default_cfgs(out)


def add_pretrained_tags(cfgs: Mapping[str, dict], paper: Mapping[str, dict] | None = None) -> None:
    """Register extra ``'arch.tag'`` pretrained cfgs for models timm itself registers (MambaOut's official
    GitHub releases), after timm's own tags, so ``timm.create_model('arch.tag', pretrained=True)`` finds them.
    timm has no public call for this; it is done as ``register_model`` does it."""
    from dataclasses import replace

    from timm.models import _registry as reg

    for arch, default_cfg in zoo_default_cfgs(cfgs, paper, name_files=False).items():
        if arch not in reg._model_default_cfgs:
            raise KeyError(f"'{arch}' is not a timm model; register it with @register_model instead")
        for tag, cfg in default_cfg.cfgs.items():
            name = f'{arch}.{tag}'
            cfg = replace(cfg, architecture=arch, tag=tag)
            reg._model_default_cfgs[arch].cfgs[tag] = cfg
            if tag not in reg._model_default_cfgs[arch].tags:
                reg._model_default_cfgs[arch].tags.append(tag)
            reg._model_pretrained_cfgs[name] = cfg
            if cfg.has_weights:
                reg._model_has_pretrained.add(name)
            if name not in reg._model_with_tags[arch]:
                reg._model_with_tags[arch].append(name)


def weight_cfgs() -> dict[str, ZooPretrainedCfg]:
    """``{'arch.tag': cfg}`` for every zoo cfg (a :class:`ZooPretrainedCfg`) of every zoo model."""
    from timm.models import get_arch_pretrained_cfgs

    from zoo.models import list_zoo_models

    out = {}
    for arch in list_zoo_models():
        out.update({k: v for k, v in get_arch_pretrained_cfgs(arch).items() if isinstance(v, ZooPretrainedCfg)})
    return out


def _url_of(cfg: Any) -> str:
    """The download URL of a cfg, whose ``url`` may be timm's ``(URL, FILE_NAME)`` pair; '' when it has none."""
    url = cfg.url
    return (url[0] if isinstance(url, (tuple, list)) else url) or ''


def manifest_rows() -> list[dict[str, str]]:
    """``weights/manifest.csv`` as generated from the cfgs: one row per cfg with a download URL."""
    from timm.models import model_entrypoint

    rows = []
    for name, cfg in weight_cfgs().items():
        url = _url_of(cfg)
        if not url:
            continue
        module = model_entrypoint(cfg.architecture).__module__
        rows.append(
            dict(
                name=name,
                url=url,
                sha256=cfg.sha256 or '',
                format='safetensors' if url.split('?')[0].endswith('.safetensors') else 'pth',
                license=cfg.license or '',
                conversion=f'{module}.checkpoint_filter_fn',
            )
        )
    return sorted(rows, key=lambda r: r['name'])


def manifest_csv() -> str:
    """The text of ``weights/manifest.csv`` (:func:`manifest_rows` as CSV)."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(manifest_rows())
    return buf.getvalue()


def _default_cache() -> Path:
    return Path(torch.hub.get_dir()) / 'checkpoints'  # timm's get_cache_dir()


def local_or_cached(source: str, folder: str, what: str) -> str:
    """A local path as it is; an http(s) URL downloaded once (:func:`download_file`) into
    ``<torch hub>/checkpoints/<folder>/<the URL's file name, query dropped>``, and that file's path."""
    if not source.startswith(('http://', 'https://')):
        return source
    filename = source.split('?', 1)[0].rstrip('/').rsplit('/', 1)[1]
    return download_file(source, _default_cache() / folder / filename, what=what)


def hf_weights_file(
    hub_id: str, filename: str | None = None, cache_dir: str | os.PathLike | None = None, what: str = 'weights'
) -> str:
    """Local path of a Hugging Face Hub weights file (timm's choice: ``filename``, else
    ``model.safetensors`` then ``pytorch_model.bin``), downloaded through the HF cache.

    Offline (``HF_HUB_OFFLINE`` or no connection within ``NETWORK_TIMEOUT``) a cached file is used and a
    missing one raises ``DownloadError`` at once, not after the client's retries.
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError

    repo, _, revision = hub_id.partition('@')
    revision = revision or None
    names = [filename] if filename else ['model.safetensors', 'pytorch_model.bin']
    source = f'hf-hub:{hub_id}'
    reason = 'HF_HUB_OFFLINE is set' if is_offline() else unreachable(constants.ENDPOINT)
    if reason:
        for n in names:
            path = try_to_load_from_cache(repo, n, cache_dir=cache_dir, revision=revision)
            if isinstance(path, str):
                return path
        raise _fail(what, source, f'{reason}; not in the Hugging Face cache')
    for n in names:
        try:
            return hf_hub_download(repo, n, revision=revision, cache_dir=cache_dir, library_name='attention-zoo')
        except EntryNotFoundError:
            continue
        except Exception as err:  # HTTP, auth, repository-not-found, disk: all end the same way
            raise _fail(what, f'{source} ({n})', _first_line(err)) from None
    raise _fail(what, source, f'the repository has none of {", ".join(names)}')


# ------------------------------------------------------------------------------------------------
# Reading checkpoint files
# ------------------------------------------------------------------------------------------------
def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _exists(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f'checkpoint {path} does not exist')
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: is a directory, not a checkpoint file')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{path}: empty file (0 bytes)')


def _check_safetensors_header(path: str) -> list[str]:
    """Tensor names in a safetensors file, after checking that the header parses and the file holds
    every byte the header promises (a cut-off download fails here, not halfway through a load)."""
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(8)
        n = int.from_bytes(head, 'little') if len(head) == 8 else -1
        if n <= 0 or 8 + n > size:
            raise CheckpointError(
                f'{path}: not a safetensors file, or truncated (header of {n} bytes in a {size}-byte file)'
            )
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise CheckpointError(f'{path}: corrupt safetensors header (not JSON)') from None
    if not isinstance(header, dict):
        raise CheckpointError(f'{path}: corrupt safetensors header')
    tensors = {k: v for k, v in header.items() if k != '__metadata__'}
    end = max((int(v['data_offsets'][1]) for v in tensors.values()), default=0)
    if 8 + n + end > size:
        raise CheckpointError(
            f'{path}: truncated safetensors file ({size} of {8 + n + end} bytes): an interrupted download or copy?'
        )
    return list(tensors)


_MMENGINE_TYPES_ALLOWED = False


def allow_mmengine_types() -> None:
    """Add the data-only types that mmengine checkpoints hold (``HistoryBuffer``, ``ConfigDict``, numpy arrays,
    dtypes and scalars) to torch's ``weights_only`` allow-list, so mmengine's own files load without switching the
    safety off; any other global still fails. Nothing to do without mmengine (idempotent)."""
    global _MMENGINE_TYPES_ALLOWED
    if _MMENGINE_TYPES_ALLOWED:
        return
    try:
        from mmengine.config.config import ConfigDict
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:  # no mmengine: its checkpoint types cannot occur
        return
    import codecs
    import collections

    import numpy as np

    np_core = getattr(np, '_core', None) or np.core
    dtypes = [
        type(np.dtype(t))
        for t in (
            'float64',
            'float32',
            'float16',
            'int64',
            'int32',
            'int8',
            'uint8',
            'bool',
            'int16',
            'uint16',
            'uint32',
            'uint64',
        )
    ]
    torch.serialization.add_safe_globals(
        [
            HistoryBuffer,
            ConfigDict,
            collections.OrderedDict,
            collections.defaultdict,
            np.ndarray,
            np.dtype,
            *dtypes,
            np_core.multiarray._reconstruct,
            np_core.multiarray.scalar,
            codecs.encode,  # how numpy pickles the raw bytes of scalars
        ]
    )
    _MMENGINE_TYPES_ALLOWED = True


def _load_torch(path: str, mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` with one-line ``CheckpointError``s that say what the file is."""
    with open(path, 'rb') as f:
        head = f.read(16)
    if head[:4] == b'PK\x03\x04':  # torch's zip format
        if not zipfile.is_zipfile(path):
            raise CheckpointError(
                f'{path}: truncated checkpoint (a zip archive without its end): an interrupted download or copy?'
            )
    elif head[:1] == b'\x80':  # a pickle: torch's legacy format (no mmap), or any other pickle
        mmap = False
    elif len(head) >= 9 and head[8:9] == b'{':
        raise CheckpointError(f'{path}: this is a safetensors file; name it *.safetensors to load it')
    else:
        raise CheckpointError(
            f'{path}: not a checkpoint (neither a PyTorch .pth nor a safetensors file; it '
            f'starts with bytes {head[:8].hex(" ")})'
        )
    allow_mmengine_types()
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, pickle.UnpicklingError) as err:
        text = str(err)
        if 'Unsupported global' in text:
            glob = text.split('Unsupported global: ')[-1].split(' was not')[0].strip()
            raise CheckpointError(
                f'{path}: contains a pickled object that weights_only loading refuses ({glob}); not loading it'
            ) from None
        if 'Weights only load failed' in text or isinstance(err, pickle.UnpicklingError):
            m = re.search(r'WeightsUnpickler error:\s*(.+)', text)
            why = m.group(1).strip() if m else _first_line(err)
            raise CheckpointError(
                f'{path}: not a PyTorch checkpoint that loads with weights_only=True ({why}); not loading it'
            ) from None
        raise CheckpointError(f'{path}: truncated or corrupt checkpoint ({_first_line(err)})') from None


def load_checkpoint_file(path: str | os.PathLike) -> dict:
    """Read a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` checkpoint without unpickling code.

    Returns the object as stored (a state dict, or a dict wrapping one). Raises
    ``FileNotFoundError`` or ``CheckpointError`` with a one-line message naming the file.
    """
    path = str(path)
    _exists(path)
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        _check_safetensors_header(path)
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f'{path}: truncated or corrupt safetensors file ({err})') from None
    return _load_torch(path)


def select_state_dict(checkpoint: Any) -> Any:
    """The state dict inside a checkpoint, by the one precedence every entry point of the zoo uses:
    ``state_dict_ema``, ``model_ema`` (when not None), ``state_dict``, ``model``, else the object itself.

    This is the order of timm's ``load_state_dict(use_ema=True)`` (its file route), so a file gives the same
    weights through ``pretrained_cfg_overlay=dict(file=...)``, ``tools/test.py`` and a family's
    ``checkpoint_filter_fn``. Official checkpoints that hold both a model and an EMA copy (Agent-CSwin's
    ``main_ema.py``) are evaluated with the EMA copy by their authors too.
    """
    if isinstance(checkpoint, Mapping):
        for key in ('state_dict_ema', 'model_ema'):
            if isinstance(checkpoint.get(key), Mapping):
                return checkpoint[key]
        for key in ('state_dict', 'model'):
            if isinstance(checkpoint.get(key), Mapping):
                return checkpoint[key]
    return checkpoint


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:5]]
        more = ', ...' if len(obj) > 5 else ''
        return f'a dict of {len(obj)} entries: {", ".join(keys)}{more}' if obj else 'an empty dict'
    return f'a {type(obj).__name__}'


def check_weights_file(path: str | os.PathLike) -> None:
    """Check, cheaply, that ``path`` is a checkpoint holding weight tensors, before timm reads it.

    The tensors' bytes are not read (a memory-mapped load for ``.pth``, the header for safetensors).
    Raises ``FileNotFoundError`` / ``CheckpointError`` in one line naming the file, where timm's own
    reader would raise a bare ``EOFError`` or ``FileNotFoundError()``.
    """
    path = str(path)
    _exists(path)
    if path.endswith('.safetensors'):
        if not _check_safetensors_header(path):
            raise CheckpointError(f'{path}: holds no tensors')
        return
    obj = _load_torch(path, mmap=True)
    state = select_state_dict(obj)
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{path}: holds no weight tensors ({_describe(state)})')


def unwrap_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The tensors of the state dict inside ``checkpoint`` (:func:`select_state_dict`), with the
    ``module.`` (DataParallel / DDP) and ``_orig_mod.`` (``torch.compile``) prefixes removed."""
    state = select_state_dict(checkpoint)
    if not isinstance(state, Mapping):
        raise TypeError(f'expected a state dict or a checkpoint dict wrapping one, got {_describe(state)}')
    return {
        k.removeprefix('module.').removeprefix('_orig_mod.'): v for k, v in state.items() if isinstance(v, torch.Tensor)
    }


def save_safetensors(
    state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> str:
    """Write tensors to ``path`` (safetensors needs contiguous, unshared storage: copies are made)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return str(path)


# ------------------------------------------------------------------------------------------------
# The pretrained route
# ------------------------------------------------------------------------------------------------
def _source(cfg: Any, overlay: Mapping) -> tuple[str, Any]:
    """(kind, location) in timm's order of precedence (``_resolve_pretrained_source``), except that a URL
    given in the user's overlay wins over the registry's Hub id (timm would still go to the Hub)."""
    if overlay.get('url') and not overlay.get('hf_hub_id') and not overlay.get('file') and cfg.state_dict is None:
        return 'url', cfg.url
    if cfg.source == 'hf-hub' and cfg.hf_hub_id:
        return 'hf-hub', cfg.hf_hub_id
    if cfg.source == 'local-dir':
        return 'local-dir', cfg.file
    if cfg.state_dict is not None:
        return 'state_dict', None
    if cfg.file:
        return 'file', cfg.file
    if cfg.hf_hub_id:
        try:
            import huggingface_hub  # noqa: F401
        except ImportError:
            pass
        else:
            return 'hf-hub', cfg.hf_hub_id
    if cfg.url:
        return 'url', cfg.url
    return '', None


def pretrained_overlay(
    model_name: str,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """The ``pretrained_cfg_overlay`` under which timm loads ``model_name``'s pretrained weights from a
    checked local file: the cfg's source (a file, a URL or a Hub id, after the user's overlay) is
    downloaded if needed (:func:`download_file`, :func:`hf_weights_file`) and checked
    (:func:`check_weights_file`), and its path set as ``file``. The sha256 is checked where the zoo cfg records
    one, or where the overlay gives one (``pretrained_cfg_overlay=dict(file=PATH, sha256=HEX)``).

    Raises ``DownloadError``, ``CheckpointError`` or ``FileNotFoundError`` in one line, or
    ``WeightsError`` when the cfg has no weights at all.
    """
    from timm.models import resolve_pretrained_cfg, split_model_name_tag

    variant, tag = split_model_name_tag(model_name)
    overlay = dict(pretrained_cfg_overlay or {})
    # A sha256 given with the overlay checks a file or URL of one's own; else a zoo cfg's checks the cfg's own URL.
    own_sha256 = overlay.pop('sha256', None)
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=pretrained_cfg or tag or None, pretrained_cfg_overlay=overlay)
    name = f'{cfg.architecture or variant}.{cfg.tag}' if cfg.tag else cfg.architecture or variant
    sha256 = own_sha256 or ('' if overlay.get('url') else getattr(cfg, 'sha256', None)) or ''
    kind, loc = _source(cfg, overlay)
    what = f'the pretrained weights of {name}'
    if kind in ('state_dict', 'local-dir'):
        return overlay
    if kind == 'file':
        path = str(loc)
    elif kind == 'url':
        dst = Path(cache_dir or _default_cache()) / cache_file_name(loc, name)
        path = download_file(_url_of(cfg), dst, sha256=sha256, what=what)
    elif kind == 'hf-hub':
        path = hf_weights_file(loc, cfg.hf_hub_filename, cache_dir, what=what)
    else:
        notes = f' ({"; ".join(cfg.notes) if isinstance(cfg.notes, (list, tuple)) else cfg.notes})' if cfg.notes else ''
        raise WeightsError(
            f'{name} has no weights to download (its pretrained cfg gives no url, hf_hub_id or '
            f'file){notes}; {LOCAL_WEIGHTS_HINT}'
        )
    if kind == 'file' and own_sha256:
        verify_sha256(path, own_sha256)
    check_weights_file(path)
    overlay['file'] = path
    if cfg.source == 'hf-hub':  # an 'hf-hub:' model name: timm would go to the Hub before the file
        overlay['source'] = None
    return overlay


def _load_error_summary(err: BaseException, limit: int = 3) -> str:
    """torch's multi-line ``load_state_dict`` error in one line: counts and the first few keys."""
    parts = []
    for line in str(err).splitlines()[1:]:
        line = line.strip().rstrip('.')
        m = re.match(r'(Missing|Unexpected) key\(s\) in state_dict: (.*)', line)
        if m:
            keys = re.findall(r'"([^"]+)"', m.group(2))
            more = ', ...' if len(keys) > limit else ''
            parts.append(f'{len(keys)} {m.group(1).lower()} keys ({", ".join(keys[:limit])}{more})')
        elif line.startswith('size mismatch'):
            parts.append(line)
    mismatches = [p for p in parts if p.startswith('size mismatch')]
    if len(mismatches) > 1:
        parts = [p for p in parts if not p.startswith('size mismatch')] + [
            f'{mismatches[0]} (and {len(mismatches) - 1} more size mismatches)'
        ]
    return '; '.join(parts) or _first_line(err)


def _guarded_filter(filter_fn: Callable | None, path: str, variant: str) -> Callable:
    def guarded(state_dict: dict, model: torch.nn.Module) -> dict:
        if filter_fn is None:
            return state_dict
        try:
            return filter_fn(state_dict, model)
        except Exception as err:  # a KeyError deep in a filter says nothing about which file was wrong
            raise CheckpointError(
                f'{path}: cannot be mapped onto {variant} ({type(err).__name__}: {_first_line(err)})'
            ) from None

    return guarded


def build_model_with_weights(
    model_cls: Callable, variant: str, pretrained: bool, pretrained_filter_fn: Callable | None = None, **kwargs
) -> torch.nn.Module:
    """timm's ``build_model_with_cfg`` with the zoo's weight route in front: the zoo families build with
    this, so ``timm.create_model(zoo_name, pretrained=True, ...)`` downloads under the cfg's file name,
    fails fast offline, and names the file in one line when it is bad (see the module docstring)."""
    from timm.models import build_model_with_cfg

    if not pretrained:
        return build_model_with_cfg(model_cls, variant, pretrained, pretrained_filter_fn=pretrained_filter_fn, **kwargs)
    overlay = pretrained_overlay(
        variant, kwargs.get('pretrained_cfg'), kwargs.pop('pretrained_cfg_overlay', None), kwargs.get('cache_dir')
    )
    path = overlay.get('file')
    if path is None:  # an in-memory state_dict or a local-dir source: timm's route as it is
        return build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_filter_fn=pretrained_filter_fn,
            pretrained_cfg_overlay=overlay,
            **kwargs,
        )
    try:
        return build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_cfg_overlay=overlay,
            pretrained_filter_fn=_guarded_filter(pretrained_filter_fn, path, variant),
            **kwargs,
        )
    except RuntimeError as err:
        if 'Error(s) in loading state_dict' in str(err):
            raise CheckpointError(f'{path}: does not fit {variant}: {_load_error_summary(err)}') from None
        raise


def _is_zoo_model(name: str) -> bool:
    from timm.models import is_model, model_entrypoint, split_model_name_tag

    arch = split_model_name_tag(name)[0]
    return is_model(arch) and model_entrypoint(arch).__module__.startswith('zoo.')


def create_model(name: str, pretrained: bool = False, cache_dir: str | None = None, **kwargs) -> torch.nn.Module:
    """``timm.create_model`` with the zoo's weight checks for timm's own models as well.

    Zoo models check their weights inside their own builders, so for them this is ``timm.create_model``. For
    a model timm builds (MambaOut, including the zoo's ``'mambaout_femto.official'`` tags), the cfg's source
    (file, URL, Hub id) is fetched and checked first by :func:`pretrained_overlay` (the sha256 where the cfg
    records one, one-line ``DownloadError`` offline, ``CheckpointError`` for a bad file), then timm loads the
    checked file.
    """
    import timm

    import zoo  # noqa: F401

    if not pretrained or _is_zoo_model(name):  # zoo models take the route inside their own builder
        return timm.create_model(name, pretrained=pretrained, cache_dir=cache_dir, **kwargs)
    if timm.models.is_model(timm.models.split_model_name_tag(name)[0]):
        kwargs['pretrained_cfg_overlay'] = pretrained_overlay(
            name, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'), cache_dir
        )
    try:
        return timm.create_model(name, pretrained=True, cache_dir=cache_dir, **kwargs)
    except RuntimeError as err:
        path = (kwargs.get('pretrained_cfg_overlay') or {}).get('file')
        if path and 'Error(s) in loading state_dict' in str(err):
            raise CheckpointError(f'{path}: does not fit {name}: {_load_error_summary(err)}') from None
        raise


def convert_checkpoint(model_name: str, src: str | os.PathLike, dst: str | os.PathLike, **model_kwargs) -> str:
    """Official checkpoint -> zoo safetensors, through the model's own ``checkpoint_filter_fn``.

    The model is built by ``timm.create_model(model_name, pretrained=True,
    pretrained_cfg_overlay=dict(file=src))``: exactly the path a user's load takes, so a file
    that converts also loads.
    """
    overlay = dict(file=str(src))
    if 'num_classes' in model_kwargs:  # else timm drops a head whose size differs from the registered cfg's
        overlay['num_classes'] = model_kwargs['num_classes']
    model = create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **model_kwargs)
    meta = dict(model=model_name, source=os.path.basename(str(src)), format='zoo')
    return save_safetensors(model.state_dict(), dst, metadata=meta)


def drop_pretrained(model_cfg: dict) -> list[str]:
    """Switch off every pretrained-weight source in an mmengine model config, in place, for a run whose
    checkpoint replaces those weights (``tools/test.py``, ``tools/infer.py``): nothing is downloaded
    that would be overwritten. Returns the config keys changed, e.g. ``['model.backbone.pretrained']``.

    Covers ``TimmClassifier`` (``model_kwargs.pretrained``), backbones (``backbone.pretrained``, a
    ``Pretrained`` ``init_cfg``) and mmseg's model-level ``pretrained``.
    """
    changed: list[str] = []

    def pretrained_init(init: Any) -> bool:
        items = init if isinstance(init, (list, tuple)) else [init]
        return any(isinstance(i, Mapping) and i.get('type') == 'Pretrained' for i in items)

    def visit(node: Any, prefix: str) -> None:
        if not isinstance(node, dict):
            return
        if node.get('pretrained') not in (None, False):
            node['pretrained'] = None if node.get('type') != 'TimmClassifier' else False
            changed.append(f'{prefix}.pretrained')
        if pretrained_init(node.get('init_cfg')):
            node['init_cfg'] = None
            changed.append(f'{prefix}.init_cfg')
        kw = node.get('model_kwargs')
        if isinstance(kw, dict) and kw.get('pretrained'):
            kw['pretrained'] = False
            changed.append(f'{prefix}.model_kwargs.pretrained')
        if isinstance(node.get('backbone'), dict):
            visit(node['backbone'], f'{prefix}.backbone')

    visit(model_cfg, 'model')
    return changed
