"""Loading mmengine Runner checkpoints with ``torch.load(weights_only=True)``.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``; since torch
2.6 that means ``weights_only=True``, whose unpickler refuses every global
that is not allow-listed. A Runner checkpoint holds, besides tensors, the
message hub's :class:`~mmengine.logging.HistoryBuffer` objects, which keep
their history in numpy arrays, so resuming fails with ``Unsupported global:
mmengine.logging.history_buffer.HistoryBuffer`` and then numpy's array and
dtype globals. Rather than turning the check off (``weights_only=False``
runs any code a checkpoint names), :func:`register_checkpoint_safe_globals`
allow-lists exactly these few globals; anything else is still refused.

One of them needs care: a HistoryBuffer pickles its statistic methods
(``HistoryBuffer.min`` ...), which protocol 2 writes as
``getattr(HistoryBuffer, 'min')``. Allowing the builtin ``getattr`` would
let a checkpoint fetch any attribute of any object it can build; instead the
name ``builtins.getattr`` is bound to :func:`history_buffer_getattr`, which
hands out only those methods.

``weights_only`` is passed explicitly on every load of the project:
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (the fix forums give for torch >= 2.6
load errors) turns torch's default to the unsafe unpickler, but only where
the call site leaves ``weights_only`` unset. mmengine's
:class:`~mmengine.runner.CheckpointLoader` (``load_from``, ``--resume``,
``init_cfg=dict(type='Pretrained')``) leaves it unset, so
:func:`register_safe_checkpoint_loaders` replaces its local-file loader by
:func:`load_from_local_weights_only` and runs every other scheme's loader
under :func:`forced_weights_only`.
"""
import contextlib
import functools
import os
import os.path as osp
import pickle
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

SafeGlobal = Union[Callable, Tuple[Callable, str]]

#: The statistic methods a pickled HistoryBuffer names (mmengine 0.10.7).
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _numpy_multiarray():
    """numpy's ``multiarray`` module (``numpy._core`` since numpy 2)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


def history_buffer_getattr(owner: Any, name: str) -> Callable:
    """What ``getattr`` means while unpickling a checkpoint.

    Called by the ``weights_only`` unpickler for each ``getattr`` a
    checkpoint holds (see the module docstring).

    Returns:
        Callable: ``getattr(owner, name)`` when ``owner`` is
        :class:`~mmengine.logging.HistoryBuffer` and ``name`` one of its
        registered statistic methods (``min``, ``max``, ``current``,
        ``mean``).

    Raises:
        pickle.UnpicklingError: For any other owner or name.
    """
    from mmengine.logging import HistoryBuffer
    # Not HistoryBuffer._statistics_methods: mmengine fills it in the first
    # HistoryBuffer.__init__, so in a fresh process (tools/test.py, --resume)
    # it is still empty when the checkpoint is read.
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refused getattr({owner!r}, {name!r}) in a checkpoint: with '
        'weights_only=True, sera_mm allows getattr only for the statistic '
        'methods of mmengine.logging.HistoryBuffer')


def checkpoint_safe_globals() -> List[SafeGlobal]:
    """The globals that an mmengine Runner checkpoint needs, besides torch's.

    Found by saving Runner checkpoints (Adam, a multi-step LR schedule,
    training and validation logs, ``save_best`` on a metric returned as a
    numpy scalar) and listing what
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` reports and what
    ``torch.load`` then asks for (a dtype's class is only met when its
    instance is built). ``collections.Counter`` (the milestones of
    ``MultiStepLR``) is allowed by torch already.

    Returns:
        list: Classes and functions, and ``(object, name)`` pairs for the
        numpy 1 names of numpy's functions, so that checkpoints written
        under numpy 1 (``numpy.core.multiarray._reconstruct``) load under
        numpy 2.
    """
    from mmengine.logging import HistoryBuffer
    multiarray = _numpy_multiarray()
    safe: List[SafeGlobal] = [
        HistoryBuffer,
        # A pickled ndarray: _reconstruct(ndarray, shape, dtype) + setstate.
        multiarray._reconstruct,
        np.ndarray,
        np.dtype,
        # A pickled numpy scalar, e.g. a np.float64 statistic.
        multiarray.scalar,
        # Protocol 2 writes it '__builtin__ getattr'; torch reads builtins.
        (history_buffer_getattr, 'builtins.getattr'),
    ]
    # np.dtype('f8') is built as an instance of numpy.dtypes.Float64DType
    # (numpy >= 1.25), whose class the unpickler checks when it sets the
    # dtype's state. A HistoryBuffer holds float64 values and int64 counts;
    # a metric returned as np.float64 (the best score) is a float64 scalar.
    for name in ('float64', 'int64'):
        dtype_class = type(np.dtype(name))
        if dtype_class is not np.dtype:
            safe.append(dtype_class)
    if multiarray.__name__ != 'numpy.core.multiarray':
        safe.append((multiarray._reconstruct,
                     'numpy.core.multiarray._reconstruct'))
        safe.append((multiarray.scalar, 'numpy.core.multiarray.scalar'))
    return safe


def register_checkpoint_safe_globals() -> None:
    """Allow-lists :func:`checkpoint_safe_globals` for ``torch.load``.

    Called once at start-up (``sera_mm.register_all_modules`` calls it), so
    that ``Runner.resume`` and ``load_from`` load mmengine checkpoints with
    ``weights_only=True``. Idempotent: adds only the entries that are not
    allow-listed yet. Also calls :func:`register_safe_checkpoint_loaders`.
    """
    register_safe_checkpoint_loaders()
    if not hasattr(torch.serialization, 'add_safe_globals'):
        return  # torch < 2.4 has no allow-list (nor weights_only default)
    already = set(map(_key, torch.serialization.get_safe_globals()))
    missing = [g for g in checkpoint_safe_globals() if _key(g) not in already]
    if missing:
        torch.serialization.add_safe_globals(missing)


def _key(safe_global: SafeGlobal) -> Tuple[int, str]:
    """Identity of an allow-list entry: the object and the name it goes by."""
    if isinstance(safe_global, tuple):
        obj, name = safe_global
    else:
        obj = safe_global
        name = f'{obj.__module__}.{obj.__qualname__}'
    return id(obj), name


class UnsafeCheckpointError(ValueError, pickle.UnpicklingError):
    """A checkpoint was refused by, or is unreadable for, the weights-only
    unpickler; the message names the file. Also an ``UnpicklingError``, what
    torch raises for a refused global, so callers catching that still do."""


def load_weights_only(filename: str, map_location: Any = 'cpu', **kwargs: Any) -> Any:
    """``torch.load(filename, weights_only=True)``, whatever the environment.

    Args:
        filename (str): Local file.
        map_location: As for :func:`torch.load`. Defaults to ``'cpu'``.
        **kwargs: Further :func:`torch.load` arguments (e.g. ``mmap``).

    Returns:
        The unpickled object (tensors, containers and allow-listed globals).

    Raises:
        FileNotFoundError: No file at ``filename``.
        UnsafeCheckpointError: The file names a global that is not
            allow-listed (it could run code) or is not a readable checkpoint.
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint not found: {filename}')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True,
                          **kwargs)
    except Exception as e:  # torch raises several types for a bad file
        raise UnsafeCheckpointError(
            f'checkpoint {filename} refused or unreadable with weights_only=True: '
            f'{load_error_summary(e)}') from e


def load_error_summary(error: BaseException) -> str:
    """The telling part of a checkpoint-loading error (torch's are long): the
    refused global of a weights-only load, else the error's type and first
    line. An :class:`UnsafeCheckpointError` is such a summary already."""
    if isinstance(error, UnsafeCheckpointError):
        return str(error)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        for marker in ('unsupported global', 'refused'):
            if marker in line.lower():
                return line[line.lower().index(marker):]
    return f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__


def load_from_local_weights_only(filename: str, map_location: Any = None) -> Any:
    """mmengine's ``load_from_local`` with ``weights_only=True`` passed.

    Registered for the empty prefix (local files) of
    :class:`~mmengine.runner.CheckpointLoader` by
    :func:`register_safe_checkpoint_loaders`; the ``load_from_`` prefix of
    the name is what mmengine's log line strips.
    """
    return load_weights_only(osp.expanduser(filename), map_location)


@contextlib.contextmanager
def forced_weights_only() -> Iterator[None]:
    """Forces ``weights_only=True`` on every ``torch.load`` inside the block.

    For loaders whose ``torch.load`` call is not ours (mmengine's URL
    schemes): ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` overrides even an explicit
    ``weights_only=False``. The environment is process-wide, so the previous
    values are restored on exit.
    """
    names = ('TORCH_FORCE_WEIGHTS_ONLY_LOAD', 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')
    saved = {name: os.environ.get(name) for name in names}
    os.environ['TORCH_FORCE_WEIGHTS_ONLY_LOAD'] = '1'
    os.environ.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _weights_only_scheme(loader: Callable) -> Callable:
    """``loader`` (an mmengine scheme loader) run under
    :func:`forced_weights_only`; marked so that it is wrapped once."""
    if getattr(loader, '_sera_mm_weights_only', False):
        return loader

    @functools.wraps(loader)
    def wrapped(filename: str, map_location: Optional[Any] = None) -> Any:
        with forced_weights_only():
            return loader(filename, map_location)

    wrapped._sera_mm_weights_only = True  # type: ignore[attr-defined]
    return wrapped


def register_safe_checkpoint_loaders() -> None:
    """Makes every :class:`~mmengine.runner.CheckpointLoader` scheme load
    with ``weights_only=True`` (see the module docstring). Idempotent."""
    from mmengine.runner import CheckpointLoader
    load_from_local_weights_only._sera_mm_weights_only = True  # type: ignore[attr-defined]
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if prefix == '':
            safe = load_from_local_weights_only
        else:
            safe = _weights_only_scheme(loader)
        if safe is not loader:
            CheckpointLoader.register_scheme(prefix, safe, force=True)
