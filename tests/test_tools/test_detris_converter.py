"""tools/model_converters/detris2sera_mm.py: DETRIS checkpoints -> sera_mm.

The checkpoints are made by ``detris_reference`` in DETRIS's key layout
(random weights, saved as DETRIS's train.py saves them); the converted model
must give the same mask logits as ``detris_reference.detris_forward``, an
independent, functional reading of DETRIS's code.
"""
import copy
import os.path as osp
import sys

import open_clip
import pytest
import torch
from mmengine.config import Config
from mmseg.structures import SegDataSample

from sera_mm.engine.runner import check_checkpoint_matches
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import disable_pretrained
from helpers import detris_reference as R
from helpers.tool_runner import REPO, load_tool

converter = load_tool('model_converters/detris2sera_mm.py')
DETRIS_B = 'configs/detris/detris_dinov2-b_refcoco.py'
TOL = 1e-4
#: A sentence longer than 17 and 22 tokens (cut, EOT kept last), 3 words, 1, none.
SENTENCES = ('the man in the dark red shirt standing on the far left side of the '
             'picture next to a small tree and a bench', 'big blue car', 'dog', '')


def _config_model(path: str, **overrides) -> torch.nn.Module:
    cfg = Config.fromfile(osp.join(REPO, path))
    cfg.merge_from_dict(overrides)
    disable_pretrained(cfg.model)
    return MODELS.build(cfg.model)


def _tiny_model_cfg(arch: R.DetrisArch, **neck) -> dict:
    """DETRIS-B's sera_mm model config with the sizes of ``arch``."""
    cfg = copy.deepcopy(Config.fromfile(
        osp.join(REPO, 'configs/_base_/models/detris_dinov2-b.py')).model.to_dict())
    cfg['text_encoder'].update(
        text_cfg=dict(context_length=arch.context_length, vocab_size=arch.vocab_size,
                      width=arch.text_width, heads=arch.text_heads, layers=arch.text_layers),
        embed_dim=arch.embed_dim, quick_gelu=True, pretrained=None, context_length=arch.word_len,
        adapter_cfg=dict(type='TextAdapter', channels=arch.text_adapter_width),
        adapter_indices=arch.text_adapter_blocks)
    cfg['backbone'].update(
        arch=dict(embed_dims=arch.dino_width, num_layers=arch.dino_depth,
                  num_heads=arch.dino_heads,
                  feedforward_channels=arch.dino_mlp_ratio * arch.dino_width),
        img_size=arch.pos_grid * arch.patch_size,
        out_indices=arch.output_dinov2 + (arch.dino_depth - 1, ),
        adapter_cfg=dict(type='DenseAligner', channels=arch.visual_adapter_width,
                         text_channels=arch.text_width, embed_channels=arch.cross_embed_dim,
                         num_heads=arch.cross_heads),
        adapter_indices=arch.visual_adapter_blocks, init_cfg=None)
    cfg['neck'].update(in_channels=[arch.dino_width] * 3, channels=arch.neck_width,
                       text_channels=arch.embed_dim, num_heads=arch.neck_heads, **neck)
    cfg['decoder'].update(num_layers=arch.dec_layers, channels=arch.neck_width,
                          text_channels=arch.text_width, num_heads=arch.dec_heads,
                          feedforward_channels=arch.dec_ffn)
    cfg['decode_head'].update(in_channels=arch.neck_width, channels=arch.proj_in_dim,
                              text_channels=arch.embed_dim)
    return cfg


def _samples(size: int) -> list:
    return [SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                        text=text)) for text in SENTENCES]


def _compare(model: torch.nn.Module, reference: dict, arch: R.DetrisArch, size: int,
             seed: int = 0) -> float:
    # DETRIS is fed CLIP's tokens (open_clip's tokenizer, cut to word_len with
    # EOT last); sera_mm's model tokenises the sentences itself
    tokens = open_clip.tokenize(list(SENTENCES), context_length=arch.word_len)
    assert (tokens[0] != 0).all() and tokens[0, -1] == R.EOT_TOKEN  # the cut sentence
    images = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ours = model.eval()(images, _samples(size), mode='tensor')
    expected = R.detris_forward(reference, arch, images, tokens)
    assert ours.shape == expected.shape
    return (ours - expected).abs().max().item()


@pytest.fixture(scope='module')
def detris_b_file(tmp_path_factory):
    """A DETRIS-B checkpoint as DETRIS's train.py writes it, random weights."""
    state_dict = R.make_detris_state_dict(R.detris_b(), seed=0)
    path = str(tmp_path_factory.mktemp('detris') / 'last_model.pth')
    R.save_like_detris_train(path, state_dict)
    return path, state_dict


@pytest.mark.parametrize('gate', ['detris', 'folded'])
@pytest.mark.parametrize('size', [112, 84])  # the stored 8 x 8 grid; an interpolated 6 x 6
def test_tiny_converted_model_equals_detris(tmp_path, gate, size):
    arch = R.tiny()
    reference = R.make_detris_state_dict(arch, seed=1)
    path = str(tmp_path / 'last_model.pth')
    R.save_like_detris_train(path, reference)
    state_dict, record = converter.read_detris_checkpoint(path)
    converted, dropped = converter.convert_detris(state_dict, arch.word_len, gate)
    assert set(dropped) == {'txt_backbone.logit_scale', 'dinov2.mask_token'}
    assert record['epoch'] == 50
    model = MODELS.build(_tiny_model_cfg(arch, gate=gate))
    model.load_state_dict(converted, strict=True)
    diff = _compare(model, reference, arch, size)
    print(f'tiny, gate={gate}, {size} px: max |sera_mm - DETRIS| = {diff:.2e}')
    assert diff <= TOL


def test_detris_b_converted_in_its_config_equals_detris(detris_b_file):
    path, reference = detris_b_file
    state_dict, _ = converter.read_detris_checkpoint(path)
    converted, _ = converter.convert_detris(state_dict, 17, 'detris')
    model = _config_model(DETRIS_B)
    model.load_state_dict(converted, strict=True)
    # 224 px keeps the test fast; the position grid is interpolated as at 448
    diff = _compare(model, reference, R.detris_b(), 224)
    print(f'DETRIS-B, 224 px: max |sera_mm - DETRIS| = {diff:.2e}')
    assert diff <= TOL


def test_the_tool_writes_a_checkpoint_that_test_py_accepts(detris_b_file, tmp_path,
                                                           monkeypatch, capsys):
    src, _ = detris_b_file
    dst = str(tmp_path / 'out' / 'detris_b.pth')
    monkeypatch.setattr(sys, 'argv', ['detris2sera_mm.py', src, dst])
    converter.main()
    assert 'DETRIS-B' in capsys.readouterr().out
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert ckpt['meta']['config'] == DETRIS_B and ckpt['meta']['context_length'] == 17
    model = _config_model(DETRIS_B)
    check_checkpoint_matches(model, dst)  # what tools/test.py runs before testing
    assert not model.load_state_dict(ckpt['state_dict'], strict=True).missing_keys
    assert ckpt['state_dict']['text_encoder.text.positional_embedding'].shape == (17, 512)


def test_refcocog_umd_config_keeps_22_positions(detris_b_file, tmp_path, monkeypatch):
    src, reference = detris_b_file
    dst = str(tmp_path / 'umd.pth')
    config = osp.join(REPO, 'configs/detris/detris_dinov2-b_refcocog-umd.py')
    monkeypatch.setattr(sys, 'argv', ['detris2sera_mm.py', src, dst, '--config', config])
    converter.main()
    pos = torch.load(dst, weights_only=True)['state_dict']['text_encoder.text.positional_embedding']
    assert torch.equal(pos, reference['txt_backbone.positional_embedding'][:22])


@pytest.mark.parametrize('preset, config', [
    (R.detris_l, 'configs/detris/detris_dinov2-l_refcoco.py'),
    (R.detris_l_mixed, 'configs/detris/detris_dinov2-l_refcoco-mixed.py'),
])
def test_detris_l_keys_fit_their_configs(preset, config):
    """Key set and shapes only (a ViT-L forward is too slow for the suite)."""
    state_dict = R.make_detris_state_dict(preset(), seed=0)
    assert converter.detect_model(state_dict) == {
        'configs/detris/detris_dinov2-l_refcoco.py': 'DETRIS-L',
        'configs/detris/detris_dinov2-l_refcoco-mixed.py': 'DETRIS-L (mixed)'}[config]
    converted, _ = converter.convert_detris(state_dict, 17, 'detris')
    cfg = Config.fromfile(osp.join(REPO, config))
    disable_pretrained(cfg.model)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected


def test_f5_projection_is_transposed_and_bare_state_dicts_load(tmp_path):
    arch = R.tiny()
    reference = R.make_detris_state_dict(arch, seed=2)
    bare = str(tmp_path / 'bare.pth')
    torch.save(dict(reference), bare)  # no 'state_dict', no 'module.'
    state_dict, record = converter.read_detris_checkpoint(bare)
    assert record == {}
    converted, _ = converter.convert_detris(state_dict, arch.word_len)
    assert torch.equal(converted['neck.projs.2.conv.weight'],
                       reference['neck.f5_proj.0.weight'].transpose(0, 1))


def test_unknown_key_is_named():
    state_dict = dict(R.make_detris_state_dict(R.tiny()))
    state_dict['neck.extra_proj.weight'] = torch.zeros(1)
    with pytest.raises(KeyError, match=r'neck\.extra_proj\.weight'):
        converter.convert_detris(state_dict, 17)


def test_missing_key_is_named_before_anything_is_written(detris_b_file, tmp_path, monkeypatch):
    _, reference = detris_b_file
    broken = dict(reference)
    del broken['decoder.layers.1.ffn.3.weight']
    src, dst = str(tmp_path / 'broken.pth'), tmp_path / 'never.pth'
    R.save_like_detris_train(src, broken)
    monkeypatch.setattr(sys, 'argv', ['detris2sera_mm.py', src, str(dst)])
    with pytest.raises(ValueError, match=r'decoder\.layers\.1\.ffn\.3\.weight'):
        converter.main()
    assert not dst.exists() and not list(tmp_path.glob('.never.pth*'))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'hook': print}, path)  # a global torch will not load
    with pytest.raises(ValueError, match='weights_only=True'):
        converter.read_detris_checkpoint(path)


def test_sera_warm_started_from_detris_loads_every_detris_weight(detris_b_file, tmp_path,
                                                                 monkeypatch):
    """``load_from`` a converted DETRIS-B: all of DETRIS loads, only SERA's own
    weights start fresh, and the log names them."""
    from mmengine.logging import MMLogger
    from mmengine.runner.checkpoint import load_checkpoint
    src, _ = detris_b_file
    dst = str(tmp_path / 'detris_b.pth')
    monkeypatch.setattr(sys, 'argv', ['detris2sera_mm.py', src, dst])
    converter.main()
    detris = torch.load(dst, weights_only=True)['state_dict']
    sera = _config_model('configs/ablations/sera_dinov2-b_from-detris_refcoco.py')
    sera_keys = set(sera.state_dict())
    messages = []
    logger = MMLogger.get_instance('warm_start_test')
    monkeypatch.setattr(logger, 'log', lambda level, msg, *a, **k: messages.append(msg))
    load_checkpoint(sera, dst, map_location='cpu', strict=False, logger=logger)
    assert set(detris) <= sera_keys
    fresh = sorted(sera_keys - set(detris))
    assert fresh and all(k.startswith('neck.fusions.') or
                         k.split('.')[3] in ('spatial_dw', 'boundary_dw', 'router')
                         for k in fresh), fresh
    state = sera.state_dict()
    assert all(torch.equal(state[k], v) for k, v in detris.items())
    assert any('missing keys' in m and 'neck.fusions.0' in m for m in messages)
