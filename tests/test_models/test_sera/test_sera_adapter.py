"""SERA-Adapter (docs/en/method.md, s. 2)."""
import pytest
import torch
import torch.nn as nn

from sera_mm.models.utils import RoutingResult, TextFeatures
from sera_mm.registry import MODELS

LAPLACE = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])
D, D_A, C_T, C_S, P, HW = 24, 16, 12, 10, 5, (4, 3)


def _adapter(**kwargs):
    cfg = dict(type='SERAAdapter', in_channels=D, channels=D_A, text_channels=C_T,
               sentence_channels=C_S, num_heads=4)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _inputs(batch=2, length=6, num_pad=2):
    h = torch.randn(batch, P + HW[0] * HW[1], D)
    pad_mask = torch.zeros(batch, length, dtype=torch.bool)
    pad_mask[:, length - num_pad:] = True
    text = TextFeatures(words=torch.randn(batch, length, C_T),
                        sentence=torch.randn(batch, C_S), pad_mask=pad_mask)
    return h, text


def _randomise_up(adapter):
    nn.init.normal_(adapter.up.weight)
    nn.init.normal_(adapter.up.bias)
    return adapter


@pytest.mark.parametrize('training', [True, False])
def test_zero_initialised_up_projection_outputs_exact_zeros(training):
    torch.manual_seed(0)
    adapter = _adapter().train(training)
    h, text = _inputs()
    out = adapter(h, text, HW, P)
    assert out.shape == h.shape
    assert torch.equal(out, torch.zeros_like(out))
    # ... and the up-projection still gets a gradient, so it can leave zero.
    out.sum().backward()
    assert adapter.up.weight.grad.abs().sum() > 0


def test_init_weights_keeps_zero_up_and_laplacian():
    adapter = _adapter(init_cfg=[dict(type='Normal', layer='Linear', std=1.),
                                 dict(type='Kaiming', layer='Conv2d')])
    adapter.init_weights()
    assert torch.equal(adapter.up.weight, torch.zeros_like(adapter.up.weight))
    assert torch.equal(adapter.up.bias, torch.zeros_like(adapter.up.bias))
    for c in range(D_A):
        assert torch.equal(adapter.boundary_dw.conv.weight[c, 0], LAPLACE)
    assert adapter.boundary_dw.conv.weight.requires_grad
    h, text = _inputs()
    assert torch.equal(adapter(h, text, HW, P), torch.zeros_like(h))


def test_padding_mask_hides_padded_words():
    torch.manual_seed(0)
    adapter = _randomise_up(_adapter()).eval()
    h, text = _inputs(num_pad=2)
    out = adapter(h, text, HW, P)
    words = text.words.clone()
    words[:, -1] += 10 * torch.randn(2, C_T)  # a padded word
    padded_changed = adapter(h, text._replace(words=words), HW, P)
    assert torch.allclose(out, padded_changed, atol=1e-6)
    words = text.words.clone()
    words[:, 0] += 10 * torch.randn(2, C_T)  # a real word
    real_changed = adapter(h, text._replace(words=words), HW, P)
    assert (out - real_changed).abs().max() > 1e-3


def test_last_routing_is_a_detached_soft_routing():
    torch.manual_seed(0)
    adapter = _adapter().train()
    h, text = _inputs(batch=3)
    adapter(h, text, HW, P)
    routing = adapter.last_routing
    assert isinstance(routing, RoutingResult) and routing.indices is None
    assert routing.weights.shape == (3, 2) and not routing.weights.requires_grad
    assert torch.allclose(routing.weights.sum(dim=1), torch.ones(3))
    # g is the mean of the down-projected spatial tokens (visual-only routing).
    g = adapter.down(h)[:, P:].mean(dim=1)
    assert torch.allclose(routing.weights, adapter.router.fc(g).softmax(dim=1), atol=1e-6)


def test_router_text_makes_routing_depend_on_the_sentence():
    torch.manual_seed(0)
    h, text = _inputs()
    other = text._replace(sentence=torch.randn(2, C_S))
    adapter = _randomise_up(_adapter(router_text=True)).eval()
    adapter(h, text, HW, P)
    first = adapter.last_routing.weights
    out_other = adapter(h, other, HW, P)
    assert (first - adapter.last_routing.weights).abs().max() > 1e-4
    # Without router_text the sentence is not read at all.
    plain = _randomise_up(_adapter()).eval()
    out = plain(h, text, HW, P)
    assert torch.equal(out, plain(h, other, HW, P))
    assert out_other.shape == h.shape


def test_lambdas_and_routing_enter_only_through_the_corrected_grid():
    # With lambda_s = lambda_b = 0 the router cannot change the output.
    torch.manual_seed(0)
    adapter = _randomise_up(_adapter(lambda_s=0., lambda_b=0.)).eval()
    h, text = _inputs()
    out = adapter(h, text, HW, P)
    with torch.no_grad():
        adapter.router.fc.weight.normal_()
        adapter.router.fc.bias.normal_()
    assert torch.allclose(out, adapter(h, text, HW, P), atol=1e-6)
    with_experts = _adapter()
    with_experts.load_state_dict(adapter.state_dict())
    assert (with_experts.eval()(h, text, HW, P) - out).abs().max() > 1e-4


def test_wrong_token_count_or_text_width_is_reported():
    adapter = _adapter()
    h, text = _inputs()
    with pytest.raises(ValueError, match='SERAAdapter: expected h'):
        adapter(h, text, (4, 4), P)
    with pytest.raises(ValueError, match='text.words'):
        adapter(h, text._replace(words=torch.randn(2, 6, C_T + 1)), HW, P)
    with pytest.raises(ValueError, match='pad_mask'):
        adapter(h, text._replace(pad_mask=text.pad_mask.long()), HW, P)
