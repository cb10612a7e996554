"""LayerNorm over a whole map, then a clamp (ReLU or the stem's hardtanh) and optionally the stage's
average pool, as one autograd function with a C kernel for each direction (``normact.c``), for
training on a CPU.

Why: once the convolutions run at the multiply-add peak, a bf16 training step spends what is left in
memory-bound passes: LayerNorm forward and backward, the activation's backward, and autocast's casts of
each map to float32 and back, and the pool of each stage's last map (benchmarks/README.md, "Part by part"). The kernel reads the map in its own
precision, keeps every statistic and sum in float32 or wider, and writes its output and the input
gradient once, in the map's precision. Under bf16 autocast that is what the next convolution would
have cast it to anyway; in float32 it is the same function up to float32 rounding
(tests/model/test_normact.py compares both against PyTorch's operators in float64).

It saves the LayerNorm's input and two statistics per map, not a float32 copy of the input and the
activation's output, so a training step also keeps less memory. Where the kernel cannot run (no C
compiler, ``EXIFKIT_FUSED_NORM=0``, a GPU, a layout or dtype it does not take) :func:`layer_norm_act`
computes the same function with PyTorch's operators.
"""

from __future__ import annotations

import ctypes
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from . import native

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("normact.c")
_DTYPES = (torch.float32, torch.bfloat16)
_state: dict = {}


def _build() -> ctypes.CDLL:
    lib = native.load(SOURCE)
    ptr, i64, i32, f32 = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float
    lib.exifkit_norm_act_forward.argtypes = [ptr, i32, i64, i64, i64, i64, ptr, ptr, f32, f32, f32, i32, ptr, ptr,
                                             i32]
    lib.exifkit_norm_act_backward.argtypes = [ptr, ptr, i32, i64, i64, i64, i64, ptr, ptr, ptr, f32, f32, i32, ptr,
                                              ptr, ptr, i32]
    lib.exifkit_norm_act_forward.restype = lib.exifkit_norm_act_backward.restype = ctypes.c_int
    return lib


def _library() -> ctypes.CDLL | None:
    return native.load_once(_state, "EXIFKIT_FUSED_NORM", _build, log, "fused LayerNorm kernel unavailable, using PyTorch's")


def available() -> bool:
    return _library() is not None


def status() -> str:
    """Why the kernel is or is not in use (for benchmark records and bug reports)."""
    _library()
    return _state["why"]


def usable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool = False) -> bool:
    """A CPU map, channels-last, float32 or bf16, with float32 affine weights in its (H, W, C) order;
    with ``pool``, of even height and width."""
    n, c, h, w = x.shape
    return x.device.type == "cpu" and x.dtype in _DTYPES and x.is_contiguous(memory_format=torch.channels_last) \
        and all(t.dtype == torch.float32 and t.is_contiguous() and t.shape == (h, w, c) for t in (weight, bias)) \
        and n > 0 and not (pool and (h % 2 or w % 2)) and available()


def _run(name: str, x: torch.Tensor, *args) -> None:
    with torch.profiler.record_function(f"exifkit::{name}"):  # invisible to the profiler otherwise
        rc = getattr(_library(), f"exifkit_{name}")(*args, torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"{name} kernel failed (code {rc}, out of memory) on a {tuple(x.shape)} {x.dtype} map")


class _NormAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, low: float, high: float, pool: bool):
        n, c, h, w = x.shape
        y = x.new_empty(n, c, h // 2, w // 2) if pool else torch.empty_like(x)
        y = y.contiguous(memory_format=torch.channels_last)
        stats = torch.empty(n, 2)
        _run("norm_act_forward", x, x.data_ptr(), x.dtype == torch.bfloat16, n, h, w, c, weight.data_ptr(),
             bias.data_ptr(), eps, low, high, pool, y.data_ptr(), stats.data_ptr())
        ctx.save_for_backward(x, weight, bias, stats)
        ctx.settings = (low, high, pool)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, stats = ctx.saved_tensors
        low, high, pool = ctx.settings
        grad = grad.to(x.dtype).contiguous(memory_format=torch.channels_last)
        n, c, h, w = x.shape
        dx = torch.empty_like(x, memory_format=torch.channels_last)
        dw, db = torch.empty_like(weight), torch.empty_like(bias)
        _run("norm_act_backward", x, grad.data_ptr(), x.data_ptr(), x.dtype == torch.bfloat16, n, h, w, c,
             stats.data_ptr(), weight.data_ptr(), bias.data_ptr(), low, high, pool, dx.data_ptr(), dw.data_ptr(),
             db.data_ptr())
        return dx, dw, db, None, None, None, None


def layer_norm_act(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor, float], low: float = 0.0,
                   high: float = math.inf, pool: bool = False) -> torch.Tensor:
    """``clamp(LayerNorm(x), low, high)`` over each (C, H, W) map of a channels-last ``x``; ReLU is the
    default clamp. With ``pool``, then the stage's 3x3 average pool (stride 2, padding 1, zeros counted).
    ``norm`` holds the affine weights permuted to (H, W, C) and eps. The result has the dtype of ``x``
    from the kernel; PyTorch's fallback follows autocast's rules (float32 under autocast)."""
    weight, bias, eps = norm
    if usable(x, weight, bias, pool):
        return _NormAct.apply(x, weight, bias, float(eps), float(low), float(high), bool(pool))
    y = F.layer_norm(x.permute(0, 2, 3, 1), weight.shape, weight, bias, eps)
    y = (torch.relu_(y) if (low, high) == (0.0, math.inf) else F.hardtanh_(y, low, high)).permute(0, 3, 1, 2)
    return F.avg_pool2d(y, 3, stride=2, padding=1) if pool else y
