"""The ``python`` and ``bash`` blocks of README.md and docs/*.md, and how to run one as a user would.

A block runs as written, in a fresh directory that looks like the repository root to it (``tools/``,
``configs/``, ``scripts/`` and ``docs/`` linked in, everything it writes, ``data/fixtures`` and
``work_dirs`` included, lands there), with the virtual environment's ``python`` first on ``PATH``.
A python block is one script: it must import what it uses.

An HTML comment on the line above a block tells the docs test what the block needs:

* ``<!-- docs-test: needs dataset: WHAT -->`` or ``<!-- docs-test: needs gpu: WHAT -->``: not run here
  (the only blocks the suite does not run);
* ``<!-- docs-test: files: NAME ... -->``: files the block reads that a user downloads or makes first
  (an official checkpoint, a trained model); ``tests/test_docs.py`` makes them the way a user gets
  them, then runs the block;
* ``<!-- docs-test: run by tests/FILE.py::TEST -->``: a smoke run that TEST runs through
  :func:`run_block` (or, where interpreter start-ups would break its time budget, command by command in-process:
  ``tests/test_distill_train.py::_run_tools_in_process``) and then checks (its numbers), so the suite does not
  train it twice;
* ``<!-- docs-test: suite command -->``: the quick-start block (``make demo`` / ``make test``): ``.ci/run``
  runs ``make test``, and the demo's config trains in the suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
LINKED = ('tools', 'configs', 'scripts', 'docs')
_BLOCK = re.compile(
    r'(?:^<!-- docs-test: (?P<directive>.*?) -->\n)?^```(?P<lang>python|bash)\n(?P<code>.*?)^```', re.S | re.M
)


@dataclass(frozen=True)
class Block:
    file: str  # relative to the repository root
    line: int  # line of the opening fence
    lang: str
    code: str
    directive: str  # '' when there is none

    @property
    def id(self) -> str:
        return f'{self.file}:{self.line}'


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for m in _BLOCK.finditer(text):
            line = text.count('\n', 0, m.start('lang')) + 1
            found.append(Block(str(path.relative_to(ROOT)), line, m['lang'], m['code'], m['directive'] or ''))
    return found


def find_block(file: str, contains: str) -> Block:
    """The one block of ``file`` whose code contains ``contains``."""
    hits = [b for b in blocks() if b.file == file and contains in b.code]
    assert len(hits) == 1, f'{len(hits)} blocks of {file} contain {contains!r}'
    return hits[0]


def user_dir(path: Path) -> Path:
    """A fresh directory in which ``python tools/...`` and ``configs/...`` work as in the repository."""
    path.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if not (path / name).exists():
            (path / name).symlink_to(ROOT / name)
    return path


def run_block(
    block: Block, cwd: Path, timeout: int = HANG_GUARD_S, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``block`` in ``cwd`` (made with :func:`user_dir`); bash stops at the first failing command."""
    return run_code(block.lang, block.code, cwd, timeout=timeout, env=env)


def run_code(
    lang: str, code: str, cwd: Path, timeout: int = HANG_GUARD_S, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``lang`` ('bash' or 'python') ``code`` run as a user would in ``cwd``, as for a docs block."""
    venv_bin = str(Path(sys.executable).parent)
    full_env = dict(
        os.environ,
        PATH=venv_bin + os.pathsep + os.environ.get('PATH', ''),
        PYTHONUNBUFFERED='1',
        OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'),
        MPLBACKEND='Agg',
    )
    full_env.pop('ZOO_FIXTURES', None)  # the block's own default (data/fixtures under cwd)
    full_env.update(env or {})
    if lang == 'bash':
        cmd = ['bash', '-e', '-o', 'pipefail', '-c', code]
    else:
        cmd = [sys.executable, '-c', code]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def assert_ran(block: Block, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f'{block.id} failed:\n{block.code}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}'
