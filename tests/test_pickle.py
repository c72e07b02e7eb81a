"""Every zoo model pickles, deep-copies without sharing state with the original, and works under
mmengine's EMA (``ExponentialMovingAverage``, what ``EMAHook`` builds: a ``deepcopy`` of the model).

Every model of ``list_zoo_models()`` is built small: its family's tiny widths and depths override the
variant's (the variant's other settings, e.g. attention types or ``kd_head``, stay), on 64 px inputs.
A family without an entry here is built at full size (slow, but still tested).
"""

from __future__ import annotations

import copy
import enum
import functools
import pickle
import re
import types

import pytest
import timm
import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage

import zoo  # noqa: F401  (registers the models)
from zoo.mm import ZooBackbone
from zoo.models import FAMILIES, family_of, list_zoo_models

QSD_TINY = dict(embed_dim=(16, 32, 64, 64), depths=4)
SIZE = 64
FAMILY_TINY: dict[str, dict] = {
    'mambaout': dict(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)),
    'agent_deit': dict(embed_dim=32, depth=2, num_heads=2, img_size=SIZE, agent_num=(4, 4, 4, 4)),
    'agent_pvt': dict(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1), img_size=SIZE),
    'agent_swin': dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), img_size=SIZE, window_size=16),
    'agent_cswin': dict(
        embed_dim=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 2, 4),
        img_size=SIZE,
        split_size=(1, 2, 2, 2),
        agent_split=(16, 8, 4, 2),
    ),
    'dcal': dict(img_size=SIZE, embed_dim=32, depth=3, num_heads=2),
    'qsd_transformer': dict(QSD_TINY, T=2),
    'mhs_vm': dict(dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), d_state=4, img_size=SIZE),
    # a narrow body on a 32 px view; the trunks stay full size (cheap at 64 px), pooled as timm does
    'medusa': dict(body_dims=(4, 4, 4, 4, 8), body_decoder_dims=(8, 8, 4, 4), body_size=32, global_pool='avg'),
}
MODELS = list_zoo_models()

# Objects that deepcopy shares by design (immutable, or code): never reported as shared state.
_ATOMS = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    type,
    types.ModuleType,
    types.BuiltinFunctionType,
    torch.dtype,
    torch.device,
    torch.layout,
    torch.memory_format,
    enum.Enum,
    re.Pattern,
    range,
)


def _state_objects(root: object) -> tuple[dict[int, str], set[int]]:
    """Every mutable object reachable from ``root`` (id -> path) through module attributes, containers,
    closures, partials and bound methods, and the storages of its real tensors. Module-level functions
    (no closure) and classes are code, not state, and are skipped."""
    seen: dict[int, str] = {}
    storages: set[int] = set()
    stack: list[tuple[object, str]] = [(root, 'model')]
    while stack:
        obj, path = stack.pop()
        if isinstance(obj, _ATOMS) or id(obj) in seen:
            continue
        if isinstance(obj, (tuple, frozenset)):  # immutable: deepcopy may keep it; its items may not be
            stack += [(v, f'{path}[{i}]') for i, v in enumerate(obj)]
            continue
        if isinstance(obj, types.FunctionType) and obj.__closure__ is None:
            continue
        seen[id(obj)] = path
        if isinstance(obj, torch.Tensor):
            if obj.device.type != 'meta' and obj.numel():
                storages.add(obj.untyped_storage().data_ptr())
            continue
        if isinstance(obj, types.FunctionType):
            stack += [(c.cell_contents, f'{path}.<closure>') for c in obj.__closure__]
        elif isinstance(obj, types.MethodType):
            stack.append((obj.__self__, f'{path}.__self__'))
        elif isinstance(obj, functools.partial):
            stack += [(obj.func, f'{path}.func'), (obj.args, f'{path}.args'), (obj.keywords, f'{path}.keywords')]
        elif isinstance(obj, dict):
            stack += [(v, f'{path}[{k!r}]') for k, v in obj.items()]
        elif isinstance(obj, (list, set)):
            stack += [(v, f'{path}[{i}]') for i, v in enumerate(obj)]
        elif hasattr(obj, '__dict__'):
            stack += [(v, f'{path}.{k}') for k, v in vars(obj).items()]
    return seen, storages


def _assert_independent(copied: object, original: object) -> None:
    mine, my_storage = _state_objects(copied)
    theirs, their_storage = _state_objects(original)
    shared = [path for i, path in mine.items() if i in theirs]
    assert not shared, f'the copy shares {len(shared)} objects with the original, e.g. {sorted(shared)[:3]}'
    assert not my_storage & their_storage, 'the copy shares tensor storage with the original'


def _structure(model: nn.Module) -> list[tuple]:
    return [(n, type(m).__name__) for n, m in model.named_modules()] + [
        (k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()
    ]


def _build(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model (5 classes) and a seeded batch of 2 inputs at its size."""
    kwargs = FAMILY_TINY.get(family_of(name))
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, **(kwargs or {}))
    size = (3, SIZE, SIZE) if kwargs is not None else model.pretrained_cfg['input_size']
    torch.manual_seed(1)
    return model, torch.randn(2, *size)


def _train_step(model: nn.Module, x: torch.Tensor, target: tuple[int, int] = (1, 3), lr: float = 0.05) -> None:
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), torch.tensor(target)).backward()
    opt.step()


def _eval(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_every_family_has_tiny_settings() -> None:
    missing = {family_of(n) for n in MODELS} - set(FAMILY_TINY)
    assert not missing, f'add tiny settings for {sorted(missing)} to FAMILY_TINY (else built at full size)'
    assert set(FAMILY_TINY) <= set(FAMILIES)


@pytest.mark.parametrize('name', MODELS)
def test_pickle_and_deepcopy_compute_the_same_and_share_nothing(name: str) -> None:
    model, x = _build(name)
    _train_step(model, x)  # LSQ steps initialised, BN statistics moved: state beyond the constructor
    want = _eval(model, x)
    for way, other in (('pickle', pickle.loads(pickle.dumps(model))), ('deepcopy', copy.deepcopy(model))):
        assert type(other) is type(model) and _structure(other) == _structure(model), way
        assert other.pretrained_cfg == model.pretrained_cfg, way
        torch.testing.assert_close(_eval(other, x), want, rtol=0, atol=0, msg=way)
        _assert_independent(other, model)
    # Re-heading and training the copy leaves the original untouched.
    copied = copy.deepcopy(model)
    copied.reset_classifier(3)
    _train_step(copied, x, target=(1, 2), lr=0.5)
    assert _eval(copied, x).shape == (2, 3)
    torch.testing.assert_close(_eval(model, x), want, rtol=0, atol=0)
    assert model.get_classifier().out_features == 5


@pytest.mark.parametrize('name', MODELS)
def test_mmengine_ema_averages_an_independent_copy(name: str) -> None:
    model, x = _build(name)
    ema = ExponentialMovingAverage(model, momentum=0.25)
    _assert_independent(ema.module, model)
    ema.update_parameters(model)  # step 0: copies the weights
    old = {k: p.detach().clone() for k, p in model.named_parameters()}
    _train_step(model, x)
    new = {k: p.detach() for k, p in model.named_parameters()}
    assert any(not torch.equal(old[k], new[k]) for k in old), f'{name}: the training step moved nothing'
    ema.update_parameters(model)
    for k, p in ema.module.named_parameters():  # Xema = (1 - momentum) Xema + momentum X
        torch.testing.assert_close(p, 0.75 * old[k] + 0.25 * new[k], rtol=1e-5, atol=1e-6, msg=k)
    for (k, b), src in zip(ema.module.named_buffers(), model.buffers()):
        assert torch.equal(b, src), f'{name}: EMA buffer {k} not synced'
    out = _eval(ema, x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_backbone_adapter_deepcopy_keeps_its_frozen_stages() -> None:
    """EMAHook deep-copies a whole detector: the copied ZooBackbone freezes (and keeps in eval) its
    own modules, not the original's."""
    bb = ZooBackbone('qsd_transformer_15m', frozen_stages=1, model_kwargs=QSD_TINY)
    for twin in (copy.deepcopy(bb), pickle.loads(pickle.dumps(bb))):
        _assert_independent(twin, bb)
        twin.train()
        stem = twin.body.model.downsample1_1
        assert not stem.training and not stem.encode_bn.weight.requires_grad
        assert twin.body.model.block3.training
        x = torch.randn(1, 3, SIZE, SIZE)
        torch.testing.assert_close(_eval(twin, x), _eval(bb, x), rtol=0, atol=0)
