"""Where the time goes, part by part, against this CPU's peaks measured in the same run.

Each workload runs in a process of its own. One inference batch (the fast path's ``embed`` on 4 images of 16 patches of 64 px) and one pretext
training step (8 pairs, forward, backward and Adam), each in float32 and in the kit's default
precision, under PyTorch's profiler. Every operator's self time is put into a part of the network
(convolutions, LayerNorm, activations, pooling, matrix products of the covariance square root and the
Transformer, elementwise arithmetic, copies and casts, the optimiser). Two peaks are measured first:
the rate of a 2048 x 2048 matrix product in float32 and in bf16 (the arithmetic peak), and the rate of
a 256 MiB copy (the memory bandwidth). A compute-bound part is given as the fraction of the arithmetic
peak of its precision that it reaches (from the profiler's FLOP counts, or the convolution's shapes for
its backward pass); a memory-bound part as the fraction of the copy bandwidth, from the bytes its
inputs and output occupy (an estimate: a kernel that reads its input twice is credited once).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine  # noqa: E402
from profile_extractor import matmul_peak, torch_profiler_guard  # noqa: E402

PARTS = {  # operator name -> part; what is not here goes to "other"
    "convolutions": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
                     "exifkit::winograd_conv3x3", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward",
                     "aten::slow_conv_transpose2d", "aten::_nnpack_spatial_convolution"),
    "LayerNorm": ("aten::native_layer_norm", "aten::native_layer_norm_backward",  # with the kit's kernel, the
                  "exifkit::norm_act_forward", "exifkit::norm_act_backward"),  # activation and pool are in it
    "activations": ("aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_", "aten::threshold_backward",
                    "aten::hardtanh_backward", "aten::gelu", "aten::gelu_backward", "aten::clamp", "aten::clamp_"),
    "pooling": ("aten::avg_pool2d", "aten::avg_pool2d_backward", "exifkit::norm_pool"),
    "matrix products": ("aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm",
                        "aten::_scaled_dot_product_flash_attention_for_cpu",
                        "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
    "softmax and losses": ("aten::_softmax", "aten::_softmax_backward_data", "aten::_log_softmax",
                           "aten::_log_softmax_backward_data", "aten::nll_loss_forward", "aten::nll_loss_backward"),
    "optimiser": ("aten::_foreach_", "aten::_fused_adam", "aten::addcdiv_", "aten::addcmul_", "aten::lerp_",
                  "aten::sqrt", "Optimizer."),
    "copies and casts": ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::empty",
                         "aten::empty_strided", "aten::zeros", "aten::zero_", "aten::fill_", "aten::cat",
                         "aten::stack", "aten::index", "aten::index_put_", "aten::_index_put_impl_"),
    "elementwise": ("aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::sub", "aten::sub_", "aten::div",
                    "aten::div_", "aten::mean", "aten::sum", "aten::rsub", "aten::neg", "aten::pow", "aten::sqrt",
                    "aten::exp", "aten::log", "aten::abs", "aten::sign", "aten::tanh", "aten::sigmoid",
                    "aten::where", "aten::gt", "aten::lt", "aten::eq", "aten::ne", "aten::ge", "aten::le",
                    "aten::mse_loss", "aten::mse_loss_backward", "aten::einsum", "aten::diagonal", "aten::expand"),
}
COMPUTE_BOUND = ("convolutions", "matrix products")
MEMORY_BOUND = ("LayerNorm", "activations", "pooling", "copies and casts", "elementwise", "optimiser")
BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float64: 8, torch.float16: 2}


def part_of(key: str) -> str:
    for part, names in PARTS.items():
        if any(key == n or (n.endswith("_") and key.startswith(n)) or (n.endswith(".") and key.startswith(n))
               for n in names):
            return part
    return "other"


def copy_rate(seconds: float) -> float:
    """GB/s of reading and writing a 256 MiB float32 tensor."""
    a, b = torch.randn(64 << 20), torch.empty(64 << 20)
    b.copy_(a)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        b.copy_(a)
        n += 1
    return 2 * a.numel() * 4 * n / (time.perf_counter() - start) / 1e9


def _numel(shape) -> int:
    return math.prod(shape) if shape else 0


def _conv_flops(key: str, shapes) -> float:
    """Multiply-adds x 2 of one call of a convolution operator, from its tensor arguments' shapes: the
    forward from (input, weight) (same-size output for odd kernels, as every one here pads), the
    Winograd kernel's as the direct convolution it replaces, the backward (both gradients) as twice
    the forward from (grad_output, input, weight)."""
    shapes = [s for s in (shapes or [])]
    if key == "aten::convolution_backward" and len(shapes) >= 3 and len(shapes[0]) == 4 and len(shapes[2]) == 4:
        (n, o, ho, wo), (_, c, _, _), (_, _, kh, kw) = shapes[0], shapes[1], shapes[2]
        return 2 * (2 * n * o * ho * wo * c * kh * kw)
    weight = (shapes[2] if len(shapes) > 2 else []) if key == "exifkit::winograd_conv3x3" else (shapes[1] if len(shapes) > 1 else [])
    if not shapes or len(shapes[0]) != 4 or len(weight) != 4:
        return 0.0
    (n, c, h, w), (o, _, kh, kw) = shapes[0], weight
    ho, wo = (h, w) if kh % 2 else (h - kh + 1, w - kw + 1)
    return 2 * n * o * ho * wo * c * kh * kw


def timed_ms(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e3


def profile_call(fn, precision_dtype: torch.dtype) -> dict:
    fn()
    wall = timed_ms(fn)
    with torch_profiler_guard():
        with torch_profile(activities=[ProfilerActivity.CPU], with_flops=True, record_shapes=True) as prof:
            fn()
    parts: dict[str, dict] = {}
    for e in prof.key_averages(group_by_input_shape=True):
        part = part_of(e.key)
        p = parts.setdefault(part, {"ms": 0.0, "flop": 0.0, "bytes": 0.0, "ops": {}})
        ms = e.self_cpu_time_total / 1e3
        p["ms"] += ms
        p["ops"][e.key] = p["ops"].get(e.key, 0.0) + ms
        if part == "convolutions":
            p["flop"] += _conv_flops(e.key, e.input_shapes) * e.count
        elif part == "matrix products":
            p["flop"] += e.flops or 0
        shapes = [s for s in (e.input_shapes or []) if s]
        if shapes:  # inputs read, and an output the size of the first written
            p["bytes"] += (sum(_numel(s) for s in shapes) + _numel(shapes[0])) * BYTES.get(precision_dtype, 4) * e.count
    total = sum(p["ms"] for p in parts.values())
    for p in parts.values():
        p["share"] = p["ms"] / total
        p["ops"] = dict(sorted(p["ops"].items(), key=lambda kv: -kv[1])[:4])
    return {"timed_ms": wall, "profiled_ms": total, "parts": dict(sorted(parts.items(), key=lambda kv: -kv[1]["ms"]))}


def with_peaks(result: dict, arithmetic: float, bandwidth: float) -> dict:
    for part, p in result["parts"].items():
        seconds = p["ms"] / 1e3
        if part in COMPUTE_BOUND and p["flop"]:
            p["gflops_per_s"] = p["flop"] / seconds / 1e9
            p["fraction_of_peak"] = p["gflops_per_s"] / arithmetic
            p["bound"] = "arithmetic"
        elif part in MEMORY_BOUND and p["bytes"] and seconds:
            p["gb_per_s_estimate"] = p["bytes"] / seconds / 1e9
            p["fraction_of_peak"] = p["gb_per_s_estimate"] / bandwidth
            p["bound"] = "memory"
    return result


def workloads(pairs: int):
    """(name, precision, dtype of the heavy arithmetic, call) for the four profiled calls."""
    from exifkit.data.images import load_rgb
    from exifkit.exif.read import read_many
    from exifkit.model import Extractor, ExtractorConfig
    from exifkit.model.heads import head_sizes
    from exifkit.patches import random_patches, to_tensor
    from exifkit.pretext import PretextConfig, PretextModel, load_photos, make_batch, pair_batch, pretext_step
    from exifkit.train import resolve_precision
    from training import demo_cameras

    import numpy as np

    torch.manual_seed(0)
    _, cameras = demo_cameras()
    cameras = cameras[:32]
    rng = np.random.default_rng(0)
    sets = to_tensor(np.stack([random_patches(load_rgb(p), 16, 64, rng) for p in cameras[:4]]))
    photos = load_photos(cameras, read_many(cameras), max_side=1024)
    config = PretextConfig(extractor=ExtractorConfig(), batch_pairs=pairs)
    first, second, seeds = pair_batch(len(photos), 0, pairs, config.seed)
    batch = make_batch(photos, first, second, seeds, config.n_patches, 64)
    sizes = head_sizes({k: len(v.classes) for k, v in photos.labels.vocabularies.items()})
    default = resolve_precision("auto", torch.device("cpu"))

    def inference(precision):
        network = Extractor(precision=precision).eval()
        return lambda: network.embed(sets)

    def training(precision):
        model = PretextModel(config.extractor, sizes).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        return lambda: pretext_step(model, optimizer, batch, config, precision)

    inferred = Extractor(precision="auto").inference_precision
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}
    return [(f"inference, {len(sets)} x 16 patches", "fp32", dtype["fp32"], lambda: inference("fp32")),
            (f"inference, {len(sets)} x 16 patches", inferred, dtype[inferred], lambda: inference("auto")),
            (f"pretext step, {pairs} pairs", "fp32", dtype["fp32"], lambda: training("fp32")),
            (f"pretext step, {pairs} pairs", default, dtype[default], lambda: training(default))]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--peak-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    parser.add_argument("--smoke", action="store_true", help="tiny settings: does it run?")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.pairs, args.peak_seconds = 1, 0.2
    from exifkit.runtime import keep_freed_memory

    keep_freed_memory()
    if args.child is not None:
        name, precision, dtype, make = workloads(args.pairs)[args.child]
        print(json.dumps({"workload": name, "precision": precision, **profile_call(make(), dtype)}))
        return {}
    peaks = {"fp32_matmul_gflops_per_s": matmul_peak(args.peak_seconds, torch.float32),
             "bf16_matmul_gflops_per_s": matmul_peak(args.peak_seconds, torch.bfloat16),
             "copy_gb_per_s": copy_rate(args.peak_seconds)}
    runs = []
    for index in range(4):  # each in a process of its own, so no workload inherits another's heap
        proc = subprocess.run([sys.executable, __file__, "--child", str(index), "--pairs", str(args.pairs)],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"[profile_parts] workload {index} failed (exit {proc.returncode}); its output is above")
        run = json.loads(proc.stdout.strip().splitlines()[-1])
        dtype = torch.bfloat16 if run["precision"] == "bf16" else torch.float32
        arithmetic = peaks["bf16_matmul_gflops_per_s" if dtype == torch.bfloat16 else "fp32_matmul_gflops_per_s"]
        runs.append(with_peaks(run, arithmetic, peaks["copy_gb_per_s"]))
    print(f"\npeaks: float32 matmul {peaks['fp32_matmul_gflops_per_s']:.0f} GFLOP/s, bf16 matmul "
          f"{peaks['bf16_matmul_gflops_per_s']:.0f} GFLOP/s, copy {peaks['copy_gb_per_s']:.1f} GB/s")
    for r in runs:
        print(f"\n{r['workload']} ({r['precision']}): {r['timed_ms']:.0f} ms timed, {r['profiled_ms']:.0f} ms profiled")
        print(f"  {'part':<20} {'ms':>8} {'share':>6}  rate (fraction of peak)")
        for part, p in r["parts"].items():
            if "gflops_per_s" in p:
                rate = f"{p['gflops_per_s']:.0f} GFLOP/s ({p['fraction_of_peak']:.0%} of the arithmetic peak)"
            elif "gb_per_s_estimate" in p:
                rate = f"~{p['gb_per_s_estimate']:.1f} GB/s ({p['fraction_of_peak']:.0%} of the copy rate)"
            else:
                rate = ""
            print(f"  {part:<20} {p['ms']:8.1f} {p['share']:6.0%}  {rate}")
    report = {"benchmark": "profile_parts", "machine": machine(), "peaks": peaks, "runs": runs}
    print(json.dumps(report))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_parts.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
