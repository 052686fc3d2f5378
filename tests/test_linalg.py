"""Linear algebra: factorisation reuse, numerical safety, lecture examples, kernels.

The derivative rows (every decomposition called the usual ways) are in tests/primitive_table.py,
checked on the reference executor by tests/test_primitives.py and compiled by tests/test_compiled.py.
The end of this file runs the Numba helpers directly against NumPy and a guard on the compiled backend.
"""
import numpy as np
import pytest
import scipy.linalg

import jitad
from jitad.tools import demo_linalg
from jitad.frontend.tracer import trace

rng = np.random.default_rng(7)


def _conditioned(shape, seed=0):
    r = np.random.default_rng(seed)
    n = shape[-1]
    return r.standard_normal(shape) + (n * np.eye(n) if len(shape) > 1 and shape[-1] == shape[-2] else 0.0)


def _spd(a):
    n = a.shape[-1]
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def _sign_free(v):
    """Eigen/singular vectors are defined up to the sign of each column; v * v[0] is not."""
    return v * v[..., :1, :]


# The check_grads rows of np.linalg / scipy.linalg are in tests/primitive_table.py (its linalg sections),
# run by tests/test_primitives.py on the reference executor and by tests/test_compiled.py compiled.


def _leaves(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


@pytest.mark.usefixtures("reference_backend")
def test_float32_gradients_keep_dtype():
    a = _conditioned((3, 3)).astype(np.float32)
    for fn in (np.linalg.inv, np.linalg.det, np.linalg.eigvalsh, lambda x: np.linalg.svd(x, compute_uv=False),
               lambda x: np.linalg.solve(x, np.ones(3, np.float32))):
        out, vjp_fn = jitad.vjp(fn, a)
        assert np.asarray(out).dtype == np.float32
        (g,) = vjp_fn(np.ones_like(out))
        assert g.dtype == np.float32
        jitad.check_grads(fn, (a,), modes=("rev",))


# --- triangles: eigh and cholesky read one triangle, so only it gets a cotangent -----------------
@pytest.mark.usefixtures("reference_backend")
@pytest.mark.parametrize("fn,lower", [
    (lambda a: np.sum(np.linalg.eigvalsh(a) ** 3), True),
    (lambda a: np.sum(np.linalg.eigvalsh(a, UPLO="U") ** 3), False),
    (lambda a: np.sum(_sign_free(np.linalg.eigh(a)[1]) * np.arange(16.0).reshape(4, 4)), True),
    (lambda a: np.sum(np.linalg.cholesky(a) ** 3), True),
    (lambda a: np.sum(np.linalg.cholesky(a, upper=True) ** 3), False),
])
def test_one_triangle_gets_the_cotangent(fn, lower):
    a = _spd(_conditioned((4, 4)))
    a = a + (np.triu(rng.standard_normal((4, 4)), 1) if lower else np.tril(rng.standard_normal((4, 4)), -1))
    g = jitad.grad(fn)(a)
    unused = np.triu(g, 1) if lower else np.tril(g, -1)
    np.testing.assert_array_equal(unused, 0.0)
    jitad.check_grads(fn, (a,), modes=("rev", "fwd"))


# --- factorisation reuse --------------------------------------------------------------------------
def _count(fun, args, name):
    graph, _ = trace(fun, [(np.shape(a), np.asarray(a).dtype) for a in args])
    return sum(node.prim.name == name for node in graph.nodes)


def test_solve_adjoint_reuses_the_lu_factor():
    a, b = _conditioned((4, 4)), rng.standard_normal(4)

    def pullback(a, b):
        out, vjp_fn = jitad.vjp(lambda a, b: np.linalg.solve(a, b), a, b)
        return [out, *vjp_fn(np.ones(4))]

    def second_order(a, b):
        return [jitad.grad(lambda a: np.sum(jitad.grad(lambda a: np.sum(np.linalg.solve(a, b) ** 2))(a)))(a)]

    assert _count(pullback, (a, b), "lu_factor") == 1
    assert _count(pullback, (a, b), "lu_solve") == 2       # forward with A, adjoint with Aᵀ
    assert _count(second_order, (a, b), "lu_factor") == 1
    det_grad = lambda a: [np.linalg.det(a), jitad.grad(np.linalg.det)(a), jitad.grad(  # noqa: E731
        lambda a: np.linalg.slogdet(a)[1])(a)]
    assert _count(det_grad, (a,), "lu_factor") == 1
    inv_grad = lambda a: [jitad.grad(lambda a: np.sum(np.linalg.inv(a) ** 2))(a)]  # noqa: E731
    assert _count(inv_grad, (a,), "inv") == 1             # the adjoint reads the forward inverse
    explained = jitad.explain(lambda a, b: np.sum(np.linalg.solve(a, b)), a, b)
    assert "lu_factor" in str(explained)


# --- numerical safety ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("reference_backend")
@pytest.mark.parametrize("norm", [
    np.linalg.norm, lambda x: np.sqrt(np.sum(x ** 2)), lambda x: np.sum(x * x) ** 0.5,
    lambda x: np.sqrt(x @ x), lambda x: np.sqrt(np.dot(x, x)), lambda x: np.sqrt(x[0] ** 2 + x[1] ** 2 + x[2] ** 2),
    lambda x: np.sqrt(np.sum(np.square(x))), lambda x: np.linalg.vector_norm(x),
])
def test_norm_gradient_at_zero_is_zero(norm):
    """The subgradient 0, not inf * 0 = NaN, also for a norm written out by hand."""
    np.testing.assert_array_equal(jitad.grad(norm)(np.zeros(3)), 0.0)
    np.testing.assert_array_equal(jitad.jvp(norm, (np.zeros(3),), (np.ones(3),))[1], 0.0)
    x = np.array([3.0, 4.0, 0.0])
    np.testing.assert_allclose(jitad.grad(norm)(x), x / 5.0)
    hessian_at_zero = jitad.grad(lambda x: np.sum(jitad.grad(norm)(x)))(np.zeros(3))
    assert np.all(np.isfinite(hessian_at_zero))


@pytest.mark.usefixtures("reference_backend")
def test_matrix_norms_at_zero():
    z = np.zeros((3, 2))
    for ord_ in (None, "fro", 2, -2, "nuc"):
        np.testing.assert_array_equal(jitad.grad(lambda a: np.linalg.norm(a, ord_))(z), 0.0)


@pytest.mark.usefixtures("reference_backend")
def test_norms_and_rank_of_matrices_with_no_entries_are_numpys():
    """Found by the long fuzz profile (seed 747474, program 100: grad of svd(x, compute_uv=False) at x of
    shape (2, 0, 0)). NumPy 2 takes the largest singular value, column sum or row sum with initial=0,
    so norm(x, 2 / 1 / inf) of a matrix with no entries is 0.0 and matrix_rank is 0; jitad raised
    'zero-size array to reduction operation maximum', and cond, NumPy's LinAlgError, was that ValueError."""
    fns = [lambda x: np.linalg.norm(x, 2, axis=(-2, -1)), lambda x: np.linalg.norm(x, 1, axis=(-2, -1)),
           lambda x: np.linalg.norm(x, np.inf, axis=(-2, -1), keepdims=True), lambda x: np.linalg.matrix_norm(x, ord=2),
           lambda x: np.linalg.norm(x, np.inf, axis=-1), np.linalg.matrix_rank]
    for shape in [(0, 0), (3, 0), (0, 3), (2, 0, 3)]:
        for dtype in (np.float64, np.float32):
            x = np.zeros(shape, dtype)
            for f in fns:
                got, expected = jitad.jit(f)(x), f(x)
                np.testing.assert_array_equal(got, expected)
                assert np.shape(got) == np.shape(expected) and np.asarray(got).dtype == np.asarray(expected).dtype
            for f in fns[:5]:
                assert jitad.grad(lambda x: np.sum(f(x)))(x).shape == shape
            with pytest.raises(np.linalg.LinAlgError, match="cond is not defined on empty arrays"):
                jitad.jit(np.linalg.cond)(x)
    x = np.array([[1.0, -2.0], [0.5, 3.0]])  # a matrix with entries: as before
    for f in fns[:5]:
        np.testing.assert_allclose(jitad.jit(f)(x), f(x), rtol=1e-12)


@pytest.mark.usefixtures("reference_backend")
def test_vector_norm_with_an_empty_kept_axis():
    """np.linalg.vector_norm(x, axis=-1) of x of shape (0, 3) raised 'cannot reshape array of size 0 into
    shape (0, -1)': the reduced axes were flattened with -1, which no size determines when a kept axis is
    empty (found with the fix for norms of empty matrices, following seed 747474 of the long profile)."""
    for shape, kw in [((0, 3), dict(axis=-1)), ((2, 0, 3), dict(axis=(0, 2))), ((0, 3), dict(axis=-1, ord=np.inf)),
                      ((0, 2, 2), dict(axis=(1, 2), keepdims=True))]:
        x = np.ones(shape)
        f = lambda x: np.linalg.vector_norm(x, **kw)  # noqa: E731
        got, expected = jitad.jit(f)(x), f(x)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        assert jitad.grad(lambda x: np.sum(f(x)))(x).shape == shape


@pytest.mark.usefixtures("reference_backend")
@pytest.mark.parametrize("f", [lambda x: np.linalg.svd(x, compute_uv=False),
                               lambda x: np.linalg.norm(x, "nuc", axis=(-2, -1)),
                               lambda x: np.linalg.svd(x, full_matrices=False)[0], np.linalg.eigvalsh,
                               lambda x: np.linalg.eigh(x)[1]])
def test_svd_and_eigh_derivatives_of_matrices_with_no_entries(f):
    """Found by the long fuzz profile (seed 747474, program 100): the derivative of svd(x, compute_uv=False)
    at x of shape (2, 0, 0) raised 'zero-size array to reduction operation maximum' (the rules' scales
    and checks took maxima over no values). A matrix with no entries has no singular values or
    eigenvalues: the derivative is an empty array of x's shape."""
    for shape in [(0, 0), (2, 0, 0)]:
        x = np.zeros(shape)
        np.testing.assert_array_equal(jitad.jit(f)(x), f(x))
        assert jitad.grad(lambda x: np.sum(f(x)))(x).shape == shape
        assert np.shape(jitad.jvp(f, (x,), (x,))[1]) == np.shape(f(x))


@pytest.mark.usefixtures("reference_backend")
def test_where_sqrt_has_a_finite_gradient_everywhere():
    f = lambda x: np.sum(np.where(x > 0, np.sqrt(x), 0.0))  # noqa: E731
    x = np.array([-1.0, 0.0, 0.25, 4.0])
    expected = np.where(x > 0, 0.5 / np.sqrt(np.where(x > 0, x, 1.0)), 0.0)
    np.testing.assert_allclose(jitad.grad(f)(x), expected)
    np.testing.assert_allclose(jitad.jvp(f, (x,), (np.ones(4),))[1], expected.sum())
    second = np.where(x > 0, -0.25 * np.where(x > 0, x, 1.0) ** -1.5, 0.0)
    np.testing.assert_allclose(jitad.grad(lambda x: np.sum(jitad.grad(f)(x)))(x), second)
    np.testing.assert_allclose(jitad.jvp(jitad.grad(f), (x,), (np.ones(4),))[1], second)
    np.testing.assert_allclose(np.diag(jitad.hessian(f)(x)), second)


def _with_spectrum(values, seed=3):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(values), len(values))))
    return q @ np.diag(values) @ q.T, q


@pytest.mark.usefixtures("reference_backend")
def test_eigenvalue_gradients_at_repeated_eigenvalues():
    a, q = _with_spectrum([1.0, 2.0, 3.0, 3.0])
    g = jitad.grad(lambda a: np.sum(np.linalg.eigvalsh(a) ** 2))(a)    # = ‖A‖_F² on the lower triangle
    np.testing.assert_allclose(g, 2 * np.diag(np.diag(a)) + 4 * np.tril(a, -1), atol=1e-12)
    jitad.check_grads(lambda a: np.sum(np.exp(np.linalg.eigvalsh(a))), (a,))  # tr exp(A)
    # one member of a repeated pair (no derivative): the tie convention splits evenly
    p = q[:, 2:] @ q[:, 2:].T / 2
    np.testing.assert_allclose(jitad.grad(lambda a: np.linalg.eigvalsh(a)[-1])(a), np.tril(p) + np.tril(p, -1),
                               atol=1e-12)
    # eigenvectors of the distinct eigenvalues stay differentiable (reverse mode)
    jitad.check_grads(lambda a: _sign_free(np.linalg.eigh(a)[1][:, :2]), (a,), modes=("rev",))


@pytest.mark.usefixtures("reference_backend")
def test_eigenvectors_of_repeated_eigenvalues_raise():
    a, _ = _with_spectrum([1.0, 2.0, 3.0, 3.0])
    for f in (lambda a: np.sum(np.linalg.eigh(a)[1][:, 3]),
              lambda a: np.sum((lambda w, v: (v * w) @ v.T)(*np.linalg.eigh(a)) ** 2)):
        with pytest.raises(jitad.NonDifferentiableError, match="repeated eigenvalue"):
            jitad.grad(f)(a)
    with pytest.raises(jitad.NonDifferentiableError, match="forward mode"):
        jitad.jvp(lambda a: np.linalg.eigh(a)[1], (a,), (np.ones((4, 4)),))


@pytest.mark.usefixtures("reference_backend")
def test_singular_vectors_at_repeated_and_zero_singular_values():
    r = np.random.default_rng(5)
    u, _ = np.linalg.qr(r.standard_normal((5, 3)))
    v, _ = np.linalg.qr(r.standard_normal((3, 3)))
    repeated, deficient = u @ np.diag([2.0, 2.0, 1.0]) @ v.T, u @ np.diag([2.0, 1.0, 0.0]) @ v.T
    np.testing.assert_allclose(jitad.grad(lambda w: np.linalg.norm(w, "nuc"))(repeated), u @ v.T, atol=1e-12)
    np.testing.assert_allclose(jitad.grad(lambda w: np.linalg.norm(w, 2))(repeated),
                               u[:, :2] @ v[:, :2].T / 2, atol=1e-12)
    # a zero singular value is a kink like |x|: derivative 0, so ‖W‖_nuc has gradient U_r V_rᵀ
    np.testing.assert_allclose(jitad.grad(lambda w: np.linalg.norm(w, "nuc"))(deficient),
                               u[:, :2] @ v[:, :2].T, atol=1e-12)
    jitad.check_grads(lambda w: _sign_free(np.linalg.svd(w, full_matrices=False)[0][:, 2:]), (repeated,),
                      modes=("rev",))
    for w, f in ((repeated, lambda w: np.sum(np.linalg.svd(w, full_matrices=False)[0][:, 0])),
                 (deficient, lambda w: np.sum(np.linalg.svd(w, full_matrices=False)[2][2] ** 3))):
        with pytest.raises(jitad.NonDifferentiableError, match="repeated \\(or zero\\) singular value"):
            jitad.grad(f)(w)
    with pytest.raises(jitad.NonDifferentiableError, match="forward mode"):
        jitad.jvp(lambda w: np.linalg.svd(w, full_matrices=False)[0], (repeated,), (np.ones((5, 3)),))


@pytest.mark.usefixtures("reference_backend")
def test_hessian_of_the_spectral_norm_at_a_rank_deficient_matrix():
    """‖A‖₂'s gradient u₁v₁ᵀ is differentiable wherever s₁ is simple, also when other singular values
    are zero (its derivative reads only the pairs (1, j), whose gaps s₁² - s_j² are nonzero). jitad
    refused it ("svd: forward mode ... cannot differentiate singular vectors") because the tangent
    touched the zero singular values' vectors, which the weight 0 never uses."""
    import autograd
    import autograd.numpy as anp
    r = np.random.default_rng(3)
    u, _ = np.linalg.qr(r.standard_normal((5, 3)))
    v, _ = np.linalg.qr(r.standard_normal((3, 3)))
    cases = [(r.standard_normal((4, 1)) @ r.standard_normal((1, 3)), (1, 0)),   # rank 1, s = (s1, ~0, ~0)
             (u @ np.diag([2.0, 1.0, 0.0]) @ v.T, (0, 1)),                       # an exact zero
             (r.standard_normal((3, 2)) @ r.standard_normal((2, 5)), (0, 1))]    # wide, rank 2
    for x, axes in cases:
        f = lambda x: np.linalg.norm(x, ord=2, axis=axes)
        h = jitad.hessian(f)(x).reshape(x.size, x.size)
        # central differences of the gradient (exact: the norm is smooth here) and autograd's hessian
        step, fd = 1e-6, np.empty((x.size, x.size))
        for i in range(x.size):
            e = np.zeros(x.size)
            e[i] = step
            e = e.reshape(x.shape)
            fd[:, i] = ((jitad.grad(f)(x + e) - jitad.grad(f)(x - e)) / (2 * step)).ravel()
        np.testing.assert_allclose(h, fd, atol=1e-7)
        top = lambda x: anp.linalg.svd(x, full_matrices=False)[1][0]  # autograd's svd rule: finite where s₁ is simple
        np.testing.assert_allclose(h, autograd.hessian(top)(x).reshape(x.size, x.size), atol=1e-9)
        t = r.standard_normal(x.shape)
        np.testing.assert_allclose(jitad.hvp(f, (x,), (t,)), (h @ t.ravel()).reshape(x.shape), atol=1e-12)
        np.testing.assert_allclose(jitad.jacrev(jitad.grad(f))(x).reshape(x.size, x.size), h, atol=1e-12)
    # where the weights of the zero singular values vary with them (Σs², whose Hessian is 2I), the
    # derivative is not the weight-0 one: still an error, never a wrong Hessian
    sum_squares = lambda x: np.sum(np.linalg.svd(x, compute_uv=False) ** 2)
    with pytest.raises(jitad.NonDifferentiableError, match="forward mode"):
        jitad.hessian(sum_squares)(cases[1][0])
    with pytest.raises(jitad.NonDifferentiableError, match="zero\\) singular value"):
        jitad.jacrev(jitad.grad(sum_squares))(cases[1][0])
    # a repeated nonzero pair with equal constant weights: the nuclear norm is smooth at full rank
    q, _ = np.linalg.qr(r.standard_normal((3, 3)))
    h = jitad.hessian(lambda x: np.linalg.norm(x, "nuc"))(q).reshape(9, 9)
    np.testing.assert_allclose(h, autograd.hessian(lambda x: anp.sum(anp.linalg.svd(x, full_matrices=False)[1]))(
        q + 1e-3 * np.diag([1.0, 0.0, -1.0])).reshape(9, 9), atol=5e-3)
    # but Σs³ at a repeated pair needs how the weights split: an error
    with pytest.raises(jitad.NonDifferentiableError, match="forward mode"):
        jitad.hessian(lambda x: np.sum(np.linalg.svd(x, compute_uv=False) ** 3))(u @ np.diag([2.0, 2.0, 1.0]) @ v.T)


@pytest.mark.usefixtures("reference_backend")
def test_scipy_det_and_logm_of_float32_are_float64_as_scipys():
    """scipy.linalg.det returns float64 for a float32 matrix (2-d and batched: its float32 LU's product as a
    float64) and scipy.linalg.logm float64 (its triangular logarithm computes in float64); jitad kept
    float32 (np.linalg.det's dtype, logm_p of the float32 matrix). Values within float32's rounding;
    gradients keep the argument's dtype."""
    import warnings
    r = np.random.default_rng(9)
    a = r.standard_normal((3, 3)).astype(np.float32)
    spd = (a @ a.T + np.eye(3)).astype(np.float32)
    batch = r.standard_normal((2, 3, 3)).astype(np.float32)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's logm warns of its float32 accuracy
        cases = [(scipy.linalg.det, a), (scipy.linalg.det, batch), (scipy.linalg.logm, spd)]
        for fun, x in cases:
            want, got = fun(x), jitad.jit(fun)(x)
            assert np.asarray(got).dtype == np.asarray(want).dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
            assert jitad.grad(lambda x: np.sum(fun(x)))(x).dtype == np.float32
    np.testing.assert_allclose(jitad.grad(lambda x: np.sum(scipy.linalg.logm(x)))(spd),
                               jitad.grad(lambda x: np.sum(scipy.linalg.logm(x)))(spd.astype(np.float64)), rtol=1e-5)


@pytest.mark.usefixtures("reference_backend")
def test_clear_errors_where_no_derivative_exists():
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    assert np.linalg.det(singular) == 0.0 and jitad.vjp(np.linalg.det, singular)[0] == 0.0
    with pytest.raises(np.linalg.LinAlgError):
        jitad.grad(lambda a: np.sum(np.linalg.solve(a, np.ones(2))))(singular)
    with pytest.raises(jitad.NonDifferentiableError, match="qr"):
        jitad.grad(lambda a: np.sum(np.linalg.qr(a)[0]))(np.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]]))
    with pytest.raises(jitad.NonDifferentiableError, match="lu_factor"):  # never a zero
        jitad.grad(lambda a: np.sum(scipy.linalg.lu_factor(a)[0]))(np.eye(2) + 0.5)
    with pytest.raises(jitad.NonDifferentiableError, match="lu_factor"):
        jitad.jvp(lambda a: scipy.linalg.lu_factor(a)[0], (np.eye(2) + 0.5,), (np.ones((2, 2)),))
    with pytest.raises(jitad.UnsupportedOperationError, match="lu_solve"):  # traced factors of unknown origin
        jitad.grad(lambda a: np.sum(scipy.linalg.lu_solve((a, np.arange(2)), np.ones(2))))(np.eye(2) + 0.5)
    with pytest.raises(jitad.NonDifferentiableError, match="pinv"):
        jitad.grad(lambda a: np.sum(np.linalg.pinv(a)))(singular)
    with pytest.raises(jitad.NonDifferentiableError, match="full_matrices=False"):
        jitad.grad(lambda a: np.sum(np.linalg.svd(a)[0]))(rng.standard_normal((3, 2)))
    # svd(full_matrices=True) values are fine: the completion is only a problem when used
    w = rng.standard_normal((3, 2))
    np.testing.assert_allclose(jitad.grad(lambda a: np.sum(np.linalg.svd(a)[1]))(w),
                               jitad.grad(lambda a: np.linalg.norm(a, "nuc"))(w))


def test_scipy_lu_is_scipys():
    """scipy.linalg.lu's P, L, U (and permute_l, p_indices) equal SciPy's bit for bit, with its dtypes, compiled
    and on the reference executor, 2-D and batched; a non-square matrix is a named error."""
    rng = np.random.default_rng(9)

    def factors(a, b):
        return (*scipy.linalg.lu(a), *scipy.linalg.lu(a, permute_l=True), *scipy.linalg.lu(a, p_indices=True),
                *scipy.linalg.lu(b))
    saved = jitad.config.backend
    try:
        for backend in ("reference", "numba"):
            jitad.config.backend = backend
            # compiled: float32 (the primitive table's row scipy_lu compiles float64, with its gradients)
            for dtype in (np.float64, np.float32) if backend == "reference" else (np.float32,):
                a, b = rng.standard_normal((5, 5)).astype(dtype), rng.standard_normal((2, 3, 3)).astype(dtype)
                for got, want in zip(jitad.jit(factors)(a, b), factors(a, b)):
                    assert got.dtype == want.dtype
                    np.testing.assert_array_equal(got, want)
    finally:
        jitad.config.backend = saved
    with pytest.raises(jitad.UnsupportedOperationError, match=r"scipy\.linalg\.lu of an array of shape \(3, 5\)"):
        jitad.grad(lambda a: np.sum(scipy.linalg.lu(a[:3])[2]))(rng.standard_normal((5, 5)))


def test_lu_factor_compiled_values():
    """scipy.linalg.lu_factor's (lu, piv) compiled equal SciPy's (float64 and float32)."""
    rng = np.random.default_rng(4)
    saved = jitad.config.backend
    try:
        jitad.config.backend = "numba"
        for dtype in (np.float64, np.float32):
            a = rng.standard_normal((4, 4)).astype(dtype)
            lu, piv = jitad.jit(lambda m: scipy.linalg.lu_factor(m))(a)
            expected = scipy.linalg.lu_factor(a)
            assert lu.dtype == expected[0].dtype and piv.dtype == expected[1].dtype
            np.testing.assert_allclose(lu, expected[0], rtol=1e-6 if dtype == np.float32 else 1e-14)
            np.testing.assert_array_equal(piv, expected[1])
    finally:
        jitad.config.backend = saved


def test_sqrtm_and_sylvester_run_on_the_numpy_executor_with_numba_on():
    """No compiled lowering: a function calling them answers on the NumPy executor (explain says so),
    with SciPy's values; a square root that is complex is a named error, never a real part."""
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 3))
    spd = a @ a.T + 3.0 * np.eye(3)
    saved = jitad.config.backend
    try:
        jitad.config.backend = "numba"
        f = jitad.value_and_grad(lambda m: np.sum(scipy.linalg.sqrtm(m) * a)
                                 + np.sum(scipy.linalg.solve_sylvester(m, m, a)))
        value, grad = f(spd)
        assert value == pytest.approx(np.sum(scipy.linalg.sqrtm(spd) * a)
                                      + np.sum(scipy.linalg.solve_sylvester(spd, spd, a)), rel=1e-13)
        assert "NumPy" in jitad.explain(f, spd).tier
        with pytest.raises(jitad.UnsupportedOperationError, match="negative real eigenvalue"):
            f(np.diag([-1.0, 2.0, 3.0]))
    finally:
        jitad.config.backend = saved


def test_logm_and_schur_are_scipys_on_the_numpy_executor():
    """logm: SciPy's values (also batched), on the NumPy executor with Numba on, its derivative the Fréchet
    derivative (checked against a fourth-order difference of SciPy's logm, a non-normal matrix among them);
    a complex logarithm is a named error. schur: SciPy's (T, Z); differentiating either is a
    NonDifferentiableError; output='complex' and sort= are named errors."""
    rng = np.random.default_rng(12)
    b = rng.standard_normal((4, 4))
    matrices = [b @ b.T + 0.5 * np.eye(4), b + 4.0 * np.eye(4), np.array([[1.0, 30.0], [0.0, 1.5]])]
    saved = jitad.config.backend
    try:
        jitad.config.backend = "numba"
        for m in matrices:
            n = m.shape[0]
            w = rng.standard_normal((n, n))
            f = jitad.value_and_grad(lambda x: np.sum(scipy.linalg.logm(x) * w))
            value, grad = f(m)
            assert value == np.sum(scipy.linalg.logm(m) * w)
            h = 1e-4
            basis = np.eye(n * n).reshape(-1, n, n)
            s = lambda x: np.sum(scipy.linalg.logm(x) * w)  # noqa: E731
            fd = np.array([(-s(m + 2 * h * e) + 8 * s(m + h * e) - 8 * s(m - h * e) + s(m - 2 * h * e)) / (12 * h)
                           for e in basis]).reshape(n, n)
            np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-7 * np.max(np.abs(grad)))
        assert "NumPy" in jitad.explain(f, matrices[-1]).tier
        stack = np.stack(matrices[:2])
        np.testing.assert_array_equal(jitad.jit(lambda x: scipy.linalg.logm(x))(stack),
                                      np.stack([scipy.linalg.logm(x) for x in stack]))
        with pytest.raises(jitad.UnsupportedOperationError, match="logarithm is complex"):
            jitad.jit(lambda x: scipy.linalg.logm(x))(-matrices[0])
        t, z = jitad.jit(lambda x: scipy.linalg.schur(x))(matrices[1])
        want = scipy.linalg.schur(matrices[1])
        np.testing.assert_array_equal(t, want[0])
        np.testing.assert_array_equal(z, want[1])
    finally:
        jitad.config.backend = saved
    for mode in (lambda f, x: jitad.grad(f)(x), lambda f, x: jitad.jvp(f, (x,), (x,))):
        with pytest.raises(jitad.NonDifferentiableError, match="Schur factors T and Z are not unique"):
            mode(lambda x: np.sum(scipy.linalg.schur(x)[0]), matrices[1])
        with pytest.raises(jitad.NonDifferentiableError, match="Schur factors T and Z are not unique"):
            mode(lambda x: np.sum(scipy.linalg.schur(x)[1]), matrices[1])
    with pytest.raises(jitad.UnsupportedOperationError, match="output='complex'"):
        jitad.jit(lambda x: scipy.linalg.schur(x, output="complex"))(matrices[1])
    with pytest.raises(jitad.UnsupportedOperationError, match="sort="):
        jitad.jit(lambda x: scipy.linalg.schur(x, sort="lhp"))(matrices[1])


def test_unsupported_and_shape_errors_teach():
    with pytest.raises(jitad.UnsupportedOperationError, match="numpy.linalg.eig.*custom_vjp"):
        jitad.grad(lambda a: np.sum(np.linalg.eig(a)[0]))(np.eye(3))
    with pytest.raises(jitad.ShapeError, match="square"):
        jitad.grad(lambda a: np.sum(np.linalg.inv(a)))(np.ones((2, 3)))
    with pytest.raises(jitad.ShapeError, match="do not fit"):
        jitad.grad(lambda a: np.sum(np.linalg.solve(a, np.ones(2))))(np.eye(3))
    from scipy.linalg import cho_solve  # bound before tracing: swapped in the closure while tracing
    factor = np.array([[2.0, 0.0, 0.0], [0.5, 1.5, 0.0], [0.3, -0.2, 1.2]])
    jitad.check_grads(lambda a: np.sum(cho_solve((a, True), np.ones(3))), (factor,), modes=("rev",))
    holder = {"f": cho_solve}  # reached only through another object: its code is swapped while tracing too
    saved, jitad.config.backend = jitad.config.backend, "reference"  # (the kernels are checked above)
    try:
        np.testing.assert_allclose(jitad.grad(lambda a: np.sum(holder["f"]((a, True), np.ones(3))))(factor),
                                   jitad.grad(lambda a: np.sum(cho_solve((a, True), np.ones(3))))(factor), rtol=1e-14)
    finally:
        jitad.config.backend = saved


def test_scipy_functions_outside_tracing_are_untouched():
    assert scipy.linalg.solve_triangular.__module__.startswith("scipy")
    np.testing.assert_allclose(scipy.linalg.solve_triangular(np.eye(2) * 2, np.ones(2)), [0.5, 0.5])


# --- the lectures' examples, against their closed forms -------------------------------------------
@pytest.mark.parametrize("title,run", demo_linalg.EXAMPLES, ids=[t.split(";")[0] for t, _ in demo_linalg.EXAMPLES])
def test_lecture_example(title, run, reference_backend):
    ad, analytic = run()
    for a, e in zip(_leaves(ad), _leaves(analytic)):
        np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-12)


@pytest.mark.usefixtures("reference_backend")
def test_lecture_formulas_directly():
    x = rng.standard_normal(3)
    n = np.linalg.norm(x)
    hessian = np.stack([jitad.jvp(jitad.grad(lambda x: np.linalg.norm(x) ** 3 / 3), (x,), (e,))[1]
                        for e in np.eye(3)])
    np.testing.assert_allclose(hessian, np.outer(x, x) / n + n * np.eye(3))
    np.testing.assert_allclose(jitad.hessian(lambda x: np.sqrt(np.sum(x ** 2)) ** 3 / 3)(np.zeros(3)), 0.0)
    # second order through the shared factors: ∂²log|det A|/∂A_ij∂A_kl = -(A⁻¹)_jk (A⁻¹)_li
    a = _conditioned((3, 3))
    ai = np.linalg.inv(a)
    np.testing.assert_allclose(jitad.hessian(lambda a: np.linalg.slogdet(a)[1])(a), -np.einsum("jk,li->ijkl", ai, ai),
                               atol=1e-12)
    a, b = _conditioned((3, 3)), rng.standard_normal((3, 2))
    x_bar = rng.standard_normal((3, 2))
    x, vjp_fn = jitad.vjp(np.linalg.solve, a, b)
    ga, gb = vjp_fn(x_bar)
    np.testing.assert_allclose(gb, np.linalg.solve(a.T, x_bar))
    np.testing.assert_allclose(ga, -np.linalg.solve(a.T, x_bar) @ x.T)


# --- compiled: the Numba helpers against NumPy, and end to end -----------------------------------------
@pytest.fixture(scope="module")
def KL():
    from jitad.backend import kernels_linalg
    return kernels_linalg


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lapack_kernels_match_numpy(KL, dtype):
    """The helpers that call SciPy's LAPACK (d* or s* routines by dtype)."""
    from jitad.primitives import linalg as L
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=1e-5)
    a = _conditioned((2, 4, 4)).astype(dtype)
    b = rng.standard_normal((2, 4, 3)).astype(dtype)
    lu = KL.lu_factor(a)
    np.testing.assert_allclose(lu, L.lu_factor_p.impl(a), **tol)
    for trans in (0, 1):
        np.testing.assert_allclose(KL.lu_solve(lu, b, trans), np.linalg.solve(a if trans == 0 else a.mT, b), **tol)
    np.testing.assert_allclose(KL.lu_det(lu), np.linalg.det(a), **tol)
    sign, logdet = np.linalg.slogdet(a)
    np.testing.assert_allclose(KL.lu_slogdet(lu, False), sign)
    np.testing.assert_allclose(KL.lu_slogdet(lu, True), logdet, **tol)
    for lower in (True, False):
        for trans in (0, 1):
            for unit in (False, True):
                expected = L.solve_triangular_p.impl(a, b, lower=lower, trans=trans, unit_diagonal=unit)
                np.testing.assert_allclose(KL.solve_triangular(a, b, lower, trans, unit), expected, **tol)
    with pytest.raises(np.linalg.LinAlgError):
        KL.lu_solve(KL.lu_factor(np.zeros((2, 2), dtype)), np.ones((2, 1), dtype), 0)


def test_numpy_linalg_kernels_match_numpy(KL):
    """The helpers that batch Numba's own np.linalg (packed factor layouts as in the reference)."""
    from jitad.primitives import linalg as L
    tol = dict(rtol=1e-9, atol=1e-11)
    a = _conditioned((2, 4, 4))
    np.testing.assert_allclose(KL.inv(a), np.linalg.inv(a), **tol)
    spd = _spd(a)
    np.testing.assert_allclose(KL.cholesky(spd + np.triu(np.ones((4, 4)), 1)), np.linalg.cholesky(spd), **tol)
    sym = a + a.mT
    # eigen- and singular vectors are unique up to sign; LAPACK builds may pick differently
    np.testing.assert_allclose(np.abs(KL.eigh(np.tril(sym))), np.abs(L.eigh_factor_p.impl(sym)), **tol)
    for shape in ((2, 5, 3), (3, 4)):
        m = rng.standard_normal(shape)
        np.testing.assert_allclose(np.abs(KL.svd(m)), np.abs(L.svd_factor_p.impl(m)), **tol)
        packed = KL.qr(m)
        np.testing.assert_allclose(np.abs(packed), np.abs(L.qr_factor_p.impl(m)), **tol)
        np.testing.assert_allclose(KL.qr_q(packed, m) @ KL.qr_r(packed, m), m, **tol)
        np.testing.assert_allclose(KL.pinv(m, 1e-15), np.linalg.pinv(m), **tol)
        for vh in (False, True):
            np.testing.assert_allclose(np.abs(KL.svd_full(m, vh)), np.abs(np.linalg.svd(m)[2 if vh else 0]), **tol)
        w = rng.standard_normal(shape[:-2] + (min(shape[-2:]),))
        np.testing.assert_allclose(KL.svd_weighted(KL.svd(m), m, w), L.svd_weighted_p.impl(L.svd_factor_p.impl(m), m, w),
                                   **tol)
    np.testing.assert_array_equal(KL.first_row(KL.eigh(sym)), KL.eigh(sym)[..., 0, :])


def test_require_small_kernel_raises(KL):
    x = np.ones((2, 2))
    np.testing.assert_array_equal(KL.require_small(x, np.zeros(3), 0.5, "unused"), x)
    np.testing.assert_array_equal(KL.require_small(x, 0.25, 0.5, "unused"), x)
    with pytest.raises(jitad.NonDifferentiableError, match="the message"):
        KL.require_small(x, np.array([0.0, 1.0]), 0.5, "the message")


def test_compiled_guard_raises():
    a, _ = _with_spectrum([1.0, 2.0, 2.0])
    with pytest.raises(jitad.NonDifferentiableError, match="repeated eigenvalue"):
        jitad.grad(lambda a: np.sum(np.linalg.eigh(a)[1][:, 1]))(a)


@pytest.mark.usefixtures("reference_backend")
@pytest.mark.parametrize("lower", [False, True])
def test_cho_factor_keeps_the_other_triangle_of_a(lower):
    """Fuzz finding (issue 11's templates): scipy.linalg.cho_factor's c holds the input's entries in the
    triangle the factor does not use (LAPACK's potrf leaves them); jitad returned zeros there, a silently
    wrong value (and derivative) of cho_factor(a)[0]. Now SciPy's values, and those entries differentiate
    as a's; cho_solve with the factor is unchanged."""
    r = np.random.default_rng(0)
    a = r.normal(size=(4, 4))
    a = a @ a.T + 4.0 * np.eye(4)
    w = np.cos(np.arange(16.0)).reshape(4, 4)

    def f(a):
        return scipy.linalg.cho_factor(a, lower=lower)[0]
    np.testing.assert_allclose(jitad.jit(f)(a), f(a), rtol=1e-13)
    jitad.check_grads(lambda a: np.sum(f(a) * w), (a,), modes=("fwd", "rev"))
    b = np.arange(4.0)
    np.testing.assert_allclose(jitad.jit(lambda a: scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=lower), b))(a),
                               np.linalg.solve(a, b), rtol=1e-12)
