"""Checks that a checkpoint's weights fit a model before testing with it.

``Runner.load_checkpoint`` loads with ``strict=False``: a checkpoint of
another architecture only logs a warning and the test then scores a partly
random model. :func:`check_state_dict_matches`, the one fit check of sera_mm
(test tool, checkpoint converter, :func:`sera_mm.apis.init_model`), raises
an error naming the keys at fault instead.
"""
import re
from typing import Dict, List, Mapping, Tuple

import torch
from torch import nn

from sera_mm.utils.checkpoint import UnsafeCheckpointError, load_weights_only
from sera_mm.utils.light_checkpoint import FROZEN_SOURCES

#: Keys listed per category in the error message.
MAX_LISTED = 10


class CheckpointMismatchError(ValueError):
    """The checkpoint's weights do not fit the model the config builds."""


def load_state_dict_keys(filename: str) -> Dict[str, Tuple[int, ...]]:
    """Shapes of the weights a ``.pth`` file (an mmengine checkpoint or a
    bare state dict) holds, by key without mmengine's ``module.`` prefix;
    a light checkpoint's frozen weights count (their files are checked when
    they are read).

    Loaded weights-only and, for torch's zip format, memory-mapped, so only
    the header is read.

    Raises:
        FileNotFoundError: no file at ``filename``.
        UnsafeCheckpointError: a ValueError: the file is refused by, or not
            readable for, the weights-only unpickler (the message names it).
        ValueError: the file holds no state dict.
    """
    try:
        ckpt = load_weights_only(filename, mmap=True)
    except UnsafeCheckpointError as e:
        if 'mmap' not in str(e.__cause__):  # legacy (non-zip) format cannot mmap
            raise
        ckpt = load_weights_only(filename)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f'checkpoint {filename} holds no state dict (got '
                         f'{type(ckpt).__name__})')
    shapes = {re.sub(r'^module\.', '', k): tuple(v.shape)
              for k, v in state.items() if isinstance(v, torch.Tensor)}
    for record in (ckpt.get('meta') or {}).get(FROZEN_SOURCES, []):
        shapes.update((k, tuple(v)) for k, v in record['keys'].items())  # from files
    return shapes


def _listing(title: str, items: List[str]) -> str:
    """``'<n> <title>: a, b, ...'`` with the first :data:`MAX_LISTED` items."""
    more = f' ... and {len(items) - MAX_LISTED} more' \
        if len(items) > MAX_LISTED else ''
    return f'{len(items)} {title}: ' + ', '.join(items[:MAX_LISTED]) + more


def check_checkpoint_matches(model: nn.Module, filename: str) -> None:
    """Raises if ``filename``'s weights do not fit ``model`` exactly; called
    by ``tools/test.py`` before the Runner loads the checkpoint.

    Raises:
        ValueError: the file is not a readable checkpoint.
        CheckpointMismatchError: see :func:`check_state_dict_matches`.
    """
    check_state_dict_matches(model, load_state_dict_keys(filename),
                             f'checkpoint {filename}')


def check_state_dict_matches(model: nn.Module, found: Mapping[str, Tuple[int, ...]],
                             source: str) -> None:
    """Raises if weights of the given shapes do not fit ``model`` exactly.

    Args:
        model: the model (DDP and mmengine wrappers are unwrapped).
        found: ``{key: shape}`` of the weights to load.
        source: what holds them, for the message (e.g. ``'checkpoint X'``).

    Raises:
        CheckpointMismatchError: a ValueError whose one-line message names
            ``source`` and lists (the first few of) the missing, unexpected
            and mismatched keys.
    """
    if hasattr(model, 'module'):  # DDP and mmengine's wrappers
        model = model.module
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v) for k, v in found.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(
        f'{k} (checkpoint {list(found[k])}, model {list(expected[k])})'
        for k in set(expected) & set(found) if expected[k] != found[k])
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(_listing('missing keys (not in the checkpoint)', missing))
    if unexpected:
        parts.append(_listing('unexpected keys (not in the model)', unexpected))
    if mismatched:
        parts.append(_listing('shape mismatches', mismatched))
    raise CheckpointMismatchError(
        f'{source} does not fit the model of the config '
        f'({type(model).__name__}, {len(expected)} weights; checkpoint '
        f'{len(found)}); was it made for another config? ' + '; '.join(parts))
