"""SingleTeacherDistiller with mmdet detectors: a tiny RetinaNet pair from mmdet's own config file
(MMRazor's ``cfg_path``), ACAM-KD and focal-and-global FGD on FPN levels recorded by module path, the
ground-truth boxes routed to FGD, neck and head inherited from the teacher, and a frozen teacher through
mmengine's train_step."""

from __future__ import annotations

import pytest
import torch

mmdet = pytest.importorskip('mmdet')


def _retina(tmp_path, name: str) -> str:
    """A tiny RetinaNet config file on top of mmdet's R-18 one (no pretrained backbone, 32-channel FPN)."""
    path = tmp_path / f'{name}.py'
    path.write_text(
        "_base_ = ['mmdet::retinanet/retinanet_r18_fpn_1x_coco.py']\n"
        'model = dict(backbone=dict(init_cfg=None), neck=dict(out_channels=32),\n'
        '             bbox_head=dict(num_classes=2, in_channels=32, feat_channels=32, stacked_convs=1))\n'
    )
    return str(path)


def _distiller(tmp_path) -> dict:
    level = dict(type='ModuleOutputs', source='neck.fpn_convs.0')
    level1 = dict(type='ModuleOutputs', source='neck.fpn_convs.1')
    return dict(
        type='SingleTeacherDistiller',
        architecture=dict(cfg_path=_retina(tmp_path, 'student'), pretrained=False),
        teacher=dict(cfg_path=_retina(tmp_path, 'teacher'), pretrained=False),
        inherit=['neck', 'bbox_head'],
        distiller=dict(
            student_recorders=dict(p3=level, p4=level1),
            teacher_recorders=dict(p3=level, p4=level1),
            connectors=dict(s_p3=dict(type='ConvModuleConnector', in_channel=32, out_channel=32)),
            distill_losses=dict(
                loss_acam_p3=dict(type='ACAMKDLoss', channels=32, num_masks=6),
                loss_fgd_p4=dict(type='FocalGlobalLoss', channels=32),
            ),
            loss_forward_mappings=dict(
                loss_acam_p3=dict(
                    s_feature=dict(from_student=True, recorder='p3', connector='s_p3'),
                    t_feature=dict(from_student=False, recorder='p3'),
                ),
                loss_fgd_p4=dict(
                    s_feature=dict(from_student=True, recorder='p4'),
                    t_feature=dict(from_student=False, recorder='p4'),
                    gt_bboxes=dict(from_data='gt_bboxes'),
                    img_shapes=dict(from_data='img_shapes'),
                ),
            ),
        ),
    )


def _batch() -> dict:
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(0)
    samples = []
    for boxes in ([[4.0, 6.0, 40.0, 30.0]], [[10.0, 10.0, 60.0, 50.0], [0.0, 0.0, 20.0, 20.0]]):
        ds = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1.0, 1.0)))
        ds.gt_instances = InstanceData(bboxes=torch.tensor(boxes), labels=torch.zeros(len(boxes), dtype=torch.long))
        samples.append(ds)
    inputs = [torch.randint(0, 256, (3, 64, 64), generator=g, dtype=torch.uint8) for _ in samples]
    return dict(inputs=inputs, data_samples=samples)


def test_retinanet_pair_trains_with_a_frozen_teacher(tmp_path) -> None:
    from mmengine.optim import OptimWrapper

    import zoo.distill  # noqa: F401
    from zoo.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(_distiller(tmp_path))
    model.init_weights()
    # inheritance: the student's neck and head start as the teacher's
    for path in ('neck', 'bbox_head'):
        for (k, a), b in zip(
            model.student.get_submodule(path).state_dict().items(),
            model.teacher.get_submodule(path).state_dict().values(),
        ):
            assert torch.equal(a, b), f'{path}.{k}'
    model.train()
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = model.data_preprocessor(_batch(), True)
    losses = model(**data, mode='loss')
    assert {'loss_cls', 'loss_bbox', 'loss_acam_p3_spatial', 'loss_acam_p3_div', 'loss_fgd_p4_fg'} <= set(losses)
    assert losses['loss_fgd_p4_fg'].item() > 0  # the boxes reached FGD's foreground mask
    total, _ = model.parse_losses(losses)
    total.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student.neck.fpn_convs[0].conv.weight.grad.abs().sum() > 0
    optim.step()
    optim.zero_grad()
    model.train_step(_batch(), optim)
    assert not any(m.training for m in model.teacher.modules())
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert set(model.export_state_dict()) == set(model.student.state_dict())


def _deeplab(tmp_path, name: str) -> str:
    """A small DeepLabV3-R18 config on top of mmseg's (BN instead of SyncBN, 64x64 inputs, 19 classes)."""
    path = tmp_path / f'{name}.py'
    path.write_text(
        "_base_ = ['mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py']\n"
        "norm_cfg = dict(type='BN', requires_grad=True)\n"
        'model = dict(data_preprocessor=dict(size=(64, 64)), backbone=dict(norm_cfg=norm_cfg),\n'
        '             decode_head=dict(norm_cfg=norm_cfg, channels=32), auxiliary_head=dict(norm_cfg=norm_cfg))\n'
    )
    return str(path)


def test_deeplabv3_pair_distils_the_segmentation_logits(tmp_path) -> None:
    pytest.importorskip('mmseg')
    from mmengine.optim import OptimWrapper
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    import zoo.distill  # noqa: F401
    from zoo.registry import MODELS

    logits = dict(type='ModuleOutputs', source='decode_head.conv_seg')
    cfg = dict(
        type='SingleTeacherDistiller',
        architecture=dict(cfg_path=_deeplab(tmp_path, 'student'), pretrained=False),
        teacher=dict(cfg_path=_deeplab(tmp_path, 'teacher'), pretrained=False),
        distiller=dict(
            student_recorders=dict(logits=logits),
            teacher_recorders=dict(logits=logits),
            distill_losses=dict(
                loss_acam=dict(type='ACAMKDLoss', channels=19, num_masks=19),
                loss_kd=dict(type='LogitKDLoss'),
            ),
            loss_forward_mappings=dict(
                loss_acam=dict(
                    s_feature=dict(from_student=True, recorder='logits'),
                    t_feature=dict(from_student=False, recorder='logits'),
                ),
                loss_kd=dict(
                    s_logits=dict(from_student=True, recorder='logits'),
                    t_logits=dict(from_student=False, recorder='logits'),
                ),
            ),
        ),
    )
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):
        ds = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        ds.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, 64, 64), generator=g))
        samples.append(ds)
    batch = dict(inputs=[torch.randint(0, 256, (3, 64, 64), generator=g, dtype=torch.uint8) for _ in samples])
    batch['data_samples'] = samples
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce', 'loss_acam_spatial', 'loss_acam_div', 'loss_kd'} <= set(losses)
    spatial, channel = model.distill_losses['loss_acam'].last_masks
    assert spatial.shape == (2, 19, 8 * 8) and channel.shape == (2, 19, 19)  # logits at 1/8 resolution
    total, _ = model.parse_losses(losses)
    total.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student.decode_head.conv_seg.weight.grad.abs().sum() > 0
    model.train_step(batch, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01)))
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_distill_benchmark_suite_times_each_method(tmp_path, one_thread) -> None:
    """tools/analysis/benchmark.py distill (step part) on a small input: one row per method with a positive step
    time, the no-KD row as the 1.0x reference, the distillers' extra trainable parameters (connectors, ACAM-KD's
    STCA-FF and masks) counted, and the CSV / PNG written."""
    import csv

    from zoo.cli import benchmark

    rows = benchmark.main(
        ['distill', '--what', 'step', '--methods', 'no KD', 'ACAM-KD', '--hw', '64', '96', '--out-dir', str(tmp_path)]
    )
    assert [r['method'] for r in rows] == ['no KD', 'ACAM-KD']
    assert all(r['step_s'] > 0 for r in rows) and rows[0]['overhead_x'] == 1.0
    # ACAM-KD adds 5 connectors (256 x 256) and 5 x (STCA-FF q, k: 256 x 128 each, v: 256 x 256; 2 x 6 x 256 tokens)
    extra = 5 * (256 * 256 + 2 * 256 * 128 + 256 * 256 + 2 * 6 * 256) / 1e6
    assert rows[1]['trainable_params_m'] - rows[0]['trainable_params_m'] == pytest.approx(extra, abs=2e-3)
    with open(tmp_path / 'distill_step.csv') as f:
        assert [r['method'] for r in csv.DictReader(f)] == ['no KD', 'ACAM-KD']
    assert (tmp_path / 'distill_step.png').stat().st_size > 0


def test_maskd_stage1_learns_only_the_masks_and_feeds_the_distillation_loss(tmp_path) -> None:
    """MasKD's first stage (hunto/MasKD, mmdetection/maskd_hook.py): on a frozen tiny RetinaNet, one SGD step
    moves only the mask modules; the neck outputs the model sees are sum_m w_m M_m F (checked against an
    explicit computation); and the saved state dict loads into MasKDLoss(tokens=..., level=...)."""
    from mmengine.optim import OptimWrapper

    import zoo.distill  # noqa: F401
    from zoo.distill.losses import MasKDLoss
    from zoo.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type='MasKDMaskLearner',
            model=dict(cfg_path=_retina(tmp_path, 'teacher'), pretrained=False),
            channels=[32] * 5,
            num_masks=3,
        )
    )
    model.init_weights()
    model.train()
    assert not any(m.training for m in model.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen = {k: v.clone() for k, v in model.model.state_dict().items()}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    losses = model.train_step(_batch(), optim)
    assert {'loss_cls', 'loss_bbox', 'loss_div_0', 'loss_div_4'} <= set(losses)
    assert all(torch.equal(v, model.model.state_dict()[k]) for k, v in frozen.items())
    # the masked neck output, written out for level 1
    x = torch.randn(2, 32, 4, 4)
    level = model.mask_modules[1]
    masks = torch.sigmoid(torch.einsum('mc,bchw->bmhw', level.mask_token, x))
    w = torch.softmax(level.prob(x).flatten(1), dim=1)
    expected = sum(w[:, m, None, None, None] * masks[:, m, None] * x for m in range(3))
    torch.testing.assert_close(level(x)[0], expected)
    # the distillation stage reads the tokens and head of a level from the saved state dict, frozen
    path = tmp_path / 'stage1.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    loss = MasKDLoss(channels=32, num_masks=3, tokens=str(path), level=1, weight_mask=True)
    torch.testing.assert_close(loss.tokens, level.mask_token)
    torch.testing.assert_close(loss.prob[2].weight, level.prob[2].weight)
    assert not loss.tokens.requires_grad
