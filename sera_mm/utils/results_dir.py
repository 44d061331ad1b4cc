"""The results folder of ``tools/test.py``: checked before the model is
built, and held by one run at a time.

The folder (``--out``, else the work dir) receives ``test_results.json``,
``test_results.md`` and one ``per_sentence_<split>.jsonl`` per split. Two
runs writing into one folder at the same time would leave one run's table
beside the other's records; :class:`ResultsDirLock` makes the second run
stop at once instead, naming the first one.

The lock is an exclusive ``flock`` on ``<folder>/.test_run.lock``, a file
that holds the pid, host, start time and command of the run holding it. The
kernel drops the lock when its process ends, however it ends, so a lock file
left by a killed run is taken over (with a warning naming its pid) and never
blocks later runs; a normal exit removes the file.
"""
import contextlib
import errno
import json
import logging
import os
import os.path as osp
import socket
import sys
import tempfile
import time
from typing import IO, List, Optional, Sequence

#: The lock file inside the results folder.
LOCK_NAME = '.test_run.lock'
#: The results table's files (written by sera_mm.engine.runner.results_table).
TABLE_JSON = 'test_results.json'
TABLE_MD = 'test_results.md'
#: Names the test tool writes into the folder.
RESULT_FILES = (TABLE_JSON, TABLE_MD)
RECORD_PREFIX, RECORD_SUFFIX = 'per_sentence_', '.jsonl'
#: Endings that make ``--out`` look like a file name: mmseg 0.x's
#: ``--out results.pkl`` was a file; here ``--out`` is a folder.
FILE_LIKE_ENDINGS = ('.pkl', '.pickle', '.json', '.jsonl', '.md', '.txt', '.csv',
                     '.npy', '.npz', '.pth', '.pt')

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class ResultsDirError(ValueError):
    """The results folder cannot be used; the message names it."""


class ResultsDirBusyError(RuntimeError):
    """Another run holds the results folder; the message names the lock file
    and the other run's pid."""


def _log(message: str, level: int = logging.WARNING) -> None:
    from mmengine.logging import print_log
    print_log(message, logger='current', level=level)


def check_results_dir(path: str, arg: str = '--out') -> str:
    """Makes sure ``path`` can receive the test tool's results; creates it.

    Called before the model or any data set is built, so that a wrong
    ``--out`` fails in a second, not after a whole split ran.

    Args:
        path (str): The folder.
        arg (str): How the error messages name it (``'--out'``,
            ``'--work-dir'``).

    Returns:
        str: ``path``.

    Raises:
        ResultsDirError: ``path`` is an existing file, lies below a file, or
            (not existing yet) ends like a file name (``results.pkl``).
        OSError: The folder cannot be created or written into (a read-only
            file system, a missing permission); the errno is kept and the
            message names ``path``.
    """
    what = ('test_results.json, test_results.md and per_sentence_<split>.jsonl')
    if osp.isfile(path) or (osp.exists(path) and not osp.isdir(path)):
        raise ResultsDirError(
            f'{arg} {path} is an existing file; {arg} names a folder, which receives '
            f'{what} (give a folder, e.g. {osp.splitext(path)[0] or path}_results/)')
    if not osp.exists(path):
        parent = osp.dirname(osp.abspath(path))
        while parent and not osp.exists(parent):
            parent = osp.dirname(parent)
        if parent and not osp.isdir(parent):
            raise ResultsDirError(f'{arg} {path}: {parent} is a file, not a folder')
        if path.lower().endswith(FILE_LIKE_ENDINGS):
            raise ResultsDirError(
                f'{arg} {path} looks like a file name; {arg} names a folder, which '
                f'receives {what} (mmseg 0.x took a pickle file here)')
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, f'{arg} {path}: cannot create the folder: '
                          f'{e.strerror}') from e
    try:  # what os.access cannot tell: a read-only mount, an ACL, a full quota
        fd, probe = tempfile.mkstemp(dir=path, prefix='.write_test.', suffix='.tmp')
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise OSError(e.errno, f'{arg} {path}: the folder is not writable: '
                      f'{e.strerror}') from e
    return path


def earlier_results(path: str) -> List[str]:
    """Names of the files of an earlier test run in ``path``, sorted."""
    if not osp.isdir(path):
        return []
    return sorted(n for n in os.listdir(path) if n in RESULT_FILES or (
        n.startswith(RECORD_PREFIX) and n.endswith(RECORD_SUFFIX)))


def warn_earlier_results(path: str, splits: Optional[Sequence[str]] = None,
                         arg: str = '--out') -> List[str]:
    """Warns when ``path`` holds the results of an earlier run, saying which
    files this run replaces and which stay (records of other splits, which
    the new table does not list). Returns the earlier files' names."""
    found = earlier_results(path)
    if not found:
        return found
    if splits is None:
        replaced, kept = found, []
    else:
        ours = set(RESULT_FILES) | {f'{RECORD_PREFIX}{s}{RECORD_SUFFIX}' for s in splits}
        replaced = [n for n in found if n in ours]
        kept = [n for n in found if n not in ours]
    message = (f'{arg} {path} holds the results of an earlier run; this run replaces '
               f'{", ".join(replaced) or "none of them"}')
    if kept:
        message += (f' and leaves {", ".join(kept)} (not part of the new table; its '
                    'per_sentence entries name the records it belongs to)')
    _log(message + '.')
    return found


def _describe(info: dict) -> str:
    parts = [f"pid {info.get('pid', '?')}"]
    if info.get('host'):
        parts.append(f"on {info['host']}")
    if info.get('started'):
        parts.append(f"started {info['started']}")
    text = ' '.join(parts)
    if info.get('command'):
        text += f": {info['command']}"
    return text


def _read_info(f: IO) -> dict:
    f.seek(0)
    try:
        info = json.loads(f.read() or '{}')
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


class ResultsDirLock:
    """An exclusive lock on a results folder for the length of a run.

    Use as a context manager (``with ResultsDirLock(out_dir): ...``) or call
    :meth:`acquire` and :meth:`release`.

    Args:
        folder (str): The results folder (it must exist).
        arg (str): How messages name the folder (``'--out'``).
        command (str, optional): What the lock file says the run is.
            Defaults to the process's command line.

    Raises:
        ResultsDirBusyError: From :meth:`acquire`, when another process
            holds the lock; the message names the folder, the lock file and
            the other run's pid, host, start time and command.
    """

    def __init__(self, folder: str, arg: str = '--out',
                 command: Optional[str] = None) -> None:
        self.folder = folder
        self.arg = arg
        self.path = osp.join(folder, LOCK_NAME)
        self.command = command if command is not None else ' '.join(sys.argv)
        self._file: Optional[IO] = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> 'ResultsDirLock':
        """Takes the lock, or raises ResultsDirBusyError at once (no
        waiting)."""
        if self._file is not None:
            return self
        if fcntl is None:  # pragma: no cover - no flock on this platform
            _log(f'{self.arg} {self.folder}: no file locking on this platform; two runs '
                 'sharing the folder would mix their results', logging.WARNING)
            return self
        while True:
            f = open(self.path, 'a+', encoding='utf-8')
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                info = _read_info(f)
                f.close()
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OSError(e.errno, f'{self.arg} {self.folder}: cannot lock '
                                  f'{self.path}: {e.strerror}') from e
                holder = _describe(info) if info else 'a run that is starting'
                raise ResultsDirBusyError(
                    f'{self.arg} {self.folder} is in use by another tools/test.py run '
                    f'({holder}; lock file {self.path}): two runs writing there would '
                    'mix one run\'s table with the other\'s records. Wait for it to '
                    f'end or give another {self.arg}.') from None
            # The holder removes the file when it ends; a lock taken on a file
            # that was removed meanwhile locks nothing: start again.
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            f.close()
        stale = _read_info(f)
        if stale.get('pid') and stale.get('pid') != os.getpid():
            alive = stale.get('host') == socket.gethostname() and _pid_alive(int(stale['pid']))
            state = 'which is no longer running' if not alive else \
                'which no longer holds it'
            _log(f'{self.arg} {self.folder}: taking over the lock file {self.path} left '
                 f'by {_describe(stale)}, {state}; results it wrote there may be '
                 'incomplete.')
        f.seek(0)
        f.truncate()
        f.write(json.dumps(dict(pid=os.getpid(), host=socket.gethostname(),
                                started=time.strftime('%Y-%m-%d %H:%M:%S'),
                                command=self.command)))
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Removes the lock file and drops the lock (a no-op when not
        held)."""
        f, self._file = self._file, None
        if f is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)  # while still locked: no one else holds a stale file
        f.close()

    def __enter__(self) -> 'ResultsDirLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
