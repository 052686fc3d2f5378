"""Jacobians in every mode, the mode scheduler, Hessians, HVPs, Hutchinson, the modes script.

Most tests run on the reference executor (no Numba compile per graph); the ones marked
by the `compiled` fixture run the default compiled backend on a few small graphs.
"""
import csv

import numpy as np
import optree
import pytest

import jitad

pytestmark = pytest.mark.usefixtures("reference_backend")

MODES = ("forward", "reverse", "mixed", "auto")


@pytest.fixture
def compiled(reference_backend):
    """Undo the module's reference backend (set up first): this test runs compiled kernels."""
    saved = jitad.config.backend
    jitad.config.backend = "numba"
    yield
    jitad.config.backend = saved


def numerical_jacobian(f, x, eps=1e-6):
    """Central differences, (m, n) for flat x and flat f(x)."""
    x = np.asarray(x, float)
    cols = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = eps
        plus = np.ravel(f((x.ravel() + e).reshape(x.shape)))
        minus = np.ravel(f((x.ravel() - e).reshape(x.shape)))
        cols.append((plus - minus) / (2 * eps))
    return np.stack(cols, axis=1)


def all_modes(f, *args, argnums=0):
    return {mode: jitad.jacobian(f, argnums, mode=mode)(*args) for mode in MODES}


# --- agreement between modes and with finite differences --------------------------------------
def test_linear_map_is_its_matrix(rng):
    A = rng.standard_normal((5, 4))
    x = rng.standard_normal(4)
    for mode, J in all_modes(lambda x: A @ x, x).items():
        np.testing.assert_allclose(J, A, atol=1e-14, err_msg=mode)
    np.testing.assert_allclose(jitad.jacfwd(lambda x: A @ x)(x), A, atol=1e-14)
    np.testing.assert_allclose(jitad.jacrev(lambda x: A @ x)(x), A, atol=1e-14)


@pytest.mark.parametrize("name", ["tanh_affine", "mixed_ops", "matrix_in_out"])
def test_nonlinear_maps_agree_with_finite_differences(name, rng):
    A = rng.standard_normal((6, 5))
    funs = {
        "tanh_affine": (lambda x: np.tanh(A @ x + 0.5), rng.standard_normal(5)),
        "mixed_ops": (lambda x: np.array([x[0] * x[1] + np.sin(x[0]), np.sum(np.exp(x) / (1 + x ** 2)),
                                          np.prod(x[:3]), np.max(x * x)]), rng.standard_normal(5)),
        "matrix_in_out": (lambda X: np.tanh(X.T @ X)[:, :2] * 2.0, rng.standard_normal((4, 3))),
    }
    f, x = funs[name]
    out = np.asarray(f(x))
    expected = numerical_jacobian(f, x).reshape(out.shape + x.shape)
    for mode, J in all_modes(f, x).items():
        assert J.shape == out.shape + x.shape, mode
        np.testing.assert_allclose(J, expected, rtol=1e-6, atol=1e-7, err_msg=mode)


def test_pytree_inputs_and_outputs_nest_like_jax(rng):
    x = {"w": rng.standard_normal((2, 3)), "b": rng.standard_normal(2)}
    y = rng.standard_normal(3)

    def f(params, y):
        z = params["w"] @ y + params["b"]
        return {"z": np.tanh(z), "s": (np.sum(z ** 2), y * 2.0)}

    J = {mode: jitad.jacobian(f, argnums=(0, 1), mode=mode)(x, y) for mode in MODES}
    ref = J["forward"]
    # structure: output tree outside, the argnums tuple and each argument's tree inside
    assert set(ref) == {"z", "s"}
    assert isinstance(ref["z"], tuple) and set(ref["z"][0]) == {"w", "b"}
    assert ref["z"][0]["w"].shape == (2, 2, 3) and ref["z"][0]["b"].shape == (2, 2)
    assert ref["z"][1].shape == (2, 3)
    assert ref["s"][0][0]["w"].shape == (2, 3) and ref["s"][1][1].shape == (3, 3)
    for mode in MODES:
        for a, b in zip(optree.tree_leaves(J[mode]), optree.tree_leaves(ref)):
            np.testing.assert_allclose(a, b, atol=1e-12, err_msg=mode)
    # against finite differences, one block per (output leaf, input leaf)
    def dz_dw(w):
        return f({"w": w, "b": x["b"]}, y)["z"]

    def dsum_dy(v):
        return f(x, v)["s"][0]
    np.testing.assert_allclose(ref["z"][0]["w"], numerical_jacobian(dz_dw, x["w"]).reshape(2, 2, 3), atol=1e-7)
    np.testing.assert_allclose(ref["s"][0][1], numerical_jacobian(dsum_dy, y).reshape(3), atol=1e-6)
    np.testing.assert_allclose(ref["s"][1][1], 2.0 * np.eye(3))
    np.testing.assert_allclose(ref["s"][1][0]["w"], np.zeros((3, 2, 3)))


def test_single_argnum_among_several_and_scalars():
    f = lambda a, b: np.array([a * b, a + b ** 2])  # noqa: E731
    np.testing.assert_allclose(jitad.jacfwd(f, argnums=1)(2.0, 3.0), [2.0, 6.0])
    J = jitad.jacrev(lambda a, b: a * b, argnums=(0, 1))(2.0, 3.0)
    assert J == (3.0, 2.0) and all(np.ndim(j) == 0 for j in J)
    d = jitad.jacfwd(np.sin)(0.5)
    assert np.ndim(d) == 0 and d == pytest.approx(np.cos(0.5))


def test_float32_stays_float32(rng):
    x = rng.standard_normal(3).astype(np.float32)
    for mode in MODES:
        J = jitad.jacobian(lambda x: np.sin(x) * 2, mode=mode)(x)
        assert J.dtype == np.float32, mode
        np.testing.assert_allclose(J, np.diag(2 * np.cos(x)), rtol=1e-6)


def test_integer_output_and_bad_mode_are_errors():
    with pytest.raises(jitad.NonDifferentiableError, match="float outputs"):
        jitad.jacfwd(lambda x: (x > 0).astype(np.int64))(np.ones(3))
    with pytest.raises(ValueError, match="mode"):
        jitad.jacobian(np.sin, mode="sideways")


def test_chunking_covers_every_column(rng):
    A = rng.standard_normal((7, 23))  # 23 directions in chunks of 5: the last chunk is padded
    x = rng.standard_normal(23)
    for J in (jitad.jacfwd(lambda x: A @ np.sin(x), chunk_size=5)(x),
              jitad.jacrev(lambda x: (A @ np.sin(x)), chunk_size=3)(x)):
        np.testing.assert_allclose(J, A * np.cos(x), atol=1e-13)
    plan = jitad.jacfwd(lambda x: A @ x, chunk_size=5).plan(x)
    assert (plan.chunk_size, plan.num_sweeps) == (5, 5)


def test_one_sweep_batches_all_directions_and_owns_its_result(rng):
    A = rng.standard_normal((40, 30))
    x = rng.standard_normal(30)
    for jac, directions in ((jitad.jacfwd, 30), (jitad.jacrev, 40)):
        J = jac(lambda x: A @ x)
        plan = jitad.jacobian(lambda x: A @ x, mode="forward" if jac is jitad.jacfwd else "reverse").plan(x)
        assert (plan.chunk_size, plan.num_sweeps) == (directions, 1)
        first = J(x)
        np.testing.assert_array_equal(first, A)
        first[0, 0] = 99.0  # J of A @ x is the constant A: the caller gets a copy of its own
        assert J(x)[0, 0] == A[0, 0]


def test_batched_sweeps_through_a_primitive_without_a_batching_rule(rng):
    # solve has no batching rule: the sweep unrolls it, and the chunk stays small
    M = rng.standard_normal((4, 4)) + 4 * np.eye(4)
    x = rng.standard_normal(4)
    f = lambda x: np.tanh(np.linalg.solve(M + np.diag(x ** 2), x))  # noqa: E731
    expected = numerical_jacobian(f, x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(jitad.jacobian(f, mode=mode)(x), expected, rtol=1e-6, atol=1e-8)
    assert jitad.jacobian(f).plan(x).chunk_size <= jitad.schedule.UNROLLED_CHUNK


# --- the scheduler ---------------------------------------------------------------------------
def test_plan_picks_forward_for_wide_outputs():
    plan = jitad.jacobian(lambda x: np.sin(np.concatenate([x] * 700)) * np.arange(2100) / 2100)\
        .plan(np.ones(3))
    assert plan.mode == "forward" and (plan.n_in, plan.n_out) == (3, 2100)
    assert plan.costs["forward"] < plan.costs["reverse"]


def test_plan_picks_reverse_for_wide_inputs(rng):
    A = rng.standard_normal((3, 2000))
    plan = jitad.jacobian(lambda x: np.tanh(A @ x)).plan(rng.standard_normal(2000))
    assert plan.mode == "reverse"
    assert plan.costs["reverse"] < plan.costs["forward"]


def test_plan_picks_mixed_for_a_bottleneck_and_gets_it_right(rng):
    n = 1000
    B = rng.standard_normal((2, n))
    C = rng.standard_normal((n, 2))
    x = rng.standard_normal(n)

    def f(x):
        return np.tanh(C @ (B @ x))

    J = jitad.jacobian(f)
    plan = J.plan(x)
    assert plan.mode == "mixed" and plan.cut_size == 2
    assert plan.num_sweeps == 1 and plan.costs["mixed"] < min(plan.costs["forward"], plan.costs["reverse"])
    text = repr(plan)
    for word in ("forward", "reverse", "mixed", "chosen", "cut of size 2"):
        assert word in text
    expected = (1 - np.tanh(C @ B @ x) ** 2)[:, None] * (C @ B)
    np.testing.assert_allclose(J(x), expected, atol=1e-12)


def test_forced_mixed_mode_on_a_graph_without_a_waist(rng):
    # the cut is the whole input (or output): mixed mode still gives the right Jacobian
    x = rng.standard_normal(4)
    f = lambda x: np.exp(x) * np.sum(x)  # noqa: E731
    np.testing.assert_allclose(jitad.jacobian(f, mode="mixed")(x), numerical_jacobian(f, x), atol=1e-7)
    # an output that does not depend on the input: the cut is empty and J is exactly 0
    g = lambda x: np.ones(3) * 2.0  # noqa: E731
    np.testing.assert_array_equal(jitad.jacobian(g, mode="mixed")(x), np.zeros((3, 4)))


def test_mixed_mode_with_two_inputs_and_a_partial_cut(rng):
    # the narrowest cut holds an input itself (a, size 2) and a reduction of b (size 1)
    a, b = rng.standard_normal(2), rng.standard_normal(50)
    f = lambda a, b: np.outer(np.tanh(a), np.ones(40)).ravel() * np.sum(b ** 2)  # noqa: E731
    J = jitad.jacobian(f, argnums=(0, 1), mode="mixed")
    assert J.plan(a, b).cut_size == 3
    Ja, Jb = J(a, b)
    np.testing.assert_allclose(Ja, numerical_jacobian(lambda v: f(v, b), a), atol=1e-6)
    np.testing.assert_allclose(Jb, numerical_jacobian(lambda v: f(a, v), b), atol=1e-6)


# --- Hessians and higher order -------------------------------------------------------------------
def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_hessian(x):
    n = x.size
    H = np.zeros((n, n))
    i = np.arange(n - 1)
    H[i, i] += 1200 * x[:-1] ** 2 - 400 * x[1:] + 2
    H[i + 1, i + 1] += 200
    H[i, i + 1] = H[i + 1, i] = -400 * x[:-1]
    return H


def test_hessian_of_cubed_norm(rng):
    x = rng.standard_normal(4)
    r = np.linalg.norm(x)
    H = jitad.hessian(lambda x: np.linalg.norm(x) ** 3 / 3)(x)
    np.testing.assert_allclose(H, np.outer(x, x) / r + r * np.eye(4), rtol=1e-12)


def test_hessian_of_rosenbrock(rng):
    x = rng.standard_normal(6)
    np.testing.assert_allclose(jitad.hessian(rosenbrock)(x), rosenbrock_hessian(x), rtol=1e-12)
    np.testing.assert_allclose(jitad.jacfwd(jitad.jacrev(rosenbrock))(x), rosenbrock_hessian(x), rtol=1e-12)
    np.testing.assert_allclose(jitad.jacrev(jitad.jacrev(rosenbrock))(x), rosenbrock_hessian(x), rtol=1e-12)


def test_hessian_of_two_arguments_nests_blocks():
    f = lambda x, y: np.sum(x ** 2) * y ** 3  # noqa: E731
    x, y = np.array([1.0, 2.0]), 1.5
    (hxx, hxy), (hyx, hyy) = jitad.hessian(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(hxx, 2 * y ** 3 * np.eye(2))
    np.testing.assert_allclose(hxy, 6 * x * y ** 2)
    np.testing.assert_allclose(hyx, 6 * x * y ** 2)
    np.testing.assert_allclose(hyy, 6 * np.sum(x ** 2) * y)


def test_hvp_and_user_written_hvp_equal_hessian_times_v(rng):
    x, v = rng.standard_normal(5), rng.standard_normal(5)
    Hv = jitad.hessian(rosenbrock)(x) @ v
    np.testing.assert_allclose(jitad.hvp(rosenbrock, (x,), (v,)), Hv, rtol=1e-12)
    by_hand = jitad.grad(lambda x: np.vdot(jitad.grad(rosenbrock)(x), v))(x)  # v closed over
    np.testing.assert_allclose(by_hand, Hv, rtol=1e-12)


def test_hvp_after_jvp_of_the_same_function():
    # grad(f) wraps f: its compiled transforms must not be f's (they once were: hvp == jvp)
    f = lambda x: np.sum(x ** 3)  # noqa: E731
    x, v = np.array([1.0, 2.0]), np.array([1.0, 0.0])
    assert jitad.jvp(f, (x,), (v,)) == (9.0, 3.0)
    np.testing.assert_allclose(jitad.hvp(f, (x,), (v,)), [6.0, 0.0])
    assert jitad.jvp(f, (x,), (v,)) == (9.0, 3.0)


def test_hvp_hessian_and_hutchinson_do_not_retrace(rng):
    f = lambda x: np.sum(x ** 3)  # noqa: E731
    x, v = rng.standard_normal(10), rng.standard_normal(10)
    calls = (lambda: jitad.hvp(f, (x,), (v,)), lambda: jitad.hessian(f)(x),
             lambda: jitad.hutchinson_trace(f, x, num_samples=4, seed=0))
    for call in calls:
        call()
        before = jitad.cache_info()["traces"]
        call()
        assert jitad.cache_info()["traces"] == before
    np.testing.assert_allclose(jitad.hvp(f, (x,), (v,)), 6 * x * v, rtol=1e-12)


def test_grad_of_grad_and_third_order():
    f = lambda x: x ** 4  # noqa: E731
    assert jitad.grad(jitad.grad(f))(2.0) == pytest.approx(48.0)
    assert jitad.grad(jitad.grad(jitad.grad(f)))(2.0) == pytest.approx(48.0)
    third = jitad.jacfwd(jitad.hessian(lambda x: np.sum(x ** 3)))(np.array([1.0, 2.0]))
    expected = np.zeros((2, 2, 2))
    expected[0, 0, 0], expected[1, 1, 1] = 6.0, 6.0
    np.testing.assert_allclose(third, expected)


def test_transforms_of_jacobians_compose(rng):
    x = rng.standard_normal(3)
    f = lambda x: np.sin(x) * np.sum(x ** 2)  # noqa: E731

    def frobenius(x):
        return np.sum(jitad.jacfwd(f)(x) ** 2)
    g = jitad.grad(frobenius)(x)
    eps = 1e-6
    numerical = [(frobenius(x + eps * e) - frobenius(x - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(g, numerical, rtol=1e-6)
    # a Jacobian of a closure over a traced value, inside grad
    assert jitad.grad(lambda a: np.sum(jitad.jacrev(lambda y: a * np.sin(y))(x)))(2.0) == \
        pytest.approx(np.sum(np.cos(x)))
    # mixed mode inside grad equals forward mode inside grad
    B, C = rng.standard_normal((2, 12)), rng.standard_normal((12, 2))
    y = rng.standard_normal(12)
    by_mode = [jitad.grad(lambda y: np.sum(jitad.jacobian(lambda z: np.tanh(C @ (B @ z)), mode=mode)(y) ** 2))(y)
               for mode in ("mixed", "forward")]
    np.testing.assert_allclose(*by_mode, rtol=1e-12)


# --- Hutchinson ----------------------------------------------------------------------------------
def test_hutchinson_trace_of_a_quadratic(rng):
    M = rng.standard_normal((20, 20))
    A = M @ M.T / 20 + np.diag(rng.uniform(0.5, 2.0, 20))

    def quadratic(x):
        return 0.5 * x @ A @ x

    x = rng.standard_normal(20)
    estimate, stderr = jitad.hutchinson_trace(quadratic, x, num_samples=200, seed=1, return_stderr=True)
    assert isinstance(estimate, float) and stderr > 0
    assert abs(estimate - np.trace(A)) < 3 * stderr
    assert jitad.hutchinson_trace(quadratic, x, num_samples=200, seed=1) == estimate
    assert jitad.hutchinson_trace(quadratic, x, num_samples=200, seed=2) != estimate
    # Rademacher probes of a diagonal Hessian are exact
    D = np.diag([1.0, 2.0, 3.0])
    assert jitad.hutchinson_trace(lambda x: 0.5 * x @ D @ x, np.ones(3), num_samples=5, seed=0) == 6.0


# --- the compiled backend ---------------------------------------------------------------------------
@pytest.mark.usefixtures("compiled")
def test_compiled_modes_agree(rng):
    A = rng.standard_normal((12, 2))
    B = rng.standard_normal((2, 10))
    x = rng.standard_normal(10)
    f = lambda x: np.tanh(A @ (B @ np.sin(x)))  # noqa: E731
    expected = numerical_jacobian(f, x)
    for mode in ("forward", "reverse", "mixed"):
        J = jitad.jacobian(f, mode=mode, chunk_size=4)
        np.testing.assert_allclose(J(x), expected, atol=1e-7, err_msg=mode)
        np.testing.assert_allclose(J(x + 1.0), numerical_jacobian(f, x + 1.0), atol=1e-7, err_msg=mode)
    assert jitad.config.backend == "numba"


@pytest.mark.usefixtures("compiled")
def test_compiled_hessian_hvp_hutchinson(rng):
    x, v = rng.standard_normal(5), rng.standard_normal(5)
    H = jitad.hessian(rosenbrock)(x)
    np.testing.assert_allclose(H, rosenbrock_hessian(x), rtol=1e-12)
    np.testing.assert_allclose(jitad.hvp(rosenbrock, (x,), (v,)), H @ v, rtol=1e-12)
    estimate, stderr = jitad.hutchinson_trace(rosenbrock, x, num_samples=16, seed=0, return_stderr=True)
    assert abs(estimate - np.trace(H)) < 4 * stderr + 1e-9


@pytest.mark.usefixtures("compiled")
def test_compiled_hvp_fast_path(rng, monkeypatch):
    """After a call on float arrays, hvp goes straight to the kernel that served it (no transform
    lookup, no signature): the same values, fresh arrays, and the slow path for anything else."""
    f = lambda a, b: np.sum(a ** 3 * b) + np.sum(np.sin(a))  # noqa: E731
    a, b, va, vb = (rng.standard_normal(6) for _ in range(4))
    expected = (6 * a * b * va - np.sin(a) * va + 3 * a ** 2 * vb, 3 * a ** 2 * va)
    slow = []
    run_jvp = jitad.api._run_jvp
    monkeypatch.setattr(jitad.api, "_run_jvp", lambda *args, **kw: slow.append(1) or run_jvp(*args, **kw))
    for call in range(3):
        out = jitad.hvp(f, (a, b), (va, vb))
        np.testing.assert_allclose(out, expected, rtol=1e-12)
        assert not any(np.shares_memory(o, x) for o in out for x in (a, b, va, vb))
    assert len(slow) == 1  # the first call alone took the transform's path
    # a float32 tangent of a float64 primal, other shapes, a Python float: the slow path, right values
    np.testing.assert_allclose(jitad.hvp(f, (a, b), (va.astype(np.float32), vb))[1], 3 * a ** 2 * va.astype(np.float32),
                               rtol=1e-6)
    np.testing.assert_allclose(jitad.hvp(f, (a[:3], b[:3]), (va[:3], vb[:3]))[1], 3 * a[:3] ** 2 * va[:3], rtol=1e-12)
    assert jitad.hvp(lambda x: x ** 3, (2.0,), (1.0,)) == pytest.approx(12.0)
    assert len(slow) == 4
    jitad.config.backend = "reference"  # the fast path is kept per settings
    try:
        np.testing.assert_allclose(jitad.hvp(f, (a, b), (va, vb))[1], expected[1], rtol=1e-12)
    finally:
        jitad.config.backend = "numba"
    assert len(slow) == 5


@pytest.mark.usefixtures("compiled")
def test_compiled_jacobian_fast_path(rng, monkeypatch):
    """After a call on float arrays whose Jacobian is one sweep, jacobian / hessian go straight to the
    kernel that served it: the same values, a fresh C-contiguous array each call, and the slow path
    for other shapes and settings and after a variable the trace read is rebound."""
    from jitad.staging import Transform
    A = rng.standard_normal((5, 4))
    s = 2.0

    def f(x):
        return np.tanh(A @ x) * s

    def g(x):
        return np.sum(x ** 3) * np.sum(np.sin(x))
    x = rng.standard_normal(4)
    jacobian = lambda x, s: (1 - np.tanh(A @ x) ** 2)[:, None] * A * s  # noqa: E731
    jitad.config.backend = "reference"
    expected_h = jitad.hessian(g)(x)
    jitad.config.backend = "numba"
    slow = []
    run = Transform.run
    monkeypatch.setattr(Transform, "run", lambda self, *a, **k: slow.append(1) or run(self, *a, **k))
    J, H = jitad.jacobian(f), jitad.hessian(g)
    outs = []
    for call in range(3):
        outs.append(J(x))
        np.testing.assert_allclose(outs[-1], jacobian(x, 2.0), rtol=1e-12)
        np.testing.assert_allclose(H(x), expected_h, rtol=1e-12)
        assert outs[-1].flags.c_contiguous and not np.shares_memory(outs[-1], x)
    assert len(slow) == 3  # the first calls alone took the transforms' path (hessian's: two, jacrev's too)
    assert not np.shares_memory(outs[0], outs[1])
    outs[1][:] = 0.0  # the caller's array: the next call does not see it
    np.testing.assert_allclose(J(x), jacobian(x, 2.0), rtol=1e-12)
    s = 3.0  # rebound: the fast path's check fails, the transform traces again
    np.testing.assert_allclose(J(x), jacobian(x, 3.0), rtol=1e-12)
    y = rng.standard_normal(4)
    np.testing.assert_allclose(J(y), jacobian(y, 3.0), rtol=1e-12)
    np.testing.assert_allclose(J(y[:4:2].repeat(2)), jacobian(y[:4:2].repeat(2), 3.0), rtol=1e-12)
    assert len(slow) == 4  # (new values of the same shape: the kernel directly)
    np.testing.assert_allclose(J(x.astype(np.float32)), jacobian(x, 3.0), rtol=1e-5)
    assert len(slow) == 5
    jitad.config.backend = "reference"  # the fast path is kept per settings
    try:
        np.testing.assert_allclose(J(x), jacobian(x, 3.0), rtol=1e-12)
    finally:
        jitad.config.backend = "numba"
    assert len(slow) == 6


# --- the mode comparison script -------------------------------------------------------------------
def test_modes_script_quick_run_writes_csv_and_png(tmp_path, capsys):
    from jitad.tools.modes import main
    assert main(["--quick", "--out", str(tmp_path), "--repeats", "1"]) == 0
    with open(tmp_path / "jacobian_modes.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["mode"] for r in rows} == {"forward", "reverse", "mixed", "auto"}
    assert {r["function"] for r in rows} >= {"A x", "tanh(A x)", "bottleneck"}
    assert all(float(r["median_s"]) > 0 for r in rows)
    # the quick sizes (n, m <= 100) fit in one batched sweep of forward or reverse, so mixed mode
    # does not pay there; test_plan_picks_mixed_for_a_bottleneck covers the larger case
    assert {r["auto_choice"] for r in rows if r["function"] == "bottleneck"} <= {"forward", "reverse", "mixed"}
    png = tmp_path / "jacobian_modes.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "auto" in capsys.readouterr().out
