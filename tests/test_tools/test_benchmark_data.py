"""tools/analysis_tools/benchmark_data.py at toy size (no timing assertions)."""
import json
import os.path as osp

from helpers.tool_runner import load_tool

REFCOCO_CONFIG = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'sera',
                          'sera_dinov2-b_refcoco.py')


def the_tool():
    return load_tool('analysis_tools/benchmark_data.py')


def test_index_counts_match_the_generated_set(tmp_path):
    tool = the_tool()
    res = tool.bench_index(str(tmp_path / 'idx'), repeats=2,
                           num_images=dict(train=6, val=3))
    counts = res['counts']
    assert res['train']['samples'] == counts['train']['refs']       # one per referent
    assert res['val']['samples'] == counts['val']['sentences']      # one per sentence
    assert len(res['train']['wall_s']) == len(res['train']['cpu_s']) == 2


def test_pipeline_times_every_transform_of_the_train_pipeline(tmp_path, capsys):
    tool = the_tool()
    out = tmp_path / 'bench.json'
    report = tool.main(['--config', REFCOCO_CONFIG, '--work-dir', str(tmp_path),
                        '--out', str(out), '--skip-index', '--num-images', '3',
                        '--image-size', '150', '170', '--passes', '1'])
    with open(out) as f:
        assert json.load(f) == json.loads(json.dumps(report))
    pipe = report['pipeline']
    assert pipe['input_size'] == [448, 448]
    for clock in ('cpu', 'wall'):
        assert list(pipe['steps'][clock]) == [
            'get_data_info', 'LoadImageFromFile', 'LoadReferringMask', 'Letterbox',
            'PackReferringInputs']
    lo, hi = pipe['image_sizes']['min'], pipe['image_sizes']['max']
    assert 150 <= min(lo) and max(hi) <= 170
    assert 'goal <= 10 ms' in capsys.readouterr().out
