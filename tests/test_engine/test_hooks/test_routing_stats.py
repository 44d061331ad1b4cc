"""RoutingStatistics and ModelRoutingStatistics on hand-made routing decisions."""

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.structures import SegDataSample
from torch import nn

import sera_mm
from sera_mm.engine.hooks import ModelRoutingStatistics, RoutingStatistics
from sera_mm.registry import MODELS
from helpers.forced_routing import ForcedRouter, roll_experts
from helpers.paths import TINY_CONFIG

# Two batches of two samples for a 3-expert router (Top-k style, zeros off
# the selection) and a 2-expert soft router. Dyadic values: every sum and
# every mean over the 4 samples is exact in binary floating point.
ROUTER_A = [[[0.75, 0.25, 0.0], [0.0, 0.5, 0.5]],
            [[1.0, 0.0, 0.0], [0.0, 0.25, 0.75]]]
ROUTER_B = [[[0.5, 0.5], [0.25, 0.75]],
            [[1.0, 0.0], [0.125, 0.875]]]
# By hand: share of the 4 samples with a non-zero weight; mean weight.
FREQ_A, WEIGHT_A = [0.5, 0.75, 0.5], [0.4375, 0.25, 0.3125]
FREQ_B, WEIGHT_B = [1.0, 0.75], [0.46875, 0.53125]


def table(weights) -> torch.Tensor:
    return torch.tensor(weights, dtype=torch.float32, requires_grad=True)


def population_std(batches, expert: int) -> float:
    return float(np.std([row[expert] for batch in batches for row in batch]))


def test_routing_statistics_exact_values():
    stats = RoutingStatistics([('a0', 'a1', 'a2'), ('b0', 'b1')])
    for a, b in zip(ROUTER_A, ROUTER_B):
        stats.update([table(a), table(b)])
    summary = stats.summary()
    assert [list(s) for s in summary] == [['a0', 'a1', 'a2'], ['b0', 'b1']]
    assert [summary[0][n]['freq'] for n in ('a0', 'a1', 'a2')] == FREQ_A
    assert [summary[0][n]['weight'] for n in ('a0', 'a1', 'a2')] == WEIGHT_A
    assert [summary[1][n]['freq'] for n in ('b0', 'b1')] == FREQ_B
    assert [summary[1][n]['weight'] for n in ('b0', 'b1')] == WEIGHT_B
    for e, n in enumerate(('a0', 'a1', 'a2')):
        assert summary[0][n]['weight_std'] == pytest.approx(population_std(ROUTER_A, e),
                                                            abs=1e-12)
    for e, n in enumerate(('b0', 'b1')):
        assert summary[1][n]['weight_std'] == pytest.approx(population_std(ROUTER_B, e),
                                                            abs=1e-12)


def test_routing_statistics_reset_forgets():
    stats = RoutingStatistics([('a0', 'a1', 'a2')])
    stats.update([table(ROUTER_A[0])])
    stats.reset()
    assert all(v == dict(freq=0.0, weight=0.0, weight_std=0.0)
               for v in stats.summary()[0].values())
    stats.update([table(ROUTER_A[1])])
    summary = stats.summary()[0]
    assert [summary[n]['freq'] for n in ('a0', 'a1', 'a2')] == [0.5, 0.5, 0.5]
    assert [summary[n]['weight'] for n in ('a0', 'a1', 'a2')] == [0.5, 0.125, 0.375]


def test_routing_statistics_rejects_mismatched_input():
    stats = RoutingStatistics([('a0', 'a1', 'a2'), ('b0', 'b1')])
    with pytest.raises(ValueError, match='got the weights of 1 routers, expected 2'):
        stats.update([table(ROUTER_A[0])])
    with pytest.raises(ValueError, match='router 1 has 3 weights'):
        stats.update([table(ROUTER_A[0]), table(ROUTER_A[1])])


# -- a whole segmentor ------------------------------------------------------
FUSION_EXPERTS = ['spatial', 'context', 'boundary', 'shape']
# Top-2 decisions of one level for two batches of two sentences; level l
# uses the same table with its expert columns rolled by l.
FUSION_LEVEL0 = [[[0.75, 0.25, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]],
                 [[0.5, 0.0, 0.5, 0.0], [0.0, 0.25, 0.0, 0.75]]]
FUSION_FREQ0 = [0.5, 0.5, 0.5, 0.5]
FUSION_WEIGHT0 = [0.3125, 0.125, 0.25, 0.3125]
# soft decisions of the adapter in block 1; block 3 uses the rolled table
ADAPTER_BLOCK1 = [[[1.0, 0.0], [0.25, 0.75]], [[0.5, 0.5], [0.625, 0.375]]]
ADAPTER_FREQ1, ADAPTER_WEIGHT1 = [1.0, 0.75], [0.59375, 0.40625]


@pytest.fixture
def tiny_segmentor() -> nn.Module:
    """The tiny synthetic config's model with every router forced."""
    sera_mm.register_all_modules(init_default_scope=False)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('sera_mm'):
        model = MODELS.build(Config.fromfile(TINY_CONFIG).model)
    for level, fusion in enumerate(model.neck.fusions):
        fusion.router = ForcedRouter(roll_experts(FUSION_LEVEL0, level), top_k=True)
    for i, adapter in enumerate(model.backbone.adapters.values()):
        adapter.router = ForcedRouter(roll_experts(ADAPTER_BLOCK1, i), top_k=False)
    return model.eval()


def sentence_samples(texts) -> list:
    return [SegDataSample(metainfo=dict(text=text)) for text in texts]


def test_model_routing_statistics_exact_values(tiny_segmentor):
    model = tiny_segmentor
    stats = ModelRoutingStatistics(model)
    assert not stats.empty
    samples = sentence_samples(['the red circle', 'the bigger triangle'])
    pipeline = Config.fromfile(TINY_CONFIG).test_dataloader.dataset.pipeline
    scale = next(t.scale for t in pipeline if t.type == 'Letterbox')
    size = (scale, scale)  # the model's input: the test Letterbox's
    for sample in samples:
        sample.set_metainfo(dict(ori_shape=size))
    with torch.no_grad():
        for _ in range(2):
            stats.update(model(torch.randn(2, 3, *size), samples, mode='predict'))
    summary = stats.summary()
    levels = len(model.neck.fusions)
    adapters = [f'backbone.adapters.{k}' for k in model.backbone.adapters]
    assert levels >= 2 and len(adapters) >= 2
    assert list(summary) == [f'fusion.level{i}' for i in range(levels)] + adapters
    for level in range(levels):
        got = summary[f'fusion.level{level}']
        assert list(got) == FUSION_EXPERTS
        assert [got[e]['freq'] for e in FUSION_EXPERTS] == roll_experts(FUSION_FREQ0, level)
        assert [got[e]['weight'] for e in FUSION_EXPERTS] == \
            roll_experts(FUSION_WEIGHT0, level)
    for i, name in enumerate(adapters):
        got = summary[name]
        assert list(got) == ['spatial', 'boundary']
        assert [got[e]['freq'] for e in ('spatial', 'boundary')] == \
            roll_experts(ADAPTER_FREQ1, i)
        assert [got[e]['weight'] for e in ('spatial', 'boundary')] == \
            roll_experts(ADAPTER_WEIGHT1, i)


def test_model_without_routers_is_empty():
    stats = ModelRoutingStatistics(nn.Sequential(nn.Linear(2, 2)))
    assert stats.empty and stats.summary() == {}
    stats.update([SegDataSample()])  # nothing to read, nothing fails
