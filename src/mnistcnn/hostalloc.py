"""Host (CPU) memory: keep freed tensor memory in the process so training steps do not page-fault.

Usage: `tune_host_allocator()` once at start (the mnistcnn command does this); no torch import here.

glibc serves allocations above 128 KiB with fresh mmap()s and unmaps them on free, so every CPU training step
page-faults its activations and gradients in again: on the 2-core test machine that was ~7,300 faults per
batch-128 step and up to 40 % of the step time, and a 10,000-image evaluation at batch 1000 took 2.0 s instead
of 1.0 s (docs/benchmarks.md). Serving every block from the heap (no mmap) and trimming the heap only above
1 GiB free reuses the memory instead: no faults, the same numbers. The process keeps its peak heap until exit.
"""

from __future__ import annotations

import ctypes
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
