"""Reading the text tower's weights out of a CLIP checkpoint file.

Accepts OpenAI's TorchScript archives (``ViT-B-16.pt``, mostly fp16) and
open_clip state dicts under the same names (maybe under ``'state_dict'``,
with DDP's ``'module.'`` or a ``CustomTextCLIP``'s ``'text.'`` prefix). Only
the text tower's keys are kept, in float32, as open_clip's
``load_openai_model`` gives them on CPU (the fp16 values cast up exactly).
"""
import warnings
import zipfile
from typing import Dict, Tuple

import torch
from torch import Tensor

from sera_mm.utils.checkpoint import load_weights_only

OPENAI_TORCHSCRIPT = 'OpenAI TorchScript'
OPEN_CLIP = 'open_clip'

TEXT_KEY_PREFIXES = ('token_embedding.', 'positional_embedding', 'transformer.',
                     'ln_final.', 'text_projection')
# Keys of a whole CLIP checkpoint that the text tower does not use.
DROPPED_KEY_PREFIXES = ('visual.', 'logit_scale', 'logit_bias', 'input_resolution',
                        'context_length', 'vocab_size', 'attn_mask')


def is_torchscript_archive(path: str) -> bool:
    """True for a ``torch.jit.save`` archive (it holds ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('/constants.pkl') or name == 'constants.pkl'
                   for name in archive.namelist())


def read_clip_text_state_dict(path: str) -> Tuple[Dict[str, Tensor], str, list]:
    """Reads the text-tower weights of a CLIP checkpoint.

    Args:
        path (str): Local file, TorchScript archive or open_clip state dict.

    Returns:
        tuple: (float32 state dict with the text tower's keys, the format
        found, the list of dropped keys).

    Raises:
        KeyError: Naming keys that belong neither to the text tower nor to
            the parts known to be dropped.
    """
    if is_torchscript_archive(path):
        # OpenAI ships TorchScript only; torch.jit is deprecated but is still
        # the one reader of the format, so its warning is noise here.
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            module = torch.jit.load(path, map_location='cpu')
        state_dict = dict(module.state_dict())
        del module
        fmt = OPENAI_TORCHSCRIPT
    else:
        state_dict = load_weights_only(path)
        if not isinstance(state_dict, dict):
            raise TypeError(f'{path}: expected a state dict, got '
                            f'{type(state_dict).__name__}')
        if isinstance(state_dict.get('state_dict'), dict):
            state_dict = state_dict['state_dict']
        fmt = OPEN_CLIP
    text, dropped, unknown = {}, [], []
    for key, value in state_dict.items():
        name = key[len('module.'):] if key.startswith('module.') else key
        name = name[len('text.'):] if name.startswith('text.') else name
        if name.startswith(TEXT_KEY_PREFIXES):
            text[name] = value.float() if value.is_floating_point() else value
        elif name.startswith(DROPPED_KEY_PREFIXES):
            dropped.append(key)
        else:
            unknown.append(key)
    if unknown or not text:
        raise KeyError(f'{path} ({fmt}): not a CLIP checkpoint with a text '
                       f'transformer; unknown keys {unknown[:10]}')
    return text, fmt, dropped
