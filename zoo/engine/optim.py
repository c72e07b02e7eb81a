"""Mixed precision that also works on CPU (mmengine's AmpOptimWrapper asserts CUDA), and parameter groups by timm's
rules (``no_weight_decay()``, layer decay) for mmengine's optimizer wrapper."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from zoo.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS


def _register_timm_optimizers() -> None:
    """timm's optimizers that official recipes use and torch lacks (QSD-Transformer trains with ``Lamb``)."""
    from timm.optim import Lamb

    if OPTIMIZERS.get('Lamb') is None:
        OPTIMIZERS.register_module(name='Lamb', module=Lamb)


_register_timm_optimizers()


@OPTIM_WRAPPERS.register_module()
class CpuAmpOptimWrapper(OptimWrapper):
    """bfloat16 autocast around the forward pass on CPU; no loss scaling is needed for bf16.

    ``tools/train.py --amp`` selects mmengine's ``AmpOptimWrapper`` on GPU and this one on CPU.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield


def _timm_net(model: nn.Module) -> nn.Module:
    """The outermost submodule of ``model`` (itself included) that declares ``no_weight_decay()``: the timm network
    inside the mmengine wrapper (``TimmClassifier.backbone``, a DDP ``module``, ...)."""
    for _, mod in model.named_modules():
        if callable(getattr(mod, 'no_weight_decay', None)):
            return mod
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, nn.Module):  # a timm model without no_weight_decay() (timm's MambaOut): the 1-D rule only
        return backbone
    raise TypeError(
        f'{type(model).__name__} holds no module with no_weight_decay(); TimmParamGroupsConstructor needs a timm model'
    )


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TimmParamGroupsConstructor:
    """Parameter groups by timm's own rules, inside mmengine's optimizer wrapper.

    timm's ``param_groups_weight_decay`` (or ``param_groups_layer_decay`` with ``layer_decay``) on the timm network
    in the model: no weight decay for 1-D parameters, biases and every name in the network's ``no_weight_decay()``
    (DeiT's ``pos_embed`` / ``cls_token``, Swin's relative position tables, ...), as timm's ``create_optimizer``
    and the official training scripts do. mmengine's ``DefaultOptimWrapperConstructor`` cannot read
    ``no_weight_decay()``. Parameters outside the timm network (a wrapper's own) follow the same 1-D rule.

    ``paramwise_cfg`` keys: ``layer_decay`` (float, per-block lr decay from the network's ``group_matcher``; the lr
    of each group is ``lr * scale``, which mmengine's schedulers then scale as a whole) and ``no_weight_decay``
    (extra parameter names of the network).
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        cfg = dict(optim_wrapper_cfg)
        if 'optimizer' not in cfg:
            raise KeyError('optim_wrapper: TimmParamGroupsConstructor needs an optimizer config')
        self.optimizer_cfg = dict(cfg.pop('optimizer'))
        self.wrapper_cfg = cfg
        opts = dict(paramwise_cfg or {})
        self.layer_decay = opts.pop('layer_decay', None)
        self.extra_no_decay = set(opts.pop('no_weight_decay', ()))
        if opts:
            raise KeyError(
                f'optim_wrapper.paramwise_cfg: unknown key(s) {sorted(opts)} for TimmParamGroupsConstructor '
                '(known: layer_decay, no_weight_decay)'
            )

    def param_groups(self, model: nn.Module) -> list[dict]:
        """The groups (``params``, ``weight_decay`` and, with layer decay, ``lr``) for ``model``."""
        from timm.optim import param_groups_layer_decay, param_groups_weight_decay

        net = _timm_net(model)
        wd = float(self.optimizer_cfg.get('weight_decay', 0.0))
        skip = set(getattr(net, 'no_weight_decay', tuple)()) | self.extra_no_decay
        if self.layer_decay is not None:
            lr = float(self.optimizer_cfg['lr'])
            groups = param_groups_layer_decay(
                net, weight_decay=wd, no_weight_decay_list=skip, layer_decay=float(self.layer_decay)
            )
            for g in groups:
                g['lr'] = lr * g.pop('lr_scale', 1.0)
        else:
            groups = list(param_groups_weight_decay(net, weight_decay=wd, no_weight_decay_list=skip))
        inside = {id(p) for p in net.parameters()}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in inside]
        if rest:
            groups.append(dict(params=[p for p in rest if p.ndim > 1], weight_decay=wd))
            groups.append(dict(params=[p for p in rest if p.ndim <= 1], weight_decay=0.0))
        return [g for g in groups if g['params']]

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if hasattr(model, 'module'):  # DDP and other model wrappers
            model = model.module
        optimizer = OPTIMIZERS.build(dict(self.optimizer_cfg, params=self.param_groups(model)))
        wrapper = dict(self.wrapper_cfg)
        wrapper.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(wrapper, default_args=dict(optimizer=optimizer))
