"""Switching off the pretrained-weight references of a model config."""
from typing import Any, List


def disable_pretrained(cfg: Any, path: str = 'model') -> List[str]:
    """Switches off every pretrained-weight reference in a model config.

    Walks ``cfg`` (nested dicts and lists) in place: a ``pretrained`` key
    holding a value becomes None, an ``init_cfg`` of ``type='Pretrained'``
    becomes None (in a list of init configs, only those entries are dropped).

    Args:
        cfg: A config dict (``cfg.model``) or list.
        path (str): Dotted name of ``cfg``, for the returned list.

    Returns:
        list[str]: Dotted keys that were switched off, e.g.
        ``['model.text_encoder.pretrained', 'model.backbone.init_cfg']``.
    """
    changed: List[str] = []
    if isinstance(cfg, dict):
        for key in list(cfg.keys()):
            value = cfg[key]
            if key == 'pretrained' and isinstance(value, str):
                cfg[key] = None
                changed.append(f'{path}.{key}')
            elif key == 'init_cfg' and _is_pretrained_init(value):
                cfg[key] = None
                changed.append(f'{path}.{key}')
            elif key == 'init_cfg' and isinstance(value, list) and \
                    any(_is_pretrained_init(v) for v in value):
                cfg[key] = [v for v in value if not _is_pretrained_init(v)] or None
                changed.append(f'{path}.{key}')
            else:
                changed.extend(disable_pretrained(value, f'{path}.{key}'))
    elif isinstance(cfg, list):
        for i, value in enumerate(cfg):
            changed.extend(disable_pretrained(value, f'{path}[{i}]'))
    return changed


def _is_pretrained_init(value: Any) -> bool:
    return isinstance(value, dict) and value.get('type') == 'Pretrained'
