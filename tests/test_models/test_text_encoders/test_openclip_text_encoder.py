"""OpenCLIPTextEncoder equals open_clip's CLIP.encode_text on the same weights.

References are open_clip ``CLIP`` models (tiny image tower, the text tower
under test) at context 77; their checkpoints are saved in open_clip format
and as an OpenAI-style TorchScript archive (fp16 weights, OpenAI key names,
``visual.*`` included), which open_clip's ``load_openai_model`` reads too.
Tokens are padded with zeros to 77 for the reference: with a causal mask,
the first 17 positions do not see the padding.
"""
import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sera_mm.models.text_encoders.openclip_text_encoder as encoder_module
from sera_mm.models.text_encoders import OpenCLIPTextEncoder
from sera_mm.registry import MODELS

EMBED_DIM = 32
TINY_TEXT = dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=2)
TINY_VISION = dict(image_size=32, patch_size=16, width=64, layers=1)
SENTENCES = ['the man on the left', 'a red umbrella held by the woman in the middle',
             'zebra']
TOL = 1e-5


def _reference(text_cfg: dict, quick_gelu: bool, seed: int = 0) -> open_clip.CLIP:
    torch.manual_seed(seed)
    model = open_clip.CLIP(EMBED_DIM if text_cfg is TINY_TEXT else 512, vision_cfg=TINY_VISION,
                           text_cfg=text_cfg, quick_gelu=quick_gelu)
    with torch.no_grad():  # ln_final and biases start trivial in open_clip
        for name, param in model.named_parameters():
            if name.endswith('bias') or 'ln' in name:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def _tokens(context_length: int = 17) -> torch.Tensor:
    return open_clip.tokenize(SENTENCES, context_length=context_length)


def _reference_sentence(model: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_text(F.pad(tokens, (0, 77 - tokens.shape[1])))


def _save_open_clip(model: nn.Module, path) -> str:
    """open_clip format, wrapped and DDP-prefixed as a training run saves it."""
    torch.save({'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()}},
               path)
    return str(path)


class _Holder(nn.Module):

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _save_openai_torchscript(model: open_clip.CLIP, path) -> str:
    """A torch.jit archive whose state dict looks like OpenAI's ViT-B-16.pt."""
    state_dict = {k: v.half() for k, v in model.state_dict().items()}
    state_dict.update(input_resolution=torch.tensor(32), context_length=torch.tensor(77),
                      vocab_size=torch.tensor(49408))
    root = _Holder()
    for key, value in state_dict.items():
        *path_parts, leaf = key.split('.')
        module = root
        for part in path_parts:
            if part not in module._modules:
                module.add_module(part, _Holder())
            module = module._modules[part]
        if value.is_floating_point():
            module.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
        else:
            module.register_buffer(leaf, value)
    torch.jit.save(torch.jit.script(root), str(path))
    return str(path)


def _loaded(encoder: OpenCLIPTextEncoder) -> OpenCLIPTextEncoder:
    """Loads ``pretrained`` as the Runner does before training."""
    encoder.init_weights()
    return encoder


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize('quick_gelu', [True, False])
def test_tiny_sentence_matches_open_clip(tmp_path, quick_gelu):
    ref = _reference(TINY_TEXT, quick_gelu)
    path = _save_open_clip(ref, tmp_path / 'tiny.pth')
    encoder = _loaded(MODELS.build(dict(type='OpenCLIPTextEncoder', text_cfg=TINY_TEXT,
                                        embed_dim=EMBED_DIM, context_length=17,
                                        quick_gelu=quick_gelu, pretrained=path)))
    tokens = _tokens()
    out = encoder(tokens)
    assert out.words.shape == (3, 17, 64) and out.sentence.shape == (3, EMBED_DIM)
    diff = _max_diff(out.sentence, _reference_sentence(ref, tokens))
    print(f'tiny, quick_gelu={quick_gelu}: max |ours - open_clip| = {diff:.2e}')
    assert diff <= TOL


def test_vit_b_16_sentence_matches_open_clip(tmp_path):
    text_cfg = open_clip.get_model_config('ViT-B-16')['text_cfg']
    ref = _reference(text_cfg, quick_gelu=False)
    path = _save_open_clip(ref, tmp_path / 'b16.pth')
    encoder = _loaded(OpenCLIPTextEncoder('ViT-B-16', context_length=22, quick_gelu=False,
                                          pretrained=path))
    assert encoder.text.positional_embedding.shape == (22, 512)
    assert encoder.text.attn_mask.shape == (22, 22)
    assert not any(name.startswith('visual') for name, _ in encoder.named_parameters())
    tokens = _tokens(22)
    out = encoder(tokens)
    assert out.words.shape == (3, 22, 512)
    diff = _max_diff(out.sentence, _reference_sentence(ref, tokens))
    print(f'ViT-B-16: max |ours - open_clip| = {diff:.2e}')
    assert diff <= TOL


def test_openai_torchscript_matches_load_openai_model(tmp_path, monkeypatch):
    logs = []
    monkeypatch.setattr(encoder_module, 'print_log', lambda msg, **kw: logs.append(msg))
    path = _save_openai_torchscript(_reference(TINY_TEXT, quick_gelu=True), tmp_path / 'oa.pt')
    ref = open_clip.load_openai_model(path, device='cpu').eval()
    encoder = _loaded(OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, quick_gelu=True,
                                          pretrained=path))
    assert encoder.text.token_embedding.weight.dtype == torch.float32
    tokens = _tokens()
    diff = _max_diff(encoder(tokens).sentence, _reference_sentence(ref, tokens))
    print(f'TorchScript: max |ours - load_openai_model| = {diff:.2e}')
    assert diff <= TOL
    assert 'OpenAI TorchScript' in logs[0] and "'visual'" in logs[0]


def test_openai_torchscript_refuses_gelu(tmp_path):
    path = _save_openai_torchscript(_reference(TINY_TEXT, quick_gelu=True), tmp_path / 'oa.pt')
    with pytest.raises(ValueError, match='QuickGELU'):
        _loaded(OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, quick_gelu=False,
                                    pretrained=path))


def test_quick_gelu_is_honoured(tmp_path):
    ref = _reference(TINY_TEXT, quick_gelu=True)
    path = _save_open_clip(ref, tmp_path / 'tiny.pth')
    tokens = _tokens()
    quick = _loaded(OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, quick_gelu=True,
                                        pretrained=path))
    plain = _loaded(OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, quick_gelu=False,
                                        pretrained=path))
    assert isinstance(quick.text.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    assert type(plain.text.transformer.resblocks[0].mlp.gelu) is nn.GELU
    expected = _reference_sentence(ref, tokens)
    assert _max_diff(quick(tokens).sentence, expected) <= TOL
    assert _max_diff(plain(tokens).sentence, expected) > 1e-3


def test_words_pad_mask_and_short_rows(tmp_path):
    encoder = OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, context_length=17)
    tokens = torch.tensor([[49406, 320, 1929, 49407, 0, 0],
                           [49406, 320, 49407, 0, 0, 0]])
    out = encoder(tokens)
    assert out.pad_mask.tolist() == [[False] * 4 + [True] * 2, [False] * 3 + [True] * 3]
    full = encoder(F.pad(tokens, (0, 11)))
    assert out.words.shape == (2, 6, 64)
    assert torch.allclose(out.words, full.words[:, :6], atol=1e-6)
    assert torch.allclose(out.sentence, full.sentence, atol=1e-6)
    # words are ln_final's output: the EOT word through the projection is the sentence
    eot_words = out.words[torch.arange(2), tokens.argmax(-1)]
    assert torch.allclose(eot_words @ encoder.text.text_projection, out.sentence, atol=1e-6)


def test_too_long_tokens_are_refused():
    encoder = OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, context_length=17)
    with pytest.raises(ValueError, match=r'context_length=17.*\(2, 18\)'):
        encoder(torch.zeros(2, 18, dtype=torch.long))


def test_the_encoder_tokenises_at_its_own_context_length():
    """The one setting of the sentence length: tokenize() pads or cuts to
    the encoder's context_length, with open_clip's ids."""
    for length in (17, 22):
        encoder = OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM,
                                      context_length=length)
        tokens = encoder.tokenize(SENTENCES)
        assert torch.equal(tokens, _tokens(length))
        assert encoder(tokens).words.shape == (len(SENTENCES), length, 64)
    short = OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, context_length=3)
    assert short.tokenize(SENTENCES)[:, -1].tolist() == [49407] * 3  # cut, EOT kept


def test_bad_context_length_or_vocabulary_is_refused_at_build():
    with pytest.raises(ValueError, match=r'context_length=1 must be in \[2, 77\]'):
        OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, context_length=1)
    with pytest.raises(ValueError, match=r'context_length=78 must be in \[2, 77\]'):
        OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, context_length=78)
    with pytest.raises(ValueError, match='vocab_size=1000.*49408'):
        OpenCLIPTextEncoder(text_cfg=dict(TINY_TEXT, vocab_size=1000), embed_dim=EMBED_DIM)


def test_frozen_encoder_stays_frozen_and_builds_no_graph():
    encoder = OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, frozen=True)
    encoder.requires_grad_(True)
    encoder.train()
    assert not encoder.text.training
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.init_weights()
    assert not any(p.requires_grad for p in encoder.parameters())
    out = encoder(_tokens())
    assert out.words.grad_fn is None and out.sentence.grad_fn is None

    trainable = OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, frozen=False)
    trainable.train()
    assert trainable.training
    out = trainable(_tokens())
    out.sentence.sum().backward()
    assert trainable.text.text_projection.grad is not None


def test_checkpoint_with_wrong_shapes_is_named(tmp_path):
    ref = _reference(TINY_TEXT, quick_gelu=True)
    path = _save_open_clip(ref, tmp_path / 'tiny.pth')
    with pytest.raises(KeyError, match=r'ln_final\.weight: file \(64,\) vs model \(96,\)'):
        _loaded(OpenCLIPTextEncoder(text_cfg=dict(TINY_TEXT, width=96), embed_dim=EMBED_DIM,
                                    pretrained=path))


# ------------------------------------------------------------ activations
@pytest.mark.parametrize('name, quick', [('ViT-B-16', False), ('ViT-B-16-quickgelu', True)])
def test_activation_follows_the_open_clip_name(name, quick):
    with torch.device('meta'):
        encoder = OpenCLIPTextEncoder(name)
    gelu = encoder.text.transformer.resblocks[0].mlp.gelu
    assert isinstance(gelu, open_clip.transformer.QuickGELU) == quick
    assert encoder.quick_gelu == quick


@pytest.mark.parametrize('name, quick', [('ViT-B-16', True), ('ViT-B-16-quickgelu', False)])
def test_explicit_activation_contradicting_the_name_is_refused(name, quick):
    with pytest.raises(ValueError, match=f'quick_gelu={quick} contradicts'):
        OpenCLIPTextEncoder(name, quick_gelu=quick)


def test_openai_torchscript_into_a_gelu_name_is_refused(tmp_path):
    path = _save_openai_torchscript(_reference(TINY_TEXT, quick_gelu=True), tmp_path / 'oa.pt')
    encoder = OpenCLIPTextEncoder('ViT-B-16', pretrained=path)
    with pytest.raises(ValueError, match="ViT-B-16-quickgelu"):
        encoder.init_weights()


# ------------------------------------------------------------ text adapters
ADAPTED = dict(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, context_length=17,
               adapter_cfg=dict(type='TextAdapter', channels=16), adapter_indices=(1, ))


def _adapted(**kwargs) -> OpenCLIPTextEncoder:
    torch.manual_seed(0)
    return OpenCLIPTextEncoder(**{**ADAPTED, **kwargs})


def test_zero_adapter_equals_the_plain_tower():
    encoder = _adapted().eval()
    with torch.no_grad():
        encoder.adapters['1'].D_fc2.weight.zero_()
        encoder.adapters['1'].D_fc2.bias.zero_()
    plain = OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM).eval()
    plain.text.load_state_dict(encoder.text.state_dict())
    tokens = _tokens()
    ours, ref = encoder(tokens), plain(tokens)
    assert torch.allclose(ours.words, ref.words, atol=1e-5)
    assert torch.allclose(ours.sentence, ref.sentence, atol=1e-5)


def test_adapter_sits_on_the_residual_stream_after_attention():
    """x <- x + Attn(LN1 x); x <- x + MLP(LN2 x) + 0.2 * A(x), written out."""
    encoder = _adapted().eval()
    tokens = _tokens()
    tower, adapter = encoder.text, encoder.adapters['1']
    with torch.no_grad():
        x = tower.token_embedding(tokens) + tower.positional_embedding[:17]
        mask = tower.attn_mask
        blocks = tower.transformer.resblocks
        x = blocks[0](x, attn_mask=mask)
        x = x + blocks[1].attn(blocks[1].ln_1(x), blocks[1].ln_1(x), blocks[1].ln_1(x),
                               attn_mask=mask, need_weights=False)[0]
        x = x + blocks[1].mlp(blocks[1].ln_2(x)) + 0.2 * adapter(x)
        words = tower.ln_final(x)
        out = encoder(tokens)
    assert torch.allclose(out.words, words, atol=1e-5)
    eot = words[torch.arange(3), tokens.argmax(-1)]
    assert torch.allclose(out.sentence, eot @ tower.text_projection, atol=1e-5)


def test_frozen_tower_passes_gradients_to_its_adapters_only():
    encoder = _adapted()
    encoder.train()
    assert not encoder.text.training and encoder.adapters['1'].training
    out = encoder(_tokens())
    (out.words.sum() + out.sentence.sum()).backward()
    assert all(p.grad is None for p in encoder.text.parameters())
    assert all(p.grad is not None for p in encoder.adapters.parameters())
    # A conv bias ahead of a BatchNorm in training mode is removed with the
    # batch mean, so its true gradient is 0 (what autograd leaves is rounding);
    # every other adapter weight must get a real gradient.
    before_bn = {n for n, _ in encoder.adapters.named_parameters() if n.endswith('conv.bias')}
    assert before_bn, 'the dense branches have conv biases (DETRIS names)'
    for name, p in encoder.adapters.named_parameters():
        if name in before_bn:
            assert p.grad.abs().max() < 1e-5, name
        else:
            assert p.grad.abs().sum() > 0, name
    assert not any(p.requires_grad for p in encoder.text.parameters())
    # state dict: the tower's keys and the adapters'
    keys = set(encoder.state_dict())
    assert 'adapters.1.D_fc1.weight' in keys and 'adapters.1.dense_branch3.1.bn.running_var' in keys


def test_adapters_out_of_range_are_refused():
    with pytest.raises(ValueError, match='adapter_indices holds 2'):
        _adapted(adapter_indices=(2, ))


@pytest.mark.parametrize('rule, expected', [
    ('after_eot', [[False, False, False, False, True, True]]),
    ('zero_token', [[False, False, True, False, True, True]]),
])
def test_pad_mask_rules(rule, expected):
    encoder = OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, pad_mask=rule)
    # token 0 is "!" in CLIP's vocabulary: DETRIS's rule also masks it
    tokens = torch.tensor([[49406, 320, 0, 49407, 0, 0]])
    assert encoder(tokens).pad_mask.tolist() == expected
    with pytest.raises(ValueError, match='pad_mask='):
        OpenCLIPTextEncoder(text_cfg=TINY_TEXT, embed_dim=EMBED_DIM, pad_mask='eot')
