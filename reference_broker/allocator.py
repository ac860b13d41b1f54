"""Tune glibc's malloc for a broker that moves megabyte buffers all day.

Produce requests and fetch responses allocate and free buffers of up to a few megabytes at a
high rate. glibc serves allocations above its (adaptive, up to 32 MiB) mmap threshold with
fresh ``mmap`` calls and gives them back with ``munmap``, so every such buffer costs page faults
on first touch. Fixing the threshold at 64 MiB and raising the trim threshold keeps those
buffers in the heap for reuse: on a 2-core machine this took the 1 KiB produce line of
benchmarks/throughput.py from about 1.3 to 0.5 µs of broker CPU per message, and consume from
1.0 to 0.4 (docs/benchmarks.md). The price is up to 256 MiB of freed memory the process keeps
instead of returning to the system. Outside glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def tune_allocator() -> bool:
    """Apply the thresholds; returns whether the C library accepted them."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
