"""custom_vjp, custom_jvp and checkpoint: user rules are used in both modes, rules that run on
real arrays work for functions jitad cannot trace, and what cannot be differentiated raises."""
import numpy as np
import pytest
import scipy.special

import jitad
from jitad.transforms.ad import vjp_values
from jitad.passes import optimize
from jitad.frontend.tracer import trace

pytestmark = pytest.mark.usefixtures("reference_backend")

TWO_OVER_SQRT_PI = 2.0 / np.sqrt(np.pi)


def untraced_erf(x):
    """erf through scipy.special.chdtr (erf(x) = sign(x) P(chi2_1 <= 2x²)), which jitad does not implement
    (it traces scipy.special.erf)."""
    return np.sign(x) * scipy.special.chdtr(1.0, 2.0 * x * x)


# --- custom_vjp ----------------------------------------------------------------------------
calls = {"f": 0, "fwd": 0, "bwd": 0}


@jitad.custom_vjp
def erf(x):
    calls["f"] += 1
    return untraced_erf(x)


def erf_fwd(x):
    calls["fwd"] += 1
    return erf(x), x


def erf_bwd(x, g):
    calls["bwd"] += 1
    return (g * TWO_OVER_SQRT_PI * np.exp(-x ** 2),)


erf.defvjp(erf_fwd, erf_bwd)


@jitad.custom_vjp
def sort(x):
    return np.sort(x)


def sort_fwd(x):
    order = np.argsort(x)
    return x[order], order


def sort_bwd(order, g):
    gx = np.empty_like(g)
    gx[order] = g  # the transpose of a gather is a scatter
    return (gx,)


sort.defvjp(sort_fwd, sort_bwd)


def test_custom_vjp_of_untraceable_function_matches_finite_differences(rng):
    x = rng.standard_normal(5)
    with pytest.raises(jitad.UnsupportedOperationError):
        jitad.grad(lambda x: np.sum(untraced_erf(x)))(x)
    jitad.check_grads(lambda x: np.sum(erf(x) * np.sin(x)), (x,), modes=("rev",))
    jitad.check_grads(lambda x: erf(x) ** 2, (x,), modes=("rev",))
    np.testing.assert_allclose(jitad.grad(lambda x: np.sum(erf(x)))(x), TWO_OVER_SQRT_PI * np.exp(-x ** 2))
    weights = np.linspace(1.0, 2.0, 6)
    jitad.check_grads(lambda x: np.sum(sort(x) * weights), (rng.standard_normal(6),), modes=("rev",))


def test_custom_vjp_called_on_arrays_just_runs_the_function():
    before = dict(calls)
    x = np.array([0.1, 0.5])
    np.testing.assert_array_equal(erf(x), untraced_erf(x))
    assert erf(0.5) == untraced_erf(0.5)
    assert calls["f"] == before["f"] + 2 and calls["fwd"] == before["fwd"] and calls["bwd"] == before["bwd"]


@jitad.custom_vjp
def scaled_erf_and_sort(params, x, power):
    """Pytree argument, a static int, and a pair of outputs."""
    return untraced_erf(params["a"] * x) ** power, np.sort(x) * params["b"]


def scaled_fwd(params, x, power):
    return scaled_erf_and_sort(params, x, power), (params, x, power)


def scaled_bwd(residuals, g):
    params, x, power = residuals
    g_erf, g_sort = g
    a, b = params["a"], params["b"]
    inner = a * x
    d_inner = g_erf * power * untraced_erf(inner) ** (power - 1) * TWO_OVER_SQRT_PI * np.exp(-inner ** 2)
    order = np.argsort(x)
    gx = np.zeros_like(x)
    gx[order] = g_sort * b
    return {"a": np.sum(d_inner * x), "b": np.sum(g_sort * np.sort(x))}, d_inner * a + gx, None


scaled_erf_and_sort.defvjp(scaled_fwd, scaled_bwd)


def test_custom_vjp_inside_a_larger_function_under_value_and_grad(rng):
    def loss(params, x):
        u, v = scaled_erf_and_sort(params, np.tanh(x), 3)
        return np.sum(u * np.cos(v)) + np.sum(v ** 2) * params["a"]

    params = {"a": 0.7, "b": np.array(1.3)}
    x = rng.standard_normal(4)
    value, (g_params, g_x) = jitad.value_and_grad(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(value, loss(params, x))
    assert set(g_params) == {"a", "b"} and g_x.shape == x.shape
    jitad.check_grads(loss, (params, x), modes=("rev",))
    out, vjp_fn = jitad.vjp(lambda x: erf(x) * x, x)
    np.testing.assert_allclose(out, untraced_erf(x) * x)
    (g,) = vjp_fn(np.ones(4))
    np.testing.assert_allclose(g, untraced_erf(x) + x * TWO_OVER_SQRT_PI * np.exp(-x ** 2))


@jitad.custom_vjp
def opaque_erf(x):
    return untraced_erf(x)


opaque_erf.defvjp(lambda x: (opaque_erf(x), x),
                  lambda x, g: (g * TWO_OVER_SQRT_PI * np.exp(-untraced_erf(x) * 0.0 - x ** 2),))  # SciPy in bwd


def test_custom_vjp_differentiated_twice_where_jitad_traces_its_rules(rng):
    """fwd and bwd that jitad can trace are inlined as a graph in the adjoint (the function itself may
    stay untraceable, as erf here): reverse over reverse differentiates them, as JAX's custom_vjp and
    autograd's defvjp do; a rule jitad cannot trace runs on real arrays, and a second derivative
    through it is an error. Forward mode through a custom_vjp function is an error either way."""
    x = 0.3
    second = -2.0 * x * TWO_OVER_SQRT_PI * np.exp(-x * x) * 2.0
    np.testing.assert_allclose(jitad.grad(jitad.grad(lambda x: erf(x) * 2.0))(x), second, rtol=1e-12)
    xs = rng.standard_normal(5)
    jitad.check_grads(lambda x: jitad.grad(lambda x: np.sum(erf(x) * np.sin(x)))(x), (xs,), modes=("rev",))
    weights = np.linspace(1.0, 2.0, 6)  # sort's rules: argsort, a gather and a scatter, all traced
    jitad.check_grads(lambda x: jitad.grad(lambda x: np.sum(sort(x) * weights * x))(x), (rng.standard_normal(6),),
                      modes=("rev",))
    np.testing.assert_allclose(jitad.grad(lambda x: opaque_erf(x) * 2.0)(x), TWO_OVER_SQRT_PI * np.exp(-x * x) * 2.0)
    with pytest.raises(jitad.NonDifferentiableError, match="second derivative.*`opaque_erf`"):
        jitad.grad(jitad.grad(lambda x: opaque_erf(x) * 2.0))(x)
    with pytest.raises(jitad.NonDifferentiableError, match="forward mode.*`erf`.*custom_jvp"):
        jitad.jvp(erf, (0.3,), (1.0,))


def test_custom_vjp_rule_errors_are_clear():
    @jitad.custom_vjp
    def no_rule(x):
        return np.sort(x)

    with pytest.raises(jitad.NonDifferentiableError, match="defvjp"):
        jitad.grad(lambda x: np.sum(no_rule(x)))(np.ones(3))

    @jitad.custom_vjp
    def bad_bwd(x):
        return np.sort(x)

    bad_bwd.defvjp(lambda x: (np.sort(x), None), lambda res, g: g)  # not a tuple
    with pytest.raises(TypeError, match="one cotangent per argument"):
        jitad.grad(lambda x: np.sum(bad_bwd(x)))(np.ones(3))

    def closes_over(w):
        @jitad.custom_vjp
        def scaled(x):
            return np.sort(x) * w

        scaled.defvjp(lambda x: (scaled(x), None), lambda res, g: (g,))
        return np.sum(scaled(w * np.ones(3)))

    def traceable_closes_over(w):
        @jitad.custom_vjp
        def scaled(x):
            return x * w

        scaled.defvjp(lambda x: (scaled(x), None), lambda res, g: (g,))
        return np.sum(scaled(w * np.ones(3)))

    for fun in (closes_over, traceable_closes_over):
        with pytest.raises(jitad.JitadError, match="pass that value as an argument"):
            jitad.grad(fun)(2.0)


# --- custom_jvp ----------------------------------------------------------------------------
@jitad.custom_jvp
def log1pexp(x):
    return np.logaddexp(0.0, x)


@log1pexp.defjvp
def log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), t / (1.0 + np.exp(-x))  # stable: no inf/inf at large x


def test_custom_jvp_log1pexp_is_stable_in_both_modes(rng):
    x = np.array([-800.0, -3.0, 0.0, 2.0, 1000.0])
    sigmoid = scipy.special.expit(x)
    np.testing.assert_allclose(jitad.grad(lambda x: np.sum(log1pexp(x)))(x), sigmoid)
    value, tangent = jitad.jvp(log1pexp, (x,), (np.ones(5),))
    np.testing.assert_allclose(value, np.logaddexp(0.0, x))
    np.testing.assert_allclose(tangent, sigmoid)
    # the naive formula differentiates to nan at large x; the rule does not
    assert np.isnan(jitad.grad(lambda x: np.log(1.0 + np.exp(x)))(1000.0))
    assert jitad.grad(log1pexp)(1000.0) == 1.0
    np.testing.assert_allclose(jitad.grad(jitad.grad(log1pexp))(0.5), sigmoid_prime(0.5))
    jitad.check_grads(lambda x: log1pexp(x) * np.sin(x), (rng.standard_normal(4),), order=2)


def sigmoid_prime(x):
    s = scipy.special.expit(x)
    return s * (1.0 - s)


def test_custom_jvp_rule_is_what_both_modes_use():
    """A rule that deliberately disagrees with the function: grad and jvp follow the rule."""
    for traceable in (True, False):
        @jitad.custom_jvp
        def square(x):
            return x ** 2

        @square.defjvp
        def square_jvp(primals, tangents):
            (x,), (t,) = primals, tangents
            scale = 3.0 * x if traceable else untraced_erf(100.0) * 3.0 * x  # erf(100) == 1
            return square(x), scale * t

        x = np.array([1.0, -2.0])
        np.testing.assert_allclose(jitad.grad(lambda x: np.sum(square(x)))(x), 3.0 * x)
        np.testing.assert_allclose(jitad.jvp(square, (x,), (np.ones(2),))[1], 3.0 * x)


@jitad.custom_jvp
def erf_times(x, y):
    return untraced_erf(x) * y


@erf_times.defjvp
def erf_times_jvp(primals, tangents):  # calls SciPy: jitad cannot trace this rule
    (x, y), (tx, ty) = primals, tangents
    return erf_times(x, y), TWO_OVER_SQRT_PI * np.exp(-x ** 2) * tx * y + untraced_erf(x) * ty


@jitad.custom_jvp
def erf_jvp_traceable(x):
    return untraced_erf(x)


@erf_jvp_traceable.defjvp
def erf_jvp_traceable_rule(primals, tangents):
    (x,), (t,) = primals, tangents
    return erf_jvp_traceable(x), TWO_OVER_SQRT_PI * np.exp(-x ** 2) * t


def test_custom_jvp_with_an_untraceable_rule(rng):
    x, y = rng.standard_normal(3), rng.standard_normal(3)
    jitad.check_grads(lambda x, y: erf_times(x, y) ** 2, (x, y))
    np.testing.assert_allclose(jitad.grad(lambda x, y: np.sum(erf_times(x, y)), argnums=1)(x, y),
                               untraced_erf(x))
    with pytest.raises(jitad.NonDifferentiableError, match="`erf_times`"):
        jitad.grad(jitad.grad(lambda x: np.sum(erf_times(x, y))))(0.3)


def test_custom_jvp_of_an_untraceable_function_with_a_traceable_rule(rng):
    x = rng.standard_normal(4)
    jitad.check_grads(lambda x: np.sum(erf_jvp_traceable(x) * x), (x,), order=2)


# --- checkpoint ----------------------------------------------------------------------------
def _network(layer_fn, weights, x, depth=3):
    for _ in range(depth):
        x = layer_fn(weights, x)
    return np.sum(x ** 2)


def _layer(weights, x):
    return np.tanh(weights @ x + np.sin(x))


def test_checkpoint_gives_the_same_values_and_derivatives(rng):
    weights, x = rng.standard_normal((3, 3)), rng.standard_normal(3)
    checkpointed = jitad.checkpoint(_layer)

    def closure(weights, x):  # closes over the traced weights
        layer = jitad.checkpoint(lambda h: _layer(weights, h))
        return _network(lambda w, h: layer(h), weights, x)

    def plain(weights, x):
        return _network(_layer, weights, x)

    for fun in (lambda w, x: _network(checkpointed, w, x), closure):
        value, grads = jitad.value_and_grad(fun, argnums=(0, 1))(weights, x)
        expected_value, expected_grads = jitad.value_and_grad(plain, argnums=(0, 1))(weights, x)
        np.testing.assert_allclose(value, expected_value)
        for got, want in zip(grads, expected_grads):
            np.testing.assert_allclose(got, want, rtol=1e-12)
        np.testing.assert_allclose(jitad.jvp(fun, (weights, x), (weights, x))[1],
                                   jitad.jvp(plain, (weights, x), (weights, x))[1], rtol=1e-12)
    jitad.check_grads(closure, (weights, x), order=2)
    np.testing.assert_allclose(checkpointed(weights, x), _layer(weights, x))  # plain arrays
    g32 = jitad.grad(lambda x: _network(checkpointed, weights.astype(np.float32), x))(x.astype(np.float32))
    assert g32.dtype == np.float32


def _adjoint_graph(fun, n=3):
    """The traced graph of (value, gradient) of `fun`, before and after the passes."""
    aval = [((n,), np.dtype(np.float64))]
    graph, _ = trace(lambda x: [fun(x)], aval)

    def value_and_gradient(x):
        outs, (grads,) = vjp_values(graph, [x], [[np.ones(())]], [0])
        return outs + grads

    adjoint, _ = trace(value_and_gradient, aval)
    return adjoint, optimize(adjoint)


def _count(graph, name):
    return sum(node.prim.name == name for node in graph.nodes)


def test_checkpoint_recomputes_its_inside_in_the_adjoint():
    inside = lambda x: np.sin(np.cos(x))  # noqa: E731
    layer = jitad.checkpoint(inside)
    stored, _ = _adjoint_graph(lambda x: np.sum(inside(x)))
    assert _count(stored, "cos") == 2  # cos(x) once, and cos(cos(x)) in the adjoint of sin
    for graph in _adjoint_graph(lambda x: np.sum(layer(x))):
        barriers = [node for node in graph.nodes if node.prim.name == "checkpoint_barrier"]
        assert len(barriers) == 1
        recomputed = [node for node in graph.nodes if node.prim.name == "cos" and node.inputs[0] is barriers[0]]
        assert len(recomputed) == 1  # cos(barrier(x)): the forward cos(x) is not reused
        assert _count(graph, "cos") == 3 and _count(graph, "sin") == 2
    assert not any(node.prim.kind == "alias" for node in graph.nodes)  # the passes drop the aliases


def test_compiled_path_equals_the_reference(rng):
    """Aliases and barriers through the Numba backend, and a graph with a callback (run by NumPy)."""
    layer = jitad.checkpoint(lambda x: np.tanh(np.sin(x) * 1.5))

    def traceable(x):
        return np.sum(log1pexp(layer(x)) * x)

    def with_callback(x):
        return np.sum(erf(x) * log1pexp(layer(x)))

    def forward(x):
        return log1pexp(layer(x)) * x

    def run(x):
        return [jitad.value_and_grad(traceable)(x), jitad.value_and_grad(with_callback)(x),
                jitad.jvp(forward, (x,), (np.ones(5),))]

    x = rng.standard_normal(5)
    reference = run(x)
    jitad.config.backend = "numba"  # the fixture restores the reference backend afterwards
    for got, want in zip(run(x), reference):
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
