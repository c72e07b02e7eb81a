"""Distillation through tools/train.py: a briefly trained teacher distils into the student (digits; the COCO
fixture detector), the distillation loss is logged and falls, and the exported plain student evaluates with
tools/test.py and the student's own config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, TINY_DIGITS

CONFIGS = ROOT / 'configs/distill/digits'


def _train_teacher(tmp_path: Path) -> Path:
    from zoo.cli import train as train_tool

    cfg = tmp_path / 'teacher.py'
    cfg.write_text(TINY_DIGITS.format(root=ROOT, epochs=1))
    work = tmp_path / 'teacher'
    train_tool.main([str(cfg), '--work-dir', str(work)])
    return work / 'model.safetensors'


def _losses(work: Path, key: str) -> list[float]:
    """``key`` of every logged training iteration (mmengine's scalars.json)."""
    found = sorted(work.rglob('scalars.json'))
    assert found, f'no scalars.json under {work}'
    rows = [json.loads(line) for line in found[-1].read_text().splitlines() if line.strip()]
    return [r[key] for r in rows if key in r]


def test_digits_acam_kd_trains_exports_and_evaluates(one_thread, tmp_path: Path) -> None:
    from zoo.cli import test as test_tool
    from zoo.cli import train as train_tool

    teacher = _train_teacher(tmp_path)
    work = tmp_path / 'acam'
    # test_mambaout (stage 2: 48 channels) stands in for MambaOut-Femto (192) to keep the test fast
    train_tool.main(
        [
            str(CONFIGS / 'acam-kd_mambaout-femto_test-resnet_digits.py'),
            '--work-dir',
            str(work),
            '--cfg-options',
            'model.teacher.model_name=test_mambaout',
            f'model.teacher_ckpt={teacher}',
            'model.distiller.connectors.s_feat.out_channel=48',
            'model.distiller.distill_losses.loss_acam.channels=48',
            'train_cfg.max_epochs=2',
            'default_hooks.logger.interval=5',
        ]
    )
    spatial = _losses(work, 'loss_acam_spatial')
    assert len(spatial) >= 4 and all(v == v for v in spatial)  # logged, finite
    # the feature distance term falls over the two epochs (mean of the last logs below the first logs)
    k = max(len(spatial) // 4, 1)
    assert sum(spatial[-k:]) / k < sum(spatial[:k]) / k, spatial
    student = work / 'student.safetensors'
    assert student.is_file()
    metrics = test_tool.main([str(CONFIGS / 'test-resnet_digits.py'), str(student), '--work-dir', str(tmp_path / 't')])
    # measured: 74.4 / 78.3 % top-1 (student run seeds 0 / 1, teacher seed 0); chance is 10 %, and a student whose
    # exported weights did not reload (random head) stays near it
    assert metrics['accuracy/top1'] > 40.0, metrics


@pytest.mark.slow
def test_detection_fixture_teacher_distils_into_a_smaller_student(one_thread, tmp_path: Path, monkeypatch) -> None:
    """The COCO fixture: the Mask R-CNN smoke detector, trained briefly, is the teacher of a 32-channel-FPN
    student (configs/smoke/distill). ACAM-KD's distances fall while the spatial masks keep their mass (no
    collapse), and the exported plain student gives tools/test.py, with the student's own config, the
    metric of the run's last validation."""
    pytest.importorskip('mmdet')
    from zoo.cli import make_fixtures
    from zoo.cli import test as test_tool
    from zoo.cli import train as train_tool

    monkeypatch.setenv('ZOO_FIXTURES', str(tmp_path / 'fx'))
    make_fixtures.main(['coco', '--out', str(tmp_path / 'fx/coco'), '--seed', '0'])
    smoke = ROOT / 'configs/smoke'
    teacher_cfg = str(smoke / 'detection/mask-rcnn_test-mambaout_fpn_fixture.py')
    train_tool.main([teacher_cfg, '--work-dir', str(tmp_path / 't')])
    work = tmp_path / 'kd'
    metrics = train_tool.main(
        [
            str(smoke / 'distill/acam-kd_mask-rcnn_test-mambaout_fpn_fixture.py'),
            '--work-dir',
            str(work),
            '--cfg-options',
            f'model.teacher_ckpt={tmp_path / "t/epoch_10.pth"}',
        ]
    )
    spatial = _losses(work, 'loss_acam_p3_spatial')
    mass = _losses(work, 'acam_p3_spatial_mass')
    k = max(len(spatial) // 4, 1)
    assert sum(spatial[-k:]) / k < 0.5 * sum(spatial[:k]) / k, spatial
    assert min(mass) > 0.1, mass  # the masks do not collapse (mask_grad='diversity_only')
    student = work / 'student.safetensors'
    student_cfg = str(smoke / 'distill/_mask-rcnn_test-mambaout-fpn32_fixture.py')
    tested = test_tool.main([student_cfg, str(student), '--work-dir', str(tmp_path / 's')])
    assert tested['coco/bbox_mAP'] == pytest.approx(metrics['coco/bbox_mAP'])
