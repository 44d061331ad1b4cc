"""The import graph of sera_mm/ has no back-edges: a package imports only
packages of a lower layer, so models and datasets do not import each other
and nothing below the APIs imports the package root (whose
``register_all_modules`` imports every package but the APIs). Imports inside
functions count too."""
import ast
import os.path as osp
from pathlib import Path
from typing import Iterator, Tuple

from helpers.paths import REPO

PACKAGE = Path(REPO) / 'sera_mm'
ROOT = '__init__'  # the package root, sera_mm/__init__.py
#: Layers, lowest first; a module may import its own package and lower layers.
LAYERS = {
    'version': 0, 'registry': 0, 'mmcv_lite': 0,
    'utils': 1,
    'datasets': 2, 'models': 2, 'evaluation': 2, 'visualization': 2,
    'engine': 3,
    ROOT: 4,
    'apis': 5,
}
#: Packages of one layer that one may import from the other.
SIDEWAYS = {('visualization', 'evaluation')}


def _imports(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every sera_mm import in ``path``."""
    rel = path.relative_to(PACKAGE.parent).with_suffix('')
    package = list(rel.parts[:-1])  # the package of a module and of an __init__
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            if module == 'sera_mm':  # `from sera_mm import x`: x is what is imported
                for alias in node.names:
                    yield node.lineno, f'sera_mm.{alias.name}'
            else:
                yield node.lineno, module


def _back_edges():
    for path in sorted(PACKAGE.rglob('*.py')):
        if '.mim' in path.parts:
            continue
        src = path.relative_to(PACKAGE).parts[0].removesuffix('.py')
        for line, module in _imports(path):
            if module.split('.')[0] != 'sera_mm':
                continue
            where = f'{osp.relpath(path, REPO)}:{line}'
            names = module.split('.')
            # `import sera_mm` or a name defined in the root's __init__
            dst = names[1] if len(names) > 1 and names[1] in LAYERS else ROOT
            if dst == src or LAYERS[dst] < LAYERS[src]:
                continue
            if LAYERS[dst] == LAYERS[src] and (src, dst) in SIDEWAYS:
                continue
            yield f'{where} ({src}, layer {LAYERS[src]}) imports {module} (layer {LAYERS[dst]})'


def test_every_package_is_in_a_layer():
    packages = {p.name.removesuffix('.py') for p in PACKAGE.iterdir()
                if (p.is_dir() and (p / '__init__.py').exists()) or p.suffix == '.py'}
    assert packages == set(LAYERS)


def test_no_back_edges():
    assert list(_back_edges()) == []
