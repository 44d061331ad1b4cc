"""Small typed containers passed between the model's parts."""
from typing import NamedTuple, Optional

from torch import Tensor


class TextFeatures(NamedTuple):
    """What the text encoder gives the rest of the model.

    Attributes:
        words (Tensor): Word features, B x L x C_t (``ln_final`` output).
        sentence (Tensor): Sentence feature, B x C_s (end-of-text token
            through the text projection).
        pad_mask (Tensor): B x L bool, True at padding positions (after the
            end-of-text token), in the ``key_padding_mask`` convention of
            :class:`torch.nn.MultiheadAttention`.
    """
    words: Tensor
    sentence: Tensor
    pad_mask: Tensor


class RoutingResult(NamedTuple):
    """One router's decision for a batch.

    Attributes:
        logits (Tensor): Clean router logits h, B x E (before noise and
            temperature); what the MoE regularisation reads.
        weights (Tensor): Mixing weights w, B x E; zero for experts that were
            not selected, summing to 1 over the selected ones.
        indices (Tensor, optional): Selected experts, B x k (Top-k routers);
            None for a soft router, which uses every expert.
        select_prob (Tensor, optional): B x E, the probability, through the
            router's noise, that each expert is among the sample's k
            (:func:`~sera_mm.models.routers.selection_probability`, read by
            the MoE loss's ``load='noisy_topk'``); None for a soft router.
    """
    logits: Tensor
    weights: Tensor
    indices: Optional[Tensor] = None
    select_prob: Optional[Tensor] = None
