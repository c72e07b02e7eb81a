"""OpenMMLab integration: the ZooBackbone adapter, the fixture datasets, and the smoke configs in
configs/smoke/{detection,segmentation} trained and evaluated through tools/train.py, tools/test.py and
tools/infer.py, as docs/dense.md shows a user.

Each smoke config is a real config of configs/detection or configs/segmentation (through ``_base_``)
with the fixture data, small images, the fixture's classes and a short schedule. The fixtures come from
tools/make_fixtures.py; their validation images are held out (not the training images), so every
metric below measures generalisation, and every floor sits well above what a trivial predictor
scores on the same validation set (SMOKE_CASES).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import timm
import torch
from conftest import HANG_GUARD_S, ROOT, run_tool
from docs_blocks import assert_ran, find_block, run_block, user_dir

import zoo  # noqa: F401
from zoo.mm import ZooBackbone
from zoo.testing import ADE_CLASSES, COCO_CLASSES, make_ade_fixture, make_coco_fixture

# --------------------------------------------------------------------------------------------------
# Adapter (needs only timm + mmengine)


def test_adapter_matches_timm_intermediates_and_loads_file(tmp_path: Path) -> None:
    """NHWC MambaOut taps come out NCHW and equal timm's own forward_intermediates, with the weights
    loaded from a checkpoint file through pretrained=PATH."""
    torch.manual_seed(0)
    ref = timm.create_model('test_mambaout').eval()
    path = tmp_path / 'w.pth'
    torch.save(ref.state_dict(), path)
    bb = ZooBackbone('test_mambaout', pretrained=str(path)).eval()
    assert bb.nhwc and bb.out_channels == [16, 32, 48, 64] and bb.out_strides == [4, 8, 16, 32]
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        got = bb(x)
        want = ref.forward_intermediates(x, intermediates_only=True)
    assert [tuple(g.shape) for g in got] == [(2, 16, 16, 24), (2, 32, 8, 12), (2, 48, 4, 6), (2, 64, 2, 3)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_adapter_out_norm_normalises_channels() -> None:
    bb = ZooBackbone('test_mambaout', out_indices=(1, 3), out_norm=True).eval()
    assert bb.out_channels == [32, 64]
    with torch.no_grad():
        outs = bb(torch.randn(1, 3, 64, 64))
    for o in outs:  # a fresh LayerNorm: zero mean, unit variance over channels at every position
        torch.testing.assert_close(o.mean(1), torch.zeros_like(o.mean(1)), atol=1e-4, rtol=0)
        torch.testing.assert_close(o.var(1, unbiased=False), torch.ones_like(o.mean(1)), atol=1e-2, rtol=0)


def test_adapter_simple_pyramid_for_flat_vit() -> None:
    """A plain ViT (all taps at stride 16) gets strides 4/8/16/32 on a non-square input."""
    bb = ZooBackbone('test_vit', model_kwargs=dict(dynamic_img_size=True))
    assert bb.pyramid is not None and bb.out_strides == [4, 8, 16, 32]
    c = timm.create_model('test_vit').num_features
    assert bb.out_channels == [c // 4, c // 2, c, c]
    outs = bb(torch.randn(1, 3, 64, 128))
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 32), (8, 16), (4, 8), (2, 4)]
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in bb.pyramid.parameters())


def test_adapter_frozen_stages_and_norm_eval() -> None:
    bb = ZooBackbone('test_mambaout', frozen_stages=2)
    frozen = {n for n, p in bb.named_parameters() if not p.requires_grad}
    assert any('stem' in n for n in frozen)
    assert any('stages_1' in n for n in frozen) and not any('stages_2' in n for n in frozen)
    sum(o.sum() for o in bb(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is None for n, p in bb.named_parameters() if n in frozen)
    assert all(p.grad is not None for n, p in bb.named_parameters() if 'stages_3' in n)
    rn = ZooBackbone('test_resnet', norm_eval=True).train()
    bns = [m for m in rn.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)


def test_adapter_errors_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='pretrained file .*missing.pth'):
        ZooBackbone('test_mambaout', pretrained=str(tmp_path / 'missing.pth'))
    with pytest.raises(KeyError, match="unknown timm model 'no_such_net'"):
        ZooBackbone('no_such_net')
    with pytest.raises(ValueError, match='out_indices'):
        ZooBackbone('test_mambaout', out_indices=(0, 7))


# --------------------------------------------------------------------------------------------------
# Fixtures


def test_fixtures_are_valid_coco_and_ade_with_held_out_validation(tmp_path: Path) -> None:
    info = make_coco_fixture(tmp_path / 'coco', num_images=4, size=96, seed=3)
    ann = json.loads((tmp_path / 'coco/annotations/instances_train2017.json').read_text())
    assert [c['name'] for c in ann['categories']] == list(COCO_CLASSES)
    assert len(ann['images']) == 4 and len(ann['annotations']) == info['num_objects'] >= 4
    for a in ann['annotations']:
        x, y, w, h = a['bbox']
        poly = np.array(a['segmentation'][0]).reshape(-1, 2)
        assert 0 <= x and x + w <= 96 and 0 <= y and y + h <= 96
        assert poly[:, 0].min() >= x - 1 and poly[:, 0].max() <= x + w + 1  # the mask sits in its box
        assert 0.7 * w * h <= a['area'] <= w * h + 1  # squares fill the box, discs pi/4 of it
    make_ade_fixture(tmp_path / 'ade', num_images=3, size=64)
    from PIL import Image

    lab = np.asarray(Image.open(tmp_path / 'ade/annotations/training/000000.png'))
    assert lab.shape == (64, 64) and set(np.unique(lab)) <= {1, 2, 3} and 1 in lab
    assert len(ADE_CLASSES) == 3
    again = make_coco_fixture(tmp_path / 'coco2', num_images=4, size=96, seed=3)
    assert again['num_objects'] == info['num_objects']  # deterministic
    # held out: no validation image is a training image, of this seed or of the next one
    make_coco_fixture(tmp_path / 'coco3', num_images=4, size=96, seed=4)
    train = {p.read_bytes() for d in ('coco', 'coco3') for p in (tmp_path / d / 'train2017').glob('*.jpg')}
    val = {p.read_bytes() for p in (tmp_path / 'coco/val2017').glob('*.jpg')}
    assert len(val) == 4 and not train & val
    ade_train = {p.read_bytes() for p in (tmp_path / 'ade/annotations/training').glob('*.png')}
    assert not ade_train & {p.read_bytes() for p in (tmp_path / 'ade/annotations/validation').glob('*.png')}


def test_make_fixtures_tool(tmp_path: Path) -> None:
    """tools/make_fixtures.py: a seeded, held-out COCO set; the same seed gives the same files; a bad
    size is a one-line error naming it."""
    args = ('--num-images', '3', '--num-val', '2', '--size', '64')
    for name, seed in (('a', '5'), ('b', '5'), ('c', '6')):
        proc = run_tool('tools/make_fixtures.py', 'coco', '--out', str(tmp_path / name), '--seed', seed, *args)
        _ok(proc)
        assert 'wrote COCO instances, 3 train / 2 val images' in proc.stdout
    files = {n: [p.read_bytes() for p in sorted((tmp_path / n / 'val2017').glob('*.jpg'))] for n in 'abc'}
    assert len(files['a']) == 2 and files['a'] == files['b'] and files['a'] != files['c']
    proc = run_tool('tools/make_fixtures.py', 'ade', '--out', str(tmp_path / 'bad'), '--size', '8')
    assert proc.returncode == 2 and 'size=8' in proc.stderr and 'Traceback' not in proc.stderr


# --------------------------------------------------------------------------------------------------
# OpenMMLab end to end (needs mmcv with compiled ops, mmdet, mmseg)

mm_missing = None
try:
    import mmcv.ops  # noqa: F401
    import mmdet.models  # noqa: F401
    import mmseg.models  # noqa: F401
except Exception as err:  # noqa: BLE001
    mm_missing = f'OpenMMLab stack not importable ({type(err).__name__}: {err}); run scripts/install.sh'
needs_mm = pytest.mark.skipif(mm_missing is not None, reason=mm_missing or '')


@needs_mm
def test_root_registration_builds_from_mmdet_and_mmseg() -> None:
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    for reg in (DET_MODELS, SEG_MODELS):
        bb = reg.build(dict(type='ZooBackbone', model_name='test_mambaout', out_indices=(2, 3)))
        assert isinstance(bb, ZooBackbone) and bb.out_channels == [48, 64]


SMOKE = ROOT / 'configs' / 'smoke'
# The fixture seed and the training seed (randomness.seed); the floors below hold on seeds 0, 1 and 2.
SEED = int(os.environ.get('ZOO_FIXTURE_SEED', 0))


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope='module')
def fixtures(tmp_path_factory) -> Path:
    """The COCO and ADE fixtures the smoke configs read (their default sizes: 16 training and 16
    held-out validation images of 128 px), written by tools/make_fixtures.py as docs/dense.md shows."""
    root = tmp_path_factory.mktemp('fixtures')
    for kind in ('coco', 'ade'):
        _ok(run_tool('tools/make_fixtures.py', kind, '--out', str(root / kind), '--seed', str(SEED)))
    return root


def _env(fixtures: Path) -> dict:
    # One intra-op thread: on a shared 2-core machine, torch's default (one thread per core) spins in
    # OpenMP barriers and was measured 60x slower on these small models. ZOO_FIXTURES: the smoke
    # configs' data root ({{$ZOO_FIXTURES:data/fixtures}}).
    return {'OMP_NUM_THREADS': '1', 'ZOO_FIXTURES': str(fixtures)}


def _curve(work_dir: Path) -> dict:
    return json.loads((work_dir / 'curves.json').read_text())


def _loss_ratio(work_dir: Path) -> float:
    """Median logged loss of the last fifth of training over that of the first fifth (at least 3
    values each). Medians: short runs log single-iteration spikes (RetinaNet on Agent-PVT-T logged 56
    and 96 among values near 1.5), and one spike in either window would decide a mean comparison."""
    loss = [v for _, v in _curve(work_dir)['loss']]
    k = max(3, len(loss) // 5)
    return float(np.median(loss[-k:]) / np.median(loss[:k]))


def trivial_miou(ade_root: Path) -> float:
    """mIoU (percent, as mmseg's IoUMetric) of predicting the majority class ('wall') everywhere on the
    validation split: IoU(wall) = its pixel share, 0 for the other classes present."""
    from PIL import Image

    labels = np.concatenate(
        [np.asarray(Image.open(p)).ravel() for p in sorted((ade_root / 'annotations/validation').glob('*.png'))]
    )
    present = [c for c in (1, 2, 3) if (labels == c).any()]
    return 100.0 * float((labels == 1).mean()) / len(present)


def trivial_map(coco_root: Path) -> float:
    """COCO box mAP of a trivial detector on the validation split: for each image and class, one box
    of the mean training-object size at the image centre, score 1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    train = json.loads((coco_root / 'annotations/instances_train2017.json').read_text())
    w, h = np.mean([a['bbox'][2:] for a in train['annotations']], axis=0)
    gt = COCO(str(coco_root / 'annotations/instances_val2017.json'))
    dets = [
        dict(
            image_id=img['id'],
            category_id=c,
            score=1.0,
            bbox=[img['width'] / 2 - w / 2, img['height'] / 2 - h / 2, w, h],
        )
        for img in gt.dataset['images']
        for c in gt.getCatIds()
    ]
    ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0])


class SmokeCase(NamedTuple):
    """A smoke config and what its test asserts: the loss ratio (last fifth / first fifth, medians)
    below ``loss_factor`` and the validation ``metric`` (box mAP, or mIoU in percent) above ``floor``."""

    config: str
    metric: str
    floor: float
    loss_factor: float


# Trivial scores on the validation split of the default fixture, seeds 0 / 1 / 2 (trivial_map /
# trivial_miou, asserted in test_floors_sit_above_trivial_predictors): box mAP 0.0014 / 0.0 / 0.0085,
# mIoU 26.3 / 27.1 / 27.4 %. Measured with seeds 0 / 1 / 2 (fixture and training seed; one thread, 2-core
# machine shared with one other job): loss ratio; metric on the held-out validation images. Every run
# is deterministic (the same seed gives the same number), CI runs seed 0.
SMOKE_CASES = {
    # 10 epochs: ratio 0.44 / 0.39 / 0.40, box mAP 0.503 / 0.381 / 0.369 (mask mAP 0.513 / 0.547 / 0.456)
    'mask-rcnn-test-mambaout': SmokeCase(
        'detection/mask-rcnn_test-mambaout_fpn_fixture.py', 'coco/bbox_mAP', floor=0.25, loss_factor=0.6
    ),
    # 8 epochs, 128-channel heads: ratio 0.37 / 0.35 / 0.36, box mAP 0.283 / 0.414 / 0.366
    'mask-rcnn-agent-pvt-t': SmokeCase(
        'detection/mask-rcnn_agent-pvt-t_fpn_fixture.py', 'coco/bbox_mAP', floor=0.12, loss_factor=0.5
    ),
    # 4 epochs, 15M backbone, 128-channel heads: ratio 0.46 / 0.48 / 0.51, box mAP 0.244 / 0.194 / 0.211
    'mask-rcnn-qsd-15m': SmokeCase(
        'detection/mask-rcnn_qsd-15m_fpn_fixture.py', 'coco/bbox_mAP', floor=0.12, loss_factor=0.6
    ),
    # 4 epochs, 128-channel heads: ratio 0.51 / 0.67 / 0.48, box mAP 0.119 / 0.152 / 0.102 (63 s alone)
    'mask-rcnn-mhs-vm-4h': SmokeCase(
        'detection/mask-rcnn_mhs-vm-4h_fpn_fixture.py', 'coco/bbox_mAP', floor=0.07, loss_factor=0.75
    ),
    # MEDUSA's gated stages (features_only), slim trunk, random init, 10 epochs: ratio 0.45 / 0.39 / 0.39, box
    # mAP 0.437 / 0.482 / 0.487 (31 s alone)
    'mask-rcnn-medusa-r50': SmokeCase(
        'detection/mask-rcnn_medusa-r50_fpn_fixture.py', 'coco/bbox_mAP', floor=0.25, loss_factor=0.6
    ),
    # 80 iterations: ratio 0.13 / 0.14 / 0.14, mIoU 95.7 / 95.2 / 87.1
    'upernet-test-mambaout': SmokeCase(
        'segmentation/upernet_test-mambaout_fixture.py', 'mIoU', floor=75.0, loss_factor=0.3
    ),
    # 20 iterations: ratio 0.20 / 0.21 / 0.21, mIoU 80.8 / 74.2 / 79.8
    'fpn-agent-pvt-s': SmokeCase('segmentation/fpn_agent-pvt-s_fixture.py', 'mIoU', floor=60.0, loss_factor=0.4),
    # 40 iterations: ratio 0.22 / 0.17 / 0.24, mIoU 73.3 / 78.0 / 72.6 (54 s alone)
    'fpn-qsd-15m': SmokeCase('segmentation/fpn_qsd-15m_fixture.py', 'mIoU', floor=55.0, loss_factor=0.35),
    # 40 iterations at 64 px: ratio 0.22 / 0.22 / 0.27, mIoU 81.7 / 85.4 / 70.6
    'upernet-mhs-vm-4h': SmokeCase('segmentation/upernet_mhs-vm-4h_fixture.py', 'mIoU', floor=55.0, loss_factor=0.4),
}
# Margins over the trivial predictors that every floor keeps (box mAP; mIoU points).
MIN_MARGIN = {'coco/bbox_mAP': 0.05, 'mIoU': 15.0}


@needs_mm
def test_floors_sit_above_trivial_predictors(fixtures: Path) -> None:
    """The trivial scores on this fixture, computed, and every floor clearly above them."""
    trivial = {'coco/bbox_mAP': trivial_map(fixtures / 'coco'), 'mIoU': trivial_miou(fixtures / 'ade')}
    print('trivial predictors on the validation split:', trivial)
    assert 0.0 <= trivial['coco/bbox_mAP'] < 0.05 and 20.0 < trivial['mIoU'] < 40.0, trivial
    for name, case in SMOKE_CASES.items():
        assert case.floor >= trivial[case.metric] + MIN_MARGIN[case.metric], (name, case, trivial)


@pytest.mark.slow
@needs_mm
@pytest.mark.parametrize('name', list(SMOKE_CASES))
def test_smoke_config_trains(fixtures: Path, tmp_path: Path, name: str) -> None:
    """tools/train.py on the smoke config: the loss falls and the validation metric at the end of
    training passes the floor. The MambaOut detection case is docs/dense.md's block, run as written
    (make_fixtures -> train -> test -> infer, in a fresh user directory; seed 0 as in the config); the
    MambaOut segmentation case also goes through tools/test.py (same number from the checkpoint) and
    tools/infer.py."""
    case = SMOKE_CASES[name]
    cfg = str(SMOKE / case.config)
    if name == 'mask-rcnn-test-mambaout' and SEED == 0:
        block = find_block('docs/dense.md', 'mask-rcnn_test-mambaout_fpn_fixture.py')
        cwd = user_dir(tmp_path / 'user')
        proc = run_block(block, cwd)
        assert_ran(block, proc)
        work = cwd / 'work_dirs' / Path(case.config).stem
        test_metrics = json.loads((work / 'test' / 'metrics.json').read_text())
        assert 'detections' in proc.stdout and (cwd / 'pred.png').stat().st_size > 1000
        # the checkpoint replaces the backbone weights: with pretrained=True (test_mambaout has none to
        # download, so building it with pretrained weights fails) test.py and infer.py still run
        opts = ('--cfg-options', 'model.backbone.pretrained=True')
        env = {'OMP_NUM_THREADS': '1', 'ZOO_FIXTURES': str(cwd / 'data/fixtures')}
        again = run_tool(
            'tools/test.py', cfg, str(work / 'epoch_10.pth'), '--work-dir', str(tmp_path / 'again'), *opts, env=env
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads((tmp_path / 'again/metrics.json').read_text())[case.metric] == test_metrics[case.metric]
        image = str(cwd / 'data/fixtures/coco/val2017/000000.jpg')
        _ok(
            run_tool(
                'tools/infer.py',
                cfg,
                str(work / 'epoch_10.pth'),
                image,
                '--out',
                str(tmp_path / 'p.png'),
                *opts,
                env=env,
            )
        )
        # a folder with one unreadable file: the others are drawn, the bad one is named, exit code 1
        folder = tmp_path / 'images'
        folder.mkdir()
        for img in sorted((cwd / 'data/fixtures/coco/val2017').glob('*.jpg'))[:2]:
            shutil.copy(img, folder)
        (folder / 'broken.jpg').write_bytes(b'not a JPEG')
        proc = run_tool(
            'tools/infer.py', cfg, str(work / 'epoch_10.pth'), str(folder), '--out', str(tmp_path / 'preds'), env=env
        )
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert 'skipping' in proc.stderr and 'broken.jpg' in proc.stderr and 'Traceback' not in proc.stderr
        assert '2 of 3 images predicted' in proc.stderr
        assert sorted(p.name for p in (tmp_path / 'preds').glob('*.png')) == ['000000.png', '000001.png']
    else:
        work = tmp_path / 'work'
        _ok(
            run_tool(
                'tools/train.py',
                cfg,
                '--work-dir',
                str(work),
                '--cfg-options',
                f'randomness.seed={SEED}',
                env=_env(fixtures),
            )
        )
        test_metrics = None
    ratio = _loss_ratio(work)
    metric = _curve(work)['metrics'][case.metric][-1][1]
    print(f'{case.config}: loss ratio {ratio:.3f}, {case.metric} {metric:.4f}')
    assert ratio < case.loss_factor, ratio
    assert metric > case.floor, (case.metric, metric)
    if test_metrics is not None:  # tools/test.py on the last checkpoint gives the same numbers
        assert test_metrics[case.metric] == pytest.approx(metric, abs=1e-3), test_metrics
        assert test_metrics['coco/segm_mAP'] > 0.1, test_metrics
    if name != 'upernet-test-mambaout':
        return
    ckpt = next(p for p in work.glob('*_*.pth') if not p.name.startswith('best'))
    _ok(run_tool('tools/test.py', cfg, str(ckpt), '--work-dir', str(tmp_path / 'test'), env=_env(fixtures)))
    metrics = json.loads((tmp_path / 'test/metrics.json').read_text())
    assert metrics[case.metric] == pytest.approx(metric, abs=1e-3), metrics
    # float32, then the fast path (issue 19): --bf16 draws the same label map on nearly every pixel (measured
    # 99.25 %)
    image = str(fixtures / 'ade/images/validation/000000.jpg')
    preds = {}
    for name, extra in (('fp32', []), ('bf16', ['--bf16'])):
        preds[name] = tmp_path / f'pred_{name}.png'
        proc = run_tool('tools/infer.py', cfg, str(ckpt), image, '--out', str(preds[name]), *extra, env=_env(fixtures))
        _ok(proc)
        assert 'wall' in proc.stdout and ('building' in proc.stdout or 'sky' in proc.stdout)
        assert preds[name].stat().st_size > 1000
    from PIL import Image

    fp32, bf16 = (np.asarray(Image.open(preds[k])) for k in ('fp32', 'bf16'))
    same = (fp32 == bf16).all(axis=-1).mean()
    print(f'tools/infer.py --bf16 vs float32: {same:.4f} of the pixels drawn the same')
    assert same >= 0.98, same


@pytest.mark.slow
@needs_mm
def test_detection_dist_train_then_resume_with_amp(fixtures: Path, tmp_path: Path) -> None:
    """tools/dist_train.sh runs the detection smoke config with 2 CPU processes (gloo); tools/train.py
    then resumes the mmdet checkpoint (weights_only loading) and continues with --amp (bfloat16 on CPU)."""
    cfg = str(SMOKE / 'detection/mask-rcnn_test-mambaout_fpn_fixture.py')
    work = tmp_path / 'work'
    opts = ['--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_begin=100']
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', str(work), *opts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env=dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED='1', **_env(fixtures)),
    )
    _ok(proc)
    assert 'finished 1 epochs / 4 iters' in proc.stdout  # 16 images, 2 ranks x 2 images per step
    proc = run_tool(
        'tools/train.py',
        cfg,
        '--work-dir',
        str(work),
        '--resume',
        '--amp',
        '--cfg-options',
        'train_cfg.max_epochs=2',
        'train_cfg.val_begin=100',
        'default_hooks.checkpoint.interval=1',
        env=_env(fixtures),
    )
    _ok(proc)
    assert 'resumed epoch: 1' in proc.stdout + proc.stderr and (work / 'epoch_2.pth').is_file()
