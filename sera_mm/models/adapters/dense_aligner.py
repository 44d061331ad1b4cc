"""DETRIS's visual adapter, DenseAligner, and its cross-modal attention."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from sera_mm.models.utils import RoutingResult, TextFeatures
from sera_mm.registry import MODELS
from .dense_branches import DenseBranchesMixin


class CrossModalAttention(nn.Module):
    """Image tokens attend to the words through their own projections.

    ``back_proj(MHA(q=image_proj(S), k=v=text_proj(T)))``, as DETRIS's
    ``CrossModalAttention`` (parameter names kept: ``image_proj``,
    ``text_proj``, ``multihead_attn``, ``back_proj``).

    Args:
        channels (int): Width of the image tokens (the adapter width d).
        text_channels (int): Width of the word features.
        embed_channels (int): Width of the attention. Defaults to 128.
        num_heads (int): Attention heads. Defaults to 8.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.1.
    """

    def __init__(self, channels: int, text_channels: int, embed_channels: int = 128,
                 num_heads: int = 8, attn_drop: float = 0.1) -> None:
        super().__init__()
        if embed_channels % num_heads:
            raise ValueError(f'CrossModalAttention: num_heads={num_heads} must divide '
                             f'embed_channels={embed_channels}')
        self.multihead_attn = nn.MultiheadAttention(
            embed_channels, num_heads, dropout=attn_drop, batch_first=True)
        self.image_proj = nn.Linear(channels, embed_channels)
        self.text_proj = nn.Linear(text_channels, embed_channels)
        self.back_proj = nn.Linear(embed_channels, channels)

    def forward(self, image: Tensor, words: Tensor,
                key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """B x N x d image tokens, B x L x C_t words -> B x N x d."""
        words = self.text_proj(words)
        out, _ = self.multihead_attn(self.image_proj(image), words, words,
                                     key_padding_mask=key_padding_mask,
                                     need_weights=False)
        return self.back_proj(out)


@MODELS.register_module()
class DenseAligner(DenseBranchesMixin, BaseModule):
    """DETRIS's adapter inside a DINOv2 block (docs/en/method.md, s. 2).

    Called by the block on ``H = LN2(X)``; the block adds
    ``adapter_scale * A(H, T)`` beside its FFN. With N = P prefix tokens
    (cls + registers) + H*W patches::

        x0   = ReLU(D_fc1 H)                          (D -> d)
        F    = x0's patch tokens as B x d x H x W
        F_ms = dense multi-scale block(F) + F         (1x1; 1x1->3x3; 1x1->5x5)
        F_c  = refine(F_ms)                           (identity here; SERA-Adapter's experts)
        S'   = CrossModalAttention(flatten F_c, T)    (8 heads, dropout 0.1)
        A    = D_fc2([x0_prefix, S'] + x0)            (d -> D)

    So the prefix tokens reach the output as 2 * x0_prefix; the patch
    tokens as x0_patches + S'. DETRIS's attention has no padding mask and no
    residual around it (the multi-scale features reach the output only as
    queries); both are options here. The grid (H, W) and P come from the
    backbone, so non-square inputs work (DETRIS infers a square grid).

    Parameter names are DETRIS's (``D_fc1``, ``dense_branch*``, ``cross.*``,
    ``D_fc2``). Default initialisation (set when built and again by
    :meth:`init_weights`) is DETRIS's: convs kaiming-normal (fan_in, ReLU)
    with zero bias, linears truncated-normal (std 0.02) with zero bias, the
    attention's input projection Xavier-uniform.

    Args:
        in_channels (int): D, the backbone width (the backbone fills it in).
            Defaults to 768.
        channels (int): d, the adapter width (divisible by 16).
            Defaults to 128.
        text_channels (int): Width of the word features. Defaults to 512.
        embed_channels (int): Width of the cross-attention. Defaults to 128
            (DETRIS keeps 128 also when d is 384).
        num_heads (int): Cross-attention heads. Defaults to 8.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.1.
        use_pad_mask (bool): Mask the padding words out of the cross-attention
            (``text.pad_mask``). DETRIS attends to them. Defaults to False.
        cross_residual (bool): ``S' = flatten F_c + attention`` instead of the
            attention alone. Defaults to False (DETRIS).
        zero_init_out (bool): Start ``D_fc2`` at zero, so that the adapted
            backbone equals the pretrained one at step 0. Defaults to False
            (DETRIS).
        init_cfg (dict, optional): mmengine init config, applied instead of
            the default initialisation. Defaults to None.
    """

    def __init__(self,
                 in_channels: int = 768,
                 channels: int = 128,
                 text_channels: int = 512,
                 embed_channels: int = 128,
                 num_heads: int = 8,
                 attn_drop: float = 0.1,
                 use_pad_mask: bool = False,
                 cross_residual: bool = False,
                 zero_init_out: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.channels = channels
        self.text_channels = text_channels
        self.use_pad_mask = use_pad_mask
        self.cross_residual = cross_residual
        self.zero_init_out = zero_init_out
        self.D_fc1 = nn.Linear(in_channels, channels)
        self._build_dense_branches(channels, dims=2)
        self.cross = CrossModalAttention(channels, text_channels, embed_channels,
                                         num_heads, attn_drop)
        self.D_fc2 = nn.Linear(channels, in_channels)
        self._init_default()

    def _init_default(self) -> None:
        for module in self._dense_convs():
            nn.init.kaiming_normal_(module.conv.weight, nonlinearity='relu')
            nn.init.zeros_(module.conv.bias)
            module.norm.reset_parameters()
        # DETRIS's own kaiming init of the linears is overwritten by DINOv2's
        # init_weights (truncated normal), which is what its models start from.
        for linear in (self.D_fc1, self.D_fc2, self.cross.image_proj, self.cross.text_proj,
                       self.cross.back_proj, self.cross.multihead_attn.out_proj):
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        nn.init.xavier_uniform_(self.cross.multihead_attn.in_proj_weight)
        nn.init.zeros_(self.cross.multihead_attn.in_proj_bias)
        self._init_out()

    def _init_out(self) -> None:
        if self.zero_init_out:
            nn.init.zeros_(self.D_fc2.weight)
            nn.init.zeros_(self.D_fc2.bias)

    def init_weights(self) -> None:
        """Applies this adapter's ``init_cfg`` or else DETRIS's initialisation
        (replacing an ancestor's), then zeroes ``D_fc2`` with
        ``zero_init_out``; reached from the backbone's ``init_weights``."""
        super().init_weights()
        if self.init_cfg is None:
            self._init_default()
        self._init_out()

    def refine(self, f_ms: Tensor, x0_patches: Tensor,
               text: TextFeatures) -> Tuple[Tensor, Optional[RoutingResult]]:
        """What runs between the multi-scale block and the cross-attention:
        the identity here; SERA-Adapter mixes its experts here.

        Args:
            f_ms (Tensor): B x d x H x W multi-scale features.
            x0_patches (Tensor): B x HW x d, the projected patch tokens.
            text (TextFeatures): The text features.

        Returns:
            tuple: F_c (B x d x H x W) and the routing result that made it
            (None here).
        """
        return f_ms, None

    def forward(self, h: Tensor, text: TextFeatures, hw: Tuple[int, int],
                num_prefix_tokens: int) -> Tuple[Tensor, Optional[RoutingResult]]:
        """Computes A(H, T); called by the block on LN2's output.

        Args:
            h (Tensor): B x N x D tokens, N = num_prefix_tokens + H*W.
            text (TextFeatures): ``words`` B x L x text_channels; ``pad_mask``
                (B x L, True = padding) with ``use_pad_mask``; what
                :meth:`refine` reads.
            hw (tuple[int, int]): The patch grid (H, W).
            num_prefix_tokens (int): cls + register tokens before the patches.

        Returns:
            tuple: The adapter output (B x N x D, before the block's scale)
            and :meth:`refine`'s routing result.
        """
        self._check_inputs(h, text, hw, num_prefix_tokens)
        b = h.shape[0]
        x0 = F.relu(self.D_fc1(h))
        x0_patches = x0[:, num_prefix_tokens:]
        grid = x0_patches.transpose(1, 2).reshape(b, self.channels, *hw)
        f_c, routing = self.refine(self._dense_branches(grid) + grid, x0_patches, text)
        queries = f_c.flatten(2).transpose(1, 2)
        attended = self.cross(queries, text.words,
                              text.pad_mask if self.use_pad_mask else None)
        if self.cross_residual:
            attended = queries + attended
        return self.D_fc2(torch.cat([x0[:, :num_prefix_tokens], attended], dim=1) + x0), routing

    def _check_inputs(self, h: Tensor, text: Optional[TextFeatures], hw: Tuple[int, int],
                      num_prefix_tokens: int) -> None:
        name = type(self).__name__
        if text is None:
            raise ValueError(f'{name} needs the text features: call the backbone '
                             'as backbone(images, text)')
        height, width = hw
        if h.dim() != 3 or h.shape[2] != self.in_channels \
                or h.shape[1] != num_prefix_tokens + height * width:
            raise ValueError(f'{name}: expected tokens B x ({num_prefix_tokens} + '
                             f'{height}*{width}) x {self.in_channels}, got {tuple(h.shape)}')
        words = text.words
        if words.dim() != 3 or words.shape[0] != h.shape[0] \
                or words.shape[2] != self.text_channels:
            raise ValueError(f'{name}: text.words must be {h.shape[0]} x L x '
                             f'{self.text_channels}, got {tuple(words.shape)}')
        if self.use_pad_mask and (text.pad_mask.shape != words.shape[:2]
                                  or text.pad_mask.dtype != torch.bool):
            raise ValueError(f'{name}: text.pad_mask must be a bool '
                             f'{tuple(words.shape[:2])} tensor, got '
                             f'{text.pad_mask.dtype} {tuple(text.pad_mask.shape)}')
