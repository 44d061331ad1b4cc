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
"""
import pickle
from typing import Any, Callable, List, Tuple, Union

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
    allow-listed yet.
    """
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
