"""An optimizer wrapper constructor that hands only trainable parameters over."""
from typing import List

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

from sera_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """:class:`DefaultOptimWrapperConstructor` that skips frozen parameters.

    mmengine's default constructor puts every parameter into the optimizer,
    frozen ones included: with frozen encoders most of the model, which the
    optimizer's state dict and per-step loops then cover for nothing. This
    one keeps the ``paramwise_cfg`` semantics and drops parameters with
    ``requires_grad=False``.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Called by the Runner; returns the optimizer wrapper of ``model``."""
        if self.paramwise_cfg:
            return super().__call__(model)
        model = getattr(model, 'module', model)  # unwrap DDP
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cfg['params'] = [p for p in model.parameters() if p.requires_grad]
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        """Called by ``__call__`` with a ``paramwise_cfg``; appends the param
        groups of the trainable parameters of ``module`` to ``params``."""
        before = len(params)
        super().add_params(params, module, prefix, is_dcn_module)
        # the parent appends one group per parameter, trainable or not
        params[before:] = [g for g in params[before:]
                           if all(p.requires_grad for p in g['params'])]
