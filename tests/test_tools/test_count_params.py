"""tools/analysis_tools/count_params.py on a toy registered model."""
import json

from torch import nn

from sera_mm.registry import MODELS
from helpers.tool_runner import load_tool


@MODELS.register_module(name='ToyParamCountModel', force=True)
class ToyParamCountModel(nn.Module):

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(width, width),
                                      nn.Linear(width, 2))
        self.head = nn.Linear(2, 1)
        self.backbone[0].weight.requires_grad = False


def test_count_params_tool(tmp_path, capsys):
    cfg = tmp_path / 'toy_cfg.py'
    cfg.write_text("model = dict(type='ToyParamCountModel', width=4)\n")
    out = tmp_path / 'out' / 'params.json'
    rows = load_tool('analysis_tools/count_params.py').main(
        [str(cfg), '--cfg-options', 'model.width=8', '--json', str(out)])
    by = {r['name']: r for r in rows}
    # width 8: Linear(8, 8) = 72 (64 frozen), Linear(8, 2) = 18, head 3.
    assert (by['backbone.0']['trainable'], by['backbone.0']['total']) == \
        (8, 72)
    assert (by['backbone.1']['trainable'], by['backbone.1']['total']) == \
        (18, 18)
    assert (by['total']['trainable'], by['total']['total']) == (29, 93)
    with open(out) as f:
        assert json.load(f) == rows
    printed = capsys.readouterr().out
    assert '  backbone.1' in printed and 'ToyParamCountModel' in printed
