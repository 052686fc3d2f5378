"""The reference executor: evaluates any graph with NumPy. It is the spec for every backend."""
import numpy as np

from jitad.ir import const_p, input_p


def evaluate(graph, args):
    """Run `graph` on concrete arrays with each primitive's NumPy reference implementation."""
    env = {node.id: np.asarray(a) for node, a in zip(graph.inputs, args)}
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.id in env:
                continue
            if node.prim is const_p:
                env[node.id] = node.value
            elif node.prim is input_p:
                raise ValueError(f"graph input %{node.id} was not given a value")
            else:
                value = node.prim.impl(*[env[i.id] for i in node.inputs], **node.params)
                env[node.id] = np.asarray(value, dtype=node.dtype)
    return [env[o.id] for o in graph.outputs]


def replay(graph, args, rewrite=None):
    """Re-emit `graph` into the current trace with `args` as its inputs (inlining).

    Returns the environment node id -> value, so AD transforms can read every
    intermediate value. With concrete args this constant-folds to NumPy. A pass that
    changes some nodes gives `rewrite(node, input_values)`, returning the value to use
    instead, or None to emit the node as it is.
    """
    env = {node.id: a for node, a in zip(graph.inputs, args)}
    for node in graph.nodes:
        if node.id in env:
            continue
        if node.prim is const_p:
            env[node.id] = node.value
            continue
        values = [env[i.id] for i in node.inputs]
        value = rewrite(node, values) if rewrite is not None else None
        env[node.id] = value if value is not None else node.prim.bind(*values, **node.params)
    return env
