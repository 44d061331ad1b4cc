"""The DETRIS-style baseline adapter: bottleneck + cross-attention to words."""
from typing import Optional, Tuple

from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from sera_mm.models.utils.structures import TextFeatures
from sera_mm.registry import MODELS


@MODELS.register_module()
class PlainAdapter(BaseModule):
    """Bottleneck adapter whose tokens attend to the sentence's words.

    ``A(H) = W_up(Z + MHA(q=Z, k=v=T, key_padding_mask))`` with
    ``Z = act(W_down H)``. ``W_up`` starts at zero, so a backbone with these
    adapters equals the pretrained one until training moves it. Every token
    (prefix and patches) is treated alike; ``hw`` and ``num_prefix_tokens``
    are accepted for the common adapter interface and not used.

    Args:
        in_channels (int): D, the backbone width (the backbone fills it in).
            Defaults to 768.
        text_channels (int): Width of the word features. Defaults to 512.
        channels (int): d, the bottleneck width. Defaults to 128.
        num_heads (int): Heads of the cross-attention. Defaults to 4.
        act_cfg (dict): Activation after the down-projection.
            Defaults to ``dict(type='GELU')``.
        init_cfg (dict, optional): mmengine init config; the up-projection
            is zeroed after it. Defaults to None.
    """

    def __init__(self,
                 in_channels: int = 768,
                 text_channels: int = 512,
                 channels: int = 128,
                 num_heads: int = 4,
                 act_cfg: dict = dict(type='GELU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.text_channels = text_channels
        self.down = nn.Linear(in_channels, channels)
        self.act = build_activation_layer(act_cfg)
        self.cross_attn = nn.MultiheadAttention(
            channels, num_heads, kdim=text_channels, vdim=text_channels, batch_first=True)
        self.up = nn.Linear(channels, in_channels)
        self._zero_up()

    def _zero_up(self) -> None:
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def init_weights(self) -> None:
        """Applies ``init_cfg``, then zeroes the up-projection again."""
        super().init_weights()
        self._zero_up()

    def forward(self, h: Tensor, text: Optional[TextFeatures],
                hw: Tuple[int, int], num_prefix_tokens: int) -> Tensor:
        """Called by ``DINOv2Layer`` on the LN2-normalised tokens.

        Args:
            h (Tensor): B x N x D tokens.
            text (TextFeatures): ``words`` B x L x text_channels and ``pad_mask``
                B x L (True = padding) are used.
            hw (tuple[int, int]): Patch grid (unused).
            num_prefix_tokens (int): cls + registers (unused).

        Returns:
            Tensor: B x N x D.
        """
        if text is None:
            raise ValueError('PlainAdapter needs the text features: call the '
                             'backbone as backbone(images, text)')
        batch, _, dims = h.shape
        words = text.words
        if dims != self.in_channels or words.dim() != 3 or words.shape[0] != batch \
                or words.shape[2] != self.text_channels \
                or text.pad_mask.shape != words.shape[:2]:
            raise ValueError(
                f'PlainAdapter(in_channels={self.in_channels}, text_channels='
                f'{self.text_channels}) got tokens {tuple(h.shape)}, words '
                f'{tuple(words.shape)}, pad_mask {tuple(text.pad_mask.shape)}')
        z = self.act(self.down(h))
        attended, _ = self.cross_attn(z, words, words, key_padding_mask=text.pad_mask,
                                      need_weights=False)
        return self.up(z + attended)
