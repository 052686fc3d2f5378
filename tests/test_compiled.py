"""The compiled (Numba) path equals the reference executor, for every row of the primitive table.

The groups are generated from tests/primitive_table.py (`compiled_groups`): each packs many rows
into one function, so one compiled kernel covers them (Numba compiles cost seconds). A row with
`compiled_order=2` is compared in second order: one transform compiles its values, the gradient
of a scalar of them (a vector-Jacobian product), the gradient of that gradient's inner product
with a tangent (reverse over reverse), and a jvp (forward mode). Every other row is compared in
reverse mode (values and a vector-Jacobian product). Values are compared with NumPy's too.

By default a group compiles only its rows in the cover of tests/compiled_cover.py (the rows whose
kernels together hold every line template of every row's kernels, and every row calling a LAPACK
or Bessel kernel: 168 of 289 rows); JITAD_TEST_FULL=1 compiles every row.
"""
import numpy as np
import optree
import pytest

import jitad
from jitad import primitives as P
from compiled_cover import kept_rows, templates
from primitive_table import ROWS, TABLE, compiled_groups, group_function, leaves

# a row of second order is compiled in its second-order group only, which checks its first order too
GROUPS = compiled_groups([row for row in TABLE if row.group is not None and row.compiled_order != 2])
SECOND_ORDER = compiled_groups([row for row in TABLE if row.group is not None and row.compiled_order == 2])


def _both_backends(fn):
    saved = jitad.config.backend
    try:
        jitad.config.backend = "numba"
        compiled = fn()
        jitad.config.backend = "reference"
        reference = fn()
    finally:
        jitad.config.backend = saved
    return compiled, reference


def _tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def _assert_trees_close(compiled, reference, what):
    assert optree.tree_structure(compiled) == optree.tree_structure(reference), what
    for path, a, b in zip(optree.tree_paths(compiled), optree.tree_leaves(compiled), optree.tree_leaves(reference)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, f"{what} at {path}: dtype {a.dtype} compiled, {b.dtype} reference"
        low = np.float32 if np.float32 in (a.dtype, b.dtype) else np.float64
        np.testing.assert_allclose(a, b, **_tolerance(low), err_msg=f"{what} at {path}")


def _assert_numpy_values_and_dtypes(rows, values, grads, args, expected):
    """The compiled values are NumPy's, and each gradient has its input's dtype."""
    for row in rows:
        for a, e in zip(leaves(values[row.name]), leaves(expected[row.name])):
            np.testing.assert_allclose(a, e, **_tolerance(np.asarray(e).dtype), err_msg=f"{row.name}: NumPy's value")
    for row, g, a in zip(rows, grads, args):
        assert [np.asarray(x).dtype for x in g] == [np.asarray(x).dtype for x in a], row.name


def check_group_reverse(rows):
    """Values and a vector-Jacobian product of one group, compiled against the reference executor."""
    fn = group_function(rows)
    args = [row.compiled_args() for row in rows]
    expected = fn(args)
    ct = {name: optree.tree_map(lambda v: np.asarray(np.random.default_rng(2).standard_normal(np.shape(v)),
                                                     np.asarray(v).dtype)[()], out)
          for name, out in expected.items()}

    def run():
        value, vjp_fn = jitad.vjp(fn, args)
        return value, vjp_fn(ct)
    compiled, reference = _both_backends(run)
    _assert_trees_close(compiled, reference, "value / vjp")
    _assert_numpy_values_and_dtypes(rows, compiled[0], compiled[1][0], args, expected)


def check_group_second_order(rows):
    """Of one group, compiled against the reference: the gradient g of a scalar of the values (a
    vector-Jacobian product), grad of <g, t> (reverse over reverse) and a jvp (forward), and the
    values (NumPy's too).

    One transform compiles them all: g and the jvp are auxiliary outputs of the second-order
    gradient, so the forward pass and g are the ones its own computation needs (one kernel set,
    not three; the jvp is still forward mode, the tangents' graph compiled and compared)."""
    fn = group_function(rows)
    args = [row.compiled_args() for row in rows]
    expected = fn(args)
    rng = np.random.default_rng(3)
    tangents = [tuple(np.asarray(rng.standard_normal(np.shape(x)), np.asarray(x).dtype)[()] for x in a) for a in args]

    def scalar(xs):
        return sum(np.sum(np.sin(v)) for v in leaves(fn(xs)))

    def inner(xs):
        g = jitad.grad(scalar)(xs)
        directional = sum(np.sum(d * t) for d, t in zip(leaves(g), leaves(tangents)))
        return directional, (g, jitad.jvp(fn, (xs,), (tangents,)))

    def run():
        return jitad.value_and_grad(inner, has_aux=True)(args)
    compiled, reference = _both_backends(run)
    _assert_trees_close(compiled, reference, "second order / vjp / jvp")
    (_, (g, (values, _))), _ = compiled
    _assert_numpy_values_and_dtypes(rows, values, g, args, expected)


def _compiled_here(kind, rows):
    """The rows of a group that this run compiles: those of the cover (tests/compiled_cover.py), or
    every row with JITAD_TEST_FULL=1."""
    kept = kept_rows()
    rows = rows if kept is None else [row for row in rows if (kind, row.name) in kept]
    if not rows:
        pytest.skip("every line of this group's kernels is compiled by another group (JITAD_TEST_FULL=1 compiles it)")
    return rows


@pytest.mark.parametrize("name, rows", GROUPS, ids=[name for name, _ in GROUPS])
def test_compiled_matches_reference_reverse(name, rows):
    check_group_reverse(_compiled_here("reverse", rows))


@pytest.mark.parametrize("name, rows", SECOND_ORDER, ids=[name for name, _ in SECOND_ORDER])
def test_compiled_matches_reference_second_order(name, rows):
    check_group_second_order(_compiled_here("second", rows))


def test_every_row_is_compiled_or_says_why():
    """A row leaves the compiled groups only with group=None, which the table comments."""
    grouped = [row.name for _, rows in GROUPS + SECOND_ORDER for row in rows]
    assert sorted(grouped) == sorted(row.name for row in ROWS.values() if row.group is not None)


def test_a_wrong_lowering_is_caught(monkeypatch):
    """The compiled check can fail: a reference implementation off by 1e-6 disagrees with the kernel."""
    rows = [ROWS["sin"], ROWS["multiply"]]
    check_group_reverse(rows)
    check_group_second_order(rows)
    monkeypatch.setattr(P.sin_p, "impl", lambda x: np.sin(x) * (1 + 1e-6))
    with pytest.raises(AssertionError, match="value / vjp"):
        check_group_reverse(rows)
    with pytest.raises(AssertionError, match="second order / vjp / jvp"):
        check_group_second_order(rows)


def test_line_templates_abstract_names_and_numbers_only():
    """The cover (tests/compiled_cover.py) treats two rows alike only where their kernels' lines
    differ in names and numbers of one kind; a new operation, an int for a float or another
    dtype is a new template, so a row holding one is compiled."""
    one = "    # x0: args[0][0] (3,) float64\n    add3 = (x0_i + mul2)  # %3 = add(%1, %2)\n    y = x1[i0 // x1.shape[1]]\n"
    same = "    # x4: args[2][0] (2, 2) float64\n    add7 = (x1_i + sin5)\n    z = x7[i3 // x7.shape[0]]\n"
    assert templates(one) == templates(same)
    assert templates(one.replace("+", "*")) != templates(one)
    assert templates("    a = b ** 2\n") != templates("    a = b ** 2.0\n")
    assert templates(one.replace("float64", "float32")) != templates(one)
