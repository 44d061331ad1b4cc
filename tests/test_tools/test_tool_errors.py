"""Bad tool inputs, one row each: every one fails (or warns) early, with a
message that names the path, option, key, checkpoint or process at fault.

The rows run the tools' own code in this process (tools/test.py's ``main``
up to the point where the error must come, before any model or data set is
built); a few integration tests at the end run the tools as subprocesses
where only a whole run shows it: a NaN checkpoint tested to the end, a
second process refused by a held lock, a training whose loss turns NaN.
Data inputs: tests/test_datasets/test_bad_inputs.py; missing inputs of
tools/train.py: test_missing_inputs.py; the demo's inputs:
tests/test_apis/test_demo_tool.py.
"""
import errno
import json
import os
import os.path as osp
import sys
import warnings
from typing import Callable, List, NamedTuple, Type, Union

import pytest
import torch

from sera_mm.utils import results_dir
from sera_mm.utils.results_dir import LOCK_NAME, ResultsDirLock
from helpers.tool_runner import TINY_CONFIG, data_options, explain, load_tool, run_tool


class Case(NamedTuple):
    """What a row's ``act`` gets: the paths it may use."""
    tmp: str
    data_root: str
    config: str
    checkpoint: str


def _test_tool(case: Case, monkeypatch, *args: str, options=()) -> None:
    """tools/test.py's main() in this process with ``args``; the rows fail
    before the Runner is built."""
    import mmengine.runner
    tool = load_tool('test.py')

    def no_runner(*a, **k):
        raise AssertionError('tools/test.py built the Runner before the check')
    monkeypatch.setattr(tool.Runner, 'from_cfg', no_runner)
    monkeypatch.setattr(mmengine.runner.Runner, 'from_cfg', no_runner)
    monkeypatch.setenv('LOCAL_RANK', '0')
    argv = ['test.py', TINY_CONFIG, case.checkpoint, '--work-dir',
            osp.join(case.tmp, 'work'), *args, '--cfg-options',
            *data_options(case.data_root), *options]
    monkeypatch.setattr(sys, 'argv', argv)
    tool.main()


def out_is_a_file(case, monkeypatch):
    path = osp.join(case.tmp, 'results.txt')
    open(path, 'w').write('an earlier run')
    _test_tool(case, monkeypatch, '--out', path)


def out_is_a_pickle_name(case, monkeypatch):
    _test_tool(case, monkeypatch, '--out', osp.join(case.tmp, 'results.pkl'))


def out_is_not_writable(case, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(results_dir.tempfile, 'mkstemp', read_only)
    _test_tool(case, monkeypatch, '--out', osp.join(case.tmp, 'out'))


def out_held_by_another_run(case, monkeypatch):
    out = osp.join(case.tmp, 'out')
    os.makedirs(out)
    other = ResultsDirLock(out, command='tools/test.py (the other run)').acquire()
    try:
        _test_tool(case, monkeypatch, '--out', out)
    finally:
        other.release()


def work_dir_held_by_another_run(case, monkeypatch):
    """Without --out the table and records go to the work dir: locked too."""
    work = osp.join(case.tmp, 'work')
    os.makedirs(work)
    other = ResultsDirLock(work).acquire()
    try:
        _test_tool(case, monkeypatch)
    finally:
        other.release()


def cfg_option_that_changes_nothing(case, monkeypatch):
    _test_tool(case, monkeypatch, options=['max_epochs=1'])


def disk_full_writing_the_table(case, monkeypatch):
    from sera_mm.engine.runner.results_table import write_table
    from sera_mm.utils import atomic

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(atomic.os, 'fsync', full)
    write_table(osp.join(case.tmp, 'out'), {'val': {'mIoU': 50.0}}, {'val': 3})


def disk_full_writing_the_records(case, monkeypatch):
    from sera_mm.evaluation import RefSegMetric
    from sera_mm.utils import atomic

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(atomic.os, 'fsync', full)
    metric = RefSegMetric(output_dir=osp.join(case.tmp, 'out'), output_name='records.jsonl')
    metric.write_records([dict(ref_id=1, sent_id=2, text='x', img_path='a.jpg',
                               intersection=1, union=2, iou=0.5)])


def _demo():
    return load_tool('demo.py')


def demo_out_without_extension(case, monkeypatch):
    _demo().check_out(osp.join(case.tmp, 'overlay'), batch=False)


def demo_batch_file_not_utf8(case, monkeypatch):
    path = osp.join(case.tmp, 'pairs.tsv')
    with open(path, 'wb') as f:
        f.write('# image\tsentence\nimg.jpg\tle carré\n'.encode('cp1252'))
    _demo().read_batch_file(path)


def demo_caption_without_font(case, monkeypatch):
    from sera_mm.visualization import fonts
    monkeypatch.setattr(fonts, '_warned', set())
    monkeypatch.setattr(fonts, '_candidates', lambda: [])  # a machine with one font
    fonts.caption_font('左边的红色圆圈')


Words = Callable[[Case], List[str]]


class Row(NamedTuple):
    act: Callable[[Case, pytest.MonkeyPatch], None]
    error: Union[Type[BaseException], Type[Warning]]
    words: Words


def _p(*parts):
    return lambda case: [osp.join(case.tmp, *parts)]


ROWS = {
    'test --out names an existing file': Row(
        out_is_a_file, ValueError,
        lambda c: _p('results.txt')(c) + ['--out', 'existing file', 'names a folder']),
    'test --out looks like a file name': Row(
        out_is_a_pickle_name, ValueError,
        lambda c: _p('results.pkl')(c) + ['looks like a file name']),
    'test --out on a read-only file system': Row(
        out_is_not_writable, OSError,
        lambda c: _p('out')(c) + ['not writable', 'Read-only file system']),
    'test --out shared with a running test': Row(
        out_held_by_another_run, RuntimeError,
        lambda c: _p('out', LOCK_NAME)(c) + [
            f'pid {os.getpid()}', 'in use by another', 'the other run']),
    'test work dir shared with a running test': Row(
        work_dir_held_by_another_run, RuntimeError,
        lambda c: _p('work', LOCK_NAME)(c) + ['--work-dir', f'pid {os.getpid()}']),
    '--cfg-options of a variable already used': Row(
        cfg_option_that_changes_nothing, ValueError,
        lambda c: ['max_epochs=1', 'train_cfg.max_epochs', 'param_scheduler[1].end',
                   'detris-tiny_synthetic.py']),
    'disk full writing the results table': Row(
        disk_full_writing_the_table, OSError,
        lambda c: _p('out', 'test_results.json')(c) + [
            'disk or quota is full', 'No space left']),
    'disk full writing the per-sentence records': Row(
        disk_full_writing_the_records, OSError,
        lambda c: _p('out', 'records.jsonl')(c) + ['disk or quota is full']),
    'demo --out without an image extension': Row(
        demo_out_without_extension, ValueError,
        lambda c: _p('overlay')(c) + ['--out', 'no extension', '.png', '.jpg']),
    'demo batch file not UTF-8': Row(
        demo_batch_file_not_utf8, ValueError,
        lambda c: [osp.join(c.tmp, 'pairs.tsv') + ':2', 'not UTF-8', '0xe9']),
    'demo caption no installed font can draw': Row(
        demo_caption_without_font, UserWarning,
        lambda c: ["'左' (U+5DE6)", "'圈' (U+5708)", 'fonts-noto-cjk']),
}


@pytest.fixture
def case(tmp_path, synthetic_refer, tiny_model_files):
    _, checkpoint, _ = tiny_model_files
    return Case(str(tmp_path), synthetic_refer, TINY_CONFIG, checkpoint)


@pytest.mark.parametrize('name', list(ROWS))
def test_bad_tool_input(name, case, monkeypatch):
    row = ROWS[name]
    if issubclass(row.error, Warning):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            row.act(case, monkeypatch)
        found = [w for w in caught if issubclass(w.category, row.error)]
        assert found, f'{name}: no {row.error.__name__}'
        message = str(found[0].message)
    else:
        with pytest.raises(row.error) as info:
            row.act(case, monkeypatch)
        message = str(info.value)
    for word in row.words(case):
        assert word in message, f'{name}: {word!r} not in: {message}'
    assert not [n for _, _, files in os.walk(case.tmp) for n in files
                if n.endswith('.tmp')], 'a half-written file was left'


# -- whole runs ---------------------------------------------------------------

def _poisoned(checkpoint: str, path: str, key_part: str = 'decode_head') -> str:
    """A copy of ``checkpoint`` with one weight of the head set to NaN."""
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=True)
    key = next(k for k, v in ckpt['state_dict'].items()
               if key_part in k and v.is_floating_point() and v.dim() > 1)
    ckpt['state_dict'][key] = torch.full_like(ckpt['state_dict'][key], float('nan'))
    torch.save(ckpt, path)
    return key


@pytest.mark.integration
def test_test_tool_warns_of_a_nan_checkpoint_by_name(tiny_model_files, tmp_path):
    _, checkpoint, data_root = tiny_model_files
    bad = str(tmp_path / 'nan.pth')
    key = _poisoned(checkpoint, bad)
    out = tmp_path / 'out'
    proc = run_tool('test.py', [TINY_CONFIG, bad, '--work-dir', str(tmp_path / 'work'),
                                '--out', str(out), '--splits', 'val'],
                    data_options(data_root))
    assert proc.returncode == 0, explain(proc)
    lines = proc.output.splitlines()
    weights = [line for line in lines if 'weight tensors hold NaN or Inf' in line]
    assert weights and f'checkpoint {bad}' in weights[0] and key in weights[0], explain(proc)
    logits = [line for line in lines if 'NaN or Inf mask logits' in line]
    assert logits and 'test split val' in logits[0] and bad in logits[0], explain(proc)
    # the weights were checked before the first batch
    assert proc.output.index('weight tensors hold NaN') < proc.output.index('Epoch(test)')
    with open(out / 'test_results.json') as f:
        assert json.load(f)['splits']['val']['mIoU'] < 100
    assert not (out / LOCK_NAME).exists()  # released at the end


@pytest.mark.integration
def test_a_second_test_run_on_the_same_out_stops_at_once(tiny_model_files, tmp_path):
    """Two processes: this one holds --out as a running test would."""
    _, checkpoint, data_root = tiny_model_files
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'per_sentence_val.jsonl').write_text('{"key": "1/1"}\n')
    with ResultsDirLock(str(out), command='the first run'):
        proc = run_tool('test.py', [TINY_CONFIG, checkpoint, '--work-dir',
                                    str(tmp_path / 'work'), '--out', str(out)],
                        data_options(data_root))
    assert proc.returncode != 0, explain(proc)
    assert 'ResultsDirBusyError' in proc.output, explain(proc)
    assert str(out / LOCK_NAME) in proc.output and f'pid {os.getpid()}' in proc.output
    assert 'the first run' in proc.output and 'Epoch(test)' not in proc.output
    assert (out / 'per_sentence_val.jsonl').read_text() == '{"key": "1/1"}\n'


@pytest.mark.integration  # trains the tiny config with the mmengine Runner
def test_a_nan_loss_stops_the_tiny_training_naming_the_last_checkpoint(
        synthetic_refer, tmp_path):
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from sera_mm import register_all_modules
    from sera_mm.engine.hooks.finite_check_hook import NonFiniteLossError
    from sera_mm.utils.config import load_config

    class PoisonAfterFirstStep(Hook):
        """What a diverged step does: a weight becomes NaN (after the
        checkpoint of iteration 1 is saved)."""
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if runner.iter == 0:
                with torch.no_grad():
                    for weight in runner.model.decode_head.parameters():
                        weight.fill_(float('nan'))

    register_all_modules()
    options = {}
    for item in data_options(synthetic_refer):
        key, value = item.split('=', 1)
        options[key] = {'0': 0, 'False': False}.get(value, value)
    options.update({'train_dataloader.batch_size': 2, 'train_cfg.max_epochs': 1,
                    'default_hooks.checkpoint.by_epoch': False,
                    'default_hooks.checkpoint.interval': 1,
                    'default_hooks.checkpoint.save_best': None,
                    'default_hooks.logger.interval': 1})
    cfg = load_config(TINY_CONFIG, options)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.register_hook(PoisonAfterFirstStep())
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    assert message.startswith('loss is NaN at iteration 2 (epoch 1, 2 of '), message
    last = osp.join(cfg.work_dir, 'iter_1.pth')
    assert f'the last good checkpoint is {last}' in message, message
    assert sorted(n for n in os.listdir(cfg.work_dir) if n.endswith('.pth')) == ['iter_1.pth']
