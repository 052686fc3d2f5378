"""Automatic differentiation as IR -> IR transforms.

Both modes replay a graph into the current trace and emit derivative nodes next to
the primal ones with each primitive's JVP or VJP rule. Their result is traced again
into a Graph by the caller, so derivatives of derivatives are the same transform
applied again.
"""
import math
import warnings
import weakref

import numpy as np

from jitad.errors import NonDifferentiableError
from jitad.interpreter import replay
from jitad.ir import Kind, const_p, input_p, is_tracer
from jitad.primitives import Primitive, builders as B, control


def active_nodes(graph, wrt):
    """Ids of nodes that depend on the differentiated inputs through differentiable primitives.
    Integer and boolean values carry no derivative (x.astype(int) is a step function, like floor),
    and neither does a value with no entries: its tangent is the empty array, a zero, so what is
    computed from it does not vary (np.sum(x[:0]) is 0 for every x). Left active, the rules of what
    follows multiply that zero by their own factors, and a factor that is infinite there made a NaN
    tangent: np.sum(x[:0] ** 2) ** (1/3) (an empty vector_norm of ord=3) has derivative 0 (the power's
    factor is inf at 0). The differentiated inputs themselves stay active, empty or not."""
    active = {graph.inputs[i].id for i in wrt}
    for node in graph.nodes:
        if node.prim.differentiable and node.dtype.kind == "f" and node.size:
            for i in node.inputs:
                if i.id in active:
                    active.add(node.id)
                    break
    return active


def _fit(value, node):
    """A cotangent or tangent with the node's shape and dtype."""
    shape = B.shape_of(value)
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


def vjp_values(graph, primals, cotangent_sets, wrt, given=None, memory="store"):
    """Reverse mode: returns (outputs, [input cotangents for each set of output cotangents]).
    `given`: {node id: value} of nodes computed already (a loop's stored residuals), used instead.
    `memory` (the top-level graph's policy, see `segment_plan`): "store" keeps every value the
    rules read; else the graph's straight-line part is cut into segments run again in reverse."""
    active = active_nodes(graph, wrt)
    plan = None if memory == "store" else segment_plan(graph, active, memory)
    keep = _read_in_reverse(graph, active) if plan is None else None
    env = replay(graph, primals, (lambda node, values: given.get(node.id)) if given else None, keep=keep)
    outs = [env[o.id] for o in graph.outputs]
    results = []
    order = _sweep_order(graph, active)
    values = None if plan is None else _Recomputed(plan, env)
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
            if plan is not None:
                values.enter(node)
            if plan is None:
                in_cts = rule(g, _held(env, node), *[_held(env, i) for i in node.inputs], **params)
            else:
                in_cts = rule(g, values.value(node), *[values.value(i) for i in node.inputs], **params)
            for inp, c in zip(node.inputs, in_cts):
                if c is not None and inp.id in active:
                    _accumulate(ct, inp, c)
        grads = []
        for i in wrt:
            node = graph.inputs[i]
            grads.append(ct[node.id] if node.id in ct else B.full(node.shape, 0, node.dtype))
        results.append(grads)
    return outs, results


def _sweep_order(graph, active):
    """The order the reverse pass visits the active nodes: each after all its active consumers,
    depth first from the outputs, a node's first operand first, so that a cotangent is used soon
    after it is made. (In the trace's order, the value each step of a loop of writes x[i] = v
    broadcasts came before the whole chain of writes, so its cotangent, an array of x's size,
    waited for the chain's end: n of them at once.)"""
    nodes = [n for n in graph.nodes if n.id in active and n.prim.kind is not Kind.LEAF]
    waiting = {n.id: 0 for n in nodes}
    for node in nodes:
        for i in {i.id for i in node.inputs}:
            if i in waiting:
                waiting[i] += 1
    stack = [n for n in nodes if waiting[n.id] == 0]
    order = []
    while stack:
        node = stack.pop()
        order.append(node)
        seen = set()
        for i in reversed(node.inputs):
            if i.id in waiting and i.id not in seen:
                seen.add(i.id)
                waiting[i.id] -= 1
                if waiting[i.id] == 0:
                    stack.append(i)
    return order


def _read_in_reverse(graph, active):
    """The ids of the values the reverse pass reads (the rules' operands and outputs, as the
    primitives' `vjp_reads` declare them) and the graph's outputs: what the forward pass keeps."""
    read = {o.id for o in graph.outputs}
    for node in graph.nodes:
        if node.id in active and node.prim.kind is not Kind.LEAF:
            reads = node.prim.vjp_reads
            if reads is None:
                read.add(node.id)
                read.update(i.id for i in node.inputs)
            else:
                read.update(node.inputs[k].id for k in reads)
    return read


def _held(env, node):
    """A value of the forward pass, or, for one it freed (its rules read its shape and dtype at
    most), zeros of that shape and dtype that take no memory (a broadcast view)."""
    value = env.get(node.id)
    if value is None:
        value = np.broadcast_to(np.zeros((), node.dtype), node.shape)
    return value


def _accumulate(ct, node, value):
    """Partial adjoints from every use of a value are summed."""
    value = _fit(value, node)
    ct[node.id] = value if node.id not in ct else B.add(ct[node.id], value)


def is_leaf(node):
    return node.prim is input_p or node.prim is const_p


def replay_outputs(graph, inputs):
    env = replay(graph, inputs)
    return [env[o.id] for o in graph.outputs]


# --- straight-line graphs under a memory budget ------------------------------------------------
# An identity the builder cannot merge with anything: a recomputation (jitad.checkpoint, a segment
# of `segment_plan`) replays nodes on barrier(x), so the recomputed nodes are distinct from the
# forward ones (hash-consing would otherwise make them the same nodes: stored, not recomputed).
checkpoint_barrier_p = Primitive("checkpoint_barrier", impl=lambda x: x, shape_rule=lambda x: (x.shape, x.dtype),
                                 jvp=lambda primals, tangents, out: tangents[0], vjp=lambda g, out, x: (g,),
                                 kind="elementwise", scalar="{0}")
MAX_SEGMENTS = 256
plans = weakref.WeakKeyDictionary()  # graph -> the SegmentPlan its reverse pass used (explain shows it)


def _nbytes(node):
    return node.size * node.dtype.itemsize


def _kept(node):
    """Nodes a segment does not run again: loops (their reverse passes have their own policy, and
    reading the forward loop's value is what makes it run once), callbacks (user Python)."""
    return node.prim.kind is Kind.CALLBACK or node.prim in (control.scan_p, control.while_p, control.while_vjp_p)


class SegmentPlan:
    """The nodes of a graph cut into segments (`segment_of`: node id -> segment) for its reverse
    pass: the values that a later segment reads are stored (`stored`), the others are computed again
    from them when the reverse pass reaches their segment, one segment at a time. `peak` is the
    predicted bytes held (stored + the largest segment's recomputed values), `store_peak` what
    storing every value the rules read holds; neither counts the inputs nor the cotangents."""

    def __init__(self, policy, segment_of, stored, recomputed, store_peak):
        self.policy, self.segment_of, self.stored, self.recomputed = policy, segment_of, stored, recomputed
        self.segments = 1 + max(segment_of.values(), default=0)
        self.stored_bytes = sum(stored.values())
        self.peak = self.stored_bytes + max((sum(r.values()) for r in recomputed), default=0)
        self.store_peak = store_peak

    def describe(self):
        """The schedule in words (explain's memory section)."""
        per = max((len(r) for r in self.recomputed), default=0)
        return (f"straight-line part: {self.segments} segments run again in the reverse pass (up to {per} values "
                f"each); {len(self.stored)} values stored ({self.stored_bytes} bytes); predicted peak "
                f"{self.peak} bytes (storing every value: {self.store_peak} bytes)")


def _read_by_rules(graph, active):
    """Non-leaf nodes whose values the vjp rules may read: the active nodes and their inputs."""
    read = set()
    for node in graph.nodes:
        if node.id in active and node.prim.kind is not Kind.LEAF:
            read.add(node.id)
            read.update(i.id for i in node.inputs if i.prim.kind is not Kind.LEAF)
    return read


def _evaluate_cuts(nodes, consumers, read, cuts, policy, store_peak):
    """The SegmentPlan of segments starting at the positions `cuts` of `nodes` (the non-leaf ones)."""
    segment_of, s = {}, 0
    for pos, node in enumerate(nodes):
        while s + 1 < len(cuts) and pos >= cuts[s + 1]:
            s += 1
        segment_of[node.id] = s
    stored, recomputed = {}, [dict() for _ in cuts]
    for node in reversed(nodes):
        seg = segment_of[node.id]
        users = consumers.get(node.id, ())
        if _kept(node) or any(segment_of[u.id] > seg or _kept(u) for u in users):
            if node.id in read or any(segment_of[u.id] > seg for u in users):
                stored[node.id] = _nbytes(node)
        elif node.id in read or any(u.id in recomputed[seg] for u in users):
            recomputed[seg][node.id] = _nbytes(node)
    return SegmentPlan(policy, segment_of, stored, recomputed, store_peak)


def segment_plan(graph, active, policy):
    """Which values the reverse pass of `graph` stores and which it computes again, under the
    memory `policy` ("recompute": the least predicted peak; an int: storing everything when that
    fits the byte budget, else the fewest segments whose predicted peak fits, else the least, with
    a warning). Segments are runs of nodes in trace order of about equal bytes, like
    jitad.checkpoint applied to each run; the cotangents are summed in the order "store" sums them.
    None when storing is chosen (or the graph has too few nodes to cut)."""
    nodes = [n for n in graph.nodes if n.prim.kind is not Kind.LEAF]
    read = _read_by_rules(graph, active)
    store_peak = sum(_nbytes(n) for n in nodes if n.id in read)
    plans[graph] = store_peak  # until a plan is chosen: storing
    if len(nodes) < 2 or (policy != "recompute" and store_peak <= policy):
        return None
    consumers = {}
    for node in nodes:
        for i in node.inputs:
            consumers.setdefault(i.id, []).append(node)
    sizes = np.cumsum([_nbytes(n) for n in nodes])
    total = int(sizes[-1])
    root = math.isqrt(len(nodes))
    counts = sorted({c for c in list(range(1, 17)) + [root // 2, root, 2 * root, 4 * root]
                     + [2 ** j for j in range(5, 9)] if 1 <= c <= min(len(nodes), MAX_SEGMENTS)})
    best = None
    for count in counts:
        cuts = sorted({0} | {int(np.searchsorted(sizes, total * j / count, side="right")) for j in range(1, count)})
        cuts = [c for c in cuts if c < len(nodes)]
        made = _evaluate_cuts(nodes, consumers, read, cuts, policy, store_peak)
        if policy != "recompute" and made.peak <= policy:
            best = made
            break
        if best is None or made.peak < best.peak:
            best = made
    if best.peak >= store_peak:
        return None
    best.nodes = nodes
    if policy != "recompute" and best.peak > policy:
        warnings.warn(f"jitad: the memory budget is {policy} bytes; the reverse pass of this graph is predicted "
                      f"to hold at least {best.peak} bytes ({best.segments} segments run again)", RuntimeWarning,
                      stacklevel=3)
    plans[graph] = best
    return best


def describe_memory(graph):
    """What the reverse pass of `graph` (traced under a memory policy other than "store") keeps of
    its straight-line part, in words; None when it ran under "store"."""
    plan = plans.get(graph)
    if plan is None:
        return None
    if isinstance(plan, SegmentPlan):
        return plan.describe()
    return f"straight-line part: every value the reverse pass reads stored ({plan} bytes)"


class _Recomputed:
    """The values the vjp rules read under a SegmentPlan: stored ones from the forward pass, the
    others computed again (from barrier copies of the stored ones) when the reverse pass reaches
    their segment (`enter`)."""

    def __init__(self, plan, env):
        self.plan, self.env, self.local, self.segment, self.stored = plan, env, {}, None, {}

    def _stored(self, node):
        """A stored value as the reverse pass reads it: a barrier copy, so that the forward value is
        read by the forward pass alone (the rules and the recomputations read the copy)."""
        value = self.env[node.id]
        if node.prim.kind is Kind.LEAF or not is_tracer(value) or _kept(node):
            return value
        if node.id not in self.stored:
            self.stored[node.id] = checkpoint_barrier_p(value)
        return self.stored[node.id]

    def enter(self, node):
        seg = self.plan.segment_of.get(node.id)
        if seg is None or seg == self.segment:
            return
        self.segment, self.local = seg, {}
        for n in self.plan.nodes:
            if n.id not in self.plan.recomputed[seg]:
                continue
            args, fresh = [], False
            for i in n.inputs:
                if i.id in self.local:
                    args.append(self.local[i.id])
                    fresh = True
                elif i.prim.kind is not Kind.LEAF and is_tracer(self.env[i.id]):
                    args.append(self._stored(i))
                    fresh = True
                else:
                    args.append(self.env[i.id])
            if not fresh:  # inputs and constants only: a barrier on one, or it would be the forward node
                j = next((j for j, a in enumerate(args) if is_tracer(a)), None)
                if j is not None:
                    args[j] = checkpoint_barrier_p(args[j])
            self.local[n.id] = n.prim.bind(*args, **n.params)

    def value(self, node):
        found = self.local.get(node.id)
        return self._stored(node) if found is None else found
