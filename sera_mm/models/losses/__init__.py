from .moe_loss import MoERegularizationLoss

__all__ = ['MoERegularizationLoss']
