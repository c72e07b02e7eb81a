"""Weights path (manifest, sha256, conversion, loading official layouts) and one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import ROOT, run_tool

import zoo  # noqa: F401
from zoo.engine.config import ConfigKeyError, load_config
from zoo.hub import (
    CheckpointError,
    ChecksumError,
    create_model,
    load_checkpoint_file,
    save_safetensors,
    sha256_file,
)

# Official MambaOut keys -> timm keys (timm/models/mambaout.py checkpoint_filter_fn); the test writes a
# checkpoint in the official layout by inverting this map.
_TIMM_TO_OFFICIAL = [
    (r'^stem\.', 'downsample_layers.0.'),
    (r'^stages\.(\d)\.downsample\.', r'downsample_layers.\1.'),
    (r'^stages\.(\d)\.blocks\.(\d+)\.', r'stages.\1.\2.'),
    (r'^head\.pre_logits\.fc\.', 'head.fc1.'),
    (r'^head\.pre_logits\.norm\.', 'head.norm.'),
    (r'^head\.fc\.', 'head.fc2.'),
    (r'^head\.norm\.', 'norm.'),
]


def _official_mambaout_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        for pat, rep in _TIMM_TO_OFFICIAL:
            if re.match(pat, k):
                k = re.sub(pat, rep, k)
                break
        out[k] = v.clone()
    return out


@pytest.fixture(scope='module')
def femto() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model('mambaout_femto').eval()


@pytest.mark.parametrize('wrapper', [None, 'model', 'state_dict'])
def test_official_layout_loads_through_timm_file_route(femto, tmp_path: Path, wrapper) -> None:
    state = _official_mambaout_state(femto)
    assert 'downsample_layers.0.conv1.weight' in state and 'stages.0.0.fc1.weight' in state
    path = tmp_path / 'mambaout_femto.pth'
    torch.save(state if wrapper is None else {wrapper: state, 'epoch': 300}, path)
    loaded = timm.create_model('mambaout_femto', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), femto(x))


def test_convert_tool_official_to_safetensors(femto, tmp_path: Path) -> None:
    src = tmp_path / 'official.pth'
    torch.save({'model': _official_mambaout_state(femto)}, src)
    dst = tmp_path / 'zoo.safetensors'
    out = run_tool('tools/convert.py', 'mambaout_femto', str(src), str(dst))
    assert out.returncode == 0, out.stderr[-2000:]
    assert sha256_file(dst) in out.stdout
    loaded = timm.create_model('mambaout_femto', pretrained=True, pretrained_cfg_overlay=dict(file=str(dst)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), femto(x))


def test_local_file_with_sha256_is_verified(tmp_path: Path) -> None:
    """``pretrained_cfg_overlay=dict(file=PATH, sha256=HEX)`` checks a file of one's own before loading it."""
    model = timm.create_model('mambaout_femto', num_classes=5, depths=(1, 1, 1, 1), dims=(8, 8, 16, 16))
    weights = tmp_path / 'src' / 'tiny.safetensors'
    save_safetensors(model.state_dict(), weights)
    kwargs = dict(num_classes=5, depths=(1, 1, 1, 1), dims=(8, 8, 16, 16))
    good = dict(file=str(weights), num_classes=5, sha256=sha256_file(weights))
    loaded = create_model('mambaout_femto', pretrained=True, pretrained_cfg_overlay=good, **kwargs)
    assert torch.equal(loaded.head.fc.weight, model.head.fc.weight)

    with pytest.raises(ChecksumError) as err:
        create_model('mambaout_femto', pretrained=True, pretrained_cfg_overlay=dict(good, sha256='0' * 64), **kwargs)
    msg = str(err.value)
    assert 'sha256 mismatch' in msg and 'tiny.safetensors' in msg and '\n' not in msg


def test_manifest_is_generated_from_the_cfgs() -> None:
    """``weights/manifest.csv`` is what the cfgs generate (``tools/analysis/model_table.py --manifest``), and
    each row is well formed."""
    from zoo.hub import MANIFEST, manifest_csv, manifest_rows

    assert MANIFEST.read_text() == manifest_csv(), 'run: python tools/analysis/model_table.py --manifest'
    rows = {r['name']: r for r in manifest_rows()}
    assert 'mambaout_femto.official' in rows and 'agent_swin_tiny.in1k' in rows
    for r in rows.values():
        assert r['url'].startswith('https://') and r['format'] in ('pth', 'safetensors') and r['license']
        assert r['sha256'] == '' or re.fullmatch(r'[0-9a-f]{64}', r['sha256'])
        assert timm.create_model(r['name'].split('.')[0], pretrained=False, device='meta') is not None
        assert r['conversion'].endswith('.checkpoint_filter_fn')


def test_cfgs_carry_the_papers_numbers_but_model_cfgs_stay_timms() -> None:
    """The zoo cfg holds the paper's numbers and the sha256 field; ``model.pretrained_cfg`` (what timm saves
    into a Hub folder's config.json) holds timm's fields only."""
    cfg = timm.models.get_pretrained_cfg('agent_pvt_tiny.in1k')
    assert cfg.paper['params_m'] == 11.57 and cfg.paper['top1'] == 78.4 and cfg.sha256 is None
    assert cfg.license and cfg.paper_ids == 'arXiv:2312.08874'
    model = timm.create_model('agent_pvt_tiny', device='meta')
    assert not {'paper', 'sha256'} & set(model.pretrained_cfg)
    timm.models.PretrainedCfg(**model.pretrained_cfg)  # loads in plain timm


def test_truncated_checkpoint_one_line_error(femto, tmp_path: Path) -> None:
    path = tmp_path / 'cut.pth'
    torch.save(femto.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated') as err:
        load_checkpoint_file(path)
    assert str(path) in str(err.value) and '\n' not in str(err.value)
    st = tmp_path / 'cut.safetensors'
    save_safetensors(femto.state_dict(), st)
    st.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match='cut.safetensors'):
        load_checkpoint_file(st)
    # the tool reports it in one line, exit code 2
    out = run_tool('tools/test.py', str(ROOT / 'configs/classification/mambaout/mambaout_femto_digits.py'), str(path))
    assert out.returncode == 2
    assert out.stderr.strip().count('\n') == 0 and 'cut.pth' in out.stderr and 'truncated' in out.stderr


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': Path('/etc/passwd')}, path)  # a non-allow-listed global
    with pytest.raises(CheckpointError, match='refuses'):
        load_checkpoint_file(path)


def test_unknown_config_keys(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1)
    with pytest.raises(ConfigKeyError, match=r"train_cfg\.max_epoch'.*did you mean 'max_epochs'"):
        load_config(cfg, {'train_cfg.max_epoch': 3})
    with pytest.raises(ConfigKeyError, match=r'model\.model_nme'):
        load_config(cfg, {'model.model_nme': 'x'})
    # a constructor argument the config leaves at its default is accepted
    assert load_config(cfg, {'model.label_smoothing': 0.1}).model.label_smoothing == 0.1
    bad = tiny_config(epochs=1, name='typo.py', extra='\ntrain_dataloder = dict(batch_size=4)\n')
    with pytest.raises(ConfigKeyError, match="did you mean 'train_dataloader'"):
        load_config(bad)
    bad2 = tiny_config(epochs=1, name='typo2.py', extra='\nmodel = dict(model, lable_smoothing=0.1)\n')
    with pytest.raises(ConfigKeyError, match=r"model\.lable_smoothing.*did you mean 'label_smoothing'"):
        load_config(bad2)
    out = run_tool('tools/train.py', cfg, '--work-dir', str(tmp_path / 'w'), '--cfg-options', 'train_cfg.max_epoch=3')
    assert out.returncode == 2 and "unknown config key 'train_cfg.max_epoch'" in out.stderr
    assert out.stderr.strip().count('\n') == 0


def test_missing_dataset_path(tmp_path: Path) -> None:
    from zoo.data import CsvImageDataset, ImageFolderDataset

    with pytest.raises(FileNotFoundError, match=str(tmp_path / 'nowhere' / 'train')):
        ImageFolderDataset(str(tmp_path / 'nowhere'), split='train')
    with pytest.raises(FileNotFoundError, match='labels.csv'):
        CsvImageDataset(str(tmp_path / 'labels.csv'))


def _image_folder(root: Path, n_per_class: int = 6) -> None:
    rng = np.random.default_rng(0)
    from PIL import Image

    for split in ('train', 'val'):
        for c, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            d = root / split / f'class_{c}'
            d.mkdir(parents=True)
            for i in range(n_per_class):
                img = np.clip(rng.normal(colour, 20, size=(24, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f'{i}.png')


def test_corrupt_image_is_skipped_and_training_goes_on(tmp_path: Path) -> None:
    root = tmp_path / 'data'
    _image_folder(root)
    bad = root / 'train' / 'class_0' / '0.png'
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    from zoo.data import ImageFolderDataset

    ds = ImageFolderDataset(
        str(root), 'train', pipeline=[dict(type='Resize', height=16, width=16), dict(type='Normalize')]
    )
    # outside a run with SkippedSamplesHook an unreadable image is an error naming the file, never a substitute
    with pytest.raises(OSError, match=r'cannot decode image .*0\.png'):
        ds[0]
    assert ds[1]['inputs'].shape == (3, 16, 16)

    cfg = tmp_path / 'folder.py'
    pipeline = "[dict(type='Resize', height=32, width=32), dict(type='Normalize')]"
    cfg.write_text(f"""
_base_ = ['{ROOT}/configs/_base_/schedules/adamw_cosine.py', '{ROOT}/configs/_base_/default_runtime.py']
model = dict(type='TimmClassifier', model_name='test_mambaout', model_kwargs=dict(num_classes=2))
_loader = dict(batch_size=4, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
               collate_fn=dict(type='default_collate'))
train_dataloader = dict(**_loader, dataset=dict(type='ImageFolderDataset', data_root='{root}', split='train',
                        pipeline={pipeline}))
val_dataloader = dict(**_loader, dataset=dict(type='ImageFolderDataset', data_root='{root}', split='val',
                      pipeline={pipeline}))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1)
param_scheduler = []
""")
    out = run_tool('tools/train.py', str(cfg), '--work-dir', str(tmp_path / 'w'))
    assert out.returncode == 0, out.stderr[-2000:]
    assert f'skipped [train] {bad}: ' in out.stdout  # the end-of-run list (tests/test_data_integrity.py)
    assert 'finished 1 epochs' in out.stdout


@pytest.mark.parametrize(
    'error',
    [
        # what mmengine's Config raises for a `mmdet::` / `mmseg::` _base_ when the package is absent (no .name)
        ModuleNotFoundError('mmsegmentation is not installed, please install mmsegmentation manually'),
        # a plain failed import (zoo.mm.inference importing mmdet.apis)
        ModuleNotFoundError("No module named 'mmdet'", name='mmdet'),
    ],
)
def test_missing_openmmlab_extra_is_one_line_with_the_install_command(error, capsys) -> None:
    """`make demo` installs only the core; the dense tools then say how to add the OpenMMLab extra
    (checked by hand on a core-only venv: tools/train.py and tools/test.py with a smoke dense config)."""
    from zoo.cli.common import run_cli

    def main() -> None:
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'is missing' in err
    assert 'bash scripts/install.sh' in err and 'Traceback' not in err


def test_other_missing_modules_keep_their_traceback() -> None:
    from zoo.cli.common import run_cli

    def main() -> None:
        raise ModuleNotFoundError("No module named 'not_a_zoo_dependency'", name='not_a_zoo_dependency')

    with pytest.raises(ModuleNotFoundError):
        run_cli(main)
