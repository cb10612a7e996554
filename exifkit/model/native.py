"""Building and loading the fast path's C kernels (``winograd.c``, ``normact.c``).

Each kernel is plain C, built with the system C compiler for the machine it runs on and cached under
``$EXIFKIT_CACHE`` (default ``~/.cache/exifkit``); nothing is downloaded. A kernel is optional: where
there is no compiler or the build fails, :func:`load` raises and its caller falls back to PyTorch.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC"]


def cache_dir() -> Path:
    return Path(os.environ.get("EXIFKIT_CACHE") or Path.home() / ".cache" / "exifkit") / "kernels"


def _cpu_signature() -> str:
    """-march=native code must not run on another CPU, so the CPU's flags are part of the file name."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return flags


def _compile(compiler: str, source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # build aside, then rename: no torn file
        built = Path(tmp) / target.name
        run = subprocess.run([compiler, *FLAGS, str(source), "-o", str(built)], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {source.name}: {run.stderr.strip()[-500:]}")
        os.replace(built, target)


def _trusted(path: Path) -> None:
    """Refuse a kernel folder or file that another user could have planted or can change: ctypes runs
    whatever the file holds, so a shared temporary folder must be this user's alone."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise PermissionError(f"{path} is a symbolic link")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o022:
        raise PermissionError(f"{path} is writable by others (mode {info.st_mode & 0o777:o})")


def load(source: Path) -> ctypes.CDLL:
    """The compiled ``source``, built on first use and keyed by its text, the flags and the CPU."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C compiler ({compiler!r} is not on PATH)")
    key = hashlib.sha256(source.read_bytes() + " ".join([compiler, *FLAGS, _cpu_signature()]).encode())
    name = f"{source.stem}-{key.hexdigest()[:16]}.so"
    # a read-only home (some CI runners, containers) falls back to the temporary directory
    folders = [cache_dir(), Path(tempfile.gettempdir()) / f"exifkit-kernels-{getattr(os, 'getuid', lambda: 0)()}"]
    for folder in folders:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _trusted(folder)
            if not (folder / name).exists():
                _compile(compiler, source, folder / name)
            _trusted(folder / name)
            return ctypes.CDLL(str(folder / name))
        except OSError as err:
            problem = err
    raise RuntimeError(f"cannot build or load the kernel in {' or '.join(map(str, folders))}: {problem}")


def load_once(state: dict, switch: str, build: Callable[[], ctypes.CDLL], log: logging.Logger,
              fallback: str) -> ctypes.CDLL | None:
    """``build()`` once per process, kept in ``state`` with why the kernel is or is not in use
    (``state["why"]``); None where ``switch`` is set to 0 or the build fails (logged with ``fallback``)."""
    if "lib" not in state:
        state["lib"], state["why"] = None, f"disabled by {switch}=0"
        if os.environ.get(switch, "1") != "0":
            try:
                state["lib"], state["why"] = build(), "compiled"
            except (OSError, RuntimeError) as err:
                state["why"] = str(err)
                log.warning("%s: %s", fallback, err)
    return state["lib"]
