"""tools/analysis_tools/run_ablations.py: the epoch budget of the derived
configs, the seed statistics, and one real two-config ladder at toy size."""
import json
import os
import os.path as osp

import pytest
from mmengine.config import Config

from helpers.tool_runner import REPO, TINY_CONFIG, data_options, load_tool

BASELINE = 'configs/synthetic/detris-tiny_synthetic.py'


def the_tool():
    return load_tool('analysis_tools/run_ablations.py')


def test_epoch_budget_moves_everything_tied_to_the_old_budget(tmp_path):
    tool = the_tool()
    path = tool.write_run_config(osp.join(REPO, BASELINE), seed=7, max_epochs=3,
                                 cfg_options=None, out_dir=str(tmp_path))
    cfg = Config.fromfile(path)
    assert osp.basename(path) == 'detris-tiny_synthetic_e3_seed7.py'
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.train_cfg.val_interval == 3
    assert cfg.default_hooks.checkpoint.interval == 3
    warmup, cosine = cfg.param_scheduler
    assert (warmup.by_epoch, warmup.end) == (False, 100)    # iteration-based: kept
    assert (cosine.by_epoch, cosine.end) == (True, 3)
    assert cfg.randomness.seed == 7
    # nothing else changed: the model is the baseline's
    assert cfg.model.backbone.adapter_cfg.type == 'DenseAligner'
    assert cfg.model.neck.get('fusion_cfg') is None


def test_epoch_budget_without_epochs_is_refused():
    tool = the_tool()
    cfg = Config(dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=10)))
    with pytest.raises(ValueError, match='max_epochs'):
        tool.set_epoch_budget(cfg, 2)


def _record(config, seed, miou, oiou):
    return dict(config=config, seed=seed, train_seconds=120.0, results=dict(splits=dict(
        val=dict(mIoU=miou, oIoU=oiou), testA=dict(mIoU=miou - 1, oIoU=oiou - 1))))


def test_aggregate_gives_mean_and_half_range_per_config_and_split():
    tool = the_tool()
    # in the order the runs finished, not by seed
    records = [_record('a.py', 1, 52.0, 44.0), _record('b.py', 0, 47.0, 41.0),
               _record('a.py', 0, 50.0, 40.0), _record('b.py', 1, 48.0, 40.0)]
    table = tool.aggregate(records, ['a.py', 'b.py'])
    assert table['splits'] == ['val', 'testA']
    a, b = table['rows']
    assert a['config'] == 'a.py' and a['seeds'] == [0, 1]
    assert a['metrics']['val']['mIoU'] == dict(mean=51.0, spread=1.0, values=[50.0, 52.0])
    assert a['metrics']['val']['oIoU']['mean'] == 42.0
    assert a['metrics']['testA']['mIoU']['mean'] == 50.0
    assert b['metrics']['val']['mIoU']['spread'] == 0.5
    assert a['delta_first_split_mIoU'] == 0.0
    assert b['delta_first_split_mIoU'] == -3.5
    assert a['train_minutes'] == 2.0
    md = tool.format_markdown(table)
    assert '| a | 0,1 | 51.00 ± 1.00 | 42.00 ± 2.00 | 50.00 ± 1.00 |' in md
    assert '| -3.50 |' in md


def test_aggregate_of_nothing_is_an_error():
    with pytest.raises(ValueError, match='no finished runs'):
        the_tool().aggregate([], ['a.py'])


@pytest.mark.integration
def test_ladder_trains_tests_and_tabulates_then_reuses_finished_runs(
        synthetic_refer, tmp_path, capsys):
    tool = the_tool()
    work = str(tmp_path / 'ablations')
    options = data_options(synthetic_refer) + ['train_dataloader.batch_size=8']
    argv = [TINY_CONFIG, BASELINE, '--work-dir', work, '--seeds', '3', '--max-epochs', '1',
            '--splits', 'val', '--jobs', '2', '--threads-per-job', '1',
            '--cfg-options', *options]
    cwd = os.getcwd()
    os.chdir(REPO)   # the config paths are relative to the repository
    try:
        assert tool.main(argv) == 0
        with open(osp.join(work, 'ablation_results.json')) as f:
            table = json.load(f)
        assert [row['config'] for row in table['rows']] == [TINY_CONFIG, BASELINE]
        assert table['splits'] == ['val']
        for row in table['rows']:
            run = osp.join(work, tool.config_name(row['config']), 'seed3')
            with open(osp.join(run, 'test', 'test_results.json')) as f:
                result = json.load(f)['splits']['val']
            assert row['metrics']['val']['mIoU']['values'] == [result['mIoU']]
            assert row['metrics']['val']['oIoU']['spread'] == 0.0
            assert osp.isfile(osp.join(run, 'epoch_1.pth'))
            derived = Config.fromfile(osp.join(
                work, 'configs', f"{tool.config_name(row['config'])}_e1_seed3.py"))
            assert derived.train_cfg.max_epochs == 1 and derived.randomness.seed == 3
        md = open(osp.join(work, 'ablation_results.md')).read()
        assert md == tool.format_markdown(table) and 'detris-tiny_synthetic' in md

        # a second call finds the results and trains nothing
        ckpt = osp.join(work, 'detris-tiny_synthetic', 'seed3', 'epoch_1.pth')
        stamp = os.stat(ckpt).st_mtime_ns
        assert tool.main(argv) == 0
        assert os.stat(ckpt).st_mtime_ns == stamp
        with open(osp.join(work, 'ablation_results.json')) as f:
            assert json.load(f)['rows'] == table['rows']
    finally:
        os.chdir(cwd)


def test_missing_config_is_named(tmp_path, capsys):
    tool = the_tool()
    assert tool.main(['configs/nope.py', '--work-dir', str(tmp_path)]) == 2
    assert 'configs/nope.py' in capsys.readouterr().err


def test_table_only_without_runs_says_so(tmp_path, capsys):
    tool = the_tool()
    argv = [osp.join(REPO, BASELINE), '--work-dir', str(tmp_path), '--table-only']
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert 'no finished runs' in err and str(tmp_path) in err
