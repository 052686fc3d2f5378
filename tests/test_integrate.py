"""scipy.integrate.odeint and solve_ivp of a traced right-hand side (issue 11, item 6).

The forward values are SciPy's; first derivatives in both modes are checked against central
finite differences and against jitad's derivatives of a fixed-step RK4 written in plain NumPy
and unrolled. The ODEs are small (a forced damped oscillator, 2 states, 3 parameters) and the
graphs holding a solve run on the NumPy executor; the right-hand sides too, but in the one test of
their compiled kernels (each a Numba compile of seconds).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.integrate
from scipy.integrate import odeint  # bound before tracing: swapped in this module while jitad traces

import jitad
from jitad.errors import ShapeError, UnsupportedOperationError
from jitad.frontend import integrate
from jitad.frontend.integrate import OdeSolveError
from jitad.interpreter import evaluate

Y0 = np.array([1.0, -0.5])
TS = np.linspace(0.0, 2.0, 5)
THETA = np.array([2.0, 0.3, 0.7])  # stiffness, damping, forcing amplitude
TIGHT = dict(rtol=1e-10, atol=1e-10)
FD = dict(eps=1e-4, atol=2e-5, rtol=2e-5)


def oscillator(y, t, theta):
    return np.array([y[1], -theta[0] * y[0] - theta[1] * y[1] + theta[2] * np.sin(t)])


def odeint_loss(theta, y0, ts):
    ys = scipy.integrate.odeint(lambda y, t: oscillator(y, t, theta), y0, ts, **TIGHT)
    return np.sum(ys ** 2 * np.arange(1.0, 3.0))


def ivp_ys(theta, y0, ts, method="RK45"):
    sol = scipy.integrate.solve_ivp(lambda t, y: oscillator(y, t, theta), (ts[0], ts[-1]), y0, t_eval=ts,
                                    method=method, **TIGHT)
    return sol.y


@pytest.fixture(autouse=True)
def reference_right_hand_sides(request):
    """The ODE graphs run on the reference executor at each step of the integrator (not compiled), but in
    the test of their compiled kernels."""
    if request.node.name == "test_compiled_right_hand_sides_match_the_reference":
        yield
        return
    saved, integrate.RHS_EXECUTOR[0] = integrate.RHS_EXECUTOR[0], None
    try:
        yield
    finally:
        integrate.RHS_EXECUTOR[0] = saved


def rk4(f, y0, ts, steps):
    """Classic fixed-step RK4 in plain NumPy, unrolled: `steps` steps between output times."""
    y, out = y0, [y0]
    for a, b in zip(ts[:-1], ts[1:]):
        h, t = (b - a) / steps, a
        for _ in range(steps):
            k1 = f(y, t)
            k2 = f(y + h / 2 * k1, t + h / 2)
            k3 = f(y + h / 2 * k2, t + h / 2)
            k4 = f(y + h * k3, t + h)
            y, t = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + h
        out.append(y)
    return np.stack(out)


# --- forward values ------------------------------------------------------------------------------
def test_odeint_value_is_scipys():
    expected = scipy.integrate.odeint(oscillator, Y0, TS, args=(THETA,), **TIGHT)
    out, _ = jitad.vjp(lambda th: scipy.integrate.odeint(lambda y, t: oscillator(y, t, th), Y0, TS, **TIGHT),
                       THETA)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    value, _ = jitad.value_and_grad(odeint_loss)(THETA, Y0, TS)
    assert np.isclose(value, odeint_loss(THETA, Y0, TS), rtol=1e-12)


def test_solve_ivp_value_is_scipys():
    expected = scipy.integrate.solve_ivp(lambda t, y: oscillator(y, t, THETA), (0.0, 2.0), Y0, t_eval=TS,
                                         rtol=1e-6, atol=1e-8).y
    seen = {}

    def fun(theta):
        sol = scipy.integrate.solve_ivp(lambda t, y: oscillator(y, t, theta), (0.0, 2.0), Y0, t_eval=TS,
                                        rtol=1e-6, atol=1e-8)
        seen["t"], seen["success"] = sol.t, sol.success
        with pytest.raises(UnsupportedOperationError, match="nfev"):
            sol.nfev
        return sol.y
    out, _ = jitad.vjp(fun, THETA)
    assert out.shape == (2, len(TS)) and seen["success"]
    np.testing.assert_allclose(seen["t"], TS)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


# --- first derivatives against finite differences ---------------------------------------------------
def test_odeint_gradients_match_finite_differences():
    """In the parameters the right-hand side closes over, the initial state and the time points."""
    jitad.check_grads(odeint_loss, (THETA, Y0, TS), modes=("fwd", "rev"), **FD)


@pytest.mark.parametrize("method", ["RK45", "LSODA"])
def test_solve_ivp_gradients_match_finite_differences(method):
    def loss(theta, y0, t_eval):
        return np.sum(np.sin(ivp_ys(theta, y0, t_eval, method)))
    jitad.check_grads(loss, (THETA, Y0, TS[1:]), modes=("fwd", "rev"), **FD)


def test_solve_ivp_args():
    def loss(theta):
        sol = scipy.integrate.solve_ivp(lambda t, y, k, c: [y[1], -k * y[0] - c * y[1]], (0.0, 2.0), Y0,
                                        t_eval=TS, args=(theta[0], theta[1]), **TIGHT)
        return np.sum(sol.y[0])
    jitad.check_grads(loss, (THETA[:2],), modes=("fwd", "rev"), **FD)


def test_a_failed_solve_says_so():
    def blow_up(k):  # y' = k y^2 from y(0) = 1 leaves to infinity at t = 1/k
        sol = scipy.integrate.solve_ivp(lambda t, y: k * y ** 2, (0.0, 2.0), np.array([1.0]), t_eval=TS)
        return np.sum(sol.y)
    with pytest.raises(OdeSolveError, match="solve_ivp failed"):
        jitad.grad(blow_up)(1.0)


def _rhs_written_into_zeros_like(y, t, k):
    dydt = np.zeros_like(y)
    dydt[0] = y[1]
    dydt[1] = -k * y[0]
    return dydt


def _rhs_written_into_zeros(y, t, k):
    dydt = np.zeros(2)
    dydt[0] = y[1]
    dydt[1] = -k * y[0]
    return dydt


@pytest.mark.parametrize("rhs", [_rhs_written_into_zeros_like, _rhs_written_into_zeros,
                                 lambda y, t, k: [y[1], -k * y[0]]])
def test_right_hand_sides_as_published_code_writes_them(rhs):
    """In-place writes into a fresh array, or a list: the usual ways to return dy/dt."""
    def loss(k):
        return np.sum(odeint(rhs, Y0, TS, args=(k,), **TIGHT) ** 2)
    jitad.check_grads(loss, (2.0,), modes=("fwd", "rev"), **FD)


def test_neural_ode_with_matrix_parameters_in_a_dict():
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 2)) * 0.5, "b": rng.standard_normal(3) * 0.1,
              "V": rng.standard_normal((2, 3)) * 0.5}

    def loss(p):
        sol = scipy.integrate.solve_ivp(lambda t, y: p["V"] @ np.tanh(p["W"] @ y + p["b"]), (0.0, 1.0), Y0,
                                        t_eval=TS[:3], **TIGHT)
        return np.sum(sol.y ** 2)
    jitad.check_grads(loss, (params,), modes=("fwd", "rev"), **FD)


def test_traced_args_and_tfirst():
    def loss(theta, y0):
        ys = odeint(lambda t, y, k, c: np.array([y[1], -k * y[0] - c * y[1]]), y0, TS, args=(theta[0], theta[1]),
                    tfirst=True, **TIGHT)
        return np.sum(ys[-1] ** 2)
    jitad.check_grads(loss, (THETA[:2], Y0), modes=("fwd", "rev"), **FD)


def test_exponential_decay_against_its_closed_form():
    """y' = -k y: y(t) = y0 exp(-k (t - t0)); derivatives in k, y0 and every time, both modes."""
    k, y0, ts = 0.8, 1.7, np.array([0.5, 1.0, 2.0, 3.0])

    def total(k, y0, ts):
        return np.sum(odeint(lambda y, t: -k * y, y0, ts, rtol=1e-12, atol=1e-12))
    decay = np.exp(-k * (ts - ts[0]))
    expected = (np.sum(-(ts - ts[0]) * y0 * decay), np.sum(decay),
                np.concatenate([[k * y0 * np.sum(decay[1:])], -k * y0 * decay[1:]]))
    for got in (jitad.grad(total, argnums=(0, 1, 2))(k, y0, ts),
                [jitad.jacfwd(total, argnums=i)(k, y0, ts) for i in range(3)]):
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-8, atol=1e-10)


# --- against an unrolled fixed-step RK4 -------------------------------------------------------------
def test_derivatives_match_unrolled_rk4(reference_backend):
    ts = np.linspace(0.0, 1.0, 4)

    def by_odeint(theta, y0):
        return odeint(lambda y, t: oscillator(y, t, theta), y0, ts, rtol=1e-12, atol=1e-12)

    def by_rk4(theta, y0):
        return rk4(lambda y, t: oscillator(y, t, theta), y0, ts, steps=12)

    np.testing.assert_allclose(by_odeint(THETA, Y0), by_rk4(THETA, Y0), atol=1e-7)
    for argnum in (0, 1):
        expected = jitad.jacrev(by_rk4, argnum)(THETA, Y0)
        np.testing.assert_allclose(jitad.jacrev(by_odeint, argnum)(THETA, Y0), expected, atol=1e-6)
        np.testing.assert_allclose(jitad.jacfwd(by_odeint, argnum)(THETA, Y0), expected, atol=1e-6)


# --- edges -------------------------------------------------------------------------------------------
def test_untraced_solve_inside_a_traced_function_is_scipys(reference_backend):
    def f(x):
        ys = odeint(lambda y, t: -y, np.array([1.0]), TS)
        return x * np.sum(ys)
    assert np.isclose(jitad.grad(f)(2.0), np.sum(scipy.integrate.odeint(lambda y, t: -y, [1.0], TS)))


def test_jacobian_option_is_jitads_and_float32_parameters():
    """A Dfun / jac closes over traced values like the rhs: jitad uses its own exact Jacobian of the rhs."""
    def solve(theta, dfun):
        rhs = lambda y, t: oscillator(y, t, theta)  # noqa: E731
        jac = lambda y, t: np.array([[0.0, 1.0], [-theta[0], -theta[1]]])  # noqa: E731
        return odeint(rhs, Y0, TS, Dfun=jac if dfun else None, **TIGHT)

    expected = solve(THETA, True)  # SciPy with the user's Dfun
    out, _ = jitad.vjp(lambda th: solve(th, True), THETA)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-12)
    theta = THETA.astype(np.float32)
    g = jitad.grad(lambda th: np.sum(solve(th, True) ** 2))(theta)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, jitad.grad(lambda th: np.sum(solve(th, False) ** 2))(theta), rtol=1e-5)
    ivp = lambda th: scipy.integrate.solve_ivp(  # noqa: E731
        lambda t, y: oscillator(y, t, th), (0.0, 2.0), Y0, t_eval=TS, method="Radau",
        jac=lambda t, y: np.array([[0.0, 1.0], [-th[0], -th[1]]]), **TIGHT).y
    jitad.check_grads(lambda th: np.sum(ivp(th) ** 2), (THETA,), modes=("fwd", "rev"), **FD)


def test_times_running_backwards_and_a_scalar_state():
    ts = TS[::-1]

    def loss(k, y0):
        ys = odeint(lambda y, t: -k * y + np.sin(t), y0, ts, **TIGHT)
        return np.sum(ys ** 2)
    jitad.check_grads(loss, (0.7, 1.3), modes=("fwd", "rev"), **FD)


def test_example_fits_the_oscillator(capsys):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / "ode_fit.py"
    spec = importlib.util.spec_from_file_location("example_ode_fit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    np.testing.assert_allclose(module.main(points=15, noise=0.0), module.TRUE, rtol=1e-4)


def test_caller_arrays_unchanged():
    y0, ts, theta = Y0.copy(), TS.copy(), THETA.copy()
    jitad.grad(odeint_loss, argnums=(0, 1, 2))(theta, y0, ts)
    assert np.array_equal(y0, Y0) and np.array_equal(ts, TS) and np.array_equal(theta, THETA)


def test_second_derivatives_against_the_closed_form():
    """The derivative rules are ODE solves again, so every second-order combination and a third derivative work."""
    ts = np.array([0.0, 0.5, 1.5])
    tau = ts - ts[0]

    def total(x):
        return np.sum(odeint(lambda y, t: -x[0] * y, x[1], ts, rtol=1e-12, atol=1e-12))
    k, y0 = 0.8, 1.7
    decay = np.exp(-k * tau)
    expected = np.array([[y0 * np.sum(tau ** 2 * decay), -np.sum(tau * decay)], [-np.sum(tau * decay), 0.0]])
    x = np.array([k, y0])
    np.testing.assert_allclose(jitad.hessian(total)(x), expected, rtol=1e-7, atol=1e-9)
    for second in (jitad.jacrev(jitad.grad(total)), jitad.jacfwd(jitad.jacfwd(total)),
                   jitad.jacrev(jitad.jacfwd(total))):
        np.testing.assert_allclose(second(x), expected, rtol=1e-7, atol=1e-9)
    third = jitad.grad(lambda k: jitad.grad(lambda k: jitad.grad(lambda k: total(np.stack([k, y0])))(k))(k))
    np.testing.assert_allclose(third(k), -y0 * np.sum(tau ** 3 * decay), rtol=1e-7)


def test_second_derivatives_match_finite_differences():
    def loss(theta, y0):
        ys = scipy.integrate.solve_ivp(lambda t, y: oscillator(y, t, theta), (0.0, 1.0), y0, t_eval=TS[1:3],
                                       **TIGHT).y
        return np.sum(ys ** 2)
    jitad.check_grads(loss, (THETA, Y0), order=2, modes=("rev",), eps=1e-4, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("option, value", [("events", lambda t, y: y[0]), ("dense_output", True),
                                           ("vectorized", True), ("t_eval", None)])
def test_unsupported_solve_ivp_options(option, value):
    def loss(theta):
        kwargs = {"t_eval": TS, option: value}
        return np.sum(scipy.integrate.solve_ivp(lambda t, y: -theta * y, (0.0, 2.0), Y0, **kwargs).y)
    with pytest.raises(UnsupportedOperationError, match=option):
        jitad.grad(loss)(1.0)


def test_import_jitad_registers_the_builders():
    """`import jitad` alone swaps scipy.integrate's functions while tracing (no import of jitad.frontend.integrate)."""
    code = ("import sys, numpy as np, scipy.integrate, jitad; "
            "print(jitad.grad(lambda k: scipy.integrate.odeint(lambda y, t: -k * y, 1.0, [0.0, 1.0])[-1, 0])(0.5))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "JITAD_COMPILE": "off"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.isclose(float(out.stdout), -np.exp(-0.5), rtol=1e-6)


def test_bad_calls():
    with pytest.raises(UnsupportedOperationError, match="full_output"):
        jitad.grad(lambda k: np.sum(odeint(lambda y, t: -k * y, Y0, TS, full_output=1)[0]))(1.0)
    with pytest.raises(ShapeError, match="right-hand side returned shape"):
        jitad.grad(lambda k: np.sum(odeint(lambda y, t: -k * y[:1], Y0, TS)))(1.0)


def test_a_solve_inside_a_larger_compiled_program_and_inside_a_scan():
    """With the compiled backend (compile='eager' in the tests): a graph that holds an ODE solve --
    also one inside a jitad.scan body, which a compiled loop cannot call back from -- runs on the
    NumPy executor as a whole (counted as a reference fallback) and gives the reference's bits."""
    w = np.random.default_rng(0).standard_normal((3, 4))
    x = np.linspace(-1.0, 1.0, 4)

    def mixed(w, x):
        theta = np.exp(0.1 * np.tanh(w @ x))  # work before the solve
        ys = odeint(lambda y, t: oscillator(y, t, theta), Y0, TS, **TIGHT)
        return np.sum(np.log1p(ys ** 2)) + 1e-3 * np.sum(w ** 2)  # and after

    def in_scan(theta):
        def step(carry, _):
            y = odeint(lambda y, t: oscillator(y, t, theta), carry, np.array([0.0, 0.5]), **TIGHT)[-1]
            return y, y[0]
        carry, firsts = jitad.scan(step, Y0, np.arange(3.0))
        return np.sum(firsts ** 2) + np.sum(carry)

    saved = jitad.config.backend
    try:
        results = {}
        for backend in ("reference", saved):  # saved: the compiled default
            jitad.config.backend = backend
            before = jitad.cache_info()["reference_fallbacks"]
            results[backend] = (jitad.value_and_grad(mixed, argnums=(0, 1))(w, x),
                                jitad.value_and_grad(in_scan)(THETA))
            if backend == saved:
                assert jitad.cache_info()["reference_fallbacks"] == before + 2
    finally:
        jitad.config.backend = saved
    for a, b in zip(_leaves(results["reference"]), _leaves(results[saved])):
        np.testing.assert_array_equal(a, b)
    jitad.check_grads(mixed, (w, x), order=1, modes=("fwd", "rev"), **FD)
    jitad.check_grads(in_scan, (THETA,), order=1, modes=("fwd", "rev"), **FD)


def _leaves(tree):
    import optree
    return optree.tree_leaves(tree)


def test_compiled_right_hand_sides_match_the_reference():
    """With the compiled backend, the right-hand side and the adjoint system's graph run as Numba kernels
    at each step of SciPy's integrator (jitad.backend sets integrate.RHS_EXECUTOR): the same values and
    gradients as on the reference executor, to the integrator's tolerance."""
    saved = jitad.config.backend
    try:
        results = {}
        for backend in ("reference", saved):  # saved: the compiled default (compile='eager' in the tests)
            jitad.config.backend = backend
            before = _kernels_made()
            results[backend] = jitad.value_and_grad(odeint_loss, argnums=(0, 1))(THETA, Y0, TS)
            made = _kernels_made() - before  # the right-hand side's and the adjoint system's
            assert made == 0 if backend == "reference" else made >= 2, (backend, made)
    finally:
        jitad.config.backend = saved
    for a, b in zip(_leaves(results["reference"]), _leaves(results[saved])):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def _kernels_made():
    info = jitad.cache_info()
    return info["numba_compilations"] + info["disk_loads"] + info["kernel_hits"]


# --- scipy.integrate.quad and quad_vec -----------------------------------------------------------------
QUAD_TIGHT = dict(epsabs=1e-13, epsrel=1e-13)


def exp_integral(p):
    """∫ₐᵇ exp(-k x) dx with p = (k, a, b), by quad."""
    return scipy.integrate.quad(lambda x: np.exp(-p[0] * x), p[1], p[2], **QUAD_TIGHT)[0]


def exp_integral_closed(p):
    return (np.exp(-p[0] * p[1]) - np.exp(-p[0] * p[2])) / p[0]


def test_quad_value_and_error_are_scipys():
    theta = np.array([1.0, 0.5])

    def f(theta):
        value, error = scipy.integrate.quad(lambda x: np.exp(-theta[0] * x ** 2) * np.cos(theta[1] * x), 0.0, 2.0)
        return value + 0.0 * error
    expected = scipy.integrate.quad(lambda x: np.exp(-theta[0] * x ** 2) * np.cos(theta[1] * x), 0.0, 2.0)
    assert jitad.jit(lambda t: scipy.integrate.quad(lambda x: np.exp(-t[0] * x ** 2) * np.cos(t[1] * x),
                                                    0.0, 2.0))(theta) == expected
    assert jitad.value_and_grad(f)(theta)[0] == expected[0]


@pytest.mark.parametrize("p", [np.array([0.7, 0.2, 1.5]), np.array([2.0, -1.0, 0.5])])
def test_quad_derivatives_in_the_integrand_and_the_limits_to_order_two(p):
    np.testing.assert_allclose(jitad.grad(exp_integral)(p), jitad.grad(exp_integral_closed)(p), rtol=1e-10)
    np.testing.assert_allclose(jitad.jacfwd(exp_integral)(p), jitad.grad(exp_integral_closed)(p), rtol=1e-10)
    np.testing.assert_allclose(jitad.hessian(exp_integral)(p), jitad.hessian(exp_integral_closed)(p), rtol=1e-9)


def test_quad_over_infinite_limits_with_args_and_points():
    def normaliser(s):  # ∫ exp(-x²/2s²) dx = s √(2π)
        return scipy.integrate.quad(lambda x: np.exp(-x ** 2 / (2 * s ** 2)), -np.inf, np.inf)[0]
    assert jitad.grad(normaliser)(1.5) == pytest.approx(np.sqrt(2 * np.pi), rel=1e-9)

    def moment(c):  # ∫₀¹ c x² dx through args=, and |x - 0.3| with its kink as a break point
        return scipy.integrate.quad(lambda x, c: c * x ** 2, 0.0, 1.0, args=(c,))[0] + \
            scipy.integrate.quad(lambda x: c * np.abs(x - 0.3), 0.0, 1.0, points=[0.3])[0]
    assert jitad.grad(moment)(2.0) == pytest.approx(1 / 3 + (0.3 ** 2 + 0.7 ** 2) / 2, rel=1e-10)


def test_quad_vec_of_an_array_integrand():
    w = np.array([1.0, 2.0])

    def f(w):
        value, _ = scipy.integrate.quad_vec(lambda x: np.outer(np.sin(w * x), w), 0.0, 1.0, epsrel=1e-12)
        return np.sum(value * np.array([[1.0, 2.0], [3.0, 4.0]]))

    def closed(w):  # ∫₀¹ sin(w x) dx = (1 - cos w) / w
        return np.sum(np.outer((1 - np.cos(w)) / w, w) * np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert jitad.jit(lambda w: scipy.integrate.quad_vec(lambda x: np.outer(np.sin(w * x), w), 0.0, 1.0)[0])(w).shape \
        == (2, 2)
    np.testing.assert_allclose(jitad.grad(f)(w), jitad.grad(closed)(w), rtol=1e-9)


def test_quad_that_traces_nothing_is_scipys_and_errors_are_named():
    def f(x):
        return x * scipy.integrate.quad(np.cos, 0.0, 1.0)[0]
    assert jitad.grad(f)(2.0) == scipy.integrate.quad(np.cos, 0.0, 1.0)[0]
    with pytest.raises(UnsupportedOperationError, match=r"quad\(weight=...\)"):
        jitad.grad(lambda k: scipy.integrate.quad(lambda x: k * x, 0.0, 1.0, weight="cos", wvar=1.0)[0])(1.0)
    with pytest.raises(ShapeError, match="one number"):
        jitad.grad(lambda k: scipy.integrate.quad(lambda x: k * np.ones(2) * x, 0.0, 1.0)[0])(1.0)
    with pytest.raises(jitad.ConcretizationError):  # x is symbolic: np.where, not `if`
        jitad.grad(lambda k: scipy.integrate.quad(lambda x: k * x if x > 0.5 else k, 0.0, 1.0)[0])(1.0)


def test_quad_vec_of_a_float32_integrand_is_float32_as_scipys():
    """Found by the fuzzer's shapes profile (seed 5): SciPy calls the integrand with a Python float, so a
    float32 integrand's quad_vec is float32; jitad's was float64 (the value is integrated in float64)."""
    w = np.array([1.0, 2.0], np.float32)
    for f in (lambda w: scipy.integrate.quad_vec(lambda s: np.sin(s * w), 0.0, 1.0)[0],
              lambda w: scipy.integrate.quad_vec(lambda s: np.sin(s) * np.sum(w), 0.0, 1.0)[0]):
        got, expected = jitad.jit(f)(w), f(w)
        assert np.asarray(got).dtype == np.asarray(expected).dtype and np.shape(got) == np.shape(expected)
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_quad_of_parameters_with_no_entries():
    """Found by the long fuzz profile (seed 616161): grad of quad(...)[0] * x with x of shape (0, 2) made
    an adjoint integrand of no entries, and quad_vec's max-norm of an empty vector raised ValueError."""
    def g(x):
        value = scipy.integrate.quad(lambda s: np.exp(-s * s * np.sum(x * x)) * np.cos(s + np.sum(x)), 0.0, 1.5)[0]
        return np.sum(value * x)
    value, grad = jitad.value_and_grad(g)(np.zeros((0, 2)))
    assert value == 0.0 and grad.shape == (0, 2)
    f = lambda w: np.sum(scipy.integrate.quad_vec(lambda s: np.sin(s * w), 0.0, 1.0)[0]) + np.sum(w)  # noqa: E731
    assert jitad.value_and_grad(f)(np.zeros(0))[1].shape == (0,)


def test_quad_gradient_of_float32_parameters_converges_at_their_precision():
    """Found by the shapes fuzz profile (seed 737373, programs 9 and 21: 230 s of the run's 285). The
    adjoint integrand of float32 params has float32's precision (each cotangent is rounded to float32 at
    every x), and quad_vec, whose rounding test knows float64's eps only, never met epsrel 1.49e-8: it
    subdivided to its limit, 10000 intervals (210,000 evaluations, a minute), for no better gradient. Its
    tolerance is now at least 50 eps of the params' dtype, with one adjoint quadrature per dtype, so a
    float64 param next to float32 ones keeps its accuracy."""
    calls = []

    def counted(graph):
        def run(args):
            calls.append(1)
            if len(calls) > 5000:
                raise RuntimeError("the adjoint quadrature does not converge")
            return evaluate(graph, args)
        return run
    integrate.RHS_EXECUTOR[0] = counted  # the autouse fixture restores it

    def f(x, k):
        return scipy.integrate.quad(lambda s: np.exp(-s * s * np.mean(x * x) * k) * np.cos(s + np.sum(x)), 0.0, 1.5)[0]
    x = np.array([[-0.91488576, -0.20037484], [1.0216111, -0.54306567]], np.float32)
    gx, gk = jitad.grad(f, argnums=(0, 1))(x, 1.25)
    assert gx.dtype == np.float32 and len(calls) < 2000
    np.testing.assert_allclose(gx, jitad.grad(f)(x.astype(np.float64), 1.25), rtol=2e-6)
    m, c = np.float64(np.mean(x * x)), np.float64(np.sum(x))  # as the traced integrand has them, in float32
    dk = scipy.integrate.quad(lambda s: -s * s * m * np.exp(-s * s * m * 1.25) * np.cos(s + c), 0.0, 1.5,
                              epsabs=1e-14, epsrel=1e-14)[0]
    assert gk == pytest.approx(dk, rel=1e-10)


def test_quad_vec_value_is_scipys_with_its_limit_and_norm():
    """jitad's quad_vec passed SciPy only epsabs, epsrel and points, so `limit=` and `norm=` were silently
    ignored: with limit=3 the value differed from SciPy's by 5.7e-3 and the error estimate was 8e-10 for
    SciPy's 0.17 (found while following up the recent fuzz profile, seed 727272, program 86, whose
    quad_vec of a float32 integrand needed a limit). A one-entry quad_vec is SciPy's quad_vec too."""
    w = np.array([30.0, 0.5])
    for kw in (dict(limit=3), dict(norm="2", epsrel=1e-3), dict(limit=2, norm="max")):
        f = lambda w: scipy.integrate.quad_vec(lambda s: np.sqrt(np.abs(np.sin(s * w))), 0.0, 1.0, **kw)  # noqa: E731
        value, error = jitad.jit(f)(w)
        expected = f(w)
        np.testing.assert_array_equal(value, expected[0])
        assert error == expected[1]
    g = lambda k: scipy.integrate.quad_vec(lambda s: np.sqrt(np.abs(np.sin(s * k))), 0.0, 1.0, limit=2)  # noqa: E731
    assert jitad.jit(g)(30.0) == g(30.0)
