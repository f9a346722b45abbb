"""Keep glibc malloc from mapping/unmapping every large activation tensor (BASELINES.md).

glibc serves allocations above its mmap threshold (at most 32 MiB on 64-bit) with a fresh ``mmap`` and
returns them with ``munmap``. A 32×64×64×64 float32 activation is 33.5 MB, so every such tensor costs
a map, ~8k page faults to touch it and an unmap — system time as large as the compute itself. Turning
mmap off for large blocks (``M_MMAP_MAX = 0``) and never trimming the heap top (``M_TRIM_THRESHOLD``
huge) makes freed blocks reusable, like tcmalloc does. Cost: freed memory is kept by the process, so
RSS stays at its peak.

Call ``tune_glibc_malloc()`` once, early (it affects allocations made afterwards). Child processes
can get the same behaviour from the environment: ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys

# mallopt parameters from <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4

INT_MAX = 2**31 - 1


def is_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def tune_glibc_malloc(trim_threshold: int = -1, top_pad: int = 64 << 20) -> bool:
    """Disable mmap for large blocks and heap trimming in glibc malloc. Returns True if applied.

    ``trim_threshold = -1`` disables trimming completely (mallopt(3)); a positive value trims the heap
    top once that many bytes are free there. (The former default, INT_MAX ≈ 2 GiB, was below the
    ~7 GiB a reward/end training step frees, so the second step faulted 1.7 GB back in: −0.9 s.)

    A no-op returning False on non-glibc platforms (macOS, Windows, musl) or if mallopt refuses a value.
    """
    if not is_glibc():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = True
    # mallopt returns 1 on success, 0 on error.
    ok &= mallopt(M_MMAP_MAX, 0) == 1  # never mmap: large blocks come from the (reusable) heap
    ok &= mallopt(M_TRIM_THRESHOLD, min(trim_threshold, INT_MAX)) == 1  # -1: never give the heap top back
    ok &= mallopt(M_TOP_PAD, min(top_pad, INT_MAX)) == 1  # grow the heap in big steps (fewer brk calls)
    return bool(ok)
