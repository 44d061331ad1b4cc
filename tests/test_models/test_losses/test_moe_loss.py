"""MoE regularisation (docs/en/method.md, s. 4)."""
import pytest
import torch
from mmengine.model import BaseModel

from sera_mm.models.losses.moe_loss import cv_squared, hard_fraction
from sera_mm.models.utils import RoutingResult
from sera_mm.registry import MODELS


def _loss(**kwargs):
    return MODELS.build(dict(type='MoERegularizationLoss', **kwargs))


def _one_hot_routing(assignment, num_experts=4, logit=0.):
    indices = torch.tensor(assignment).view(-1, 1)
    weights = torch.zeros(len(assignment), num_experts).scatter(1, indices, 1.)
    return RoutingResult(logits=logit * weights, weights=weights, indices=indices)


def test_balanced_routing_costs_nothing():
    losses = _loss()(_one_hot_routing([0, 1, 2, 3, 3, 2, 1, 0]))
    assert abs(float(losses['loss_moe'])) < 1e-12
    assert float(losses['moe_importance']) == 0. and float(losses['moe_load']) == 0.


def test_collapsed_routing_is_penalised_with_exact_values():
    routing = _one_hot_routing([0] * 8, logit=10.)
    losses = _loss()(routing)
    # I = [8, 0, 0, 0]: population CV^2 of a one-hot vector is E - 1 = 3.
    assert float(losses['moe_importance']) == pytest.approx(3.)
    p = routing.logits.softmax(dim=1).sum(dim=0)
    expected_load = p.var(correction=0) / p.mean() ** 2
    assert float(losses['moe_load']) == pytest.approx(float(expected_load))
    assert float(losses['moe_load']) > 2.9
    assert float(losses['moe_z']) == pytest.approx(100. / 4)
    expected = 1e-3 * 25. + 1e-2 * 3. + 1e-2 * float(expected_load)
    assert float(losses['loss_moe']) == pytest.approx(expected, rel=1e-6)
    assert float(losses['loss_moe']) > 0.05


def test_sum_over_modules_fractions_and_custom_weights():
    a = _one_hot_routing([0, 0, 0, 1], logit=1.)
    b = _one_hot_routing([2, 2, 3, 3], logit=2.)
    loss = _loss(lambda_z=1., lambda_importance=0., lambda_load=0., loss_weight=2.)
    out = loss([a, b])
    assert float(out['loss_moe']) == pytest.approx(2. * (0.25 + 1.))
    assert float(out['moe_z']) == pytest.approx(0.25 + 1.)
    # Hard fractions averaged over the two routers.
    fracs = [float(out[f'moe_frac_e{e}']) for e in range(4)]
    assert fracs == pytest.approx([0.375, 0.125, 0.25, 0.25])
    assert torch.equal(hard_fraction(b), torch.tensor([0., 0., .5, .5]))
    soft = RoutingResult(torch.zeros(2, 2), torch.tensor([[0.9, 0.1], [0.3, 0.7]]), None)
    assert torch.equal(hard_fraction(soft), torch.tensor([.5, .5]))


def test_topk_fraction_counts_every_selected_expert():
    routing = RoutingResult(torch.zeros(2, 4), torch.tensor([[.5, .5, 0, 0], [0, .5, .5, 0]]),
                            torch.tensor([[0, 1], [1, 2]]))
    assert torch.equal(hard_fraction(routing), torch.tensor([.5, 1., .5, 0.]))


def test_cv_uses_population_std():
    v = torch.tensor([1., 3.])
    assert float(cv_squared(v)) == pytest.approx(1. / 4.)  # std 1 (not sqrt 2), mean 2


def test_only_the_total_is_summed_by_mmengine_and_gradients_are_finite():
    torch.manual_seed(0)
    logits = torch.zeros(4, 4, requires_grad=True)  # perfectly balanced
    losses = _loss()(RoutingResult(logits, logits.softmax(dim=1), None))
    assert all('loss' not in k for k in losses if k != 'loss_moe')

    class _Model(BaseModel):
        def forward(self, *args, **kwargs):
            pass

    total, log_vars = _Model().parse_losses(losses)
    assert total.item() == pytest.approx(losses['loss_moe'].item())
    assert 'moe_load' in log_vars and 'moe_frac_e0' in log_vars
    total.backward()
    assert torch.isfinite(logits.grad).all()
    logits.grad = None
    unbalanced = torch.randn(4, 4, requires_grad=True)
    _loss()(RoutingResult(unbalanced, unbalanced.softmax(1), None))['loss_moe'].backward()
    assert unbalanced.grad.abs().sum() > 0


def _router(top_k, noise_std, bias=None):
    torch.manual_seed(0)
    router = MODELS.build(dict(type='NoisyTopKRouter', in_channels=8, num_experts=4,
                               top_k=top_k, noise_std=noise_std)).train()
    if bias is not None:  # the same logits for every sample
        with torch.no_grad():
            router.fc2.weight.zero_()
            router.fc2.bias.copy_(torch.tensor(bias))
    return router


@pytest.mark.parametrize('top_k', [1, 2])
def test_noisy_topk_load_balances_the_assigned_share(top_k):
    """load='noisy_topk': in the zero-noise limit the load term is the CV^2
    of the number of samples that chose each expert, which the soft-mass
    CV^2 is not (every sample ranks the experts alike by small margins: the
    softmax mass is almost even, the assignment is not); with noise it is the CV^2 of
    the router's summed selection probabilities, with a gradient to the
    router."""
    x = torch.randn(64, 8)
    routing = _router(top_k, noise_std=1e-5, bias=[0.3, 0.2, 0.1, 0.])(x)
    assigned = torch.zeros(64, 4).scatter(1, routing.indices, 1.).sum(dim=0)
    assert assigned.tolist() == [64.] * top_k + [0.] * (4 - top_k)
    losses = _loss(load='noisy_topk')(routing)
    assert float(losses['moe_load']) == pytest.approx(float(cv_squared(assigned)), rel=1e-3)
    assert float(_loss(load='soft_mass')(routing)['moe_load']) < 0.02
    router = _router(top_k, noise_std=1.)
    routing = router(x)
    load = _loss(load='noisy_topk', lambda_z=0., lambda_importance=0., lambda_load=1.)
    losses = load(routing)
    assert float(losses['moe_load']) == pytest.approx(
        float(cv_squared(routing.select_prob.detach().sum(dim=0))))
    losses['loss_moe'].backward()
    assert router.fc2.weight.grad.abs().sum() > 0


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match='loss_name'):
        _loss(loss_name='moe')
    with pytest.raises(ValueError, match='routings'):
        _loss()([])
    with pytest.raises(ValueError, match=r'routings\[1\]'):
        _loss()([_one_hot_routing([0, 1]), _one_hot_routing([0, 1], num_experts=3)])
    with pytest.raises(ValueError, match="load='mass'"):
        _loss(load='mass')
    with pytest.raises(ValueError, match=r'routings\[0\]\.select_prob'):
        _loss(load='noisy_topk')(_one_hot_routing([0, 1]))
