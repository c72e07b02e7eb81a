"""Hooks every zoo run gets: progress bars, a PNG training curve, and the safetensors export."""

from __future__ import annotations

import json
import numbers
import os
import sys
from collections import defaultdict

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, IterBasedTrainLoop
from tqdm import tqdm

from zoo.registry import HOOKS


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """tqdm bars over training epochs and evaluation passes (rank 0 only; stderr).

    A bar is drawn only on a terminal: when stderr is redirected (a file, a pipe, a job log) there
    is no bar, so no carriage returns or cursor-movement escape codes reach the log, and the
    LoggerHook's lines report progress. One bar at a time (never nested); while it is open the
    run's log lines go through ``tqdm.write`` so they never share a line with the bar.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._bar: tqdm | None = None
        self._redirect = None

    def _open(self, runner, total: int, desc: str) -> None:
        self._close()
        if runner.rank != 0 or not _is_tty(sys.stderr):
            return
        self._bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0, file=sys.stderr)
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect = logging_redirect_tqdm(loggers=[runner.logger], tqdm_class=tqdm)
        self._redirect.__enter__()

    def _close(self) -> None:
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _step(self, outputs=None) -> None:
        if self._bar is not None:
            if isinstance(outputs, dict) and 'loss' in outputs:
                self._bar.set_postfix(loss=f'{float(outputs["loss"].detach()):.4f}', refresh=False)
            self._bar.update(1)

    def before_train_epoch(self, runner) -> None:
        self._open(runner, len(runner.train_dataloader), f'epoch {runner.epoch + 1}/{runner.max_epochs}')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step(outputs)

    def after_train_epoch(self, runner) -> None:
        self._close()

    def before_val_epoch(self, runner) -> None:
        self._open(runner, len(runner.val_dataloader), 'val')

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._close()

    def before_test_epoch(self, runner) -> None:
        self._open(runner, len(runner.test_dataloader), 'test')

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._step()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._close()


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


@HOOKS.register_module()
class TrainingCurveHook(Hook):
    """Writes ``curves.png`` (training loss per iteration, validation metrics per epoch) and
    ``curves.json`` to the work dir after every validation and at the end of training.

    The history so far travels in every checkpoint (``'training_curves'``), so a run resumed with
    ``--resume`` draws all epochs, not only those after the resume.
    """

    priority = 'LOW'

    def __init__(self, filename: str = 'curves.png') -> None:
        self.filename = filename
        self.loss: list[tuple[int, float]] = []
        self.metrics: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self._loaded: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # plain lists, ints and floats: loadable with torch.load(weights_only=True)
        checkpoint['training_curves'] = dict(
            loss=[[int(i), float(v)] for i, v in self.loss],
            metrics={k: [[int(e), float(v)] for e, v in pts] for k, pts in self.metrics.items()},
        )

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get('training_curves')

    def before_train(self, runner) -> None:
        # only a resumed run continues the history (load_from starts at iteration 0: a new curve)
        loaded, self._loaded = self._loaded, None
        if loaded and runner.iter > 0:
            self.loss = [(int(i), float(v)) for i, v in loaded['loss'] if i <= runner.iter]
            self.metrics = defaultdict(
                list, {k: [(int(e), float(v)) for e, v in pts] for k, pts in loaded['metrics'].items()}
            )

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if isinstance(outputs, dict) and 'loss' in outputs:
            self.loss.append((runner.iter + 1, float(outputs['loss'].detach())))

    def after_val_epoch(self, runner, metrics=None) -> None:
        for k, v in (metrics or {}).items():
            # numbers.Real covers numpy scalars too (mmseg's IoUMetric returns np.float32)
            if isinstance(v, numbers.Real) or (isinstance(v, torch.Tensor) and v.numel() == 1):
                self.metrics[k].append((self._x(runner), float(v)))
        self._write(runner)

    def after_run(self, runner) -> None:
        self._write(runner)

    @staticmethod
    def _by_iter(runner) -> bool:
        return isinstance(runner._train_loop, IterBasedTrainLoop)

    def _x(self, runner) -> int:
        """Where a validation lands on the x axis: the epoch, or the iteration for iteration-based loops."""
        return runner.iter if self._by_iter(runner) else runner.epoch

    def _write(self, runner) -> None:
        if runner.rank != 0 or not self.loss:
            return
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        it, loss = zip(*self.loss)
        axes[0].plot(it, loss, lw=0.8)
        axes[0].set(xlabel='iteration', ylabel='training loss', title='loss')
        for name, pts in self.metrics.items():
            ep, val = zip(*pts)
            axes[1].plot(ep, val, marker='o', ms=3, label=name)
        axes[1].set(xlabel='iteration' if self._by_iter(runner) else 'epoch', title='validation')
        if self.metrics:
            axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(runner.work_dir, self.filename), dpi=110)
        plt.close(fig)
        with open(os.path.join(runner.work_dir, 'curves.json'), 'w') as f:
            json.dump(dict(loss=self.loss, metrics=self.metrics), f)


@HOOKS.register_module()
class ExportSafetensorsHook(Hook):
    """After training, writes the best checkpoint's weights (else the final ones) as
    ``<work_dir>/<filename>`` in safetensors, in the keys a user loads with
    ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...))``.

    Models may define ``export_state_dict()``; otherwise their whole ``state_dict()`` is written.
    """

    priority = 'LOWEST'

    def __init__(self, filename: str = 'model.safetensors') -> None:
        self.filename = filename

    def after_run(self, runner) -> None:
        # after_run also ends test() and val(): export only after a training loop ran.
        if runner.rank != 0 or not isinstance(runner._train_loop, BaseLoop) or runner.iter == 0:
            return
        from zoo.hub import load_checkpoint_file, save_safetensors

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        best = runner.message_hub.get_info('best_ckpt')
        source = 'final weights'
        if best and os.path.isfile(best):
            state = load_checkpoint_file(best)
            model.load_state_dict(state.get('state_dict', state))
            source = f'best checkpoint {os.path.basename(best)}'
        weights = model.export_state_dict() if hasattr(model, 'export_state_dict') else model.state_dict()
        path = os.path.join(runner.work_dir, self.filename)
        meta = dict(source=source, model=getattr(model, 'model_name', type(model).__name__))
        save_safetensors(weights, path, metadata=meta)
        runner.logger.info(f'exported {source} to {path}')
