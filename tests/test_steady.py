"""Steady-state work of loop programs: what the graph and the kernel plan leave out.

A Python loop over mixture components (`_programs.gmm`) rolls into a scan whose per-step outputs
are joined again with np.stack(columns, axis=1): the join is one transpose of the stacked outputs
(no per-row slices, no concatenate, whose adjoint was one padded sum per row); the reverse sweep
of the scan computes no cotangent for the data array every step reads (it is not differentiated);
fusion computes exp(log_sd) once per element of log_sd, not per element of X, and the softmax's
exp(L - m) once for the three nests that read it. Values equal the unrolled program's on the
reference executor; the plans are checked without compiling.
"""
import math

import numpy as np
import pytest

import jitad
from jitad.backend import codegen
from jitad.frontend import rolling
from jitad.primitives import concatenate_p, exp_p

K, N, D = 6, 40, 2
RNG = np.random.default_rng(11)
PARAMS = (RNG.normal(size=(K, D)) * 2.0, RNG.normal(size=(K, D)) * 0.1, RNG.normal(size=K) * 0.1)
X = RNG.normal(size=(N, D)) * 2.0


def gmm(params, X):
    """`_programs.gmm`: the negative log-likelihood of a diagonal mixture, a loop over components."""
    means, log_sds, logits = params
    top = np.max(logits)
    log_w = logits - (top + np.log(np.sum(np.exp(logits - top))))
    columns = []
    for j in range(means.shape[0]):
        z = (X - means[j]) / np.exp(log_sds[j])
        columns.append(log_w[j] - 0.5 * np.sum(z ** 2, axis=1) - np.sum(log_sds[j])
                       - 0.5 * X.shape[1] * math.log(2 * math.pi))
    L = np.stack(columns, axis=1)
    m = np.max(L, axis=1, keepdims=True)
    return -np.sum(m[:, 0] + np.log(np.sum(np.exp(L - m), axis=1)))


def joined_rows(params, X):
    """Rows of the stacked outputs joined along an existing axis, from the second step on, and
    as reshaped columns: both read back as a transpose of the stack."""
    means, log_sds, _ = params
    rows = [np.tanh(X * means[j] + log_sds[j]) for j in range(means.shape[0])]
    tail = np.concatenate(rows[1:], axis=1)               # (N, (K-1) * D)
    cols = np.concatenate([r[:, :1] for r in rows], axis=1)  # (N, K): a slice of each row, not rolled rows
    return np.sum(tail ** 2) + np.sum(np.sin(cols)) + np.sum(rows[0])


@pytest.fixture
def reference(reference_backend):
    before = rolling.counts["failed"]
    yield
    assert rolling.counts["failed"] == before, "a roll raised (the program then ran unrolled)"


def _unrolled(fun, *args):
    saved = jitad.config.roll_loops
    jitad.config.roll_loops = False
    try:
        return jitad.value_and_grad(lambda *a: fun(*a))(*args)
    finally:
        jitad.config.roll_loops = saved


def _check(fun, memory="store"):
    vg = jitad.value_and_grad(fun, memory=memory)
    value, grads = vg(PARAMS, X)
    ref_value, ref_grads = _unrolled(fun, PARAMS, X)
    assert value == pytest.approx(float(fun(PARAMS, X)), rel=1e-12)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
    return vg.jitad_transform.latest.complete().optimized


def _scans(graph):
    return [n for n in graph.nodes if n.prim.name == "scan"]


@pytest.mark.parametrize("fun, row", [(gmm, (N, 1)), (joined_rows, (N, D))], ids=["gmm", "joined_rows"])
def test_rows_of_a_rolled_loop_join_as_a_transpose(fun, row, reference):
    graph = _check(fun)
    assert len(_scans(graph)) == 2  # the loop and its reverse sweep
    joins = [n for n in graph.nodes if n.prim is concatenate_p and n.inputs[0].shape == row]
    assert not joins, joins


def test_the_reverse_sweep_skips_what_is_not_differentiated(reference):
    graph = _check(gmm)
    forward, backward = sorted(_scans(graph), key=lambda n: n.params["reverse"])
    assert backward.params["reverse"]
    # X (every step reads it, as a const) is not differentiated: no running sum of its cotangent
    carried = [shape for shape, _ in backward.params["body"].carry_avals]
    assert X.shape not in carried, carried
    # under a memory policy the checkpointed sweeps compute every cotangent: the same gradients
    _check(gmm, memory="recompute")


def _plan(fun, *args, transform=jitad.value_and_grad):
    vg = transform(fun)
    vg(*args)
    return vg.jitad_transform.latest.complete().optimized


def test_fusion_stores_transcendentals_read_many_times(reference):
    def scaled(log_sd, X):  # exp of a (2,) value read at each of the (N, 2) points
        return np.sum(((X - 1.0) / np.exp(log_sd)) ** 2)

    graph = _plan(scaled, PARAMS[1][0], X)
    _, _, _, plan = codegen.generate(graph)
    exps = [n for n in graph.nodes if n.prim is exp_p]
    assert exps and all(n.id in plan.materialized for n in exps)

    def logsumexp_rows(L):  # exp(L - m): the forward sum and two adjoint nests read it
        m = np.max(L, axis=1, keepdims=True)
        return np.sum(m[:, 0] + np.log(np.sum(np.exp(L - m), axis=1)))

    graph = _plan(logsumexp_rows, RNG.normal(size=(N, K)))
    _, _, _, plan = codegen.generate(graph)
    (exp,) = [n for n in graph.nodes if n.prim is exp_p and n.shape == (N, K)]
    assert exp.id in plan.materialized


def test_a_flat_value_read_transposed_needs_no_modulo(reference):
    def transposed(v):  # (K * N,) read as (N, K): the flat index is below the size
        return np.sum(np.exp(np.reshape(v, (K, N)).T) * np.arange(1.0, K + 1))

    source = codegen.generate(_plan(transposed, RNG.normal(size=K * N), transform=jitad.jit))[0]
    assert " % " not in source.split("def kernel(", 1)[1], source


def rnn(params, X):
    """A tanh recurrence over the rows of X (a Python loop): each step's products read the carry."""
    Wx, Wh, _ = params
    h = np.zeros((N, Wh.shape[0]))
    for t in range(K):
        h = np.tanh(X * Wx[t] @ Wh[:D] + h @ Wh)
    return np.sum(h ** 2)


def test_the_reverse_sweep_reads_the_stored_products(reference):
    params = (RNG.normal(size=(K, D)), RNG.normal(size=(D, D)) * 0.5, None)
    vg = jitad.value_and_grad(rnn)
    value, grads = vg(params, X)
    ref_value, ref_grads = _unrolled(rnn, params, X)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, ref in zip(grads[:2], ref_grads[:2]):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
    graph = vg.jitad_transform.latest.complete().optimized
    forward, backward = sorted(_scans(graph), key=lambda n: n.params["reverse"])
    products = [n for n in backward.params["body"].graph.nodes if n.prim.name == "matmul"]
    # the step's two products (x Wx Wh[:D], h Wh) are stored by the forward pass, not computed
    # again: the sweep's products are the cotangents' (of h, of the two factors of Wh)
    assert len(products) == 3, products

