"""The bodies a loop's derivatives run: derived from a loop body's graph by the transforms.

`jitad.primitives.control.Body` asks this module (its `rules`, set when this module is imported)
for the body of its forward-mode loop, of one step of its reverse sweep, of a checkpointed
segment, of its batched form, and so on. Each is built at the IR level: the body's graph replayed
or transformed (`transforms.ad`, `transforms.batching`) over fresh inputs, with primitive
builders for the arithmetic around it (`ir.build_graph`; the NumPy front-end is not used).
"""
import sys

import numpy as np

from jitad.interpreter import evaluate, replay
from jitad.ir import build_graph
from jitad.primitives import builders as B
from jitad.primitives.control import Body, floats, reverse_scan, scan_p, split
from jitad.primitives.structural import dynamic_slice_p
from jitad.transforms import batching
from jitad.transforms.ad import jvp_values, vjp_values

__all__ = ["jvp_body", "record_body", "residual_body", "adjoint_body", "shifted_body", "segment_forward_body",
           "segment_adjoint_body", "batched_body", "while_batched_bodies", "while_jvp_bodies", "while_adjoint",
           "run"]


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
        return gc + [B.add(a, b) for a, b in zip(kb, gk)] + gx
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
        env = replay(body.graph, [B.add(j, i0 if offset is None else offset), *c, *x, *k])
        return [env[o.id] for o in body.graph.outputs]
    avals = [index] + body.carry_avals + body.x_avals + ([index] if offset is None else []) + body.const_avals
    return _traced_body(fun, avals, 1, nc, nx, f"{body.name} (from {'i0' if offset is None else offset})")


def _rows(values, s, k, start):
    """Rows start + s*k ... start + s*k + k - 1 of each array in `values`: a dynamic slice, which a
    compiled segment reads in place (a view of the whole array, no copy of its k rows)."""
    first = _first(s, k, start)
    return [dynamic_slice_p(v, first, axis=0, size=k) for v in values]


def _first(s, k, start):
    """The element index segment s starts at: s*k + start."""
    return B.add(B.multiply(s, k), start)


def segment_forward_body(body, n, k, start, reverse):
    """Inputs (s, *c, *xs[n, ...], *consts), outputs (*c after the segment, *y[k, ...], *c): segment
    s of a checkpointed scan of n steps (elements start + s*k ...), which outputs its starting
    carry too. The xs are consts, whole: each segment reads its k rows."""
    nc, nx = body.n_carry, body.n_xs
    inner = body.shifted(None, "forward")

    def fun(s, *args):
        c, xs, consts = split(args, nc, nx)
        value = scan_p(*c, *_rows(xs, s, k, start), _first(s, k, start), *consts, body=inner, length=k, reverse=reverse)
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
        gc, gk, gx = reverse_scan(inner, c, _rows(xs, s, k, start), [_first(s, k, start), *consts], cb, kb,
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
        return [o if b else B.broadcast_to(o, (k,) + node.shape) for o, b, node in zip(outs, hot, body.graph.outputs)]
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
        return [o if h or not b else B.broadcast_to(o, (k,) + node.shape)
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
        return gc + [B.add(a, b) for a, b in zip(kb, gk)]
    avals = [ca[j] for j in fc] + [ka[j] for j in fk] + ca + ka
    return _traced_body(fun, avals, 0, len(fc) + len(fk), 0, f"vjp of {body.name}")


def run(body, args):
    """The body's outputs on concrete arrays (the reference executor)."""
    return evaluate(body.graph, args)


Body.rules = sys.modules[__name__]


def _traced_body(fun, avals, lead, n_carry, n_xs, name):
    """A derived body: `fun` traced over `avals` (it closes over nothing traced)."""
    graph, captured = build_graph(fun, avals)
    assert not captured, "a derived loop body uses only its own inputs"
    return Body(graph, lead, n_carry, n_xs, name)
