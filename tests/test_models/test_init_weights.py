"""``init_weights()`` of the whole segmentor under a model-wide ``init_cfg``.

mmengine applies a module's ``init_cfg`` to all its submodules first and then
calls each child's ``init_weights``. A model-wide init must therefore reach
the ordinary layers, while every zero initialisation, residual scale and
fixed kernel of the adapters and of SERA-Fusion is re-established by its
owner (or is a buffer that ``init_cfg`` cannot touch).
"""
import os.path as osp
from typing import Iterator, List, Optional, Tuple

import pytest
import torch
from mmengine.config import Config
from torch import Tensor, nn

from sera_mm.models.fusion.kernels import (depthwise_weight, gaussian_kernel,
                                           laplacian_kernel, sobel_kernels)
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import disable_pretrained

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SERA_TINY = osp.join(REPO, 'configs', 'synthetic', 'sera-tiny_synthetic.py')
DETRIS_TINY = osp.join(REPO, 'configs', 'synthetic', 'detris-tiny_synthetic.py')

#: Every bias this init reaches becomes exactly BIAS: a value no layer of the
#: model has by itself, so it shows which layers the model-wide init reached.
BIAS = 0.25
MODEL_WIDE = dict(type='Normal', layer=['Conv1d', 'Conv2d', 'Linear'], std=0.5, bias=BIAS)


def build(path: str, init_cfg=MODEL_WIDE, pretrained: Optional[dict] = None,
          **overrides) -> nn.Module:
    """The config's model with ``init_cfg`` on the segmentor.

    Its pretrained files are off, unless ``pretrained`` gives the backbone's
    ``init_cfg`` (key 'backbone') and the text encoder's ``pretrained`` (key
    'text_encoder').
    """
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(overrides)
    disable_pretrained(cfg.model)
    if pretrained:
        cfg.model.backbone.init_cfg = pretrained['backbone']
        cfg.model.text_encoder.pretrained = pretrained['text_encoder']
    cfg.model.init_cfg = init_cfg
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def adapters(model: nn.Module) -> List[nn.Module]:
    return list(model.backbone.adapters.values())


def zeroed(model: nn.Module) -> Iterator[Tuple[str, Tensor]]:
    """(name, tensor) of every part that must start at exactly zero."""
    for i, fusion in enumerate(model.neck.fusions or []):
        spatial, context, boundary, shape = fusion.experts
        last_ffn = [m for m in context.ffn.modules() if isinstance(m, nn.Linear)][-1]
        yield from (
            (f'fusion {i} spatial proj.weight', spatial.proj.weight),
            (f'fusion {i} spatial proj.bias', spatial.proj.bias),
            (f'fusion {i} context attn.out_proj.weight', context.attn.out_proj.weight),
            (f'fusion {i} context attn.out_proj.bias', context.attn.out_proj.bias),
            (f'fusion {i} context last FFN weight', last_ffn.weight),
            (f'fusion {i} context last FFN bias', last_ffn.bias),
            (f'fusion {i} boundary scale', boundary.scale.weight),
            (f'fusion {i} shape scale', shape.scale.weight))
    for i, adapter in enumerate(adapters(model)):
        if adapter.zero_init_out:
            yield f'adapter {i} D_fc2.weight', adapter.D_fc2.weight
            yield f'adapter {i} D_fc2.bias', adapter.D_fc2.bias


def fixed_kernels(model: nn.Module) -> Iterator[Tuple[str, Tensor, Tensor]]:
    """(name, tensor, its formula) of every fixed or formula-initialised kernel."""
    for i, fusion in enumerate(model.neck.fusions or []):
        _, _, boundary, shape = fusion.experts
        c = fusion.channels
        yield (f'fusion {i} boundary sobel', boundary.sobel,
               sobel_kernels().unsqueeze(1).repeat(c, 1, 1, 1))
        yield f'fusion {i} shape blur', shape.blur, depthwise_weight(gaussian_kernel(), c)
        yield (f'fusion {i} shape laplacian', shape.laplacian.weight,
               depthwise_weight(laplacian_kernel(), c))
    for i, adapter in enumerate(adapters(model)):
        if hasattr(adapter, 'boundary_dw'):
            yield (f'adapter {i} boundary_dw', adapter.boundary_dw.conv.weight,
                   depthwise_weight(laplacian_kernel(), adapter.channels))


def reached(model: nn.Module) -> Iterator[Tuple[str, Tensor]]:
    """(name, bias) of ordinary layers that keep the model-wide init: no
    owner below the segmentor initialises them again."""
    yield 'text tower MLP', model.text_encoder.text.transformer.resblocks[0].mlp.c_fc.bias
    yield 'backbone attention qkv', model.backbone.layers[0].attn.qkv.bias
    yield 'neck txt_proj', model.neck.txt_proj.bias
    yield 'decoder FFN', model.decoder.layers[0].ffn[0].bias
    yield 'decoder cross-attention out_proj', model.decoder.layers[0].cross_attn.out_proj.bias
    yield 'head kernel_proj', model.decode_head.kernel_proj.bias
    for i, fusion in enumerate(model.neck.fusions or []):
        yield f'fusion {i} router fc2', fusion.router.fc2.bias
    for i, adapter in enumerate(adapters(model)):
        if hasattr(adapter, 'router'):
            yield f'adapter {i} soft router', adapter.router.fc.bias


CASES = [
    pytest.param(SERA_TINY, {}, id='sera-tiny'),
    pytest.param(SERA_TINY, {'model.backbone.adapter_cfg.zero_init_out': True},
                 id='sera-tiny-zero-init-adapters'),
    pytest.param(DETRIS_TINY, {'model.backbone.adapter_cfg.zero_init_out': True},
                 id='detris-tiny-zero-init-adapters'),
]


@pytest.mark.parametrize('path,overrides', CASES)
def test_model_wide_init_keeps_zeros_and_kernels(path, overrides):
    model = build(path, **overrides)
    model.init_weights()
    names = [name for name, _ in zeroed(model)]
    assert names, 'the case has no zero-initialised part to check'
    for name, tensor in zeroed(model):
        assert torch.count_nonzero(tensor) == 0, f'{name} is not zero after init_weights'
    for name, tensor, expected in fixed_kernels(model):
        assert torch.equal(tensor, expected), f'{name} differs from its kernel'
    for name, bias in reached(model):
        assert torch.all(bias == BIAS), f'{name} did not get the model-wide init'


@pytest.mark.parametrize('path', [SERA_TINY, DETRIS_TINY])
def test_adapters_end_with_their_own_default_init(path):
    """Below the model-wide init, each adapter applies its own default
    (DenseAligner: DETRIS's, zero biases; TextAdapter: PyTorch's)."""
    model = build(path)
    model.init_weights()
    for adapter in adapters(model):
        assert torch.count_nonzero(adapter.D_fc1.bias) == 0
        assert torch.count_nonzero(adapter.cross.back_proj.bias) == 0
        assert adapter.D_fc1.weight.std().item() == pytest.approx(0.02, rel=0.3)
    for adapter in model.text_encoder.adapters.values():
        bound = adapter.D_fc1.in_features ** -0.5
        assert adapter.D_fc1.weight.abs().max() <= bound
        assert not torch.any(adapter.D_fc1.bias == BIAS)


@pytest.mark.parametrize('path', [SERA_TINY, DETRIS_TINY])
def test_without_init_cfg_the_zeros_and_kernels_hold_too(path):
    model = build(path, init_cfg=None, **{'model.backbone.adapter_cfg.zero_init_out': True})
    model.init_weights()
    for name, tensor in zeroed(model):
        assert torch.count_nonzero(tensor) == 0, name
    for name, tensor, expected in fixed_kernels(model):
        assert torch.equal(tensor, expected), name


def test_pretrained_weights_win_over_the_model_wide_init(tmp_path):
    """DINOv2's ``Pretrained`` init_cfg and the text encoder's ``pretrained``
    are loaded after the model-wide init; the adapters keep their own init."""
    source = build(SERA_TINY, init_cfg=None)
    source.init_weights()
    backbone_file = str(tmp_path / 'dinov2.pth')
    backbone_sd = {k: v for k, v in source.backbone.state_dict().items()
                   if not k.startswith('adapters.')}
    torch.save(backbone_sd, backbone_file)
    clip_file = str(tmp_path / 'clip.pth')
    text_sd = source.text_encoder.text.state_dict()
    torch.save(text_sd, clip_file)

    model = build(SERA_TINY,
                  pretrained=dict(backbone=dict(type='Pretrained', checkpoint=backbone_file),
                                  text_encoder=clip_file),
                  **{'model.backbone.adapter_cfg.zero_init_out': True})
    model.init_weights()
    for key, value in model.backbone.state_dict().items():
        if not key.startswith('adapters.'):
            assert torch.equal(value, backbone_sd[key]), key
    for key, value in model.text_encoder.text.state_dict().items():
        assert torch.equal(value, text_sd[key]), key
    for name, tensor in zeroed(model):
        assert torch.count_nonzero(tensor) == 0, name
    for name, tensor, expected in fixed_kernels(model):
        assert torch.equal(tensor, expected), name
    assert torch.all(model.neck.txt_proj.bias == BIAS)
