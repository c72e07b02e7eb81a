"""Exact resume: a run killed at any iteration and resumed from its last checkpoint continues the
uninterrupted run's trajectory.

mmengine 0.10.7 resumes model, optimiser (with the AMP loss scaler), parameter schedulers, message hub
and the EMA hook's weights, but not the rest of the state the trajectory depends on:

- the random number generators (Python ``random``, numpy's global generator, torch CPU and CUDA):
  the resumed process re-seeds them from ``randomness.seed``, so augmentation, dropout, drop-path and
  samplers inside the model (RPN/RoI sampling, ACMIL's instance masking) draw different numbers;
- the position inside an epoch: ``EpochBasedTrainLoop`` restarts an epoch from its first batch, and
  ``DefaultSampler`` cannot skip the batches already consumed, so checkpoints saved every N
  iterations (``CheckpointHook(by_epoch=False)``) resume at the wrong place;
- data-loader workers: mmengine seeds each worker once per epoch (``seed + worker_id``), so a worker's
  random state in the middle of an epoch depends on every batch it loaded before;
- a validation that was due right after an epoch-end checkpoint (a kill between the two skips it).

:class:`ResumableEpochBasedTrainLoop` (``tools/train.py`` selects it for every epoch-based config)
fixes these. Each checkpoint gets a ``'zoo_resume'`` entry with the loop position (epoch, iteration,
batches done in the epoch, whether the epoch's validation is pending), every RNG state (per rank under
DDP) and the sampler and worker seeds. On resume the loop skips the consumed batches by index (no data
is loaded for them), restores the RNG states right before the next batch is drawn, and runs a pending
validation first. Worker processes re-seed Python, numpy and torch before every batch from
``(seed, epoch, rank, batch index)``, so what a batch contains no longer depends on which batches the
worker loaded before. The entry holds only lists, ints, floats, strings and tensors: it loads with
``torch.load(weights_only=True)``.

On CPU a resumed run's weights are bit-identical to the uninterrupted run's (tests/test_resume.py).
On GPU the same holds only with deterministic kernels (``randomness.deterministic=True``), since
cuDNN/atomics-based reductions differ between any two runs, interrupted or not.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from zoo.registry import LOOPS

RESUME_KEY = 'zoo_resume'
STATE_VERSION = 1


# ------------------------------------------------------------------------------------------------ RNG


def capture_rng_state() -> dict:
    """Python, numpy (legacy global), torch CPU and, when initialised, CUDA generator states as
    ``weights_only``-loadable values (lists, ints, floats, uint8 tensors)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = dict(
        python=[version, list(internal), gauss],
        numpy=[kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def batch_seed(seed: int, epoch: int, rank: int, index: int) -> int:
    """A 63-bit seed for batch ``index`` of ``epoch`` on ``rank``, well mixed (numpy's SeedSequence)."""
    ss = np.random.SeedSequence([seed % (1 << 64), epoch, rank, index])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


class SeededBatch(list):
    """The sample indices of one batch plus its seed. Iterating it inside a data-loader worker first
    re-seeds the worker's Python, numpy and torch generators (torch's fetcher iterates the index list
    right before it reads the samples); in the main process it is a plain list."""

    def __init__(self, indices, seed: int) -> None:
        super().__init__(indices)
        self.seed = seed

    def __iter__(self):
        if get_worker_info() is not None:
            random.seed(self.seed)
            np.random.seed(self.seed % (1 << 32))
            torch.manual_seed(self.seed)
        return super().__iter__()

    def __reduce__(self):  # pickled to the workers
        return SeededBatch, (list(self), self.seed)


class ResumableBatchSampler:
    """Wraps a batch sampler: skips the first ``start`` batches of the next epoch by index, tags each
    batch with its :func:`batch_seed`, and restores pending RNG states right before the first batch it
    yields. That is after the data-loader iterator drew its base seed and before any sample is read,
    also when a wrapper (e.g. ``SkippedSamplesHook``) creates the iterator lazily. ``len()`` is the whole
    epoch's."""

    def __init__(self, batch_sampler, seed: int, rank: int) -> None:
        self.batch_sampler = batch_sampler
        self.sampler = getattr(batch_sampler, 'sampler', None)  # DistSamplerSeedHook calls set_epoch on it
        self.batch_size = getattr(batch_sampler, 'batch_size', None)
        self.drop_last = getattr(batch_sampler, 'drop_last', False)
        self.seed, self.rank = seed, rank
        self.epoch, self.start, self.rng = 0, 0, None

    def prepare(self, epoch: int, start: int = 0, rng: Mapping | None = None) -> None:
        """The next ``iter()`` yields epoch ``epoch`` from batch ``start`` on, restoring ``rng`` first."""
        self.epoch, self.start, self.rng = epoch, start, rng

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def _restore(self) -> None:
        if self.rng is not None:
            restore_rng_state(self.rng)
            self.rng = None

    def __iter__(self):
        start, epoch = self.start, self.epoch
        self.start = 0
        for i, batch in enumerate(self.batch_sampler):
            if i >= start:
                self._restore()
                yield SeededBatch(batch, batch_seed(self.seed, epoch, self.rank, i))
        self._restore()  # nothing was left of the epoch


def _with_resumable_batches(loader: DataLoader, seed: int, rank: int) -> tuple[DataLoader, Any]:
    """The same data loader over a :class:`ResumableBatchSampler` (or itself, when it cannot be
    wrapped: iterable datasets, loaders without a batch sampler, DataLoader subclasses)."""
    if type(loader) is not DataLoader or isinstance(loader.dataset, IterableDataset) or loader.batch_sampler is None:
        return loader, None
    wrapped = ResumableBatchSampler(loader.batch_sampler, seed, rank)
    kwargs = dict(
        batch_sampler=wrapped,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=loader.pin_memory_device,
    )
    if loader.num_workers > 0:
        kwargs['prefetch_factor'] = loader.prefetch_factor
    if hasattr(loader, 'in_order'):
        kwargs['in_order'] = loader.in_order
    return DataLoader(loader.dataset, **kwargs), wrapped


# ------------------------------------------------------------------------------------------------ loop


class ResumeStateHook(Hook):
    """Carries :class:`ResumableEpochBasedTrainLoop`'s state into checkpoints and back (registered by
    the loop itself)."""

    priority = 'VERY_HIGH'

    def __init__(self, loop: ResumableEpochBasedTrainLoop) -> None:
        self.loop = loop

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = self.loop.resume_state()
        if state is not None:
            checkpoint[RESUME_KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.loop.pending_state = checkpoint.get(RESUME_KEY)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes exactly, also from checkpoints saved in the middle of an
    epoch (module docstring). Same arguments and behaviour otherwise."""

    def __init__(
        self, runner, dataloader, max_epochs: int, val_begin: int = 1, val_interval: int = 1, dynamic_intervals=None
    ) -> None:
        super().__init__(runner, dataloader, max_epochs, val_begin, val_interval, dynamic_intervals)
        self.data_seed = int(runner.seed if runner.seed is not None else 0)
        self.dataloader, self.batches = _with_resumable_batches(self.dataloader, self.data_seed, runner.rank)
        if self.batches is None:
            print_log(
                f'{type(self).__name__}: the train data loader cannot be wrapped; a resume inside an epoch '
                'replays (loads) the consumed batches and worker seeds are not restored',
                logger='current',
                level=30,
            )
        self.pending_state: dict | None = None  # set by ResumeStateHook when a checkpoint is loaded
        self._point: dict | None = None  # where a checkpoint saved right now resumes
        self._rank_rng: list | None = None  # every rank's RNG state at the point (DDP)
        self._rng_after_iter: dict | None = None
        if not any(isinstance(h, ResumeStateHook) and h.loop is self for h in runner.hooks):
            runner.register_hook(ResumeStateHook(self))

    # position bookkeeping: `_point` is what a checkpoint written now must resume to

    def _set_point(self, epoch: int, it: int, batch: int, val_pending: bool) -> None:
        self._point = dict(epoch=epoch, iter=it, batch=batch, val_pending=val_pending)
        if self.runner.world_size > 1:  # a checkpoint is written by rank 0 only: gather every rank's RNG
            from mmengine.dist import all_gather_object

            self._rank_rng = all_gather_object(capture_rng_state())

    def resume_state(self) -> dict | None:
        """The ``'zoo_resume'`` checkpoint entry for a checkpoint written now (None outside training)."""
        if self._point is None:
            return None
        sampler = getattr(self.dataloader, 'sampler', None)
        if self.batches is not None:
            sampler = self.batches.sampler
        return dict(
            version=STATE_VERSION,
            **self._point,
            rng=self._rank_rng if self.runner.world_size > 1 else capture_rng_state(),
            world_size=self.runner.world_size,
            data_seed=self.data_seed,
            sampler_seed=getattr(sampler, 'seed', None),
            epoch_length=len(self.dataloader),
        )

    def _take_pending_state(self) -> int:
        """Apply a loaded ``'zoo_resume'`` state; returns the batch of the current epoch to start at."""
        state, self.pending_state = self.pending_state, None
        if self._iter == 0:
            return 0  # a fresh run (or load_from): nothing to resume
        if not state:
            print_log(
                'the checkpoint has no zoo resume state (older zoo or plain mmengine): resuming at the '
                'epoch boundary without the random states',
                logger='current',
                level=30,
            )
            return 0
        where = (state.get('epoch'), state.get('iter'))
        if where != (self._epoch, self._iter) or state.get('epoch_length') != len(self.dataloader):
            print_log(
                f'the zoo resume state (epoch, iter) = {where}, {state.get("epoch_length")} batches/epoch '
                f'does not match the checkpoint ({self._epoch}, {self._iter}), {len(self.dataloader)} '
                'batches/epoch: resuming at the epoch boundary without the random states',
                logger='current',
                level=30,
            )
            return 0
        rng = state['rng']
        if isinstance(rng, list):
            if len(rng) != self.runner.world_size:
                print_log(
                    f'the checkpoint holds random states of {len(rng)} ranks, this run has '
                    f'{self.runner.world_size}: random states are not restored',
                    logger='current',
                    level=30,
                )
                rng = None
            else:
                rng = rng[self.runner.rank]
        self.data_seed = int(state['data_seed'])
        if self.batches is not None:
            self.batches.seed = self.data_seed
            if state.get('sampler_seed') is not None and hasattr(self.batches.sampler, 'seed'):
                self.batches.sampler.seed = state['sampler_seed']
        batch = int(state['batch'])
        print_log(
            f'exact resume: epoch {self._epoch + 1}, batch {batch}/{len(self.dataloader)}, iteration '
            f'{self._iter}' + (', validation of the finished epoch first' if state['val_pending'] else ''),
            logger='current',
        )
        if batch == 0:
            if rng is not None:
                restore_rng_state(rng)
            if state['val_pending']:
                self._maybe_validate()
        else:
            self._rng_after_iter = rng
        return batch

    def run(self) -> torch.nn.Module:
        """Launch training (resuming at the exact batch when a zoo checkpoint was loaded)."""
        self.runner.call_hook('before_train')
        start = self._take_pending_state()
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch(start)
            start = 0
            self._maybe_validate()
        self.runner.call_hook('after_train')
        return self.runner.model

    def _maybe_validate(self) -> None:
        self._decide_current_val_interval()
        if (
            self.runner.val_loop is not None
            and self._epoch >= self.val_begin
            and (self._epoch % self.val_interval == 0 or self._epoch == self._max_epochs)
        ):
            self._set_point(self._epoch, self._iter, 0, False)  # a save during validation resumes after it
            self.runner.val_loop.run()

    def run_epoch(self, start: int = 0) -> None:
        """Iterate one epoch from batch ``start``."""
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        rng, self._rng_after_iter = self._rng_after_iter, None
        if self.batches is not None:
            # the batch sampler restores `rng` once the loader's iterator exists (it draws a base seed)
            self.batches.prepare(self._epoch, start, rng)
            batches = iter(self.dataloader)
        else:  # fallback: load and drop the consumed batches
            batches = iter(self.dataloader)
            for _ in range(start):
                next(batches, None)
            if rng is not None:
                restore_rng_state(rng)
        for idx, data_batch in enumerate(batches, start):
            self.run_iter(idx, data_batch)
        self._set_point(self._epoch + 1, self._iter, 0, True)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx: int, data_batch) -> None:
        self.runner.call_hook('before_train_iter', batch_idx=idx, data_batch=data_batch)
        outputs = self.runner.model.train_step(data_batch, optim_wrapper=self.runner.optim_wrapper)
        self._set_point(self._epoch, self._iter + 1, idx + 1, False)
        self.runner.call_hook('after_train_iter', batch_idx=idx, data_batch=data_batch, outputs=outputs)
        self._iter += 1


# ------------------------------------------------------------------------------------------------ config

_EPOCH_LOOPS = ('EpochBasedTrainLoop', 'mmengine.EpochBasedTrainLoop')


def use_exact_resume(cfg):
    """Select :class:`ResumableEpochBasedTrainLoop` for an epoch-based ``train_cfg`` (plain
    ``by_epoch=True`` or mmengine's ``EpochBasedTrainLoop``), and add ``FaultInjectionHook`` when the
    ``ZOO_FAULT_INJECT`` environment variable is set (tests). Returns ``cfg``, changed in place."""
    from .fault_injection import ENV_VAR, parse_fault_spec

    loop = cfg.get('train_cfg')
    if isinstance(loop, Mapping):
        kind = loop.get('type')
        if (kind is None and loop.get('by_epoch')) or kind in _EPOCH_LOOPS or kind is EpochBasedTrainLoop:
            loop.pop('by_epoch', None)
            loop['type'] = 'zoo.ResumableEpochBasedTrainLoop'  # scoped: mmdet / mmseg configs find it too
    import os

    spec = os.environ.get(ENV_VAR, '').strip()
    if spec:
        hooks = list(cfg.get('custom_hooks') or [])
        hooks.append(dict(type='zoo.FaultInjectionHook', **parse_fault_spec(spec)))
        cfg.custom_hooks = hooks
    return cfg
