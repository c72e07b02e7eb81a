"""The Agent-Attention ImageNet-1k configs (configs/classification/agent_attention/agent_*_in1k.py), built
with mmengine: each variant inherits its sub-family base and gets the official per-variant values.

The table holds, per variant: the sub-family, drop path rate, per-GPU train batch, image size, total
epochs (cooldown included), gradient-clipping max norm (None: no clipping), weight decay and whether a
model EMA is kept. The values are LeapLabTHU/Agent-Attention's agent_transformer/cfgs/<variant>.yaml on
top of its config.py defaults (each leaf's header names its yaml), as the configs gave them before they
were split into sub-family bases.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / 'configs/classification/agent_attention'

# leaf: (sub-family, drop_path_rate, train batch, img_size, max_epochs, clip max_norm, weight decay, EMA)
TABLE = {
    'agent_deit_tiny_in1k': ('deit', 0.0, 512, 224, 300, 5.0, 0.05, False),
    'agent_deit_small_in1k': ('deit', 0.1, 128, 224, 300, 5.0, 0.05, False),
    'agent_deit_small_448_in1k': ('deit', 0.1, 64, 448, 300, 5.0, 0.05, False),
    'agent_deit_base_in1k': ('deit', 0.3, 128, 224, 300, 5.0, 0.05, False),
    'agent_pvt_tiny_in1k': ('pvt', 0.1, 128, 224, 310, None, 0.05, False),
    'agent_pvt_small_in1k': ('pvt', 0.1, 128, 224, 310, None, 0.05, False),
    'agent_pvt_medium_in1k': ('pvt', 0.3, 128, 224, 310, 1.0, 0.05, False),
    'agent_pvt_medium_256_in1k': ('pvt', 0.3, 64, 256, 310, 1.0, 0.05, False),
    'agent_pvt_large_in1k': ('pvt', 0.3, 64, 224, 310, 1.0, 0.05, False),
    'agent_swin_tiny_in1k': ('swin', 0.2, 128, 224, 300, 5.0, 0.05, False),
    'agent_swin_small_in1k': ('swin', 0.3, 128, 224, 300, 5.0, 0.05, False),
    'agent_swin_small_288_in1k': ('swin', 0.3, 64, 288, 300, 5.0, 0.05, False),
    'agent_swin_base_in1k': ('swin', 0.5, 64, 224, 300, 5.0, 0.05, False),
    'agent_swin_base_384_in1k': ('swin', 0.5, 32, 384, 30, 5.0, 1e-08, False),
    'agent_cswin_tiny_in1k': ('cswin', 0.2, 128, 224, 310, None, 0.05, True),
    'agent_cswin_small_in1k': ('cswin', 0.4, 128, 224, 310, None, 0.05, True),
    'agent_cswin_base_in1k': ('cswin', 0.5, 64, 224, 310, None, 0.1, True),
    'agent_cswin_base_384_in1k': ('cswin', 0.7, 32, 384, 30, None, 1e-08, True),
}
# what a 224 variant may set itself; the schedule comes from its sub-family base
PLAIN_KEYS = {'model', 'train_dataloader', 'optim_wrapper'}
RESOLUTION_KEYS = {'img_size', 'train_pipeline', 'val_pipeline', 'val_dataloader', 'test_dataloader'}
FINETUNE_KEYS = {'lr', 'warmup_epochs', 'max_epochs', 'param_scheduler', 'train_cfg'}
FINETUNES = {'agent_swin_base_384_in1k', 'agent_cswin_base_384_in1k'}


def _assigned(path: Path) -> dict[str, ast.expr]:
    """Top-level names a config file assigns, with their value expressions."""
    tree = ast.parse(path.read_text())
    return {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def _bases(path: Path) -> list[str]:
    return ast.literal_eval(_assigned(path)['_base_'])


def test_table_lists_every_imagenet_leaf() -> None:
    assert sorted(p.stem for p in CONFIGS.glob('agent_*_in1k.py')) == sorted(TABLE)


@pytest.mark.parametrize('sub', sorted({row[0] for row in TABLE.values()}))
def test_sub_family_base_inherits_the_shared_recipe(sub: str) -> None:
    assert _bases(CONFIGS / f'_agent_{sub}_in1k.py') == ['./_agent_in1k.py']


@pytest.mark.parametrize('leaf', sorted(TABLE))
def test_agent_leaf_config(leaf: str) -> None:
    sub, drop_path, batch, img_size, max_epochs, clip, weight_decay, ema = TABLE[leaf]
    path = CONFIGS / f'{leaf}.py'
    assert _bases(path) == [f'./_agent_{sub}_in1k.py']

    own = set(_assigned(path)) - {'_base_'}
    allowed = (
        PLAIN_KEYS | (RESOLUTION_KEYS if img_size != 224 else set()) | (FINETUNE_KEYS if leaf in FINETUNES else set())
    )
    assert own <= allowed, f'{leaf} sets {sorted(own - allowed)}, which its sub-family base should hold'

    cfg = Config.fromfile(str(path))
    model_name = leaf.removesuffix('_in1k')
    assert cfg.model.type == 'TimmClassifier'
    assert cfg.model.model_name == model_name
    registered = (ROOT / f'zoo/models/agent_{sub}.py').read_text()
    assert re.search(rf'@register_model\ndef {model_name}\(', registered), f'{model_name} is not a zoo model'
    assert cfg.model.model_kwargs.num_classes == 1000
    assert cfg.model.model_kwargs.drop_path_rate == drop_path
    assert cfg.model.label_smoothing == 0.1

    assert cfg.train_dataloader.batch_size == batch
    assert cfg.img_size == img_size
    train_pipe, val_pipe = cfg.train_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline
    # timm's create_transform, as the official data/build.py: RandAugment, random erasing, bicubic
    (train,) = train_pipe
    assert train.type == 'TimmTransform' and train.is_training and train.input_size == img_size
    assert train.auto_augment == 'rand-m9-mstd0.5-inc1' and train.re_prob == 0.25 and train.interpolation == 'bicubic'
    assert val_pipe == cfg.val_dataloader.dataset.pipeline
    (val,) = val_pipe
    assert val.type == 'TimmTransform' and not val.is_training and val.input_size == img_size
    # TEST.CROP False (the Swin 288 / 384 yamls): a plain resize; otherwise resize to 256/224 of the size and crop
    assert val.crop_pct == (1.0 if leaf in ('agent_swin_small_288_in1k', 'agent_swin_base_384_in1k') else 0.875)
    assert cfg.model.mixup.mixup_alpha == 0.8 and cfg.model.mixup.cutmix_alpha == 1.0

    assert cfg.train_cfg.max_epochs == max_epochs
    assert cfg.param_scheduler[-1].type == 'CosineAnnealingLR'
    assert cfg.param_scheduler[-1].end <= max_epochs
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.lr == cfg.lr
    assert optimizer.weight_decay == weight_decay
    assert (cfg.optim_wrapper.clip_grad and cfg.optim_wrapper.clip_grad.max_norm) == clip
    hooks = [h.type for h in cfg.custom_hooks]
    assert ('ModelEMAHook' in hooks) == ema


@pytest.mark.parametrize(
    'leaf, exempt_suffix',
    [
        ('agent_deit_tiny_in1k', ('pos_embed', 'cls_token')),
        ('agent_swin_tiny_in1k', ('relative_position_bias_table',)),
        ('agent_pvt_tiny_in1k', ()),  # the official PVT training decays its position embeddings
    ],
)
def test_weight_decay_groups_follow_no_weight_decay(leaf: str, exempt_suffix: tuple[str, ...]) -> None:
    """The optimizer the recipe builds (through mmengine, as tools/train.py does) exempts from weight decay the
    1-D parameters, the biases and the model's no_weight_decay() names, and decays everything else."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import zoo.engine  # noqa: F401  (registers TimmClassifier and the constructor)
    from zoo.registry import MODELS

    cfg = Config.fromfile(str(CONFIGS / f'{leaf}.py'))
    init_default_scope('zoo')
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert set(decay) == {id(p) for p in named.values()}, 'every parameter is in exactly one group'
    no_decay = {n for n, p in named.items() if decay[id(p)] == 0.0}
    exempt = {n for n in named if n.endswith(exempt_suffix)} if exempt_suffix else set()
    assert all(named[n].ndim > 1 for n in exempt) and len(exempt) == len(exempt_suffix) * (
        1 if 'deit' in leaf else len(exempt)
    )
    expected = {n for n, p in named.items() if p.ndim <= 1 or n.endswith('.bias')} | exempt
    assert no_decay == expected
    assert {decay[id(p)] for n, p in named.items() if n not in expected} == {cfg.optim_wrapper.optimizer.weight_decay}


def test_layer_decay_scales_each_block_group_lr() -> None:
    """``paramwise_cfg=dict(layer_decay=d)``: timm's param_groups_layer_decay from the model's group_matcher; the
    head keeps the base lr, each block below it d times less, the stem d**(depth + 1) times less."""
    import timm
    from mmengine.registry import init_default_scope

    from zoo.engine.optim import TimmParamGroupsConstructor

    init_default_scope('zoo')
    model = timm.create_model('agent_deit_tiny', img_size=32, depth=3, num_classes=5)
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
    wrapper = TimmParamGroupsConstructor(cfg, dict(layer_decay=0.5))(model)
    lr_of = {id(p): g['lr'] for g in wrapper.optimizer.param_groups for p in g['params']}
    named = dict(model.named_parameters())
    assert lr_of[id(named['head.weight'])] == pytest.approx(1e-3)
    assert lr_of[id(named['blocks.2.mlp.fc1.weight'])] == pytest.approx(1e-3 * 0.5)
    assert lr_of[id(named['blocks.0.mlp.fc1.weight'])] == pytest.approx(1e-3 * 0.5**3)
    assert lr_of[id(named['patch_embed.proj.weight'])] == pytest.approx(1e-3 * 0.5**4)
    with pytest.raises(KeyError, match='unknown key'):
        TimmParamGroupsConstructor(cfg, dict(layer_decy=0.5))
