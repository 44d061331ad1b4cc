"""FiniteCheckHook: a NaN/Inf loss stops the training, naming the iteration
and the last checkpoint, before the weights of that step are saved."""
import os
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import sera_mm.engine  # noqa: F401  (registers the hook)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=((out - 1) ** 2).mean(), loss_aux=out.abs().mean())


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i + 1)))  # > 0: inf weights give inf


class PoisonAt(Hook):
    """Sets the weights to ``value`` after iteration ``at`` (1-based), as a
    diverged optimizer step would; runs after the checkpoint hook."""
    priority = 'LOWEST'

    def __init__(self, at, value):
        self.at, self.value = at, value

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            with torch.no_grad():
                runner.model.linear.weight.fill_(self.value)


def _runner(tmp_path):
    return Runner(
        model=ToyModel(), work_dir=str(tmp_path),
        # unique per test: two runners in one second under one name share a MessageHub
        experiment_name=f'finite_{tmp_path.parent.name}_{tmp_path.name}',
        train_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler',
                                                              shuffle=False),
                              collate_fn=dict(type='default_collate'), batch_size=2,
                              num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=6),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        custom_hooks=[dict(type='FiniteCheckHook')], default_scope='sera_mm')


@pytest.mark.integration  # trains with the mmengine Runner
@pytest.mark.parametrize('value, kind', [(float('nan'), 'nan'), (float('inf'), 'inf')])
def test_nonfinite_loss_stops_naming_iteration_and_last_checkpoint(tmp_path, value, kind):
    runner = _runner(tmp_path)
    runner.register_hook(PoisonAt(4, value))
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    message = str(info.value)
    # weights poisoned after iteration 4 (after its checkpoint): the loss of 5 is not finite
    assert message.startswith(f'loss is {kind} at iteration 5: training stopped'), message
    assert f'The last checkpoint is {tmp_path / "iter_4.pth"}' in message, message
    # iteration 6 would have been saved: the run stopped at 5
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) == \
        ['iter_2.pth', 'iter_4.pth']


@pytest.mark.integration
def test_nonfinite_loss_before_any_checkpoint_says_so(tmp_path):
    runner = _runner(tmp_path)
    runner.register_hook(PoisonAt(1, float('nan')))
    with pytest.raises(FloatingPointError, match='at iteration 2: .*No checkpoint was saved'):
        runner.train()
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.pth')]


def test_hook_is_in_the_default_runtime():
    from mmengine.config import Config

    from helpers.paths import REPO
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'default_runtime.py'))
    assert cfg.default_hooks.finite_check.type == 'FiniteCheckHook'
