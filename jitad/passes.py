"""Graph passes. Each is a pure function Graph -> Graph with a name `explain` can show.

CSE is structural: the builder hash-conses nodes, so re-tracing a graph (which every
pass does) merges duplicates. Dead code never enters a graph: `Graph.nodes` walks from
the outputs. Constant folding happens in `bind`: a primitive whose inputs are all
constants runs its NumPy reference at trace time.
"""
from jitad.interpreter import replay
from jitad.ir import Kind, build_graph


def _simplify_node(node, inputs, values):
    """Return a value to use instead of re-emitting `node`, or None to keep it."""
    if node.prim.kind is Kind.ALIAS:  # custom_vjp/custom_jvp/checkpoint: AD has used their rules already
        return values[0]
    if node.prim.simplify is not None:  # the primitive's own identities (x * 1, x @ I, reshape chains)
        return node.prim.simplify(node, inputs, values)
    return None


def simplify(graph):
    """Algebraic simplification: x*1, x+0, x @ I, identity reshapes/transposes/casts; merges chains."""
    def rewrite(node, values):
        source = [getattr(v, "node", None) or i for v, i in zip(values, node.inputs)]
        return _simplify_node(node, source, values)

    def rewritten(*args):
        env = replay(graph, args, rewrite)
        return [env[o.id] for o in graph.outputs]

    new, captured = build_graph(rewritten, [(n.shape, n.dtype) for n in graph.inputs])
    assert not captured
    return new


PIPELINE = [("simplify", simplify)]


def optimize(graph, log=None):
    """Run the pass pipeline; `log` (a list) receives (name, graph) after each pass."""
    for name, run in PIPELINE:
        graph = run(graph)
        if log is not None:
            log.append((name, graph))
    return graph


__all__ = ["simplify", "optimize"]
