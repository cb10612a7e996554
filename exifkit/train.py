"""Training-loop pieces shared by the pretext and binary trainers: device, distributed setup,
atomic checkpoints that resume exactly, and a metrics CSV that survives interruption."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .errors import SettingError
from .model.extractor import PRECISIONS
from .progress import progress_bar
from .runtime import keep_freed_memory


def batch_positions(n_items: int, step: int, batch: int, seed: int, rank: int = 0, world: int = 1):
    """(epoch, position in epoch, item) for this rank's share of the global batch at ``step``.

    Items are walked through one seeded permutation per epoch, as a shuffling DataLoader would; being a
    pure function of (seed, step), a resumed run draws exactly the batches an uninterrupted one draws."""
    out = []
    for pos in step * batch * world + rank * batch + np.arange(batch):
        epoch, k = divmod(int(pos), n_items)
        out.append((epoch, k, int(np.random.default_rng([seed, epoch, 0]).permutation(n_items)[k])))
    return out


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    ctx = Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx


def setup_run(device_name: str, seed: int) -> tuple[torch.device, Distributed]:
    """Allocator, device, process group (under torchrun) and seed, the same way for every trainer."""
    keep_freed_memory()
    device = resolve_device(device_name)
    ctx = init_distributed(device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    torch.manual_seed(seed)
    return device, ctx


log = logging.getLogger("exifkit.train")


def bf16_supported(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 autocast pays off here, and why not when it does not. On CPUs without native bf16
    (AVX512-BF16 or AMX) PyTorch emulates it and training gets slower, not faster."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, ""
        return False, f"{torch.cuda.get_device_name(device)} has no native bf16"
    if device.type == "cpu":
        flags = ""
        with contextlib.suppress(OSError):
            flags = Path("/proc/cpuinfo").read_text()
        if any(f in flags for f in (" avx512_bf16", " amx_bf16")):
            return True, ""
        return False, "the CPU has no native bf16 instructions (avx512_bf16 or amx_bf16)"
    return False, f"bf16 autocast is not used on {device.type}"


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" is bf16 where the hardware runs it natively, fp32 elsewhere (logged, with the reason).
    An explicit "bf16" is honoured even when emulated: it is what the user asked for."""
    if precision not in PRECISIONS:
        raise SettingError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision
    ok, why = bf16_supported(device)
    if not ok:
        log.warning("training in fp32: %s", why)
    return "bf16" if ok else "fp32"


def autocast(device: torch.device, precision: str):
    """The forward pass under bf16 autocast, or nothing. Convolutions, matrix products and attention run
    in bf16; the covariance square root runs in fp32 (see ``covariance_pool``), LayerNorm accumulates
    its statistics in fp32 inside PyTorch's kernel, and losses are taken on fp32 casts of the outputs."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


#: Settings that may differ between an interrupted run and its continuation: none changes what the
#: steps compute (``steps`` may grow, to train on; a device change is the user's call).
RESUMABLE_CHANGES = frozenset({"steps", "device", "log_every", "checkpoint_every", "validate_every"})


class ResumeMismatchError(SettingError):
    pass


def _plain(value):
    return json.loads(json.dumps(value, default=str))  # tuples and lists compare equal


def check_resumable(path: Path, state: dict, config: dict, defaults: dict | None = None) -> None:
    """Refuse to continue ``state`` under a ``config`` that would make a different run. A setting the
    checkpoint does not record (added to the kit after it was written) matches its value in ``defaults``."""
    saved = state.get("config")
    if saved is None:
        raise ResumeMismatchError(f"{path}: records no configuration, so a resume cannot be checked; start a fresh run")
    saved, config, defaults = _plain(saved), _plain(config), _plain(defaults or {})
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    changed = sorted(k for k in set(saved) | set(config) if k not in RESUMABLE_CHANGES and saved.get(k) != config.get(k))
    if changed:
        said = "; ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {config.get(k)!r} now" for k in changed)
        raise ResumeMismatchError(f"{path}: cannot resume with other settings ({said}); restore them, or "
                                  "train a fresh run into another folder")
    if config.get("steps", math.inf) < state["step"]:
        raise ResumeMismatchError(f"{path}: already at step {state['step']}, past steps={config['steps']}")


def resume_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 config: dict | None = None, defaults: dict | None = None) -> int:
    """Restore weights, optimiser and RNG from ``path``; the step to continue from (0 without one).
    With the run's ``config`` (as stored in its checkpoints), a checkpoint of other settings is refused."""
    if not Path(path).exists():
        return 0
    state = load_checkpoint(path)
    if config is not None:
        check_resumable(Path(path), state, config, defaults)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return int(state["step"])


def run_segments(path: Path, start: int) -> list[list[int]]:
    """The (first, last) steps each earlier process of a resumed run trained, from its checkpoint; a
    new checkpoint appends this process's own. A run that resumed properly shows its interruptions."""
    if not start:
        return []
    return [list(s) for s in load_checkpoint(path).get("segments", [[0, start]])]


def trained_checkpoint(run_dir: str | Path) -> Path:
    """The weights a finished run stands for: the step chosen on validation data (best.pt) when the run
    validated, else the last step."""
    run_dir = Path(run_dir)
    best = run_dir / "best.pt"
    return best if best.exists() else run_dir / "last.pt"


def keep_if_best(path: Path, score: float, state: dict) -> None:
    """Write ``state`` (with its ``validation_score``) to ``path`` when ``score`` beats the one stored there."""
    previous = load_checkpoint(path)["validation_score"] if Path(path).exists() else -math.inf
    if score > previous:
        save_checkpoint(path, {**state, "validation_score": score})


def close_distributed(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> Path:
    """Write through a temporary file so an interruption never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict:
    """Tensors and plain containers only (``weights_only=True``): loading runs no code."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


class MetricsLog:
    """Rows appended to a CSV; on resume, rows past the resumed step are dropped so the log matches."""

    def __init__(self, path: Path, fields: list[str], resume_step: int | None = None):
        self.path, self.fields = Path(path), fields
        if resume_step is None or not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="") as fh:
                csv.DictWriter(fh, fieldnames=fields).writeheader()
            return
        with self.path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with self.path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.fields).writerow({k: row.get(k, "") for k in self.fields})


# ---------------------------------------------------------------- the one training loop

@dataclass
class Session:
    """One process's part of a run: where it writes, on which device, in which precision, from which
    step, and what earlier processes of the run trained (``segments``)."""

    out: Path
    device: torch.device
    ctx: Distributed
    precision: str
    start: int = 0
    earlier: list = None
    resumed: bool = False

    @classmethod
    def open(cls, out_dir, device: str, seed: int, precision: str) -> "Session":
        device, ctx = setup_run(device, seed)
        return cls(Path(out_dir), device, ctx, resolve_precision(precision, device))

    def resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: dict, defaults: dict,
               resume: bool, progress: bool = True) -> int:
        """Continue from ``last.pt`` when asked (weights, optimiser and RNG; other settings refused), and
        clear a fresh run's kept steps so it never inherits an earlier run's best."""
        path = self.out / "last.pt"
        self.resumed = resume
        self.start = resume_state(path, model, optimizer, config, defaults) if resume else 0
        self.earlier = run_segments(path, self.start)
        if resume and not self.start and self.ctx.is_main and progress:
            print(f"no checkpoint at {path}; starting from step 0")
        if self.ctx.is_main and not self.start:
            for stale in ("best.pt", "lowest_loss.pt"):
                (self.out / stale).unlink(missing_ok=True)
        return self.start

    def log(self, name: str, fields: list[str]) -> MetricsLog | None:
        """A CSV of the run (rank 0 only), cut back to the resumed step."""
        if not self.ctx.is_main:
            return None
        return MetricsLog(self.out / name, fields, resume_step=self.start if self.resumed else None)


def due(done: int, every: int, steps: int) -> bool:
    """Whether something done every ``every`` steps (and at the last one) happens after step ``done``."""
    return every > 0 and (done % every == 0 or done == steps)


@dataclass
class Every:
    """A periodic task of a trainer (validation, a monitored loss), called with the step just done."""

    every: int
    run: object


def run_loop(session: Session, *, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches,
             step, steps: int, items_per_step: int, unit: str, fields: list[str], payload, log_every: int,
             checkpoint_every: int, periodic: tuple[Every, ...] = (), progress: bool = True) -> float:
    """Steps ``session.start`` to ``steps`` of a run, the same for every trainer: each batch moved to the
    device and handed to ``step(net, batch)`` (which returns the numbers to log, as tensors), a row of
    ``metrics.csv`` every ``log_every`` steps with the throughput in ``unit``/s, ``last.pt`` every
    ``checkpoint_every`` steps (``payload(step)`` plus the optimiser, RNG, precision and segments),
    then the ``periodic`` tasks. Under torchrun the model is wrapped in DDP and the replicas are
    checked identical at the end. Returns the seconds the steps took."""
    ctx, out, start = session.ctx, session.out, session.start
    net = torch.nn.parallel.DistributedDataParallel(model) if ctx.enabled else model
    log = session.log("metrics.csv", fields)
    rate_field = f"{unit}s_per_s"

    def checkpoint(done: int) -> None:
        if ctx.is_main:
            save_checkpoint(out / "last.pt", {**payload(done), "optimizer": optimizer.state_dict(), "rng": rng_state(),
                                              "precision_used": session.precision,
                                              "segments": session.earlier + [[start, done]]})

    net.train()
    t0 = window_t = time.perf_counter()
    window_items = 0
    bar = progress_bar(range(start, steps), initial=start, total=steps, desc=name,
                       disable=not (progress and ctx.is_main))
    for done, batch in zip((s + 1 for s in bar), batches):
        batch = {k: v.to(session.device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        numbers = step(net, batch)
        window_items += items_per_step
        if log is not None and due(done, log_every, steps):
            now = time.perf_counter()
            rate = window_items / (now - window_t)
            values = {k: float(v) for k, v in numbers.items()}
            log.append({"step": done, **values, rate_field: round(rate, 3), "seconds": round(now - t0, 2)})
            bar.set_postfix({"loss": f"{values['loss']:.3f}", f"{unit}_s": f"{rate:.1f}"})
            window_t, window_items = now, 0
        if due(done, checkpoint_every, steps):
            checkpoint(done)
        for task in periodic:
            if due(done, task.every, steps):
                task.run(done)
    batches.close()  # stops the DataLoader workers of a streamed run
    seconds = time.perf_counter() - t0
    if ctx.enabled:
        check_replicas(model, ctx)
        if ctx.is_main:
            save_checkpoint(out / "last.pt", {**load_checkpoint(out / "last.pt"), "replicas_checked": ctx.world_size})
    close_distributed(ctx)
    return seconds


def check_replicas(model: torch.nn.Module, ctx: Distributed) -> None:
    """DDP keeps replicas identical by construction; verify it, since a silent divergence would
    make the saved rank-0 weights unrepresentative."""
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
    digest = torch.tensor([flat.sum().item(), (flat * torch.arange(len(flat), dtype=torch.float64)).sum().item()])
    gathered = [torch.zeros_like(digest) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, digest)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        raise RuntimeError(f"replicas diverged: weight digests {[g.tolist() for g in gathered]}")
