"""TokenizeText: open_clip's tokeniser, end-of-text kept on truncation."""
import open_clip
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
