"""Batching: a graph replayed over a leading batch axis of k.

`batch_outputs(graph, args, batched, k)` re-emits `graph` into the current trace (as
`interpreter.replay` does) where the inputs flagged in `batched` carry an extra leading
axis of size k. Every node that depends on a batched input carries that axis too, so
one Jacobian sweep does one matrix-matrix product where k copies of the tangent graph
did k matrix-vector products, and the kernel no longer grows with k.

One rule per primitive kind, in one table; index and structural primitives only shift
their axis-valued params (a row in `SHIFT`). A primitive without a rule (linear
algebra, callbacks, custom rules) is unbatched: k slices, apply, stack — always correct.
"""
import numpy as np

from jitad.frontend import numpy_ops
from jitad.interpreter import replay
from jitad import primitives as P


def _lead(x, ndim):
    """A batched value (k, *s) with size-1 axes after the batch axis, to rank ndim + 1, so that
    NumPy's right-aligned broadcasting lines it up with unbatched operands of rank <= ndim."""
    shape = numpy_ops.shape_of(x)
    missing = ndim + 1 - len(shape)
    return x if missing <= 0 else numpy_ops.reshape(x, shape[:1] + (1,) * missing + shape[1:])


def _elementwise(node, values, batched, k):
    return node.prim.bind(*[_lead(v, node.ndim) if b else v for v, b in zip(values, batched)], **node.params)


def _shift_axes(p, k):
    return {**p, "axes": tuple(a + 1 for a in p["axes"])}


def _shift_axis(p, k):
    return {**p, "axis": p["axis"] + 1}


def _shift_shape(p, k):
    return {**p, "shape": (k,) + tuple(p["shape"])}


def _shift_window(p, k):
    return {**p, "starts": (0,) + tuple(p["starts"]), "steps": (1,) + tuple(p["steps"]),
            "shape": (k,) + tuple(p["shape"])}


def _shift_diagonal(p, k):
    return {**p, "axis1": p["axis1"] + 1, "axis2": p["axis2"] + 1}


# primitive name -> params of the batched node; operand 0 is batched (others must not be,
# except for concatenate, whose unbatched operands are broadcast)
SHIFT = {
    "reduce_sum": _shift_axes, "reduce_max": _shift_axes, "reduce_min": _shift_axes, "reduce_prod": _shift_axes,
    "reshape": _shift_shape, "broadcast_to": _shift_shape,
    "slice": _shift_window, "pad": _shift_window,
    "transpose": lambda p, k: {**p, "perm": (0,) + tuple(a + 1 for a in p["perm"])},
    "diagonal": _shift_diagonal,
    "diag_embed": lambda p, k: _shift_diagonal(_shift_shape(p, k), k),
    "cumsum": _shift_axis, "take": _shift_axis, "scatter_add": _shift_axis, "concatenate": _shift_axis,
}


def _shifted(node, values, batched, k):
    adjust = SHIFT.get(node.prim.name)
    if adjust is None or (node.prim.name != "concatenate" and any(batched[1:])):
        return _unbatched(node, values, batched, k)
    if node.prim.name == "concatenate":
        values = [v if b else numpy_ops.broadcast_to(v, (k,) + i.shape)
                  for v, b, i in zip(values, batched, node.inputs)]
    elif node.prim.name == "broadcast_to":
        values = [_lead(values[0], node.ndim)]
    return node.prim.bind(*values, **adjust(node.params, k))


def _matmul(node, values, batched, k):
    """One 2-D product where the batch folds into rows or columns; else NumPy's batched matmul."""
    (a, b), (A, B) = values, node.inputs
    if batched[0] and not batched[1] and B.ndim == 2:  # (k, ..., m, n) @ (n, p)
        rows = P.matmul_p(numpy_ops.reshape(a, (k * int(np.prod(A.shape[:-1], dtype=np.int64)), A.shape[-1])), b)
        return numpy_ops.reshape(rows, (k,) + node.shape)
    if batched[1] and not batched[0] and A.ndim == 2 and B.ndim == 2:  # (m, n) @ (k, n, p)
        (n, p), m = B.shape, A.shape[0]
        if p == 1:  # columns: a 2-D transpose BLAS reads as a view
            out = P.matmul_p(a, numpy_ops.transpose(numpy_ops.reshape(b, (k, n))))
            return numpy_ops.reshape(numpy_ops.transpose(out), (k, m, 1))
        cols = numpy_ops.reshape(numpy_ops.transpose(b, (1, 0, 2)), (n, k * p))
        return numpy_ops.transpose(numpy_ops.reshape(P.matmul_p(a, cols), (m, k, p)), (1, 0, 2))
    return _elementwise(node, values, batched, k)


def _unbatched(node, values, batched, k):
    """The fallback: apply the primitive to each of the k slices and stack the results."""
    outs = []
    for i in range(k):
        args = [_take(v, i) if b else v for v, b in zip(values, batched)]
        outs.append(node.prim.bind(*args, **node.params))
    return numpy_ops.stack(outs)


def _take(x, i):
    shape = numpy_ops.shape_of(x)
    row = P.slice_p(x, starts=(i,) + (0,) * (len(shape) - 1), steps=(1,) * len(shape), shape=(1,) + shape[1:])
    return numpy_ops.reshape(row, shape[1:])


# rule by primitive name first, then by kind; anything else is unbatched
RULES = {
    "matmul": _matmul,
    "elementwise": _elementwise,
    "reduction": _shifted,
    "index": _shifted,
    "library": _shifted,  # the structural ones in SHIFT; linear algebra falls back
}


def rule_for(prim):
    return RULES.get(prim.name) or RULES.get(prim.kind) or _unbatched


def has_rule(prim):
    """Whether `prim` batches without unrolling into k copies."""
    rule = rule_for(prim)
    return prim.kind in ("leaf", "elementwise") or rule is _matmul or (rule is _shifted and prim.name in SHIFT)


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
    return [o if b else numpy_ops.broadcast_to(numpy_ops.asarray(o), (k,) + node.shape)
            for o, b, node in zip(outs, flags, graph.outputs)]
