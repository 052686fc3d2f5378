"""scipy.special and scipy.stats on traced values, built from jitad.primitives.

* scipy.special's ufuncs (gammaln, erf, expit, xlogy, ...) reach the tracer's
  `__array_ufunc__` like NumPy's; `register_special_ufuncs` adds them to `numpy_ops.UFUNCS`
  at the start of a trace once SciPy has imported scipy.special (jitad never imports
  SciPy itself).
* Its plain functions (logsumexp, softmax, log_softmax, polygamma, multigammaln) are
  swapped on the `scipy.special` module while tracing, like scipy.linalg's
  (`linalg_ops.scipy_hooks`); names bound before tracing (`from scipy.special import logsumexp`,
  `logpdf = norm.logpdf`, a `functools.partial` of them) are swapped too (`scipy_names`).
* scipy.stats distributions are objects (`scipy.stats.norm` is a `norm_gen`), so their
  methods are swapped on the classes: `norm.logpdf(x, loc, scale)`, a frozen
  `norm(loc, scale).logpdf(x)` and `from scipy.stats import norm` all dispatch. Each
  method is a composition of primitives, so it differentiates in the data and in every
  float parameter; values follow SciPy's conventions (-inf outside the support, nan for
  invalid parameters). A discrete count (poisson's and bernoulli's k) has no derivative.
"""
import math
import sys

import numpy as np

from jitad.frontend import linalg_ops
from jitad.frontend import numpy_ops
from jitad import primitives as P
from jitad.errors import NonDifferentiableError, ShapeError, UnsupportedOperationError
from jitad.ir import is_tracer

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2PI = math.log(2.0 * math.pi)


def _float(x, dtype=None):
    """x as a float array (float64 for integers, or `dtype`), traced or not."""
    if is_tracer(x):
        target = dtype or (x.dtype if x.dtype.kind == "f" else np.dtype(np.float64))
        return numpy_ops.astype(x, target)
    x = np.asarray(x)
    return x.astype(dtype or (x.dtype if x.dtype.kind == "f" else np.float64))


def _select(condition, value, otherwise):
    """np.where(condition, value, otherwise), leaving out the select when a concrete
    condition holds everywhere (no extra nodes for the usual valid parameters)."""
    if not is_tracer(condition) and np.all(condition):
        return value
    return np.where(condition, value, otherwise)


# --- scipy.special: ufuncs ----------------------------------------------------------------------
def _bessel(n, scaled):
    return lambda x: P.bessel_i_p(x, n=n, scaled=scaled)


SPECIAL_UFUNCS = {
    "expit": P.expit_p, "logit": P.logit_p, "log_expit": P.log_expit_p, "gammaln": P.gammaln_p,
    "gamma": P.gamma_p, "digamma": P.digamma_p, "betaln": P.betaln_p, "erf": P.erf_p, "erfc": P.erfc_p,
    "erfinv": P.erfinv_p, "erfcinv": lambda z: P.ndtri_p(z * 0.5) * -math.sqrt(0.5),  # ndtri(z/2) = -√2 erfcinv(z)
    "ndtr": P.ndtr_p, "log_ndtr": P.log_ndtr_p, "ndtri": P.ndtri_p, "xlogy": P.xlogy_p,
    "xlog1py": P.xlog1py_p, "entr": P.entr_p, "i0": _bessel(0, False), "i1": _bessel(1, False),
    "i0e": _bessel(0, True), "i1e": _bessel(1, True), "jv": P.jv_p, "yv": P.yv_p, "iv": P.iv_p, "ive": P.ive_p,
    "kv": P.kv_p, "kve": P.kve_p, "j0": P.j0_p, "j1": P.j1_p, "y0": P.y0_p, "y1": P.y1_p, "yn": P.yn_p,
    "rgamma": P.rgamma_p, "gammasgn": P.gammasgn_p, "gammaincinv": P.gammaincinv_p, "gammainccinv": P.gammainccinv_p,
    "exp1": P.exp1_p, "expi": P.expi_p, "expn": P.expn_p, "stdtrit": P.stdtrit_p,
}


def _beta(a, b):
    """B(a, b) = exp(betaln(a, b)) for positive a and b (the arguments are read: others are an error)."""
    if bool(np.any((a <= 0) | (b <= 0))):
        raise UnsupportedOperationError("scipy.special.beta with an argument <= 0 (traced)",
                                        "jitad implements it for positive arguments (exp(betaln(a, b))). ")
    return np.exp(P.betaln_p(a, b))


def _rel_entr(x, y):
    """x log(x / y) for x, y > 0; 0 at x = 0 <= y; inf elsewhere (SciPy's formula, term by term)."""
    inside = (x > 0) & (y > 0)
    return np.where(inside, x * np.log(np.where(inside, x / y, 1.0)), np.where((x == 0) & (y >= 0), 0.0, np.inf))


def _kl_div(x, y):
    """x log(x / y) - x + y for x, y > 0; y at x = 0 <= y; inf elsewhere."""
    inside = (x > 0) & (y > 0)
    value = x * np.log(np.where(inside, x / y, 1.0)) - x + y
    return np.where(inside, value, np.where((x == 0) & (y >= 0), y, np.inf))


def _boxcox(x, lmbda):
    """(x^λ - 1) / λ as SciPy computes it, expm1(λ log x) / λ, and log x for |λ| < 1e-19."""
    small = np.abs(lmbda) < 1e-19
    return np.where(small, np.log(x), np.expm1(lmbda * np.log(x)) / np.where(small, 1.0, lmbda))


def _binom(n, k):
    """The binomial coefficient of real n and k (SciPy's values; differentiable in both, also where
    it is 0 at a pole of Γ(k+1) or Γ(n-k+1): jitad.primitives.special.binom_p)."""
    return P.binom_p(_float(n), _float(k))


SPECIAL_UFUNCS.update({
    "erfcx": P.erfcx_p, "binom": _binom,
    # differentiable in x; in the shape parameters a (and b) their rules raise NonDifferentiableError
    "gammainc": P.gammainc_p, "gammaincc": P.gammaincc_p, "betainc": P.betainc_p,
})
SPECIAL_UFUNCS.update({
    "beta": _beta, "rel_entr": _rel_entr, "kl_div": _kl_div, "boxcox": _boxcox,
    "loggamma": lambda x: np.where(x >= 0, P.gammaln_p(x), np.nan),  # real x: nan below 0, as SciPy
    "expm1": np.expm1, "log1p": np.log1p, "cbrt": np.cbrt, "exp2": np.exp2,
    "exp10": lambda x: np.power(10.0, x) if is_tracer(x) else np.power(10.0, np.asarray(x, np.float64)),
    "psi": P.digamma_p,  # (the same ufunc as digamma)
})
SPECIAL_UFUNCS.update({
    # differentiable in y / p (in the shape parameters a, b, dfn, dfd: NonDifferentiableError)
    "betaincinv": P.betaincinv_p, "betainccinv": P.betainccinv_p, "fdtri": P.fdtri_p,
    "poch": P.poch_p, "spence": P.spence_p, "ellipk": P.ellipk_p, "ellipe": P.ellipe_p, "dawsn": P.dawsn_p,
    "sici": lambda x: (P.si_p(x), P.ci_p(x)), "fresnel": lambda x: (P.fresnel_s_p(x), P.fresnel_c_p(x)),
    "owens_t": P.owens_t_p, "huber": P.huber_p, "pseudo_huber": P.pseudo_huber_p,
})
_registered = []


def _scipy_dtypes(ufunc, builder):
    """`builder` giving the result dtype SciPy's ufunc gives: its loops do not all follow NumPy's rules
    for a Python float beside a float32 array (gammainc(2.0, x32) is float64, rel_entr(x32, 0.8)
    float32). The ufunc itself, called on 0-d zeros of the inputs' dtypes (Python scalars as they
    are), says which; traced inputs are cast to a wider result dtype before the builder runs (SciPy
    computes in it), and the builder's result is cast to it."""
    def build(*inputs):
        probe = [np.zeros((), x.dtype) if is_tracer(x) else
                 x if isinstance(x, (bool, int, float, complex, np.generic)) else np.zeros((), np.asarray(x).dtype)
                 for x in inputs]
        with np.errstate(all="ignore"):
            expected = ufunc(*probe)
        expected = [np.asarray(e).dtype for e in (expected if isinstance(expected, tuple) else (expected,))]
        if expected[0].kind == "f":
            inputs = tuple(numpy_ops.astype(x, expected[0]) if is_tracer(x) and x.dtype.kind == "f" and
                           x.dtype.itemsize < expected[0].itemsize else x for x in inputs)
        result = builder(*inputs)
        results = result if isinstance(result, tuple) else (result,)
        results = tuple(numpy_ops.astype(r, d) if (r.dtype if is_tracer(r) else np.asarray(r).dtype) != d else r
                        for r, d in zip(results, expected))
        return results if isinstance(result, tuple) else results[0]
    return build


def register_special_ufuncs():
    """Map scipy.special's ufuncs to builders, once SciPy has imported scipy.special."""
    special = sys.modules.get("scipy.special")
    if special is None or _registered:
        return
    for name, builder in SPECIAL_UFUNCS.items():
        ufunc = getattr(special, name, None)
        if isinstance(ufunc, np.ufunc):
            numpy_ops.UFUNCS[ufunc] = _scipy_dtypes(ufunc, builder)
    _registered.append(special)


# --- scipy.special: functions -------------------------------------------------------------------
def _reduce_axes(a, axis):
    return numpy_ops._axes(axis, a.ndim)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log Σ b e^a, shifted by the largest a (with a nonzero weight): finite for any finite input.
    The shift is a constant to AD, so the derivative is exactly the (weighted) softmax.
    return_sign=True: (log |Σ b e^a|, its sign) as SciPy's; the sign is piecewise constant (derivative
    0), and d log|s| = ds / s for either sign."""
    a = _float(numpy_ops.asarray(a))
    if b is not None:
        python_scalar = type(b) in (int, float)  # weak, as in NumPy 2: a float32 `a` stays float32
        b = numpy_ops.asarray(b)
        dtype = a.dtype if python_scalar else np.result_type(a.dtype, b.dtype)
        shape = tuple(np.broadcast_shapes(numpy_ops.shape_of(a), numpy_ops.shape_of(b)))
        a, b = numpy_ops.broadcast_to(_float(a, dtype), shape), numpy_ops.broadcast_to(_float(b, dtype), shape)
    if a.ndim == 0:  # SciPy works on at least one dimension
        a = numpy_ops.reshape(a, (1,))
        b = b if b is None else numpy_ops.reshape(b, (1,))
    axes = _reduce_axes(a, axis)
    if 0 in numpy_ops.shape_of(a):  # no terms: SciPy's own branch, -inf (sign -1) of the reduced shape
        out = np.full(tuple(1 if i in axes else n for i, n in enumerate(numpy_ops.shape_of(a))), -np.inf, a.dtype)
        out = out if keepdims else np.squeeze(out, axis=axes)
        return (out, np.sign(out)) if return_sign else out
    weighted = a if b is None else np.where(b != 0, a, -np.inf)  # a zero weight leaves its entry out
    shift = P.finite_shift_p(numpy_ops.amax(weighted, axis=axes, keepdims=True))
    if b is None:
        terms = np.exp(a - shift)
    elif is_tracer(b):  # keep e^a for the b-derivative at zero weights, without 0 * inf above the shift
        terms = b * np.exp(np.minimum(a - shift, 709.0))
    else:
        terms = b * np.exp(weighted - shift)
    total = numpy_ops.sum(terms, axis=axes, keepdims=True)
    if return_sign:
        sign = np.sign(total)
        out = np.log(np.abs(total)) + shift
        if not keepdims:
            out, sign = numpy_ops.squeeze(out, axis=axes), numpy_ops.squeeze(sign, axis=axes)
        return out, sign
    out = np.log(total) + shift
    return out if keepdims else numpy_ops.squeeze(out, axis=axes)


def softmax(x, axis=None):
    x = _float(numpy_ops.asarray(x))
    axes = _reduce_axes(x, axis)
    e = np.exp(x - P.finite_shift_p(numpy_ops.amax(x, axis=axes, keepdims=True)))
    return e / numpy_ops.sum(e, axis=axes, keepdims=True)


def log_softmax(x, axis=None):
    x = _float(numpy_ops.asarray(x))
    axes = _reduce_axes(x, axis)
    shifted = x - P.finite_shift_p(numpy_ops.amax(x, axis=axes, keepdims=True))
    return shifted - np.log(numpy_ops.sum(np.exp(shifted), axis=axes, keepdims=True))


def _concrete_order(value, function, what):
    if is_tracer(value):
        raise NonDifferentiableError(
            f"{function} with a traced {what}: jitad differentiates it in its other argument only; pass "
            f"the {what} as a concrete integer (a Python int, or a closed-over value)")
    value = np.asarray(value)
    if value.ndim or value != np.floor(value) or value < 0:
        raise UnsupportedOperationError(f"{function} with {what} = {value!r}", f"Pass {what} as one integer >= 0. ")
    return int(value)


def polygamma(n, x):
    """ψ⁽ⁿ⁾(x) for a concrete integer n; its derivative is ψ⁽ⁿ⁺¹⁾(x). Float64, like SciPy."""
    n = _concrete_order(n, "scipy.special.polygamma(n, x)", "order n")
    x = _float(numpy_ops.asarray(x), np.float64)
    return P.digamma_p(x) if n == 0 else P.polygamma_p(x, n=n)


def zeta(x, q=None, out=None):
    """The Riemann zeta function (q None) or the Hurwitz zeta function, SciPy's values; differentiable in q
    (d/dq = -x zeta(x + 1, q)), in x a NonDifferentiableError."""
    if out is not None:
        raise UnsupportedOperationError("scipy.special.zeta(out=...) on traced values", "Use the returned value. ")
    # SciPy's dtype: NumPy's promotion with Python floats weak (zeta(3.0, q) of a float32 q is float32)
    dtype = np.result_type(*[v if type(v) in (int, float) else np.zeros((), v.dtype if is_tracer(v) else
                                                                       np.asarray(v).dtype) for v in (x, q) if v is not None])
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    x = _float(numpy_ops.asarray(x), dtype)
    return P.riemann_zeta_p(x) if q is None else P.zeta_p(x, _float(numpy_ops.asarray(q), dtype))


def multigammaln(a, d):
    """log of the multivariate gamma function: d(d-1)/4 log π + Σ_j gammaln(a - (j - 1)/2)."""
    d = _concrete_order(d, "scipy.special.multigammaln(a, d)", "dimension d")
    a = _float(numpy_ops.asarray(a))
    terms = numpy_ops.stack([P.gammaln_p(a - (j - 1.0) / 2) for j in range(1, d + 1)])
    return np.float64(d * (d - 1) * 0.25) * np.log(np.pi) + numpy_ops.sum(terms, axis=0)


# --- scipy.stats: one row per distribution --------------------------------------------------------
def _t_logpdf(z, df):
    # log Γ((df+1)/2) - log Γ(df/2) = log √π - betaln(df/2, 1/2): no cancellation for large df
    return -P.betaln_p(0.5 * df, 0.5) - 0.5 * np.log(df) - (df + 1.0) * 0.5 * np.log1p(z * z / df)


def _laplace_logpdf(z):
    return -np.abs(z) - math.log(2.0)


# name: (parameter check, support of the standardized variable or None, log density)
CONTINUOUS = {
    "norm": (None, None, lambda z: -0.5 * z * z - _LOG_SQRT_2PI),
    "t": (lambda df: df > 0, None, _t_logpdf),
    "gamma": (lambda a: a > 0, (0.0, np.inf), lambda z, a: P.xlogy_p(a - 1.0, z) - z - P.gammaln_p(a)),
    "beta": (lambda a, b: (a > 0) & (b > 0), (0.0, 1.0),
             lambda z, a, b: P.xlog1py_p(b - 1.0, -z) + P.xlogy_p(a - 1.0, z) - P.betaln_p(a, b)),
    "laplace": (None, None, _laplace_logpdf),
    "expon": (None, (0.0, np.inf), lambda z: -z),
    "chi2": (lambda df: df > 0, (0.0, np.inf),
             lambda z, df: P.xlogy_p(0.5 * df - 1.0, z) - 0.5 * z - 0.5 * df * math.log(2.0) - P.gammaln_p(0.5 * df)),
    "cauchy": (None, None, lambda z: -math.log(math.pi) - np.log1p(z * z)),
    "logistic": (None, None, lambda z: -np.abs(z) - 2.0 * np.log1p(np.exp(-np.abs(z)))),
    "uniform": (None, (0.0, 1.0), lambda z: 0.0 * z),
    "halfnorm": (None, (0.0, np.inf), lambda z: 0.5 * math.log(2.0 / math.pi) - 0.5 * z * z),
    "lognorm": (lambda s: s > 0, (0.0, np.inf), lambda z, s: _positive(
        z, lambda z: -0.5 * (np.log(z) / s) ** 2 - np.log(s * z) - _LOG_SQRT_2PI)),
    "invgamma": (lambda a: a > 0, (0.0, np.inf), lambda z, a: _positive(
        z, lambda z: -(a + 1.0) * np.log(z) - 1.0 / z - P.gammaln_p(a))),
    "weibull_min": (lambda c: c > 0, (0.0, np.inf), lambda z, c: np.log(c) + P.xlogy_p(c - 1.0, z) - z ** c),
    "gumbel_r": (None, None, lambda z: -z - np.exp(-z)),
    "rayleigh": (None, (0.0, np.inf), lambda z: P.xlogy_p(1.0, z) - 0.5 * z * z),
    # log I0(κ) = log i0e(κ) + κ: no overflow for large κ
    "vonmises": (lambda kappa: kappa > 0, None, lambda z, kappa: kappa * np.cos(z) - math.log(2.0 * math.pi)
                 - np.log(P.bessel_i_p(kappa, n=0, scaled=True)) - kappa),
    "skewnorm": (None, None, lambda z, a: math.log(2.0) - 0.5 * z * z - _LOG_SQRT_2PI + P.log_ndtr_p(a * z)),
    "truncnorm": (lambda a, b: a < b, None, lambda z, a, b: np.where(
        (z >= a) & (z <= b), -0.5 * z * z - _LOG_SQRT_2PI - np.log(P.ndtr_p(b) - P.ndtr_p(a)), -np.inf)),
    "pareto": (lambda b: b > 0, (1.0, np.inf), lambda z, b: np.log(b) - (b + 1.0) * np.log(z)),
    "f": (lambda dfn, dfd: (dfn > 0) & (dfd > 0), (0.0, np.inf),
          lambda z, m, n: 0.5 * m * np.log(m) + 0.5 * n * np.log(n) + P.xlogy_p(0.5 * m - 1.0, z)
          - 0.5 * (m + n) * np.log(n + m * z) - P.betaln_p(0.5 * m, 0.5 * n)),
    "invgauss": (lambda mu: mu > 0, (0.0, np.inf), lambda z, mu: _positive(
        z, lambda z: -0.5 * np.log(2 * np.pi) - 1.5 * np.log(z) - (z / mu - 1) ** 2 / (2 * z))),
}


# pdf(z, *shapes) where SciPy's _pdf is not exp(_logpdf) (the density's own formula, also where it
# underflows to nan: invgauss at z = 1e-300, as SciPy)
PDFS = {
    "invgauss": lambda z, mu: 1.0 / np.sqrt(2 * np.pi * z ** 3.0) * np.exp(-1.0 / (2 * z) * (z / mu - 1) ** 2),
}


def _positive(z, logpdf):
    """logpdf(z) for z > 0, -inf at z <= 0 (its limit there) and nan at nan (SciPy's), the untaken lane
    kept finite."""
    inside = z > 0
    return np.where(inside, logpdf(np.where(inside, z, 1.0)), np.where(np.isnan(z), np.nan, -np.inf))


def _t_cdf(z, df):
    """P(T <= z) = 1 - I_{df/(df+z²)}(df/2, 1/2) / 2 for z >= 0, symmetric below. At z = 0 the incomplete
    beta function's slope (1-x)^(-1/2) is infinite where dx/dz is 0 (nan derivatives, at x == loc): there,
    its Taylor polynomial 1/2 + c z (1 - (df+1)/(6 df) z²), c the density at 0 (derivatives exact to 4th order)."""
    at_zero = z == 0
    z_away = np.where(at_zero, 1.0, z)
    tail = 0.5 * P.betainc_p(0.5 * df, 0.5, df / (df + z_away * z_away))
    c = np.exp(_t_logpdf(0.0 * z, df))
    return np.where(at_zero, 0.5 + c * z * (1.0 - (df + 1.0) / (6.0 * df) * z * z),
                    np.where(z_away >= 0, 1.0 - tail, tail))


# cdf(z, *shapes) of the standardized variable (sf is 1 - cdf, logcdf and logsf their logs), where
# the support's edges clip z; incomplete gamma and beta functions: no derivative in a shape parameter
CDFS = {
    "t": _t_cdf,
    "gamma": lambda z, a: _positive_cdf(z, lambda z: P.gammainc_p(a, z)),
    "beta": lambda z, a, b: _unit_cdf(z, lambda z: P.betainc_p(a, b, z), 0.0, 1.0),
    "chi2": lambda z, df: _positive_cdf(z, lambda z: P.gammainc_p(0.5 * df, 0.5 * z)),
    "laplace": lambda z: np.where(z < 0, 0.5 * np.exp(np.minimum(z, 0.0)), 1.0 - 0.5 * np.exp(-np.maximum(z, 0.0))),
    "expon": lambda z: -np.expm1(-np.maximum(z, 0.0)),
    "cauchy": lambda z: 0.5 + np.arctan(z) / math.pi,
    "logistic": lambda z: P.expit_p(z),
    "uniform": lambda z: np.clip(z, 0.0, 1.0),
    "halfnorm": lambda z: P.erf_p(np.maximum(z, 0.0) * math.sqrt(0.5)),
    "lognorm": lambda z, s: _positive_cdf(z, lambda z: P.ndtr_p(np.log(z) / s)),
    "weibull_min": lambda z, c: _positive_cdf(z, lambda z: -np.expm1(-z ** c)),
    "gumbel_r": lambda z: np.exp(-np.exp(-z)),
    "rayleigh": lambda z: -np.expm1(-0.5 * np.maximum(z, 0.0) ** 2),
    "invgamma": lambda z, a: _positive_cdf(z, lambda z: P.gammaincc_p(a, 1.0 / z)),
}


def _invgauss_logcdf(z, mu):
    """SciPy's invgauss._logcdf: log(Φ(a) + e^(2/μ) Φ(-b)) as a + log1p(e^(b' - a)), for 0 < z < inf."""
    fac = 1 / np.sqrt(z)
    a = P.log_ndtr_p(fac * (z / mu - 1))
    b = 2 / mu + P.log_ndtr_p(-fac * (z / mu + 1))
    return a + np.log1p(np.exp(b - a))


def _invgauss_logsf(z, mu):
    fac = 1 / np.sqrt(z)
    a = P.log_ndtr_p(-(fac * (z / mu - 1)))
    b = 2 / mu + P.log_ndtr_p(-fac * (z / mu + 1))
    return a + np.log1p(-np.exp(b - a))


def _open_support(z, formula, below, above):
    """formula(z) for 0 < z < inf (the untaken lanes read z = 1), `below` at z <= 0, `above` at z = inf,
    nan at nan: SciPy's rv_continuous outside the open support."""
    inside = (z > 0) & (z < np.inf)
    return np.where(inside, formula(np.where(inside, z, 1.0)),
                    np.where(z <= 0, below, np.where(z == np.inf, above, np.nan)))


# (logcdf, logsf) of the distributions whose cdf and sf SciPy computes as their exponentials
LOG_CUMULATIVE = {
    "invgauss": (lambda z, mu: _open_support(z, lambda z: _invgauss_logcdf(z, mu), -np.inf, 0.0),
                 lambda z, mu: _open_support(z, lambda z: _invgauss_logsf(z, mu), 0.0, -np.inf)),
}
CDFS["invgauss"] = lambda z, mu: _open_support(z, lambda z: np.exp(_invgauss_logcdf(z, mu)), 0.0, 1.0)


def _symmetric_sf(name):
    return lambda z, *shapes: CDFS[name](-z, *shapes)


# sf(z, *shapes) where 1 - cdf would lose the upper tail
SFS = {
    "t": _symmetric_sf("t"), "laplace": _symmetric_sf("laplace"), "cauchy": _symmetric_sf("cauchy"),
    "logistic": _symmetric_sf("logistic"),
    "gamma": lambda z, a: _positive_cdf(z, lambda z: P.gammaincc_p(a, z), below=1.0),
    "beta": lambda z, a, b: _unit_cdf(z, lambda z: P.betainc_p(b, a, 1.0 - z), 1.0, 0.0),
    "chi2": lambda z, df: _positive_cdf(z, lambda z: P.gammaincc_p(0.5 * df, 0.5 * z), below=1.0),
    "expon": lambda z: np.exp(-np.maximum(z, 0.0)),
    "halfnorm": lambda z: P.erfc_p(np.maximum(z, 0.0) * math.sqrt(0.5)),
    "lognorm": lambda z, s: _positive_cdf(z, lambda z: P.ndtr_p(-np.log(z) / s), below=1.0),
    "weibull_min": lambda z, c: _positive_cdf(z, lambda z: np.exp(-z ** c), below=1.0),
    "gumbel_r": lambda z: -np.expm1(-np.exp(-z)),
    "rayleigh": lambda z: np.exp(-0.5 * np.maximum(z, 0.0) ** 2),
    "invgamma": lambda z, a: _positive_cdf(z, lambda z: P.gammainc_p(a, 1.0 / z), below=1.0),
    "invgauss": lambda z, mu: _open_support(z, lambda z: np.exp(_invgauss_logsf(z, mu)), 1.0, 0.0),
}


def _cauchy_quantile(q):
    """tan(π (q - 1/2)) as -1/tan(πq) below 1/2 and 1/tan(π(1 - q)) above (SciPy's to rounding)."""
    low, high = q < 0.5, q > 0.5
    below = -1.0 / np.tan(math.pi * np.where(low, q, 0.25))
    above = 1.0 / np.tan(math.pi * (1.0 - np.where(high, q, 0.75)))
    return np.where(low, below, np.where(high, above, 0.0))


# (ppf, isf) of the standardized variable, SciPy's formulas (its _ppf and _isf); q = 0 and 1 are
# the support's ends (the caller's), the derivatives those of the formulas
QUANTILES = {
    "expon": (lambda q: -np.log1p(-q), lambda q: -np.log(q)),
    "laplace": (lambda q: np.where(q > 0.5, -np.log(2.0 * (1.0 - q)), np.log(2.0 * q)),
                lambda q: -np.where(q > 0.5, -np.log(2.0 * (1.0 - q)), np.log(2.0 * q))),
    "logistic": (lambda q: P.logit_p(q), lambda q: -P.logit_p(q)),
    "cauchy": (_cauchy_quantile, lambda q: -_cauchy_quantile(q)),
    "uniform": (lambda q: q, lambda q: 1.0 - q),
    "gumbel_r": (lambda q: -np.log(-np.log(q)), lambda q: -np.log(-np.log1p(-q))),
    "rayleigh": (lambda q: np.sqrt(-2.0 * np.log1p(-q)), lambda q: np.sqrt(-2.0 * np.log(q))),
    "halfnorm": (lambda q: P.ndtri_p((1.0 + q) / 2.0), lambda q: -P.ndtri_p(q / 2.0)),
    "lognorm": (lambda q, s: np.exp(s * P.ndtri_p(q)), lambda q, s: np.exp(s * -P.ndtri_p(q))),
    "weibull_min": (lambda q, c: (-np.log1p(-q)) ** (1.0 / c), lambda q, c: (-np.log(q)) ** (1.0 / c)),
    # through the incomplete gamma function's inverses (no derivative in the shape: NonDifferentiableError)
    "gamma": (lambda q, a: P.gammaincinv_p(a, q), lambda q, a: P.gammainccinv_p(a, q)),
    "chi2": (lambda q, df: 2.0 * P.gammaincinv_p(df / 2.0, q), lambda q, df: 2.0 * P.gammainccinv_p(df / 2.0, q)),
    "invgamma": (lambda q, a: 1.0 / P.gammainccinv_p(a, q), lambda q, a: 1.0 / P.gammaincinv_p(a, q)),
    "t": (lambda q, df: P.stdtrit_p(df, q), lambda q, df: -P.stdtrit_p(df, q)),
    "pareto": (lambda q, b: (1.0 - q) ** (-1.0 / b), lambda q, b: q ** (-1.0 / b)),
    # the incomplete beta function's inverses (beta's _ppf, boost's ibeta_inv, is betaincinv to the bit) and
    # SciPy's fdtri (f's isf is its generic _ppf(1 - q)); no derivative in the shapes (NonDifferentiableError)
    "beta": (lambda q, a, b: P.betaincinv_p(a, b, q), lambda q, a, b: P.betainccinv_p(a, b, q)),
    "f": (lambda q, dfn, dfd: P.fdtri_p(dfn, dfd, q), lambda q, dfn, dfd: P.fdtri_p(dfn, dfd, 1.0 - q)),
}


def _quantile(name, method, q, shapes, loc, scale, support):
    """SciPy's rv_continuous.ppf / isf: loc + scale z(q) inside (0, 1), the support's ends at q = 0
    and 1 (swapped for isf), nan outside [0, 1]. The formula reads only the inside lanes."""
    lo, hi = support if support is not None else (-np.inf, np.inf)
    inside = (q > 0) & (q < 1)
    z = QUANTILES[name][method == "isf"](np.where(inside, q, 0.5), *shapes)
    first, last = (lo, hi) if method == "ppf" else (hi, lo)
    z = np.where(inside, z, np.where(q == 0, first, np.where(q == 1, last, np.nan)))
    return loc + scale * z


def _positive_cdf(z, cdf, below=0.0):
    """cdf(z) for z > 0, `below` at z <= 0, nan at nan (SciPy's). Outside, the formula reads z = 1 and the
    result is a constant: derivatives 0 to every order (a clip of z to 0 made the incomplete gamma
    function's slope x^(a-1) differentiate to 0 * inf = nan there)."""
    inside = z > 0
    return np.where(inside, cdf(np.where(inside, z, 1.0)), np.where(np.isnan(z), np.nan, below))


def _unit_cdf(z, cdf, below, above):
    """cdf(z) for 0 < z < 1, `below` at z <= 0, `above` at z >= 1, nan at nan (beta's, as _positive_cdf)."""
    inside = (z > 0) & (z < 1)
    return np.where(inside, cdf(np.where(inside, z, 0.5)),
                    np.where(z <= 0, below, np.where(z >= 1, above, np.nan)))
# the normal distribution's other methods, of z = (x - loc) / scale (ppf: of the probability q)
NORM_METHODS = {"cdf": lambda z: P.ndtr_p(z), "logcdf": lambda z: P.log_ndtr_p(z), "sf": lambda z: P.ndtr_p(-z),
                "logsf": lambda z: P.log_ndtr_p(-z)}
CUMULATIVE = {"cdf": lambda name, z, shapes: CDFS[name](z, *shapes),
              "sf": lambda name, z, shapes: SFS[name](z, *shapes) if name in SFS else 1.0 - CDFS[name](z, *shapes),
              "logcdf": lambda name, z, shapes: LOG_CUMULATIVE[name][0](z, *shapes) if name in LOG_CUMULATIVE
              else np.log(CUMULATIVE["cdf"](name, z, shapes)),
              "logsf": lambda name, z, shapes: LOG_CUMULATIVE[name][1](z, *shapes) if name in LOG_CUMULATIVE
              else np.log(CUMULATIVE["sf"](name, z, shapes))}
# name: (parameter check, support (inclusive, integers), log mass)
DISCRETE = {
    "poisson": (lambda mu: mu >= 0, (0.0, np.inf), lambda k, mu: P.xlogy_p(k, mu) - P.gammaln_p(k + 1.0) - mu),
    "bernoulli": (lambda p: (p >= 0) & (p <= 1), (0.0, 1.0),
                  lambda k, p: P.xlogy_p(k, p) + P.xlog1py_p(1.0 - k, -p)),
    # k > n makes gammaln(n - k + 1) a pole: -inf
    "binom": (lambda n, p: (n >= 0) & (np.floor(n) == n) & (p >= 0) & (p <= 1), (0.0, np.inf),
              lambda k, n, p: P.gammaln_p(n + 1.0) - P.gammaln_p(k + 1.0) - P.gammaln_p(n - k + 1.0)
              + P.xlogy_p(k, p) + P.xlog1py_p(n - k, -p)),
    "nbinom": (lambda n, p: (n > 0) & (p > 0) & (p <= 1), (0.0, np.inf),
               lambda k, n, p: P.gammaln_p(k + n) - P.gammaln_p(n) - P.gammaln_p(k + 1.0)
               + P.xlogy_p(n, p) + P.xlog1py_p(k, -p)),
    "geom": (lambda p: (p > 0) & (p <= 1), (1.0, np.inf), lambda k, p: P.xlog1py_p(k - 1.0, -p) + np.log(p)),
}
INTEGER_SHAPES = {"binom": (0,)}  # the discrete shape parameters (binom's n): no derivative


SUPPORTED = ("norm.{logpdf, pdf, cdf, logcdf, sf, logsf, ppf, isf}; " + ", ".join(sorted(set(CONTINUOUS) - {"norm"}))
             + ".{logpdf, pdf} and the cdf, logcdf, sf, logsf of " + ", ".join(sorted(CDFS)) + "; the ppf and isf "
             "of " + ", ".join(sorted(QUANTILES)) + "; "
             + ", ".join(sorted(DISCRETE)) + ".{logpmf, pmf, cdf, sf, logcdf, logsf} (not in the count k, nor in "
             "binom's n); "
             "multivariate_normal and dirichlet.{logpdf, pdf}")


def _unsupported(dist, method):
    return UnsupportedOperationError(f"scipy.stats.{dist.name}.{method}", f"jitad implements scipy.stats {SUPPORTED}. ")


def _checked(check, shapes, value, scale=None):
    """`value` where the parameters are valid, nan elsewhere (SciPy's badvalue)."""
    valid = True if check is None else check(*shapes)
    if scale is not None:
        valid = valid & (scale > 0)
    return _select(valid, value, np.nan)


def _continuous(method):
    def builder(self, x, *args, **kwds):
        quantile = method in ("ppf", "isf") and self.name in QUANTILES
        if self.name not in CONTINUOUS or (method not in ("logpdf", "pdf") and self.name != "norm" and not quantile
                                           and (method not in CUMULATIVE or self.name not in CDFS)):
            raise _unsupported(self, method)
        check, support, logpdf = CONTINUOUS[self.name]
        shapes, loc, scale = self._parse_args(*args, **kwds)
        shapes = tuple(_float(s, np.float64) for s in shapes)
        loc, scale = _float(loc, np.float64), _float(scale, np.float64)
        if quantile:
            q = _float(x, np.float64)
            return _checked(check, shapes, _quantile(self.name, method, q, shapes, loc, scale, support), scale)
        if method in ("ppf", "isf"):  # isf(q) = -ppf(q) about loc, accurate for small q (not ppf(1 - q))
            q = _float(x, np.float64)
            inside = (q >= 0) & (q <= 1)
            z = P.ndtri_p(q) if method == "ppf" else -P.ndtri_p(q)
            return _checked(check, shapes, _select(inside, loc + scale * z, np.nan), scale)
        z = (_float(x, np.float64) - loc) / scale
        if method in NORM_METHODS and self.name == "norm":
            return _checked(check, shapes, NORM_METHODS[method](z), scale)
        if method in CUMULATIVE:
            return _checked(check, shapes, CUMULATIVE[method](self.name, z, shapes), scale)
        if method == "pdf" and self.name in PDFS:  # SciPy's _pdf formula, 0 outside the open support
            lo, hi = support
            inside = (z > lo) & (z < hi)
            value = PDFS[self.name](np.where(inside, z, 1.0), *shapes) / scale
            return _checked(check, shapes, np.where(inside, value, np.where(np.isnan(z), np.nan, 0.0)), scale)
        value = logpdf(z, *shapes) - np.log(scale)
        if support is not None:
            lo, hi = support
            value = _select((z >= lo) & (z <= hi) | np.isnan(z), value, -np.inf)
        value = _checked(check, shapes, value, scale)
        return np.exp(value) if method == "pdf" else value
    builder.__name__ = method
    return builder


def _discrete(method):
    def builder(self, k, *args, **kwds):
        if self.name not in DISCRETE:
            raise _unsupported(self, method)
        check, (lo, hi), logpmf = DISCRETE[self.name]
        shapes, loc, _ = self._parse_args(*args, **kwds)
        shapes = tuple(P.no_derivative_p(_float(s, np.float64), what=f"scipy.stats.{self.name}.{method} with respect "
                                         f"to its integer parameter") if j in INTEGER_SHAPES.get(self.name, ()) and
                       is_tracer(s) else _float(s, np.float64) for j, s in enumerate(shapes))
        k = _float(k, np.float64) - _float(loc, np.float64)
        if is_tracer(k):  # a count: its derivative does not exist, even where a formula has one
            k = P.no_derivative_p(k, what=f"scipy.stats.{self.name}.{method}(k, ...) with respect to the count k")
        if method in CUMULATIVE:
            return _checked(check, shapes, _discrete_cumulative(self.name, method, k, lo, shapes))
        inside = (k >= lo) & (k <= hi) & (np.floor(k) == k) | np.isnan(k)
        value = _checked(check, shapes, _select(inside, logpmf(k, *shapes), -np.inf))
        return np.exp(value) if method == "pmf" else value
    builder.__name__ = method
    return builder


def _binom_tails(j, n, p):
    """(P(K <= j), P(K > j)) of binom(n, p) for integers j, through the incomplete beta function; 1 and 0
    from j = n on (safe arguments keep those lanes finite)."""
    below = j < n
    a, b = np.where(below, n - j, 1.0), np.where(below, j + 1.0, 1.0)
    return np.where(below, P.betainc_p(a, b, 1.0 - p), 1.0), np.where(below, P.betainc_p(b, a, p), 0.0)


# name: (P(K <= j), P(K > j)) for integers j >= the support's low end
DISCRETE_TAILS = {
    "poisson": lambda j, mu: (P.gammaincc_p(j + 1.0, mu), P.gammainc_p(j + 1.0, mu)),
    "binom": _binom_tails,
    "nbinom": lambda j, n, p: (P.betainc_p(n, j + 1.0, p), P.betainc_p(j + 1.0, n, 1.0 - p)),
    "geom": lambda j, p: (-np.expm1(j * np.log1p(-p)), np.exp(j * np.log1p(-p))),
    "bernoulli": lambda j, p: (np.where(j >= 1, 1.0, 1.0 - p), np.where(j >= 1, 0.0, p)),
}


def _discrete_cumulative(name, method, k, lo, shapes):
    """cdf, sf, logcdf, logsf of a count distribution at k (floored), below its support 0 / 1."""
    if name not in DISCRETE_TAILS:
        raise UnsupportedOperationError(f"scipy.stats.{name}.{method}", f"jitad implements scipy.stats {SUPPORTED}. ")
    j = np.floor(k)
    inside = j >= lo
    cdf, sf = DISCRETE_TAILS[name](np.where(inside, j, lo), *shapes)
    value = np.where(inside, cdf if method in ("cdf", "logcdf") else sf, 0.0 if method in ("cdf", "logcdf") else 1.0)
    return np.log(value) if method.startswith("log") else value


def _squeeze_output(out):
    return numpy_ops.squeeze(out) if is_tracer(out) else np.squeeze(out)[()]


def _mvn_logpdf(x, mean, cov, allow_singular=False):
    """log N(x; mean, cov) through a Cholesky factor L: -(d log 2π + 2 Σ log diag L + |L⁻¹(x - mean)|²) / 2.
    A singular cov that is not traced (allow_singular=True) goes through SciPy's own eigendecomposition of
    it, as SciPy does: rank, pseudo-determinant, whitening by the pseudo-inverse, -inf off the support. A
    traced cov is factored by Cholesky, which fails on a singular one."""
    if type(cov).__module__.startswith("scipy.stats"):
        raise UnsupportedOperationError("scipy.stats.multivariate_normal with a Covariance object",
                                        "Pass the covariance matrix as an array. ")
    if mean is None:
        cov = _float(cov if cov is not None else 1.0, np.float64)
        dim = 1 if cov.ndim < 2 else numpy_ops.shape_of(cov)[0]
        mean = np.zeros(dim)
    mean = _float(mean, np.float64)
    dim = int(np.prod(numpy_ops.shape_of(mean), dtype=np.int64))
    cov = _float(1.0 if cov is None else cov, np.float64)
    if dim == 1:
        mean, cov = numpy_ops.reshape(mean, (1,)), numpy_ops.reshape(cov, (1, 1))
    if mean.ndim != 1:
        raise ShapeError(f"Array 'mean' must be a vector of length {dim}.")
    if cov.ndim == 0:
        cov = cov * np.eye(dim)
    elif cov.ndim == 1:
        cov = numpy_ops.diag(cov) if is_tracer(cov) else np.diag(cov)
    if numpy_ops.shape_of(cov) != (dim, dim):
        raise ShapeError(f"scipy.stats.multivariate_normal: cov of shape {numpy_ops.shape_of(cov)} does not fit "
                         f"a mean of length {dim}")
    x = _float(x, np.float64)
    if x.ndim == 0:
        x = numpy_ops.reshape(x, (1,))
    if x.ndim == 1:
        x = numpy_ops.reshape(x, (-1, 1) if dim == 1 else (1, -1))
    dev = x - mean
    if allow_singular and not is_tracer(cov) and np.linalg.matrix_rank(cov) < dim:
        psd = sys.modules["scipy.stats._multivariate"]._PSD(cov, allow_singular=True)  # loaded: it is tracing
        maha = numpy_ops.sum(numpy_ops.matmul(dev, psd.U) ** 2, axis=-1)
        out = -0.5 * (psd.rank * _LOG_2PI + psd.log_pdet + maha)
        residual = numpy_ops.sum(numpy_ops.matmul(dev, psd.V) ** 2, axis=-1)
        return _squeeze_output(np.where(residual < psd.eps ** 2, out, -np.inf))
    lower = linalg_ops.cholesky(cov)
    whitened = linalg_ops.solve_triangular(lower, numpy_ops.transpose(numpy_ops.reshape(dev, (-1, dim))), lower=True)
    maha = numpy_ops.reshape(numpy_ops.sum(whitened * whitened, axis=0), numpy_ops.shape_of(dev)[:-1])
    log_det = 2.0 * numpy_ops.sum(np.log(numpy_ops.diagonal(lower)))
    return _squeeze_output(-0.5 * (dim * _LOG_2PI + log_det + maha))


def _mvn(method):
    def builder(self, x, mean=None, cov=1, allow_singular=False):
        out = _mvn_logpdf(x, mean, cov, allow_singular)
        return np.exp(out) if method == "pdf" else out
    return builder


def _mvn_frozen(method):
    def builder(self, x):
        out = _mvn_logpdf(x, self.mean, self.cov_object.covariance)
        return np.exp(out) if method == "pdf" else out
    return builder


def _mvn_entropy(self, mean=None, cov=1):
    """The differential entropy (d (1 + log 2π) + log det cov) / 2: the log-density at the mean,
    negated, plus d / 2 (the mean does not enter)."""
    cov = _float(cov, np.float64)
    dim = numpy_ops.shape_of(cov)[0] if cov.ndim == 2 else \
        1 if mean is None else int(np.prod(numpy_ops.shape_of(mean), dtype=np.int64))  # (SciPy's rule)
    mean = np.zeros(dim) if mean is None else mean
    return 0.5 * dim - _mvn_logpdf(mean, mean, cov)


def _mvn_frozen_entropy(self):
    return _mvn_entropy(None, self.mean, self.cov_object.covariance)


class _TracedFrozenMVN:
    """multivariate_normal(mean, cov) with a traced mean or cov (SciPy's frozen distribution
    eigendecomposes cov when it is made): its logpdf, pdf and entropy, and mean and cov."""

    def __init__(self, mean, cov, allow_singular):
        self.mean, self.cov, self.allow_singular = mean, cov, allow_singular

    def logpdf(self, x):
        return _mvn_logpdf(x, self.mean, self.cov, self.allow_singular)

    def pdf(self, x):
        return np.exp(self.logpdf(x))

    def entropy(self):
        return _mvn_entropy(None, self.mean, self.cov)


def _mvn_call(self, mean=None, cov=1, allow_singular=False, seed=None):
    """multivariate_normal(mean, cov): SciPy's frozen distribution for concrete parameters."""
    if is_tracer(mean) or is_tracer(cov):
        if seed is not None:
            raise UnsupportedOperationError("scipy.stats.multivariate_normal(seed=...) with traced parameters",
                                            "Draw samples outside the traced function. ")
        return _TracedFrozenMVN(mean, cov, allow_singular)
    return sys.modules["scipy.stats._multivariate"].multivariate_normal_frozen(
        mean, cov, allow_singular=allow_singular, seed=seed)


def _dirichlet(method):
    def builder(self, x, alpha):
        """Only the shapes are checked: values of traced x are not known to lie on the simplex."""
        alpha = _float(alpha, np.float64)
        if alpha.ndim != 1:
            raise ShapeError(f"Parameter vector 'a' must be one dimensional, but a.shape = {numpy_ops.shape_of(alpha)}.")
        x = _float(x, np.float64)
        count = numpy_ops.shape_of(alpha)[0]
        if numpy_ops.shape_of(x)[0] == count - 1:  # the last component is 1 - the others
            rest = 1.0 - numpy_ops.sum(x, axis=0, keepdims=True)
            x = numpy_ops.concatenate([x, rest], axis=0)
        elif numpy_ops.shape_of(x)[0] != count:
            raise ShapeError(f"Vector 'x' must have either the same number of entries as, or one entry fewer "
                             f"than, parameter vector 'a', but alpha.shape = {numpy_ops.shape_of(alpha)} and "
                             f"x.shape = {numpy_ops.shape_of(x)}.")
        log_beta = numpy_ops.sum(P.gammaln_p(alpha)) - P.gammaln_p(numpy_ops.sum(alpha))
        weights = numpy_ops.reshape(alpha - 1.0, (count,) + (1,) * (x.ndim - 1))
        out = numpy_ops.sum(P.xlogy_p(weights, x), axis=0) - log_beta
        return _squeeze_output(np.exp(out) if method == "pdf" else out)
    return builder


def _multinomial_logpmf(x, n, p):
    """SciPy's multinomial.logpmf: gammaln(n+1) + Σ xlogy(x, p) - gammaln(x+1) over the last axis; -inf where x
    is not a count vector summing to n, nan for n < 0 or p outside [0, 1]. Like SciPy, a row of p whose sum is
    off 1 by more than 10 eps has its last entry replaced by 1 - Σ the others (so its value, and derivative,
    do not read it). Differentiable in p; n and the counts x have no derivative."""
    what = "scipy.stats.multinomial.logpmf(x, n, p) with respect to"
    p = _float(numpy_ops.asarray(p), np.float64)
    eps = np.finfo(np.float64).eps * 10
    rest = 1.0 - numpy_ops.sum(p[..., :-1], axis=-1)
    adjusted = np.abs(1 - numpy_ops.sum(p, axis=-1)) > eps
    last = np.where(adjusted, rest, p[..., -1])
    p = numpy_ops.concatenate([p[..., :-1], numpy_ops.expand_dims(last, -1)], axis=-1)
    bad_p = np.any(p < 0, axis=-1) | np.any(p > 1, axis=-1)
    if is_tracer(n):  # truncated to an integer, as SciPy's np.array(n, dtype=int)
        n = P.no_derivative_p(np.trunc(_float(n, np.float64)), what=f"{what} n")
    else:
        n = np.array(n, dtype=int).astype(np.float64)
    if is_tracer(x):
        x = _float(x, np.float64)
        counts = P.no_derivative_p(np.trunc(x), what=f"{what} the counts x")
    else:
        x = np.asarray(x)
        counts = np.asarray(x, dtype=int).astype(np.float64)
    if x.ndim == 0:
        raise ValueError("x must be an array.")
    width = numpy_ops.shape_of(p)[-1]
    if numpy_ops.shape_of(x)[-1] != width:
        raise ValueError(f"Size of each quantile should be size of p: received {numpy_ops.shape_of(x)[-1]}, but "
                         f"expected {width}.")
    bad_x = np.any(counts != x, axis=-1) | np.any(counts < 0, axis=-1) | \
        (numpy_ops.sum(counts, axis=-1) != n)
    value = P.gammaln_p(n + 1.0) + numpy_ops.sum(P.xlogy_p(counts, p) - P.gammaln_p(counts + 1.0), axis=-1)
    return np.where(n < 0, np.nan, np.where(bad_p, np.nan, np.where(bad_x, -np.inf, value)))


def _multinomial(method):
    def builder(self, x, n, p):
        out = _multinomial_logpmf(x, n, p)
        return np.exp(out) if method == "pmf" else out
    return builder


class _TracedFrozenMultinomial:
    """multinomial(n, p) with a traced n or p (SciPy's frozen distribution converts p to an array when made)."""

    def __init__(self, n, p):
        self.n, self.p = n, p

    def logpmf(self, x):
        return _multinomial_logpmf(x, self.n, self.p)

    def pmf(self, x):
        return np.exp(self.logpmf(x))


def _multinomial_call(self, n, p, seed=None):
    if is_tracer(n) or is_tracer(p) or numpy_ops._contains_tracer(p):
        if seed is not None:
            raise UnsupportedOperationError("scipy.stats.multinomial(seed=...) with traced parameters",
                                            "Draw samples outside the traced function. ")
        return _TracedFrozenMultinomial(n, p)
    return sys.modules["scipy.stats._multivariate"].multinomial_frozen(n, p, seed=seed)


# --- scipy.linalg: the functions that mirror np.linalg's ----------------------------------------------
def _symmetric_from(a, lower):
    """The symmetric matrix SciPy reads from one triangle of a (the other is never read)."""
    part = np.tril(a) if lower else np.triu(a)
    strict = np.tril(a, -1) if lower else np.triu(a, 1)
    return part + numpy_ops.swapaxes(strict, -1, -2)


def _scipy_solve(a, b, lower=False, overwrite_a=False, overwrite_b=False, check_finite=True, assume_a=None,
                 transposed=False):
    """scipy.linalg.solve: a general a by LU; 'sym'/'her'/'pos' read the triangle `lower` names (so
    does the derivative), triangular and diagonal a their part only."""
    kind = {None: "gen", "general": "gen", "symmetric": "sym", "hermitian": "her", "positive definite": "pos",
            "upper triangular": "upper", "lower triangular": "lower", "diagonal": "diagonal"}.get(assume_a, assume_a)
    if kind not in ("gen", "sym", "her", "pos", "upper", "lower", "diagonal"):
        raise UnsupportedOperationError(f"scipy.linalg.solve(assume_a={assume_a!r}) on traced values",
                                        "jitad solves general, symmetric, positive definite, triangular and "
                                        "diagonal systems: pass the full matrix with one of those. ")
    a, b = _float(a), _float(b)
    if kind in ("upper", "lower"):
        return linalg_ops.solve_triangular(a, b, trans=1 if transposed else 0, lower=kind == "lower")
    if kind == "diagonal":
        d = numpy_ops.diagonal(a, axis1=-2, axis2=-1)
        return b / (d if b.ndim == 1 else numpy_ops.expand_dims(d, -1))
    if kind != "gen":
        a = _symmetric_from(a, lower)
    elif transposed:
        a = numpy_ops.swapaxes(a, -1, -2)
    return np.linalg.solve(a, b)


def _scipy_eigh(a, b=None, *, lower=True, eigvals_only=False, overwrite_a=False, overwrite_b=False, type=1,
                check_finite=True, subset_by_index=None, subset_by_value=None, driver=None):
    """scipy.linalg.eigh of one matrix (the triangle `lower` names); (w, v) or w."""
    if b is not None or subset_by_index is not None or subset_by_value is not None:
        raise UnsupportedOperationError("scipy.linalg.eigh with b= or a subset of eigenvalues on traced values",
                                        "jitad computes all eigenpairs of one symmetric matrix. ")
    if driver not in (None, "evr", "evd"):
        raise UnsupportedOperationError(f"scipy.linalg.eigh(driver={driver!r}) on traced values",
                                        "jitad calls LAPACK's syevr (driver='evr', SciPy's default) or syevd "
                                        "(driver='evd'). ")
    uplo, driver = "L" if lower else "U", driver or "evr"  # SciPy's default: its eigenvectors' signs are syevr's
    if eigvals_only:
        return linalg_ops.eigvalsh(a, UPLO=uplo, _driver=driver)
    return tuple(linalg_ops.eigh(a, UPLO=uplo, _driver=driver))


def _scipy_svd(a, full_matrices=True, compute_uv=True, overwrite_a=False, check_finite=True,
               lapack_driver="gesdd"):
    out = np.linalg.svd(a, full_matrices=full_matrices, compute_uv=compute_uv)
    return tuple(out) if compute_uv else out


def _toeplitz(c, r=None):
    """T[i, j] = c[i - j] below the diagonal, r[j - i] above (r[0] is not read): a gather of one vector."""
    c = numpy_ops.ravel(numpy_ops.asarray(c))
    r = c if r is None else numpy_ops.ravel(numpy_ops.asarray(r))
    rows, cols = numpy_ops.shape_of(c)[0], numpy_ops.shape_of(r)[0]
    values = numpy_ops.concatenate([numpy_ops.flip(r[1:], 0), numpy_ops.astype(c, np.result_type(c.dtype, r.dtype))])
    index = (cols - 1) + np.arange(rows)[:, None] - np.arange(cols)[None, :]
    return np.take(values, index)


def _block_diag(*arrs):
    """The blocks along the diagonal of a zero matrix (1-D arrays are rows, as SciPy's)."""
    if not arrs:
        return np.empty((1, 0))
    blocks = [numpy_ops.atleast_2d(numpy_ops.asarray(a)) for a in arrs]
    if any(len(numpy_ops.shape_of(b)) > 2 for b in blocks):
        raise ValueError("arguments in the following positions have dimension greater than 2: "
                         f"{[k for k, b in enumerate(blocks) if len(numpy_ops.shape_of(b)) > 2]}")
    dtype = np.result_type(*[b.dtype for b in blocks])
    widths = [numpy_ops.shape_of(b)[1] for b in blocks]
    total, rows, before = sum(widths), [], 0
    for block, width in zip(blocks, widths):
        height = numpy_ops.shape_of(block)[0]
        rows.append(numpy_ops.concatenate([np.zeros((height, before), dtype), numpy_ops.astype(block, dtype),
                                           np.zeros((height, total - before - width), dtype)], axis=1))
        before += width
    return numpy_ops.concatenate(rows, axis=0)


def _comb(N, k, *, exact=False, repetition=False):
    """scipy.special.comb(exact=False): binom(N, k) where 0 <= k <= N, else 0 (with repetition, of N + k - 1)."""
    if exact:
        raise UnsupportedOperationError("scipy.special.comb(exact=True) of traced values",
                                        "It returns a Python int: use exact=False (a float, differentiable). ")
    N, k = _float(numpy_ops.asarray(N)), _float(numpy_ops.asarray(k))
    if repetition:
        N = N + k - 1.0
    inside = (k <= N) & (N >= 0) & (k >= 0)  # outside, 0 (a constant); safe arguments keep its lanes finite
    return np.where(inside, _binom(np.where(inside, N, 1.0), np.where(inside, k, 0.0)), 0.0)


def _factorial(n, exact=False, extend="zero"):
    """scipy.special.factorial(exact=False): Γ(n + 1), 0 for n < 0 (extend='zero')."""
    if exact or extend != "zero":
        raise UnsupportedOperationError(f"scipy.special.factorial(exact={exact!r}, extend={extend!r}) of traced "
                                        "values", "jitad computes exact=False, extend='zero' (a differentiable "
                                        "float). ")
    # float64 for any array, as SciPy; a float32 NumPy scalar (what a ufunc makes of a 0-d float32
    # array) goes through SciPy's scalar path, gamma(n + 1) in float32 (float64 only at its special
    # values n < 0, 0, 1 and NaN, a dtype that depends on the value: jitad keeps float32 there too)
    scalar32 = is_tracer(n) and n._scalar and n.dtype == np.float32
    n = _float(numpy_ops.asarray(n), np.float64)
    inside = n >= 0
    out = np.where(inside, np.exp(P.gammaln_p(np.where(inside, n, 0.0) + 1.0)), 0.0)
    return numpy_ops.astype(out, np.float32) if scalar32 else out


def _simpson(y, x=None, *, dx=1.0, axis=-1):
    """scipy.integrate.simpson, SciPy's code (1.11+: an even number of samples corrects the last interval,
    Cartwright's rule) with SciPy's own _basic_simpson for the composite part (its divisions use the ufuncs'
    where= and out=, which jitad traces). Written out for SciPy's np.float64(np.diff(x)), which would
    convert a traced x to a NumPy array."""
    quadrature = sys.modules["scipy.integrate._quadrature"]  # loaded: SciPy's simpson is being traced
    y = numpy_ops.asarray(y)
    nd = y.ndim
    n = numpy_ops.shape_of(y)[axis]
    if x is not None:
        x = numpy_ops.asarray(x)
        if x.ndim == 1:
            shape = [1] * nd
            shape[axis] = numpy_ops.shape_of(x)[0]
            x = numpy_ops.reshape(x, tuple(shape))
        elif x.ndim != nd:
            raise ValueError("If given, shape of x must be 1-D or the same as y.")
        if numpy_ops.shape_of(x)[axis] != n:
            raise ValueError("If given, length of x along axis must be the same as y.")
    if n % 2:
        return quadrature._basic_simpson(y, 0, n - 2, x, dx, axis)
    everything = (slice(None),) * nd

    def along(index):
        return quadrature.tupleset(everything, axis, index)
    last, before, third = along(-1), along(-2), along(-3)
    if n == 2:  # one interval: the trapezoid
        last_dx = dx if x is None else x[last] - x[before]
        return 0.0 + 0.5 * last_dx * (y[last] + y[before])
    result = quadrature._basic_simpson(y, 0, n - 3, x, dx, axis)
    h = np.asarray([dx, dx], dtype=np.float64)
    if x is not None:
        diffs = _float(np.diff(x, axis=axis), np.float64)
        h = [np.squeeze(diffs[along(slice(-2, -1, 1))], axis=axis), np.squeeze(diffs[along(slice(-1, None, 1))], axis=axis)]

    def ratio(num, den):  # SciPy's np.true_divide(num, den, out=np.zeros_like(den), where=den != 0)
        nonzero = den != 0
        return np.where(nonzero, num / np.where(nonzero, den, 1.0), 0.0)
    alpha = ratio(2 * h[1] ** 2 + 3 * h[0] * h[1], 6 * (h[1] + h[0]))
    beta = ratio(h[1] ** 2 + 3.0 * h[0] * h[1], 6 * h[0])
    eta = ratio(1 * h[1] ** 3, 6 * h[0] * (h[0] + h[1]))
    total = result + (alpha * y[last] + beta * y[before] - eta * y[third])
    if nd >= 2:  # SciPy's `result += ...` writes into _basic_simpson's array, which keeps its dtype
        total = numpy_ops.astype(total, result.dtype)  # (float32 y with dx: alpha is a float64 0-d array)
    return total + 0.0


SCIPY_LINALG = {
    "toeplitz": _toeplitz, "block_diag": _block_diag,
    "solve": _scipy_solve, "eigh": _scipy_eigh, "svd": _scipy_svd,
    "inv": lambda a, overwrite_a=False, check_finite=True, **_: np.linalg.inv(a),
    # SciPy's det returns float64 for every real input (float32: its LAPACK LU in float32, the product as float64)
    "det": lambda a, overwrite_a=False, check_finite=True: numpy_ops.astype(np.linalg.det(a), np.float64),
    "norm": lambda a, ord=None, axis=None, keepdims=False, check_finite=True: np.linalg.norm(a, ord, axis, keepdims),
    "eigvalsh": lambda a, b=None, *, lower=True, **kw: _scipy_eigh(a, b, lower=lower, eigvals_only=True, **kw),
}
linalg_ops.SCIPY_FUNCTIONS.update({("scipy.linalg", name): builder for name, builder in SCIPY_LINALG.items()})
linalg_ops.SCIPY_FUNCTIONS.update({("scipy.special", "comb"): _comb, ("scipy.special", "factorial"): _factorial,
                                   ("scipy.integrate", "simpson"): _simpson})

_INFRA, _MULTI = "scipy.stats._distn_infrastructure", "scipy.stats._multivariate"
linalg_ops.SCIPY_FUNCTIONS.update({
    ("scipy.special", "logsumexp"): logsumexp, ("scipy.special", "softmax"): softmax,
    ("scipy.special", "log_softmax"): log_softmax, ("scipy.special", "polygamma"): polygamma,
    ("scipy.special", "multigammaln"): multigammaln, ("scipy.special", "zeta"): zeta,
    **{(_INFRA, f"rv_continuous.{m}"): _continuous(m)
       for m in ("logpdf", "pdf", "cdf", "logcdf", "sf", "logsf", "ppf", "isf")},
    **{(_INFRA, f"rv_discrete.{m}"): _discrete(m) for m in ("logpmf", "pmf", "cdf", "sf", "logcdf", "logsf")},
    **{(_MULTI, f"multivariate_normal_gen.{m}"): _mvn(m) for m in ("logpdf", "pdf")},
    **{(_MULTI, f"multivariate_normal_frozen.{m}"): _mvn_frozen(m) for m in ("logpdf", "pdf")},
    (_MULTI, "multivariate_normal_gen.entropy"): _mvn_entropy,
    (_MULTI, "multivariate_normal_frozen.entropy"): _mvn_frozen_entropy,
    (_MULTI, "multivariate_normal_gen.__call__"): _mvn_call,
    **{(_MULTI, f"dirichlet_gen.{m}"): _dirichlet(m) for m in ("logpdf", "pdf")},
    **{(_MULTI, f"multinomial_gen.{m}"): _multinomial(m) for m in ("logpmf", "pmf")},
    **{(_MULTI, f"multinomial_frozen.{m}"): (lambda method: lambda self, x: _multinomial(method)(
        None, x, self.n, self.p))(m) for m in ("logpmf", "pmf")},
    (_MULTI, "multinomial_gen.__call__"): _multinomial_call,
})
linalg_ops.SCIPY_SETUP.append(register_special_ufuncs)

__all__ = ["logsumexp", "softmax", "log_softmax", "polygamma", "multigammaln", "zeta", "register_special_ufuncs"]
