"""Routers and sparse dispatch (docs/en/method.md, s. 2 and 3)."""
import pytest
import torch
import torch.nn as nn

from sera_mm.models.routers import dense_dispatch, sparse_dispatch
from sera_mm.registry import MODELS


def _topk_router(**kwargs):
    cfg = dict(type='NoisyTopKRouter', in_channels=16, num_experts=4)
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('top_k', [1, 2, 3, 4])
def test_topk_keeps_exactly_k_and_weights_sum_to_one(top_k, training):
    torch.manual_seed(0)
    router = _topk_router(top_k=top_k).train(training)
    result = router(torch.randn(8, 16, 5, 3))
    assert result.logits.shape == result.weights.shape == (8, 4)
    assert result.indices.shape == (8, top_k)
    assert ((result.weights > 0).sum(dim=1) == top_k).all()
    assert torch.allclose(result.weights.sum(dim=1), torch.ones(8), atol=1e-6)
    # The non-zero weights sit exactly at the returned indices.
    kept = torch.zeros(8, 4, dtype=torch.bool).scatter(1, result.indices, True)
    assert torch.equal(kept, result.weights > 0)


def test_eval_has_no_noise_and_matches_reference():
    torch.manual_seed(0)
    router = _topk_router(top_k=2, temperature=0.7).eval()
    x = torch.randn(6, 16, 4, 4)
    first, second = router(x), router(x)
    assert torch.equal(first.weights, second.weights)
    assert torch.equal(first.indices, second.indices)
    # Reference: h = W2 ReLU(W1 GAP(x)); softmax of the top-2 of h / tau.
    h = router.fc2(torch.relu(router.fc1(x.mean(dim=(2, 3)))))
    assert torch.allclose(first.logits, h)
    vals, idx = (h / 0.7).topk(2, dim=1)
    expected = torch.zeros_like(h).scatter(1, idx, vals.softmax(dim=1))
    assert torch.allclose(first.weights, expected, atol=1e-6)


def test_training_adds_noise_to_selection_but_not_to_logits():
    torch.manual_seed(0)
    router = _topk_router(top_k=2).train()
    x = torch.randn(16, 16, 4, 4)
    first, second = router(x), router(x)
    assert torch.equal(first.logits, second.logits)  # logits stay clean
    assert not torch.allclose(first.weights, second.weights)
    torch.manual_seed(3)
    a = router(x)
    torch.manual_seed(3)
    b = router(x)
    assert torch.equal(a.weights, b.weights)  # the noise follows the seed
    quiet = _topk_router(top_k=2, noise_std=0.).train()
    quiet.load_state_dict(router.state_dict())
    assert torch.equal(quiet(x).weights, quiet(x).weights)


def test_pooled_and_map_inputs_route_alike():
    torch.manual_seed(0)
    router = _topk_router().eval()
    x = torch.randn(3, 16, 4, 6)
    assert torch.allclose(router(x).weights, router(x.mean(dim=(2, 3))).weights)
    with pytest.raises(ValueError, match='in_channels'):
        router(torch.randn(3, 8))


@pytest.mark.parametrize('top_k', [2, 4])
def test_lower_temperature_sharpens_weights(top_k):
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    entropies = []
    base = _topk_router(top_k=top_k).eval()
    for tau in (0.25, 1.0, 4.0):
        router = _topk_router(top_k=top_k, temperature=tau).eval()
        router.load_state_dict(base.state_dict())
        w = router(x).weights
        entropies.append(-(w * w.clamp_min(1e-30).log()).sum(dim=1))
    assert (entropies[0] < entropies[1]).all() and (entropies[1] < entropies[2]).all()


def test_invalid_router_arguments_are_named():
    with pytest.raises(ValueError, match='top_k'):
        _topk_router(top_k=5)
    with pytest.raises(ValueError, match='temperature'):
        _topk_router(temperature=0.)


def test_soft_router_is_softmax_of_linear_map():
    torch.manual_seed(0)
    router = MODELS.build(dict(type='SoftRouter', in_channels=8, num_experts=3))
    x = torch.randn(5, 8, 2, 2)
    result = router(x)
    assert result.indices is None
    expected = router.fc(x.mean(dim=(2, 3))).softmax(dim=1)
    assert torch.allclose(result.weights, expected)
    assert torch.allclose(result.weights.sum(dim=1), torch.ones(5))


class _RecordingExpert(nn.Module):
    """A per-sample expert that records the batch sizes it was run on."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.size(0))
        return torch.tanh(self.conv(x))


@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('top_k', [1, 2, 3, 4])
def test_sparse_dispatch_equals_dense_and_runs_only_selected(top_k, training):
    torch.manual_seed(top_k)
    experts = [_RecordingExpert(6) for _ in range(4)]
    router = _topk_router(in_channels=6, top_k=top_k).train(training)
    x = torch.randn(7, 6, 5, 4)
    torch.manual_seed(11)
    routing = router(x)
    sparse = sparse_dispatch(x, experts, routing.weights, routing.indices)
    counts = [int((routing.indices == e).any(dim=1).sum()) for e in range(4)]
    assert [sum(e.seen) for e in experts] == counts
    assert sum(counts) == 7 * top_k
    dense = dense_dispatch(x, experts, routing.weights)
    assert sparse.shape == x.shape
    assert (sparse - dense).abs().max() <= 1e-5
