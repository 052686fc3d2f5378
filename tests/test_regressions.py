"""Named regression tests for wrong-value bugs (issue 8 and what the differential fuzzer finds).

Each test is the minimal program that once gave a silently wrong result; it states the
right answer, from NumPy itself or from the closed form.
"""
import numpy as np
import scipy.special
import pytest

import jitad


def test_diag_then_row_slice_compiled_matches_numpy():
    """Index maps composed by pasting text: `i1 - 2 + -1 * i0` for `i1 - (2 + -1 * i0)`."""
    x = np.array([1.0, 2.0, 3.0])

    def f(x):
        return (np.diag(x)[::-1], np.diag(x)[1:], np.diag(x)[::2], np.diag(x, 1)[::-1].T[1:],
                np.diag(x)[::-1, 1:][:, ::-2], x.reshape(3, 1)[::-1] * np.diag(x)[::-1])
    for got, want in zip(jitad.jit(f)(x), f(x)):
        np.testing.assert_array_equal(got, want)


def test_reshape_of_slice_of_reshape_compiled_matches_numpy():
    a = np.arange(24.0).reshape(4, 6)

    def f(a):
        return a.reshape(3, 8)[::-1, 2:].reshape(-1)[::3] * 2.0
    np.testing.assert_array_equal(jitad.jit(f)(a), f(a))


@pytest.mark.parametrize("fn", [np.tanh, np.exp, np.expm1])
def test_max_of_vectorisable_function_has_finite_gradient(fn):
    """The tie mask `x == max(x)` compared values recomputed by different code (SIMD vs libm)."""
    x = np.random.default_rng(0).normal(size=5)
    for reduce in (np.max, np.min):
        g = jitad.grad(lambda x: reduce(fn(x)))(x)
        y = fn(x)
        k = int(np.argmax(y) if reduce is np.max else np.argmin(y))
        want = np.zeros(5)
        want[k] = {np.tanh: 1 - y[k] ** 2, np.exp: y[k], np.expm1: y[k] + 1}[fn]
        np.testing.assert_allclose(g, want, rtol=1e-12)


def test_stable_softmax_gradient_is_finite():
    z = np.random.default_rng(1).normal(size=7)

    def f(z):
        t = np.tanh(z)
        e = np.exp(t - np.max(t))
        return np.sum(e / np.sum(e) * np.arange(7.0))
    g = jitad.grad(f)(z)
    assert np.all(np.isfinite(g))
    jitad.check_grads(f, (z,), modes=("rev",))


def test_comparison_with_recomputed_max_forward_value():
    x = np.random.default_rng(0).normal(size=5)

    def f(x):
        return np.where(np.tanh(x) == np.max(np.tanh(x)), 1.0, 0.0)
    np.testing.assert_array_equal(jitad.jit(f)(x), f(x))


MIXED_INDEXING = [
    lambda x: x[3, 2:, [1, 3]],
    lambda x: x[:, 0, [1, 2]],
    lambda x: x[0, :, [1, 2]],
    lambda x: x[[0, 1], :, 0],
    lambda x: x[[[0, 1]], 1:, 2],
    lambda x: x[[0, 1], None, [1, 2]],
    lambda x: x[:, [0, 1], ..., [0, 1]],
    lambda x: x[:, 0, ..., [0, 1]],
    lambda x: x[0, :, np.array([True, False, True, False])],
    lambda x: x[[[1], [2]], :, [0, 3]],
    lambda x: x[1, [[1], [2]], [0, 3]],
]


@pytest.mark.parametrize("k", range(len(MIXED_INDEXING)))
def test_mixed_advanced_indexing_layout_follows_numpy(k, reference_backend):
    """Advanced indices separated by a slice put the broadcast index dimensions first."""
    f = MIXED_INDEXING[k]
    x = np.random.default_rng(k).normal(size=(5, 6, 4))
    np.testing.assert_array_equal(jitad.jit(f)(x), f(x))
    w = np.random.default_rng(k + 100).normal(size=np.shape(f(x)))
    g = jitad.grad(lambda x: np.sum(f(x) * w))(x)
    want = np.zeros_like(x)
    np.add.at(want, _positions(f, x), w)
    np.testing.assert_allclose(g, want)


def _positions(f, x):
    """The index tuple into x of every entry of f(x) (f selects entries)."""
    flat = np.arange(x.size).reshape(x.shape)
    return np.unravel_index(f(flat), x.shape)


@pytest.mark.parametrize("call", [
    lambda a: np.diff(a, axis=5), lambda a: np.cumsum(a, axis=5), lambda a: np.sort(a, axis=5),
    lambda a: np.sum(a, axis=-3), lambda a: np.concatenate([a, a], axis=2), lambda a: np.flip(a, 2),
    lambda a: np.roll(a, 1, 2), lambda a: np.moveaxis(a, 0, 2), lambda a: np.expand_dims(a, 4),
    lambda a: np.median(a, axis=2), lambda a: np.stack([a, a], axis=3), lambda a: np.swapaxes(a, 0, 2),
])
def test_out_of_range_axis_raises_numpy_axis_error(call, reference_backend):
    a = np.ones((2, 3))
    with pytest.raises(np.exceptions.AxisError):
        call(a)
    with pytest.raises(np.exceptions.AxisError) as info:
        jitad.grad(lambda a: np.sum(call(a)))(a)
    assert isinstance(info.value, jitad.AxisError) and isinstance(info.value, jitad.JitadError)


# --- found by the differential fuzzer (tests/fuzz) ---------------------------------------------
ZERO_SIZE = [
    ("advanced index of an empty slice", lambda x: x[2, :0, [-2, 2]], (3, 1, 3)),
    ("matmul with an empty vector", lambda x: x @ np.linspace(-0.47, 1.11, 0), (3, 0)),
    ("dot of empty matrices", lambda x: x.dot(x.T), (3, 0)),
    ("inner of empty rows", lambda x: np.inner(x, x), (3, 0)),
    ("prod over an empty axis", lambda x: np.prod(x, axis=1), (3, 0)),
    ("batched matmul of empty operands", lambda x: x.reshape(3, 1)[:, :0] @ np.ones((0, 2)), (3,)),
]


@pytest.mark.parametrize("name,f,shape", ZERO_SIZE, ids=[z[0] for z in ZERO_SIZE])
def test_zero_size_arrays_in_every_mode(name, f, shape, reference_backend):
    """Reshapes with -1 next to a zero-size axis raised in the rules and batching."""
    x = np.random.default_rng(0).normal(size=shape)
    np.testing.assert_array_equal(jitad.jit(f)(x), f(x))
    assert jitad.grad(lambda x: np.sum(f(x)))(x).shape == x.shape
    out = np.shape(f(x))
    assert jitad.jacfwd(f)(x).shape == out + x.shape
    assert jitad.jacrev(f)(x).shape == out + x.shape


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), (-2,), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_median_with_tuple_axis_and_keepdims(axis, keepdims, reference_backend):
    y = np.random.default_rng(1).normal(size=(3, 4, 5))

    def f(y):
        return np.median(y, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(jitad.jit(f)(y), f(y))
    assert jitad.jit(f)(y).shape == f(y).shape
    jitad.check_grads(lambda y: np.sum(f(y) * np.cos(np.arange(np.size(f(y))).reshape(np.shape(f(y))))), (y,),
                      modes=("rev",))


def test_clip_of_a_python_float_by_float32_bounds_is_float64(reference_backend):
    """np.clip makes its first argument an array: a Python float is then float64, not weak."""
    x = np.array([[2.4]], dtype=np.float32)

    def f(x):
        return np.clip(-0.84, x - 0.3, x + 0.3)
    assert jitad.jit(f)(x).dtype == f(x).dtype == np.float64


def test_padded_adjoint_read_by_a_prefix_root_is_placed_after_the_inner_loop():
    """Fuzz finding: in a hvp kernel the pad (adjoint of x[1:]) feeding a root over the outer axis
    of a nest was emitted inside the inner reduction loop, before a value that loop computes."""
    C = np.cos(np.arange(9.0) * 1.7).reshape(3, 3)

    def g(x):
        return np.sum(np.outer(np.sin(x), np.sin(x)) * C) + np.sum(np.tanh(x[1:]))
    x, t = np.array([0.3, -0.5, 0.8]), np.array([1.0, 0.5, -0.2])
    saved = jitad.config.compile
    jitad.config.compile = "eager"
    try:
        got = jitad.hvp(g, (x,), (t,))
    finally:
        jitad.config.compile = saved
    np.testing.assert_allclose(got, jitad.hessian(g)(x) @ t, rtol=1e-10)


def test_guarded_read_of_an_empty_slice_stays_inside_its_guard():
    """Fuzz finding (silently wrong): the adjoint of concatenate([v, cos(v[1:])]) for a 1-element v
    pads a zero-size cotangent; its read was hoisted out of the pad's bounds guard and read past
    the end of a zero-size array, giving gradient 0 instead of 0.955."""
    def f(x0):
        v0 = np.reshape(x0, (1,))
        return np.sum(np.concatenate([v0, np.cos(v0[1:])], axis=0) * 0.955336489125606)
    saved = jitad.config.compile
    jitad.config.compile = "eager"
    try:
        got = jitad.grad(f)(1.0)
    finally:
        jitad.config.compile = saved
    assert got == pytest.approx(0.955336489125606, rel=1e-15)


def test_boolean_mask_of_the_wrong_length_raises_like_numpy(reference_backend):
    """Fuzz finding (silently wrong): a mask shorter than the axis selected from a prefix."""
    x = np.arange(8.0)
    mask = np.array([True, False, True, True, False, True, True])
    with pytest.raises(IndexError):
        x[mask]
    with pytest.raises(IndexError, match="boolean index did not match"):
        jitad.jit(lambda x: x[mask])(x)
    with pytest.raises(IndexError, match="boolean index did not match"):
        jitad.jit(lambda x: x.reshape(2, 4)[:, mask[:3]])(x)


def test_float32_values_recomputed_across_nests_agree():
    """Fuzz finding (NaN gradient): in float32, x / exp(x) was float64 in one nest and rounded to
    float32 where stored, so ptp's tie mask found no maximum."""
    x = np.array([[-1.0]], dtype=np.float32)

    def f(x):
        return np.sum(np.ptp(np.divide(x, np.exp(x)), axis=1))
    saved = jitad.config.compile
    jitad.config.compile = "eager"
    try:
        g = jitad.grad(f)(x)
        t = jitad.jvp(f, (x,), (np.ones_like(x),))[1]
    finally:
        jitad.config.compile = saved
    assert g.dtype == np.float32 and np.all(np.isfinite(g)) and np.isfinite(t)
    np.testing.assert_allclose(g, 0.0, atol=1e-6)


def test_float32_vander_cov_corrcoef_are_float64_like_numpy():
    """Fuzz finding (session 3, wrong dtype): NumPy computes np.vander, np.cov and np.corrcoef of
    float32 arrays in float64 (vander promotes with int, cov/corrcoef with float64); jitad
    returned float32."""
    x = np.array([0.3, -0.5, 0.7], dtype=np.float32)
    m = np.array([[0.3, 0.2, 0.1], [0.5, -0.1, 0.9]], dtype=np.float32)
    cases = [(lambda x: np.vander(x, 3), x), (lambda x: np.vander(x, 1), x), (lambda m: np.cov(m), m),
             (lambda m: np.cov(m, rowvar=False, ddof=0), m), (lambda m: np.corrcoef(m), m)]
    for f, a in cases:
        want = f(a.copy())
        got = jitad.jit(f)(a)
        assert np.asarray(got).dtype == want.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_ravel_of_fortran_ordered_result_is_a_copy_like_numpy():
    """Fuzz finding (session 3, silently wrong value): NumPy's ufuncs and np.copy keep their
    input's memory layout (order='K'), so `x.T * 1.0` is Fortran-ordered, its ravel/reshape(-1)
    is a copy (a write into it leaves the array alone) and its .T.reshape(-1) is a view (a write
    goes through). jitad treated every traced result as C-ordered: the first write went through,
    the second was lost."""
    x = np.arange(6.0).reshape(2, 3) + 1.0

    def ravel_copy(x):
        y = x.T * 1.0
        np.ravel(y)[1] = 50.0
        return y

    def reshape_copy(x):
        y = np.cos(x.T)
        y.reshape(-1)[1] = 50.0
        return y

    def np_copy_keeps_layout(x):
        y = np.copy(x.T)
        y.reshape(-1)[1] = 50.0
        return y

    def transposed_reshape_view(x):
        y = x.T * 1.0
        y.T.reshape(-1)[1] = 50.0
        return y
    for f in (ravel_copy, reshape_copy, np_copy_keeps_layout, transposed_reshape_view):
        np.testing.assert_array_equal(jitad.jit(f)(x), f(x.copy()), err_msg=f.__name__)


def _write_through(expr):
    """f(x): y = x * 1.0; z = <expr of y>; z[0, 0] = 50.0; return y (NumPy decides whether z is y's view)."""
    ns = {"np": np}
    exec(f"def f(x):\n    y = x * 1.0\n    z = {expr}\n    z[(0,) * z.ndim] = 50.0\n    return y\n", ns)
    return ns["f"]


# NumPy gives a new array; jitad returned the argument's own Tracer object, so a write into the
# result changed the argument too
COPIES_JITAD_ALIASED = ["np.positive(y)", "np.conj(y)", "np.conjugate(y)", "y ** 1", "np.concatenate([y])",
                        "np.hstack([y])", "np.vstack([y])", "np.column_stack([y])", "np.block([y])", "np.r_[y]",
                        "np.add.reduce(y, axis=())"]
# NumPy gives a view (or the array itself); jitad made a copy, so the write was lost
VIEWS_JITAD_COPIED = ["y.astype(y.dtype, copy=False)", "np.array(y, copy=None)", "y.conj()", "np.unstack(y)[1]",
                      "np.broadcast_arrays(y, y)[0]", "np.diff(y, n=0)", "np.einsum('ij->ij', y)", "np.einsum('ij', y)"]


@pytest.mark.parametrize("expr", COPIES_JITAD_ALIASED)
def test_write_into_a_copy_leaves_the_original_alone(expr):
    """Fuzz/hand finding (session 3, silently wrong value): a write into the result of
    np.positive(y), np.conj(y) of a real y, y ** 1, np.concatenate([y]) ... changed y under jitad;
    NumPy's result is a new array. Likely cause: the builder returns the input Tracer object
    unchanged in the trivial case, and in-place writes mutate that object."""
    x = np.array([[0.3, -0.7, 1.1], [0.5, -0.2, 0.9]])
    f = _write_through(expr)
    np.testing.assert_array_equal(jitad.jit(f)(x), f(x.copy()))


@pytest.mark.parametrize("expr", VIEWS_JITAD_COPIED)
def test_write_into_a_view_reaches_the_original(expr):
    """Hand finding (session 3, silently wrong value): NumPy returns the array itself or a view for
    y.astype(y.dtype, copy=False), np.array(y, copy=None), y.conj() of a real y, np.unstack,
    np.broadcast_arrays, np.diff(y, n=0), np.einsum('ij->ij', y); a write into it changes y.
    jitad copied, so the write was lost (or jitad must raise a named error)."""
    x = np.array([[0.3, -0.7, 1.1], [0.5, -0.2, 0.9]])
    f = _write_through(expr)
    try:
        got = jitad.jit(f)(x)
    except jitad.JitadError:
        return   # a named error is an acceptable answer; a silently lost write is not
    np.testing.assert_array_equal(got, f(x.copy()))


@pytest.mark.parametrize("method", ["y.sort()", "y[1:3].fill(1.5)", "y.view()[0] = 2.0"])
def test_in_place_methods_work_or_raise_a_named_error(method):
    """Hand finding (session 3): in-place ndarray methods on traced arrays raised a bare
    AttributeError ('Tracer' object has no attribute 'sort'), not a jitad error naming the way out."""
    ns = {"np": np}
    exec(f"def f(x):\n    y = x * 1.0\n    {method}\n    return y\n", ns)
    f = ns["f"]
    x = np.array([0.3, -0.7, 1.1, 0.5])
    try:
        got = jitad.jit(f)(x)
    except jitad.JitadError:
        return
    np.testing.assert_array_equal(got, f(x.copy()))


def test_float32_quantile_with_python_float_q_stays_float32():
    """Fuzz finding (session 3, wrong dtype): np.quantile/np.percentile/np.nanquantile of a float32
    array at a Python float q are float32 in NumPy (q is a weak scalar; a list q is float64);
    jitad gave float64 for the interpolating methods."""
    x = np.array([[0.3, -0.5, 0.7], [0.1, 0.2, -0.4]], dtype=np.float32)
    for f in (lambda x: np.percentile(x, 85.0, axis=0), lambda x: np.quantile(x, 0.3),
              lambda x: np.nanquantile(x, 0.3), lambda x: np.quantile(x, [0.2, 0.7], axis=1)):
        want = f(x.copy())
        got = jitad.jit(f)(x)
        assert np.asarray(got).dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_float32_nanmedian_and_ediff1d_to_begin_stay_float32():
    """Fuzz finding (session 3, wrong dtype): np.nanmedian, np.nanpercentile and np.ediff1d(...,
    to_begin=0.5) of float32 arrays are float32 in NumPy (ediff1d casts to_begin to the array's
    dtype); jitad gave float64."""
    x = np.array([[0.3, -0.5, 0.7], [0.1, 0.2, -0.4]], dtype=np.float32)
    for f in (lambda x: np.nanmedian(np.where(x > 0.25, np.nan, x)), lambda x: np.nanmedian(x, axis=0),
              lambda x: np.nanpercentile(x, 30.0), lambda x: np.ediff1d(x, to_begin=0.5)):
        want = f(x.copy())
        got = jitad.jit(f)(x)
        assert np.asarray(got).dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_compiled_integer_min_max_reductions_start_from_the_dtype_bounds():
    """Found again (session 3): a codegen rewrite lost the fix; np.argmax's compiled min-reduction
    over integer positions started from np.inf cast to int64 (garbage), so a loss using argmax
    came out wrong (-1232.1 instead of 5.83), only when compiled."""
    x = np.random.default_rng(1).uniform(0.2, 0.9, (3, 4))

    def f(x):
        return np.sum(x[0] * np.argmax(x, axis=0)) + np.sum(x * np.argmin(x, axis=1)[:, None])
    np.testing.assert_allclose(jitad.jit(f)(x), f(x), rtol=1e-12)


def test_switching_the_backend_is_not_served_by_a_fast_path(monkeypatch):
    """Found in session 3: value_and_grad(f) made again after jitad.config.backend = "reference"
    was still answered by the compiled kernel through the shared fast path, so compiled-vs-reference
    tests compared the kernel with itself."""
    from jitad.backend import cache
    calls = []
    original = cache.ReferenceGraph.__call__
    monkeypatch.setattr(cache.ReferenceGraph, "__call__", lambda self, args: calls.append(1) or original(self, args))
    f = lambda x: np.sum(np.sin(x) ** 3)  # noqa: E731
    x = np.arange(3.0)
    jitad.value_and_grad(f)(x)
    saved = jitad.config.backend
    try:
        jitad.config.backend = "reference"
        jitad.value_and_grad(f)(x)
    finally:
        jitad.config.backend = saved
    assert calls, "the reference backend was asked for but the compiled kernel answered"


def test_views_of_a_scalar_argument_are_copies():
    """A Python float argument is no array: np.reshape(x) is a new array in NumPy, so writing into
    it leaves x alone (jitad traced x as a 0-d array and took the reshape for a view of it). A 0-d
    ndarray argument still has views."""
    def f(x):
        v = np.reshape(x, (1,))
        v[-1] = 2.0 * x
        a = np.asarray(x)
        a[...] = 3.0  # a view of a 0-d array; a new array for a scalar
        return v, x - v, a, x * 1.0
    with_reference = jitad.config.backend
    jitad.config.backend = "reference"
    try:
        for x in (-0.4, np.float64(-0.4), np.array(-0.4)):
            for got, want in zip(jitad.jit(f)(x), f(np.array(x) if isinstance(x, np.ndarray) else x)):
                np.testing.assert_allclose(got, want)
    finally:
        jitad.config.backend = with_reference


def test_logsumexp_with_a_python_weight_keeps_float32():
    x = np.array([1.0, 2.0], dtype=np.float32)
    out = jitad.jit(lambda v: scipy.special.logsumexp(v, b=0.7))(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, scipy.special.logsumexp(x, b=0.7), rtol=1e-6)


def test_logsumexp_of_no_terms_is_scipys_minus_infinity(reference_backend):
    """Found by a sweep of functions on empty arrays after the long fuzz profile's finding (seed 747474):
    scipy.special.logsumexp of an array with no entries raised 'zero-size array to reduction operation
    maximum' (the shift); SciPy gives -inf of the reduced shape (sign -1 with return_sign), float32 kept."""
    for shape, kw in [((0,), {}), ((3, 0), dict(axis=-1)), ((3, 0), dict(axis=0)),
                      ((0, 3), dict(axis=1, keepdims=True)), ((3, 0), dict(axis=-1, return_sign=True)),
                      ((3, 0), dict(axis=-1, b=np.ones((3, 0))))]:
        for dtype in (np.float64, np.float32):
            a = np.ones(shape, dtype)
            f = lambda a: scipy.special.logsumexp(a, **kw)  # noqa: E731
            got, expected = jitad.jit(f)(a), f(a)
            pairs = zip(got, expected) if kw.get("return_sign") else [(got, expected)]
            for g, e in pairs:
                np.testing.assert_array_equal(g, e)
                assert np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
            assert jitad.grad(lambda a: np.sum(f(a)[0] if kw.get("return_sign") else f(a)))(a).shape == shape


def test_compiled_maximum_and_minimum_propagate_nan_and_pick_as_numpy(monkeypatch):
    """Found in session 4: compiled np.maximum/np.minimum were Python's max/min, which drop a NaN
    that comes second ([1, nan] gave 1) and keep the first of two equal values (signed zeros)."""
    monkeypatch.setattr(jitad.config, "compile", "eager")
    f = jitad.jit(lambda x, y: (np.maximum(x, y), np.minimum(x, y), np.maximum(y, x), np.minimum(y, x)))
    x = np.array([1.0, np.nan, 2.0, -0.0, 0.0])
    y = np.array([np.nan, 1.0, 1.0, 0.0, -0.0])
    for got, want in zip(f(x, y), (np.maximum(x, y), np.minimum(x, y), np.maximum(y, x), np.minimum(y, x))):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_tensordot_axes_out_of_range_raise_as_numpy(reference_backend):
    """Found this session (an axis sweep against NumPy): np.tensordot(x, x, axes=([0], [3])) of 2-D
    arrays raises in NumPy; jitad took the axis modulo the rank and returned a value."""
    x = np.ones((2, 2))
    with pytest.raises(IndexError):  # jitad.AxisError is an IndexError too, as NumPy's
        jitad.jit(lambda x: np.tensordot(x, x, axes=([0], [3])))(x)
    with pytest.raises(ValueError, match="shape-mismatch"):
        jitad.jit(lambda x: np.tensordot(x, x, axes=([0, 1], [0])))(x)
    np.testing.assert_allclose(jitad.jit(lambda x: np.tensordot(x, x, axes=([-1], [-2])))(x * 2),
                               np.tensordot(x * 2, x * 2, axes=([-1], [-2])))


def test_float_remainder_floor_divide_and_fmod_are_numpys_bit_for_bit(reference_backend):
    """Found this session: float % and // were x - floor(x / y) * y and floor(x / y), which round:
    5.0 % 0.1 gave 0.0 (NumPy 0.09999999999999973) and 2.0 // 0.2 gave 10.0 (NumPy 9.0); fmod too.
    They now follow C's fmod as NumPy does, signed zeros, infinities and NaN included (the compiled
    kernels are compared in test_compiled's binary group)."""
    special = np.array([5.0, 2.0, 0.3, -7.3, 1e17, -0.0, 0.0, np.inf, -np.inf, np.nan, 1e-300, 0.1, -0.1, 0.2, 3.0])
    x, y = (a.ravel() for a in np.meshgrid(special, special))
    with np.errstate(all="ignore"):
        for f in (np.remainder, np.floor_divide, np.fmod, lambda x, y: np.divmod(x, y)[0], lambda x, y: x % y):
            want, got = f(x, y), jitad.jit(f)(x, y)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
            assert np.array_equal(np.signbit(got), np.signbit(want))
    x32 = np.array([5.5, -2.0, 0.0], np.float32)
    assert jitad.jit(np.remainder)(x32, np.float32(-1.0)).dtype == np.float32


def test_transpose_cumsum_dtype_and_take_modes_as_numpy(reference_backend):
    """Found this session by a sweep of edge cases against NumPy: np.transpose(x, (0,)) of a 2-D array
    returned a value where NumPy raises; np.cumsum(x, dtype=np.float32) was float64; np.take with
    mode='clip'/'wrap' and np.divmod were unsupported."""
    x = np.arange(1.0, 7.0).reshape(2, 3)
    for axes in ((0,), (0, 0), (0, 1, 2)):
        with pytest.raises(ValueError):
            jitad.jit(lambda x: np.transpose(x, axes))(x)
    for f in (lambda x: np.cumsum(x, dtype=np.float32), lambda x: np.cumprod(x, axis=1, dtype=np.float32),
              lambda x: np.take(x, [7, -1], mode="clip"), lambda x: np.take(x, [7, -8], mode="wrap"),
              lambda x: np.divmod(x, 2.5)[1]):
        want, got = f(x.copy()), jitad.jit(f)(x)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    g = jitad.grad(lambda x: np.sum(np.take(x, [7, 0, -8], mode="wrap") ** 2))(x)
    np.testing.assert_array_equal(g, np.array([[2.0, 4.0, 0.0], [0.0, 10.0, 0.0]]))  # positions 1, 0 and 4


def test_round_with_decimals_is_numpys_bit_for_bit(reference_backend):
    """Found this session: np.round(x, 1) multiplied by 0.1 instead of dividing by 10, so
    np.round(0.3, 1) was 0.30000000000000004; NumPy divides (and for decimals < 0 multiplies)."""
    x = np.array([0.3, -7.3, 123.456, 1e17, 0.15, 2.5, 1234.5, -0.0])
    for d in (-2, -1, 1, 2, 3):
        for a in (x, x.astype(np.float32)):
            want, got = np.round(a, d), jitad.jit(lambda a: np.round(a, d))(a)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_eigh_upper_has_numpys_eigenvectors(backend, monkeypatch):
    """Found by running autograd's test_linalg through jitad: np.linalg.eigh(a, "U") computed the
    factorisation of the lower triangle of aᵀ (the same matrix), whose eigenvectors can have the
    opposite sign to NumPy's. It is now LAPACK's syevd on the upper triangle, as NumPy calls it; the
    cotangent still reaches the upper triangle only. scipy.linalg.eigh had NumPy's eigenvectors,
    where SciPy's default driver (syevr) gives other signs: it now calls SciPy's driver."""
    import scipy.linalg  # scipy.linalg.eigh: syevr by default (its signs differ from syevd's), or syevd
    monkeypatch.setattr(jitad.config, "backend", backend)
    rng = np.random.default_rng(4)

    def every_call(a, batch):  # one kernel per dtype
        return (np.linalg.eigh(batch, "U"), scipy.linalg.eigh(a), scipy.linalg.eigh(a, lower=False),
                scipy.linalg.eigh(a, lower=False, driver="evd"))
    # compiled: float32 only (the primitive table's rows eigh_vectors_upper_and_scipy and
    # eigvalsh_upper_batched compile these calls in float64, and their gradients, in test_compiled)
    for dtype in (np.float64, np.float32) if backend == "reference" else (np.float32,):
        a, batch = rng.standard_normal((5, 5)).astype(dtype), rng.standard_normal((2, 4, 4)).astype(dtype)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
        for k, (got, want) in enumerate(zip(jitad.jit(every_call)(a, batch), every_call(a, batch))):
            for g, w in zip(got, want):  # a sign flip is a difference of 2 |v|
                assert g.dtype == w.dtype
                if k == 0 and dtype == np.float32 and backend == "numba":
                    # compiled, np.linalg.eigh runs SciPy's LAPACK (the one Numba reaches), NumPy its own:
                    # in float32 the two builds can pick opposite signs (float64 agreed on every matrix tried)
                    g, w = g * np.sign(g[..., :1, :]), w * np.sign(w[..., :1, :])
                np.testing.assert_allclose(g, w, **tol)  # (NumPy's and SciPy's LAPACK builds may round apart)
    if backend == "reference":
        a = rng.standard_normal((4, 4))
        g = jitad.grad(lambda a: np.sum(np.linalg.eigh(a, "U")[1][:, 0] ** 3 + np.linalg.eigh(a, "U")[0] ** 2))(a)
        assert np.all(np.tril(g, -1) == 0)
        sym = np.triu(a) + np.triu(a, 1).T  # the matrix eigh(a, "U") sees: a finite-difference check on it
        jitad.check_grads(lambda u: np.sum(np.linalg.eigh(u, "U")[0] ** 2), (sym,), order=1, modes=("rev",))


def test_an_operator_on_a_written_workspace_and_a_view(reference_backend):
    """Found by the long fuzz profile (seed 50505000339): `view - v0`, with v0 = np.zeros(...) written
    with a traced value in a loop and the view a diagonal of an input, raised AttributeError ('Tracer'
    has no attribute 'flags'): the layout bookkeeping of the result read the Workspace v0 as an array."""
    def f(x0, x1):
        v0 = np.zeros((1, 1))
        for i in range(1):
            v0[i] = np.tanh(x1[i] + v0[max(i - 1, 0)])
        return np.diagonal(x0, -1, -2, 1) - v0

    x0, x1 = np.array([[-0.4, -1.2], [-0.8, 0.3], [0.5, 0.4]]), np.array([[-0.7]])
    np.testing.assert_array_equal(jitad.jit(f)(x0, x1), f(x0, x1))
    jitad.check_grads(lambda a, b: f(a, b) * np.array([[1.0, 2.0]]), (x0, x1), order=1)


def test_second_order_of_a_write_into_a_reshaped_python_scalar(reference_backend):
    """Found by the long fuzz profile (seed 90909000657): np.reshape of a Python float is a new array in
    NumPy, so writing into it leaves the float alone. First order knew (the argument was a scalar); the
    inner transform of hessian/hvp saw the enclosing trace's tracer and took it for an array whose
    view the write changes: a silently wrong Hessian (4.96 against 4.04)."""
    def f(x0):
        v0 = np.reshape(x0, (1, 1))
        v0[0, ...] = 2.0 * np.ravel(x0)[:1]
        return np.sum(np.sin(v0) * 0.9) + np.sum(np.float_power(x0 * x0 + 0.5, v0) * 0.3)

    x0 = -0.8
    h = 1e-5
    fd = (jitad.grad(f)(x0 + h) - jitad.grad(f)(x0 - h)) / (2 * h)
    assert jitad.hessian(f)(x0) == pytest.approx(fd, rel=1e-7)
    assert jitad.hvp(f, (x0,), (1.0,)) == pytest.approx(fd, rel=1e-7)
    jitad.check_grads(f, (x0,), order=2)


def test_matrix_power_zero_is_a_fresh_writable_identity(reference_backend):
    """Found by the long fuzz profile (seed 90909000050): np.linalg.matrix_power(x, 0) is a new array in
    NumPy, written into later (through np.cos of it, a view of that); jitad returned a constant that its
    in-place tracking did not own, and the write raised InPlaceUpdateError."""
    def f(x0):
        w = np.cos(np.linalg.matrix_power(x0, 0))
        view = np.swapaxes(w, 0, -1)
        view[-1] = np.exp(np.ravel(x0)[:2])
        return w + view.sum() * 0.5

    x0 = np.array([[1.9, 0.2], [0.3, -0.4]])
    np.testing.assert_array_equal(jitad.jit(f)(x0), f(x0))
    jitad.check_grads(f, (x0,), order=1)


def test_compiled_integer_sums_are_exact_and_index():
    """An integer sum's accumulator started at 0.0 in generated code, so Numba summed int64 values in
    float64: np.sum of int64 values beyond 2**53 was off (1188950301625810944 for NumPy's
    1188950301625810955, silently), and np.interp of a scalar, whose bin is such a sum used as an
    index, did not compile."""
    b = np.array([2 ** 60 + 1, 3, 2 ** 55 + 7], np.int64)
    total, product = jitad.jit(lambda b: (np.sum(b), np.prod(b[1:2] + 1)))(b)
    assert total == np.sum(b) and type(total) is np.int64 and product == 4
    x = np.array([0.3, 0.7])
    assert jitad.jit(lambda x: np.interp(x[0], [0.0, 1.0], [1.0, 2.0]))(x) == np.interp(0.3, [0.0, 1.0], [1.0, 2.0])


def test_any_and_all_of_no_elements_and_a_zero_d_boolean_index(reference_backend):
    """Found by the fuzzer's shapes profile (seed 5): np.all / np.any (and .all()/.any()) of a traced
    array with no elements raised 'zero-size array to reduction operation minimum' (NumPy: True and
    False); and x[x > 0] of a 0-d x, where NumPy adds an axis of length 1 or 0, was 'a 0-d boolean
    index is not supported'."""
    for v in (np.zeros(0), np.zeros((0, 3)), np.array([[1.0, -1.0, 2.0]])):
        for f in (lambda x: np.all(x > 0), lambda x: np.any(x > 0), lambda x: (x > 0).all(axis=0),
                  lambda x: (x > 0).any(axis=-1)):
            got, expected = jitad.jit(f)(v), f(v)
            np.testing.assert_array_equal(got, expected)
            assert np.shape(got) == np.shape(expected)
    for v in (np.float64(2.0), np.array(-1.0)):
        for f in (lambda x: x[x > 0] * 2.0, lambda x: x[np.True_], lambda x: x[np.False_]):
            got, expected = jitad.jit(f)(v), f(np.asarray(v))
            np.testing.assert_array_equal(got, expected)
            assert np.shape(got) == np.shape(expected)
    assert jitad.grad(lambda x: np.sum(x[x > 0] ** 2))(2.0) == 4.0
    assert jitad.grad(lambda x: np.sum(x[x > 0] ** 2))(-2.0) == 0.0


def test_put_into_an_array_not_c_ordered_in_memory(reference_backend):
    """Found by the recent fuzz profile (seed 626262): np.put(v, [0, -1], ...) with v = moveaxis(x) * 1.0
    (NumPy keeps the operand's memory order, so v is not C-ordered) was lost: jitad wrote into
    v.reshape(-1), which for such a v is a copy in NumPy and in jitad, so v kept its values (a silently
    wrong result). np.put writes a.flat, C order of the elements, whatever the memory order."""
    def f(x0):
        v3 = np.moveaxis(x0, -3, -1) * 1.0
        np.put(v3, [0, -1], [0.5, -0.5])
        return v3
    x0 = np.array([[[-0.5, -5.6]], [[-2.9, -2.5]]])
    np.testing.assert_array_equal(jitad.jit(f)(x0), f(x0))
    x = np.arange(12.0).reshape(3, 4)

    def g(x):
        y = x.T * 1.0
        np.put(y, [0, -1, 5, 5], [9.0, 8.0, 7.0])
        np.put(y, np.argsort(x[0]), [1.5, 2.5])
        return y
    np.testing.assert_array_equal(jitad.jit(g)(x), g(x))
    jitad.check_grads(lambda x: np.sum(f(x) ** 2), (x0,), order=1)


def test_bincount_of_no_labels_is_numpys_intp_zeros(reference_backend):
    """Found by the sweep of functions on empty arrays (after seed 747474 of the long fuzz profile):
    np.bincount of an empty list with weights is NumPy's early return, intp zeros of length minlength
    whatever the weights; jitad's was float64 (a wrong dtype)."""
    w = np.zeros(0)
    for labels in (np.zeros(0, np.int64), np.zeros(0, np.int32)):
        for f, args in ((lambda w: np.bincount(labels, weights=w, minlength=2), (w,)),
                        (lambda lab, w: np.bincount(lab, weights=w, minlength=3), (labels, w))):
            got, expected = jitad.jit(f)(*args), f(*args)
            np.testing.assert_array_equal(got, expected)
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert jitad.grad(lambda *a: np.sum(f(*a) * 1.0), argnums=len(args) - 1)(*args).shape == (0,)
    labels, w = np.array([1, 0, 1]), np.array([0.5, 1.0, 2.0], np.float32)  # with labels: float64 sums, as before
    got = jitad.jit(lambda w: np.bincount(labels, weights=w))(w)
    assert got.dtype == np.float64 and np.array_equal(got, np.bincount(labels, weights=w))


def test_nan_order_statistics_of_no_values_are_numpys(reference_backend):
    """Found by the sweep of functions on empty arrays (after seed 747474 of the long fuzz profile):
    np.nanmedian / nanquantile / nanpercentile of an array with no entries raised IndexError 'cannot do a
    non-empty take from an empty axes'. NumPy returns np.nanmean(a, axis) there (NaN, and no q axis)."""
    fns = [lambda x: np.nanmedian(x), lambda x: np.nanmedian(x, axis=0),
           lambda x: np.nanquantile(x, [0.2, 0.7], axis=-1),
           lambda x: np.nanpercentile(x, [10.0, 50.0], axis=0, keepdims=True)]
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):  # NumPy's 'Mean of empty slice'
        for shape in [(0,), (0, 3), (3, 0), (2, 0, 2)]:
            for dtype in (np.float64, np.float32):
                x = np.zeros(shape, dtype)
                for f in fns:
                    got, expected = jitad.jit(f)(x), f(x)
                    np.testing.assert_array_equal(got, expected)
                    assert np.shape(got) == np.shape(expected) and np.asarray(got).dtype == np.asarray(expected).dtype
                    assert jitad.grad(lambda x: np.nansum(f(x)))(x).shape == shape


def test_cond_of_a_non_square_matrix_raises_numpys_linalg_error():
    """Found by the fuzz helper (session 13): np.linalg.cond(x, p) for p other than None and +-2
    inverts x; of a non-square x jitad raised its own ShapeError (from inv), which `except
    np.linalg.LinAlgError` does not catch. NumPy checks first and raises LinAlgError."""
    x = np.ones((2, 3))
    for p in (1, -1, np.inf, -np.inf, "fro", "nuc"):
        with pytest.raises(np.linalg.LinAlgError, match="must be square"):
            np.linalg.cond(x, p)
        with pytest.raises(np.linalg.LinAlgError, match="must be square"):
            jitad.jit(lambda x: np.linalg.cond(x, p))(x)
    for p in (None, 2, -2):  # the singular values: defined for any shape
        np.testing.assert_allclose(jitad.jit(lambda x: np.linalg.cond(x, p))(x + np.eye(2, 3)),
                                   np.linalg.cond(x + np.eye(2, 3), p), rtol=1e-12)


def test_a_select_whose_zero_branch_gave_the_shape_keeps_it_in_the_adjoint():
    """Long fuzz seed 141414, program 91: the adjoint of np.where(c, a, 0) times a derivative is taken
    inside the select (so an untaken lane stays 0, not 0 * inf); when the zero branch was a size-1
    array that gave the select its shape (a 0-d c and a), that product lost the shape and the next
    rule raised IndexError on the NumPy tier (first calls) and while tracing."""
    def g(x0, x1):
        v1 = scipy.special.boxcox(0.8 * np.tanh(x0[-2::2]) + 1.2, 0.5)
        v3 = np.logaddexp(np.linspace(1.14, -0.56, 1), v1[0] * 0.5)
        return np.sum(np.where(1.47 > v3, 1.47, 2.0 * v3) * np.cos(np.arange(1) * 1.7 + 0.3))
    args = (np.array([[-1.0871012847480626]]), 0.6419336792451034)
    saved = jitad.config.backend, jitad.config.compile
    try:
        jitad.config.backend = "reference"
        expected = jitad.value_and_grad(g, argnums=(0, 1))(*args)
        jitad.config.backend, jitad.config.compile = "numba", "off"  # the NumPy tier: rules on arrays
        tier = jitad.value_and_grad(g, argnums=(0, 1))(*args)
    finally:
        jitad.config.backend, jitad.config.compile = saved
    np.testing.assert_allclose(tier[0], expected[0], rtol=1e-14)
    np.testing.assert_allclose(tier[1][0], expected[1][0], rtol=1e-14)
    assert np.shape(tier[1][0]) == (1, 1) and float(tier[1][1]) == 0.0


def test_factorial_of_a_float32_numpy_scalar_is_float32(reference_backend):
    """SciPy's factorial takes a NumPy scalar through its scalar path (gamma(n + 1) in the scalar's
    dtype) and an array through its array path (float64): a ufunc's result on a 0-d float32 array is a
    float32 scalar, so NumPy's program gave float32 where jitad gave float64 (fuzzer, profile 'new',
    seed 303030000820)."""
    def f(x):
        return scipy.special.factorial(0.8 * np.tanh(x) + 1.2)
    for x in (np.array(0.2, np.float32), np.float32(0.2), np.array(0.2), np.array([0.2, 0.5], np.float32)):
        want, got = f(x), jitad.jit(f)(x)
        assert np.asarray(got).dtype == np.asarray(want).dtype, (x, got, want)
        np.testing.assert_allclose(got, want, rtol=1e-6)  # float32 arithmetic before the factorial


def test_forward_mode_through_an_empty_reduction_is_zero_not_nan(reference_backend):
    """A value with no entries carries no derivative: np.sum(x[:0] ** 2) is 0 for every x. Forward mode
    kept it active, so the rule of what followed multiplied its empty-sum tangent (0) by a factor that is
    infinite at 0: np.linalg.vector_norm(x, ord=3) of an empty x (sum(|x|^3) ** (1/3)) had jvp NaN where
    the derivative is 0 (fuzzer, profile 'new', seed 737373000620), and added to x[0] the NaN spoiled
    d/dx0 = 1 in jvp and jacfwd (reverse mode was right: its cotangent goes into an empty array)."""
    empty = np.zeros((0, 1))
    _, tangent = jitad.jvp(lambda x: np.linalg.vector_norm(x, ord=3), (empty,), (empty,))
    assert float(tangent) == 0.0
    x = np.array([0.4, 0.7])
    funcs = [lambda x: np.linalg.vector_norm(x[:0], ord=3) + x[0],
             lambda x: np.sum(x[:0] ** 2) ** (1 / 3) + x[0],
             lambda x: (x[:0] @ x[1:1]) ** (1 / 3) + x[0],
             lambda x: np.einsum("i,i->", x[:0], x[:0]) ** (1 / 3) + x[0],
             lambda x: np.sqrt(np.prod(x[:0]) - 1.0) + x[0],
             lambda x: np.sqrt(np.sum(np.abs(x[:0]))) + 2.0 * x[1]]
    for k, f in enumerate(funcs):
        want = np.array([1.0, 0.0]) if k < 5 else np.array([0.0, 2.0])
        np.testing.assert_array_equal(jitad.jacfwd(f)(x), want)
        np.testing.assert_array_equal(jitad.jvp(f, (x,), (np.array([1.0, 1.0]),))[1], want.sum())
        np.testing.assert_array_equal(jitad.grad(f)(x), want)
        np.testing.assert_array_equal(jitad.hessian(f)(x), np.zeros((2, 2)))


def test_betaln_float32_slope_where_one_argument_dwarfs_the_other(reference_backend):
    """d/db betaln(a, b) = psi(b) - psi(a + b) cancels where a << b: in float32 (psi rounds by ~1e-6
    near 11) the slope of betaln(x^2 + 0.5, x^-4 + 0.5) at x = 0.06 (b = 77161) was 2.4% off (fuzzer,
    profile long, seed 959595). float32 operands are differenced in float64 now."""
    def f(x):
        return np.sum(scipy.special.betaln(x * x + 0.5, x ** -4 + 0.5))

    exact = 31.98928424518847  # mpmath, at float32(0.06)
    for fun in (f, lambda x: np.sum(scipy.special.betaln(x ** -4 + 0.5, x * x + 0.5))):
        g = jitad.grad(fun)(np.array([0.06], np.float32))
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, [exact], rtol=3e-7)
