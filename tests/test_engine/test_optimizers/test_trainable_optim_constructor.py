"""TrainableOptimWrapperConstructor hands exactly the trainable parameters over."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

import sera_mm.engine  # noqa: F401  (registers the constructor)

BASE_LR, BASE_WD = 1e-3, 1e-2


class PartlyFrozen(nn.Module):
    """A frozen encoder, a BitFit-style layer (bias only), a trainable head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.bitfit = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)
        self.norm = nn.BatchNorm1d(2)
        self.encoder.requires_grad_(False)
        self.bitfit.weight.requires_grad_(False)


def build(model: nn.Module, paramwise_cfg=None):
    cfg = dict(type='OptimWrapper', constructor='TrainableOptimWrapperConstructor',
               optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD))
    if paramwise_cfg is not None:
        cfg['paramwise_cfg'] = paramwise_cfg
    with DefaultScope.overwrite_default_scope('sera_mm'):
        return build_optim_wrapper(model, cfg)


def held_params(optim_wrapper) -> list:
    return [p for g in optim_wrapper.optimizer.param_groups for p in g['params']]


def group_of(optim_wrapper, param: torch.Tensor) -> dict:
    groups = [g for g in optim_wrapper.optimizer.param_groups
              if any(p is param for p in g['params'])]
    assert len(groups) == 1
    return groups[0]


PARAMWISE = {
    'no_paramwise_cfg': None,
    # a custom key that matches only frozen parameters must not bring them in
    'paramwise_cfg': dict(norm_decay_mult=0., bias_decay_mult=0.5,
                          custom_keys={'head': dict(lr_mult=0.1),
                                       'encoder': dict(lr_mult=0.5)}),
}


@pytest.mark.parametrize('wrap', [False, True], ids=['plain', 'wrapped'])
@pytest.mark.parametrize('paramwise', PARAMWISE.values(), ids=PARAMWISE.keys())
def test_optimizer_holds_exactly_trainable_params(paramwise, wrap):
    model = PartlyFrozen()
    # a DataParallel-style wrapper (.module), as the Runner may hand over
    target = nn.DataParallel(model) if wrap else model
    optim_wrapper = build(target, paramwise)
    held = held_params(optim_wrapper)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(held) == len({id(p) for p in held}), 'a parameter is held twice'
    assert {id(p) for p in held} == {id(p) for p in trainable}
    # bitfit.bias, head.weight, head.bias, norm.weight, norm.bias
    assert len(held) == 5
    assert type(optim_wrapper.optimizer).__name__ == 'AdamW'


def test_paramwise_cfg_semantics_are_kept():
    model = PartlyFrozen()
    optim_wrapper = build(model, PARAMWISE['paramwise_cfg'])
    assert group_of(optim_wrapper, model.head.weight)['lr'] == pytest.approx(0.1 * BASE_LR)
    assert group_of(optim_wrapper, model.head.weight)['weight_decay'] == BASE_WD
    assert group_of(optim_wrapper, model.norm.weight)['weight_decay'] == 0.
    assert group_of(optim_wrapper, model.bitfit.bias)['weight_decay'] == 0.5 * BASE_WD
    assert group_of(optim_wrapper, model.bitfit.bias)['lr'] == BASE_LR


def test_frozen_params_are_untouched_by_a_step():
    torch.manual_seed(0)
    model = PartlyFrozen()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optim_wrapper = build(model)
    x = torch.randn(4, 4)
    loss = model.norm(model.head(model.bitfit(model.encoder(x)))).square().mean()
    optim_wrapper.update_params(loss)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert len(optim_wrapper.optimizer.state) == 5
