"""Writing files so that a reader never sees a half-written one.

Every writer here writes a temporary file ``.<name>.<random>.tmp`` in the
target's folder, fsyncs it and renames it over the target: a job killed
mid-write leaves the previous file (or none), never a truncated one.
:class:`AtomicLocalBackend` is mmengine's file backend ``'atomic_local'``.
"""
import contextlib
import errno
import json
import os
import os.path as osp
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator, List, Optional, Tuple, Union

from mmengine.fileio import LocalBackend, register_backend

#: Permissions of the written files (mkstemp creates them owner-only).
FILE_MODE = 0o644
TEMP_SUFFIX = '.tmp'
# mkstemp's random part: 8 characters of [a-z0-9_]
_TEMP_NAME = re.compile(r'^\..+\.[a-z0-9_]{8}' + re.escape(TEMP_SUFFIX) + '$')
_FULL = {errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC), errno.EFBIG}


def write_error(path: str, error: OSError) -> OSError:
    """The error of a failed write of ``path``: ``error``'s errno (so its
    subclass, e.g. PermissionError), ``path`` as its filename, and what is
    left on disk (``... (the disk or quota is full; nothing was written, the
    file is left as it was)``)."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.filename is not None and os.fspath(error.filename) != path:
        reason = f'{reason}: {os.fspath(error.filename)!r}'  # the folder, say
    note = 'nothing was written, the file is left as it was'
    if error.errno in _FULL:
        note = f'the disk or quota is full; {note}'
    if error.errno is None:
        return OSError(f'cannot write {path}: {reason} ({note})')
    return OSError(error.errno, f'cannot write: {reason} ({note})', path)


@contextlib.contextmanager
def atomic_open(path: Union[str, Path], mode: str = 'w',
                encoding: str = 'utf-8') -> Iterator[IO]:
    """Opens a temporary file that replaces ``path`` when the block ends.

    Args:
        path: The file to write; its folder is created if missing.
        mode: ``'w'`` (text) or ``'wb'`` (bytes).
        encoding: Text encoding (ignored in binary mode).

    Yields:
        The open temporary file. If the block raises, it is removed and
        ``path`` is left untouched.

    Raises:
        OSError: Creating, writing or renaming failed: :func:`write_error`
            (the original is its ``__cause__``). An OSError of the block that
            names another file is the block's own and passes unchanged.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = osp.abspath(os.fspath(path))
    folder = osp.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp_path = tempfile.mkstemp(
            dir=folder, prefix=f'.{osp.basename(path)}.', suffix=TEMP_SUFFIX)
        f = os.fdopen(fd, mode, **({} if 'b' in mode else dict(encoding=encoding)))
    except OSError as e:
        raise write_error(path, e) from e
    try:
        try:
            yield f
        except OSError as e:
            if e.filename is not None:
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
    with contextlib.suppress(OSError, AttributeError):  # the rename's durability
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_open(path, 'wb') as f:
        f.write(data)


def atomic_write_text(path: Union[str, Path], text: str, encoding: str = 'utf-8') -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_open(path, 'w', encoding=encoding) as f:
        f.write(text)


def atomic_write_json(path: Union[str, Path], obj: Any, **kwargs: Any) -> None:
    """Writes ``obj`` as JSON (``kwargs`` go to :func:`json.dump`) to ``path``
    atomically, with a final newline."""
    kwargs.setdefault('ensure_ascii', False)
    with atomic_open(path, 'w') as f:
        json.dump(obj, f, **kwargs)
        f.write('\n')


def remove_stale_temporaries(folder: Union[str, Path]) -> List[str]:
    """Removes the temporary files that killed writes left in ``folder`` (only
    names of :func:`atomic_open`'s form); call it when no write there can be in
    progress. Returns the removed paths, sorted."""
    removed: List[str] = []
    for name in sorted(os.listdir(folder)) if osp.isdir(folder) else ():
        path = osp.join(folder, name)
        if _TEMP_NAME.match(name) and osp.isfile(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic and whose
    removals can be held back until a block of writes is complete
    (:meth:`hold_removals`)."""

    #: ``(path, inode)`` of the removals asked for in a hold_removals block.
    held: Optional[List[Tuple[str, int]]] = None

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Writes bytes atomically (called by ``mmengine.runner.save_checkpoint``)."""
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        """Writes text atomically."""
        atomic_write_text(filepath, obj, encoding=encoding)

    def remove(self, filepath: Union[str, Path]) -> None:
        """Removes a file, or queues its removal inside :meth:`hold_removals`."""
        self._remove(os.fspath(filepath), super().remove)

    def rmtree(self, dir_path: Union[str, Path]) -> None:
        """Removes a folder (a DeepSpeed checkpoint), or queues it inside
        :meth:`hold_removals`."""
        self._remove(os.fspath(dir_path), super().rmtree)

    def _remove(self, path: str, remove: Callable[[str], None]) -> None:
        if self.held is None:
            remove(path)
        elif osp.exists(path):
            self.held.append((path, os.stat(path).st_ino))

    @contextlib.contextmanager
    def hold_removals(self) -> Iterator[None]:
        """Runs the removals asked for in the block after it completes, except
        of a path written anew meanwhile (mmengine removes an outdated file
        before it writes the new one, which may have the same name). A block
        that raises removes nothing."""
        self.held = []
        try:
            yield
            held = self.held
        finally:
            self.held = None
        for path, inode in held:
            if osp.exists(path) and os.stat(path).st_ino == inode:
                (super().rmtree if osp.isdir(path) else super().remove)(path)


# force=True: a reload of this module re-registers the same class.
register_backend('atomic_local', AtomicLocalBackend, force=True)
