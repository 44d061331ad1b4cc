"""Resuming mmengine Runner checkpoints with weights_only=True."""
import contextlib
import copy
import os
import os.path as osp
import pickle
import warnings

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn
from torch.utils.data import Dataset

from sera_mm.utils import (checkpoint_safe_globals,
                           register_checkpoint_safe_globals)
from sera_mm.utils.checkpoint import history_buffer_getattr


class ToyModel(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out - data_samples)**2).mean())
        return out


class ToyDataset(Dataset):
    metainfo = dict(classes=('thing', ))

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(8, 3, generator=g)
        self.y = torch.randn(8, 1, generator=g)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


class CaptureHook(Hook):
    """Copies the runner's state when training starts (after resuming)."""

    def before_train(self, runner) -> None:
        self.iter = runner.iter
        self.model = copy.deepcopy(runner.model.state_dict())
        self.optim = copy.deepcopy(runner.optim_wrapper.state_dict())
        self.scheduler = [s.state_dict() for s in runner.param_schedulers]
        self.loss_history = runner.message_hub.get_scalar(
            'train/loss').data[0].copy()


def make_runner(work_dir, name, max_iters, **kwargs) -> Runner:
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='Adam', lr=1e-2)),
        param_scheduler=dict(
            type='MultiStepLR', milestones=[1], gamma=0.1, by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        default_scope='mmengine',
        **kwargs)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A toy Runner trained 2 iterations, and its saved checkpoint."""
    register_checkpoint_safe_globals()
    work_dir = tmp_path_factory.mktemp('toy_runner')
    runner = make_runner(work_dir, 'ckpt_train', max_iters=2)
    runner.train()
    ckpt = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt)
    return runner, ckpt


@pytest.mark.integration
def test_resume_restores_state_exactly(trained, tmp_path, monkeypatch):
    runner, ckpt = trained
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    loads = []
    real_load = torch.load

    def spy_load(*args, **kwargs):
        loads.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy_load)
    capture = CaptureHook()
    # max_iters 2: resumed at iteration 2, the loop trains no further.
    resumed = make_runner(tmp_path, 'ckpt_resume', max_iters=2,
                          load_from=ckpt, resume=True,
                          custom_hooks=[capture])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        resumed.train()
    assert not [w for w in caught if 'weights_only' in str(w.message)]
    # mmengine asked torch.load for its default, weights_only=True.
    assert loads and all(w in (None, True) for w in loads)

    assert capture.iter == 2 == runner.iter
    for key, value in runner.model.state_dict().items():
        assert torch.equal(capture.model[key], value), key
    saved = runner.optim_wrapper.state_dict()
    assert saved['state'], 'Adam has no state after 2 iterations'
    for idx, state in saved['state'].items():
        for key in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(capture.optim['state'][idx][key],
                               state[key]), (idx, key)
    assert capture.optim['param_groups'][0]['lr'] == pytest.approx(1e-3)
    assert capture.scheduler == [s.state_dict()
                                 for s in runner.param_schedulers]
    assert (capture.loss_history == runner.message_hub.get_scalar(
        'train/loss').data[0]).all()
    assert len(capture.loss_history) == 2


@contextlib.contextmanager
def only_safe_globals(entries):
    """Temporarily replaces the user allow-list of torch.load by entries."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(list(entries))
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def entry_name(entry) -> str:
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


@pytest.mark.integration
def test_allow_list_is_exactly_what_checkpoint_needs(trained):
    _, ckpt = trained
    entries = checkpoint_safe_globals()
    with only_safe_globals([]):
        unsafe = set(
            torch.serialization.get_unsafe_globals_in_checkpoint(ckpt))
        # Without the allow-list, weights_only loading refuses it.
        with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
            _load_checkpoint(ckpt, map_location='cpu')
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe
    assert unsafe <= {entry_name(e) for e in entries}
    # Every entry is needed: without it the checkpoint does not load. The
    # numpy 1 aliases are the exception (this checkpoint uses numpy 2 names).
    needed = [e for e in entries
              if not entry_name(e).startswith('numpy.core.')]
    assert len(needed) >= 8
    for drop in needed:
        with only_safe_globals([e for e in entries if e is not drop]):
            with pytest.raises(pickle.UnpicklingError):
                _load_checkpoint(ckpt, map_location='cpu')
    with only_safe_globals(entries):
        assert _load_checkpoint(ckpt, map_location='cpu')['meta']['iter'] == 2


def test_getattr_only_for_history_buffer_methods(tmp_path):
    from mmengine.logging import HistoryBuffer
    register_checkpoint_safe_globals()
    assert history_buffer_getattr(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    for owner, name in [(HistoryBuffer, 'update'), (HistoryBuffer,
                                                    '__init__'),
                        (torch.Tensor, 'mean'), (os, 'system')]:
        with pytest.raises(pickle.UnpicklingError, match='Refused getattr'):
            history_buffer_getattr(owner, name)
    # A checkpoint asking for another attribute through getattr.
    path = tmp_path / 'getattr.pth'
    torch.save(dict(meta=dict(f=GetsAttr())), path)
    with pytest.raises(pickle.UnpicklingError, match='Refused getattr'):
        _load_checkpoint(str(path), map_location='cpu')


def test_register_is_idempotent():
    register_checkpoint_safe_globals()
    before = set(torch.serialization.get_safe_globals())
    assert {entry_name(e) for e in checkpoint_safe_globals()} <= \
        {entry_name(e) for e in before}
    register_checkpoint_safe_globals()
    after = torch.serialization.get_safe_globals()
    assert set(after) == before and len(after) == len(before)


class Arbitrary:
    """A class nobody allow-listed."""

    def __init__(self) -> None:
        self.x = 1


class GetsAttr:
    """Pickled as getattr(HistoryBuffer, 'update')."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return getattr, (HistoryBuffer, 'update')


class RunsCode:
    """Unpickling this object would run a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_other_globals_still_refused(tmp_path):
    register_checkpoint_safe_globals()
    marker = tmp_path / 'pwned'
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=dict(x=RunsCode(str(marker)))), evil)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        _load_checkpoint(str(evil), map_location='cpu')
    assert not marker.exists()

    odd = tmp_path / 'odd.pth'
    torch.save(dict(state_dict={}, meta=dict(x=Arbitrary())), odd)
    with pytest.raises(pickle.UnpicklingError, match='Arbitrary'):
        _load_checkpoint(str(odd), map_location='cpu')
