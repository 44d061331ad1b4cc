"""The DETRIS-style neck: project, (optionally) fuse, gate by the sentence."""
import copy
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.models.utils import RoutingResult, TextFeatures
from sera_mm.registry import MODELS
from .coord_conv import CoordConv
from .sentence_gate import SentenceGate


@MODELS.register_module()
class TextGatedNeck(BaseModule):
    """Merges the backbone levels into one sentence-gated map (SERA.md s. 5).

    Per level: 1x1 conv + BN + ReLU from D to C, then the optional fusion
    module (SERA-Fusion sits here, before the gating, SERA.md s. 3), then
    the sentence gate ``level * MHA(level, s)``. The gated levels are
    concatenated and merged by a 1x1 conv to C; a CoordConv and a 3x3 conv
    refine the result, which is added back (residual).

    All levels must share one spatial size (a plain ViT gives one grid).

    Args:
        in_channels (Sequence[int]): Channels D of each input level.
        channels (int): Width C of the neck. Defaults to 512.
        text_channels (int): Width of the sentence feature. Defaults to 512.
        fusion_cfg (dict, optional): Config of the per-level fusion module
            (one module per level, each with its own router), e.g.
            ``dict(type='SERAFusion', top_k=2)``; ``channels`` is filled in
            with C unless given. Its forward must map B x C x H x W to
            ``(B x C x H x W, RoutingResult)``. None: no fusion.
            Defaults to None.
        norm_cfg (dict): Norm layer of the convs. Defaults to BN.
        act_cfg (dict): Activation of the convs. Defaults to ReLU.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 channels: int = 512,
                 text_channels: int = 512,
                 fusion_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) == 0:
            raise ValueError('TextGatedNeck: in_channels must name at least one level')
        self.in_channels = list(in_channels)
        self.channels = channels
        num_levels = len(self.in_channels)

        self.projs = nn.ModuleList(
            ConvModule(d, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for d in self.in_channels)
        self.fusions: Optional[nn.ModuleList] = None
        if fusion_cfg is not None:
            self.fusions = nn.ModuleList(
                MODELS.build(self._fusion_level_cfg(fusion_cfg))
                for _ in range(num_levels))
        self.gates = nn.ModuleList(
            SentenceGate(channels, text_channels) for _ in range(num_levels))
        self.aggregate = ConvModule(
            num_levels * channels, channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.refine = nn.Sequential(
            CoordConv(channels, channels, 3, norm_cfg=norm_cfg, act_cfg=act_cfg),
            ConvModule(channels, channels, 3, padding=1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg))

    def _fusion_level_cfg(self, fusion_cfg: dict) -> dict:
        cfg = copy.deepcopy(fusion_cfg)
        cfg.setdefault('channels', self.channels)
        return cfg

    @property
    def with_fusion(self) -> bool:
        """bool: Whether a fusion module (with a router) runs on each level."""
        return self.fusions is not None

    def forward(self, feats: Sequence[Tensor],
                text: TextFeatures) -> Tuple[Tensor, List[RoutingResult]]:
        """Called by the segmentor after the backbone.

        Args:
            feats (Sequence[Tensor]): One B x D_i x H x W map per level.
            text (TextFeatures): Only ``text.sentence`` (B x C_s) is read.

        Returns:
            tuple: The neck output, B x C x H x W, and the routing results
            of the fusion modules in level order (empty without fusion).
        """
        if len(feats) != len(self.in_channels):
            raise ValueError(f'TextGatedNeck: got {len(feats)} levels, in_channels '
                             f'names {len(self.in_channels)}')
        size = feats[0].shape[-2:]
        assert all(f.shape[-2:] == size for f in feats), \
            f'TextGatedNeck: levels differ in size: {[tuple(f.shape) for f in feats]}'

        routings: List[RoutingResult] = []
        gated = []
        for i, feat in enumerate(feats):
            x = self.projs[i](feat)
            if self.fusions is not None:
                x, routing = self.fusions[i](x)
                routings.append(routing)
            gated.append(self.gates[i](x, text.sentence))
        x = self.aggregate(torch.cat(gated, dim=1))
        return x + self.refine(x), routings
