"""Routers that return hand-made decisions, for exact routing statistics."""
from typing import List, Sequence

import torch
from torch import Tensor, nn

from sera_mm.models.utils import RoutingResult


class ForcedRouter(nn.Module):
    """Stands in for a router: call ``i`` returns ``schedule[i]`` as weights.

    Args:
        schedule (Sequence): One B x E weight table (nested lists or a
            tensor) per call, in call order.
        top_k (bool): Return the indices of the non-zero weights (B x k, the
            same k in every row), as a Top-k router does; otherwise None, as
            a soft router does.
    """

    def __init__(self, schedule: Sequence, top_k: bool) -> None:
        super().__init__()
        self.schedule: List[Tensor] = [torch.as_tensor(w, dtype=torch.float32)
                                       for w in schedule]
        self.top_k = top_k
        self.calls = 0

    def forward(self, x: Tensor) -> RoutingResult:
        weights = self.schedule[self.calls]
        self.calls += 1
        assert weights.shape[0] == x.shape[0], 'schedule and batch sizes differ'
        indices = None
        if self.top_k:
            k = int((weights > 0).sum(1)[0])
            assert bool(((weights > 0).sum(1) == k).all()), 'rows keep different k'
            indices = weights.topk(k, dim=1).indices
        return RoutingResult(logits=torch.zeros_like(weights), weights=weights.clone(),
                             indices=indices)


def roll_experts(table, shift: int) -> list:
    """``table`` (rows of per-expert values) with its columns rolled by
    ``shift``: gives each level its own, still hand-checkable, decisions."""
    return torch.roll(torch.as_tensor(table, dtype=torch.float64), shift, dims=-1).tolist()
