"""CLIP's BPE tokeniser at a fixed context length, owned by the text encoder."""
import functools
from typing import Sequence

import torch
from torch import Tensor


@functools.lru_cache(maxsize=1)
def _escaped_simple_tokenizer():
    """open_clip's ``SimpleTokenizer`` (built once, offline) that reads the
    literal text of a special token (``<end_of_text>`` in a sentence) as
    ordinary text.

    open_clip's word pattern starts with an alternative per special token,
    which made such text the control token; without them it is split like
    any other text. The start and end tokens are added by id.

    Raises:
        RuntimeError: open_clip's pattern is not the one this escape knows.
    """
    from open_clip.tokenizer import SimpleTokenizer
    tokenizer = SimpleTokenizer()
    pat = tokenizer.pat
    special = '|'.join(tokenizer.decoder[i] for i in tokenizer.all_special_ids) + '|'
    if pat.pattern.startswith(special):
        import regex  # open_clip's own regular-expression module
        tokenizer.pat = regex.compile(pat.pattern[len(special):], pat.flags)
    special_ids = set(tokenizer.all_special_ids)
    for i in special_ids:
        if special_ids.intersection(tokenizer.encode(tokenizer.decoder[i])):
            raise RuntimeError(
                f"CLIPTokenizer: open_clip's tokenizer still turns the text "
                f'{tokenizer.decoder[i]!r} into a control token; its word pattern is '
                'not the one this escape knows (check the installed open_clip version)')
    return tokenizer


class CLIPTokenizer:
    """Turns sentences into B x ``context_length`` CLIP token ids.

    open_clip's ``SimpleTokenizer`` (with the special-token escape of
    :func:`_escaped_simple_tokenizer`): lower-cases and cleans the text,
    adds the start- and end-of-text tokens, pads with 0. A longer sentence is
    truncated and its last token replaced by end-of-text, so the sentence
    feature (taken at the end-of-text token, the largest id) always exists.

    Args:
        context_length (int): L, tokens per sentence (>= 2: start and end).
    """

    def __init__(self, context_length: int) -> None:
        if context_length < 2:
            raise ValueError('CLIPTokenizer: context_length must be >= 2 (start and end '
                             f'tokens), got {context_length}')
        self.context_length = context_length
        self.tokenizer = _escaped_simple_tokenizer()
        self.eot_token_id = self.tokenizer.eot_token_id

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """Tokenises ``texts``; called by the text encoder once per batch.

        Returns:
            Tensor: B x L int64 ids, each row ``[SOT, words..., EOT, 0...]``.

        Raises:
            TypeError: An entry of ``texts`` is not a str (the message gives
                its index).
        """
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f'CLIPTokenizer: sentence {i} must be a str, got '
                                f'{type(text).__name__}: {text!r}')
        return self.tokenizer(list(texts), context_length=self.context_length).to(torch.long)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(context_length={self.context_length})'
