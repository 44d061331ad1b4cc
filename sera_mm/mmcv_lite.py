"""sera_mm on mmcv-lite: ``import mmcv.ops`` without mmcv's compiled ops.

mmcv-lite is mmcv's own pure-Python build (the same 2.1.0 sources without
the compiled extension ``mmcv._ext``): a wheel on PyPI that installs in
seconds, where the full mmcv must be compiled (PyPI has only its source).
mmcv's ``mmcv/ops/__init__.py`` imports every op, and most ops load
``mmcv._ext`` when imported, so ``import mmcv.ops`` fails there. mmseg
1.2.2 imports from ``mmcv.ops`` unguarded, at module level, in four
modules, one of which (``mmseg/utils/mask_classification.py``) every mmseg
package imports through ``mmseg.utils``:

- ``point_sample`` in ``utils/mask_classification.py``,
  ``models/utils/point_sample.py`` and ``models/decode_heads/san_head.py``:
  pure PyTorch (``mmcv/ops/point_sample.py``, ``F.grid_sample``);
- ``sigmoid_focal_loss`` in ``models/losses/focal_loss.py``: compiled.

Every other ``mmcv.ops`` import of mmseg, mmpretrain, mmengine and mmcv is
guarded (``try``/``except ImportError``, or mmengine's
``mmcv_full_available()``, which looks for ``mmcv._ext``).

:func:`install` (called when ``sera_mm`` is imported) adds an import hook
that acts only when ``mmcv._ext`` does not exist: ``import mmcv.ops`` then
gives mmcv's own ``mmcv/ops`` package without its ``__init__``, holding
mmcv's ``point_sample`` and a ``sigmoid_focal_loss`` that raises when
called. Any other name is missing with the same ``ModuleNotFoundError``
(``mmcv._ext``) that mmcv-lite raises, so the guarded imports behave as
they do there, and a submodule that needs the extension fails at its import
as in mmcv-lite. With the full mmcv nothing changes. sera_mm's configs,
models and tools call none of mmcv's compiled ops
(tests/test_tools/test_device_bootstrap.py trains and tests with
``mmcv._ext`` hidden); mmseg's FocalLoss, SAN head and the other heads
that need ops are not used by any sera_mm config. Import sera_mm before
mmseg for the hook to take effect (the tools and tests do).
"""
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Callable, NoReturn, Optional, Sequence

#: The pure-PyTorch ops of mmcv that the lite ``mmcv.ops`` exports:
#: name -> mmcv's submodule that defines it.
PURE_OPS = {'point_sample': 'point_sample'}
#: Compiled ops that mmseg imports unguarded: exported as callables that
#: raise (:func:`missing_op`).
STUB_OPS = ('sigmoid_focal_loss',)
_FIX = ("this install has mmcv-lite (mmcv without its compiled ops, see "
        "sera_mm/mmcv_lite.py); sera_mm itself never needs them. For a config that "
        "does, install the full mmcv with its ops: bash tools/install.sh")


def has_compiled_ops() -> bool:
    """Whether mmcv's compiled extension ``mmcv._ext`` can be found."""
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except ModuleNotFoundError:  # no mmcv at all
        return False


def missing_op(name: str) -> Callable[..., NoReturn]:
    """A stand-in for the compiled op ``name`` that raises when called."""

    def op(*args, **kwargs) -> NoReturn:
        raise RuntimeError(f"mmcv.ops.{name} is one of mmcv's compiled ops: {_FIX}")

    op.__name__ = op.__qualname__ = name
    return op


def _missing_attribute(name: str) -> NoReturn:
    if name.startswith('__'):
        raise AttributeError(name)
    raise ModuleNotFoundError(
        f"mmcv.ops.{name} needs mmcv's compiled extension mmcv._ext: {_FIX}", name='mmcv._ext')


class _LiteOpsLoader(importlib.abc.Loader):
    """Fills the lite ``mmcv.ops`` package (see the module docstring)."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Optional[ModuleType]:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        module.__doc__ = ("mmcv.ops of mmcv-lite, filled by sera_mm.mmcv_lite: "
                          f"{', '.join(PURE_OPS)} (pure PyTorch) and stand-ins that raise "
                          f"for {', '.join(STUB_OPS)}.")
        for name, submodule in PURE_OPS.items():
            source = importlib.import_module(f'mmcv.ops.{submodule}')
            setattr(module, name, getattr(source, name))
        for name in STUB_OPS:
            setattr(module, name, missing_op(name))
        module.__all__ = list(PURE_OPS) + list(STUB_OPS)
        module.__getattr__ = _missing_attribute


class LiteOpsFinder(importlib.abc.MetaPathFinder):
    """Import hook: ``mmcv.ops`` of mmcv-lite, when ``mmcv._ext`` is missing."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]],
                  target: Optional[ModuleType] = None
                  ) -> Optional[importlib.machinery.ModuleSpec]:
        """Called by the import system for every module not yet imported;
        returns a spec for ``mmcv.ops`` only, and only without ``mmcv._ext``."""
        if fullname != 'mmcv.ops' or has_compiled_ops():
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None or not real.submodule_search_locations:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, _LiteOpsLoader(), origin=__file__,
                                              is_package=True)
        spec.submodule_search_locations = list(real.submodule_search_locations)
        return spec


def install() -> None:
    """Adds :class:`LiteOpsFinder` to the import system, once; called when
    ``sera_mm`` is imported. Inert with the full mmcv."""
    if not any(isinstance(finder, LiteOpsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, LiteOpsFinder())
