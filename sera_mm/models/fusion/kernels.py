"""Fixed 3 x 3 image-processing kernels used to build or initialise experts.

Each function returns a new float tensor, so callers may copy it into a
parameter or register it as a buffer without aliasing.
"""
import torch
from torch import Tensor


def sobel_kernels() -> Tensor:
    """Returns the Sobel-x and Sobel-y kernels, 2 x 3 x 3.

    Index 0 responds to intensity growing to the right (x), index 1 to
    intensity growing downwards (y), under ``F.conv2d``'s cross-correlation.
    """
    sobel_x = torch.tensor([[-1., 0., 1.],
                            [-2., 0., 2.],
                            [-1., 0., 1.]])
    return torch.stack([sobel_x, sobel_x.t().contiguous()])


def laplacian_kernel() -> Tensor:
    """Returns the discrete (4-neighbour) Laplace kernel, 3 x 3."""
    return torch.tensor([[0., 1., 0.],
                         [1., -4., 1.],
                         [0., 1., 0.]])


def gaussian_kernel() -> Tensor:
    """Returns the 3 x 3 binomial Gaussian blur kernel, 3 x 3, summing to 1.

    The outer product of [1, 2, 1] / 4 with itself (sigma about 0.85).
    """
    row = torch.tensor([1., 2., 1.]) / 4.
    return torch.outer(row, row)


def depthwise_weight(kernel: Tensor, channels: int) -> Tensor:
    """Repeats a 3 x 3 kernel into a depthwise conv weight, C x 1 x 3 x 3."""
    return kernel.expand(channels, 1, 3, 3).clone()
