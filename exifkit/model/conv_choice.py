"""Which 3x3 convolutions CPU inference uses, the Winograd kernel's or the convolution library's,
measured once per machine and precision and remembered.

Why: the two trade places between CPUs and precisions. The Winograd kernel (``winograd.c``) needs a
quarter of the multiplications but does its tile transforms in float32 and is only as fast as the
compiler's code for this CPU; the library's direct convolutions do every multiplication, at whatever
rate its hand-tuned code reaches. Measured on the development VMs (2 cores, a first-stage layer of 64
patches, convolution + LayerNorm + ReLU): AVX2 (AMD Zen 3, 2026-12-08), float32: Winograd 18.5 ms,
direct 31 ms; AVX512-BF16 + AVX-VNNI (2026-12-08 too, another VM), bf16: Winograd about 10 ms, direct
8.5 ms. A build without AVX (128-bit vectors) loses to the library in float32 (37 against 30 ms). So
the choice is measured where it runs: one such layer each way, about half a second, once, kept in the
kernel cache (``native.cache_dir()``) under the CPU's flags, the kernels' sources, the torch version, the allocator setting
(``exifkit.runtime``) and the precision.

``EXIFKIT_INFERENCE_CONV=winograd`` or ``=direct`` decides without measuring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time

import torch
import torch.nn.functional as F

from .. import runtime
from . import native, normact, winograd

log = logging.getLogger(__name__)

ENV = "EXIFKIT_INFERENCE_CONV"
METHODS = ("winograd", "direct")
DIRECT_CHUNK = 64  # patches per call of the direct path: the library's convolutions want larger batches
_decided: dict = {}


def _key(bf16: bool) -> str:
    """The CPU, the kernels' sources, the torch build, whether glibc keeps freed memory (without it every
    fresh 64-patch map page-faults, and the direct path, whole maps per call, pays most) and the precision."""
    what = (f"{native._cpu_signature()} {torch.__version__} allocator-tuned={runtime.allocator_tuned()} "
            f"{'bf16' if bf16 else 'fp32'}").encode()
    return hashlib.sha256(what + winograd.SOURCE.read_bytes() + normact.SOURCE.read_bytes()).hexdigest()[:16]


def _record_path(bf16: bool):
    return native.cache_dir() / f"inference-convolutions-{_key(bf16)}.json"


def _ms(run) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def measure(bf16: bool = False, patches: int = DIRECT_CHUNK, channels: int = 32, size: int = 64,
            repeats: int = 5) -> dict:
    """Milliseconds of one 3x3 layer (convolution, LayerNorm, ReLU) on ``patches`` maps both ways, as
    inference runs them: the Winograd kernel in chunks of 16 with the LayerNorm applied as it reads,
    and the library's convolution on the whole batch followed by the fused LayerNorm kernel."""
    if bf16 and not winograd.bf16_available():
        raise ValueError("bf16 products need the Winograd kernel built for a CPU with AVX512-BF16")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(patches, channels, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, channels, 3, 3, generator=g) / (3 * channels ** 0.5)
    bias = torch.zeros(channels)
    affine = (torch.ones(size, size, channels), torch.zeros(size, size, channels), 1e-5)
    transformed = winograd.transform_weight(weight, bf16=bf16)
    pending = winograd.PendingNorm(torch.tensor([[0.0, 1.0]]).expand(16, 2), affine[0], affine[1])
    dtype = torch.bfloat16 if bf16 else torch.float32
    xd, wd, bd = x.to(dtype), weight.to(dtype).contiguous(memory_format=torch.channels_last), bias.to(dtype)

    def by_winograd():
        for chunk in x.split(16):
            winograd.conv3x3(chunk, weight, bias, transformed, pending if len(chunk) == 16 else None)

    def direct():
        normact.layer_norm_act(F.conv2d(xd, wd, bd, padding=1), affine)

    with torch.inference_mode():
        for _ in range(2):  # the library's first call of a shape builds its kernels
            by_winograd(), direct()
        times = {"winograd": [], "direct": []}
        for _ in range(repeats):  # alternating, so a busy moment hurts both
            times["winograd"].append(_ms(by_winograd))
            times["direct"].append(_ms(direct))
    return {name: statistics.median(t) for name, t in times.items()}


def inference_convolutions(bf16: bool) -> str:
    """"winograd" or "direct": what CPU inference in this precision uses here (decided once per process)."""
    forced = os.environ.get(ENV, "")
    if forced:
        if forced not in METHODS:
            raise ValueError(f"{ENV} must be one of {METHODS}, not {forced!r}")
        return forced
    key = _key(bf16)
    if key not in _decided:
        _decided[key] = _recall(bf16) or _measure_and_keep(bf16)
    return _decided[key]["method"]


def _recall(bf16: bool) -> dict | None:
    try:
        record = json.loads(_record_path(bf16).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("method") in METHODS else None


def _measure_and_keep(bf16: bool) -> dict:
    ms = measure(bf16)
    record = {"method": min(ms, key=ms.get), "ms": ms}
    try:
        path = _record_path(bf16)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record) + "\n")
        os.replace(tmp, path)
    except OSError as err:  # a read-only cache only costs the measurement again next process
        log.info("cannot keep the inference convolution choice in %s: %s", native.cache_dir(), err)
    log.info("%s inference convolutions on this CPU: %s (%s)", "bf16" if bf16 else "fp32", record["method"],
             ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
    return record
