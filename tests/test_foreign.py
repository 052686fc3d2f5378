"""Regressions found by running other AD libraries' test suites and published examples through
jitad (with their `autograd.numpy` imports pointed at plain NumPy): the cases below are ours,
written for the bug each one found. Reference backend unless the bug was in compiled code."""
import types

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

import jitad

pytestmark = pytest.mark.usefixtures("reference_backend")


def _symmetrize_arg(fun, argnum):
    # a decorator-style wrapper: the SciPy method is reached only through the wrapper's closure
    def wrapped(*args):
        args = list(args)
        args[argnum] = 0.5 * (args[argnum] + args[argnum].T)
        return fun(*args)
    return wrapped


def test_scipy_method_held_by_a_wrapper_in_a_closure():
    logpdf = _symmetrize_arg(scipy.stats.multivariate_normal.logpdf, 2)
    x, mean = np.array([0.3, -0.2, 0.5]), np.array([0.1, 0.0, -0.1])
    cov = np.array([[2.0, 0.3, 0.1], [0.3, 1.5, 0.2], [0.1, 0.2, 1.0]])

    def loss(m, c):  # the traced function holds `logpdf`, whose closure holds SciPy's method
        return logpdf(x, m, c)

    g_mean, g_cov = jitad.grad(loss, argnums=(0, 1))(mean, cov)
    r = np.linalg.solve(cov, x - mean)
    np.testing.assert_allclose(g_mean, r, rtol=1e-12)
    np.testing.assert_allclose(g_cov, 0.5 * (np.outer(r, r) - np.linalg.inv(cov)), rtol=1e-10)
    assert loss(mean, cov) == pytest.approx(scipy.stats.multivariate_normal.logpdf(x, mean, cov))


def test_unsupported_scipy_function_reading_an_ndarray_attribute_is_named():
    a = np.array([[1.1, 0.2], [0.3, 1.4]])
    # a SciPy function handing its argument to compiled code, which raises a TypeError about 'Tracer'
    # ("argument 1 must be numpy.ndarray, not Tracer", as scipy.linalg.sqrtm's did before jitad
    # implemented it): the error names the SciPy function. A stand-in module of SciPy's raises it here
    module = types.ModuleType("scipy._jitad_probe")
    exec("def native(x):\n    raise TypeError('argument 1 must be numpy.ndarray, not ' + type(x).__name__)\n"
         "def sqrt_of(x):\n    return native(x)\n", module.__dict__)
    with pytest.raises(jitad.UnsupportedOperationError, match=r"`scipy\.sqrt_of`.*custom_vjp"):
        jitad.grad(lambda a: np.sum(module.sqrt_of(a)))(a)
    # a SciPy function converting it with np.asarray: named too
    with pytest.raises(jitad.UnsupportedOperationError, match=r"scipy\.linalg\.signm"):
        jitad.grad(lambda a: np.sum(scipy.linalg.signm(a)))(a)
    # a TypeError of the user's own code stays the user's TypeError
    with pytest.raises(TypeError, match="concatenate"):
        jitad.grad(lambda a: np.sum(a) + len(a.shape + "x"))(a)

    def probe(x):  # hasattr() of a missing attribute is still False, outside SciPy too
        assert not hasattr(x, "flags") and not hasattr(x, "no_such_attribute")
        return np.sum(x)
    np.testing.assert_array_equal(jitad.grad(probe)(a), np.ones_like(a))


def test_scipy_compiled_code_rejecting_a_traced_array_by_value_is_named():
    """scipy.signal.lfilter hands x to compiled code, which raised a bare ValueError ("could not
    convert b, a, and x to a common type"): the error names the SciPy function and the user's line."""
    import scipy.signal

    def loss(x):
        return np.sum(scipy.signal.lfilter([0.5, 0.3], [1.0, -0.2], x) ** 2)
    with pytest.raises(jitad.UnsupportedOperationError, match=r"`scipy\.signal\.lfilter` on traced values "
                       r"\(in `loss`, at .*test_foreign\.py:\d+\).*custom_vjp") as caught:
        jitad.grad(loss)(np.linspace(0.0, 1.0, 8))
    assert isinstance(caught.value.__cause__, ValueError)
    with pytest.raises(ValueError, match="my own"):  # a ValueError of the user's own code stays theirs
        jitad.grad(lambda x: np.sum(x) + float("my own"))(np.ones(3))


def test_a_scipy_stats_function_behind_its_axis_nan_policy_decorator_is_named():
    """scipy.stats wraps most functions in `axis_nan_policy_wrapper`: the error named the wrapper."""
    x = np.linspace(0.1, 1.0, 5)
    with pytest.raises(jitad.UnsupportedOperationError, match=r"`scipy\.stats\.ttest_1samp` on traced"):
        jitad.grad(lambda x: scipy.stats.ttest_1samp(x, 0.0).statistic)(x)
    with pytest.raises(jitad.UnsupportedOperationError, match=r"`scipy\.stats\.iqr` on traced"):
        jitad.grad(lambda x: scipy.stats.iqr(x))(x)


def test_complex_tests_on_traced_values_are_constants():
    # autograd's programs branch on np.iscomplex(x) before choosing a formula; traced values are real
    def fun(x):
        assert not np.iscomplexobj(x) and np.isrealobj(x)
        assert not np.any(np.iscomplex(x)) and np.all(np.isreal(x))
        return np.real(x ** 2 if np.iscomplex(x).any() else np.sum(x))
    assert jitad.grad(fun)(2.0) == 1.0
    np.testing.assert_array_equal(jitad.grad(fun)(np.array([1.0, -3.0])), [1.0, 1.0])


@pytest.mark.parametrize("indices, axis", [
    (np.array([[0], [2]]), 0),           # size-1 axis of the indices broadcasts against the array's
    (np.array([[-1], [0], [-2]]), 1),    # negative positions count from the end of their own row
    (np.array([[1, -1, 0, 2]]), 0),
])
def test_take_along_axis_broadcasts_and_wraps_like_numpy(indices, axis):
    table = np.arange(12.0).reshape(3, 4)
    weights = np.linspace(0.5, 1.5, np.take_along_axis(table, indices, axis).size)

    def f(t):
        return np.sum(np.take_along_axis(t, indices, axis).ravel() * weights)
    assert jitad.jit(lambda t: np.take_along_axis(t, indices, axis))(table).shape == \
        np.take_along_axis(table, indices, axis).shape
    assert jitad.jit(f)(table) == pytest.approx(f(table))
    expected = np.zeros_like(table)  # f is linear in t: its gradient entry by entry
    for i in np.ndindex(*table.shape):
        unit = np.zeros_like(table)
        unit[i] = 1.0
        expected[i] = f(unit)
    np.testing.assert_allclose(jitad.grad(f)(table), expected)


def test_take_along_axis_with_traced_positions_from_a_constant_table():
    # the way out the error of `table[np.floor(x).astype(int)]` names: a gather jitad traces
    table = np.arange(12.0).reshape(3, 4)
    x = np.array([0.5, 2.7])

    def f(x):
        return np.sum(np.take_along_axis(table, np.floor(x).astype(int)[:, None], axis=0) * x[:, None])
    np.testing.assert_allclose(jitad.grad(f)(x), [6.0, 38.0])
    with pytest.raises(jitad.ConcretizationError, match="take_along_axis"):
        jitad.grad(lambda x: np.sum(table[np.floor(x).astype(int)] * x[:, None]))(x)


def test_grad_of_an_integer_output_says_so():
    # autograd's test_graphs takes grad of `lambda x: 1`; the error was about an *argument* "(output)"
    with pytest.raises(jitad.InputDtypeError, match="grad requires a float output, but the function returned dtype int"):
        jitad.grad(lambda x: 1)(2.0)
    assert jitad.grad(lambda x: 1.0)(2.0) == 0.0


@pytest.mark.parametrize("transform, value, error", [
    (jitad.jit, 0.5 + 0.1j, jitad.LeafTypeError),            # was: "cannot differentiate" from jit
    (jitad.jit, np.ones(2) * 1j, jitad.LeafTypeError),        # was: "a leaf of type ndarray"
    (jitad.grad, np.ones(2) * 1j, jitad.InputDtypeError),     # was: "convert it with x.astype(float)"
])
def test_complex_inputs_are_refused_with_the_way_out(transform, value, error):
    # autograd's tests run most functions on complex inputs too; jitad traces real values only
    with pytest.raises(error, match=r"complex.*real and imaginary parts as two float arrays"):
        transform(lambda x: np.sum(np.sin(x)))(value)


def test_an_in_place_write_inside_scipys_own_code_names_the_scipy_function():
    # multivariate_normal.cdf runs SciPy's own code: past a mask of eigenvalues (read from the
    # values, a guard), np.apply_along_axis calls a function that divides into a NumPy array
    cov = np.eye(3) * 2.0
    with pytest.raises(jitad.UnsupportedOperationError, match=r"scipy\.stats\.multivariate_normal\.cdf"):
        jitad.grad(lambda c: scipy.stats.multivariate_normal.cdf(np.zeros(3), np.zeros(3), c))(cov)
    # multivariate_normal.entropy masks eigenvalues too, and then differentiates: 0.5 log det(2 pi e cov)
    np.testing.assert_allclose(jitad.grad(lambda c: scipy.stats.multivariate_normal.entropy(np.zeros(3), c))(cov),
                               0.5 * np.linalg.inv(cov), rtol=1e-12)


def test_numpy_scalar_type_of_a_traced_array_names_astype():
    # autograd's test_cast_to_int: new_inds = np.int64(W[:, -1]); W[:, :-1][new_inds].sum()
    W = np.arange(15.0).reshape(5, 3) % 2
    with pytest.raises(jitad.ConcretizationError, match=r"np\.int64\(x\).*x\.astype\(np\.int64\)"):
        jitad.grad(lambda W: W[:, :-1][np.int64(W[:, -1])].sum())(W)
    g = jitad.grad(lambda W: W[:, :-1][W[:, -1].astype(np.int64)].sum())(W)
    np.testing.assert_array_equal(g[:, :-1], [[3, 3], [2, 2], [0, 0], [0, 0], [0, 0]])


def test_multivariate_normal_allow_singular_with_a_constant_covariance():
    # autograd's test_mvn_sing_cov: a rank-2 covariance in 4 dimensions (was LinAlgError from Cholesky)
    mvn = scipy.stats.multivariate_normal
    cov = np.zeros((4, 4))
    cov[:2, :2] = [[1.0, 0.3], [0.3, 1.0]]
    x, mean = np.array([0.3, -0.2, 0.0, 0.0]), np.array([0.1, 0.4, 0.0, 0.0])

    def f(x, m):
        return mvn.logpdf(x, m, cov, allow_singular=True)
    assert jitad.jit(f)(x, mean) == pytest.approx(f(x, mean), rel=1e-13)
    r = np.linalg.solve(cov[:2, :2], x[:2] - mean[:2])  # the density lives on the first two axes
    g_x, g_mean = jitad.grad(f, argnums=(0, 1))(x, mean)
    np.testing.assert_allclose(g_x[:2], -r, rtol=1e-12)
    np.testing.assert_allclose(g_mean[:2], r, rtol=1e-12)
    assert jitad.jit(f)(x + np.array([0.0, 0.0, 0.1, 0.0]), mean) == -np.inf  # off the support, as SciPy


def test_unsupported_scipy_special_ufunc_is_named_as_scipy_s():
    # ufuncs do not record their module: a SciPy ufunc jitad lacks was named `np.ellipkinc` before
    with pytest.raises(jitad.UnsupportedOperationError, match=r"`scipy\.special\.ellipkinc`"):
        jitad.grad(lambda x: scipy.special.ellipkinc(x, 0.3))(0.5)
    # a SciPy function calling a private ufunc on a traced value: the function's name
    with pytest.raises(jitad.UnsupportedOperationError, match=r"`scipy\.special\.lambertw`"):
        jitad.grad(lambda x: scipy.special.lambertw(x).real)(2.5)


def test_errors_inside_a_function_scipy_optimize_calls_name_the_user_s_code():
    # autograd's fluidsim example: minimize(value_and_grad(objective), ...) where the objective indexes
    # a constant array with traced positions. The error named `scipy.optimize.minimize`, the caller of
    # the traced function, as a SciPy function jitad lacks, instead of the indexing and its way out
    import scipy.optimize
    table = np.arange(6.0)
    x0 = np.array([1.5, 2.5])

    def gather(x):
        return np.sum(table[np.floor(x).astype(int)] * x)

    def unsupported(x):
        return np.sum(np.linalg.eigvals(np.outer(x, x)).real)

    for minimize in (lambda f: scipy.optimize.minimize(jitad.value_and_grad(f), x0, jac=True),
                     lambda f: scipy.optimize.newton(lambda r: jitad.grad(f)(np.array([r, 2.5]))[0], 1.5)):
        with pytest.raises(jitad.ConcretizationError, match="take_along_axis"):
            minimize(gather)
        with pytest.raises(jitad.UnsupportedOperationError, match=r"`numpy\.linalg\.eigvals`") as info:
            minimize(unsupported)
        assert "scipy" not in str(info.value)
    # a SciPy function jitad lacks, called by the traced function inside minimize: still named
    with pytest.raises(jitad.UnsupportedOperationError, match=r"`scipy\.linalg\.signm`"):
        scipy.optimize.minimize(jitad.value_and_grad(lambda a: np.sum(scipy.linalg.signm(a.reshape(2, 2)))),
                                np.array([1.1, 0.2, 0.3, 1.4]), jac=True)


def test_odeint_and_solve_ivp_reached_through_an_attribute_or_a_dict():
    # autograd's ode_net example with its solver held in a namespace object (as a test harness running
    # one model with several libraries does): odeint and solve_ivp, unlike the other SciPy functions
    # jitad implements, kept their own code, so a call through an attribute or a dict was SciPy's
    # (an UnsupportedOperationError); their code is swapped too now, and jitad's solver calls SciPy's own
    import scipy.integrate
    solvers = types.SimpleNamespace(odeint=scipy.integrate.odeint, solve_ivp=scipy.integrate.solve_ivp)
    by_name = {"odeint": scipy.integrate.odeint}
    t = np.linspace(0.0, 1.0, 5)

    def f(k):
        a = solvers.odeint(lambda y, t: -k * y, 1.0, t, rtol=1e-10, atol=1e-12)[-1, 0]
        b = by_name["odeint"](lambda y, t: -k * y, 1.0, t, rtol=1e-10, atol=1e-12)[-1, 0]
        c = solvers.solve_ivp(lambda t, y: -k * y, (0.0, 1.0), [1.0], t_eval=t, rtol=1e-10, atol=1e-12).y[0, -1]
        return a + b + c
    value, slope = jitad.value_and_grad(f)(0.7)
    assert value == pytest.approx(3 * np.exp(-0.7), rel=1e-8)
    assert slope == pytest.approx(-3 * np.exp(-0.7), rel=1e-7)
    # SciPy's own code again after the trace
    assert scipy.integrate.odeint.__code__.co_filename.endswith("_odepack_py.py")
    np.testing.assert_allclose(solvers.odeint(lambda y, t: -0.7 * y, 1.0, t)[-1], np.exp(-0.7), rtol=1e-6)


def test_numpy_functions_take_their_arguments_by_numpys_names():
    """Keyword arguments spelled as NumPy spells them reached jitad's implementations, whose parameters
    are named differently: np.swapaxes(x, axis1=0, axis2=2) and np.sum(a=x) were TypeErrors, and
    np.row_stack (NumPy 2 passes dtype=None, casting='same_kind' on to np.vstack) failed on every
    call. A keyword jitad does not implement is named unless it is NumPy's default."""
    x = np.random.default_rng(3).standard_normal((3, 4, 5))
    w = np.arange(12.0).reshape(4, 3)

    def f(x):
        return np.sum(np.swapaxes(x, axis1=0, axis2=2)[1] * w)
    g = jitad.grad(f)(x)
    want = np.zeros_like(x)
    want[:, :, 1] = w.T
    np.testing.assert_array_equal(g, want)

    np.testing.assert_array_equal(jitad.grad(lambda x: np.sum(a=x ** 2))(x), 2 * x)
    np.testing.assert_array_equal(jitad.grad(lambda x: np.sum(np.moveaxis(a=x, source=0, destination=-1)[0]))(x),
                                  np.broadcast_to(np.arange(4) == 0, (5, 4)).T[None].repeat(3, 0) * 1.0)

    def stacked(x):
        return np.sum(np.vstack((x, 2.0 * x), dtype=None, casting="same_kind") ** 2)
    np.testing.assert_allclose(jitad.grad(stacked)(x[0]), 10.0 * x[0])
    if hasattr(np, "row_stack"):
        with pytest.warns(DeprecationWarning):
            np.testing.assert_allclose(jitad.grad(lambda x: np.sum(np.row_stack((x, 2.0 * x)) ** 2))(x[0]),
                                       10.0 * x[0])

    with pytest.raises(jitad.UnsupportedOperationError, match=r"np\.vstack\(dtype="):
        jitad.grad(lambda x: np.sum(np.vstack((x, x), dtype=np.float32)))(x[0])


def test_reductions_of_a_list_of_traced_values():
    """np.mean([x, x + 2]), np.std((x, y)), np.linalg.norm([x, x + 2]), np.append of nested lists:
    NumPy dispatches on the list, not the traced values in it, and made an array of concrete values
    (a ConcretizationError); autograd's test_numpy/test_linalg *_list_of_boxes write them. They
    are one stacked traced array now, as np.array([...]) of the list is."""
    assert jitad.grad(lambda x: np.mean([x, x + 2.0]))(0.0) == 1.0
    assert jitad.grad(lambda x: np.mean((x, x + 2.0)))(0.0) == 1.0
    assert jitad.grad(lambda x: np.std([x, x + 2.0]))(0.0) == 0.0
    assert jitad.grad(lambda x: np.var((x, 3.0 * x)))(1.0) == 2.0  # var = x**2: 2x
    assert jitad.grad(lambda x: np.linalg.norm([x, x + 2.0]))(0.0) == 1.0
    np.testing.assert_array_equal(jitad.grad(lambda x: np.max([x[0], 2.0 * x[1]], axis=0))(np.array([1.0, 2.0])),
                                  [0.0, 2.0])
    np.testing.assert_array_equal(jitad.grad(lambda x: np.sum(a=[x, x ** 2]))(3.0), 7.0)

    weights = np.arange(9.0).reshape(3, 3)

    def appended(a, b):
        return np.sum(np.append(a, b, axis=0) * weights)
    value, (ga, gb) = jitad.value_and_grad(appended, argnums=(0, 1))([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
                                                                        [[7.0, 8.0, 9.0]])
    assert value == appended(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), np.array([[7.0, 8.0, 9.0]]))
    np.testing.assert_array_equal(np.array(ga), weights[:2])
    np.testing.assert_array_equal(np.array(gb), weights[2:])
    # outside a trace NumPy's own functions are in place again
    assert np.mean([1.0, 2.0]) == 1.5 and np.mean.__name__ == "mean" and not hasattr(np.mean, "__code__")
