"""Let ``torch.load(weights_only=True)`` read mmengine's own checkpoints.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; on torch >= 2.6 that means
``weights_only=True``, which rejects the non-tensor objects mmengine itself stores (the message
hub's ``HistoryBuffer``, numpy scalars/arrays, ``ConfigDict``...), so ``--resume`` fails on
mmengine's own files. Instead of switching the safety off, the specific, data-only types are
allow-listed; any other global still makes the load fail.

One mmengine type needs more: ``HistoryBuffer.__getstate__`` pickles its statistics methods as
bound functions, which unpickle through ``builtins.getattr`` -- a global that would open
``weights_only`` to arbitrary attribute access, so it is never allow-listed. Instead the zoo
saves buffers without them (``__setstate__`` restores the defaults, and custom methods are
class-level anyway). Checkpoints written by zoo runs therefore load with ``weights_only=True``.
"""

from __future__ import annotations

_done = False


def _history_buffer_state(self) -> dict:
    """``HistoryBuffer.__getstate__`` without the bound methods (see module docstring)."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint types for ``weights_only`` loading and make
    ``HistoryBuffer`` pickle without functions (idempotent)."""
    global _done
    if not _done:
        from mmengine.logging.history_buffer import HistoryBuffer

        from zoo.hub import allow_mmengine_types

        HistoryBuffer.__getstate__ = _history_buffer_state
        allow_mmengine_types()
        _done = True
