"""Jacobians, Hessians and the mode scheduler: jacfwd, jacrev, jacobian, hessian, hvp,
hutchinson_trace.

A Jacobian is built from *sweeps*. One sweep is one compiled call that pushes a chunk
of k tangent directions forward (k columns of J) or k output cotangents backward (k
rows): one JVP or VJP graph, batched over the k directions on a leading axis
(`jitad.transforms.batching`), so a sweep does one matrix-matrix product where it would do k
matrix-vector products, and its kernel does not grow with k. The seeds are one-hot rows
made inside the graph from a traced chunk offset, so one compiled sweep serves every
chunk of every call with that signature; a single sweep uses the constant identity.

`jacobian(mode="auto")` estimates each mode's cost from the traced graph (node sizes,
matmul flops, a per-node and a per-call overhead) and takes the cheapest:

    forward  ceil(n/k) sweeps of k tangents            (n = size of the inputs)
    reverse  ceil(m/k) sweeps of k cotangents          (m = size of the outputs)
    mixed    cut the graph at a minimum vertex cut of size c (node weight = size):
             c reverse sweeps on the input side, c forward sweeps on the output
             side, then one (m x c) @ (c x n) product

`hessian` is forward over reverse; `hvp` and `hutchinson_trace` never form H.
"""
import functools
import math

import numpy as np
import optree

from jitad import backend
from jitad.transforms import ad
from jitad.transforms import batching
from jitad.frontend import numpy_ops
from jitad.api import (Staged, _normalize_argnums, _scalar_output, _Signature, _transform_of, grad, jvp,
                  trace_user)
from jitad.errors import JitadError, NonDifferentiableError
from jitad.interpreter import replay
from jitad.passes import optimize
from jitad.ir import Graph, is_tracer
from jitad.frontend.tracer import trace
from jitad.pytrees import tree_flatten

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


# --- where each leaf sits in the flat Jacobian ------------------------------------------------
class _Space:
    """A list of leaves (shapes, dtypes) seen as one flat vector."""

    def __init__(self, shapes, dtypes):
        self.shapes = [tuple(s) for s in shapes]
        self.dtypes = [np.dtype(d) for d in dtypes]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.size = sum(self.sizes)

    @classmethod
    def of(cls, nodes):
        return cls([n.shape for n in nodes], [n.dtype for n in nodes])

    def unit_rows(self, start, k):
        """The leaves of the unit vectors e_start .. e_(start+k-1), each stacked to (k, *shape).
        `start` may be traced; rows past the end are 0. When k covers the space (one sweep,
        start 0) they are the constant identity, which constant folding and `simplify` see through."""
        if k == self.size:
            eye = np.eye(k)
            return [eye[:, o:o + s].reshape((k,) + shape).astype(dt)
                    for o, s, shape, dt in zip(self.offsets, self.sizes, self.shapes, self.dtypes)]
        rows = start + np.arange(k)
        return [(np.arange(o, o + s).reshape(shape) == numpy_ops.reshape(rows, (k,) + (1,) * len(shape))).astype(dt)
                for o, s, shape, dt in zip(self.offsets, self.sizes, self.shapes, self.dtypes)]

    def flat_rows(self, leaves, dtype, k):
        """Batched leaves (k, *shape) raveled, cast to `dtype` and joined into one (k, size) block."""
        parts = [numpy_ops.reshape(numpy_ops.astype(numpy_ops.asarray(v), dtype), (k, -1)) for v in leaves]
        if not parts:
            return np.zeros((k, 0), dtype)
        return parts[0] if len(parts) == 1 else numpy_ops.concatenate(parts, axis=1)


class _Layout:
    """The differentiated input leaves and the output leaves of one traced signature."""

    def __init__(self, graph, sig, nums):
        self.wrt = sig.traced_positions_of(nums)
        self.owners = [sig.owner[sig.traced[w]] for w in self.wrt]
        for k, out in enumerate(graph.outputs):
            if out.dtype.kind != "f":
                raise NonDifferentiableError(
                    f"a Jacobian needs float outputs, but output leaf {k} has dtype {out.dtype}. "
                    "Return it with .astype(float), or return it as aux outside the differentiated function")
        self.inputs = _Space.of([graph.inputs[w] for w in self.wrt])
        self.outputs = _Space.of(graph.outputs)
        dtypes = self.inputs.dtypes + self.outputs.dtypes
        self.dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)


# --- sweeps: one compiled call each, k directions -------------------------------------------------
def _stack(rows):
    return numpy_ops.stack(rows) if rows else None


def _avals(nodes):
    return [(n.shape, n.dtype) for n in nodes]


def _jvp_graph(graph, wrt):
    """(primals..., tangents of `wrt`...) -> tangents of the outputs: one direction, as a graph."""
    n_in = len(graph.inputs)
    jvp_graph, captured = trace(lambda *a: ad.jvp_values(graph, a[:n_in], [list(a[n_in:])], wrt)[1][0],
                                _avals(list(graph.inputs) + [graph.inputs[w] for w in wrt]))
    assert not captured
    return jvp_graph


def _vjp_graph(graph, wrt):
    """(primals..., cotangents of the outputs...) -> cotangents of `wrt`: one direction, as a graph."""
    n_in = len(graph.inputs)
    vjp_graph, captured = trace(lambda *a: ad.vjp_values(graph, a[:n_in], [list(a[n_in:])], wrt)[1][0],
                                _avals(list(graph.inputs) + list(graph.outputs)))
    assert not captured
    return vjp_graph


def batched_jvp(graph, primals, seeds, wrt, k):
    """Output tangents (k, *out.shape) for k input tangents given as seeds (k, *in.shape)."""
    flags = [False] * len(primals) + [True] * len(seeds)
    return batching.batch_outputs(_jvp_graph(graph, wrt), list(primals) + list(seeds), flags, k)


def batched_vjp(graph, primals, seeds, wrt, k):
    """Input cotangents (k, *in.shape) of `wrt` for k output cotangents (k, *out.shape)."""
    flags = [False] * len(primals) + [True] * len(seeds)
    return batching.batch_outputs(_vjp_graph(graph, wrt), list(primals) + list(seeds), flags, k)


def _forward_body(graph, wrt, inputs, outputs, k, dtype):
    """(primals..., start) -> [(m, k)]: J @ e_j for j = start .. start+k-1, one batched sweep.
    Columns, as J holds them, so the kernel writes them in place (J of A @ x is A itself)."""
    n_in = len(graph.inputs)

    def body(*args):
        primals, start = args[:n_in], args[n_in]
        tangents = batched_jvp(graph, primals, inputs.unit_rows(start, k), wrt, k)
        return [numpy_ops.transpose(outputs.flat_rows(tangents, dtype, k))]
    return body


def _reverse_body(graph, wrt, inputs, outputs, k, dtype):
    """(primals..., start) -> [(k, n)]: e_i^T J for i = start .. start+k-1, one batched sweep."""
    n_in = len(graph.inputs)

    def body(*args):
        primals, start = args[:n_in], args[n_in]
        cotangents = batched_vjp(graph, primals, outputs.unit_rows(start, k), wrt, k)
        return [inputs.flat_rows(cotangents, dtype, k)]
    return body


def _mixed_body(graph, wrt, cut, inputs, outputs, k, dtype):
    """(primals..., start) -> [(k, n), (k, m)]: rows of d(cut)/dx and columns of dy/d(cut)."""
    n_in = len(graph.inputs)
    cut_space = _Space.of(cut)
    in_side = Graph(graph.inputs, cut)
    out_side = _out_side_graph(graph, cut)
    cut_wrt = list(range(n_in, n_in + len(cut)))

    def body(*args):
        primals, start = args[:n_in], args[n_in]
        env = replay(graph, primals)
        seeds = cut_space.unit_rows(start, k)
        rows = batched_vjp(in_side, primals, seeds, wrt, k)
        cols = batched_jvp(out_side, list(primals) + [env[c.id] for c in cut], seeds, cut_wrt, k)
        return [inputs.flat_rows(rows, dtype, k), outputs.flat_rows(cols, dtype, k)]
    return body


def _out_side_graph(graph, cut):
    """`graph` with the cut nodes as extra inputs (after the original ones): the output side."""
    view = Graph(list(graph.inputs) + list(cut), graph.outputs)
    out_side, captured = trace(lambda *values: ad.replay_outputs(view, values),
                               [(n.shape, n.dtype) for n in view.inputs])
    assert not captured
    return out_side


def _make_body(graph, layout, mode, k, cut=None):
    if mode == "forward":
        return _forward_body(graph, layout.wrt, layout.inputs, layout.outputs, k, layout.dtype)
    if mode == "reverse":
        return _reverse_body(graph, layout.wrt, layout.inputs, layout.outputs, k, layout.dtype)
    return _mixed_body(graph, layout.wrt, cut, layout.inputs, layout.outputs, k, layout.dtype)


# --- the scheduler ----------------------------------------------------------------------------
def min_vertex_cut(graph, wrt):
    """The cheapest set of nodes (weight = size) every path from inputs `wrt` to the outputs
    crosses, in topological order. Uses networkx max-flow/min-cut on the split-node graph."""
    import networkx as nx  # only when mixed mode is considered

    active = ad._active_nodes(graph, wrt)
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


def _work(node):
    """Element operations one node costs (flops for products and factorisations)."""
    prim = node.prim
    if prim.kind == "leaf":
        return 0
    if prim.name == "matmul":
        return node.size * node.inputs[0].shape[-1]
    if prim.kind == "reduction":
        return node.inputs[0].size
    if prim.kind == "library" and prim.name not in ("take", "scatter_add", "concatenate", "cumsum") \
            and node.inputs:
        biggest = max(node.inputs, key=lambda n: n.size)  # dense linear algebra: ~ n^3
        return biggest.size * max(biggest.shape or (1,))
    return node.size


def graph_cost(graph):
    """Estimated cost of evaluating `graph` once, in element operations."""
    per_node = NODE_OVERHEAD.get(backend.config.backend, DEFAULT_NODE_OVERHEAD)
    return sum(_work(n) + per_node for n in graph.nodes if n.prim.kind != "leaf")


def default_chunk(graph):
    """Directions per sweep for `graph` when the user fixes none."""
    if all(batching.has_rule(n.prim) for n in graph.nodes):
        values = sum(n.size for n in graph.nodes if n.prim.kind != "leaf") + sum(n.size for n in graph.inputs)
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
    estimated cost of each candidate mode in element operations (None where not considered)."""

    def __init__(self, mode, chunks, n_in, n_out, costs, cut):
        self.mode = mode
        self.chunks = chunks  # mode -> (k, sweeps)
        self.chunk_size, self.num_sweeps = chunks[mode]
        self.n_in, self.n_out = n_in, n_out
        self.costs = costs
        self._cut_nodes = cut
        self.cut_size = None if cut is None else sum(n.size for n in cut)
        self.cut = None if cut is None else [f"{n.prim.name}{list(n.shape)} (%{n.id})" for n in cut]

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


def _make_plan(graph, layout, mode, chunk_size, estimate):
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
            make = functools.partial(_make_body, graph, layout, name, cut=cut)
            costs[name] = n * m + _sweep_cost(graph, make, k, sweeps)  # n * m: writing J
            if name == "mixed":
                costs[name] += m * sum(node.size for node in cut) * n  # the product of the two sides
    if mode == "auto":
        mode = min((c, name) for name, c in costs.items() if c is not None)[1]
    return JacobianPlan(mode, chunks, n, m, costs, cut)


# --- the public transforms ---------------------------------------------------------------------
class _JacobianFunction:
    """`J(*args)` computes the Jacobian; `J.plan(*args)` shows how."""

    def __init__(self, fun, argnums, mode, chunk_size, cache_on=None, cache_tag="jacobian"):
        if mode not in MODES:
            raise ValueError(f"jacobian: mode must be one of {MODES}, got {mode!r}")
        functools.update_wrapper(self, fun)
        self.fun, self.argnums, self.mode, self.chunk_size = fun, argnums, mode, chunk_size
        # compiled sweeps live on the user's function, shared by every jacobian(f) made of it
        self._cache_on, self._cache_tag = (fun if cache_on is None else cache_on), cache_tag
        self._staged = {}

    def __call__(self, *args, **kwargs):
        nums, single = _normalize_argnums(self.argnums, len(args))
        if kwargs:  # bind them, so the sweeps of this call share one trace
            staged = Staged(functools.partial(self.fun, **kwargs), self._build(nums), nums)
        else:
            staged = self._staged.get(nums)
            if staged is None:
                key = (self._cache_tag, self.mode, self.chunk_size, nums)
                staged = self._staged[nums] = _transform_of(
                    self._cache_on, key, lambda: Staged(self.fun, self._build(nums), nums))
        outs, (plan, layout, out_tree), sig = staged.run(args, {}, extra=[np.int64(0)])
        results, drawn = [outs], staged.last_draws  # every sweep sees the first one's random draws
        for s in range(1, plan.num_sweeps):
            results.append(staged.run(args, {}, extra=[np.int64(s * plan.chunk_size)], draws=drawn)[0])
        return _unflatten_blocks(_assemble(plan, layout, results), layout, sig, nums, single, out_tree)

    def _build(self, nums):
        mode, chunk_size = self.mode, self.chunk_size

        def build(graph, sig, out_tree):
            layout = _Layout(graph, sig, nums)
            plan = _make_plan(graph, layout, mode, chunk_size, estimate=mode == "auto")
            body = _make_body(graph, layout, plan.mode, plan.chunk_size, plan._cut_nodes)
            return body, [((), np.dtype(np.int64))], (plan, layout, out_tree)
        return build

    def plan(self, *args, **kwargs):
        """The `JacobianPlan` this function uses for arguments like `args` (traces, does not run)."""
        nums, _ = _normalize_argnums(self.argnums, len(args))
        sig = _Signature(args, nums)
        graph, _, _ = trace_user(self.fun, sig, kwargs)
        return _make_plan(graph, _Layout(graph, sig, nums), self.mode, self.chunk_size, estimate=True)

    def __repr__(self):
        return f"<jitad.jacobian of {getattr(self.fun, '__name__', self.fun)!s}, mode={self.mode!r}>"


def _cat(parts):
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _owned(parts, axis=0):
    """The sweeps' blocks joined. Each is an array of its own: both backends copy an output
    that is a constant of the graph (J of A @ x is A), so the caller cannot mutate A."""
    if len(parts) > 1:
        return np.concatenate(parts, axis=axis)
    return parts[0]


def _assemble(plan, layout, results):
    """The flat (m, n) Jacobian from the sweeps' outputs."""
    n, m = layout.inputs.size, layout.outputs.size
    if plan.mode == "forward":
        return _owned([r[0] for r in results], axis=1)[:, :n]
    if plan.mode == "reverse":
        return _owned([r[0] for r in results])[:m]
    c = plan.cut_size
    if c == 0:  # no output depends on the inputs: J is exactly zero
        return np.zeros((m, n), layout.dtype)
    rows = _cat([r[0] for r in results])[:c]
    cols = _cat([r[1] for r in results])[:c]
    if c <= 4 and isinstance(rows, np.ndarray) and isinstance(cols, np.ndarray):
        # a sum of c outer products; einsum's own loop, since a multithreaded BLAS gains
        # nothing at this inner size and stalls badly on a busy machine
        return np.einsum("ki,kj->ij", cols, rows)
    return cols.T @ rows


def _unflatten_blocks(J, layout, sig, nums, single, out_tree):
    """Blocks nested as JAX does: output structure outside, argument structure inside."""
    per_out = []
    for o_off, o_size, o_shape, o_dtype in zip(layout.outputs.offsets, layout.outputs.sizes,
                                               layout.outputs.shapes, layout.outputs.dtypes):
        by_arg = {a: [] for a in nums}
        for w, owner, i_off, i_size, i_shape, i_dtype in zip(
                layout.wrt, layout.owners, layout.inputs.offsets, layout.inputs.sizes, layout.inputs.shapes,
                layout.inputs.dtypes):
            block = J[o_off:o_off + o_size, i_off:i_off + i_size].reshape(o_shape + i_shape)
            dtype = np.result_type(o_dtype, i_dtype)
            if block.dtype != dtype:
                block = block.astype(dtype)
            elif isinstance(block, np.ndarray) and block.ndim and not block.flags.c_contiguous:
                block = np.ascontiguousarray(block)  # forward mode assembles J transposed
            if isinstance(block, np.ndarray) and block.ndim == 0:  # like grad: a scalar of the input's type
                block = float(block) if type(sig.leaves[sig.traced[w]]) is float else block[()]
            by_arg[owner].append(block)
        trees = [optree.tree_unflatten(sig.trees[a], by_arg[a]) for a in nums]
        per_out.append(trees[0] if single else tuple(trees))
    return optree.tree_unflatten(out_tree, per_out)


def jacobian(fun, argnums=0, mode="auto", chunk_size=None):
    """Return `J(*args)`, the Jacobian of `fun`: for each output leaf and each input leaf of
    `argnums`, a block of shape `out.shape + in.shape`, nested as the output (outside) and
    the arguments (inside). `mode` is "auto" (cheapest by the scheduler's estimate),
    "forward", "reverse" or "mixed"; `J.plan(*args)` shows the choice and the estimates.
    `chunk_size` fixes the directions per compiled sweep (default: up to 256, fewer when k
    times the graph's values would not fit in ~32 MB, and up to 8 when the graph holds a
    primitive without a batching rule, which a sweep unrolls k times).

    >>> import numpy as np, jitad
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> J = jitad.jacobian(lambda x: np.tanh(A @ x))
    >>> J(np.zeros(2)).tolist()
    [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    >>> J.plan(np.zeros(2)).mode
    'forward'
    """
    return _JacobianFunction(fun, argnums, mode, chunk_size)


def jacfwd(fun, argnums=0, chunk_size=None):
    """The Jacobian by forward mode: ceil(n/k) compiled sweeps of k tangent directions.

    >>> import numpy as np, jitad
    >>> jitad.jacfwd(lambda x: x ** 2)(np.array([1.0, 2.0])).tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    return _JacobianFunction(fun, argnums, "forward", chunk_size)


def jacrev(fun, argnums=0, chunk_size=None):
    """The Jacobian by reverse mode: ceil(m/k) compiled sweeps of k output cotangents.

    >>> import numpy as np, jitad
    >>> jitad.jacrev(lambda x, y: x * y, argnums=(0, 1))(2.0, 3.0)
    (3.0, 2.0)
    """
    return _JacobianFunction(fun, argnums, "reverse", chunk_size)


def hessian(fun, argnums=0):
    """The Hessian of scalar `fun`, forward over reverse: shape `in.shape + in.shape`.

    >>> import numpy as np, jitad
    >>> jitad.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 2.0])).tolist()
    [[4.0, 2.0], [2.0, 0.0]]
    """
    return _JacobianFunction(jacrev(fun, argnums), argnums, "forward", None, cache_on=fun, cache_tag="hessian")


def hvp(fun, primals, tangents):
    """The Hessian-vector product of scalar `fun` at `primals` along `tangents`, forward
    over reverse (a directional derivative of the gradient), never forming the Hessian.
    With one primal it returns that argument's structure, else a tuple over the arguments.
    Repeated calls with the same function and shapes reuse one compiled kernel.

    >>> import numpy as np, jitad
    >>> jitad.hvp(lambda x: np.sum(x ** 3), (np.array([1.0, 2.0]),), (np.array([1.0, 0.0]),)).tolist()
    [6.0, 0.0]
    """
    primals, tangents = tuple(primals), tuple(tangents)
    argnums = 0 if len(primals) == 1 else tuple(range(len(primals)))
    # the gradient function lives on `fun`, so jvp's compiled kernel (kept on it) is found again
    gradient = _transform_of(fun, ("hvp_grad", argnums), lambda: grad(fun, argnums))
    return jvp(gradient, primals, tangents)[1]


# --- Hutchinson's trace estimator ----------------------------------------------------------------
def _gradient_graph(graph, sig, out_tree, wrt):
    """(primals...) -> gradient leaves of `wrt`, as a graph."""
    out = _scalar_output(graph, out_tree, False)

    def gradient(*inputs):
        seeds = [np.ones((), out.dtype)] + [None] * (len(graph.outputs) - 1)
        return ad.vjp_values(graph, inputs, [seeds], wrt)[1][0]
    grad_graph, captured = trace(gradient, _avals(graph.inputs))
    assert not captured
    return grad_graph


def _build_quadratic_forms(k):
    """Body: (primals..., V...) -> [(k,)] with v_i^T H v_i, H = the Hessian w.r.t. argument 0."""
    def build(graph, sig, out_tree):
        wrt = sig.traced_positions_of((0,))
        grad_graph = _gradient_graph(graph, sig, out_tree, wrt)
        n_in = len(graph.inputs)

        def body(*args):
            primals, directions = args[:n_in], args[n_in:]
            products = batched_jvp(grad_graph, primals, directions, wrt, k)
            forms = [np.sum(v * hv, axis=tuple(range(1, v.ndim))) if v.ndim > 1 else v * hv
                     for v, hv in zip(directions, products)]
            return [sum(forms[1:], forms[0])]
        extra = [((k,) + graph.inputs[w].shape, graph.inputs[w].dtype) for w in wrt]
        return body, extra, None
    return build


def hutchinson_trace(fun, x, num_samples=100, seed=None, return_stderr=False):
    """Estimate tr(H), H the Hessian of scalar `fun` at `x`, as the mean of v^T H v over
    Rademacher vectors v (E[v v^T] = I), from batched Hessian-vector products: each
    compiled call does a chunk of HVPs, forward over reverse. `x` may be a pytree.
    Returns a float, or `(estimate, standard_error)` with `return_stderr=True`; the same
    `seed` gives the same estimate.

    >>> import numpy as np, jitad
    >>> A = np.diag([1.0, 2.0, 3.0])
    >>> jitad.hutchinson_trace(lambda x: 0.5 * x @ A @ x, np.ones(3), num_samples=8, seed=0)
    6.0
    """
    num_samples = int(num_samples)
    if num_samples < 1:
        raise ValueError("hutchinson_trace: num_samples must be at least 1")
    leaves, _ = tree_flatten(x)
    if not leaves:
        raise ValueError("hutchinson_trace: x has no array leaves")
    dtypes = [np.dtype(getattr(leaf, "dtype", np.float64)) for leaf in leaves]
    if any(d.kind != "f" for d in dtypes):
        raise JitadError("hutchinson_trace: x must hold float arrays (its Hessian is taken)")
    rng = np.random.default_rng(seed)
    size = sum(int(np.size(leaf)) for leaf in leaves)
    k = max(1, min(MAX_CHUNK, num_samples, ELEMENT_BUDGET // (8 * size)))  # ~8 values of x's size per HVP
    k = -(-num_samples // -(-num_samples // k))  # balanced chunks
    staged = _transform_of(fun, ("hutchinson", k), lambda: Staged(fun, _build_quadratic_forms(k), (0,)))
    forms, drawn = [], None  # the function's own random draws: the same for every chunk
    for start in range(0, num_samples, k):
        count = min(k, num_samples - start)
        chunk = []
        for leaf, dtype in zip(leaves, dtypes):
            v = np.zeros((k,) + np.shape(leaf), dtype)  # rows past `count` stay 0: v^T H v = 0
            v[:count] = 2.0 * rng.integers(0, 2, size=(count,) + np.shape(leaf)) - 1.0
            chunk.append(v)
        forms.append(staged.run((x,), {}, extra=chunk, draws=drawn)[0][0])
        drawn = staged.last_draws
    forms = _cat(forms)[:num_samples]
    estimate = np.mean(forms)
    stderr = np.std(forms, ddof=1) / np.sqrt(num_samples) if num_samples > 1 else np.inf
    if not is_tracer(estimate):
        estimate, stderr = float(estimate), float(stderr)
    return (estimate, stderr) if return_stderr else estimate
