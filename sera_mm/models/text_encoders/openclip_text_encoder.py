"""CLIP's text transformer (open_clip), with local weights, for RIS."""
import copy
from typing import Optional

import open_clip
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from open_clip.model import _build_text_tower
from torch import Tensor

from sera_mm.models.utils.structures import TextFeatures
from sera_mm.registry import MODELS
from .clip_checkpoint import OPENAI_TORCHSCRIPT, read_clip_text_state_dict


@MODELS.register_module()
class OpenCLIPTextEncoder(BaseModule):
    """open_clip's ``TextTransformer`` alone, giving word and sentence features.

    Only the text tower is built (no image tower in memory), with a context
    of ``context_length`` tokens: the checkpoint's 77 positional embeddings
    are sliced to the first ``context_length`` and the causal mask is built
    at that size. With a causal mask, the features of the first L positions
    do not depend on later ones, so they equal CLIP's at context 77.

    Life-cycle: the weights are loaded in ``__init__`` (``pretrained``), or
    left at open_clip's random init. A frozen encoder keeps
    ``requires_grad=False`` and eval mode whatever :meth:`train` is asked,
    and runs :meth:`forward` under ``torch.no_grad()``.

    Args:
        model_name (str): open_clip model config to take the text tower from.
            Defaults to 'ViT-B-16'.
        text_cfg (dict, optional): An explicit open_clip ``CLIPTextCfg`` dict
            instead of ``model_name``'s (tiny test models); needs
            ``embed_dim``. Defaults to None.
        embed_dim (int, optional): Width of the sentence feature (the text
            projection's output). Required with ``text_cfg``.
        context_length (int): L, tokens per sentence (17 or 22 in RIS).
            Defaults to 17.
        quick_gelu (bool): QuickGELU activations, as OpenAI's weights were
            trained with (ENVIRONMENT.md, trap 10). Defaults to True; an
            OpenAI TorchScript file with ``quick_gelu=False`` is refused.
        pretrained (str, optional): Local OpenAI TorchScript archive or
            open_clip checkpoint. Defaults to None (random init).
        frozen (bool): Freeze the encoder. Defaults to True.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 model_name: str = 'ViT-B-16',
                 text_cfg: Optional[dict] = None,
                 embed_dim: Optional[int] = None,
                 context_length: int = 17,
                 quick_gelu: bool = True,
                 pretrained: Optional[str] = None,
                 frozen: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if text_cfg is None:
            model_cfg = open_clip.get_model_config(model_name)
            if model_cfg is None or 'text_cfg' not in model_cfg:
                raise ValueError(f'model_name={model_name!r} is not an open_clip '
                                 'model config with a text_cfg')
            text_cfg = copy.deepcopy(model_cfg['text_cfg'])
            embed_dim = model_cfg['embed_dim'] if embed_dim is None else embed_dim
        else:
            text_cfg = copy.deepcopy(dict(text_cfg))
            if embed_dim is None:
                raise ValueError('OpenCLIPTextEncoder: text_cfg needs embed_dim')
        if text_cfg.get('hf_model_name'):
            raise ValueError(f'{model_name}: Hugging Face text towers are not supported')
        full_context = text_cfg.get('context_length', 77)
        if not 0 < context_length <= full_context:
            raise ValueError(f'context_length={context_length} must be in '
                             f'[1, {full_context}] (the config\'s context)')
        text_cfg['context_length'] = context_length
        text_cfg['output_tokens'] = True
        self.context_length = context_length
        self.quick_gelu = quick_gelu
        self.frozen = frozen
        # open_clip's own factory of the text tower (private, but it is what
        # CLIP/CustomTextCLIP build theirs with).
        self.text = _build_text_tower(embed_dim, text_cfg, quick_gelu=quick_gelu)
        self.width = self.text.width
        self.embed_dim = embed_dim
        self.pretrained = pretrained
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def init_weights(self) -> None:
        """Loads ``pretrained``; called by the Runner before training.

        Loading here and not in ``__init__`` follows mmengine's convention: at
        test time the Runner loads the whole model from ``load_from``, so the
        CLIP file is not needed to evaluate a trained checkpoint.
        """
        super().init_weights()
        if self.pretrained is not None:
            self.load_pretrained(self.pretrained)
        if self.frozen:
            self.requires_grad_(False)

    def load_pretrained(self, path: str) -> None:
        """Loads the text tower's weights from ``path``; called by :meth:`init_weights`.

        Raises on missing or unexpected text keys and on shape mismatches,
        naming them; logs the format and what was dropped.
        """
        state_dict, fmt, dropped = read_clip_text_state_dict(path)
        if fmt == OPENAI_TORCHSCRIPT and not self.quick_gelu:
            raise ValueError(f'{path} is an OpenAI TorchScript archive, trained '
                             'with QuickGELU: set quick_gelu=True')
        pos = state_dict.get('positional_embedding')
        if pos is not None:
            if pos.shape[0] < self.context_length:
                raise ValueError(f'{path}: positional_embedding has {pos.shape[0]} '
                                 f'positions, fewer than context_length={self.context_length}')
            state_dict['positional_embedding'] = pos[:self.context_length]
        expected = self.text.state_dict()
        mismatched = [f'{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
                      for k, v in state_dict.items()
                      if k in expected and v.shape != expected[k].shape]
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        if mismatched or missing or unexpected:
            raise KeyError(f'{path} ({fmt}) does not fit the text tower: shape '
                           f'mismatches {mismatched}, missing keys {missing}, '
                           f'unexpected keys {unexpected}')
        self.text.load_state_dict(state_dict, strict=True)
        dropped_parts = sorted({k.split('.')[0] for k in dropped})
        print_log(f'OpenCLIPTextEncoder: loaded {len(state_dict)} tensors from '
                  f'{path} ({fmt}, cast to float32); positional_embedding '
                  f'sliced to {self.context_length}; activation '
                  f'{"QuickGELU" if self.quick_gelu else "GELU"}; dropped '
                  f'{len(dropped)} tensors of {dropped_parts}', logger='current')

    def train(self, mode: bool = True) -> 'OpenCLIPTextEncoder':
        """Sets the mode; a frozen encoder stays in eval mode, no grads."""
        super().train(mode and not self.frozen)
        if self.frozen:
            self.requires_grad_(False)
        return self

    def forward(self, tokens: Tensor) -> TextFeatures:
        """Encodes tokenised sentences; called by the segmentor.

        Args:
            tokens (Tensor): B x L token ids, L <= ``context_length`` (shorter
                rows are zero-padded internally), each
                row ``[SOT, words..., EOT, 0...]`` (open_clip's tokenizer,
                truncated); EOT has the largest id of the row.

        Returns:
            TextFeatures: ``words`` B x L x width (``ln_final`` output),
            ``sentence`` B x embed_dim (EOT token through
            ``text_projection``), ``pad_mask`` B x L (True after the EOT).
        """
        if tokens.dim() != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(f'OpenCLIPTextEncoder(context_length='
                             f'{self.context_length}) got tokens of shape '
                             f'{tuple(tokens.shape)}; expected B x L, L <= '
                             f'{self.context_length}')
        length = tokens.shape[1]
        # The causal mask is built for context_length; shorter rows are padded
        # with zeros, which cannot change the first `length` positions.
        padded = F.pad(tokens, (0, self.context_length - length))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            sentence, words = self.text(padded)
        words = words[:, :length]
        eot = tokens.argmax(dim=-1)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        pad_mask = positions[None, :] > eot[:, None]
        return TextFeatures(words=words, sentence=sentence, pad_mask=pad_mask)
