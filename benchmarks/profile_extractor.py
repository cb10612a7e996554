"""Where the extractor's time goes: operators by self time, and how close the convolutions get to
the machine's arithmetic peak (measured as the rate of a large float32 matrix product). The
Winograd kernel's calls appear as ``exifkit::winograd_conv3x3``; their rate is given as that of the
direct convolutions they replace, which is how they beat the peak.

Runs both modes on the paper network with 16 patches per image (reference: one image; fast: eight
images per call, as the folder evaluation batches them) and prints, per mode, the top operators and
the convolutions' GFLOP/s next to the matrix-product peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine  # noqa: E402


def matmul_peak(seconds: float = 3.0, dtype=None) -> float:
    """GFLOP/s of a 2048 x 2048 matrix product in ``dtype`` (float32 by default)."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048 ** 3 * n / (time.perf_counter() - start) / 1e9


def profile(mode: str, images: int, top: int) -> dict:
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from exifkit.model import Extractor, winograd

    torch.manual_seed(0)
    model = Extractor(mode=mode).eval()
    cfg = model.config
    x = torch.randn(images, 16, 3, 64, 64)
    model.embed(x)
    model.embed(x)
    with torch_profiler_guard():
        with torch_profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            model.embed(x)
    events = prof.key_averages()
    total_ms = sum(e.self_cpu_time_total for e in events) / 1e3
    ops = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    conv = [e for e in events if e.key == "aten::conv2d"]
    direct_ms = sum(e.cpu_time_total for e in conv) / 1e3
    direct_gflop = sum(e.flops for e in conv) / 1e9
    wino_ms = sum(e.self_cpu_time_total for e in events if e.key == winograd.PROFILER_NAME) / 1e3
    # the Winograd calls do the work of these direct convolutions (every stage map it takes)
    wino_gflop = images * sum(2 * 16 * size ** 2 * cfg.width ** 2 * 9 * n
                              for n, size in zip(cfg.convs_per_stage, cfg.stage_sizes())
                              if size >= winograd.MIN_SIZE) / 1e9 if wino_ms else 0.0
    return {"mode": mode, "images": images, "ms_per_image": total_ms / images,
            "conv_share": (direct_ms + wino_ms) / total_ms,
            "conv_gflop_per_image": (direct_gflop + wino_gflop) / images,
            "conv_gflops_per_s": (direct_gflop + wino_gflop) / ((direct_ms + wino_ms) / 1e3),
            "direct_conv_gflops_per_s": direct_gflop / (direct_ms / 1e3),
            "winograd_ms_per_image": wino_ms / images,
            "winograd_direct_equivalent_gflops_per_s": wino_gflop / (wino_ms / 1e3) if wino_ms else None,
            "top": [(e.key, round(e.self_cpu_time_total / 1e3 / images, 2), e.count) for e in ops]}


class torch_profiler_guard:
    """The profiler prints a harmless CUDA probing error on CPU-only machines; keep stderr clean."""

    def __enter__(self):
        import os

        self.fd = os.dup(2)
        self.null = open(os.devnull, "w")
        os.dup2(self.null.fileno(), 2)

    def __exit__(self, *exc):
        import os

        os.dup2(self.fd, 2)
        self.null.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    args = parser.parse_args(argv)
    peak = matmul_peak()
    runs = [profile("reference", 1, args.top), profile("fast", 8, args.top)]
    for r in runs:
        print(f"\n{r['mode']}: {r['ms_per_image']:.1f} ms per image (profiled), convolutions "
              f"{r['conv_share']:.0%} of it, {r['conv_gflop_per_image']:.2f} GFLOP per image (as direct "
              f"convolutions) at {r['conv_gflops_per_s']:.0f} GFLOP/s = {r['conv_gflops_per_s'] / peak:.0%} "
              f"of the matmul peak")
        print(f"  direct convolutions: {r['direct_conv_gflops_per_s']:.0f} GFLOP/s")
        if r["winograd_direct_equivalent_gflops_per_s"]:
            print(f"  Winograd convolutions: {r['winograd_ms_per_image']:.1f} ms per image, the work of direct "
                  f"convolutions at {r['winograd_direct_equivalent_gflops_per_s']:.0f} GFLOP/s")
        width = max(len(k) for k, _, _ in r["top"])
        print(f"  {'operator'.ljust(width)}  ms/image  calls")
        for key, ms, count in r["top"]:
            print(f"  {key.ljust(width)}  {ms:8.2f}  {count:5d}")
    print(f"\nmatmul peak (2048x2048 float32): {peak:.0f} GFLOP/s")
    report = {"benchmark": "profile_extractor", "machine": machine(), "matmul_gflops_per_s": peak, "runs": runs}
    print(json.dumps(report))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_extractor.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
