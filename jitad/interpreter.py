"""The reference executor: evaluates any graph with NumPy. It is the spec for every backend."""
import numpy as np

from jitad.ir import const_p, input_p


def evaluate(graph, args):
    """Run `graph` on concrete arrays with each primitive's NumPy reference implementation."""
    run = graph.__dict__.get("_evaluator")
    if run is None:
        run = graph._evaluator = _evaluator(graph)
    return run(args)


def _evaluator(graph):
    """A function running `graph` on a list of arrays, with the walk over the graph done once:
    the nodes in order as (implementation, input slots, parameters, dtype). Loop bodies run it
    once per step."""
    slot = {node.id: k for k, node in enumerate(graph.inputs)}
    consts, steps = [], []
    for node in graph.nodes:
        if node.id in slot:
            continue
        if node.prim is input_p:
            raise ValueError(f"graph input %{node.id} was not given a value")
        slot[node.id] = len(slot)
        if node.prim is const_p:
            consts.append((slot[node.id], node.value))
        else:
            steps.append((node.prim.impl, tuple(slot[i.id] for i in node.inputs), node.params, node.dtype,
                          slot[node.id]))
    outputs = [slot[o.id] for o in graph.outputs]
    size, n_inputs = len(slot), len(graph.inputs)

    def run(args):
        env = [None] * size
        env[:n_inputs] = [np.asarray(a) for a in args]
        for k, value in consts:
            env[k] = value
        with np.errstate(all="ignore"):
            for impl, ins, params, dtype, k in steps:
                value = impl(*[env[i] for i in ins], **params)
                env[k] = value if type(value) is np.ndarray and value.dtype == dtype else np.asarray(value, dtype=dtype)
        return [env[k] for k in outputs]
    return run


def replay(graph, args, rewrite=None, keep=None):
    """Re-emit `graph` into the current trace with `args` as its inputs (inlining).

    Returns the environment node id -> value, so AD transforms can read every
    intermediate value. With concrete args this constant-folds to NumPy. A pass that
    changes some nodes gives `rewrite(node, input_values)`, returning the value to use
    instead, or None to emit the node as it is. `keep` (a set of node ids): the environment
    holds only those, the inputs and the constants once their last reader has run (the
    others are freed as the replay goes: a loop of n writes into an array of n holds one
    version of it, not n).
    """
    env = {node.id: a for node, a in zip(graph.inputs, args)}
    nodes = graph.nodes
    last = None
    if keep is not None:
        last = {}
        for k, node in enumerate(nodes):
            for i in node.inputs:
                last[i.id] = k
    for k, node in enumerate(nodes):
        if node.id in env:
            continue
        if node.prim is const_p:
            env[node.id] = node.value
            continue
        values = [env[i.id] for i in node.inputs]
        value = rewrite(node, values) if rewrite is not None else None
        env[node.id] = value if value is not None else node.prim.bind(*values, **node.params)
        if last is not None:
            del values
            for i in node.inputs:
                if last[i.id] == k and i.id not in keep and i.prim is not input_p and i.prim is not const_p:
                    env.pop(i.id, None)
    return env
