from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker (and every process it starts: notebook kernels, benchmark and DDP
    children, which inherit the variable) gets its share of the cores as threads. Two workers of two
    OpenMP threads each on two cores spin against each other: on a clean-clone run the tiny notebooks took
    700 s beside the other worker's tests against about 200 s alone. Set OMP_NUM_THREADS to choose."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))


_share_the_cores()
SHARED = (ROOT.parent / "shared" / "data").resolve()
IN_CI = bool(os.environ.get("CI"))


def require_tool(name: str) -> str:
    """A system tool the project installs in .ci/run: missing in CI is a failure, elsewhere a visible skip."""
    exe = shutil.which(name)
    if exe is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} not installed (apt-get install it; .ci/run does)")
    return exe


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data beside the checkout (../shared/data): missing in CI is a failure, elsewhere a
    visible skip. Tests that ask for it are marked ``needs_shared``."""
    if not (SHARED / "manifest.csv").is_file():
        if IN_CI:
            pytest.fail(f"{SHARED} is expected beside the checkout in CI")
        pytest.skip(f"{SHARED} not present")
    return SHARED


def pytest_collection_modifyitems(items):
    for item in items:
        if "shared" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_shared)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def demo_store():
    from exifkit.config import data_store, load_profile

    return data_store(load_profile("demo", root=ROOT))


@pytest.fixture(scope="session")
def demo_camera_paths(demo_store) -> list[Path]:
    return [demo_store.path(e) for e in demo_store.manifest if e.kind == "camera"]


@pytest.fixture(autouse=True)
def _threads_restored():
    """A test that changes PyTorch's thread count must put it back: later tests on the same worker
    (timings, bf16 numerics) would otherwise run under its setting."""
    import torch

    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before, f"the test left torch at {torch.get_num_threads()} threads, not {before}"
