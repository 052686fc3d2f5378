"""NumPy-AD conventions: dtypes, kinks, special values, scalars and the signature cache."""
import math

import numpy as np
import pytest

import jitad

pytestmark = pytest.mark.usefixtures("reference_backend")


def _loss(x, w):
    return np.sum(np.tanh(x @ w) ** 2) + np.mean(np.exp(-x)) + np.max(x) * np.std(w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_end_to_end(dtype):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 3)).astype(dtype), rng.standard_normal((3, 2)).astype(dtype)
    value, (gx, gw) = jitad.value_and_grad(_loss, argnums=(0, 1))(x, w)
    assert np.asarray(value).dtype == dtype
    assert gx.dtype == dtype and gw.dtype == dtype
    assert gx.shape == x.shape and gw.shape == w.shape
    # the same gradient in float64 agrees to the precision of the dtype
    gx64, gw64 = jitad.grad(_loss, argnums=(0, 1))(x.astype(np.float64), w.astype(np.float64))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gx, gx64, rtol=tol, atol=tol)
    np.testing.assert_allclose(gw, gw64, rtol=tol, atol=tol)
    jitad.check_grads(_loss, (x, w), order=2)


def test_mixed_dtypes_keep_each_inputs_dtype():
    x32, y64 = np.ones(3, np.float32), np.ones(3)
    gx, gy = jitad.grad(lambda a, b: np.sum(a * b), argnums=(0, 1))(x32, y64)
    assert gx.dtype == np.float32 and gy.dtype == np.float64


def test_float32_scalar_constants_stay_float32():
    x = np.linspace(0.1, 1.0, 4, dtype=np.float32)
    f = lambda v: np.sum(0.5 * v ** 2 + 3 * v / 2.0 - np.sqrt(v) + 1)  # noqa: E731
    assert jitad.grad(f)(x).dtype == np.float32
    out, tangent = jitad.jvp(f, (x,), (np.ones(4, np.float32),))
    assert np.asarray(out).dtype == np.float32 and np.asarray(tangent).dtype == np.float32


# --- kinks: autograd's and JAX's conventions ------------------------------------------------
def test_abs_at_zero():
    assert jitad.grad(np.abs)(0.0) == 0.0
    assert jitad.grad(lambda x: abs(x))(0.0) == 0.0
    np.testing.assert_array_equal(jitad.grad(lambda x: np.sum(np.abs(x)))(np.array([-1.0, 0.0, 2.0])),
                                  [-1.0, 0.0, 1.0])
    assert jitad.jvp(np.abs, (0.0,), (1.0,))[1] == 0.0


def test_sign_has_zero_derivative():
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(jitad.grad(lambda v: np.sum(np.sign(v)))(x), 0.0)
    np.testing.assert_array_equal(jitad.jvp(np.sign, (x,), (np.ones(3),))[1], 0.0)


@pytest.mark.parametrize("x", [0.0, 2.0, -1.5])
def test_power_zero_exponent(x):
    assert jitad.grad(lambda v: v ** 0)(x) == 0.0
    assert jitad.grad(lambda v: np.power(v, 0.0))(x) == 0.0
    # an array exponent that is zero: d/dx is 0, also at x = 0, and nothing is NaN
    gx, gy = jitad.grad(lambda v, e: np.sum(np.power(v, e)), argnums=(0, 1))(np.array([x]), np.zeros(1))
    assert gx[0] == 0.0
    if x >= 0:  # d x**y / dy = x**y log x: 0 at x = 0 by convention, NaN for x < 0 as in NumPy
        assert np.isfinite(gy[0])
    hessian_like = jitad.grad(jitad.grad(lambda v: v ** 0))(x)
    assert hessian_like == 0.0


def test_power_at_zero_base():
    assert jitad.grad(lambda v: v ** 2)(0.0) == 0.0
    assert jitad.grad(lambda v: v ** 1)(0.0) == 1.0
    assert jitad.grad(lambda v, e: np.power(v, e), argnums=1)(0.0, 2.0) == 0.0  # d 0**y / dy = 0


def test_power_mixed_second_derivative_at_zero_exponent():
    """d/dy (d x**y / dx) at y = 0 is 1/x: the y = 0 convention must not erase it."""
    f = lambda x, y: np.power(x, y)  # noqa: E731
    assert jitad.grad(lambda y: jitad.grad(f)(2.0, y))(0.0) == pytest.approx(0.5)
    assert jitad.grad(lambda x: jitad.grad(f, argnums=1)(x, 0.0))(2.0) == pytest.approx(0.5)
    assert jitad.grad(f, argnums=(0, 1))(0.0, 0.0) == (0.0, 0.0)


@pytest.mark.parametrize("x", [[0.0, 2.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0], [2.0, 0.0, -1.0, 0.5, 3.0]])
def test_prod_with_zeros_exact_to_second_order(x):
    x = np.array(x)
    n = len(x)
    others = np.array([np.prod(np.delete(x, i)) for i in range(n)])
    hessian = np.array([[0.0 if i == j else np.prod(np.delete(x, [i, j])) for j in range(n)] for i in range(n)])
    np.testing.assert_array_equal(jitad.grad(np.prod)(x), others)
    for k in range(n):
        direction = np.eye(n)[k]
        np.testing.assert_allclose(jitad.jvp(jitad.grad(np.prod), (x,), (direction,))[1], hessian[:, k])
        np.testing.assert_allclose(jitad.grad(lambda v: jitad.grad(np.prod)(v)[k])(x), hessian[k])
    matrix = np.stack([x, x[::-1]])
    jitad.check_grads(lambda m: np.prod(m, axis=1), (matrix,), order=2)


def test_maximum_minimum_split_ties_evenly():
    for fn in (np.maximum, np.minimum, np.fmax, np.fmin):
        assert jitad.grad(fn, argnums=(0, 1))(1.5, 1.5) == (0.5, 0.5)
        assert jitad.grad(fn, argnums=(0, 1))(1.0, 2.0) in ((0.0, 1.0), (1.0, 0.0))
    # a tie inside a broadcast: the scalar collects half of each tied entry
    gx, gy = jitad.grad(lambda a, b: np.sum(np.maximum(a, b)), argnums=(0, 1))(np.array([1.0, 2.0, 3.0]), 2.0)
    np.testing.assert_array_equal(gx, [0.0, 0.5, 1.0])
    assert gy == 1.5
    # reductions split among all tied entries
    np.testing.assert_array_equal(jitad.grad(np.max)(np.array([1.0, 3.0, 3.0, 0.0])), [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(jitad.grad(np.min)(np.full(3, 2.0)), [1 / 3] * 3)
    g = jitad.grad(lambda x: np.sum(np.max(x, axis=1)))(np.array([[1.0, 1.0], [0.0, 2.0]]))
    np.testing.assert_array_equal(g, [[0.5, 0.5], [0.0, 1.0]])
    # clip at its bound is a tie of maximum
    assert jitad.grad(lambda x: np.clip(x, 0.0, 1.0))(1.0) == 0.5


def test_std_var_of_one_element():
    for fn in (np.std, np.var):
        np.testing.assert_array_equal(jitad.grad(fn)(np.array([3.0])), [0.0])
        np.testing.assert_array_equal(jitad.grad(lambda x: np.sum(fn(x, axis=1)))(np.ones((2, 1))), 0.0)
        np.testing.assert_array_equal(jitad.grad(fn)(np.full(3, 2.0)), 0.0)  # identical entries
        assert jitad.grad(fn)(4.0) == 0.0
    np.testing.assert_array_equal(jitad.grad(lambda x: np.sum(jitad.grad(np.std)(x)))(np.array([3.0])), [0.0])


def test_norm_at_zero_is_zero_not_nan():
    np.testing.assert_array_equal(jitad.grad(np.linalg.norm)(np.zeros(3)), 0.0)


@pytest.mark.parametrize("fun,x", [(np.std, np.array([3.0])), (np.std, np.full(3, 2.0)),
                                   (np.linalg.norm, np.zeros(3))], ids=["std_one", "std_equal", "norm_zero"])
def test_kink_conventions_hold_at_higher_order(fun, x):
    """The 0 derivative at std's / norm's kink stays 0 (not NaN) in the second and third derivative."""
    def d(f):
        return lambda v: jitad.grad(lambda u: np.sum(f(u)))(v)
    for derivative in (d(fun), d(d(fun)), d(d(d(fun)))):
        np.testing.assert_array_equal(derivative(x), np.zeros_like(x))


def test_sqrt_at_zero_is_inf():
    assert jitad.grad(np.sqrt)(0.0) == math.inf
    g = jitad.grad(lambda x: np.sum(np.sqrt(x)))(np.array([0.0, 4.0]))
    assert g[0] == np.inf and g[1] == 0.25


def test_nan_and_inf_propagate_without_raising():
    x = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 1.0])
    value, g = jitad.value_and_grad(lambda v: np.sum(np.exp(v)))(x)
    assert np.isnan(value)
    np.testing.assert_array_equal(g, np.exp(x))
    with np.errstate(all="ignore"):
        expected = np.log(x)
    np.testing.assert_array_equal(jitad.vjp(np.log, x)[0], expected)
    with np.errstate(divide="ignore"):
        reciprocal = 1.0 / x
    np.testing.assert_array_equal(jitad.grad(lambda v: np.sum(np.log(v)))(x), reciprocal)
    out, tangent = jitad.jvp(np.log, (x,), (np.ones_like(x),))
    np.testing.assert_array_equal(tangent, reciprocal)
    assert jitad.grad(np.log)(0.0) == math.inf
    assert np.isnan(jitad.grad(np.sqrt)(-1.0))
    assert jitad.grad(lambda v: 1.0 / v)(0.0) == -math.inf
    assert jitad.grad(lambda v: v * v)(np.inf) == np.inf
    # fmax ignores NaN, so the other operand gets the whole cotangent
    assert jitad.grad(np.fmax, argnums=(0, 1))(np.nan, 2.0) == (0.0, 1.0)


def test_where_keeps_untaken_branch_out_of_the_gradient():
    """The classic np.where(x > 0, sqrt(x), 0) at x < 0: no NaN leaks from the untaken branch."""
    g = jitad.grad(lambda x: np.sum(np.where(x > 0, np.sqrt(x), 0.0)))(np.array([-1.0, 4.0]))
    np.testing.assert_array_equal(g, [0.0, 0.25])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's own "mean of empty slice"
def test_empty_and_degenerate_reductions_follow_numpy():
    with np.errstate(all="ignore"):
        for fun in (np.mean, lambda v: np.var(v, ddof=2), lambda v: np.std(v, ddof=3), np.sum, np.prod):
            for x in (np.ones(0), np.array([1.0, 2.0]), np.ones(2)):
                np.testing.assert_array_equal(jitad.vjp(fun, x)[0], fun(x))
    np.testing.assert_array_equal(jitad.grad(np.sum)(np.ones(0)), np.ones(0))


# --- scalars and 0-d arrays ----------------------------------------------------------------
def test_python_float_in_python_float_out():
    g = jitad.grad(lambda x: x * x + np.sin(x))(2.0)
    assert isinstance(g, float) and g == pytest.approx(4.0 + math.cos(2.0))
    value, g = jitad.value_and_grad(lambda x, y: x * y, argnums=(0, 1))(3.0, 4.0)
    assert isinstance(value, float) and value == 12.0
    assert all(isinstance(v, float) for v in g) and g == (4.0, 3.0)
    assert float(g[0]) == 4.0 and math.isclose(g[0] + 1, 5.0)


def test_python_scalar_builtins():
    """Scalar code written for floats: round(), divmod(), %, // work on a traced scalar."""
    assert jitad.grad(lambda x: round(x, 1) * x + round(x) * x)(1.33) == pytest.approx(1.3 + 1.0)
    # (x mod 0.5) x has derivative x + 0.3 at 1.3; 7 % x = 7 - 5x there; 7 // x is piecewise constant
    assert jitad.grad(lambda x: divmod(x, 0.5)[1] * x + 7.0 % x + 7.0 // x)(1.3) == pytest.approx(1.3 + 0.3 - 5.0)


def test_numpy_scalars_keep_their_type():
    g = jitad.grad(lambda x: x * x)(np.float32(3.0))
    assert np.ndim(g) == 0 and np.asarray(g).dtype == np.float32 and g == 6.0
    g = jitad.grad(lambda x: x * x)(np.float64(3.0))
    assert isinstance(g, float) and g == 6.0


def test_zero_dimensional_arrays():
    x = np.array(2.0)
    g = jitad.grad(lambda v: v ** 3)(x)
    assert np.shape(g) == () and g == 12.0
    value, g = jitad.value_and_grad(lambda v: np.sum(v * np.ones(3)))(x)
    assert value == 6.0 and g == 3.0
    out, tangent = jitad.jvp(np.exp, (np.array(0.0),), (np.array(2.0),))
    assert np.shape(out) == () and out == 1.0 and tangent == 2.0
    # a 0-d result of a reduction is a scalar too
    value = jitad.value_and_grad(np.sum)(np.ones(3))[0]
    assert float(value) == 3.0 and np.ndim(value) == 0


def test_integer_static_arguments():
    """An int argument that is not differentiated is a static value (Python loops may use it)."""
    def f(x, n):
        for _ in range(n):
            x = np.sin(x)
        return x
    assert jitad.grad(f)(0.5, 3) == pytest.approx(
        math.cos(math.sin(math.sin(0.5))) * math.cos(math.sin(0.5)) * math.cos(0.5))


# --- the signature cache -------------------------------------------------------------------------
def test_second_call_does_not_retrace():
    traces = []

    def f(x, y):
        traces.append(np.shape(x))
        return np.sum(np.sin(x) * y)

    g = jitad.grad(f, argnums=(0, 1))
    x, y = np.ones(3), np.ones(3)
    first = g(x, y)
    assert len(traces) == 1
    second = g(x + 1.0, y * 2.0)   # new values, same shapes and dtypes
    assert len(traces) == 1
    np.testing.assert_allclose(second[0], np.cos(x + 1.0) * 2.0)
    np.testing.assert_allclose(first[0], np.cos(x))
    g(np.ones(4), np.ones(4))      # a new shape traces again
    assert len(traces) == 2
    g(np.ones(3, np.float32), np.ones(3, np.float32))  # so does a new dtype
    assert len(traces) == 3
    g(x, y)
    assert len(traces) == 3
    g(x, 2.0)                      # a scalar instead of an array is a new signature
    assert len(traces) == 4


def test_cache_keys_static_arguments_by_value():
    traces = []

    def f(x, n):
        traces.append(n)
        return x ** n

    g = jitad.grad(f)
    assert g(2.0, 2) == 4.0 and g(3.0, 2) == 6.0
    assert traces == [2]
    assert g(2.0, 3) == 12.0      # a different static value is a new trace, never a stale one
    assert traces == [2, 3]


def test_value_and_grad_and_vjp_cache():
    traces = []

    def f(x):
        traces.append(1)
        return np.sum(x ** 2)

    vg = jitad.value_and_grad(f)
    vg(np.ones(2))
    vg(np.ones(2))
    assert len(traces) == 1

    def h(x):
        traces.append(2)
        return x * 2.0

    out, vjp_fn = jitad.vjp(h, np.ones(3))
    np.testing.assert_array_equal(vjp_fn(np.ones(3))[0], 2.0)
    count = len(traces)
    np.testing.assert_array_equal(vjp_fn(np.full(3, 3.0))[0], 6.0)
    assert len(traces) == count
    jitad.vjp(h, np.zeros(3))[1](np.ones(3))  # vjp of the same function again: no new trace
    jitad.jvp(h, (np.ones(3),), (np.ones(3),))
    count = len(traces)
    jitad.jvp(h, (np.zeros(3),), (np.ones(3),))
    assert len(traces) == count
