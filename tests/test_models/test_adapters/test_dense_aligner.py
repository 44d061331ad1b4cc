"""DETRIS's DenseAligner (docs/en/method.md, s. 2)."""
import pytest
import torch
import torch.nn.functional as F

from sera_mm.models.adapters import DenseAligner
from sera_mm.models.utils import TextFeatures
from sera_mm.registry import MODELS
from helpers.norms import randomise_norms

D, DA, C_T, P, HW = 24, 32, 12, 5, (4, 3)


def _aligner(**kwargs) -> DenseAligner:
    cfg = dict(type='DenseAligner', in_channels=D, channels=DA, text_channels=C_T,
               embed_channels=16, num_heads=4)
    cfg.update(kwargs)
    return randomise_norms(MODELS.build(cfg), biases=True)


def _inputs(batch=2, length=6, num_pad=2, hw=HW):
    h = torch.randn(batch, P + hw[0] * hw[1], D)
    pad_mask = torch.zeros(batch, length, dtype=torch.bool)
    pad_mask[:, length - num_pad:] = True
    return h, TextFeatures(words=torch.randn(batch, length, C_T),
                           sentence=torch.randn(batch, 10), pad_mask=pad_mask)


def _cbr(x, sd, prefix, padding):
    x = F.conv2d(x, sd[prefix + 'conv.weight'], sd[prefix + 'conv.bias'], padding=padding)
    x = F.batch_norm(x, sd[prefix + 'bn.running_mean'], sd[prefix + 'bn.running_var'],
                     sd[prefix + 'bn.weight'], sd[prefix + 'bn.bias'], eps=1e-3)
    return x.relu()


def _reference(h, words, sd, hw, heads=4):
    """DETRIS's DenseAligner written out from its state dict (eval mode)."""
    b = h.shape[0]
    x0 = F.linear(h, sd['D_fc1.weight'], sd['D_fc1.bias']).relu()
    xs = x0[:, P:].reshape(b, *hw, DA).permute(0, 3, 1, 2)
    b1 = _cbr(xs, sd, 'dense_branch1.', 0)
    b2 = _cbr(_cbr(torch.cat([xs, b1], 1), sd, 'dense_branch2.0.', 0), sd, 'dense_branch2.1.', 1)
    b3 = _cbr(_cbr(torch.cat([xs, b1, b2], 1), sd, 'dense_branch3.0.', 0),
              sd, 'dense_branch3.1.', 2)
    ms = (torch.cat([b1, b2, b3], 1) + xs).reshape(b, DA, -1).permute(2, 0, 1)  # seq first
    q = F.linear(ms, sd['cross.image_proj.weight'], sd['cross.image_proj.bias'])
    kv = F.linear(words.transpose(0, 1), sd['cross.text_proj.weight'],
                  sd['cross.text_proj.bias'])
    attn, _ = F.multi_head_attention_forward(
        q, kv, kv, q.shape[-1], heads, sd['cross.multihead_attn.in_proj_weight'],
        sd['cross.multihead_attn.in_proj_bias'], None, None, False, 0.,
        sd['cross.multihead_attn.out_proj.weight'], sd['cross.multihead_attn.out_proj.bias'],
        training=False, need_weights=False)
    attn = F.linear(attn, sd['cross.back_proj.weight'], sd['cross.back_proj.bias'])
    out = torch.cat([x0[:, :P], attn.transpose(0, 1)], 1) + x0
    return F.linear(out, sd['D_fc2.weight'], sd['D_fc2.bias'])


@pytest.mark.parametrize('hw', [HW, (3, 3)])
def test_dense_aligner_equals_detris_formula(hw):
    torch.manual_seed(0)
    adapter = _aligner().eval()
    h, text = _inputs(hw=hw)
    out, routing = adapter(h, text, hw, P)
    assert out.shape == h.shape and routing is None  # DenseAligner does not route
    assert torch.allclose(out, _reference(h, text.words, adapter.state_dict(), hw), atol=1e-5)


def test_dense_aligner_has_detris_parameter_names():
    names = set(DenseAligner(768, 128).state_dict())
    expected = {'D_fc1.weight', 'D_fc1.bias', 'D_fc2.weight', 'D_fc2.bias',
                'cross.multihead_attn.in_proj_weight', 'cross.multihead_attn.in_proj_bias',
                'cross.multihead_attn.out_proj.weight', 'cross.multihead_attn.out_proj.bias',
                'cross.image_proj.weight', 'cross.text_proj.weight', 'cross.back_proj.bias'}
    for branch in ('dense_branch1.', 'dense_branch2.0.', 'dense_branch2.1.',
                   'dense_branch3.0.', 'dense_branch3.1.'):
        expected |= {branch + k for k in ('conv.weight', 'conv.bias', 'bn.weight', 'bn.bias',
                                          'bn.running_mean', 'bn.running_var',
                                          'bn.num_batches_tracked')}
    assert expected <= names and len(names - expected) == 3  # the 3 biases not listed above
    # DETRIS-B's 382,896 parameters per adapter
    assert sum(p.numel() for p in DenseAligner(768, 128).parameters()) == 382_896


def test_dense_aligner_ignores_the_padding_only_with_use_pad_mask():
    torch.manual_seed(0)
    h, text = _inputs(num_pad=2)
    words = text.words.clone()
    words[:, -1] += 10 * torch.randn(2, C_T)
    changed = text._replace(words=words)
    detris = _aligner().eval()
    assert (detris(h, text, HW, P)[0] - detris(h, changed, HW, P)[0]).abs().max() > 1e-4
    masked = _aligner(use_pad_mask=True).eval()
    assert torch.allclose(masked(h, text, HW, P)[0], masked(h, changed, HW, P)[0], atol=1e-6)


def test_cross_residual_adds_the_queries():
    torch.manual_seed(0)
    plain = _aligner().eval()
    residual = _aligner(cross_residual=True).eval()
    residual.load_state_dict(plain.state_dict())
    h, text = _inputs()
    diff = residual(h, text, HW, P)[0] - plain(h, text, HW, P)[0]
    # the difference is D_fc2's weight applied to F_ms on the patch tokens only
    assert torch.equal(diff[:, :P], torch.zeros_like(diff[:, :P]))
    assert diff[:, P:].abs().max() > 1e-4


def test_zero_init_out_gives_zeros_and_still_learns():
    torch.manual_seed(0)
    adapter = DenseAligner(D, DA, C_T, 16, 4, zero_init_out=True)
    adapter.init_weights()
    h, text = _inputs()
    out, _ = adapter(h, text, HW, P)
    assert torch.equal(out, torch.zeros_like(out))
    out.sum().backward()
    assert adapter.D_fc2.weight.grad.abs().sum() > 0


def test_default_init_is_detris():
    torch.manual_seed(0)
    adapter = DenseAligner(768, 128)
    adapter.init_weights()
    assert torch.equal(adapter.D_fc1.bias, torch.zeros(128))
    assert adapter.D_fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)
    conv = adapter.dense_branch1.conv
    # kaiming_normal fan_in for ReLU: std = sqrt(2 / 128)
    assert conv.weight.std().item() == pytest.approx((2 / 128) ** 0.5, rel=0.1)
    assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    assert adapter.D_fc2.weight.abs().sum() > 0


def test_dense_aligner_reports_wrong_inputs():
    adapter = _aligner()
    h, text = _inputs()
    with pytest.raises(ValueError, match='expected tokens'):
        adapter(h, text, (4, 4), P)
    with pytest.raises(ValueError, match='text.words'):
        adapter(h, text._replace(words=torch.randn(2, 6, C_T + 1)), HW, P)
    with pytest.raises(ValueError, match='needs the text'):
        adapter(h, None, HW, P)
