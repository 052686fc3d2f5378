"""jitad.fori_loop, jitad.scan and jitad.while_loop against the same loops unrolled in Python:
values on every executor (reference, NumPy tier, compiled, plain arrays), forward and reverse
mode at order 1 and 2, Jacobians and Hessians through loops, the compiled loop staying a loop,
and the errors of a body that changes its carry."""
import warnings

import numpy as np
import pytest

import jitad
from jitad.frontend.loops import LoopCarryError

RNG = np.random.default_rng(0)
W = RNG.normal(size=(3, 3)) * 0.5
U = RNG.normal(size=(3, 2))
XS = RNG.normal(size=(5, 2))
ZS = RNG.normal(size=(5,))


@pytest.fixture
def backend():
    """Restore jitad.config after a test that switches executors."""
    saved = jitad.config.backend, jitad.config.compile
    yield
    jitad.config.backend, jitad.config.compile = saved


def _executors():
    """(name, setup) for the reference executor, the NumPy tier and the compiled kernel."""
    def reference():
        jitad.config.backend = "reference"

    def numpy_tier():
        jitad.config.backend, jitad.config.compile = "numba", "off"

    def compiled():
        jitad.config.backend, jitad.config.compile = "numba", "eager"
    return [("reference", reference), ("numpy", numpy_tier), ("compiled", compiled)]


# --- the programs: each as a loop primitive and unrolled -----------------------------------
def rnn_scan(w, b, h0):
    """Tuple carry (h, acc), xs of two arrays, closed-over differentiated w and b, ys stacked."""
    def step(carry, x):
        h, acc = carry
        xt, z = x
        h = np.tanh(w @ h + U @ xt + b * z)
        return (h, acc + np.sum(h ** 2)), h * z
    (h, acc), ys = jitad.scan(step, (h0, 0.0), (XS, ZS))
    return np.sum(h) + acc + np.sum(ys ** 2)


def rnn_unrolled(w, b, h0):
    h, acc, ys = h0, 0.0, []
    for t in range(len(XS)):
        h = np.tanh(w @ h + U @ XS[t] + b * ZS[t])
        acc = acc + np.sum(h ** 2)
        ys.append(h * ZS[t])
    return np.sum(h) + acc + np.sum(np.stack(ys) ** 2)


def reverse_scan(w, b, h0):
    h, ys = jitad.scan(lambda h, x: (np.sin(h * w[0] + x[0]) + b, np.cos(h) * x[1]), h0, XS, reverse=True)
    return np.sum(h * ys[1]) + np.sum(ys ** 2)


def reverse_unrolled(w, b, h0):
    h, ys = h0, [None] * len(XS)
    for t in reversed(range(len(XS))):
        ys[t] = np.cos(h) * XS[t][1]
        h = np.sin(h * w[0] + XS[t][0]) + b
    ys = np.stack(ys)
    return np.sum(h * ys[1]) + np.sum(ys ** 2)


def fori(w, b, h0):
    """fori_loop with a tuple carry holding an integer counter and the loop index in the body."""
    def body(i, carry):
        h, k = carry
        return np.tanh(w @ h + b * i) * 1.1, k + 1
    h, k = jitad.fori_loop(2, 6, body, (h0, 0))
    return np.sum(h ** 3) * k


def fori_unrolled(w, b, h0):
    h, k = h0, 0
    for i in range(2, 6):
        h, k = np.tanh(w @ h + b * i) * 1.1, k + 1
    return np.sum(h ** 3) * k


ARGS = (W, RNG.normal(size=3), RNG.normal(size=3))
PAIRS = [(rnn_scan, rnn_unrolled), (reverse_scan, reverse_unrolled), (fori, fori_unrolled)]


# --- 1. values ------------------------------------------------------------------------------
def test_plain_arrays_just_run_the_loop():
    for looped, unrolled in PAIRS:
        np.testing.assert_allclose(looped(*ARGS), unrolled(*ARGS), rtol=1e-12)
    assert jitad.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] * 2.0), (0, 1.0)) == (5, 32.0)
    carry, ys = jitad.scan(lambda c, x: (c + x, c * x), 0.0, np.arange(4.0))
    assert carry == 6.0 and np.array_equal(ys, [0.0, 0.0, 2.0, 9.0])


def test_values_and_gradients_on_every_executor(backend):
    """Values, gradients and second derivatives (hessian) of the three loops on the reference
    executor, the NumPy tier and compiled, against the unrolled loops on the reference executor."""
    jitad.config.backend = "reference"
    expected = [(unrolled(*ARGS), jitad.grad(unrolled, argnums=(0, 1, 2))(*ARGS),
                 jitad.hessian(unrolled, argnums=1)(*ARGS)) for _, unrolled in PAIRS]
    def each(*args):  # the three programs in one function, each on its own copy of the arguments:
        return tuple(looped(*args[3 * j:3 * j + 3]) for j, (looped, _) in enumerate(PAIRS))

    def total(*args):  # ... and summed: the gradient with respect to copy j is program j's alone
        return sum(each(*args))
    for name, setup in _executors():
        setup()
        if name == "compiled":  # one kernel for the three values, one for the three gradients (compiles cost seconds)
            values, grads = jitad.jit(each)(*ARGS * 3), jitad.grad(total, argnums=tuple(range(9)))(*ARGS * 3)
            for j, (looped, _) in enumerate(PAIRS):
                np.testing.assert_allclose(values[j], expected[j][0], rtol=1e-12, err_msg=f"{name} {looped.__name__}")
                for e, g in zip(expected[j][1], grads[3 * j:3 * j + 3]):
                    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12, err_msg=f"{name} {looped.__name__}")
            continue  # compiled second order: a smaller program below
        for (looped, _), (value, grads, hess) in zip(PAIRS, expected):
            np.testing.assert_allclose(jitad.jit(looped)(*ARGS), value, rtol=1e-12, err_msg=name)
            for e, g in zip(grads, jitad.grad(looped, argnums=(0, 1, 2))(*ARGS)):
                np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12, err_msg=f"{name} {looped.__name__}")
            np.testing.assert_allclose(jitad.hessian(looped, argnums=1)(*ARGS), hess, rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} {looped.__name__}")
    power = lambda x: jitad.fori_loop(0, 3, lambda i, c: np.sin(c) * x + i, x)  # noqa: E731
    jitad.config.backend = "reference"
    expected = jitad.grad(jitad.grad(power))(0.7), jitad.hessian(power)(np.float64(0.7))
    _executors()[2][1]()
    np.testing.assert_allclose(jitad.grad(jitad.grad(power))(0.7), expected[0], rtol=1e-12)
    np.testing.assert_allclose(jitad.hessian(power)(np.float64(0.7)), expected[1], rtol=1e-12)
    reference_value = expected[0]
    jitad.config.backend = "reference"
    h = 1e-5
    fd = (jitad.grad(power)(0.7 + h) - jitad.grad(power)(0.7 - h)) / (2 * h)
    np.testing.assert_allclose(reference_value, fd, rtol=1e-6)


# --- 2. forward and reverse mode, order 1 and 2 (reference executor) ------------------------
def test_jvp_matches_unrolled(reference_backend):
    tangents = tuple(RNG.normal(size=np.shape(a)) for a in ARGS)
    for looped, unrolled in PAIRS:
        out, t = jitad.jvp(looped, ARGS, tangents)
        out_u, t_u = jitad.jvp(unrolled, ARGS, tangents)
        np.testing.assert_allclose(out, out_u, rtol=1e-12)
        np.testing.assert_allclose(t, t_u, rtol=1e-10)


def test_grad_of_grad_and_hvp(reference_backend):
    for looped, unrolled in PAIRS:
        def inner(f):
            return lambda w, b, h0: np.sum(jitad.grad(f, argnums=2)(w, b, h0) ** 2)
        for argnums in (0, 1):
            np.testing.assert_allclose(jitad.grad(inner(looped), argnums=argnums)(*ARGS),
                                       jitad.grad(inner(unrolled), argnums=argnums)(*ARGS), rtol=1e-9, atol=1e-12)
        v = RNG.normal(size=3)
        for got, expected in zip(jitad.hvp(looped, ARGS, (W, v, v)), jitad.hvp(unrolled, ARGS, (W, v, v))):
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_jacobians_through_a_scan(reference_backend):
    def states(h0):
        _, hs = jitad.scan(lambda h, x: (np.tanh(W @ h + U @ x), h * 2.0), h0, XS)
        return hs.ravel()

    def unrolled(h0):
        h, hs = h0, []
        for x in XS:
            hs.append(h * 2.0)
            h = np.tanh(W @ h + U @ x)
        return np.stack(hs).ravel()
    h0 = ARGS[2]
    for jac in (jitad.jacfwd, jitad.jacrev, jitad.jacobian):
        np.testing.assert_allclose(jac(states)(h0), jac(unrolled)(h0), rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences(reference_backend):
    eps, b = 1e-6, ARGS[1]
    g = jitad.grad(rnn_scan, argnums=1)(*ARGS)
    for k in range(3):
        e = np.zeros(3)
        e[k] = eps
        fd = (rnn_scan(W, b + e, ARGS[2]) - rnn_scan(W, b - e, ARGS[2])) / (2 * eps)
        np.testing.assert_allclose(g[k], fd, rtol=1e-6)


# --- 3. while_loop --------------------------------------------------------------------------
def newton_sqrt(a, x0):
    """Newton's method for sqrt(a), run to convergence: a data-dependent trip count."""
    def cond(state):
        x, k = state
        return (np.abs(x * x - a) > 1e-12) & (k < 100)

    def body(state):
        x, k = state
        return 0.5 * (x + a / x), k + 1
    x, _ = jitad.while_loop(cond, body, (x0, 0))
    return x


def taylor_exp(x):
    """exp(x) as its Taylor series summed while the term matters; the carry holds an int counter."""
    def cond(state):
        return np.abs(state[1]) > 1e-16

    def body(state):
        total, term, n = state
        return total + term, term * x / (n + 1), n + 1
    total, _, _ = jitad.while_loop(cond, body, (0.0, 1.0 + 0.0 * x, 0))
    return total


def test_while_values_and_derivatives(backend):
    for name, setup in _executors():
        setup()
        for a in (2.0, 9.0):
            np.testing.assert_allclose(jitad.jit(newton_sqrt)(a, 1.0), np.sqrt(a), rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(jitad.grad(newton_sqrt)(a, 1.0), 0.5 / np.sqrt(a), rtol=1e-8, err_msg=name)
        np.testing.assert_allclose(jitad.grad(taylor_exp)(0.7), np.exp(0.7), rtol=1e-12, err_msg=name)
    # forward mode: a while loop over (carry, tangent)
    jitad.config.backend = "reference"
    value, tangent = jitad.jvp(taylor_exp, (0.7,), (2.0,))
    np.testing.assert_allclose([value, tangent], [np.exp(0.7), 2.0 * np.exp(0.7)], rtol=1e-12)
    np.testing.assert_allclose(jitad.jacfwd(newton_sqrt)(4.0, 1.0), 0.25, rtol=1e-8)


def test_while_reverse_mode_matches_unrolled(reference_backend):
    """Closed-over differentiated values, a vector carry: grad with respect to the closure."""
    def f(w, h0):
        h, _ = jitad.while_loop(lambda c: c[1] < 4, lambda c: (np.tanh(w @ c[0]) + 0.1, c[1] + 1), (h0, 0))
        return np.sum(h ** 2)

    def unrolled(w, h0):
        h = h0
        for _ in range(4):
            h = np.tanh(w @ h) + 0.1
        return np.sum(h ** 2)
    for argnums in (0, 1):
        np.testing.assert_allclose(jitad.grad(f, argnums=argnums)(W, ARGS[2]),
                                   jitad.grad(unrolled, argnums=argnums)(W, ARGS[2]), rtol=1e-10)


def test_jacobians_through_a_while_loop(reference_backend):
    """jacfwd batches the tangents through one while loop (its condition is the same for all of
    them); jacrev runs the reverse pass per cotangent."""
    def f(a):
        return jitad.while_loop(lambda c: c[1] < 4, lambda c: (np.tanh(W @ c[0] + a), c[1] + 1), (np.zeros(3), 0))[0]

    def unrolled(a):
        h = np.zeros(3)
        for _ in range(4):
            h = np.tanh(W @ h + a)
        return h
    a = np.array([0.1, -0.2, 0.3])
    expected = jitad.jacfwd(unrolled)(a)
    np.testing.assert_allclose(jitad.jacfwd(f)(a), expected, rtol=1e-12)
    np.testing.assert_allclose(jitad.jacrev(f)(a), expected, rtol=1e-12)
    graph = jitad.explain(jitad.jacfwd(f), a, print_report=False).optimized
    assert sum(node.prim.name == "while" for node in graph.nodes) == 1


def test_second_order_through_while_raises(reference_backend):
    with pytest.raises(jitad.NonDifferentiableError, match="while_loop"):
        jitad.hessian(taylor_exp)(0.7)
    with pytest.raises(jitad.NonDifferentiableError, match="while_loop"):
        jitad.grad(jitad.grad(taylor_exp))(0.7)


def test_fori_loop_with_traced_bounds_is_a_while_loop(reference_backend):
    def f(x, n):
        return jitad.fori_loop(0, n, lambda i, c: c * x, 1.0)
    np.testing.assert_allclose(jitad.jit(f)(1.5, np.int64(3)), 1.5 ** 3)
    np.testing.assert_allclose(jitad.grad(f)(1.5, np.int64(3)), 3 * 1.5 ** 2)


# --- 4. compiled: a loop stays a loop --------------------------------------------------------
def _kernel_lines(steps):
    f = jitad.jit(lambda h: jitad.fori_loop(0, steps, lambda i, c: np.tanh(W @ c) + 0.5, h))
    report = jitad.explain(f, ARGS[2], print_report=False)
    return report.source, f(ARGS[2])


def test_compiled_kernel_size_does_not_depend_on_trip_count(backend):
    jitad.config.backend, jitad.config.compile = "numba", "eager"
    source10, _ = _kernel_lines(10)
    source1000, value = _kernel_lines(1000)
    assert len(source10.splitlines()) == len(source1000.splitlines())
    assert "for " in source1000 and "range(1000)" in source1000
    h = ARGS[2]
    for _ in range(1000):
        h = np.tanh(W @ h) + 0.5
    np.testing.assert_allclose(value, h, rtol=1e-12)


def test_reverse_mode_is_a_loop_too(reference_backend):
    """The gradient's graph of a 10-step and of a 1,000-step scan have the same size: the forward
    pass and its adjoint are scan nodes, not unrolled steps."""
    def size(n):
        xs = np.ones((n, 3)) * 0.1
        f = lambda w: np.sum(jitad.scan(lambda h, x: (np.tanh(w @ h + x), h), np.zeros(3), xs)[1])  # noqa: E731
        graph = jitad.explain(jitad.grad(f), W, print_report=False).optimized
        return len(graph.nodes), sum(node.prim.name == "scan" for node in graph.nodes)
    small = size(10)
    assert small == size(1000) and small[1] == 2  # the forward scan (stacking its carries) and the adjoint


def test_nested_loops(backend):
    """A fori_loop inside a fori_loop's body closing over a differentiated value, on the reference
    executor and compiled (the inner body's constant becomes an argument of the kernel)."""
    a = RNG.normal(size=(4, 4)) * 0.3
    x = np.linspace(0.1, 0.4, 4)

    def nested(x):
        return np.sum(jitad.fori_loop(0, 4, lambda i, c: jitad.fori_loop(0, 3, lambda j, d: np.sin(a @ d) + x * j, c), x))

    def unrolled(x):
        c = x
        for _ in range(4):
            for j in range(3):
                c = np.sin(a @ c) + x * j
        return np.sum(c)
    jitad.config.backend = "reference"
    expected = unrolled(x), jitad.grad(unrolled)(x)
    for name, setup in _executors()[::2]:
        setup()
        np.testing.assert_allclose(jitad.jit(nested)(x), expected[0], rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(jitad.grad(nested)(x), expected[1], rtol=1e-10, err_msg=name)


def test_split_form_loads_the_loop_body_as_a_kernel_module():
    """A graph large enough for the split form (a plain-Python driver) loads the compiled body from
    the disk cache (`load_kernel`), where Numba can cache it, instead of defining it in exec'd code."""
    from jitad.backend import codegen

    def f(x):
        return np.sum(jitad.fori_loop(0, 5, lambda i, c: np.cos(c) + x, x))
    graph = jitad.value_and_grad(f).jitad_transform.prepare((np.ones(4),)).optimized
    split = codegen.generate_split(graph)
    assert "\nsubkernel_" in split.source and "= load_kernel(" in split.source
    assert "for " in split.source and "range(5)" in split.source


# --- 6. errors ----------------------------------------------------------------------------
def test_body_changing_the_carry_is_a_named_error():
    f_shape = jitad.jit(lambda x: jitad.fori_loop(0, 3, lambda i, c: (c[0], np.stack([c[1], c[1]])), (x, x)))
    with pytest.raises(jitad.ShapeError, match=r"carry\[1\] of shape \(2, 3\)"):
        f_shape(np.ones(3))
    f_dtype = jitad.jit(lambda x: jitad.scan(lambda c, z: (c.astype(np.float32), z), x, np.ones(3)))
    with pytest.raises(LoopCarryError, match="float32"):
        f_dtype(np.ones(2))
    f_tree = jitad.jit(lambda x: jitad.while_loop(lambda c: c[0] < 3.0, lambda c: c[0], (x,)))
    with pytest.raises(LoopCarryError, match="structure"):
        f_tree(1.0)
    with pytest.raises(LoopCarryError, match="boolean scalar"):
        jitad.jit(lambda x: jitad.while_loop(lambda c: c, lambda c: c + 1.0, x))(1.0)


def test_loop_body_calling_back_into_python(backend):
    """A body with an untraceable custom_vjp (a Python callback) runs on the NumPy executor; a
    compiled loop cannot call it, so with compile="eager" the whole graph runs on the NumPy
    executor too (counted as a reference fallback), with the same values."""
    import scipy.special

    def untraced_erf(x):  # erf through SciPy's chdtr, which jitad does not implement
        return np.sign(x) * scipy.special.chdtr(1.0, 2.0 * x * x)

    @jitad.custom_vjp
    def erf(x):
        return untraced_erf(x)
    # a bwd rule jitad cannot trace either (a traceable one is inlined into the graph and compiles)
    erf.defvjp(lambda x: (erf(x), x),
               lambda x, g: (g * 2 / np.sqrt(np.pi) * np.exp(-x ** 2 - 0.0 * untraced_erf(x)),))

    def f(x):
        return np.sum(jitad.scan(lambda c, z: (erf(c) + z, c), x, np.ones(3))[0])

    def unrolled(x):
        c = x
        for _ in range(3):
            c = erf(c) + 1.0
        return np.sum(c)
    x = np.ones(2) * 0.3
    jitad.config.backend, jitad.config.compile = "numba", "off"
    np.testing.assert_allclose(jitad.grad(f)(x), jitad.grad(unrolled)(x), rtol=1e-12)
    jitad.config.compile = "eager"
    before = jitad.cache_info()["reference_fallbacks"]
    np.testing.assert_allclose(jitad.grad(f)(x), jitad.grad(unrolled)(x), rtol=1e-12)
    assert jitad.cache_info()["reference_fallbacks"] > before


def test_compiled_checkpointed_reverse_pass_reads_rows_and_lends_sums(backend):
    """A reverse scan under a budget of 3 levels of checkpoints, compiled, against "store" on the
    reference executor: its segments read their rows of the xs and of the ys' cotangents at a traced
    start (views), the cotangents of the xs are stacked, and the running sums of two consts' (w, b)
    cotangents are lent from level to level. Same gradients up to rounding."""
    from jitad.primitives import control
    n, hidden = 40, 4
    xs, w, b = RNG.normal(size=(n, hidden + 1)), RNG.normal(size=(hidden, hidden)) * 0.5, RNG.normal(size=hidden)

    def f(w, b, xs, h0):
        def step(h, x):
            h = np.tanh(w @ h + x[:hidden] * b + x[hidden])
            return h, np.sum(h * x[:hidden])
        h, ys = jitad.scan(step, h0, xs, reverse=True)
        return np.sum(h) + np.sum(ys ** 2)
    count = 9  # carries held: w @ h is stored with each stored step's carry
    budget = count * 2 * hidden * 8
    schedule = control.plan(n, count)
    assert schedule[1] is not None or schedule[2] is not None  # 3 levels
    args = (w, b, xs, np.linspace(-0.5, 0.5, hidden))
    jitad.config.backend = "reference"
    expected = jitad.grad(f, argnums=(0, 1, 2, 3), memory="store")(*args)
    jitad.config.backend, jitad.config.compile = "numba", "eager"
    grad = jitad.grad(f, argnums=(0, 1, 2, 3), memory=budget)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the straight-line part's values exceed the budget
        source = jitad.explain(grad, *args, print_report=False).source
        assert "take" not in source and "dynamic_slice" in source and "the array the loop updated in place" in source
        for got, want in zip(grad(*args), expected):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
