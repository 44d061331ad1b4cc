"""SERA-Fusion and its four experts (docs/en/method.md, s. 3)."""
import pytest
import torch

from sera_mm.models.routers import dense_dispatch
from sera_mm.registry import MODELS

SOBEL_X = torch.tensor([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
SOBEL_Y = torch.tensor([[-1., -2., -1.], [0., 0., 0.], [1., 2., 1.]])
LAPLACE = torch.tensor([[0., 1., 0.], [1., -4., 1.], [0., 1., 0.]])
GAUSS = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16.
GN = dict(type='GN', num_groups=4)


def _fusion(top_k=2, **kwargs):
    cfg = dict(type='SERAFusion', channels=16,
               expert_cfgs=dict(context=dict(num_heads=4, ffn_ratio=2.0)),
               router=dict(type='NoisyTopKRouter', top_k=top_k))
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.mark.parametrize('name', ['SpatialExpert', 'ContextExpert', 'BoundaryExpert',
                                  'ShapeExpert'])
@pytest.mark.parametrize('training', [True, False])
def test_every_expert_preserves_shape(name, training):
    torch.manual_seed(0)
    cfg = dict(type=name, channels=16)
    if name == 'ContextExpert':
        cfg.update(num_heads=4)
    expert = MODELS.build(cfg).train(training)
    x = torch.randn(2, 16, 5, 7)
    y = expert(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match=name):
        expert(torch.randn(2, 8, 5, 7))


def test_sobel_buffers_hold_textbook_kernels_and_are_fixed():
    expert = MODELS.build(dict(type='BoundaryExpert', channels=3))
    assert expert.sobel.shape == (6, 1, 3, 3)
    for c in range(3):
        assert torch.equal(expert.sobel[2 * c, 0], SOBEL_X)
        assert torch.equal(expert.sobel[2 * c + 1, 0], SOBEL_Y)
    assert 'sobel' in dict(expert.named_buffers())
    assert all(p is not expert.sobel for p in expert.parameters())


def test_gradient_magnitude_of_a_ramp():
    expert = MODELS.build(dict(type='BoundaryExpert', channels=2, eps=1e-6))
    cols = torch.arange(6.).view(1, 1, 1, 6).expand(1, 2, 5, 6)  # grows to the right
    m = expert.gradient_magnitude(cols)
    interior = m[:, :, 1:-1, 1:-1]
    # Sobel-x on a unit ramp: (1 + 2 + 1) * 2 = 8; Sobel-y: 0.
    assert torch.allclose(interior, torch.full_like(interior, (64 + 1e-6) ** 0.5))
    rows = cols.transpose(2, 3).contiguous()  # grows downwards
    assert torch.allclose(expert.gradient_magnitude(rows)[:, :, 1:-1, 1:-1],
                          torch.full((1, 2, 4, 3), (64 + 1e-6) ** 0.5))


def test_shape_expert_kernels_and_init_weights_keeps_them():
    expert = MODELS.build(dict(type='ShapeExpert', channels=3,
                               init_cfg=dict(type='Kaiming', layer='Conv2d')))
    expert.init_weights()  # the Kaiming init_cfg hits every Conv2d first
    for c in range(3):
        assert torch.equal(expert.laplacian.weight[c, 0], LAPLACE)
        assert torch.allclose(expert.blur[c, 0], GAUSS)
    assert expert.laplacian.weight.requires_grad
    assert abs(float(expert.blur[0].sum()) - 1.) < 1e-6


def test_coordinate_grid_spans_minus_one_to_one():
    expert = MODELS.build(dict(type='SpatialExpert', channels=4))
    grid = expert.coordinate_grid(5, 7)
    assert grid.shape == (2, 5, 7)
    x, y = grid
    assert torch.equal(x[:, 0], torch.full((5,), -1.)) and torch.equal(x[:, -1], torch.ones(5))
    assert torch.equal(y[0], torch.full((7,), -1.)) and torch.equal(y[-1], torch.ones(7))
    assert float(grid.min()) == -1. and float(grid.max()) == 1.
    assert torch.allclose(x[0], torch.linspace(-1, 1, 7))
    assert torch.allclose(y[:, 0], torch.linspace(-1, 1, 5))
    # E_sp = F + alpha_p * Conv1x1(coords), the same for every sample.
    feats = torch.randn(2, 4, 5, 7)
    out = expert(feats)
    expected = feats + 0.1 * expert.proj(grid.unsqueeze(0))
    assert torch.allclose(out, expected, atol=1e-6)


def test_context_expert_matches_a_prenorm_reference():
    torch.manual_seed(0)
    expert = MODELS.build(dict(type='ContextExpert', channels=8, num_heads=2)).eval()
    x = torch.randn(2, 8, 3, 4)
    tokens = x.flatten(2).transpose(1, 2)
    q = expert.norm1(tokens).transpose(0, 1)  # the functional attention wants L x B x C
    attn = expert.attn
    out, _ = torch.nn.functional.multi_head_attention_forward(
        q, q, q, 8, 2, attn.in_proj_weight, attn.in_proj_bias, None, None, False, 0.,
        attn.out_proj.weight, attn.out_proj.bias, training=False, need_weights=False)
    x1 = tokens + out.transpose(0, 1)
    x2 = x1 + expert.ffn.layers(expert.norm2(x1))
    assert torch.allclose(expert(x), x2.transpose(1, 2).reshape(2, 8, 3, 4), atol=1e-5)


@pytest.mark.parametrize('top_k', [1, 2, 3, 4])
def test_sparse_equals_dense_in_eval(top_k):
    torch.manual_seed(top_k)
    fusion = _fusion(top_k)
    x = torch.randn(6, 16, 5, 4)
    fusion.train()
    for _ in range(2):  # give BatchNorm non-trivial running statistics
        fusion(x + torch.randn_like(x))
    fusion.eval()
    out, routing = fusion(x)
    assert out.shape == x.shape
    assert ((routing.weights > 0).sum(dim=1) == top_k).all()
    dense = dense_dispatch(x, fusion.experts, routing.weights)
    assert (out - dense).abs().max() <= 1e-5


@pytest.mark.parametrize('top_k', [1, 2, 3, 4])
def test_sparse_equals_dense_in_training_with_per_sample_norm(top_k):
    # With BatchNorm the training output depends on the sub-batch (see the
    # SERAFusion docstring); a per-sample norm makes the dense formula exact.
    torch.manual_seed(top_k)
    fusion = _fusion(top_k, norm_cfg=GN).train()
    x = torch.randn(6, 16, 5, 4)
    torch.manual_seed(123)
    out, routing = fusion(x)
    torch.manual_seed(123)
    again = fusion.router(x)
    assert torch.equal(again.weights, routing.weights)  # same noise, same routing
    dense = dense_dispatch(x, fusion.experts, routing.weights)
    assert (out - dense).abs().max() <= 1e-5


def test_batchnorm_training_with_single_sample_sub_batches():
    torch.manual_seed(0)
    fusion = _fusion(top_k=2).train()  # default BN
    out, routing = fusion(torch.randn(1, 16, 4, 4))  # every sub-batch has one sample
    assert out.shape == (1, 16, 4, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize('norm_cfg', [dict(type='BN'), GN])
def test_gradients_reach_router_and_selected_experts_only(norm_cfg):
    torch.manual_seed(0)
    fusion = _fusion(top_k=2, norm_cfg=norm_cfg).train()
    x = torch.randn(1, 16, 4, 5)
    out, routing = fusion(x)
    (out * torch.randn_like(out)).sum().backward()
    for name in ('fc1', 'fc2'):
        layer = getattr(fusion.router, name)
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, name
    selected = set(routing.indices[0].tolist())
    assert len(selected) == 2
    for e, expert in enumerate(fusion.experts):
        for pname, p in expert.named_parameters():
            if e in selected:
                assert p.grad is not None and p.grad.abs().sum() > 0, (e, pname)
            else:  # not run, but touched by a zero term: a gradient of zeros (DDP)
                assert p.grad is not None and not p.grad.any(), (e, pname)


def test_soft_router_falls_back_to_dense_mixture():
    torch.manual_seed(0)
    fusion = _fusion(router=dict(type='SoftRouter'), experts=('spatial', 'shape')).eval()
    x = torch.randn(3, 16, 4, 4)
    out, routing = fusion(x)
    assert routing.indices is None and routing.weights.shape == (3, 2)
    assert torch.allclose(out, dense_dispatch(x, fusion.experts, routing.weights), atol=1e-6)


def test_subset_of_experts_and_config_errors():
    fusion = _fusion(top_k=1, experts=('boundary', dict(type='SpatialExpert', alpha=0.5)))
    assert fusion.expert_names == ['boundary', 'SpatialExpert']
    assert fusion.router.num_experts == 2 and fusion.experts[1].alpha == 0.5
    out, routing = fusion.eval()(torch.randn(2, 16, 3, 3))
    assert out.shape == (2, 16, 3, 3) and routing.indices.shape == (2, 1)
    with pytest.raises(ValueError, match="unknown expert 'edges'"):
        _fusion(experts=('spatial', 'edges'))
    with pytest.raises(ValueError, match='num_experts'):
        _fusion(router=dict(type='NoisyTopKRouter', num_experts=3))
    with pytest.raises(ValueError, match='SERAFusion'):
        fusion(torch.randn(2, 8, 3, 3))


@pytest.mark.parametrize('top_k', [1, 2, 4])
@pytest.mark.parametrize('norm_cfg', [dict(type='BN'), GN, None])
def test_zero_init_experts_start_as_identity_and_can_learn(top_k, norm_cfg):
    torch.manual_seed(0)
    fusion = _fusion(top_k, zero_init_experts=True, norm_cfg=norm_cfg)
    fusion.init_weights()          # what the runner calls; must keep the zeros
    x = torch.randn(6, 16, 5, 7, requires_grad=True)
    for training in (True, False):
        fusion.train(training)
        out, _ = fusion(x)
        torch.testing.assert_close(out, x, rtol=0, atol=1e-5)
    fusion.train()
    out, routing = fusion(x)
    (out * torch.randn_like(out)).sum().backward()
    spatial, context, boundary, shape = fusion.experts
    chosen = set(routing.indices.flatten().tolist())
    # the zeroed layers receive gradients: training moves them off zero
    zeroed = {0: [spatial.proj.weight], 1: [context.attn.out_proj.weight],
              2: [boundary.scale.weight], 3: [shape.scale.weight]}
    for idx in chosen:
        for param in zeroed[idx]:
            assert param.grad is not None and param.grad.abs().sum() > 0, idx


def test_without_zero_init_the_experts_change_the_features():
    torch.manual_seed(0)
    fusion = _fusion(4).eval()
    x = torch.randn(2, 16, 5, 7)
    out, _ = fusion(x)
    assert (out - x).abs().max() > 1e-2


@MODELS.register_module(force=True)
class NoZeroInitExpert(torch.nn.Module):
    """An expert without ``zero_init_residual`` (a user's own)."""

    def __init__(self, channels):
        super().__init__()

    def forward(self, x):
        return x


def test_zero_init_needs_every_expert_to_support_it():
    with pytest.raises(ValueError, match="'NoZeroInitExpert'.*zero_init_residual"):
        MODELS.build(dict(type='SERAFusion', channels=16, zero_init_experts=True,
                          experts=[dict(type='NoZeroInitExpert')], router=dict(
                              type='NoisyTopKRouter', top_k=1)))


def test_phi_expert_without_residual_scale_refuses_zero_init():
    expert = MODELS.build(dict(type='BoundaryExpert', channels=16))
    assert expert.scale is None
    with pytest.raises(ValueError, match='BoundaryExpert.*residual_scale'):
        expert.zero_init_residual()
