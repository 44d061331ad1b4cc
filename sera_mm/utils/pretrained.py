"""The pretrained-weight references of a model config: finding them and
switching them off."""
from typing import Any, Iterator, List, Tuple

#: A config node's place: (its container, its key or index, its dotted name).
Place = Tuple[Any, Any, str]


def _places(node: Any, path: str) -> Iterator[Place]:
    """Yields every entry of nested dicts, lists and tuples, parents first.

    An entry is yielded before its value is walked, and the value is read
    from the container after the yield: a caller may replace it, and the
    walk then descends into the new value.
    """
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


def pretrained_files(cfg: Any, path: str = 'model') -> Iterator[Tuple[str, str]]:
    """Yields the checkpoint files a model config loads pretrained weights from.

    They are the string values of ``pretrained`` keys and the ``checkpoint``
    of every ``dict(type='Pretrained', checkpoint=...)``.

    Args:
        cfg: A config dict (``cfg.model``) or list.
        path (str): Dotted name of ``cfg``, for the yielded keys.

    Yields:
        tuple[str, str]: The dotted key (e.g.
        ``'model.backbone.init_cfg.checkpoint'``) and the file or URL.
    """
    for container, key, name in _places(cfg, path):
        value = container[key]
        if not isinstance(value, str):
            continue
        if key == 'pretrained' or (key == 'checkpoint' and _is_pretrained_init(container)):
            yield name, value


def disable_pretrained(cfg: Any, path: str = 'model') -> List[str]:
    """Switches off every pretrained-weight reference in a model config.

    Walks ``cfg`` (nested dicts, lists and tuples) in place: a ``pretrained``
    key holding a string becomes None, an ``init_cfg`` of
    ``type='Pretrained'`` becomes None (in a list of init configs, only
    those entries are dropped, and an emptied list becomes None).

    Args:
        cfg: A config dict (``cfg.model``) or list.
        path (str): Dotted name of ``cfg``, for the returned list.

    Returns:
        list[str]: Dotted keys that were switched off, e.g.
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
