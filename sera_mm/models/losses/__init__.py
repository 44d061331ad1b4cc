from .bce_loss import BinaryCrossEntropyLoss
from .dice_loss import BinaryDiceLoss
from .moe_loss import MoERegularizationLoss

__all__ = ['BinaryCrossEntropyLoss', 'BinaryDiceLoss', 'MoERegularizationLoss']
