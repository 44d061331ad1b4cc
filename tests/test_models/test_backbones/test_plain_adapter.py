"""PlainAdapter: zero at init, honours the word padding mask, checks shapes."""
import pytest
import torch

from sera_mm.models.adapters import PlainAdapter
from sera_mm.models.utils.structures import TextFeatures


def _inputs(batch: int = 2, tokens: int = 11, words: int = 6):
    gen = torch.Generator().manual_seed(0)
    pad_mask = torch.zeros(batch, words, dtype=torch.bool)
    pad_mask[0, 3:] = True
    pad_mask[1, 5:] = True
    text = TextFeatures(torch.randn(batch, words, 16, generator=gen),
                        torch.randn(batch, 16, generator=gen), pad_mask)
    return torch.randn(batch, tokens, 32, generator=gen), text


def _adapter() -> PlainAdapter:
    torch.manual_seed(0)
    return PlainAdapter(in_channels=32, text_channels=16, channels=8, num_heads=2)


def test_zero_at_init_even_after_init_weights():
    adapter = _adapter()
    adapter.init_weights()
    h, text = _inputs()
    assert torch.equal(adapter(h, text, (2, 5), 1), torch.zeros_like(h))


def test_padded_words_are_ignored_real_words_are_not():
    adapter = _adapter()
    torch.nn.init.normal_(adapter.up.weight)
    h, text = _inputs()
    out = adapter(h, text, (2, 5), 1)
    words = text.words.clone()
    words[0, 3:] += 5.0  # padding of sample 0 only
    same = adapter(h, text._replace(words=words), (2, 5), 1)
    assert torch.allclose(out, same, atol=1e-6)
    words[0, 1] += 5.0  # a real word of sample 0
    changed = adapter(h, text._replace(words=words), (2, 5), 1)
    assert not torch.allclose(out[0], changed[0], atol=1e-3)
    assert torch.allclose(out[1], changed[1], atol=1e-6)


def test_wrong_shapes_are_named():
    adapter = _adapter()
    h, text = _inputs()
    with pytest.raises(ValueError, match=r'words \(2, 6, 12\)'):
        adapter(h, text._replace(words=text.words[..., :12]), (2, 5), 1)
    with pytest.raises(ValueError, match='needs the text features'):
        adapter(h, None, (2, 5), 1)
