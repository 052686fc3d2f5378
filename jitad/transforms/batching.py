"""Batching: a graph replayed over a leading batch axis of k.

`batch_outputs(graph, args, batched, k)` re-emits `graph` into the current trace (as
`interpreter.replay` does) where the inputs flagged in `batched` carry an extra leading
axis of size k. Every node that depends on a batched input carries that axis too, so
one Jacobian sweep does one matrix-matrix product where k copies of the tangent graph
did k matrix-vector products, and the kernel no longer grows with k.

Elementwise primitives broadcast their operands against the batch axis; any other
primitive that batches without unrolling declares its rule (`batch`) with its other
rules in jitad.primitives -- index, reduction and structural ones shift their
axis-valued params, matmul folds the batch into rows or columns. A primitive without a
rule (linear algebra, callbacks, custom rules) is unbatched: k slices, apply, stack --
always correct.
"""
from jitad.interpreter import replay
from jitad.ir import Kind
from jitad.primitives import REGISTRY
from jitad.primitives import builders as B


def _elementwise(node, values, batched, k):
    return node.prim.bind(*[B.lead_batch(v, node.ndim) if b else v for v, b in zip(values, batched)], **node.params)


def _unbatched(node, values, batched, k):
    """The fallback: apply the primitive to each of the k slices and stack the results."""
    outs = []
    for i in range(k):
        args = [B.index_first(v, i) if b else v for v, b in zip(values, batched)]
        outs.append(node.prim.bind(*args, **node.params))
    return B.stack(outs)


def _declared(rule):
    """A primitive's own rule, falling back to k slices where it returns None."""
    def batch(node, values, batched, k):
        out = rule(node, values, batched, k)
        return _unbatched(node, values, batched, k) if out is None else out
    return batch


def rule_for(prim):
    if prim.batch is not None:
        return _declared(prim.batch)
    if prim.kind is Kind.ELEMENTWISE:
        return _elementwise
    return _unbatched


def has_rule(prim):
    """Whether `prim` batches without unrolling into k copies."""
    return prim.kind in (Kind.LEAF, Kind.ELEMENTWISE) or prim.batch is not None


# names of the primitives that declare a batching rule of their own (the tests cover each)
DECLARED = sorted(name for name, prim in REGISTRY.items() if prim.batch is not None)


def batch_replay(graph, args, batched, k):
    """Replay `graph` with args[i] carrying a leading axis of k where batched[i].
    Returns (outputs, which outputs are batched)."""
    hot = {node.id for node, b in zip(graph.inputs, batched) if b}

    def batch(node, values):
        flags = [i.id in hot for i in node.inputs]
        if not any(flags):
            return None
        hot.add(node.id)
        return rule_for(node.prim)(node, values, flags, k)

    env = replay(graph, args, batch)
    return [env[o.id] for o in graph.outputs], [o.id in hot for o in graph.outputs]


def batch_outputs(graph, args, batched, k):
    """Like `batch_replay`, with every output given the leading axis (unbatched ones broadcast).

    >>> import numpy as np, jitad
    >>> from jitad.frontend.tracer import trace
    >>> g, _ = trace(lambda x, y: [np.sin(x) * y], [((3,), np.float64), ((), np.float64)])
    >>> x = np.arange(6.0).reshape(2, 3)
    >>> bool(np.allclose(batch_outputs(g, [x, 2.0], [True, False], 2)[0], np.sin(x) * 2.0))
    True
    """
    outs, flags = batch_replay(graph, args, batched, k)
    return [o if b else B.broadcast_to(B.asarray(o), (k,) + node.shape)
            for o, b, node in zip(outs, flags, graph.outputs)]
