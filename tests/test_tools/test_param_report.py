"""tools/analysis_tools/param_report.py on hand-made modules with known counts."""
import json

import pytest
import torch
from torch import nn

from helpers.tool_runner import load_tool

_tool = load_tool('analysis_tools/param_report.py')
param_report, format_param_report = _tool.param_report, _tool.format_param_report


class ToyBackbone(nn.Module):
    """A ViT-like toy: own tokens, two layers, adapters."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))  # 4
        self.layers = nn.ModuleList(
            [nn.Linear(4, 4) for _ in range(2)])  # 2 x (16 + 4) = 40
        self.adapters = nn.ModuleList(
            [nn.Linear(4, 2, bias=False) for _ in range(2)])  # 2 x 8 = 16
        self.norm = nn.LayerNorm(4)  # 8


class ToyModel(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))  # 1, trainable
        self.backbone = ToyBackbone()
        self.neck = nn.Conv2d(4, 3, 1)  # 12 + 3 = 15
        self.head = nn.Linear(3, 1)  # 4
        self.tied = nn.Linear(3, 1)
        self.tied.weight = self.head.weight  # shared: 3 counted once in total
        self.empty = nn.Identity()
        # PET-style freezing: backbone frozen except biases, norm, adapters.
        for name, p in self.backbone.named_parameters():
            p.requires_grad = name.endswith('bias') or \
                name.startswith(('norm', 'adapters'))
        self.neck.weight.requires_grad = False


def rows_by_name(rows):
    return {r['name']: r for r in rows}


def test_known_counts():
    rows = param_report(ToyModel())
    names = [r['name'] for r in rows]
    assert names == [
        '(own)', 'backbone', 'backbone.(own)', 'backbone.layers',
        'backbone.adapters', 'backbone.norm', 'neck', 'head', 'tied', 'empty',
        'total'
    ]
    by = rows_by_name(rows)
    expected = {
        '(own)': (1, 1),
        'backbone': (8 + 16 + 8, 68),
        'backbone.(own)': (0, 4),
        'backbone.layers': (8, 40),
        'backbone.adapters': (16, 16),
        'backbone.norm': (8, 8),
        'neck': (3, 15),
        'head': (4, 4),
        'tied': (4, 4),
        'empty': (0, 0),
        # 1 + 68 + 15 + 4 + 1 (tied's own bias; its weight is head's)
        'total': (1 + 32 + 3 + 4 + 1, 89),
    }
    for name, (trainable, total) in expected.items():
        assert (by[name]['trainable'], by[name]['total']) == \
            (trainable, total), name
    assert by['backbone']['trainable_share'] == pytest.approx(32 / 68)
    assert by['empty']['trainable_share'] == 0.0
    assert by['total']['total'] == sum(p.numel()
                                       for p in ToyModel().parameters())
    assert [r['depth'] for r in rows if r['name'].startswith('backbone.')] \
        == [1, 1, 1, 1]
    json.dumps(rows)  # rows are plain JSON


def test_expand_names_and_leaf_modules():
    model = ToyModel()
    rows = param_report(model, expand=('neck', 'missing'))
    names = [r['name'] for r in rows]
    assert 'backbone.layers' not in names
    # A leaf module lists its parameters.
    by = rows_by_name(rows)
    assert (by['neck.weight']['trainable'], by['neck.weight']['total']) == \
        (0, 12)
    assert (by['neck.bias']['trainable'], by['neck.bias']['total']) == (3, 3)


def test_format_table():
    text = format_param_report(param_report(ToyModel()))
    assert '  backbone.adapters' in text
    assert '47.06' in text  # backbone trainable share, 32 / 68
