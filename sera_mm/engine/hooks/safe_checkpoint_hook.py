"""A CheckpointHook after which a kill never leaves the work dir without a
loadable checkpoint."""
import contextlib
import os.path as osp
from typing import Callable, Iterator, List, Optional, Set

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook

from sera_mm.registry import HOOKS
from sera_mm.utils.atomic import atomic_write_text, remove_stale_temporaries

#: The file in the work dir that names the checkpoint ``--resume`` loads.
LAST_CHECKPOINT = 'last_checkpoint'
#: Message-hub key of the outdated checkpoints a save is about to remove.
PENDING_REMOVALS = 'pending_checkpoint_removals'


class _DeferredRemovals:
    """Stands in for the hook's file backend while a checkpoint is saved:
    ``remove`` and ``rmtree`` calls are queued, everything else is the
    backend's."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.queue: Optional[List[str]] = None  # paths, while a save runs

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def remove(self, path: str) -> None:
        """Queues ``path`` while saving, else removes it at once."""
        self._removal(self._backend.remove, path)

    def rmtree(self, path: str) -> None:
        """Queues the folder ``path`` while saving, else removes it at once."""
        self._removal(self._backend.rmtree, path)

    def _removal(self, remove: Callable[[str], None], path: str) -> None:
        if self.queue is None:
            remove(path)
        else:  # flush removes a file or a folder alike
            self.queue.append(path)

    def flush(self, keep: Set[Optional[str]]) -> None:
        """Runs the queued removals, except those of a path in ``keep``."""
        queue, self.queue = self.queue or [], None
        for path in queue:
            if path not in keep:
                self.remove_if_present(path)

    def remove_if_present(self, path: str) -> bool:
        """Removes the file or folder ``path`` now; returns whether there
        was one."""
        if self._backend.isfile(path):
            self._backend.remove(path)
        elif self._backend.isdir(path):
            self._backend.rmtree(path)  # checkpoints saved by DeepSpeed
        else:
            return False
        return True


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's :class:`~mmengine.hooks.CheckpointHook`, reordered so that
    a kill at any moment leaves a complete checkpoint that ``--resume`` finds.

    mmengine's hook removes the checkpoint that falls out of
    ``max_keep_ckpts`` and the previous best checkpoint *before* it writes
    the new one, and rewrites ``last_checkpoint`` in place; a kill in between
    leaves no best checkpoint, with ``max_keep_ckpts=1`` no checkpoint at all,
    or an empty ``last_checkpoint`` (then ``--resume`` silently starts from
    scratch). Here every save runs in this order:

    1. the new checkpoint is written (atomically with
       ``backend_args=dict(backend='atomic_local')``: see
       :mod:`sera_mm.utils.atomic`);
    2. ``last_checkpoint`` is replaced atomically to name it;
    3. only then are the outdated checkpoints removed.

    A save that raises removes nothing. :meth:`before_train` also removes the
    temporary files of writes that a kill interrupted. Arguments and
    behaviour otherwise are the parent's.
    """

    def before_train(self, runner) -> None:
        """Sets up the parent's file backend and output folder, then removes
        stale temporary files there and in the work dir (main process)."""
        super().before_train(runner)
        self.file_backend = _DeferredRemovals(self.file_backend)
        if is_main_process():
            # removals that a kill interrupted (recorded in the checkpoint
            # this run resumed from)
            for path in runner.message_hub.get_info(PENDING_REMOVALS, []):
                if path not in self._named_files() and self.file_backend.remove_if_present(path):
                    runner.logger.info(f'Removed the outdated checkpoint {path}, '
                                       'whose removal a kill had interrupted')
            folders = {osp.abspath(runner.work_dir)}
            if osp.isdir(str(self.out_dir)):
                folders.add(osp.abspath(str(self.out_dir)))
            for folder in sorted(folders):
                for path in remove_stale_temporaries(folder):
                    runner.logger.warning(
                        f'Removed {path}: the temporary file of a checkpoint write that '
                        'was interrupted (e.g. by a kill)')

    @contextlib.contextmanager
    def _removals_after_save(self) -> Iterator[None]:
        """Queues the removals of the block; runs them when the outermost
        block completes, sparing the files the hook still names."""
        outermost = self.file_backend.queue is None
        if outermost:
            self.file_backend.queue = []
        try:
            yield
        except BaseException:
            if outermost:
                self.file_backend.queue = None
            raise
        if outermost:
            self.file_backend.flush(self._named_files())

    def _named_files(self) -> Set[Optional[str]]:
        """The latest and the best checkpoints: never removed."""
        return {self.last_ckpt, getattr(self, 'best_ckpt_path', None),
                *getattr(self, 'best_ckpt_path_dict', {}).values()}

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        """Saves ``epoch_{step}.pth`` (or ``iter_``), names it in
        ``last_checkpoint``, then removes the one beyond ``max_keep_ckpts``.

        Called by the parent's :meth:`_save_checkpoint` and, after a new best
        score, by :meth:`_save_best_checkpoint`.
        """
        with self._removals_after_save():
            if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                                and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    outdated = self.keep_ckpt_ids.popleft()
                    if is_main_process():
                        self.file_backend.remove(self.file_backend.join_path(
                            self.out_dir, self.filename_tmpl.format(outdated)))
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

            filename = self.filename_tmpl.format(step)
            self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
            runner.message_hub.update_info('last_ckpt', self.last_ckpt)
            # the checkpoint records what is to be removed after it is
            # written, so that a run resumed after a kill removes it
            runner.message_hub.update_info(
                PENDING_REMOVALS, list(self.file_backend.queue))
            runner.save_checkpoint(
                self.out_dir, filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args,
                **self.args)
            if is_main_process():
                atomic_write_text(osp.join(runner.work_dir, LAST_CHECKPOINT),
                                  str(self.last_ckpt))

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        """The parent's best-checkpoint logic; the previous best file is
        removed only after the new one (and the regular checkpoint that
        records it) is written."""
        with self._removals_after_save():
            super()._save_best_checkpoint(runner, metrics)
