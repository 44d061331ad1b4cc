"""Writing files so that a reader never sees a half-written one.

Every writer here puts the bytes into a temporary file in the target's
folder (same file system, so the final rename is atomic), flushes and
fsyncs it, and renames it over the target with :func:`os.replace`. A job
killed mid-write leaves the previous file (or none) and at worst a hidden
``.<name>.*.tmp`` file, never a truncated checkpoint or table.

:class:`AtomicLocalBackend` brings the same to mmengine's checkpoint
writing: mmengine serialises a checkpoint into memory and hands the bytes to
a file backend's ``put``, whose local version writes the target in place.
Registered as the file backend ``'atomic_local'``, it is selected with
``default_hooks.checkpoint.backend_args=dict(backend='atomic_local')``; the
CheckpointHook then passes it to ``Runner.save_checkpoint`` for the regular
and the best checkpoints.
"""
import contextlib
import errno
import json
import os
import os.path as osp
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, List, Union

from mmengine.fileio import LocalBackend, register_backend

#: Permissions of the written files (mkstemp creates them owner-only).
FILE_MODE = 0o644
#: Ending of the temporary files; their names are ``.<target>.<random>.tmp``.
TEMP_SUFFIX = '.tmp'
# mkstemp's random part: 8 characters of [a-z0-9_]
_TEMP_NAME = re.compile(r'^\..+\.[a-z0-9_]{8}' + re.escape(TEMP_SUFFIX) + '$')


@contextlib.contextmanager
def atomic_open(path: Union[str, Path], mode: str = 'w',
                encoding: str = 'utf-8') -> Iterator[IO]:
    """Opens a temporary file that replaces ``path`` when the block ends.

    Args:
        path: the file to write; its folder is created if missing.
        mode: ``'w'`` (text) or ``'wb'`` (bytes).
        encoding: text encoding (ignored in binary mode).

    Yields:
        The open temporary file. If the block raises, the temporary file is
        removed and ``path`` is left untouched.

    Raises:
        OSError: Creating the folder or the temporary file, writing,
            flushing or renaming failed (a full disk, a quota, a read-only
            file system, a missing permission ...). The error names
            ``path`` and keeps the errno (and so the subclass:
            ``PermissionError`` for EACCES ...); the original is its
            ``__cause__``. An OSError raised by the block itself is
            re-raised that way too when it names no file (a write to the
            temporary file that failed); one naming another file is the
            block's own and passes unchanged.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = osp.abspath(os.fspath(path))
    folder = osp.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(
            dir=folder, prefix=f'.{osp.basename(path)}.', suffix=TEMP_SUFFIX)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        f = os.fdopen(fd, mode, **({} if 'b' in mode else dict(encoding=encoding)))
    except BaseException:
        os.close(fd)
        os.remove(tmp_path)
        raise
    try:
        try:
            yield f
        except OSError as e:
            if e.filename is not None:  # the block's own error, about another file
                raise
            raise write_error(path, e) from e
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.chmod(tmp_path, FILE_MODE)
            os.replace(tmp_path, path)
        except OSError as e:
            raise write_error(path, e) from e
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()  # flushing the rest may fail again (a full disk)
        with contextlib.suppress(OSError):
            os.remove(tmp_path)
        raise
    _fsync_dir(folder)


#: errnos whose message adds that the disk (or the quota) is full.
_FULL = {errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC), errno.EFBIG}


def write_error(path: str, error: OSError) -> OSError:
    """The error of a failed atomic write of ``path``.

    It keeps the errno of ``error`` (``OSError(errno, ...)`` builds the
    errno's subclass: ``PermissionError`` for EACCES ...), has ``path`` as
    its ``filename`` and says what is left on disk, e.g. ``[Errno 28] cannot
    write: No space left on device (the disk or quota is full; nothing was
    written, the file is left as it was): '/runs/x/epoch_3.pth'``. An error
    without an errno becomes a plain OSError naming ``path`` in its text.
    """
    reason = error.strerror or str(error) or type(error).__name__
    if error.filename is not None and os.fspath(error.filename) != path:
        reason = f'{reason}: {os.fspath(error.filename)!r}'  # the folder, say
    note = 'nothing was written, the file is left as it was'
    if error.errno in _FULL:
        note = f'the disk or quota is full; {note}'
    if error.errno is None:
        return OSError(f'cannot write {path}: {reason} ({note})')
    return OSError(error.errno, f'cannot write: {reason} ({note})', path)


def _fsync_dir(folder: str) -> None:
    """Makes the rename itself durable where the OS allows it (POSIX)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_open(path, 'wb') as f:
        f.write(data)


def atomic_write_text(path: Union[str, Path], text: str,
                      encoding: str = 'utf-8') -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_open(path, 'w', encoding=encoding) as f:
        f.write(text)


def atomic_write_json(path: Union[str, Path], obj: Any, **kwargs: Any) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically.

    Args:
        path: the target file.
        obj: a JSON-serialisable object.
        **kwargs: passed to :func:`json.dump` (e.g. ``indent=2``).
    """
    kwargs.setdefault('ensure_ascii', False)
    with atomic_open(path, 'w') as f:
        json.dump(obj, f, **kwargs)
        f.write('\n')


def remove_stale_temporaries(folder: Union[str, Path]) -> List[str]:
    """Removes the temporary files that killed writes left in ``folder``.

    Only names of the form :func:`atomic_open` gives its temporary files
    are touched; call it when no write into ``folder`` can be in progress
    (e.g. when a training starts).

    Returns:
        list[str]: The removed paths, sorted.
    """
    removed = []
    if not osp.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if _TEMP_NAME.match(name) and osp.isfile(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic.

    Reading, listing and removing are :class:`mmengine.fileio.LocalBackend`'s;
    :meth:`put` and :meth:`put_text` write through :func:`atomic_open`.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Writes bytes (called by ``mmengine.runner.save_checkpoint``)."""
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        """Writes text atomically."""
        atomic_write_text(filepath, obj, encoding=encoding)


# force=True: importing this module twice (reloads in tests) re-registers
# the same class instead of failing.
register_backend('atomic_local', AtomicLocalBackend, force=True)
