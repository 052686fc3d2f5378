"""Graph passes. Each is a pure function Graph -> Graph with a name `explain` can show.

CSE is structural: the builder hash-conses nodes, so re-tracing a graph (which every
pass does) merges duplicates. Dead code never enters a graph: `Graph.nodes` walks from
the outputs. Constant folding happens in `bind`: a primitive whose inputs are all
constants runs its NumPy reference at trace time.
"""
import numpy as np

from jitad.interpreter import replay
from jitad.ir import const_p
from jitad.frontend.tracer import trace


def _const_scalar(node):
    """The value of a node that is one constant broadcast or reshaped, else None."""
    while node.prim.name in ("broadcast_to", "reshape"):
        node = node.inputs[0]
    if node.prim is const_p and node.value.size == 1:
        return node.value.item()
    return None


def _is_identity(node):
    """Whether `node` is a constant identity matrix (a one-sweep Jacobian's seed)."""
    if node.prim is not const_p or node.ndim != 2 or node.shape[0] != node.shape[1]:
        return False
    return bool(np.array_equal(node.value, np.eye(node.shape[0])))


def _same(node, other):
    return node.shape == other.shape and node.dtype == other.dtype


def _simplify_node(node, inputs, values):
    """Return a value to use instead of re-emitting `node`, or None to keep it."""
    name = node.prim.name
    if node.prim.kind == "alias":  # custom_vjp/custom_jvp/checkpoint: AD has used their rules already
        return values[0]
    if name in ("multiply", "add", "subtract"):
        a, b = inputs
        neutral = 1 if name == "multiply" else 0
        if _const_scalar(b) == neutral and _same(node, a):
            return values[0]
        if name != "subtract" and _const_scalar(a) == neutral and _same(node, b):
            return values[1]
    if name in ("reshape", "broadcast_to") and inputs[0].shape == node.shape:
        return values[0]
    if name == "transpose" and node.params["perm"] == tuple(range(node.ndim)):
        return values[0]
    if name == "matmul":
        a, b = inputs
        if _is_identity(b) and _same(node, a):
            return values[0]
        if _is_identity(a) and _same(node, b):
            return values[1]
    if name == "convert" and inputs[0].dtype == node.dtype:
        return values[0]
    if name == "negative" and inputs[0].prim.name == "negative":
        return None
    return None


def simplify(graph):
    """Algebraic simplification: x*1, x+0, x @ I, identity reshapes/transposes/casts; merges chains."""
    def rewrite(node, values):
        source = [getattr(v, "node", None) or i for v, i in zip(values, node.inputs)]
        replacement = _simplify_node(node, source, values)
        return replacement if replacement is not None else _fold_chain(node, source, values)

    def rewritten(*args):
        env = replay(graph, args, rewrite)
        return [env[o.id] for o in graph.outputs]

    new, captured = trace(rewritten, [(n.shape, n.dtype) for n in graph.inputs])
    assert not captured
    return new


def _fold_chain(node, source, values):
    """reshape(reshape(x)) -> reshape(x); transpose(transpose(x)) -> transpose(x)."""
    name = node.prim.name
    inner = source[0] if source else None
    if inner is None or inner.prim.name != name or not hasattr(values[0], "builder"):
        return None
    x = values[0].builder.wrap(inner.inputs[0])
    if name == "reshape":
        return x if inner.inputs[0].shape == node.shape else node.prim.bind(x, **node.params)
    if name == "transpose":
        perm = tuple(inner.params["perm"][p] for p in node.params["perm"])
        return x if perm == tuple(range(len(perm))) else node.prim.bind(x, perm=perm)
    if name == "negative":
        return x
    return None


PIPELINE = [("simplify", simplify)]


def optimize(graph, log=None):
    """Run the pass pipeline; `log` (a list) receives (name, graph) after each pass."""
    for name, run in PIPELINE:
        graph = run(graph)
        if log is not None:
            log.append((name, graph))
    return graph


__all__ = ["simplify", "optimize"]
