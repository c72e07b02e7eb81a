"""Zoo model families. Importing this package registers every zoo model with timm.

Each family module is timm style (``default_cfgs``, ``@register_model``, ``checkpoint_filter_fn``). Its
pretrained cfgs (``zoo.hub.ZooPretrainedCfg``) are the one source of each model's metadata: the weights'
source, sha256 and license, ``paper_ids``, and the paper's numbers (``cfg.paper``: ``params_m``, ``gmacs``,
``top1``, ...; a comment above each family's table names its sources: the paper's tables, the official
repository's README, parameter counts from the official model definitions). The parameter-count tests, the
README model table and ``weights/manifest.csv`` all read them from the cfgs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import timm
from timm.models import model_entrypoint

# One module per family; the order is the order of the README table.
FAMILIES: tuple[str, ...] = (
    'mambaout',
    'agent_deit',
    'agent_pvt',
    'agent_swin',
    'agent_cswin',
    'dcal',
    'qsd_transformer',
    'mhs_vm',
    'medusa',
)

_modules: dict[str, ModuleType] = {name: importlib.import_module(f'{__name__}.{name}') for name in FAMILIES}


def list_zoo_models(family: str | None = None) -> list[str]:
    """Every model the zoo provides (its own registrations plus the timm models it carries).

    Args:
        family: restrict to one family module name (e.g. ``'mambaout'``).
    """
    names: list[str] = []
    for fam, mod in _modules.items():
        if family is not None and fam != family:
            continue
        own = sorted(n for n in timm.list_models() if model_entrypoint(n).__module__ == mod.__name__)
        carried = list(getattr(mod, 'CARRIED_TIMM_MODELS', ()))
        names.extend(n for n in carried + own if n not in names)
    return names


def paper_facts() -> dict[str, dict]:
    """``{model_name: the paper's numbers}`` as each model's pretrained cfg carries them (``cfg.paper``)."""
    from timm.models import get_arch_pretrained_cfgs

    facts: dict[str, dict] = {}
    for name in list_zoo_models():
        for cfg in get_arch_pretrained_cfgs(name).values():
            if getattr(cfg, 'paper', None):
                facts[name] = dict(cfg.paper)
                break
    return facts


def family_of(model_name: str) -> str:
    """The family module that provides ``model_name``."""
    for fam in _modules:
        if model_name in list_zoo_models(fam):
            return fam
    raise KeyError(f"model '{model_name}' is not a zoo model; see zoo.models.list_zoo_models()")
