"""FiniteCheckHook: a NaN/Inf loss stops the training naming the iteration
and the last good checkpoint; NaN/Inf weights are never saved; a tested
checkpoint with NaN/Inf weights or logits is warned about by name."""
import logging
import math
import os
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn
from torch.utils.data import Dataset

import sera_mm.engine  # noqa: F401  (registers the hook)
from sera_mm.engine.hooks import FiniteCheckHook
from sera_mm.engine.hooks.finite_check_hook import (NonFiniteLossError, NonFiniteWeightsError,
                                                    last_good_checkpoint, nonfinite_tensors)


class ToyModel(BaseModel):
    """One linear layer; predict mode gives SegDataSamples with seg_logits."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out - 1) ** 2).mean(), loss_aux=out.abs().mean())
        if mode == 'predict':
            return [SegDataSample(seg_logits=PixelData(data=o.view(1, 1, 1).expand(1, 2, 2)))
                    for o in out]
        return out


class ToyData(Dataset):
    metainfo = dict(classes=('x', ))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i + 1)))  # > 0: inf weights give inf


class PoisonAt(Hook):
    """Sets the weights to NaN after iteration ``at`` (1-based), as a
    diverged optimizer step would; runs after the checkpoint hook."""
    priority = 'LOWEST'

    def __init__(self, at, value=float('nan')):
        self.at, self.value = at, value

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            with torch.no_grad():
                runner.model.linear.weight.fill_(self.value)


def _runner(tmp_path, max_iters=6, checkpoint_interval=2, **kwargs):
    return Runner(
        model=ToyModel(), work_dir=str(tmp_path),
        # mmengine adds only the second to the name: unique per test, or two
        # runners in one second share a MessageHub (and its best score)
        experiment_name=f'finite_{tmp_path.parent.name}_{tmp_path.name}',
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler',
                                                              shuffle=False),
                              collate_fn=dict(type='default_collate'), batch_size=2,
                              num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=checkpoint_interval,
                                           by_epoch=False)),
        custom_hooks=[dict(type='FiniteCheckHook')],
        default_scope='sera_mm', **kwargs)


def test_nonfinite_tensors_names_counts_and_kinds():
    state = dict(a=torch.zeros(4), b=torch.tensor([1.0, math.nan, math.inf, 2.0]),
                 c=torch.tensor([math.inf]), steps=torch.tensor(3), note='x')
    assert nonfinite_tensors(state) == [('b', 2, 4, 'NaN and Inf'), ('c', 1, 1, 'Inf')]


def test_last_good_checkpoint_reads_last_checkpoint_then_the_newest(tmp_path):
    assert last_good_checkpoint(str(tmp_path)) is None
    old, new = tmp_path / 'epoch_1.pth', tmp_path / 'epoch_2.pth'
    old.write_bytes(b'1')
    new.write_bytes(b'2')
    os.utime(old, (1, 1))
    assert last_good_checkpoint(str(tmp_path)) == str(new)
    (tmp_path / 'last_checkpoint').write_text(str(old))
    assert last_good_checkpoint(str(tmp_path)) == str(old)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'gone.pth'))
    assert last_good_checkpoint(str(tmp_path)) == str(new)


@pytest.mark.integration  # trains with the mmengine Runner
@pytest.mark.parametrize('value, kind', [(float('nan'), 'NaN'), (float('inf'), 'Inf')])
def test_nonfinite_loss_stops_naming_iteration_and_last_checkpoint(tmp_path, value, kind):
    runner = _runner(tmp_path)
    runner.register_hook(PoisonAt(3, value))
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    # weights poisoned after iteration 3: the loss of iteration 4 is not finite
    assert f'loss is {kind} at iteration 4' in message, message
    assert 'training stopped' in message
    assert f'the last good checkpoint is {tmp_path / "iter_2.pth"}' in message, message
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) == ['iter_2.pth']
    saved = torch.load(tmp_path / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert not nonfinite_tensors(saved['state_dict'])


@pytest.mark.integration
def test_nonfinite_weights_are_never_saved(tmp_path):
    """Poisoned right before a save (the step's loss was still finite): the
    checkpoint is refused, naming the tensor, and the earlier one named."""
    runner = _runner(tmp_path, checkpoint_interval=2)

    class PoisonBeforeSave(Hook):
        priority = 'LOW'  # after FiniteCheckHook's loss check, before the checkpoint

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter + 1 == 4:
                with torch.no_grad():
                    runner.model.linear.bias.fill_(float('nan'))
    runner.register_hook(PoisonBeforeSave())
    with pytest.raises(NonFiniteWeightsError) as info:
        runner.train()
    message = str(info.value)
    assert 'linear.bias (1 of 1 NaN)' in message and 'not saving them' in message, message
    assert str(tmp_path / 'iter_2.pth') in message
    assert not osp.exists(tmp_path / 'iter_4.pth')


@pytest.mark.integration
def test_training_from_nonfinite_weights_stops_before_the_first_step(tmp_path):
    bad = tmp_path / 'bad.pth'
    model = ToyModel()
    with torch.no_grad():
        model.linear.weight.fill_(float('nan'))
    torch.save(dict(state_dict=model.state_dict()), bad)
    runner = _runner(tmp_path / 'work', load_from=str(bad))
    with pytest.raises(NonFiniteWeightsError, match=f'checkpoint {bad}: 1 of 2 weight tensors'):
        runner.train()
    assert runner.iter == 0


def _test_runner(tmp_path, checkpoint):
    from mmengine.evaluator import BaseMetric

    class Zero(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results.extend(0 for _ in data_samples)

        def compute_metrics(self, results):
            return dict(score=0.0)
    return Runner(
        model=ToyModel(), work_dir=str(tmp_path),
        experiment_name=f'finite_test_{tmp_path.parent.name}',
        test_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=False),
                             collate_fn=dict(type='default_collate'), batch_size=4,
                             num_workers=0),
        test_cfg=dict(type='TestLoop'), test_evaluator=Zero(), load_from=checkpoint,
        custom_hooks=[dict(type='FiniteCheckHook')], default_scope='sera_mm')


@pytest.fixture
def warnings_logged(monkeypatch):
    """The warnings FiniteCheckHook logs, as a list of messages."""
    from sera_mm.engine.hooks import finite_check_hook
    logged = []

    def record(message, logger=None, level=logging.INFO):
        if level >= logging.WARNING:
            logged.append(message)
    monkeypatch.setattr(finite_check_hook, 'print_log', record)
    return logged


@pytest.mark.integration
def test_test_of_nonfinite_checkpoint_warns_naming_it(tmp_path, warnings_logged):
    model = ToyModel()
    with torch.no_grad():
        model.linear.weight[0, 1] = float('nan')
    checkpoint = str(tmp_path / 'nan.pth')
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    _test_runner(tmp_path / 'work', checkpoint).test()
    weights = [w for w in warnings_logged if 'weight tensors hold NaN or Inf' in w]
    assert weights and f'checkpoint {checkpoint}' in weights[0] and \
        'linear.weight (1 of 2 NaN)' in weights[0], warnings_logged
    logits = [w for w in warnings_logged if 'mask logits' in w]
    assert logits and '8 of 8 samples have NaN or Inf mask logits' in logits[0] and \
        checkpoint in logits[0], warnings_logged


@pytest.mark.integration
def test_test_of_finite_checkpoint_says_nothing(tmp_path, warnings_logged):
    checkpoint = str(tmp_path / 'ok.pth')
    torch.save(dict(state_dict=ToyModel().state_dict()), checkpoint)
    _test_runner(tmp_path / 'work', checkpoint).test()
    assert warnings_logged == []


def test_hook_is_in_the_default_runtime():
    from mmengine.config import Config

    from helpers.paths import REPO
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'default_runtime.py'))
    assert cfg.default_hooks.finite_check.type == 'FiniteCheckHook'
    assert FiniteCheckHook.priority == 'VERY_HIGH'
