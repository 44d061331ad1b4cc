"""BatchNorm that stays per process: SERA-Fusion's experts' norm."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sera_mm.registry import MODELS


@MODELS.register_module('LocalBN')
class LocalBatchNorm2d(nn.Module):
    """``nn.BatchNorm2d``, computed alike, that SyncBN conversion leaves alone.

    A SERA-Fusion expert runs on the sub-batch of samples that picked it,
    and ranks pick differently: a SyncBatchNorm in an expert would wait for
    ranks that did not run the expert (a hang). The experts therefore
    normalise per rank, as in one process (the SERA paper trains on one
    GPU). SyncBN conversion (torch's and mmengine's, which the Runner
    applies with ``sync_bn='torch'``) converts subclasses of
    ``_BatchNorm``; this module is not one.

    Parameters, buffers, their names and the computation
    (``F.batch_norm``) are ``nn.BatchNorm2d``'s; a ``ConvModule`` names it
    ``bn`` as it names a BatchNorm.

    Args:
        num_features (int): Channels C of the B x C x H x W input.
        eps (float): Defaults to 1e-5.
        momentum (float, optional): Running-statistics momentum; None for a
            cumulative average. Defaults to 0.1.
        affine (bool): Defaults to True.
        track_running_stats (bool): Defaults to True.
    """
    _abbr_ = 'bn'

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter('weight', None)
            self.register_parameter('bias', None)
        if track_running_stats:
            self.register_buffer('running_mean', torch.zeros(num_features))
            self.register_buffer('running_var', torch.ones(num_features))
            self.register_buffer('num_batches_tracked', torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer('running_mean', None)
            self.register_buffer('running_var', None)
            self.register_buffer('num_batches_tracked', None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """As ``nn.BatchNorm2d.forward``: B x C x H x W -> B x C x H x W."""
        if x.dim() != 4:
            raise ValueError(f'LocalBatchNorm2d: expected a 4-D input, got {x.dim()}-D')
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            use_batch_stats, momentum, self.eps)

    def extra_repr(self) -> str:
        return (f'{self.num_features}, eps={self.eps}, momentum={self.momentum}, '
                f'affine={self.affine}, track_running_stats={self.track_running_stats}')
