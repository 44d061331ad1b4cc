"""SERA-Adapter: DenseAligner with two experts mixed by a soft router."""
from typing import Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch import Tensor

from sera_mm.registry import MODELS
from ..fusion.kernels import depthwise_weight, laplacian_kernel
from ..routers import SoftRouter
from ..utils import RoutingResult, TextFeatures
from .dense_aligner import DenseAligner


@MODELS.register_module()
class SERAAdapter(DenseAligner):
    """DETRIS's DenseAligner plus SERA's experts (docs/en/method.md, s. 2).

    Between the multi-scale block and the cross-modal attention
    (:meth:`refine`)::

        E_b = F_ms + alpha_b * phi(DW_b F_ms)     (DW_b 3x3 depthwise, Laplacian init)
        E_s = F_ms + alpha_s * phi(DW_s F_ms)
        w   = softmax(W_r mean(x0_patches))       (B x 2; 0 = spatial, 1 = boundary)
        F_c = F_ms + lambda_s w_s E_s + lambda_b w_b E_b

    Everything else is DenseAligner's, with its parameter names, so a DETRIS
    checkpoint initialises every part but ``spatial_dw``, ``boundary_dw``,
    ``router`` (and ``sentence_proj``). The soft router's result comes
    out of :meth:`refine` and the forward with the tokens.

    Args:
        alpha_b (float): Boundary expert scale. Defaults to 0.1.
        alpha_s (float): Spatial expert scale. Defaults to 0.1.
        lambda_s (float): Weight of the spatial expert in F_c. Defaults to 1.
        lambda_b (float): Weight of the boundary expert in F_c. Defaults to 1.
        router_text (bool): Route on ``[mean(x0_patches), W_s s]`` instead of
            the visual summary alone. Defaults to False (the paper's router).
        sentence_channels (int): Sentence feature width, read only with
            ``router_text``. Defaults to 512.
        norm_cfg (dict): Norm of phi. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation of phi. Defaults to ``dict(type='ReLU')``.
        **kwargs: :class:`DenseAligner`'s arguments.
    """

    expert_names = ('spatial', 'boundary')  # the columns of w

    def __init__(self,
                 alpha_b: float = 0.1,
                 alpha_s: float = 0.1,
                 lambda_s: float = 1.0,
                 lambda_b: float = 1.0,
                 router_text: bool = False,
                 sentence_channels: int = 512,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        channels = self.channels
        self.alpha_b = alpha_b
        self.alpha_s = alpha_s
        self.lambda_s = lambda_s
        self.lambda_b = lambda_b
        self.router_text = router_text
        self.spatial_dw = ConvModule(channels, channels, 3, padding=1, groups=channels,
                                     norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.boundary_dw = ConvModule(channels, channels, 3, padding=1, groups=channels,
                                      norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.sentence_proj = nn.Linear(sentence_channels, channels) if router_text else None
        self.router = SoftRouter(2 * channels if router_text else channels, num_experts=2)
        self._init_laplacian()

    def _init_laplacian(self) -> None:
        with torch.no_grad():
            self.boundary_dw.conv.weight.copy_(
                depthwise_weight(laplacian_kernel(), self.channels))

    def init_weights(self) -> None:
        """DenseAligner's initialisation, then DW_b set to the Laplacian
        again, last so that no ``init_cfg`` overwrites it."""
        super().init_weights()
        self._init_laplacian()

    def refine(self, f_ms: Tensor, x0_patches: Tensor,
               text: TextFeatures) -> Tuple[Tensor, RoutingResult]:
        """Mixes the spatial and boundary experts into F_ms.

        Args:
            f_ms (Tensor): B x d x H x W multi-scale features.
            x0_patches (Tensor): B x HW x d projected patch tokens (the
                router's input).
            text (TextFeatures): ``sentence`` is read with ``router_text``.

        Returns:
            tuple: F_c (B x d x H x W) and the soft router's result.
        """
        b = f_ms.shape[0]
        e_s = f_ms + self.alpha_s * self.spatial_dw(f_ms)
        e_b = f_ms + self.alpha_b * self.boundary_dw(f_ms)
        g = x0_patches.mean(dim=1)
        if self.router_text:
            if text.sentence is None or text.sentence.shape[0] != b:
                raise ValueError('SERAAdapter: router_text=True needs text.sentence of '
                                 'B x sentence_channels')
            g = torch.cat([g, self.sentence_proj(text.sentence)], dim=1)
        routing = self.router(g)
        # the router's float32 weights in the features' dtype (under autocast
        # F_c stays in the dtype of F_ms, as in DenseAligner)
        weights = routing.weights.to(f_ms.dtype)
        w_s = weights[:, 0].view(b, 1, 1, 1)
        w_b = weights[:, 1].view(b, 1, 1, 1)
        return f_ms + self.lambda_s * w_s * e_s + self.lambda_b * w_b * e_b, routing
