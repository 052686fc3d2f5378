"""Numba helpers that generated kernels call for non-fused (library) primitives.

Axis-generic operations are written once on a canonical 3-D view (before, axis, after),
which the generated code makes with a reshape.
"""
import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def bmm(a, b):
    """Batched matrix product of (B, M, K) and (B, K, N) arrays."""
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), a.dtype)
    for k in range(a.shape[0]):
        out[k] = np.dot(np.ascontiguousarray(a[k]), np.ascontiguousarray(b[k]))
    return out


@numba.njit(cache=True, nogil=True)
def dot(a, b):
    """np.dot of two matrices, compiled once per layout and cached on disk (Numba's np.dot in a
    kernel compiles its BLAS call again in every process and lowers it at every call site)."""
    return np.dot(a, b)


@numba.njit(cache=True, nogil=True)
def take3(x, idx):
    """out[p, j, q] = x[p, idx[j], q] (negative indices wrap like NumPy)."""
    n = x.shape[1]
    out = np.empty((x.shape[0], idx.shape[0], x.shape[2]), x.dtype)
    for p in range(x.shape[0]):
        for j in range(idx.shape[0]):
            k = idx[j]
            if k < 0:
                k += n
            for q in range(x.shape[2]):
                out[p, j, q] = x[p, k, q]
    return out


@numba.njit(cache=True, nogil=True)
def scatter_add3(g, idx, size):
    """The transpose of take3: out[p, idx[j], q] += g[p, j, q]."""
    out = np.zeros((g.shape[0], size, g.shape[2]), g.dtype)
    for p in range(g.shape[0]):
        for j in range(idx.shape[0]):
            k = idx[j]
            if k < 0:
                k += size
            for q in range(g.shape[2]):
                out[p, k, q] += g[p, j, q]
    return out


@numba.njit(cache=True, nogil=True)
def cumsum3(x):
    out = np.empty_like(x)
    for p in range(x.shape[0]):
        for q in range(x.shape[2]):
            acc = 0.0
            for j in range(x.shape[1]):
                acc += x[p, j, q]
                out[p, j, q] = acc
    return out


@numba.njit(cache=True, nogil=True)
def argsort_rows(x):
    """Stable argsort of each row of a 2-D array."""
    out = np.empty(x.shape, np.int64)
    for r in range(x.shape[0]):
        out[r] = np.argsort(x[r], kind="mergesort")
    return out


@numba.njit(forceinline=True, cache=True, nogil=True)
def nmax(a, b):
    """np.maximum of two scalars: NaN when either is (Python's max drops a NaN that comes second),
    the second of two equal ones (np.maximum(0.0, -0.0) is -0.0). A select: it vectorises."""
    return a if a > b or a != a else b


@numba.njit(forceinline=True, cache=True, nogil=True)
def nmin(a, b):
    """np.minimum of two scalars, as `nmax`."""
    return a if a < b or a != a else b


# vectorisable exp, expm1, tanh, sin, cos, log, ... and the reassociable sum and product steps
# (K.fexp, K.fsin, K.radd, ...): jitad/backend/kernels_vecmath.py
from jitad.backend.kernels_vecmath import *  # noqa: E402,F401,F403

# scalar special functions (scipy.special on traced values), called as K.<name> like the ones above
from jitad.backend.kernels_special import *  # noqa: E402,F401,F403
