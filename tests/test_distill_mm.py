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
