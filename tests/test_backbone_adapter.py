"""ZooBackbone correctness for every family: ``frozen_stages`` freezes exactly the stem and the first k
stages, frozen parts stay in eval mode through ``.train()`` and do not move under an optimiser, and a
plain ViT's pyramid is built from its last block.

The expected frozen sets are not derived from the adapter's own rule (group_matcher + feature_info):
the stem is declared here per family, and "stem + stages 0..k-1" is computed by autograd as the
parameters that feed feature tap k-1 of the timm ``features_only`` model.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn

import zoo  # noqa: F401  (registers the models)
from zoo.mm import ZooBackbone

QSD_TINY = dict(embed_dim=(16, 32, 64, 64), depths=4)
# family -> (model name, tiny kwargs, the stem's parameter-name prefixes in the features_only model)
FAMILIES: dict[str, tuple[str, dict, tuple[str, ...]]] = {
    'mambaout': ('test_mambaout', {}, ('stem.',)),
    'agent_deit': (
        'agent_deit_tiny',
        dict(embed_dim=32, depth=3, num_heads=2, img_size=64, agent_num=(4, 4, 4, 4)),
        ('model.cls_token', 'model.pos_embed', 'model.patch_embed.'),
    ),
    'agent_pvt': (
        'agent_pvt_tiny',
        dict(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1), img_size=64),
        ('model.stages.0.patch_embed.', 'model.stages.0.pos_embed'),
    ),
    'agent_swin': (
        'agent_swin_tiny',
        dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), img_size=64, window_size=16),
        ('model.patch_embed.',),
    ),
    'agent_cswin': (
        'agent_cswin_tiny',
        dict(
            embed_dim=16,
            depths=(1, 1, 1, 1),
            num_heads=(1, 2, 2, 4),
            img_size=64,
            split_size=(1, 2, 2, 2),
            agent_split=(16, 8, 4, 2),
        ),
        ('model.stage1_conv_embed.',),
    ),
    'qsd_transformer': ('qsd_transformer_15m', QSD_TINY, ('model.downsample1_1.',)),
    'meta_spikeformer': ('meta_spikeformer_15m', QSD_TINY, ('model.downsample1_1.',)),
    'mhs_vm': (
        'mhs_vm_encoder_3h',
        dict(dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), d_state=4, img_size=64),
        ('model.patch_embed.',),
    ),
    # MEDUSA: the body and the stem-level head feed every tap, so they belong to the stem
    'medusa': (
        'medusa_resnet50',
        dict(
            body_dims=(4, 4, 4, 4, 8),
            body_decoder_dims=(8, 8, 4, 4),
            body_size=32,
            global_pool='avg',
            trunk_kwargs=dict(layers=(1, 1, 1, 1)),
        ),
        ('model.body.', 'model.trunk.conv1.', 'model.trunk.bn1.', 'model.heads.0.'),
    ),
    # Any timm model works the same way (DCAL / MEDUSA rely on it): a flattened FeatureListNet with BN.
    'timm_efficientnet': ('test_efficientnet', {}, ('conv_stem.', 'bn1.')),
    'timm_convnext': ('test_convnext', {}, ('stem_0.', 'stem_1.')),
}


def _inputs(batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, 3, 64, 64)


def _taps(name: str, kwargs: dict) -> tuple[tuple[int, ...], bool]:
    """Every feature tap of the model, and whether it is flat (one stride: a pyramid is built)."""
    with torch.device('meta'):
        info = timm.create_model(name, **kwargs).feature_info
    return tuple(range(len(info))), len({d['reduction'] for d in info}) == 1


def _feeds(name: str, kwargs: dict, taps: tuple[int, ...]) -> tuple[set[str], list[set[str]]]:
    """Trainable parameters of the features_only model, and for every tap the ones autograd reaches
    from it (the parameters that feed it)."""
    torch.manual_seed(0)
    ref = timm.create_model(name, features_only=True, out_indices=taps, **kwargs).train()
    params = {n: p for n, p in ref.named_parameters() if p.requires_grad}
    outs = ref(_inputs())
    outs = list(outs.values()) if isinstance(outs, dict) else list(outs)
    assert len(outs) == len(taps)
    feeds = []
    for out in outs:
        grads = torch.autograd.grad(out.sum(), list(params.values()), allow_unused=True, retain_graph=True)
        feeds.append({n for n, g in zip(params, grads) if g is not None})
    return set(params), feeds


def _frozen(bb: ZooBackbone, trainable: set[str]) -> set[str]:
    return {n for n, p in bb.body.named_parameters() if not p.requires_grad and n in trainable}


def _backbone(name: str, kwargs: dict, frozen_stages: int, taps: tuple[int, ...], flat: bool) -> ZooBackbone:
    # A hierarchical model returns every tap (nothing pruned); a flat one always keeps all blocks.
    return ZooBackbone(
        name, frozen_stages=frozen_stages, model_kwargs=kwargs, out_indices=(0, 1, 2, 3) if flat else taps
    )


@pytest.mark.parametrize('family', list(FAMILIES))
def test_frozen_stages_freeze_exactly_what_feeds_the_frozen_taps(family: str) -> None:
    name, kwargs, stem_prefixes = FAMILIES[family]
    taps, flat = _taps(name, kwargs)
    trainable, feeds = _feeds(name, kwargs, taps)
    for a, b in zip(feeds, feeds[1:]):  # every family is a chain: a later tap depends on all earlier ones
        assert a < b, family
    stem = {n for n in trainable if n.startswith(stem_prefixes)}
    assert stem and stem < feeds[0], f'{family}: declared stem {sorted(stem)[:3]} does not feed tap 0'

    # -1 freezes nothing; 0 the stem; k the stem and stages 0..k-1 = everything feeding tap k-1.
    assert _frozen(_backbone(name, kwargs, -1, taps, flat), trainable) == set()
    for k in range(len(taps) + 1):
        got = _frozen(_backbone(name, kwargs, k, taps, flat), trainable)
        want = stem if k == 0 else feeds[k - 1]
        assert got == want, (
            f'{family} frozen_stages={k}: frozen but not expected {sorted(got - want)[:4]}, '
            f'expected but trainable {sorted(want - got)[:4]}'
        )


@pytest.mark.parametrize('family', list(FAMILIES))
def test_frozen_stages_stay_frozen_through_train_and_optimiser_steps(family: str) -> None:
    name, kwargs, _ = FAMILIES[family]
    torch.manual_seed(0)
    bb = ZooBackbone(name, frozen_stages=2, model_kwargs=kwargs, drop_path_rate=0.1)
    bb.train()
    # Parameters frozen by the model itself (QSD's unused ActLSQ placeholders) are not the adapter's.
    own = {n for n, p in ZooBackbone(name, model_kwargs=kwargs).named_parameters() if not p.requires_grad}
    by_adapter = {id(p) for n, p in bb.named_parameters() if not p.requires_grad and n not in own}
    # Frozen modules (no trainable parameter, one frozen by the adapter) and those holding a trainable one.
    frozen_mods = [
        m
        for m in bb.body.modules()
        if not any(p.requires_grad for p in m.parameters()) and any(id(p) in by_adapter for p in m.parameters())
    ]
    live_mods = [m for m in bb.body.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
    assert frozen_mods and live_mods
    # Frozen layers (BatchNorm with its running statistics, LSQ steps, drop-path) are in eval mode,
    # the rest trains.
    assert not [type(m).__name__ for m in frozen_mods if m.training]
    assert all(m.training for m in live_mods)
    frozen_bns = [m for m in frozen_mods if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in bb.modules()):
        assert frozen_bns, f'{family}: no BatchNorm in the frozen stem + 2 stages'

    def frozen_state() -> dict[str, torch.Tensor]:
        state = {n: p.detach().clone() for n, p in bb.named_parameters() if not p.requires_grad}
        for i, m in enumerate(frozen_mods):
            state.update({f'{i}.{n}': b.detach().clone() for n, b in m.named_buffers(recurse=False)})
        return state

    before = frozen_state()
    live_before = {n: p.detach().clone() for n, p in bb.named_parameters() if p.requires_grad}
    # Every parameter goes to the optimiser (as mmengine's default constructor does), with momentum
    # and weight decay: only gradients may move a parameter.
    opt = torch.optim.SGD(bb.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        sum(o.float().square().mean() for o in bb(_inputs())).backward()
        opt.step()
        bb.train()  # what a runner does every epoch
    after = frozen_state()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not changed, f'{family}: frozen tensors changed: {changed[:4]}'
    moved = [n for n, p in bb.named_parameters() if p.requires_grad and not torch.equal(p, live_before[n])]
    assert len(moved) > len(live_before) // 2, f'{family}: only {len(moved)} of {len(live_before)} trained'


def test_frozen_bn_stays_in_eval_and_norm_eval_covers_all() -> None:
    """QSD's stem BatchNorm (the issue's example) stays in eval after .train(); norm_eval puts every BN there."""
    bb = ZooBackbone('qsd_transformer_15m', frozen_stages=0, model_kwargs=QSD_TINY).train()
    stem_bn = bb.body.model.downsample1_1.encode_bn
    assert not stem_bn.weight.requires_grad and not stem_bn.training
    assert bb.body.model.ConvBlock1_1[0].bn1.training
    bb.eval().train()
    assert not stem_bn.training and bb.body.model.ConvBlock1_1[0].bn1.training
    every = ZooBackbone('qsd_transformer_15m', norm_eval=True, model_kwargs=QSD_TINY).train()
    bns = [m for m in every.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)


def test_frozen_stages_out_of_range_names_the_argument() -> None:
    with pytest.raises(ValueError, match=r'frozen_stages=5 must be in -1\.\.4'):
        ZooBackbone('test_mambaout', frozen_stages=5)


def test_flat_vit_pyramid_is_built_from_the_last_block(tmp_path: Path) -> None:
    """timm's ViT lists only its last three blocks for features_only; the pyramid still starts from
    the last of all blocks."""
    torch.manual_seed(0)
    ref = timm.create_model('test_vit', dynamic_img_size=True).eval()
    path = tmp_path / 'vit.pth'
    torch.save(ref.state_dict(), path)
    bb = ZooBackbone('test_vit', out_indices=(2,), pretrained=str(path), model_kwargs=dict(dynamic_img_size=True))
    assert bb.num_stages == len(ref.blocks) and bb.out_strides == [16]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        (got,) = bb.eval()(x)
        (want,) = ref.forward_intermediates(x, indices=[len(ref.blocks) - 1], intermediates_only=True)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize('family', [f for f in FAMILIES if not f.startswith('timm_')])
def test_layer_decay_groups_follow_execution_order(family: str) -> None:
    """timm's layer-wise lr decay runs on the zoo's group_matcher, and the lr scale never decreases along
    the order in which the forward pass first uses each layer (a downsampling between two stages is
    scaled after the earlier stage)."""
    from timm.optim import param_groups_layer_decay

    name, kwargs, _ = FAMILIES[family]
    model = timm.create_model(name, num_classes=5, **kwargs).eval()
    scale = {id(p): g['lr_scale'] for g in param_groups_layer_decay(model, layer_decay=0.5) for p in g['params']}
    # timm groups only trainable parameters (QSD's frozen, unused ActLSQ placeholders are left out)
    assert len(scale) == sum(1 for p in model.parameters() if p.requires_grad)
    order: list[tuple[str, float]] = []

    def record(mod: nn.Module, _args: object, _name: str) -> None:
        if all(n != _name for n, _ in order):
            own = [scale[id(p)] for p in mod.parameters(recurse=False) if p.requires_grad]
            order.append((_name, max(own)))

    handles = [
        m.register_forward_pre_hook(functools.partial(record, _name=n))
        for n, m in model.named_modules()
        if any(p.requires_grad for p in m.parameters(recurse=False))
    ]
    with torch.no_grad():
        model(_inputs(1))
    for h in handles:
        h.remove()
    drops = [(a, b) for (a, sa), (b, sb) in zip(order, order[1:]) if sb < sa]
    assert not drops, f'{family}: lr scale falls from {drops[0][0]} to {drops[0][1]}'
    assert len({s for _, s in order}) > len(model.feature_info), f'{family}: too few layer groups'
