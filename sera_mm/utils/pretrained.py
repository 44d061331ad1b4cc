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


def pretrained_sources(model_cfg: Any) -> List[Tuple[str, str, dict]]:
    """The pretrained files a model config names, by the module they load into.

    Args:
        model_cfg: The ``model`` config.

    Returns:
        list[tuple]: ``(module name, file, options)`` per reference:
        ``('text_encoder', path, {})`` for a ``pretrained`` string,
        ``('backbone', path, {'prefix': p})`` for an ``init_cfg`` of
        ``type='Pretrained'`` (options hold its ``prefix`` when set); the
        module name is the dotted path in the segmentor ('' for the
        segmentor itself). The module's ``load_pretrained(file, **options)``
        reads the file.
    """
    sources = []
    for container, key, name in _places(model_cfg, 'model'):
        value = container[key] if isinstance(container, dict) else None
        module = name[len('model.'):].rpartition('.')[0]
        if key == 'pretrained' and isinstance(value, str):
            sources.append((module, value, {}))
        elif key == 'init_cfg':
            for init in (value if isinstance(value, list) else [value]):
                if _is_pretrained_init(init):
                    options = {'prefix': init['prefix']} if init.get('prefix') else {}
                    sources.append((module, init['checkpoint'], options))
    return [s for s in sources if '[' not in s[0]]
