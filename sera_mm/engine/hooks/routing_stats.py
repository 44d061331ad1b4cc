"""Accumulators of routing decisions: what the routers chose, and how much."""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from sera_mm.models.utils import RoutingResult


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, 'module', model)


def fusion_expert_names(model: nn.Module) -> List[List[str]]:
    """Expert names of every SERA-Fusion level of ``model`` (empty list without fusion)."""
    neck = getattr(_unwrap(model), 'neck', None)
    fusions = getattr(neck, 'fusions', None) or []
    return [list(f.expert_names) for f in fusions]


def sera_adapters(model: nn.Module) -> 'OrderedDict[str, nn.Module]':
    """The modules of ``model`` that keep a soft routing in ``last_routing``, by name."""
    return OrderedDict((name, m) for name, m in _unwrap(model).named_modules()
                       if hasattr(m, 'last_routing'))


class RoutingStatistics:
    """Running per-expert statistics of a sequence of routing decisions.

    :meth:`update` is called once per batch with one :class:`RoutingResult`
    per router; :meth:`summary` returns, per router and expert, the selection
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

    def update(self, routings: Sequence[RoutingResult]) -> None:
        """Adds one batch; ``routings[i]`` belongs to router ``i``."""
        if len(routings) != len(self.names):
            raise ValueError(f'RoutingStatistics: got {len(routings)} routing results for '
                             f'{len(self.names)} routers')
        for i, routing in enumerate(routings):
            w = routing.weights.detach().to('cpu', torch.float64)
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
    """Routing statistics of a whole ``ReferringSegmentor``.

    Reads, after each forward, the segmentor's ``last_routings`` (one per
    SERA-Fusion level) and the ``last_routing`` of every SERA-Adapter.

    Args:
        model (nn.Module): The segmentor (DDP-wrapped or not).
    """

    ADAPTER_EXPERTS: Tuple[str, str] = ('spatial', 'boundary')

    def __init__(self, model: nn.Module) -> None:
        self.model = _unwrap(model)
        self.fusion = RoutingStatistics(fusion_expert_names(self.model))
        self.adapter_modules = sera_adapters(self.model)
        self.adapter = RoutingStatistics([self.ADAPTER_EXPERTS] * len(self.adapter_modules))

    @property
    def empty(self) -> bool:
        """True when the model has no router to watch."""
        return not self.fusion.names and not self.adapter.names

    def reset(self) -> None:
        self.fusion.reset()
        self.adapter.reset()

    def update(self) -> None:
        """Reads the routing the model's last forward left behind."""
        if self.fusion.names:
            self.fusion.update(self.model.last_routings)
        routings: List[Optional[RoutingResult]] = [
            m.last_routing for m in self.adapter_modules.values()]
        if routings and all(r is not None for r in routings):
            self.adapter.update(routings)

    def summary(self) -> Dict[str, Dict[str, Dict[str, float]]]:
        """Returns ``{'fusion.level0': {expert: stats}, ..., '<adapter name>': ...}``."""
        out = OrderedDict()
        for i, stats in enumerate(self.fusion.summary()):
            out[f'fusion.level{i}'] = stats
        for name, stats in zip(self.adapter_modules, self.adapter.summary()):
            out[name] = stats
        return out
