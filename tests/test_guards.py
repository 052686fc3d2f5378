"""Python control flow on traced values (`if`, `while`, `and`/`or`, bool(), int(), float()):
guarded specialisation (jitad.frontend.guards). Each call's path is checked against the
path its trace assumed; a different path is traced and compiled for itself."""
import numpy as np
import pytest

import jitad
from jitad.backend.cache import STATS

THIS_FILE = __file__.rsplit("/", 1)[-1]


def piecewise(x):
    if x > 0.0:
        return np.sin(x) * x
    return x ** 3 - x


def piecewise_grad(x):
    return np.sin(x) + x * np.cos(x) if x > 0 else 3 * x * x - 1


def exp_series(x):
    """exp(x) by its Taylor series, summed while the terms matter: the trip count depends on x."""
    term = total = x * 0.0 + 1.0
    n = 0
    while abs(term) > 1e-15 * abs(total):
        n += 1
        term = term * x / n
        total = total + term
    return total


def newton_sqrt(a):
    x = a
    for _ in range(60):
        x_next = 0.5 * (x + a / x)
        if np.abs(x_next - x) <= 1e-15 * np.abs(x):
            return x_next
        x = x_next
    return x


def branchy_vector(x):
    s = np.sum(x)
    if s > 0 and np.max(x) < 5.0:
        return np.sum(np.tanh(x) * x)
    elif s > 0 or np.min(x) > -10.0:
        return np.sum(x ** 2)
    return np.sum(np.exp(x))


def _fd(fun, x, eps=1e-6):
    x = np.asarray(x, float)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (fun(x + d) - fun(x - d)) / (2 * eps)
    return g


@pytest.fixture(params=["reference", "numpy-tier"])
def tier(request):
    saved = jitad.config.backend, jitad.config.compile
    if request.param == "reference":
        jitad.config.backend = "reference"
    else:
        jitad.config.compile = "off"
    yield request.param
    jitad.config.backend, jitad.config.compile = saved


def test_piecewise_both_sides_of_the_kink(tier):
    g = jitad.grad(piecewise)
    for x in [0.7, -0.3, 1e-9, -1e-9, 2.5, -2.5, 0.7]:
        assert g(x) == pytest.approx(piecewise_grad(x), rel=1e-12, abs=1e-15)


def test_series_with_a_data_dependent_trip_count(tier):
    vg = jitad.value_and_grad(exp_series)
    for x in [0.5, 3.0, -1.5, 0.5, 10.0]:
        value, grad = vg(x)
        assert value == pytest.approx(np.exp(x), rel=1e-13)
        assert grad == pytest.approx(np.exp(x), rel=1e-12)


def test_newton_iteration_for_a_square_root(tier):
    vg = jitad.value_and_grad(newton_sqrt)
    for a in [2.0, 9.0, 0.01, 2.0]:
        value, grad = vg(a)
        assert value == pytest.approx(np.sqrt(a), rel=1e-14)
        assert grad == pytest.approx(0.5 / np.sqrt(a), rel=1e-10)


def test_elif_and_boolean_operators_against_finite_differences(tier):
    g = jitad.grad(branchy_vector)
    for x in [np.array([0.5, 1.0, -0.2]), np.array([0.5, 7.0, -0.2]), np.array([-3.0, -1.0, -0.5]),
              np.array([-30.0, 1.0, 2.0])]:
        np.testing.assert_allclose(g(x), _fd(branchy_vector, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("which", ["autograd"])
def test_against_autograd(which, tier):
    ag = pytest.importorskip("autograd")
    anp = pytest.importorskip("autograd.numpy")

    def model(w, x):  # autograd's own `if` example shape: a branch on a computed value
        h = anp.tanh(anp.dot(x, w))
        if anp.sum(h) > 0:
            return anp.sum(h ** 2)
        return anp.sum(anp.abs(h))

    def model_np(w, x):
        h = np.tanh(np.dot(x, w))
        if np.sum(h) > 0:
            return np.sum(h ** 2)
        return np.sum(np.abs(h))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 3))
    for w in [rng.normal(size=3), -np.ones(3), np.ones(3)]:
        np.testing.assert_allclose(jitad.grad(model_np)(w, x), ag.grad(model)(w, x), rtol=1e-12, atol=1e-14)


def test_paths_are_specialised_and_counted(tier):
    def f(x):
        return np.sum(x * 2.0) if np.sum(x) > 0 else np.sum(x * 3.0)
    g = jitad.grad(f)
    before = STATS["traces"]
    for _ in range(3):
        np.testing.assert_array_equal(g(np.ones(3)), 2.0)
        np.testing.assert_array_equal(g(-np.ones(3)), 3.0)
    assert STATS["traces"] - before == 2  # one trace per path, then each call finds its path
    variants = g.jitad_transform.variants
    assert [len(v) for v in variants.values()] == [2]


def test_too_many_paths_is_a_named_error(tier, monkeypatch):
    monkeypatch.setattr(jitad.config, "specializations", 3)

    def doubling(x):
        while x < 100.0:
            x = x * 2.0
        return x
    g = jitad.grad(doubling)
    assert [g(v) for v in (60.0, 30.0, 15.0)] == [2.0, 4.0, 8.0]
    with pytest.raises(jitad.SpecializationError) as info:
        g(1.0)
    message = str(info.value)
    assert f"{THIS_FILE}:" in message and "jitad.while_loop" in message and "np.where" in message
    assert g(30.0) == 4.0  # the paths traced before still serve


def test_forward_mode_jacobian_hessian_and_hvp_through_a_branch(tier):
    def f(x):
        if np.sum(x) > 0:
            return np.sin(x) * x[0]
        return x ** 2

    x = np.array([0.3, 0.9])
    for v in [x, -x]:
        jac = jitad.jacobian(f)(v)
        np.testing.assert_allclose(jac, np.stack([_fd(lambda z: f(z)[i], v) for i in range(2)]), rtol=1e-6)
        _, tangent = jitad.jvp(f, (v,), (np.array([1.0, 0.0]),))
        np.testing.assert_allclose(tangent, jac[:, 0], rtol=1e-12)

    def scalar(x):
        return np.sum(f(x))
    for v in [x, -x]:
        hess = jitad.hessian(scalar)(v)
        np.testing.assert_allclose(hess, np.stack([_fd(lambda z: jitad.grad(scalar)(z)[i], v) for i in range(2)]),
                                   rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(jitad.hvp(scalar, (v,), (np.ones(2),)), hess @ np.ones(2), rtol=1e-12)


def test_nested_transforms_carry_their_guards_outward(tier):
    inner = jitad.jit(piecewise)
    g = jitad.grad(lambda x: inner(x) * 2.0)
    for x in [0.7, -0.4, 0.7, -0.4]:
        assert g(x) == pytest.approx(2 * piecewise_grad(x), rel=1e-12)
    gg = jitad.grad(jitad.grad(piecewise))  # second order through the branch
    assert gg(0.7) == pytest.approx(2 * np.cos(0.7) - 0.7 * np.sin(0.7), rel=1e-12)
    assert gg(-0.4) == pytest.approx(6 * -0.4, rel=1e-12)


def test_integer_conversions_and_static_floats(tier):
    def head(x, n):
        k = int(np.sum(n))  # an integer: piecewise constant, derivative zero
        total = 0.0
        for i in range(k):
            total = total + x[i] ** 2
        return total
    g = jitad.grad(head)
    np.testing.assert_array_equal(g(np.arange(4.0), np.array([1, 1])), [0.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(g(np.arange(4.0), np.array([2, 1])), [0.0, 2.0, 4.0, 0.0])

    def scaled(x, scale):  # float() of an argument that is not differentiated is a constant
        return np.sum(x) * float(scale)
    assert jitad.grad(scaled)(np.ones(2), np.array(3.0)).tolist() == [3.0, 3.0]
    assert jitad.grad(scaled)(np.ones(2), np.array(5.0)).tolist() == [5.0, 5.0]


def test_allclose_and_array_equal_take_the_value(tier):
    def f(x):
        return np.sum(x ** 2) if np.allclose(x, 1.0) else np.sum(x ** 3)
    g = jitad.grad(f)
    np.testing.assert_allclose(g(np.ones(2)), [2.0, 2.0])
    np.testing.assert_allclose(g(np.full(2, 2.0)), [12.0, 12.0])


def test_truth_value_of_an_array_is_numpys_error(tier):
    with pytest.raises(ValueError, match="ambiguous"):
        jitad.grad(lambda x: np.sum(x) if x > 0 else 0.0)(np.ones(3))


def test_branch_on_a_random_draw_is_traced_with_each_calls_draws(tier):
    """A draw is made at call time, so its value is not known to a trace that draws inside the
    kernel: jitad traces such a function again on every call, with that call's draws."""
    def noisy(x, rng):
        if rng.normal() > 0:
            return x * 2.0
        return -x
    seeds = range(8)
    signs = [np.random.default_rng(s).normal() > 0 for s in seeds]
    assert len(set(signs)) == 2
    with pytest.warns(jitad.frontend.rng.RandomRetraceWarning):
        grads = [jitad.grad(noisy)(1.0, np.random.default_rng(s)) for s in seeds]
    assert grads == [2.0 if up else -1.0 for up in signs]


def test_compiled_kernels_check_their_guards():
    """Compiled (eager): the kernel of each path computes its guards; calls alternate paths."""
    def f(x):
        s = np.sum(x)
        if s > 0:
            return np.sum(np.sin(x) * x)
        return np.sum(x ** 3)
    g = jitad.grad(f)
    x = np.array([0.5, 1.0])
    for v in [x, -x, x, -x, 2 * x]:
        expected = np.sin(v) + v * np.cos(v) if v.sum() > 0 else 3 * v * v
        np.testing.assert_allclose(g(v), expected, rtol=1e-13)
    stage = g.jitad_transform.latest
    assert stage.tier.startswith("compiled") or "kernel" in stage.tier, stage.tier


def test_specializations_zero_is_strict(tier, monkeypatch):
    monkeypatch.setattr(jitad.config, "specializations", 0)
    with pytest.raises(jitad.ConcretizationError, match="specializations"):
        jitad.grad(lambda x: x if x > 0 else -x)(0.5)
    with pytest.raises(ValueError):
        jitad.config.specializations = -1


# --- shapes that depend on values: masks, nonzero, unique, bincount (guards on the mask) ------------
def _fd_at(fun, x, *rest, eps=1e-6):
    return np.array([(fun(x + eps * e, *rest) - fun(x - eps * e, *rest)) / (2 * eps) for e in np.eye(x.size)])


def per_class(x, labels):
    total = 0.0
    for k in np.unique(labels):
        total = total + np.sum(x[labels == k]) ** 2
    return total + np.sum(x[x > 0.1] ** 3) + np.sum(np.bincount(labels, weights=x) ** 2)


def masked_writes(x, labels):
    y = x.copy()
    y[x < 0] = x[x < 0] ** 2           # as many values as the mask selects
    z = np.zeros_like(x)
    np.add.at(z, labels > 0, 1.0)      # repeated positions of a mask: once each
    return np.sum(y * np.arange(x.size)) + np.sum(z * x)


def index_functions(x, labels):
    i = np.nonzero(x > 0)[0]
    j = np.flatnonzero(labels)
    k = np.argwhere(x < 0)[:, 0]
    return np.sum(x[i] * 3.0) + np.sum(x[j] ** 2) + np.sum(x[k] ** 3) + np.sum(x[np.where(labels == 2)] * x[0]) + \
        np.sum(np.compress(labels == 1, x) ** 2) + np.sum(np.extract(x > 0.5, np.sin(x)))


@pytest.mark.parametrize("fun", [per_class, masked_writes, index_functions])
def test_value_dependent_shapes_against_numpy_and_differences(fun, tier):
    rng = np.random.default_rng(3)
    g = jitad.value_and_grad(fun)
    for trial in range(4):
        x, labels = rng.normal(size=7), rng.integers(0, 3, size=7)
        if trial == 3:
            x = -np.abs(x)  # empty masks
        for _ in range(2):  # a new trace, then the call that checks its guards
            value, grad = g(x, labels)
            assert value == pytest.approx(fun(x, labels), rel=1e-13)
            np.testing.assert_allclose(grad, _fd_at(fun, x, labels), rtol=1e-6, atol=1e-7)


def test_index_functions_give_numpys_indices(tier):
    x = np.array([[0.0, 1.5, -2.0], [3.0, 0.0, 0.0]])
    got = jitad.jit(lambda x: (np.nonzero(x), x.nonzero(), np.argwhere(x), np.flatnonzero(x), np.where(x > 0),
                               np.argwhere(np.sum(x))))(x)
    expected = (np.nonzero(x), x.nonzero(), np.argwhere(x), np.flatnonzero(x), np.where(x > 0),
                np.argwhere(np.sum(x)))
    for a, b in zip(jitad.pytrees.tree_leaves(got), jitad.pytrees.tree_leaves(expected)):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype and a.shape == b.shape
    with pytest.raises(ValueError, match="0d"):
        jitad.jit(lambda x: np.nonzero(np.sum(x)))(x)


@pytest.mark.parametrize("values", [
    np.array([3, 1, 2, 3, 1, 0, 3]), np.array([2.5, np.nan, -1.0, 2.5, np.nan, 0.0]),
    np.array([[True, False], [True, True]]), np.array([0.5]), np.zeros((0,))])
def test_unique_is_numpys_with_every_option(values, tier):
    options = dict(return_index=True, return_inverse=True, return_counts=True)
    got = jitad.jit(lambda v: np.unique(v, **options))(values)
    for a, b in zip(got, np.unique(values, **options)):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(jitad.jit(np.unique)(values), np.unique(values))


def test_unique_differentiates_each_value_at_its_first_occurrence(tier):
    x = np.array([0.3, -1.0, 0.3, 2.0])

    def f(x):
        u = np.unique(x)
        return np.sum(u ** 2 * np.arange(1.0, u.size + 1))
    np.testing.assert_array_equal(jitad.grad(f)(x), [2 * 0.3 * 2, -2.0 * 1, 0.0, 4.0 * 3])
    y = np.array([0.2, -1.0, 0.3, 2.0])
    np.testing.assert_allclose(jitad.grad(f)(y), _fd_at(f, y), rtol=1e-7)


def test_a_new_mask_is_a_new_trace_and_the_same_mask_is_not(tier):
    def f(x, labels):
        return np.sum(x[labels == 1] ** 2) + np.sum(np.bincount(labels, weights=x))
    g = jitad.grad(f)
    x = np.arange(1.0, 6.0)
    before = STATS["traces"]
    g(x, np.array([0, 1, 1, 2, 0]))
    g(2 * x, np.array([0, 1, 1, 2, 0]))    # same mask, same largest label: no trace
    assert STATS["traces"] - before == 1
    np.testing.assert_array_equal(g(x, np.array([1, 1, 0, 2, 0])), [3.0, 5.0, 1.0, 1.0, 1.0])
    assert STATS["traces"] - before == 2   # another mask: its own trace
    np.testing.assert_array_equal(g(x, np.array([0, 1, 1, 2, 0])), [1.0, 5.0, 7.0, 1.0, 1.0])
    assert STATS["traces"] - before == 2   # the first mask's trace serves again
    # np.bincount reads only the largest label: the same mask, other labels, no trace
    np.testing.assert_array_equal(g(x, np.array([2, 1, 1, 0, 0])), [1.0, 5.0, 7.0, 1.0, 1.0])
    assert STATS["traces"] - before == 2


def test_a_mask_that_keeps_changing_is_a_named_error(tier, monkeypatch):
    monkeypatch.setattr(jitad.config, "specializations", 2)
    g = jitad.grad(lambda x: np.sum(x[x > 0] ** 2))
    g(np.array([1.0, -1.0]))
    g(np.array([-1.0, 1.0]))
    with pytest.raises(jitad.SpecializationError, match=r"boolean masks.*np\.where\(mask, x, 0\)") as info:
        g(np.array([1.0, 1.0]))
    assert f"{THIS_FILE}:" in str(info.value)


def test_value_dependent_shapes_inside_a_scan_body_say_why(tier):
    xs = np.array([[1.0, -2.0], [3.0, 4.0]])

    def f(w):
        return jitad.scan(lambda c, x: (c + np.sum((w * x)[x > 0]), None), 0.0, xs)[0]
    with pytest.raises(jitad.ConcretizationError, match=r"boolean mask.*np\.where"):
        jitad.grad(f)(1.5)
    with pytest.raises(IndexError):  # NumPy's own error for a mask of the wrong shape
        jitad.grad(lambda x: np.sum(x[np.ones(2) > 0]))(np.ones(3))
    with pytest.raises(IndexError):
        jitad.grad(lambda x: np.sum(x[x[:2] > 0]))(np.ones(3))
