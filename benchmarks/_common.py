"""What every benchmark shares: one child process per (device, mode), timing, the two outputs.

Each mode runs in a fresh process so that its peak resident memory is its own and neither mode
inherits the other's warmed-up allocator or caches. The parent prints a readable table with the two
modes side by side and their ratio, then one JSON line for machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
MODES = ("reference", "fast")


def devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2 ** 20


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def rate(fn: Callable[[], int], device: str, args: argparse.Namespace) -> dict:
    """Items per second of ``fn`` (which returns how many items it processed): the median over at
    least ``args.repeats`` timed calls, after ``args.warmup`` untimed ones, repeating until
    ``args.seconds`` have passed."""
    seconds, min_repeats = args.seconds, args.repeats
    for _ in range(args.warmup):
        fn()
    sync(device)
    rates, start = [], time.perf_counter()
    while len(rates) < min_repeats or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        n = fn()
        sync(device)
        rates.append(n / (time.perf_counter() - t))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": len(rates)}


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "LD_PRELOAD"}}
    from exifkit.model import conv_choice, winograd
    from exifkit.runtime import allocator_tuned

    info["allocator_tuned_by_exifkit"] = allocator_tuned()
    info["winograd_kernel"] = winograd.status()  # "compiled", or why the fast path convolves directly
    if winograd.available():  # which convolutions CPU inference measured faster here, per precision
        info["inference_convolutions"] = {"fp32": conv_choice.inference_convolutions(bf16=False)}
        if winograd.bf16_available():
            info["inference_convolutions"]["bf16"] = conv_choice.inference_convolutions(bf16=True)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):  # the vector instructions the kernels and the library can use
                flags = line.split(":", 1)[1].split()
                info["cpu_vectors"] = [f for f in flags if f.startswith(("avx", "amx"))]
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run(name: str, workload: Callable[[str, str, argparse.Namespace], dict], metrics: dict[str, str],
        add_arguments: Callable[[argparse.ArgumentParser], None] | None = None, argv=None,
        modes: tuple[str, str] = MODES, compare: Callable[[dict], dict] | None = None,
        smoke: dict | None = None) -> dict:
    """The entry point of a benchmark script.

    ``workload(mode, device, args)`` returns numbers keyed like ``metrics`` (name -> unit, bigger is
    better unless the unit is MiB). The parent runs it per device and mode in child processes; the
    ratio column is the second mode over the first (fast / reference unless a script names others).
    ``compare(results of one device)`` may add a script's own verdicts to the report. ``--smoke`` runs
    every measurement once, untimed warm-up skipped, on the script's ``smoke`` settings: a check that the
    script still works (the test suite runs it), not a measurement."""
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or name).strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="time per measurement (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="at least this many timed calls (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--modes", nargs="+", default=list(modes), choices=modes)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="where the JSON goes")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DEVICE"), help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="one quick pass on tiny settings: does it run?")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in {"seconds": 0, "repeats": 1, "warmup": 0, **(smoke or {})}.items():
            setattr(args, key, value)
    if args.child:
        from exifkit.runtime import keep_freed_memory

        keep_freed_memory()  # as the exifkit command and the trainers do
        mode, device = args.child
        numbers = workload(mode, device, args)
        numbers["peak_rss_mb"] = round(peak_rss_mb(), 1)
        print(json.dumps(numbers))
        return numbers

    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    results: dict[str, dict[str, dict]] = {}
    for device in args.devices or devices():
        for mode in args.modes:
            print(f"[{name}] {device} {mode} ...", file=sys.stderr, flush=True)
            proc = subprocess.run([sys.executable, sys.modules["__main__"].__file__, *passthrough,
                                   "--child", mode, device], capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"[{name}] {device} {mode} failed (exit {proc.returncode}); its output is above")
            results.setdefault(device, {})[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    report = {"benchmark": name, "machine": machine(), "results": results, "ratio": {}}
    units = {**metrics, "peak_rss_mb": "MiB"}
    base, other = modes
    for device, by_mode in results.items():
        if {base, other} <= by_mode.keys():
            ref, fast = by_mode[base], by_mode[other]
            report["ratio"][device] = {k: round(_value(fast[k]) / _value(ref[k]), 2)
                                       for k in units if _value(ref.get(k)) and _value(fast.get(k)) is not None}
            if compare:
                report.setdefault("comparison", {})[device] = compare(by_mode)
    print(_table(name, results, report["ratio"], units, f"{other} / {base}"))
    for device, verdict in report.get("comparison", {}).items():
        print(f"{device}: " + "; ".join(f"{k} {v}" for k, v in verdict.items()))
    print(f"Winograd kernel of the fast path: {report['machine']['winograd_kernel']}")
    publish(report, args.out, name)
    return report


def publish(report: dict, out: Path, name: str) -> None:
    """The JSON line on standard output and ``out/<name>.json``: the two outputs of every script."""
    print(json.dumps(report))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")


def _value(x):
    return x["median"] if isinstance(x, dict) else x


def _fmt(x) -> str:
    if x is None:
        return "-"
    v = _value(x)
    text = f"{v:,.1f}" if isinstance(v, float) and abs(v) >= 10 else (f"{v:.3g}" if isinstance(v, float) else str(v))
    if isinstance(x, dict):
        text += f" ({x['min']:.3g}-{x['max']:.3g})"
    return text


def _table(name: str, results: dict, ratios: dict, units: dict, ratio_name: str = "fast / reference") -> str:
    lines = [f"\n{name}"]
    for device, by_mode in results.items():
        modes = list(by_mode)
        header = ["metric", "unit", *modes] + ([ratio_name] if device in ratios else [])
        rows = [header]
        for key, unit in units.items():
            row = [key, unit, *(_fmt(by_mode[m].get(key)) for m in modes)]
            if device in ratios:
                row.append(f"{ratios[device][key]:.2f}x" if key in ratios[device] else "-")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines.append(f"device: {device}")
        for i, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"
