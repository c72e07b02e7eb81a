"""tools/export.py (issue 17, item 5): one small model per family exported with torch.export, written as ONNX and
as an ExportedProgram, read back (ONNX Runtime; torch.export.load) and compared with PyTorch; the tool as a user
runs it, with weights from a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import timm
import torch
from conftest import run_tool

import zoo  # noqa: F401  (registers the zoo's models)
from zoo.cli.export import export_program, write_export
from zoo.hub import save_safetensors
from zoo.models import family_of, list_zoo_models

pytest.importorskip('onnxruntime', reason='the export extra (pip install "attention-zoo[export]")')
pytest.importorskip('onnxscript', reason='the export extra (pip install "attention-zoo[export]")')

ATOL = 1e-4  # the tool's default: max |exported - PyTorch| <= ATOL * max(1, max |logits|)

# One small model per family: (model, input side, create_model kwargs). Fewer blocks than the registered models
# (the exported graph, and so the export time, grows with depth; QSD's depths=2 keeps one spiking transformer block);
# the smallest sides of test_timm_contract's SMALL.
CASES: dict[str, tuple[str, int, dict]] = {
    'mambaout': ('mambaout_femto', 64, dict(depths=(1, 1, 1, 1))),
    'agent_deit': ('agent_deit_tiny', 32, dict(img_size=32, depth=2)),
    'agent_pvt': ('agent_pvt_tiny', 32, dict(img_size=32, depths=(1, 1, 1, 1))),
    'agent_swin': ('agent_swin_tiny', 32, dict(img_size=32, depths=(1, 1, 1, 1))),
    'agent_cswin': ('agent_cswin_tiny', 64, dict(img_size=64, agent_split=(16, 8, 4, 2), depths=(1, 1, 1, 1))),
    'dcal': ('dcal_deit_tiny_patch16_448', 32, dict(img_size=32, depth=2)),
    'qsd_transformer': ('qsd_transformer_15m', 64, dict(img_size=64, depths=2)),
    'mhs_vm': ('mhs_vm_encoder_3h', 32, dict(img_size=32, depths=(1, 1, 1, 1))),
    'medusa': ('medusa_mambaout_femto', 32, dict(img_size=32, body_size=32)),
}

# Families whose export fails, each with the error and the reason: {family: (error substring, reason)}.
EXCEPTIONS: dict[str, tuple[str, str]] = {
    'mhs_vm': (
        'Could not guard on data-dependent expression',
        'the chunked selective scan picks its chunk length from the data (zoo.layers.selective_scan._pick_chunk: '
        'the summed decay must stay in float range), a value-dependent branch torch.export cannot trace',
    ),
}

# Families whose height and width stay dynamic in the export; the others fix their input size (position
# embeddings, agent tokens pooled from a fixed grid, windows, fixed-size pooling) and are traced at one size.
# MambaOut's and QSD's side is 64, not 32 / 16: a smaller input leaves a 1x1 last stage, and torch.export
# specialises size-1 dims (the model would then be reported as fixed-size).
DYNAMIC_HW = {'mambaout', 'qsd_transformer'}


def test_every_family_has_an_export_case() -> None:
    families = {family_of(n) for n in list_zoo_models()}
    assert families <= set(CASES) | set(EXCEPTIONS), families - set(CASES) - set(EXCEPTIONS)


@pytest.mark.parametrize('family', sorted(CASES))
def test_onnx_and_exported_program_match_pytorch(family: str, tmp_path: Path, one_thread) -> None:
    name, side, kwargs = CASES[family]
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, **kwargs).eval()
    if family in EXCEPTIONS:
        error, _reason = EXCEPTIONS[family]
        with pytest.raises(Exception, match=re.escape(error)):
            export_program(model, side)
        return
    # the fixed-size families skip the dynamic attempt (it costs a second trace); the others are detected as dynamic
    program = export_program(model, side, dynamic_hw=None if family in DYNAMIC_HW else False)
    assert program[1] == (family in DYNAMIC_HW), f'{name}: dynamic height/width {program[1]}'
    for fmt, file in (('exported-program', 'm.pt2'), ('onnx', 'm.onnx')):
        res = write_export(model, fmt, str(tmp_path / file), side, atol=ATOL, program=program)
        assert res.checked[0] == (3, 3, side, side)  # another batch than the trace's 2: the batch is dynamic
        assert len(res.checked) == (2 if res.dynamic_hw else 1)
        assert res.ok and res.max_diff <= ATOL, f'{name} {fmt}: max abs diff {res.max_diff:.2e}'
    # the saved program is a self-contained file: loaded alone, it gives the model's logits
    loaded = torch.export.load(str(tmp_path / 'm.pt2')).module()
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=ATOL, rtol=0)


@pytest.mark.slow
def test_export_tool_uses_the_weights_file(tmp_path: Path, one_thread) -> None:
    """The tool as a user runs it: --weights from a safetensors file (7 classes, other weights than the
    tool's seed-0 init); the exported program gives the logits of the model with those weights."""
    torch.manual_seed(123)
    kwargs = dict(depths=(1, 1, 1, 1))
    source = timm.create_model('mambaout_femto', num_classes=7, **kwargs).eval()
    weights = save_safetensors(source.state_dict(), tmp_path / 'femto.safetensors')
    out = tmp_path / 'femto.pt2'
    proc = run_tool(
        'tools/export.py',
        'mambaout_femto',
        '--weights',
        weights,
        '--img-size',
        '64',
        '--model-kwargs',
        '{"depths": [1, 1, 1, 1]}',
        '--format',
        'exported-program',
        '--out',
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith('export: mambaout_femto') and ': ok;' in line and 'femto.safetensors' in line, line
    diff = float(re.search(r'max abs diff to PyTorch (\S+)', line).group(1))
    assert diff <= ATOL
    exported = torch.export.load(str(out)).module()
    torch.manual_seed(0)  # the tool's own seed: what a random init would have given
    fresh = timm.create_model('mambaout_femto', num_classes=7, **kwargs).eval()
    x = torch.randn(2, 3, 96, 96)  # another batch and size than the trace's: both dynamic for MambaOut
    with torch.no_grad():
        got, want, random = exported(x), source(x), fresh(x)
    assert got.shape == (2, 7)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert (got - random).abs().max() > 100 * ATOL


def test_export_tool_errors_are_one_line(tmp_path: Path) -> None:
    proc = run_tool('tools/export.py', 'mambaout_femto', '--format', 'onnx', '--out', str(tmp_path / 'm.pt2'))
    assert proc.returncode == 2 and '--out for --format onnx must end with .onnx' in proc.stderr
    missing = tmp_path / 'nope.safetensors'
    proc = run_tool(
        'tools/export.py', 'mambaout_femto', '--weights', str(missing), '--format', 'onnx', '--out', 'x.onnx'
    )
    assert proc.returncode == 2 and proc.stderr.strip() == f'error: --weights {missing} does not exist'
    proc = run_tool('tools/export.py', 'mambaout_fento', '--format', 'onnx', '--out', str(tmp_path / 'm.onnx'))
    assert proc.returncode == 2 and "unknown model 'mambaout_fento'" in proc.stderr and 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_hf_hub_folder_loads_with_local_dir(tmp_path: Path, one_thread) -> None:
    """--format hf-hub (issue 17, item 6): timm's save_for_hf folder plus a model card; timm.create_model(
    'local-dir:DIR') after ``import zoo`` rebuilds the architecture (model_args) and loads the same weights."""
    torch.manual_seed(321)
    source = timm.create_model('agent_deit_tiny', num_classes=5, img_size=32, depth=2).eval()
    weights = save_safetensors(source.state_dict(), tmp_path / 'deit.safetensors')
    out = tmp_path / 'hub'
    proc = run_tool(
        'tools/export.py',
        'agent_deit_tiny',
        '--weights',
        weights,
        '--img-size',
        '32',
        '--model-kwargs',
        '{"depth": 2}',
        '--format',
        'hf-hub',
        '--out',
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == {'config.json', 'model.safetensors', 'README.md'}
    card = (out / 'README.md').read_text()
    params = sum(p.numel() for p in source.parameters())
    assert f'| Parameters | {params / 1e6:.2f}M |' in card and 'GMACs |' in card and 'not counted' not in card
    license_ = timm.models.get_pretrained_cfg('agent_deit_tiny').license
    assert license_ and f'| License | {license_} |' in card
    assert 'https://arxiv.org/abs/' in card and '@misc{agent_deit_tiny' in card
    loaded = timm.create_model(f'local-dir:{out}', pretrained=True).eval()
    assert type(loaded) is type(source) and len(loaded.blocks) == 2
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))
