"""OpenMMLab integration: the ZooBackbone adapter, the fixture datasets, and the detection /
segmentation configs trained and evaluated through tools/train.py, tools/test.py and tools/infer.py.

The end-to-end tests derive a small config from a real config in configs/ (same detector / segmentor,
dataset class, pipeline structure, evaluator; a tiny backbone, 128 px fixture images, fewer RPN/RoI
samples) and overfit the fixture: box mAP > 0.3 and mIoU > 50 % on the training images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import ROOT, run_tool

import zoo  # noqa: F401
from zoo.data.fixtures import ADE_CLASSES, COCO_CLASSES, make_ade_fixture, make_coco_fixture
from zoo.mm import ZooBackbone

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
"""


def _curve_falls(work_dir: Path) -> tuple[float, float]:
    loss = [v for _, v in json.loads((work_dir / 'curves.json').read_text())['loss']]
    k = max(3, len(loss) // 5)
    return float(np.mean(loss[:k])), float(np.mean(loss[-k:]))


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
# Agent Attention family: its RetinaNet and Semantic FPN configs, unchanged apart from the fixture
# data, image size and class count (the real agent_pvt_tiny / agent_pvt_small backbones).

AGENT_DET_FIXTURE = """
_base_ = ['{base}']
data_root = '{data}/'
metainfo = dict(classes={classes}, palette=[(220, 20, 60), (0, 80, 230)])
# score_thr=0: a briefly trained RetinaNet may score every box under the default 0.05, which
# leaves CocoMetric nothing to rank; mAP over all of its boxes still measures what it learned.
model = dict(backbone=dict(pretrained=None, drop_path_rate=0.0), bbox_head=dict(num_classes=2),
             test_cfg=dict(score_thr=0.0))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
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
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
optim_wrapper = dict(optimizer=dict(lr={lr}))
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_epochs))
"""

AGENT_SEG_FIXTURE = """
_base_ = ['{base}']
data_root = '{data}'
metainfo = dict(classes={classes}, palette=[(120, 120, 120), (180, 120, 120), (6, 230, 230)])
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=({size}, {size})),
    backbone=dict(pretrained=None, drop_path_rate=0.0),
    decode_head=dict(num_classes=3, norm_cfg=norm_cfg))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
test_pipeline = train_pipeline
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
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_iters))
"""


@needs_mm
def test_agent_retinanet_config_trains_and_evaluates(tmp_path: Path) -> None:
    data = tmp_path / 'coco'
    make_coco_fixture(data, num_images=4, size=SIZE, seed=0)
    cfg = tmp_path / 'agent_det.py'
    cfg.write_text(AGENT_DET_FIXTURE.format(
        base=ROOT / 'configs/detection/agent_attention/retinanet_agent-pvt-t_fpn_1x_coco.py', data=data,
        classes=COCO_CLASSES, size=SIZE, epochs=int(os.environ.get('ZOO_AGENT_DET_EPOCHS', 15)), lr=5e-4))
    work = tmp_path / 'work'
    _ok(run_tool('tools/train.py', str(cfg), '--work-dir', str(work), env=ENV))
    first, last = _curve_falls(work)
    assert last < 0.9 * first, (first, last)
    _ok(run_tool('tools/test.py', str(cfg), str(next(work.glob('epoch_*.pth'))), '--work-dir', str(tmp_path / 't'),
                 env=ENV))
    metrics = json.loads((tmp_path / 't/metrics.json').read_text())
    print('fixture agent RetinaNet metrics:', metrics)
    assert 0.0 < metrics['coco/bbox_mAP'] <= 1.0


@needs_mm
def test_agent_semantic_fpn_config_trains_and_evaluates(tmp_path: Path) -> None:
    data = tmp_path / 'ade'
    make_ade_fixture(data, num_images=4, size=SIZE, seed=1)
    cfg = tmp_path / 'agent_seg.py'
    cfg.write_text(AGENT_SEG_FIXTURE.format(
        base=ROOT / 'configs/segmentation/agent_attention/fpn_agent-pvt-s_512x512_40k_ade20k.py', data=data,
        classes=ADE_CLASSES, size=SIZE, iters=int(os.environ.get('ZOO_AGENT_SEG_ITERS', 12)), lr=5e-4))
    work = tmp_path / 'work'
    _ok(run_tool('tools/train.py', str(cfg), '--work-dir', str(work), env=ENV))
    first, last = _curve_falls(work)
    assert last < 0.8 * first, (first, last)
    _ok(run_tool('tools/test.py', str(cfg), str(next(work.glob('iter_*.pth'))), '--work-dir', str(tmp_path / 't'),
                 env=ENV))
    metrics = json.loads((tmp_path / 't/metrics.json').read_text())
    print('fixture agent Semantic FPN metrics:', metrics)
    assert metrics['mIoU'] > 0.0
