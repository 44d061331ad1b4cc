from .dice_loss import BinaryDiceLoss
from .moe_loss import MoERegularizationLoss

__all__ = ['BinaryDiceLoss', 'MoERegularizationLoss']
