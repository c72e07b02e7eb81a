"""Exact resume: a run killed (deterministically, by zoo.engine.fault_injection) in the middle of an
epoch or while a checkpoint is being written, then resumed with ``tools/train.py --resume``, ends with
the same weights, optimiser state, EMA weights, metrics and curves as the uninterrupted run, bit for
bit on CPU.

The classification fixture is an ImageFolder of 3 x 16 tiny PNGs read by 2 DataLoader workers with
random albumentations crops and flips, drop-path and an EMA hook, so every source of randomness the
trajectory depends on is in play: main-process RNG (drop-path), worker RNGs (augmentation), the
sampler's shuffle, and checkpoints every 4 iterations (6 iterations per epoch) for mid-epoch resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_tool

from zoo.hub import allow_mmengine_types

allow_mmengine_types()  # the checkpoints compared below are mmengine's own files, read with weights_only=True

CLS_CONFIG = """
_base_ = ['{root}/configs/_base_/schedules/adamw_cosine.py', '{root}/configs/_base_/default_runtime.py']
data_root = '{data}'
_train = [dict(type='RandomResizedCrop', size=(32, 32), scale=(0.5, 1.0)), dict(type='HorizontalFlip'),
          dict(type='Normalize')]
_val = [dict(type='Normalize')]
train_dataloader = dict(
    batch_size=8, num_workers=2, sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, split='train', pipeline=_train))
val_dataloader = dict(
    batch_size=12, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, split='val', pipeline=_val))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator
model = dict(type='TimmClassifier', model_name='test_mambaout', model_kwargs=dict(num_classes=3, drop_path_rate=0.1))
max_epochs = 2
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5,
                        convert_to_iter_based=True)]
optim_wrapper = dict(optimizer=dict(lr=3e-3))
# checkpoints every 4 iterations (iteration checkpoints are a config option of mmengine's CheckpointHook)
default_hooks = dict(logger=dict(interval=2), checkpoint=dict(by_epoch=False, interval=4))
custom_hooks = [dict(type='TrainingCurveHook'), dict(type='EMAHook', momentum=0.01)]
"""
FINAL = 'iter_12.pth'  # 2 epochs x 6 iterations
ENV = {'OMP_NUM_THREADS': '1'}


def _make_folder(root: Path, per_class=(16, 4), size: int = 32, seed: int = 0) -> None:
    """3 classes of noise images with a coloured square (red / green / blue) at a random place."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in zip(('train', 'val'), per_class):
        for c, colour in enumerate([(220, 40, 40), (40, 200, 60), (50, 80, 230)]):
            d = root / split / f'class{c}'
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                x, y = rng.integers(0, size // 2, 2)
                img[y : y + size // 2, x : x + size // 2] = colour
                Image.fromarray(img).save(d / f'{i:03d}.png')


def _train(cfg: str, work: Path, *extra: str, fault: str | None = None):
    env = dict(ENV, **({'ZOO_FAULT_INJECT': fault} if fault else {}))
    return run_tool('tools/train.py', cfg, '--work-dir', str(work), *extra, env=env)


def _killed(proc, what: str) -> None:
    assert proc.returncode == -9, f'expected SIGKILL ({what}), got {proc.returncode}: {proc.stderr[-3000:]}'
    assert f'zoo fault injection: SIGKILL {what}' in proc.stderr


def _tensors(x, prefix: str = ''):
    if isinstance(x, torch.Tensor):
        yield prefix, x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _tensors(v, f'{prefix}.{k}')
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _tensors(v, f'{prefix}[{i}]')


def assert_same_run(ref: Path, run: Path, ckpt: str) -> float:
    """Weights, optimiser, EMA weights, schedulers, best score, RNG states at the end and curves of two
    work dirs are identical; returns max |delta w| over the weights (0.0 when identical)."""
    a = torch.load(ref / ckpt, weights_only=True)
    b = torch.load(run / ckpt, weights_only=True)
    worst = 0.0
    for key in ('state_dict', 'optimizer', 'ema_state_dict', 'param_schedulers'):
        ta, tb = dict(_tensors(a.get(key))), dict(_tensors(b.get(key)))
        assert ta.keys() == tb.keys(), key
        for name in ta:
            if key == 'state_dict' and ta[name].is_floating_point():
                worst = max(worst, float((ta[name].double() - tb[name].double()).abs().max()))
        differ = [n for n in ta if not torch.equal(ta[n], tb[n])]
        assert not differ, f'{key}: {len(differ)} tensors differ, e.g. {differ[:3]}; max |dw| {worst:.3g}'
    assert a['param_schedulers'] == b['param_schedulers']
    assert a['message_hub']['runtime_info'].get('best_score') == b['message_hub']['runtime_info'].get('best_score')
    ra, rb = a['zoo_resume']['rng'], b['zoo_resume']['rng']
    assert torch.equal(ra['torch'], rb['torch']) and ra['numpy'] == rb['numpy'] and ra['python'] == rb['python']
    curves_a, curves_b = (json.loads((d / 'curves.json').read_text()) for d in (ref, run))
    assert curves_a == curves_b
    return worst


@pytest.fixture(scope='module')
def cls_run(tmp_path_factory):
    """The fixture config and its uninterrupted reference run."""
    root = tmp_path_factory.mktemp('resume_cls')
    _make_folder(root / 'data')
    cfg = root / 'cls.py'
    cfg.write_text(CLS_CONFIG.format(root=ROOT, data=root / 'data'))
    ref = root / 'ref'
    out = _train(str(cfg), ref)
    assert out.returncode == 0, out.stderr[-3000:]
    return str(cfg), ref, root


@pytest.mark.slow
def test_classification_kill_mid_epoch_then_resume_is_bit_identical(cls_run) -> None:
    cfg, ref, root = cls_run
    work = root / 'mid_epoch'
    # iteration 9 = batch 3 of epoch 2; the last checkpoint is iter_8 (epoch 2, batch 2)
    _killed(_train(cfg, work, fault='iter:9'), 'after iteration 9')
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_8.pth')
    assert not (work / FINAL).exists()
    out = _train(cfg, work, '--resume')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'exact resume: epoch 2, batch 2/6, iteration 8' in out.stdout + out.stderr
    assert assert_same_run(ref, work, FINAL) == 0.0
    # the curve holds the whole history, epochs 1 and 2, not only the part after the resume
    curves = json.loads((work / 'curves.json').read_text())
    assert [i for i, _ in curves['loss']] == list(range(1, 13))
    assert [e for e, _ in curves['metrics']['accuracy/top1']] == [1, 2]
    assert (work / 'curves.png').stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize('stage', ['partial', 'written'])
def test_classification_kill_while_saving_then_resume_is_bit_identical(cls_run, stage: str) -> None:
    """Save 1 is iter_4.pth; save 2 rewrites iter_6.pth after epoch 1's validation found a new best.
    Killed half-way through writing it (``partial``: only ``iter_6.pth.tmp`` exists) or after writing it
    but before ``last_checkpoint`` names it (``written``), the run resumes from iter_4."""
    cfg, ref, root = cls_run
    work = root / f'save_{stage}'
    _killed(_train(cfg, work, fault=f'save:2:{stage}'), f"during checkpoint save 2 at stage '{stage}'")
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_4.pth')
    assert (work / 'iter_4.pth').is_file()
    if stage == 'partial':
        assert (work / 'iter_6.pth.tmp').is_file() and not (work / 'iter_6.pth').exists()
    out = _train(cfg, work, '--resume')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'exact resume: epoch 1, batch 4/6, iteration 4' in out.stdout + out.stderr
    assert assert_same_run(ref, work, FINAL) == 0.0


def test_fault_spec_errors_name_the_variable() -> None:
    from zoo.engine.fault_injection import parse_fault_spec

    assert parse_fault_spec('iter:17') == dict(kill_at_iter=17)
    assert parse_fault_spec('save:3') == dict(kill_at_save=3, save_stage='partial')
    assert parse_fault_spec('save:2:pointed') == dict(kill_at_save=2, save_stage='pointed')
    for bad in ('iter:0', 'iter', 'save:1:midway', 'kill:3'):
        with pytest.raises(ValueError, match='ZOO_FAULT_INJECT'):
            parse_fault_spec(bad)


def test_rng_state_roundtrips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    from zoo.engine import capture_rng_state, restore_rng_state

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    state = capture_rng_state()
    torch.save(dict(rng=state), tmp_path / 'r.pth')
    want = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng_state(torch.load(tmp_path / 'r.pth', weights_only=True)['rng'])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and want[2] == got[2]


DET_CONFIG = 'configs/smoke/detection/mask-rcnn_test-mambaout_fpn_fixture.py'
DET_OPTIONS = (
    '--cfg-options',
    'train_cfg.max_epochs=2',
    'train_cfg.val_interval=2',
    'default_hooks.checkpoint.by_epoch=False',
    'default_hooks.checkpoint.interval=3',
)


@pytest.mark.slow
def test_detection_kill_mid_epoch_and_while_saving_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """Mask R-CNN smoke config (RPN / RoI random sampling, random flips, aspect-ratio batches) on 8 fixture
    images, 4 iterations per epoch, checkpoints every 3: killed after iteration 5 (resumes at epoch 1,
    batch 3), that resumed run killed half-way through writing iter_6.pth, resumed again: the final
    weights, optimiser and curves equal the uninterrupted run's."""
    pytest.importorskip('mmdet')
    from zoo.testing.dense import make_coco_fixture

    make_coco_fixture(tmp_path / 'fx' / 'coco', num_images=8, num_val=2)
    env = {'ZOO_FIXTURES': str(tmp_path / 'fx')}

    def train(work: Path, *extra: str, fault: str | None = None):
        e = dict(ENV, **env, **({'ZOO_FAULT_INJECT': fault} if fault else {}))
        return run_tool('tools/train.py', DET_CONFIG, '--work-dir', str(work), *extra, *DET_OPTIONS, env=e)

    ref, work = tmp_path / 'ref', tmp_path / 'work'
    out = train(ref)
    assert out.returncode == 0, out.stderr[-3000:]
    _killed(train(work, fault='iter:5'), 'after iteration 5')
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_3.pth')
    out = train(work, '--resume', fault='save:1:partial')
    _killed(out, "during checkpoint save 1 at stage 'partial'")
    assert 'exact resume: epoch 1, batch 3/4, iteration 3' in out.stdout + out.stderr
    assert (work / 'iter_6.pth.tmp').is_file() and not (work / 'iter_6.pth').exists()
    out = train(work, '--resume')
    assert out.returncode == 0, out.stderr[-3000:]
    a = torch.load(ref / 'iter_8.pth', weights_only=True)
    b = torch.load(work / 'iter_8.pth', weights_only=True)
    for key in ('state_dict', 'optimizer'):
        ta, tb = dict(_tensors(a[key])), dict(_tensors(b[key]))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), key
    assert json.loads((ref / 'curves.json').read_text()) == json.loads((work / 'curves.json').read_text())


@pytest.mark.slow
def test_segmentation_same_seed_twice_is_bit_identical(tmp_path: Path) -> None:
    """UPerNet smoke config (iteration-based loop, random flips), 4 iterations, twice with seed 0."""
    pytest.importorskip('mmseg')
    from zoo.testing.dense import make_ade_fixture

    make_ade_fixture(tmp_path / 'fx' / 'ade', num_images=4, num_val=1)
    env = dict(ENV, ZOO_FIXTURES=str(tmp_path / 'fx'))
    cfg = 'configs/smoke/segmentation/upernet_test-mambaout_fixture.py'
    opts = ('--cfg-options', 'train_cfg.max_iters=4', 'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=4')
    for run in ('a', 'b'):
        out = run_tool('tools/train.py', cfg, '--work-dir', str(tmp_path / run), *opts, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
    a = torch.load(tmp_path / 'a' / 'iter_4.pth', weights_only=True)['state_dict']
    b = torch.load(tmp_path / 'b' / 'iter_4.pth', weights_only=True)['state_dict']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], torch.zeros_like(a[k])) for k in a)


def _make_bags(root: Path, n_train: int = 8, n_val: int = 2, dim: int = 64, seed: int = 0) -> None:
    """Feature bags as tools/wsi_extract.py writes them (``feat`` (N, D), ``coords`` (N, 2)) and the
    slide CSV; positive bags hold a few instances shifted along one direction."""
    import h5py

    rng = np.random.default_rng(seed)
    (root / 'features').mkdir(parents=True)
    rows = ['slide,label,split']
    for i in range(n_train + n_val + 2):
        label, n = i % 2, int(rng.integers(20, 40))
        feat = rng.normal(0, 1, (n, dim)).astype(np.float32)
        if label:
            feat[: n // 4, :8] += 2.0
        with h5py.File(root / 'features' / f's{i:02d}.h5', 'w') as f:
            f.create_dataset('feat', data=feat.astype(np.float16))
            f.create_dataset('coords', data=np.stack([np.arange(n), np.zeros(n)], 1).astype(np.int64))
        split = 'train' if i < n_train else 'val' if i < n_train + n_val else 'test'
        rows.append(f's{i:02d},{label},{split}')
    (root / 'slides.csv').write_text('\n'.join(rows) + '\n')


@pytest.mark.slow
def test_mil_kill_mid_epoch_and_while_saving_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """ACMIL-GA smoke config (STKIM random instance masking) on 8 generated feature bags, 8 iterations
    per epoch, checkpoints every 3: killed after iteration 11 (epoch 2, batch 3), resumed from iter_9, that
    resumed run killed half-way through writing iter_12.pth, resumed from iter_9 again."""
    pytest.importorskip('h5py')
    _make_bags(tmp_path / 'fx' / 'wsi')
    env = dict(ENV, ZOO_FIXTURES=str(tmp_path / 'fx'))
    cfg = 'configs/smoke/acmil/acmil_ga_slides.py'
    opts = (
        '--cfg-options',
        'train_cfg.max_epochs=2',
        'default_hooks.checkpoint.by_epoch=False',
        'default_hooks.checkpoint.interval=3',
    )
    ref, work = tmp_path / 'ref', tmp_path / 'work'
    out = run_tool('tools/train.py', cfg, '--work-dir', str(ref), *opts, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    out = run_tool('tools/train.py', cfg, '--work-dir', str(work), *opts, env=dict(env, ZOO_FAULT_INJECT='iter:11'))
    _killed(out, 'after iteration 11')
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_9.pth')
    resume = ('tools/train.py', cfg, '--work-dir', str(work), '--resume', *opts)
    out = run_tool(*resume, env=dict(env, ZOO_FAULT_INJECT='save:1:partial'))
    _killed(out, "during checkpoint save 1 at stage 'partial'")
    assert 'exact resume: epoch 2, batch 1/8, iteration 9' in out.stdout + out.stderr
    assert (work / 'iter_12.pth.tmp').is_file() and not (work / 'iter_12.pth').exists()
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_9.pth')
    out = run_tool(*resume, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'exact resume: epoch 2, batch 1/8, iteration 9' in out.stdout + out.stderr
    a = torch.load(ref / 'iter_16.pth', weights_only=True)
    b = torch.load(work / 'iter_16.pth', weights_only=True)
    for key in ('state_dict', 'optimizer'):
        ta, tb = dict(_tensors(a[key])), dict(_tensors(b[key]))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), key
    assert json.loads((ref / 'curves.json').read_text()) == json.loads((work / 'curves.json').read_text())
