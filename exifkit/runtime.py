"""Process settings that decide CPU speed as much as the network does.

glibc hands a freed block of more than a few megabytes straight back to the operating system, so
the next tensor of that size touches fresh pages and takes a page fault on every 4 KiB of them. The
extractor allocates and frees maps of 8-24 MB for every batch of patches; measured on a 2-core VM,
those faults cost a third of the fast path's time (benchmarks/README.md). Raising glibc's trim and
mmap thresholds keeps freed memory in the process for reuse. The mmap threshold cannot go above
32 MiB, and training maps are larger (the first stage of a 16-image batch: 67 MiB in bf16, 134 MiB
in fp32), so glibc is also told never to serve a block by mmap: every block then comes from the
heap and is reused once freed; only what lies free at the top of the heap beyond 1 GiB goes back to
the system. That made a training step 1.5-1.7x faster in both precisions (benchmarks/README.md).
The setting is process-wide, so importing exifkit never applies it: the entry points that allocate
those maps call :func:`keep_freed_memory` themselves (the ``exifkit`` command, both trainers, the
benchmarks), on Linux with glibc only. A library user who wants it in their own process calls it
too. ``EXIFKIT_MALLOC=default`` leaves the allocator alone (jemalloc or tcmalloc through LD_PRELOAD
are also fine: they keep memory by design).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
TRIM_BYTES = 1 << 30  # keep up to 1 GiB of freed memory at the top of the heap
MMAP_BYTES = 32 << 20  # glibc's largest allowed value; with M_MMAP_MAX = 0 no block comes from mmap

_state = {"tuned": False}


def keep_freed_memory() -> bool:
    """Raise glibc's thresholds; True when they were set (idempotent)."""
    if _state["tuned"]:
        return True
    if os.environ.get("EXIFKIT_MALLOC", "") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = (libc.mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1 and libc.mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) == 1
              and libc.mallopt(M_MMAP_MAX, 0) == 1)
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    _state["tuned"] = ok
    return ok


def allocator_tuned() -> bool:
    return _state["tuned"]
