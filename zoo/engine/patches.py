"""Every change the zoo makes to mmengine and mmcv, in one place, applied explicitly.

:func:`apply_patches` is called by the zoo's runner (``zoo.cli.common.build_runner``, i.e. ``tools/train.py``
and ``tools/test.py``); importing ``zoo``, ``zoo.engine`` or ``zoo.mm`` changes nothing. A script that builds
mmengine's ``Runner`` itself calls ``apply_patches()`` first.

The patches replace private functions of exactly the pinned releases, so they refuse to run on any other
version (:data:`PINNED`; ``tests/test_patches.py`` fails when a pin moves without this module):

* ``mmengine`` ``HistoryBuffer`` pickles without bound methods, so checkpoints load with ``weights_only=True``
  (:mod:`zoo.engine.safe_load`);
* ``mmengine`` ``CheckpointHook`` and the Runner's writer: atomic checkpoint files, then the
  ``last_checkpoint`` pointer, then pruning (:mod:`zoo.engine.checkpoint_order`);
* ``mmcv`` NMS / RoIAlign CPU kernels accept bfloat16 under ``--amp`` (:mod:`zoo.mm.amp`), when mmcv is installed.

The ``weights_only`` allow-list of mmengine's data types (``zoo.hub``) is not a patch: it extends torch's
allow-list and is applied wherever a checkpoint is read.
"""

from __future__ import annotations

import importlib.metadata

# The releases whose internals the patches below were written against (pyproject.toml pins the same).
PINNED = {'mmengine': '0.10.7', 'mmcv': '2.1.0'}

_applied: set[str] = set()


class UnpinnedVersionError(RuntimeError):
    """An installed mmengine / mmcv that the patches were not written for."""


def installed_version(dist: str) -> str | None:
    """The installed version of ``dist``, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_pinned(dist: str) -> None:
    """Raise :class:`UnpinnedVersionError` when ``dist`` is installed at another version than :data:`PINNED`."""
    have = installed_version(dist)
    if have is not None and have != PINNED[dist]:
        raise UnpinnedVersionError(
            f'{dist} {have} is installed, but zoo.engine.patches was written for {dist} {PINNED[dist]} '
            f'(pyproject.toml pins it): install {dist}=={PINNED[dist]}, or review the patch and update PINNED'
        )


def apply_patches() -> list[str]:
    """Apply every patch (idempotent). Returns the names of the patches now in effect."""
    if 'mmengine' not in _applied:
        check_pinned('mmengine')
        from zoo.engine.checkpoint_order import save_checkpoints_before_pruning
        from zoo.engine.safe_load import allow_mmengine_checkpoints

        allow_mmengine_checkpoints()
        save_checkpoints_before_pruning()
        _applied.add('mmengine')
    if 'mmcv' not in _applied and installed_version('mmcv') is not None:
        check_pinned('mmcv')
        from zoo.mm.amp import enable_cpu_bf16_ops

        try:
            enable_cpu_bf16_ops()
        except ImportError:  # mmcv without its compiled ops: nothing to patch
            pass
        else:
            _applied.add('mmcv')
    return sorted(_applied)
