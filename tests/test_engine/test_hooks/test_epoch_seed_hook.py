"""EpochSeedHook: the generators' state at the start of an epoch and at its
first step is a function of (seed, epoch), whatever was drawn before; the
datasets (wrapped ones too) learn the epoch."""
import random
from types import SimpleNamespace

import numpy as np
import torch
from mmengine.dataset import BaseDataset, ConcatDataset, RepeatDataset

from sera_mm.engine.hooks import EpochSeedHook


class EpochAware(BaseDataset):

    def __init__(self):
        super().__init__(lazy_init=True)
        self.epochs = []

    def load_data_list(self):
        return [dict()]

    def set_epoch(self, epoch, seed):
        self.epochs.append((epoch, seed))


def _runner(epoch, seed=5, dataset=None):
    dataset = dataset or ConcatDataset([EpochAware(), EpochAware()], lazy_init=True)
    return SimpleNamespace(epoch=epoch, seed=seed,
                           train_dataloader=SimpleNamespace(dataset=dataset))


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_state_depends_on_seed_and_epoch_only():
    hook = EpochSeedHook()
    results = {}
    for run in range(2):
        # a different history before the epoch (e.g. a resumed run)
        torch.rand(17 + run)
        np.random.rand(3 * run + 1)
        for epoch in (3, 4):
            runner = _runner(epoch)
            hook.before_train_epoch(runner)
            at_start = _draws()
            _draws()  # the data loader's draws differ between runs
            if run:
                torch.rand(5)
            hook.before_train_iter(runner, batch_idx=0)
            at_step = _draws()
            hook.before_train_iter(runner, batch_idx=1)  # later steps: untouched
            results[run, epoch] = (at_start, at_step, _draws())
    assert results[0, 3] == results[1, 3]
    assert results[0, 4] == results[1, 4]
    assert results[0, 3] != results[0, 4]
    at_start, at_step, _ = results[0, 3]
    assert at_start != at_step

    hook.before_train_epoch(_runner(3, seed=6))
    assert _draws() != results[0, 3][0]


def test_every_wrapped_dataset_learns_the_epoch():
    leaves = [EpochAware(), EpochAware()]
    EpochSeedHook().before_train_epoch(
        _runner(2, seed=9, dataset=ConcatDataset(leaves, lazy_init=True)))
    assert [leaf.epochs for leaf in leaves] == [[(2, 9)], [(2, 9)]]
    leaf = EpochAware()
    EpochSeedHook().before_train_epoch(
        _runner(4, seed=1, dataset=RepeatDataset(leaf, times=3, lazy_init=True)))
    assert leaf.epochs == [(4, 1)]
