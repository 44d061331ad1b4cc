"""The results folder of tools/test.py: refused early when it cannot be one,
held by one run at a time, a killed run's lock taken over."""
import errno
import json
import logging
import os
import os.path as osp
import subprocess
import sys

import pytest

from sera_mm.utils import results_dir
from sera_mm.utils.results_dir import (LOCK_NAME, ResultsDirBusyError, ResultsDirError,
                                       ResultsDirLock, check_results_dir, warn_earlier_results)
from helpers.paths import REPO


@pytest.fixture
def logged(monkeypatch):
    """The messages results_dir logs (warnings included)."""
    messages = []
    monkeypatch.setattr(results_dir, '_log', lambda m, level=logging.WARNING: messages.append(m))
    return messages


def test_a_missing_folder_is_created(tmp_path):
    out = tmp_path / 'a' / 'b'
    assert check_results_dir(str(out)) == str(out)
    assert out.is_dir() and not os.listdir(out)  # the write probe left nothing


@pytest.mark.parametrize('name, words', [
    ('existing', ['is an existing file', 'names a folder', 'test_results.json']),
    ('results.pkl', ['looks like a file name', 'names a folder']),
    ('existing/below', ['is a file, not a folder']),
])
def test_what_cannot_be_a_folder_is_refused_naming_it(tmp_path, name, words):
    (tmp_path / 'existing').write_text('an earlier --out results.pkl')
    path = str(tmp_path / name)
    with pytest.raises(ResultsDirError) as info:
        check_results_dir(path, '--out')
    message = str(info.value)
    assert message.startswith('--out ') and path in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize('code', [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_an_unwritable_folder_is_refused_naming_it(tmp_path, monkeypatch, code):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(results_dir.tempfile, 'mkstemp', refuse)
    with pytest.raises(OSError) as info:
        check_results_dir(str(tmp_path), '--out')
    assert info.value.errno == code
    assert f'--out {tmp_path}: the folder is not writable' in str(info.value)


def test_earlier_results_are_listed_with_what_stays(tmp_path, logged):
    for name in ('test_results.json', 'per_sentence_val.jsonl', 'per_sentence_testB.jsonl',
                 'notes.txt'):
        (tmp_path / name).write_text('x')
    found = warn_earlier_results(str(tmp_path), ['val', 'testA'])
    assert found == ['per_sentence_testB.jsonl', 'per_sentence_val.jsonl', 'test_results.json']
    (message, ) = logged
    assert 'replaces per_sentence_val.jsonl, test_results.json' in message, message
    assert 'leaves per_sentence_testB.jsonl' in message, message
    assert warn_earlier_results(str(tmp_path / 'empty')) == []


def test_a_held_lock_stops_the_second_run_naming_pid_and_lock(tmp_path):
    first = ResultsDirLock(str(tmp_path), command='tools/test.py A B --out x').acquire()
    lock = tmp_path / LOCK_NAME
    info = json.loads(lock.read_text())
    assert info['pid'] == os.getpid() and info['command'] == 'tools/test.py A B --out x'
    # a second lock in this process is a separate open file: flock refuses it
    with pytest.raises(ResultsDirBusyError) as refused:
        ResultsDirLock(str(tmp_path)).acquire()
    message = str(refused.value)
    assert f'--out {tmp_path} is in use by another tools/test.py run' in message
    assert f'pid {os.getpid()}' in message and str(lock) in message, message
    assert 'tools/test.py A B --out x' in message
    first.release()
    assert not lock.exists()
    with ResultsDirLock(str(tmp_path)) as again:
        assert again.held
    assert not lock.exists()


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(tmp_path, logged):
    # what a SIGKILLed run leaves: the file, no flock (the kernel dropped it)
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps(dict(
        pid=dead.pid, host=os.uname().nodename, started='yesterday', command='killed run')))
    with ResultsDirLock(str(tmp_path)) as lock:
        assert lock.held
        assert json.loads((tmp_path / LOCK_NAME).read_text())['pid'] == os.getpid()
    (message, ) = logged
    assert f'taking over the lock file {tmp_path / LOCK_NAME}' in message, message
    assert f'pid {dead.pid}' in message and 'no longer running' in message, message


@pytest.mark.integration  # a second process
def test_a_lock_held_by_another_process(tmp_path):
    code = ('import sys, time; sys.path.insert(0, sys.argv[1]); '
            'from sera_mm.utils.results_dir import ResultsDirLock; '
            'lock = ResultsDirLock(sys.argv[2]).acquire(); print("held", flush=True); '
            'sys.stdin.readline(); lock.release()')
    holder = subprocess.Popen([sys.executable, '-c', code, REPO, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(ResultsDirBusyError, match=f'pid {holder.pid} '):
            ResultsDirLock(str(tmp_path)).acquire()
        holder.stdin.write('\n')
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert not osp.exists(tmp_path / LOCK_NAME)
    with ResultsDirLock(str(tmp_path)):
        pass


def test_lock_file_removed_between_open_and_flock_is_not_trusted(tmp_path, monkeypatch):
    """A lock taken on a file that its holder removed meanwhile locks
    nothing: acquire() notices (another inode) and locks the new file."""
    real_flock = results_dir.fcntl.flock
    calls = []

    def flock_after_removal(fd, op):
        if not calls:  # the first time: the holder ended and removed the file
            os.remove(tmp_path / LOCK_NAME)
        calls.append(op)
        return real_flock(fd, op)
    monkeypatch.setattr(results_dir.fcntl, 'flock', flock_after_removal)
    with ResultsDirLock(str(tmp_path)) as lock:
        assert lock.held and len(calls) == 2
        assert (tmp_path / LOCK_NAME).exists()
