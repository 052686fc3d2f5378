"""Automatic differentiation as IR -> IR transforms.

Both modes replay a graph into the current trace and emit derivative nodes next to
the primal ones with each primitive's JVP or VJP rule. Their result is traced again
into a Graph by the caller, so derivatives of derivatives are the same transform
applied again.
"""
import numpy as np

from jitad.errors import NonDifferentiableError
from jitad.interpreter import replay
from jitad.ir import Kind, const_p, input_p
from jitad.primitives import builders as B


def active_nodes(graph, wrt):
    """Ids of nodes that depend on the differentiated inputs through differentiable primitives.
    Integer and boolean values carry no derivative (x.astype(int) is a step function, like floor)."""
    active = {graph.inputs[i].id for i in wrt}
    for node in graph.nodes:
        if node.prim.differentiable and node.dtype.kind == "f":
            for i in node.inputs:
                if i.id in active:
                    active.add(node.id)
                    break
    return active


def _fit(value, node):
    """A cotangent or tangent with the node's shape and dtype."""
    shape = value.shape if type(value) is np.ndarray else np.shape(value)
    if shape != node.shape:
        value = B.unbroadcast(value, node.shape) if len(shape) >= node.ndim else B.broadcast_to(value, node.shape)
    if node.dtype.kind == "f" and getattr(value, "dtype", node.dtype) != node.dtype:
        value = B.astype(value, node.dtype) if not isinstance(value, np.ndarray) else value.astype(node.dtype)
    return value


def _rule(node, kind):
    rule = node.prim.jvp_rule if kind == "jvp" else node.prim.vjp_rule
    if rule is None:
        raise NonDifferentiableError(f"jitad has no {kind.upper()} rule for `{node.prim.name}`; "
                                     "give one with @jitad.custom_vjp / @jitad.custom_jvp")
    return rule


def jvp_values(graph, primals, tangent_sets, wrt):
    """Forward mode: returns (outputs, [tangent outputs for each set of input tangents])."""
    env = replay(graph, primals)
    outs = [env[o.id] for o in graph.outputs]
    active = active_nodes(graph, wrt)
    results = []
    for tangents in tangent_sets:
        tan = {graph.inputs[i].id: t for i, t in zip(wrt, tangents)}
        for node in graph.nodes:
            if node.id not in active or node.prim is input_p:
                continue
            ins = [tan.get(i.id) if i.id in active else None for i in node.inputs]
            if all(t is None for t in ins):
                continue
            rule = _rule(node, "jvp")
            tan[node.id] = _fit(rule([env[i.id] for i in node.inputs], ins, env[node.id], **node.params), node)
        results.append([tan[o.id] if o.id in tan else B.full(o.shape, 0, _tangent_dtype(o))
                        for o in graph.outputs])
    return outs, results


def _tangent_dtype(node):
    return node.dtype if node.dtype.kind == "f" else np.dtype(np.float64)


def vjp_values(graph, primals, cotangent_sets, wrt, given=None):
    """Reverse mode: returns (outputs, [input cotangents for each set of output cotangents]).
    `given`: {node id: value} of nodes computed already (a loop's stored residuals), used instead."""
    env = replay(graph, primals, (lambda node, values: given.get(node.id)) if given else None)
    outs = [env[o.id] for o in graph.outputs]
    active = active_nodes(graph, wrt)
    results = []
    order = [n for n in reversed(graph.nodes) if n.id in active and n.prim.kind is not Kind.LEAF]
    for cotangents in cotangent_sets:
        ct = {}
        for o, c in zip(graph.outputs, cotangents):
            if o.id in active and c is not None:
                _accumulate(ct, o, c)
        for node in order:
            g = ct.pop(node.id, None)
            if g is None:
                continue
            rule = _rule(node, "vjp")
            params = node.params
            if getattr(rule, "takes_wanted", False):  # a rule that can skip the cotangents nobody reads
                params = {**params, "wanted": tuple(i.id in active for i in node.inputs)}
            in_cts = rule(g, env[node.id], *[env[i.id] for i in node.inputs], **params)
            for inp, c in zip(node.inputs, in_cts):
                if c is not None and inp.id in active:
                    _accumulate(ct, inp, c)
        grads = []
        for i in wrt:
            node = graph.inputs[i]
            grads.append(ct[node.id] if node.id in ct else B.full(node.shape, 0, node.dtype))
        results.append(grads)
    return outs, results


def _accumulate(ct, node, value):
    """Partial adjoints from every use of a value are summed."""
    value = _fit(value, node)
    ct[node.id] = value if node.id not in ct else ct[node.id] + value


def is_leaf(node):
    return node.prim is input_p or node.prim is const_p


def replay_outputs(graph, inputs):
    env = replay(graph, inputs)
    return [env[o.id] for o in graph.outputs]
