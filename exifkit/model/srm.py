"""The 30 fixed SRM high-pass kernels (Fridrich and Kodovsky's spatial rich model).

They remove image content and keep the residual noise where camera pipelines leave their traces.
Every kernel sums to zero, so a flat region gives a zero response. 3x3 kernels sit in the middle of
a 5x5 grid so the whole bank is one 5x5 convolution.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _embed(k: np.ndarray) -> np.ndarray:
    out = np.zeros((5, 5))
    off = (5 - k.shape[0]) // 2
    out[off:off + k.shape[0], off:off + k.shape[1]] = k
    return out


def _rotations(k: np.ndarray, n: int) -> list[np.ndarray]:
    return [np.rot90(k, r) for r in range(n)]


def srm_kernels() -> np.ndarray:
    """(30, 5, 5) float64: 8 first-order, 4 second-order /2, 8 third-order /3, 4 EDGE3x3 /4,
    4 EDGE5x5 /12, SQUARE3x3 /4, SQUARE5x5 /12."""
    first = []
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)):
        k = np.zeros((3, 3))
        k[1, 1], k[1 + dy, 1 + dx] = -1, 1
        first.append(k)
    second = []
    for k in (np.array([[0, 0, 0], [1, -2, 1], [0, 0, 0]]), np.array([[1, 0, 0], [0, -2, 0], [0, 0, 1]])):
        second += _rotations(k / 2.0, 2)
    third = []
    for dy, dx in ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)):
        k = np.zeros((5, 5))
        for step, w in zip((-1, 0, 1, 2), (1, -3, 3, -1)):
            k[2 + step * dy, 2 + step * dx] = w
        third.append(k / 3.0)
    edge3 = _rotations(np.array([[-1, 2, -1], [2, -4, 2], [0, 0, 0]]) / 4.0, 4)
    edge5 = _rotations(np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2],
                                 [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]) / 12.0, 4)
    square3 = [np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4.0]
    square5 = [np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2],
                         [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]) / 12.0]
    bank = first + second + third + edge3 + edge5 + square3 + square5
    return np.stack([_embed(k) for k in bank])


class SRMFilterBank(nn.Module):
    """Each colour channel through all 30 kernels: (B, 3, H, W) -> (B, 90, H, W), channel-major
    (the 30 residuals of R, then of G, then of B), zero padding, no truncation."""

    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.tensor(srm_kernels(), dtype=torch.float32).unsqueeze(1))

    @property
    def n_kernels(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = nn.functional.conv2d(x.reshape(b * c, 1, h, w), self.weight, padding=2)
        return y.reshape(b, c * self.n_kernels, h, w)


# the first kernel of each family, as srm_kernels() orders them
FAMILY_START = {"1st order": 0, "2nd order": 8, "3rd order": 12, "EDGE3x3": 20, "EDGE5x5": 24,
                "SQUARE3x3": 28, "SQUARE5x5": 29}


def residual_energy(image: np.ndarray) -> dict[str, float]:
    """Mean absolute residual (in 8-bit grey levels) of an RGB image under each kernel family, averaged
    over the family's kernels and the three channels: how much high-frequency content the filters see."""
    kernels = srm_kernels()
    bounds = list(FAMILY_START.values()) + [len(kernels)]
    x = torch.tensor(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[:, None]
    with torch.no_grad():
        res = nn.functional.conv2d(x, torch.tensor(kernels, dtype=torch.float32)[:, None])  # no padding: no edges
    per_kernel = res.abs().mean(dim=(0, 2, 3)).numpy()
    return {name: float(per_kernel[a:b].mean()) for name, a, b in zip(FAMILY_START, bounds[:-1], bounds[1:])}
