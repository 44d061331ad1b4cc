"""Zero initialisation of an expert's residual branch (SERAFusion option)."""
import torch.nn as nn
from mmcv.cnn import ConvModule


def zero_init_conv_module(module: ConvModule) -> None:
    """Makes ``module`` output zeros for any input, until trained.

    With a norm layer, its affine weight and bias are zeroed (the output of
    the norm is then 0, and ReLU(0) = 0), which keeps the conv's gradient
    path open through the norm's weight; without one, the conv is zeroed.
    """
    norm = module.norm if module.with_norm else None
    if norm is not None and getattr(norm, 'weight', None) is not None:
        nn.init.zeros_(norm.weight)
        nn.init.zeros_(norm.bias)
    else:
        nn.init.zeros_(module.conv.weight)
        if module.conv.bias is not None:
            nn.init.zeros_(module.conv.bias)
