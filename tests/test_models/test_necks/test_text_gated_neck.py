import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sera_mm.models.necks import CoordConv, SentenceGate, TextGatedNeck, fold_attention_gate
from sera_mm.models.necks.coord_conv import coordinate_grid
from sera_mm.models.utils import RoutingResult, TextFeatures
from sera_mm.registry import MODELS


@MODELS.register_module(name='StubZeroFusion', force=True)
class StubZeroFusion(nn.Module):
    """Stand-in fusion: multiplies the map by a zero-initialised scale."""

    def __init__(self, channels: int, num_experts: int = 4):
        super().__init__()
        self.channels = channels
        self.scale = nn.Parameter(torch.zeros(()))
        self.router = nn.Linear(channels, num_experts)

    def forward(self, x):
        assert x.shape[1] == self.channels
        logits = self.router(x.mean((2, 3)))
        return x * self.scale, RoutingResult(logits, logits.softmax(-1), None)


def _text(b=2, length=5, c=24):
    return TextFeatures(torch.randn(b, length, c), torch.randn(b, c),
                        torch.zeros(b, length, dtype=torch.bool))


def _neck(**kwargs):
    cfg = dict(type='TextGatedNeck', in_channels=[16, 12], channels=32, text_channels=24)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_neck_shapes_without_fusion():
    neck = _neck()
    assert isinstance(neck, TextGatedNeck) and not neck.with_fusion
    out, routings = neck([torch.randn(2, 16, 5, 6), torch.randn(2, 12, 5, 6)], _text())
    assert out.shape == (2, 32, 5, 6)
    assert routings == []


def test_neck_refuses_unknown_gate_or_position():
    with pytest.raises(ValueError, match="gate='mha'"):
        _neck(gate='mha')
    with pytest.raises(ValueError, match="fusion_position='inside'"):
        _neck(fusion_position='inside')


def test_neck_rejects_levels_of_different_sizes_or_count():
    neck = _neck()
    with pytest.raises(AssertionError, match='differ in size'):
        neck([torch.randn(2, 16, 5, 6), torch.randn(2, 12, 4, 6)], _text())
    with pytest.raises(ValueError, match='in_channels'):
        neck([torch.randn(2, 16, 5, 6)], _text())


def test_neck_output_depends_on_the_sentence():
    torch.manual_seed(0)
    neck = _neck().eval()
    feats = [torch.randn(2, 16, 5, 6), torch.randn(2, 12, 5, 6)]
    text = _text()
    other = text._replace(sentence=torch.randn_like(text.sentence))
    assert not torch.allclose(neck(feats, text)[0], neck(feats, other)[0])


@pytest.mark.parametrize('position, widths', [('before_proj', [16, 12]),
                                              ('after_proj', [32, 32])])
def test_fusion_runs_per_level_before_the_gate(position, widths):
    torch.manual_seed(0)
    neck = _neck(fusion_cfg=dict(type='StubZeroFusion'), fusion_position=position).eval()
    assert neck.with_fusion and len(neck.fusions) == 2
    assert neck.fusions[0] is not neck.fusions[1]
    # the level's width is filled in: D before the projections, C after them
    assert [f.channels for f in neck.fusions] == widths
    feats = [torch.randn(2, 16, 5, 6), torch.randn(2, 12, 5, 6)]
    text = _text()
    out, routings = neck(feats, text)
    assert len(routings) == 2 and routings[0].logits.shape == (2, 4)
    # The stub zeroes every level; were it applied after the gate or after
    # the merge, the sentence would still reach the output.
    other = text._replace(sentence=torch.randn_like(text.sentence))
    torch.testing.assert_close(out, neck(feats, other)[0])
    # ... and, once non-zero, its parameter is trained through the neck.
    with torch.no_grad():
        neck.fusions[0].scale.fill_(1.)
    neck(feats, text)[0].square().sum().backward()
    assert neck.fusions[0].scale.grad.abs() > 0


def test_sentence_gate_equals_single_key_multihead_attention():
    torch.manual_seed(0)
    c, c_text, b, h, w = 16, 12, 3, 4, 5
    mha = nn.MultiheadAttention(c, 4, kdim=c_text, vdim=c_text, batch_first=True).eval()
    nn.init.normal_(mha.in_proj_bias)
    nn.init.normal_(mha.out_proj.bias)
    gate = SentenceGate(c, c_text)
    w_o, b_o = mha.out_proj.weight, mha.out_proj.bias
    b_v = mha.in_proj_bias[2 * c:]
    with torch.no_grad():
        gate.value.weight.copy_(w_o @ mha.v_proj_weight)
        gate.value.bias.copy_(w_o @ b_v + b_o)
    x = torch.randn(b, c, h, w)
    s = torch.randn(b, c_text)
    tokens = x.flatten(2).transpose(1, 2)
    attn = mha(tokens, s[:, None], s[:, None], need_weights=False)[0]
    expected = x * attn.transpose(1, 2).reshape(b, c, h, w)
    torch.testing.assert_close(gate(x, s), expected)


def test_detris_gate_is_a_one_key_attention_on_the_projected_sentence():
    torch.manual_seed(0)
    neck = _neck(gate='detris', num_heads=4).eval()
    for gate in neck.gates:
        nn.init.normal_(gate.attn.in_proj_bias)
    x = torch.randn(2, 32, 3, 4)
    s = torch.randn(2, 24)
    t = neck.txt_proj(s)
    mha = neck.gates[1].attn
    tokens = x.flatten(2).transpose(1, 2)
    attn = mha(tokens, t[:, None], t[:, None], need_weights=False)[0]
    expected = x * attn.transpose(1, 2).reshape(2, 32, 3, 4)
    torch.testing.assert_close(neck.gates[1](x, t), expected)
    # the softmax over one key is 1: the query/key projections get gradients
    # of rounding size only (zero in exact arithmetic), the values real ones
    neck.train()
    out, _ = neck([torch.randn(2, 16, 3, 4), torch.randn(2, 12, 3, 4)], _text(c=24))
    out.square().sum().backward()
    grad = neck.gates[0].attn.in_proj_weight.grad
    assert grad[:64].abs().max() < 1e-5 * grad[64:].abs().max()
    assert neck.txt_proj.weight.grad.abs().sum() > 0


def test_detris_gate_folds_into_the_folded_gate():
    """``fold_attention_gate`` (the converter's fold) gives the same neck output."""
    torch.manual_seed(0)
    detris = _neck(gate='detris', num_heads=4).eval()
    folded = _neck(gate='folded').eval()
    state = {k: v for k, v in detris.state_dict().items()
             if not k.startswith(('txt_proj', 'gates'))}
    for i, gate in enumerate(detris.gates):
        nn.init.normal_(gate.attn.in_proj_bias)
        weight, bias = fold_attention_gate(detris.txt_proj.weight, detris.txt_proj.bias,
                                           gate.attn.in_proj_weight, gate.attn.in_proj_bias,
                                           gate.attn.out_proj.weight, gate.attn.out_proj.bias)
        state[f'gates.{i}.value.weight'], state[f'gates.{i}.value.bias'] = weight, bias
    folded.load_state_dict(state)
    feats = [torch.randn(2, 16, 3, 4), torch.randn(2, 12, 3, 4)]
    text = _text(c=24)
    with torch.no_grad():
        torch.testing.assert_close(folded(feats, text)[0], detris(feats, text)[0],
                                   atol=1e-5, rtol=1e-5)


def test_coordinate_grid_and_coord_conv():
    grid = coordinate_grid(2, 3, 5, torch.empty(0))
    assert grid.shape == (2, 2, 3, 5)
    torch.testing.assert_close(grid[0, 0, 1], torch.linspace(-1, 1, 5))  # x along width
    torch.testing.assert_close(grid[0, 1, :, 2], torch.linspace(-1, 1, 3))  # y along height
    conv = CoordConv(4, 6, 3, norm_cfg=None, act_cfg=None)
    x = torch.zeros(1, 4, 3, 5)
    # With a zero input only the coordinate channels drive the output.
    expected = F.conv2d(torch.cat([x, grid[:1]], 1), conv.conv.conv.weight,
                        conv.conv.conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).std() > 0


def test_neck_with_sera_fusion_returns_one_routing_per_level():
    neck = _neck(fusion_cfg=dict(type='SERAFusion', expert_cfgs=dict(context=dict(num_heads=4))))
    assert [f.channels for f in neck.fusions] == [16, 12]
    out, routings = neck([torch.randn(3, 16, 4, 4), torch.randn(3, 12, 4, 4)], _text(b=3))
    assert out.shape == (3, 32, 4, 4)
    assert len(routings) == 2
    for r in routings:
        assert isinstance(r, RoutingResult)
        assert r.logits.shape == r.weights.shape == (3, 4)
        assert r.indices.shape == (3, 2)  # Top-2 by default
