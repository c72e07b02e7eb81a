"""OpenMMLab integration: the ZooBackbone adapter, the fixture datasets, and the detection /
segmentation configs trained and evaluated through tools/train.py, tools/test.py and tools/infer.py.

The end-to-end tests derive a small config from a real config in configs/ (same detector / segmentor,
dataset class, pipeline structure, evaluator; a tiny backbone, 128 px fixture images, fewer RPN/RoI
samples) and overfit the fixture: box mAP > 0.3 and mIoU > 50 % on the training images. The family
tests (Agent Attention, QSD-Transformer, MHS-VM) keep each family config's real backbone and heads and
train it briefly: the loss must fall by a stated factor and the metric pass a floor (FamilyCase).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import timm
import torch
from conftest import ROOT, run_tool

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


def test_fixtures_are_valid_coco_and_ade(tmp_path: Path) -> None:
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


SIZE = 128
DET_FIXTURE = """
_base_ = ['{base}']
data_root = '{data}/'
metainfo = dict(classes={classes}, palette=[(220, 20, 60), (0, 80, 230)])
model = dict(
    backbone=dict(model_name='test_mambaout', pretrained=None, drop_path_rate=0.0),
    neck=dict(in_channels=[16, 32, 48, 64], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=2),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=2)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=300, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=4)))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
max_epochs = {epochs}
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)]
optim_wrapper = dict(optimizer=dict(lr={lr}, weight_decay=1e-4))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)  # unseeded, box mAP once landed at 0.296 against the 0.3 floor
"""

SEG_FIXTURE = """
_base_ = ['{base}']
data_root = '{data}'
metainfo = dict(classes={classes}, palette=[(120, 120, 120), (180, 120, 120), (6, 230, 230)])
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=({size}, {size})),
    backbone=dict(model_name='test_mambaout', pretrained=None, drop_path_rate=0.0),
    decode_head=dict(in_channels=[16, 32, 48, 64], channels=64, num_classes=3, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=48, channels=32, num_classes=3, norm_cfg=norm_cfg))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
max_iters = {iters}
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr={lr}))
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
"""


def _curve_falls(work_dir: Path, stat=np.mean) -> tuple[float, float]:
    """``stat`` (mean, or median) of the logged loss over the first and the last fifth of training (at
    least 3 values each). The family tests use medians: their few-step runs log single-iteration spikes
    (RetinaNet on Agent-PVT-T logged 56 and 96 among values near 1.5), and one spike in either window
    decided a mean comparison. The long, smoothly falling runs keep means, which weigh the steep start."""
    loss = [v for _, v in json.loads((work_dir / 'curves.json').read_text())['loss']]
    k = max(3, len(loss) // 5)
    return float(stat(loss[:k])), float(stat(loss[-k:]))


# One intra-op thread: on a shared 2-core machine, torch's default (one thread per core) spins in
# OpenMP barriers and was measured 60x slower on these tiny models.
ENV = {'OMP_NUM_THREADS': '1'}


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@needs_mm
def test_detection_config_trains_evaluates_and_infers(tmp_path: Path) -> None:
    """Mask R-CNN from configs/detection/mambaout overfits the COCO-format fixture."""
    data = tmp_path / 'coco'
    make_coco_fixture(data, num_images=8, size=SIZE, seed=0)
    cfg = tmp_path / 'det_fixture.py'
    cfg.write_text(DET_FIXTURE.format(
        base=ROOT / 'configs/detection/mambaout/mask-rcnn_mambaout-t_fpn_1x_coco.py', data=data,
        classes=COCO_CLASSES, size=SIZE, epochs=int(os.environ.get('ZOO_DET_EPOCHS', 20)), lr=1e-3))
    work = tmp_path / 'work'
    _ok(run_tool('tools/train.py', str(cfg), '--work-dir', str(work), env=ENV))
    first, last = _curve_falls(work)
    assert last < 0.6 * first, (first, last)
    ckpt = next(work.glob('epoch_*.pth'))
    proc = run_tool('tools/test.py', str(cfg), str(ckpt), '--work-dir', str(tmp_path / 'test'), env=ENV)
    _ok(proc)
    metrics = json.loads((tmp_path / 'test/metrics.json').read_text())
    print('fixture detection metrics:', metrics)
    assert metrics['coco/bbox_mAP'] > 0.3, metrics
    assert metrics['coco/segm_mAP'] > 0.0, metrics
    out = tmp_path / 'pred.png'
    proc = run_tool('tools/infer.py', str(cfg), str(ckpt), str(data / 'val2017/000000.jpg'), '--out', str(out), env=ENV)
    _ok(proc)
    assert 'detections' in proc.stdout and out.stat().st_size > 1000


@needs_mm
def test_segmentation_config_trains_evaluates_and_infers(tmp_path: Path) -> None:
    """UPerNet from configs/segmentation/mambaout overfits the ADE-style fixture."""
    data = tmp_path / 'ade'
    make_ade_fixture(data, num_images=8, size=SIZE, seed=1)
    cfg = tmp_path / 'seg_fixture.py'
    cfg.write_text(SEG_FIXTURE.format(
        base=ROOT / 'configs/segmentation/mambaout/upernet_mambaout-t_512x512_160k_ade20k.py', data=data,
        classes=ADE_CLASSES, size=SIZE, iters=int(os.environ.get('ZOO_SEG_ITERS', 80)), lr=2e-3))
    work = tmp_path / 'work'
    _ok(run_tool('tools/train.py', str(cfg), '--work-dir', str(work), env=ENV))
    first, last = _curve_falls(work)
    assert last < 0.6 * first, (first, last)
    ckpt = next(work.glob('iter_*.pth'))
    _ok(run_tool('tools/test.py', str(cfg), str(ckpt), '--work-dir', str(tmp_path / 'test'), env=ENV))
    metrics = json.loads((tmp_path / 'test/metrics.json').read_text())
    print('fixture segmentation metrics:', metrics)
    assert metrics['mIoU'] > 50.0, metrics  # mmseg reports percent
    out = tmp_path / 'seg.png'
    proc = run_tool('tools/infer.py', str(cfg), str(ckpt), str(data / 'images/validation/000000.jpg'),
                    '--out', str(out), env=ENV)
    _ok(proc)
    assert 'wall' in proc.stdout and ('building' in proc.stdout or 'sky' in proc.stdout)
    assert out.stat().st_size > 1000



@needs_mm
def test_detection_dist_train_then_resume_with_amp(tmp_path: Path) -> None:
    """tools/dist_train.sh runs the detection config with 2 CPU processes (gloo); tools/train.py then
    resumes the mmdet checkpoint (weights_only loading) and continues with --amp (bfloat16 on CPU)."""
    data = tmp_path / 'coco'
    make_coco_fixture(data, num_images=8, size=SIZE, seed=0)
    cfg = tmp_path / 'det_dist.py'
    cfg.write_text(DET_FIXTURE.format(
        base=ROOT / 'configs/detection/mambaout/mask-rcnn_mambaout-t_fpn_1x_coco.py', data=data,
        classes=COCO_CLASSES, size=SIZE, epochs=1, lr=1e-3))
    work = tmp_path / 'work'
    proc = subprocess.run(['bash', 'tools/dist_train.sh', str(cfg), '2', '--work-dir', str(work)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED='1', **ENV))
    _ok(proc)
    assert 'finished 1 epochs / 2 iters' in proc.stdout  # 8 images, 2 ranks x 2 images per step
    proc = run_tool('tools/train.py', str(cfg), '--work-dir', str(work), '--resume', '--amp',
                    '--cfg-options', 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
                    'default_hooks.checkpoint.interval=1', env=ENV)
    _ok(proc)
    assert 'resumed epoch: 1' in proc.stdout + proc.stderr and (work / 'epoch_2.pth').is_file()


# --------------------------------------------------------------------------------------------------
# Family configs: the detection and segmentation configs of Agent Attention, QSD-Transformer and MHS-VM
# with their real backbones, changed only in fixture data, image size, class count, schedule length,
# lr and batch size, plus the test-time overrides named in RETINANET_HEADS / MASK_RCNN_HEADS (ordinary
# config keys that a user could set the same way). Seeded (ZOO_FIXTURE_SEED, default 0); the floors
# below were checked on seeds 0, 1 and 2. The in-training validation is switched off: tools/test.py
# evaluates the last checkpoint on the same images, and the optimizer state is not saved.

FAMILY_DET_FIXTURE = """
_base_ = ['{base}']
data_root = '{data}/'
metainfo = dict(classes={classes}, palette=[(220, 20, 60), (0, 80, 230)])
model = dict(backbone=dict(pretrained=None, drop_path_rate=0.0), {heads})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask={masks}),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask={masks}),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline,
                 filter_cfg=dict(filter_empty_gt=True, min_size=4)))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
randomness = dict(seed={seed})
max_epochs = {length}
train_cfg = dict(max_epochs=max_epochs, val_begin=max_epochs + 1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
optim_wrapper = dict(optimizer=dict(lr={lr}))
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_epochs, save_optimizer=False))
"""

FAMILY_SEG_FIXTURE = """
_base_ = ['{base}']
data_root = '{data}'
metainfo = dict(classes={classes}, palette=[(120, 120, 120), (180, 120, 120), (6, 230, 230)])
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=({size}, {size})),
    backbone=dict(pretrained=None, drop_path_rate=0.0),
    decode_head=dict(num_classes=3, norm_cfg=norm_cfg){heads})
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
test_pipeline = train_pipeline
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
randomness = dict(seed={seed})
max_iters = {length}
train_cfg = dict(max_iters=max_iters, val_begin=max_iters + 1)
optim_wrapper = dict(optimizer=dict(lr={lr}))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_iters, save_optimizer=False))
"""

# Class counts of the fixtures (2 shapes; 3 ADE classes). score_thr=0: a briefly trained detector may
# score every box under the default 0.05, which leaves CocoMetric nothing to rank; mAP over all of its
# boxes still measures what it learned.
RETINANET_HEADS = 'bbox_head=dict(num_classes=2), test_cfg=dict(score_thr=0.0)'
# Mask R-CNN also samples fewer RPN anchors / RoIs and keeps fewer proposals than COCO's 256 / 512 /
# 1000 (a fixture image holds 1-4 objects; the mambaout test above does the same).
MASK_RCNN_HEADS = (
    'roi_head=dict(bbox_head=dict(num_classes=2), mask_head=dict(num_classes=2)), '
    'train_cfg=dict(rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=300, max_per_img=100), '
    'rcnn=dict(sampler=dict(num=64))), '
    'test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(score_thr=0.0, max_per_img=20))')
UPERNET_HEADS = ', auxiliary_head=dict(num_classes=3, norm_cfg=norm_cfg)'


class FamilyCase(NamedTuple):
    """A family config trained on a fixture: the config, the schedule (epochs or iterations; the
    environment variable ``env`` overrides it), lr, batch, image size, and what is asserted: the median
    logged loss of the last fifth of training below ``loss_factor`` x that of the first fifth, and the
    metric (box mAP, or mIoU in percent) above ``min_metric``."""

    config: str
    env: str
    length: int
    lr: float
    loss_factor: float
    min_metric: float
    batch_size: int
    size: int = SIZE
    heads: str = ''
    masks: bool = False


# Measured on seeds 0 / 1 / 2 (one thread, shared 2-core machine; docs/dense.md has the table): median
# loss ratio last/first fifth, metric, duration of the test (both tools).
DET_CASES = {
    # 0.73 / 0.75 / 0.80; box mAP 0.006 / 0.023 / 0.014; 30-32 s
    'agent-retinanet': FamilyCase(
        'configs/detection/agent_attention/retinanet_agent-pvt-t_fpn_1x_coco.py', 'ZOO_AGENT_DET_EPOCHS',
        length=15, lr=5e-4, loss_factor=0.9, min_metric=0.0, batch_size=2, heads=RETINANET_HEADS),
    # The real qsd_transformer_31m: quantising its 31M weights to 4 bits and AdamW over 75M parameters
    # cost ~2.9 s a step at any image size, so 4 epochs (8 steps). 0.21 / 0.50 / 0.34; box mAP
    # 0.045 / 0.078 / 0.083 (mask 0.023 / 0.032 / 0.057); 42-49 s
    'qsd-mask-rcnn': FamilyCase(
        'configs/detection/qsd/mask-rcnn_qsd-31m_fpn_1x_coco.py', 'ZOO_QSD_DET_EPOCHS',
        length=4, lr=1e-4, loss_factor=0.7, min_metric=0.02, batch_size=2, heads=MASK_RCNN_HEADS, masks=True),
    # box mAP 0.356 / 0.449 / 0.310 (mask 0.336 / 0.436 / 0.335); 36-43 s
    'mhs-vm-mask-rcnn': FamilyCase(
        'configs/detection/mhs_vm/mask-rcnn_mhs-vm-4h_fpn_1x_coco.py', 'ZOO_MHS_VM_DET_EPOCHS',
        length=4, lr=2e-4, loss_factor=0.75, min_metric=0.1, batch_size=2, heads=MASK_RCNN_HEADS, masks=True),
}
# Predicting 'wall' everywhere scores mIoU 28.5 % on the 128 px fixture and 25.5 % on the 64 px one.
SEG_CASES = {
    # 0.28 / 0.29 / 0.27; mIoU 84.4 / 80.3 / 80.5; 29-32 s
    'agent-semantic-fpn': FamilyCase(
        'configs/segmentation/agent_attention/fpn_agent-pvt-s_512x512_40k_ade20k.py', 'ZOO_AGENT_SEG_ITERS',
        length=12, lr=5e-4, loss_factor=0.8, min_metric=0.0, batch_size=4),
    # 16 steps: the backbone's BatchNorm running statistics need them (12 gave mIoU 34.5 on seed 1).
    # 0.10 / 0.09 / 0.10; mIoU 82.1 / 57.0 / 75.9; 38 s
    'qsd-semantic-fpn': FamilyCase(
        'configs/segmentation/qsd/fpn_qsd-15m_512x512_160k_ade20k.py', 'ZOO_QSD_SEG_ITERS',
        length=16, lr=1e-3, loss_factor=0.3, min_metric=40.0, batch_size=4),
    # 64 px: UPerNet's 512-channel head costs ~10 GMAC per 128 px image at stride 4.
    # mIoU 65.0 / 71.6 / 61.5; 33-38 s
    'mhs-vm-upernet': FamilyCase(
        'configs/segmentation/mhs_vm/upernet_mhs-vm-4h_512x512_160k_ade20k.py', 'ZOO_MHS_VM_SEG_ITERS',
        length=12, lr=6e-4, loss_factor=0.5, min_metric=40.0, batch_size=2, size=64, heads=UPERNET_HEADS),
}
def _train_and_test_family(tmp_path: Path, case: FamilyCase, template: str, classes: tuple, metric: str,
                           make_fixture, data_seed: int) -> dict:
    """Writes the derived config, trains it with tools/train.py, checks the loss curve, evaluates the
    checkpoint with tools/test.py and returns its metrics.json."""
    data = tmp_path / 'data'
    make_fixture(data, num_images=4, size=case.size, seed=data_seed)
    cfg = tmp_path / 'family.py'
    cfg.write_text(template.format(
        base=ROOT / case.config, data=data, classes=classes, size=case.size, lr=case.lr, batch=case.batch_size,
        heads=case.heads, masks=case.masks, length=int(os.environ.get(case.env, case.length)),
        seed=int(os.environ.get('ZOO_FIXTURE_SEED', 0))))
    work = tmp_path / 'work'
    _ok(run_tool('tools/train.py', str(cfg), '--work-dir', str(work), env=ENV))
    first, last = _curve_falls(work, stat=np.median)
    print(f'{case.config}: median loss {first:.4f} -> {last:.4f} ({last / first:.3f}x)')
    assert last < case.loss_factor * first, (first, last)
    ckpt = next(work.glob('*_*.pth'))
    _ok(run_tool('tools/test.py', str(cfg), str(ckpt), '--work-dir', str(tmp_path / 't'), env=ENV))
    metrics = json.loads((tmp_path / 't/metrics.json').read_text())
    print(f'{case.config}: fixture metrics', metrics)
    assert metrics[metric] > case.min_metric, metrics
    return metrics


@needs_mm
@pytest.mark.parametrize('name', list(DET_CASES))
def test_family_detection_config_trains_and_evaluates(tmp_path: Path, name: str) -> None:
    case = DET_CASES[name]
    metrics = _train_and_test_family(tmp_path, case, FAMILY_DET_FIXTURE, COCO_CLASSES, 'coco/bbox_mAP',
                                     make_coco_fixture, data_seed=0)
    assert metrics['coco/bbox_mAP'] <= 1.0
    if case.masks:
        assert 0.0 <= metrics['coco/segm_mAP'] <= 1.0, metrics


@needs_mm
@pytest.mark.parametrize('name', list(SEG_CASES))
def test_family_segmentation_config_trains_and_evaluates(tmp_path: Path, name: str) -> None:
    _train_and_test_family(tmp_path, SEG_CASES[name], FAMILY_SEG_FIXTURE, ADE_CLASSES, 'mIoU', make_ade_fixture,
                           data_seed=1)
