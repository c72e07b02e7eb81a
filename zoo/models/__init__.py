"""Zoo model families. Importing this package registers every zoo model with timm.

Each family module is timm style (``default_cfgs``, ``@register_model``, ``checkpoint_filter_fn``)
and may define ``PAPER_FACTS``: ``{model_name: dict(params_m=..., gmacs=..., top1=..., source=...)}``
with the published numbers (the paper's tables and the official repository's README) and parameter
counts taken from the official model definitions; a comment above each table names its sources. Those
tables drive the parameter-count tests and the README model table.
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
    """``{model_name: facts}`` merged over all families (see module docstring)."""
    facts: dict[str, dict] = {}
    for mod in _modules.values():
        facts.update(getattr(mod, 'PAPER_FACTS', {}))
    return facts


def family_of(model_name: str) -> str:
    """The family module that provides ``model_name``."""
    for fam in _modules:
        if model_name in list_zoo_models(fam):
            return fam
    raise KeyError(f"model '{model_name}' is not a zoo model; see zoo.models.list_zoo_models()")
