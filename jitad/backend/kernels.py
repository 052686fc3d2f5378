"""Numba helpers that generated kernels call for non-fused (library) primitives.

Axis-generic operations are written once on a canonical 3-D view (before, axis, after),
which the generated code makes with a reshape.
"""
import numba
import numpy as np


@numba.njit(cache=True)
def bmm(a, b):
    """Batched matrix product of (B, M, K) and (B, K, N) arrays."""
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), a.dtype)
    for k in range(a.shape[0]):
        out[k] = np.dot(np.ascontiguousarray(a[k]), np.ascontiguousarray(b[k]))
    return out


@numba.njit(cache=True)
def dot(a, b):
    """np.dot of two matrices, compiled once per layout and cached on disk (Numba's np.dot in a
    kernel compiles its BLAS call again in every process and lowers it at every call site)."""
    return np.dot(a, b)


@numba.njit(cache=True)
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


@numba.njit(cache=True)
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


@numba.njit(cache=True)
def cumsum3(x):
    out = np.empty_like(x)
    for p in range(x.shape[0]):
        for q in range(x.shape[2]):
            acc = 0.0
            for j in range(x.shape[1]):
                acc += x[p, j, q]
                out[p, j, q] = acc
    return out


@numba.njit(cache=True)
def argsort_rows(x):
    """Stable argsort of each row of a 2-D array."""
    out = np.empty(x.shape, np.int64)
    for r in range(x.shape[0]):
        out[r] = np.argsort(x[r], kind="mergesort")
    return out


# --- vectorisable exp, expm1 and tanh ---------------------------------------------------------
# Numba calls the C library's exp/tanh one element at a time, which keeps LLVM from
# vectorising a fused loop (and costs 10-15 ns per element). These are straight-line
# arithmetic (range reduction, a degree-13 polynomial, the scale 2^k built from its bits)
# that LLVM turns into SIMD code; they agree with NumPy to a few ulp, with NumPy's
# overflow, underflow and NaN behaviour.
# `forceinline` (LLVM's alwaysinline), not `inline="always"` (Numba-IR inlining): each is
# compiled once (and cached on disk) and LLVM inlines it into every call site before it
# vectorises, the same machine code; copying its Numba IR into every call site instead made
# Numba's IR passes, type inference and lowering of a kernel grow with its number of calls.
from llvmlite import ir as _llvm_ir  # noqa: E402
from numba.core import types as _types  # noqa: E402
from numba.extending import intrinsic as _intrinsic  # noqa: E402

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


@_intrinsic
def _bits_to_float64(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _llvm_ir.DoubleType())
    return _types.float64(_types.int64), codegen


@numba.njit(forceinline=True, error_model="numpy", cache=True)
def _pow2(k):
    """2.0 ** k for an integral float k in [-1022, 1023], from its exponent bits."""
    return _bits_to_float64((np.int64(k) + 1023) << 52)


@numba.njit(forceinline=True, error_model="numpy", cache=True)
def _expm1_reduced(r):
    """e**r - 1 for |r| <= ln(2)/2, accurate also when r is tiny (no 1 + ... - 1)."""
    return r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
        1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (
            1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600 + r * (1.0 / 6227020800)))))))))))))


@numba.njit(forceinline=True, error_model="numpy", cache=True)
def fexp(x):
    """exp(x), vectorisable."""
    clamped = min(max(x, -746.0), 710.0)
    k = np.floor(clamped * _LOG2E + 0.5)
    r = clamped - k * _LN2_HI - k * _LN2_LO
    half = np.floor(k * 0.5)  # 2^k as two factors: subnormal results and k = 1024 stay exact
    y = (1.0 + _expm1_reduced(r)) * _pow2(half) * _pow2(k - half)
    y = np.inf if x > 709.782712893384 else y
    y = 0.0 if x < -745.1332191019412 else y
    return x if x != x else y


@numba.njit(forceinline=True, error_model="numpy", cache=True)
def fexpm1(x):
    """exp(x) - 1, vectorisable, accurate near 0."""
    clamped = min(max(x, -40.0), 710.0)
    k = np.floor(clamped * _LOG2E + 0.5)
    r = clamped - k * _LN2_HI - k * _LN2_LO
    q = _expm1_reduced(r)
    half = np.floor(k * 0.5)
    small = _pow2(min(k, 60.0))
    y = small * q + (small - 1.0)  # = 2^k (1 + q) - 1, exact for k = 0
    y = _pow2(half) * ((q + 1.0) * _pow2(k - half)) - 1.0 if k > 60.0 else y  # 2^k beyond 2^1023
    y = np.inf if x > 709.782712893384 else y
    y = -1.0 if x < -40.0 else y
    return x if x != x else y


@numba.njit(forceinline=True, error_model="numpy", cache=True)
def ftanh(x):
    """tanh(x) = t / (t + 2) with t = expm1(2|x|), sign restored; vectorisable."""
    t = fexpm1(2.0 * min(np.abs(x), 20.0))
    y = np.copysign(t / (t + 2.0), x)
    return x if x != x else y


# vectorisable sin, cos, log, ... and the reassociable sum and product steps (K.fsin, K.radd, ...)
from jitad.backend.kernels_vecmath import *  # noqa: E402,F401,F403

# scalar special functions (scipy.special on traced values), called as K.<name> like the ones above
from jitad.backend.kernels_special import *  # noqa: E402,F401,F403
