"""The README's generated model table matches the registry, and the pinned stack is what CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from conftest import ROOT

import zoo  # noqa: F401
from zoo.models import list_zoo_models


def test_readme_model_table_lists_every_zoo_model_with_measured_params() -> None:
    text = (ROOT / 'README.md').read_text()
    table = text.split('<!-- model-table:begin -->')[1].split('<!-- model-table:end -->')[0]
    rows = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^\| `([\w.]+)` \|[^|]+\|[^|]+\| ([\d.]+) \|', table, flags=re.M)
    }
    assert set(rows) == set(list_zoo_models()), 'README table is stale: run `make readme`'
    import timm

    for name, params in rows.items():
        with torch.device('meta'):
            model = timm.create_model(name)
        assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - params) < 0.006, name


def test_pinned_stack_and_openmmlab_ops_import() -> None:
    import mmcv
    import mmcv.ops  # noqa: F401  (the compiled CPU ops of our mmcv build)
    import mmdet
    import mmdet.models  # noqa: F401
    import mmengine
    import mmseg
    import mmseg.models  # noqa: F401
    import timm
    import torchvision

    assert torch.__version__.split('+')[0] == '2.14.1'
    assert torchvision.__version__.split('+')[0] == '0.29.1'
    assert (timm.__version__, mmengine.__version__, mmcv.__version__) == ('1.0.31', '0.10.7', '2.1.0')
    assert (mmdet.__version__, mmseg.__version__) == ('3.3.0', '1.2.2')
    from mmcv.ops import nms

    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    kept = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)[1]
    assert kept.tolist() == [0, 2]


def test_readme_architecture_names_only_what_exists() -> None:
    """Every path in the README's Architecture tree exists: folders and files in the first column
    (nested by indentation) and the ``*.py`` / ``*.sh`` / ``name/`` entries described beside them."""
    text = (ROOT / 'README.md').read_text()
    block = text.split('## Architecture\n\n```\n')[1].split('```')[0]
    parents: list[tuple[int, Path]] = []
    missing = []
    current = ROOT
    for line in block.splitlines():
        m = re.match(r'^( *)(\S+)', line)
        indent, first = len(m.group(1)), m.group(2)
        if indent > 2 * len(parents) + 2:  # a continuation line: belongs to the last entry
            names, where = re.findall(r'[\w./]+\.(?:py|sh)\b|\b\w+/(?=[\s,)]|$)', line), current
        else:
            parents = [(i, p) for i, p in parents if i < indent]
            base = parents[-1][1] if parents else ROOT
            entry = base / first.rstrip('/')
            if not entry.exists():
                missing.append(str(entry.relative_to(ROOT)))
            current = entry if first.endswith('/') else base
            if first.endswith('/'):
                parents.append((indent, entry))
            names, where = re.findall(r'[\w./]+\.(?:py|sh)\b|\b\w+/(?=[\s,)]|$)', line[m.end() :]), current
        for name in names:
            if name.startswith('<'):
                continue
            found = (where / name.rstrip('/')).exists() or (ROOT / name.rstrip('/')).exists()
            # a file named in a folder's description may sit in one of its sub-folders (tools/analysis/)
            found = found or (name.endswith(('.py', '.sh')) and where.is_dir() and any(where.rglob(name)))
            if not found:
                missing.append(f'{where.relative_to(ROOT)}/{name}')
    assert not missing, missing


def test_readme_architecture_covers_the_tree() -> None:
    """The other direction: every top-level folder and every ``zoo`` sub-package is in the tree, so a new
    package cannot land without a line that says what it holds."""
    import subprocess

    block = (ROOT / 'README.md').read_text().split('## Architecture\n\n```\n')[1].split('```')[0]
    first_column = {m.group(2) for m in re.finditer(r'^( *)(\S+)', block, re.M)}
    tracked = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (an sdist): walk the folder instead
        tracked = [str(p.relative_to(ROOT)) for p in ROOT.rglob('*') if p.is_file() and '.venv' not in p.parts]
    top_dirs = {t.split('/')[0] + '/' for t in tracked if '/' in t and not t.startswith('.')}
    packages = {p.parent.name + '/' for p in (ROOT / 'zoo').glob('*/__init__.py')}
    assert not (top_dirs - first_column), sorted(top_dirs - first_column)
    assert not (packages - first_column), sorted(packages - first_column)
