"""Host (CPU) memory: keep freed tensor memory in the process so training steps do not page-fault, and let a
command end without walking every object torch created.

Usage: `tune_host_allocator(); skip_exit_collection()` once at start (the mnistcnn command does both); no torch
import here.

glibc serves allocations above 128 KiB with fresh mmap()s and unmaps them on free, so every CPU training step
page-faults its activations and gradients in again: on the 2-core test machine that was ~7,300 faults per
batch-128 step and up to 40 % of the step time, and a 10,000-image evaluation at batch 1000 took 2.0 s instead
of 1.0 s (docs/benchmarks.md). Serving every block from the heap (no mmap) and trimming the heap only above
1 GiB free reuses the memory instead: no faults, the same numbers. The process keeps its peak heap until exit.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import platform
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
TRIM_THRESHOLD = 1 << 30


def tune_host_allocator() -> bool:
    """Set glibc's malloc to reuse freed memory; False where that does not apply (not Linux with glibc)."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        no_mmap = libc.mallopt(M_MMAP_MAX, 0) == 1
        no_trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        return False
    return no_mmap and no_trim


def skip_exit_collection() -> None:
    """Freeze every object at exit so the interpreter's final garbage collections skip them.

    After `import torch` (and torch._dynamo, which the first optimizer imports) a process holds ~320,000
    tracked objects; walking them in the collections of interpreter shutdown took 1.8-2.5 s of every command's
    wall time on the 2-core test machine (docs/benchmarks.md), for a process that is ending anyway. The
    objects are still released; files are closed by the code that writes them, never by the collector.
    """
    atexit.register(gc.freeze)  # registered first, so it runs after every other exit handler
