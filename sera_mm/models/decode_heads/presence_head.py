"""Presence head: does the sentence name anything in the image (gRefCOCO)?"""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.models.utils import TextFeatures
from sera_mm.registry import MODELS


@MODELS.register_module()
class PresenceHead(BaseModule):
    """One "no target" logit per sample from the decoder output and the sentence.

    The B x C x h x w decoder output is pooled two ways, the mean (how much
    of the image answers the sentence) and the max (whether any place answers
    it strongly); both and the sentence feature go through LayerNorm and a
    two-layer MLP to one logit, whose sigmoid is the probability that the
    sentence names nothing (GRES's "no target", Liu et al., CVPR 2023). It
    reads what the mask head reads and leaves it unchanged, so a model with
    it keeps the mask head's weights (docs/en/method.md, s. 9).

    Args:
        in_channels (int): Channels C of the decoder output. Defaults to 512.
        text_channels (int): Width of the sentence feature. Defaults to 512.
        channels (int): Hidden width of the MLP. Defaults to 256.
        loss_weight (float): Weight of ``loss_presence``, the binary
            cross-entropy on the logits. Defaults to 1.0.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int = 512,
                 text_channels: int = 512,
                 channels: int = 256,
                 loss_weight: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.loss_weight = float(loss_weight)
        width = 2 * in_channels + text_channels
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, channels),
                                 nn.ReLU(inplace=True), nn.Linear(channels, 1))

    def forward(self, x: Tensor, text: TextFeatures) -> Tensor:
        """Called by the segmentor after the decoder, in predict and loss mode.

        Args:
            x (Tensor): B x C x h x w decoder output.
            text (TextFeatures): Only ``text.sentence`` (B x C_s) is read.

        Returns:
            Tensor: B "no target" logits.
        """
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3)), text.sentence], 1)
        return self.mlp(pooled).squeeze(1)

    def loss(self, x: Tensor, text: TextFeatures, no_target: Tensor) -> Dict[str, Tensor]:
        """Forward and ``loss_presence``; called by the segmentor in training.

        Args:
            no_target (Tensor): B bools or floats, 1 where the sentence names
                nothing.

        Returns:
            dict[str, Tensor]: ``loss_presence``, the batch mean, weighted.
        """
        logits = self.forward(x, text).float()
        return dict(loss_presence=self.loss_weight * F.binary_cross_entropy_with_logits(
            logits, no_target.to(logits)))
