"""Unreadable samples: left out of their batch, counted, and listed at the end of every run.

``SkippedSamplesHook`` is added to every run by ``tools/train.py`` and ``tools/test.py`` (and sits in
``configs/_base_/default_runtime.py``). Before the run it

* switches datasets with ``skip_unreadable=None`` (the zoo's image datasets) to return a
  :class:`~zoo.data.SkippedSample` for a file they cannot read,
* wraps the collate function of those loaders in :class:`~zoo.data.SkipCollate`, which leaves the
  sentinels out and attaches them to the batch (``batch.skipped``); the batch carries that record from
  DataLoader workers to the main process, so it works with any ``num_workers``,
* wraps the loop's dataloader so that, in the main process, each batch's ``skipped`` list is recorded
  and a batch whose every sample was unreadable is left out (under DDP training the ranks agree, so
  they keep the same number of steps).

Metrics therefore see only the images actually read (``zoo.engine.Accuracy`` logs "accuracy over N of
M images; K skipped"). After the run, rank 0 logs one line per skipped file (phase, path, reason, how
often) and the count, writes them to ``<work_dir>/skipped_samples.json``, and stores them in the
message hub's runtime info ``'skipped_samples'``; ``tools/test.py`` exits with code 1 when that list is
not empty. Training goes on after a bad sample.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from mmengine.hooks import Hook
from mmengine.runner import BaseLoop

from zoo.data.skipping import SkipCollate, skipped_in
from zoo.registry import HOOKS

_PHASES = (('train', '_train_loop'), ('val', '_val_loop'), ('test', '_test_loop'))


class SkippingLoader:
    """A DataLoader seen through :class:`SkippedSamplesHook`: yields the non-empty batches and reports
    each batch's skipped samples to ``record(phase, skipped)``. Attributes are the loader's."""

    def __init__(self, loader, phase: str, record, agree_across_ranks: bool = False) -> None:
        object.__setattr__(self, '_loader', loader)
        object.__setattr__(self, '_phase', phase)
        object.__setattr__(self, '_record', record)
        object.__setattr__(self, '_agree', agree_across_ranks)

    def __len__(self) -> int:
        return len(self._loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def __setattr__(self, name: str, value: Any) -> None:  # e.g. mmdet's pipeline-switch hooks
        setattr(self._loader, name, value)

    def __iter__(self) -> Iterator[Any]:
        for batch in self._loader:
            skipped = skipped_in(batch)
            if skipped:
                self._record(self._phase, skipped)
            empty = isinstance(batch, (Mapping, list)) and len(batch) == 0
            if self._agree:
                empty = _any_rank(empty)
            if not empty:
                yield batch


def _any_rank(flag: bool) -> bool:
    import torch
    from mmengine.dist import all_reduce

    t = torch.tensor([1 if flag else 0])
    all_reduce(t, op='max')
    return bool(t.item())


@HOOKS.register_module()
class SkippedSamplesHook(Hook):
    """Leaves unreadable samples out of their batch and lists them at the end of the run (see the module
    docstring). Loaders whose dataset has no ``skip_unreadable`` attribute are left untouched.

    Args:
        filename: JSON list of the skipped files, written to the work dir when something was skipped.
    """

    priority = 'VERY_HIGH'

    def __init__(self, filename: str = 'skipped_samples.json') -> None:
        self.filename = filename
        # (phase, path) -> dict(phase, path, reason, count); insertion order = first seen
        self.records: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self._installed = False

    # -- installing ---------------------------------------------------------------------------------
    def before_run(self, runner) -> None:
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        for phase, attr in _PHASES:
            loop = getattr(runner, attr, None)
            if isinstance(loop, BaseLoop):
                self._install(loop, phase, agree=distributed and phase == 'train')

    def _install(self, loop: BaseLoop, phase: str, agree: bool) -> None:
        loader = loop.dataloader
        if isinstance(loader, SkippingLoader):
            return
        dataset = getattr(loader, 'dataset', None)
        if not hasattr(dataset, 'skip_unreadable'):
            return
        if dataset.skip_unreadable is None:
            dataset.skip_unreadable = True
        if not isinstance(loader.collate_fn, SkipCollate) and not _is_skip_collate(loader.collate_fn):
            loader.collate_fn = SkipCollate(loader.collate_fn)
        wrapped = SkippingLoader(loader, phase, self._record, agree_across_ranks=agree)
        self._installed = True
        loop.dataloader = wrapped
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop iterates its own wrapper; rebuild it
            from mmengine.runner.loops import _InfiniteDataloaderIterator

            loop.dataloader_iterator = _InfiniteDataloaderIterator(wrapped)

    def _record(self, phase: str, skipped) -> None:
        from mmengine.logging import MMLogger

        for s in skipped:
            key = (phase, s.path)
            rec = self.records.get(key)
            if rec is None:
                self.records[key] = dict(phase=phase, path=s.path, reason=s.reason, count=1)
                MMLogger.get_current_instance().warning(f'skipped unreadable {phase} sample {s.path}: {s.reason}')
            else:
                rec['count'] += 1

    # -- reporting ----------------------------------------------------------------------------------
    def after_run(self, runner) -> None:
        from mmengine.dist import all_gather_object

        if not self._installed:  # no loader with skippable samples in this run (same on every rank)
            runner.message_hub.update_info('skipped_samples', [])
            return
        merged: OrderedDict[tuple[str, str], dict] = OrderedDict()
        for part in all_gather_object(list(self.records.values())):
            for rec in part:
                key = (rec['phase'], rec['path'])
                if key in merged:
                    merged[key]['count'] += rec['count']
                else:
                    merged[key] = dict(rec)
        records = list(merged.values())
        runner.message_hub.update_info('skipped_samples', records)
        if runner.rank != 0:
            return
        log = runner.logger.warning if records else runner.logger.info
        for line in summary_lines(records):
            log(line)
        if records:
            with open(os.path.join(runner.work_dir, self.filename), 'w') as f:
                json.dump(records, f, indent=1)


def summary_lines(records: list[dict]) -> list[str]:
    """``['skipped samples: none']`` or a count line followed by one line per file."""
    if not records:
        return ['skipped samples: none']
    files = len({r['path'] for r in records})
    total = sum(r['count'] for r in records)
    lines = [f'skipped samples: {files} unreadable file(s), left out {total} time(s):']
    for r in records:
        times = f' (x{r["count"]})' if r['count'] > 1 else ''
        lines.append(f'  skipped [{r["phase"]}] {r["path"]}: {r["reason"]}{times}')
    return lines


def _is_skip_collate(fn) -> bool:
    from functools import partial

    from zoo.data.skipping import skip_collate

    return isinstance(fn, partial) and fn.func is skip_collate
