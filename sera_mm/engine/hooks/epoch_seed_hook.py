"""Makes each training epoch's randomness a function of (seed, epoch), so
that a resumed run continues exactly as the uninterrupted one."""
from typing import Iterator, Optional

import numpy as np
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner.utils import set_random_seed
from torch.utils.data import Dataset

from sera_mm.registry import HOOKS

# two streams per epoch: one seeds the start of the epoch (the main process's
# data loading, when num_workers=0), one its first training step
_EPOCH_START, _FIRST_STEP = 0, 1


def _nested_datasets(dataset: Dataset) -> Iterator[Dataset]:
    """Yields ``dataset`` and the datasets it wraps (ConcatDataset,
    RepeatDataset, ClassBalancedDataset), depth first."""
    yield dataset
    for inner in getattr(dataset, 'datasets', ()):
        yield from _nested_datasets(inner)
    inner = getattr(dataset, 'dataset', None)
    if isinstance(inner, Dataset):
        yield from _nested_datasets(inner)


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Derives every training epoch's random state from (seed, epoch).

    mmengine seeds the generators once, when the runner is built; a run
    resumed after epoch N therefore starts epoch N + 1 from the seed's
    state, not from where the uninterrupted run was (after N epochs of
    router noise, dropout and sentence draws), and its weights drift apart.
    Saving the generators in the checkpoint is not enough either: between
    the save and the next epoch the validation and persistent dataloader
    workers draw differently in the two runs. This hook makes the state a
    function of the runner's seed and the epoch instead:

    - before each training epoch it calls ``set_epoch(epoch, seed)`` on the
      training dataset and every dataset it wraps that has one
      (:class:`~sera_mm.datasets.RefCOCODataset`: the sentence draw and the
      pipeline's random state in the workers), and seeds the global
      generators (data loading in the main process);
    - before the epoch's first training step it seeds them again (router
      noise, dropout), after the data loader has drawn its worker seeds.

    The seed is ``runner.seed`` (the resumed checkpoint's when resuming),
    plus the rank when ``randomness.diff_rank_seed`` is set. With it, N
    epochs straight and N/2 + ``--resume`` + N/2 give the same weights on
    the CPU.
    """

    priority = 'ABOVE_NORMAL'

    @staticmethod
    def _run_seed(runner) -> int:
        return int(runner.seed) if runner.seed is not None else 0

    def _seed(self, runner, stream: int) -> int:
        rank = get_rank() if runner._randomness_cfg.get('diff_rank_seed', False) else 0
        state = np.random.SeedSequence(
            [self._run_seed(runner), runner.epoch, rank, stream]).generate_state(1)
        return int(state[0])

    def before_train_epoch(self, runner) -> None:
        """Sets the datasets' epoch and seeds the generators for the epoch's
        data loading."""
        for dataset in _nested_datasets(runner.train_dataloader.dataset):
            set_epoch = getattr(dataset, 'set_epoch', None)
            if callable(set_epoch):
                set_epoch(runner.epoch, self._run_seed(runner))
        set_random_seed(self._seed(runner, _EPOCH_START))

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Seeds the generators before the epoch's first training step."""
        if batch_idx == 0:
            set_random_seed(self._seed(runner, _FIRST_STEP))
