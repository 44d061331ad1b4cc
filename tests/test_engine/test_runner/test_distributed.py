"""Two processes on CPU (torchrun + gloo): training, resuming, testing.

The shell launchers are run as a user runs them, on the tiny synthetic
config and the ``synthetic_refer`` fixture, each on a free port.
"""
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys
from typing import List, Sequence

import pytest

from sera_mm.datasets.refer_pickle import load_refer_pickle
from sera_mm.engine.runner import COLUMNS, TABLE_JSON, TABLE_MD
from helpers.paths import REPO

#: Every test here starts tools/*.py under torchrun or in a subprocess.
pytestmark = pytest.mark.integration
CONFIG = 'configs/synthetic/sera-tiny_synthetic.py'
SPLITS = ('val', 'testA', 'testB')
TIMEOUT_S = 400
#: 28 training referents of the fixture, batches of 4: 7 iterations per
#: epoch in one process, 4 per rank in two (the sampler pads 28 to 28).
ITERS_ONE, ITERS_TWO = 7, 4


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def data_options(root: str) -> List[str]:
    """Every loader on ``root``, in the main process; test batches of 1, so
    that each prediction is computed alike in one and in two processes."""
    opts = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [f'{loader}.dataset.data_root={root}/', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    return opts + ['train_dataloader.batch_size=4', 'train_dataloader.drop_last=False',
                   'test_dataloader.batch_size=1',
                   'default_hooks.logger.interval=1']


def run(cmd: Sequence[str], cwd: str) -> subprocess.CompletedProcess:
    """Runs a tool command; ``.output`` holds stdout and stderr."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PORT=str(free_port()))
    # dist_*.sh call `python`: the venv's
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, env.get('PYTHONPATH')) if p)
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT_S)
    proc.output = proc.stdout
    return proc


def explain(proc: subprocess.CompletedProcess) -> str:
    return (f'command: {" ".join(proc.args)}\nexit code: {proc.returncode}\n'
            f'--- output (end) ---\n{proc.output[-6000:]}')


@pytest.fixture(scope='module')
def dist_trained(synthetic_refer, tmp_path_factory):
    """One epoch of the tiny config trained by two processes."""
    work = str(tmp_path_factory.mktemp('dist_train'))
    proc = run(['bash', osp.join(REPO, 'tools', 'dist_train.sh'),
                osp.join(REPO, CONFIG), '2', '--work-dir', work, '--cfg-options',
                *data_options(synthetic_refer), 'train_cfg.max_epochs=1'], cwd=work)
    assert proc.returncode == 0, explain(proc)
    return work, proc.output


def test_two_process_training_resumes_in_one_process(dist_trained,
                                                     synthetic_refer):
    work, output = dist_trained
    # each rank ran half of the epoch's batches
    assert f'Epoch(train) [1][{ITERS_TWO}/{ITERS_TWO}]' in output, output[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'epoch_1.pth')
    # no temporary file is left by the (atomic) checkpoint writes
    assert not [n for n in os.listdir(work) if n.endswith('.tmp')]

    proc = run([sys.executable, osp.join(REPO, 'tools', 'train.py'),
                osp.join(REPO, CONFIG), '--resume', '--work-dir', work,
                '--cfg-options', *data_options(synthetic_refer),
                'train_cfg.max_epochs=2'], cwd=work)
    assert proc.returncode == 0, explain(proc)
    assert f'resumed epoch: 1, iter: {ITERS_TWO}' in proc.output, explain(proc)
    assert 'Epoch(train) [1]' not in proc.output
    assert f'Epoch(train) [2][{ITERS_ONE}/{ITERS_ONE}]' in proc.output
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))


def _expected_sentences(root: str, split: str) -> set:
    refs = load_refer_pickle(osp.join(root, 'refsyn', 'refs(unc).p'))
    return {f"{r['ref_id']}/{s['sent_id']}" for r in refs
            if r['split'] == split for s in r['sentences']}


def _records(path: str) -> List[dict]:
    with open(path, encoding='utf-8') as f:
        return [json.loads(line) for line in f if line.strip()]


def test_two_process_test_equals_one_process(dist_trained, synthetic_refer,
                                             tmp_path):
    work, _ = dist_trained
    ckpt = osp.join(work, 'epoch_1.pth')
    two, one = str(tmp_path / 'two'), str(tmp_path / 'one')
    # two processes, splits from the command line
    proc = run(['bash', osp.join(REPO, 'tools', 'dist_test.sh'),
                osp.join(REPO, CONFIG), ckpt, '2', '--work-dir', two,
                '--splits', *SPLITS, '--cfg-options', *data_options(synthetic_refer)],
               cwd=str(tmp_path))
    assert proc.returncode == 0, explain(proc)
    # one process, splits from the config key
    proc1 = run([sys.executable, osp.join(REPO, 'tools', 'test.py'),
                 osp.join(REPO, CONFIG), ckpt, '--work-dir', one, '--cfg-options',
                 *data_options(synthetic_refer),
                 'test_cfg.splits=[' + ','.join(SPLITS) + ']'],
                cwd=str(tmp_path))
    assert proc1.returncode == 0, explain(proc1)

    # one printed table, a row per split
    for p in (proc, proc1):
        table = p.output[p.output.index('Test results (3 splits)'):]
        for split in SPLITS:
            assert re.search(rf'\|\s+{split}\s+\|', table), table[:2000]

    results = {}
    for name, out in (('two', two), ('one', one)):
        with open(osp.join(out, TABLE_JSON)) as f:
            results[name] = json.load(f)['splits']
        with open(osp.join(out, TABLE_MD)) as f:
            md = f.read()
        assert md.splitlines()[0] == '| split | sentences | ' + ' | '.join(COLUMNS) + ' |'
        assert [line.split('|')[1].strip() for line in md.splitlines()[2:]] == list(SPLITS)
        assert not [n for n in os.listdir(out) if n.endswith('.tmp')]
    assert list(results['two']) == list(SPLITS)

    padded = False
    for split in SPLITS:
        expected = _expected_sentences(synthetic_refer, split)
        padded |= len(expected) % 2 == 1  # the sampler pads this split
        per_split = {}
        for name, out in (('two', two), ('one', one)):
            records = _records(osp.join(out, f'per_sentence_{split}.jsonl'))
            keys = [r['key'] for r in records]
            # every sentence exactly once: no padding duplicate, none missing
            assert len(keys) == len(set(keys)) == len(expected), (name, split)
            assert set(keys) == expected, (name, split)
            assert results[name][split]['sentences'] == len(expected)
            per_split[name] = {r['key']: (r['intersection'], r['union'])
                               for r in records}
        assert per_split['two'] == per_split['one'], split
        for column in COLUMNS:
            assert results['two'][split][column] == pytest.approx(
                results['one'][split][column], abs=1e-6), (split, column)
        # the table holds what the records give
        ious = [i / u if u else 1.0 for i, u in per_split['one'].values()]
        assert results['one'][split]['mIoU'] == pytest.approx(
            100 * sum(ious) / len(ious), abs=1e-9)
    assert padded, 'no split has an odd sentence count: padding untested'
