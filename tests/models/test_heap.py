"""The allocator setting that load_bundle makes (glibc, the project's platform: freed memory kept for the
next large tensor)."""

import subprocess
import sys

import pytest

from sonolatent.models import heap
from sonolatent.models.checkpoint import load_bundle


def test_load_bundle_keeps_freed_memory(tiny_bundle_dir, monkeypatch):
    monkeypatch.setitem(heap._state, "done", False)
    load_bundle(tiny_bundle_dir)
    assert heap._state["done"] is True
    assert heap.keep_freed_memory() is True        # once per process; later calls are free


_PROBE = """
import ctypes, sys
from sonolatent.models import heap
if sys.argv[1] == "set":
    assert heap.keep_freed_memory()
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
a = libc.malloc(8 << 20)
ctypes.memset(a, 1, 8 << 20)
libc.free(a)
print(libc.mallinfo2().fordblks)
"""


@pytest.mark.parametrize("setting", ["set", "default"])
def test_a_freed_large_block_stays_for_reuse_only_with_the_setting(setting):
    """8 MB freed: kept in the heap (free bytes >= 8 MB) with the setting; unmapped without it."""
    r = subprocess.run([sys.executable, "-c", _PROBE, setting], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    kept = int(r.stdout.strip()) >= 8 << 20
    assert kept is (setting == "set")


def test_a_refused_setting_is_reported(monkeypatch):
    class Refusing:
        @staticmethod
        def mallopt(*_):
            return 0
    monkeypatch.setitem(heap._state, "done", False)
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda _: Refusing())
    assert heap.keep_freed_memory() is False
    assert heap._state["done"] is False
