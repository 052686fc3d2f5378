"""Vectorisable elementary functions: straight-line arithmetic LLVM's loop vectoriser turns into SIMD.

The llvmlite wheels carry no vector math library, so `np.sin(x)` in a fused loop is one libm
call per element and keeps the loop scalar. Each function here is a range reduction, a
polynomial, and the special cases (±0, ±inf, NaN, subnormals, overflow) chosen by selects, so a
loop that calls them vectorises. Each agrees with NumPy to <= 2 ulp over its whole domain
(tests/test_vecmath.py sweeps >= 1e6 points per function; most are <= 1 ulp), with NumPy's
values at ±0, ±inf and NaN. The polynomials are truncated Taylor series or near-minimax fits
computed with mpmath (their error is stated where they are defined), by Horner's rule.

sin, cos and tan reduce |x| <= 2^22 by Cody-Waite (pi/2 in four parts) and larger arguments by
a branch-free Payne-Hanek reduction (a table of the bits of 2/pi, one row per exponent), both
computed and one selected: the loop stays vector code for every argument, sin(1e300) included
(the large-argument path costs about as much as the rest: the table reads are gathers). Where the
CPU has FMA (Numba compiles for the host), exact products use it; elsewhere Dekker's product.

Float32 arguments are computed in float64 (generated kernels round the result to float32).
`radd`/`rmul` are the steps of sum/product reductions that may be reassociated (so vectorised).

`forceinline` (LLVM's alwaysinline), not `inline="always"` (Numba-IR inlining): each is compiled
once (and cached on disk) and LLVM inlines it into every call site before it vectorises, the same
machine code; copying its Numba IR into every call site instead made Numba's IR passes, type
inference and lowering of a kernel grow with its number of calls. Names: `f<numpy name>`,
called from generated code as K.f<name> (codegen's _VECMATH_CALLS and the primitives'
VECTORISABLE_CALLS map the libm calls to them).
"""
import numba
import numpy as np
from llvmlite import ir as _llvm_ir
from numba.core import types as _types
from numba.extending import intrinsic as _intrinsic

__all__ = ["fexp", "fexpm1", "ftanh", "fsinh", "fcosh", "fsin", "fcos", "ftan", "flog", "flog1p", "flog2", "flog10",
           "farcsin", "farccos", "farctan", "farctan2", "flog_expit", "farcsinh", "farctanh", "fcbrt", "fhypot", "fpow",
           "fsin32", "fcos32", "ftan32", "fexp32", "fexpm1_32", "ftanh32", "flog32", "flog1p32", "ferf", "fexp2",
           "farccosh", "radd", "rmul", "rmax", "rmin"]

_JIT = dict(forceinline=True, error_model="numpy", cache=True, nogil=True)

_LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits: e * _LN2_HI is exact for |e| < 2^21
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951
_TINY = 2.2250738585072014e-308  # smallest normal float64


# --- bits -------------------------------------------------------------------------------------
@_intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64 as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _llvm_ir.IntType(64))
    return _types.int64(_types.float64), codegen


@_intrinsic
def _from_bits(typingctx, bits):
    """The float64 whose IEEE bits are `bits`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _llvm_ir.DoubleType())
    return _types.float64(_types.int64), codegen


# --- reductions that vectorise -----------------------------------------------------------------
def _reassoc(op):
    """acc <op> x as an LLVM `fadd`/`fmul` that may be reassociated (`reassoc`, and only that: NaN,
    inf and signed zeros keep their IEEE meaning). A loop accumulating through it may be
    vectorised with several partial accumulators, summed at the end; the result differs from the
    sequential one by rounding only (as NumPy's pairwise sum does)."""
    @_intrinsic
    def reassoc(typingctx, acc, x):
        if not isinstance(acc, _types.Float) or not isinstance(x, _types.Float):
            return None
        result = acc if acc.bitwidth >= x.bitwidth else x

        def codegen(context, builder, signature, args):
            a, b = (context.cast(builder, v, t, result) for v, t in zip(args, signature.args))
            return getattr(builder, op)(a, b, flags=("reassoc",))
        return result(acc, x), codegen
    return reassoc


_radd = _reassoc("fadd")
_rmul = _reassoc("fmul")


def _nan_extremum(name):
    """max/min of two floats by LLVM's llvm.maximum/llvm.minimum: NaN if either is NaN (as NumPy's
    max/min reductions), -0.0 below +0.0. A loop reducing through it vectorises."""
    @_intrinsic
    def extremum(typingctx, acc, x):
        if not isinstance(acc, _types.Float) or not isinstance(x, _types.Float):
            return None
        result = acc if acc.bitwidth >= x.bitwidth else x

        def codegen(context, builder, signature, args):
            a, b = (context.cast(builder, v, t, result) for v, t in zip(args, signature.args))
            ty = a.type
            fn = builder.module.declare_intrinsic(name, [ty], _llvm_ir.FunctionType(ty, [ty, ty]))
            return builder.call(fn, [a, b])
        return result(acc, x), codegen
    return extremum


_rmax = _nan_extremum("llvm.maximum")
_rmin = _nan_extremum("llvm.minimum")


@numba.njit(forceinline=True, cache=True, nogil=True)
def rmax(acc, x):
    """The larger of acc and x, NaN if either is NaN: the step of a max reduction (vectorises)."""
    return _rmax(acc, x)


@numba.njit(forceinline=True, cache=True, nogil=True)
def rmin(acc, x):
    """The smaller of acc and x, NaN if either is NaN: the step of a min reduction (vectorises)."""
    return _rmin(acc, x)


@numba.njit(forceinline=True, cache=True, nogil=True)
def radd(acc, x):
    """acc + x, reassociable: the step of a sum reduction that LLVM may vectorise."""
    return _radd(acc, x)


@numba.njit(forceinline=True, cache=True, nogil=True)
def rmul(acc, x):
    """acc * x, reassociable: the step of a product reduction that LLVM may vectorise."""
    return _rmul(acc, x)


# --- exp, expm1, tanh, sinh, cosh -------------------------------------------------------------
_LOG2E = 1.4426950408889634


@numba.njit(**_JIT)
def _pow2(k):
    """2.0 ** k for an integral float k in [-1022, 1023], from its exponent bits."""
    return _from_bits((np.int64(k) + 1023) << 52)


@numba.njit(**_JIT)
def _expm1_reduced(r):
    """e**r - 1 for |r| <= ln(2)/2 + eps: r + r^2 P(r) with P Taylor to r^13 (remainder < 2^-60),
    the leading r added last (so the error is about that one rounding). P by Estrin's scheme
    (a short dependency chain: a loop of these is bound by throughput, not latency)."""
    r2 = r * r
    r4 = r2 * r2
    q0 = (0.5 + r * (1.0 / 6)) + r2 * (1.0 / 24 + r * (1.0 / 120))
    q1 = (1.0 / 720 + r * (1.0 / 5040)) + r2 * (1.0 / 40320 + r * (1.0 / 362880))
    q2 = (1.0 / 3628800 + r * (1.0 / 39916800)) + r2 * (1.0 / 479001600 + r * (1.0 / 6227020800))
    return r + r2 * (q0 + r4 * (q1 + r4 * q2))


@numba.njit(**_JIT)
def _exp_split_within(x):
    """(k, q) with e**x = 2^k (1 + q), |q| <= 0.42, for x in [-746, 711] (the caller keeps it there):
    the reduced argument is carried as r + c (c its rounding error) into q = expm1(r) + c e^r."""
    k = np.floor(x * _LOG2E + 0.5)
    hi = x - k * _LN2_HI  # exact
    lo = k * _LN2_LO
    r = hi - lo
    c = (hi - r) - lo
    q = _expm1_reduced(r)
    return k, q + (c + c * q)


@numba.njit(**_JIT)
def _exp_split(x):
    """_exp_split_within of x clamped to [-746, 711]."""
    return _exp_split_within(min(max(x, -746.0), 711.0))


@numba.njit(**_JIT)
def _scale(y, k):
    """y 2^k for an integral float k in [-1075, 1025], as two factors: subnormal results and
    k = 1024 stay exact."""
    half = np.floor(k * 0.5)
    return y * _pow2(half) * _pow2(k - half)


@numba.njit(**_JIT)
def fexp(x):
    """exp(x), vectorisable."""
    k, q = _exp_split(x)
    y = _scale(1.0 + q, k)
    y = np.inf if x > 709.782712893384 else y
    y = 0.0 if x < -745.1332191019412 else y
    return x if x != x else y


@numba.njit(**_JIT)
def fexpm1(x):
    """exp(x) - 1, vectorisable, accurate near 0."""
    k, q = _exp_split(max(x, -40.0))
    small = _pow2(min(k, 60.0))
    y = small * q + (small - 1.0)  # = 2^k (1 + q) - 1, exact for k = 0
    y = _scale(q + 1.0, k) - 1.0 if k > 60.0 else y  # 2^k beyond 2^1023
    y = np.inf if x > 709.782712893384 else y
    y = -1.0 if x < -40.0 else y
    y = x if np.abs(x) < 5.551115123125783e-17 else y  # 2^-54: expm1 x = x, also -0.0 and subnormals
    return x if x != x else y


@numba.njit(**_JIT)
def _expm1_nonnegative(v):
    """expm1(v) for 0 <= v <= 40 (not NaN): fexpm1 without the paths this range never takes (clamps,
    2^k beyond 2^60, overflow, v < -40, tiny v: there k = 0 and the polynomial returns v), the same
    bits in a quarter fewer operations (tanh's loop 157 -> 122 us per 65,536, /tmp/s15/tanh2.py)."""
    k, q = _exp_split_within(v)
    p = _pow2(k)
    return p * q + (p - 1.0)  # 2^k (1 + q) - 1


@numba.njit(**_JIT)
def ftanh(x):
    """tanh(x) = t / (t + 2) with t = expm1(2|x|), sign restored; vectorisable."""
    t = _expm1_nonnegative(2.0 * min(np.abs(x), 20.0))
    d = t + 2.0
    q = t / d
    y = np.copysign(q - q * (_two_sum_err(t, 2.0, d) / d), x)  # t / (t + 2) with t + 2 unrounded
    return x if x != x else y


@numba.njit(**_JIT)
def fsinh(x):
    """sinh(x), vectorisable: (t + t / (t + 1)) / 2 with t = expm1(|x|), e^|x| / 2 from |x| > 22
    (scaled, so no overflow before 710.47...), sign restored."""
    a = np.abs(x)
    t = _expm1_nonnegative(min(a, 22.0))
    y = 0.5 * (t + t / (t + 1.0))
    k, q = _exp_split(a)
    y = _scale(1.0 + q, k - 1.0) if a > 22.0 else y
    y = np.inf if a > 710.4758600739439 else y
    y = a if a < 3.725290298461914e-09 else y  # 2^-28: sinh x = x, also subnormals
    return x if x != x else np.copysign(y, x)


@numba.njit(**_JIT)
def fcosh(x):
    """cosh(x), vectorisable: (E + 1 / E) / 2 with E = e^|x|, e^|x| / 2 from |x| > 22 (scaled)."""
    a = np.abs(x)
    k, q = _exp_split(a)
    e = _scale(1.0 + q, k)
    y = 0.5 * e + 0.5 / e
    y = _scale(1.0 + q, k - 1.0) if a > 22.0 else y
    y = np.inf if a > 710.4758600739439 else y
    return x if x != x else y


# --- sin, cos ---------------------------------------------------------------------------------
# pi/2 = _PIO2_1 + _PIO2_2 + _PIO2_3 + _PIO2_4 + O(5e-45): the first three have 30 significant
# bits, so q * _PIO2_k is exact for |q| < 2^23 (computed with mpmath: each part the nearest
# 30-bit (53-bit for the last) number to the remainder).
_PIO2_1 = 1.5707963276654482
_PIO2_2 = -8.705515692000731e-10
_PIO2_3 = -3.503434396954818e-19
_PIO2_4 = -1.1351118607522202e-28
_2_OVER_PI = 0.6366197723675814
_TRIG_LIMIT = 4194304.0  # 2^22: beyond, the Payne-Hanek reduction


@numba.njit(**_JIT)
def _two_sum_err(a, b, s):
    """The rounding error of s = fl(a + b), exactly (Knuth's TwoSum, any order of magnitudes)."""
    bb = s - a
    return (a - (s - bb)) + (b - bb)


@numba.njit(**_JIT)
def _sin_poly(hi, lo):
    """sin(hi + lo) for |hi| <= pi/4 + eps, |lo| <= ulp(hi): Taylor to x^17 (remainder < 2^-64 |sin|)."""
    z = hi * hi
    p = z * (-1.0 / 6 + z * (1.0 / 120 + z * (-1.0 / 5040 + z * (1.0 / 362880 + z * (
        -1.0 / 39916800 + z * (1.0 / 6227020800 + z * (-1.0 / 1307674368000 + z * (1.0 / 355687428096000))))))))
    return hi + (lo - 0.5 * z * lo + hi * p)


@numba.njit(**_JIT)
def _cos_poly(hi, lo):
    """cos(hi + lo) for |hi| <= pi/4 + eps: Taylor to x^16 (remainder < 2^-60), 1 - z/2 compensated."""
    z = hi * hi
    hz = 0.5 * z
    w = 1.0 - hz
    tail = z * z * (1.0 / 24 + z * (-1.0 / 720 + z * (1.0 / 40320 + z * (-1.0 / 3628800 + z * (
        1.0 / 479001600 + z * (-1.0 / 87178291200 + z * (1.0 / 20922789888000)))))))
    return w + (((1.0 - w) - hz) + (tail - hi * lo))


@numba.njit(**_JIT)
def _reduce_pio2(x):
    """(q, hi, lo): x = q pi/2 + (hi + lo) with |hi + lo| <= pi/4 + eps, for |x| <= 2^22."""
    q = np.rint(x * _2_OVER_PI)
    t = x - q * _PIO2_1  # exact: q * _PIO2_1 is, and it is within a factor 2 of x (q != 0)
    a = -q * _PIO2_2
    r = t + a
    err = _two_sum_err(t, a, r)
    b = -q * _PIO2_3
    r2 = r + b
    err = err + _two_sum_err(r, b, r2) - q * _PIO2_4
    hi = r2 + err
    return q, hi, (r2 - hi) + err


# Payne-Hanek reduction for |x| > 2^22, branch-free: x = m 2^(e-52) with m an integer, so the
# bits of 2/pi of weight 2^-k with k <= e - 54 add multiples of 4 to x 2/pi (whole turns): only the
# following bits matter. Row k0 of the table holds bits k0+1 ... k0+212 of 2/pi as four doubles
# (53 bits each, the last rounded), scaled by 2^k0; they multiply x 2^-k0 (exact).
def _two_over_pi_table(rows=970, bits=212):
    """(rows * 4,) float64: row k0 = the bits k0+1 ... k0+bits of 2/pi times 2^k0, as four doubles of
    53, 53, 53 and bits - 159 bits (each exact)."""
    precision = rows + bits + 64
    two_over_pi = (1 << (2 * precision)) // _pi_scaled(precision)  # about 2/pi 2^(precision - 1)
    table = np.empty(rows * 4)
    widths = (53, 53, 53, bits - 159)
    for k0 in range(rows):
        end = precision - 1 - k0  # its low `end` bits: the bits of 2/pi below 2^-k0
        for j, width in enumerate(widths):
            end -= width
            chunk = (two_over_pi >> end) & ((1 << width) - 1)
            table[4 * k0 + j] = float(chunk) * 2.0 ** -(sum(widths[:j + 1]))
    return table


def _pi_scaled(precision):
    """floor(pi 2^precision) in integers (Machin: pi = 16 atan(1/5) - 4 atan(1/239)), guard bits dropped."""
    guard = precision + 32
    def atan_inv(n):
        total, term, k, n2 = 0, (1 << guard) // n, 1, n * n
        while term:
            total += term // k if k % 4 == 1 else -(term // k)
            term //= n2
            k += 2
        return total
    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> 32


_TWO_OVER_PI = _two_over_pi_table()
_PIO2_HI = 1.5707963267948966  # pi/2 = _PIO2_HI + _PIO2_LO to 107 bits
_PIO2_LO = 6.123233995736766e-17
_SPLIT = 134217729.0  # 2^27 + 1


@_intrinsic
def _fma(typingctx, a, b, c):
    """a b + c rounded once (LLVM's llvm.fma: one instruction where the CPU has FMA)."""
    def codegen(context, builder, signature, args):
        double = _llvm_ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [double], _llvm_ir.FunctionType(double, [double] * 3))
        return builder.call(fn, args)
    return _types.float64(_types.float64, _types.float64, _types.float64), codegen


def _host_has_fma():
    import llvmlite.binding as llvm
    try:
        return bool(llvm.get_host_cpu_features().get("fma"))
    except RuntimeError:
        return False


_HAS_FMA = _host_has_fma()  # Numba compiles for the host CPU (and keys its disk cache by it)


@numba.njit(**_JIT)
def _two_prod_err(a, b, p):
    """The rounding error of p = fl(a b), exactly: one FMA, or Dekker's product without one."""
    if _HAS_FMA:
        return _fma(a, b, -p)
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


@numba.njit(**_JIT)
def _mod4(q):
    """An integral float modulo 4 as an int64 (exact for any magnitude)."""
    return np.int64(q - 4.0 * np.floor(q * 0.25))


@numba.njit(**_JIT)
def _reduce_pio2_large(x):
    """(n, hi, lo): x = (n + 4 j) pi/2 + (hi + lo), |hi + lo| <= pi/4, for finite 2^22 <= |x| (hi
    to about 2^-106 |hi|). Integer parts are removed stage by stage (exactly) before the small
    terms are summed, so a near-cancellation keeps its low bits."""
    k0 = max(((_bits(x) >> 52) & 0x7FF) - 1023 - 54, 0)
    xs = x * _from_bits((1023 - k0) << 52)  # x 2^-k0, exact
    row = 4 * k0
    p = xs * _TWO_OVER_PI[row]
    e = _two_prod_err(xs, _TWO_OVER_PI[row], p)
    q1 = np.rint(p)
    t0 = p - q1  # exact
    t = t0 + e
    t_err = _two_sum_err(t0, e, t)
    q2 = np.rint(t)
    t = t - q2
    p2 = xs * _TWO_OVER_PI[row + 1]
    e2 = _two_prod_err(xs, _TWO_OVER_PI[row + 1], p2)
    u = t + p2
    u_err = _two_sum_err(t, p2, u)
    q3 = np.rint(u)
    u = u - q3
    p3 = xs * _TWO_OVER_PI[row + 2]
    e3 = _two_prod_err(xs, _TWO_OVER_PI[row + 2], p3)
    small = xs * _TWO_OVER_PI[row + 3] + e3
    v = u + p3
    lo = _two_sum_err(u, p3, v) + small
    w = v + e2
    lo = lo + _two_sum_err(v, e2, w)
    v = w + u_err
    lo = lo + _two_sum_err(w, u_err, v)
    w = v + t_err
    lo = lo + _two_sum_err(v, t_err, w)
    f = w + lo  # the fraction of x 2/pi, in [-1/2, 1/2]
    f_lo = (w - f) + lo
    hi = f * _PIO2_HI
    lo = _two_prod_err(f, _PIO2_HI, hi) + (f * _PIO2_LO + f_lo * _PIO2_HI)
    r = hi + lo
    return _mod4(q1) + _mod4(q2) + _mod4(q3), r, (hi - r) + lo


@numba.njit(**_JIT)
def _sincos_quadrant(x, shift):
    """sin(x + shift pi/2) for finite x (shift 0: sin, 1: cos)."""
    small = np.abs(x) <= _TRIG_LIMIT
    q, hi, lo = _reduce_pio2(x if small else 0.0)
    n_large, hi_large, lo_large = _reduce_pio2_large(0.0 if small else x)
    n = (np.int64(q) if small else n_large) + shift
    hi = hi if small else hi_large
    lo = lo if small else lo_large
    s = _sin_poly(hi, lo)
    c = _cos_poly(hi, lo)
    y = c if n & 1 else s
    return -y if n & 2 else y


@numba.njit(**_JIT)
def fsin(x):
    """sin(x), vectorisable."""
    y = _sincos_quadrant(x if np.abs(x) < np.inf else 0.0, 0)
    y = x if np.abs(x) < 7.450580596923828e-09 else y  # 2^-27: sin x = x, also -0.0 and subnormals
    return y if np.abs(x) < np.inf else np.nan


@numba.njit(**_JIT)
def fcos(x):
    """cos(x), vectorisable."""
    y = _sincos_quadrant(x if np.abs(x) < np.inf else 0.0, 1)
    return y if np.abs(x) < np.inf else np.nan


# float32 arguments (the sin/cos/tan of a float32 node) have 24 significant bits: two chunks of the
# same table suffice (the third would add < 2^-80 to the fraction), and no Cody-Waite path is needed
@numba.njit(**_JIT)
def _reduce_pio2_f32(x):
    """(n, hi, lo): x = (n + 4 j) pi/2 + (hi + lo), |hi + lo| <= pi/4, for a finite float32 value x
    (held in a float64); hi + lo to < 2^-78 absolute."""
    k0 = max(((_bits(x) >> 52) & 0x7FF) - 1023 - 25, 0)
    xs = x * _from_bits((1023 - k0) << 52)  # x 2^-k0, exact
    row = 4 * k0
    p = xs * _TWO_OVER_PI[row]
    e = _two_prod_err(xs, _TWO_OVER_PI[row], p)
    q1 = np.rint(p)
    t0 = p - q1  # exact
    t = t0 + e
    t_err = _two_sum_err(t0, e, t)
    q2 = np.rint(t)
    t = t - q2
    p2 = xs * _TWO_OVER_PI[row + 1]
    e2 = _two_prod_err(xs, _TWO_OVER_PI[row + 1], p2)
    u = t + p2
    u_err = _two_sum_err(t, p2, u)
    q3 = np.rint(u)
    u = u - q3
    lo = e2 + (u_err + t_err)
    f = u + lo  # the fraction of x 2/pi, in [-1/2, 1/2]
    f_lo = (u - f) + lo
    hi = f * _PIO2_HI
    lo = _two_prod_err(f, _PIO2_HI, hi) + (f * _PIO2_LO + f_lo * _PIO2_HI)
    r = hi + lo
    return _mod4(q1) + _mod4(q2) + _mod4(q3), r, (hi - r) + lo


@numba.njit(**_JIT)
def _trig_f32(x, which):
    """sin (which 0), cos (1) or tan (2) of a float32 value x, in float64 (the caller rounds)."""
    v = np.float64(x)
    finite = np.abs(v) < np.inf
    n, hi, lo = _reduce_pio2_f32(v if finite else 0.0)
    s = _sin_poly(hi, lo)
    c = _cos_poly(hi, lo)
    n = n + 1 if which == 1 else n
    y = c if n & 1 else s
    y = -y if n & 2 else y
    y = (-c / s if n & 1 else s / c) if which == 2 else y
    y = v if np.abs(v) < 7.450580596923828e-09 and which != 1 else y  # 2^-27: sin x = tan x = x
    return y if finite else np.nan


@numba.njit(**_JIT)
def fsin32(x):
    """sin(x) for a float32 value x (a float32 node's argument), vectorisable; float64 result."""
    return _trig_f32(x, 0)


@numba.njit(**_JIT)
def fcos32(x):
    """cos(x) for a float32 value x, vectorisable; float64 result."""
    return _trig_f32(x, 1)


@numba.njit(**_JIT)
def ftan32(x):
    """tan(x) for a float32 value x, vectorisable; float64 result."""
    return _trig_f32(x, 2)


# --- exp, expm1, tanh, log, log1p of a float32 value: float64 arithmetic with polynomials only as
# long as a float32 result needs (relative error < 2^-30 before the caller rounds to float32, so
# within 1 float32 ulp of the exact value, and mostly the correctly rounded one) ----------------
@numba.njit(**_JIT)
def _expm1_f32(r):
    """e**r - 1 for |r| <= ln(2)/2 + eps: Taylor to r^8 (relative remainder < 2^-30)."""
    r2 = r * r
    q = (0.5 + r * (1.0 / 6)) + r2 * ((1.0 / 24 + r * (1.0 / 120)) + r2 * ((1.0 / 720 + r * (1.0 / 5040))
                                                                         + r2 * (1.0 / 40320)))
    return r + r2 * q


@numba.njit(**_JIT)
def _exp_split_f32(v):
    """(k, q) with e**v = 2^k (1 + q), for v in [-104, 89] (a float32 exp's range, clamped)."""
    k = np.floor(v * _LOG2E + 0.5)
    return k, _expm1_f32((v - k * _LN2_HI) - k * _LN2_LO)  # k * _LN2_HI exact


@numba.njit(**_JIT)
def fexp32(x):
    """exp(x) for a float32 value x, vectorisable; float64 result (beyond float32's range when x is:
    the rounding to float32 makes it inf or 0)."""
    v = np.float64(x)
    k, q = _exp_split_f32(min(max(v, -104.0), 89.0))
    y = (1.0 + q) * _pow2(k)
    return v if v != v else y


@numba.njit(**_JIT)
def _expm1_f32_value(v):
    k, q = _exp_split_f32(min(max(v, -18.0), 89.0))  # expm1(-18) rounds to -1 in float32
    y = (1.0 + q) * _pow2(k) - 1.0 if k != 0.0 else q
    return v if np.abs(v) < 9.313225746154785e-10 else y  # 2^-30: expm1 v = v (and -0.0 stays)


@numba.njit(**_JIT)
def fexpm1_32(x):
    """exp(x) - 1 for a float32 value x, vectorisable; float64 result."""
    v = np.float64(x)
    y = _expm1_f32_value(v)
    return v if v != v else y


@numba.njit(**_JIT)
def ftanh32(x):
    """tanh(x) for a float32 value x: t / (t + 2) with t = expm1(2|x|), |x| clamped at 10 (tanh 10
    rounds to 1 in float32), sign restored; vectorisable; float64 result."""
    v = np.float64(x)
    t = _expm1_f32_value(2.0 * min(np.abs(v), 10.0))
    y = np.copysign(t / (t + 2.0), v)
    return v if v != v else y


@numba.njit(**_JIT)
def _log_f32(u):
    """log(u) for u > 0 finite and normal: u = 2^e (1 + f) with sqrt(2)/2 <= 1 + f < sqrt(2),
    log(1 + f) = 2 atanh(s), s = f / (2 + f), |s| < 0.1716; the series to s^11 (remainder < 2^-34)."""
    bits = _bits(u)
    e = ((bits >> 52) & 0x7FF) - 1023
    m = _from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # in [1, 2)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    e = e + 1 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    series = 1.0 + z * ((1.0 / 3 + z * (1.0 / 5)) + z * z * ((1.0 / 7 + z * (1.0 / 9)) + z * z * (1.0 / 11)))
    return np.float64(e) * _LN2 + 2.0 * s * series


@numba.njit(**_JIT)
def flog32(x):
    """log(x) for a float32 value x (its subnormals are normal float64), vectorisable; float64 result."""
    v = np.float64(x)
    y = _log_f32(min(max(v, 1e-46), 3.5e38))
    y = np.inf if v == np.inf else y
    y = -np.inf if v == 0.0 else y
    y = np.nan if v < 0.0 else y
    return v if v != v else y


@numba.njit(**_JIT)
def flog1p32(x):
    """log(1 + x) for a float32 value x, vectorisable; float64 result. 1 + x is exact in float64 for
    |x| >= 2^-29; below 2^-12 the series x - x^2/2 + x^3/3 - x^4/4 (relative remainder < 2^-48)."""
    v = np.float64(x)
    y = _log_f32(min(max(1.0 + v, 1e-46), 3.5e38))
    y = v * (1.0 - v * (0.5 - v * (1.0 / 3 - v * 0.25))) if np.abs(v) < 0.000244140625 else y
    y = np.inf if v == np.inf else y
    y = -np.inf if v == -1.0 else y
    y = np.nan if v < -1.0 else y
    return v if v != v else y


# --- log, log1p, log2, log10 ------------------------------------------------------------------
@numba.njit(**_JIT)
def _log_parts(u):
    """(e, f, hfsq, tail) with log(u) = e ln2 + f - hfsq + tail, for a finite u > 0:
    u = 2^e (1 + f), sqrt(2)/2 <= 1 + f < sqrt(2), hfsq = f^2 / 2 and tail small (s (hfsq + R))."""
    sub = u < _TINY
    bits = _bits(u * 18014398509481984.0 if sub else u)  # 2^54: subnormals scaled to normal
    e = ((bits >> 52) & 0x7FF) - (1023 + 54 if sub else 1023)
    m = _from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)  # in [1, 2)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    e = e + 1 if big else e
    f = m - 1.0  # exact
    s = f / (2.0 + f)  # log(1 + f) = 2 atanh(s), |s| < 0.1716
    z = s * s
    # R = sum_{k>=1} 2 z^k / (2k + 1); z^12 term < 2^-60 of the result
    r = z * (2.0 / 3 + z * (2.0 / 5 + z * (2.0 / 7 + z * (2.0 / 9 + z * (2.0 / 11 + z * (2.0 / 13 + z * (
        2.0 / 15 + z * (2.0 / 17 + z * (2.0 / 19 + z * (2.0 / 21 + z * (2.0 / 23)))))))))))
    hfsq = 0.5 * f * f
    return np.float64(e), f, hfsq, s * (hfsq + r)


@numba.njit(**_JIT)
def _log_special(x, y):
    """log's value at x where it is a special case (x <= 0, inf, NaN), else y."""
    y = np.inf if x == np.inf else y
    y = -np.inf if x == 0.0 else y
    y = np.nan if x < 0.0 else y
    return x if x != x else y


@numba.njit(**_JIT)
def flog(x):
    """log(x), vectorisable."""
    e, f, hfsq, tail = _log_parts(min(max(x, 5e-324), 1.7976931348623157e308))
    y = e * _LN2_HI + (f - (hfsq - (tail + e * _LN2_LO)))
    return _log_special(x, y)


@numba.njit(**_JIT)
def flog1p(x):
    """log(1 + x), vectorisable, accurate near 0: log(u) + c / u for u = fl(1 + x), c its rounding error."""
    finite = x > -1.0 and x < np.inf
    xf = x if finite else 0.0
    u = 1.0 + xf
    c = _two_sum_err(1.0, xf, u) / u
    e, f, hfsq, tail = _log_parts(u)
    y = e * _LN2_HI + (f - (hfsq - ((tail + c) + e * _LN2_LO)))
    y = x if np.abs(x) < 5.551115123125783e-17 else y  # 2^-54: log1p x = x, also -0.0 and subnormals
    y = np.inf if x == np.inf else y
    y = -np.inf if x == -1.0 else y
    y = np.nan if x < -1.0 else y
    return x if x != x else y


_HI_MASK = -(1 << 32)  # keeps a float64's top 20 mantissa bits: products with 32-bit constants exact


@numba.njit(**_JIT)
def _log_split(x):
    """(hi, lo, e) with log(x) = e ln2 + hi + lo for finite x > 0, where hi has 21 significant
    bits, so its products with the 32-bit constants below are exact."""
    e, f, hfsq, tail = _log_parts(x)
    hi = _from_bits(_bits(f - hfsq) & _HI_MASK)
    return hi, (f - hi) - hfsq + tail, e


# c = c_hi + c_lo with c_hi the nearest 32-bit number (computed with mpmath)
_INV_LN2_HI, _INV_LN2_LO = 1.4426950407214463, 1.6751713164886512e-10  # 1 / ln 2
_INV_LN10_HI, _INV_LN10_LO = 0.4342944818781689, 2.5082946711645275e-11  # 1 / ln 10
_LOG10_2_HI, _LOG10_2_LO = 0.3010299956658855, -1.9043128467164274e-12  # log10(2)


@numba.njit(**_JIT)
def flog2(x):
    """log2(x), vectorisable: e + log(m) / ln 2 with the product carried in two parts."""
    hi, lo, e = _log_split(min(max(x, 5e-324), 1.7976931348623157e308))
    val_hi = hi * _INV_LN2_HI
    val_lo = (lo + hi) * _INV_LN2_LO + lo * _INV_LN2_HI
    w = e + val_hi
    val_lo = val_lo + ((e - w) + val_hi)
    return _log_special(x, w + val_lo)


@numba.njit(**_JIT)
def flog10(x):
    """log10(x), vectorisable: e log10(2) + log(m) / ln 10 with the products carried in two parts."""
    hi, lo, e = _log_split(min(max(x, 5e-324), 1.7976931348623157e308))
    val_hi = hi * _INV_LN10_HI
    val_lo = (lo + hi) * _INV_LN10_LO + lo * _INV_LN10_HI + e * _LOG10_2_LO
    eh = e * _LOG10_2_HI
    w = eh + val_hi
    val_lo = val_lo + ((eh - w) + val_hi)
    return _log_special(x, w + val_lo)


@numba.njit(**_JIT)
def ftan(x):
    """tan(x), vectorisable: sin/cos of the reduced argument, or -cos/sin in odd quadrants."""
    finite = np.abs(x) < np.inf
    xf = x if finite else 0.0
    small = np.abs(xf) <= _TRIG_LIMIT
    q, hi, lo = _reduce_pio2(xf if small else 0.0)
    n_large, hi_large, lo_large = _reduce_pio2_large(0.0 if small else xf)
    n = np.int64(q) if small else n_large
    hi = hi if small else hi_large
    lo = lo if small else lo_large
    s = _sin_poly(hi, lo)
    c = _cos_poly(hi, lo)
    y = -c / s if n & 1 else s / c
    y = x if np.abs(x) < 7.450580596923828e-09 else y  # 2^-27: tan x = x, also -0.0 and subnormals
    return y if finite else np.nan


# --- arctan, arctan2 --------------------------------------------------------------------------
# atan(t) = t + t z P(z), z = t^2 <= (7/16)^2: P a near-minimax polynomial (mpmath.chebyfit, degree
# 11, |error| < 4e-18 in P, so < 2^-60 relative in atan)
_ATAN_P = (-0.3333333333333333, 0.1999999999999941, -0.14285714285566806, 0.11111111096645038,
           -0.09090908355602592, 0.07692285554889286, -0.06666241923359964, 0.05876946456755061,
           -0.05216679739313656, 0.04492259293193656, -0.033128134256069586, 0.014773184616983806)
# atan(c) = hi + lo for the anchors c = 1/2, 1, 3/2, inf (mpmath)
_ATAN_HALF = (0.4636476090008061, 2.2698777452961687e-17)
_ATAN_ONE = (0.7853981633974483, 3.061616997868383e-17)
_ATAN_THREE_HALVES = (0.982793723247329, 1.3903311031230998e-17)
_PI_HI, _PI_LO = 3.141592653589793, 1.2246467991473532e-16


@numba.njit(**_JIT)
def _atan_poly(t):
    z = t * t
    p = _ATAN_P
    return t * z * (p[0] + z * (p[1] + z * (p[2] + z * (p[3] + z * (p[4] + z * (p[5] + z * (p[6] + z * (
        p[7] + z * (p[8] + z * (p[9] + z * (p[10] + z * p[11])))))))))))


@numba.njit(**_JIT)
def _atan_ratio(a, b):
    """(hi, rest) with atan(a / b) = hi + rest for a, b >= 0: atan(c) + atan(t) around the anchor
    c in {0, 1/2, 1, 3/2, inf} nearest a / b, t = (a - c b) / (b + c a) (or -b / a) in one division."""
    ratio = a / b
    far = ratio >= 2.4375
    c = 1.5 if ratio >= 1.1875 else (1.0 if ratio >= 0.6875 else (0.5 if ratio >= 0.4375 else 0.0))
    t = (-b if far else (a - c * b if c > 0.0 else a)) / (a if far else (b + c * a if c > 0.0 else b))
    hi = _ATAN_THREE_HALVES[0] if c == 1.5 else (_ATAN_ONE[0] if c == 1.0 else (_ATAN_HALF[0] if c == 0.5 else 0.0))
    lo = _ATAN_THREE_HALVES[1] if c == 1.5 else (_ATAN_ONE[1] if c == 1.0 else (_ATAN_HALF[1] if c == 0.5 else 0.0))
    hi = _PIO2_HI if far else hi
    lo = _PIO2_LO if far else lo
    return hi, lo + (t + _atan_poly(t))


@numba.njit(**_JIT)
def farctan(x):
    """arctan(x), vectorisable."""
    hi, rest = _atan_ratio(np.abs(x), 1.0)
    return x if x != x else np.copysign(hi + rest, x)


@numba.njit(**_JIT)
def farctan2(y, x):
    """arctan2(y, x), vectorisable, with NumPy's values at zeros and infinities."""
    a, b = np.abs(y), np.abs(x)
    m = max(a, b)  # scaled (exactly, by a power of 2) so that b + c a neither overflows nor loses bits
    scale = 0.0625 if m > 1e300 else (1.152921504606847e18 if m < 1e-290 else 1.0)  # 2^-4, 2^60
    hi, rest = _atan_ratio(a * scale, b * scale)
    west = np.copysign(1.0, x) < 0.0  # x < 0, or x = -0.0
    s = _PI_HI - hi
    v = s + ((_two_sum_err(_PI_HI, -hi, s) + _PI_LO) - rest) if west else hi + rest
    v = (_PI_HI if west else 0.0) if a == 0.0 and b == 0.0 else v
    v = (2.356194490192345 if west else 0.7853981633974483) if a == np.inf and b == np.inf else v
    v = np.copysign(v, y)
    return v if x == x else x


# --- log_expit, arcsinh, arctanh ------------------------------------------------------------------
@numba.njit(**_JIT)
def flog_expit(x):
    """log(1 / (1 + e^-x)) = min(x, 0) - log1p(e^-|x|), vectorisable."""
    y = -(flog1p(fexp(-np.abs(x))) - min(x, 0.0))  # -0.0 where the log1p underflows, as SciPy
    return x if x != x else y


@numba.njit(**_JIT)
def farcsinh(x):
    """arcsinh(x), vectorisable: log1p(a + a^2 / (1 + sqrt(1 + a^2))) for a = |x| <= 2,
    log(2a + 1 / (a + sqrt(a^2 + 1))) up to 2^28, log(a) + ln 2 beyond; sign restored."""
    a = np.abs(x)
    m = min(a, 2.0 ** 28)
    w = np.sqrt(m * m + 1.0)
    small = flog1p(m + m * m / (1.0 + w))
    mid = flog(2.0 * m + 1.0 / (m + w))
    big = flog(a if a < np.inf else 1.0) + 6.93147180559945286227e-01
    y = small if a <= 2.0 else (mid if a <= 2.0 ** 28 else big)
    y = np.inf if a == np.inf else y
    y = a if a < 3.725290298461914e-09 else y  # 2^-28: arcsinh x = x, also subnormals
    return x if x != x else np.copysign(y, x)


@numba.njit(**_JIT)
def farctanh(x):
    """arctanh(x) = log1p(2a / (1 - a)) / 2 for a = |x| (2a + 2a^2 / (1 - a) below 1/2), vectorisable."""
    a = np.abs(x)
    m = min(a, 0.9999999999999999)
    d = 1.0 - m  # exact for m >= 1/2
    u = 2.0 * m + 2.0 * m * m / d if m < 0.5 else 2.0 * m / d
    y = 0.5 * flog1p(u)
    y = np.inf if a == 1.0 else y
    y = np.nan if a > 1.0 else y
    y = a if a < 3.725290298461914e-09 else y  # 2^-28: arctanh x = x, also subnormals
    return x if x != x else np.copysign(y, x)


# --- cbrt, hypot ------------------------------------------------------------------------------
@numba.njit(**_JIT)
def fcbrt(x):
    """cbrt(x), vectorisable: |x| = m 2^(3j) with m in [1, 8), cbrt(m) from a first guess (the
    bits of m divided by 3), three Halley steps and a Newton step on the exactly computed
    residual m - y^3, times 2^j."""
    a = np.abs(np.float64(x))
    sub = a < _TINY
    bits = _bits(a * 18014398509481984.0 if sub else a)  # 2^54: subnormals scaled
    e = ((bits >> 52) & 0x7FF) - (1023 + 54 if sub else 1023)
    j = np.int64(np.floor((e + 0.5) / 3.0))  # e // 3, in float arithmetic (vectorisable)
    m = _from_bits((bits & 0x000FFFFFFFFFFFFF) | ((1023 + e - 3 * j) << 52))  # in [1, 8)
    y = _from_bits(np.int64(np.float64(_bits(m)) / 3.0) + 0x2A9F7893782DA1CE)  # within ~6% of cbrt(m)
    for _ in range(3):
        y3 = y * y * y
        y = y * (y3 + 2.0 * m) / (2.0 * y3 + m)  # Halley: ~3x the correct bits each step
    y2 = y * y
    y2_lo = _two_prod_err(y, y, y2)
    p = y2 * y
    residual = (m - p) - (_two_prod_err(y2, y, p) + y2_lo * y)
    y = (y + residual / (3.0 * y2)) * _from_bits((1023 + j) << 52)
    y = x if a == 0.0 or a == np.inf else np.copysign(y, x)
    return x if x != x else y


@numba.njit(**_JIT)
def fhypot(x, y):
    """sqrt(x^2 + y^2) without overflow or underflow (scaled by a power of 2), the sum of squares
    carried in two parts and the square root corrected once: vectorisable."""
    a, b = np.abs(np.float64(x)), np.abs(np.float64(y))
    big = max(a, b)
    small = min(a, b)
    k = min(max(((_bits(big) >> 52) & 0x7FF) - 1023, -1022), 1022)
    down = _from_bits((1023 - k) << 52)
    big_s = big * down if big < np.inf else 1.0
    small_s = small * down if big < np.inf else 0.0
    p = big_s * big_s
    q = small_s * small_s
    s = p + q
    s_lo = _two_sum_err(p, q, s) + _two_prod_err(big_s, big_s, p) + _two_prod_err(small_s, small_s, q)
    r = np.sqrt(s)
    r = r + ((s - r * r) - _two_prod_err(r, r, r * r) + s_lo) / (2.0 * r) if s > 0.0 else r
    h = r * _from_bits((1023 + k) << 52)
    h = h if x == x and y == y else np.nan
    return np.inf if a == np.inf or b == np.inf else h  # also hypot(inf, nan), as NumPy


# --- arcsin, arccos -------------------------------------------------------------------------------
# asin(t) = t + t z P(z), z = t^2 <= 1/4: P a near-minimax polynomial (mpmath.chebyfit, degree 12,
# |error| < 2e-17 in P, so < 2^-60 relative in asin)
_ASIN_P = (0.16666666666666669, 0.07499999999998433, 0.04464285714635543, 0.030381944138531247,
           0.02237217294214989, 0.017352392720869973, 0.013971212973552933, 0.011479177415184906,
           0.01032281435018578, 0.005457506718640358, 0.01740087944269402, -0.014851887071247204,
           0.028757851367421566)


@numba.njit(**_JIT)
def _asin_tail(t):
    """asin(t) - t for |t| <= 1/2."""
    z = t * t
    p = _ASIN_P
    return t * z * (p[0] + z * (p[1] + z * (p[2] + z * (p[3] + z * (p[4] + z * (p[5] + z * (p[6] + z * (
        p[7] + z * (p[8] + z * (p[9] + z * (p[10] + z * (p[11] + z * p[12]))))))))))))


@numba.njit(**_JIT)
def _asin_of_sqrt(w):
    """(s, rest) with asin(sqrt(w)) = s + rest for 0 <= w <= 1/4: sqrt(w) = s + s_lo (s_lo from the
    exactly computed residual w - s^2), asin(s + s_lo) = s + s_lo + tail(s)."""
    s = np.sqrt(w)
    ss = s * s
    s_lo = ((w - ss) - _two_prod_err(s, s, ss)) / (2.0 * s) if s > 0.0 else 0.0
    return s, s_lo + _asin_tail(s)


@numba.njit(**_JIT)
def farcsin(x):
    """arcsin(x), vectorisable: the series for |x| <= 1/2, pi/2 - 2 asin(sqrt((1 - |x|) / 2)) above."""
    a = np.abs(x)
    inside = a <= 1.0
    s, rest = _asin_of_sqrt(0.5 * (1.0 - a) if inside and a > 0.5 else 0.25)
    t = 2.0 * s
    head = _PIO2_HI - t
    far = head + ((_two_sum_err(_PIO2_HI, -t, head) + _PIO2_LO) - 2.0 * rest)
    near = a + _asin_tail(a if a <= 0.5 else 0.5)
    y = near if a <= 0.5 else far
    y = y if inside else np.nan
    return x if x != x else np.copysign(y, x)


@numba.njit(**_JIT)
def farccos(x):
    """arccos(x), vectorisable: pi/2 - asin(x) for |x| <= 1/2, 2 asin(sqrt((1 - x) / 2)) above,
    pi - 2 asin(sqrt((1 + x) / 2)) below."""
    a = np.abs(x)
    inside = a <= 1.0
    s, rest = _asin_of_sqrt(0.5 * (1.0 - a) if inside and a > 0.5 else 0.25)
    t = 2.0 * s
    head = _PI_HI - t
    west = head + ((_two_sum_err(_PI_HI, -t, head) + _PI_LO) - 2.0 * rest)  # x < -1/2
    east = t + 2.0 * rest  # x > 1/2
    m = x if a <= 0.5 else 0.0
    near = _PIO2_HI - (m + (_asin_tail(m) - _PIO2_LO))
    y = near if a <= 0.5 else (east if x > 0.0 else west)
    y = y if inside else np.nan
    return x if x != x else y


# --- power ------------------------------------------------------------------------------------
# x^y = e^(y log x) with log x and the product carried in two doubles (~2^-100 relative), so the
# exponential's argument is right to < 2^-64 |y log x| and the result to about 1 ulp.
_TWO_THIRDS_HI, _TWO_THIRDS_LO = 0.6666666666666666, 3.700743415417188e-17
_LN2_LO2 = 1.1612227229362532e-26  # ln 2 - _LN2_HI - _LN2_LO


@numba.njit(**_JIT)
def _log_dd(x):
    """(hi, lo) with log(x) = hi + lo to ~2^-64 relative, for finite x > 0: log(2^e m) =
    e ln2 + 2s + 2s^3/3 + s^5 R(s^2), s = (m - 1) / (m + 1), the first two terms in two parts."""
    sub = x < _TINY
    bits = _bits(x * 18014398509481984.0 if sub else x)
    e = ((bits >> 52) & 0x7FF) - (1023 + 54 if sub else 1023)
    m = _from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    e = np.float64(e + 1 if big else e)
    f = m - 1.0  # exact
    d = 2.0 + f
    d_lo = _two_sum_err(2.0, f, d)
    inv = 1.0 / d
    sh = f * inv
    sl = ((f - sh * d) - _two_prod_err(sh, d, sh * d) - sh * d_lo) * inv  # s = sh + sl, from the exact residual
    s2 = sh * sh
    s2_lo = _two_prod_err(sh, sh, s2) + 2.0 * sh * sl
    s3 = s2 * sh
    s3_lo = _two_prod_err(s2, sh, s3) + (s2_lo * sh + s2 * sl)
    t3 = s3 * _TWO_THIRDS_HI
    t3_lo = _two_prod_err(s3, _TWO_THIRDS_HI, t3) + (s3 * _TWO_THIRDS_LO + s3_lo * _TWO_THIRDS_HI)
    z = s2
    # R = sum_{k>=2} 2 z^(k-2) / (2k + 1); the z^10 term is < 2^-60 of R
    z2 = z * z
    z4 = z2 * z2
    r = ((2.0 / 5 + z * (2.0 / 7)) + z2 * (2.0 / 9 + z * (2.0 / 11))) + z4 * (
        ((2.0 / 13 + z * (2.0 / 15)) + z2 * (2.0 / 17 + z * (2.0 / 19)))
        + z4 * ((2.0 / 21 + z * (2.0 / 23)) + z2 * (2.0 / 25)))  # Estrin's scheme
    tail = s3 * z * r
    two_s = 2.0 * sh
    m_hi = two_s + t3
    m_lo = _two_sum_err(two_s, t3, m_hi) + (2.0 * sl + t3_lo + tail)
    e_hi = e * _LN2_HI  # exact
    hi = e_hi + m_hi
    lo = _two_sum_err(e_hi, m_hi, hi) + (m_lo + e * _LN2_LO + e * _LN2_LO2)
    h = hi + lo
    return h, (hi - h) + lo


@numba.njit(**_JIT)
def _exp_dd(hi, lo):
    """e^(hi + lo) for |lo| <= ulp(hi), hi clamped to [-746, 710] (beyond: 0 or inf)."""
    h = min(max(hi, -746.0), 710.0)
    k = np.floor(h * _LOG2E + 0.5)
    r0 = h - k * _LN2_HI  # exact
    b = k * _LN2_LO
    r = r0 - b
    c = ((r0 - r) - b) + (lo - k * _LN2_LO2)
    q = _expm1_reduced(r)
    return _scale(1.0 + (q + (c + c * q)), k)


@numba.njit(**_JIT)
def fpow(x, y):
    """x ** y (NumPy's np.power for floats), vectorisable: |x|^y = e^(y log|x|) in two-part
    arithmetic, the sign of a negative base from y's parity, the C99 special cases by selects."""
    x, y = np.float64(x), np.float64(y)
    a = np.abs(x)
    finite = a < np.inf and a > 0.0
    lh, ll = _log_dd(a if finite else 1.0)
    ph = y * lh
    pl = _two_prod_err(y, lh, ph) + y * ll
    inside = np.abs(ph) < 746.0  # else over- or underflow, whatever pl is (pl may be NaN there)
    v = _exp_dd(ph if inside else (np.copysign(746.0, ph) if ph == ph else 0.0), pl if inside else 0.0)
    integral = np.floor(y) == y
    odd = integral and np.abs(y) < 9007199254740992.0 and np.floor(0.5 * y) * 2.0 != y
    v = v if x > 0.0 or integral else np.nan  # a negative base needs an integral exponent
    # zero and infinite bases: 0^y is 0 for y > 0, inf for y < 0; inf^y the other way round
    v = (0.0 if y > 0.0 else np.inf) if a == 0.0 else v
    v = (np.inf if y > 0.0 else 0.0) if a == np.inf else v
    v = -v if odd and np.copysign(1.0, x) < 0.0 else v  # also -0.0 ** odd, -inf ** odd
    # infinite exponents: |x| < 1 or > 1 decides, and (-1) ** ±inf = 1
    grow = a > 1.0
    v = ((np.inf if grow else 0.0) if y > 0.0 else (0.0 if grow else np.inf)) if np.abs(y) == np.inf else v
    v = 1.0 if a == 1.0 and np.abs(y) == np.inf else v
    v = np.nan if x != x or y != y else v
    return 1.0 if y == 0.0 or x == 1.0 else v


# --- erf --------------------------------------------------------------------------------------
# near-minimax polynomials computed with mpmath.chebyfit: erf(x) / x in z = x^2 on [0, 1] (degree 12,
# relative error < 2e-19), and R(t) = erfc(1/t) e^(1/t^2) in t = 1/|x| on [1/2, 1] and [1/6, 1/2]
# (degree 16 in t - 3/4 and t - 1/3, relative error < 2e-17; erf = 1 - e^(-x^2) R needs R to ~2^-51 at
# |x| = 1, less beyond)
_ERF_SMALL = (1.1283791670955126, -0.3761263890318375, 0.11283791670954879, -0.026866170645076792,
    0.0052239776248180145, -0.000854832698083379, 0.0001205533111164271, -1.4925595266831182e-05,
    1.6461000484121368e-06, -1.6350312701054695e-07, 1.4659775274047436e-08, -1.1372848856791674e-09,
    5.957176147748911e-11)
_ERFC_R_NEAR = (0.3511346940289053, 0.34136885869943456, -0.15457007331395745, 0.04956777243539872,
    0.0024438983036383136, -0.022199195201193622, 0.024101016571362502, -0.017696333815521985,
    0.00890750231341082, -0.0010414528524006104, -0.00439890937042647, 0.007073932200409024,
    -0.007350450932653615, 0.006030982257546242, -0.003668105030686873, -4.951154443442712e-05,
    0.0025329558047281465)
_ERFC_R_FAR = (0.17900115118138993, 0.4893503400645556, -0.18141695624408988, -0.05014611072243504,
    0.1614728559983808, -0.13484128702261547, -0.004657681403836133, 0.1810764511279231, -0.27847749973790775,
    0.1799142204935287, 0.16383356759309148, -0.6507788841539413, 0.9740012663671609, -0.6704203798382333,
    -0.775124707942762, 3.6037359942514544, -4.9651437547027335)


_TWO_OVER_SQRTPI_HI, _TWO_OVER_SQRTPI_LO = 1.1283791670955126, 1.533545961316588e-17


@numba.njit(**_JIT)
def _horner(c, t):
    """c[0] + c[1] t + ... + c[16] t^16."""
    return c[0] + t * (c[1] + t * (c[2] + t * (c[3] + t * (c[4] + t * (c[5] + t * (c[6] + t * (c[7] + t * (
        c[8] + t * (c[9] + t * (c[10] + t * (c[11] + t * (c[12] + t * (c[13] + t * (c[14] + t * (
            c[15] + t * c[16])))))))))))))))


@numba.njit(**_JIT)
def ferf(x):
    """erf(x), vectorisable: x P(x^2) for |x| < 1, 1 - e^(-x^2) R(1/|x|) up to 6, 1 beyond; sign restored."""
    a = np.abs(x)
    z = min(a, 1.0) * min(a, 1.0)
    c = _ERF_SMALL
    tail = z * (c[1] + z * (c[2] + z * (c[3] + z * (c[4] + z * (c[5] + z * (c[6] + z * (
        c[7] + z * (c[8] + z * (c[9] + z * (c[10] + z * (c[11] + z * c[12])))))))))))
    lead = a * _TWO_OVER_SQRTPI_HI  # a (c[0] + tail), the leading product exact in two parts
    small = lead + ((_two_prod_err(a, _TWO_OVER_SQRTPI_HI, lead) + a * (_TWO_OVER_SQRTPI_LO + (c[0] - _TWO_OVER_SQRTPI_HI)))
                    + a * tail)
    m = min(max(a, 1.0), 6.0)
    t = 1.0 / m
    r = _horner(_ERFC_R_NEAR, t - 0.75) if t > 0.5 else _horner(_ERFC_R_FAR, t - 0.3333333333333333)
    large = 1.0 - fexp(-(m * m)) * r
    y = small if a < 1.0 else (large if a < 6.0 else 1.0)
    return x if x != x else np.copysign(y, x)


# --- exp2, arccosh --------------------------------------------------------------------------------
_LN2 = 0.6931471805599453  # ln 2 = _LN2 + _LN2_TAIL
_LN2_TAIL = 2.3190468138462996e-17


@numba.njit(**_JIT)
def fexp2(x):
    """2 ** x, vectorisable: 2^k 2^r with k = rint(x), r = x - k exact, 2^r = e^(r ln 2) with r ln 2
    in two parts."""
    c = min(max(x, -1080.0), 1030.0)
    k = np.rint(c)
    r = c - k  # exact, |r| <= 1/2
    hi = r * _LN2
    lo = _two_prod_err(r, _LN2, hi) + r * _LN2_TAIL
    q = _expm1_reduced(hi)
    y = _scale(1.0 + (q + (lo + lo * q)), min(max(k, -1075.0), 1025.0))
    y = np.inf if x >= 1024.0 else y
    y = 0.0 if x < -1075.0 else y
    return x if x != x else y


@numba.njit(**_JIT)
def farccosh(x):
    """arccosh(x), vectorisable: log1p(t + sqrt(2t + t^2)) with t = x - 1 for x <= 2, log(2x - 1 / (x +
    sqrt(x^2 - 1))) up to 2^28, log(x) + ln 2 beyond; NaN below 1."""
    m = min(max(x, 1.0), 2.0 ** 28)
    t = m - 1.0  # exact for m <= 2
    small = flog1p(t + np.sqrt(2.0 * t + t * t))
    mid = flog(2.0 * m - 1.0 / (m + np.sqrt(m * m - 1.0)))
    big = flog(min(x, 1.7976931348623157e308)) + 6.93147180559945286227e-01
    y = small if x <= 2.0 else (mid if x <= 2.0 ** 28 else big)
    y = np.inf if x == np.inf else y
    y = np.nan if x < 1.0 else y
    return x if x != x else y
