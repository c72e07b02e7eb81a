"""FX symbolic tracing and TorchScript for every zoo model (issue #17, items 2 and 3).

* FX: torch.fx with timm's notrace modules (leaves) and functions, the registry timm's helpers hand torchvision's
  ``create_feature_extractor``, traces every model in eval and train mode: the eval graph gives the eager logits,
  the train graph backpropagates to every parameter a plain forward uses (test_timm_contract's
  ``NO_FORWARD_GRAD`` apart). ``NOT_TRACEABLE`` lists the exceptions, which raise a one-line error while tracing.
* FX features: ``features_only=True, feature_cls='fx'`` (timm's FeatureGraphNet over torchvision's extractor)
  returns the maps of the default route (``forward_intermediates``); ``NO_FX_FEATURES`` lists the families that
  refuse it.
* TorchScript: ``torch.jit.script(model.eval())`` gives the eager logits for the models that script (timm's
  MambaOut); ``NOT_SCRIPTABLE`` lists the other families with the reason, and the test checks that they really
  do not script.

Inputs, builds and the 5-class heads are test_timm_contract's (the smallest input each family accepts); each model
is built once for the whole file.
"""

from __future__ import annotations

import pytest
import torch
from test_timm_contract import BF16_INIT, MODELS, NO_FORWARD_GRAD, _build, _input
from timm.models._features_fx import get_notrace_functions, get_notrace_modules

import zoo  # noqa: F401  (registers the models)
from zoo.models import family_of

# Models FX cannot trace, with the reason (tracing raises a one-line error instead of a wrong graph):
NOT_TRACEABLE: dict[str, str] = {
    'medusa_resnet50': "its first gate acts on the stem's max-pool, an nn.MaxPool2d: FX keeps torch.nn modules as "
    'leaves and does not run their forward hooks, where MEDUSA applies its gates',
}
# Families whose features_only=True, feature_cls='fx' route is refused (the default 'getter' route works):
NO_FX_FEATURES: dict[str, str] = {
    'dcal': 'the GLCA inference route runs the SA blocks through block_forward (it also returns the attention maps '
    "for rollout), so no graph node is a block's output",
}
# Families TorchScript cannot compile, with the reason (the first construct it stops at, and what else would need
# rewriting). torch.export (tools/export.py) is the supported deployment path; TorchScript is deprecated in torch 2.x.
NOT_SCRIPTABLE: dict[str, str] = {
    'agent_deit': 'AgentAttention picks modules and paths from Python values at run time: separate q / kv or fused '
    'qkv Linear layers (attributes that exist only in one layout), bias resizing only when the grid differs '
    "(tuple comparisons of sizes), SDPA or CPU matmuls from timm's use_fused_attn() and the device type",
    'agent_pvt': 'AgentAttention (see agent_deit)',
    'agent_swin': 'AgentAttention (see agent_deit)',
    'agent_cswin': 'AgentAttention (see agent_deit), and stripe windows sized by tuple arithmetic on the map size',
    'dcal': 'the DCAL route hands blocks (nn.Module values) to functions (block_forward, glca_forward, '
    'multi_head_attention) and branches on torch.is_grad_enabled() and the compile state; TorchScript functions '
    'take no module arguments',
    'qsd_transformer': 'the spiking neurons are torch.autograd.Function subclasses (surrogate gradients), which '
    'TorchScript does not compile, and the LSQ layers set their step on the first training batch (.item())',
    'mhs_vm': 'the scan routes are cached per grid and device in a Python dict, and the chunked selective scan '
    'picks its chunk length from the data',
    'medusa': 'the gates are forward hooks on trunk modules that read a per-call context (the body map); the '
    'shape checks format sizes as Python tuples',
}
# FX features are checked on the smallest model of every family and the variants with code of their own
# (test_timm_contract's bfloat16 list); tracing itself on every model.
FEATURE_MODELS = [n for n in BF16_INIT if n not in NOT_TRACEABLE and family_of(n) not in NO_FX_FEATURES]


@pytest.fixture(scope='module', params=MODELS)
def built(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    """``(name, model)`` in eval mode, one build per model for the whole file."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = _build(request.param).eval()
    finally:
        torch.set_num_threads(threads)
    return request.param, model


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer with timm's notrace modules (leaves) and functions: what timm's FX helpers hand
    torchvision's ``create_feature_extractor`` (one trace per mode, where those trace twice)."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=tuple(get_notrace_functions()))
        self._leaves = tuple(get_notrace_modules())

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        return isinstance(m, self._leaves) or super().is_leaf_module(m, qualname)


def _trace(model: torch.nn.Module) -> torch.fx.GraphModule:
    return torch.fx.GraphModule(model, _Tracer().trace(model))


def test_fx_forward_and_backward(built, one_thread) -> None:
    name, model = built
    if name in NOT_TRACEABLE:
        with pytest.raises(TypeError, match='FX'):
            _trace(model)
        return
    x = _input(name)
    with torch.no_grad():
        torch.testing.assert_close(_trace(model)(x), model(x), rtol=0, atol=1e-5, msg=f'{name}: FX graph != eager')
    model.train()
    try:
        graph = _trace(model)  # the train-mode graph (dropout, BatchNorm statistics, LSQ init)
        graph(_input(name, batch=2)).float().mean().backward()  # two samples: BatchNorm in training mode
        allowed = next((v for k, v in NO_FORWARD_GRAD.items() if name.startswith(k)), ())
        missing = [n for n, p in model.named_parameters() if p.grad is None and n not in allowed]
        assert not missing, f'{name}: FX train graph gives no gradient to {len(missing)}: {missing[:8]}'
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def _as_map(feat: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """An FX feature (the module's own output) in the getter's ``(B, C, H, W)`` layout: a ViT block's tokens
    ``(B, P + N, C)`` without the prefix tokens, a channels-last stage's ``(B, H, W, C)`` map permuted."""
    B, C, H, W = ref.shape
    if feat.ndim == 3:
        return feat[:, feat.shape[1] - H * W :].transpose(1, 2).reshape(B, C, H, W)
    if feat.shape != ref.shape and feat.shape == (B, H, W, C):
        return feat.permute(0, 3, 1, 2)
    return feat


# torchvision notes that the eval graph's nodes are a subsequence of the train graph's (the train graph has more,
# e.g. drop path); the feature nodes here are module outputs present in both
@pytest.mark.filterwarnings('ignore:NOTE. The nodes obtained by tracing the model in eval mode:UserWarning')
@pytest.mark.parametrize('name', FEATURE_MODELS)
def test_features_only_fx_matches_the_default_route(name: str, one_thread) -> None:
    """``features_only=True, feature_cls='fx'`` (timm's FeatureGraphNet over torchvision's extractor) gives the
    maps of the default route, ``forward_intermediates``, for every ``feature_info`` entry."""
    torch.manual_seed(0)
    model = _build(name).eval()
    indices = tuple(range(len(model.feature_info)))
    torch.manual_seed(0)
    net = _build(name, features_only=True, feature_cls='fx', out_indices=indices).eval()
    loaded = net.load_state_dict({'graph_module.' + k: v for k, v in model.state_dict().items()}, strict=False)
    missing = [k for k in loaded.missing_keys if '._tensor_constant' not in k]  # constants the trace captured
    assert not missing, f'{name}: {missing[:5]}'  # (unexpected keys: the head and others the graph leaves out)
    x = _input(name)
    with torch.no_grad():
        feats = net(x)
        ref = model.forward_intermediates(x, indices=list(indices), intermediates_only=True)
    assert len(feats) == len(ref) == len(net.feature_info.channels()), name
    for i, (f, r) in enumerate(zip(feats, ref)):
        torch.testing.assert_close(_as_map(f, r), r, rtol=0, atol=1e-5, msg=f'{name}: FX feature {i} differs')


@pytest.mark.filterwarnings('ignore:`torch.jit.script` is deprecated:FutureWarning')
def test_torchscript_logits_equal_eager(built, one_thread) -> None:
    """``torch.jit.script(model)`` in eval mode gives the eager logits; the families of ``NOT_SCRIPTABLE``
    really do not script (so the list stays honest)."""
    name, model = built
    if family_of(name) in NOT_SCRIPTABLE:
        with pytest.raises((RuntimeError, ValueError, torch.jit.frontend.NotSupportedError)):
            torch.jit.script(model)
        return
    scripted = torch.jit.script(model)
    x = _input(name)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=1e-5, msg=f'{name}: scripted != eager')


def test_exception_lists_name_real_models() -> None:
    families = {family_of(n) for n in MODELS}
    assert set(NOT_SCRIPTABLE) <= families and set(NO_FX_FEATURES) <= families and set(NOT_TRACEABLE) <= set(MODELS)
    assert set(NOT_SCRIPTABLE) < families  # at least one family scripts


def test_features_only_fx_exceptions() -> None:
    name = next(n for n in BF16_INIT if family_of(n) in NO_FX_FEATURES)
    with pytest.raises(ValueError, match="feature_cls='fx'"):
        _build(name, features_only=True, feature_cls='fx')
