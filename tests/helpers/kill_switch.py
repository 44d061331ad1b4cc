"""Kills the training process (SIGKILL, as the OOM killer or a scheduler
would) at a chosen file operation, for the kill-and-resume tests; imported
by the tool through ``custom_imports``.

``SERA_KILL_AT`` names the moment as ``<op>:<file name>``:

- ``write:<name>``: the new file is complete in its temporary file, just
  before it is renamed over ``<name>`` (``os.replace``);
- ``remove:<name>``: just before ``<name>`` is removed (``os.remove``).

Unset, nothing changes.
"""
import os
import os.path as osp
import signal

KILL_AT_ENV = 'SERA_KILL_AT'
OPS = ('write', 'remove')


def _arm() -> None:
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return
    op, _, name = spec.partition(':')
    if op not in OPS or not name:
        raise ValueError(f'{KILL_AT_ENV}={spec!r}: expected <write|remove>:<file name>')
    real = os.replace if op == 'write' else os.remove

    def kill_at(*args, **kwargs):
        target = args[-1] if op == 'write' else args[0]
        if osp.basename(os.fspath(target)) == name:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(os, 'replace' if op == 'write' else 'remove', kill_at)


_arm()
