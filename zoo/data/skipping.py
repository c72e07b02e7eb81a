"""Dropping unreadable samples from batches instead of replacing them.

A dataset returns a :class:`SkippedSample` (path, reason, index) for an item it cannot read.
:class:`SkipCollate` wraps any collate function: it leaves the sentinels out, collates the rest and
attaches the sentinels to the batch as ``batch.skipped`` (the batch is a ``dict`` / ``list`` subclass,
so models and data preprocessors see an ordinary batch). The attribute travels with the batch from
DataLoader workers to the main process (it is pickled with it), so the record of what was skipped
never depends on worker-local state. A batch whose every sample was skipped is empty (``len == 0``);
``zoo.engine.SkippedSamplesHook`` leaves such batches out of the loop and lists every skipped file at
the end of the run.

Plain PyTorch use::

    ds = ImageFolderDataset(root, 'val', pipeline, skip_unreadable=True)
    for batch in DataLoader(ds, batch_size=32, collate_fn=SkipCollate()):
        if not batch:      # every image of this batch was unreadable
            continue
        ...                # batch['inputs'], batch['data_samples']; batch.skipped lists what was left out
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmengine.registry import FUNCTIONS


@dataclass(frozen=True)
class SkippedSample:
    """Returned by a dataset in place of an item it could not read."""

    path: str
    reason: str
    index: int = -1


class SampleBatch(dict):
    """A collated ``dict`` batch plus ``skipped``: the :class:`SkippedSample` s left out of it."""

    skipped: list[SkippedSample]

    def __init__(self, *args, skipped: Sequence[SkippedSample] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skipped = list(skipped)


class SampleList(list):
    """A collated ``list`` batch plus ``skipped`` (for collate functions that return lists)."""

    skipped: list[SkippedSample]

    def __init__(self, items=(), skipped: Sequence[SkippedSample] = ()) -> None:
        super().__init__(items)
        self.skipped = list(skipped)


def skipped_in(batch: Any) -> list[SkippedSample]:
    """The samples left out of ``batch`` (empty for a batch from any other collate function)."""
    return list(getattr(batch, 'skipped', ()))


def _resolve(collate: str | Callable) -> Callable:
    if callable(collate):
        return collate
    import mmengine.dataset  # noqa: F401  (registers default_collate / pseudo_collate)

    fn = FUNCTIONS.get(collate)
    if fn is None:
        raise KeyError(f"SkipCollate: unknown collate function '{collate}'")
    return fn


class SkipCollate:
    """``collate_fn`` that leaves :class:`SkippedSample` items out of the batch (see the module docstring).

    Args:
        collate: the collate function to apply to the readable items: a callable or a name in
            mmengine's ``FUNCTIONS`` registry (``'default_collate'``, ``'pseudo_collate'``).
    """

    def __init__(self, collate: str | Callable = 'default_collate') -> None:
        self.collate = _resolve(collate)

    def __call__(self, items: Sequence[Any]) -> SampleBatch | SampleList:
        skipped = [x for x in items if isinstance(x, SkippedSample)]
        good = [x for x in items if not isinstance(x, SkippedSample)]
        if not good:
            return SampleBatch(skipped=skipped)
        out = self.collate(good)
        if isinstance(out, Mapping):
            return SampleBatch(out, skipped=skipped)
        if isinstance(out, (list, tuple)):
            return SampleList(out, skipped=skipped)
        raise TypeError(f'SkipCollate: the inner collate returned {type(out).__name__}; expected a dict or list')

    def __repr__(self) -> str:
        return f'SkipCollate({getattr(self.collate, "__name__", self.collate)!r})'


@FUNCTIONS.register_module(name='skip_collate')
def skip_collate(data_batch: Sequence[Any], collate: str | Callable = 'default_collate') -> SampleBatch | SampleList:
    """Config form of :class:`SkipCollate`: ``collate_fn=dict(type='skip_collate', collate='default_collate')``."""
    return SkipCollate(collate)(data_batch)
