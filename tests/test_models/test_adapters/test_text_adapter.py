"""DETRIS's text adapter (docs/en/method.md, s. 1)."""
import pytest
import torch
import torch.nn.functional as F

from sera_mm.models.adapters import TextAdapter
from sera_mm.registry import MODELS
from helpers.norms import randomise_norms

D, DA = 24, 32


def _conv_bn_relu(x, sd, prefix, padding):
    x = F.conv1d(x, sd[prefix + 'conv.weight'], sd[prefix + 'conv.bias'], padding=padding)
    x = F.batch_norm(x, sd[prefix + 'bn.running_mean'], sd[prefix + 'bn.running_var'],
                     sd[prefix + 'bn.weight'], sd[prefix + 'bn.bias'], eps=1e-3)
    return x.relu()


def _reference(x, sd):
    """DETRIS's TextAdapter written out from its state dict (eval mode)."""
    x0 = F.linear(x, sd['D_fc1.weight'], sd['D_fc1.bias']).relu()
    xs = x0[:, 1:].transpose(1, 2)
    b1 = _conv_bn_relu(xs, sd, 'dense_branch1.', 0)
    b2 = _conv_bn_relu(_conv_bn_relu(torch.cat([xs, b1], 1), sd, 'dense_branch2.0.', 0),
                       sd, 'dense_branch2.1.', 1)
    b3 = _conv_bn_relu(_conv_bn_relu(torch.cat([xs, b1, b2], 1), sd, 'dense_branch3.0.', 0),
                       sd, 'dense_branch3.1.', 2)
    out = torch.cat([x0[:, :1], torch.cat([b1, b2, b3], 1).transpose(1, 2)], 1) + x0
    return F.linear(out, sd['D_fc2.weight'], sd['D_fc2.bias'])


def test_text_adapter_equals_detris_formula_with_detris_names():
    torch.manual_seed(0)
    adapter = randomise_norms(MODELS.build(dict(type='TextAdapter', in_channels=D,
                                                channels=DA))).eval()
    sd = adapter.state_dict()
    # DETRIS's parameter names and shapes (in=32 -> 1x1 16; 3x3 2 -> 8; 5x5 2 -> 8)
    assert sd['dense_branch1.conv.weight'].shape == (16, 32, 1)
    assert sd['dense_branch2.0.conv.weight'].shape == (2, 48, 1)
    assert sd['dense_branch2.1.conv.weight'].shape == (8, 2, 3)
    assert sd['dense_branch3.0.conv.weight'].shape == (2, 56, 1)
    assert sd['dense_branch3.1.conv.weight'].shape == (8, 2, 5)
    assert adapter.dense_branch1.bn.eps == 1e-3
    x = torch.randn(3, 7, D)
    out = adapter(x)
    assert out.shape == x.shape
    assert torch.allclose(out, _reference(x, sd), atol=1e-6)


def test_text_adapter_mixes_neighbouring_words_but_not_into_sot():
    torch.manual_seed(0)
    adapter = randomise_norms(TextAdapter(D, DA)).eval()
    x = torch.randn(1, 7, D)
    y = x.clone()
    y[:, 4] += 1.
    diff = (adapter(x) - adapter(y)).abs().amax(-1)[0]
    # the 5x5 branch reaches two words either side; SOT only sees itself
    assert diff[0] == 0 and (diff[2:7] > 0).all()


def test_text_adapter_default_init_is_pytorchs():
    torch.manual_seed(0)
    adapter = TextAdapter(512, 64)
    adapter.init_weights()
    conv = adapter.dense_branch1.conv.weight
    # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), not mmcv's kaiming_normal
    bound = 1 / 64 ** 0.5
    assert conv.abs().max() <= bound and conv.abs().max() > 0.9 * bound


def test_text_adapter_refuses_wrong_width():
    with pytest.raises(ValueError, match='TextAdapter'):
        TextAdapter(D, DA)(torch.randn(2, 5, D + 1))
    with pytest.raises(ValueError, match='divisible by 16'):
        TextAdapter(D, 40)
