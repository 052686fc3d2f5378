"""The split form (issue 10): a long program compiles as one kernel per distinct loop nest,
called from a plain-Python driver, so compile cost does not grow with a Python loop's length;
and the eager first tier (`staging.Pending`) answers with the same numbers as the compiled form."""
import numpy as np
import optree
import pytest

import jitad
from jitad.backend import codegen


def rnn_loss(params, xs, ys):
    Wx, Wh, b, Wo = params
    h = np.zeros((xs.shape[1], Wh.shape[0]))
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ Wx + h @ Wh + b)
    return np.mean((h @ Wo - ys) ** 2)


def rnn_args(steps, seed=0):
    r = np.random.default_rng(seed)
    params = (r.normal(size=(3, 5)) * 0.3, r.normal(size=(5, 5)) * 0.3, r.normal(size=5) * 0.1,
              r.normal(size=(5, 1)) * 0.3)
    return params, r.normal(size=(steps, 4, 3)), r.normal(size=(4, 1))


def value_and_grad_graph(fun, args):
    """The optimised value-and-gradient graph jitad compiles for `fun(*args)`, with the Python
    loop left unrolled (rolling it into a scan is tests/test_rolling.py's): the split form is
    what serves a long program whose repeated steps do not roll."""
    saved = jitad.config.roll_loops
    jitad.config.roll_loops = False
    try:
        return jitad.value_and_grad(fun).jitad_transform.prepare(args).optimized
    finally:
        jitad.config.roll_loops = saved


def test_loop_steps_share_nest_kernels_whatever_the_length():
    """The nest-reuse property: T = 10, 100 and 300 steps need the same set of distinct kernels."""
    kernels = {}
    for steps in (10, 100, 300):
        split = codegen.generate_split(value_and_grad_graph(rnn_loss, rnn_args(steps)))
        kernels[steps] = set(split.nests)
        assert len(split.calls) > 3 * steps  # every step calls nests...
    assert kernels[10] == kernels[100] == kernels[300]  # ...of one fixed set
    assert len(kernels[10]) <= 12


def test_nest_kernels_are_canonical():
    """A nest's source names its arguments by position: no node ids, no slice starts as literals."""
    split = codegen.generate_split(value_and_grad_graph(rnn_loss, rnn_args(12)))
    for source in split.nests:
        assert "@numba.njit" in source and "def kernel(" in source
    assert "N0(" in split.source and "@numba.njit" not in split.source


@pytest.fixture
def eager():
    saved = jitad.config.compile
    jitad.config.compile = "eager"
    yield
    jitad.config.compile = saved


def test_split_form_compiled_equals_reference(eager, monkeypatch):
    monkeypatch.setattr(jitad.config, "roll_loops", False)  # the split form, not the rolled scan
    args = rnn_args(40)
    value, grads = jitad.value_and_grad(rnn_loss)(*args)
    assert jitad.value_and_grad(rnn_loss).jitad_transform.latest.executor.__class__.__name__ == \
        "SplitCompiledGraph"
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    try:
        want_value, want_grads = jitad.value_and_grad(rnn_loss)(*args)
        # the gradient (equal to the compiled one above) against finite differences: its point is the
        # derivative, not compilation, so on the reference executor (compiled, its vjp is a kernel set more)
        jitad.check_grads(rnn_loss, args, modes=("rev",))
    finally:
        jitad.config.backend = saved
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    for got, want in zip(optree.tree_leaves(grads), optree.tree_leaves(want_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_split_form_is_chosen_for_long_programs(eager):
    from jitad.backend.cache import SplitCompiledGraph, compile_graph
    executor = compile_graph(value_and_grad_graph(rnn_loss, rnn_args(40)), "eager")
    assert isinstance(executor, SplitCompiledGraph)
    small = compile_graph(value_and_grad_graph(lambda x: np.sum(np.sin(x) ** 2), (np.ones(3),)), "eager")
    assert not isinstance(small, SplitCompiledGraph)


@pytest.mark.parametrize("fun,args", [
    (rnn_loss, rnn_args(6)),
    (lambda x: np.sum(np.tanh(x) * np.max(x)), (np.linspace(-1.0, 2.0, 7),)),
    (lambda A, b: np.sum(np.linalg.solve(A @ A.T + np.eye(3), b) ** 2),
     (np.arange(9.0).reshape(3, 3) / 9, np.ones(3))),
])
def test_eager_first_tier_equals_reference(fun, args):
    """compile="off": the transform's body runs op by op on NumPy (the first tier) with the
    reference executor's numbers, in value_and_grad, jvp and vjp."""
    saved = jitad.config.compile, jitad.config.backend
    try:
        jitad.config.compile = "off"
        first = jitad.value_and_grad(fun)(*args)
        tangents = optree.tree_map(np.ones_like, args[0])
        first_jvp = jitad.jvp(lambda p: fun(p, *args[1:]), (args[0],), (tangents,))
        jitad.config.backend = "reference"
        ref = jitad.value_and_grad(fun)(*args)
        ref_jvp = jitad.jvp(lambda p: fun(p, *args[1:]), (args[0],), (tangents,))
    finally:
        jitad.config.compile, jitad.config.backend = saved
    for got, want in zip(optree.tree_leaves((first, first_jvp)), optree.tree_leaves((ref, ref_jvp))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
