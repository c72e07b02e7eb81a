"""SingleTeacherDistiller on a tiny classifier pair: the teacher gets no gradient, its BatchNorm stays in eval
mode and its weights (and BN statistics) are bit-identical after a training step; recorders, connectors,
inheritance, teacher checkpoints and the plain-student export."""

from __future__ import annotations

import pytest
import torch
from mmengine.optim import OptimWrapper

import zoo.distill  # noqa: F401  (registers the distiller, connectors and losses)
from zoo.distill import SingleTeacherDistiller
from zoo.registry import MODELS

STUDENT = dict(type='TimmClassifier', model_name='test_resnet', model_kwargs=dict(num_classes=10))
TEACHER = dict(type='TimmClassifier', model_name='resnet10t', model_kwargs=dict(num_classes=10))


def _distiller_cfg(**extra) -> dict:
    return dict(
        type='SingleTeacherDistiller',
        architecture=STUDENT,
        teacher=TEACHER,
        distiller=dict(
            student_recorders=dict(
                feat=dict(type='ModuleOutputs', source='backbone.layer3'),
                logits=dict(type='ModuleOutputs', source='backbone.fc'),
            ),
            teacher_recorders=dict(
                feat=dict(type='ModuleOutputs', source='backbone.layer3'),
                logits=dict(type='ModuleOutputs', source='backbone.fc'),
            ),
            connectors=dict(s_feat=dict(type='ConvModuleConnector', in_channel=192, out_channel=256)),
            distill_losses=dict(
                loss_acam=dict(type='ACAMKDLoss', channels=256, num_masks=3, mask_grad='joint'),
                loss_kd=dict(type='LogitKDLoss', tau=2.0),
            ),
            loss_forward_mappings=dict(
                loss_acam=dict(
                    s_feature=dict(from_student=True, recorder='feat', connector='s_feat'),
                    t_feature=dict(from_student=False, recorder='feat'),
                ),
                loss_kd=dict(
                    s_logits=dict(from_student=True, recorder='logits'),
                    t_logits=dict(from_student=False, recorder='logits'),
                ),
            ),
        ),
        **extra,
    )


def _batch() -> dict:
    g = torch.Generator().manual_seed(0)
    return dict(inputs=torch.randn(4, 3, 32, 32, generator=g), data_samples=dict(gt_label=torch.tensor([0, 1, 2, 3])))


def test_teacher_frozen_through_a_training_step() -> None:
    torch.manual_seed(0)
    model = MODELS.build(_distiller_cfg())
    assert isinstance(model, SingleTeacherDistiller)
    model.train()
    teacher_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}  # BN statistics included
    student_before = {k: v.clone() for k, v in model.student.state_dict().items()}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4))
    # one step by hand, to look at the gradients before the optimiser clears them
    data = model.data_preprocessor(_batch(), True)
    losses = model(**data, mode='loss')
    assert {'loss', 'loss_acam_spatial', 'loss_acam_channel', 'loss_acam_div', 'loss_kd'} <= set(losses)
    total, log = model.parse_losses(losses)
    # the mask statistics are logged but not part of the summed loss
    assert 'acam_spatial_mass' in log and not losses['acam_spatial_mass'].requires_grad
    parts = [v for k, v in losses.items() if 'loss' in k]
    torch.testing.assert_close(total, sum(parts))
    total.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.connectors['s_feat'].conv.weight.grad.abs().sum() > 0
    assert model.distill_losses['loss_acam'].fusion.q.weight.grad.abs().sum() > 0
    assert model.distill_losses['loss_acam'].masks.spatial_tokens.grad.abs().sum() > 0
    # (the downsample path: timm zero-initialises the last BN of each residual branch)
    assert model.student.backbone.layer3[0].downsample[1].weight.grad.abs().sum() > 0
    optim.step()
    optim.zero_grad()
    # and one through mmengine's train_step
    log = model.train_step(_batch(), optim)
    assert 'loss_acam_div' in log
    assert all(not p.requires_grad for p in model.teacher.parameters())
    bns = [m for m in model.teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.student.training
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    assert any(not torch.equal(v, student_before[k]) for k, v in model.student.state_dict().items())
    # nothing stays recorded between steps
    assert all(not v for v in model.student_recorder.data.values())


def test_predict_and_tensor_modes_are_the_student() -> None:
    model = MODELS.build(_distiller_cfg()).eval()
    batch = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(batch['inputs']), model.student(batch['inputs']))
        preds = model(batch['inputs'], batch['data_samples'], mode='predict')
    assert len(preds) == 4 and preds[0]['pred_score'].shape == (10,)


def test_teacher_checkpoint_inheritance_and_plain_student_export(tmp_path) -> None:
    from zoo.hub import save_safetensors

    torch.manual_seed(0)
    teacher = MODELS.build(TEACHER)
    path = str(tmp_path / 'teacher.safetensors')
    save_safetensors(teacher.export_state_dict(), path)  # timm keys, as ExportSafetensorsHook writes them
    cfg = _distiller_cfg(teacher_ckpt=path)
    cfg['architecture'] = TEACHER  # same architecture, so the head can be inherited
    cfg['inherit'] = ['backbone.fc']
    cfg['distiller']['connectors']['s_feat'].update(in_channel=256)
    model = MODELS.build(cfg)
    assert model.teacher_loaded_into == 'backbone'
    for k, v in teacher.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v), k
    model.init_weights()  # the runner's initialisation keeps the inherited head and the teacher
    torch.testing.assert_close(model.student.backbone.fc.weight, teacher.backbone.fc.weight)
    for k, v in teacher.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v), k
    exported = model.export_state_dict()
    assert set(exported) == set(model.student.backbone.state_dict())  # timm keys: tools/test.py's file route


def test_bad_distiller_configs_say_what_is_wrong() -> None:
    cfg = _distiller_cfg()
    cfg['distiller']['student_recorders']['feat']['source'] = 'backbone.nope'
    with pytest.raises(ValueError, match='backbone.nope'):
        MODELS.build(cfg)
    cfg = _distiller_cfg()
    cfg['distiller']['loss_forward_mappings']['loss_kd']['s_logits']['recorder'] = 'missing'
    with pytest.raises(ValueError, match='missing'):
        MODELS.build(cfg)
    cfg = _distiller_cfg()
    del cfg['distiller']['loss_forward_mappings']['loss_kd']
    with pytest.raises(ValueError, match='loss_kd'):
        MODELS.build(cfg)


def test_qsd_fine_grained_loss_in_the_distiller_equals_fgd_distiller() -> None:
    """QSD's fine-grained distillation as ``QSDFineGrainedLoss`` losses (one per student Q-SDSA block, weight
    ``1 / n``, recorders on the q / k spikes and the teacher's qkv outputs) gives ``FGDDistiller``'s
    ``loss_fgd`` on the same weights and batch (both in eval mode, so the BN statistics do not move)."""
    from zoo.distill import FGDDistiller
    from zoo.models.qsd_transformer import SpikeDrivenSelfAttention

    torch.manual_seed(0)
    student_kwargs = dict(embed_dim=(16, 32, 64, 64), depths=4, num_classes=10)
    teacher_kwargs = dict(num_classes=10, img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2)
    fgd = FGDDistiller(
        student=dict(model_name='qsd_transformer_15m', model_kwargs=student_kwargs),
        teacher=dict(model_name='vit_tiny_patch16_224', model_kwargs=teacher_kwargs),
    )
    names = [n for n, m in fgd.backbone.named_modules() if isinstance(m, SpikeDrivenSelfAttention)]
    n = len(names)
    s_rec, t_rec, losses, maps = {}, {}, {}, {}
    for i, (name, layer) in enumerate(zip(names, fgd.teacher_layers)):
        s_rec[f'q{i}'] = dict(type='ModuleOutputs', source=f'backbone.{name}.q_lif')
        s_rec[f'k{i}'] = dict(type='ModuleOutputs', source=f'backbone.{name}.k_lif')
        t_rec[f'qkv{i}'] = dict(type='ModuleOutputs', source=f'backbone.blocks.{layer}.attn.qkv')
        losses[f'loss_qsd{i}'] = dict(type='QSDFineGrainedLoss', T=1, num_prefix_tokens=1, loss_weight=1.0 / n)
        maps[f'loss_qsd{i}'] = dict(
            s_q=dict(from_student=True, recorder=f'q{i}'),
            s_k=dict(from_student=True, recorder=f'k{i}'),
            t_qkv=dict(from_student=False, recorder=f'qkv{i}'),
        )
    model = MODELS.build(
        dict(
            type='SingleTeacherDistiller',
            architecture=dict(type='TimmClassifier', model_name='qsd_transformer_15m', model_kwargs=student_kwargs),
            teacher=dict(type='TimmClassifier', model_name='vit_tiny_patch16_224', model_kwargs=teacher_kwargs),
            distiller=dict(
                student_recorders=s_rec, teacher_recorders=t_rec, distill_losses=losses, loss_forward_mappings=maps
            ),
        )
    )
    model.student.backbone.load_state_dict(fgd.backbone.state_dict())
    model.teacher.backbone.load_state_dict(fgd.teacher.state_dict())
    fgd.eval()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        expected = fgd(x, dict(gt_label=labels), mode='loss')['loss_fgd']
        got = model(x, dict(gt_label=labels), mode='loss')
    total = sum(v for k, v in got.items() if k.startswith('loss_qsd'))
    torch.testing.assert_close(total, expected)
