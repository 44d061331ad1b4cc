"""tools/analysis_tools/routing_stats.py with routers forced to known choices."""
import json

import cv2
import pytest
import torch
from mmengine.config import Config

from sera_mm.models.routers import NoisyTopKRouter, SoftRouter
from sera_mm.models.utils import RoutingResult
from sera_mm.registry import DATASETS
from helpers.tool_runner import load_tool

FUSION_EXPERTS = ('spatial', 'context', 'boundary', 'shape')
FORCED_FUSION = {0: 0.75, 2: 0.25}     # experts (0, 2) with weights (0.75, 0.25)
FORCED_ADAPTER = (0.625, 0.375)        # (spatial, boundary); exact in binary


def the_tool():
    return load_tool('analysis_tools/routing_stats.py')


def forced_top_k(self, x):
    b = x.size(0)
    weights = x.new_zeros(b, self.num_experts)
    for e, w in FORCED_FUSION.items():
        weights[:, e] = w
    indices = torch.tensor([list(FORCED_FUSION)], device=x.device).expand(b, -1)
    return RoutingResult(logits=x.new_zeros(b, self.num_experts), weights=weights,
                         indices=indices)


def forced_soft(self, x):
    b = x.size(0)
    weights = x.new_tensor(FORCED_ADAPTER).expand(b, -1).clone()
    return RoutingResult(logits=weights.log(), weights=weights, indices=None)


@pytest.fixture
def forced_routers(monkeypatch):
    monkeypatch.setattr(NoisyTopKRouter, 'forward', forced_top_k)
    monkeypatch.setattr(SoftRouter, 'forward', forced_soft)


def test_statistics_of_forced_routers_are_exact(tiny_model_files, forced_routers, tmp_path):
    config, checkpoint, _ = tiny_model_files
    out = tmp_path / 'routing'
    splits = ['val', 'testA']
    report = the_tool().main([config, checkpoint, '--splits', *splits, '--out', str(out),
                              '--num-workers', '0', '--batch-size', '5'])
    with open(out / 'routing_stats.json') as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(report))
    assert list(written['splits']) == splits
    assert written['fusion_top_k'] == [2, 2, 2]

    cfg = Config.fromfile(config)
    for split in splits:
        res = written['splits'][split]
        dataset = DATASETS.build(dict(cfg.test_dataloader.dataset, split=split,
                                      test_mode=True))
        assert res['samples'] == len(dataset)  # one sample per sentence, all batches
        assert list(res['fusion']) == ['level0', 'level1', 'level2']
        for level in res['fusion'].values():
            assert list(level) == list(FUSION_EXPERTS)
            for e, name in enumerate(FUSION_EXPERTS):
                w = FORCED_FUSION.get(e, 0.0)
                assert level[name] == dict(freq=1.0 if w else 0.0, weight=w, weight_std=0.0)
        assert list(res['adapter']) == ['backbone.adapters.1', 'backbone.adapters.3']
        for block in res['adapter'].values():
            assert block == dict(
                spatial=dict(freq=1.0, weight=FORCED_ADAPTER[0], weight_std=0.0),
                boundary=dict(freq=1.0, weight=FORCED_ADAPTER[1], weight_std=0.0))

    for name in ('routing_level0.png', 'routing_level1.png', 'routing_level2.png',
                 'routing_fusion.png', 'routing_adapter.png'):
        img = cv2.imread(str(out / name))
        assert img is not None and min(img.shape[:2]) >= 300, name


def test_max_batches_limits_each_split(tiny_model_files, forced_routers, tmp_path):
    config, checkpoint, _ = tiny_model_files
    report = the_tool().main([config, checkpoint, '--out', str(tmp_path), '--num-workers',
                              '0', '--batch-size', '3', '--max-batches', '2'])
    assert list(report['splits']) == ['val']
    assert report['splits']['val']['samples'] == 6


def test_model_without_routers_is_refused(tiny_model_files):
    tool = the_tool()
    with pytest.raises(ValueError, match='no router'):
        tool.collect(torch.nn.Linear(2, 2), [])
