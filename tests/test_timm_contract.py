"""timm's build contract for every zoo model (issue #17, items 1 and 4).

* ``device`` / ``dtype``: ``timm.create_model(name, device='meta')`` allocates nothing; ``to_empty`` then
  loading a normal build's state dict (and timm's ``reinit_non_persistent_buffers`` for the computed index
  buffers) gives the same buffers and bit-identical logits; ``dtype=torch.bfloat16`` builds every floating
  parameter and buffer in bfloat16 and runs (initialised in bfloat16 for at least one model per family).
* Gradients: one plain training step (``train()``, forward, cross-entropy, backward) gives every trainable
  parameter a gradient. The only exception is listed in ``NO_FORWARD_GRAD`` with its reason, and checked on
  the route that does use it.

Each model is built normally once (a module-scoped fixture, so the whole file stays fast); the other fp32
copies come from the meta-device route, which is itself under test.

Every model keeps its registered architecture (widths, depths, attention kinds); only the input is small:
the smallest side each family accepts, with ``img_size`` set to it where the model sizes buffers or
position embeddings from it, and a 5-class head.
"""

from __future__ import annotations

import itertools

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models._manipulate import reinit_non_persistent_buffers

import zoo  # noqa: F401  (registers the models)
import zoo.layers as zl
from zoo.models import family_of, list_zoo_models

MODELS = list_zoo_models()
NUM_CLASSES = 5

# family -> (input side, extra build kwargs). The side is the family's smallest: its total stride (32 for
# the hierarchical models, 16 for ViTs with 16 px patches and for the spiking models), with exceptions:
# - agent_cswin: agent attention in stripes needs maps that divide by the agent split; at 64 px the split
#   of every stage is its whole map (global agent attention, as the registered variants at their sizes);
# - medusa: the body view is 32 px (body_size, a multiple of 16); medusa_resnet50's 'paper' classifier
#   pools 7x7 windows of the final map, so that model needs 7 * 32 = 224 px (see _side).
SMALL: dict[str, tuple[int, dict]] = {
    'mambaout': (32, {}),
    'agent_deit': (32, dict(img_size=32)),
    'agent_pvt': (32, dict(img_size=32)),
    'agent_swin': (32, dict(img_size=32)),
    'agent_cswin': (64, dict(img_size=64, agent_split=(16, 8, 4, 2))),
    'dcal': (32, dict(img_size=32)),
    'qsd_transformer': (16, dict(img_size=16)),
    'mhs_vm': (32, dict(img_size=32)),
    'medusa': (32, dict(img_size=32, body_size=32)),
}

# Models that test_bfloat16_build initialises in bfloat16 (the others are built in bfloat16 on the meta device
# and loaded): the smallest of every family, plus the variants with code of their own (Meta-SpikeFormer's
# full-precision convs and LIF neurons; medusa_resnet50's probed string taps and 'paper' classifier).
BF16_INIT = (
    'mambaout_femto',
    'agent_deit_tiny',
    'agent_pvt_tiny',
    'agent_swin_tiny',
    'agent_cswin_tiny',
    'dcal_deit_tiny_patch16_448',
    'qsd_transformer_15m',
    'meta_spikeformer_15m',
    'mhs_vm_encoder_3h',
    'medusa_mambaout_femto',
    'medusa_resnet50',
)

# Parameters that one plain forward pass does not use, each with its reason (prefix of the model name ->
# parameter names):
# - DCAL's learned uncertainty weights of the SA / GLCA / PWCA losses (Kendall et al.) enter only the
#   training loss of forward_train(x, target); test_training_step_reaches_every_parameter checks that this
#   route gives them (and every other parameter) a gradient.
NO_FORWARD_GRAD: dict[str, tuple[str, ...]] = {'dcal_': ('dcal_loss.w',)}


def _side(name: str) -> int:
    return 224 if name == 'medusa_resnet50' else SMALL[family_of(name)][0]


def _build(name: str, **kwargs) -> torch.nn.Module:
    side = _side(name)
    small = dict(SMALL[family_of(name)][1])
    if 'img_size' in small:
        small['img_size'] = side
    return timm.create_model(name, num_classes=NUM_CLASSES, **small, **kwargs)


def _input(name: str, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, _side(name), _side(name), generator=g)


def _tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(itertools.chain(model.named_parameters(), model.named_buffers()))


def test_every_family_has_a_small_input() -> None:
    assert {family_of(n) for n in MODELS} <= set(SMALL)


@pytest.fixture(scope='module', params=MODELS)
def reference(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    """``(name, model)``: one normal fp32 build per model, in eval mode, shared by the tests below (a
    module-scoped parameter: pytest runs every test of one model before building the next)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = _build(request.param).eval()
    finally:
        torch.set_num_threads(threads)
    return request.param, model


def _meta_then_load(name: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The meta-device route: build without memory, materialise on the CPU, load ``state``, refill the
    computed (non-persistent) buffers: index tables, scan-route orders."""
    model = _build(name, device='meta')
    on_cpu = [n for n, t in _tensors(model) if not t.is_meta]
    assert not on_cpu, f'{name}: allocated on a meta build: {on_cpu[:5]}'
    model.to_empty(device='cpu')
    model.load_state_dict(state, strict=True)
    reinit_non_persistent_buffers(model)
    return model


def test_meta_build_to_empty_and_load_gives_equal_logits(reference, one_thread) -> None:
    name, ref = reference
    model = _meta_then_load(name, ref.state_dict()).eval()
    built = dict(_tensors(model))
    assert built.keys() == dict(_tensors(ref)).keys()
    for n, t in _tensors(ref):
        assert t.dtype == built[n].dtype and torch.equal(t, built[n]), f'{name}: {n} differs after load'
    x = _input(name)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x)), f'{name}: logits differ'


def test_bfloat16_build(reference, one_thread) -> None:
    """The models of BF16_INIT are built and initialised in bfloat16; the other variants (the same classes,
    wider or deeper) are built in bfloat16 on the meta device and loaded, which checks the same placement of
    every tensor without a slow bfloat16 initialisation of the big variants on the CPU."""
    name, ref = reference
    torch.manual_seed(0)
    if name in BF16_INIT:
        model = _build(name, dtype=torch.bfloat16).eval()
    else:
        model = _build(name, device='meta', dtype=torch.bfloat16)
        model.to_empty(device='cpu')
        model.load_state_dict(ref.state_dict(), strict=True)  # copied into the bfloat16 tensors
        reinit_non_persistent_buffers(model)
        model.eval()
    floats = [(n, t) for n, t in _tensors(model) if t.is_floating_point()]
    assert floats, name
    wrong = [f'{n}: {t.dtype}' for n, t in floats if t.dtype != torch.bfloat16]
    assert not wrong, f'{name}: not bfloat16: {wrong[:5]}'
    with torch.no_grad():
        out = model(_input(name).bfloat16())
    assert out.shape == (1, NUM_CLASSES) and out.dtype == torch.bfloat16
    assert torch.isfinite(out).all(), name


def test_every_family_initialises_in_bfloat16() -> None:
    """test_bfloat16_build initialises at least one model of every family in bfloat16."""
    assert set(BF16_INIT) <= set(MODELS)
    assert {family_of(n) for n in BF16_INIT} == {family_of(n) for n in MODELS}


def _missing_grads(model: torch.nn.Module, allowed: tuple[str, ...] = ()) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None and n not in allowed]


def test_training_step_reaches_every_parameter(reference, one_thread) -> None:
    name, ref = reference
    # a fresh model has no frozen parameters: a tensor nothing trains is a buffer
    frozen = [n for n, p in ref.named_parameters() if not p.requires_grad]
    assert not frozen, f'{name}: frozen parameters in a fresh build: {frozen[:5]}'
    x = _input(name, batch=2)  # two samples: BatchNorm in training mode needs more than one value
    target = torch.tensor([1, 3])

    torch.manual_seed(0)
    model = _meta_then_load(name, ref.state_dict()).train()  # a copy of the reference (no second init)
    F.cross_entropy(model(x).float(), target).backward()
    allowed = next((v for k, v in NO_FORWARD_GRAD.items() if name.startswith(k)), ())
    missing = _missing_grads(model, allowed)
    assert not missing, f'{name}: {len(missing)} parameters get no gradient: {missing[:8]}'
    # every exception names a real parameter, which forward() really leaves unused ...
    params = dict(model.named_parameters())
    for n in allowed:
        assert n in params and params[n].grad is None, f'{name}: stale NO_FORWARD_GRAD entry {n}'
    # ... and which the model's own training loss does reach (DCAL: forward_train's uncertainty-weighted loss)
    if allowed:
        model = _meta_then_load(name, ref.state_dict()).train()
        model.forward_train(x, target)['loss'].backward()
        missing = _missing_grads(model)
        assert not missing, f'{name}: forward_train gives no gradient to {missing[:8]}'


# zoo.layers: every block that creates parameters or buffers takes device= and dtype= (timm's ``dd``).
# Parameter-free blocks (neurons, the route fusion) take none, as timm's own (DropPath, activations).
PARAMETER_FREE = {'MultiSpike', 'MultiStepLIF', 'ScanRouteAttention'}
LAYER_BUILDS = {
    'AgentAttentionCore': lambda **dd: zl.AgentAttentionCore(2, 4, (4, 4), num_prefix_tokens=1, **dd),
    'AgentAttention': lambda **dd: zl.AgentAttention(16, 2, agent_num=4, window_size=(4, 4), separate_q=True, **dd),
    'GLCABlock': lambda **dd: zl.GLCABlock(16, 2, **dd),
    'FusedMlp': lambda **dd: zl.FusedMlp(8, 16, **dd),
    'SmallGridDepthwiseConv2d': lambda **dd: zl.SmallGridDepthwiseConv2d(8, 8, 7, padding=3, groups=8, **dd),
    'UNetBody': lambda **dd: zl.UNetBody(1, (4, 4, 4, 4, 8), (8, 8, 4, 4), **dd),
    'GateHead': lambda **dd: zl.GateHead(8, **dd),
    'ScanRoutes': lambda **dd: zl.ScanRoutes('S', (3, 4), **dd),
    'MambaEngine': lambda **dd: zl.MambaEngine(8, 4, **dd),
    'ScanHead': lambda **dd: zl.ScanHead(8, 4, 'X', grid_size=(4, 4), **dd),
    'MultiHeadScan': lambda **dd: zl.MultiHeadScan(16, 4, 4, grid_size=(4, 4), **dd),
    'ActLSQ': lambda **dd: zl.ActLSQ(8, **dd),
    'Conv2dLSQ': lambda **dd: zl.Conv2dLSQ(4, 8, 3, **dd),
    'Conv1dLSQ': lambda **dd: zl.Conv1dLSQ(4, 8, 1, **dd),
    'LinearLSQ': lambda **dd: zl.LinearLSQ(8, 3, **dd),
    'BNAndPad': lambda **dd: zl.BNAndPad(1, 8, **dd),
    'RepConv': lambda **dd: zl.RepConv(8, 8, **dd),
}


def test_every_layer_module_is_covered() -> None:
    modules = {
        n for n in zl.__all__ if isinstance(getattr(zl, n), type) and issubclass(getattr(zl, n), torch.nn.Module)
    }
    assert modules == set(LAYER_BUILDS) | PARAMETER_FREE


@pytest.mark.parametrize('layer', sorted(LAYER_BUILDS))
def test_layer_takes_device_and_dtype(layer: str) -> None:
    torch.manual_seed(0)
    ref = LAYER_BUILDS[layer]()
    meta = LAYER_BUILDS[layer](device='meta', dtype=torch.bfloat16)
    assert dict(_tensors(meta)).keys() == dict(_tensors(ref)).keys() and _tensors(ref), layer
    for n, t in _tensors(meta):
        assert t.is_meta, f'{layer}: {n} allocated'
        assert t.dtype == (torch.bfloat16 if t.is_floating_point() else dict(_tensors(ref))[n].dtype), f'{layer}: {n}'
    meta.to_empty(device='cpu')
    meta.load_state_dict(ref.to(torch.bfloat16).state_dict())
    reinit_non_persistent_buffers(meta)
    for n, t in _tensors(ref):
        assert torch.equal(t, dict(_tensors(meta))[n]), f'{layer}: {n} differs after to_empty + load'
