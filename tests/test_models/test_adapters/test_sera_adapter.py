"""SERA-Adapter: DenseAligner + two experts + a soft router (docs/en/method.md, s. 2)."""
import pytest
import torch

from sera_mm.models.adapters import DenseAligner, SERAAdapter
from sera_mm.models.utils import RoutingResult, TextFeatures
from sera_mm.registry import MODELS

LAPLACE = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])
D, DA, C_T, C_S, P, HW = 24, 16, 12, 10, 5, (4, 3)
COMMON = dict(in_channels=D, channels=DA, text_channels=C_T, embed_channels=16, num_heads=4)


def _adapter(**kwargs) -> SERAAdapter:
    return MODELS.build(dict(type='SERAAdapter', sentence_channels=C_S, **COMMON, **kwargs))


def _unit_scale(adapter):
    """Linears at 1/sqrt(fan_in) instead of DETRIS's 0.02: with DETRIS's init
    the experts' effect on the output is below float rounding."""
    with torch.no_grad():
        for m in adapter.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, m.in_features ** -0.5)
    return adapter


def _inputs(batch=2, length=6, num_pad=2):
    h = torch.randn(batch, P + HW[0] * HW[1], D)
    pad_mask = torch.zeros(batch, length, dtype=torch.bool)
    pad_mask[:, length - num_pad:] = True
    return h, TextFeatures(words=torch.randn(batch, length, C_T),
                           sentence=torch.randn(batch, C_S), pad_mask=pad_mask)


def test_detris_weights_fill_everything_but_experts_and_router():
    torch.manual_seed(0)
    detris = DenseAligner(**COMMON)
    sera = _adapter()
    result = sera.load_state_dict(detris.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert {k.split('.')[0] for k in result.missing_keys} == {'spatial_dw', 'boundary_dw',
                                                              'router'}


def test_without_experts_sera_adapter_is_dense_aligner():
    torch.manual_seed(0)
    detris = _unit_scale(DenseAligner(**COMMON)).eval()
    sera = _adapter(lambda_s=0., lambda_b=0.).eval()
    sera.load_state_dict(detris.state_dict(), strict=False)
    h, text = _inputs()
    assert torch.allclose(sera(h, text, HW, P)[0], detris(h, text, HW, P)[0], atol=1e-6)
    # with the experts on, the output moves
    with_experts = _adapter().eval()
    with_experts.load_state_dict(sera.state_dict())
    assert (with_experts(h, text, HW, P)[0] - detris(h, text, HW, P)[0]).abs().max() > 1e-5


def test_refine_is_the_routed_expert_mixture():
    torch.manual_seed(0)
    adapter = _adapter().eval()
    f_ms = torch.randn(2, DA, *HW)
    x0 = torch.randn(2, HW[0] * HW[1], DA)
    text = _inputs()[1]
    f_c, routing = adapter.refine(f_ms, x0, text)
    w = adapter.router.fc(x0.mean(1)).softmax(1)
    e_s = f_ms + 0.1 * adapter.spatial_dw(f_ms)
    e_b = f_ms + 0.1 * adapter.boundary_dw(f_ms)
    expected = f_ms + w[:, 0, None, None, None] * e_s + w[:, 1, None, None, None] * e_b
    assert torch.allclose(f_c, expected, atol=1e-6)
    assert torch.allclose(routing.weights, w)


def test_init_weights_keeps_laplacian():
    adapter = _adapter(init_cfg=[dict(type='Kaiming', layer='Conv2d')])
    adapter.init_weights()
    for c in range(DA):
        assert torch.equal(adapter.boundary_dw.conv.weight[c, 0], LAPLACE)
    assert adapter.boundary_dw.conv.weight.requires_grad


def test_forward_returns_the_soft_routing_and_keeps_none():
    torch.manual_seed(0)
    adapter = _adapter().train()
    state = dict(vars(adapter))
    h, text = _inputs(batch=3)
    out, routing = adapter(h, text, HW, P)
    assert out.shape == h.shape
    assert isinstance(routing, RoutingResult) and routing.indices is None
    assert routing.weights.shape == (3, 2)
    assert torch.allclose(routing.weights.sum(dim=1), torch.ones(3))
    assert vars(adapter) == state  # nothing of the forward is kept on the module
    # g is the mean of the projected patch tokens (visual-only routing)
    g = adapter.D_fc1(h)[:, P:].relu().mean(dim=1)
    assert torch.allclose(routing.weights, adapter.router.fc(g).softmax(dim=1), atol=1e-6)


def test_router_text_makes_routing_depend_on_the_sentence():
    torch.manual_seed(0)
    h, text = _inputs()
    other = text._replace(sentence=torch.randn(2, C_S))
    adapter = _unit_scale(_adapter(router_text=True)).eval()
    first = adapter(h, text, HW, P)[1].weights
    assert (first - adapter(h, other, HW, P)[1].weights).abs().max() > 1e-4
    plain = _adapter().eval()  # the paper's router does not read the sentence
    assert torch.equal(plain(h, text, HW, P)[0], plain(h, other, HW, P)[0])


def test_experts_and_router_get_gradients():
    torch.manual_seed(0)
    adapter = _adapter().train()
    h, text = _inputs()
    adapter(h, text, HW, P)[0].square().sum().backward()
    for module in (adapter.spatial_dw, adapter.boundary_dw, adapter.router):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), module


def test_wrong_inputs_are_reported():
    adapter = _adapter(router_text=True)
    h, text = _inputs()
    with pytest.raises(ValueError, match='SERAAdapter: expected tokens'):
        adapter(h, text, (4, 4), P)
    with pytest.raises(ValueError, match='router_text'):
        adapter(h, text._replace(sentence=None), HW, P)
