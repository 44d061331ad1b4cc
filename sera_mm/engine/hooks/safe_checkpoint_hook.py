"""A CheckpointHook after which a kill never leaves the work dir without a
loadable checkpoint."""
import contextlib
import glob
import os.path as osp
from typing import ContextManager, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from sera_mm.registry import HOOKS
from sera_mm.utils.atomic import AtomicLocalBackend, atomic_write_text, remove_stale_temporaries

#: The checkpoint meta key of the removals that follow its save.
PENDING_REMOVALS = 'pending_checkpoint_removals'


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook on the ``'atomic_local'`` file backend, whose
    removals wait until the saves of the hook call are complete.

    mmengine 0.10.7 removes the checkpoint beyond ``max_keep_ckpts`` and the
    previous best one before it writes the new one; a kill in between leaves
    no best checkpoint, with ``max_keep_ckpts=1`` none at all. Here the
    outdated files go only when the hook call returns
    (:meth:`AtomicLocalBackend.hold_removals`); a checkpoint records the
    removals that follow it, so a run resumed after a kill among them
    finishes them, and temporary files of killed writes go when training
    starts. Arguments are the parent's; ``backend_args`` must name
    ``'atomic_local'`` (the default).
    """

    def __init__(self, *args, backend_args: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, backend_args=backend_args or dict(backend='atomic_local'),
                         **kwargs)
        self.pending: list = []

    def before_run(self, runner) -> None:
        """Names the newest checkpoint in an empty ``last_checkpoint`` (the
        trace of a kill during mmengine's in-place write of it), so that
        ``--resume`` finds it."""
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        if is_main_process() and osp.isfile(pointer) and not osp.getsize(pointer):
            saved = glob.glob(osp.join(runner.work_dir, glob.escape(
                self.filename_tmpl).replace('{}', '*')))
            if saved:
                atomic_write_text(pointer, max(saved, key=osp.getmtime))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keeps the removals the loaded checkpoint records (see before_train)."""
        self.pending = checkpoint.get('meta', {}).get(PENDING_REMOVALS, [])

    def before_train(self, runner) -> None:
        """The parent's set-up; then, on the main process, finishes the
        removals a kill interrupted and removes the temporary files of killed
        writes, saying so in the log."""
        super().before_train(runner)
        if not isinstance(self.file_backend, AtomicLocalBackend):
            raise TypeError(
                f'default_hooks.checkpoint.backend_args={self.backend_args!r}: '
                "SafeCheckpointHook needs backend_args=dict(backend='atomic_local')")
        if not is_main_process():
            return
        named = {runner.message_hub.get_info('last_ckpt'), getattr(self, 'best_ckpt_path', None),
                 *getattr(self, 'best_ckpt_path_dict', {}).values()}
        for path in self.pending:
            if path not in named and osp.dirname(path) == self.out_dir and osp.exists(path):
                self.file_backend.remove(path)
                runner.logger.info(f'Removed the outdated checkpoint {path}, '
                                   'whose removal a kill had interrupted')
        for folder in sorted({runner.work_dir, self.out_dir}):
            for path in remove_stale_temporaries(folder):
                runner.logger.warning(f'Removed {path}: the temporary file of a checkpoint '
                                      'write that was interrupted (e.g. by a kill)')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Records the removals that follow this save in its meta."""
        held = getattr(getattr(self, 'file_backend', None), 'held', None) or []
        checkpoint['meta'][PENDING_REMOVALS] = [path for path, _ in held]

    def _removals_after(self) -> ContextManager:
        backend = getattr(self, 'file_backend', None)  # set by before_train
        return backend.hold_removals() if isinstance(
            backend, AtomicLocalBackend) else contextlib.nullcontext()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """The parent's save, removals after it."""
        with self._removals_after():
            super().after_train_iter(runner, batch_idx, data_batch, outputs)

    def after_train_epoch(self, runner) -> None:
        """The parent's save, removals after it."""
        with self._removals_after():
            super().after_train_epoch(runner)

    def after_val_epoch(self, runner, metrics: dict) -> None:
        """The parent's best-checkpoint save, removals after it."""
        with self._removals_after():
            super().after_val_epoch(runner, metrics)
