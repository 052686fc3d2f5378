"""Loops that stay loops: jitad.fori_loop, jitad.scan and jitad.while_loop (JAX's signatures).

Called on plain values (nothing traced), each runs its Python loop. Inside a trace, the body
(and the condition) is traced once, over the shapes and dtypes of the carry and of one step
of xs, into a sub-graph; traced values it closes over become extra inputs of the loop node
(jitad.primitives.control). So tracing, transforming and compiling a loop costs the same for
10 steps or 10,000; derivatives are loops too (see control.py for how each mode works).

Carries are pytrees of arrays and numbers. The body must return a carry of the same structure,
shapes and dtypes as the one it was given (as in JAX): a difference is a `LoopCarryError`
naming the leaf (a shape difference is also a ShapeError).
"""
import sys

import numpy as np
import optree

from jitad.errors import JitadError, ShapeError
from jitad.frontend.tracer import trace
from jitad.interpreter import evaluate, replay
from jitad.ir import build_graph, current_builder, is_tracer
from jitad.primitives.control import Body, floats, reverse_scan, scan_p, split, while_p
from jitad.pytrees import NAMESPACE, tree_flatten, tree_unflatten
from jitad.transforms import batching
from jitad.transforms.ad import jvp_values, vjp_values

__all__ = ["fori_loop", "scan", "while_loop", "LoopCarryError"]


class LoopCarryError(JitadError, TypeError):
    """A loop body returned a carry of another structure, shape or dtype than the one it was given."""


class _LoopShapeError(LoopCarryError, ShapeError):
    pass


def _leaf(x):
    return x if is_tracer(x) else np.asarray(x)


def _aval(x):
    return tuple(x.shape), np.dtype(x.dtype)


def _paths(tree):
    return ["carry" + "".join(f"[{p!r}]" for p in path) for path in optree.tree_paths(tree, namespace=NAMESPACE)]


def _check_carry(loop, tree, avals, paths, new):
    """The new carry's leaves, checked against the old carry's structure and (shape, dtype)s."""
    leaves, new_tree = tree_flatten(new)
    if new_tree != tree:
        raise LoopCarryError(f"the body of jitad.{loop} returned a carry of structure {new_tree}, but it was "
                             f"given one of structure {tree}; a loop's carry keeps its structure")
    leaves = [_leaf(x) for x in leaves]
    for path, leaf, (shape, dtype) in zip(paths, leaves, avals):
        if tuple(leaf.shape) != shape:
            raise _LoopShapeError(f"the body of jitad.{loop} returned {path} of shape {tuple(leaf.shape)}, but "
                                  f"the carry it was given has shape {shape} there")
        if np.dtype(leaf.dtype) != dtype:
            raise LoopCarryError(f"the body of jitad.{loop} returned {path} of dtype {np.dtype(leaf.dtype).name}, "
                                 f"but the carry it was given has dtype {dtype.name} there (cast it, e.g. "
                                 f"with .astype(np.{dtype.name}))")
    return leaves


def _tracing():
    return current_builder() is not None


# --- the loop bodies' derivations (jitad.primitives.control.Body delegates to these) -----------
def jvp_body(body, fx, fk):
    """Inputs (i, *c, *ċ, *x, *ẋ[fx], *k, *k̇[fk]), outputs (*c', *ċ', *y, *ẏ) over the float carries
    and ys; ċ for every float carry."""
    nc, nx = body.n_carry, body.n_xs
    fc, fy = floats(body.carry_avals), floats(body.y_avals)
    ca, xa, ka = body.carry_avals, body.x_avals, body.const_avals

    def fun(i, *args):
        c, cd, x, xd, k, kd = split(args, nc, len(fc), nx, len(fx), len(body.const_avals))
        wrt = [1 + j for j in fc] + [1 + nc + j for j in fx] + [1 + nc + nx + j for j in fk]
        outs, (tans,) = jvp_values(body.graph, [i, *c, *x, *k], [[*cd, *xd, *kd]], wrt)
        return outs[:nc] + [tans[j] for j in fc] + outs[nc:] + [tans[nc + j] for j in fy]
    avals = ([((), np.dtype(np.int64))] + ca + [ca[j] for j in fc] + xa + [xa[j] for j in fx] + ka +
             [ka[j] for j in fk])
    return _traced_body(fun, avals, 1, nc + len(fc), nx + len(fx), f"jvp of {body.name}")


def record_body(body):
    """The body with the carry each step starts from as extra per-step outputs."""
    def fun(*args):
        env = replay(body.graph, list(args))
        return [env[o.id] for o in body.graph.outputs] + list(args[1:1 + body.n_carry])
    return _traced_body(fun, body._avals(body.graph.inputs), 1, body.n_carry, body.n_xs,
                        f"{body.name} (stored)")


def residual_body(body):
    """The body with the values of `body.residuals()` as extra per-step outputs."""
    def fun(*args):
        env = replay(body.graph, list(args))
        return [env[o.id] for o in body.graph.outputs] + [env[n.id] for n in body.residuals()]
    return _traced_body(fun, body._avals(body.graph.inputs), 1, body.n_carry, body.n_xs, body.name)


def adjoint_body(body, fx, fk):
    """Inputs (i, *c̄[fc], *k̄[fk], *c, *x, *r, *ȳ[fy], *k), outputs (*c̄ before the step, *k̄ summed,
    *x̄[fx]): one step of the reverse sweep; r: the step's residuals, stored by the forward pass."""
    nc, nx = body.n_carry, body.n_xs
    ca, xa, ka, ya = body.carry_avals, body.x_avals, body.const_avals, body.y_avals
    fc, fy = floats(ca), floats(ya)
    residuals = body.residuals()

    def fun(i, *args):
        cb, kb, c, x, r, yb, k = split(args, len(fc), len(fk), nc, nx, len(residuals), len(fy))
        cts = [None] * (nc + len(ya))
        for j, g in zip(fc, cb):
            cts[j] = g
        for j, g in zip(fy, yb):
            cts[nc + j] = g
        wrt = [1 + j for j in fc] + [1 + nc + j for j in fx] + [1 + nc + nx + j for j in fk]
        given = {n.id: v for n, v in zip(residuals, r)}
        _, (grads,) = vjp_values(body.graph, [i, *c, *x, *k], [cts], wrt, given)
        gc, gx, gk = split(grads, len(fc), len(fx))
        return gc + [a + b for a, b in zip(kb, gk)] + gx
    avals = ([((), np.dtype(np.int64))] + [ca[j] for j in fc] + [ka[j] for j in fk] + ca + xa +
             [(n.shape, n.dtype) for n in residuals] + [ya[j] for j in fy] + ka)
    return _traced_body(fun, avals, 1, len(fc) + len(fk), nc + nx + len(residuals) + len(fy),
                        f"vjp of {body.name}")


def shifted_body(body, offset):
    """Inputs (j, *c, *x, *k), or (j, *c, *x, i0, *k) when `offset` is None: the body at element
    index j + offset (j + i0): a segment of a checkpointed scan (control.reverse_scan)."""
    nc, nx = body.n_carry, body.n_xs
    index = ((), np.dtype(np.int64))

    def fun(j, *args):
        c, x, k = split(args, nc, nx)
        if offset is None:
            i0, k = k[0], k[1:]
        env = replay(body.graph, [j + (i0 if offset is None else offset), *c, *x, *k])
        return [env[o.id] for o in body.graph.outputs]
    avals = [index] + body.carry_avals + body.x_avals + ([index] if offset is None else []) + body.const_avals
    return _traced_body(fun, avals, 1, nc, nx, f"{body.name} (from {'i0' if offset is None else offset})")


def _rows(values, s, k, start):
    """Rows start + s*k ... of each array in `values` (a gather: no copy of the whole array)."""
    rows = s * k + start + np.arange(k)
    return [v[rows] for v in values]


def segment_forward_body(body, n, k, start, reverse):
    """Inputs (s, *c, *xs[n, ...], *consts), outputs (*c after the segment, *y[k, ...], *c): segment
    s of a checkpointed scan of n steps (elements start + s*k ...), which outputs its starting
    carry too. The xs are consts, whole: each segment reads its k rows."""
    nc, nx = body.n_carry, body.n_xs
    inner = body.shifted(None, "forward")

    def fun(s, *args):
        c, xs, consts = split(args, nc, nx)
        value = scan_p(*c, *_rows(xs, s, k, start), s * k + start, *consts, body=inner, length=k, reverse=reverse)
        return inner.scan_layout(k).unpack(value) + list(c)
    avals = ([((), np.dtype(np.int64))] + body.carry_avals + [((n,) + s, d) for s, d in body.x_avals] +
             body.const_avals)
    return _traced_body(fun, avals, 1, nc, 0, f"{body.name} ({k}-step segments)")


def segment_adjoint_body(body, n, k, start, reverse, schedule, fx, fk):
    """Inputs (s, *c̄[fc], *k̄[fk], *c, *xs[n, ...], *ȳ[n, fy], *consts), outputs (*c̄ before segment
    s, *k̄ summed, *x̄[k, fx]): segment s run again from its checkpoint c, then reversed
    (control.reverse_scan with `schedule`); the xs and ȳ are consts, whole."""
    nc, nx = body.n_carry, body.n_xs
    ca, xa, ka, ya = body.carry_avals, body.x_avals, body.const_avals, body.y_avals
    fc, fy = floats(ca), floats(ya)
    inner = body.shifted(None, "reverse")
    inner_fk = tuple(1 + j for j in fk)  # the inner body's consts are (i0, *consts)

    def fun(s, *args):
        cb, kb, c, xs, yb, consts = split(args, len(fc), len(fk), nc, nx, len(fy))
        gc, gk, gx = reverse_scan(inner, c, _rows(xs, s, k, start), [s * k + start, *consts], cb, kb,
                                  _rows(yb, s, k, start), k, reverse, schedule, fx, inner_fk)
        return gc + gk + gx
    avals = ([((), np.dtype(np.int64))] + [ca[j] for j in fc] + [ka[j] for j in fk] + ca +
             [((n,) + s, d) for s, d in xa] + [((n,) + ya[j][0], ya[j][1]) for j in fy] + ka)
    return _traced_body(fun, avals, 1, len(fc) + len(fk), nc, f"vjp of {body.name} ({k}-step segments)")


def batched_body(body, bx, bk, k):
    """Inputs (i, *c[k, ...], *x (with [k] where bx), *consts (with [k] where bk)), outputs
    (*c'[k, ...], *y[k, ...]): the body replayed over the batch (transforms.batching), its
    unbatched outputs broadcast."""
    nc, nx = body.n_carry, body.n_xs
    flags = [False] + [True] * nc + list(bx) + list(bk)

    def fun(*args):
        outs, hot = batching.batch_replay(body.graph, list(args), flags, k)
        return [o if b else np.broadcast_to(o, (k,) + node.shape) for o, b, node in zip(outs, hot, body.graph.outputs)]
    avals = [((k,) + s if b else s, d) for (s, d), b in zip(Body._avals(body.graph.inputs), flags)]
    return _traced_body(fun, avals, 1, nc, nx, f"{body.name} (batched)")


def while_batched_bodies(body, cond, bc, bk, k):
    """(condition, body) of k while loops as one, the carries in `bc` and consts in `bk` with a
    leading axis of k (the caller widens `bc` until the body keeps it), or None when the condition
    differs between the k loops (then they cannot run as one loop)."""
    flags = list(bc) + list(bk)
    avals = [((k,) + s if b else s, d) for (s, d), b in zip(Body._avals(body.graph.inputs), flags)]
    box = {}

    def cond_fun(*args):
        (pred,), (hot,) = batching.batch_replay(cond.graph, list(args), flags, k)
        box["batched"] = hot
        return [pred]

    def body_fun(*args):
        outs, hot = batching.batch_replay(body.graph, list(args), flags, k)
        box["carries"] = hot
        return [o if h or not b else np.broadcast_to(o, (k,) + node.shape)
                for o, h, b, node in zip(outs, hot, bc, body.graph.outputs)]
    new_cond = _traced_body(cond_fun, avals, 0, body.n_carry, 0, f"{cond.name} (batched)")
    new_body = _traced_body(body_fun, avals, 0, body.n_carry, 0, f"{body.name} (batched)")
    if box["batched"]:
        return None
    return new_cond, new_body, tuple(box["carries"])


def while_jvp_bodies(body, cond, fk):
    """The condition and body of the tangent while loop over (*c, *ċ[float]) with consts
    (*k, *k̇[fk])."""
    nc, nk = body.n_carry, body.n_consts
    ca, ka = body.carry_avals, body.const_avals
    fc = floats(ca)
    avals = ca + [ca[j] for j in fc] + ka + [ka[j] for j in fk]

    def cond_fun(*args):
        c, _, k, _ = split(args, nc, len(fc), nk)
        env = replay(cond.graph, [*c, *k])
        return [env[cond.graph.outputs[0].id]]

    def body_fun(*args):
        c, cd, k, kd = split(args, nc, len(fc), nk)
        wrt = list(fc) + [nc + j for j in fk]
        outs, (tans,) = jvp_values(body.graph, [*c, *k], [[*cd, *kd]], wrt)
        return outs + [tans[j] for j in fc]
    return (_traced_body(cond_fun, avals, 0, nc + len(fc), 0, f"{cond.name} (tangent loop)"),
            _traced_body(body_fun, avals, 0, nc + len(fc), 0, f"jvp of {body.name}"))


def while_adjoint(body):
    """Inputs (*c̄[fc], *k̄[fk], *c, *k), outputs (*c̄ before the step, *k̄ summed)."""
    nc = body.n_carry
    ca, ka = body.carry_avals, body.const_avals
    fc, fk = floats(ca), floats(ka)

    def fun(*args):
        cb, kb, c, k = split(args, len(fc), len(fk), nc)
        cts = [None] * nc
        for j, g in zip(fc, cb):
            cts[j] = g
        _, (grads,) = vjp_values(body.graph, [*c, *k], [cts], list(fc) + [nc + j for j in fk])
        gc, gk = split(grads, len(fc))
        return gc + [a + b for a, b in zip(kb, gk)]
    avals = [ca[j] for j in fc] + [ka[j] for j in fk] + ca + ka
    return _traced_body(fun, avals, 0, len(fc) + len(fk), 0, f"vjp of {body.name}")


def run(body, args):
    """The body's outputs on concrete arrays (the reference executor)."""
    return evaluate(body.graph, args)


Body.rules = sys.modules[__name__]


def _traced_body(fun, avals, lead, n_carry, n_xs, name):
    """A derived body: `fun` traced over `avals` (it closes over nothing traced)."""
    graph, captured = trace(fun, avals)
    assert not captured, "a derived loop body uses only its own inputs"
    return Body(graph, lead, n_carry, n_xs, name)


# --- scan -------------------------------------------------------------------------------------
def scan(f, init, xs, length=None, reverse=False):
    """`f(carry, x) -> (carry, y)` over the leading axis of `xs`; returns (final carry, stacked ys).

    Like jax.lax.scan: `xs` is a pytree of arrays with one leading length (or None, with
    `length`), the ys are stacked along a new leading axis in a pytree like `f`'s y, and
    `reverse=True` runs from the last element to the first (ys[i] still belongs to xs[i]).

    >>> import numpy as np, jitad
    >>> def f(w):
    ...     carry, ys = jitad.scan(lambda c, x: (c * w + x, c), 0.0, np.arange(4.0))
    ...     return carry + np.sum(ys)
    >>> float(f(2.0)), float(jitad.grad(f)(2.0))
    (16.0, 7.0)
    """
    x_leaves, x_tree = tree_flatten(xs)
    x_leaves = [_leaf(x) for x in x_leaves]
    lengths = {int(x.shape[0]) for x in x_leaves if len(x.shape)}
    if any(not len(x.shape) for x in x_leaves):
        raise ShapeError("jitad.scan: every leaf of xs needs a leading axis to scan over; a 0-d leaf has none")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) != 1:
        raise ShapeError(f"jitad.scan: xs and length disagree on the number of steps: {sorted(lengths)}"
                         if lengths else "jitad.scan: give xs or length")
    (n,) = lengths
    if not _tracing():
        return _scan_python(f, init, xs, n, reverse)
    return _scan_traced(lambda i, c, x: f(c, tree_unflatten(x_tree, x)), init, x_leaves, n, reverse, "scan")


def _scan_python(f, init, xs, n, reverse):
    carry, ys = init, [None] * n
    x_leaves, x_tree = tree_flatten(xs)
    for i in (range(n - 1, -1, -1) if reverse else range(n)):
        carry, ys[i] = f(carry, tree_unflatten(x_tree, [x[i] for x in x_leaves]))
    if n == 0:
        raise ShapeError("jitad.scan of zero steps outside a trace: the ys' shapes are unknown")
    y_leaves = [tree_flatten(y)[0] for y in ys]
    stacked = [np.stack([np.asarray(y[k]) for y in y_leaves]) for k in range(len(y_leaves[0]))]
    return carry, tree_unflatten(tree_flatten(ys[0])[1], stacked)


def _scan_traced(step, init, x_leaves, n, reverse, loop):
    """The scan node for `step(i, carry, x_leaves) -> (carry, y)`; returns (carry, ys) as pytrees."""
    c_leaves, c_tree = tree_flatten(init)
    c_leaves = [_leaf(c) for c in c_leaves]
    c_avals = [_aval(c) for c in c_leaves]
    paths = _paths(init)
    box = {}
    nc, nx = len(c_leaves), len(x_leaves)

    def fun(i, *args):
        carry = tree_unflatten(c_tree, list(args[:nc]))
        new, y = step(i, carry, list(args[nc:]))
        leaves = _check_carry(loop, c_tree, c_avals, paths, new)
        y_leaves, box["y_tree"] = tree_flatten(y)
        return leaves + y_leaves
    avals = [((), np.dtype(np.int64))] + c_avals + [(tuple(x.shape[1:]), np.dtype(x.dtype)) for x in x_leaves]
    graph, captured = trace(fun, avals)
    body = Body(graph, 1, nc, nx, name=f"{loop} body")
    value = scan_p(*c_leaves, *x_leaves, *captured, body=body, length=n, reverse=bool(reverse))
    parts = body.scan_layout(n).unpack(value)
    return tree_unflatten(c_tree, parts[:nc]), tree_unflatten(box["y_tree"], parts[nc:])


# --- fori_loop --------------------------------------------------------------------------------
def _static_int(value, name):
    if is_tracer(value):
        return None
    array = np.asarray(value)
    if array.ndim or array.dtype.kind not in "iu":
        raise TypeError(f"jitad.fori_loop: {name} must be an integer, got {value!r}")
    return int(array)


def fori_loop(lower, upper, body_fun, init_val):
    """`body_fun(i, carry) -> carry` for i = lower, ..., upper - 1; returns the final carry.

    Like jax.lax.fori_loop. With integer bounds the loop is a scan of upper - lower steps
    (differentiable in both modes, to any order); with traced bounds it is a while loop.
    The body sees `i` as a traced integer: it indexes traced arrays (`xs[i]` of an argument),
    but not a NumPy array, whose indexing needs a concrete number (pass the array as an
    argument, or scan over it with jitad.scan).

    >>> import numpy as np, jitad
    >>> f = lambda x: jitad.fori_loop(0, 3, lambda i, c: c * x + i, 1.0)
    >>> float(f(2.0)), float(jitad.grad(f)(2.0))
    (12.0, 16.0)
    """
    lo, hi = _static_int(lower, "lower"), _static_int(upper, "upper")
    if lo is None or hi is None:
        def cond(state):
            return state[0] < upper

        def body(state):
            return state[0] + 1, body_fun(state[0], state[1])
        return while_loop(cond, body, (np.asarray(lower, np.int64) if lo is not None else lower, init_val))[1]
    if not _tracing():
        carry = init_val
        for i in range(lo, hi):
            carry = body_fun(i, carry)
        return carry
    if hi <= lo:
        return init_val
    carry, _ = _scan_traced(lambda i, c, x: (body_fun(i + lo if lo else i, c), None), init_val, [], hi - lo,
                            False, "fori_loop")
    return carry


# --- while_loop -------------------------------------------------------------------------------
def while_loop(cond_fun, body_fun, init_val):
    """`carry = body_fun(carry)` while `cond_fun(carry)`; returns the final carry.

    Like jax.lax.while_loop, and differentiable in reverse mode too: the forward loop records its
    trip count, and the reverse pass runs the body again that many times storing each step's
    carry, then the body's vjp backwards over them (jitad.primitives.control). Forward mode is
    a while loop over (carry, tangent). A second derivative through it raises
    NonDifferentiableError (use fori_loop or scan, whose trip count is fixed).

    >>> import numpy as np, jitad
    >>> def f(x):  # double x until it exceeds 10
    ...     return jitad.while_loop(lambda c: c < 10.0, lambda c: c * 2.0, x)
    >>> float(f(3.0)), float(jitad.grad(f)(3.0))
    (12.0, 4.0)
    """
    if not _tracing():
        carry = init_val
        while cond_fun(carry):
            carry = body_fun(carry)
        return carry
    c_leaves, c_tree = tree_flatten(init_val)
    c_leaves = [_leaf(c) for c in c_leaves]
    c_avals = [_aval(c) for c in c_leaves]
    paths = _paths(init_val)
    nc = len(c_leaves)

    def cond(*args):
        pred = _leaf(cond_fun(tree_unflatten(c_tree, list(args))))
        if tuple(pred.shape) != () or np.dtype(pred.dtype) != np.bool_:
            raise LoopCarryError(f"the cond_fun of jitad.while_loop must return a boolean scalar, got "
                                 f"{np.dtype(pred.dtype).name}{list(pred.shape)}")
        return [pred]

    def body(*args):
        return _check_carry("while_loop", c_tree, c_avals, paths, body_fun(tree_unflatten(c_tree, list(args))))
    cond_graph, cond_captured = trace(cond, c_avals)
    body_graph, body_captured = trace(body, c_avals)
    consts, positions = [], {}
    for tracer in cond_captured + body_captured:
        if tracer.node.id not in positions:
            positions[tracer.node.id] = len(consts)
            consts.append(tracer)
    cond_body = Body(_with_consts(cond_graph, nc, cond_captured, consts), 0, nc, 0, name="while_loop cond")
    loop_body = Body(_with_consts(body_graph, nc, body_captured, consts), 0, nc, 0, name="while_loop body")
    value = while_p(*c_leaves, *consts, cond=cond_body, body=loop_body)
    parts = loop_body.while_layout().unpack(value)
    return tree_unflatten(c_tree, parts[:nc])


def _with_consts(graph, n, captured, consts):
    """`graph` (inputs: n carries, then its own captured values) over inputs (n carries, *consts)."""
    where = {t.node.id: k for k, t in enumerate(consts)}

    def fun(*args):
        own = [args[n + where[t.node.id]] for t in captured]
        env = replay(graph, list(args[:n]) + own)
        return [env[o.id] for o in graph.outputs]
    avals = [(node.shape, node.dtype) for node in graph.inputs[:n]] + [_aval(t.node) for t in consts]
    new, outer = build_graph(fun, avals)
    assert not outer
    return new
