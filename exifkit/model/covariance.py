"""Second-order pooling: channel covariance, its matrix square root, and the upper triangle.

The square root uses the iSQRT-COV Newton-Schulz iteration (Li, Xie, Wang and Gao, CVPR 2018): only
matrix products, so it runs fast on GPUs and backpropagates without an eigendecomposition. With the
paper's 5 iterations on 32 channels it is an approximation (about 10 % relative error against the
exact root for a well-conditioned matrix, because trace normalisation puts the eigenvalues near 1/32);
the network is trained with this operator, so it is reproduced as is, not replaced by the exact root.
"""

from __future__ import annotations

import torch


def covariance(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C), biased (divided by the H*W positions)."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    centred = flat - flat.mean(dim=2, keepdim=True)
    return centred @ centred.transpose(1, 2) / (h * w)


def newton_schulz_sqrt(a: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Square root of SPD matrices (B, C, C): normalise by the trace, iterate, rescale."""
    b, c, _ = a.shape
    trace = a.diagonal(dim1=1, dim2=2).sum(dim=1).view(b, 1, 1)
    eye = torch.eye(c, dtype=a.dtype, device=a.device).expand(b, c, c)
    y = a / trace
    z = eye
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * trace.sqrt()


def upper_triangle(a: torch.Tensor) -> torch.Tensor:
    """(B, C, C) -> (B, C(C+1)/2), row by row, diagonal included."""
    c = a.shape[-1]
    rows, cols = torch.triu_indices(c, c, device=a.device)
    return a[:, rows, cols]


def covariance_pool(x: torch.Tensor, iterations: int = 5) -> torch.Tensor:
    """Always in float32 (float64 stays float64), also under bf16 autocast: the covariance of a map with
    values near zero and the Newton-Schulz iteration lose their eigenvalue spread in bf16's 8-bit mantissa."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.autocast(x.device.type, enabled=False):
        return upper_triangle(newton_schulz_sqrt(covariance(x.to(dtype)), iterations))
