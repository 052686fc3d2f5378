"""Loops that stay loops: `scan`, `while` and the reverse pass of `while`, each one node whose
body is a traced sub-graph (a `Body`).

A loop node's value *packs* all its results into one flat array (as a factorisation node
does, see jitad.primitives.linalg): the final carries, then the stacked per-step outputs, in
that order, raveled, in the common dtype of them all (`Layout`). The front-end
(jitad.frontend.loops) reads them back with ordinary slices, reshapes and casts, so the AD and
fusion of the pieces are those of the existing primitives. Integers packed with floats are held
as float64: exact below 2**53.

- `scan(*init, *xs, *consts, body, length, reverse)`: body(i, *carry, *x_i, *consts) ->
  (*carry', *y_i), for the element index i = 0..length-1 (length-1..0 when `reverse`); the
  value packs (*final carry, *stacked ys). fori_loop is a scan without xs.
- `while(*init, *consts, cond, body)`: carry = body(*carry, *consts) while cond(*carry, *consts);
  the value packs (*final carry, trip count).
- `while_vjp(out, g, *init, *consts, cond, body)`: the cotangents of a while loop's float
  carries and consts, packed.

Derivatives are loops again, over bodies derived from the body's traced jvp and vjp (traced once
per body, kept on the `Body`):
- scan, forward mode: one scan over (carry, carry tangent) with the jvp of the body.
- scan, reverse mode: a forward scan that also stacks the carry each step starts from and the
  step's matrix products that read a carry or an x (`Body.residuals`: stored, not recomputed),
  then a scan in the opposite direction over those stacked carries and products, the xs and
  the ys' cotangents, whose body is the vjp of the body: carry = (carry cotangent, running sum
  of the consts' cotangents), per-step output = the x cotangent. After AD the primal scan reads
  its value from the recording one (`_scan_simplify`): the forward loop runs once. Both are `scan` nodes, so
  derivatives of derivatives (grad of grad, hessian) apply the same rules again.
- scan, reverse mode under a memory budget (`jitad.config.memory` / `grad(..., memory=)`, read
  while the reverse pass is traced: `memory_policy`): "store" is the above. Otherwise the n steps
  are cut into c = ceil(n/k) - 1 segments of k steps and a last one of r = n - c*k steps (1 <= r
  <= k; the last in execution order). The forward pass is an outer scan over the segments whose
  body runs an inner scan of k steps and outputs the carry its segment starts from (c
  checkpoints stored), then a scan over the last r steps. The segment bodies take the xs (and
  the ys' cotangents) whole, as consts, and read their k rows at a traced start (`dynamic_slice`;
  compiled, a view of them): nothing is copied.
  The reverse pass reverses the last r steps first (stored, or checkpointed again), then an
  outer scan over the segments in the
  opposite direction whose body re-runs its segment forward from the checkpoint, storing its k
  carries, and runs the body's vjp backwards over them (`reverse_scan`). "recompute" takes k =
  ceil(sqrt(n)) (at most c + k ~ 2 sqrt(n) carries held, ~1 extra forward pass); a byte budget B
  allows C = B // (bytes of one carry and of one step's stored matrix products) carries held at
  once: all n stored when C >= n, else the
  fewest levels d (each an extra forward pass) and, at each level, the fewest checkpoints whose
  segments fit in the rest (`plan`). Held carries = checkpoints of every level + the stored
  carries of one innermost segment; the inputs, the ys and the cotangents are not counted. The
  cotangents are summed in the order "store" sums them: the gradients are the same bits. After
  AD the primal scan reads its value from the checkpointing forward pass (`_scan_simplify`).
  Every piece is a scan node, so derivatives of it apply these rules again.
- while, forward mode: one while loop over (carry, carry tangent) with the same condition.
- while, reverse mode: `while_vjp` reads the trip count n the forward loop recorded (the last
  element of its value), runs the body n times again storing each step's starting carry (an
  (n, ...) stack: the count is known before it is allocated), then runs the body's vjp n times
  backwards. Its own derivatives raise NonDifferentiableError (second order through a
  while_loop needs a fixed trip count: use fori_loop or scan).

Compiled, a loop is a real loop in the kernel: each body is compiled once as an njit function of
its own, defined in the kernel's module before the kernel and called from a `for`/`while` loop
(`KernelWriter.call_subkernel`), so the kernel's size does not depend on the trip count.
Constants of a body become arguments of the kernel. A carry the body updates as carry + increment
(the adjoint's running sums of cotangents) is a buffer the loop adds the increment to in place (its slot
of the loop's packed value when their dtypes agree: no copy at the end),
an outer-product increment (W's cotangent in W @ h) in one pass without storing it. A checkpointed
reverse pass's levels hand such a sum on (`_lent`): the loop of a level lends it to its body, whose
nested loop adds into it, and a loop takes over an init array nothing else reads (`_buffers`,
codegen `KernelWriter.may_take`): one array from the first step to the last, summed in order.
"""
import contextlib
import functools
import math
import threading
import warnings

import numpy as np

from jitad.errors import NonDifferentiableError
from jitad.ir import Graph, Kind, current_builder, is_tracer
from jitad.primitives import builders as B
from jitad.primitives.core import Primitive, dtype_code
from jitad.primitives.elementwise import add_p, convert_p
from jitad.primitives.structural import matmul_p, reshape_p, slice_p

__all__ = ["scan_p", "while_p", "while_vjp_p", "Body", "Layout", "memory_policy", "check_memory", "plan",
           "describe", "held_bytes"]


def _is_float(dtype):
    return np.dtype(dtype).kind == "f"


class Layout:
    """Where each of a list of (shape, dtype) values sits in one packed flat array."""

    def __init__(self, avals):
        self.avals = [(tuple(s), np.dtype(d)) for s, d in avals]
        self.dtype = np.result_type(*[d for _, d in self.avals]) if self.avals else np.dtype(np.float64)
        self.slots, offset = [], 0
        for shape, _ in self.avals:
            size = int(np.prod(shape, dtype=np.int64))
            self.slots.append((offset, size))
            offset += size
        self.total = offset

    def pack(self, values, dtype=None):
        """One flat array of `values` (traced or concrete) in `dtype` (default: the layout's)."""
        dtype = np.dtype(dtype or self.dtype)
        pieces = []
        for v, (shape, _) in zip(values, self.avals):
            if is_tracer(v):
                pieces.append(B.flat(B.astype(v, dtype)))
            else:
                pieces.append(np.ravel(np.asarray(v, dtype)))
        if not pieces:
            return np.zeros(0, dtype)
        return B.concatenate(pieces)

    def unpack(self, packed):
        """The values of a packed array, each with its own shape and dtype."""
        out = []
        for (shape, dtype), (offset, size) in zip(self.avals, self.slots):
            out.append(B.astype(B.reshape(B.flat_range(packed, offset, size), shape), dtype))
        return out


class Body:
    """A loop body as a traced graph, with the counts of its inputs by role and the bodies derived
    from it (its jvp, its vjp, ...), each traced once on first use and kept.

    Inputs: `lead` index inputs (1 for a scan body: the element index, an int64 scalar; 0 for a
    while body or condition), then `n_carry` carries, `n_xs` per-step slices, `n_consts` loop
    invariants. Outputs: the new carries (the condition's: one bool) then the per-step outputs.
    A Body is a primitive parameter: nodes with the same Body object and inputs are one node.

    Tracing and evaluating graphs belong to later layers: `rules` is the module that derives
    bodies and runs them (jitad.transforms.loops, which sets it when it is imported).
    """

    rules = None
    recorded_from = None  # the body this one is with its carries as extra per-step outputs (`record_body`)

    def __init__(self, graph, lead, n_carry, n_xs, name="body"):
        self.graph, self.lead, self.n_carry, self.n_xs, self.name = graph, lead, n_carry, n_xs, name
        self.n_consts = len(graph.inputs) - lead - n_carry - n_xs
        self._derived, self._lock = {}, threading.RLock()

    def __repr__(self):
        return f"{self.name}[{len(self.graph.nodes)} nodes]"

    @staticmethod
    def _avals(nodes):
        return [(n.shape, n.dtype) for n in nodes]

    @property
    def carry_avals(self):
        return self._avals(self.graph.inputs[self.lead:self.lead + self.n_carry])

    @property
    def x_avals(self):
        start = self.lead + self.n_carry
        return self._avals(self.graph.inputs[start:start + self.n_xs])

    @property
    def const_avals(self):
        return self._avals(self.graph.inputs[self.lead + self.n_carry + self.n_xs:])

    @property
    def y_avals(self):
        return self._avals(self.graph.outputs[self.n_carry:])

    def scan_layout(self, length):
        """The layout of a scan's value: final carries, then the ys stacked over `length` steps."""
        return Layout(self.carry_avals + [((length,) + s, d) for s, d in self.y_avals])

    def while_layout(self):
        """The layout of a while loop's value: final carries, then the trip count."""
        return Layout(self.carry_avals + [((), np.dtype(np.int64))])

    def run(self, args):
        """The outputs on concrete arrays (the reference executor)."""
        return self.rules.run(self, args)

    def _made(self, key, make, *args):
        with self._lock:
            if key not in self._derived:
                self._derived[key] = make(self, *args)
            return self._derived[key]

    def jvp_body(self, fx, fk):
        """The scan body of forward mode (see `rules.jvp_body`), for tangents of xs `fx`, consts `fk`."""
        return self._made(("jvp", fx, fk), self.rules.jvp_body, fx, fk)

    def record_body(self):
        """The body that also outputs the carry each step starts from, after its residuals."""
        return self._made("record", self._recording)

    def recorded(self):
        """The recording body if reverse mode made one, else None."""
        with self._lock:
            return self._derived.get("record")

    def _recording(self, body):
        source = self.residual_body() if self.residuals() else body
        recorded = self.rules.record_body(source)
        recorded.recorded_from = source
        return recorded

    def residuals(self):
        """The body's nodes whose values the recording pass stacks for the reverse sweep, which
        reads them instead of computing them again: its matrix products that read a carry or an
        x (z = x @ W + h @ U of a recurrent step; the sweep's own products are the transposes)."""
        return self._made("residuals", _residual_nodes)

    def residual_body(self):
        """The body with its residuals' values as extra per-step outputs (after its own ys)."""
        return self._made("residual", self.rules.residual_body)

    def adjoint_body(self, fx, fk):
        """One step of the reverse sweep of a scan (see `rules.adjoint_body`)."""
        return self._made(("vjp", fx, fk), self.rules.adjoint_body, fx, fk)

    def batched_body(self, bx, bk, k):
        """The body over a batch of k loops: every carry and y with a leading axis of k, the xs in
        `bx` and the consts in `bk` too (see `rules.batched_body`)."""
        return self._made(("batch", bx, bk, k), self.rules.batched_body, bx, bk, k)

    def while_batched_bodies(self, cond, bc, bk, k):
        """(condition, body, which carries the body batches) of k while loops as one, or None."""
        return self._made(("while batch", id(cond), bc, bk, k), self.rules.while_batched_bodies, cond, bc, bk, k)

    def while_jvp_bodies(self, cond, fk):
        """(condition, body) of the tangent while loop."""
        return self._made(("while jvp", id(cond), fk), self.rules.while_jvp_bodies, cond, fk)

    def while_adjoint(self):
        """One step of the reverse sweep of a while loop."""
        return self._made("while vjp", self.rules.while_adjoint)

    # --- checkpointed reverse mode (`reverse_scan`) ---
    def shifted(self, offset, copy=""):
        """The body at element index j + offset (an int), or j + i0 for a first extra const i0
        (offset None). `copy` names distinct Body objects of the same body: a scan over one of
        them is not merged with (or read from the recording of) a scan over another."""
        return self._made(("shift", offset, copy), self.rules.shifted_body, offset)

    def segment_forward(self, n, k, start, reverse):
        """The outer forward body over segments of k of n steps (see `reverse_scan`)."""
        return self._made(("segment", n, k, start, reverse), self.rules.segment_forward_body, n, k, start, reverse)

    def segment_adjoint(self, n, k, start, reverse, inner, fx, fk):
        """The outer reverse body over segments of k of n steps, each reversed by the plan `inner`,
        computing the cotangents of the float xs `fx` and consts `fk` only."""
        return self._made(("segment vjp", n, k, start, reverse, inner, fx, fk), self.rules.segment_adjoint_body,
                          n, k, start, reverse, inner, fx, fk)

    def checkpointed(self, length, reverse, schedule=None):
        """The plan a checkpointed reverse pass used for a scan of this body (set with `schedule`)."""
        with self._lock:
            if schedule is not None:
                self._derived.setdefault(("checkpointed", length, reverse), schedule)
            return self._derived.get(("checkpointed", length, reverse))


def _residual_nodes(body):
    graph = body.graph
    varying = {n.id for n in graph.inputs[body.lead:body.lead + body.n_carry + body.n_xs]}
    found = []
    for node in graph.nodes:
        if any(i.id in varying for i in node.inputs):
            varying.add(node.id)
            if node.prim is matmul_p and _is_float(node.dtype):
                found.append(node)
    return tuple(found)


def split(seq, *sizes):
    out, k = [], 0
    for n in sizes:
        out.append(list(seq[k:k + n]))
        k += n
    out.append(list(seq[k:]))
    return out


def zeros(aval):
    return np.zeros(aval[0], aval[1])


# --- memory policy of reverse mode ------------------------------------------------------------
settings = {"memory": "store"}  # jitad.config.memory
_local = threading.local()


def check_memory(value):
    """`value` as a memory policy: "store", "recompute" or a positive int (bytes); else ValueError."""
    if value in ("store", "recompute"):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value)
    raise ValueError(f'jitad memory must be "store", "recompute" or a positive int byte budget, got {value!r}')


@contextlib.contextmanager
def memory_policy(value):
    """Reverse passes traced inside use the policy `value` (None: jitad.config.memory)."""
    saved = getattr(_local, "memory", None)
    _local.memory = None if value is None else check_memory(value)
    try:
        yield
    finally:
        _local.memory = saved


def current_memory():
    """The memory policy reverse passes traced now use."""
    value = getattr(_local, "memory", None)
    return settings["memory"] if value is None else value


def carry_bytes(body):
    return sum(int(np.prod(s, dtype=np.int64)) * np.dtype(d).itemsize for s, d in body.carry_avals)


def product_bytes(body):
    """Bytes of one step's stored matrix products (`Body.residuals`): a step the reverse pass
    stores keeps them with its carry."""
    return sum(n.size * n.dtype.itemsize for n in body.residuals())


MAX_LEVELS = 4


def _need2(n):
    """The fewest carries held reversing n steps with one level of checkpoints (c + k)."""
    root = math.isqrt(n)
    return min(math.ceil(n / k) - 1 + k for k in range(max(1, root - 1), root + 3))


@functools.lru_cache(maxsize=4096)
def _need(n, levels):
    """The fewest carries held reversing n steps with `levels` levels (1: all stored)."""
    if levels == 1 or n <= 2:
        return n
    if levels == 2:
        return _need2(n)
    best = n
    for c in range(1, n):
        if c >= best:  # c checkpoints alone hold c carries
            break
        best = min(best, c + _need(math.ceil(n / (c + 1)), levels - 1))
    return best


def _schedule(n, count, levels):
    """At most `count` carries held over `levels` levels: at this level the fewest checkpoints whose
    segments fit (when none fits, the least held)."""
    if levels == 1 or count >= n or n <= 2:
        return None
    fits = least = None
    for c in range(1, n):
        total = c + _need(math.ceil(n / (c + 1)), levels - 1)
        if total <= count:
            fits = c
            break
        if least is None or total < least[1]:
            least = (c, total)
        if c >= least[1]:
            break
    c = fits if fits is not None else least[0]
    k = math.ceil(n / (c + 1))
    c = math.ceil(n / k) - 1
    r = n - c * k
    return (k, _schedule(k, count - c, levels - 1), _schedule(r, count - c, levels - 1))


def held(schedule, n):
    """The carries a reverse pass of n steps with `schedule` holds at once (see `reverse_scan`)."""
    if schedule is None:
        return n
    k, inner, last = schedule
    c = math.ceil(n / k) - 1
    return c + max(held(inner, k), held(last, n - c * k))


def plan(n, count=None):
    """The schedule of a reverse pass of n steps: None (store all n carries) or (k, schedule of a
    k-step segment, schedule of the last segment). count None ("recompute"): k = ceil(sqrt(n)),
    segments stored; else at most `count` carries held: the fewest levels that fit, each with the
    fewest checkpoints that fit (a warning when even MAX_LEVELS levels do not: the least held)."""
    if count is None:
        if n <= 2:
            return None
        k = math.isqrt(n - 1) + 1
        return (k, None, None) if k < n else None
    if count >= n:
        return None
    for levels in range(2, MAX_LEVELS + 1):
        if _need(n, levels) <= count:
            return _schedule(n, count, levels)
    schedule = _schedule(n, 0, MAX_LEVELS)
    warnings.warn(f"jitad: the memory budget holds {count} carries of a {n}-step scan; the schedule "
                  f"with the fewest ({held(schedule, n)}, {MAX_LEVELS} levels) exceeds it", RuntimeWarning,
                  stacklevel=2)
    return schedule


def held_bytes(schedule, n, carry, products=0):
    """The bytes a reverse pass of n steps with `schedule` holds at once: the checkpoints' carries
    and, for the steps it stores, their carries and matrix products (`products` bytes a step)."""
    if schedule is None:
        return n * (carry + products)
    k, inner, last = schedule
    c = math.ceil(n / k) - 1
    return c * carry + max(held_bytes(inner, k, carry, products), held_bytes(last, n - c * k, carry, products))


def describe(schedule, n, carry, products=0, count=0):
    """A schedule of n steps in words, with what it holds (`carry`: bytes of one carry; `products`:
    bytes of the `count` matrix products a stored step keeps)."""
    stored = f" and each stored step's {count} matrix product{'s' if count != 1 else ''} ({products} bytes)" \
        if count else ""
    if schedule is None:
        return f"every carry stored ({n} x {carry} bytes){stored.replace(' stored', '')}" + \
            (f": {held_bytes(None, n, carry, products)} bytes" if count else "")
    k, inner, last = schedule
    c = math.ceil(n / k) - 1
    text = f"{c} checkpoints, {k}-step segments run again"
    if inner is not None or last is not None:
        text += f" (each: {describe(inner, k, carry)})"
    peak = held(schedule, n)
    text = f"{text}; at most {peak} carries held ({peak * carry} bytes)"
    if count:
        text += f"{stored}: at most {held_bytes(schedule, n, carry, products)} bytes"
    return text


def scan_schedule(body, length):
    """The schedule of the current memory policy for a scan of `body` over `length` steps. A byte
    budget counts a stored step's matrix products with its carry (`held_bytes` stays within it)."""
    mode = current_memory()
    if mode == "store":
        return None
    if mode == "recompute":
        return plan(length)
    return plan(length, max(1, mode // max(1, carry_bytes(body) + product_bytes(body))))


# --- scan ---------------------------------------------------------------------------------------
def _scan_impl(*args, body, length, reverse):
    carry, xs, consts = split(args, body.n_carry, body.n_xs)
    layout = body.scan_layout(length)
    ys = [np.empty(shape, dtype) for shape, dtype in layout.avals[body.n_carry:]]
    for i in (range(length - 1, -1, -1) if reverse else range(length)):
        outs = body.run([np.int64(i), *carry, *[x[i] for x in xs], *consts])
        carry = outs[:body.n_carry]
        for y, value in zip(ys, outs[body.n_carry:]):
            y[i] = value
    return layout.pack(list(carry) + ys)


def _scan_shape(*nodes, body, length, reverse):
    layout = body.scan_layout(length)
    return (layout.total,), layout.dtype


def floats(avals, present=None):
    return tuple(j for j, (_, d) in enumerate(avals) if _is_float(d) and (present is None or present[j]))


def _scan_jvp(primals, tangents, out, body, length, reverse):
    nc, nx = body.n_carry, body.n_xs
    init, xs, consts = split(primals, nc, nx)
    tc, tx, tk = split(tangents, nc, nx)
    fc = floats(body.carry_avals)
    fx = floats(body.x_avals, [t is not None for t in tx])
    fk = floats(body.const_avals, [t is not None for t in tk])
    jb = body.jvp_body(fx, fk)
    cdot = [tc[j] if tc[j] is not None else zeros(body.carry_avals[j]) for j in fc]
    value = scan_p(*init, *cdot, *xs, *[tx[j] for j in fx], *consts, *[tk[j] for j in fk],
                   body=jb, length=length, reverse=reverse)
    parts = jb.scan_layout(length).unpack(value)
    fy = floats(body.y_avals)
    layout = body.scan_layout(length)
    tangent = [None] * len(layout.avals)
    for n, j in enumerate(fc):
        tangent[j] = parts[nc + n]
    for n, j in enumerate(fy):
        tangent[nc + j] = parts[nc + len(fc) + len(body.y_avals) + n]
    return layout.pack([t if t is not None else zeros(a) for t, a in zip(tangent, layout.avals)])


def _scan_vjp(g, out, *primals, body, length, reverse, wanted=None):
    """`wanted` (from the AD transform): which inputs' cotangents are used; the reverse sweep
    computes the xs' and consts' only for those (a data array read by every step, such as X in a
    loop over mixture components, otherwise gets a running cotangent sum nobody reads), the
    checkpointed passes too (their segment bodies take `fx` and `fk`)."""
    nc, nx = body.n_carry, body.n_xs
    init, xs, consts = split(primals, nc, nx)
    fc, fy = floats(body.carry_avals), floats(body.y_avals)
    schedule = scan_schedule(body, length)
    wanted = wanted if wanted is not None else (True,) * len(primals)
    fx, fk = floats(body.x_avals, wanted[nc:nc + nx]), floats(body.const_avals, wanted[nc + nx:])
    g_parts = body.scan_layout(length).unpack(g)
    carry = [g_parts[j] for j in fc]
    sums = [zeros(body.const_avals[j]) for j in fk]
    gc, gk, gx = reverse_scan(body, init, xs, consts, carry, sums, [g_parts[nc + j] for j in fy], length,
                              reverse, schedule, fx, fk)
    result = [None] * len(primals)
    for j, ct in zip(fc, gc):
        result[j] = ct
    for j, ct in zip(fx, gx):
        result[nc + j] = ct
    for j, ct in zip(fk, gk):
        result[nc + nx + j] = ct
    return tuple(result)


def _pieces(n, k, reverse):
    """(c segments, r last steps, first element of the segments, first element of the last piece)."""
    c = math.ceil(n / k) - 1
    r = n - c * k
    return c, r, (r if reverse else 0), (0 if reverse else c * k)


def _same(body, value, key, make):
    """make(value); for a concrete value (a constant of the graph), the same array object each time
    (kept on `body`) while a graph is built: a constant node is that object, so the scans reading
    it stay one node. Run eagerly (the NumPy tier: no graph), nothing is kept."""
    if is_tracer(value) or current_builder() is None:
        return make(value)
    return body._made(("constant", id(value)) + key, lambda _: (value, make(value)))[1]


def _sliced(body, values, start, r):
    def rows(v):
        return B.axis_range(v, 0, start, start + r) if is_tracer(v) else v[start:start + r]
    return [_same(body, v, ("slice", start, r), rows) for v in values]


def _joined(rest, last, reverse):
    """Per-element arrays of the segments (c, k, ...) and of the last piece, in element order."""
    out = []
    for a, b in zip(rest, last):
        shape = B.shape_of(a)
        a = B.reshape(a, (shape[0] * shape[1],) + tuple(shape[2:]))
        out.append(B.concatenate([b, a] if reverse else [a, b]))
    return out


def _checkpoint_forward(body, init, xs, consts, length, reverse, schedule):
    """(outer scan's parts: carry after the segments, ys (c, k, ...), checkpoints) of a schedule."""
    k = schedule[0]
    c, _, start, _ = _pieces(length, k, reverse)
    sf = body.segment_forward(length, k, start, reverse)
    value = scan_p(*init, *xs, *consts, body=sf, length=c, reverse=reverse)
    return sf.scan_layout(c).unpack(value)


def reverse_scan(body, init, xs, consts, ct_carry, ct_sums, ct_ys, length, reverse, schedule, fx=None, fk=None):
    """The reverse pass of `scan(*init, *xs, *consts, body, length, reverse)`: from the cotangents
    of its float final carries `ct_carry`, of its float ys `ct_ys` and running sums `ct_sums` of its
    float consts' cotangents (those of `fk`, default all), returns (float init cotangents, the sums
    with this scan's terms added, the cotangents of the xs of `fx` (default every float x)).
    `schedule` (see `plan`): None stores every step's carry; else checkpointed segments (the
    module docstring)."""
    nc, ny = body.n_carry, len(body.y_avals)
    fc = floats(body.carry_avals)
    fx = floats(body.x_avals) if fx is None else fx
    fk = floats(body.const_avals) if fk is None else fk
    if schedule is None:
        record = body.record_body()
        recorded = record.scan_layout(length).unpack(scan_p(*init, *xs, *consts, body=record, length=length,
                                                            reverse=reverse))[nc + ny:]
        residuals, stored = split(recorded, len(body.residuals()))
        ab = body.adjoint_body(fx, fk)
        value = scan_p(*ct_carry, *ct_sums, *stored, *xs, *residuals, *ct_ys, *consts, body=ab, length=length,
                       reverse=not reverse)
        return split(ab.scan_layout(length).unpack(value), len(fc), len(fk))
    body.checkpointed(length, reverse, schedule)
    k, inner, last = schedule
    c, r, start, last_start = _pieces(length, k, reverse)
    parts = _checkpoint_forward(body, init, xs, consts, length, reverse, schedule)
    middle, checkpoints = parts[:nc], parts[nc + ny:]
    lb = body.shifted(last_start)
    gc, gk, gx_last = reverse_scan(lb, middle, _sliced(body, xs, last_start, r), consts, ct_carry, ct_sums,
                                   _sliced(body, ct_ys, last_start, r), r, reverse, last, fx, fk)
    sa = body.segment_adjoint(length, k, start, reverse, inner, fx, fk)
    value = scan_p(*gc, *gk, *checkpoints, *xs, *ct_ys, *consts, body=sa, length=c, reverse=not reverse)
    gc, gk, gx_rest = split(sa.scan_layout(c).unpack(value), len(fc), len(fk))
    return gc, gk, _joined(gx_rest, gx_last, reverse)


def _forward(body, init, xs, consts, length, reverse):
    """The packed value of the scan, read from what reverse mode made for it: the scan recording its
    carries, or the checkpointing forward pass (the same nodes, by hash-consing)."""
    record = body.recorded()
    if record is not None:
        recorded = scan_p(*init, *xs, *consts, body=record, length=length, reverse=reverse)
        return recorded[:body.scan_layout(length).total]
    schedule = body.checkpointed(length, reverse)
    if schedule is None:
        return scan_p(*init, *xs, *consts, body=body, length=length, reverse=reverse)
    nc = body.n_carry
    c, r, start, last_start = _pieces(length, schedule[0], reverse)
    parts = _checkpoint_forward(body, init, xs, consts, length, reverse, schedule)
    lb = body.shifted(last_start)
    tail = lb.scan_layout(r).unpack(_forward(lb, parts[:nc], _sliced(body, xs, last_start, r),
                                             consts, r, reverse))
    ys = _joined(parts[nc:nc + len(body.y_avals)], tail[nc:], reverse)
    return body.scan_layout(length).pack(tail[:nc] + ys)


def _scan_batch(node, values, batched, k):
    """k scans as one: every carry and y gets the batch axis (an unbatched one is broadcast), a
    batched x (k, length, ...) is scanned as (length, k, ...); the body is the body batched."""
    body, length, reverse = node.params["body"], node.params["length"], node.params["reverse"]
    nc, nx = body.n_carry, body.n_xs
    init, xs, consts = split(values, nc, nx)
    _, bx, bk = split(batched, nc, nx)
    bb = body.batched_body(tuple(bx), tuple(bk), k)
    init = [v if b else B.broadcast_to(v, (k,) + tuple(aval[0])) for v, b, aval in
            zip(init, batched[:nc], body.carry_avals)]
    xs = [B.swap_leading(x) if b else x for x, b in zip(xs, bx)]
    value = scan_p(*init, *xs, *consts, body=bb, length=length, reverse=reverse)
    parts = bb.scan_layout(length).unpack(value)
    parts = parts[:nc] + [B.swap_leading(y) for y in parts[nc:]]
    return _rows(parts, k, node.dtype)


def _scan_simplify(node, inputs, values):
    """A scan whose body reverse mode also ran recording its carries reads its results from that
    recording scan (the same node, by hash-consing, as the one the adjoint reads): one forward
    pass instead of two. The recording's value begins with the scan's own value. A checkpointed
    one reads them from the checkpointing forward pass (`_forward`)."""
    body, length, reverse = node.params["body"], node.params["length"], node.params["reverse"]
    if body.recorded() is None and body.checkpointed(length, reverse) is None:
        return None
    if not any(is_tracer(v) for v in values):
        return None
    init, xs, consts = split(values, body.n_carry, body.n_xs)
    value = _forward(body, init, xs, consts, length, reverse)
    assert value.dtype == node.dtype and value.shape == node.shape, "the stored carries have the carries' dtypes"
    return value


# --- while --------------------------------------------------------------------------------------
def _while_layout(body):
    return body.while_layout()


def _while_impl(*args, cond, body):
    carry, consts = split(args, body.n_carry)
    count = 0
    while cond.run([*carry, *consts])[0]:
        carry = body.run([*carry, *consts])
        count += 1
    return _while_layout(body).pack(list(carry) + [count])


def _while_shape(*nodes, cond, body):
    layout = _while_layout(body)
    return (layout.total,), layout.dtype


def _while_batch(node, values, batched, k):
    """k while loops as one when they take the same steps (their condition is not batched):
    the batched carries (widened to every carry the body makes batched) get the leading axis."""
    cond, body = node.params["cond"], node.params["body"]
    nc = body.n_carry
    bc, bk = tuple(batched[:nc]), tuple(batched[nc:])
    while True:
        made = body.while_batched_bodies(cond, bc, bk, k)
        if made is None:
            return None  # the loops would stop at different steps: k loops
        wider = tuple(a or b for a, b in zip(bc, made[2]))
        if wider == bc:
            break
        bc = wider
    new_cond, new_body, _ = made
    init, consts = split(values, nc)
    init = [B.broadcast_to(v, (k,) + tuple(a[0])) if b and not was else v
            for v, b, was, a in zip(init, bc, batched[:nc], body.carry_avals)]
    parts = new_body.while_layout().unpack(while_p(*init, *consts, cond=new_cond, body=new_body))
    parts = [p if b else B.broadcast_to(p, (k,) + tuple(B.shape_of(p))) for p, b in zip(parts, bc + (False,))]
    return _rows(parts, k, node.dtype)


def _rows(parts, k, dtype):
    """k packed values side by side: each part (k, ...) flattened to (k, -1) in `dtype`, joined."""
    return B.concatenate([B.reshape(B.astype(p, dtype), (k, int(np.prod(B.shape_of(p)[1:], dtype=np.int64))))
                          for p in parts], axis=1)


def _while_jvp(primals, tangents, out, cond, body):
    nc = body.n_carry
    init, consts = split(primals, nc)
    tc, tk = split(tangents, nc)
    fc = floats(body.carry_avals)
    fk = floats(body.const_avals, [t is not None for t in tk])
    jcond, jbody = body.while_jvp_bodies(cond, fk)
    cdot = [tc[j] if tc[j] is not None else zeros(body.carry_avals[j]) for j in fc]
    value = while_p(*init, *cdot, *consts, *[tk[j] for j in fk], cond=jcond, body=jbody)
    parts = _while_layout(jbody).unpack(value)
    layout = _while_layout(body)
    tangent = [zeros(a) for a in layout.avals]
    for n, j in enumerate(fc):
        tangent[j] = parts[nc + n]
    return layout.pack(tangent)


def _while_vjp(g, out, *primals, cond, body):
    nc = body.n_carry
    fc, fk = floats(body.carry_avals), floats(body.const_avals)
    if not fc and not fk:
        return (None,) * len(primals)
    value = while_vjp_p(out, g, *primals, cond=cond, body=body)
    parts = _while_vjp_layout(body).unpack(value)
    result = [None] * len(primals)
    for j, ct in zip(fc, parts):
        result[j] = ct
    for j, ct in zip(fk, parts[len(fc):]):
        result[nc + j] = ct
    return tuple(result)


def _while_vjp_layout(body):
    fc, fk = floats(body.carry_avals), floats(body.const_avals)
    return Layout([body.carry_avals[j] for j in fc] + [body.const_avals[j] for j in fk])


def _while_vjp_impl(out, g, *args, cond, body):
    nc = body.n_carry
    carry, consts = split(args, nc)
    count = int(_while_layout(body).unpack(out)[-1])
    stored = []
    for _ in range(count):  # the forward loop again, its trip count known: store each step's carry
        stored.append(carry)
        carry = body.run([*carry, *consts])
    adjoint = body.while_adjoint()
    parts = _while_layout(body).unpack(g)
    fc, fk = floats(body.carry_avals), floats(body.const_avals)
    cts = [parts[j] for j in fc] + [zeros(body.const_avals[j]) for j in fk]
    for carry in reversed(stored):
        cts = adjoint.run([*cts, *carry, *consts])
    return _while_vjp_layout(body).pack(cts)


def _while_vjp_shape(out, g, *nodes, cond, body):
    layout = _while_vjp_layout(body)
    return (layout.total,), layout.dtype


def _second_order(*args, **params):
    raise NonDifferentiableError(
        "jitad cannot differentiate the reverse pass of a jitad.while_loop again (a second derivative, "
        "e.g. hessian or grad of grad, through a while_loop): its trip count is only known at run time. "
        "Use jitad.fori_loop or jitad.scan with a fixed trip count, which differentiate to any order")


# --- compiled form -----------------------------------------------------------------------------
# Values are copied into packed arrays element by element: a slice assignment of arrays makes Numba
# compile its shape-mismatch error message (string formatting: seconds of compile time).
def _targets(names):
    return f"{', '.join(names)}," if names else "_"


def _store(out, start, shape, value, index):
    """Lines writing `value` (of `shape`) into the flat array `out` from position `start` (code);
    `index` names the loop variable."""
    if not shape:
        return [f"{out}[{start}] = {value}"]
    size = int(np.prod(shape, dtype=np.int64))
    return [f"{index}_v = np.ascontiguousarray({value}).ravel()",
            f"for {index} in range({size}):",
            f"    {out}[{start} + {index}] = {index}_v[{index}]"]


def _indented(lines):
    return ["    " + line for line in lines]


def _lower_scan(node, out, ins, ctx):
    body, length, reverse = node.params["body"], node.params["length"], node.params["reverse"]
    nc, nx = body.n_carry, body.n_xs
    init, xs, consts = split(ins, nc, nx)
    layout = body.scan_layout(length)
    carry = [f"{out}_c{j}" for j in range(nc)]
    ys = [f"{out}_y{j}" for j in range(len(body.y_avals))]
    step, k = f"{out}_i", f"{out}_k"
    lines = [f"{out} = np.empty({layout.total}, {dtype_code(layout.dtype)})"]
    ctx.made.add(node.id)  # `out` is this loop's array: the only view of one of its carries may be taken over
    lines += [f"{c} = {v}" for c, v in zip(carry, init)]
    order = f"range({length} - 1, -1, -1)" if reverse else f"range({length})"
    args = [step, *carry, *[f"{x}[{step}]" for x in xs], *consts]

    def stack(j, value):  # y j of this step into its stacked slot
        shape, _ = body.y_avals[j]
        size = int(np.prod(shape, dtype=np.int64))
        return _indented(_store(out, f"{layout.slots[nc + j][0]} + {step} * {size}", shape, value, k))
    source = body.recorded_from
    increments = _increments(body) if source is None else {}
    lent = set(_lent(body)) if source is None else set()
    in_place, taken = _buffers(node, out, carry, increments, lent, lines, ctx)
    lines.append(f"for {step} in {order}:")
    if source is None:
        graph = _accumulating(body).graph if increments else body.graph
        outer = [j for j in increments if _outer_factors(increments[j])]
        targets = [f"{c}_inc" if j in increments else c for j, c in enumerate(carry)]
        call = ctx.call_subkernel(graph, args, donated=[1 + j for j in sorted(lent)])
        lines.append(f"    {_targets(targets + ys + [f'{carry[j]}_inc2' for j in outer])} = {call}")
        for j in increments:
            c, (shape, _) = carry[j], body.carry_avals[j]
            if j in outer:  # c += a @ b for a column a and a row b: one pass over c, no product stored
                lines += [f"    for {k} in range({shape[0]}):",
                          f"        {k}_a = {c}_inc[{k}, 0]",
                          f"        for {k}2 in range({shape[1]}):",
                          f"            {c}[{k}, {k}2] += {k}_a * {c}_inc2[0, {k}2]"]
                continue
            size = int(np.prod(shape, dtype=np.int64))
            lines += [f"    {k}_v = np.ascontiguousarray({c}_inc).reshape({size})",
                      f"    for {k} in range({size}):",
                      f"        {c}_f[{k}] += {k}_v[{k}]"]
        for j, y in enumerate(ys):
            lines += stack(j, y)
    else:  # the body that also stacks its carries: the carries stored here, one sub-kernel for both
        own = len(source.y_avals)
        for j, c in enumerate(carry):
            lines += stack(own + j, c)
        lines.append(f"    {_targets(carry + ys[:own])} = {ctx.call_subkernel(source.graph, args)}")
        for j, y in enumerate(ys[:own]):
            lines += stack(j, y)
    for j, c in enumerate(carry):
        if j in taken:  # its slot of `out` is left unwritten: readers read the array itself
            ctx.alias(node, layout.slots[j][0], layout.slots[j][1], c)
        elif j not in in_place:
            lines += _store(out, layout.slots[j][0], layout.avals[j][0], c, k)
    return "\n".join(lines)


def _buffers(node, out, carry, increments, lent, lines, ctx):
    """Lines (appended to `lines`) giving the loop an array of its own for each carry it adds into in
    place (`increments`) or lends to its body (`lent`, which it narrows to the carries it can lend):
    the init's array when the loop may take it over (`ctx.may_take`; then its slot of `out` is
    left unwritten), else its slot of `out` holding a copy of the init. Returns (increment carries
    whose buffer is their slot: no copy at the end, carries whose init the loop took over)."""
    body = node.params["body"]
    layout, k = body.scan_layout(node.params["length"]), f"{out}_k"
    in_place, taken = set(), set()
    for j in sorted(set(increments) | lent):
        (shape, dtype), size, c = body.carry_avals[j], int(np.prod(body.carry_avals[j][0], dtype=np.int64)), carry[j]
        if dtype != layout.dtype:
            if j in increments:
                lines += [f"{c} = np.copy({c})", f"{c}_f = {c}.reshape({size})"]
            lent.discard(j)  # a carry lent to the body is its slot of `out` or an array taken over
            continue
        start = layout.slots[j][0]
        if ctx.may_take(node, j, start, size):
            taken.add(j)
            lines += [f"{c}_f = {c}.reshape({size})"] if j in increments else []
            continue
        in_place |= {j} if j in increments else set()
        lines += [f"{c}_f = {out}[{start}:{start + size}]",
                  f"{k}_v = np.ascontiguousarray({c}).reshape({size})",
                  f"for {k} in range({size}):",
                  f"    {c}_f[{k}] = {k}_v[{k}]",
                  f"{c} = {c}_f.reshape({shape!r})"]
    return in_place, taken


def _increments(body):
    """{carry j: its increment node} for the array carries the body updates as `carry + increment`
    (an adjoint's running sum of cotangents): the compiled loop adds the increment into a buffer in
    place, instead of allocating the sum at every step."""
    graph, found = body.graph, {}
    for j in range(body.n_carry):
        node, carried = graph.outputs[j], graph.inputs[body.lead + j]
        if node.prim is not add_p or node.ndim == 0:
            continue
        a, b = node.inputs
        other = b if a is carried else a if b is carried else None
        if other is not None and other is not carried and other.shape == node.shape and other.dtype == node.dtype:
            found[j] = other
    return found


def _lent(body):
    """The float array carries (not `_increments`) the body hands to a nested scan, their only
    reader, which adds into them in place or hands them on again, and reads back from a nested
    scan's value: a checkpointed reverse pass's running sums of the consts' cotangents through its
    levels. The compiled loop lends them to its body (codegen `may_take`), so every level adds
    into one array, in the order "store" does. The body returns the array lent or one a nested scan
    made (a scan's value is never a view of another array): lending it again is safe."""
    def make(body):
        graph, found = body.graph, []
        increments = _increments(body)
        for j in range(body.n_carry):
            carried = graph.inputs[body.lead + j]
            if j in increments or carried.ndim == 0 or not _is_float(carried.dtype):
                continue
            uses = [(n, p) for n in graph.nodes for p, i in enumerate(n.inputs) if i is carried]
            uses += [(None, None) for o in graph.outputs if o is carried]
            if len(uses) != 1 or uses[0][0] is None or uses[0][0].prim is not scan_p:
                continue
            (inner, p), = uses
            nested, out = inner.params["body"], graph.outputs[j]
            while out.prim in (reshape_p, slice_p, convert_p):
                out = out.inputs[0]
            # the new carry is read from a nested scan's value (the array lent, or one the scan made)
            if out.prim is scan_p and p < nested.n_carry and (p in _increments(nested) or p in _lent(nested)):
                found.append(j)
        return tuple(found)
    return body._made("lent", make)


def _outer_factors(node):
    """(a, b) when `node` is a @ b of a column (n, 1) and a row (1, m) (the cotangent of a matrix
    in a matrix-vector product), else None. The product is exact: the sum has one term."""
    if node.prim is not matmul_p or node.ndim != 2:
        return None
    a, b = node.inputs
    if a.shape == (node.shape[0], 1) and b.shape == (1, node.shape[1]) and a.dtype == b.dtype == node.dtype:
        return a, b
    return None


def _accumulating(body):
    """The body returning the increments (`_increments`) of those carries instead of their sums; an
    outer-product increment as its column (in the carry's place) and its row (after the ys)."""
    def make(body):
        increments = _increments(body)
        outputs, rows = list(body.graph.outputs), []
        for j, inc in increments.items():
            factors = _outer_factors(inc)
            outputs[j] = factors[0] if factors else inc
            rows += [factors[1]] if factors else []
        return Body(Graph(body.graph.inputs, outputs + rows), body.lead, body.n_carry, body.n_xs,
                    f"{body.name} (increments)")
    return body._made("increments", make)


def _lower_while(node, out, ins, ctx):
    cond, body = node.params["cond"], node.params["body"]
    nc = body.n_carry
    init, consts = split(ins, nc)
    layout = _while_layout(body)
    carry = [f"{out}_c{j}" for j in range(nc)]
    count = f"{out}_n"
    lines = [f"{c} = {v}" for c, v in zip(carry, init)] + [f"{count} = 0"]
    lines.append(f"while {ctx.call_subkernel(cond.graph, carry + consts)}[0]:")
    lines.append(f"    {_targets(carry)} = {ctx.call_subkernel(body.graph, carry + consts)}")
    lines.append(f"    {count} += 1")
    lines.append(f"{out} = np.empty({layout.total}, {dtype_code(layout.dtype)})")
    for j, c in enumerate(carry + [count]):
        lines += _store(out, layout.slots[j][0], layout.avals[j][0], c, f"{out}_k")
    return "\n".join(lines)


def _read(packed, start, shape, dtype):
    """Code reading a value of `shape` from the flat array `packed` at position `start` (code)."""
    if not shape:
        return f"{dtype_code(dtype)}({packed}[{start}])"
    size = int(np.prod(shape, dtype=np.int64))
    return f"{packed}[{start}:{start} + {size}].reshape({shape!r}).astype({dtype_code(dtype)})"


def _lower_while_vjp(node, out, ins, ctx):
    body = node.params["body"]
    nc = body.n_carry
    fc, fk = floats(body.carry_avals), floats(body.const_avals)
    packed, g, rest = ins[0], ins[1], ins[2:]
    init, consts = split(rest, nc)
    layout, result = _while_layout(body), _while_vjp_layout(body)
    carry = [f"{out}_c{j}" for j in range(nc)]
    stacks = [f"{out}_s{j}" for j in range(nc)]
    cts = [f"{out}_g{j}" for j in range(len(fc) + len(fk))]
    count, step, k = f"{out}_n", f"{out}_i", f"{out}_k"
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape, _ in body.carry_avals]
    lines = [f"{count} = int({packed}[{layout.slots[-1][0]}])"]
    lines += [f"{c} = {v}" for c, v in zip(carry, init)]
    lines += [f"{st} = np.empty({count} * {size}, {dtype_code(dtype)})"
              for st, size, (_, dtype) in zip(stacks, sizes, body.carry_avals)]
    lines.append(f"for {step} in range({count}):")  # the forward loop again, storing each step's carry
    for st, c, size, (shape, _) in zip(stacks, carry, sizes, body.carry_avals):
        lines += _indented(_store(st, f"{step} * {size}", shape, c, k))
    lines.append(f"    {_targets(carry)} = {ctx.call_subkernel(body.graph, carry + consts)}")
    lines += [f"{ct} = {_read(g, layout.slots[j][0], *body.carry_avals[j])}" for ct, j in zip(cts, fc)]
    for ct, j in zip(cts[len(fc):], fk):
        shape, dtype = body.const_avals[j]
        lines.append(f"{ct} = np.zeros({shape!r}, {dtype_code(dtype)})" if shape else f"{ct} = {dtype_code(dtype)}(0)")
    lines.append(f"for {step} in range({count} - 1, -1, -1):")
    stored = [_read(st, f"{step} * {size}", *aval) for st, size, aval in zip(stacks, sizes, body.carry_avals)]
    adjoint = body.while_adjoint()
    lines.append(f"    {_targets(cts)} = {ctx.call_subkernel(adjoint.graph, cts + stored + consts)}")
    lines.append(f"{out} = np.empty({result.total}, {dtype_code(result.dtype)})")
    for j, ct in enumerate(cts):
        lines += _store(out, result.slots[j][0], result.avals[j][0], ct, k)
    return "\n".join(lines)


def _loop_cost(node):
    """The scheduler's estimate: the body's element operations times the trip count."""
    body = node.params["body"]
    per_step = sum(n.size for n in body.graph.nodes)
    return per_step * node.params.get("length", 100)


_scan_vjp.takes_wanted = True  # the AD transform passes wanted= (see jitad.transforms.ad.vjp_values)
scan_p = Primitive("scan", impl=_scan_impl, shape_rule=_scan_shape, jvp=_scan_jvp, vjp=_scan_vjp,
                   kind=Kind.LIBRARY, lower=_lower_scan, cost=_loop_cost, contiguous_output=True, batch=_scan_batch,
                   simplify=_scan_simplify)
while_p = Primitive("while", impl=_while_impl, shape_rule=_while_shape, jvp=_while_jvp, vjp=_while_vjp,
                    kind=Kind.LIBRARY, lower=_lower_while, cost=_loop_cost, contiguous_output=True, batch=_while_batch)
while_vjp_p = Primitive("while_vjp", impl=_while_vjp_impl, shape_rule=_while_vjp_shape, jvp=_second_order,
                        vjp=_second_order, kind=Kind.LIBRARY, lower=_lower_while_vjp, cost=_loop_cost,
                        contiguous_output=True)
