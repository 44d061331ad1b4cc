"""Bad tool inputs, one row each: every one fails (or warns) early, with a
message that names the path, option, key, checkpoint or process at fault.

The rows run the tools' own code in this process (tools/test.py's ``main``
up to the point where the error must come, before any model or data set is
built); an integration test at the end trains until the loss turns NaN.
Data inputs: tests/test_datasets/test_bad_inputs.py; missing inputs of
tools/train.py: test_missing_inputs.py; the demo's inputs:
tests/test_apis/test_demo_tool.py.
"""
import errno
import os
import os.path as osp
import sys
import warnings
from typing import Callable, List, NamedTuple, Type, Union

import pytest
import torch

from helpers.tool_runner import TINY_CONFIG, data_options, load_tool


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


def _earlier_results(case) -> str:
    out = osp.join(case.tmp, 'out')
    os.makedirs(out)
    for name in ('test_results.md', 'per_sentence_val.jsonl', 'notes.txt'):
        open(osp.join(out, name), 'w').write('an earlier run')
    return out


def out_holds_earlier_results(case, monkeypatch):
    _test_tool(case, monkeypatch, '--out', _earlier_results(case))


def out_holds_earlier_results_and_force(case, monkeypatch):
    """--force passes the check: the next step is building the Runner."""
    _test_tool(case, monkeypatch, '--out', _earlier_results(case), '--force')


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
    'test --out holding an earlier run\'s results': Row(
        out_holds_earlier_results, FileExistsError,
        lambda c: _p('out')(c) + ['per_sentence_val.jsonl, test_results.md)', '--force']),
    'test --out holding earlier results, with --force': Row(
        out_holds_earlier_results_and_force, AssertionError,
        lambda c: ['built the Runner']),
    '--cfg-options of a key no run reads': Row(
        cfg_option_that_changes_nothing, ValueError,
        lambda c: ['max_epochs=1', "'max_epochs' is not a key of the config",
                   'train_cfg.max_epochs=1', 'sera-tiny_synthetic.py']),
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

@pytest.mark.integration  # trains the tiny config with the mmengine Runner
def test_a_nan_loss_stops_the_tiny_training_naming_the_last_checkpoint(
        synthetic_refer, tmp_path):
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from sera_mm import register_all_modules
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
    with pytest.raises(FloatingPointError) as info:
        runner.train()
    message = str(info.value)
    assert message.startswith('loss is nan at iteration 2: training stopped'), message
    last = osp.join(cfg.work_dir, 'iter_1.pth')
    assert f'The last checkpoint is {last}' in message, message
    assert sorted(n for n in os.listdir(cfg.work_dir) if n.endswith('.pth')) == ['iter_1.pth']
