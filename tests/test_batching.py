"""The batching transform equals k separate evaluations, for every rule in its table.

Runs on the reference executor: each case traces a function, batches it over some of its
inputs, evaluates the batched graph once and compares slice i with the plain graph on
the i-th inputs.
"""
import numpy as np
import pytest

import jitad
from jitad.transforms import batching
from jitad.interpreter import evaluate
from jitad.frontend.tracer import trace

pytestmark = pytest.mark.usefixtures("reference_backend")

K = 3
idx = np.array([2, 0, 2, 1])

# name -> (function, input shapes); every input subset is batched in turn
CASES = {
    # elementwise, with broadcasting between ranks and size-1 axes
    "unary": (lambda x: np.tanh(x) ** 3, [(2, 3)]),
    "binary_broadcast": (lambda x, y: x * y - np.maximum(x, y), [(2, 3), (3,)]),
    "binary_size1": (lambda x, y: x / (1.5 + y ** 2), [(2, 1), (1, 3)]),
    "scalar_operand": (lambda x, s: np.exp(x) * s + s, [(2, 3), ()]),
    "where_compare": (lambda x, y: np.where(x > y, x, 2.0 * y), [(2, 3), (3,)]),
    "convert": (lambda x: (x * 3.0).astype(np.float32) * 2.0, [(4,)]),
    # reductions
    "reductions": (lambda x: [np.sum(x, axis=0), np.max(x, axis=1), np.min(x), np.prod(x, axis=(0, 1))], [(2, 3)]),
    # index primitives
    "reshape": (lambda x: np.reshape(x, (3, 2)) * 1.5, [(2, 3)]),
    "broadcast_to": (lambda x: np.broadcast_to(x, (4, 2, 3)) + 0.5, [(3,)]),
    "transpose": (lambda x: np.transpose(x, (2, 0, 1)) * 2.0, [(2, 3, 4)]),
    "slice_pad": (lambda x: x[1:, ::-2] * 2.0, [(3, 5)]),
    "pad": (lambda g: jitad.primitives.pad_p(g, starts=(1, 0), steps=(1, 2), shape=(4, 5)), [(2, 3)]),
    "diagonal": (lambda x: np.diagonal(x, 1) * 2.0, [(3, 4)]),
    "diag_embed": (lambda g: jitad.primitives.diag_embed_p(g, shape=(3, 3), offset=0, axis1=0, axis2=1), [(3,)]),
    # structural library primitives
    "cumsum": (lambda x: np.cumsum(x, axis=1), [(2, 3)]),
    "take": (lambda x: x[:, idx] * 2.0, [(2, 3)]),
    "dynamic_slice": (lambda x: jitad.primitives.dynamic_slice_p(x, np.int64(1), axis=1, size=2) * 2.0, [(2, 4)]),
    "scatter_add": (lambda g: jitad.primitives.scatter_add_p(g, idx, axis=1, size=3), [(2, 4)]),
    "concatenate": (lambda x, y: np.concatenate([x, y, x], axis=0), [(2, 3), (1, 3)]),
    # matmul: batch folded into rows, into columns, a column vector, and both batched / stacked
    "matmul_matrix": (lambda a, b: a @ b, [(4, 3), (3, 2)]),
    "matvec": (lambda a, x: a @ x, [(4, 3), (3,)]),
    "vecmat": (lambda x, a: x @ a, [(4,), (4, 3)]),
    "matmul_stacked": (lambda a, b: a @ b, [(2, 4, 3), (3, 2)]),
    # loops: the body batched (a while loop whose condition differs between the k loops: k loops)
    "scan": (lambda h, xs, w: list(jitad.scan(lambda c, x: (np.tanh(w * c + x), c * x), h, xs)), [(3,), (4, 3), (3,)]),
    "while": (lambda h, a: jitad.while_loop(lambda c: c[1] < 3, lambda c: (np.sin(c[0]) + a, c[1] + 1), (h, 0))[0],
              [(3,), (3,)]),
    "while_diverging": (lambda x: jitad.while_loop(lambda c: np.sum(c) < 5.0, lambda c: c + 1.0, x), [(2,)]),
    # no rule: unbatched (k slices, apply, stack)
    "fallback_linalg": (lambda a, b: np.linalg.solve(a + 4.0 * np.eye(3), b), [(3, 3), (3,)]),
}


def _subsets(n):
    return [tuple(bool(m >> i & 1) for i in range(n)) for m in range(1, 1 << n)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_separate_evaluations(name, rng):
    fun, shapes = CASES[name]

    def flat(*args):
        out = fun(*args)
        return out if isinstance(out, list) else [out]
    graph, _ = trace(flat, [(s, np.float64) for s in shapes])
    for batched in _subsets(len(shapes)):
        args = [rng.standard_normal((K,) + s if b else s) for s, b in zip(shapes, batched)]
        batched_graph, _ = trace(lambda *a: batching.batch_outputs(graph, a, batched, K),
                                 [(np.shape(a), np.float64) for a in args])
        outs = evaluate(batched_graph, args)
        for i in range(K):
            expected = evaluate(graph, [a[i] if b else a for a, b in zip(args, batched)])
            for out, exp in zip(outs, expected):
                assert out.shape == (K,) + exp.shape, (name, batched)
                np.testing.assert_allclose(out[i], exp, rtol=1e-12, atol=1e-12, err_msg=f"{name} {batched}")


def test_every_rule_row_has_a_case():
    names = {n.prim.name for fun, shapes in CASES.values()
             for n in trace(lambda *a: (lambda o: o if isinstance(o, list) else [o])(fun(*a)),
                            [(s, np.float64) for s in shapes])[0].nodes}
    assert set(batching.DECLARED) - names == set()


def test_rules_do_not_unroll_but_linalg_does():
    assert all(batching.has_rule(jitad.primitives.REGISTRY[name]) for name in batching.DECLARED)
    assert batching.has_rule(jitad.primitives.REGISTRY["matmul"])
    assert not batching.has_rule(jitad.primitives.REGISTRY["lu_solve"])


def test_a_batched_matvec_is_one_matrix_product(rng):
    A = rng.standard_normal((5, 4))
    graph, _ = trace(lambda x: [np.tanh(A @ x)], [((4,), np.float64)])
    batched, _ = trace(lambda X: batching.batch_outputs(graph, [X], [True], 16), [((16, 4), np.float64)])
    products = [n for n in batched.nodes if n.prim.name == "matmul"]
    assert len(products) == 1 and products[0].ndim == 2
    X = rng.standard_normal((16, 4))
    np.testing.assert_allclose(evaluate(batched, [X])[0], np.tanh(X @ A.T), rtol=1e-13)


def test_unbatched_outputs_are_broadcast(rng):
    graph, _ = trace(lambda x, y: [x * 2.0, y + 1.0], [((2,), np.float64), ((2,), np.float64)])
    x, y = rng.standard_normal((K, 2)), rng.standard_normal(2)
    outs = batching.batch_outputs(graph, [x, y], [True, False], K)
    np.testing.assert_allclose(outs[0], x * 2.0)
    np.testing.assert_allclose(outs[1], np.broadcast_to(y + 1.0, (K, 2)))


def test_simplify_drops_a_product_with_the_identity(rng):
    from jitad.passes import simplify
    graph, _ = trace(lambda a, b: [a @ np.eye(3), np.eye(4) @ b, a @ (2.0 * np.eye(3))],
                     [((4, 3), np.float64), ((4, 2), np.float64)])
    simple = simplify(graph)
    assert [n.prim.name for n in simple.nodes].count("matmul") == 1  # only the scaled identity stays
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    for got, want in zip(evaluate(simple, [a, b]), [a, b, 2.0 * a]):
        np.testing.assert_allclose(got, want)
