"""TokenizeText: open_clip's tokeniser, end-of-text kept on truncation."""
import open_clip
import pytest
import torch

from sera_mm.registry import TRANSFORMS

EOT = 49407  # CLIP's <end_of_text>
SOT = 49406


def test_short_sentence_equals_open_clip():
    t = TRANSFORMS.build(dict(type='TokenizeText', context_length=17))
    out = t(dict(text='The red circle on the left'))
    tokens = out['text_tokens']
    assert tokens.dtype == torch.long and tokens.shape == (17,)
    ref = open_clip.tokenize(['The red circle on the left'], context_length=17)[0]
    assert torch.equal(tokens, ref)
    n = int((tokens != 0).sum())
    assert tokens[0] == SOT and tokens[n - 1] == EOT and (tokens[n:] == 0).all()


def test_truncation_keeps_eot_last():
    t = TRANSFORMS.build(dict(type='TokenizeText', context_length=8))
    long_text = 'the small green triangle right next to the big blue square'
    tokens = t(dict(text=long_text))['text_tokens']
    full = open_clip.tokenize([long_text], context_length=77)[0]
    assert int((full != 0).sum()) > 8  # really truncated
    assert tokens.shape == (8,) and (tokens != 0).all()
    assert tokens[-1] == EOT
    assert torch.equal(tokens[:-1], full[:7])  # the start is kept
    assert int(tokens.argmax()) == 7  # where the sentence feature is read


def test_context_length_22():
    t = TRANSFORMS.build(dict(type='TokenizeText', context_length=22))
    assert t(dict(text='a'))['text_tokens'].shape == (22,)


def test_literal_special_token_text_is_ordinary_text():
    """A sentence holding '<end_of_text>' / '<start_of_text>' (any case) is
    tokenised as its characters: no control token comes from user text."""
    t = TRANSFORMS.build(dict(type='TokenizeText', context_length=22))
    for text in ('a <end_of_text> b', 'x <START_OF_TEXT> y', '<end_of_text>'):
        tokens = t(dict(text=text))['text_tokens']
        n = int((tokens != 0).sum())
        assert tokens[0] == SOT and tokens[n - 1] == EOT, text
        middle = tokens[1:n - 1].tolist()
        assert SOT not in middle and EOT not in middle, (text, middle)
        decoded = t.tokenizer.decode(middle).replace(' ', '')
        assert decoded == text.lower().replace(' ', ''), text  # every character


def test_literal_special_token_is_truncated_like_text():
    t = TRANSFORMS.build(dict(type='TokenizeText', context_length=5))
    tokens = t(dict(text='<end_of_text> <end_of_text>'))['text_tokens']
    assert tokens.shape == (5,) and tokens[-1] == EOT
    assert int(tokens.argmax()) == 4 and (tokens[1:4] != EOT).all()


def test_a_tokenizer_the_escape_does_not_know_is_refused_at_build():
    """If open_clip's word pattern no longer starts with the special-token
    alternatives, the escape cannot apply: building refuses, before any
    sentence could become a control token."""
    import regex
    t = TRANSFORMS.build(dict(type='TokenizeText', context_length=22))
    # open_clip's pattern as shipped, behind an extra leading alternative
    shipped = open_clip.tokenizer.SimpleTokenizer().pat
    t.tokenizer.pat = regex.compile(r'\A\Z|' + shipped.pattern, shipped.flags)
    with pytest.raises(RuntimeError, match='control token'):
        t._escape_special_tokens()
