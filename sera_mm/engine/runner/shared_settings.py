"""Quantities that several parts of a config must agree on, each with one owner.

======================  ===========================  ==========================
quantity                owner (in the configs)       derived from it
======================  ===========================  ==========================
sentence length         ``context_length`` of        every ``TokenizeText`` of
                        ``configs/_base_/datasets/``  the pipelines,
                                                     ``model.text_encoder.
                                                     context_length`` (and a toy
                                                     tower's ``text_cfg.
                                                     context_length``), set with
                                                     ``{{_base_.context_length}}``
mask threshold          ``model.test_cfg.threshold``  the ``threshold`` of every
                        (``_base_/models/``)          ``RefSegMetric`` of
                                                     ``val_evaluator`` and
                                                     ``test_evaluator``
test splits             ``test_splits``              the ``splits`` of a
                                                     ``MultiSplitTestLoop``
                                                     (read from ``test_splits``
                                                     when not given)
======================  ===========================  ==========================

mmengine substitutes ``{{_base_.x}}`` and file variables when a config is
read, so a child config (or ``--cfg-options``) that changes one of them
alone leaves the others behind; :func:`check_shared_settings` finds that
and names the keys.
"""
import inspect
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from sera_mm.utils.config import typed_nodes

#: The checks :func:`check_shared_settings` runs, by name.
SHARED_SETTINGS = ('context_length', 'threshold', 'test_splits')


class SharedSettingError(ValueError):
    """A config sets a shared quantity to different values in two places."""


def _default(cls: type, arg: str) -> Any:
    """The default of ``cls.__init__``'s argument ``arg``."""
    return inspect.signature(cls.__init__).parameters[arg].default


def _is_type(node: Mapping, name: str) -> bool:
    """Whether a typed dict builds the class ``name`` (by name, scope
    prefix allowed, or by the class itself)."""
    kind = node.get('type')
    if isinstance(kind, type):
        return kind.__name__ == name
    return isinstance(kind, str) and kind.split('.')[-1] == name


def _conflict(quantity: str, owner: str, value: Any,
              others: List[Tuple[str, Any]], advice: str) -> None:
    """Raises :class:`SharedSettingError` when an entry of ``others``
    differs from ``value``."""
    wrong = [(where, v) for where, v in others if v != value]
    if wrong:
        listing = ', '.join(f'{where}={v!r}' for where, v in wrong)
        raise SharedSettingError(
            f'{quantity}: the config sets {owner}={value!r}, but {listing}. '
            f'Its one owner is {owner}; {advice}')


def _check_context_length(cfg: Mapping) -> None:
    from sera_mm.datasets.transforms import TokenizeText
    from sera_mm.models.text_encoders import OpenCLIPTextEncoder
    places = []
    if cfg.get('context_length') is not None:
        places.append(('context_length', cfg['context_length']))
    encoder = (cfg.get('model') or {}).get('text_encoder')
    if isinstance(encoder, Mapping) and _is_type(encoder, 'OpenCLIPTextEncoder'):
        places.append(('model.text_encoder.context_length',
                       encoder.get('context_length',
                                   _default(OpenCLIPTextEncoder, 'context_length'))))
    tokenize_default = _default(TokenizeText, 'context_length')
    for key, value in cfg.items():
        if key == 'model':
            continue
        for where, node in typed_nodes(value, key):
            if _is_type(node, 'TokenizeText'):
                places.append((f'{where}.context_length',
                               node.get('context_length', tokenize_default)))
    if len(places) > 1:
        owner, value = places[0]
        _conflict('sentence length', owner, value, places[1:],
                  "set the data set's context_length (configs/_base_/datasets/) "
                  'and derive the others from it with {{_base_.context_length}}')


def _check_threshold(cfg: Mapping) -> None:
    from sera_mm.evaluation import RefSegMetric
    model = cfg.get('model')
    if not isinstance(model, Mapping) or not _is_type(model, 'ReferringSegmentor'):
        return
    from sera_mm.models.segmentors.referring_segmentor import resolve_test_cfg
    threshold = resolve_test_cfg(model.get('test_cfg'))['threshold']
    metric_default = _default(RefSegMetric, 'threshold')
    places = []
    for key in ('val_evaluator', 'test_evaluator'):
        for where, node in typed_nodes(cfg.get(key), key):
            if _is_type(node, 'RefSegMetric'):
                places.append((f'{where}.threshold',
                               float(node.get('threshold', metric_default))))
    _conflict('mask threshold', 'model.test_cfg.threshold', threshold, places,
              'the metrics take it from the model '
              "(configs/_base_/models/: threshold=model['test_cfg']['threshold']); "
              'with --cfg-options set model.test_cfg.threshold, '
              'val_evaluator.threshold and test_evaluator.threshold together')


def _check_test_splits(cfg: Mapping) -> None:
    test_cfg = cfg.get('test_cfg') or {}
    if not (isinstance(test_cfg, Mapping) and _is_type(test_cfg, 'MultiSplitTestLoop')):
        return
    splits, owner = test_cfg.get('splits'), cfg.get('test_splits')
    if splits is None or owner is None:
        return
    _conflict('test splits', 'test_splits', list(owner),
              [('test_cfg.splits', list(splits))],
              'drop test_cfg.splits (MultiSplitTestLoop reads test_splits); '
              'tools/test.py --splits picks some of them for one run')


_CHECKS = dict(context_length=_check_context_length, threshold=_check_threshold,
               test_splits=_check_test_splits)


def check_shared_settings(cfg: Mapping,
                          checks: Optional[Sequence[str]] = None) -> None:
    """Checks that each shared quantity has one value in ``cfg``.

    Called by ``tools/train.py`` and ``tools/test.py`` on the config as read
    (after ``--cfg-options``), before they change it.

    Args:
        cfg: The config (a Config or a plain dict).
        checks: Names of :data:`SHARED_SETTINGS` to run; None: all.

    Raises:
        SharedSettingError: A quantity set to two values; the message names
            the owner, the keys that differ and how to derive them.
        KeyError: An unknown name in ``checks``.
    """
    for name in SHARED_SETTINGS if checks is None else checks:
        if name not in _CHECKS:
            raise KeyError(f'check_shared_settings: unknown check {name!r}; '
                           f'known: {list(SHARED_SETTINGS)}')
        _CHECKS[name](cfg)
