"""Every classification config against the recipe tables of docs/recipes.md, field by field: lr and the batch it
is given for, per-GPU batch, gradient accumulation, epochs, warm-up, minimum lr, weight decay, drop path,
RandAugment, random erasing, Mixup / CutMix, label smoothing, EMA, layer decay, gradient clipping, and which
parameters the optimizer leaves without weight decay (the model and its optimizer are built for that)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

from zoo.engine.recipe import FIELDS, no_weight_decay_names, read_recipe_tables, recipe_fields, same

ROOT = Path(__file__).resolve().parent.parent
CLS = ROOT / 'configs/classification'
DOC = ROOT / 'docs/recipes.md'
TABLE = read_recipe_tables(DOC)
CONFIGS = sorted(
    str(p.relative_to(CLS)) for p in CLS.rglob('*.py') if not p.name.startswith('_')
)  # leaves; the _bases only share


def test_every_classification_config_has_one_recipe_row() -> None:
    assert sorted(TABLE) == CONFIGS, (
        f'missing from docs/recipes.md: {sorted(set(CONFIGS) - set(TABLE))}; '
        f'rows without a config: {sorted(set(TABLE) - set(CONFIGS))}'
    )


def test_rows_state_every_field_and_a_source() -> None:
    for name, row in TABLE.items():
        assert list(row) == [*FIELDS, 'source'], f'{name}: columns {list(row)}'
        assert row['source'], f'{name}: no source'


def _mismatches(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    return [
        f'{field}: table {expected[field]!r}, config {actual[field]!r}'
        for field in actual
        if not same(expected[field], actual[field])
    ]


@pytest.mark.parametrize('name', CONFIGS)
def test_config_follows_its_recipe_row(name: str) -> None:
    cfg = Config.fromfile(str(CLS / name))
    bad = _mismatches(TABLE[name], recipe_fields(cfg))
    assert not bad, f'{name} departs from docs/recipes.md: ' + '; '.join(bad)


@pytest.mark.slow
@pytest.mark.parametrize('name', CONFIGS)
def test_config_excludes_the_recipe_params_from_weight_decay(one_thread, name: str) -> None:
    """Built as tools/train.py builds it (no pretrained weights): the parameters without weight decay."""
    cfg = Config.fromfile(str(CLS / name))
    assert same(TABLE[name]['no weight decay'], no_weight_decay_names(cfg)), name


def test_a_changed_value_is_caught() -> None:
    """The comparison is not vacuous: one field changed in a resolved config is reported by name."""
    name = 'agent_attention/agent_deit_small_in1k.py'
    cfg = Config.fromfile(str(CLS / name))
    cfg.model.mixup.cutmix_alpha = 0.0
    cfg.optim_wrapper.optimizer.weight_decay = 0.1
    bad = _mismatches(TABLE[name], recipe_fields(cfg))
    assert [b.split(':')[0] for b in bad] == ['wd', 'cutmix'], bad


@pytest.mark.parametrize('name', CONFIGS)
def test_config_keys_are_known(name: str) -> None:
    """The zoo's key check (what tools/train.py runs first) accepts every key (TimmTransform and Mixup keys are
    checked when built: tests/test_training_recipe.py)."""
    from zoo.engine.config import check_config_keys, load_config

    check_config_keys(load_config(str(CLS / name)), name)
