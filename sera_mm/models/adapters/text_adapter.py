"""DETRIS's text adapter: a dense Conv1d block beside a CLIP text block's MLP."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from sera_mm.registry import MODELS
from .dense_branches import DenseBranchesMixin


@MODELS.register_module()
class TextAdapter(DenseBranchesMixin, BaseModule):
    """The adapter DETRIS puts in CLIP's text blocks (docs/en/method.md, s. 1).

    Called by :class:`~sera_mm.models.text_encoders.OpenCLIPTextEncoder` on
    the block's residual stream right after its attention (not on
    ``ln_2``'s output); the block then adds ``adapter_scale * A(x)`` beside
    its MLP. With x of B x L x D::

        x0  = ReLU(D_fc1 x)                       (D -> d)
        ms  = dense Conv1d block over the tokens after SOT (1x1; 1x1->k3; 1x1->k5)
        out = D_fc2([x0_SOT, ms] + x0)            (d -> D)

    The convolutions mix neighbouring tokens (so they are not causal) and see
    the padding after EOT, as in DETRIS; in training their BatchNorm pools
    statistics over the batch and the token positions.

    Parameter names are DETRIS's (``D_fc1``, ``dense_branch{1,2,3}``,
    ``D_fc2``). Initialisation (set when built and again by
    :meth:`init_weights`) is PyTorch's default for every layer, as DETRIS
    leaves it.

    Args:
        in_channels (int): D, the text width. Defaults to 512.
        channels (int): d, the adapter width (divisible by 16).
            Defaults to 64.
        init_cfg (dict, optional): mmengine init config, applied instead of
            the default initialisation. Defaults to None.
    """

    def __init__(self, in_channels: int = 512, channels: int = 64,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.channels = channels
        self.D_fc1 = nn.Linear(in_channels, channels)
        self._build_dense_branches(channels, dims=1)
        self.D_fc2 = nn.Linear(channels, in_channels)
        self._init_default()

    def _init_default(self) -> None:
        # ConvModule initialises its conv with kaiming_normal (fan_out) in its
        # constructor; DETRIS's text adapter keeps PyTorch's defaults.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.BatchNorm1d)):
                module.reset_parameters()

    def init_weights(self) -> None:
        """Applies this adapter's ``init_cfg`` or else PyTorch's default init
        (replacing an ancestor's); reached from the text encoder's."""
        super().init_weights()
        if self.init_cfg is None:
            self._init_default()

    def forward(self, x: Tensor) -> Tensor:
        """Adapts a text block's residual stream.

        Args:
            x (Tensor): B x L x D, SOT first.

        Returns:
            Tensor: B x L x D, the adapter output (before the block's scale).
        """
        if x.dim() != 3 or x.shape[-1] != self.in_channels or x.shape[1] < 2:
            raise ValueError(f'TextAdapter(in_channels={self.in_channels}) expects '
                             f'B x L x {self.in_channels} tokens with L >= 2, got '
                             f'{tuple(x.shape)}')
        x0 = F.relu(self.D_fc1(x))
        words = self._dense_branches(x0[:, 1:].transpose(1, 2)).transpose(1, 2)
        return self.D_fc2(torch.cat([x0[:, :1], words], dim=1) + x0)
