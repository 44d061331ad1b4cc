"""Self-checks of the DETRIS reference (tests/helpers/detris_reference.py).

They need neither DETRIS's code nor sera_mm: they check that the reference
is deterministic, saves what DETRIS's train.py saves, and really uses the
weights it is given.
"""
import collections

import pytest
import torch

from helpers.detris_reference import (EOT_TOKEN, SOT_TOKEN, DetrisArch, detris_b, detris_forward,
                                      detris_l_mixed, detris_state_dict_spec,
                                      make_detris_state_dict, make_detris_tokens,
                                      save_like_detris_train, tiny)


@pytest.fixture(scope='module')
def tiny_case():
    """The tiny arch, its weights, inputs (a full and a short row) and logits."""
    arch = tiny()
    state = make_detris_state_dict(arch, seed=0)
    tokens = make_detris_tokens([arch.word_len - 2, 3], arch.word_len, seed=0)
    images = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    return arch, state, images, tokens, detris_forward(state, arch, images, tokens)


def test_state_dict_is_reproducible_and_matches_the_spec():
    arch = tiny()
    a, b = make_detris_state_dict(arch, seed=0), make_detris_state_dict(arch, seed=0)
    other = make_detris_state_dict(arch, seed=1)
    spec = detris_state_dict_spec(arch)
    assert list(a) == list(b) == list(other) == list(spec)
    for key, shape in spec.items():
        assert tuple(a[key].shape) == shape, key
        assert torch.equal(a[key], b[key]), key
        expected = torch.int64 if key.endswith('num_batches_tracked') else torch.float32
        assert a[key].dtype == expected, key
    assert not torch.equal(a['neck.txt_proj.weight'], other['neck.txt_proj.weight'])


def test_detris_b_spec_has_detris_names_and_shapes():
    spec = detris_state_dict_spec(detris_b())
    assert len(spec) == 994
    assert spec['txt_backbone.positional_embedding'] == (77, 512)
    assert spec['txt_backbone.logit_scale'] == ()
    assert spec['txt_backbone.transformer.resblocks.1.adapter.dense_branch2.1.conv.weight'] \
        == (16, 4, 3)
    assert spec['dinov2.pos_embed'] == (1, 1370, 768)
    assert spec['dinov2.mask_token'] == (1, 768)
    assert spec['dinov2.blocks.1.adapter.cross.text_proj.weight'] == (128, 512)
    assert spec['neck.f5_proj.0.weight'] == (768, 512, 1, 1)  # ConvTranspose2d: in x out
    assert spec['neck.coordconv.0.conv1.0.weight'] == (512, 514, 3, 3)
    assert spec['proj.txt.weight'] == (256 * 9 + 1, 512)
    assert 'dinov2.blocks.0.adapter.D_fc1.weight' not in spec
    mixed = detris_state_dict_spec(detris_l_mixed())
    assert mixed['dinov2.blocks.23.adapter.D_fc1.weight'] == (384, 1024)
    assert mixed['dinov2.blocks.23.adapter.cross.image_proj.weight'] == (128, 384)
    assert mixed['txt_backbone.transformer.resblocks.11.adapter.D_fc2.weight'] == (512, 384)


def test_arch_rejects_inconsistent_sizes():
    with pytest.raises(ValueError, match='text_width'):
        DetrisArch(neck_width=256, proj_in_dim=128)


def test_save_like_detris_train_loads_with_weights_only(tmp_path):
    state = make_detris_state_dict(tiny(), seed=0)
    path = str(tmp_path / 'last_model.pth')
    save_like_detris_train(path, state)
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'epoch', 'cur_iou', 'best_iou', 'prec', 'state_dict', 'optimizer',
                         'scheduler'}
    assert list(ckpt['state_dict']) == ['module.' + k for k in state]
    assert all(torch.equal(ckpt['state_dict']['module.' + k], v) for k, v in state.items())
    assert sorted(ckpt['prec']) == ['Pr@50', 'Pr@60', 'Pr@70', 'Pr@80', 'Pr@90']
    assert isinstance(ckpt['cur_iou'], float) and isinstance(ckpt['best_iou'], float)
    assert isinstance(ckpt['scheduler']['milestones'], collections.Counter)
    assert ckpt['optimizer']['state'][0]['step'] == 1
    assert [g['initial_lr'] for g in ckpt['optimizer']['param_groups']] == [1e-4, 1e-4]


def test_tokens_look_like_detris_tokenizer_output():
    tokens = make_detris_tokens([15, 3, 0], 17, seed=0)
    assert tokens.dtype == torch.int64 and tokens.shape == (3, 17)
    assert (tokens[:, 0] == SOT_TOKEN).all()
    assert tokens[0, 16] == EOT_TOKEN and tokens[1, 4] == EOT_TOKEN and tokens[2, 1] == EOT_TOKEN
    assert (tokens[1, 5:] == 0).all() and (tokens[0] != 0).all()
    assert (tokens.argmax(-1) == torch.tensor([16, 4, 1])).all()


def test_tiny_forward_gives_finite_logits_of_the_right_shape(tiny_case):
    arch, state, images, tokens, logits = tiny_case
    assert logits.shape == (2, 1, 32, 32) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all() and logits.std() > 0.1
    # 84 px: 6 x 6 patches, the 8 x 8 position grid is interpolated.
    small = detris_forward(state, arch, images[:, :, :84, :84], tokens)
    assert small.shape == (2, 1, 24, 24) and torch.isfinite(small).all()
    # Each sample is computed on its own (no batch statistics in eval mode).
    single = detris_forward(state, arch, images[1:], tokens[1:])
    torch.testing.assert_close(single, logits[1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('key', [
    'txt_backbone.transformer.resblocks.1.adapter.D_fc2.weight',
    'txt_backbone.transformer.resblocks.1.adapter.dense_branch3.1.bn.running_mean',
    'dinov2.blocks.1.adapter.D_fc2.bias',
    'dinov2.blocks.3.adapter.cross.text_proj.weight',
    'dinov2.blocks.1.adapter.dense_branch2.1.conv.weight',
    'neck.fusion4.multihead_attn.in_proj_bias',
    'neck.txt_proj.weight',
    'neck.f5_proj.0.weight',
    'decoder.layers.0.multihead_attn.in_proj_weight',
])
def test_changing_a_weight_changes_the_output(tiny_case, key):
    arch, state, images, tokens, logits = tiny_case
    changed = dict(state)
    changed[key] = state[key] + 0.5 * torch.randn(state[key].shape,
                                                  generator=torch.Generator().manual_seed(3))
    out = detris_forward(changed, arch, images, tokens)
    assert (out - logits).abs().max() > 1e-3, key


@pytest.mark.parametrize('key', ['txt_backbone.logit_scale', 'dinov2.mask_token'])
def test_keys_detris_never_reads_do_not_change_the_output(tiny_case, key):
    arch, state, images, tokens, logits = tiny_case
    changed = dict(state)
    changed[key] = state[key] + 1.0
    assert torch.equal(detris_forward(changed, arch, images, tokens), logits)


def test_only_word_len_text_positions_are_used(tiny_case):
    arch, state, images, tokens, logits = tiny_case
    changed = dict(state)
    pos = state['txt_backbone.positional_embedding'].clone()
    pos[arch.word_len:] += 1.0
    changed['txt_backbone.positional_embedding'] = pos
    assert torch.equal(detris_forward(changed, arch, images, tokens), logits)
