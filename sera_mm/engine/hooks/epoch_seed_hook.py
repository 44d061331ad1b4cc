"""Makes each training epoch's randomness a function of (seed, epoch), so
that a resumed run continues exactly as the uninterrupted one."""
from typing import Iterator, Optional

import numpy as np
from mmengine.hooks import Hook
from mmengine.runner.utils import set_random_seed
from torch.utils.data import Dataset

from sera_mm.registry import HOOKS

# Two streams per epoch: the start of the epoch (data loading in the main
# process) and its first step. The leading 0 stood for the rank, which
# runner.seed carries now (randomness.diff_rank_seed); kept so that earlier
# runs' seeds stay the same.
_EPOCH_START, _FIRST_STEP = (0, 0), (0, 1)


def _nested_datasets(dataset: Dataset) -> Iterator[Dataset]:
    """Yields ``dataset`` and the datasets it wraps, depth first."""
    yield dataset
    for inner in getattr(dataset, 'datasets', ()):
        yield from _nested_datasets(inner)
    inner = getattr(dataset, 'dataset', None)
    if isinstance(inner, Dataset):
        yield from _nested_datasets(inner)


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Derives every training epoch's random state from (seed, epoch).

    mmengine seeds the generators once, when the runner is built, so a run
    resumed after epoch N would start epoch N + 1 from the seed's state
    (saving the generators is not enough: validation and persistent workers
    draw in between). Before each training epoch this hook calls
    ``set_epoch(epoch, seed)`` on the training dataset and every dataset it
    wraps that has one, and seeds the global generators; before the epoch's
    first step (after the loader drew its worker seeds) it seeds them again
    (router noise, dropout). The seed is ``runner.seed`` (the resumed
    checkpoint's; per rank with ``randomness.diff_rank_seed``).
    """

    priority = 'ABOVE_NORMAL'

    @staticmethod
    def _seed(runner, stream: tuple) -> int:
        return int(np.random.SeedSequence(
            [runner.seed or 0, runner.epoch, *stream]).generate_state(1)[0])

    def before_train_epoch(self, runner) -> None:
        """Sets the datasets' epoch and seeds the epoch's data loading."""
        for dataset in _nested_datasets(runner.train_dataloader.dataset):
            if callable(getattr(dataset, 'set_epoch', None)):
                dataset.set_epoch(runner.epoch, runner.seed or 0)
        set_random_seed(self._seed(runner, _EPOCH_START))

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        """Seeds the generators before the epoch's first training step."""
        if batch_idx == 0:
            set_random_seed(self._seed(runner, _FIRST_STEP))
