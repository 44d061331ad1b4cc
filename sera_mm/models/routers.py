"""Routers that mix experts, and the sparse dispatch of Top-k routing.

The SERA-Adapter's :class:`SoftRouter` uses every expert, SERA-Fusion's
:class:`NoisyTopKRouter` k per sample (docs/en/method.md, s. 2 and 3).
:func:`sparse_dispatch` runs each expert only on the samples that selected
it; :func:`dense_dispatch` is the reference it must equal.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from sera_mm.registry import MODELS
from .utils import RoutingResult


def global_pool(x: Tensor, in_channels: int, owner: str) -> Tensor:
    """Averages a B x C x H x W map over H, W (a B x C summary passes through).

    Returns:
        Tensor: B x C; raises, naming ``owner``, unless C is ``in_channels``.
    """
    if x.dim() == 4:
        x = x.mean(dim=(2, 3))
    elif x.dim() != 2:
        raise ValueError(f'{owner}: expected B x C x H x W or B x C, got shape {tuple(x.shape)}')
    if x.size(1) != in_channels:
        raise ValueError(f'{owner}: expected C = in_channels = {in_channels}, got {x.size(1)}')
    return x


@MODELS.register_module()
class SoftRouter(BaseModule):
    """Soft router: ``w = softmax(W_r g)`` over all experts (docs/en/method.md, s. 2, Eq. 3-4).

    Args:
        in_channels (int): Width C of the routed feature.
        num_experts (int): Number of experts E. Defaults to 2.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, in_channels: int, num_experts: int = 2,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if num_experts < 1:
            raise ValueError(f'SoftRouter: num_experts must be >= 1, got {num_experts}')
        self.in_channels = in_channels
        self.num_experts = num_experts
        self.fc = nn.Linear(in_channels, num_experts)

    def forward(self, x: Tensor) -> RoutingResult:
        """Routes a batch; called once per forward of the owning module.

        Args:
            x (Tensor): B x C x H x W (pooled here) or an already pooled B x C.

        Returns:
            RoutingResult: logits B x E, weights B x E (softmax, rows sum to
            1), indices None; both float32, also under autocast.
        """
        # float32 under autocast too: the mixing weights are not rounded to
        # bf16/fp16 (a no-op in float32)
        logits = self.fc(global_pool(x, self.in_channels, type(self).__name__)).float()
        return RoutingResult(logits=logits, weights=logits.softmax(dim=1), indices=None)


@MODELS.register_module()
class NoisyTopKRouter(BaseModule):
    """Noisy Top-k router (docs/en/method.md, s. 3, Eq. 21-26).

    ``g = GAP(F)``; ``h = W2 ReLU(W1 g)``; in training only
    ``h~ = (h + sigma * eps) / tau`` with ``eps ~ N(0, 1)``, at eval
    ``h~ = h / tau``. The k largest entries of ``h~`` are kept; their weights
    are the softmax over the kept entries, the others are 0.

    With ``top_k=1`` every kept weight is exactly 1, so the task loss sends
    no gradient to the router; it then learns only from the MoE
    regularisation (which reads the clean logits h).

    Args:
        in_channels (int): Width C of the routed feature.
        num_experts (int): Number of experts E. Defaults to 4.
        top_k (int): Experts kept per sample, 1 <= k <= E. Defaults to 2.
        hidden_channels (int, optional): Width of W1's output. Defaults to
            ``max(1, C // 4)``.
        noise_std (float): sigma, the standard deviation of the training
            noise. Defaults to 1.0.
        temperature (float): tau, divides the (noisy) logits. Defaults to 1.0.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 num_experts: int = 4,
                 top_k: int = 2,
                 hidden_channels: Optional[int] = None,
                 noise_std: float = 1.0,
                 temperature: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if not 1 <= top_k <= num_experts:
            raise ValueError(
                f'NoisyTopKRouter: top_k must be in [1, num_experts={num_experts}], got {top_k}')
        if temperature <= 0:
            raise ValueError(f'NoisyTopKRouter: temperature must be > 0, got {temperature}')
        if noise_std < 0:
            raise ValueError(f'NoisyTopKRouter: noise_std must be >= 0, got {noise_std}')
        hidden_channels = hidden_channels or max(1, in_channels // 4)
        self.in_channels = in_channels
        self.num_experts = num_experts
        self.top_k = top_k
        self.noise_std = noise_std
        self.temperature = temperature
        self.fc1 = nn.Linear(in_channels, hidden_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden_channels, num_experts)

    def forward(self, x: Tensor) -> RoutingResult:
        """Routes a batch; called once per forward of the owning module.

        Args:
            x (Tensor): B x C x H x W (pooled here) or an already pooled B x C.

        Returns:
            RoutingResult: clean logits h (B x E), weights (B x E, k non-zero
            entries per row summing to 1), indices (B x k, the kept experts
            by decreasing noisy logit) and select_prob (B x E,
            :func:`selection_probability`, for the MoE loss's load term).
            All but the indices are float32, also under autocast.
        """
        g = global_pool(x, self.in_channels, type(self).__name__)
        # The noise, the Top-k selection and the weights in float32 under
        # autocast too (a no-op in float32): in bf16 close logits tie, the
        # noise is rounded, and the MoE loss reads these logits.
        logits = self.fc2(self.act(self.fc1(g))).float()
        noisy, noise_std = logits, 0.
        if self.training and self.noise_std > 0:
            noisy, noise_std = logits + self.noise_std * torch.randn_like(logits), self.noise_std
        kept, indices = (noisy / self.temperature).topk(self.top_k, dim=1)
        weights = torch.zeros_like(logits).scatter(1, indices, kept.softmax(dim=1))
        return RoutingResult(logits=logits, weights=weights, indices=indices,
                             select_prob=selection_probability(logits, noisy, indices, noise_std))


def selection_probability(logits: Tensor, noisy: Tensor, indices: Tensor,
                          noise_std: float) -> Tensor:
    """Shazeer et al.'s smooth load: P(expert e is among sample b's top k).

    For each (b, e), the other experts' noisy logits are held fixed and
    only e's noise is redrawn: e is kept when ``h_be + sigma * eps`` beats
    the k-th largest noisy logit of the others, with probability
    ``Phi((h_be - threshold_be) / sigma)`` (Phi the normal CDF). The
    threshold is the (k+1)-th largest noisy logit of the row when e is kept
    now, the k-th otherwise. The temperature does not change the ranking
    and is left out.

    Differentiable in the clean logits (through Phi's argument and, via the
    others' noisy logits, the threshold); as sigma goes to 0 it tends to
    the 0/1 indicator of the actual selection, which it returns for
    ``noise_std=0`` (eval, or a router without noise).

    Args:
        logits (Tensor): Clean logits h, B x E.
        noisy (Tensor): The noisy logits the selection ranked (before the
            temperature), B x E; ``logits`` itself without noise.
        indices (Tensor): The kept experts, B x k.
        noise_std (float): sigma of the noise added to ``logits``; 0 when none.

    Returns:
        Tensor: B x E probabilities.
    """
    top_k = indices.size(1)
    kept = torch.zeros_like(logits, dtype=torch.bool).scatter(1, indices, True)
    if noise_std == 0 or top_k == logits.size(1):
        return kept.to(logits.dtype)
    ranked = noisy.sort(dim=1, descending=True).values
    threshold = torch.where(kept, ranked[:, top_k:top_k + 1], ranked[:, top_k - 1:top_k])
    return torch.special.ndtr((logits - threshold) / noise_std)


def sparse_dispatch(x: Tensor, experts: Sequence[nn.Module], weights: Tensor,
                    indices: Tensor) -> Tensor:
    """Runs each expert only on the samples that selected it.

    Scatter-adds ``weights[b, e] * E_e(x_b)`` over the rows b that picked e,
    so compute grows with k, not with E. Equals :func:`dense_dispatch` when
    the experts treat samples independently (a BatchNorm in training sees
    only its sub-batch). Each contribution is cast to ``x``'s dtype: under
    autocast experts may return different dtypes (a branch ending in a
    float32 scale returns float32 from a bf16 input).

    When gradients are recorded, the experts no sample picked add
    :func:`zero_touch` (a 0, without running them): their parameters get a
    zero gradient instead of none, so DDP runs with
    ``find_unused_parameters=False`` and its all-reduce averages a rank's
    zeros with the others' gradients, the gradient of the global batch.

    Args:
        x (Tensor): B x ..., the input of every expert.
        experts (Sequence[nn.Module]): E experts; each maps b x ... to
            b x ... (same trailing shape for every expert).
        weights (Tensor): B x E mixing weights (zero off the selection).
        indices (Tensor): B x k selected expert indices.

    Returns:
        Tensor: B x ..., ``sum over selected e of w_be * E_e(x_b)``, in
        ``x``'s dtype.
    """
    out: Optional[Tensor] = None
    unpicked = []
    # Which samples picked which expert, brought to the host at once: the
    # sub-batch sizes must be known there, and one transfer per call is the
    # only wait a GPU has here (instead of a nonzero and a size per expert).
    picked = (indices.unsqueeze(-1) == torch.arange(len(experts), device=indices.device))
    picked = picked.any(dim=1).cpu()
    for e, expert in enumerate(experts):
        rows = picked[:, e].nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            unpicked.append(expert)
            continue
        rows = rows.to(x.device, non_blocking=True)
        y = expert(x.index_select(0, rows))
        w = weights[rows, e].view(-1, *([1] * (y.dim() - 1))).to(y.dtype)
        if out is None:
            out = y.new_zeros((x.size(0),) + y.shape[1:], dtype=x.dtype)
        out = out.index_add(0, rows, (w * y).to(out.dtype))
    if out is None:  # only for an empty batch
        out = x.new_zeros(x.shape)
    touch = zero_touch(unpicked) if torch.is_grad_enabled() else None
    if touch is not None:
        out = out + touch.to(out.dtype)
    return out


def zero_touch(modules: Sequence[nn.Module]) -> Optional[Tensor]:
    """A scalar 0 that depends on every trainable parameter of ``modules``.

    ``0 * sum of the first entry of each parameter``: its backward gives
    each parameter a gradient of zeros (see :func:`sparse_dispatch`).

    Returns:
        Tensor, optional: The float32 scalar 0; None when the modules have
        no trainable parameter.
    """
    firsts = [p.reshape(-1)[:1] for m in modules for p in m.parameters() if p.requires_grad]
    if not firsts:
        return None
    return torch.cat(firsts).float().sum() * 0.


def dense_dispatch(x: Tensor, experts: Sequence[nn.Module], weights: Tensor) -> Tensor:
    """Reference mixture: every expert on every sample, ``sum_e w_e E_e(x)``.

    Args:
        x (Tensor): B x ..., the input of every expert.
        experts (Sequence[nn.Module]): E experts.
        weights (Tensor): B x E mixing weights.

    Returns:
        Tensor: B x ..., the weighted sum of all experts' outputs, in
        ``x``'s dtype (as :func:`sparse_dispatch`).
    """
    out = 0
    for e, expert in enumerate(experts):
        y = expert(x)
        w = weights[:, e].view(-1, *([1] * (y.dim() - 1))).to(y.dtype)
        out = out + (w * y).to(x.dtype)
    return out
