"""Light checkpoints: frozen weights named by the file they came from.

A model whose encoders are frozen learns a small share of its weights; a
light checkpoint stores every trainable parameter and every buffer (and,
as usual, the optimizer and scheduler states), and for each frozen part the
file it was loaded from, that file's SHA-256 and the keys it reproduces.
Loading rebuilds those keys from the files (:func:`restore_frozen`).
"""
import copy
import hashlib
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

#: The checkpoint meta key holding the frozen parts' records.
FROZEN_SOURCES = 'frozen_sources'


def sha256_file(path: str) -> str:
    """Returns the hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _rebuilt_state(model: nn.Module, module: str, path: str, options: dict) -> Dict[str, torch.Tensor]:
    """The state dict of a CPU copy of ``model``'s ``module`` after its
    ``load_pretrained(path, **options)``; the model is left as it was."""
    part = copy.deepcopy(model.get_submodule(module)).cpu()
    part.load_pretrained(path, **options)
    return part.state_dict()


def light_records(model: nn.Module, sources: Sequence[Tuple[str, str, dict]]) -> List[dict]:
    """What a light checkpoint of ``model`` leaves out; called once per run,
    at the first light save (frozen weights do not change).

    A frozen parameter is left out when its module's file, read by the
    module's own ``load_pretrained``, gives it bit for bit; any other frozen
    parameter (random, or replaced since by ``load_from``) stays in the
    checkpoint.

    Args:
        model (nn.Module): The segmentor (unwrapped).
        sources: ``(module, file, options)`` as
            :func:`~sera_mm.utils.pretrained.pretrained_sources` gives.

    Returns:
        list[dict]: Per source with frozen weights, ``module``, ``file``,
        ``options``, ``sha256`` and ``keys`` (the segmentor's state-dict keys
        the file rebuilds, with their shapes).
    """
    records = []
    state = model.state_dict(keep_vars=True)
    for module, path, options in sources:
        if not hasattr(model.get_submodule(module), 'load_pretrained'):
            continue
        rebuilt = _rebuilt_state(model, module, path, options)
        prefix = f'{module}.' if module else ''
        keys = {prefix + k: list(v.shape) for k, v in rebuilt.items()
                if isinstance(state.get(prefix + k), nn.Parameter)
                and not state[prefix + k].requires_grad
                and torch.equal(v, state[prefix + k].detach().cpu())}
        if keys:
            records.append(dict(module=module, file=path, options=dict(options),
                                sha256=sha256_file(path), keys=keys))
    return records


def make_light(checkpoint: dict, records: List[dict]) -> dict:
    """Removes the records' keys from ``checkpoint['state_dict']`` and
    stores the records in its meta, in place; returns ``checkpoint``."""
    for record in records:
        for key in record['keys']:
            checkpoint['state_dict'].pop(key, None)
    checkpoint.setdefault('meta', {})[FROZEN_SOURCES] = copy.deepcopy(records)
    return checkpoint


def restore_frozen(checkpoint: dict, model: nn.Module) -> dict:
    """Makes a light checkpoint full again, in place (a full one is left as
    it is); called before its weights go into ``model``.

    Each record's file is checked against its SHA-256, read by the module's
    ``load_pretrained`` on a CPU copy, and its keys go back into
    ``checkpoint['state_dict']``; the records leave the meta.

    Returns:
        dict: ``checkpoint``.

    Raises:
        FileNotFoundError: A recorded file is missing; the message names it.
        ValueError: A recorded file changed (its SHA-256 differs); the
            message names it.
    """
    meta = checkpoint.get('meta') or {}
    for record in meta.pop(FROZEN_SOURCES, None) or []:
        path, module = record['file'], record['module']
        hint = (f"the light checkpoint's frozen {module!r} weights come from it; restore "
                'the file, or convert a full checkpoint with '
                'tools/model_converters/light_checkpoint.py')
        try:
            found = sha256_file(path)
        except FileNotFoundError:
            raise FileNotFoundError(f'{path} not found: {hint}') from None
        if found != record['sha256']:
            raise ValueError(f'{path} changed since the checkpoint was saved (SHA-256 '
                             f"{found}, recorded {record['sha256']}): {hint}")
        rebuilt = _rebuilt_state(model, module, path, record['options'])
        prefix = f'{module}.' if module else ''
        for key in record['keys']:
            checkpoint['state_dict'][key] = rebuilt[key[len(prefix):]]
    return checkpoint
