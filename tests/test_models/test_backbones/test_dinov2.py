"""DINOv2: checkpoint loading, adapter slots, PET freezing, input checks."""
import runpy
import sys
from pathlib import Path

import pytest
import torch
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer

import sera_mm.models.backbones.dinov2 as dinov2_module
from sera_mm.models.adapters import DenseAligner
from sera_mm.models.backbones import (DINOv2, DINOv2Layer, convert_dinov2_official,
                                      resize_pos_embed)
from sera_mm.models.utils.structures import TextFeatures
from sera_mm.registry import MODELS
from helpers.dinov2_official_layout import (ARCHS, official_dinov2_state_dict,
                                            save_official_dinov2)

TINY = ARCHS['tiny']
ADAPTER = dict(type='DenseAligner', text_channels=16, channels=16, embed_channels=16,
               num_heads=2)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope='module')
def official_file(tmp_path_factory):
    """A random tiny DINOv2 (4 registers) saved in the official layout."""
    return save_official_dinov2(tmp_path_factory.mktemp('dinov2') / 'tiny.pth', 'tiny')


def _pretrained(path, **kwargs) -> DINOv2:
    cfg = dict(type='DINOv2', arch=TINY, out_indices=(0, 1, 2),
               init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def _text(batch: int, length: int = 5, dims: int = 16) -> TextFeatures:
    gen = torch.Generator().manual_seed(3)
    pad_mask = torch.zeros(batch, length, dtype=torch.bool)
    pad_mask[:, 3:] = True
    return TextFeatures(torch.randn(batch, length, dims, generator=gen),
                        torch.randn(batch, dims, generator=gen), pad_mask)


def _image(batch: int = 2, height: int = 56, width: int = 70) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ loading
def test_official_file_loads_converted_and_logged(official_file, monkeypatch):
    logs = []
    monkeypatch.setattr(dinov2_module, 'print_log', lambda msg, **kw: logs.append(msg))
    model = _pretrained(official_file)
    official = torch.load(official_file, weights_only=True)
    state = model.state_dict()
    assert torch.equal(state['cls_token'], official['cls_token'])
    assert torch.equal(state['register_tokens'], official['register_tokens'])
    assert torch.equal(state['pos_embed'], official['pos_embed'])
    assert torch.equal(state['patch_embed.projection.weight'], official['patch_embed.proj.weight'])
    assert torch.equal(state['layers.1.attn.gamma1.weight'], official['blocks.1.ls1.gamma'])
    assert torch.equal(state['layers.2.ffn.layers.0.0.weight'], official['blocks.2.mlp.fc1.weight'])
    assert torch.equal(state['layers.2.ffn.layers.1.bias'], official['blocks.2.mlp.fc2.bias'])
    assert torch.equal(state['layers.0.ffn.gamma2.weight'], official['blocks.0.ls2.gamma'])
    assert torch.equal(state['ln1.weight'], official['norm.weight'])
    assert len(logs) == 1
    assert 'official DINOv2 layout, converted' in logs[0]
    assert "dropped ['mask_token']" in logs[0]
    assert 'pos_embed used as stored (37x37 grid)' in logs[0]


def test_converter_cli_output_loads_identically(official_file, tmp_path, monkeypatch):
    dst = tmp_path / 'converted.pth'
    script = str(REPO / 'tools/model_converters/dinov2_to_mmpretrain.py')
    monkeypatch.setattr(sys, 'argv', [script, str(official_file), str(dst)])
    runpy.run_path(script, run_name='__main__')
    converted = torch.load(dst, weights_only=True)
    assert not any(k.startswith('blocks.') for k in converted['state_dict'])
    from_official = _pretrained(official_file)
    from_converted = _pretrained(dst)
    x = _image()
    with torch.no_grad():
        for a, b in zip(from_official(x)[0], from_converted(x)[0]):
            assert torch.equal(a, b)


def test_prefixed_whole_model_checkpoint_loads(official_file, tmp_path):
    reference = _pretrained(official_file)
    wrapped = {'state_dict': {f'module.backbone.{k}': v
                              for k, v in reference.state_dict().items()}}
    torch.save(wrapped, tmp_path / 'segmentor.pth')
    model = MODELS.build(dict(type='DINOv2', arch=TINY, out_indices=(2, ), init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'segmentor.pth'), prefix='backbone.')))
    model.init_weights()
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize('change, message', [
    (lambda sd: sd.pop('blocks.1.norm2.bias'), 'layers.1.ln2.bias'),
    (lambda sd: sd.update({'blocks.0.attn.extra': torch.zeros(1)}), 'blocks.0.attn.extra'),
    (lambda sd: sd.pop('register_tokens'), 'register_tokens'),
])
def test_missing_or_unexpected_key_is_named(tmp_path, change, message):
    state_dict = official_dinov2_state_dict('tiny')
    change(state_dict)
    path = save_official_dinov2(tmp_path / 'broken.pth', 'tiny', state_dict=state_dict)
    with pytest.raises(KeyError, match=message.replace('.', r'\.')):
        _pretrained(path)


def test_registers_in_file_but_not_in_model_is_an_error(official_file):
    with pytest.raises(KeyError, match='unexpected keys.*register_tokens'):
        _pretrained(official_file, num_register_tokens=0)


def test_pos_embed_resized_at_load_like_on_the_fly(official_file, monkeypatch):
    """img_size=448 stores a 32x32 grid, resized (antialias) from the file's
    37x37 at load; it must match the 518 model resizing at forward time."""
    logs = []
    monkeypatch.setattr(dinov2_module, 'print_log', lambda msg, **kw: logs.append(msg))
    at_448 = _pretrained(official_file, img_size=448)
    at_518 = _pretrained(official_file)
    assert at_448.pos_embed.shape == (1, 1 + 32 * 32, TINY['embed_dims'])
    assert any('resized from a 37x37 to a 32x32 grid' in m for m in logs)
    x = _image(1, 448, 448)
    with torch.no_grad():
        for a, b in zip(at_448(x)[0], at_518(x)[0]):
            assert torch.equal(a, b)


def test_resize_uses_antialias_not_plain_bicubic():
    pos = torch.randn(1, 1 + 37 * 37, 8, generator=torch.Generator().manual_seed(0))
    resized = resize_pos_embed(pos, (37, 37), (32, 20), 1)
    grid = pos[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(32, 20), mode='bicubic',
                                               antialias=True)
    plain = torch.nn.functional.interpolate(grid, size=(32, 20), mode='bicubic')
    expected = expected.permute(0, 2, 3, 1).reshape(1, -1, 8)
    assert torch.equal(resized[:, :1], pos[:, :1])
    assert torch.allclose(resized[:, 1:], expected, atol=1e-6)
    assert (plain.permute(0, 2, 3, 1).reshape(1, -1, 8) - expected).abs().max() > 1e-3
    assert resize_pos_embed(pos, (37, 37), (37, 37), 1) is pos


@pytest.mark.parametrize('grid', [(32, 32), (32, 20), (16, 24)])
def test_detris_resize_is_bicubic_with_the_offset_scale_factor(grid):
    """DETRIS's DINOv2: no antialias, scale factor (grid + 0.1) / 37 per side."""
    pos = torch.randn(1, 1 + 37 * 37, 8, generator=torch.Generator().manual_seed(0))
    resized = resize_pos_embed(pos, (37, 37), grid, 1, mode='detris')
    table = pos[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(
        table, scale_factor=((grid[0] + 0.1) / 37, (grid[1] + 0.1) / 37), mode='bicubic',
        antialias=False).permute(0, 2, 3, 1).reshape(1, -1, 8)
    by_size = torch.nn.functional.interpolate(table, size=grid, mode='bicubic')
    assert torch.equal(resized[:, :1], pos[:, :1])
    assert torch.equal(resized[:, 1:], expected)
    assert (by_size.permute(0, 2, 3, 1).reshape(1, -1, 8) - expected).abs().max() > 1e-3
    assert resize_pos_embed(pos, (37, 37), (37, 37), 1, mode='detris') is pos


def test_pos_embed_mode_reaches_the_forward(official_file):
    official = _pretrained(official_file)
    detris = _pretrained(official_file, pos_embed_mode='detris')
    x = _image(1, 448, 448)
    with torch.no_grad():
        assert (official(x)[0][0] - detris(x)[0][0]).abs().max() > 1e-4
    at_518 = _image(1, 518, 518)  # the stored grid: both use it as it is
    with torch.no_grad():
        assert torch.equal(official(at_518)[0][0], detris(at_518)[0][0])
    with pytest.raises(ValueError, match="pos_embed_mode='dinov2'"):
        DINOv2(arch=TINY, pos_embed_mode='dinov2')


def test_convert_rejects_unknown_official_key():
    with pytest.raises(KeyError, match=r'blocks\.0\.mlp\.fc3\.weight'):
        convert_dinov2_official({'blocks.0.mlp.fc3.weight': torch.zeros(1)})


def test_giant_arch_has_the_official_shapes():
    with torch.device('meta'):
        model = DINOv2(arch='giant', out_indices=(39, ))
    state = model.state_dict()
    assert len(model.layers) == 40 and model.embed_dims == 1536
    assert state['layers.0.ffn.w12.weight'].shape == (8192, 1536)
    assert state['layers.0.ffn.w3.weight'].shape == (1536, 4096)
    assert state['layers.0.ffn.gamma2.weight'].shape == (1536, )


# ------------------------------------------------------------------ forward
def test_forward_shapes_order_and_layout(official_file):
    model = _pretrained(official_file, out_indices=(2, -3))
    outs, routings = model(_image(2, 56, 70))
    assert [o.shape for o in outs] == [(2, 32, 4, 5)] * 2 and routings == {}
    all_maps, _ = _pretrained(official_file)(_image(2, 56, 70))
    assert torch.equal(outs[0], all_maps[2]) and torch.equal(outs[1], all_maps[0])


def test_input_not_multiple_of_patch_is_refused(official_file):
    model = _pretrained(official_file)
    with pytest.raises(ValueError, match=r'\(1, 3, 57, 70\).*patch size 14'):
        model(torch.zeros(1, 3, 57, 70))
    with pytest.raises(ValueError, match=r'B x 3 x H x W.*\(3, 56, 70\)'):
        model(torch.zeros(3, 56, 70))


def test_layer_without_adapter_is_the_pretrained_block_bit_for_bit():
    kwargs = dict(embed_dims=32, num_heads=2, feedforward_channels=64,
                  layer_scale_init_value=0.5, norm_cfg=dict(type='LN', eps=1e-6))
    plain = TransformerEncoderLayer(**kwargs)
    ours = DINOv2Layer(**kwargs)
    ours.load_state_dict(plain.state_dict())
    x = torch.randn(2, 9, 32)
    assert torch.equal(ours(x)[0], plain(x)) and ours(x)[1] is None


@pytest.mark.parametrize('ffn_type', ['origin', 'swiglu_fused'])
def test_adapted_layer_formula(ffn_type):
    """X + ls2(FFN(H) + gamma * A(H)) with H = LN2(X + ls1(Attn(LN1 X)))."""
    torch.manual_seed(0)
    layer = DINOv2Layer(embed_dims=32, num_heads=2, feedforward_channels=64,
                        layer_scale_init_value=0.5, ffn_type=ffn_type).eval()
    with torch.no_grad():
        layer.ffn.gamma2.weight.uniform_(0.2, 1.0)
    adapter = DenseAligner(in_channels=32, text_channels=16, channels=16, embed_channels=16,
                           num_heads=2).eval()
    torch.nn.init.normal_(adapter.D_fc2.weight)
    text = _text(2)
    x = torch.randn(2, 1 + 4 + 6, 32)
    got, _ = layer(x, adapter=adapter, text=text, hw=(2, 3), num_prefix_tokens=5,
                   adapter_scale=0.2)
    x1 = x + layer.attn(layer.ln1(x))
    h = layer.ln2(x1)
    # the FFN alone, from its own forward: (residual + ls2 * MLP) - residual
    mlp = (layer.ffn(h, identity=torch.zeros_like(h))) / layer.ffn.gamma2.weight
    branch = mlp + 0.2 * adapter(h, text, (2, 3), 5)[0]
    expected = x1 + layer.ffn.gamma2.weight * branch
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, layer(x)[0], atol=1e-3)


@pytest.mark.parametrize('arch', ['tiny', 'tiny_swiglu'])
def test_zero_init_adapters_keep_outputs_and_get_gradients(tmp_path, arch):
    path = save_official_dinov2(tmp_path / f'{arch}.pth', arch)
    plain = _pretrained(path, arch=ARCHS[arch])
    adapted = _pretrained(path, arch=ARCHS[arch], adapter_indices=(0, 2),
                          adapter_cfg=dict(ADAPTER, zero_init_out=True))
    assert sorted(adapted.adapters.keys()) == ['0', '2']
    assert adapted.adapters['0'].in_channels == TINY['embed_dims']
    x, text = _image(), _text(2)
    with torch.no_grad():
        expected, _ = plain(x)
    outs, routings = adapted(x, text)
    assert routings == {}  # DenseAligners do not route
    for a, b in zip(outs, expected):
        assert torch.equal(a, b)
    sum(o.square().sum() for o in outs).backward()
    for adapter in adapted.adapters.values():
        assert adapter.D_fc2.weight.grad is not None
        assert adapter.D_fc2.weight.grad.abs().sum() > 0


def test_sera_adapters_return_their_routing_by_block(official_file):
    adapted = _pretrained(official_file, adapter_indices=(0, 2), adapter_cfg=dict(
        ADAPTER, type='SERAAdapter', sentence_channels=16))
    state = dict(vars(adapted))
    _, routings = adapted(_image(), _text(2))
    assert list(routings) == ['0', '2']
    for routing in routings.values():
        assert routing.weights.shape == (2, 2) and routing.indices is None
        assert torch.allclose(routing.weights.sum(1), torch.ones(2))
    assert vars(adapted) == state  # nothing of the forward is kept on the module


def test_adapter_needs_text(official_file):
    adapted = _pretrained(official_file, adapter_indices=(1, ), adapter_cfg=ADAPTER)
    with pytest.raises(ValueError, match='needs the text features'):
        adapted(_image())


def test_adapter_index_outside_arch_is_refused():
    with pytest.raises(ValueError, match='adapter_indices holds 5'):
        DINOv2(arch=TINY, out_indices=(2, ), adapter_indices=(5, ),
               adapter_cfg=dict(type='DenseAligner'))


# ---------------------------------------------------------------- trainable
def _trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_bitfit_ln_on_base_trains_under_one_percent():
    model = DINOv2(arch='base', trainable='bitfit_ln')
    trainable = _trainable_names(model)
    total = sum(p.numel() for p in model.parameters())
    count = sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    print(f'DINOv2-B bitfit_ln: {count} / {total} trainable = {100 * count / total:.3f}%')
    assert count / total < 0.01
    ln_names = {f'{n}.{p}' for n, m in model.named_modules()
                if isinstance(m, torch.nn.LayerNorm) for p in ('weight', 'bias')}
    assert trainable == {n for n, _ in model.named_parameters()
                         if n.endswith('.bias') or n in ln_names}
    assert 'layers.0.ln1.weight' in trainable and 'ln1.weight' in trainable
    assert 'layers.0.attn.qkv.bias' in trainable
    assert not {'layers.0.attn.qkv.weight', 'pos_embed', 'cls_token', 'register_tokens',
                'layers.0.attn.gamma1.weight'} & trainable


def test_frozen_params_stay_frozen(official_file):
    model = _pretrained(official_file, adapter_indices=(1, ), adapter_cfg=ADAPTER)
    expected = _trainable_names(model)
    assert {n for n in expected if n.startswith('adapters.')} == {
        n for n, _ in model.named_parameters() if n.startswith('adapters.')}
    model.requires_grad_(True)
    model.train()
    assert _trainable_names(model) == expected
    model.requires_grad_(True)
    model._is_init = False
    model.init_weights()
    assert _trainable_names(model) == expected


@pytest.mark.parametrize('mode', ['all', 'none'])
def test_trainable_all_and_none(mode):
    model = DINOv2(arch=TINY, trainable=mode, out_indices=(2, ), adapter_indices=(1, ),
                   adapter_cfg=ADAPTER)
    backbone = {n for n, _ in model.named_parameters() if not n.startswith('adapters.')}
    adapters = {n for n, _ in model.named_parameters() if n.startswith('adapters.')}
    trainable = _trainable_names(model.train())
    assert trainable == (backbone | adapters if mode == 'all' else adapters)


def test_bad_trainable_and_arch_are_named():
    with pytest.raises(ValueError, match="trainable='bitfit'"):
        DINOv2(arch=TINY, out_indices=(2, ), trainable='bitfit')
    with pytest.raises(ValueError, match="arch 'huge'"):
        DINOv2(arch='huge')
