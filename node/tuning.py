"""Process tuning applied at start: glibc's allocator thresholds (PERFORMANCE.md's trap).

By default glibc serves every allocation above 128 KiB with a fresh mmap and returns it with
munmap, so each ~256 KiB shard block the node reads or receives costs a mapping and page
faults. Raising the mmap and trim thresholds keeps such buffers in the heap: measured here, the
read path (pread, verify, serialize) went from ~1.5 to ~4 GB per CPU-second (bench/node.py
compares the two on every run).
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["ENV_MALLOC_TUNING", "tune_malloc"]

ENV_MALLOC_TUNING = "TESSERA_NODE_MALLOC_TUNING"  # "off" keeps glibc's defaults
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def tune_malloc() -> bool:
    """Set both thresholds (together: the mmap one alone was worse) unless the operator set
    MALLOC_* themselves or turned tuning off; False where the C library is not glibc."""
    if os.environ.get(ENV_MALLOC_TUNING, "on").lower() in ("off", "0", "false"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
