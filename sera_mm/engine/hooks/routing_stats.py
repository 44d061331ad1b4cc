"""Accumulators of routing decisions: what the routers chose, and how much."""
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor


def router_experts(model: nn.Module) -> Dict[str, Tuple[str, ...]]:
    """Expert names of each router of ``model`` (DDP-wrapped or not), by the
    name its routing has in the model's outputs; empty without routers
    (:meth:`~sera_mm.models.ReferringSegmentor.router_experts`)."""
    model = getattr(model, 'module', model)
    return model.router_experts() if hasattr(model, 'router_experts') else {}


class RoutingStatistics:
    """Running per-expert statistics of a sequence of routing decisions.

    :meth:`update` is called once per batch with the mixing weights of each
    router; :meth:`summary` returns, per router and expert, the selection
    frequency (share of samples whose weight for the expert is > 0), the mean
    weight over all samples (0 where not selected; sums to 1 over experts)
    and the standard deviation of that weight.

    Args:
        names (Sequence[Sequence[str]]): Expert names, one list per router.
    """

    def __init__(self, names: Sequence[Sequence[str]]) -> None:
        self.names = [list(n) for n in names]
        self.reset()

    def reset(self) -> None:
        """Forgets everything seen so far."""
        self.samples = [0 for _ in self.names]
        self.selected = [torch.zeros(len(n), dtype=torch.float64) for n in self.names]
        self.weight_sum = [torch.zeros(len(n), dtype=torch.float64) for n in self.names]
        self.weight_sq = [torch.zeros(len(n), dtype=torch.float64) for n in self.names]

    def update(self, weights: Sequence[Tensor]) -> None:
        """Adds one batch; ``weights[i]`` (B x E) are router ``i``'s."""
        if len(weights) != len(self.names):
            raise ValueError(f'RoutingStatistics: got the weights of {len(weights)} routers, '
                             f'expected {len(self.names)}')
        for i, w in enumerate(weights):
            w = w.detach().to('cpu', torch.float64)
            if w.shape[1] != len(self.names[i]):
                raise ValueError(f'RoutingStatistics: router {i} has {w.shape[1]} weights '
                                 f'for experts {self.names[i]}')
            self.samples[i] += w.shape[0]
            self.selected[i] += (w > 0).sum(0)
            self.weight_sum[i] += w.sum(0)
            self.weight_sq[i] += (w * w).sum(0)

    def summary(self) -> List[Dict[str, Dict[str, float]]]:
        """Returns, per router, ``{expert: {'freq', 'weight', 'weight_std'}}``."""
        out = []
        for i, names in enumerate(self.names):
            n = max(self.samples[i], 1)
            mean = self.weight_sum[i] / n
            std = (self.weight_sq[i] / n - mean * mean).clamp_min(0).sqrt()
            freq = self.selected[i] / n
            out.append({name: dict(freq=float(freq[e]), weight=float(mean[e]),
                                   weight_std=float(std[e]))
                        for e, name in enumerate(names)})
        return out


class ModelRoutingStatistics:
    """Routing statistics of a whole ``ReferringSegmentor`` over predictions.

    Reads the ``routing`` field of the data samples its ``predict`` (the
    ``val_step`` or ``test_step``) returned.

    Args:
        model (nn.Module): The segmentor (DDP-wrapped or not).
    """

    def __init__(self, model: nn.Module) -> None:
        self.experts = router_experts(model)
        self.stats = RoutingStatistics(list(self.experts.values()))

    @property
    def empty(self) -> bool:
        """True when the model has no router to watch."""
        return not self.experts

    def reset(self) -> None:
        self.stats.reset()

    def update(self, data_samples: Sequence) -> None:
        """Adds a batch of predictions (SegDataSamples with ``routing``)."""
        if not self.empty and data_samples:
            self.stats.update([torch.stack([ds.routing[name].weights for ds in data_samples])
                               for name in self.experts])

    def summary(self) -> Dict[str, Dict[str, Dict[str, float]]]:
        """Returns ``{'fusion.level0': {expert: stats}, ..., '<adapter name>': ...}``."""
        return OrderedDict(zip(self.experts, self.stats.summary()))
