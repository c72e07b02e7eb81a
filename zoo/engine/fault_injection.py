"""Deterministic crash injection for the kill-and-resume tests (test-only; off unless asked for).

A training process that must die at an exact point kills itself with ``SIGKILL``, so a test no longer
races the clock with ``kill -9`` from outside. Nothing runs unless a plan is given, either as a hook in
the config::

    custom_hooks = [..., dict(type='FaultInjectionHook', kill_at_iter=17)]

or through the environment variable ``ZOO_FAULT_INJECT`` (read by ``tools/train.py``):

``iter:N``
    die right after training iteration ``N`` (1-based, counted over the whole run) has finished,
    after every hook of that iteration (a checkpoint saved at iteration ``N`` is complete);
``save:N[:STAGE]``
    die inside the ``N``-th periodic checkpoint save of this process (``CheckpointHook`` interval
    saves; best-checkpoint saves are not counted). ``STAGE`` is where:

    - ``partial`` (default): half of the checkpoint's bytes are on disk (the temporary file
      ``<name>.tmp``; the checkpoint itself is written atomically, see ``checkpoint_order``);
    - ``written``: the checkpoint file is complete, ``last_checkpoint`` still names the previous one;
    - ``pointed``: ``last_checkpoint`` names the new file, older checkpoints are not yet pruned.

The process prints one line ``zoo fault injection: SIGKILL ...`` to stderr before it dies.
"""

from __future__ import annotations

import os
import signal
import sys

from mmengine.hooks import Hook

from zoo.registry import HOOKS

ENV_VAR = 'ZOO_FAULT_INJECT'
SAVE_STAGES = ('partial', 'written', 'pointed')

# The armed plan of this process: kill_at_iter, kill_at_save, save_stage; and the save counter.
_plan: dict = {}
_saves = 0
_in_target_save = False


def parse_fault_spec(spec: str) -> dict:
    """``'iter:17'`` -> ``{'kill_at_iter': 17}``; ``'save:3:written'`` -> ``{'kill_at_save': 3,
    'save_stage': 'written'}``. Raises ``ValueError`` naming ``ZOO_FAULT_INJECT`` on bad input."""
    parts = spec.strip().split(':')
    try:
        if parts[0] == 'iter' and len(parts) == 2 and int(parts[1]) > 0:
            return dict(kill_at_iter=int(parts[1]))
        if parts[0] == 'save' and len(parts) in (2, 3) and int(parts[1]) > 0:
            stage = parts[2] if len(parts) == 3 else 'partial'
            if stage in SAVE_STAGES:
                return dict(kill_at_save=int(parts[1]), save_stage=stage)
    except ValueError:
        pass
    raise ValueError(f"{ENV_VAR}={spec!r}: expected 'iter:N' or 'save:N[:{'|'.join(SAVE_STAGES)}]' with N >= 1")


def arm(kill_at_iter: int | None = None, kill_at_save: int | None = None, save_stage: str = 'partial') -> None:
    """Arm the plan of this process (what ``FaultInjectionHook`` does before the run)."""
    global _saves, _in_target_save
    if save_stage not in SAVE_STAGES:
        raise ValueError(f'FaultInjectionHook save_stage must be one of {SAVE_STAGES}, got {save_stage!r}')
    _plan.clear()
    _plan.update(kill_at_iter=kill_at_iter, kill_at_save=kill_at_save, save_stage=save_stage)
    _saves, _in_target_save = 0, False


def disarm() -> None:
    global _in_target_save
    _plan.clear()
    _in_target_save = False


def die(reason: str) -> None:
    """Kill this process with SIGKILL (no cleanup, no atexit, no flushing of buffers but stderr's)."""
    print(f'zoo fault injection: SIGKILL {reason}', file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def begin_checkpoint_save() -> None:
    """Called by the checkpoint hook when a periodic save starts; counts saves."""
    global _saves, _in_target_save
    if not _plan.get('kill_at_save'):
        return
    _saves += 1
    _in_target_save = _saves == _plan['kill_at_save']


def fault_point(stage: str, detail: str = '') -> None:
    """Die here if the armed plan targets this stage of the current checkpoint save."""
    if _in_target_save and _plan.get('save_stage') == stage:
        die(f'during checkpoint save {_saves} at stage {stage!r} {detail}'.rstrip())


def end_checkpoint_save() -> None:
    global _in_target_save
    _in_target_save = False


@HOOKS.register_module()
class FaultInjectionHook(Hook):
    """Kills the training process at a chosen iteration or during a chosen checkpoint save (tests only).

    Args:
        kill_at_iter: die after this training iteration (1-based, whole run) and all its hooks.
        kill_at_save: die during the N-th periodic checkpoint save of this process.
        save_stage: ``'partial'``, ``'written'`` or ``'pointed'`` (module docstring).
    """

    priority = 'LOWEST'  # after the checkpoint hook of the same iteration

    def __init__(
        self, kill_at_iter: int | None = None, kill_at_save: int | None = None, save_stage: str = 'partial'
    ) -> None:
        if kill_at_iter is None and kill_at_save is None:
            raise ValueError('FaultInjectionHook needs kill_at_iter or kill_at_save')
        self.kill_at_iter = kill_at_iter
        self.kill_at_save = kill_at_save
        self.save_stage = save_stage
        arm(kill_at_iter, kill_at_save, save_stage)  # validates save_stage now

    @classmethod
    def from_env(cls) -> FaultInjectionHook | None:
        spec = os.environ.get(ENV_VAR, '').strip()
        return cls(**parse_fault_spec(spec)) if spec else None

    def before_run(self, runner) -> None:
        arm(self.kill_at_iter, self.kill_at_save, self.save_stage)
        runner.logger.warning(
            f'FaultInjectionHook armed: kill_at_iter={self.kill_at_iter}, '
            f'kill_at_save={self.kill_at_save} ({self.save_stage})'
        )

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.kill_at_iter is not None and runner.iter + 1 == self.kill_at_iter:
            die(f'after iteration {self.kill_at_iter}')

    def after_run(self, runner) -> None:
        disarm()
