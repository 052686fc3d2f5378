"""scipy.special and scipy.stats on traced values.

The rows of tests/primitive_table.py check scipy.special and scipy.stats derivatives to order 2
(3 in reverse for scipy.special) in both modes, forward values equal to SciPy's, and the compiled
path against the reference; here: SciPy's conventions outside the support, log-sum-exp at ±1e3,
the errors for derivatives that do not exist, the hooks put back after tracing, and the scalar
kernels' accuracy against SciPy.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.special as sc
import scipy.stats as st

import jitad
from jitad.backend import kernels as K

pytestmark = pytest.mark.usefixtures("reference_backend")

# The derivative rows of scipy.special and scipy.stats (every distribution method called the usual ways)
# are in tests/primitive_table.py: tests/test_primitives.py checks them on the reference executor,
# tests/test_compiled.py compiles them in generated groups.


def test_distribution_conventions_outside_support_and_invalid_parameters():
    """-inf outside the support, nan for invalid parameters, as SciPy: also with traced values."""
    x = np.array([-1.0, 0.0, 0.5, 2.0])
    cases = [
        (lambda x, s: st.gamma.logpdf(x, 2.0, scale=s), (x, 1.5)),
        (lambda x, s: st.gamma.logpdf(x, 1.0, scale=s), (x, -1.0)),
        (lambda x, a: st.beta.logpdf(x, a, 2.0), (x, 1.5)),
        (lambda x, s: st.expon.logpdf(x, scale=s), (x, 1.5)),
        (lambda x, s: st.norm.logpdf(x, scale=s), (x, np.array([1.0, -1.0, 0.0, 2.0]))),
        (lambda mu: st.poisson.logpmf(np.array([-1.0, 0.5, 2.0, 3.0]), mu), (np.array([1.0, 1.0, 0.0, -1.0]),)),
        (lambda p: st.bernoulli.logpmf(np.array([0.0, 1.0, 2.0, 1.0]), p), (np.array([0.3, 0.0, 0.3, 1.5]),)),
        (lambda q: st.norm.ppf(q), (np.array([0.0, 0.5, 1.0, 1.5]),)),
        # nan data is nan (it was -inf, 0 or 1 where the support's edge is handled by a select)
        (lambda x: st.lognorm.logpdf(x, 0.5) + st.lognorm.cdf(x, 0.5) + st.invgamma.sf(x, 2.0)
         + st.invgamma.pdf(x, 2.5) + st.invgauss.logpdf(x, 0.7), (np.array([np.nan, 0.0, -1.0, 1.3]),)),
    ]
    for fun, args in cases:
        with np.errstate(divide="ignore", invalid="ignore"):  # SciPy's own scale = 0
            out, expected = jitad.vjp(fun, *args)[0], fun(*args)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_logsumexp_is_stable_at_plus_minus_1e3():
    for x in (np.array([1000.0, 1000.5, 999.0, -1000.0]), np.array([-1000.0, -1000.5, -999.0, -1001.0]),
              np.array([[1000.0, -1000.0], [3.0, 1000.0]])):
        value, grad = jitad.value_and_grad(lambda v: sc.logsumexp(v))(x)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        np.testing.assert_allclose(value, sc.logsumexp(x), rtol=1e-14)
        np.testing.assert_allclose(grad, sc.softmax(x), rtol=1e-12, atol=1e-300)
        hessian = jitad.hessian(lambda v: sc.logsumexp(v))(x.ravel())
        p = sc.softmax(x.ravel())
        np.testing.assert_allclose(hessian, np.diag(p) - np.outer(p, p), atol=1e-14)
    weights = np.array([2.0, 0.0, 1.0, 0.5])
    x = np.array([-1000.0, 1000.0, -999.0, -1002.0])  # the largest entry has weight 0: shifted by the next
    value, grad = jitad.value_and_grad(lambda v, b: sc.logsumexp(v, b=b), argnums=(0, 1))(x, weights)
    np.testing.assert_allclose(value, sc.logsumexp(x, b=weights), rtol=1e-14)
    assert np.all(np.isfinite(grad[0])) and np.all(np.isfinite(grad[1]))
    # all -inf: -inf like SciPy (the shift falls back to 0), log_softmax / softmax at ±1e3 finite
    assert jitad.jit(lambda v: sc.logsumexp(v))(np.full(3, -np.inf)) == -np.inf
    big = np.array([1000.0, -1000.0, 0.0])
    np.testing.assert_allclose(jitad.jit(lambda v: sc.log_softmax(v))(big), sc.log_softmax(big), rtol=1e-14)
    jac = jitad.jacobian(lambda v: sc.softmax(v))(big)
    assert np.all(np.isfinite(jac))


def test_derivatives_that_do_not_exist_are_errors():
    x = np.array([0.5, 1.5])
    with pytest.raises(jitad.NonDifferentiableError, match="order n"):
        jitad.grad(lambda n, v: np.sum(sc.polygamma(n, v)), argnums=(0, 1))(2.0, x)
    with pytest.raises(jitad.NonDifferentiableError, match="dimension d"):
        jitad.grad(lambda a, d: sc.multigammaln(a, d))(3.0, 2.0)
    k, mu = np.array([1.0, 3.0]), np.array([2.0, 0.5])
    pmf = lambda k, mu: np.sum(st.poisson.logpmf(k, mu))  # noqa: E731
    for mode in (jitad.grad(pmf, argnums=0), lambda k, mu: jitad.jvp(pmf, (k, mu), (k, mu))):
        with pytest.raises(jitad.NonDifferentiableError, match="count k"):
            mode(k, mu)
    with pytest.raises(jitad.NonDifferentiableError, match="count k"):
        jitad.grad(lambda k, p: np.sum(st.bernoulli.logpmf(k, p)))(np.array([0.0, 1.0]), np.array([0.3, 0.6]))
    # a traced count that is not differentiated is fine
    np.testing.assert_allclose(jitad.grad(pmf, argnums=1)(k, mu), k / mu - 1.0)
    # the incomplete gamma and beta functions differentiate in x only, in both modes, a traced a fine
    lower = lambda a, v: np.sum(sc.gammainc(a, v) + sc.gammaincc(a, v) ** 2)  # noqa: E731
    for mode in (jitad.grad(lower, argnums=(0, 1)), lambda a, v: jitad.jvp(lower, (a, v), (a, v))):
        with pytest.raises(jitad.NonDifferentiableError, match="gammaincc? has no derivative in its shape parameter"):
            mode(2.0, x)
    with pytest.raises(jitad.NonDifferentiableError, match="betainc has no derivative in its shape parameters"):
        jitad.grad(lambda b, v: np.sum(sc.betainc(2.0, b, v)))(np.array([1.0, 2.0]), x / 2)
    np.testing.assert_allclose(jitad.grad(lambda a, v: np.sum(sc.gammainc(a, v)), argnums=1)(2.0, x), x * np.exp(-x))
    b = np.where(np.arange(x.size) == 1, -0.01, 1.0)  # return_sign=True is supported now: d log|s| = softmax
    lse = jitad.grad(lambda v: sc.logsumexp(v, b=b, return_sign=True)[0])(x)
    np.testing.assert_allclose(lse, b * np.exp(x) / np.sum(b * np.exp(x)), rtol=1e-12)
    with pytest.raises(jitad.UnsupportedOperationError, match="genextreme.logpdf"):
        jitad.grad(lambda v: np.sum(st.genextreme.logpdf(v, 0.5)))(x)
    with pytest.raises(jitad.UnsupportedOperationError, match="skewnorm.ppf"):  # (no closed form in SciPy either)
        jitad.grad(lambda v: np.sum(st.skewnorm.ppf(v / 2, 2.0)))(x)
    with pytest.raises(jitad.NonDifferentiableError, match="betaincinv has no derivative in its shape"):
        jitad.grad(lambda a: np.sum(st.beta.ppf(x / 2, a, 3.0)))(2.0)
    with pytest.raises(jitad.NonDifferentiableError, match="fdtri has no derivative in its shape"):
        jitad.grad(lambda n: np.sum(st.f.isf(x / 2, 2.0, n)))(3.0)
    with pytest.raises(jitad.NonDifferentiableError, match=r"zeta\(x, q\) has no closed-form derivative in x"):
        jitad.grad(lambda s: np.sum(sc.zeta(s, x)))(2.5)
    with pytest.raises(jitad.NonDifferentiableError, match=r"zeta\(x\) has no closed-form derivative in x"):
        jitad.jvp(lambda s: sc.zeta(s), (2.5,), (1.0,))
    with pytest.raises(jitad.NonDifferentiableError, match="gammaincinv has no derivative in its shape"):
        jitad.grad(lambda a: np.sum(st.gamma.ppf(x / 2, a)))(2.0)
    with pytest.raises(jitad.NonDifferentiableError, match="binom.logpmf with respect to its integer parameter"):
        jitad.grad(lambda n: np.sum(st.binom.logpmf(np.array([1.0, 2.0]), n, 0.3)))(4.0)
    with pytest.raises(jitad.NonDifferentiableError, match="gammainc has no derivative in its shape parameter"):
        jitad.grad(lambda a: np.sum(st.gamma.cdf(x, a)))(2.0)


def test_a_function_bound_before_tracing_in_a_closure():
    """A name imported before tracing, held in a closure cell, is swapped while tracing too."""
    from scipy.special import logsumexp
    np.testing.assert_allclose(jitad.grad(lambda v: logsumexp(v))(np.ones(3)), np.full(3, 1 / 3))
    assert logsumexp is sc.logsumexp


def test_a_function_held_in_a_dict_or_an_attribute_dispatches():
    """A SciPy function reached only through another object (a dict, a list, an instance attribute, a
    bound method) runs jitad's rule while tracing: its code is swapped too (jitad.frontend.scipy_code),
    and comes back after the trace, also in another thread calling SciPy meanwhile."""
    from scipy.special import logsumexp
    holder = {"lse": logsumexp, "softmax": sc.softmax}

    class Model:
        def __init__(self):
            self.logpdf = st.norm.logpdf
            self.terms = [st.multivariate_normal.logpdf, st.gamma(2.0).logpdf]

    model, x = Model(), np.array([0.3, 1.1, 2.0])
    code = logsumexp.__code__

    def through_objects(v):
        return (holder["lse"](v) + holder["softmax"](v)[0] + np.sum(model.logpdf(v, 0.5, 2.0))
                + model.terms[0](v, np.zeros(3), np.eye(3)) + np.sum(model.terms[1](v)))

    def by_name(v):
        return (sc.logsumexp(v) + sc.softmax(v)[0] + np.sum(st.norm.logpdf(v, 0.5, 2.0))
                + st.multivariate_normal.logpdf(v, np.zeros(3), np.eye(3)) + np.sum(st.gamma.logpdf(v, 2.0)))

    np.testing.assert_allclose(jitad.grad(through_objects)(x), jitad.grad(by_name)(x), rtol=1e-14)
    jitad.check_grads(through_objects, (x,), order=2, modes=("fwd", "rev"))
    assert logsumexp.__code__ is code and holder["lse"](x) == sc.logsumexp(x)
    np.testing.assert_allclose(jitad.jit(through_objects)(x), through_objects(x), rtol=1e-14)


def test_hooks_are_put_back_also_after_errors():
    from scipy.stats._distn_infrastructure import rv_continuous
    originals = (sc.logsumexp, sc.polygamma, rv_continuous.logpdf, st.multivariate_normal.logpdf)

    def failing(v):
        st.norm.logpdf(v)
        raise RuntimeError("user error")
    with pytest.raises(RuntimeError, match="user error"):
        jitad.grad(failing)(np.ones(2))
    jitad.grad(lambda v: sc.logsumexp(v) + np.sum(st.norm.logpdf(v)))(np.ones(2))
    assert (sc.logsumexp, sc.polygamma, rv_continuous.logpdf, st.multivariate_normal.logpdf) == originals
    assert not any("scipy_code" in str(f.__code__.co_consts) for f in originals)  # SciPy's own code again
    assert "logpdf" not in vars(type(st.norm))  # inherited again, not a copy in the subclass


def test_sinc_derivatives_at_zero():
    np.testing.assert_allclose(jitad.grad(np.sinc)(0.0), 0.0, atol=1e-15)
    np.testing.assert_allclose(jitad.hessian(np.sinc)(0.0), -np.pi ** 2 / 3, rtol=1e-14)
    np.testing.assert_allclose(jitad.grad(jitad.grad(jitad.grad(jitad.grad(np.sinc))))(0.0), np.pi ** 4 / 5,
                               rtol=1e-12)


def test_jitad_does_not_import_scipy_special():
    code = ("import sys, numpy as np, jitad; jitad.grad(lambda x: np.sum(np.sin(x)))(np.ones(2)); "
            "print('scipy.special' in sys.modules, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "JITAD_COMPILE": "off"})
    assert out.stdout.split() == ["False", "False"]


# --- the scalar kernels against SciPy --------------------------------------------------------------
def _relative(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
    with np.errstate(invalid="ignore"):  # inf - inf where both are the same infinity
        return np.max(np.where(same, 0.0, np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-300)))


def test_special_kernels_match_scipy():
    r = np.random.default_rng(0)
    x = np.concatenate([r.uniform(0.01, 3.0, 400), r.uniform(3.0, 200.0, 200), np.logspace(-6, 6, 50),
                        [1.0, 2.0, 1.4616321449683622, 1.26, 1.66]])
    neg = r.uniform(-6.0, -0.01, 200)
    p = np.concatenate([r.uniform(0.0, 1.0, 400), np.logspace(-300, -1, 100), 1 - np.logspace(-15, -1, 50),
                        [0.0, 0.25, 0.5, 0.75, 1.0]])
    y = np.concatenate([2 * p - 1, -p])
    z = np.concatenate([r.uniform(-35.0, 10.0, 400), [-20.0, 0.0, 6.0]])
    a, b = r.uniform(0.1, 30.0, 300), r.uniform(0.1, 30.0, 300)
    vec = lambda f, *args: np.array([f(*v) for v in zip(*args)])  # noqa: E731
    checks = [
        ("digamma", vec(K.digamma, x), sc.digamma(x)), ("digamma<0", vec(K.digamma, neg), sc.digamma(neg)),
        ("erfinv", vec(K.erfinv, y), sc.erfinv(y)), ("ndtri", vec(K.ndtri, p), sc.ndtri(p)),
        ("ndtr", vec(K.ndtr, z), sc.ndtr(z)), ("log_ndtr", vec(K.log_ndtr, z), sc.log_ndtr(z)),
        ("betaln", vec(K.betaln, a, b), sc.betaln(a, b)), ("log_expit", vec(K.log_expit, z), sc.log_expit(z)),
        ("entr", vec(K.entr, z), sc.entr(z)), ("xlogy", vec(K.xlogy, z, x[:len(z)]), sc.xlogy(z, x[:len(z)])),
        ("xlog1py", vec(K.xlog1py, z, p[:len(z)]), sc.xlog1py(z, p[:len(z)])),
    ]
    checks += [(f"polygamma({n})", vec(lambda v: K.polygamma(n, v), x), sc.polygamma(n, x)) for n in (1, 2, 3, 5)]
    w = np.concatenate([r.uniform(-50.0, 50.0, 300), [0.0, 30.0, -31.0]])
    checks += [(f"bessel_i({n}, {s})", vec(lambda v: K.bessel_i(n, v, s), w), (sc.ive if s else sc.iv)(n, w))
               for n in (0, 1, 2) for s in (False, True)]
    for name, ours, theirs in checks:
        assert _relative(ours, theirs) < 1e-13, name
    # log Γ near its roots at 1 and 2: small values, SciPy's own error there is ~1e-13 relative
    np.testing.assert_allclose(vec(K.gammaln, x), sc.gammaln(x), rtol=1e-13, atol=1e-15)


def test_beta_and_f_quantiles_and_new_special_functions_are_scipys():
    """beta.ppf/isf and f.ppf/isf (betaincinv, betainccinv, fdtri) equal SciPy's on 2,000 random q, at q = 0
    and 1 (the support's ends) and outside [0, 1] (nan), with loc and scale, compiled and on the reference
    executor; so do the other functions whose values are SciPy's routines through KB."""
    r = np.random.default_rng(11)
    q = np.concatenate([r.uniform(0.0, 1.0, 2000), [0.0, 1.0, -0.1, 1.1, 1e-300, 1.0 - 1e-16, 0.5]])
    x = np.concatenate([r.uniform(-4.0, 4.0, 200), [0.0, 1.0, -1.0]])

    def quantiles(q):
        return [st.beta.ppf(q, 2.0, 3.0), st.beta.isf(q, 0.3, 0.7, 0.3, 2.0), st.beta.ppf(q, 5.5, 0.9, -1.0),
                st.f.ppf(q, 2.0, 3.0, 0.2, 1.5), st.f.isf(q, 0.7, 12.0), st.f.isf(q, 30.0, 4.5, scale=2.0)]

    def special(x):
        m = np.clip(x, -3.0, 0.99)
        return [sc.spence(np.abs(x)), sc.ellipk(m), sc.ellipe(m), *sc.sici(np.abs(x) + 0.01), *sc.fresnel(x),
                sc.dawsn(x), sc.owens_t(x, 0.7), sc.owens_t(0.3, x), sc.huber(0.5, x), sc.pseudo_huber(0.5, x),
                sc.huber(x, 0.3), sc.pseudo_huber(x, 0.3), sc.poch(np.abs(x) + 0.1, 1.5), sc.poch(2.5, x)]

    for fun, arg in ((quantiles, q), (special, x)):
        want = fun(arg)
        for backend in ("reference", "compiled"):
            saved = jitad.config.backend
            jitad.config.backend = backend if backend == "reference" else saved
            try:
                got = jitad.jit(fun)(arg)
            finally:
                jitad.config.backend = saved
            for k, (g, w) in enumerate(zip(got, want)):
                assert _relative(g, w) < 1e-13, (fun.__name__, backend, k)
    with np.errstate(invalid="ignore"):  # (SciPy's own warnings at q outside [0, 1])
        assert np.all(np.isnan(jitad.jit(lambda q: st.beta.ppf(q, 2.0, 3.0))(np.array([-0.1, 1.1]))))
    # the zeta functions (no compiled form: the NumPy executor) and the Hurwitz zeta's slope in q
    s, v = np.array([1.5, 2.0, 3.5, -2.5, 0.5]), np.array([0.3, 1.0, 2.5, 4.0, 7.0])
    np.testing.assert_array_equal(jitad.jit(lambda s, v: sc.zeta(s, v) + sc.zeta(s))(s[:3], v[:3]),
                                  sc.zeta(s[:3], v[:3]) + sc.zeta(s[:3]))
    np.testing.assert_array_equal(jitad.jit(lambda s: sc.zeta(s))(s), sc.zeta(s))
    np.testing.assert_allclose(jitad.grad(lambda v: np.sum(sc.zeta(3.0, v)))(v), -3.0 * sc.zeta(4.0, v), rtol=1e-14)


def test_simpson_runs_on_traced_samples_and_points(reference_backend):
    """scipy.integrate.simpson of traced y and x: an odd number of samples (SciPy's own _basic_simpson, whose
    divisions use where= and out=), an even number (Cartwright's last interval), two samples, dx, axis; values
    SciPy's, derivatives checked against finite differences to order 2."""
    import scipy.integrate as si
    r = np.random.default_rng(4)
    x = np.sort(r.uniform(0.0, 2.0, 7))
    y, grid = r.uniform(-1.0, 1.0, (3, 7)), np.tile(x, (3, 1))
    cases = [
        (lambda x, y: si.simpson(y[0] ** 2, x=x), (x, y)),
        (lambda x, y: si.simpson(np.sin(y[1, :6]), x=x[:6]), (x, y)),
        (lambda x, y: si.simpson(y[2, :2] * x[:2], x=x[:2]), (x, y)),
        (lambda x, y: si.simpson(y[0, :6] ** 3, dx=0.3) + si.simpson(y[1], x), (x, y)),
        (lambda x, y: np.sum(si.simpson(y[:, :6], x=x[:6], axis=1) ** 2), (x, y)),
        (lambda g, y: np.sum(si.simpson(y.T, g.T, axis=0)), (grid, y)),
    ]
    for fun, args in cases:
        assert jitad.jit(fun)(*args) == pytest.approx(fun(*args), rel=1e-15, abs=1e-15)
        jitad.check_grads(fun, args, order=2, modes=("fwd", "rev"))


def test_simpson_of_float32_samples_has_scipys_dtype(reference_backend):
    """An even number of float32 samples along an axis of a 2-d or larger y, with dx: SciPy adds the last
    interval's correction in place (`result += alpha * y[-1] + ...`, alpha a float64 0-d array) into
    _basic_simpson's float32 array, so its result is float32; jitad added out of place and gave float64
    (recent seed 525252, program 525252000217: simpson(y, dx=0.3, axis=-2) of a (1, 4, 1) float32 y).
    A 1-d y sums to a NumPy scalar, which SciPy's += does promote: float64 there, as jitad."""
    import scipy.integrate as si
    r = np.random.default_rng(5)
    for shape, axis in (((1, 4, 1), -2), ((2, 6, 3), 1), ((3, 4), -1), ((4,), 0), ((2, 5), 1)):
        y = r.uniform(-1.0, 1.0, shape).astype(np.float32)
        for kw in ({"dx": 0.3}, {}):
            want = si.simpson(y, axis=axis, **kw)
            got = jitad.jit(lambda y: si.simpson(y, axis=axis, **kw))(y)
            assert np.asarray(got).dtype == np.asarray(want).dtype, (shape, kw)
            np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-7)
            g = jitad.grad(lambda y: np.sum(si.simpson(y, axis=axis, **kw)))(y)
            assert g.dtype == np.float32


def test_invgauss_and_multinomial_are_scipys():
    """invgauss' logpdf, pdf, cdf, sf, logcdf, logsf (SciPy's formulas: the cdf through its _logcdf) on 2,200
    points, the support's ends, inf and nan: the reference executor equals SciPy (relative 1e-13), compiled
    within 1e-10 (jitad's log_ndtr kernel in the far tails, where SciPy's a + log1p(e^(b - a)) cancels); and
    multinomial.logpmf / pmf with SciPy's conventions for invalid counts, n and p."""
    r = np.random.default_rng(8)
    x = np.concatenate([r.uniform(-0.5, 6.0, 2000), r.uniform(0.0, 0.05, 100), r.uniform(10.0, 80.0, 100),
                        [0.0, -1.0, np.inf, -np.inf, np.nan, 1e-300]])

    def invgauss(x):
        return [getattr(st.invgauss, m)(x, mu, loc, scale) for m in ("logpdf", "pdf", "cdf", "sf", "logcdf", "logsf")
                for mu, loc, scale in ((0.5, 0.0, 1.0), (2.3, 0.2, 1.7), (0.05, 0.0, 1.0))]
    with np.errstate(all="ignore"):
        want = invgauss(x)
    saved = jitad.config.backend
    for backend, tolerance in (("reference", 1e-13), ("compiled", 1e-10)):
        jitad.config.backend = "reference" if backend == "reference" else saved
        try:
            got = jitad.jit(invgauss)(x)
        finally:
            jitad.config.backend = saved
        for k, (g, w) in enumerate(zip(got, want)):
            with np.errstate(invalid="ignore"):  # (inf - inf where both are the same infinity)
                assert _relative(g, w) < tolerance or np.max(np.abs(g - w)[np.isfinite(w)]) < 1e-300, (backend, k)
    p = np.array([0.3, 0.5, 0.9, 1.3])
    cases = [
        lambda p: st.multinomial.logpmf([[1, 2, 3, 0], [0, 0, 6, 0], [1, 1, 2, 2]], 6, p / np.sum(p)),
        lambda p: st.multinomial.logpmf([1, 2, 3, 0], 6.7, p / np.sum(p)),  # n truncated, as SciPy's
        lambda p: st.multinomial.logpmf([[1.5, 2, 2.5, 0], [1, 2, 2, 0]], 6, p / np.sum(p)),  # -inf: not counts of n
        lambda p: st.multinomial.logpmf([1, 2, 3, 0], 6, p / 5.0),  # the last p adjusted (SciPy warns)
        lambda p: st.multinomial.logpmf([1, 2, 3, 0], 6, p - 0.4),  # nan: p < 0
        lambda p: st.multinomial.logpmf([1, 2, 3, 0], -6, p / np.sum(p)),  # nan: n < 0
        lambda p: st.multinomial(6, p / np.sum(p)).pmf([1, 2, 3, 0]),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for fun in cases:
            np.testing.assert_allclose(jitad.jit(fun)(p), fun(p), rtol=1e-14)
        jitad.check_grads(cases[3], (p,), order=2, modes=("fwd", "rev"))
    with pytest.raises(jitad.NonDifferentiableError, match="multinomial.logpmf.*with respect to n"):
        jitad.grad(lambda n: st.multinomial.logpmf([1, 2, 3, 0], n, p / np.sum(p)))(6.0)


# --- names bound before tracing ----------------------------------------------------------------
from scipy.special import logsumexp as _bound_logsumexp  # noqa: E402  (the way published programs import it)


def _module_helper(x):
    return _bound_logsumexp(x)


def test_scipy_function_imported_by_name_before_tracing(reference_backend):
    """`from scipy.special import logsumexp` binds SciPy's function in the user's module before
    jitad hooks scipy.special; the module's names (and closure cells) are swapped while tracing."""
    x = np.array([0.3, 1.2, -0.4])
    closed = _bound_logsumexp

    def f(x):
        return _module_helper(x) + closed(2.0 * x)
    g = jitad.grad(f)(x)
    e = np.exp(x - _bound_logsumexp(x))
    e2 = np.exp(2.0 * x - _bound_logsumexp(2.0 * x))
    np.testing.assert_allclose(g, e + 2.0 * e2, rtol=1e-12)
    assert _bound_logsumexp is sc.logsumexp  # restored after the trace


_HELPER_MODULE = '''
import functools
import numpy as np
import scipy.stats
from scipy.special import logsumexp, log_softmax, gammaln
from scipy.stats import norm, multivariate_normal
logpdf = norm.logpdf                              # a bound method
stats_norm = scipy.stats.norm                     # an alias of the distribution
lse_rows = functools.partial(logsumexp, axis=1)   # a partial
frozen_logpdf = norm(0.5, 2.0).logpdf             # a frozen distribution's bound method
mvn_logpdf = multivariate_normal.logpdf


def loss(x, lse=logsumexp):                       # a default argument
    return (logsumexp(x) + np.sum(logpdf(x, 0.0, 2.0)) + np.sum(stats_norm.logcdf(x)) + np.sum(lse_rows(x))
            + np.sum(frozen_logpdf(x)) + np.sum(mvn_logpdf(x, np.zeros(3), np.eye(3))) + lse(2.0 * x)
            + np.sum(log_softmax(x)[0]) + np.sum(gammaln(x + 3.0)))
'''


def test_every_way_of_binding_a_scipy_function_before_tracing(tmp_path, monkeypatch):
    """A helper module (not the traced function's own) binds SciPy's functions the ways programs do;
    while tracing they are jitad's, after it SciPy's own again."""
    import importlib
    import scipy.special
    import scipy.stats
    (tmp_path / "jitad_bound_helper.py").write_text(_HELPER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    helper = importlib.import_module("jitad_bound_helper")
    before = dict(vars(helper)), helper.loss.__defaults__
    x = np.array([[0.3, 1.2, -0.4], [0.1, -2.0, 0.7]])
    value, g = jitad.value_and_grad(lambda v: helper.loss(v))(x)
    np.testing.assert_allclose(value, helper.loss(x), rtol=1e-13)
    expected = (sc.softmax(x) - x / 4.0 + np.exp(st.norm.logpdf(x) - st.norm.logcdf(x)) + sc.softmax(x, axis=1)
                - (x - 0.5) / 4.0 - x + 2.0 * sc.softmax(2.0 * x) + sc.digamma(x + 3.0))
    expected[0] += 1.0  # d/dx Σ log_softmax(x)[0], a softmax over all entries
    expected -= 3.0 * sc.softmax(x)
    np.testing.assert_allclose(g, expected, rtol=1e-11)
    jitad.check_grads(lambda v: helper.loss(v), (x,), order=2, modes=("fwd", "rev"))
    assert dict(vars(helper)) == before[0] and helper.loss.__defaults__ == before[1]  # put back
    assert helper.logsumexp is scipy.special.logsumexp and helper.logpdf.__func__ is type(st.norm).logpdf
    assert type(helper.lse_rows.func) is type(scipy.special.logsumexp) and helper.lse_rows.func is sc.logsumexp


def test_special_functions_of_float32_have_scipys_dtype():
    """Fuzz finding (issue 11's templates): SciPy's special ufuncs do not all follow NumPy's promotion of a
    Python float beside float32 (rel_entr(x32, 0.8) and kl_div are float32, gammainc(2.0, x32), xlogy(x32, 0.5),
    expn and yn float64); zeta(3.0, q32) is float32 and factorial of any float32 array float64. jitad gave
    float64 for the first, float32 for the others: the result has SciPy's dtype now, values and gradients
    SciPy's (to float32 rounding where SciPy computes in float32)."""
    x = np.array([0.4, 1.3], dtype=np.float32)
    funs = [lambda x: sc.rel_entr(x, 0.8), lambda x: sc.kl_div(x, 0.8), lambda x: sc.boxcox(x, 0.5),
            lambda x: sc.binom(x + 3, 2.0), lambda x: sc.beta(x, 1.5), lambda x: sc.gammainc(2.0, x),
            lambda x: sc.yn(2, x), lambda x: sc.expn(2, x), lambda x: sc.xlogy(x, 0.5), lambda x: sc.zeta(3.0, x),
            lambda x: sc.factorial(x), lambda x: sc.sici(x)[1]]
    for k, fun in enumerate(funs):
        want, got = fun(x), jitad.jit(fun)(x)
        assert got.dtype == want.dtype, (k, got.dtype, want.dtype)
        np.testing.assert_allclose(got, want, rtol=2e-6, err_msg=str(k))
        g = jitad.grad(lambda x: np.sum(fun(x)))(x)
        assert g.dtype == np.float32 and np.all(np.isfinite(g)), k


def test_cdfs_outside_the_support_have_zero_second_derivatives():
    """Fuzz finding (issue 11's templates: beta.logcdf with a traced scale, x / scale > 1): the cdf and sf of
    beta, gamma, chi2 and weibull_min clipped x to the support, so the incomplete beta/gamma function's
    slope x^(a-1) (1-x)^(b-1) was differentiated at the support's end: 0 * inf = nan in hessians and hvps
    where the function is constant. Now their second derivatives there are 0, and the values SciPy's."""
    z = np.array([1.2, 0.5, -0.2])
    funs = [lambda z: st.beta.cdf(z, 2.0, 3.0), lambda z: st.beta.sf(z, 2.0, 3.0), lambda z: st.gamma.cdf(z, 2.0),
            lambda z: st.gamma.sf(z, 2.0), lambda z: st.chi2.cdf(z, 3.0), lambda z: st.chi2.sf(z, 3.0),
            lambda z: st.weibull_min.cdf(z, 1.5), lambda z: st.weibull_min.sf(z, 1.5),
            lambda z: st.beta.logcdf(0.7, 2.0, 3.0, scale=z * z + 0.3)]
    for k, f in enumerate(funs):
        h = jitad.hessian(lambda z: np.sum(f(z)))(z)
        assert np.all(np.isfinite(h)), k
        for i in range(3):
            e = np.zeros(3)
            e[i] = 1e-5
            fd = (jitad.grad(lambda z: np.sum(f(z)))(z + e) - jitad.grad(lambda z: np.sum(f(z)))(z - e)) / 2e-5
            np.testing.assert_allclose(h[i], fd, atol=1e-5, err_msg=str(k))
    edges = np.array([-1.0, 0.0, 0.3, 1.0, 2.0, np.inf, np.nan])
    with np.errstate(all="ignore"):
        for f in funs[:8]:
            np.testing.assert_allclose(jitad.jit(f)(edges), f(edges), rtol=1e-14, atol=0)


def test_t_cdf_differentiates_at_its_centre():
    """t.cdf/sf/logcdf at x == loc: I_{df/(df+z²)}(df/2, 1/2) has an infinite slope at z = 0 where dx/dz = 0,
    so jitad's derivatives there were nan (found while fixing the fuzzer's beta.logcdf finding). Now the
    density at 0 and, to third order, the finite differences' values."""
    z = np.array([0.0, 0.5, -0.7])
    for f in (lambda z: st.t.cdf(z, 3.0), lambda z: st.t.sf(z, 3.0), lambda z: st.t.logcdf(z, 2.5, scale=1.5),
              lambda z: st.t.cdf(0.3, 3.0, loc=z + 0.3)):
        np.testing.assert_allclose(jitad.jit(f)(z), f(z), rtol=1e-15, atol=1e-16)
        jitad.check_grads(lambda z: np.sum(f(z)), (z,), order=2, modes=("fwd", "rev"))
    np.testing.assert_allclose(jitad.grad(lambda z: st.t.cdf(z, 3.0))(0.0), st.t.pdf(0.0, 3.0), rtol=1e-14)
