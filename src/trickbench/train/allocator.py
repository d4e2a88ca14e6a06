"""glibc malloc settings of a training process, applied before torch allocates.

Keep freed memory mapped instead of returning ~100 MB of activations to the kernel every step (NiN steps
1.5-1.9x faster on CPU; benchmarks/README.md, platform.md). The values are the Makefile's MALLOC_*_
exports, applied with mallopt() so a bare `trickbench train` gets them too. No torch import here: the CLI
calls this first, and the benchmarks call it before building anything.
"""
from __future__ import annotations

import os
import sys

TUNE_ALLOCATOR = True
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
ALLOCATOR_SETTINGS = {M_MMAP_THRESHOLD: 2**31 - 1, M_TRIM_THRESHOLD: 2**31 - 1}


def tune_allocator() -> str:
    """Apply ALLOCATOR_SETTINGS to this process unless the environment sets glibc's own variables;
    returns what happened ("env", "mallopt", or why not)."""
    if any(os.environ.get(name) for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return "env"
    if not TUNE_ALLOCATOR or not sys.platform.startswith("linux"):
        return "off"
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return "unavailable"
    ok = all(mallopt(option, value) == 1 for option, value in ALLOCATOR_SETTINGS.items())
    return "mallopt" if ok else "rejected"
