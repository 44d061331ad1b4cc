"""The benchmark's ONNX leg (``--onnx``): PyTorch eager and ONNX Runtime
timed side by side on the tiny DETRIS; no timing assertions."""
import json

import pytest

from helpers.tool_runner import load_tool

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

bm = load_tool('analysis_tools/benchmark.py')
TINY = 'configs/synthetic/detris-tiny_synthetic.py'


def test_onnx_leg_times_both_backends_in_one_run(tmp_path):
    out = tmp_path / 'onnx.json'
    report = bm.main([TINY, '--names', 'detris-tiny', '--onnx', str(tmp_path / 'onnx'),
                      '--batch-size', '1', '--img-size', '112', '--repeats', '3',
                      '--warmup', '1', '--json', str(out)])
    assert (tmp_path / 'onnx' / 'detris-tiny.onnx').is_file()
    (result, ) = report['results']
    assert result['name'] == 'detris-tiny'
    for backend in ('eager', 'onnxruntime'):
        assert len(result[backend]['times_ms']) == 3  # warm-up not recorded
        assert result[backend]['median_ms'] > 0
    ratio = result['ratio']
    assert ratio['ratio'] == pytest.approx(
        result['onnxruntime']['median_ms'] / result['eager']['median_ms'])
    assert min(ratio['paired_ratio_q25'], ratio['paired_ratio']) == ratio['paired_ratio_q25']
    assert result['max_abs_diff'] <= 1e-4  # the same logits on the benchmark batch
    settings = report['settings']
    assert settings['batch_size'] == 1 and settings['input_shape'] == [3, 112, 112]
    assert settings['forward_mode'] == 'tensor' and settings['repeats'] == 3
    assert json.loads(out.read_text())['results'][0]['name'] == 'detris-tiny'


@pytest.mark.parametrize('extra', [['--amp'], ['--device', 'cuda'], ['--detris-root', 'x']])
def test_onnx_leg_refuses_other_modes(extra, capsys):
    with pytest.raises(SystemExit):
        bm.parse_args([TINY, '--onnx', 'out'] + extra)
    assert '--onnx times the configs on the CPU in float32' in capsys.readouterr().err
