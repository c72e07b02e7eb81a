"""The timm contract, checked for every model the zoo provides (listed from the zoo's registry).

One test function per model runs all checks on one instance, so each model is built only a few
times; inputs use batch 1 at the pretrained cfg's ``input_size``.
"""

from __future__ import annotations

import importlib
from fnmatch import fnmatch

import pytest
import timm
import torch
from timm.models._manipulate import group_parameters

import zoo  # noqa: F401  (registers the models)
from zoo.models import family_of, list_zoo_models, paper_facts

MODELS = list_zoo_models()
REQUIRED_CFG_FIELDS = ('input_size', 'mean', 'std', 'crop_pct', 'first_conv', 'classifier', 'license')
# Explicit exceptions, each with its reason:
# - timm's own classes the zoo carries unchanged (MambaOut: DESIGN "reuse timm's implementation") may lack
#   the optional no_weight_decay(); timm's optimizer factory then uses an empty set (MambaOut has no
#   position embeddings or tables to exempt; 1-D weights are exempt by shape anyway).
# - parameters used by a training loss but not by forward() get no gradient from the forward pass:
#   DCAL's learned loss weights (Kendall uncertainty weighting of the SA / GLCA / PWCA losses).
NO_FORWARD_GRAD = {'dcal_': ('dcal_loss.',)}


def _carried_from_timm(name: str) -> bool:
    mod = importlib.import_module(f'zoo.models.{family_of(name)}')
    return name in getattr(mod, 'CARRIED_TIMM_MODELS', ())


def _timm_base_no_weight_decay(model: torch.nn.Module) -> set[str]:
    """Names a timm base class lists (timm's ViT lists dist_token / reg_token even when absent)."""
    for base in type(model).__mro__[1:]:
        if base.__module__.startswith('timm.') and 'no_weight_decay' in vars(base):
            return set(base.no_weight_decay(model))
    return set()


def _input(model: torch.nn.Module, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, *model.pretrained_cfg['input_size'])


def _names(field: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A cfg's ``first_conv`` / ``classifier``: one module name or several."""
    return tuple(field) if isinstance(field, (tuple, list)) else (field,)


def _channels_dim(model: torch.nn.Module, feat: torch.Tensor) -> int:
    return feat.shape[-1] if getattr(model, 'output_fmt', 'NCHW') == 'NHWC' else feat.shape[1]


@pytest.mark.parametrize('name', MODELS)
def test_timm_contract(name: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7)
    cfg = model.pretrained_cfg
    for field in REQUIRED_CFG_FIELDS:
        assert cfg.get(field) not in (None, ''), f'{name}: pretrained cfg lacks {field}'
    # first_conv and classifier must name real modules (timm adapts them by name).
    modules = dict(model.named_modules())
    for field in ('first_conv', 'classifier'):
        for n in _names(cfg[field]):
            assert n in modules, f'{name}: {field}={n!r} is not a module'

    x = _input(model)
    # forward + backward at the cfg input size
    model.train()
    out = model(x)
    assert out.shape == (1, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()
    # every trainable parameter takes part in the graph (some may be exactly zero at init: stochastic
    # depth drops whole branches for one sample, silent spiking neurons pass no surrogate gradient),
    # gradients are finite, and they reach the stem
    skip = next((v for k, v in NO_FORWARD_GRAD.items() if name.startswith(k)), ())
    params = dict(model.named_parameters())
    no_grad = [n for n, p in params.items() if p.requires_grad and p.grad is None and not n.startswith(skip)]
    assert not no_grad, f'{name}: no gradient for {no_grad[:5]}'
    assert all(torch.isfinite(p.grad).all() for p in params.values() if p.grad is not None)
    for n in _names(cfg['first_conv']):
        assert params[f'{n}.weight'].grad.abs().sum() > 0, f'{name}: the gradient does not reach {n}'

    model.eval()
    with torch.no_grad():
        ref = model(x)
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        hidden = getattr(model, 'head_hidden_size', None) or model.num_features
        assert pooled.shape == (1, hidden)
        assert torch.allclose(model.forward_head(feats), ref, atol=1e-5)

        # forward_intermediates: one per feature_info entry, with its channels
        final, inter = model.forward_intermediates(x)
        assert len(inter) == len(model.feature_info)
        for f, info in zip(inter, model.feature_info):
            assert f.shape[1] == info['num_chs'], f'{name}: intermediate channels {f.shape} vs {info}'
            if f.ndim == 4:
                assert f.shape[-1] == x.shape[-1] // info['reduction'], f'{name}: reduction {info}'
        only = model.forward_intermediates(x, indices=[0], intermediates_only=True)
        assert len(only) == 1 and torch.allclose(only[0], inter[0], atol=1e-5)

    # grad checkpointing must not change the output
    model.set_grad_checkpointing(True)
    with torch.no_grad():
        ckpt_out = model(x)
    model.set_grad_checkpointing(False)
    assert torch.allclose(ckpt_out, ref, atol=1e-5), f'{name}: grad checkpointing changed the output'

    # optimizer helpers (before the classifier reset: the head is still the cfg's classifier)
    _check_no_weight_decay(name, model)
    _check_group_matcher(name, model)

    # classifier reset: without a classifier the model returns its pre-logits features
    model.reset_classifier(0)
    with torch.no_grad():
        emb = model(x)
    assert emb.shape == (1, hidden) and torch.allclose(emb, pooled, atol=1e-5), f'{name}: reset_classifier(0)'
    model.reset_classifier(3)
    assert getattr(model.get_classifier(), 'out_features', None) == 3
    with torch.no_grad():
        assert model(x).shape == (1, 3)

    # prune_intermediate_layers keeps the requested taps working (pruned in place, last)
    with torch.no_grad():
        model.prune_intermediate_layers(indices=[1])
        again = model.forward_intermediates(x, indices=[1], intermediates_only=True)
    assert torch.allclose(inter[1], again[0], atol=1e-5)


def _check_no_weight_decay(name: str, model: torch.nn.Module) -> None:
    """timm's optimizer factory exempts the parameters whose names match ``no_weight_decay()`` (fnmatch)."""
    if _carried_from_timm(name) and not hasattr(model, 'no_weight_decay'):
        return  # timm's own class, see the exceptions at the top
    nwd = model.no_weight_decay()
    assert isinstance(nwd, (set, frozenset, list, tuple)) and all(isinstance(p, str) for p in nwd), name
    names = [n for n, _ in model.named_parameters()]
    dead = [p for p in nwd if p not in _timm_base_no_weight_decay(model) and not any(fnmatch(n, p) for n in names)]
    assert not dead, f'{name}: no_weight_decay() names no parameter: {dead}'
    # models that keep the official recipe's keyword list (Swin's optimizer.py) must also exempt those
    # parameters through no_weight_decay(), the only list timm's optimizer factory reads
    keywords = model.no_weight_decay_keywords() if hasattr(model, 'no_weight_decay_keywords') else ()
    missed = [n for n in names if any(kw in n for kw in keywords) and not any(fnmatch(n, p) for p in nwd)]
    assert not missed, f'{name}: no_weight_decay_keywords() parameters still decayed by timm: {missed[:3]}'


def _check_group_matcher(name: str, model: torch.nn.Module) -> None:
    """Layer-wise groups (timm's layer decay, BEiT-style fine-tuning) run from the stem to the head in
    depth order."""
    cfg = model.pretrained_cfg
    for coarse in (False, True):
        layer_of = group_parameters(model, model.group_matcher(coarse=coarse), reverse=True)
        assert all(layer_of[f'{n}.weight'] == 0 for n in _names(cfg['first_conv'])), f'{name}: stem not first'
        last = max(layer_of.values())
        assert all(layer_of[f'{n}.weight'] == last for n in _names(cfg['classifier'])), f'{name}: head not last'
        spans = []
        for info in model.feature_info:
            ids = [lid for n, lid in layer_of.items() if n.startswith(info['module'] + '.')]
            if ids:
                spans.append((min(ids), max(ids)))
        assert spans == sorted(spans) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), (name, spans)
        if not coarse:
            assert len(set(layer_of.values())) > len(spans), f'{name}: fine groups no finer than stages'


@pytest.mark.parametrize('name', MODELS)
def test_features_only(name: str) -> None:
    model = timm.create_model(name, features_only=True)
    model.eval()
    info = model.feature_info
    x = torch.randn(1, *timm.create_model(name).pretrained_cfg['input_size'])
    with torch.no_grad():
        feats = model(x)
    assert len(feats) == len(info.channels())
    for f, ch, red in zip(feats, info.channels(), info.reduction()):
        assert _channels_dim(model, f) == ch
        spatial = f.shape[1:3] if getattr(model, 'output_fmt', 'NCHW') == 'NHWC' else f.shape[2:]
        assert tuple(spatial) == (x.shape[2] // red, x.shape[3] // red), f'{name}: {f.shape} at reduction {red}'
        assert torch.isfinite(f).all()


@pytest.mark.parametrize('name', sorted(n for n in MODELS if 'params_m' in paper_facts().get(n, {})))
def test_param_count_matches_reference(name: str) -> None:
    """Parameter counts within 0.5% of PAPER_FACTS (published or counted from the official code; sources
    in the comment above each table)."""
    expected = paper_facts()[name]['params_m']
    with torch.device('meta'):  # counts need shapes only: no memory, no init time
        model = timm.create_model(name)
    got = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(got - expected) / expected <= 0.005, f'{name}: {got:.3f}M params, reference {expected}M'


def test_every_model_has_reference_facts() -> None:
    missing = [n for n in MODELS if n not in paper_facts()]
    assert not missing, f'models without PAPER_FACTS: {missing}'
