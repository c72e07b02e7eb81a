"""Pretrained weights, the way a new user meets them.

* The real download code (``timm.create_model(name, pretrained=True)`` through the zoo's route) fetches
  from a local HTTP server on 127.0.0.1 that serves files under the publishers' URL shapes: Tsinghua
  Cloud ``/f/<id>/?dl=1`` (a URL without a file name, answered by a redirect), GitHub release and raw
  paths, a Hugging Face ``resolve`` path. Nothing is mocked; TORCH_HOME / HF_HOME point into tmp.
* Every family's own state dict, the safetensors ``ExportSafetensorsHook`` writes after training and the
  output of ``tools/convert.py`` reload through every route: ``pretrained_cfg_overlay=dict(file=...)``,
  ``zoo.hub.create_model`` and ``tools/test.py CONFIG FILE``.
* Offline (a closed local port, ``HF_HUB_OFFLINE=1``, an unreachable Hub endpoint) and bad local files
  give one line that names the URL / Hub id / file and the ways round it.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from conftest import ROOT, run_tool

import zoo  # noqa: F401
from zoo.hub import (
    CheckpointError,
    ChecksumError,
    DownloadError,
    WeightsError,
    ZooPretrainedCfg,
    create_model,
    load_checkpoint_file,
    manifest_rows,
    save_safetensors,
)
from zoo.models import list_zoo_models

# One tiny model per family (64 px inputs, 10 classes): the real architectures, shrunk.
TINY: dict[str, dict] = {
    'mambaout_femto': dict(depths=(1, 1, 1, 1), dims=(16, 24, 32, 48)),
    'agent_deit_tiny': dict(embed_dim=48, depth=2, num_heads=3, img_size=64, agent_num=(9, 9), agent_layer=2),
    'agent_pvt_tiny': dict(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1), img_size=64),
    'agent_swin_tiny': dict(
        embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 2, 3, 4), img_size=64, window_size=16, attn_type='AAAA'
    ),
    'agent_cswin_tiny': dict(
        embed_dim=16,
        depths=(1, 1, 1, 1),
        img_size=64,
        agent_split=(16, 8, 4, 2),
        split_size=(1, 2, 2, 2),
        agent_num=(9, 16, 4, 4),
    ),
    'qsd_transformer_15m': dict(embed_dim=(16, 32, 64, 64), depths=4),
    'mhs_vm_encoder_4h': dict(dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), d_state=4, img_size=64),
}

# Official MambaOut key layout (the GitHub release files) from timm keys; see timm's mambaout checkpoint_filter_fn.
_MAMBAOUT_OFFICIAL = [
    ('stem.', 'downsample_layers.0.'),
    ('head.pre_logits.fc.', 'head.fc1.'),
    ('head.pre_logits.norm.', 'head.norm.'),
    ('head.fc.', 'head.fc2.'),
    ('head.norm.', 'norm.'),
]


def _tiny(name: str, seed: int = 0) -> torch.nn.Module:
    """The family's tiny model with every float tensor moved off its init (so a load that silently
    keeps the init cannot pass), 10 classes."""
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=10, **TINY[name]).eval()
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.add_(torch.rand_like(v) * 0.05)  # positive: LSQ steps and BN variances stay valid
    return model


def _published(name: str, model: torch.nn.Module) -> dict:
    """What the publisher's file holds: MambaOut in the official GitHub-release layout, the others
    wrapped as their official files are (``model``); the filters map both onto the zoo's keys."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    if name.startswith('mambaout'):
        out = {}
        for k, v in sd.items():
            k = next((k.replace(a, b, 1) for a, b in _MAMBAOUT_OFFICIAL if k.startswith(a)), k)
            if k.startswith('stages.') and '.downsample.' in k:
                i = int(k.split('.')[1])
                k = f'downsample_layers.{i}.' + k.split('.downsample.', 1)[1]
            elif k.startswith('stages.') and '.blocks.' in k:
                k = k.replace('.blocks.', '.', 1)
            out[k] = v
        assert 'downsample_layers.0.conv1.weight' in out and 'stages.0.0.fc1.weight' in out
        return out
    return {'model': sd, 'epoch': 300}


def _assert_same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(expected), set(got) ^ set(expected)
    for k, v in expected.items():
        assert torch.equal(got[k], v), k


def _one_line_naming(err: BaseException, *names: str) -> str:
    msg = str(err)
    assert '\n' not in msg, msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


# ------------------------------------------------------------------------------------------------
# A local file host with the publishers' URL shapes
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def host():
    """An HTTP server on 127.0.0.1 (thread; stops at the end of the module, or by itself after 10 min).
    ``routes[path] = bytes`` serves a file, ``= ('redirect', path)`` answers 302, ``= ('short', bytes)``
    promises twice the bytes it sends. ``requests`` records every path asked for."""
    routes: dict[str, object] = {}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            requests.append(self.path)
            entry = routes.get(self.path)
            if entry is None:
                self.send_error(404)
                return
            if isinstance(entry, tuple) and entry[0] == 'redirect':
                self.send_response(302)
                self.send_header('Location', entry[1])
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            body = entry[1] if isinstance(entry, tuple) else entry
            self.send_response(200)
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Length', str(len(body) * (2 if isinstance(entry, tuple) else 1)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    stopper = threading.Timer(600, server.shutdown)  # bounded even if the module's teardown never runs
    stopper.daemon = True
    stopper.start()
    yield SimpleNamespace(base=f'http://127.0.0.1:{server.server_port}', routes=routes, requests=requests)
    stopper.cancel()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _publish(host, name: str, body: bytes) -> str:
    """Serve ``body`` under the URL shape of ``name``'s publisher (with the redirect the real host
    answers with); returns the URL a user would be given."""
    n = len(host.routes)
    if name.startswith('agent_'):  # Tsinghua Cloud (Seafile): /f/<id>/?dl=1 -> /seafhttp/files/<token>/<file>
        file_id = f'{n:04d}5115f15fdd7e4ab5'
        host.routes[f'/f/{file_id}/?dl=1'] = ('redirect', f'/seafhttp/files/tok{n}/{name}.pth')
        host.routes[f'/seafhttp/files/tok{n}/{name}.pth'] = body
        return f'{host.base}/f/{file_id}/?dl=1'
    if name.startswith('mambaout'):  # GitHub release asset -> a signed object URL
        path = f'/yuweihao/MambaOut/releases/download/model/{name}.pth'
        host.routes[path] = ('redirect', f'/github-production-release-asset/{n}?response-content-disposition=x')
        host.routes[f'/github-production-release-asset/{n}?response-content-disposition=x'] = body
        return host.base + path
    if name.startswith('mhs_vm'):  # GitHub raw file in the repository
        path = f'/PixDeep/MHS-VM/raw/main/pretrained/best_{n}.pth'
        host.routes[path] = ('redirect', f'/raw/PixDeep/MHS-VM/main/pretrained/best_{n}.pth')
        host.routes[f'/raw/PixDeep/MHS-VM/main/pretrained/best_{n}.pth'] = body
        return host.base + path
    path = f'/Xuerui123/QSD_Transformer/resolve/main/{n}_15M_w4.pth'  # a Hugging Face file URL
    host.routes[path] = body
    return host.base + path


@pytest.fixture
def caches(tmp_path: Path, monkeypatch) -> Path:
    """Fresh torch.hub and Hugging Face caches under tmp; online mode."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf'))
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def _bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# "Fails fast" is checked by what the code does, not by a clock that machine load stretches: Python's audit
# event ``socket.connect`` (PEP 578) records every connection attempt, so a retry loop (the Hugging Face
# client's ~46 s offline) shows up as repeated attempts however fast or loaded the machine is.
_audit_log: list | None = None
_audit_thread: int | None = None


def _audit_hook(event: str, args: tuple) -> None:
    # only the thread under test: a server or pool thread of another fixture is not the code checked here
    if _audit_log is not None and event == 'socket.connect' and threading.get_ident() == _audit_thread:
        _audit_log.append(args[1])


sys.addaudithook(_audit_hook)  # hooks cannot be removed; it records only inside _network_audit()


class _network_audit:
    """``with _network_audit() as log:`` -> ``log`` lists the addresses this thread tried to connect to
    in the block."""

    def __enter__(self) -> list:
        global _audit_log, _audit_thread
        _audit_log, _audit_thread = [], threading.get_ident()
        return _audit_log

    def __exit__(self, *exc) -> None:
        global _audit_log
        _audit_log = None


# The same record for a tool run in its own process (the hook is installed before the tool's code runs).
_AUDIT_WRAPPER = """
import atexit, runpy, sys
log_path, sys.argv = sys.argv[1], sys.argv[2:]
events = []
def hook(event, args):
    if event == 'socket.connect':
        events.append(f'socket.connect {args[1]!r}')
sys.addaudithook(hook)
atexit.register(lambda: open(log_path, 'w').write('\\n'.join(events)))
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _run_tool_audited(tmp_path: Path, *args: str, env: dict) -> tuple:
    """``run_tool(*args)`` with the network audit: ``(completed process, [event lines])``."""
    wrapper, log = tmp_path / 'audited.py', tmp_path / 'audit.log'
    wrapper.write_text(_AUDIT_WRAPPER)
    out = run_tool(str(wrapper), str(log), *args, env=env)
    return out, [line for line in log.read_text().splitlines() if line] if log.exists() else None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


# ------------------------------------------------------------------------------------------------
# Downloads
# ------------------------------------------------------------------------------------------------
def test_registered_cfgs_name_their_download_files() -> None:
    """Every cfg the zoo's builders download from carries a valid cache file name (timm's ``url=(URL, FILE_NAME)``),
    no such URL is left to torch.hub's name rule, and the generated manifest lists each URL once under the same
    name. The MambaOut ``.official`` tags, which timm's own builder downloads, keep plain URLs that end in a name."""
    manifest = {row['url']: row['name'] for row in manifest_rows()}
    named = 0
    for name in list_zoo_models():
        for full in timm.list_pretrained(f'{name}.*'):
            cfg = timm.models.get_pretrained_cfg(full)
            if not cfg.url:
                continue
            if name.startswith('mambaout'):
                assert isinstance(cfg, ZooPretrainedCfg) and full.endswith('.official'), full
                assert cfg.url.endswith(f'/{name}.pth') and manifest[cfg.url] == full, (full, cfg.url)
                continue
            assert isinstance(cfg.url, tuple), f'{full}: url without a file name'
            url, file_name = cfg.url
            assert file_name == f'{full}.pth', file_name
            assert manifest.get(url) == full, (full, url)
            named += 1
    assert named == 20  # 18 Agent-Attention checkpoints and 2 MHS-VM encoders
    assert len(manifest) == 25  # and 5 MambaOut releases


@pytest.mark.parametrize('name', list(TINY))
def test_pretrained_download_under_the_publishers_url(name: str, host, caches: Path) -> None:
    """``timm.create_model(name, pretrained=True)`` downloads from a URL of the publisher's shape (a
    Tsinghua URL has no file name: the issue's IsADirectoryError), caches it under a real file name,
    and loads it strictly through the family's filter; the second call reads the cache."""
    src = _tiny(name)
    url = _publish(host, name, _bytes(_published(name, src)))
    # num_classes in both places, else timm drops a head whose size differs from the cfg's 1000 classes
    kwargs = dict(num_classes=10, pretrained_cfg_overlay=dict(url=url, num_classes=10), **TINY[name])
    # MambaOut is timm's own model, whose factory the zoo does not own: the zoo's route is zoo.hub.create_model
    # (plain timm would still go to its Hub id, which the overlay's URL does not replace)
    make = create_model if name.startswith('mambaout') else timm.create_model
    model = make(name, pretrained=True, **kwargs)
    _assert_same_weights(model, src.state_dict())
    files = [p for p in caches.iterdir() if not p.name.endswith('.lock')]
    assert len(files) == 1 and files[0].is_file() and files[0].suffix == '.pth', files
    if name.startswith('agent_'):
        assert files[0].name.startswith(f'{name}.in1k-')  # cfg name + URL hash: '/f/<id>/' has no name
    asked = len(host.requests)
    again = make(name, pretrained=True, **kwargs)
    assert len(host.requests) == asked, 'the second load must come from the cache'
    _assert_same_weights(again, src.state_dict())


def test_registered_cfg_file_name_is_used_for_the_cache(caches: Path, monkeypatch) -> None:
    """The registered Agent-Swin cfg (Tsinghua URL) reads its file from the cache under the cfg's own
    name, offline: no download is attempted for a cached file."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    src = _tiny('agent_swin_tiny')
    caches.mkdir(parents=True)
    torch.save(_published('agent_swin_tiny', src), caches / 'agent_swin_tiny.in1k.pth')
    model = timm.create_model(
        'agent_swin_tiny',
        pretrained=True,
        num_classes=10,
        pretrained_cfg_overlay=dict(num_classes=10),
        **TINY['agent_swin_tiny'],
    )
    _assert_same_weights(model, src.state_dict())
    # dense tools build backbones with features_only: the same route
    feats = timm.create_model('agent_swin_tiny', pretrained=True, features_only=True, **TINY['agent_swin_tiny'])
    assert torch.equal(feats.model.layers[1].downsample.norm.weight, src.layers[1].downsample.norm.weight)


def test_download_checks_sha256_length_and_http_status(host, caches: Path) -> None:
    """Through ``timm.create_model(name, pretrained=True)``: a sha256 recorded in the model's cfg, or given with
    the overlay, is checked on download (a mismatching file is not kept); a cut-off transfer and an HTTP error
    are one line naming the URL."""
    from dataclasses import replace

    name = 'agent_deit_tiny'
    src = _tiny(name)
    body = _bytes(_published(name, src))
    host.routes['/org/repo/releases/download/v1/w.pth'] = body
    host.routes['/org/repo/releases/download/v1/cut.pth'] = ('short', body)
    url = f'{host.base}/org/repo/releases/download/v1/w.pth'
    kwargs = dict(num_classes=10, **TINY[name])

    def build(**overlay):
        overlay = dict(num_classes=10, **overlay)
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)

    _assert_same_weights(build(url=url, sha256=hashlib_sha256(body)), src.state_dict())
    for p in caches.iterdir():
        p.unlink()

    with pytest.raises(ChecksumError) as err:
        build(url=url, sha256='0' * 64)
    _one_line_naming(err.value, 'sha256 mismatch', url)
    assert not [p for p in caches.iterdir() if not p.name.endswith('.lock')], 'a bad download must not be kept'

    # the registered cfg's own sha256 (as a publisher's would be recorded), with the cfg's own URL
    cfg = replace(timm.models.get_pretrained_cfg(f'{name}.in1k'), url=(url, 'w.pth'), sha256='f' * 64, num_classes=10)
    with pytest.raises(ChecksumError) as err:
        timm.create_model(name, pretrained=True, pretrained_cfg=cfg, **kwargs)
    _one_line_naming(err.value, 'sha256 mismatch', 'f' * 64)
    model = timm.create_model(name, pretrained=True, pretrained_cfg=replace(cfg, sha256=hashlib_sha256(body)), **kwargs)
    _assert_same_weights(model, src.state_dict())

    with pytest.raises(DownloadError) as err:
        build(url=f'{host.base}/org/repo/releases/download/v1/cut.pth')
    _one_line_naming(err.value, '/releases/download/v1/cut.pth', f'closed after {len(body)} of {2 * len(body)}')

    with pytest.raises(DownloadError, match='HTTP 404'):
        build(url=f'{host.base}/org/repo/releases/download/v1/gone.pth')


def test_official_tag_downloads_through_timms_own_code(host, caches: Path) -> None:
    """MambaOut's ``.official`` tags are registered with timm: plain ``timm.create_model(...official,
    pretrained=True)`` downloads the GitHub-release layout with timm's own download code and maps it through
    timm's filter, under the release's file name."""
    name = 'mambaout_femto'
    src = _tiny(name)
    url = _publish(host, name, _bytes(_published(name, src)))
    assert url.endswith('/mambaout_femto.pth')
    model = timm.create_model(
        f'{name}.official',
        pretrained=True,
        num_classes=10,
        pretrained_cfg_overlay=dict(url=url, num_classes=10),
        **TINY[name],
    )
    _assert_same_weights(model, src.state_dict())
    assert [p.name for p in caches.iterdir()] == ['mambaout_femto.pth']
    assert model.pretrained_cfg['tag'] == 'official' and 'paper' not in model.pretrained_cfg


def hashlib_sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------
# Offline
# ------------------------------------------------------------------------------------------------
HINTS = ('pretrained_cfg_overlay=dict(file=', '--checkpoint', 'pretrained=False', '--no-pretrained')


def test_no_network_fails_fast_in_one_line(caches: Path) -> None:
    """A host that refuses connections (the offline case that can be made on 127.0.0.1): the zoo's
    families and timm's own models fail at once with the URL and the ways round it."""
    port = _closed_port()
    url = f'http://127.0.0.1:{port}/f/0123456789abcdef0123/?dl=1'
    with _network_audit() as log, pytest.raises(DownloadError) as err:
        timm.create_model(
            'agent_pvt_tiny', pretrained=True, pretrained_cfg_overlay=dict(url=url), **TINY['agent_pvt_tiny']
        )
    assert log == [('127.0.0.1', port)], log  # one refused connection, then the error: no retry
    _one_line_naming(err.value, url, 'agent_pvt_tiny', *HINTS)
    with _network_audit() as log, pytest.raises(DownloadError) as err:  # a timm model through the zoo's route
        create_model('mambaout_femto', pretrained=True, pretrained_cfg_overlay=dict(url=url))
    assert log == [('127.0.0.1', port)], log
    _one_line_naming(err.value, url, 'mambaout_femto', *HINTS)
    assert not caches.exists() or not [p for p in caches.iterdir() if not p.name.endswith('.lock')]


def test_hf_hub_offline_and_unreachable_hub(caches: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(DownloadError) as err:
        create_model('mambaout_femto', pretrained=True)
    _one_line_naming(err.value, 'hf-hub:timm/mambaout_femto.in1k', 'HF_HUB_OFFLINE', *HINTS)
    with pytest.raises(WeightsError) as err:  # no source at all: says so, with the cfg's note on the weights
        timm.create_model('qsd_transformer_15m', pretrained=True)
    _one_line_naming(err.value, 'qsd_transformer_15m', 'Xuerui123/QSD_Transformer', *HINTS)

    # A Hub endpoint nobody answers (HF_ENDPOINT is read when huggingface_hub is imported: a new process)
    monkeypatch.delenv('HF_HUB_OFFLINE')
    script = tmp_path / 'load_hub_weights.py'
    script.write_text("import zoo.hub as h\nh.create_model('resnet18.tv_in1k', pretrained=True)\n")
    port = _closed_port()
    out, events = _run_tool_audited(
        tmp_path,
        str(script),
        env=dict(
            HF_ENDPOINT=f'http://127.0.0.1:{port}', HF_HOME=str(tmp_path / 'hf2'), TORCH_HOME=str(tmp_path / 't2')
        ),
    )
    assert out.returncode != 0
    assert events == [f"socket.connect ('127.0.0.1', {port})"], events  # one refused attempt, no retries
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(
        'zoo.hub.DownloadError: cannot download the pretrained weights of resnet18.tv_in1k '
        'from hf-hub:timm/resnet18.tv_in1k (no network? cannot reach 127.0.0.1:'
    ), last


def test_hf_cached_file_loads_offline(caches: Path, monkeypatch, tmp_path: Path) -> None:
    """A Hub file already in the Hugging Face cache (its documented layout) loads with HF_HUB_OFFLINE=1."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    src = _tiny('mambaout_femto')
    hub = tmp_path / 'hub'
    snap = hub / 'models--timm--mambaout_femto.in1k' / 'snapshots' / ('a' * 40)
    snap.mkdir(parents=True)
    save_safetensors(src.state_dict(), snap / 'model.safetensors')
    (hub / 'models--timm--mambaout_femto.in1k' / 'refs').mkdir()
    (hub / 'models--timm--mambaout_femto.in1k' / 'refs' / 'main').write_text('a' * 40)
    model = create_model(
        'mambaout_femto',
        pretrained=True,
        cache_dir=str(hub),
        num_classes=10,
        pretrained_cfg_overlay=dict(num_classes=10),
        **TINY['mambaout_femto'],
    )
    _assert_same_weights(model, src.state_dict())


def test_wsi_extract_offline_default_extractor(tmp_path: Path) -> None:
    """tools/wsi_extract.py with its default (Hub) extractor and HF_HUB_OFFLINE=1: exit 2, one line."""
    slides = tmp_path / 'slides'
    slides.mkdir()
    (slides / 'a.svs').write_bytes(b'not read: the extractor is built first')
    out, events = _run_tool_audited(
        tmp_path,
        'tools/wsi_extract.py',
        str(slides),
        '--out',
        str(tmp_path / 'feat'),
        '--quiet',
        env=dict(HF_HUB_OFFLINE='1', HF_HOME=str(tmp_path / 'hf'), TORCH_HOME=str(tmp_path / 't')),
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert events == [], f'HF_HUB_OFFLINE=1 must not touch the network: {events}'
    err = out.stderr.strip()
    assert err.count('\n') == 0 and err.startswith('error: cannot download'), err
    assert 'hf-hub:timm/resnet18.tv_in1k' in err and '--checkpoint' in err and '--no-pretrained' in err


# ------------------------------------------------------------------------------------------------
# MasKD's released stage-1 masks (hunto/MasKD at b5af34f: README "release v0.0.1"; the RetinaNet R101 file
# named in mmrazor/configs/distill/maskd/retinanet_r101-retinanet_r50_coco.py is on Gumpest/MasKD v0.0.3)
# ------------------------------------------------------------------------------------------------
_MASKD_RETINANET = '/Gumpest/MasKD/releases/download/v0.0.3/maskd_retinanet_r101_fpn_2x_coco_20200131-5560aee8.ckpt'


def _maskd_stage1_checkpoint(channels: int = 8, num_tokens: int = 6, levels: int = 5) -> tuple[dict, torch.nn.Module]:
    """A stage-1 checkpoint built the way the authors' stage 1 builds and saves one (hunto/MasKD at b5af34f).

    ``mmdetection/maskd_hook.py`` (``MasKDHook.before_run``) adds a ``ModuleList`` of ``MaskModule(c, 6, True)``
    (``mmdetection/maskd.py``: parameters ``mask_token`` and ``prob`` = conv3x3, pool, conv1x1) to the detector as
    ``mask_modules`` and gives the optimizer only those parameters (RetinaNet: Adam, lr 0.01, wd 1e-3). mmcv 1.x's
    ``IterBasedRunner.save_checkpoint`` -> ``mmcv.runner.save_checkpoint`` then writes one dict through one
    ``torch.save`` into an open file: ``meta`` (the runner's meta: env_info, config text, seed, exp_name, and
    mmdet_version, CLASSES, epoch, iter, mmcv_version, time), ``state_dict`` (the unwrapped detector's state dict
    moved to the CPU, an ``OrderedDict`` keeping ``_metadata``) and ``optimizer``. A tiny stand-in detector
    (``backbone`` / ``neck`` / ``bbox_head``) keeps the file small; the mask modules have the real layout.
    Returns the checkpoint and the detector."""
    import time
    from collections import OrderedDict

    from zoo.distill.maskd_stage1 import MaskModule  # the authors' parameter names: mask_token, prob.0, prob.2

    torch.manual_seed(0)
    detector = torch.nn.Module()
    detector.backbone = torch.nn.Conv2d(3, channels, 3, padding=1)
    detector.neck = torch.nn.Conv2d(channels, channels, 1)
    detector.bbox_head = torch.nn.Conv2d(channels, 4, 1)
    detector.add_module('mask_modules', torch.nn.ModuleList(MaskModule(channels, num_tokens) for _ in range(levels)))
    optim = torch.optim.Adam(detector.mask_modules.parameters(), lr=0.01, weight_decay=1e-3)
    x = torch.randn(2, channels, 4, 4)
    loss = sum(out.square().mean() + div for out, div in (m(x) for m in detector.mask_modules))
    loss.backward()
    optim.step()  # the file then holds trained tokens and Adam's state, as a 2000-iteration run's does
    own = detector.state_dict()
    state = OrderedDict((k, v.cpu()) for k, v in own.items())
    state._metadata = getattr(own, '_metadata', OrderedDict())
    meta = dict(
        env_info='sys.platform: linux\nPyTorch: 1.8.1',
        config="_base_ = '../retinanet/retinanet_r101_fpn_2x_coco.py'",
        seed=None,
        exp_name='retinanet_r101_fpn_2x_coco.py',
        mmdet_version='2.14.0+0a1b2c3',
        CLASSES=('person', 'bicycle'),
        epoch=1,
        iter=2000,
        mmcv_version='1.3.8',
        time=time.asctime(),
    )
    return dict(meta=meta, state_dict=state, optimizer=optim.state_dict()), detector


def _serve_release(host, path: str, body: bytes) -> str:
    """A GitHub release asset: the release URL answers with a redirect to the stored object."""
    n = len(host.routes)
    host.routes[path] = ('redirect', f'/github-production-release-asset/maskd{n}?response-content-disposition=x')
    host.routes[f'/github-production-release-asset/maskd{n}?response-content-disposition=x'] = body
    return host.base + path


def test_maskd_stage1_release_loads_per_level_by_url(host, caches: Path, tmp_path: Path) -> None:
    """A file in the layout of MasKD's released stage-1 checkpoints, served under their RetinaNet file's URL,
    loads through MasKDLoss(tokens=URL, level=i): every level's tokens and weighting head equal the written ones,
    frozen; the file is downloaded once."""
    from zoo.distill.losses import MasKDLoss

    checkpoint, detector = _maskd_stage1_checkpoint()
    file = tmp_path / 'iter_2000.pth'
    with open(file, 'wb') as f:  # mmcv 1.x's local save: torch.save into the opened file
        torch.save(checkpoint, f)
    url = _serve_release(host, _MASKD_RETINANET, file.read_bytes())
    for level, written in enumerate(detector.mask_modules):
        loss = MasKDLoss(channels=8, num_masks=6, tokens=url, level=level, weight_mask=True, custom_mask_warmup=7000)
        assert torch.equal(loss.tokens, written.mask_token), level
        for k, v in written.prob.state_dict().items():
            assert torch.equal(loss.prob.state_dict()[k], v), (level, k)
        assert not any(p.requires_grad for p in loss.parameters())
    assert host.requests.count(_MASKD_RETINANET) == 1, host.requests
    assert (caches / 'maskd' / _MASKD_RETINANET.rsplit('/', 1)[1]).is_file()


def test_maskd_stage1_bad_input_is_one_line_naming_file_and_key(host, caches: Path, tmp_path: Path) -> None:
    """A level the file lacks, a truncated download, a file of another layout (the teacher's own detector
    checkpoint; tokens of another shape; a file that pickles an object): one line naming the file and the key."""
    from zoo.distill.losses import MasKDLoss

    checkpoint, _ = _maskd_stage1_checkpoint(levels=2)
    body = _bytes(checkpoint)
    stem = '/hunto/MasKD/releases/download/v0.0.1/maskd_'

    url = _serve_release(host, stem + 'two_levels.pth', body)
    with pytest.raises(CheckpointError) as err:
        MasKDLoss(channels=8, num_masks=6, tokens=url, level=4, weight_mask=True)
    _one_line_naming(err.value, 'maskd_two_levels.pth', url, "'mask_modules.4.mask_token'", 'levels 0, 1')

    url = _serve_release(host, stem + 'truncated.pth', body[: len(body) // 2])
    with pytest.raises(CheckpointError) as err:
        MasKDLoss(channels=8, num_masks=6, tokens=url, level=0)
    _one_line_naming(err.value, 'maskd_truncated.pth', url, 'truncated', 'delete it')

    detector_only = {k: v for k, v in checkpoint['state_dict'].items() if 'mask' not in k}
    teacher = {'meta': {'epoch': 24}, 'state_dict': detector_only}
    url = _serve_release(host, stem + 'teacher.pth', _bytes(teacher))
    with pytest.raises(CheckpointError) as err:
        MasKDLoss(channels=8, num_masks=6, tokens=url, level=0)
    _one_line_naming(err.value, 'maskd_teacher.pth', "'mask_modules.<level>.mask_token'", 'backbone.weight')

    url = _serve_release(host, stem + 'eight_tokens.pth', body)
    with pytest.raises(CheckpointError) as err:  # the file has 6 tokens of 8 channels
        MasKDLoss(channels=8, num_masks=8, tokens=url, level=1, weight_mask=True)
    _one_line_naming(err.value, url, 'mask_modules.1.mask_token', '(6, 8)', '(8, 8)')
    with pytest.raises(CheckpointError) as err:  # a head the file does not have
        path = tmp_path / 'no_head.pth'
        torch.save({'state_dict': {'mask_modules.0.mask_token': torch.zeros(6, 8)}}, path)
        MasKDLoss(channels=8, num_masks=6, tokens=str(path), level=0, weight_mask=True)
    _one_line_naming(err.value, str(path), 'mask_modules.0.prob')

    pickled = dict(checkpoint, meta=dict(checkpoint['meta'], work_dir=Path('/work_dirs/maskd')))
    url = _serve_release(host, stem + 'pickled.pth', _bytes(pickled))
    with pytest.raises(CheckpointError) as err:  # torch.load(weights_only=True): no object is rebuilt
        MasKDLoss(channels=8, num_masks=6, tokens=url, level=0)
    _one_line_naming(err.value, 'maskd_pickled.pth', 'refuses', 'pathlib')


# ------------------------------------------------------------------------------------------------
# Bad local files
# ------------------------------------------------------------------------------------------------
def _bad_file(kind: str, tmp_path: Path, model: torch.nn.Module) -> Path:
    path = tmp_path / f'{kind}.pth'
    if kind == 'missing':
        return path
    if kind == 'empty':
        path.write_bytes(b'')
    elif kind == 'truncated':
        data = _bytes(model.state_dict())
        path.write_bytes(data[: len(data) // 2])
    elif kind == 'random':
        path.write_bytes(
            torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
            .numpy()
            .tobytes()
        )
    elif kind == 'no_tensors':
        torch.save({'model': {'epoch': 3, 'note': 'no weights here'}, 'args': [1, 2]}, path)
    elif kind == 'truncated_safetensors':
        path = tmp_path / 'cut.safetensors'
        save_safetensors(model.state_dict(), path)
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == 'other_model':
        torch.save(timm.create_model('agent_deit_tiny', depth=1, img_size=64).state_dict(), path)
    return path


BAD = ('missing', 'empty', 'truncated', 'random', 'no_tensors', 'truncated_safetensors', 'other_model')
WHY = {
    'missing': 'does not exist',
    'empty': 'empty file',
    'truncated': 'truncated',
    'random': 'not a checkpoint',
    'no_tensors': 'holds no weight tensors',
    'truncated_safetensors': 'truncated',
    'other_model': 'does not fit',
}


@pytest.mark.parametrize('kind', BAD)
def test_bad_local_file_is_one_line_naming_it(kind: str, tmp_path: Path) -> None:
    """Through timm.create_model (a zoo family), zoo.hub.create_model (a timm model) and
    zoo.hub.load_checkpoint_file: one line with the file's path and what is wrong with it."""
    pvt = TINY['agent_pvt_tiny']
    path = _bad_file(kind, tmp_path, timm.create_model('agent_pvt_tiny', **pvt))
    expected = FileNotFoundError if kind == 'missing' else CheckpointError
    with pytest.raises(expected) as err:
        timm.create_model('agent_pvt_tiny', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **pvt)
    _one_line_naming(err.value, str(path), WHY[kind])
    mo = TINY['mambaout_femto']
    with pytest.raises(expected) as err:
        create_model('mambaout_femto', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **mo)
    _one_line_naming(err.value, str(path), WHY[kind] if kind != 'other_model' else 'does not fit mambaout_femto')
    if kind not in ('no_tensors', 'other_model'):  # those two read fine as files
        with pytest.raises(expected) as err:
            load_checkpoint_file(path)
        _one_line_naming(err.value, str(path))


def test_pickled_code_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': Path('/etc/passwd')}, path)
    with pytest.raises(CheckpointError, match='refuses') as err:
        timm.create_model(
            'agent_pvt_tiny', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **TINY['agent_pvt_tiny']
        )
    _one_line_naming(err.value, str(path), 'pathlib')


# ------------------------------------------------------------------------------------------------
# Every family's files through every route
# ------------------------------------------------------------------------------------------------
def _tool(name: str):
    """The module behind ``tools/<name>.py`` (its ``main(argv)`` is the command line minus the exit code)."""
    import importlib

    return importlib.import_module(f'zoo.cli.{name}')


_CLASSIFIER_CONFIG = """
_base_ = ['{root}/configs/_base_/datasets/digits.py', '{root}/configs/_base_/schedules/adamw_cosine.py',
          '{root}/configs/_base_/default_runtime.py']
model = dict(type='TimmClassifier', model_name='{name}', model_kwargs={kwargs!r})
train_dataloader = dict(batch_size=16, dataset=dict(img_size=64))
val_dataloader = dict(batch_size=128, dataset=dict(img_size=64))
test_dataloader = val_dataloader
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2, val_interval=2)
param_scheduler = []
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2), logger=dict(interval=1))
log_processor = dict(by_epoch=False)
custom_hooks = [dict(type='ExportSafetensorsHook')]
"""


def _cli_kwargs(kwargs: dict) -> list[str]:
    def text(v) -> str:
        return '(' + ','.join(map(str, v)) + ')' if isinstance(v, tuple) else str(v)

    return [f'{k}={text(v)}' for k, v in kwargs.items()]


@pytest.mark.parametrize('name', list(TINY))
def test_every_weights_file_reloads_through_every_route(name: str, tmp_path: Path, caches: Path) -> None:
    """The model's own state dict (.pth and .safetensors), the model.safetensors ExportSafetensorsHook
    writes after training, and tools/convert.py's output from the published layout all load strictly
    through pretrained_cfg_overlay=dict(file=...), zoo.hub.create_model and tools/test.py (the issue:
    Agent-Swin's own weights failed with 'Missing key(s): layers.1.downsample.norm.weight')."""
    from safetensors.torch import load_file

    src = _tiny(name)
    own_pth, own_st = tmp_path / 'own.pth', tmp_path / 'own.safetensors'
    torch.save(src.state_dict(), own_pth)
    save_safetensors(src.state_dict(), own_st)
    published = tmp_path / 'published.pth'
    torch.save(_published(name, src), published)

    kwargs = dict(num_classes=10, **TINY[name])
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(_CLASSIFIER_CONFIG.format(root=ROOT, name=name, kwargs=kwargs))
    _tool('train').main([str(cfg), '--work-dir', str(tmp_path / 'train')])
    exported = tmp_path / 'train' / 'model.safetensors'
    converted = _tool('convert').main(
        [name, str(published), str(tmp_path / 'converted.safetensors'), '--model-kwargs', *_cli_kwargs(kwargs)]
    )

    expected = {
        own_pth: src.state_dict(),
        own_st: src.state_dict(),
        exported: load_file(exported),
        Path(converted): src.state_dict(),
    }
    for path, weights in expected.items():
        overlay = dict(file=str(path), num_classes=10)
        _assert_same_weights(
            timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs), weights
        )
        _assert_same_weights(create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs), weights)

    tester = _tool('test')
    scores = {
        p.name: tester.main([str(cfg), str(p), '--work-dir', str(tmp_path / f'test_{p.stem}')])
        for p in (own_pth, exported, Path(converted))
    }
    top1 = {k: float(v['accuracy/top1']) for k, v in scores.items()}
    assert top1['own.pth'] == top1['converted.safetensors'], top1  # the same weights, the same score
