"""Resident memory of training: the peak within a pretext and a binary step, and whether it grows.

The paper network on the demo photos, the trainers' own step functions and batches (as in
``training.py``), float32 against bf16 autocast, each precision in its own process under the kit's
allocator setting. For each trainer the peak resident set (Linux's VmHWM, reset before the trainer's
first step through ``/proc/self/clear_refs``) over ``--steps`` steps, and the resident set after the
warm-up steps, the highest in the later half of the steps against the earlier half: a steady state shows
no growth, a leak (a tensor kept per step, a cache keyed on something that changes) a later maximum
above the earlier one. ``--steps 1000`` is the soak; the default is a short look.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run  # noqa: E402

MODES = ("fp32", "bf16")


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=60, help="steps per trainer (1000 for the soak)")
    parser.add_argument("--settle", type=int, default=10, help="steps before the growth baseline")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per pretext step")
    parser.add_argument("--binary-images", type=int, default=16, help="images per binary step")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def track(step, steps: int, settle: int) -> dict:
    """Peak of the resident set over ``steps`` calls of ``step``, and its growth: the highest resident
    set in the second half of the steps after ``settle`` minus the highest in the first half. The heap
    breathes by a step's worth of maps as glibc trims it, so a single reading would show noise as
    growth or hide it; a leak raises the later maximum."""
    _reset_peak()
    trace = []
    for i in range(steps):
        step(i)
        trace.append(round(_status_mb("VmRSS"), 1))
    after = trace[min(settle, steps - 1):]
    half = max(1, len(after) // 2)
    growth = max(after[half:] or after) - max(after[:half])
    return {"peak_mb": round(_status_mb("VmHWM"), 1), "settled_mb": after[0], "last_mb": trace[-1],
            "growth_mb": round(growth, 1), "trace_every_10": trace[::10]}


def workload(precision: str, device: str, args) -> dict:
    from training import binary_trainer, demo_cameras, pretext_trainer

    if device != "cpu":
        raise SystemExit("memory.py measures the resident memory of CPU training; run it with --devices cpu")
    store, cameras = demo_cameras()
    numbers = {"pretext": track(pretext_trainer("fast", device, args, precision, cameras), args.steps, args.settle)}
    numbers["binary"] = track(binary_trainer("fast", device, args, precision, store, cameras), args.steps, args.settle)
    flat = {f"{phase}_{k}": v for phase, d in numbers.items() for k, v in d.items() if k != "trace_every_10"}
    flat["traces_every_10_steps"] = {phase: d["trace_every_10"] for phase, d in numbers.items()}
    return flat


def verdict(by_mode: dict) -> dict:
    """Steady when no run's later maximum is more than 64 MiB above its earlier one."""
    grown = {f"{mode} {phase}": r[f"{phase}_growth_mb"] for mode, r in by_mode.items() for phase in ("pretext", "binary")}
    return {"growth_mb": grown, "steady": all(v <= 64 for v in grown.values())}


if __name__ == "__main__":
    run("memory", workload, {f"{phase}_{k}": "MiB" for phase in ("pretext", "binary")
                             for k in ("peak_mb", "settled_mb", "last_mb", "growth_mb")},
        add_arguments, modes=MODES, compare=verdict, smoke={"steps": 2, "settle": 1, "pairs": 1, "binary_images": 2})
