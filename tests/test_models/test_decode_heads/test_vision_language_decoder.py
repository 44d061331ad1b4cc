import math

import pytest
import torch

from sera_mm.models.decode_heads import (VisionLanguageDecoder,
                                         sine_position_encoding_1d,
                                         sine_position_encoding_2d)
from sera_mm.models.utils import TextFeatures
from sera_mm.registry import MODELS


def _decoder(**kwargs):
    cfg = dict(type='VisionLanguageDecoder', num_layers=2, channels=32, text_channels=24,
               num_heads=4, feedforward_channels=64, dropout=0.1)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _text(b=2, length=6, c=24, valid=(4, 2)):
    pad = torch.arange(length)[None, :] >= torch.tensor(valid)[:, None]
    return TextFeatures(torch.randn(b, length, c), torch.randn(b, c), pad)


def test_decoder_shape_and_word_projection():
    decoder = _decoder()
    assert isinstance(decoder, VisionLanguageDecoder)
    assert isinstance(decoder.word_proj, torch.nn.Linear)
    assert decoder(torch.randn(2, 32, 3, 5), _text()).shape == (2, 32, 3, 5)
    assert isinstance(_decoder(text_channels=32).word_proj, torch.nn.Identity)
    with pytest.raises(ValueError, match='num_heads'):
        _decoder(num_heads=5)


def test_decoder_ignores_padding_words_and_reads_the_others():
    torch.manual_seed(0)
    decoder = _decoder().eval()
    x = torch.randn(2, 32, 3, 4)
    text = _text()
    out = decoder(x, text)
    words = text.words.clone()
    words[text.pad_mask] = torch.randn(int(text.pad_mask.sum()), 24) * 10
    torch.testing.assert_close(decoder(x, text._replace(words=words)), out)
    words = text.words.clone()
    words[1, 0] += 1.0  # a real word of sample 1
    changed = decoder(x, text._replace(words=words))
    torch.testing.assert_close(changed[0], out[0])  # samples do not mix
    assert not torch.allclose(changed[1], out[1])


def test_decoder_pixels_see_their_position():
    # Same feature at every pixel: only the position encodings tell the
    # pixels apart, so outputs must differ between pixels.
    torch.manual_seed(0)
    decoder = _decoder().eval()
    x = torch.randn(1, 32, 1, 1).expand(1, 32, 3, 4).contiguous()
    out = decoder(x, _text(b=1, valid=(3,)))
    assert not torch.allclose(out[..., 0, 0], out[..., 2, 3])


def test_decoder_gradient_reaches_every_parameter():
    decoder = _decoder()
    text = _text()
    text = text._replace(words=text.words.requires_grad_())
    decoder(torch.randn(2, 32, 3, 4), text).sum().backward()
    for name, param in decoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert text.words.grad[~text.pad_mask].abs().sum() > 0
    assert text.words.grad[text.pad_mask].abs().sum() == 0


def test_sine_position_encodings():
    pe = sine_position_encoding_1d(7, 8)
    assert pe.shape == (7, 8)
    pos, i = 5, 2
    freq = 1.0 / 10000 ** (2 * i / 8)
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos * freq), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos * freq), abs=1e-6)

    h, w, dim = 3, 4, 16
    pe2 = sine_position_encoding_2d(h, w, dim).reshape(h, w, dim)
    x_part, y_part = pe2[..., :dim // 2], pe2[..., dim // 2:]
    table_x = sine_position_encoding_1d(w, dim // 2)
    table_y = sine_position_encoding_1d(h, dim // 2)
    torch.testing.assert_close(x_part, table_x[None].expand(h, -1, -1))
    torch.testing.assert_close(y_part, table_y[:, None].expand(-1, w, -1))
    with pytest.raises(ValueError, match='multiple of 4'):
        sine_position_encoding_2d(2, 2, 6)
