"""Large tensors without a page fault per page: glibc's allocator told to keep freed memory.

An offline decode of 10 s makes tensors of a few MB per layer. glibc serves allocations above its
mmap threshold (adaptive, from 128 kB) with fresh mappings and hands the top of its heap back to the
system once more than its trim threshold is free, so each such tensor is paid again in page faults
when it is first written. Measured on the machine of the README's figures: about a tenth of an
offline decode + vocode (108-111x -> 116-118x real time on one thread).

:func:`keep_freed_memory` raises both thresholds, once per process (``load_bundle`` calls it). A
process then keeps up to its peak heap for reuse instead of returning it. Where the C library is
not glibc it changes nothing and says so.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3    # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20      # the largest glibc accepts on 64-bit systems
TRIM_THRESHOLD = 1 << 30

_state = {"done": False}


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see the module's text); True where that took effect."""
    if _state["done"]:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt   # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _state["done"] = (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                      and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    return _state["done"]
