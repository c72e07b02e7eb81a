"""Every distillation config under configs/distill and configs/smoke/distill builds its distiller, or MasKD's
first-stage learner (teacher weights and the student's ImageNet weights switched off: no download): recorders,
connectors and loss mappings resolve against the real student and teacher models."""

from __future__ import annotations

import pytest
from conftest import ROOT

CONFIGS = sorted(
    p for d in ('configs/distill', 'configs/smoke/distill') for p in (ROOT / d).rglob('*.py') if not p.name[0] == '_'
)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: str(p.relative_to(ROOT / 'configs')))
def test_distill_config_builds(path) -> None:
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import zoo.distill  # noqa: F401
    from zoo.registry import MODELS

    cfg = Config.fromfile(str(path))
    model_cfg = cfg.model.to_dict()
    if model_cfg['type'] not in ('SingleTeacherDistiller', 'MasKDMaskLearner'):  # the student-alone baselines
        return
    if 'custom_imports' in cfg:
        import importlib

        for name in cfg.custom_imports['imports']:
            importlib.import_module(name)
    if model_cfg['type'] == 'MasKDMaskLearner':  # MasKD's first stage: the teacher and its mask modules
        model_cfg['checkpoint'] = None
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'zoo')):
            model = MODELS.build(model_cfg)
        assert len(model.mask_modules) == len(model_cfg['channels'])
        return
    model_cfg['teacher_ckpt'] = None
    if 'cfg_path' in model_cfg['architecture']:
        model_cfg['architecture']['pretrained'] = False
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'zoo')):
        model = MODELS.build(model_cfg)
    assert len(model.distill_losses) == len(model.loss_forward_mappings) > 0
