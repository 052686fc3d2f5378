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
import numpy as np
import optree

from jitad.errors import JitadError, ShapeError
from jitad.frontend.tracer import trace
from jitad.interpreter import replay
from jitad.ir import build_graph, current_builder, is_tracer
from jitad.primitives.control import Body, scan_p, while_p
from jitad.pytrees import NAMESPACE, tree_flatten, tree_unflatten
import jitad.transforms.loops  # noqa: F401 (sets Body.rules: the bodies of a loop's derivatives)

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
