"""MoE regularisation of SERA-Fusion's routers (docs/en/method.md, s. 4)."""
from typing import Dict, Sequence, Union

import torch
import torch.nn as nn
from torch import Tensor

from sera_mm.registry import MODELS
from ..utils import RoutingResult


def cv_squared(v: Tensor, eps: float = 1e-9) -> Tensor:
    """Squared coefficient of variation of a vector, ``(std / (mean + eps))^2``.

    The standard deviation is the population one (divides by E, not E - 1),
    so a perfectly balanced vector gives exactly 0. Computed as
    ``var / (mean + eps)^2``: no square root, so the gradient stays finite
    at balance.
    """
    return v.var(correction=0) / (v.mean() + eps).pow(2)


def hard_fraction(routing: RoutingResult) -> Tensor:
    """Share of samples that selected each expert, E.

    Top-k routing: the fraction of samples with e among their k experts
    (sums to k). Soft routing (no indices): the fraction whose largest
    weight is e (sums to 1).
    """
    indices = routing.indices
    if indices is None:
        indices = routing.weights.argmax(dim=1, keepdim=True)
    chosen = torch.zeros_like(routing.weights).scatter(1, indices, 1.)
    return chosen.mean(dim=0)


@MODELS.register_module()
class MoERegularizationLoss(nn.Module):
    """``L_moe = sum over routers of lambda_z L_z + lambda_imp L_imp + lambda_load L_load``.

    Per router (logits h and sparse weights w, both B x E):
    ``L_z = mean(h^2)``; ``L_imp = CV(sum_b w_b)^2``;
    ``L_load = CV(sum_b q_b)^2`` (see :func:`cv_squared`), where ``q`` is,
    by ``load``:

    - ``'noisy_topk'``: the routing's ``select_prob``
      (:func:`~sera_mm.models.routers.selection_probability`, Shazeer et
      al.'s estimator), so that ``sum_b q_b`` is a differentiable count of
      the samples assigned to each expert (the SERA paper's "fraction of
      samples assigned"; the SERA configs' choice);
    - ``'soft_mass'``: ``softmax(h)``, the routing mass of the clean logits.

    Args:
        lambda_z (float): Weight of the z-loss. Defaults to 1e-3.
        lambda_importance (float): Weight of the importance loss. Defaults
            to 1e-2.
        lambda_load (float): Weight of the load loss. Defaults to 1e-2.
        load (str): What the load loss balances, ``'soft_mass'`` or
            ``'noisy_topk'`` (see above). Defaults to ``'soft_mass'``.
        eps (float): Added to the mean in CV. Defaults to 1e-9.
        loss_weight (float): Multiplies the total. Defaults to 1.0.
        loss_name (str): Key of the total; must contain 'loss'. Defaults to
            'loss_moe'.
    """

    LOADS = ('soft_mass', 'noisy_topk')

    def __init__(self,
                 lambda_z: float = 1e-3,
                 lambda_importance: float = 1e-2,
                 lambda_load: float = 1e-2,
                 load: str = 'soft_mass',
                 eps: float = 1e-9,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_moe') -> None:
        super().__init__()
        if 'loss' not in loss_name:
            raise ValueError(f"MoERegularizationLoss: loss_name={loss_name!r} must contain "
                             "'loss', or mmengine will not add it to the total loss")
        if load not in self.LOADS:
            raise ValueError(f'MoERegularizationLoss: load={load!r} is not one of {self.LOADS}')
        self.load = load
        self.lambda_z = lambda_z
        self.lambda_importance = lambda_importance
        self.lambda_load = lambda_load
        self.eps = eps
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    @property
    def loss_name(self) -> str:
        """Key of the total loss in the returned dict."""
        return self._loss_name

    def forward(self, routings: Union[RoutingResult, Sequence[RoutingResult]]
                ) -> Dict[str, Tensor]:
        """Computes the loss of one training batch; called by the segmentor.

        Args:
            routings: The RoutingResult of every SERA-Fusion module (or one).

        Returns:
            dict: The weighted total under :attr:`loss_name` and, detached
            and without 'loss' in their keys (logged only), the unweighted
            terms summed over routers (``moe_z``, ``moe_importance``,
            ``moe_load``) and :func:`hard_fraction` per expert averaged over
            routers (``moe_frac_e{i}``).
        """
        if isinstance(routings, RoutingResult):
            routings = [routings]
        if len(routings) == 0:
            raise ValueError('MoERegularizationLoss: `routings` is empty')
        num_experts = routings[0].logits.size(1)
        total = z_sum = imp_sum = load_sum = 0
        fractions = 0
        for i, routing in enumerate(routings):
            # float32 under autocast too (a no-op in float32): squares,
            # softmax and variances of logits are not taken in bf16/fp16
            logits, weights = routing.logits.float(), routing.weights.float()
            if logits.dim() != 2 or logits.shape != weights.shape or \
                    logits.size(1) != num_experts:
                raise ValueError(
                    f'MoERegularizationLoss: routings[{i}] needs logits and weights of '
                    f'B x {num_experts}, got {tuple(logits.shape)} and {tuple(weights.shape)}')
            l_z = logits.pow(2).mean()
            l_imp = cv_squared(weights.sum(dim=0), self.eps)
            l_load = cv_squared(self._load_terms(i, routing, logits).sum(dim=0), self.eps)
            total = total + self.lambda_z * l_z + self.lambda_importance * l_imp \
                + self.lambda_load * l_load
            z_sum, imp_sum, load_sum = z_sum + l_z, imp_sum + l_imp, load_sum + l_load
            fractions = fractions + hard_fraction(routing).detach()
        fractions = fractions / len(routings)
        out = {
            self.loss_name: self.loss_weight * total,
            'moe_z': z_sum.detach(),
            'moe_importance': imp_sum.detach(),
            'moe_load': load_sum.detach(),
        }
        out.update({f'moe_frac_e{e}': fractions[e] for e in range(num_experts)})
        return out

    def _load_terms(self, i: int, routing: RoutingResult, logits: Tensor) -> Tensor:
        """The B x E per-sample terms that the load term sums over the batch."""
        if self.load == 'soft_mass':
            return logits.softmax(dim=1)
        if routing.select_prob is None:
            raise ValueError(
                f"MoERegularizationLoss: load='noisy_topk' needs routings[{i}].select_prob, "
                "which NoisyTopKRouter returns; use load='soft_mass' for routers without it")
        return routing.select_prob.float()
