"""The direction of imports (DESIGN: config -> tool -> registry -> model).

Every ``import`` statement of the package and the tools is read from the source (top-level and the lazy
ones inside functions alike), so a wrong-way import fails here even when no test executes it:

* ``zoo.models`` and ``zoo.layers`` import no engine, OpenMMLab, WSI, tool or test code;
* only ``zoo.mm`` imports mmdet / mmseg, and no package module imports ``zoo.cli`` (the tool layer);
* ``tools/`` imports only ``zoo`` and the standard library;
* nothing imports ``tests``.

And at run time: a timm-only user (no mmengine installed) can create a zoo model and load weights through
``zoo.hub``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; relative imports resolved against it."""
    tree = ast.parse(path.read_text(), str(path))
    package = '.'.join(path.relative_to(ROOT).with_suffix('').parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                name = f'{base}.{node.module}' if node.module else base
            else:
                name = node.module
            found.append((node.lineno, name))
    return found


def _sources(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (ROOT / part).rglob('*.py'))


def _violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in paths:
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + '.') for f in forbidden):
                bad.append(f'{path.relative_to(ROOT)}:{line} imports {name}')
    return bad


def test_import_reader_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The checks below are only as good as this reader: a lazy import inside a function and a relative
    import both count."""
    pkg = ROOT / 'zoo' / 'layers' / '_probe_for_test.py'
    try:
        pkg.write_text('def f():\n    from ..engine import hooks\n    import mmengine.runner\n')
        assert [n for _, n in _imports(pkg)] == ['zoo.engine', 'mmengine.runner']
    finally:
        pkg.unlink()


def test_models_and_layers_import_no_engine_mm_or_tool_code() -> None:
    forbidden = (
        'zoo.engine',
        'zoo.mm',
        'zoo.cli',
        'zoo.mil',
        'zoo.lesion_seg',
        'zoo.distill',
        'zoo.data',
        'zoo.testing',
        'zoo.registry',
        'mmengine',
        'mmcv',
        'mmdet',
        'mmseg',
        'tools',
        'tests',
    )
    assert _violations(_sources('zoo/models', 'zoo/layers'), forbidden) == []
    # and the layer never reaches up into the model files
    assert _violations(_sources('zoo/layers'), ('zoo.models',)) == []


def test_only_zoo_mm_imports_openmmlab_heads_and_no_package_module_imports_the_tools() -> None:
    outside_mm = [p for p in _sources('zoo') if 'mm' not in p.relative_to(ROOT / 'zoo').parts[:1]]
    assert _violations(outside_mm, ('mmdet', 'mmseg')) == []
    not_cli = [p for p in _sources('zoo') if p.relative_to(ROOT / 'zoo').parts[0] != 'cli']
    assert _violations(not_cli, ('zoo.cli', 'tools', 'tests', 'conftest')) == []


def test_tools_import_only_zoo_and_the_standard_library() -> None:
    bad = []
    for path in _sources('tools'):
        for line, name in _imports(path):
            top = name.split('.')[0]
            if top != 'zoo' and top not in sys.stdlib_module_names:
                bad.append(f'{path.relative_to(ROOT)}:{line} imports {name}')
        assert 'sys.path' not in path.read_text(), f'{path.relative_to(ROOT)} edits sys.path'
    assert bad == []


def test_nothing_imports_the_tests() -> None:
    assert _violations(_sources('zoo', 'tools', 'configs'), ('tests', 'conftest')) == []


@pytest.mark.slow
def test_timm_only_user_needs_no_mmengine(tmp_path: Path) -> None:
    """With mmengine made unimportable, ``import zoo``, ``timm.create_model`` and ``zoo.hub``'s weight file
    route still work."""
    code = f"""
import sys
sys.modules['mmengine'] = None  # any 'import mmengine...' now raises ImportError
import timm, torch
import zoo, zoo.hub
m = timm.create_model('agent_pvt_tiny', num_classes=3, img_size=64)
path = {str(tmp_path / 'w.pth')!r}
torch.save({{'model': m.state_dict()}}, path)
sd = zoo.hub.unwrap_state_dict(zoo.hub.load_checkpoint_file(path))
m2 = timm.create_model('agent_pvt_tiny', num_classes=3, img_size=64, pretrained=True,
                       pretrained_cfg_overlay=dict(file=path, num_classes=3))
assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
assert not any(k.startswith('mmengine') and sys.modules[k] is not None for k in sys.modules)
print('ok', len(sd))
"""
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith('ok ')


def test_zoo_layers_exports_every_public_block() -> None:
    import importlib

    import zoo.layers

    for path in _sources('zoo/layers'):
        if path.name == '__init__.py':
            continue
        module = importlib.import_module(f'zoo.layers.{path.stem}')
        # a function named like its module stays there: exporting it would shadow the submodule
        public = [n for n in module.__all__ if n != path.stem]
        missing = [n for n in public if getattr(zoo.layers, n, None) is not getattr(module, n)]
        assert not missing, f'zoo.layers does not export {missing} of {path.name}'
        assert not set(public) - set(zoo.layers.__all__), path.name
        assert getattr(zoo.layers, path.stem) is module, f'zoo.layers.{path.stem} is not the module'


def test_console_commands_and_tool_shims_call_the_same_functions() -> None:
    """Each ``zoo-*`` command in pyproject.toml names ``zoo.cli.<tool>:cli``, and ``tools/<tool>.py`` (or
    ``tools/analysis/<tool>.py``) calls that same ``cli``: one implementation per tool."""
    import importlib

    import tomllib

    scripts = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['scripts']
    shims = {p.stem: p for p in _sources('tools')}
    assert set(shims) == {target.split(':')[0].rsplit('.', 1)[1] for target in scripts.values()}
    for command, target in scripts.items():
        module_name, func = target.split(':')
        assert func == 'cli' and callable(importlib.import_module(module_name).cli), command
        tool = module_name.rsplit('.', 1)[1]
        assert command == 'zoo-' + tool.replace('_', '-')
        shim = shims[tool].read_text()
        assert f'from {module_name} import cli' in shim and "if __name__ == '__main__':\n    cli()" in shim, tool


@pytest.mark.slow
def test_installed_console_command_runs() -> None:
    """``zoo-train --help`` through the entry point pip installed next to this interpreter."""
    exe = Path(sys.executable).parent / 'zoo-train'
    assert exe.exists(), f'{exe} missing: run scripts/install.sh (pip install -e . writes the zoo-* commands)'
    proc = subprocess.run([str(exe), '--help'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'usage: zoo-train' in proc.stdout and '--resume' in proc.stdout
