import subprocess
import sys

import pytest

PROBE = """
import exifkit.runtime as r, exifkit, exifkit.detect, exifkit.pretext, exifkit.binary
print(r.allocator_tuned())
from exifkit.train import setup_run
setup_run("cpu", 0)
print(r.allocator_tuned())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_importing_exifkit_leaves_the_allocator_alone_and_the_trainers_tune_it_unless_told_not_to():
    import os

    tuned = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert tuned.stdout.split() == ["False", "True"]  # import: untouched; a trainer's setup: tuned
    env = {**os.environ, "EXIFKIT_MALLOC": "default"}
    plain = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    assert plain.stdout.split() == ["False", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_the_exifkit_command_tunes_the_allocator(monkeypatch):
    import exifkit.cli as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1))
    assert cli.main(["data", "list"]) == 0
    assert calls == [1]


FAULTS = """
import resource, torch, exifkit.runtime
exifkit.runtime.keep_freed_memory()
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, above the largest mmap threshold glibc allows
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(*[faults() for _ in range(24)])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_freed_training_sized_tensors_are_reused_without_page_faults():
    """Training maps are larger than 32 MiB. Once the heap has grown to hold them (the first 4-9 here),
    allocating one again must not touch fresh pages (16,384 faults of 4 KiB for 64 MiB): those
    faults made training steps 1.5-1.7x slower."""
    import os

    pages = (64 << 20) // 4096
    tuned = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True)
    assert sum(map(int, tuned.stdout.split()[-4:])) < pages // 10, tuned.stdout
    env = {**os.environ, "EXIFKIT_MALLOC": "default"}
    plain = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True, env=env)
    assert min(map(int, plain.stdout.split()[-4:])) > pages // 2, plain.stdout  # the check tells the two apart
