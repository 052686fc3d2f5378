"""The scheduler: which mode computes a Jacobian, and how many directions per sweep.

`make_plan` estimates each mode's cost from the traced graph (node sizes, matmul flops, a
per-node and a per-call overhead) and takes the cheapest:

    forward  ceil(n/k) sweeps of k tangents            (n = size of the inputs)
    reverse  ceil(m/k) sweeps of k cotangents          (m = size of the outputs)
    mixed    cut the graph at a minimum vertex cut of size c (node weight = size):
             c reverse sweeps on the input side, c forward sweeps on the output
             side, then one (m x c) @ (c x n) product

A node's cost is what its primitive declares (`prim.cost(node)`). A sweep's cost is read off
its traced graph (`jitad.sweeps.sweep_body`) with 1 and 2 directions, so what the estimate
counts is what the sweep runs.
"""
import functools

import numpy as np

from jitad import backend
from jitad.frontend.tracer import trace
from jitad.ir import Kind
from jitad.passes import optimize
from jitad.sweeps import sweep_body
from jitad.transforms import ad, batching

MODES = ("auto", "forward", "reverse", "mixed")
# A sweep batches its k directions on a leading axis (jitad.transforms.batching), so its kernel does not
# grow with k: k is bounded by memory (k times the graph's values) and by MAX_CHUNK. A graph
# holding a primitive without a batching rule unrolls it k times, so there k stays small.
MAX_CHUNK = 256  # directions per sweep: the whole Jacobian in one sweep up to 256 columns/rows
ELEMENT_BUDGET = 1 << 22  # k x (elements of the graph's values), ~32 MB of float64
UNROLLED_CHUNK = 8  # the chunk when some primitive is unrolled (ForwardDiff's default is <= 12)
NODE_BUDGET = 2000  # ... and then it shrinks so that k copies of a big graph stay compilable
# Cost units are element operations (~1 ns). The overheads are for the compiled backend,
# except per node on the reference executor, where each node is one NumPy call.
CALL_OVERHEAD = 8_000
NODE_OVERHEAD = {"reference": 1_500}
DEFAULT_NODE_OVERHEAD = 50



def min_vertex_cut(graph, wrt):
    """The cheapest set of nodes (weight = size) every path from inputs `wrt` to the outputs
    crosses, in topological order. Uses networkx max-flow/min-cut on the split-node graph."""
    import networkx as nx  # only when mixed mode is considered

    active = ad.active_nodes(graph, wrt)
    reach = {o.id for o in graph.outputs if o.id in active}
    if not reach:
        return []
    for node in reversed(graph.nodes):  # active nodes from which an output is reachable
        if node.id in reach:
            reach.update(i.id for i in node.inputs if i.id in active)
    flow = nx.DiGraph()
    for node in graph.nodes:
        if node.id not in reach:
            continue
        if node.dtype.kind == "f":
            flow.add_edge(("in", node.id), ("out", node.id), capacity=node.size)
        else:  # a cut carries float derivatives only; no capacity attribute means uncuttable
            flow.add_edge(("in", node.id), ("out", node.id))
        for i in node.inputs:
            if i.id in reach:
                flow.add_edge(("out", i.id), ("in", node.id))
    for w in wrt:
        if graph.inputs[w].id in reach:
            flow.add_edge("source", ("in", graph.inputs[w].id))
    for out in graph.outputs:
        if out.id in reach:
            flow.add_edge(("out", out.id), "sink")
    _, (source_side, _) = nx.minimum_cut(flow, "source", "sink")
    return [node for node in graph.nodes if node.id in reach
            and ("in", node.id) in source_side and ("out", node.id) not in source_side]


def graph_cost(graph):
    """Estimated cost of evaluating `graph` once, in element operations."""
    per_node = NODE_OVERHEAD.get(backend.config.backend, DEFAULT_NODE_OVERHEAD)
    # each primitive declares its cost in element operations (flops for products and factorisations)
    return sum(n.prim.cost(n) + per_node for n in graph.nodes if n.prim.kind is not Kind.LEAF)


def default_chunk(graph):
    """Directions per sweep for `graph` when the user fixes none."""
    if all(batching.has_rule(n.prim) for n in graph.nodes):
        values = sum(n.size for n in graph.nodes if n.prim.kind is not Kind.LEAF) + sum(n.size for n in graph.inputs)
        return max(1, min(MAX_CHUNK, ELEMENT_BUDGET // max(1, values)))
    return max(1, min(UNROLLED_CHUNK, NODE_BUDGET // max(1, len(graph.nodes))))


def _chunk(directions, graph, chunk_size):
    """(k, sweeps) for pushing `directions` unit vectors through `graph`, balanced."""
    directions = max(directions, 1)
    k = default_chunk(graph) if chunk_size is None else int(chunk_size)
    k = max(1, min(k, directions))
    sweeps = -(-directions // k)
    return -(-directions // sweeps), sweeps


def _sweep_cost(graph, make_body, k, sweeps):
    """Cost of `sweeps` calls of a k-direction sweep, from the traced 1- and 2-direction graphs."""
    avals = [(n.shape, n.dtype) for n in graph.inputs] + [((), np.dtype(np.int64))]
    if sweeps == 1:
        # one sweep seeds with the identity, which the passes simplify away (A @ I -> A):
        # cost the graph that will actually run
        return CALL_OVERHEAD + graph_cost(optimize(trace(make_body(k), avals)[0]))
    one = graph_cost(trace(make_body(1), avals)[0])
    per_direction = graph_cost(trace(make_body(2), avals)[0]) - one
    shared = one - per_direction
    return sweeps * (CALL_OVERHEAD + shared + k * per_direction)


class JacobianPlan:
    """How `jacobian` computes J for one input signature: `mode`, `chunk_size` (directions per
    compiled sweep), `num_sweeps`, the sizes `n_in`, `n_out`, `cut_size`, and `costs`, the
    estimated cost of each candidate mode in element operations (None where not considered).
    `cut` names the cut's nodes by their number in the traced `graph` (`Graph.numbering`)."""

    def __init__(self, graph, mode, chunks, n_in, n_out, costs, cut):
        self.mode = mode
        self.chunks = chunks  # mode -> (k, sweeps)
        self.chunk_size, self.num_sweeps = chunks[mode]
        self.n_in, self.n_out = n_in, n_out
        self.costs = costs
        self.cut_nodes = cut  # the cut's nodes (mixed mode's sweeps need them)
        self.cut_size = None if cut is None else sum(n.size for n in cut)
        number = {} if cut is None else graph.numbering()  # as explain numbers the traced graph
        self.cut = None if cut is None else [f"{n.prim.name}{list(n.shape)} (%{number[n.id]})" for n in cut]

    def __repr__(self):
        k, sweeps = self.chunk_size, self.num_sweeps
        lines = [f"JacobianPlan: J is {self.n_out} x {self.n_in} (outputs x inputs) -> {self.mode} mode, "
                 f"{sweeps} compiled sweep{'s' if sweeps != 1 else ''} of {k} direction{'s' if k != 1 else ''}"]
        for mode in ("forward", "reverse", "mixed"):
            cost = self.costs.get(mode)
            est = "" if cost is None else f"est. cost {cost:<9.3g} "
            if mode in self.chunks:
                k, sweeps = self.chunks[mode]
                what = {"forward": "tangents", "reverse": "cotangents"}.get(mode, "directions")
                text = f"{sweeps} sweep{'s' if sweeps != 1 else ''} x {k} {what}"
                if mode == "mixed":
                    where = ", ".join(self.cut[:3]) + (", ..." if len(self.cut) > 3 else "")
                    text = (f"cut of size {self.cut_size} at {where}: {text} (reverse on the input side, "
                            f"forward on the output side), then ({self.n_out} x {self.cut_size}) @ "
                            f"({self.cut_size} x {self.n_in})")
            elif mode == "mixed" and self.cut is not None:
                text = f"not used: the narrowest cut has size {self.cut_size}, not below min(n, m)"
            else:
                text = "not considered" + (" (one sweep of forward or reverse does it)" if mode == "mixed" else "")
            lines.append(f"  {mode:8s} {est}{text}{'   <- chosen' if mode == self.mode else ''}")
        return "\n".join(lines)


def make_plan(graph, layout, mode, chunk_size, estimate):
    """Choose the mode (or take the forced one) and its chunking; estimate costs if asked."""
    n, m = layout.inputs.size, layout.outputs.size
    chunks = {"forward": _chunk(n, graph, chunk_size), "reverse": _chunk(m, graph, chunk_size)}
    costs = {"forward": None, "reverse": None, "mixed": None}
    cut = None
    if mode == "mixed" or (estimate and min(chunks["forward"][1], chunks["reverse"][1]) > 1):
        cut = min_vertex_cut(graph, layout.wrt)
        c = sum(node.size for node in cut)
        if mode == "mixed" or c < min(n, m):
            chunks["mixed"] = _chunk(c, graph, chunk_size)
    if estimate:
        for name, (k, sweeps) in chunks.items():
            make = functools.partial(sweep_body, graph, layout, name, cut=cut)
            costs[name] = n * m + _sweep_cost(graph, make, k, sweeps)  # n * m: writing J
            if name == "mixed":
                costs[name] += m * sum(node.size for node in cut) * n  # the product of the two sides
    if mode == "auto":
        mode = min((c, name) for name, c in costs.items() if c is not None)[1]
    return JacobianPlan(graph, mode, chunks, n, m, costs, cut)


