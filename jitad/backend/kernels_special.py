"""Scalar special functions for generated kernels (scipy.special on traced values, compiled).

Generated loops call these as `K.<name>(...)` (jitad.backend.kernels re-exports them). Each
takes and returns one float64 and follows SciPy's values at poles and outside the domain
(inf, -inf or nan). Accuracy in float64 is a few ulp over the usual domain: series,
asymptotic expansions and recurrences chosen so that no step cancels, and inverse
functions polished by Halley steps on an accurate forward function.

Constants: Bernoulli-number coefficients of the asymptotic expansions, and the Taylor
coefficients of digamma about its positive root x0 (ψ^(k)(x0)/k! = (-1)^(k+1) ζ(k+1, x0)),
computed with mpmath at 50 digits.
"""
import math

import numba
import numpy as np

__all__ = ["gammaln", "gamma", "betaln", "digamma", "polygamma", "erf", "erfc", "ndtr", "log_ndtr", "erfinv",
           "ndtri", "log_expit", "xlogy", "xlog1py", "entr", "bessel_i", "erfcx",
           "gammainc", "gammaincc", "betainc", "frexp_exponent"]

_njit = numba.njit(cache=True, error_model="numpy", nogil=True)

_SQRT_PI = 1.7724538509055160273
_SQRT_2 = 1.4142135623730950488
_SQRT1_2 = 0.70710678118654752440
_LOG_SQRT_2PI = 0.91893853320467274178
_LN_SQRT_PI = 0.57236494292470008707

# B_2k / (2k): ψ(x) ~ log x - 1/(2x) - Σ B_2k / (2k x^2k)
_PSI_ASYMPTOTIC = (0.083333333333333333, -0.0083333333333333333, 0.003968253968253968254,
                   -0.0041666666666666666667, 0.0075757575757575757576, -0.021092796092796092796,
                   0.083333333333333333333, -0.44325980392156862745)
# B_2j / (2j)!: Euler-Maclaurin tail of the Hurwitz zeta function
_ZETA_TAIL = (0.08333333333333333, -0.001388888888888889, 3.306878306878307e-05, -8.267195767195768e-07,
              2.08767569878681e-08, -5.284190138687493e-10, 1.3382536530684679e-11, -3.3896802963225827e-13,
              8.586062056277845e-15, -2.174868698558062e-16, 5.5090028283602295e-18, -1.3954464685812522e-19)
# B_2k / (2k (2k-1)): Stirling's series of log Γ
_STIRLING = (0.08333333333333333, -0.002777777777777778, 0.0007936507936507937, -0.0005952380952380953,
             0.0008417508417508417, -0.0019175269175269176, 0.00641025641025641, -0.029550653594771242)
_PSI_ROOT_HI, _PSI_ROOT_LO = 1.4616321449683622, 9.549995429965697e-17
_PSI_ROOT_TAYLOR = (0.9676722454476212, -0.4427631689835921, 0.258499760955651, -0.16394270544240652,
                    0.10782405069126237, -0.07219956125645471, 0.04880428816414311, -0.03316112647484736,
                    0.022597648232218104, -0.01542476590494896, 0.010538791616612175, -0.007204534386356869,
                    0.004926781395729853, -0.003369801655439328, 0.002305126326734928, -0.0015769367714301972,
                    0.0010788252019162967, -0.0007380709389960052, 0.000504953265834602, -0.0003454680251063077,
                    0.00023635601564027053, -0.00016170622091974803)


# --- gamma family -----------------------------------------------------------------------------
@_njit
def gammaln(x):
    """log|Γ(x)| (scipy.special.gammaln)."""
    return math.lgamma(float(x))


@_njit
def gamma(x):
    return math.gamma(float(x))


@_njit
def _stirling_correction(z):
    """log Γ(z) - ((z - 1/2) log z - z + log √(2π)), for z >= 8."""
    r = 1.0 / (z * z)
    acc = 0.0
    for k in range(len(_STIRLING) - 1, -1, -1):
        acc = acc * r + _STIRLING[k]
    return acc / z


@_njit
def betaln(a, b):
    """log|B(a, b)|. With a large argument the log Γ terms would cancel; there the
    difference log Γ(big) - log Γ(big + small) comes from Stirling's series instead."""
    a, b = float(a), float(b)
    big, small = max(a, b), min(a, b)
    if big < 8.0 or small <= 0.0:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    total = big + small
    # log Γ(big) - log Γ(total) = -(big - 1/2) log1p(small/big) - small log(total) + small + corrections
    diff = -(big - 0.5) * math.log1p(small / big) - small * math.log(total) + small + \
        _stirling_correction(big) - _stirling_correction(total)
    return math.lgamma(small) + diff


@_njit
def _digamma_positive(x):
    if abs(x - _PSI_ROOT_HI) < 0.2:  # about the root: ψ is small there, the recurrence would cancel
        h = (x - _PSI_ROOT_HI) - _PSI_ROOT_LO
        acc = 0.0
        for k in range(len(_PSI_ROOT_TAYLOR) - 1, -1, -1):
            acc = (acc + _PSI_ROOT_TAYLOR[k]) * h
        return acc
    shift = 0.0
    while x < 10.0:  # ψ(x) = ψ(x + 1) - 1/x
        shift -= 1.0 / x
        x += 1.0
    r = 1.0 / (x * x)
    acc = 0.0
    for k in range(len(_PSI_ASYMPTOTIC) - 1, -1, -1):
        acc = acc * r + _PSI_ASYMPTOTIC[k]
    return shift + (math.log(x) - 0.5 / x - acc * r)


@_njit
def digamma(x):
    """ψ(x) = d log Γ(x)/dx (scipy.special.digamma); -inf at 0, nan at negative integers."""
    x = float(x)
    if x != x or x == np.inf:
        return x
    if x <= 0.0:
        if x == math.floor(x):
            return -np.inf if x == 0.0 else np.nan
        # reflection ψ(x) = ψ(1 - x) - π / tan(πx); tan has period 1, and πr for the exact
        # r = x - round(x) is accurate near the poles, where tan(πx) is small
        return _digamma_positive(1.0 - x) - math.pi / math.tan(math.pi * (x - math.floor(x + 0.5)))
    return _digamma_positive(x)


@_njit
def _hurwitz_zeta(s, x):
    """ζ(s, x) = Σ_k (x + k)^-s for an integer s >= 2: the first terms summed directly (the
    smallest first), the rest by Euler-Maclaurin at x + N >= 10 + s."""
    count = 0
    bound = 10.0 + s
    if x < bound:
        count = int(math.ceil(bound - x))
    y = x + count
    tail = y ** (1 - s) / (s - 1) + 0.5 * y ** (-s)
    p = s * y ** (-(s + 1))  # s (s+1) ... (s+2j-2) / y^(s+2j-1) for j = 1
    r = 1.0 / (y * y)
    for j in range(len(_ZETA_TAIL)):
        term = _ZETA_TAIL[j] * p
        tail += term
        if abs(term) < 1e-18 * abs(tail):
            break
        p *= (s + 2 * j + 1) * (s + 2 * j + 2) * r
    for k in range(count - 1, -1, -1):
        tail += (x + k) ** (-s)
    return tail


@_njit
def polygamma(n, x):
    """ψ^(n)(x), the n-th derivative of digamma, for an integer n >= 0."""
    x = float(x)
    if n == 0:
        return digamma(x)
    if x != x:
        return x
    if x == np.inf:
        return 0.0
    if x <= 0.0 and x == math.floor(x):
        return np.inf if n % 2 == 1 else np.nan
    sign = 1.0 if n % 2 == 1 else -1.0
    return sign * math.gamma(n + 1.0) * _hurwitz_zeta(n + 1, x)


# --- error function, normal distribution ------------------------------------------------------
@_njit
def erf(x):
    return math.erf(float(x))


@_njit
def erfc(x):
    return math.erfc(float(x))


@_njit
def ndtr(x):
    """Φ(x), the standard normal CDF; relative accuracy in both tails (erfc)."""
    x = float(x)
    t = x * _SQRT1_2
    z = abs(t)
    if z < _SQRT1_2:
        return 0.5 + 0.5 * math.erf(t)
    y = 0.5 * math.erfc(z)
    return 1.0 - y if t > 0.0 else y


@_njit
def log_ndtr(x):
    """log Φ(x), finite far into the lower tail (asymptotic series beyond -20)."""
    x = float(x)
    if x != x:
        return x
    if x > 0.0:
        return math.log1p(-ndtr(-x))
    if x > -20.0:
        return math.log(ndtr(x))
    # log Φ(x) = -x²/2 - log(-x) - log √(2π) + log(1 - 1/x² + 3/x⁴ - 15/x⁶ + ...)
    r = 1.0 / (x * x)
    term, total = 1.0, 0.0
    for k in range(1, 16):
        term *= -(2 * k - 1) * r
        total += term
    return -0.5 * x * x - math.log(-x) - _LOG_SQRT_2PI + math.log1p(total)


@_njit
def _erfinv_guess(y, log_one_minus_y2):
    """A first guess of erfinv(|y|) within ~0.2% (Winitzki's formula, a = 0.147)."""
    if abs(y) < 1e-3:
        return abs(y) * 0.5 * _SQRT_PI * (1.0 + math.pi * y * y / 12.0)
    t = 2.0 / (math.pi * 0.147) + 0.5 * log_one_minus_y2
    return math.sqrt(math.sqrt(t * t - log_one_minus_y2 / 0.147) - t)


@_njit
def _erfinv_central(a):
    """erfinv(a) for 0 <= a <= 1/2: Halley's iteration on erf(x) = a."""
    x = _erfinv_guess(a, math.log1p(-a * a))
    for _ in range(3):
        u = (math.erf(x) - a) / (2.0 / _SQRT_PI * math.exp(-x * x))  # f / f'
        x -= u / (1.0 + x * u)                                        # f''/f' = -2x
    return x


@_njit
def _erfcinv_tail(z):
    """erfcinv(z) for 0 < z <= 1/2: Halley's iteration on erfc(x) = z (relative accuracy
    of erfc in the tail keeps the result accurate); below 1e-300, Newton on the
    asymptotic log erfc(x)."""
    x = _erfinv_guess(1.0, math.log(z) + math.log(2.0 - z))
    if z < 1e-300:
        log_z = math.log(z)
        for _ in range(6):
            r = 1.0 / (2.0 * x * x)
            series, term = 1.0, 1.0
            for k in range(1, 10):
                term *= -(2 * k - 1) * r
                series += term
            g = -x * x - math.log(x * _SQRT_PI) + math.log(series) - log_z
            x += g / (2.0 * x + 1.0 / x)
        return x
    for _ in range(3):
        u = (math.erfc(x) - z) / (-2.0 / _SQRT_PI * math.exp(-x * x))
        x -= u / (1.0 + x * u)
    return x


@_njit
def erfinv(y):
    """The inverse of erf on (-1, 1); ±inf at ±1, nan outside."""
    y = float(y)
    a = abs(y)
    if not a < 1.0:
        return math.copysign(np.inf, y) if a == 1.0 else np.nan
    x = _erfinv_central(a) if a <= 0.5 else _erfcinv_tail(1.0 - a)  # 1 - a is exact here
    return math.copysign(x, y)


@_njit
def ndtri(p):
    """The inverse of Φ on (0, 1): √2 erfinv(2p - 1) in the middle, -√2 erfcinv(2p) in the
    lower tail and √2 erfcinv(2(1 - p)) in the upper one (every argument exact)."""
    p = float(p)
    if not 0.0 < p < 1.0:
        if p == 0.0:
            return -np.inf
        return np.inf if p == 1.0 else np.nan
    if p < 0.25:
        return -_SQRT_2 * _erfcinv_tail(2.0 * p)
    if p > 0.75:
        return _SQRT_2 * _erfcinv_tail(2.0 * (1.0 - p))
    q = 2.0 * p - 1.0
    return math.copysign(_SQRT_2 * _erfinv_central(abs(q)), q)


# --- logistic, information ---------------------------------------------------------------------
@_njit
def log_expit(x):
    """log(1 / (1 + e^-x)) without overflow or cancellation."""
    x = float(x)
    if x >= 0.0:
        return -math.log1p(math.exp(-x))
    return x - math.log1p(math.exp(x))


@_njit
def xlogy(x, y):
    """x log y, and 0 where x = 0 (unless y is nan)."""
    x, y = float(x), float(y)
    if x == 0.0 and y == y:
        return 0.0
    return x * math.log(y) if y > 0.0 else x * np.log(y)


@_njit
def xlog1py(x, y):
    x, y = float(x), float(y)
    if x == 0.0 and y == y:
        return 0.0
    return x * math.log1p(y) if y > -1.0 else x * np.log1p(y)


@_njit
def entr(x):
    """-x log x for x > 0, 0 at 0, -inf for x < 0."""
    x = float(x)
    if x > 0.0:
        return -x * math.log(x)
    if x == 0.0:
        return 0.0
    return x if x != x else -np.inf


# --- modified Bessel functions of the first kind, integer order ------------------------------------
@_njit
def bessel_i(n, x, scaled):
    """I_n(x), or e^-|x| I_n(x) when `scaled`, for an integer n >= 0: the power series
    (positive terms) up to |x| = max(30, n²), the asymptotic series beyond."""
    x = float(x)
    if x != x:
        return x
    ax = abs(x)
    sign = -1.0 if (x < 0.0 and n % 2 == 1) else 1.0
    if ax > 30.0 and ax > n * n:
        mu = 4.0 * n * n
        term, total = 1.0, 1.0
        for k in range(1, 80):
            term *= -(mu - (2 * k - 1) ** 2) / (k * 8.0 * ax)
            total += term
            if abs(term) < 1e-17 * abs(total):
                break
        value = total / math.sqrt(2.0 * math.pi * ax)
        if not scaled:
            if ax > 709.0:
                return sign * np.inf
            value *= math.exp(ax)
        return sign * value
    half = 0.5 * ax
    term = 1.0
    for k in range(1, n + 1):
        term *= half / k
    total = term
    q = half * half
    k = 0
    while term > 1e-17 * total:
        k += 1
        term *= q / (k * (k + n))
        total += term
    if scaled:
        total *= math.exp(-ax)
    return sign * total


# --- scaled complementary error function, incomplete gamma and beta functions -------------------
@_njit
def erfcx(x):
    """e^(x²) erfc(x) (scipy.special.erfcx): the product with x² split in two exact parts below
    x = 10 (so e^(x²) carries no rounding of x² into its exponent), the asymptotic series above."""
    x = float(x)
    if x != x:
        return x
    if x >= 10.0:
        if x > 1e8:
            return 1.0 / (x * _SQRT_PI)
        r = 1.0 / (2.0 * x * x)
        term, total = 1.0, 1.0
        for k in range(1, 40):
            term *= -(2 * k - 1) * r
            total += term
            if abs(term) < 1e-17:
                break
        return total / (x * _SQRT_PI)
    if x < -26.7:
        return np.inf
    split = 134217729.0 * x  # Dekker's split: x = hi + lo with hi of 26 bits, so hi² is exact
    hi = split - (split - x)
    lo = x - hi
    square_hi, square_lo = hi * hi, (2.0 * hi + lo) * lo
    growth = math.exp(square_hi) * math.exp(square_lo)
    if x >= 0.0:
        return growth * math.erfc(x)
    return 2.0 * growth - growth * math.erfc(-x)


@_njit
def _gamma_prefactor(a, x):
    """x^a e^-x / Γ(a)."""
    return math.exp(a * math.log(x) - x - math.lgamma(a))


@_njit
def _gammainc_series(a, x):
    """P(a, x) = x^a e^-x / Γ(a) Σ x^n / (a (a+1) ... (a+n)), for x < a + 1 (positive terms)."""
    term = 1.0 / a
    total = term
    denominator = a
    for _ in range(100000):
        denominator += 1.0
        term *= x / denominator
        total += term
        if term < total * 1e-17:
            break
    return total * _gamma_prefactor(a, x)


@_njit
def _gammaincc_fraction(a, x):
    """Q(a, x) by its continued fraction (modified Lentz), for x >= a + 1."""
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < tiny:
            d = tiny
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-16:
            break
    return h * _gamma_prefactor(a, x)


@_njit
def _gammainc_edge(a, x, lower):
    """P (lower) or Q of the arguments outside the interior a > 0, 0 < x < inf, as SciPy."""
    if a != a or x != x or a < 0.0 or x < 0.0 or (a == 0.0 and x == 0.0):
        return np.nan
    if a == 0.0 or x == np.inf:
        return 1.0 if lower else 0.0
    return 0.0 if lower else 1.0  # x == 0


@_njit
def gammainc(a, x):
    """The regularized lower incomplete gamma function P(a, x) (scipy.special.gammainc): its series
    below x = a + 1, 1 - its continued fraction above. Relative error ~1e-14 for a up to ~100."""
    a, x = float(a), float(x)
    if not (a > 0.0 and 0.0 < x < np.inf):
        return _gammainc_edge(a, x, True)
    if x < a + 1.0:
        return _gammainc_series(a, x)
    return 1.0 - _gammaincc_fraction(a, x)


@_njit
def gammaincc(a, x):
    """Q(a, x) = 1 - P(a, x) (scipy.special.gammaincc), each side computed directly."""
    a, x = float(a), float(x)
    if not (a > 0.0 and 0.0 < x < np.inf):
        return _gammainc_edge(a, x, False)
    if x < a + 1.0:
        return 1.0 - _gammainc_series(a, x)
    return _gammaincc_fraction(a, x)


@_njit
def _betainc_fraction(a, b, x):
    """The continued fraction of I_x(a, b) (modified Lentz), converging fast for x < (a+1)/(a+b+2)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < tiny:
        d = tiny
    d = 1.0 / d
    h = d
    for m in range(1, 100000):
        m2 = 2.0 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < tiny:
            d = tiny
        c = 1.0 + aa / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < tiny:
            d = tiny
        c = 1.0 + aa / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-16:
            break
    return h


@_njit
def betainc(a, b, x):
    """The regularized incomplete beta function I_x(a, b) (scipy.special.betainc): its continued
    fraction on the side of (a+1)/(a+b+2) where it converges, 1 - the mirrored one on the other."""
    a, b, x = float(a), float(b), float(x)
    if a != a or b != b or x != x or a < 0.0 or b < 0.0 or x < 0.0 or x > 1.0 or (a == 0.0 and b == 0.0):
        return np.nan
    if a == 0.0 or x == 1.0:
        return 1.0 if b > 0.0 or x == 1.0 else np.nan
    if b == 0.0 or x == 0.0:
        return 0.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - betaln(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betainc_fraction(a, b, x) / a
    return 1.0 - front * _betainc_fraction(b, a, 1.0 - x) / b


@_njit
def frexp_exponent(x):
    """The exponent e of x = m 2^e with 1/2 <= |m| < 1 (np.frexp's second output); 0 for 0, inf, nan."""
    x = float(x)
    if x == 0.0 or x != x or x == np.inf or x == -np.inf:
        return np.int32(0)
    return np.int32(math.frexp(x)[1])
