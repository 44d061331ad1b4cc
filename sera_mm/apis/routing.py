"""What the SERA routers chose for one prediction, as plain values.

The segmentor's ``predict`` gives each data sample a ``routing`` field, its
row of each router's :class:`~sera_mm.models.utils.RoutingResult` by router
name; :func:`sample_routing` turns it into what the demo and the web page
show (:mod:`sera_mm.engine.hooks.routing_stats` accumulates it over a set).
"""
from typing import Dict, List, Mapping, Optional

import torch.nn as nn

from sera_mm.engine.hooks.routing_stats import router_experts
from sera_mm.models.utils import RoutingResult

__all__ = ['has_routers', 'sample_routing']


def has_routers(model: nn.Module) -> bool:
    """Whether ``model`` has a SERA-Fusion level or a SERA-Adapter (a SERA
    model); DETRIS has neither."""
    return bool(router_experts(model))


def sample_routing(model: nn.Module, routing: Optional[Mapping[str, RoutingResult]]
                   ) -> Optional[Dict[str, List[dict]]]:
    """The routing of one prediction of ``model``, as plain values.

    Args:
        model (nn.Module): The model that made the prediction.
        routing (Mapping[str, RoutingResult], optional): The prediction's
            ``routing`` field (a data sample of ``model.test_step``).

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
        ValueError: The model has routers and ``routing`` is not the field of
            one of its predictions (None, or other routers).
    """
    experts = router_experts(model)
    if not experts:
        return None
    if routing is None or set(routing) != set(experts):
        raise ValueError(f'sample_routing: expected the routing of {list(experts)}, got '
                         f'{None if routing is None else list(routing)}; pass the `routing` '
                         'field of a data sample this model predicted')
    out: Dict[str, List[dict]] = dict(fusion=[], adapter=[])
    for name, names in experts.items():
        result = routing[name]
        weights = [float(w) for w in result.weights.float().cpu()]
        if not name.startswith('fusion.'):
            out['adapter'].append(dict(block=name, experts=list(names), weights=weights))
            continue
        chosen = sorted((e for e, w in enumerate(weights) if w > 0), key=lambda e: -weights[e])
        out['fusion'].append(dict(
            level=len(out['fusion']), experts=list(names), weights=weights,
            chosen=[names[e] for e in chosen],
            top_k=None if result.indices is None else len(result.indices)))
    return out
