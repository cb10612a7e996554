"""Winograd 3x3 convolution, and the LayerNorm and pool around it, for CPU inference: two PyTorch
operators (``torch.ops.exifkit.winograd_conv3x3``, ``torch.ops.exifkit.norm_pool``) whose C kernel is
compiled from ``winograd.c`` on first use. Measured end to end on ``exifkit detect`` (2 cores,
2026-12-07, the shipped bundle): 200 files of the shared data in 30.7 s against 48.7 s without it
(1.58x); one 24 MP photo 4.1 s against 4.6 s (1.12x: 64 patches, the time is decoding).

The direct convolution already runs at this kind of machine's multiply-add peak, so the only way to
make the extractor's first stage faster on a CPU is fewer multiplications (benchmarks/README.md).
The kernel is plain C with GCC vector types, built for the machine it runs on (``native.py``).
The kernel is optional: where there is no compiler, the build fails, ``EXIFKIT_WINOGRAD=0`` is set, or
a tensor is not what the kernel handles, the operators fall back to PyTorch's ``conv2d`` and
``avg_pool2d``: the same function up to float32 rounding.

Only inference uses it: there is no backward pass, and training keeps the convolution library.
"""

from __future__ import annotations

import ctypes
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import native

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("winograd.c")
PROFILER_NAME = "exifkit::winograd_conv3x3"
MIN_SIZE = 16  # on 8x8 maps the transforms cost more than they save (0.22 ms against 0.14 direct)

# G of F(4x4, 3x3): the filter transform, applied in double once per weight tensor
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)

_state: dict = {}


def _build() -> ctypes.CDLL:
    lib = native.load(SOURCE)
    fn = lib.exifkit_winograd_conv3x3
    ptr, i32, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    fn.argtypes = [ptr, ctypes.c_long, i32, i32, i32, ptr, ptr, ptr, f32, f32, ptr, ptr, ptr, ptr, ptr, i32]
    fn.restype = ctypes.c_int
    lib.exifkit_winograd_bf16.argtypes, lib.exifkit_winograd_bf16.restype = [], ctypes.c_int
    fn = lib.exifkit_norm_pool
    fn.argtypes = [ptr, ctypes.c_long, i32, i32, i32, ptr, ptr, ptr, f32, f32, ptr, i32]
    fn.restype = ctypes.c_int
    return lib


def _library() -> ctypes.CDLL | None:
    return native.load_once(_state, "EXIFKIT_WINOGRAD", _build, log, "Winograd kernel unavailable, using the direct convolution")


def available() -> bool:
    return _library() is not None


def bf16_available() -> bool:
    """Whether the kernel was built with bf16 products (a CPU with AVX512-BF16)."""
    return available() and bool(_library().exifkit_winograd_bf16())


def status() -> str:
    """Why the kernel is or is not in use (for benchmark records and bug reports)."""
    _library()
    return _state["why"]


def transform_weight(weight: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> G g G^T as (36, C_in, C_out) float32, computed in double; with ``bf16``,
    rounded to bf16 once and laid out (36, C_in / 2, C_out, 2) for the kernel's bf16 products."""
    o, i = weight.shape[:2]
    u = torch.einsum("ak,oikl,bl->abio", _G, weight.detach().double().cpu(), _G).reshape(36, i, o)
    if bf16:
        return u.reshape(36, i // 2, 2, o).transpose(2, 3).to(torch.bfloat16).contiguous()
    return u.float().contiguous()


def _filters_fit(u: torch.Tensor, c: int) -> bool:
    if u.dtype == torch.bfloat16:
        return u.shape == (36, c // 2, c, 2) and u.is_contiguous()
    return u.dtype == torch.float32 and u.shape == (36, c, c) and u.is_contiguous()


def usable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether the kernel handles this call: CPU float32 inference on channels-last maps it can tile.
    Anything that wants a gradient (input, weight or bias) goes to PyTorch: the kernel has no backward."""
    n, c, h, w = x.shape
    wants_grad = any(t is not None and t.requires_grad for t in (x, weight, bias))
    return (not torch.is_grad_enabled() or not wants_grad) \
        and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and weight.shape == (c, c, 3, 3) \
        and x.is_contiguous(memory_format=torch.channels_last) and c % 16 == 0 \
        and h % 4 == 0 and w % 4 == 0 and min(h, w) >= MIN_SIZE and n > 0 and available()


@dataclass
class PendingNorm:
    """A LayerNorm and clamp that the kernel applies to its input map as it reads it.

    Deferring the previous layer's normalisation into the next convolution saves writing and reading
    a whole map per layer; the statistics come from the sums the previous convolution returned."""

    stats: torch.Tensor  # (N, 2) float32: each map's mean and 1 / sqrt(var + eps)
    weight: torch.Tensor  # (H, W, C) contiguous, LayerNorm's affine weight in channels-last order
    bias: torch.Tensor
    low: float = 0.0
    high: float = math.inf

    def __post_init__(self):  # the kernel reads raw float32 pointers
        self.stats, self.weight, self.bias = (t.float().contiguous() for t in (self.stats, self.weight, self.bias))

    @classmethod
    def from_sums(cls, sums: torch.Tensor, count: int, weight, bias, eps: float, low=0.0, high=math.inf):
        mean = sums[:, 0] / count
        var = (sums[:, 1] / count - mean ** 2).clamp_min(0)  # in double: the sums are exact enough
        return cls(torch.stack([mean, (var + eps).rsqrt()], 1).float(), weight, bias, low, high)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The same normalisation written out, for maps the kernel does not take next."""
        mean, rstd = self.stats[:, 0, None, None, None], self.stats[:, 1, None, None, None]
        y = (x.permute(0, 2, 3, 1) - mean) * rstd * self.weight + self.bias
        return y.clamp_(self.low, self.high).permute(0, 3, 1, 2)


def _pending_args(pending: PendingNorm | None):
    if pending is None:
        return None, None, None, 0.0, 0.0
    return pending.stats, pending.weight, pending.bias, float(pending.low), float(pending.high)


def _owed(x, stats, ln_weight, ln_bias, low, high):
    return x if stats is None else PendingNorm(stats, ln_weight, ln_bias, low, high).apply(x)


# Defined with torch.library's low-level API: a ``torch.library.custom_op`` imports TorchDynamo on its first
# call (about 1 s, once per process: every notebook and command paid it) to wrap the function.
_OPS = torch.library.Library("exifkit", "DEF")
_OPS.define("winograd_conv3x3(Tensor x, Tensor transformed, Tensor weight, Tensor bias, Tensor? stats, "
            "Tensor? ln_weight, Tensor? ln_bias, float low, float high) -> (Tensor, Tensor)")
_OPS.define("norm_pool(Tensor x, Tensor stats, Tensor ln_weight, Tensor ln_bias, float low, float high) -> Tensor")


def _winograd_conv3x3(x: torch.Tensor, transformed: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      stats: torch.Tensor | None, ln_weight: torch.Tensor | None, ln_bias: torch.Tensor | None,
                      low: float, high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The operator: ``conv2d(owed LayerNorm(x), weight, bias, padding=1)`` on a channels-last map and
    each output map's (sum, sum of squares) in float64. The C kernel runs it where it is compiled and
    the map is one it tiles (CPU, float32); anywhere else the same result comes from PyTorch's own
    operations (the registered fallback)."""
    n, c, h, w = x.shape
    bf16 = transformed.dtype == torch.bfloat16
    if not (usable(x, weight, bias) and _filters_fit(transformed, c) and (not bf16 or bf16_available())):
        y = F.conv2d(_owed(x, stats, ln_weight, ln_bias, low, high), weight, bias, padding=1)
        y = y.contiguous(memory_format=torch.channels_last)
        flat = y.double().flatten(1)
        return y, torch.stack([flat.sum(1), flat.square().sum(1)], 1).to(x.device)
    y = torch.empty_like(x, memory_format=torch.channels_last)
    sums = torch.empty(n, 2, dtype=torch.float64)
    pre = (stats.data_ptr(), ln_weight.data_ptr(), ln_bias.data_ptr(), low, high) if stats is not None \
        else (None, None, None, 0.0, 0.0)
    with torch.profiler.record_function(PROFILER_NAME):  # invisible to the profiler otherwise
        u, ub = (None, transformed.data_ptr()) if bf16 else (transformed.data_ptr(), None)
        rc = _library().exifkit_winograd_conv3x3(x.data_ptr(), n, h, w, c, *pre, u, ub, bias.data_ptr(),
                                                 y.data_ptr(), sums.data_ptr(), torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"Winograd kernel failed (code {rc}) on a {tuple(x.shape)} map")
    return y, sums


_OPS.impl("winograd_conv3x3", _winograd_conv3x3, "CompositeExplicitAutograd")
winograd_conv3x3 = torch.ops.exifkit.winograd_conv3x3.default


@torch.library.register_fake("exifkit::winograd_conv3x3")
def _(x, transformed, weight, bias, stats, ln_weight, ln_bias, low, high):
    return torch.empty_like(x, memory_format=torch.channels_last), x.new_empty(x.shape[0], 2, dtype=torch.float64)


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            transformed: torch.Tensor | None = None, pending: PendingNorm | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``F.conv2d(pending(x), weight, bias, padding=1)`` and each output map's sum and sum of squares
    (float64, (N, 2)), by the Winograd operator where :func:`usable` says so; otherwise by ``F.conv2d``
    (inside autograd, where the operator has no backward), and the sums are None.

    ``transformed`` is :func:`transform_weight` of ``weight``, passed in to compute it once per model
    call rather than once per chunk of patches."""
    if not usable(x, weight, bias):
        return F.conv2d(pending.apply(x) if pending else x, weight, bias, padding=1), None
    n, c, h, w = x.shape
    u = transformed if transformed is not None else transform_weight(weight)
    if not _filters_fit(u, c):
        raise ValueError(f"transformed filters of shape {tuple(u.shape)} ({u.dtype}) for {c} channels")
    b = bias.detach().float().contiguous() if bias is not None else torch.zeros(c)
    if pending is not None and (pending.weight.shape != (h, w, c) or pending.bias.shape != (h, w, c)
                                or pending.stats.shape != (n, 2)):
        raise ValueError(f"pending LayerNorm of shape {tuple(pending.weight.shape)} for a {tuple(x.shape)} map")
    return winograd_conv3x3(x, u, weight.detach(), b, *_pending_args(pending))


def is_stage_pool(pool: torch.nn.Module) -> bool:
    """Whether ``pool`` is the extractor's 3x3 average pool (stride 2, padding 1), which :func:`norm_pool` computes."""
    return isinstance(pool, torch.nn.AvgPool2d) and (pool.kernel_size, pool.stride, pool.padding) in \
        {(3, 2, 1), ((3, 3), (2, 2), (1, 1))} and not pool.ceil_mode and pool.count_include_pad \
        and pool.divisor_override is None


def _norm_pool(x: torch.Tensor, stats: torch.Tensor, ln_weight: torch.Tensor, ln_bias: torch.Tensor,
                 low: float, high: float) -> torch.Tensor:
    """The operator: the owed LayerNorm and clamp, then the 3x3 average pool (stride 2, padding 1),
    without writing the normalised map; PyTorch's own operations where the kernel cannot run."""
    n, c, h, w = x.shape
    if not (available() and x.device.type == "cpu" and x.dtype == torch.float32
            and x.is_contiguous(memory_format=torch.channels_last) and c % 16 == 0 and h % 2 == 0 and w % 2 == 0
            and ln_weight.shape == (h, w, c) and stats.shape == (n, 2)):
        y = F.avg_pool2d(_owed(x, stats, ln_weight, ln_bias, low, high), 3, stride=2, padding=1)
        return y.contiguous(memory_format=torch.channels_last)
    y = torch.empty(n, c, h // 2, w // 2, memory_format=torch.channels_last)
    with torch.profiler.record_function("exifkit::norm_pool"):
        rc = _library().exifkit_norm_pool(x.data_ptr(), n, h, w, c, stats.data_ptr(), ln_weight.data_ptr(),
                                          ln_bias.data_ptr(), low, high, y.data_ptr(), torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"norm_pool kernel failed (code {rc}) on a {tuple(x.shape)} map")
    return y


_OPS.impl("norm_pool", _norm_pool, "CompositeExplicitAutograd")
norm_pool_op = torch.ops.exifkit.norm_pool.default


@torch.library.register_fake("exifkit::norm_pool")
def _(x, stats, ln_weight, ln_bias, low, high):
    n, c, h, w = x.shape
    return x.new_empty(n, c, (h + 1) // 2, (w + 1) // 2).contiguous(memory_format=torch.channels_last)


def norm_pool(x: torch.Tensor, pending: PendingNorm, pool: torch.nn.Module) -> torch.Tensor:
    """``pool(pending.apply(x))`` without writing the normalised map out, where the kernel can."""
    n, c, h, w = x.shape
    if not (is_stage_pool(pool) and pending.weight.shape == (h, w, c) and pending.stats.shape == (n, 2)):
        return pool(pending.apply(x))
    return norm_pool_op(x, *_pending_args(pending))
