"""scipy.stats' descriptive statistics (entropy, zscore, skew, kurtosis, moment, variation, sem,
gmean, hmean), scipy.optimize.rosen/rosen_der and np.logaddexp(2).reduce on traced values
(jitad.frontend.scipy_stats, numpy_ops.UFUNC_REDUCE): values equal SciPy's/NumPy's, gradients
equal central differences, jvp and vjp agree. Reference backend, except one compiled program."""
import warnings

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from scipy.stats import skew as bound_skew  # a name bound before tracing

import jitad

pytestmark = pytest.mark.usefixtures("reference_backend")

st = scipy.stats
_W = np.random.default_rng(7).normal(size=200)  # weights of the scalar loss (sum(zscore) is 0 identically)


def _positive(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


# id -> (function of one array, input)
CASES = {
    "skew": (lambda a: st.skew(a), _positive((6, 4))),
    "skew_axis1_unbiased_keepdims": (lambda a: st.skew(a, axis=1, bias=False, keepdims=True), _positive((3, 5))),
    "skew_axis_none": (lambda a: st.skew(a, axis=None), _positive((3, 4))),
    "skew_axis_tuple": (lambda a: st.skew(a, axis=(0, 2)), _positive((3, 4, 2))),
    "kurtosis": (lambda a: st.kurtosis(a), _positive((6, 3))),
    "kurtosis_pearson_axis1": (lambda a: st.kurtosis(a, axis=1, fisher=False), _positive((3, 6))),
    "kurtosis_unbiased": (lambda a: st.kurtosis(a, axis=-1, bias=False), _positive((2, 7))),
    "kurtosis_none_keepdims": (lambda a: st.kurtosis(a, axis=None, keepdims=True), _positive((3, 4))),
    "moment3": (lambda a: st.moment(a, 3), _positive((5, 3))),
    "moment5": (lambda a: st.moment(a, order=5, axis=1), _positive((3, 5))),
    "moment_orders_keepdims": (lambda a: st.moment(a, [0, 1, 2, 4], axis=1, keepdims=True), _positive((3, 5))),
    "moment_center": (lambda a: st.moment(a, 2, center=0.5), _positive((5, 3))),
    "moment1_center_none": (lambda a: st.moment(a, 1, axis=None, center=1.2), _positive((3, 4))),
    "variation": (lambda a: st.variation(a), _positive((5, 3))),
    "variation_ddof_keepdims": (lambda a: st.variation(a, axis=1, ddof=1, keepdims=True), _positive((3, 5))),
    "sem": (lambda a: st.sem(a), _positive((5, 3))),
    "sem_none": (lambda a: st.sem(a, axis=None), _positive((3, 4))),
    "sem_ddof0_keepdims": (lambda a: st.sem(a, axis=1, ddof=0, keepdims=True), _positive((3, 4))),
    "gmean": (lambda a: st.gmean(a), _positive((5, 3))),
    "gmean_weights": (lambda a: st.gmean(a, 1, weights=np.arange(1.0, 5.0)), _positive((3, 4))),
    "gmean_none_keepdims": (lambda a: st.gmean(a, axis=None, keepdims=True), _positive((3, 4))),
    "hmean": (lambda a: st.hmean(a), _positive((5, 3))),
    "hmean_weights": (lambda a: st.hmean(a, axis=0, weights=np.arange(1.0, 6.0)[:, None]), _positive((5, 3))),
    "hmean_axis1_keepdims": (lambda a: st.hmean(a, axis=1, keepdims=True), _positive((3, 4))),
    "zscore": (lambda a: st.zscore(a), _positive((5, 3))),
    "zscore_axis1_ddof": (lambda a: st.zscore(a, axis=1, ddof=1), _positive((3, 5))),
    "zscore_none": (lambda a: st.zscore(a, axis=None), _positive((3, 4))),
    "entropy": (lambda a: st.entropy(a), _positive((5, 3))),
    "entropy_none_keepdims": (lambda a: st.entropy(a, axis=None, keepdims=True), _positive((3, 4))),
    "entropy_qk_base": (lambda a: st.entropy(a, _positive((3, 4), 1), base=3.0, axis=1), _positive((3, 4))),
    "entropy_traced_qk": (lambda a: st.entropy(_positive((4, 3), 2), a), _positive((4, 3))),
    "rosen": (lambda a: scipy.optimize.rosen(a), _positive(6)),
    "rosen_2d": (lambda a: scipy.optimize.rosen(a), _positive((4, 3))),
    "rosen_der": (lambda a: scipy.optimize.rosen_der(a), _positive(6)),
    "logaddexp_reduce": (lambda a: np.logaddexp.reduce(a), _positive((4, 3))),
    "logaddexp_reduce_axis1_keepdims": (lambda a: np.logaddexp.reduce(a, axis=1, keepdims=True), _positive((3, 4))),
    "logaddexp_reduce_none": (lambda a: np.logaddexp.reduce(a * 300.0, axis=None), _positive((3, 4))),
    "logaddexp2_reduce": (lambda a: np.logaddexp2.reduce(a, axis=-1), _positive((3, 4))),
    "logaddexp2_reduce_tuple": (lambda a: np.logaddexp2.reduce(a * -900.0, axis=(0, 1)), _positive((3, 4))),
}


def _quiet(fun, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fun(*args)


def _same(got, want, rtol=1e-12):
    assert np.shape(got) == np.shape(want)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    if np.asarray(want).dtype == np.float32:  # a float32 sum in another order: a few ulps
        rtol = 4 * np.finfo(np.float32).eps
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0, equal_nan=True)


def _loss(f):
    def loss(a):
        out = f(a)
        return np.sum(np.reshape(out, (-1,)) * _W[:np.size(out)])
    return loss


@pytest.mark.parametrize("case", CASES)
def test_value_matches_scipy(case):
    f, x = CASES[case]
    _same(_quiet(jitad.jit(f), x), _quiet(f, x))


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_central_differences(case):
    f, x = CASES[case]
    loss = _loss(f)
    g = jitad.grad(loss)(x)
    h, fd = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        fd[i] = (loss(x + e) - loss(x - e)) / (2 * h)
    scale = max(1.0, np.max(np.abs(fd)))
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("case", ["skew_axis1_unbiased_keepdims", "kurtosis_unbiased", "moment_orders_keepdims",
                                  "variation_ddof_keepdims", "sem", "gmean_weights", "hmean_weights",
                                  "zscore_axis1_ddof", "entropy_qk_base", "rosen_der", "logaddexp2_reduce"])
def test_jvp_and_vjp_agree(case):
    f, x = CASES[case]
    rng = np.random.default_rng(3)
    t = rng.normal(size=x.shape)
    value, tangent = jitad.jvp(f, (x,), (t,))
    _same(value, _quiet(f, x))
    c = rng.normal(size=np.shape(value))
    _, vjp_fn = jitad.vjp(f, x)
    (ct,) = vjp_fn(c)
    assert np.sum(c * tangent) == pytest.approx(np.sum(ct * t), rel=1e-10)


# edge inputs: values (and NaNs) as SciPy's, shape and dtype included
EDGE_FUNCTIONS = {
    "skew": lambda a: st.skew(a), "skew_unbiased": lambda a: st.skew(a, bias=False),
    "skew_keepdims": lambda a: st.skew(a, keepdims=True),
    "kurtosis_unbiased": lambda a: st.kurtosis(a, bias=False), "moment2": lambda a: st.moment(a, 2),
    "moment0": lambda a: st.moment(a, 0), "moment1": lambda a: st.moment(a),
    "variation": lambda a: st.variation(a), "variation_keepdims": lambda a: st.variation(a, keepdims=True),
    "variation_ddof1": lambda a: st.variation(a, ddof=1), "sem": lambda a: st.sem(a),
    "gmean": lambda a: st.gmean(a), "hmean": lambda a: st.hmean(a), "entropy": lambda a: st.entropy(a),
    "logaddexp_reduce": lambda a: np.logaddexp.reduce(a), "logaddexp2_reduce": lambda a: np.logaddexp2.reduce(a),
}
EDGE_INPUTS = {
    "scalar": np.float64(1.5), "one": np.array([1.5]), "two": np.array([1.5, 2.0]), "constant": np.full(4, 3.0),
    "int": np.arange(1, 6), "float32": np.linspace(1, 2, 5, dtype=np.float32), "empty": np.zeros((0, 3)),
    "negative": np.array([1.0, -2.0, 3.0]), "minus_infs": np.array([-np.inf, -np.inf]),
    "infs": np.array([np.inf, 1.0, -np.inf]), "nan": np.array([np.nan, 1.0]), "zero": np.array([0.0, 1.0, 2.0]),
}


@pytest.mark.parametrize("data", EDGE_INPUTS)
@pytest.mark.parametrize("name", EDGE_FUNCTIONS)
def test_edge_values_match_scipy(name, data):
    f, x = EDGE_FUNCTIONS[name], EDGE_INPUTS[data]
    _same(_quiet(jitad.jit(f), x), _quiet(f, x))


@pytest.mark.parametrize("data", ["int", "float32", "constant", "two", "nan"])
@pytest.mark.parametrize("options", [{}, {"axis": None}, {"ddof": 1}])
def test_zscore_edge_values_match_scipy(options, data):
    x = EDGE_INPUTS[data]
    f = lambda a: st.zscore(a, **options)  # noqa: E731
    _same(_quiet(jitad.jit(f), x), _quiet(f, x))


def test_logaddexp_reduce_of_a_scalar_is_itself():
    f = jitad.jit(lambda a: np.logaddexp.reduce(a * 1.0, axis=0))
    assert f(np.float64(1.5)) == np.logaddexp.reduce(np.float64(1.5), axis=0)


def test_names_bound_before_tracing_and_through_a_dict_dispatch():
    x = _positive(7)
    table = {"gmean": st.gmean}
    g = jitad.grad(lambda a: bound_skew(a) + table["gmean"](a) + st._stats_py.kurtosis(a))(x)
    fd = np.array([(bound_skew(x + e) + st.gmean(x + e) + st.kurtosis(x + e)
                    - bound_skew(x - e) - st.gmean(x - e) - st.kurtosis(x - e)) / 2e-6 for e in np.eye(7) * 1e-6])
    np.testing.assert_allclose(g, fd, rtol=1e-5)


def test_rosen_gradient_is_rosen_der():
    x = np.linspace(-1.0, 1.5, 8)
    np.testing.assert_allclose(jitad.grad(scipy.optimize.rosen)(x), scipy.optimize.rosen_der(x), rtol=1e-13)
    np.testing.assert_allclose(jitad.jacobian(scipy.optimize.rosen_der)(x), scipy.optimize.rosen_hess(x),
                               rtol=1e-13, atol=1e-12)


# --- what is not supported is named --------------------------------------------------------------
NAN_POLICY_CALLS = {
    "skew": lambda a, p: st.skew(a, nan_policy=p), "kurtosis": lambda a, p: st.kurtosis(a, nan_policy=p),
    "moment": lambda a, p: st.moment(a, 2, nan_policy=p), "variation": lambda a, p: st.variation(a, nan_policy=p),
    "sem": lambda a, p: st.sem(a, nan_policy=p), "gmean": lambda a, p: st.gmean(a, nan_policy=p),
    "hmean": lambda a, p: st.hmean(a, nan_policy=p), "zscore": lambda a, p: st.zscore(a, nan_policy=p),
    "entropy": lambda a, p: st.entropy(a, nan_policy=p),
}


@pytest.mark.parametrize("policy", ["omit", "raise"])
@pytest.mark.parametrize("name", NAN_POLICY_CALLS)
def test_nan_policy_other_than_propagate_is_named(name, policy):
    f = NAN_POLICY_CALLS[name]
    with pytest.raises(jitad.UnsupportedOperationError, match=rf"scipy\.stats\.{name}\(nan_policy='{policy}'\).*"
                                                               r"nan_policy='propagate' only"):
        jitad.grad(lambda a: np.sum(f(a, policy)))(_positive(5))


def test_invalid_nan_policy_is_a_value_error():
    with pytest.raises(ValueError, match="nan_policy must be one of"):
        jitad.grad(lambda a: st.skew(a, nan_policy="ignore"))(_positive(5))


def test_traced_moment_order_is_named():
    with pytest.raises(jitad.UnsupportedOperationError, match="moment with a traced order"):
        jitad.grad(lambda a: st.moment(a, order=a[0]))(_positive(5))


def test_logaddexp_reduce_initial_is_named():
    with pytest.raises(jitad.UnsupportedOperationError, match=r"np\.logaddexp\.reduce\(initial=\.\.\.\)"):
        jitad.grad(lambda a: np.logaddexp.reduce(a, initial=0.0))(_positive(5))


# --- one compiled program --------------------------------------------------------------------------
def _program(a):
    z = st.zscore(a, axis=1)
    return (np.sum(st.skew(a, bias=False) * _W[:3]) + np.sum(st.kurtosis(a, axis=1) * _W[3:7])
            + np.sum(st.gmean(a) * st.hmean(a)) + np.sum(st.entropy(a, axis=1)) + np.sum(z * _W[:12].reshape(4, 3))
            + np.sum(np.logaddexp.reduce(a, axis=0)) + scipy.optimize.rosen(a[:, 0]) + np.sum(st.moment(a, 3))
            + np.sum(st.sem(a, axis=None)) + np.sum(st.variation(a, keepdims=True)))


def test_compiled_program_matches_reference():
    x = _positive((4, 3), 5)
    jitad.config.backend = "reference"
    want_value, want_grad = jitad.value_and_grad(_program)(x)
    jitad.config.backend = "numba"  # the fixture puts the reference backend back
    value, grad = jitad.value_and_grad(_program)(x)
    assert value == pytest.approx(_program(x), rel=1e-12)
    assert value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)
