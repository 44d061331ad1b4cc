"""Dice loss for 1-channel mask logits."""
from typing import Optional

import torch
from torch import Tensor

from sera_mm.registry import MODELS
from .mask_loss import MaskLoss


@MODELS.register_module()
class BinaryDiceLoss(MaskLoss):
    """Soft Dice loss of sigmoid(logits) against a mask, per sample.

    ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)`` over the valid
    pixels of each sample, averaged over the batch.

    The target ``t`` is a 0/1 mask or a soft mask in [0, 1] (e.g. from
    ``Letterbox(mode='affine', soft_masks=True)``), same formula. With a
    soft target the gradient in ``p_i`` has the sign of ``t_i - D / 2`` (D
    the Dice score): the loss pushes p to 1 where ``t > D / 2`` (about 0.5
    for a good prediction) and to 0 elsewhere, not towards ``t``, and its
    minimum is above 0; for warped masks that is a sharp mask at about the
    0.5 contour, which is what is evaluated (BCE, DETRIS's only loss, fits
    ``t``). Target values are not checked (a device sync per step).

    mmseg's ``DiceLoss`` is not used: on B x 1 x H x W logits it one-hot
    encodes the B x H x W label and keeps channel 0, scoring the prediction
    against the background; it also cannot ignore pixels.

    Args:
        eps (float): Smoothing term in numerator and denominator.
            Defaults to 1.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
        loss_name (str): Key of the loss in the loss dict; must start with
            ``loss_`` to be summed into the total. Defaults to 'loss_dice'.
    """

    def __init__(self,
                 eps: float = 1.0,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_dice') -> None:
        super().__init__(loss_weight, loss_name)
        self.eps = eps

    def forward(self,
                pred: Tensor,
                target: Tensor,
                ignore_index: Optional[int] = 255,
                **kwargs) -> Tensor:
        """Loss of B x 1 x H x W logits against a B x H x W 0/1 (long) or
        soft (float) mask; called by the head's ``loss_by_feat``. Pixels
        equal to ``ignore_index`` count in neither prediction nor target.

        Returns:
            Tensor: The weighted loss, a float32 scalar.
        """
        self.check_shapes(pred, target)
        # float32 under autocast too (a no-op in float32): the sums run over
        # every pixel
        prob = pred.float().sigmoid().flatten(1)
        target = target.flatten(1)
        if ignore_index is None:
            valid = torch.ones_like(target, dtype=torch.bool)
        else:
            valid = target != ignore_index
        prob = prob * valid
        target = (target * valid).to(prob.dtype)
        inter = (prob * target).sum(1)
        dice = (2 * inter + self.eps) / (prob.sum(1) + target.sum(1) + self.eps)
        return self.loss_weight * (1 - dice).mean()
