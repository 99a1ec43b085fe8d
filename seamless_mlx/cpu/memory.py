"""Large buffers from the heap, not fresh ``mmap`` s, on glibc.

MLX's CPU backend keeps no cache of freed buffers: every op's output is a new ``malloc``.  glibc
serves an allocation above its mmap threshold (at most 32 MB when it adapts it) with a fresh
mapping and unmaps it when freed, so each such buffer is page-faulted in page by page, every time.
A long vocoder output is made of such buffers (90 s of audio: ``[1.44 M, 16]`` floats, 92 MB, at
each of the last three stages, some fifty element-wise passes each), and there the page faults
cost more than the arithmetic.  :func:`keep_freed_buffers` raises the mmap threshold, and the
trim threshold above it, so that such buffers are recycled from the heap; glibc keeps up to
``tuning.MALLOC_TRIM_THRESHOLD_BYTES`` of freed memory at the top of the heap instead of returning
it to the system.  Measured in benchmarks/README.md ("Vocoder speed on the CPU").
"""

from __future__ import annotations

import ctypes
import platform

from . import tuning

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_applied = False


def keep_freed_buffers() -> bool:
    """Set glibc's mmap and trim thresholds (``tuning.MALLOC_*``) once per process; ``False``
    where the C library is not glibc or a threshold is 0 (``SEAMLESS_MLX_ROUTES=generic`` never
    gets here: the plain modules are kept)."""
    global _applied
    if _applied:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if not (tuning.MALLOC_MMAP_THRESHOLD_BYTES and tuning.MALLOC_TRIM_THRESHOLD_BYTES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # a fixed mmap threshold also stops glibc's own adapting of it (capped at 32 MB)
    _applied = bool(mallopt(_M_TRIM_THRESHOLD, tuning.MALLOC_TRIM_THRESHOLD_BYTES)) and bool(
        mallopt(_M_MMAP_THRESHOLD, tuning.MALLOC_MMAP_THRESHOLD_BYTES)
    )
    return _applied
