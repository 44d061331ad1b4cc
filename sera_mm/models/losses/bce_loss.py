"""Sigmoid binary cross-entropy for 1-channel mask logits, without device syncs."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from sera_mm.registry import MODELS
from .mask_loss import MaskLoss


@MODELS.register_module()
class BinaryCrossEntropyLoss(MaskLoss):
    """``F.binary_cross_entropy_with_logits`` averaged over the valid pixels.

    The value of mmseg's ``CrossEntropyLoss(use_sigmoid=True,
    avg_non_ignore=True)`` (DETRIS's loss for a 0/1 or soft target):
    ``sum(bce * valid) / (count(valid) + eps)`` with float32's eps. mmseg's
    syncs host and device twice per call (an ``assert`` on the label's
    maximum, the valid count's ``.item()``), stalling the GPU and splitting
    a ``torch.compile`` graph; this one keeps the count on the device, so
    target values outside [0, 1] are not checked.

    Args:
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        loss_name (str): Key of the loss in the loss dict; must start with
            ``loss_`` to be summed into the total. Defaults to 'loss_bce'.
    """

    def __init__(self, loss_weight: float = 1.0, loss_name: str = 'loss_bce') -> None:
        super().__init__(loss_weight, loss_name)

    def forward(self,
                pred: Tensor,
                target: Tensor,
                ignore_index: Optional[int] = 255,
                **kwargs) -> Tensor:
        """Loss of B x 1 x H x W logits against a B x H x W 0/1 (long) or
        soft (float) mask; called by the head's ``loss_by_feat``. Pixels
        equal to ``ignore_index`` (or negative, as in mmseg) do not count.

        Returns:
            Tensor: The weighted loss, a float32 scalar.
        """
        self.check_shapes(pred, target)
        logits = pred.squeeze(1).float()
        valid = target >= 0
        if ignore_index is not None:
            valid = valid & (target != ignore_index)
        valid = valid.float()
        # ignored pixels get target 0, so that their (discarded) terms stay finite
        loss = F.binary_cross_entropy_with_logits(logits, target.float() * valid,
                                                  reduction='none')
        eps = torch.finfo(torch.float32).eps
        return self.loss_weight * (loss * valid).sum() / (valid.sum() + eps)
