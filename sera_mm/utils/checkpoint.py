"""Loading checkpoints with ``torch.load(weights_only=True)`` on every path.

A Runner checkpoint holds the message hub's
:class:`~mmengine.logging.HistoryBuffer` objects (numpy arrays inside), which
the weights-only unpickler refuses; :func:`register_checkpoint_safe_globals`
allow-lists exactly those globals (``getattr`` bound to
:func:`history_buffer_getattr`) instead of turning the check off. mmengine
0.10.7 calls ``torch.load`` without ``weights_only``, which
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (the forums' fix for torch >= 2.6 load
errors) turns unsafe; :func:`register_safe_checkpoint_loaders` makes every
:class:`~mmengine.runner.CheckpointLoader` scheme (``load_from``,
``--resume``, ``init_cfg=dict(type='Pretrained')``) load weights-only.
"""
import contextlib
import functools
import os
import os.path as osp
import pickle
from typing import Any, Callable, Iterator, List, Tuple, Union

import numpy as np
import torch

SafeGlobal = Union[Callable, Tuple[Callable, str]]

#: The statistic methods a pickled HistoryBuffer names (mmengine 0.10.7).
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(owner: Any, name: str) -> Callable:
    """What ``getattr`` means while unpickling a checkpoint weights-only: a
    HistoryBuffer pickles its statistic methods as ``getattr(HistoryBuffer,
    'min')``. Returns that method; raises pickle.UnpicklingError for any
    other owner or name."""
    from mmengine.logging import HistoryBuffer
    # Not HistoryBuffer._statistics_methods: mmengine fills it in the first
    # HistoryBuffer.__init__, so in a fresh process it is still empty here.
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refused getattr({owner!r}, {name!r}) in a checkpoint: with '
        'weights_only=True, sera_mm allows getattr only for the statistic '
        'methods of mmengine.logging.HistoryBuffer')


def checkpoint_safe_globals() -> List[SafeGlobal]:
    """The globals an mmengine Runner checkpoint needs besides torch's (found
    with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on Runner
    checkpoints with Adam, a MultiStepLR, logs and a numpy best score).

    Returns:
        list: Classes and functions, and ``(object, name)`` pairs: the numpy 1
        names of numpy's functions, so that checkpoints written under numpy 1
        load under numpy 2, and ``builtins.getattr``.
    """
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    safe: List[SafeGlobal] = [
        HistoryBuffer, multiarray._reconstruct, np.ndarray, np.dtype, multiarray.scalar,
        (history_buffer_getattr, 'builtins.getattr'),
    ]
    # np.dtype('f8') is an instance of numpy.dtypes.Float64DType (numpy >=
    # 1.25): a HistoryBuffer holds float64 values and int64 counts.
    safe += [type(np.dtype(n)) for n in ('float64', 'int64') if type(np.dtype(n)) is not np.dtype]
    if multiarray.__name__ != 'numpy.core.multiarray':
        safe += [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
                 (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    return safe


def _key(safe_global: SafeGlobal) -> Tuple[int, str]:
    obj, name = safe_global if isinstance(safe_global, tuple) else (
        safe_global, f'{safe_global.__module__}.{safe_global.__qualname__}')
    return id(obj), name


def register_checkpoint_safe_globals() -> None:
    """Allow-lists :func:`checkpoint_safe_globals` for ``torch.load`` and calls
    :func:`register_safe_checkpoint_loaders`; called by
    ``sera_mm.register_all_modules``. Idempotent."""
    register_safe_checkpoint_loaders()
    already = set(map(_key, torch.serialization.get_safe_globals()))
    missing = [g for g in checkpoint_safe_globals() if _key(g) not in already]
    if missing:
        torch.serialization.add_safe_globals(missing)


class UnsafeCheckpointError(ValueError, pickle.UnpicklingError):
    """A checkpoint refused by, or unreadable for, the weights-only unpickler;
    the message names the file."""


def load_weights_only(filename: str, map_location: Any = 'cpu', **kwargs: Any) -> Any:
    """``torch.load(filename, weights_only=True, **kwargs)``, whatever the
    environment.

    Raises:
        FileNotFoundError: No file at ``filename``.
        UnsafeCheckpointError: The file names a global that is not
            allow-listed, or is not a readable checkpoint.
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True, **kwargs)
    except Exception as e:  # torch raises several types for a bad file
        raise UnsafeCheckpointError(
            f'checkpoint {filename} refused or unreadable with weights_only=True: '
            f'{load_error_summary(e)}') from e


def load_error_summary(error: BaseException) -> str:
    """The telling part of a checkpoint-loading error: the refused global,
    else the error's type and first line."""
    if isinstance(error, UnsafeCheckpointError):
        return str(error)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        for marker in ('unsupported global', 'refused'):
            if marker in line.lower():
                return line[line.lower().index(marker):]
    return f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__


@contextlib.contextmanager
def forced_weights_only() -> Iterator[None]:
    """Forces ``weights_only=True`` on every ``torch.load`` in the block (for
    loaders whose call is not ours), restoring the environment after."""
    names = ('TORCH_FORCE_WEIGHTS_ONLY_LOAD', 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ['TORCH_FORCE_WEIGHTS_ONLY_LOAD'] = '1'
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _weights_only_loader(prefix: str, loader: Callable) -> Callable:
    """``loader``, the CheckpointLoader scheme of ``prefix``, made to load
    weights-only: a local file through :func:`load_weights_only` (its errors
    name the file), any other scheme under :func:`forced_weights_only`."""

    @functools.wraps(loader)  # mmengine logs the loader's name
    def load(filename: str, map_location: Any = None) -> Any:
        if prefix == '':
            return load_weights_only(osp.expanduser(filename), map_location)
        with forced_weights_only():
            return loader(filename, map_location)

    load.weights_only = True  # type: ignore[attr-defined]
    return load


def register_safe_checkpoint_loaders() -> None:
    """Makes every :class:`~mmengine.runner.CheckpointLoader` scheme load
    weights-only. Idempotent.

    mmengine has no public list of its schemes: this reads the private
    ``CheckpointLoader._schemes`` of mmengine 0.10.7 (the one such reach of
    sera_mm), and ``test_mmengine_url_schemes_are_forced`` in
    tests/test_utils/test_safe_loading.py fails if mmengine changes it.
    """
    from mmengine.runner import CheckpointLoader
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if not getattr(loader, 'weights_only', False):
            CheckpointLoader.register_scheme(prefix, _weights_only_loader(prefix, loader),
                                             force=True)
