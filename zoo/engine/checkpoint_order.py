"""Crash-safe checkpoints for mmengine's ``CheckpointHook``: atomic files, then the pointer, then pruning.

mmengine 0.10.7 has three windows in which a crash (or ``kill -9``) breaks ``--resume``:

1. With ``max_keep_ckpts`` it deletes the oldest kept checkpoint *before* it writes the new one, so a
   crash in between leaves ``last_checkpoint`` naming a deleted file.
2. It writes the checkpoint in place (``open(path, 'wb')``): a crash mid-write leaves a truncated file
   under the real name.
3. It rewrites ``last_checkpoint`` in place: a crash between truncating and writing leaves it empty.

The zoo keeps mmengine's bookkeeping but orders it safely: the checkpoint goes to ``<name>.tmp`` and
is renamed into place (``os.replace`` is atomic on POSIX), ``last_checkpoint`` is replaced the same
way, and only then are checkpoints that fell out of the ``max_keep_ckpts`` window deleted. The fault
injection points of ``zoo.engine.fault_injection`` sit between these steps.
"""

from __future__ import annotations

import io
import os
import os.path as osp

from . import fault_injection as fi

_done = False


def _is_local(path: str) -> bool:
    return '://' not in str(path)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(osp.dirname(osp.abspath(path)) or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` through ``path + '.tmp'`` and an atomic rename (fault point
    ``partial`` after half of the bytes are on disk)."""
    tmp = f'{path}.tmp'
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(tmp, 'wb') as f:
        half = len(data) // 2
        f.write(data[:half])
        f.flush()
        fi.fault_point('partial', f'({half} of {len(data)} bytes of {osp.basename(path)} written)')
        f.write(data[half:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path)


def atomic_save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None) -> None:
    """``mmengine.runner.checkpoint.save_checkpoint`` with an atomic write for local files."""
    if file_client_args is not None or backend_args is not None or not _is_local(filename):
        return _original_save(checkpoint, filename, file_client_args=file_client_args, backend_args=backend_args)
    import torch

    with io.BytesIO() as buf:
        torch.save(checkpoint, buf)
        atomic_write_bytes(buf.getvalue(), str(filename))


def _save_then_prune(self, runner, step, meta) -> None:
    """``CheckpointHook._save_checkpoint_with_step``: save, point ``last_checkpoint`` at it, prune."""
    from mmengine.dist import is_main_process

    keep = self.max_keep_ckpts
    stale = []
    if keep > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
        if len(self.keep_ckpt_ids) == keep:
            stale.append(self.keep_ckpt_ids.popleft())
        self.keep_ckpt_ids.append(step)
        # recorded before saving, as mmengine does, so a resumed run knows the window
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
    ckpt_filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)
    fi.begin_checkpoint_save()
    try:
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return
        fi.fault_point('written', f'({ckpt_filename} complete, last_checkpoint not updated)')
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        atomic_write_bytes(str(self.last_ckpt).encode(), pointer)
        fi.fault_point('pointed', f'(last_checkpoint -> {ckpt_filename}, old checkpoints not pruned)')
    finally:
        fi.end_checkpoint_save()
    for old in stale:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)


_original_save = None


def save_checkpoints_before_pruning() -> None:
    """Patch ``CheckpointHook`` and the Runner's checkpoint writer as described above (idempotent)."""
    global _done, _original_save
    if not _done:
        import mmengine.runner.runner as runner_module
        from mmengine.hooks import CheckpointHook

        _original_save = runner_module.save_checkpoint
        runner_module.save_checkpoint = atomic_save_checkpoint
        CheckpointHook._save_checkpoint_with_step = _save_then_prune
        _done = True
