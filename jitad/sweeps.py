"""Sweeps: the batched forward and reverse passes a Jacobian is built from.

One sweep is one compiled call that pushes a chunk of k tangent directions forward (k
columns of J) or k output cotangents backward (k rows): one JVP or VJP graph, batched over
the k directions on a leading axis (`jitad.transforms.batching`), so a sweep does one
matrix-matrix product where it would do k matrix-vector products, and its kernel does not
grow with k. The seeds are one-hot rows made inside the graph from a traced chunk offset,
so one compiled sweep serves every chunk of every call with that signature; a single sweep
uses the constant identity. A mixed sweep cuts the graph (`jitad.schedule`): rows of the
input side by reverse mode, columns of the output side by forward mode.

`Space` and `Layout` place each leaf in the flat Jacobian; `sweep_body` is the body a
`staging.Transform` traces for one sweep; `assemble` and `unflatten_blocks` turn the sweeps'
outputs into the user's blocks.
"""
import math

import numpy as np

from jitad.errors import NonDifferentiableError
from jitad.frontend import numpy_ops
from jitad.frontend.tracer import trace
from jitad.interpreter import replay
from jitad.ir import Graph
from jitad.pytrees import tree_unflatten
from jitad.transforms import ad, batching


# --- where each leaf sits in the flat Jacobian ------------------------------------------------
class Space:
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


class Layout:
    """The differentiated input leaves and the output leaves of one traced signature."""

    def __init__(self, graph, sig, nums):
        self.wrt = sig.traced_positions_of(nums)
        self.owners = [sig.owner[sig.traced[w]] for w in self.wrt]
        for k, out in enumerate(graph.outputs):
            if out.dtype.kind != "f":
                raise NonDifferentiableError(
                    f"a Jacobian needs float outputs, but output leaf {k} has dtype {out.dtype}. "
                    "Return it with .astype(float), or return it as aux outside the differentiated function")
        self.inputs = Space.of([graph.inputs[w] for w in self.wrt])
        self.outputs = Space.of(graph.outputs)
        dtypes = self.inputs.dtypes + self.outputs.dtypes
        self.dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)


# --- sweeps: one compiled call each, k directions -------------------------------------------------
def avals(nodes):
    """The (shape, dtype) of each node: what `trace` takes to make inputs like them."""
    return [(n.shape, n.dtype) for n in nodes]


def _jvp_graph(graph, wrt):
    """(primals..., tangents of `wrt`...) -> tangents of the outputs: one direction, as a graph."""
    n_in = len(graph.inputs)
    jvp_graph, captured = trace(lambda *a: ad.jvp_values(graph, a[:n_in], [list(a[n_in:])], wrt)[1][0],
                                avals(list(graph.inputs) + [graph.inputs[w] for w in wrt]))
    assert not captured
    return jvp_graph


def _vjp_graph(graph, wrt):
    """(primals..., cotangents of the outputs...) -> cotangents of `wrt`: one direction, as a graph."""
    n_in = len(graph.inputs)
    vjp_graph, captured = trace(lambda *a: ad.vjp_values(graph, a[:n_in], [list(a[n_in:])], wrt)[1][0],
                                avals(list(graph.inputs) + list(graph.outputs)))
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
    cut_space = Space.of(cut)
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


def sweep_body(graph, layout, mode, k, cut=None):
    """The body of one k-direction sweep of `graph` in `mode` ("forward", "reverse" or "mixed",
    which needs the `cut` nodes): (primals..., start) -> the sweep's block(s) of J."""
    if mode == "forward":
        return _forward_body(graph, layout.wrt, layout.inputs, layout.outputs, k, layout.dtype)
    if mode == "reverse":
        return _reverse_body(graph, layout.wrt, layout.inputs, layout.outputs, k, layout.dtype)
    return _mixed_body(graph, layout.wrt, cut, layout.inputs, layout.outputs, k, layout.dtype)


# --- from the sweeps' outputs to the user's blocks ---------------------------------------------
def concat(parts):
    """The sweeps' blocks joined on their first axis (a single block as it is)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _owned(parts, axis=0):
    """The sweeps' blocks joined. Each is an array of its own: both backends copy an output
    that is a constant of the graph (J of A @ x is A), so the caller cannot mutate A."""
    if len(parts) > 1:
        return np.concatenate(parts, axis=axis)
    return parts[0]


def assemble(plan, layout, results):
    """The flat (m, n) Jacobian from the sweeps' outputs."""
    n, m = layout.inputs.size, layout.outputs.size
    if plan.mode == "forward":
        return _owned([r[0] for r in results], axis=1)[:, :n]
    if plan.mode == "reverse":
        return _owned([r[0] for r in results])[:m]
    c = plan.cut_size
    if c == 0:  # no output depends on the inputs: J is exactly zero
        return np.zeros((m, n), layout.dtype)
    rows = concat([r[0] for r in results])[:c]
    cols = concat([r[1] for r in results])[:c]
    if c <= 4 and isinstance(rows, np.ndarray) and isinstance(cols, np.ndarray):
        # a sum of c outer products; einsum's own loop, since a multithreaded BLAS gains
        # nothing at this inner size and stalls badly on a busy machine
        return np.einsum("ki,kj->ij", cols, rows)
    return cols.T @ rows


def unflatten_blocks(J, layout, sig, nums, single, out_tree):
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
        trees = [tree_unflatten(sig.trees[a], by_arg[a]) for a in nums]
        per_out.append(trees[0] if single else tuple(trees))
    return tree_unflatten(out_tree, per_out)


