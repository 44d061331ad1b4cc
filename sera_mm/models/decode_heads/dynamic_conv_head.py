"""Mask head whose last convolution is predicted from the sentence."""
from typing import Dict, List, Optional, Union

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.models.utils import TextFeatures
from sera_mm.registry import MODELS


@MODELS.register_module()
class DynamicConvHead(BaseModule):
    """Upsamples x4 and applies a per-sample kernel predicted from ``s``.

    Two stages of (bilinear x2, 3x3 conv + BN + ReLU) take the B x C x h x w
    map to 4h x 4w and C_dyn channels; a plain 1x1 conv follows (as in
    DETRIS's projector, so the features the dynamic kernel reads are not
    all non-negative). A linear layer maps the sentence feature to one
    C_dyn x k x k kernel and a bias per sample, applied as a grouped conv
    over the batch: 1-channel mask logits.

    Not an mmseg ``BaseDecodeHead``: that class assumes a text-free forward
    and resizes logits up to the label size for the loss, while here the
    forward needs the sentence and the loss is taken at the head's
    resolution against the nearest-downsampled mask (docs/en/method.md, s. 5).

    Args:
        in_channels (int): Channels C of the input map. Defaults to 512.
        channels (int): Channels C_dyn read by the dynamic conv.
            Defaults to 256.
        mid_channels (int, optional): Output channels of the first (2x)
            upsampling conv. Defaults to None: ``in_channels``, as DETRIS.
        text_channels (int): Width of the sentence feature. Defaults to 512.
        kernel_size (int): Size of the dynamic kernel. Defaults to 3.
        norm_cfg (dict): Norm layer of the upsampling convs. Defaults to BN.
        act_cfg (dict): Activation of the upsampling convs. Defaults to ReLU.
        ignore_index (int): Mask value ignored by the losses. Defaults to 255.
        loss_decode (dict or list[dict]): Loss configs, each called as
            ``loss(logits B x 1 x H x W, target B x H x W, ignore_index=...)``
            and stored under its ``loss_name``. Defaults to
            :class:`BinaryCrossEntropyLoss` (mmseg's sigmoid
            ``CrossEntropyLoss`` with ``avg_non_ignore`` is also accepted).
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int = 512,
                 channels: int = 256,
                 text_channels: int = 512,
                 kernel_size: int = 3,
                 mid_channels: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 ignore_index: int = 255,
                 loss_decode: Union[dict, List[dict]] = dict(
                     type='BinaryCrossEntropyLoss', loss_weight=1.0, loss_name='loss_bce'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if kernel_size % 2 == 0:
            raise ValueError(f'DynamicConvHead: kernel_size must be odd, got {kernel_size}')
        self.in_channels = in_channels
        self.channels = channels
        self.kernel_size = kernel_size
        self.ignore_index = ignore_index

        mid_channels = in_channels if mid_channels is None else mid_channels
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
            ConvModule(in_channels, mid_channels, 3, padding=1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg),
            nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False),
            ConvModule(mid_channels, channels, 3, padding=1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg),
            nn.Conv2d(channels, channels, 1))
        self.kernel_proj = nn.Linear(text_channels, channels * kernel_size**2 + 1)

        loss_cfgs = [loss_decode] if isinstance(loss_decode, dict) else list(loss_decode)
        if not loss_cfgs:
            raise ValueError('DynamicConvHead: loss_decode names no loss')
        self.loss_decode = nn.ModuleList(MODELS.build(cfg) for cfg in loss_cfgs)

    def dynamic_conv(self, x: Tensor, sentence: Tensor) -> Tensor:
        """Applies each sample's own kernel: B x C_dyn x H x W -> B x 1 x H x W.

        The batch is folded into the channels (1 x B*C_dyn x H x W) so that
        one grouped conv with B groups runs every sample's kernel at once.
        """
        b, c, h, w = x.shape
        params = self.kernel_proj(sentence)
        weight = params[:, :-1].reshape(b, c, self.kernel_size, self.kernel_size)
        bias = params[:, -1]
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, bias,
                       padding=self.kernel_size // 2, groups=b)
        return out.reshape(b, 1, h, w)

    def forward(self, x: Tensor, text: TextFeatures) -> Tensor:
        """Called by the segmentor after the decoder.

        Args:
            x (Tensor): B x C x h x w decoder output.
            text (TextFeatures): Only ``text.sentence`` (B x C_s) is read.

        Returns:
            Tensor: Mask logits, B x 1 x 4h x 4w.
        """
        return self.dynamic_conv(self.upsample(x), text.sentence)

    def loss(self, x: Tensor, text: TextFeatures, gt_masks: Tensor) -> Dict[str, Tensor]:
        """Forward and losses; called by the segmentor in training.

        Args:
            x (Tensor): B x C x h x w decoder output.
            text (TextFeatures): Text features of the batch.
            gt_masks (Tensor): B x 1 x H x W referent masks at the input
                size: integer 0/1 or float soft masks in [0, 1], either with
                ``ignore_index`` on ignored pixels.

        Returns:
            dict[str, Tensor]: One entry per loss, keyed by its name.
        """
        return self.loss_by_feat(self.forward(x, text), gt_masks)

    def loss_by_feat(self, logits: Tensor, gt_masks: Tensor) -> Dict[str, Tensor]:
        """Losses of B x 1 x H' x W' logits against B x 1 x H x W masks.

        Called by :meth:`loss`. The masks are nearest-downsampled to the
        logits' size, as DETRIS does. Integer or bool masks go to the losses
        as long labels, floating (soft) masks as float32 targets; the logits
        as float32, also under autocast.

        Returns:
            dict[str, Tensor]: One entry per loss, keyed by its name; losses
            of the same name are summed.
        """
        logits = logits.float()  # a no-op in float32
        soft = gt_masks.is_floating_point()
        target = gt_masks.float() if soft else gt_masks
        if target.shape[-2:] != logits.shape[-2:]:
            target = F.interpolate(target.float(), logits.shape[-2:], mode='nearest')
        target = target.squeeze(1)
        target = target.float() if soft else target.long()
        losses: Dict[str, Tensor] = {}
        for loss_fn in self.loss_decode:
            name = loss_fn.loss_name
            value = loss_fn(logits, target, ignore_index=self.ignore_index)
            losses[name] = losses[name] + value if name in losses else value
        return losses
