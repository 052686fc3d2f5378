"""Special functions (scipy.special, np.sinc, np.i0) as elementwise primitives, one row each.

The NumPy reference of a scipy.special row is SciPy's own ufunc, imported when it first
runs: a graph holds these primitives only after user code called scipy.special, so
jitad itself never imports it. The compiled lowering calls the scalar kernels of
jitad.backend.kernels_special (as `K.<name>`).
"""
import math

import numpy as np

from jitad.ir import Kind
from jitad.primitives.core import EXPENSIVE, NumpyOnly, Primitive, elementwise_shape
from jitad.primitives.elementwise import (_zero_derivative, abs_p, add_p, binary, comparison, convert_p, cos_p, divide_p,
                                         equal_p, exp_p, less_equal_p, log1p_p, log_p, logical_and_p, mul_cotangent,
                                         multiply_p, scale, sin_p, sqrt_p, sign_p, subtract_p, unary, where_p)
from jitad.primitives.structural import broadcast_to, shape_of, unbroadcast
from jitad.errors import NonDifferentiableError

__all__ = ["expit_p", "logit_p", "log_expit_p", "gammaln_p", "gamma_p", "digamma_p", "polygamma_p", "betaln_p",
           "erf_p", "erfc_p", "erfinv_p", "ndtr_p", "log_ndtr_p", "ndtri_p", "xlogy_p", "xlog1py_p", "entr_p",
           "bessel_i_p", "sinc_p", "finite_shift_p", "no_derivative_p", "erfcx_p", "gammainc_p", "gammaincc_p",
           "betainc_p", "nextafter_p", "frexp_exponent_p", "jv_p", "yv_p", "iv_p", "ive_p", "kv_p", "kve_p", "j0_p",
           "j1_p", "y0_p", "y1_p", "yn_p", "rgamma_p", "gammasgn_p", "binom_p",
           "gammaincinv_p", "gammainccinv_p", "exp1_p", "expi_p", "expn_p", "stdtrit_p", "betaincinv_p",
           "betainccinv_p", "fdtri_p", "zeta_p", "riemann_zeta_p", "poch_p", "spence_p", "ellipk_p", "ellipe_p",
           "si_p", "ci_p", "fresnel_s_p", "fresnel_c_p", "dawsn_p", "owens_t_p", "huber_p", "pseudo_huber_p"]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_HALF_SQRT_PI = 0.5 * math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _scipy(name):
    """scipy.special.<name>, imported at its first call."""
    def impl(*args):
        import scipy.special
        return getattr(scipy.special, name)(*args)
    impl.__name__ = name
    return impl


def _float_like(x, value):
    """`value` with x's float dtype (SciPy's integer-order routines answer in float64)."""
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    return np.asarray(value, dtype)


def _float_shape(x, **params):
    return x.shape, x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


def _safe(condition, x):
    """x where not `condition`, 1 where it holds: keeps an untaken np.where lane finite."""
    return where_p(condition, 1.0, x)


# --- logistic ------------------------------------------------------------------------------------
expit_p = unary("expit", _scipy("expit"), lambda x, y: y * (1.0 - y), "(1.0 / (1.0 + np.exp(-{0})))")
logit_p = unary("logit", _scipy("logit"), lambda x, y: 1.0 / (x * (1.0 - x)), "np.log({0} / (1.0 - {0}))",
                domain=(0.1, 0.9))
log_expit_p = unary("log_expit", _scipy("log_expit"), lambda x, y: expit_p(-x), "K.log_expit({0})")

# --- gamma family: d gammaln = digamma, d digamma = polygamma(1), d polygamma(n) = polygamma(n + 1) ---
gammaln_p = unary("gammaln", _scipy("gammaln"), lambda x, y: digamma_p(x), "K.gammaln({0})", domain=(0.5, 3.0))
gamma_p = unary("gamma", _scipy("gamma"), lambda x, y: y * digamma_p(x), "K.gamma({0})", domain=(0.5, 3.0))
digamma_p = unary("digamma", _scipy("digamma"), lambda x, y: polygamma_p(x, n=1), "K.digamma({0})",
                  domain=(0.5, 3.0))


def _polygamma(x, n):
    import scipy.special
    return _float_like(x, scipy.special.polygamma(n, x))


polygamma_p = Primitive(
    "polygamma", impl=_polygamma, shape_rule=_float_shape,
    jvp=lambda primals, tangents, out, n: scale(tangents[0], polygamma_p(primals[0], n=n + 1)),
    vjp=lambda g, out, x, n: (mul_cotangent(g, polygamma_p(x, n=n + 1)),),
    kind=Kind.ELEMENTWISE, scalar=lambda n: f"K.polygamma({int(n)}, {{0}})", domain=(0.5, 3.0))
# (either operand of a binary primitive may be a NumPy array, a constant: their slopes bind primitives
# where an operator's NumPy-array left operand would reach the NumPy front-end)
def _digamma_step(x, y, out):
    """psi(x) - psi(x + y), betaln's slopes, in out's dtype. The two cancel where y << x, and float32's
    psi rounds by ~1e-6 near 11: d/db betaln(0.5036, 77161) = -6.5e-6 came out 2.4% off (fuzzer, seed
    959595). float32 operands are differenced in float64 (their sum exact, psi to ~1e-16), then
    rounded once. (In float64 the same cancellation costs digits from y/x < ~1e-8 on, as in SciPy-based
    rules elsewhere.)"""
    wide = [convert_p(v, dtype=np.float64) if getattr(v, "dtype", None) == np.float32 else v for v in (x, y)]
    step = subtract_p(digamma_p(wide[0]), digamma_p(add_p(wide[0], wide[1])))
    return step if step.dtype == out.dtype else convert_p(step, dtype=out.dtype)


betaln_p = binary("betaln", _scipy("betaln"), lambda a, b, o: _digamma_step(a, b, o),
                  lambda a, b, o: _digamma_step(b, a, o), "K.betaln({0}, {1})", domain=(0.5, 3.0))

# --- error function and the normal distribution --------------------------------------------------
erf_p = unary("erf", _scipy("erf"), lambda x, y: _TWO_OVER_SQRT_PI * exp_p(-x * x), "K.erf({0})")
erfc_p = unary("erfc", _scipy("erfc"), lambda x, y: -_TWO_OVER_SQRT_PI * exp_p(-x * x), "K.erfc({0})")
erfinv_p = unary("erfinv", _scipy("erfinv"), lambda x, y: _HALF_SQRT_PI * exp_p(y * y), "K.erfinv({0})",
                 domain=(-0.9, 0.9))
ndtr_p = unary("ndtr", _scipy("ndtr"), lambda x, y: exp_p(-0.5 * x * x) * (1.0 / _SQRT_2PI), "K.ndtr({0})")
# φ(x) / Φ(x) as exp(log φ - log Φ): finite far into the lower tail, where both underflow
log_ndtr_p = unary("log_ndtr", _scipy("log_ndtr"), lambda x, y: exp_p(-0.5 * x * x - _LOG_SQRT_2PI - y),
                   "K.log_ndtr({0})", domain=(-4.0, 3.0))
ndtri_p = unary("ndtri", _scipy("ndtri"), lambda x, y: _SQRT_2PI * exp_p(0.5 * y * y), "K.ndtri({0})",
                domain=(0.05, 0.95))

# erfcx = e^(x²) erfc(x): erfcx' = 2x erfcx - 2/√π
erfcx_p = unary("erfcx", _scipy("erfcx"), lambda x, y: 2.0 * x * y - _TWO_OVER_SQRT_PI, "K.erfcx({0})",
                domain=(-2.0, 3.0), inline_cost=EXPENSIVE)


# --- incomplete gamma and beta functions: differentiable in x only --------------------------------
def in_last_argument(name, np_fn, derivative, scalar, domain, refusal=None, lower=None):
    """An elementwise primitive f(*shape_parameters, x) with the local derivative `derivative(*inputs, out)`
    in its last argument x. No closed form gives its derivative in the shape parameters (a, b), so
    differentiating in them is a NonDifferentiableError (message `refusal`, if given), never a zero.
    `lower`: a library lowering instead of the scalar code (core.NumpyOnly: no compiled form)."""
    def refuse(which):
        raise NonDifferentiableError(refusal or (
            f"scipy.special.{name} has no derivative in its shape parameter{'s' if which > 1 else ''} (jitad "
            f"differentiates it in its last argument only): pass the parameters as constants, or give your "
            f"own rule with jitad.custom_vjp"))

    def jvp(primals, tangents, out):
        if any(t is not None for t in tangents[:-1]):
            refuse(len(tangents) - 1)
        return broadcast_to(scale(tangents[-1], derivative(*primals, out)), shape_of(out))

    def vjp(g, out, *primals, wanted=None):
        if wanted is not None and any(wanted[:-1]):
            refuse(len(primals) - 1)
        x = primals[-1]
        return (None,) * (len(primals) - 1) + (unbroadcast(mul_cotangent(g, derivative(*primals, out)), shape_of(x)),)
    vjp.takes_wanted = True

    if lower is not None:
        return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn), jvp=jvp, vjp=vjp,
                         kind=Kind.LIBRARY, lower=lower, domain=domain)
    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn), jvp=jvp, vjp=vjp,
                     kind=Kind.ELEMENTWISE, scalar=scalar, domain=domain, inline_cost=EXPENSIVE)


def _gamma_density(a, x, out):
    """x^(a-1) e^-x / Γ(a), the x-derivative of P(a, x)."""
    return exp_p(multiply_p(a - 1.0, log_p(x)) - x - gammaln_p(a))


gammainc_p = in_last_argument("gammainc", _scipy("gammainc"), _gamma_density, "K.gammainc({0}, {1})",
                              ((0.5, 3.0), (0.2, 4.0)))
gammaincc_p = in_last_argument("gammaincc", _scipy("gammaincc"), lambda a, x, out: -_gamma_density(a, x, out),
                               "K.gammaincc({0}, {1})", ((0.5, 3.0), (0.2, 4.0)))
# d I_x(a, b) / dx = x^(a-1) (1-x)^(b-1) / B(a, b)
betainc_p = in_last_argument(
    "betainc", _scipy("betainc"),
    lambda a, b, x, out: exp_p(multiply_p(a - 1.0, log_p(x)) + multiply_p(b - 1.0, log1p_p(-x)) - betaln_p(a, b)),
    "K.betainc({0}, {1}, {2})", ((0.5, 3.0), (0.5, 3.0), (0.1, 0.9)))

# --- floating-point structure (np.nextafter, np.frexp) --------------------------------------------
# nextafter(x, y) is x moved by one ulp: its derivative is x's (1), and y only picks the direction (0)
nextafter_p = binary("nextafter", np.nextafter, lambda x, y, o: 1.0, lambda x, y, o: 0.0, "np.nextafter({0}, {1})")
# the exponent of np.frexp: an integer, no derivative (the mantissa is ldexp(x, -exponent))
frexp_exponent_p = comparison("frexp_exponent", lambda x: np.frexp(x)[1], "K.frexp_exponent({0})")

# --- information: x log y with 0 log 0 = 0 ------------------------------------------------------
# xlogy(0, y) = 0 for every y, so its y-derivative there is 0 (also at y = 0, where x / y is not)
xlogy_p = binary("xlogy", _scipy("xlogy"), lambda x, y, o: log_p(y),
                 lambda x, y, o: where_p(x == 0, 0.0, divide_p(x, _safe(x == 0, y))), "K.xlogy({0}, {1})",
                 domain=((-2.0, 2.0), (0.3, 3.0)))
xlog1py_p = binary("xlog1py", _scipy("xlog1py"), lambda x, y, o: log1p_p(y),
                   lambda x, y, o: where_p(x == 0, 0.0, divide_p(x, _safe(x == 0, 1.0 + y))), "K.xlog1py({0}, {1})",
                   domain=((-2.0, 2.0), (-0.5, 2.0)))
entr_p = unary("entr", _scipy("entr"), lambda x, y: -(log_p(x) + 1.0), "K.entr({0})", domain=(0.1, 3.0))


# --- modified Bessel functions of the first kind, integer order n: I_n' = (I_{n-1} + I_{n+1}) / 2 ---
def _bessel_i(x, n, scaled):
    import scipy.special as sc
    if n <= 1:
        fn = ((sc.i0, sc.i1), (sc.i0e, sc.i1e))[scaled][n]
        return _float_like(x, fn(x))
    return _float_like(x, (sc.ive if scaled else sc.iv)(n, x))


def _bessel_i_derivative(x, out, n, scaled):
    """I_{-1} = I_1; the scaled e^-|x| I_n(x) adds -sign(x) times itself (a kink at 0, like |x|)."""
    d = bessel_i_p(x, n=1, scaled=scaled) if n == 0 else \
        0.5 * (bessel_i_p(x, n=n - 1, scaled=scaled) + bessel_i_p(x, n=n + 1, scaled=scaled))
    return d - sign_p(x) * out if scaled else d


bessel_i_p = Primitive(
    "bessel_i", impl=_bessel_i, shape_rule=_float_shape,
    jvp=lambda primals, tangents, out, n, scaled: scale(tangents[0], _bessel_i_derivative(primals[0], out, n, scaled)),
    vjp=lambda g, out, x, n, scaled: (mul_cotangent(g, _bessel_i_derivative(x, out, n, scaled)),),
    kind=Kind.ELEMENTWISE, scalar=lambda n, scaled: f"K.bessel_i({int(n)}, {{0}}, {bool(scaled)})")


# --- Bessel functions of real order: scipy.special.jv, yv, iv, ive, kv, kve, j0, j1, y0, y1 ----------
# Values are SciPy's own routines on both executors (compiled: jitad.backend.kernels_bessel). The
# x-derivatives are the recurrences C_v' = (C_{v-1} - C_{v+1}) / 2 (J, Y), (I_{v-1} + I_{v+1}) / 2 (I),
# -(K_{v-1} + K_{v+1}) / 2 (K), plus -sign(x) (ive) or +1 (kve) times the value for the scaled ones;
# in the order v none exists in closed form: a NonDifferentiableError (in_last_argument).
def _bessel(name, derivative, domain):
    return in_last_argument(name, _scipy(name), derivative, f"KB.{name}({{0}}, {{1}})", domain)


jv_p = _bessel("jv", lambda v, x, out: 0.5 * (jv_p(v - 1.0, x) - jv_p(v + 1.0, x)), ((0.2, 2.5), (0.5, 4.0)))
yv_p = _bessel("yv", lambda v, x, out: 0.5 * (yv_p(v - 1.0, x) - yv_p(v + 1.0, x)), ((0.2, 2.5), (0.5, 4.0)))
iv_p = _bessel("iv", lambda v, x, out: 0.5 * (iv_p(v - 1.0, x) + iv_p(v + 1.0, x)), ((0.2, 2.5), (-3.0, 3.0)))
ive_p = _bessel("ive", lambda v, x, out: 0.5 * (ive_p(v - 1.0, x) + ive_p(v + 1.0, x)) - sign_p(x) * out,
                ((0.2, 2.5), (0.2, 3.0)))
kv_p = _bessel("kv", lambda v, x, out: -0.5 * (kv_p(v - 1.0, x) + kv_p(v + 1.0, x)), ((0.2, 2.5), (0.3, 4.0)))
kve_p = _bessel("kve", lambda v, x, out: out - 0.5 * (kve_p(v - 1.0, x) + kve_p(v + 1.0, x)), ((0.2, 2.5), (0.3, 4.0)))
j0_p = unary("j0", _scipy("j0"), lambda x, y: -j1_p(x), "KB.j0({0})", domain=(0.3, 4.0))
j1_p = unary("j1", _scipy("j1"), lambda x, y: 0.5 * (j0_p(x) - jv_p(2.0, x)), "KB.j1({0})", domain=(0.3, 4.0))
y0_p = unary("y0", _scipy("y0"), lambda x, y: -y1_p(x), "KB.y0({0})", domain=(0.3, 4.0))
y1_p = unary("y1", _scipy("y1"), lambda x, y: 0.5 * (y0_p(x) - yv_p(2.0, x)), "KB.y1({0})", domain=(0.3, 4.0))


yn_p = _bessel("yn", lambda n, x, out: 0.5 * (yn_p(n - 1.0, x) - yn_p(n + 1.0, x)), ((0.0, 3.0), (0.5, 4.0)))


# --- the inverses in x of the regularized incomplete gamma functions: x = P^-1(a, y), Q^-1(a, y) -----
# dx/dy = 1 / (dP/dx) = Γ(a) x^(1-a) e^x (negated for Q); in the shape a: a NonDifferentiableError
def _incomplete_gamma_inverse_slope(a, y, x):
    return exp_p(add_p(gammaln_p(a), multiply_p(1.0 - a, log_p(x))) + x)


gammaincinv_p = in_last_argument("gammaincinv", _scipy("gammaincinv"), _incomplete_gamma_inverse_slope,
                                 "KB.gammaincinv({0}, {1})", ((0.5, 3.0), (0.1, 0.9)))
gammainccinv_p = in_last_argument("gammainccinv", _scipy("gammainccinv"),
                                  lambda a, y, x: -_incomplete_gamma_inverse_slope(a, y, x),
                                  "KB.gammainccinv({0}, {1})", ((0.5, 3.0), (0.1, 0.9)))


# --- exponential integrals: E1' = -e^-x / x, Ei' = e^x / x, En' = -E(n-1) (E0 = e^-x / x) ----------
exp1_p = unary("exp1", _scipy("exp1"), lambda x, y: -exp_p(-x) / x, "KB.exp1({0})", domain=(0.2, 3.0),
               inline_cost=EXPENSIVE)
expi_p = unary("expi", _scipy("expi"), lambda x, y: exp_p(x) / x, "KB.expi({0})", domain=(0.2, 3.0),
               inline_cost=EXPENSIVE)


def _expn_slope(n, x, out):
    """-E(n-1)(x); for n = 0, the derivative of e^-x / x, -e^-x (x + 1) / x^2."""
    zero = n == 0
    return where_p(zero, -exp_p(-x) * (x + 1.0) / (x * x), -expn_p(_pick(zero, 1.0, n) - 1.0, x))


expn_p = in_last_argument("expn", _scipy("expn"), _expn_slope, "KB.expn({0}, {1})", ((0.0, 3.0), (0.3, 3.0)))


# --- the quantile of Student's t: t = stdtrit(df, p), dt/dp = 1 / pdf(t) ---------------------------
def _stdtrit_slope(df, p, t):
    log_pdf = subtract_p(gammaln_p(0.5 * (df + 1.0)) - gammaln_p(0.5 * df) - 0.5 * log_p(df * math.pi),
                         multiply_p(0.5 * (df + 1.0), log1p_p(divide_p(t * t, df))))
    return exp_p(-log_pdf)


stdtrit_p = in_last_argument("stdtrit", _scipy("stdtrit"), _stdtrit_slope, "KB.stdtrit({0}, {1})",
                             ((1.5, 6.0), (0.1, 0.9)))


# --- the inverses in x of the regularized incomplete beta function: x = I^-1(a, b, y), and its complement -
# dx/dy = 1 / (dI/dx) = B(a, b) x^(1-a) (1-x)^(1-b) (negated for the complement); none in a and b
def _incomplete_beta_inverse_slope(a, b, y, x):
    return exp_p(add_p(betaln_p(a, b), multiply_p(1.0 - a, log_p(x))) + multiply_p(1.0 - b, log1p_p(-x)))


betaincinv_p = in_last_argument("betaincinv", _scipy("betaincinv"), _incomplete_beta_inverse_slope,
                                "KB.betaincinv({0}, {1}, {2})", ((0.5, 3.0), (0.5, 3.0), (0.1, 0.9)))
betainccinv_p = in_last_argument("betainccinv", _scipy("betainccinv"),
                                 lambda a, b, y, x: -_incomplete_beta_inverse_slope(a, b, y, x),
                                 "KB.betainccinv({0}, {1}, {2})", ((0.5, 3.0), (0.5, 3.0), (0.1, 0.9)))


# --- the quantile of the F distribution: x = fdtri(dfn, dfd, p), dx/dp = 1 / pdf(x) ------------------
def _fdtri_slope(m, n, p, x):
    log_pdf = (add_p(0.5 * m * log_p(m) + 0.5 * n * log_p(n), multiply_p(0.5 * m - 1.0, log_p(x)))
               - multiply_p(0.5 * (m + n), log_p(add_p(n, multiply_p(m, x)))) - betaln_p(0.5 * m, 0.5 * n))
    return exp_p(-log_pdf)


fdtri_p = in_last_argument("fdtri", _scipy("fdtri"), _fdtri_slope, "KB.fdtri({0}, {1}, {2})",
                           ((1.0, 6.0), (1.0, 6.0), (0.1, 0.9)))


# --- the Hurwitz and Riemann zeta functions: d zeta(x, q) / dq = -x zeta(x + 1, q); none in x -------
# SciPy's values on the NumPy executor only: cython_special does not export them to compiled code
def _zeta(x, q):
    import scipy.special
    return scipy.special.zeta(x, q)


def _riemann_zeta(x):
    import scipy.special
    return scipy.special.zeta(x)


_ZETA = NumpyOnly("SciPy's zeta is not exported by scipy.special.cython_special")
_ZETA_IN_X = ("scipy.special.zeta(x, q) has no closed-form derivative in x (jitad differentiates the Hurwitz zeta "
              "function in q only): pass x as a constant, or give your own rule with jitad.custom_vjp")
zeta_p = in_last_argument("zeta", _zeta, lambda x, q, out: multiply_p(-x, zeta_p(x + 1.0, q)), None,
                          ((1.5, 4.0), (0.5, 3.0)),
                          refusal=_ZETA_IN_X, lower=_ZETA)


def _riemann_zeta_refuses(*args, **params):
    raise NonDifferentiableError(_ZETA_IN_X.replace("zeta(x, q)", "zeta(x)").replace(
        "the Hurwitz zeta function in q only", "zeta(x, q) in q only"))


riemann_zeta_p = Primitive("riemann_zeta", impl=_riemann_zeta, shape_rule=elementwise_shape(_riemann_zeta),
                           jvp=_riemann_zeta_refuses, vjp=_riemann_zeta_refuses, kind=Kind.LIBRARY, lower=_ZETA,
                           domain=(1.5, 4.0))


# --- the Pochhammer symbol (z)_m = Γ(z + m) / Γ(z): ∂z = (z)_m (ψ(z + m) - ψ(z)), ∂m = (z)_m ψ(z + m) ---
poch_p = binary("poch", _scipy("poch"), lambda z, m, out: out * subtract_p(digamma_p(add_p(z, m)), digamma_p(z)),
                lambda z, m, out: out * digamma_p(add_p(z, m)), "KB.poch({0}, {1})", domain=((0.5, 3.0), (-0.4, 2.0)),
                inline_cost=EXPENSIVE)


# --- Spence's function (SciPy's: the integral of log t / (1 - t) from 1 to z): spence' = log z / (1 - z) ---
# near z = 1 (a removable 0/0, value -1) the series -Σ_k u^k / (k + 1) of u = 1 - z, so every order is exact
_SPENCE_NEAR = 0.05


def _spence_slope(z, y):
    near = abs_p(1.0 - z) < _SPENCE_NEAR
    u = 1.0 - where_p(near, z, 1.0)
    poly = -1.0 / 14.0
    for k in range(12, -1, -1):
        poly = -1.0 / (k + 1.0) + u * poly
    far = where_p(near, 2.0, z)
    return where_p(near, poly, log_p(far) / (1.0 - far))


spence_p = unary("spence", _scipy("spence"), _spence_slope, "KB.spence({0})", domain=(0.2, 3.0),
                 inline_cost=EXPENSIVE)


# --- complete elliptic integrals of the parameter m: K' = (E - (1-m) K) / (2m (1-m)), E' = (E - K) / (2m) ---
# below |m| = 0.1 (where those differences cancel, and at m = 0) the derivatives of their Maclaurin series
# K = π/2 Σ c_n² m^n, E = π/2 Σ c_n² m^n / (1 - 2n), c_n = binom(2n, n) / 4^n
_ELLIPTIC_NEAR = 0.1
_ELLIPTIC_C2 = tuple((math.comb(2 * n, n) / 4.0 ** n) ** 2 for n in range(26))


def _elliptic_series_slope(m, second_kind):
    poly = 0.0
    for n in range(len(_ELLIPTIC_C2) - 1, 0, -1):
        c = 0.5 * math.pi * n * _ELLIPTIC_C2[n] / ((1.0 - 2.0 * n) if second_kind else 1.0)
        poly = c + m * poly
    return poly


def _elliptic_slope(m, second_kind):
    near = abs_p(m) < _ELLIPTIC_NEAR
    small, far = where_p(near, m, 0.0), where_p(near, 0.5, m)
    k, e = ellipk_p(far), ellipe_p(far)
    closed = (e - k) / (2.0 * far) if second_kind else (e - (1.0 - far) * k) / (2.0 * far * (1.0 - far))
    return where_p(near, _elliptic_series_slope(small, second_kind), closed)


ellipk_p = unary("ellipk", _scipy("ellipk"), lambda m, y: _elliptic_slope(m, False), "KB.ellipk({0})",
                 domain=(-2.0, 0.9), inline_cost=EXPENSIVE)
ellipe_p = unary("ellipe", _scipy("ellipe"), lambda m, y: _elliptic_slope(m, True), "KB.ellipe({0})",
                 domain=(-2.0, 0.9), inline_cost=EXPENSIVE)


# --- sine and cosine integrals (scipy.special.sici): Si' = sin x / x (= sinc(x / π), exact at 0), Ci' = cos x / x ---
def _output(name, k):
    def impl(x):
        import scipy.special
        return getattr(scipy.special, name)(x)[k]
    impl.__name__ = f"{name}_{k}"
    return impl


si_p = unary("si", _output("sici", 0), lambda x, y: sinc_p(x * (1.0 / math.pi)), "KB.si({0})", domain=(0.3, 4.0),
             inline_cost=EXPENSIVE)
ci_p = unary("ci", _output("sici", 1), lambda x, y: cos_p(x) / x, "KB.ci({0})", domain=(0.3, 4.0),
             inline_cost=EXPENSIVE)
# --- Fresnel integrals (scipy.special.fresnel): S' = sin(πx²/2), C' = cos(πx²/2) ---------------------------
fresnel_s_p = unary("fresnel_s", _output("fresnel", 0), lambda x, y: sin_p((0.5 * math.pi) * (x * x)),
                    "KB.fresnel_s({0})", inline_cost=EXPENSIVE)
fresnel_c_p = unary("fresnel_c", _output("fresnel", 1), lambda x, y: cos_p((0.5 * math.pi) * (x * x)),
                    "KB.fresnel_c({0})", inline_cost=EXPENSIVE)
# --- Dawson's integral: D' = 1 - 2xD ---------------------------------------------------------------------
dawsn_p = unary("dawsn", _scipy("dawsn"), lambda x, y: 1.0 - 2.0 * x * y, "KB.dawsn({0})", inline_cost=EXPENSIVE)


# --- Owen's T function T(h, a) = 1/2π ∫_0^a e^(-h²(1+t²)/2) / (1+t²) dt ----------------------------------
# ∂h = -φ(h) erf(ah/√2) / 2, ∂a = e^(-h²(1+a²)/2) / (2π (1+a²))
owens_t_p = binary("owens_t", _scipy("owens_t"),
                   lambda h, a, out: multiply_p((-0.5 / _SQRT_2PI) * exp_p(-0.5 * h * h),
                                                erf_p(multiply_p(a, h) * math.sqrt(0.5))),
                   lambda h, a, out: divide_p(exp_p(multiply_p(-0.5 * h * h, 1.0 + a * a)),
                                              (2.0 * math.pi) * (1.0 + a * a)),
                   "KB.owens_t({0}, {1})", inline_cost=EXPENSIVE)


# --- Huber losses of a residual r with threshold delta (inf for delta < 0: its derivatives are NaN there) ---
# huber: r²/2 for |r| <= delta, delta (|r| - delta/2) beyond: ∂r = r or delta sign(r), ∂delta = 0 or |r| - delta
def _huber_slopes(delta, r):
    inside = less_equal_p(abs_p(r), delta)
    invalid = delta < 0
    return (where_p(invalid, np.nan, where_p(inside, 0.0, subtract_p(abs_p(r), delta))),
            where_p(invalid, np.nan, where_p(inside, r, multiply_p(delta, sign_p(r)))))


# pseudo_huber = delta² (√(1 + (r/delta)²) - 1) = delta r² / (h + delta), h = √(delta² + r²):
# ∂r = r delta / h, ∂delta = r⁴ / ((h + delta)² h) (its limit |r| at delta = 0; 0 at delta = r = 0)
def _pseudo_huber_slopes(delta, r):
    zero = logical_and_p(equal_p(delta, 0), equal_p(r, 0))
    d, x = where_p(zero, 1.0, delta), where_p(zero, 1.0, r)
    h = sqrt_p(d * d + x * x)
    invalid = delta < 0
    return (where_p(invalid, np.nan, where_p(zero, 0.0, (x * x) * (x * x) / ((h + d) * (h + d) * h))),
            where_p(invalid, np.nan, where_p(zero, 0.0, x * d / h)))


huber_p = binary("huber", _scipy("huber"), lambda d, r, out: _huber_slopes(d, r)[0],
                 lambda d, r, out: _huber_slopes(d, r)[1], "KB.huber({0}, {1})", domain=((0.2, 2.0), (-3.0, 3.0)),
                 inline_cost=EXPENSIVE)
pseudo_huber_p = binary("pseudo_huber", _scipy("pseudo_huber"), lambda d, r, out: _pseudo_huber_slopes(d, r)[0],
                        lambda d, r, out: _pseudo_huber_slopes(d, r)[1], "KB.pseudo_huber({0}, {1})",
                        domain=((0.2, 2.0), (-3.0, 3.0)), inline_cost=EXPENSIVE)


# --- 1/Γ, the sign of Γ, and the binomial coefficient of real arguments ----------------------------
# Values are SciPy's own routines on both executors (compiled: jitad.backend.kernels_bessel). Where
# Γ has a pole 1/Γ is 0 but not flat, so the rules below never divide by Γ there: every order of
# their derivatives is finite at the poles (autograd and JAX give NaN or 0 there).
def _pick(condition, x, safe):
    """x where `condition` holds, the constant `safe` elsewhere: keeps an untaken np.where lane finite."""
    return where_p(condition, x, safe)


def _rgamma_slope_below_one(x):
    """(1/Γ)'(x) for x < 1: the derivative of the reflection 1/Γ(x) = Γ(1-x) sin(πx) / π, that is
    Γ(1-x) (cos πx - ψ(1-x) sin(πx) / π), smooth through the poles ((-1)^m m! at x = -m)."""
    return gamma_p(1.0 - x) * (cos_p(math.pi * x) - digamma_p(1.0 - x) * sin_p(math.pi * x) / math.pi)


def _rgamma_slope(x, y):
    """(1/Γ)'(x): -ψ(x) / Γ(x) = -ψ(x) y from x = 1/2 up, the reflection's slope below."""
    low = x < 0.5
    return where_p(low, _rgamma_slope_below_one(_pick(low, x, 0.0)), -digamma_p(_pick(low, 1.0, x)) * y)


rgamma_p = unary("rgamma", _scipy("rgamma"), _rgamma_slope, "KB.rgamma({0})", domain=(-3.0, 3.0),
                 inline_cost=EXPENSIVE)
gammasgn_p = _zero_derivative("gammasgn", _scipy("gammasgn"), "KB.gammasgn({0})")


def _binom_slopes(n, k, out):
    """(∂n, ∂k) of binom(n, k) = Γ(n+1) / (Γ(k+1) Γ(n-k+1)), written so that a pole of Γ(k+1) or of
    Γ(n-k+1) (where binom is 0, e.g. binom(1, 3)) is a finite value of 1/Γ's slope, not 0 * inf:

    k >= -1/2: binom = P rgamma(z), z = n-k+1, P = Γ(n+1)/Γ(k+1), so ∂n = binom ψ(n+1) + D,
      ∂k = -binom ψ(k+1) - D with D = P rgamma'(z) (below z = 1/2) or -ψ(z) binom (above: no overflow
      of P for large n);
    k < -1/2: binom = Q rgamma(k+1), Q = Γ(n+1)/Γ(n-k+1), so ∂n = binom (ψ(n+1) - ψ(n-k+1)),
      ∂k = binom ψ(n-k+1) + Q rgamma'(k+1).
    Each branch reads its inputs only where it is taken (constants elsewhere), so no lane of an
    untaken branch is inf or NaN at any order. At a negative integer n, binom is NaN (SciPy's) and
    so are its slopes."""
    low_k = k < -0.5
    z = subtract_p(n, k) + 1.0
    low_z = z < 0.5
    # k >= -1/2 and z < 1/2: P rgamma'(z), |P| <= 1 here
    near = logical_and_p(~low_k, low_z)
    n1, k1 = _pick(near, n, 1.0), _pick(near, k, 2.5)
    p = gammasgn_p(n1 + 1.0) * exp_p(gammaln_p(n1 + 1.0) - gammaln_p(k1 + 1.0))
    d = where_p(low_z, p * _rgamma_slope_below_one(n1 - k1 + 1.0), -digamma_p(_pick(low_z, 1.0, z)) * out)
    k2 = _pick(low_k, 0.0, k)
    dn_high, dk_high = out * digamma_p(n + 1.0) + d, -out * digamma_p(k2 + 1.0) - d
    # k < -1/2: Q = Γ(n+1)/Γ(n-k+1)
    n3, k3 = _pick(low_k, n, 1.0), _pick(low_k, k, -1.5)
    z3 = n3 - k3 + 1.0
    q = gammasgn_p(n3 + 1.0) * gammasgn_p(z3) * exp_p(gammaln_p(n3 + 1.0) - gammaln_p(z3))
    dn_low = out * (digamma_p(n3 + 1.0) - digamma_p(z3))
    dk_low = out * digamma_p(z3) + q * _rgamma_slope_below_one(k3 + 1.0)
    return where_p(low_k, dn_low, dn_high), where_p(low_k, dk_low, dk_high)


binom_p = binary("binom", _scipy("binom"), lambda n, k, out: _binom_slopes(n, k, out)[0],
                 lambda n, k, out: _binom_slopes(n, k, out)[1], "KB.binom({0}, {1})",
                 domain=((2.0, 6.0), (-0.4, 3.0)), inline_cost=EXPENSIVE)


# --- np.sinc -------------------------------------------------------------------------------------
# sinc'(x) = (cos πx - sinc x) / x; below |x| = 0.1 (where that difference cancels, and at 0)
# its Maclaurin polynomial Σ_k (-1)^k 2k π^2k x^(2k-1) / (2k+1)!, so every order is exact at 0.
_SINC_SERIES = tuple((-1) ** k * 2 * k * math.pi ** (2 * k) / math.factorial(2 * k + 1) for k in range(1, 9))


def _sinc_derivative(x, y):
    small = abs_p(x) < 0.1
    x2, poly = x * x, _SINC_SERIES[-1]
    for c in reversed(_SINC_SERIES[:-1]):
        poly = c + x2 * poly
    safe_x = _safe(small, x)
    return where_p(small, x * poly, (cos_p(math.pi * safe_x) - y) / safe_x)


sinc_p = unary("sinc", np.sinc, _sinc_derivative, "(1.0 if {0} == 0.0 else np.sin(np.pi * {0}) / (np.pi * {0}))")


# --- helpers of the builders ---------------------------------------------------------------------
# The shift of a stable log-sum-exp: the max where finite, else 0. The result does not depend on
# it, so AD treats it as a constant (a stop-gradient) and the derivative is exactly softmax.
finite_shift_p = Primitive("finite_shift", impl=lambda x: np.where(np.isfinite(x), x, np.zeros((), x.dtype)),
                           shape_rule=lambda x: (x.shape, x.dtype), kind=Kind.ELEMENTWISE,
                           scalar="({0} if np.isfinite({0}) else 0.0)", differentiable=False)


def _no_derivative(*args, what, **_):
    raise NonDifferentiableError(f"{what} has no derivative")


# The value of x; differentiating through it is an error. It guards inputs whose derivative does
# not exist (a discrete count, an integer order), which would otherwise get a formula's derivative.
no_derivative_p = Primitive("no_derivative", impl=lambda x, what: x, shape_rule=lambda x, what: (x.shape, x.dtype),
                            jvp=_no_derivative, vjp=_no_derivative,
                            kind=Kind.ELEMENTWISE, scalar="{0}")
