"""DETRIS-B and SERA-B at 448 with random weights in the official layouts,
exported and run by ONNX Runtime: the same logits as PyTorch (<= 1e-4), the
same Top-k choices and masks. Slow (a few minutes each on two cores): marked
``slow``, which ``make test`` deselects; run them with
``python -m pytest tests/test_tools/test_export_onnx_full.py -m slow``."""
import pytest
import torch

from helpers.dinov2_official_layout import save_official_dinov2
from helpers.tool_runner import load_tool
from sera_mm.apis import init_model

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')

exporter = load_tool('deployment/export_onnx.py')


@pytest.mark.slow
@pytest.mark.parametrize('config, routers', [
    ('configs/detris/detris_dinov2-b_refcoco.py', 0),
    ('configs/sera/sera_dinov2-b_refcoco.py', 9),  # 3 SERA-Fusion levels, 6 SERA-Adapters
])
def test_full_size_export_matches_pytorch(config, routers, tmp_path):
    torch.manual_seed(0)
    model = init_model(config, None)  # the text tower and adapters as their constructors draw them
    # DINOv2 ViT-B/14 reg4 from a random file in the official key layout,
    # through the backbone's own loader (LayerScale 0.1-0.6, unit-scale positions)
    model.backbone.load_pretrained(save_official_dinov2(str(tmp_path / 'dinov2.pth'), 'base'))
    model.eval()
    onnx_file = str(tmp_path / 'model.onnx')
    names = exporter.export(model, onnx_file, config=config)
    assert len(model.router_experts()) == routers
    assert len([n for n in names if n.endswith('.weights')]) == routers
    report = exporter.check(model, onnx_file)
    assert report['max_abs_diff']['mask_logits'] <= 1e-4, report
    assert max(report['max_abs_diff'].values()) <= 1e-4, report
    assert report['indices_equal'] and report['mask_pixels_differing'] == 0, report
