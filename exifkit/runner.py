"""Execute the numbered notebooks in order with papermill and record how the run was made.

The reviewed source of each notebook is its jupytext ``py:percent`` file; the runner builds the
notebook from it, so a stale ``.ipynb`` can never be what runs.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .config import Profile
from .data.manifest import sha256_file
from .errors import MissingInputError
from .progress import bars_disabled

PROVENANCE_PACKAGES = ("exifkit", "torch", "torchvision", "numpy", "pillow", "piexif", "scikit-learn",
                       "pandas", "seaborn", "matplotlib", "papermill", "jupytext", "pooch")


class NotebookFailed(RuntimeError):
    """A notebook stopped at a cell; names the notebook, the cell and the error."""


@dataclass
class RunRecord:
    notebook: str
    output: Path
    seconds: float
    status: str = "ok"
    error: str = ""


@dataclass
class RunResult:
    profile: str
    parameters: dict = field(default_factory=dict)
    records: list[RunRecord] = field(default_factory=list)
    provenance: Path | None = None


def notebook_sources(root: Path, names=()) -> list[Path]:
    """The numbered ``notebooks/NN_*.py`` files, in order, optionally limited to ``names``."""
    found = sorted((root / "notebooks").glob("[0-9][0-9]_*.py"))
    if names:
        wanted = set(names)
        found = [p for p in found if p.stem in wanted or p.stem[:2] in wanted]
        missing = wanted - {p.stem for p in found} - {p.stem[:2] for p in found}
        if missing:
            raise MissingInputError(f"no notebook for {sorted(missing)} under {root / 'notebooks'}")
    return found


def git_state(root: Path) -> dict[str, object]:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _failure_message(nb_name: str, exc: Exception, executed: Path) -> str:
    import nbformat

    where = "an unknown cell"
    try:
        nb = nbformat.read(executed, as_version=4)
        for i, cell in enumerate(nb.cells):
            if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                where = f"cell {i} (`{first[:70]}`)"
                break
    except Exception:  # the executed copy may not exist if the kernel never started
        pass
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return f"{nb_name} failed at {where}: {ename}: {str(evalue).rstrip('.')}. Executed copy: {executed}"


def run_notebooks(profile: Profile, names=(), output_dir: Path | None = None,
                  kernel: str = "python3", progress: bool = True, parameters: dict | None = None) -> RunResult:
    """Run notebooks into ``results/<profile>/``; stop at the first failing cell and say where."""
    import jupytext
    import papermill as pm

    root = profile.root
    out = Path(output_dir) if output_dir else profile.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    sources = notebook_sources(root, names or profile.notebooks)
    result = RunResult(profile.name)
    started = datetime.now(timezone.utc)
    try:  # the kernels run in the checkout: a relative path keeps this machine's layout out of the outputs
        shown = out.resolve().relative_to(Path(root).resolve())
    except ValueError:
        shown = out.resolve()
    params = {"profile": profile.name, "results_dir": str(shown), "seed": profile.seed, **(parameters or {})}
    result.parameters = params
    failure = None
    for src in sources:
        nb = jupytext.read(src)
        nb.metadata.setdefault("kernelspec", {"name": kernel, "display_name": "Python 3", "language": "python"})
        staged = out / ".staged" / f"{src.stem}.ipynb"
        staged.parent.mkdir(parents=True, exist_ok=True)
        jupytext.write(nb, staged)
        executed = out / f"{src.stem}.ipynb"
        t0 = time.perf_counter()
        if progress:
            print(f"[exifkit] running {src.name} (profile {profile.name})", flush=True)
        try:
            with bars_disabled(), tempfile.TemporaryDirectory(prefix="exifkit-kernel-") as sockets:
                pm.execute_notebook(str(staged), str(executed), parameters=params, kernel_name=kernel,
                                    cwd=str(root), progress_bar=False, log_output=False,
                                    kernel_manager_class=_local_kernels(Path(sockets)))
            result.records.append(RunRecord(src.stem, executed, time.perf_counter() - t0))
        except Exception as exc:  # papermill raises its own error type; keep the cause readable
            message = _failure_message(src.stem, exc, executed)
            result.records.append(RunRecord(src.stem, executed, time.perf_counter() - t0, "failed", message))
            failure = NotebookFailed(message)
            break
        finally:
            staged.unlink(missing_ok=True)
        if progress:
            print(f"[exifkit] {src.stem} done in {result.records[-1].seconds:.1f} s", flush=True)
    partial = {src.stem for src in sources} != set(profile.notebooks)
    result.provenance = write_provenance(profile, result, out, started, partial=partial)
    if failure:
        raise failure
    return result


def _local_kernels(sockets: Path):
    """Kernel managers whose kernels talk over local sockets in ``sockets``: a kernel never listens on TCP
    (which every notebook would warn about, as anyone on the machine could connect to it). The client
    still creates, owns and shuts down each kernel."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _local_transport(self):
            return "ipc"

        @default("ip")
        def _socket_prefix(self):
            return str(sockets / "kernel")

    return LocalKernelManager


def _device_description() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
        return f"cpu ({torch.get_num_threads()} threads)"
    except Exception:  # provenance must never stop a run
        return "unknown"


def write_provenance(profile: Profile, result: RunResult, out: Path, started: datetime, partial: bool = False) -> Path:
    """``provenance.json`` of the run. A run of some notebooks into a folder that already has a record
    is appended to it under ``reruns``, so the record still describes every executed notebook there."""
    manifest = profile.manifest_path()
    record = {
        "profile": profile.name,
        "seed": profile.seed,
        "parameters": result.parameters,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(profile.root),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": _device_description(),
        "packages": package_versions(),
        "manifests": {manifest.name: sha256_file(manifest) if manifest.is_file() else "missing"},
        "notebooks": [{"name": r.notebook, "output": str(r.output.relative_to(out)) if r.output.is_relative_to(out)
                       else str(r.output), "seconds": round(r.seconds, 2), "status": r.status, "error": r.error}
                      for r in result.records],
    }
    path = out / "provenance.json"
    if partial and path.is_file():
        try:
            base = json.loads(path.read_text())
        except json.JSONDecodeError:
            base = None
        if isinstance(base, dict):
            base.setdefault("reruns", []).append(record)
            record = base
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
