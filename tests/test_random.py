"""Random draws inside differentiated functions happen at call time (issue 8, item 5).

Every expected value is computed with plain NumPy from the same seed: jitad must draw the
same numbers, from the same generator, in the same order, and leave it in the same state.
"""
import warnings

import numpy as np
import pytest

import jitad
from jitad.frontend.rng import RandomDrawError, RandomRetraceWarning
from numpy.random import randn as aliased_randn  # bound before tracing (jitad swaps the name, too)

X = np.array([0.5, -1.0, 2.0])
GLOBAL_GEN = np.random.default_rng(11)
GLOBAL_RS = np.random.RandomState(12)


def _legacy_state():
    return np.random.get_state(legacy=False)


def _same_state(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


# --- the example ------------------------------------------------------------------------------
def test_legacy_draws_are_fresh_each_call_and_equal_numpy(reference_backend):
    def f(x):
        eps = np.random.randn(3)
        return np.sum((x + eps) ** 2)

    g = jitad.grad(f)
    np.random.seed(0)
    first, second = g(X), g(X)
    after = _legacy_state()

    np.random.seed(0)
    eps1, eps2 = np.random.randn(3), np.random.randn(3)
    np.testing.assert_array_equal(first, 2 * (X + eps1))
    np.testing.assert_array_equal(second, 2 * (X + eps2))
    assert not np.allclose(first, second)
    assert _same_state(after, _legacy_state())  # the global state advanced exactly as NumPy's


def test_draws_of_several_legacy_functions_in_order(reference_backend):
    def f(x):
        a = np.random.rand(3)
        b = np.random.uniform(-1.0, 1.0, size=3)
        c = np.random.standard_normal(3)
        k = np.random.randint(0, 3)
        p = np.random.permutation(3)
        n = np.random.binomial(10, 0.3, size=3)
        return np.sum(x * a * b + c * x[p] + n) + x[k]

    vg = jitad.value_and_grad(f)
    np.random.seed(3)
    results = [vg(X) for _ in range(3)]
    after = _legacy_state()
    np.random.seed(3)
    for value, grad in results:
        a, b, c = np.random.rand(3), np.random.uniform(-1.0, 1.0, size=3), np.random.standard_normal(3)
        k, p, n = np.random.randint(0, 3), np.random.permutation(3), np.random.binomial(10, 0.3, size=3)
        np.testing.assert_allclose(value, np.sum(X * a * b + c * X[p] + n) + X[k], rtol=1e-12)
        expected = a * b
        np.add.at(expected, p, c)
        expected[k] += 1.0
        np.testing.assert_allclose(grad, expected, rtol=1e-12)
    assert _same_state(after, _legacy_state())


# --- generators in closures, globals, arguments, created inside ----------------------------------------
def _closure_over(gen):
    def f(x):
        if isinstance(gen, np.random.Generator):
            noise = gen.normal(size=3)
        else:
            noise = gen.randn(3)
        return np.sum(x * noise) + gen.uniform()
    return f


def _reference_draws(gen):
    noise = gen.normal(size=3) if isinstance(gen, np.random.Generator) else gen.randn(3)
    return noise, gen.uniform()


@pytest.mark.parametrize("make", [lambda: np.random.default_rng(5), lambda: np.random.RandomState(5)],
                         ids=["Generator", "RandomState"])
def test_generator_in_closure(reference_backend, make):
    gen = make()
    vg = jitad.value_and_grad(_closure_over(gen))
    results = [vg(X) for _ in range(3)]
    ref = make()
    for value, grad in results:
        noise, u = _reference_draws(ref)
        np.testing.assert_array_equal(grad, noise)
        np.testing.assert_allclose(value, np.sum(X * noise) + u, rtol=1e-12)
    state = gen.bit_generator.state if isinstance(gen, np.random.Generator) else gen.get_state(legacy=False)
    ref_state = ref.bit_generator.state if isinstance(ref, np.random.Generator) else ref.get_state(legacy=False)
    assert _same_state(state, ref_state)


def _uses_globals(x):
    return np.sum(x * GLOBAL_GEN.standard_normal(3)) + np.sum(x * GLOBAL_RS.randn(3))


def test_generators_in_module_globals_and_rebinding(reference_backend):
    global GLOBAL_GEN, GLOBAL_RS
    g = jitad.grad(_uses_globals)
    GLOBAL_GEN, GLOBAL_RS = np.random.default_rng(1), np.random.RandomState(2)
    first, second = g(X), g(X)
    ref_gen, ref_rs = np.random.default_rng(1), np.random.RandomState(2)
    np.testing.assert_array_equal(first, ref_gen.standard_normal(3) + ref_rs.randn(3))
    np.testing.assert_array_equal(second, ref_gen.standard_normal(3) + ref_rs.randn(3))
    assert GLOBAL_GEN.bit_generator.state == ref_gen.bit_generator.state
    # rebinding the global to a freshly seeded generator draws from the new one, as NumPy would
    GLOBAL_GEN, GLOBAL_RS = np.random.default_rng(1), np.random.RandomState(2)
    again = g(X)
    np.testing.assert_array_equal(again, first)
    assert isinstance(GLOBAL_GEN, np.random.Generator) and type(GLOBAL_GEN) is np.random.Generator


def test_generator_argument_is_drawn_from_at_call_time(reference_backend):
    def f(x, gen):
        return np.sum(x * gen.random(3))

    g = jitad.grad(f)
    before = jitad.cache_info()["traces"]
    for seed in (4, 9, 4):
        gen = np.random.default_rng(seed)
        np.testing.assert_array_equal(g(X, gen), np.random.default_rng(seed).random(3))
        ref = np.random.default_rng(seed)
        ref.random(3)
        assert gen.bit_generator.state == ref.bit_generator.state
    assert jitad.cache_info()["traces"] == before + 1  # a new generator does not retrace


class _Model:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def loss(self, w):
        return np.sum(w * self.rng.normal(size=3))


def test_generator_attribute_of_self_and_of_an_argument(reference_backend):
    model, other = _Model(3), _Model(4)
    by_method = jitad.grad(model.loss)
    by_argument = jitad.grad(lambda w, m: np.sum(w * m.rng.normal(size=3)))
    got = [by_method(X), by_argument(X, model), by_argument(X, other), by_method(X)]
    ref, ref_other = np.random.default_rng(3), np.random.default_rng(4)
    expected = [ref.normal(size=3), ref.normal(size=3), ref_other.normal(size=3), ref.normal(size=3)]
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    assert type(model.rng) is np.random.Generator


def test_generators_created_inside_are_deterministic_like_numpy(reference_backend):
    def f(x):
        a = np.random.default_rng(0).normal(size=3)
        b = np.random.RandomState(1).randn(3)
        c = np.random.Generator(np.random.PCG64(2)).random(3)
        return np.sum(x * (a + b + c))

    g = jitad.grad(f)
    expected = (np.random.default_rng(0).normal(size=3) + np.random.RandomState(1).randn(3)
                + np.random.Generator(np.random.PCG64(2)).random(3))
    before = _legacy_state()
    for _ in range(3):
        np.testing.assert_array_equal(g(X), expected)
    assert _same_state(before, _legacy_state())


def test_seed_inside_the_function(reference_backend):
    def f(x):
        np.random.seed(42)
        return np.sum(x * np.random.randn(3))

    g = jitad.grad(f)
    np.random.seed(0)
    np.testing.assert_array_equal(g(X), g(X))
    after = _legacy_state()
    np.random.seed(42)
    expected = np.random.randn(3)
    np.testing.assert_array_equal(g(X), expected)
    assert _same_state(after, _legacy_state())


# --- reparameterised draws ----------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["generator", "legacy"])
@pytest.mark.parametrize("method,params", [
    ("normal", (np.array([0.1, -0.2, 0.3]), np.array([[0.5], [2.0]]))),
    ("uniform", (np.array([-1.0, 0.0, 1.0]), np.array([[2.0], [3.0]]))),
    ("exponential", (np.array([[0.5, 1.0, 2.0], [1.5, 2.5, 3.5]]),)),
    ("lognormal", (np.array([0.1, 0.2, 0.3]), np.array([[0.2], [0.4]]))),
])
def test_traced_parameters_draw_numpys_numbers(reference_backend, api, method, params):
    """With traced parameters the draw is rewritten (loc + scale * standard_normal, ...) and still
    gives NumPy's numbers: NumPy computes these draws exactly so, from the same stream."""
    def draw(gen, *ps):
        return getattr(gen, method)(*ps)

    if api == "generator":
        f = jitad.jit(lambda *ps: draw(GEN, *ps))
        make = lambda: np.random.default_rng(21)  # noqa: E731
    else:
        f = jitad.jit(lambda *ps: draw(np.random, *ps))
        make = lambda: np.random.seed(21)  # noqa: E731
    global GEN
    GEN = make()
    out = f(*params), f(*params)
    ref = make() or np.random
    for o in out:
        np.testing.assert_allclose(o, draw(ref, *params), rtol=1e-14, atol=0)


GEN = None


def test_reparameterised_gradient_matches_finite_differences(reference_backend):
    def loss(mu, sigma, gen):
        z = gen.normal(mu, sigma, size=(5, 3))
        lo = gen.uniform(mu, mu + sigma, size=3)
        e = gen.exponential(sigma, size=3)
        w = gen.lognormal(0.1 * mu, 0.5)
        return np.sum(np.sin(z)) + np.sum(lo ** 2) + np.sum(e) * np.sum(w)

    mu, sigma = np.array([0.3, -0.4, 1.2]), 0.7
    g_mu, g_sigma = jitad.grad(loss, argnums=(0, 1))(mu, sigma, np.random.default_rng(3))

    def numeric(mu, sigma):
        return loss(mu, sigma, np.random.default_rng(3))

    h = 1e-6
    fd_mu = np.array([(numeric(mu + h * e, sigma) - numeric(mu - h * e, sigma)) / (2 * h) for e in np.eye(3)])
    fd_sigma = (numeric(mu, sigma + h) - numeric(mu, sigma - h)) / (2 * h)
    np.testing.assert_allclose(g_mu, fd_mu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g_sigma, fd_sigma, rtol=1e-6)


def test_choice_and_permutation_of_a_traced_array(reference_backend):
    def f(x, gen):
        return np.sum(gen.choice(x, 5) * gen.permutation(x)[:1]) + np.sum(gen.choice(x, 2, replace=False) ** 2)

    x = np.array([1.0, 2.0, 3.0, 4.0])
    value, grad = jitad.value_and_grad(f)(x, np.random.default_rng(8))
    ref = np.random.default_rng(8)
    c, p, d = ref.choice(4, 5), ref.permutation(4), ref.choice(4, 2, replace=False)
    np.testing.assert_allclose(value, np.sum(x[c] * x[p][:1]) + np.sum(x[d] ** 2))
    expected = np.zeros(4)
    np.add.at(expected, c, x[p][0])
    expected[p[0]] += np.sum(x[c])
    np.add.at(expected, d, 2 * x[d])
    np.testing.assert_allclose(grad, expected)


def test_unsupported_traced_parameter_raises_named_error(reference_backend):
    gen = np.random.default_rng(0)

    def f(k):
        return np.sum(gen.gamma(k, size=3))

    state = gen.bit_generator.state
    with pytest.raises(RandomDrawError, match=r"gen\.gamma.*traced `shape`") as info:
        jitad.grad(f)(2.0)
    assert isinstance(info.value, jitad.UnsupportedOperationError)
    assert "pass them in as an argument" in str(info.value)
    assert gen.bit_generator.state == state  # a failed trace draws nothing


def test_draw_inside_custom_vjp_raises(reference_backend):
    @jitad.custom_vjp
    def noisy(x):
        return x * np.random.randn()
    noisy.defvjp(lambda x: (noisy(x), None), lambda r, g: (g,))

    with pytest.raises(RandomDrawError, match="custom_vjp function `noisy`"):
        jitad.grad(lambda x: noisy(x))(1.0)


# --- transforms -------------------------------------------------------------------------------------------
def _noisy(x):
    return x * np.random.randn(3) + np.random.rand()


def test_jit_jvp_vjp(reference_backend):
    np.random.seed(1)
    out_jit = jitad.jit(_noisy)(X)
    out_jvp, tangent = jitad.jvp(_noisy, (X,), (np.ones(3),))
    out_vjp, vjp_fn = jitad.vjp(_noisy, X)
    cotangent = vjp_fn(np.ones(3))[0]
    np.random.seed(1)
    draws = [(np.random.randn(3), np.random.rand()) for _ in range(3)]
    np.testing.assert_array_equal(out_jit, X * draws[0][0] + draws[0][1])
    np.testing.assert_array_equal(out_jvp, X * draws[1][0] + draws[1][1])
    np.testing.assert_array_equal(tangent, draws[1][0])
    np.testing.assert_array_equal(out_vjp, X * draws[2][0] + draws[2][1])
    np.testing.assert_array_equal(cotangent, draws[2][0])  # the backward pass used the forward's draws
    np.random.rand()
    after = _legacy_state()
    np.random.seed(1)
    [(np.random.randn(3), np.random.rand()) for _ in range(3)]
    np.random.rand()
    assert _same_state(after, _legacy_state())  # vjp_fn drew nothing


def test_jacobian_sweeps_share_one_set_of_draws(reference_backend):
    np.random.seed(2)
    J = jitad.jacfwd(_noisy, chunk_size=1)(X)  # three sweeps
    Jr = jitad.jacrev(_noisy, chunk_size=2)(X)
    np.random.seed(2)
    d1 = np.random.randn(3)
    np.random.rand()
    d2 = np.random.randn(3)
    np.testing.assert_array_equal(J, np.diag(d1))
    np.testing.assert_array_equal(Jr, np.diag(d2))


def test_hessian_and_grad_of_grad(reference_backend):
    def f(x):
        return np.sum(x ** 3 * np.random.randn(3))

    np.random.seed(4)
    H = jitad.hessian(f)(X)
    gg = jitad.grad(lambda x: np.sum(jitad.grad(f)(x) ** 2))(X)
    np.random.seed(4)
    a, b = np.random.randn(3), np.random.randn(3)
    np.testing.assert_allclose(H, np.diag(6 * X * a))
    # d/dx sum((3 x^2 b)^2) = 36 x^3 b^2
    np.testing.assert_allclose(gg, 36 * X ** 3 * b ** 2)


# --- what cannot be recorded falls back to tracing per call, never to frozen numbers ----------------------
def test_legacy_function_imported_before_tracing(reference_backend):
    def f(x):
        return np.sum(x * aliased_randn(3))

    g = jitad.grad(f)
    np.random.seed(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recorded, not traced per call
        first, second = g(X), g(X)
    after = _legacy_state()
    np.random.seed(6)
    np.testing.assert_array_equal(first, np.random.randn(3))
    np.testing.assert_array_equal(second, np.random.randn(3))
    assert _same_state(after, _legacy_state())


def test_a_library_drawing_from_the_global_state_is_traced_per_call(reference_backend):
    stats = pytest.importorskip("scipy.stats")

    def f(x):
        return np.sum(x * stats.norm.rvs(size=3))  # SciPy draws from np.random.mtrand._rand itself

    g = jitad.grad(f)
    np.random.seed(6)
    with pytest.warns(RandomRetraceWarning, match="again on every call"):
        first = g(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomRetraceWarning)  # warned once
        second = g(X)
    after = _legacy_state()
    np.random.seed(6)
    np.testing.assert_array_equal(first, np.random.standard_normal(3))
    np.testing.assert_array_equal(second, np.random.standard_normal(3))
    assert _same_state(after, _legacy_state())


GENERATORS = [np.random.default_rng(0)]


def test_a_generator_in_a_list_is_traced_per_call(reference_backend):
    def f(x):
        return np.sum(x * GENERATORS[0].normal(size=3))

    GENERATORS[0] = np.random.default_rng(13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomRetraceWarning)
        g = jitad.grad(f)
        first, second = g(X), g(X)
    ref = np.random.default_rng(13)
    np.testing.assert_array_equal(first, ref.normal(size=3))
    np.testing.assert_array_equal(second, ref.normal(size=3))
    assert GENERATORS[0].bit_generator.state == ref.bit_generator.state


def test_python_control_flow_on_a_draw(reference_backend):
    def f(x):
        if np.random.rand() < 0.5:
            return np.sum(2.0 * x)
        return np.sum(3.0 * x)

    g = jitad.grad(f)
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomRetraceWarning)
        got = [g(X)[0] for _ in range(8)]
    np.random.seed(0)
    assert got == [2.0 if np.random.rand() < 0.5 else 3.0 for _ in range(8)]


def test_compiled_kernel_draws_each_call():
    saved = jitad.config.compile
    jitad.config.compile = "eager"
    try:
        def f(x):
            eps = np.random.randn(3)
            idx = np.random.choice(3, 2)
            return np.sum((x + eps) ** 2) + np.sum(x[idx] * np.random.normal(x[0], 2.0))

        g = jitad.grad(f)
        before = jitad.cache_info()["traces"]
        np.random.seed(0)
        got = [g(X) for _ in range(4)]
        assert jitad.cache_info()["traces"] == before + 1
        # a function without draws gets its fast path; one that draws never skips its draws
        plain, drawing = jitad.value_and_grad(lambda x: np.sum(x ** 2)), jitad.value_and_grad(f)
        for _ in range(2):
            plain(X), drawing(X)
        assert plain._jitad_fast and not drawing._jitad_fast
        np.random.seed(0)
        for grad in got:
            eps, idx, z = np.random.randn(3), np.random.choice(3, 2), np.random.standard_normal()
            n = X[0] + 2.0 * z
            expected = 2 * (X + eps)
            np.add.at(expected, idx, n)
            expected[0] += np.sum(X[idx])
            np.testing.assert_allclose(grad, expected, rtol=1e-12)
    finally:
        jitad.config.compile = saved
