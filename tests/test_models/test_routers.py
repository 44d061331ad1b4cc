"""Routers and sparse dispatch (docs/en/method.md, s. 2 and 3)."""
import pytest
import torch
import torch.nn as nn

from sera_mm.models.routers import dense_dispatch, selection_probability, sparse_dispatch
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


def _noisy_selection(logits, top_k, sigma):
    """The noisy logits and the Top-k a router with noise ``sigma`` draws."""
    noisy = logits + sigma * torch.randn_like(logits)
    return noisy, noisy.topk(top_k, dim=1).indices


@pytest.mark.parametrize('top_k', [1, 2, 3])
def test_selection_probability_is_the_chance_of_being_kept_under_the_noise(top_k):
    """Shazeer's load estimator: with the other experts' noisy logits fixed,
    redrawing only expert e's noise keeps e as often as it says."""
    torch.manual_seed(top_k)
    logits = torch.randn(3, 4)
    noisy, indices = _noisy_selection(logits, top_k, 1.)
    prob = selection_probability(logits, noisy, indices, 1.)
    draws = torch.randn(100000)
    for b in range(3):
        for e in range(4):
            redrawn = noisy[b].expand(len(draws), 4).clone()
            redrawn[:, e] = logits[b, e] + draws
            kept = (redrawn.topk(top_k, dim=1).indices == e).any(dim=1).double().mean()
            assert float(prob[b, e]) == pytest.approx(float(kept), abs=0.01), (b, e)


@pytest.mark.parametrize('top_k', [1, 2, 3])
def test_selection_probability_tends_to_the_assigned_fraction_without_noise(top_k):
    """As sigma -> 0, the summed probabilities count the samples that chose
    each expert (the hard assigned share times B), not the softmax mass."""
    torch.manual_seed(top_k)
    logits = torch.randn(64, 4)
    noisy, indices = _noisy_selection(logits, top_k, 1e-5)
    load = selection_probability(logits, noisy, indices, 1e-5).sum(dim=0)
    assigned = torch.zeros(64, 4).scatter(1, indices, 1.).sum(dim=0)
    assert torch.allclose(load, assigned, atol=1e-3)
    assert not torch.allclose(load, logits.softmax(dim=1).sum(dim=0) * top_k, atol=1.)
    # no noise at all: exactly the selection
    exact = selection_probability(logits, logits, logits.topk(top_k, dim=1).indices, 0.)
    assert torch.equal(exact.sum(dim=0), torch.zeros(64, 4).scatter(
        1, logits.topk(top_k, dim=1).indices, 1.).sum(dim=0))


def test_selection_probability_is_differentiable_in_the_logits():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(6, 4, dtype=torch.float64)

    def load(h):
        noisy = h + eps
        return selection_probability(h, noisy, noisy.topk(2, dim=1).indices, 1.).sum(dim=0)

    assert torch.autograd.gradcheck(load, (logits, ))
    grad, = torch.autograd.grad(load(logits).pow(2).sum(), logits)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize('top_k', [1, 2, 4])
def test_router_returns_the_selection_probability_of_its_own_noise(top_k):
    torch.manual_seed(0)
    router = _topk_router(top_k=top_k, noise_std=0.5).train()
    x = torch.randn(8, 16)
    torch.manual_seed(5)
    result = router(x)
    torch.manual_seed(5)
    noisy = result.logits + 0.5 * torch.randn(8, 4)
    assert torch.allclose(result.select_prob,
                          selection_probability(result.logits, noisy, result.indices, 0.5))
    assert result.select_prob.requires_grad == (top_k < 4)  # k = E: always kept
    # at eval, without noise: the 0/1 selection
    selected = torch.zeros(8, 4).scatter(1, router.eval()(x).indices, 1.)
    assert torch.equal(router(x).select_prob, selected)


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
