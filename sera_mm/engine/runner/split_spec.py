"""What a multi-split test run evaluates: split specs and their expansion.

A *split spec* is either a split name (``'testA'``), which replaces the
``split`` of the test dataset config, or a dict with a ``name`` and the
dataset keys to replace, for evaluating other data sets in the same run.
The specs live in one place, the ``splits`` of the test loop::

    test_cfg = dict(type='MultiSplitTestLoop', splits=[
        'val',
        dict(name='refcoco+_val', ann_file='refcoco+/instances.json',
             split_file='refcoco+/refs(unc).p', split='val'),
    ])
"""
import copy
import re
from typing import List, Optional, Sequence, Tuple, Union

from sera_mm.utils.config import leaf_datasets

SplitSpec = Union[str, dict]

#: Split names become file names and metric prefixes.
_NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+\-]*$')


def normalize_splits(splits: Sequence[SplitSpec],
                     where: str = 'test_cfg.splits') -> List[Tuple[str, dict]]:
    """Checks split specs and returns ``[(name, dataset overrides)]``.

    Args:
        splits: split names and/or dicts with ``name`` (see module doc).
        where: how error messages name the setting.

    Returns:
        One (name, overrides) pair per spec, in the given order; a plain
        name ``s`` gives ``(s, {'split': s})``.

    Raises:
        ValueError: empty list, a dict without ``name``, a name that is not
            a plain file-name token, or a name given twice.
    """
    if isinstance(splits, (str, dict)) or not splits:
        raise ValueError(f'{where} must be a non-empty list of split names '
                         f'or dicts with a name, got {splits!r}')
    out: List[Tuple[str, dict]] = []
    for i, spec in enumerate(splits):
        if isinstance(spec, str):
            name, overrides = spec, dict(split=spec)
        elif isinstance(spec, dict):
            overrides = copy.deepcopy(dict(spec))
            name = overrides.pop('name', None)
            if not isinstance(name, str):
                raise ValueError(f"{where}[{i}] is a dict without a 'name' "
                                 f'(str): {spec!r}')
            if not overrides:
                raise ValueError(f'{where}[{i}] ({name!r}) overrides no '
                                 'dataset key')
        else:
            raise ValueError(f'{where}[{i}] must be a split name or a dict, '
                             f'got {type(spec).__name__}: {spec!r}')
        if not _NAME_PATTERN.match(name):
            raise ValueError(
                f'{where}[{i}]: name {name!r} must be letters, digits and '
                "'_.+-' (it names files and metric prefixes)")
        if name in [n for n, _ in out]:
            raise ValueError(f'{where}: split name {name!r} is given twice')
        out.append((name, overrides))
    return out


def select_splits(available: Optional[Sequence[SplitSpec]],
                  wanted: Sequence[str]) -> List[SplitSpec]:
    """Resolves ``tools/test.py --splits`` (``wanted``) against the
    config's ``test_cfg.splits`` (``available``, may be None).

    Returns:
        For each wanted name, the config's spec of that name when there is
        one (a named data set of the config), else the name itself (a plain
        split of the test dataset).
    """
    by_name = {}
    if available:
        for name, _ in normalize_splits(available):
            by_name[name] = next(
                s for s in available
                if (s if isinstance(s, str) else s.get('name')) == name)
    return [copy.deepcopy(by_name.get(w, w)) for w in wanted]


def dataloader_for_split(dataloader_cfg: dict, name: str, overrides: dict,
                         where: str = 'test_dataloader') -> dict:
    """A copy of ``dataloader_cfg`` whose leaf datasets get ``overrides``,
    the keys of split ``name``.

    Raises:
        ValueError: the config (``where``) has no dataset dict to apply them
            to.
    """
    cfg = copy.deepcopy(dataloader_cfg)
    leaves = list(leaf_datasets(cfg.get('dataset')))
    if not leaves:
        raise ValueError(f'{where} has no dataset dict, cannot select split '
                         f'{name!r}')
    for leaf in leaves:
        leaf.update(copy.deepcopy(overrides))
    return cfg
