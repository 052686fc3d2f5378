"""ODE solves: the solution at given times, its tangent and its adjoint, as three primitives.

`ode_solve(y0, span, ts, *params, system)` is y(ts) for dy/dt = f(y, t, params), y(span[0]) = y0:
an array (len(ts), len(y0)). The right-hand side f is a traced graph that `system` (built by
jitad.frontend.integrate) evaluates, and SciPy's integrator named by `system` does the solve.
Its JVP is `ode_tangent` (the sensitivity equations, solved forward with the same integrator)
and its VJP is `ode_adjoint` (the adjoint ODE, solved backwards). All three run on real arrays
(kind "callback": a graph that holds one runs on the NumPy executor). The tangent and the
adjoint have no derivatives of their own: a second derivative raises NonDifferentiableError.
"""
import numpy as np

from jitad.errors import NonDifferentiableError
from jitad.primitives.core import Primitive


def _dtype(x):
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype  # a node, tracer, array or float


def _is_float(x):
    return _dtype(x).kind == "f"


def _size(x):
    return int(np.prod(np.shape(x), dtype=np.int64))


def _solve_shape(y0, span, ts, *params, system):
    return (ts.shape[0], y0.shape[0]), np.dtype(np.float64)


def _solve_jvp(primals, tangents, out, system):
    filled = [np.zeros(np.shape(x), np.float64) if t is None else t for x, t in zip(primals, tangents)]
    return ode_tangent_p(out, *primals, *filled, system=system)


def _solve_vjp(g, out, y0, span, ts, *params, system):
    """Cotangents of y0, the time span, the output times and the float parameters, cut out of
    the adjoint's flat result (integer parameters get none)."""
    flat = ode_adjoint_p(g, out, y0, span, ts, *params, system=system)
    cts, offset = [], 0
    for x in (y0, span, ts, *params):
        if not _is_float(x):
            cts.append(None)
            continue
        size = _size(x)
        piece = np.reshape(flat[offset:offset + size], np.shape(x))
        cts.append(piece if _dtype(x) == np.float64 else piece.astype(_dtype(x)))
        offset += size
    return tuple(cts)


def _second_order(which):
    def rule(*args, system, **params):
        raise NonDifferentiableError(
            f"cannot differentiate the {which} of `{system.name}` again: jitad solves it with SciPy's "
            "integrator on real arrays, so second derivatives (grad of grad, hessian, hvp) through an ODE "
            "solve are not available. First derivatives work in both modes")
    return rule


ode_solve_p = Primitive(
    "ode_solve", impl=lambda y0, span, ts, *params, system: system.solve(y0, span, ts, params),
    shape_rule=_solve_shape, jvp=_solve_jvp, vjp=_solve_vjp, kind="callback")

# inputs: the solution ys, the primals of ode_solve, then one tangent per primal
ode_tangent_p = Primitive(
    "ode_tangent",
    impl=lambda ys, *rest, system: system.tangent(ys, rest[:len(rest) // 2], rest[len(rest) // 2:]),
    shape_rule=lambda ys, *rest, system: (ys.shape, ys.dtype),
    jvp=_second_order("tangent"), vjp=_second_order("tangent"), kind="callback")

# inputs: the output cotangent g, the solution ys, the primals of ode_solve; output: the flat
# cotangents of y0, span, ts and the float parameters, in that order
ode_adjoint_p = Primitive(
    "ode_adjoint", impl=lambda g, ys, y0, span, ts, *params, system: system.adjoint(g, ys, y0, span, ts, params),
    shape_rule=lambda g, ys, *primals, system: ((sum(_size(x) for x in primals if _is_float(x)),),
                                                np.dtype(np.float64)),
    jvp=_second_order("adjoint"), vjp=_second_order("adjoint"), kind="callback")

__all__ = ["ode_solve_p", "ode_tangent_p", "ode_adjoint_p"]
