"""Every ``python`` and ``bash`` block of README.md and docs/*.md runs as written (tests/docs_blocks.py
says how and what the ``<!-- docs-test: ... -->`` lines mean).

Files a block reads are made the way a user gets them, never by mocking the loader:

* official checkpoints in their published layouts (the key lists written down from the official model
  definitions in the family tests), random values;
* Hub weights in the Hugging Face cache, in its documented layout, read with ``HF_HUB_OFFLINE=1``
  (a user with a warm cache: timm's real download code finds the file there);
* a trained model by running the tool that writes it (``tools/train.py``).
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest
import torch
from docs_blocks import ROOT, Block, assert_ran, blocks, run_block, run_code, user_dir

BLOCKS = blocks()
_DIRECTIVE = re.compile(r'^(needs (dataset|gpu): .+|files: .+|run by tests/\w+\.py::\w+|suite command)$')


def _official_agent_swin_tiny(path: Path) -> None:
    from test_agent_attention import OFFICIAL, _official_state, _wrap_as_published

    build, kw = OFFICIAL['agent_swin_tiny']
    torch.save(_wrap_as_published('agent_swin_tiny', _official_state(build(**kw), seed=0)), path)


def _official_mambaout_tiny(path: Path) -> None:
    import timm
    from test_errors_and_hub import _official_mambaout_state

    torch.save({'model': _official_mambaout_state(timm.create_model('mambaout_tiny'))}, path)


def _official_mhs_vm_4h(path: Path) -> None:
    from test_mhs_vm import _official_layout

    from zoo.models.mhs_vm import create_mhs_vm_unet

    torch.save(_official_layout(create_mhs_vm_unet('mhs_vm_unet_4h')), path)


def _official_acmil(path: Path) -> None:
    """The official train script's file: the model's state dict next to the run's (pickled) config."""
    from test_acmil import _official_state_dict

    torch.save(
        {
            'model': _official_state_dict(),
            'epoch': 99,
            'config': argparse.Namespace(n_token=5, mask_drop=0.6, n_class=2, D_feat=512, D_inner=256),
        },
        path,
    )


def _demo_weights(cwd: Path) -> None:
    """``make demo``'s model.safetensors, written by tools/train.py (one epoch instead of twelve)."""
    proc = run_code(
        'bash',
        'python tools/train.py configs/classification/mambaout/mambaout_femto_digits.py '
        '--work-dir work_dirs/demo --cfg-options train_cfg.max_epochs=1',
        cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


FILES = {
    'agent_swin_t.pth': _official_agent_swin_tiny,
    'mambaout_tiny.pth': _official_mambaout_tiny,
    'best_4h.pth': _official_mhs_vm_4h,
    'checkpoint-best.pth': _official_acmil,
}
MADE_BY_TOOLS = {'work_dirs/demo/model.safetensors': _demo_weights}
# Hub weights the blocks download (pretrained=True): put into the Hugging Face cache, read offline.
HUB_MODELS = {
    'docs/dcal.md': ('dcal_deit_tiny_patch16_448', 'dcal_vit_base_patch16_448', 'vit_small_patch16_224'),
    'docs/medusa.md': ('medusa_resnet50',),  # its trunk: timm/resnet50.tv_in1k
}


def _warm_hub_cache(hf_home: Path, models: tuple[str, ...]) -> None:
    """Each model's default Hub file, written where huggingface_hub keeps it (``hub/models--ORG--NAME/
    snapshots/REV/model.safetensors`` and ``refs/main``): the weights of the timm architecture the Hub
    repository is named after (``timm/deit_tiny_patch16_224.fb_in1k`` -> ``deit_tiny_patch16_224``)."""
    import timm
    from safetensors.torch import save_file

    for name in models:
        cfg = timm.models.get_pretrained_cfg(name)
        repo = cfg.hf_hub_id
        arch, _, tag = repo.split('/', 1)[1].partition('.')
        src = timm.create_model(arch, pretrained=False, pretrained_cfg=tag or None)
        folder = hf_home / 'hub' / f'models--{repo.replace("/", "--")}'
        rev = '0' * 40
        (folder / 'snapshots' / rev).mkdir(parents=True, exist_ok=True)
        (folder / 'refs').mkdir(exist_ok=True)
        (folder / 'refs' / 'main').write_text(rev)
        save_file(
            {k: v.contiguous() for k, v in src.state_dict().items()},
            str(folder / 'snapshots' / rev / 'model.safetensors'),
        )


def test_every_block_has_a_known_directive() -> None:
    assert len(BLOCKS) >= 20, len(BLOCKS)
    bad = [(b.id, b.directive) for b in BLOCKS if b.directive and not _DIRECTIVE.match(b.directive)]
    assert not bad, bad
    for b in BLOCKS:
        if b.directive.startswith('files: '):
            unknown = set(b.directive[len('files: ') :].split()) - set(FILES) - set(MADE_BY_TOOLS)
            assert not unknown, (b.id, unknown)


def test_blocks_run_elsewhere_are_run_there() -> None:
    """A ``run by`` block is run through docs_blocks.run_block by the named test, which names the block."""
    for b in BLOCKS:
        if not b.directive.startswith('run by '):
            continue
        module, test = b.directive[len('run by tests/') :].split('.py::')
        source = (ROOT / 'tests' / f'{module}.py').read_text()
        assert re.search(rf'^def {test}\(', source, flags=re.M), (b.id, test)
        assert 'run_block(' in source and f"'{b.file}'" in source, f'{module}.py does not run {b.id}'
        assert hasattr(importlib.import_module(module), test)


@pytest.mark.slow
@pytest.mark.parametrize('block', BLOCKS, ids=[b.id for b in BLOCKS])
def test_docs_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    d = block.directive
    if d.startswith('needs '):
        pytest.skip(d)
    if d.startswith('run by ') or d == 'suite command':
        pytest.skip(f'{d} (see test_blocks_run_elsewhere_are_run_there)')
    cwd = user_dir(tmp_path / 'user')
    for name in d[len('files: ') :].split() if d.startswith('files: ') else ():
        if name in FILES:
            FILES[name](cwd / name)
        else:
            MADE_BY_TOOLS[name](cwd)
    env = {}
    if block.file in HUB_MODELS:
        _warm_hub_cache(tmp_path / 'hf', HUB_MODELS[block.file])
        env = dict(HF_HOME=str(tmp_path / 'hf'), HF_HUB_OFFLINE='1')
    proc = run_block(block, cwd, env=env)
    assert_ran(block, proc)
