"""In-place writes in traced functions (issue 11, item 4): each program is compared with NumPy
(values) and with its functional rewrite (values and gradients), and checked against finite
differences in both modes; one group runs compiled; a property test writes and reads at random."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import jitad

RNG = np.random.default_rng(0)
X = RNG.standard_normal(6)
M = RNG.standard_normal((3, 4))


# --- programs and their functional rewrites ----------------------------------------------------
def set_int(x):
    y = x * 2.0
    y[1] = x[0] ** 2
    return np.sum(np.sin(y))


def set_int_f(x):
    y = x * 2.0
    return np.sum(np.sin(np.concatenate([y[:1], x[:1] ** 2, y[2:]])))


def set_slice(x):
    y = np.exp(x)
    y[2:5] = x[:3] * 3.0
    return np.sum(y * y)


def set_slice_f(x):
    y = np.exp(x)
    return np.sum(np.concatenate([y[:2], x[:3] * 3.0, y[5:]]) ** 2)


MASK = np.array([True, False, True, False, False, True])


def set_mask(x):
    y = x.copy()
    y[MASK] = 0.5 * x[:3]
    return np.sum(y ** 3)


def set_mask_f(x):
    return np.sum(np.where(MASK, 0.5 * np.array([x[0], x[0], x[1], x[1], x[1], x[2]]), x) ** 3)


def set_repeated(x):  # repeated positions: the last write wins
    y = x.copy()
    y[[0, 2, 0]] = x[3:] * 4.0
    return np.sum(y ** 2)


def set_repeated_f(x):
    return np.sum(np.concatenate([x[5:] * 4.0, x[1:2], x[4:5] * 4.0, x[3:]]) ** 2)


def iadd_repeated(x):  # buffered: a repeated index adds once, as in NumPy
    y = x.copy()
    y[[1, 1, 3]] += x[:3] ** 2
    return np.sum(y ** 2)


def iadd_repeated_f(x):
    return np.sum(np.concatenate([x[:1], x[1:2] + x[1:2] ** 2, x[2:3], x[3:4] + x[2:3] ** 2, x[4:]]) ** 2)


def add_at(x):  # unbuffered: repeated indices all add
    y = x.copy()
    np.add.at(y, [1, 1, 3], x[:3] ** 2)
    return np.sum(y ** 2)


def add_at_f(x):
    return np.sum(np.concatenate([x[:1], x[1:2] + x[0:1] ** 2 + x[1:2] ** 2, x[2:3], x[3:4] + x[2:3] ** 2,
                                  x[4:]]) ** 2)


def overwrite_read(x):  # z read y before the write: it keeps the old values
    y = x * 3.0
    z = y * y
    y[2] = 0.0
    y[4] = z[2]
    return np.sum(y * z)


def overwrite_read_f(x):
    y = x * 3.0
    z = y * y
    y2 = np.concatenate([y[:2], np.zeros(1), y[3:4], z[2:3], y[5:]])
    return np.sum(y2 * z)


def loop_fill(x):  # an array made inside the function, filled in a loop
    out = np.zeros(6)
    for i in range(6):
        out[i] = np.sin(x[i]) * (out[i - 1] if i else 1.0)
    return np.sum(out)


def loop_fill_f(x):
    vals = [np.sin(x[0])]
    for i in range(1, 6):
        vals.append(np.sin(x[i]) * vals[-1])
    return np.sum(np.stack(vals))


def write_argument(x):  # the caller's array is not modified (checked below)
    x[0] = 3.0 * x[1]
    x += 1.0
    return np.sum(x ** 2)


def write_argument_f(x):
    return np.sum((np.concatenate([3.0 * x[1:2], x[1:]]) + 1.0) ** 2)


def view_write(x):  # a write through a view changes the array it views
    y = x * 1.0
    z = y[1:]
    z[0] = 5.0 * x[0]
    return np.sum(y ** 2) + np.sum(z)


def view_write_f(x):
    y = np.concatenate([x[:1], 5.0 * x[:1], x[2:]])
    return np.sum(y ** 2) + np.sum(y[1:])


def view_after_write(x):  # a view taken before a write sees it
    y = x * 1.0
    z = y[1:4]
    y[2] = x[5] ** 3
    return np.sum(z * x[:3])


def view_after_write_f(x):
    return np.sum(np.concatenate([x[1:2], x[5:] ** 3, x[3:4]]) * x[:3])


def matrix_writes(m):
    a = m.copy()
    a[:, 1] = m[0, :3] ** 2
    a[2] = 7.0
    a[0, 0] += a[1, 1]
    a.T[3, 1] = 4.0 * m[0, 0]  # through a transposed view
    r = a.reshape(-1)
    r[5] = m[1, 1] ** 2  # through a reshaped view
    return np.sum(a * m)


def matrix_writes_f(m):
    col = m[0, :3] ** 2
    row0 = np.concatenate([m[0, :1] + col[1:2], col[:1], m[0, 2:]])
    row1 = np.concatenate([m[1, :1], m[1, 1:2] ** 2, m[1, 2:3], 4.0 * m[0, :1]])
    row2 = np.full(4, 7.0)
    return np.sum(np.stack([row0, row1, row2]) * m)


def augmented_alias(x):  # y and z are one array: z += ... changes y (NumPy semantics)
    y = x * 1.0
    z = y
    z += x ** 2
    v = y[::2]
    v *= 3.0
    return np.sum(y * 3.0)


def augmented_alias_f(x):
    y = x + x ** 2
    return np.sum(np.where(np.arange(6) % 2 == 0, 3.0 * y, y) * 3.0)


def workspace_views(x):
    out = np.zeros((3, 2))
    row = out[1]
    row[:] = x[:2]
    out[2, 1] = x[3]
    before = np.ones(4)
    b = before[1:]
    before[2] = x[0]
    return np.sum(out * np.arange(6.0).reshape(3, 2)) + np.sum(b * x[:3])


def workspace_views_f(x):
    out = np.concatenate([np.zeros(2), x[:2], np.zeros(1), x[3:4]]).reshape(3, 2)
    b = np.concatenate([np.ones(1), x[:1], np.ones(1)])
    return np.sum(out * np.arange(6.0).reshape(3, 2)) + np.sum(b * x[:3])


def ufunc_out(x):
    out = np.zeros(6)
    np.multiply(x, x, out=out)
    out += 1.0
    out[2:] -= x[:4]
    s = np.empty(())
    np.sum(out, out=s)
    return s * 2.0


def ufunc_out_f(x):
    out = x * x + 1.0
    return 2.0 * np.sum(np.concatenate([out[:2], out[2:] - x[:4]]))


def set_traced(x):
    y = x * 2.0
    y[np.argmax(x)] = x[0] ** 2  # a traced position
    idx = np.argsort(x)[[0, 1, 0]]  # traced, repeated: the last write wins, as in NumPy
    y[idx] = x[3:6] * 3.0
    z = np.zeros((3, 6))
    z[1:, np.argmin(x)] = x[1]  # through a view, at a traced column
    return np.sum(y * y) + np.sum(z * np.arange(18).reshape(3, 6))


def set_traced_f(x):
    cells, idx = np.arange(6), np.argsort(x)[[0, 1, 0]]
    y = np.where(cells == np.argmax(x), x[0] ** 2, x * 2.0)
    for i, v in zip(idx, x[3:6] * 3.0):
        y = np.where(cells == i, v, y)
    column = np.where(cells == np.argmin(x), x[1], 0.0)
    return np.sum(y * y) + np.sum(np.stack([0.0 * column, column, column]) * np.arange(18).reshape(3, 6))


def set_traced_mask(m):
    y = np.exp(m)
    y[m < 0] = 0.5  # a traced mask (x[x < 0] = 0)
    y[m[:, 0] > 0] = m[0] * 2.0  # a mask of the rows, one row written to each
    return np.sum(y * m)


def set_traced_mask_f(m):
    y = np.where(m < 0, 0.5, np.exp(m))
    y = np.where((m[:, 0] > 0)[:, None], m[0] * 2.0, y)
    return np.sum(y * m)


def ufunc_where(x):
    """A ufunc's where= with out=: out keeps its values where the condition is False (NumPy's), into an
    array made in the function (not traced until written) and into a traced one, with a traced mask."""
    kept = np.ones(6)
    np.divide(x, x[::-1] ** 2 + 0.5, out=kept, where=np.arange(6) % 2 == 0)
    traced = x * 3.0
    np.exp(x, out=traced, where=x > 0.5)
    np.multiply(x, traced, out=traced, where=x < 0.2)
    s, r = np.divmod(x * 4.0, 1.5, out=(np.zeros(6), x.copy()), where=np.arange(6) > 1)
    return np.sum(kept * x) + np.sum(traced ** 2) + np.sum(s * r * x)


def ufunc_where_f(x):
    even = np.arange(6) % 2 == 0
    kept = np.where(even, x / (x[::-1] ** 2 + 0.5), 1.0)
    traced = np.where(x > 0.5, np.exp(x), x * 3.0)
    traced = np.where(x < 0.2, x * traced, traced)
    late = np.arange(6) > 1
    s = np.where(late, np.floor_divide(x * 4.0, 1.5), 0.0)
    r = np.where(late, np.remainder(x * 4.0, 1.5), x)
    return np.sum(kept * x) + np.sum(traced ** 2) + np.sum(s * r * x)


PROGRAMS = [
    (set_traced, set_traced_f, X), (set_traced_mask, set_traced_mask_f, M),
    (set_int, set_int_f, X), (set_slice, set_slice_f, X), (set_mask, set_mask_f, X),
    (set_repeated, set_repeated_f, X), (iadd_repeated, iadd_repeated_f, X), (add_at, add_at_f, X),
    (overwrite_read, overwrite_read_f, X), (loop_fill, loop_fill_f, X), (write_argument, write_argument_f, X),
    (view_write, view_write_f, X), (view_after_write, view_after_write_f, X), (matrix_writes, matrix_writes_f, M),
    (augmented_alias, augmented_alias_f, X), (workspace_views, workspace_views_f, X), (ufunc_out, ufunc_out_f, X),
    (ufunc_where, ufunc_where_f, X),
]
IDS = [p[0].__name__ for p in PROGRAMS]


@pytest.mark.usefixtures("reference_backend")
@pytest.mark.parametrize("fun,functional,x", PROGRAMS, ids=IDS)
def test_in_place_program(fun, functional, x):
    keep = x.copy()
    want = fun(x.copy())  # NumPy itself
    np.testing.assert_allclose(functional(x.copy()), want, rtol=1e-12, err_msg="the rewrite is not the program")
    value, g = jitad.value_and_grad(fun)(x)
    np.testing.assert_array_equal(x, keep)  # the caller's array is never modified
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(g, jitad.grad(functional)(x), rtol=1e-10, atol=1e-12)
    jitad.check_grads(fun, (x,), order=2, modes=("fwd", "rev"))
    np.testing.assert_array_equal(x, keep)


def test_compiled_in_place_programs_equal_the_reference():
    """One compiled group: the lowered graphs of the updates give the reference's values and gradients."""
    def all_programs(x, m):
        return (set_repeated(x) + add_at(x) + loop_fill(x) + view_after_write(x) + matrix_writes(m)
                + workspace_views(x) + set_mask(x) + ufunc_where(x))

    saved = jitad.config.backend
    try:
        jitad.config.backend = "reference"
        ref = jitad.value_and_grad(all_programs, argnums=(0, 1))(X, M)
        jitad.config.backend = saved  # the compiled default
        got = jitad.value_and_grad(all_programs, argnums=(0, 1))(X, M)
    finally:
        jitad.config.backend = saved
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
    for a, b in zip(got[1], ref[1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# --- arrays made inside the function stay ordinary until a traced value reaches them -------------
@pytest.mark.usefixtures("reference_backend")
def test_created_arrays_stay_concrete_without_traced_writes():
    def f(x):
        mask = np.zeros(6, dtype=bool)
        mask[[1, 4]] = True  # concrete writes stay concrete: the mask is still usable as a mask
        idx = np.zeros(2, dtype=int)
        idx[1] = 3
        if mask.sum() == 2:  # Python control flow on a concrete array is fine
            return np.sum(x[mask] ** 2) + np.sum(x[idx])
        return np.sum(x)

    np.testing.assert_allclose(jitad.grad(f)(X), jitad.grad(lambda x: f(x))(X))
    g = jitad.grad(f)(X)
    np.testing.assert_allclose(g, [1, 2 * X[1], 0, 1, 2 * X[4], 0])


@pytest.mark.usefixtures("reference_backend")
def test_integer_array_casts_like_numpy():
    def f(x):
        out = np.zeros(3, dtype=int)
        out[0] = 2.7  # NumPy truncates
        y = x.copy()
        y[:3] = out
        return np.sum(y * x)

    np.testing.assert_allclose(jitad.value_and_grad(f)(X)[0], f(X.copy()))


# --- errors that stay errors --------------------------------------------------------------------
@pytest.mark.usefixtures("reference_backend")
def test_in_place_errors():
    def traced_mask_rows(x):
        y = x * 1.0
        y[x > 0] = x[:2]  # the mask (read from the values, a guard) selects another number of entries
        return np.sum(y)

    assert np.sum(X > 0) != 2
    with pytest.raises(ValueError):  # NumPy's error
        traced_mask_rows(X)
    with pytest.raises(ValueError, match="could not broadcast"):
        jitad.grad(traced_mask_rows)(X)
    two = np.array([1.0, -1.0, 2.0, -3.0, -4.0, -5.0])
    assert jitad.grad(traced_mask_rows)(two).tolist() == [1.0, 2.0, 0.0, 1.0, 1.0, 1.0]

    def traced_positions_of_a_large_array(x):
        y = np.zeros(1 << 14)
        y[np.argsort(x)] = x  # 6 x 16384 comparisons: within the limit
        z = np.zeros(1 << 22)
        z[np.argsort(x)] = x
        return np.sum(y) + np.sum(z)

    with pytest.raises(jitad.InPlaceUpdateError, match="np.where"):
        jitad.grad(traced_positions_of_a_large_array)(X)

    def broadcast_view(x):
        y = np.broadcast_to(x, (2, 6))
        y[0, 0] = 1.0
        return np.sum(y)

    with pytest.raises(ValueError, match="read-only"):
        jitad.grad(broadcast_view)(X)

    def bad_shape(x):
        y = x * 1.0
        y[:2] = x[:3]
        return np.sum(y)

    with pytest.raises(ValueError, match="could not broadcast"):
        jitad.grad(bad_shape)(X)

    def int_in_place_float(x):
        i = np.arange(6)
        j = x.astype(int)
        j += 0.5
        return np.sum(x) + np.sum(i)

    with pytest.raises(TypeError, match="same_kind"):
        jitad.grad(int_in_place_float)(X)


@pytest.mark.usefixtures("reference_backend")
def test_add_at_at_traced_indices():
    def f(x):
        idx = np.argsort(x)[:3]
        y = np.zeros(6)
        np.add.at(y, idx, x[:3] ** 2)
        np.subtract.at(y, idx, x[3:])
        return np.sum(y * x)

    value, g = jitad.value_and_grad(f)(X)
    np.testing.assert_allclose(value, f(X.copy()), rtol=1e-12)
    jitad.check_grads(f, (X,), order=1)


# --- property test: random writes and reads ------------------------------------------------------
KEYS = [0, 3, -1, slice(1, 4), slice(None, None, 2), slice(4, 0, -1), [2, 2, 5], [0, 4], np.array([1, 1, 1]),
        (np.arange(6) % 3 == 0)]
VALUE_FNS = [lambda x: np.sin(x[0]), lambda x: x[1] * x[2], lambda x: 2.0, lambda x: np.exp(x[3])]


def _program(steps):
    def f(x):
        y = x * 1.0
        views = [y]
        total = 0.0
        for kind, key, fn, ref in steps:
            target = views[ref % len(views)]
            try:  # keys that do not fit the (shorter) view are skipped, in NumPy and in jitad alike
                np.empty(target.shape)[key]
            except IndexError:
                continue
            if kind == "set":
                target[key] = fn(x)
            elif kind == "iadd":
                target[key] += fn(x)
            elif kind == "view":
                views.append(target[key] if isinstance(key, slice) else target)
            else:
                total = total + np.sum(np.cos(target[key]))
        return total + np.sum(y * y)
    return f


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["set", "iadd", "view", "read"]), st.sampled_from(range(len(KEYS))),
                          st.sampled_from(range(len(VALUE_FNS))), st.integers(0, 3)), min_size=1, max_size=8))
def test_random_writes_and_reads_match_numpy(steps):
    steps = [(kind, KEYS[k], VALUE_FNS[v], ref) for kind, k, v, ref in steps]
    f = _program(steps)
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    try:
        value = jitad.value_and_grad(f)(X)[0]
        np.testing.assert_allclose(value, f(X.copy()), rtol=1e-12)
        jitad.check_grads(f, (X,), order=1, modes=("fwd", "rev"))
    finally:
        jitad.config.backend = saved


@pytest.mark.usefixtures("reference_backend")
def test_assembled_matrix_reaches_scipy_and_numpy():
    """A matrix assembled by writes (a common pattern before a solve) is traced wherever it goes."""
    import scipy.linalg
    import scipy.special

    def f(x):
        m = np.eye(2)
        m[0, 0] = x[0] ** 2 + 1.0
        m[1, 0] = x[1]
        y = scipy.linalg.solve_triangular(m, np.array([1.0, 2.0]), lower=True)
        return np.sum(y) + np.sum(scipy.special.expit(m)) + np.linalg.det(m)

    x = np.array([0.5, 0.3])
    np.testing.assert_allclose(jitad.value_and_grad(f)(x)[0], f(x.copy()), rtol=1e-12)
    jitad.check_grads(f, (x,), order=1)


@pytest.mark.usefixtures("reference_backend")
def test_writes_through_view_functions():
    """np.split, np.reshape, np.swapaxes, np.expand_dims give views in NumPy: writes reach y."""
    def f(x):
        y = x * 1.0
        a, b = np.split(y, 2)
        a[0] = x[5] ** 2
        r = np.reshape(y, (2, 3))
        r[1, 2] = x[0] * 7.0
        s = np.swapaxes(r, 0, 1)
        s[0, 1] += 1.0
        e = np.expand_dims(y, 0)
        e[0, 1] = -x[1]
        return np.sum(y * np.arange(6.0)) + np.sum(b ** 2)

    np.testing.assert_allclose(jitad.value_and_grad(f)(X)[0], f(X.copy()), rtol=1e-12)
    jitad.check_grads(f, (X,), order=1)

    def diagonal_write(x):  # NumPy's diagonal view is read-only: the same error
        y = np.outer(x, x)
        np.diagonal(y)[0] = 1.0
        return np.sum(y)

    with pytest.raises(ValueError, match="read-only"):
        diagonal_write(X.copy())
    with pytest.raises(ValueError, match="read-only"):
        jitad.grad(diagonal_write)(X)


@pytest.mark.usefixtures("reference_backend")
def test_views_of_views_and_nested_transforms():
    def broadcast_of_view(x):  # a read-only broadcast of a reshaped view still sees the write
        y = x * 1.0
        w = np.broadcast_to(y.reshape(3, 1), (3, 3))
        y[0] = 5.0 * x[2]
        return np.sum(w * w)

    x = np.arange(1.0, 4.0)
    value, g = jitad.value_and_grad(broadcast_of_view)(x)
    np.testing.assert_allclose(value, broadcast_of_view(x.copy()), rtol=1e-12)
    jitad.check_grads(broadcast_of_view, (x,), order=1)

    def writes_outer_from_inner(x):
        y = x * 1.0

        def inner(z):
            y[0] = z[0]  # y belongs to the enclosing trace
            return np.sum(z * z)
        return np.sum(jitad.grad(inner)(x) * y)

    with pytest.raises(jitad.InPlaceUpdateError, match="enclosing function"):
        jitad.grad(writes_outer_from_inner)(x)


def test_signed_zeros_written_are_numpy_bits():
    """-0.0 written into several elements stays -0.0 (a gather of the values, not a scatter onto +0.0;
    also after a rolled loop); constants 0.0 and -0.0 are different nodes; x + 0.0 is +0.0 at
    x = -0.0 (only -0.0 is neutral to an add). Compiled too."""
    def f(x):
        y = x * 1.0
        y[1:4] = np.array([-0.0, 0.0, -0.0])
        z = np.ones((2, 3))
        z[:, 1] = -0.0 * x[:2]
        z[0, ::2] = [-0.0, 5.0]
        return y, z, x * 0.0, -0.0 * x, x[1:4] + 0.0, 0.0 - y[1:4], y[1:4] - 0.0

    def rolled(x):
        rows = np.ones((6, 3))
        h = x[:3]
        for t in range(6):  # rolled into a scan: a write-only array, written after the loop
            h = np.sin(h) + 0.5
            rows[t] = -0.0 * np.exp(h)  # -0.0 everywhere
        return rows

    want = f(X[:5].copy())
    saved = jitad.config.backend
    try:
        for backend in ("reference", saved):  # saved: the compiled default
            jitad.config.backend = backend
            for a, b in zip(jitad.jit(f)(X[:5]), want):
                np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(np.signbit(a), np.signbit(b), err_msg=backend)
        jitad.config.backend = "reference"  # (the compiled scan: tests/test_rolling.py)
        assert np.all(np.signbit(jitad.jit(rolled)(X))) and np.all(np.signbit(rolled(X)))
    finally:
        jitad.config.backend = saved


def _scalar_then_written(make):
    def f(x):
        v = make(x)
        w = np.reshape(v, (1,))
        w[0] = 5.0  # a new array when v is a NumPy scalar; v itself (a view) when v is a 0-d array
        return v * x
    return f


@pytest.mark.parametrize("make", [
    lambda x: x[0], lambda x: np.sum(x), lambda x: x.sum(), lambda x: np.sin(x[0]), lambda x: x[0] * 2.0,
    lambda x: x @ x, lambda x: np.interp(x[0], [0.0, 1.0], [1.0, 2.0]),  # NumPy scalars
    lambda x: np.where(x[0] > 0, x[0], 1.0), lambda x: np.array(x[0]), lambda x: np.copy(x[0]),
    lambda x: np.asarray(x[0] * 2), lambda x: np.zeros_like(x[0]),  # 0-d arrays
])
def test_zero_d_results_are_numpy_scalars_unless_numpy_makes_an_array(make):
    """Fuzz finding (seed 191919000724, a silent wrong value): NumPy returns a scalar, not a 0-d array,
    for a 0-d result of a ufunc, an operator, a reduction, x[i] or np.interp, so np.reshape of it is
    a new array and a write into that leaves it alone; jitad took every 0-d value for an array and
    wrote through. np.where, np.array, np.copy, np.asarray and the *_like functions do make 0-d arrays."""
    f = _scalar_then_written(make)
    x = np.array([0.3, 0.7])
    np.testing.assert_allclose(jitad.jit(f)(x), f(x.copy()), rtol=1e-15)
    jitad.check_grads(lambda x: np.sum(f(x) ** 2), (x,), modes=("rev",))


def test_augmented_assignment_of_a_numpy_scalar_binds_a_new_value():
    """`v += 1` on a NumPy scalar (np.sum's result) binds v to a new scalar: another name of the old
    one keeps its value (jitad wrote into it, as into an array); on a 0-d array it writes in place."""
    def scalar(x):
        v = np.sum(x)
        u = v
        v += 1.0
        return u * v

    def array(x):
        v = np.array(np.sum(x))
        u = v
        v += 1.0
        return u * v
    x = np.array([0.3, 0.7])
    for f in (scalar, array):
        assert jitad.jit(f)(x) == pytest.approx(f(x.copy()), rel=1e-15)
        jitad.check_grads(f, (x,), modes=("rev",))
