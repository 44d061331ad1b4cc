"""sera_mm.apis.sample_routing and inference_referring(return_routing=True):
what the SERA routers chose for one sentence, also with requests in threads."""
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from sera_mm.apis import has_routers, inference_referring, init_model, sample_routing
from sera_mm.models.utils import RoutingResult
from helpers.forced_routing import ForcedRouter, roll_experts
from helpers.paths import REPO

DETRIS_TINY = f'{REPO}/configs/synthetic/detris-tiny_synthetic.py'
# One top-2 decision per sentence of a batch of two (level l: columns rolled by l)
FUSION = [[0.75, 0.25, 0.0, 0.0], [0.0, 0.0, 0.4, 0.6]]
ADAPTER = [[0.9, 0.1], [0.25, 0.75]]


@pytest.fixture(scope='module')
def sera(tiny_model_files):
    config, checkpoint, _ = tiny_model_files
    return init_model(config, checkpoint, device='cpu')


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8) for _ in range(2)]


def test_routing_of_each_sentence_of_a_batch(sera):
    model = sera
    fusions = list(model.neck.fusions)
    adapters = list(model.backbone.adapters.values())
    saved = [f.router for f in fusions], [a.router for a in adapters]
    try:
        for level, fusion in enumerate(fusions):
            fusion.router = ForcedRouter([roll_experts(FUSION, level)], top_k=True)
        for i, adapter in enumerate(adapters):
            adapter.router = ForcedRouter([roll_experts(ADAPTER, i)], top_k=False)
        results = inference_referring(model, _images(), ['the red circle', 'the blue one'],
                                      return_routing=True)
    finally:
        for f, r in zip(fusions, saved[0]):
            f.router = r
        for a, r in zip(adapters, saved[1]):
            a.router = r
    assert has_routers(model)
    for b, result in enumerate(results):
        routing = result.routing
        json.dumps(routing)  # plain values
        assert [r['level'] for r in routing['fusion']] == list(range(len(fusions)))
        for level, (entry, fusion) in enumerate(zip(routing['fusion'], fusions)):
            want = roll_experts(FUSION, level)[b]
            assert entry['experts'] == list(fusion.expert_names)
            assert entry['weights'] == pytest.approx(want)
            order = sorted((e for e in range(len(want)) if want[e] > 0), key=lambda e: -want[e])
            assert entry['chosen'] == [fusion.expert_names[e] for e in order]
        assert [r['block'] for r in routing['adapter']] == [
            f'backbone.adapters.{k}' for k in model.backbone.adapters]
        for i, entry in enumerate(routing['adapter']):
            assert entry['experts'] == ['spatial', 'boundary']
            assert entry['weights'] == pytest.approx(roll_experts(ADAPTER, i)[b])


def test_real_routers_choose_top_k_and_sum_to_one(sera):
    result = inference_referring(sera, _images()[0], 'the red circle', return_routing=True)
    for entry in result.routing['fusion']:
        assert entry['top_k'] == 2 and len(entry['chosen']) == 2
        assert sum(entry['weights']) == pytest.approx(1.0, abs=1e-5)
    for entry in result.routing['adapter']:
        assert sum(entry['weights']) == pytest.approx(1.0, abs=1e-5)
    # without the option, nothing is added
    assert 'routing' not in inference_referring(sera, _images()[0], 'the red circle')


def test_routing_is_none_for_detris():
    torch.manual_seed(0)
    detris = init_model(DETRIS_TINY)
    assert not has_routers(detris)
    assert sample_routing(detris, None) is None
    result = inference_referring(detris, _images()[0], 'the red circle', return_routing=True)
    assert result.routing is None


def test_sample_routing_needs_the_routing_of_a_prediction(sera):
    with pytest.raises(ValueError, match=r"expected the routing of \['fusion.level0'.* got None"):
        sample_routing(sera, None)
    other = {'fusion.level0': RoutingResult(torch.zeros(4), torch.zeros(4))}
    with pytest.raises(ValueError, match=r"got \['fusion.level0'\]; pass the `routing` field"):
        sample_routing(sera, other)


def test_concurrent_requests_get_each_their_own_routing(sera):
    """Two threads segment at the same time on one model, three times; each
    gets the routing its request gives when run alone."""
    requests = list(zip(_images(), ['the red circle', 'the small square on the left']))

    def request(i: int) -> dict:
        return inference_referring(sera, *requests[i], return_routing=True).routing

    alone = [request(0), request(1)]
    assert alone[0] != alone[1]
    # the weights up to rounding (another thread may split the work otherwise)
    expected = [{group: [dict(e, weights=pytest.approx(e['weights'])) for e in entries]
                 for group, entries in routing.items()} for routing in alone]
    start = threading.Barrier(2, timeout=60)

    def together(i: int) -> dict:
        start.wait()
        return request(i)

    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            assert [f.result() for f in [pool.submit(together, i) for i in range(2)]] == expected
