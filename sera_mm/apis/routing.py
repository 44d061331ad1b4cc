"""What the SERA routers chose for one sample of the last forward.

The segmentor keeps the routing of its last forward (``last_routings``, one
:class:`~sera_mm.models.utils.RoutingResult` per SERA-Fusion level) and so
does every SERA-Adapter (``last_routing``); the statistics hook and
``tools/analysis_tools/routing_stats.py`` accumulate them over a data set
(:mod:`sera_mm.engine.hooks.routing_stats`). :func:`sample_routing` reads the
same records for one sample, right after the forward that made them.
"""
from typing import Dict, List, Optional

import torch.nn as nn

from sera_mm.engine.hooks.routing_stats import (ModelRoutingStatistics, fusion_expert_names,
                                                sera_adapters)

__all__ = ['has_routers', 'sample_routing']


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, 'module', model)


def has_routers(model: nn.Module) -> bool:
    """Whether ``model`` has a SERA-Fusion level or a SERA-Adapter (a SERA
    model); DETRIS has neither."""
    return bool(fusion_expert_names(model)) or bool(sera_adapters(model))


def _top_k(fusion: nn.Module) -> Optional[int]:
    return getattr(getattr(fusion, 'router', None), 'top_k', None)


def sample_routing(model: nn.Module, index: int = 0) -> Optional[Dict[str, List[dict]]]:
    """The routing of sample ``index`` of the model's last forward.

    Call it right after the forward (``test_step`` or
    :func:`~sera_mm.apis.inference_referring`), before the next one.

    Returns:
        dict or None: None for a model without routers. Otherwise
        ``fusion``, one entry per SERA-Fusion level: ``level``, ``experts``
        (names), ``weights`` (one float per expert; 0 for experts not
        chosen), ``chosen`` (the names of the chosen experts, by decreasing
        weight) and ``top_k`` (None for a soft router); and ``adapter``, one
        entry per SERA-Adapter block: ``block`` (the module name, e.g.
        ``backbone.adapters.1``), ``experts`` (``spatial``, ``boundary``) and
        ``weights`` (the soft router's, summing to 1). Plain Python values
        (JSON-friendly).

    Raises:
        RuntimeError: The model has routers but has not run a forward yet,
            or ``index`` is outside the last batch.
    """
    model = _unwrap(model)
    if not has_routers(model):
        return None
    names = fusion_expert_names(model)
    routings = list(getattr(model, 'last_routings', None) or [])
    adapters = sera_adapters(model)
    if len(routings) != len(names) or any(m.last_routing is None for m in adapters.values()):
        raise RuntimeError('sample_routing: the model has not run a forward yet '
                           '(no routing recorded)')
    fusions = list(getattr(model.neck, 'fusions', None) or [])
    out: Dict[str, List[dict]] = dict(fusion=[], adapter=[])
    for level, (experts, routing) in enumerate(zip(names, routings)):
        weights = _row(routing.weights, index, f'fusion level {level}')
        chosen = sorted((e for e, w in enumerate(weights) if w > 0), key=lambda e: -weights[e])
        out['fusion'].append(dict(
            level=level, experts=list(experts), weights=weights,
            chosen=[experts[e] for e in chosen],
            top_k=_top_k(fusions[level]) if level < len(fusions) else None))
    for name, module in adapters.items():
        out['adapter'].append(dict(
            block=name, experts=list(ModelRoutingStatistics.ADAPTER_EXPERTS),
            weights=_row(module.last_routing.weights, index, name)))
    return out


def _row(weights, index: int, where: str) -> List[float]:
    if not -weights.shape[0] <= index < weights.shape[0]:
        raise RuntimeError(f'sample_routing: sample {index} is outside the last batch '
                           f'of {weights.shape[0]} ({where})')
    return [float(w) for w in weights[index].detach().float().cpu()]
