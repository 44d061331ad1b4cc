"""CLIP's text transformer (open_clip), with local weights and DETRIS's text adapters."""
import copy
from typing import Optional, Sequence, Tuple

import open_clip
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule, ModuleDict
from open_clip.model import _build_text_tower
from torch import Tensor, nn

from sera_mm.models.utils.structures import TextFeatures
from sera_mm.registry import MODELS
from sera_mm.utils.pretrained import pretrained_file
from .clip_checkpoint import OPENAI_TORCHSCRIPT, read_clip_text_state_dict
from .clip_tokenizer import CLIPTokenizer

#: How the padding mask of the words is made: 'after_eot' marks the
#: positions after the end-of-text token; 'zero_token' marks the positions
#: whose token id is 0, as DETRIS does (it also marks a real '!', id 0).
PAD_MASK_RULES = ('after_eot', 'zero_token')


@MODELS.register_module()
class OpenCLIPTextEncoder(BaseModule):
    """open_clip's ``TextTransformer`` alone, giving word and sentence features.

    Only the text tower is built, with a context of ``context_length``
    tokens: the checkpoint's 77 positional embeddings are sliced and the
    causal mask is built at that size, so the features equal CLIP's at
    context 77. The encoder owns the sentence length: :meth:`tokenize` gives
    ``context_length`` CLIP tokens, which the segmentor passes to
    :meth:`forward` (an exported graph is fed ids).

    Text adapters (``adapter_cfg``, DETRIS's :class:`TextAdapter`) sit in the
    blocks of ``adapter_indices``: ``x = x + MLP(LN2(x)) + adapter_scale *
    A(x)`` after the attention (docs/en/method.md, s. 1). A frozen tower
    still runs with gradients then, so that they reach the adapters; without
    adapters it runs under ``torch.no_grad()``.

    The activation follows open_clip's naming: ``'ViT-B-16'`` is GELU,
    ``'ViT-B-16-quickgelu'`` the QuickGELU that OpenAI's weights need
    (docs/en/environment.md). The CLIP weights are read only by
    :meth:`init_weights` (the Runner calls it to train, not to test: the
    model's own checkpoint then holds the tower).

    Args:
        model_name (str): open_clip model config to take the text tower and
            its activation from. Defaults to 'ViT-B-16-quickgelu'.
        text_cfg (dict, optional): An explicit open_clip ``CLIPTextCfg`` dict
            instead of ``model_name``'s (tiny test models); needs
            ``embed_dim``. Defaults to None.
        embed_dim (int, optional): Width of the sentence feature (the text
            projection's output). Required with ``text_cfg``.
        context_length (int): L, tokens per sentence (17 or 22 in RIS).
            Defaults to 17.
        quick_gelu (bool, optional): QuickGELU activations. None: as
            ``model_name`` says (GELU with ``text_cfg``); an explicit value
            must agree with ``model_name``. Defaults to None.
        pretrained (str, optional): Local OpenAI TorchScript archive or
            open_clip checkpoint, loaded by :meth:`init_weights`. Defaults
            to None (the tower keeps its random init).
        frozen (bool): Freeze the tower's own weights. Defaults to True.
        adapter_cfg (dict, optional): Config of the adapter built for each
            block of ``adapter_indices`` (``in_channels`` defaults to the
            tower width). None: no adapters. Defaults to None.
        adapter_indices (Sequence[int]): Blocks with an adapter.
            Defaults to (1, 3, 5, 7, 9, 11).
        adapter_scale (float): The adapter's weight beside the MLP.
            Defaults to 0.2.
        pad_mask (str): One of :data:`PAD_MASK_RULES`. Defaults to
            'after_eot'.
        init_cfg (dict, optional): mmengine init config. Defaults to None.
    """

    def __init__(self,
                 model_name: str = 'ViT-B-16-quickgelu',
                 text_cfg: Optional[dict] = None,
                 embed_dim: Optional[int] = None,
                 context_length: int = 17,
                 quick_gelu: Optional[bool] = None,
                 pretrained: Optional[str] = None,
                 frozen: bool = True,
                 adapter_cfg: Optional[dict] = None,
                 adapter_indices: Sequence[int] = (1, 3, 5, 7, 9, 11),
                 adapter_scale: float = 0.2,
                 pad_mask: str = 'after_eot',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if pad_mask not in PAD_MASK_RULES:
            raise ValueError(f'OpenCLIPTextEncoder: pad_mask={pad_mask!r}; choose from '
                             f'{PAD_MASK_RULES}')
        if text_cfg is None:
            model_cfg = open_clip.get_model_config(model_name)
            if model_cfg is None or 'text_cfg' not in model_cfg:
                raise ValueError(f'model_name={model_name!r} is not an open_clip '
                                 'model config with a text_cfg')
            text_cfg = copy.deepcopy(model_cfg['text_cfg'])
            embed_dim = model_cfg['embed_dim'] if embed_dim is None else embed_dim
            named = bool(model_cfg.get('quick_gelu', False))
            if quick_gelu is not None and quick_gelu != named:
                raise ValueError(
                    f'OpenCLIPTextEncoder: quick_gelu={quick_gelu} contradicts '
                    f'model_name={model_name!r}, open_clip\'s '
                    f'{"QuickGELU" if named else "GELU"} model; name the model '
                    'with the activation its weights were trained with (e.g. '
                    "'ViT-B-16-quickgelu' for OpenAI's ViT-B-16.pt) and leave "
                    'quick_gelu unset')
            quick_gelu = named
        else:
            text_cfg = copy.deepcopy(dict(text_cfg))
            if embed_dim is None:
                raise ValueError('OpenCLIPTextEncoder: text_cfg needs embed_dim')
            quick_gelu = bool(quick_gelu)
        if text_cfg.get('hf_model_name'):
            raise ValueError(f'{model_name}: Hugging Face text towers are not supported')
        full_context = text_cfg.get('context_length', 77)
        if not 2 <= context_length <= full_context:
            raise ValueError(f'OpenCLIPTextEncoder: context_length={context_length} must '
                             f'be in [2, {full_context}] (start and end tokens; the '
                             "text tower's positions)")
        self.tokenizer = CLIPTokenizer(context_length)
        vocab_size = text_cfg.get('vocab_size', 49408)
        if vocab_size <= self.tokenizer.eot_token_id:
            raise ValueError(f'OpenCLIPTextEncoder: text_cfg vocab_size={vocab_size} is '
                             "smaller than CLIP's BPE vocabulary "
                             f'({self.tokenizer.eot_token_id + 1} ids) it tokenises with; '
                             'set vocab_size=49408')
        text_cfg['context_length'] = context_length
        text_cfg['output_tokens'] = True
        self.model_name = model_name
        self.context_length = context_length
        self.quick_gelu = quick_gelu
        self.frozen = frozen
        self.pad_mask = pad_mask
        # open_clip's own factory of the text tower (private, but it is what
        # CLIP/CustomTextCLIP build theirs with).
        self.text = _build_text_tower(embed_dim, text_cfg, quick_gelu=quick_gelu)
        self.width = self.text.width
        self.embed_dim = embed_dim
        self.pretrained = pretrained
        self.adapter_scale = adapter_scale
        self.adapters = ModuleDict()
        if adapter_cfg is not None:
            if getattr(self.text, 'cls_emb', None) is not None \
                    or getattr(self.text, 'use_pad_mask', False) \
                    or getattr(self.text, 'pool_type', 'argmax') != 'argmax':
                raise ValueError(f'OpenCLIPTextEncoder: text adapters need a CLIP-style '
                                 f'text tower (no class token, no padding mask, argmax '
                                 f'pooling); {model_name!r} is not one')
            num_blocks = len(self.text.transformer.resblocks)
            for index in adapter_indices:
                if not 0 <= index < num_blocks:
                    raise ValueError(f'OpenCLIPTextEncoder: adapter_indices holds {index}, '
                                     f'outside the {num_blocks} text blocks')
                cfg = dict(adapter_cfg)
                cfg.setdefault('in_channels', self.width)
                self.adapters[str(index)] = MODELS.build(cfg)
        if frozen:
            self.text.requires_grad_(False)
            self.text.eval()

    def init_weights(self) -> None:
        """Initialises the adapters (``init_cfg``, then each one's own
        ``init_weights``), then loads ``pretrained`` into the tower, last so
        that no ``init_cfg`` overwrites it; reached from the segmentor's."""
        super().init_weights()
        if self.pretrained is not None:
            self.load_pretrained(self.pretrained)
        if self.frozen:
            self.text.requires_grad_(False)

    def load_pretrained(self, path: str) -> None:
        """Loads the text tower's weights from ``path``; called by :meth:`init_weights`.

        Raises on an OpenAI (QuickGELU) archive for a GELU model and on
        missing, unexpected or mismatched text keys, naming them; logs the
        format and what was dropped.
        """
        state_dict, fmt, dropped = read_clip_text_state_dict(
            pretrained_file(path, 'OpenCLIPTextEncoder pretrained'))
        if fmt == OPENAI_TORCHSCRIPT and not self.quick_gelu:
            raise ValueError(f'{path} is an OpenAI TorchScript archive, trained '
                             f'with QuickGELU, but model_name={self.model_name!r} builds '
                             "GELU: use 'ViT-B-16-quickgelu' (or the -quickgelu "
                             'variant of the model)')
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
        """Sets the mode; a frozen tower stays in eval mode without gradients,
        the adapters follow ``mode``."""
        super().train(mode)
        if self.frozen:
            self.text.eval()
            self.text.requires_grad_(False)
        return self

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Tokenises sentences for :meth:`forward`; called by the segmentor.

        Returns:
            Tensor: B x ``context_length`` int64 ids, on the tower's device.
        """
        return self.tokenizer(texts).to(self.text.token_embedding.weight.device)

    def forward(self, tokens: Tensor) -> TextFeatures:
        """Encodes tokenised sentences; called by the segmentor.

        Args:
            tokens (Tensor): B x L token ids, L <= ``context_length``, each
                row ``[SOT, words..., EOT, 0...]`` (open_clip's tokenizer,
                truncated); EOT has the largest id of the row.

        Returns:
            TextFeatures: ``words`` B x L x width (``ln_final`` output),
            ``sentence`` B x embed_dim (EOT token through
            ``text_projection``), ``pad_mask`` B x L (see ``pad_mask``).
        """
        if tokens.dim() != 2 or tokens.shape[1] > self.context_length:
            raise ValueError(f'OpenCLIPTextEncoder(context_length='
                             f'{self.context_length}) got tokens of shape '
                             f'{tuple(tokens.shape)}; expected B x L, L <= '
                             f'{self.context_length}')
        if len(self.adapters):
            sentence, words = self._forward_adapted(tokens)
        else:
            sentence, words = self._forward_plain(tokens)
        if self.pad_mask == 'zero_token':
            pad_mask = tokens == 0
        else:
            positions = torch.arange(tokens.shape[1], device=tokens.device)
            pad_mask = positions[None, :] > tokens.argmax(dim=-1)[:, None]
        return TextFeatures(words=words, sentence=sentence, pad_mask=pad_mask)

    def _forward_plain(self, tokens: Tensor) -> Tuple[Tensor, Tensor]:
        """open_clip's own forward; no gradients through a frozen tower."""
        length = tokens.shape[1]
        # The causal mask is built for context_length; shorter rows are padded
        # with zeros, which cannot change the first `length` positions.
        padded = F.pad(tokens, (0, self.context_length - length))
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            sentence, words = self.text(padded)
        return sentence, words[:, :length]

    def _forward_adapted(self, tokens: Tensor) -> Tuple[Tensor, Tensor]:
        """open_clip's forward with the adapters between attention and MLP.

        Runs at the tokens' own length L (the adapters' convolutions see all
        L positions, so padding to the context would change them).
        """
        tower = self.text
        length = tokens.shape[1]
        x = tower.token_embedding(tokens) + tower.positional_embedding[:length]
        attn_mask = tower.attn_mask[:length, :length]
        for index, block in enumerate(tower.transformer.resblocks):
            adapter = self.adapters[str(index)] if str(index) in self.adapters else None
            if adapter is None:
                x = block(x, attn_mask=attn_mask)
                continue
            x = x + block.ls_1(block.attention(q_x=block.ln_1(x), attn_mask=attn_mask))
            adapted = adapter(x)
            x = x + block.ls_2(block.mlp(block.ln_2(x))) + self.adapter_scale * adapted
        words = tower.ln_final(x)
        pooled = words[torch.arange(words.shape[0], device=words.device),
                       tokens.argmax(dim=-1)]
        if isinstance(tower.text_projection, nn.Linear):
            return tower.text_projection(pooled), words
        return pooled @ tower.text_projection, words
