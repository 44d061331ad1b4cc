"""Helpers shared by the adapter tests."""
import torch


def randomise_norms(module, biases: bool = False):
    """Gives every BatchNorm non-trivial statistics and affine parameters
    (and, with ``biases``, nudges every bias), so that reference formulas
    that skip a norm or a bias would differ. Returns ``module``."""
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if name.endswith('running_mean'):
                buf.normal_(0, 0.1)
            elif name.endswith('running_var'):
                buf.uniform_(0.5, 1.5)
        for name, p in module.named_parameters():
            if '.bn.' in name or (biases and name.endswith('bias')):
                p.add_(0.1 * torch.randn_like(p))
    return module
