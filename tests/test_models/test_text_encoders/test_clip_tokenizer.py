"""CLIPTokenizer: open_clip's tokeniser, end-of-text kept on truncation."""
import open_clip
import pytest
import torch

from sera_mm.models.text_encoders import CLIPTokenizer
from sera_mm.models.text_encoders.clip_tokenizer import _escaped_simple_tokenizer

EOT = 49407  # CLIP's <end_of_text>
SOT = 49406


def test_short_sentence_equals_open_clip():
    tokens = CLIPTokenizer(17)(['The red circle on the left', 'a'])
    assert tokens.dtype == torch.long and tokens.shape == (2, 17)
    ref = open_clip.tokenize(['The red circle on the left', 'a'], context_length=17)
    assert torch.equal(tokens, ref)
    n = int((tokens[0] != 0).sum())
    assert tokens[0, 0] == SOT and tokens[0, n - 1] == EOT and (tokens[0, n:] == 0).all()


def test_truncation_keeps_eot_last():
    long_text = 'the small green triangle right next to the big blue square'
    tokens = CLIPTokenizer(8)([long_text])[0]
    full = open_clip.tokenize([long_text], context_length=77)[0]
    assert int((full != 0).sum()) > 8  # really truncated
    assert tokens.shape == (8,) and (tokens != 0).all()
    assert tokens[-1] == EOT
    assert torch.equal(tokens[:-1], full[:7])  # the start is kept
    assert int(tokens.argmax()) == 7  # where the sentence feature is read


def test_context_length_22_and_bad_input():
    assert CLIPTokenizer(22)(['a']).shape == (1, 22)
    with pytest.raises(ValueError, match='context_length must be >= 2'):
        CLIPTokenizer(1)
    with pytest.raises(TypeError, match='sentence 1 must be a str'):
        CLIPTokenizer(17)(['a', None])


def test_literal_special_token_text_is_ordinary_text():
    """A sentence holding '<end_of_text>' / '<start_of_text>' (any case) is
    tokenised as its characters: no control token comes from user text."""
    t = CLIPTokenizer(22)
    for text in ('a <end_of_text> b', 'x <START_OF_TEXT> y', '<end_of_text>'):
        tokens = t([text])[0]
        n = int((tokens != 0).sum())
        assert tokens[0] == SOT and tokens[n - 1] == EOT, text
        middle = tokens[1:n - 1].tolist()
        assert SOT not in middle and EOT not in middle, (text, middle)
        decoded = t.tokenizer.decode(middle).replace(' ', '')
        assert decoded == text.lower().replace(' ', ''), text  # every character


def test_literal_special_token_is_truncated_like_text():
    tokens = CLIPTokenizer(5)(['<end_of_text> <end_of_text>'])[0]
    assert tokens.shape == (5,) and tokens[-1] == EOT
    assert int(tokens.argmax()) == 4 and (tokens[1:4] != EOT).all()


def test_a_tokenizer_the_escape_does_not_know_is_refused_at_build(monkeypatch):
    """If open_clip's word pattern no longer starts with the special-token
    alternatives, the escape cannot apply: building refuses, before any
    sentence could become a control token."""
    import regex
    shipped = open_clip.tokenizer.SimpleTokenizer

    class Unknown(shipped):
        """open_clip's pattern as shipped, behind an extra leading alternative."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.pat = regex.compile(r'\A\Z|' + self.pat.pattern, self.pat.flags)

    monkeypatch.setattr(open_clip.tokenizer, 'SimpleTokenizer', Unknown)
    _escaped_simple_tokenizer.cache_clear()
    try:
        with pytest.raises(RuntimeError, match='control token'):
            CLIPTokenizer(22)
    finally:
        _escaped_simple_tokenizer.cache_clear()
