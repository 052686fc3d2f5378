"""The primitive table (tests/primitive_table.py) on the reference executor, through check_grads.

Each row is a function of arrays, the domain its inputs are drawn from (chosen away
from kinks and poles), and the shape groups it runs on. Every row's forward value is
NumPy's, and forward and reverse mode are checked against central finite differences at
order 1 and order 2 (3 in reverse), in float64 and float32. A registered primitive
without a row fails `test_every_primitive_has_a_row`; the mutation tests show the table
can fail. tests/test_compiled.py runs the same rows compiled.
"""
from dataclasses import replace

import numpy as np
import optree
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import jitad
from jitad import primitives as P
from jitad.primitives import REGISTRY
from jitad.frontend.tracer import trace
from primitive_table import EXEMPT, ROWS, TABLE

pytestmark = pytest.mark.usefixtures("reference_backend")

# one case per row and shapes, at the row's highest order: check_grads(order=2) checks order 1 first
# (every mode), then the derivative functions themselves, so a case of order 1 beside it repeats a part
CASES = [pytest.param(row, shapes, row.max_order, id=f"{row.name}-{'x'.join(map(str, shapes))}-{row.max_order}"
                      .replace(" ", ""))
         for row in TABLE for shapes in row.shapes]


def _leaves(tree):
    return optree.tree_leaves(tree)


def check_row(row, shapes, order, seed=0):
    """The row's forward value is NumPy's (value, shape, dtype); its derivatives match finite differences
    (check_grads: order 1 in every mode, then, for order 2, the derivative functions at order 1)."""
    args = row.args(shapes, seed)
    expected = row.fun(*args)
    out = jitad.vjp(row.fun, *args)[0]  # the traced forward pass matches NumPy
    assert optree.tree_structure(out) == optree.tree_structure(expected)
    for a, e in zip(_leaves(out), _leaves(expected)):
        np.testing.assert_allclose(a, e, rtol=row.rtol if row.dtype == np.float64 else 1e-6, atol=1e-12)
        assert np.shape(a) == np.shape(e) and np.asarray(a).dtype == np.asarray(e).dtype
    if order:
        jitad.check_grads(row.fun, args, order=order, modes=row.modes)


@pytest.mark.parametrize("row,shapes,order", CASES)
def test_primitive(row, shapes, order):
    check_row(row, shapes, order)


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in TABLE
                                 if row.max_order >= 2 and row.third_order and "rev" in row.modes])
def test_primitive_third_order(row):
    """Rules are built from differentiable ops, so the third derivative is right too (reverse^3)."""
    jitad.check_grads(row.fun, row.args(row.shapes[-1], seed=1), order=3, modes=("rev",))


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in TABLE
                                 if row.dtype == np.float64 and row.float32])
def test_primitive_float32(row):
    """float32 end to end: NumPy's result dtype forward, the input's dtype for every derivative."""
    args = tuple(a.astype(np.float32) for a in row.args(row.shapes[0]))
    expected = np.asarray(row.fun(*args))
    out, vjp_fn = jitad.vjp(row.fun, *args)
    assert np.asarray(out).dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    grads = vjp_fn(np.ones_like(expected)[()])
    assert [np.asarray(g).dtype for g in grads] == [np.dtype(np.float32)] * len(args)
    if "fwd" in row.modes:
        _, tangent = jitad.jvp(row.fun, args, tuple(np.ones_like(a) for a in args))
        assert np.asarray(tangent).dtype == expected.dtype
    jitad.check_grads(row.fun, args, order=1, modes=row.modes)


def test_svd_full_has_no_derivative_and_says_so():
    a = np.random.default_rng(0).standard_normal((3, 2))
    u = jitad.vjp(lambda m: np.linalg.svd(m)[0], a)[0]
    np.testing.assert_allclose(np.abs(u[:, :2]), np.abs(np.linalg.svd(a)[0][:, :2]), atol=1e-12)
    for fun in (lambda m: np.sum(np.linalg.svd(m)[0] ** 3), lambda m: np.sum(np.linalg.svd(m)[2] ** 3)):
        with pytest.raises(jitad.NonDifferentiableError, match="full_matrices"):
            jitad.grad(fun)(a)
    # the singular values of the same call still differentiate
    np.testing.assert_allclose(jitad.grad(lambda m: np.sum(np.linalg.svd(m)[1]))(a),
                               np.linalg.svd(a, full_matrices=False)[0] @ np.linalg.svd(a, full_matrices=False)[2])


def _primitives_in(row):
    """Primitives in a row's graph and in its reverse-mode derivative's graph."""
    args = row.args(row.shapes[0])
    avals = [(np.shape(a), np.asarray(a).dtype) for a in args]

    def pullback(*xs):
        out, vjp_fn = jitad.vjp(row.fun, *xs)
        return optree.tree_leaves([out, vjp_fn(optree.tree_map(lambda o: np.ones(np.shape(o), np.asarray(o).dtype), out))])

    names = set()
    for fun in (lambda *xs: optree.tree_leaves(row.fun(*xs)), pullback):  # trace returns a flat list
        try:
            graph, _ = trace(fun, avals)
        except jitad.NonDifferentiableError:  # a row of values only (lu_factor_values): its forward graph
            assert row.max_order == 0, row.name
            continue
        names |= {node.prim.name for node in graph.nodes}
    return names


def primitives_without_a_row(covered):
    """Registered primitives that neither a row's graph nor the exemption list holds."""
    return sorted(set(REGISTRY) - covered - set(EXEMPT))


@pytest.fixture(scope="module")
def covered():
    return set().union(*(_primitives_in(row) for row in TABLE))


def test_every_primitive_has_a_row(covered):
    missing = primitives_without_a_row(covered)
    assert not missing, f"registered primitives without a row in tests/primitive_table.py: {missing}"
    assert not set(EXEMPT) - set(REGISTRY), "EXEMPT lists primitives that no longer exist"


def test_a_primitive_without_a_row_fails(covered, monkeypatch):
    """The coverage test can fail: a newly registered primitive that no row reaches is reported."""
    monkeypatch.setitem(REGISTRY, "cube_root_of_sin", REGISTRY["sin"])
    assert primitives_without_a_row(covered) == ["cube_root_of_sin"]


def test_the_table_catches_a_wrong_rule(monkeypatch):
    """The table can fail: a wrong JVP or VJP rule of one primitive is caught at its order by its row."""
    shapes = ((3,),)

    def fresh_row():  # the sin row through a new function each time: no cached derivative
        return replace(ROWS["sin"], fun=lambda *args, fun=ROWS["sin"].fun: fun(*args))
    check_row(fresh_row(), shapes, 2)
    monkeypatch.setattr(P.sin_p, "vjp_rule", lambda g, out, x: (g * np.cos(x) * 1.01,))
    with pytest.raises(AssertionError, match="reverse mode"):
        check_row(fresh_row(), shapes, 1)
    monkeypatch.undo()
    monkeypatch.setattr(P.sin_p, "jvp_rule", lambda primals, tangents, out: tangents[0] * np.cos(primals[0]) + 1e-3)
    with pytest.raises(AssertionError, match="forward mode"):
        check_row(fresh_row(), shapes, 1)
    monkeypatch.undo()
    # a second derivative that is wrong while the first is right: cos's rules feed d²sin
    monkeypatch.setattr(P.cos_p, "vjp_rule", lambda g, out, x: (g * np.sin(x),))
    jitad.check_grads(fresh_row().fun, ROWS["sin"].args(shapes), order=1, modes=("rev",))
    with pytest.raises(AssertionError, match="reverse mode \\(order 2, of the reverse-mode derivative\\)"):
        jitad.check_grads(fresh_row().fun, ROWS["sin"].args(shapes), order=2, modes=("rev",))
    with pytest.raises(AssertionError):
        check_row(fresh_row(), shapes, 2)
    monkeypatch.undo()
    monkeypatch.setattr(P.cos_p, "jvp_rule", lambda primals, tangents, out: tangents[0] * np.sin(primals[0]))
    jitad.check_grads(fresh_row().fun, ROWS["sin"].args(shapes), order=1, modes=("fwd",))
    with pytest.raises(AssertionError, match="forward mode \\(order 2, of the forward-mode derivative\\)"):
        jitad.check_grads(fresh_row().fun, ROWS["sin"].args(shapes), order=2, modes=("fwd",))


# --- broadcasting, drawn by hypothesis --------------------------------------------------------
BROADCAST_OPS = [np.add, np.subtract, np.multiply, np.maximum, np.hypot, np.logaddexp, np.arctan2]


@settings(max_examples=40, deadline=None, derandomize=True)  # CI sees the same examples as here
@given(data=st.data())
def test_binary_broadcasting(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3)).input_shapes
    op = data.draw(st.sampled_from(BROADCAST_OPS))
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    args = tuple(np.asarray(rng.uniform(0.3, 2.0, s)) for s in shapes)
    jitad.check_grads(op, args, order=1, modes=("fwd", "rev"), seed=seed)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), data=st.data())
def test_reductions_any_axes(shape, data):
    axis = data.draw(st.none() | hnp.valid_tuple_axes(len(shape)))
    keepdims = data.draw(st.booleans())
    fn = data.draw(st.sampled_from([np.sum, np.mean, np.max, np.var, np.std]))
    x = np.random.default_rng(len(shape)).uniform(-2.0, 2.0, shape)
    jitad.check_grads(lambda v: fn(v, axis=axis, keepdims=keepdims), (x,), order=1)


def test_a_cotangent_made_inside_a_trace_reaches_scatter_add():
    """Regression (found by test_every_primitive_has_a_row): np.ones made while tracing is a hooked array;
    the vjp of a fancy index folds scatter_add on it with np.add.at, which the in-place hooks must pass."""
    x = np.arange(3.0)
    f = lambda x: np.sum(jitad.vjp(lambda y: y[[0, 2, 2]], x)[1](np.ones(3))[0] * x)  # noqa: E731
    np.testing.assert_allclose(jitad.grad(f)(x), [1.0, 0.0, 2.0])
