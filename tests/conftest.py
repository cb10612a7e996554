from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
