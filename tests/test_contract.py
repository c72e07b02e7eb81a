"""The timm contract, checked for every model the zoo provides (listed from the zoo's registry).

One test function per model runs all checks on one instance, so each model is built only a few
times; inputs use batch 1 at the pretrained cfg's ``input_size``.
"""

from __future__ import annotations

import pytest
import timm
import torch

import zoo  # noqa: F401  (registers the models)
from zoo.models import list_zoo_models, paper_facts

MODELS = list_zoo_models()
REQUIRED_CFG_FIELDS = ('input_size', 'mean', 'std', 'crop_pct', 'first_conv', 'classifier', 'license')


def _input(model: torch.nn.Module, batch: int = 1) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, *model.pretrained_cfg['input_size'])


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
        names = cfg[field] if isinstance(cfg[field], (tuple, list)) else (cfg[field],)
        for n in names:
            assert n in modules, f'{name}: {field}={n!r} is not a module'

    x = _input(model)
    # forward + backward at the cfg input size
    model.train()
    out = model(x)
    assert out.shape == (1, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), f'{name}: no gradient reached the weights'

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

    # classifier reset
    model.reset_classifier(0)
    with torch.no_grad():
        emb = model(x)
    assert emb.ndim == 2 and emb.shape[1] in (model.num_features, hidden)
    model.reset_classifier(3)
    assert model.get_classifier() is not None
    with torch.no_grad():
        assert model(x).shape == (1, 3)

    # optimizer helpers
    assert isinstance(model.no_weight_decay(), (set, list, tuple)) if hasattr(model, 'no_weight_decay') else True
    matcher = model.group_matcher()
    assert 'stem' in matcher and 'blocks' in matcher

    # prune_intermediate_layers keeps the requested taps working (pruned in place, last)
    with torch.no_grad():
        model.prune_intermediate_layers(indices=[1])
        again = model.forward_intermediates(x, indices=[1], intermediates_only=True)
    assert torch.allclose(inter[1], again[0], atol=1e-5)


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
    """Parameter counts within 0.5% of the reference cards (../shared/reference/)."""
    expected = paper_facts()[name]['params_m']
    with torch.device('meta'):  # counts need shapes only: no memory, no init time
        model = timm.create_model(name)
    got = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(got - expected) / expected <= 0.005, f'{name}: {got:.3f}M params, reference {expected}M'


def test_every_model_has_reference_facts() -> None:
    missing = [n for n in MODELS if n not in paper_facts()]
    assert not missing, f'models without PAPER_FACTS: {missing}'
