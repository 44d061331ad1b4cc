"""Tokenises the referring sentence with CLIP's BPE tokeniser."""
from typing import Dict

import torch
from mmcv.transforms import BaseTransform

from sera_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class TokenizeText(BaseTransform):
    """Turns ``results['text']`` into CLIP token ids.

    Uses open_clip's ``SimpleTokenizer`` (its BPE vocabulary ships with the
    package, so it works offline): lower-cases and cleans the text, adds the
    start- and end-of-text tokens, pads with 0 to ``context_length``. A longer
    sentence is truncated and its last token replaced by end-of-text, so the
    sentence feature (taken at the end-of-text token, the largest id) always
    exists.

    Required keys: ``text``. Added keys: ``text_tokens``, LongTensor (L,).

    Args:
        context_length: L, 17 for RefCOCO / RefCOCO+ / G-Ref google, 22 for
            G-Ref umd. Defaults to 17.
    """

    def __init__(self, context_length: int = 17) -> None:
        if context_length < 2:
            raise ValueError('context_length must be >= 2 (start and end '
                             f'tokens), got {context_length}')
        from open_clip.tokenizer import SimpleTokenizer
        self.context_length = context_length
        self.tokenizer = SimpleTokenizer(context_length=context_length)
        self.eot_token_id = self.tokenizer.eot_token_id
        self._escape_special_tokens()

    def _escape_special_tokens(self) -> None:
        """Makes the tokeniser read the literal text of a special token
        (``<end_of_text>`` in a sentence) as ordinary text.

        open_clip's word pattern starts with an alternative per special token,
        so such text became the control token itself. The pattern without
        those alternatives splits it like any other text ('<', 'end', ...);
        the start and end tokens are added by id, not from the text.
        """
        pat = self.tokenizer.pat
        special = '|'.join(self.tokenizer.decoder[i]
                           for i in self.tokenizer.all_special_ids) + '|'
        if pat.pattern.startswith(special):
            import regex  # open_clip's own regular-expression module
            self.tokenizer.pat = regex.compile(pat.pattern[len(special):],
                                               pat.flags)
        # checked once here, not per sample: if open_clip's pattern changed
        # and the escape did not apply, the special tokens' text shows it
        special_ids = set(self.tokenizer.all_special_ids)
        for i in special_ids:
            inner = self.tokenizer.encode(self.tokenizer.decoder[i])
            if special_ids.intersection(inner):
                raise RuntimeError(
                    'TokenizeText: open_clip\'s tokenizer still turns the text '
                    f'{self.tokenizer.decoder[i]!r} into a control token; its '
                    'word pattern is not the one this escape knows')

    def transform(self, results: Dict) -> Dict:
        """Called per sample; returns ``results`` with ``text_tokens``."""
        if 'text' not in results:
            raise KeyError("TokenizeText needs key 'text' (the sentence)")
        text = results['text']
        if not isinstance(text, str):
            raise TypeError(f"TokenizeText: 'text' must be a str, got "
                            f'{type(text).__name__}')
        tokens = self.tokenizer([text], context_length=self.context_length)[0]
        tokens = tokens.to(torch.long)
        assert tokens.shape == (self.context_length,)
        assert int(tokens.argmax()) == int((tokens != 0).sum()) - 1, \
            'end-of-text must be the last token'
        results['text_tokens'] = tokens
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(context_length={self.context_length})'
