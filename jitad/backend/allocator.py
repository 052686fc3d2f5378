"""Freed array memory stays in the process, so the next call's arrays do not fault in fresh pages.

A compiled kernel allocates its intermediates and outputs with malloc (Numba's runtime) and frees
them when they die; NumPy does the same. glibc's malloc serves a block above its mmap threshold
(128 KiB at start, raised to the largest block freed so far) with a fresh mmap and gives it back to
the system when it is freed, and trims the top of its heap beyond its trim threshold: a kernel that
makes a 500 x 500 matrix on every call then pays about a page fault per 4 KiB of it on every call
(an MLP's or a solve's gradient: 25-40 % of its time; an XLA program reuses its buffers instead).

`keep_freed_memory` sets the mmap threshold to MMAP_THRESHOLD (glibc's own upper bound for its
dynamic threshold) and the trim threshold to TRIM_THRESHOLD, once per process, when jitad compiles
or runs its first graph: blocks below 32 MiB come from the heap and are reused, and up to 64 MiB of
freed memory at the heap's top is kept for the next call. Larger arrays are mmapped as before.
`JITAD_KEEP_MEMORY=0` leaves malloc's settings alone. Elsewhere than glibc this does nothing.
"""
import ctypes
import functools
import os
import threading

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_state = {"applied": None}
_lock = threading.Lock()


def enabled():
    """Whether this process may change malloc's thresholds ($JITAD_KEEP_MEMORY, default on)."""
    return os.environ.get("JITAD_KEEP_MEMORY", "1").strip().lower() not in ("0", "false", "no", "off")


def keep_freed_memory():
    """Set glibc malloc's mmap and trim thresholds (once; later calls return at once). Returns
    whether they are set: False when disabled or when the C library has no mallopt (not glibc)."""
    applied = _state["applied"]
    if applied is not None:
        return applied
    with _lock:
        if _state["applied"] is None:
            _state["applied"] = enabled() and _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and \
                _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    return _state["applied"]


@functools.cache
def _glibc():
    """The C library when it is glibc (whose mallopt takes these options), else None: the symbols
    the process has loaded (dlopen(NULL)), which hold the C library's. (ctypes.util.find_library
    runs `ldconfig -p` in a subprocess: 2.5 ms a call, a quarter of a small program's first call.)"""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def available():
    """Whether malloc here is glibc's (the thresholds can be set)."""
    return _glibc() is not None


def _mallopt(option, value):
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc.mallopt(option, value) == 1
