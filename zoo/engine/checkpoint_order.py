"""Crash-safe checkpoint rotation for mmengine's ``CheckpointHook``.

With ``max_keep_ckpts``, mmengine 0.10.7 deletes the oldest kept checkpoint *before* it writes the
new one and before ``last_checkpoint`` points at it: a crash (or ``kill -9``) in between leaves
``last_checkpoint`` naming a deleted file, and ``--resume`` has nothing to resume from (seen in the
kill-9 test). The zoo keeps mmengine's bookkeeping but reorders it: write the new checkpoint,
update ``last_checkpoint``, and only then delete the checkpoints that fell out of the window.
"""

from __future__ import annotations

_done = False


def _save_then_prune(self, runner, step, meta) -> None:
    from mmengine.dist import is_main_process

    keep = self.max_keep_ckpts
    stale = []
    if keep > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
        if len(self.keep_ckpt_ids) == keep:
            stale.append(self.keep_ckpt_ids.popleft())
        self.keep_ckpt_ids.append(step)
        # recorded before saving, as mmengine does, so a resumed run knows the window
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
    self.max_keep_ckpts = -1  # the original then only saves and writes last_checkpoint
    try:
        _original(self, runner, step, meta)
    finally:
        self.max_keep_ckpts = keep
    if not is_main_process():
        return
    for old in stale:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)


_original = None


def save_checkpoints_before_pruning() -> None:
    """Patch ``CheckpointHook`` to write new checkpoints before deleting old ones (idempotent)."""
    global _done, _original
    if not _done:
        from mmengine.hooks import CheckpointHook

        _original = CheckpointHook._save_checkpoint_with_step
        CheckpointHook._save_checkpoint_with_step = _save_then_prune
        _done = True
