"""What the losses of 1-channel mask logits share."""
import torch.nn as nn
from torch import Tensor


class MaskLoss(nn.Module):
    """Base of the losses of B x 1 x H x W logits against a B x H x W mask
    (the calling convention of :class:`~sera_mm.models.decode_heads.DynamicConvHead`).

    Args:
        loss_weight (float): Weight of the loss.
        loss_name (str): Key of the loss in the loss dict; must start with
            ``loss_`` to be summed into the total.
    """

    def __init__(self, loss_weight: float, loss_name: str) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def check_shapes(self, pred: Tensor, target: Tensor) -> None:
        """Raises AssertionError unless ``pred`` is B x 1 x H x W and
        ``target`` B x H x W; called first by ``forward``."""
        assert pred.dim() == 4 and pred.shape[1] == 1 and \
            target.shape == pred.shape[:1] + pred.shape[2:], \
            f'{type(self).__name__}: expected B x 1 x H x W logits and a B x H x W mask, ' \
            f'got {tuple(pred.shape)} and {tuple(target.shape)}'

    @property
    def loss_name(self) -> str:
        """str: Key of this loss in the loss dict."""
        return self._loss_name
