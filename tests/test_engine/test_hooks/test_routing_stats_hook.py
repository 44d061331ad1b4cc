"""RoutingStatsHook in a real mmengine Runner, and on its eval path."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmseg.structures import SegDataSample
from torch import nn
from torch.utils.data import Dataset

import sera_mm.engine  # noqa: F401  (registers the hook)
from sera_mm.engine.hooks import RoutingStatsHook
from sera_mm.models.fusion import SERAFusion
from sera_mm.models.utils import RoutingResult
from helpers.forced_routing import ForcedRouter, roll_experts

EXPERTS = ['spatial', 'context', 'boundary', 'shape']
# Forced Top-2 decisions of level 0, one table per iteration (batches of 2);
# level 1 uses the same tables with the expert columns rolled by one.
LEVEL0 = [
    [[0.75, 0.25, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0]],
    [[0.25, 0.75, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]],
    [[0.0, 0.5, 0.0, 0.5], [0.0, 0.0, 0.25, 0.75]],
    [[0.0, 0.25, 0.75, 0.0], [0.0, 0.5, 0.0, 0.5]],
]
# By hand, per window of two iterations (4 samples): (freq, mean weight).
WINDOW_12 = ([0.75, 0.5, 0.5, 0.25], [0.375, 0.25, 0.25, 0.125])
WINDOW_34 = ([0.0, 0.75, 0.5, 0.75], [0.0, 0.3125, 0.25, 0.4375])
# tables 1 and 2 (0-based), what the eval test sees
WINDOW_23 = ([0.25, 0.5, 0.5, 0.75], [0.0625, 0.3125, 0.1875, 0.4375])
# Forced soft decisions of the one adapter-like router, per iteration.
ADAPTER = [[[1.0, 0.0], [0.5, 0.5]], [[0.75, 0.25], [0.25, 0.75]],
           [[0.5, 0.5], [0.5, 0.5]], [[0.0, 1.0], [0.125, 0.875]]]
ADAPTER_12 = ([1.0, 0.75], [0.625, 0.375])
ADAPTER_34 = ([0.75, 1.0], [0.28125, 0.71875])
ADAPTER_23 = ([1.0, 1.0], [0.5, 0.5])


class ToyRoutedModel(BaseModel):
    """Two real SERA-Fusion levels with forced routers and one forced soft
    router, whose routing comes out as ReferringSegmentor's does: each
    expert's usage in the losses, a ``routing`` field per prediction."""

    def __init__(self) -> None:
        super().__init__()
        self.neck = nn.Module()
        self.neck.fusions = nn.ModuleList(SERAFusion(8) for _ in range(2))
        for level, fusion in enumerate(self.neck.fusions):
            fusion.router = ForcedRouter(roll_experts(LEVEL0, level), top_k=True)
        self.adapter = ForcedRouter(ADAPTER, top_k=False)

    def router_experts(self) -> dict:
        return {'fusion.level0': EXPERTS, 'fusion.level1': EXPERTS,
                'adapter': ['spatial', 'boundary']}

    def forward(self, inputs, data_samples=None, mode='tensor'):
        outs, routings = [], dict(adapter=self.adapter(inputs))
        for level, fusion in enumerate(self.neck.fusions):
            out, routings[f'fusion.level{level}'] = fusion(inputs)
            outs.append(out)
        if mode == 'loss':
            losses = dict(loss=sum(o.square().mean() for o in outs))
            for name, experts in self.router_experts().items():
                w = routings[name].weights.detach()
                for e, expert in enumerate(experts):
                    losses[f'routing/{name}.{expert}.freq'] = (w[:, e] > 0).float().mean()
                    losses[f'routing/{name}.{expert}.weight'] = w[:, e].mean()
            return losses
        rows = [{name: RoutingResult(*(None if t is None else t[i] for t in r))
                 for name, r in routings.items()} for i in range(len(inputs))]
        return [SegDataSample(routing=row) for row in rows]


class ToyDataset(Dataset):

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.randn(8, 4, 4, generator=torch.Generator().manual_seed(i)))


def expected_scalars(mode: str, level0_window, adapter_window) -> dict:
    """``{message hub key: value}`` of one published window."""
    out = {}
    for level in range(2):
        freq, weight = (roll_experts(v, level) for v in level0_window)
        for e, name in enumerate(EXPERTS):
            out[f'{mode}/routing/fusion.level{level}.{name}.freq'] = freq[e]
            out[f'{mode}/routing/fusion.level{level}.{name}.weight'] = weight[e]
    for e, name in enumerate(['spatial', 'boundary']):
        out[f'{mode}/routing/adapter.{name}.freq'] = adapter_window[0][e]
        out[f'{mode}/routing/adapter.{name}.weight'] = adapter_window[1][e]
    return out


@pytest.mark.integration  # trains with the mmengine Runner
def test_hook_publishes_train_windows_to_message_hub(tmp_path):
    runner = Runner(
        model=ToyRoutedModel(),
        work_dir=str(tmp_path),
        experiment_name='routing_stats_hook_train',
        train_dataloader=dict(dataset=ToyDataset(),
                              sampler=dict(type='DefaultSampler', shuffle=False),
                              collate_fn=dict(type='default_collate'),
                              batch_size=2, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=4),
        default_hooks=dict(checkpoint=None, logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RoutingStatsHook', interval=2)],
        default_scope='sera_mm')
    assert any(isinstance(h, RoutingStatsHook) for h in runner.hooks)
    runner.train()

    hub = runner.message_hub
    first = expected_scalars('train', WINDOW_12, ADAPTER_12)
    second = expected_scalars('train', WINDOW_34, ADAPTER_34)
    routing_keys = {k for k in hub.log_scalars if '/routing/' in k}
    assert routing_keys == set(first)
    for key in first:
        history, counts = hub.get_scalar(key).data
        # one value per window of two iterations: after iterations 2 and 4
        assert history.tolist() == [first[key], second[key]], key
        assert counts.tolist() == [1, 1]


class RecordingLogger:

    def __init__(self) -> None:
        self.messages = []

    def info(self, msg: str) -> None:
        self.messages.append(msg)


@pytest.mark.parametrize('mode', ['val', 'test'])
def test_hook_eval_epoch_uses_only_eval_batches(mode):
    # table 0 goes to a training step (not published: interval 50); the eval
    # epoch then sees tables 1 and 2, and only them
    model = ToyRoutedModel()
    hook = RoutingStatsHook(interval=50)
    runner = SimpleNamespace(model=model, iter=0, logger=RecordingLogger(),
                             message_hub=MessageHub.get_instance(f'routing_hook_{mode}'))
    x = torch.randn(2, 8, 4, 4)
    hook.before_train(runner)
    outputs = model(x, mode='loss')
    hook.after_train_iter(runner, 0, outputs=outputs)
    assert list(outputs) == ['loss']  # the hook took the routing usage
    assert not [k for k in runner.message_hub.log_scalars if '/routing/' in k]

    getattr(hook, f'before_{mode}_epoch')(runner)
    model.eval()
    with torch.no_grad():
        for i in range(2):
            getattr(hook, f'after_{mode}_iter')(runner, i, outputs=model(x, mode='predict'))
    getattr(hook, f'after_{mode}_epoch')(runner, metrics={})

    expected = expected_scalars(mode, WINDOW_23, ADAPTER_23)
    got = {k: runner.message_hub.get_scalar(k).current()
           for k in runner.message_hub.log_scalars if '/routing/' in k}
    assert got == expected
    assert len(runner.logger.messages) == 1
    table = runner.logger.messages[0]
    assert table.startswith(f'{mode} routing statistics')
    assert 'fusion.level1' in table and 'adapter' in table


def test_hook_leaves_a_model_without_routers_alone():
    hook = RoutingStatsHook(interval=1)
    runner = SimpleNamespace(model=nn.Linear(2, 2), iter=0, logger=RecordingLogger(),
                             message_hub=MessageHub.get_instance('routing_hook_none'))
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0)
    hook.after_val_epoch(runner)
    assert not [k for k in runner.message_hub.log_scalars if 'routing' in k]
    assert runner.logger.messages == []


def test_expected_windows_match_the_tables():
    """The hand-written window values are those of the forced tables."""
    def window(tables):
        w = np.array([row for t in tables for row in t])
        return [(w > 0).mean(0).tolist(), w.mean(0).tolist()]
    assert window(LEVEL0[:2]) == list(WINDOW_12) and window(LEVEL0[2:]) == list(WINDOW_34)
    assert window(LEVEL0[1:3]) == list(WINDOW_23)
    assert window(ADAPTER[:2]) == list(ADAPTER_12) and window(ADAPTER[2:]) == list(ADAPTER_34)
    assert window(ADAPTER[1:3]) == list(ADAPTER_23)
