"""Finding, loading and comparing the configs under configs/."""
import ast
import functools
import glob
import os.path as osp
from typing import Any, Iterator, List, Tuple

from .paths import REPO

CONFIG_DIR = osp.join(REPO, 'configs')

#: Marks a key that one side of a diff lacks.
MISSING = '<missing>'


def config_files(*, bases: bool = True) -> List[str]:
    """Every config file under configs/ (relative to the repo root), sorted;
    without the ``_base_`` pieces when ``bases`` is False."""
    files = sorted(osp.relpath(p, REPO)
                   for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True))
    if not bases:
        files = [f for f in files if '_base_' not in f.split(osp.sep)]
    return files


@functools.lru_cache(maxsize=None)
def is_full_size(path: str) -> bool:
    """Whether a config builds a full-size model (DINOv2 ``arch`` 'base' or
    'large'), as opposed to a toy-sized one (the CPU demo configs and their
    children)."""
    from mmengine.config import Config
    arch = Config.fromfile(osp.join(REPO, path)).model.backbone.get('arch')
    return arch in ('base', 'large')


def declared_base(path: str) -> str:
    """The single ``_base_`` a config file names, resolved against its folder
    (read from the source, so that nothing is executed)."""
    tree = ast.parse(open(osp.join(REPO, path)).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            base = ast.literal_eval(node.value)
            if isinstance(base, list):
                assert len(base) == 1, f'{path}: an ablation has one parent, got {base}'
                base = base[0]
            return osp.relpath(osp.normpath(osp.join(REPO, osp.dirname(path), base)), REPO)
    raise AssertionError(f'{path} names no _base_')


def leaf_diff(parent: Any, child: Any, path: Tuple[str, ...] = ()) -> List[tuple]:
    """Differences between two loaded config dicts, one per leaf key.

    Nested dicts are compared key by key; everything else (numbers, strings,
    None, lists such as pipelines) is a leaf compared as a whole. A key that
    one side lacks is one difference, as is a dict on one side facing a
    non-dict on the other.

    Returns:
        list[tuple]: ``(dotted key, parent value, child value)``, with
        :data:`MISSING` for an absent key, sorted by key.
    """
    if isinstance(parent, dict) and isinstance(child, dict):
        out = []
        for key in sorted(set(parent) | set(child), key=str):
            sub = path + (str(key), )
            if key not in parent:
                out.append(('.'.join(sub), MISSING, child[key]))
            elif key not in child:
                out.append(('.'.join(sub), parent[key], MISSING))
            else:
                out.extend(leaf_diff(parent[key], child[key], sub))
        return out
    if parent != child or type(parent) is not type(child):
        return [('.'.join(path), parent, child)]
    return []


def iter_typed_nodes(node: Any, path: str = '') -> Iterator[Tuple[str, dict]]:
    """Yields ``(dotted path, dict)`` for every dict with a string ``type``
    in a loaded config, depth first."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield path or '<root>', node
        for k, v in node.items():
            yield from iter_typed_nodes(v, f'{path}.{k}' if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from iter_typed_nodes(v, f'{path}[{i}]')


def iter_type_dicts(node: Any) -> Iterator[Tuple[str, str]]:
    """Yields ``(dotted path, type name)`` of every typed dict of a config."""
    for path, typed in iter_typed_nodes(node):
        yield path, typed['type']
