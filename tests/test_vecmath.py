"""The vectorisable elementary functions (jitad.backend.kernels_vecmath) against NumPy.

Each function is swept over >= 1e6 points of its whole domain: random IEEE bit patterns (every
exponent, subnormals, both signs, a few infinities and NaNs), the ranges where the function
varies, the neighbourhoods of its hard points, and the special values. The largest error must be
<= 2 ulp, and ±0, ±inf and NaN must come out as NumPy's. All functions run in ONE njit'd loop (one
compilation per session), selected by number. A fused kernel must call them and agree with the
reference executor.
"""
import math
import re

import numba
import numpy as np
import pytest
from scipy import special

import jitad
from jitad.backend import kernels as K

N = 1_000_000
EDGES = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-310, -1e-310, 2.2250738585072014e-308,
                  1e-300, 1e-20, 1e-17, 1e-8, 0.5, 1.0, -1.0, 2.0, np.e, 10.0, np.pi, np.pi / 2, np.pi / 4, 1e22,
                  4194304.0, 4194305.0, 2.0 ** 53, 2.0 ** 54, 1e300, -1e300, 1.7976931348623157e308,
                  -1.7976931348623157e308, 709.78, 710.0, -745.0])
# x = 6381956970095103 2^797 is the double closest to a multiple of pi/2 (|x - k pi/2| ~ 2^-61 x 2^0):
# NumPy's cos there is 8 ulp off the correctly rounded -4.687165924254628e-19 (mpmath, 3000 bits)
HARD = 6381956970095103 * 2.0 ** 797
COS_HARD = -4.687165924254628e-19

# name: NumPy's (or SciPy's) function; the sweep loop below calls K.f<name> by its index here
UNARY = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "log": np.log, "log1p": np.log1p, "log2": np.log2,
         "log10": np.log10, "exp": np.exp, "expm1": np.expm1, "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh,
         "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan, "arcsinh": np.arcsinh, "arctanh": np.arctanh, "cbrt": np.cbrt,
         "log_expit": special.log_expit, "erf": lambda x: _math_erf(x).astype(np.float64),
         "exp2": np.exp2, "arccosh": np.arccosh}
# erf against C's erf (math.erf): scipy.special.erf is itself up to 3 ulp off (at x = -0.96, say)
_math_erf = np.frompyfunc(math.erf, 1, 1)
BINARY = {"arctan2": np.arctan2, "hypot": np.hypot, "power": np.power}
FLOAT32 = {"sin32": np.sin, "cos32": np.cos, "tan32": np.tan}  # for float32 arguments only
_LATER = ["erf", "exp2", "arccosh"]  # numbered after the others, in the order they were added
WHICH = {name: k for k, name in enumerate([n for n in UNARY if n not in _LATER] + list(BINARY) + list(FLOAT32) + _LATER)}


@numba.njit(error_model="numpy")  # no cache=True: Numba's cache would not see kernels_vecmath change
def _sweep(which, x, y, out):
    """out[i] = K.f<name>(x[i]) (or (x[i], y[i])) for the function numbered `which` in WHICH."""
    for i in range(x.shape[0]):
        v = x[i]
        if which == 0:
            out[i] = K.fsin(v)
        elif which == 1:
            out[i] = K.fcos(v)
        elif which == 2:
            out[i] = K.ftan(v)
        elif which == 3:
            out[i] = K.flog(v)
        elif which == 4:
            out[i] = K.flog1p(v)
        elif which == 5:
            out[i] = K.flog2(v)
        elif which == 6:
            out[i] = K.flog10(v)
        elif which == 7:
            out[i] = K.fexp(v)
        elif which == 8:
            out[i] = K.fexpm1(v)
        elif which == 9:
            out[i] = K.ftanh(v)
        elif which == 10:
            out[i] = K.fsinh(v)
        elif which == 11:
            out[i] = K.fcosh(v)
        elif which == 12:
            out[i] = K.farcsin(v)
        elif which == 13:
            out[i] = K.farccos(v)
        elif which == 14:
            out[i] = K.farctan(v)
        elif which == 15:
            out[i] = K.farcsinh(v)
        elif which == 16:
            out[i] = K.farctanh(v)
        elif which == 17:
            out[i] = K.fcbrt(v)
        elif which == 18:
            out[i] = K.flog_expit(v)
        elif which == 19:
            out[i] = K.farctan2(v, y[i])
        elif which == 20:
            out[i] = K.fhypot(v, y[i])
        elif which == 21:
            out[i] = K.fpow(v, y[i])
        elif which == 22:
            out[i] = K.fsin32(v)
        elif which == 23:
            out[i] = K.fcos32(v)
        elif which == 24:
            out[i] = K.ftan32(v)
        elif which == 25:
            out[i] = K.ferf(v)
        elif which == 26:
            out[i] = K.fexp2(v)
        elif which == 27:
            out[i] = K.farccosh(v)


def ulp_distance(a, b):
    """|a - b| in units in the last place (counting representable doubles between them); 0 where
    both are NaN, inf where one is."""
    ia, ib = a.view(np.int64), b.view(np.int64)
    ia = np.where(ia < 0, np.int64(-2 ** 63) - ia, ia)  # a monotone map of the doubles to integers
    ib = np.where(ib < 0, np.int64(-2 ** 63) - ib, ib)
    with np.errstate(over="ignore"):
        d = np.abs(ia - ib).astype(np.float64)
    apart = (ia < 0) != (ib < 0)  # opposite signs: the difference may not fit an int64
    d[apart] = np.abs(ia[apart].astype(np.float64) - ib[apart].astype(np.float64))
    d[np.isnan(a) & np.isnan(b)] = 0
    d[np.isnan(a) != np.isnan(b)] = np.inf
    return d


def _random_bits(rng, n):
    """Doubles from uniformly random bit patterns: every exponent and sign equally often."""
    return rng.integers(-2 ** 63, 2 ** 63, n, dtype=np.int64, endpoint=False).view(np.float64)


def _points(name, rng):
    u = rng.uniform
    if name in ("sin", "cos", "tan"):
        k = rng.integers(-10 ** 6, 10 ** 6, 100_000)
        parts = [u(-10, 10, 300_000), u(-5e6, 5e6, 200_000), u(-1e-6, 1e-6, 50_000),
                 k * (np.pi / 2) + u(-1e-9, 1e-9, k.size), _random_bits(rng, 350_000), [HARD, -HARD]]
    elif name == "log1p":
        parts = [u(-1, 3, 300_000), u(-1e-6, 1e-6, 100_000), -1.0 + u(0, 1e-9, 50_000), u(-1e-3, 1e-3, 100_000),
                 np.abs(_random_bits(rng, 400_000)), _random_bits(rng, 50_000)]
    elif name.startswith("log") and name != "log_expit":
        parts = [u(0, 4, 300_000), 1.0 + u(-1e-6, 1e-6, 100_000), u(0.5, 2.0, 100_000),
                 np.abs(_random_bits(rng, 450_000)), _random_bits(rng, 50_000), 10.0 ** np.arange(-320, 309)]
    elif name in ("arctanh", "arcsin", "arccos"):
        parts = [u(-1, 1, 400_000), 1.0 - u(0, 1e-6, 100_000), u(-1e-6, 1e-6, 100_000), u(-0.51, -0.49, 50_000),
                 u(0.49, 0.51, 50_000), -1.0 + u(0, 1e-6, 50_000), _random_bits(rng, 300_000)]
    elif name == "exp2":
        parts = [u(-1100, 1100, 300_000), u(-3, 3, 200_000), u(-1080, -1020, 100_000), u(1020, 1025, 50_000),
                 u(-1e-8, 1e-8, 50_000), _random_bits(rng, 300_000)]
    elif name == "arccosh":
        parts = [u(1, 3, 300_000), 1.0 + u(0, 1e-6, 100_000), u(0, 1e6, 200_000), np.abs(_random_bits(rng, 300_000)),
                 _random_bits(rng, 100_000)]
    else:  # exp-like (all of the real line) and the algebraic ones
        parts = [u(-750, 750, 200_000), u(-30, 30, 200_000), u(-3, 3, 200_000), u(-1e-6, 1e-6, 50_000),
                 _random_bits(rng, 350_000)]
    x = np.concatenate([np.asarray(p, np.float64) for p in parts] + [EDGES])
    assert x.size >= N
    return x


def _pairs(name, rng):
    """(first, second) arguments for the two-argument functions: both scales, random bits, and
    every pair of edge values; for power, bases near 1, integral and huge exponents."""
    edges = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 5e-324, -5e-324, 1e300, -1e300,
                      1.7976931348623157e308, 2.0, 0.5, -2.0, 3.0, -3.0])
    ey, ex = (e.ravel() for e in np.meshgrid(edges, edges))
    u = rng.uniform
    if name == "power":
        first = [u(0, 3, 300_000), np.abs(_random_bits(rng, 200_000)), u(-3, 3, 100_000),
                 1.0 + u(-1e-6, 1e-6, 100_000), u(0.5, 2, 100_000), u(0, 1e-300, 100_000), u(-10, 10, 100_000), ey]
        second = [u(-10, 10, 300_000), u(-3, 3, 200_000), np.round(u(-20, 20, 100_000)), u(-1e6, 1e6, 100_000),
                  u(-1000, 1000, 100_000), u(-1.2, 1.2, 100_000), _random_bits(rng, 100_000), ex]
    else:
        first = [u(-10, 10, 400_000), _random_bits(rng, 400_000), u(-1, 1, 100_000), u(-3, 3, 100_000) * 1e-10, ey]
        second = [u(-10, 10, 400_000), _random_bits(rng, 400_000), u(-1, 1, 100_000) * 1e-200, u(-3, 3, 100_000), ex]
    return np.concatenate(first), np.concatenate(second)


def _extended(name, args, expected, out):
    """`expected` where it is within 2 ulp of `out`; elsewhere the value computed in extended
    precision (x87 long double, 64-bit mantissa) and rounded, when the platform has it: NumPy's
    own SIMD loops differ by machine (on AVX2 machines its float64 tan of huge arguments is
    14 ulp off, cbrt and sinh 3 ulp), so where NumPy is further off than 2 ulp the correctly
    rounded value decides."""
    if np.finfo(np.longdouble).nmant < 63:
        return expected
    far = ulp_distance(out, expected) > 2
    if not far.any():
        return expected
    reference = {**UNARY, **BINARY}[name]
    with np.errstate(all="ignore"):
        exact = reference(*(np.asarray(a)[far].astype(np.longdouble) for a in args)).astype(np.float64)
    expected = expected.copy()
    expected[far] = exact
    return expected


def _check(name, args, out, expected):
    expected = _extended(name, args, expected, out)
    d = ulp_distance(out, expected)
    worst = int(np.argmax(d))
    assert d[worst] <= 2, (f"{name}{tuple(a[worst] for a in args)} = {out[worst]!r}, "
                           f"NumPy {expected[worst]!r}: {d[worst]} ulp")
    zero = expected == 0
    np.testing.assert_array_equal(np.signbit(out[zero]), np.signbit(expected[zero]), err_msg=f"{name}: sign of 0")
    np.testing.assert_array_equal(out[np.isinf(expected)], expected[np.isinf(expected)])


@pytest.mark.parametrize("name", list(UNARY))
def test_agrees_with_numpy_within_2_ulp(name):
    x = _points(name, np.random.default_rng(13))
    out = np.empty_like(x)
    _sweep(WHICH[name], x, x, out)
    with np.errstate(all="ignore"):
        expected = UNARY[name](x)
    if name == "cos":  # where NumPy is off (see HARD), against the correctly rounded value
        expected[np.abs(x) == HARD] = COS_HARD
    _check(name, (x,), out, expected)


@pytest.mark.parametrize("name", list(BINARY))
def test_two_argument_ones_agree_with_numpy_within_2_ulp(name):
    y, x = _pairs(name, np.random.default_rng(17))
    out = np.empty_like(x)
    _sweep(WHICH[name], y, x, out)
    with np.errstate(all="ignore"):
        expected = BINARY[name](y, x)
    _check(name, (y, x), out, expected)


def test_float32_arguments_are_computed_in_float64():
    """Generated kernels call the same functions on float32 values (then round to float32): the
    result is the float64 one, so within 1 float32 ulp of the exact value (NumPy's own float32
    loops are up to a few float32 ulp off)."""
    x = np.random.default_rng(3).uniform(0.01, 0.99, 100_000).astype(np.float32)
    out = np.empty(x.size)
    for name, reference in {**UNARY, **BINARY}.items():
        _sweep(WHICH[name], x, x[::-1].copy(), out)
        with np.errstate(invalid="ignore"):  # arccosh below 1: NaN, as ours
            exact = reference(x.astype(np.float64)) if name in UNARY else reference(x.astype(np.float64), x[::-1])
        d = ulp_distance(out.astype(np.float32).astype(np.float64), exact.astype(np.float32).astype(np.float64))
        assert d.max() <= 2 ** 29, name  # one float32 ulp, in float64 ulps


@pytest.mark.parametrize("name", list(FLOAT32))
def test_float32_trig_is_the_rounded_float64_value(name):
    """K.fsin32/fcos32/ftan32 (float32 nodes) over every float32 exponent: rounded to float32, the
    float64 value NumPy's float64 function gives, rounded (NumPy's own float32 tan is up to 3 ulp off)."""
    rng = np.random.default_rng(19)
    x = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, 700_000).astype(np.int32).view(np.float32),
                        rng.uniform(-10, 10, 200_000).astype(np.float32),
                        rng.uniform(-1e5, 1e5, 100_000).astype(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4028235e38, 1.5707964], np.float32)])
    out = np.empty(x.size)
    _sweep(WHICH[name], x, x, out)
    with np.errstate(all="ignore"):
        expected = FLOAT32[name](x.astype(np.float64)).astype(np.float32)
    _check(name, (x,), out.astype(np.float32).astype(np.float64), expected.astype(np.float64))
    assert ulp_distance(out.astype(np.float32).astype(np.float64), expected.astype(np.float64)).max() <= 2 ** 29


def test_sum_steps_keep_nan_and_inf():
    @numba.njit(error_model="numpy")
    def total(x):
        acc = 0.0
        prod = 1.0
        for i in range(x.shape[0]):
            acc = K.radd(acc, x[i])
            prod = K.rmul(prod, x[i])
        return acc, prod
    assert np.isnan(total(np.array([1.0, np.nan, 2.0]))[0])
    assert np.isnan(total(np.array([np.inf, -np.inf]))[0])
    assert total(np.array([np.inf, 1.0]))[0] == np.inf
    assert np.isnan(total(np.array([0.0, np.inf]))[1])
    x = np.random.default_rng(0).standard_normal(100_001)
    s, _ = total(x)
    assert abs(s - np.sum(x)) <= 1e-12 * np.sum(np.abs(x))


def _fused(x, y):
    return np.sum(np.sin(x) * x + np.cos(x) + np.log1p(x * x) + np.log(y) + np.log2(y) * np.log10(y)
                  + np.tan(x / 3) + np.arctan(x) + np.arctan2(x, y) + np.sinh(x) * np.cosh(x) + np.arcsinh(x)
                  + np.arctanh(x / 4) + np.cbrt(y) + np.hypot(x, y) + special.log_expit(x) + np.arcsin(x / 4)
                  + np.arccos(x / 5) + y ** (x / 3) + y ** 1.7 + special.erf(x) + np.exp2(x) + np.arccosh(y + 1))


def test_fused_kernel_calls_them_and_matches_the_reference():
    x, y = np.linspace(-3, 3, 1001), np.linspace(0.1, 40, 1001)
    vg = jitad.value_and_grad(_fused, argnums=(0, 1))
    source = str(jitad.explain(vg, x, y)).split("== generated source ==", 1)[1]
    for name in ("sin", "cos", "tan", "log1p", "log", "log2", "log10", "exp2", "arcsin", "arccos", "arctan", "arctan2",
                 "sinh", "cosh", "arcsinh", "arccosh", "arctanh", "cbrt", "hypot"):
        assert f"K.f{name}(" in source and f"np.{name}(" not in source, (name, source)
    assert "K.flog_expit(" in source and "K.ferf(" in source and "K.radd(" in source and "**" not in source, source
    assert "K.fpow(x1_i, 1.7)" in source, source
    value, (gx, gy) = vg(x, y)
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    try:
        ref_value, (ref_gx, ref_gy) = jitad.value_and_grad(_fused, argnums=(0, 1))(x, y)
    finally:
        jitad.config.backend = saved
    np.testing.assert_allclose(value, ref_value, rtol=1e-13)
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(gy, ref_gy, rtol=1e-14, atol=1e-15)


def test_max_and_min_reductions_propagate_nan_like_numpy():
    """Compiled max/min reductions step through K.rmax/K.rmin (llvm.maximum/minimum): a NaN wins, as in
    NumPy (Python's max/min, which kernels used before, dropped a NaN met after a number)."""
    def f(x):
        return np.max(x * 2.0, axis=1), np.min(x, axis=0), np.max(x), np.min(x[0])
    x = np.arange(12.0).reshape(3, 4) - 5.0
    x[1, 2] = np.nan
    source = str(jitad.explain(jitad.jit(f), x)).split("== generated source ==", 1)[1]
    assert "K.rmax(" in source and "K.rmin(" in source and not re.search(r"(?<![\w.])(max|min)\(", source), source
    for got, want in zip(jitad.jit(f)(x), f(x)):
        np.testing.assert_array_equal(got, want)
    clean = np.nan_to_num(x)
    for got, want in zip(jitad.jit(f)(clean), f(clean)):
        np.testing.assert_array_equal(got, want)


def test_float32_kernel_takes_the_float32_trig():
    x = np.linspace(0.1, 3, 999).astype(np.float32)

    def f(x):
        return np.sum(np.sin(x) * np.cos(x) + np.tan(x / 3))
    vg = jitad.value_and_grad(f)
    source = str(jitad.explain(vg, x)).split("== generated source ==", 1)[1]
    assert "K.fsin32(" in source and "K.fcos32(" in source and "K.ftan32(" in source, source
    value, grad = vg(x)
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    try:
        ref_value, ref_grad = vg(x)
    finally:
        jitad.config.backend = saved
    assert grad.dtype == np.float32
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-6, atol=1e-6)
