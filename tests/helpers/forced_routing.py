"""Routers that return hand-made decisions, for exact routing statistics,
and forced Top-k selections of real routers."""
import contextlib
from typing import List, Optional, Sequence
from unittest import mock

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


@contextlib.contextmanager
def forced_selection(model: nn.Module, selections: Optional[Sequence[Tensor]]):
    """Makes the i-th :class:`NoisyTopKRouter` of ``model`` (module order:
    SERA-Fusion level i) keep the experts ``selections[i]`` (B x k indices)
    instead of its own Top-k, in every call while the context is open;
    the rest of its forward (logits, noise, the softmax over the kept
    scores) runs as is. None or empty: nothing is forced."""
    from sera_mm.models.routers import NoisyTopKRouter
    if not selections:
        yield
        return
    routers = [m for m in model.modules() if isinstance(m, NoisyTopKRouter)]
    assert len(routers) == len(selections), (len(routers), len(selections))
    with contextlib.ExitStack() as stack:
        for router, kept in zip(routers, selections):
            kept = torch.as_tensor(kept, dtype=torch.long)

            def forward(x, original=router.forward, kept=kept):
                def topk(scores, k, dim=-1, **kwargs):
                    assert (k, scores.shape[0]) == (kept.shape[1], kept.shape[0]), \
                        'forced selection and batch disagree'
                    return scores.gather(dim, kept), kept

                with mock.patch.object(torch.Tensor, 'topk', topk):
                    return original(x)

            stack.enter_context(mock.patch.object(router, 'forward', forward))
        yield
