"""A DINOv2 block: mmpretrain's ViT encoder layer with an adapter slot."""
from typing import Optional, Tuple

import torch.nn.functional as F
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.models.utils import SwiGLUFFN
from torch import Tensor, nn

from sera_mm.models.utils.structures import RoutingResult, TextFeatures


class DINOv2Layer(TransformerEncoderLayer):
    """mmpretrain's ``TransformerEncoderLayer`` with an optional adapter.

    Without an adapter, :meth:`forward` is the parent's, so the block is the
    pretrained block bit for bit. With one, the adapter runs in parallel with
    the FFN, on the same normalised tokens, inside the FFN's layer scale::

        X <- X + ls1(Attn(LN1(X)))
        H  = LN2(X)
        X <- X + ls2(FFN(H) + gamma * A(H, text, hw, num_prefix_tokens))

    The FFN's own forward applies its layer scale and adds the residual, so
    the adapted path calls its pieces one by one. The backbone owns the
    adapters and hands one over per call, so the layer's state dict stays
    the pretrained block's.
    """

    def forward(self,
                x: Tensor,
                adapter: Optional[nn.Module] = None,
                text: Optional[TextFeatures] = None,
                hw: Optional[Tuple[int, int]] = None,
                num_prefix_tokens: int = 1,
                adapter_scale: float = 1.0) -> Tuple[Tensor, Optional[RoutingResult]]:
        """Runs the block; called by :class:`DINOv2` once per layer.

        Args:
            x (Tensor): Tokens, B x N x D (prefix tokens, then the H*W patch
                tokens in row-major order).
            adapter (nn.Module, optional): ``adapter(h, text, hw,
                num_prefix_tokens) -> (B x N x D, routing result or None)``.
                Defaults to None.
            text (TextFeatures, optional): For the adapter.
            hw (tuple[int, int], optional): The patch grid (H, W).
            num_prefix_tokens (int): cls + register tokens. Defaults to 1.
            adapter_scale (float): gamma, the adapter's weight inside the FFN
                branch. Defaults to 1.0.

        Returns:
            tuple: The tokens (B x N x D) and the adapter's routing result
            (None without one).
        """
        if adapter is None:
            return super().forward(x), None
        x = x + self.attn(self.ln1(x))
        h = self.ln2(x)
        adapted, routing = adapter(h, text, hw, num_prefix_tokens)
        if adapted.shape != h.shape:
            raise ValueError(f'{type(adapter).__name__} returned shape '
                             f'{tuple(adapted.shape)}, expected {tuple(h.shape)}')
        out = self.ffn.gamma2(self._ffn_branch(h) + adapter_scale * adapted)
        return x + self.ffn.dropout_layer(out), routing

    def _ffn_branch(self, h: Tensor) -> Tensor:
        """The FFN's output before its layer scale, drop path and residual."""
        if isinstance(self.ffn, SwiGLUFFN):
            x1, x2 = self.ffn.w12(h).chunk(2, dim=-1)
            return self.ffn.w3(self.ffn.norm(F.silu(x1) * x2))
        return self.ffn.layers(h)
