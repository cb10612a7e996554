"""Training-loop pieces shared by the pretext and binary trainers: device, distributed setup,
atomic checkpoints that resume exactly, and a metrics CSV that survives interruption."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .errors import SettingError
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


PRECISIONS = ("auto", "bf16", "fp32")
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
