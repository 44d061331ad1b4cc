"""Pretrained-weight references of a model config: the check of their files
at load, and switching them off."""
import os.path as osp
from typing import Any, Iterator, List, Tuple


def pretrained_file(path: str, owner: str) -> str:
    """Returns ``path``; called by the backbone and the text encoder before
    they read their pretrained weights.

    Args:
        path (str): The pretrained checkpoint.
        owner (str): The module and its config key, for the message (e.g.
            ``'DINOv2 init_cfg.checkpoint'``).

    Raises:
        FileNotFoundError: No file at ``path``; the message names it, the key
            and the README section that says where the file comes from.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"{owner}: pretrained weights {path!r} not found (see the README section "
            "'Pretrained weights', or set the key to None to start from random weights)")
    return path


def _places(node: Any, path: str) -> Iterator[Tuple[Any, Any, str]]:
    """Yields ``(container, key, dotted name)`` for every entry of nested
    dicts, lists and tuples, parents first; a caller may replace the value,
    and the walk then descends into the new one."""
    if isinstance(node, dict):
        for key in list(node.keys()):
            yield node, key, f'{path}.{key}'
            yield from _places(node[key], f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i in range(len(node)):
            yield node, i, f'{path}[{i}]'
            yield from _places(node[i], f'{path}[{i}]')


def _is_pretrained_init(value: Any) -> bool:
    return isinstance(value, dict) and value.get('type') == 'Pretrained'


def disable_pretrained(cfg: Any, path: str = 'model') -> List[str]:
    """Switches off every pretrained-weight reference in a model config, in
    place: a ``pretrained`` string becomes None, an ``init_cfg`` of
    ``type='Pretrained'`` becomes None (in a list of init configs only those
    entries go; an emptied list becomes None).

    Returns:
        list[str]: The dotted keys switched off, e.g.
        ``['model.text_encoder.pretrained', 'model.backbone.init_cfg']``.
    """
    changed: List[str] = []
    for container, key, name in _places(cfg, path):
        if not isinstance(container, dict):
            continue
        value = container[key]
        if key == 'pretrained' and isinstance(value, str):
            container[key] = None
        elif key == 'init_cfg' and _is_pretrained_init(value):
            container[key] = None
        elif key == 'init_cfg' and isinstance(value, list) and \
                any(_is_pretrained_init(v) for v in value):
            container[key] = [v for v in value if not _is_pretrained_init(v)] or None
        else:
            continue
        changed.append(name)
    return changed
