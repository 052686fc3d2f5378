"""ODE solves and quadratures, each one primitive whose derivatives are solves (quadratures) again.

`ode_solve(y0, span, ts, *params, system)` is y(ts) for dy/dt = f(y, t, *params) with
y(span[0]) = y0: an array (len(ts), len(y0)). The right-hand side f is a traced graph held by
`system` (built by jitad.frontend.integrate), and SciPy's integrator named by `system` does the
solve on real arrays (kind "callback": a graph that holds one runs on the NumPy executor).

Both derivative rules are written with jitad's own operations on IR values, around further
`ode_solve` nodes of augmented systems that `system` derives from f's traced jvp and vjp, so
derivatives of derivatives (grad of grad, hessian) are the same rules applied again:

- JVP (the sensitivity equations): s = ∂y/∂ε solves ds/dt = ∂f/∂y s + ∂f/∂p ṗ from
  s(t0) = ẏ0 - f(y0, t0) ṫ0, solved together with y; the tangent of y(tᵢ) is s(tᵢ) + f(y(tᵢ), tᵢ) ṫᵢ.
- VJP (the adjoint method): between output times, backwards from the last one, the adjoint
  a = ∂L/∂y(t) solves da/dt = -aᵀ ∂f/∂y, with p̄ = ∫ aᵀ ∂f/∂p dt riding along and y integrated
  backwards from the forward solution y(tᵢ); a gains the output cotangent gᵢ at each tᵢ.
  ∂L/∂tᵢ = gᵢ · f(y(tᵢ), tᵢ), ∂L/∂t0 = -a(t0) · f(y0, t0), ∂L/∂y0 = a(t0), and the end of the
  span has no effect on the outputs.
"""
import numpy as np

from jitad.primitives import builders as B
from jitad.primitives.core import Primitive
from jitad.primitives.structural import slice_p


def _dtype(x):
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype  # a node, tracer, array or float


def _is_float(x):
    return _dtype(x).kind == "f"


def _solve_shape(y0, span, ts, *params, system):
    return (ts.shape[0], y0.shape[0]), np.dtype(np.float64)


def _solve_jvp(primals, tangents, out, system):
    # (jitad.primitives.builders: the rules build IR without the NumPy front-end)
    (y0, span, ts, *params), (dy0, dspan, dts, *dparams) = primals, tangents
    n, m = B.shape_of(y0)[0], B.shape_of(ts)[0]
    moving = tuple(j for j, (p, d) in enumerate(zip(params, dparams)) if d is not None and _is_float(p))
    result = None
    if dy0 is not None or dspan is not None or moving:
        s0 = dy0 if dy0 is not None else B.full((n,), 0.0, np.float64)
        if dspan is not None:
            s0 = B.subtract(s0, B.multiply(system.rhs_value(y0, B.index_first(span, 0), params), B.index_first(dspan, 0)))
        zs = ode_solve_p(B.concatenate([y0, s0]), span, ts, *params,
                         *[dparams[j] for j in moving], system=system.tangent_system(moving))
        result = slice_p(zs, starts=(0, n), steps=(1, 1), shape=(m, n))
    if dts is not None:
        fs = B.stack([system.rhs_value(B.index_first(out, i), B.index_first(ts, i), params) for i in range(m)])
        moved = B.multiply(fs, B.reshape(dts, (m, 1)))
        result = moved if result is None else B.add(result, moved)
    return result if result is not None else B.full((m, n), 0.0, np.float64)


def _solve_vjp(g, out, y0, span, ts, *params, system):
    n, m = B.shape_of(y0)[0], B.shape_of(ts)[0]
    adjoint = system.adjoint_system()
    floats = [j for j, p in enumerate(params) if _is_float(p)]
    sizes = [int(np.prod(B.shape_of(params[j]), dtype=np.int64)) for j in floats]
    a, pbar, tbar = B.full((n,), 0.0, np.float64), B.full((sum(sizes),), 0.0, np.float64), [None] * m
    for i in reversed(range(m)):
        out_i, t_i = B.index_first(out, i), B.index_first(ts, i)
        tbar[i] = B.sum(B.multiply(B.index_first(g, i), system.rhs_value(out_i, t_i, params)), (0,))
        a = B.add(a, B.index_first(g, i))
        t_prev = B.index_first(ts, i - 1) if i else B.index_first(span, 0)
        z0 = B.concatenate([out_i, a, pbar])
        z = B.index_first(ode_solve_p(z0, B.stack([t_i, t_prev]), B.reshape(t_prev, (1,)), *params, system=adjoint), 0)
        a, pbar = B.flat_range(z, n, n), B.flat_range(z, 2 * n, sum(sizes))
    t0bar = B.negative(B.sum(B.multiply(a, system.rhs_value(y0, B.index_first(span, 0), params)), (0,)))
    cts, offset = [None] * len(params), 0
    for j, size in zip(floats, sizes):
        piece = B.reshape(B.flat_range(pbar, offset, size), B.shape_of(params[j]))
        cts[j] = B.astype(piece, _dtype(params[j]))
        offset += size
    return (a, B.stack([t0bar, B.multiply(t0bar, 0.0)]), B.stack(tbar), *cts)


ode_solve_p = Primitive(
    "ode_solve", impl=lambda y0, span, ts, *params, system: system.solve(y0, span, ts, params),
    shape_rule=_solve_shape, jvp=_solve_jvp, vjp=_solve_vjp, kind="callback")

# --- quadrature ------------------------------------------------------------------------------
# `quad(a, b, *params, integrand)` is [∫ₐᵇ g(x, *params) dx, error estimate]: g is a traced graph
# held by `integrand` (jitad.frontend.integrate.Integrand) with a vector value of `integrand.m`
# entries, integrated by SciPy (quad for one entry, quad_vec for more) on real arrays. The error
# estimate is SciPy's, a diagnostic without a derivative (its tangent and cotangent are zero,
# as for an integer output). The rules are quadratures again, of integrands `integrand` derives
# from g's traced jvp and vjp (differentiation under the integral sign, Leibniz's rule at the
# limits), so derivatives of derivatives are the same rules applied again:
#   d∫ = ∫ ∂g/∂p ṗ dx + g(b) ḃ - g(a) ȧ,     p̄ = ∫ ḡᵀ ∂g/∂p dx,  ā = -ḡ·g(a),  b̄ = ḡ·g(b).
def _quad_shape(a, b, *params, integrand):
    return (integrand.m + 1,), np.dtype(np.float64)


def _quad_jvp(primals, tangents, out, integrand):
    # (jitad.primitives.builders: the rules build IR without the NumPy front-end)
    (a, b, *params), (da, db, *dparams) = primals, tangents
    m = integrand.m
    moving = tuple(j for j, (p, d) in enumerate(zip(params, dparams)) if d is not None and _is_float(p))
    result = B.full((m,), 0.0, np.float64)
    if moving:
        tangent = quad_p(a, b, *params, *[dparams[j] for j in moving], integrand=integrand.tangent(moving))
        result = B.flat_range(tangent, 0, m)
    if db is not None:
        result = B.add(result, B.multiply(integrand.value(b, params), db))
    if da is not None:
        result = B.subtract(result, B.multiply(integrand.value(a, params), da))
    return B.concatenate([result, B.full((1,), 0.0, np.float64)])


def _by_dtype(params, indices):
    """`indices` grouped by their params' dtypes, each group in order: the adjoint of float32 params has
    float32's precision only, and must not set the tolerance of float64 params' (Integrand.adjoint)."""
    groups = {}
    for j in indices:
        groups.setdefault(_dtype(params[j]), []).append(j)
    return [tuple(group) for group in groups.values()]


def _quad_vjp(g, out, a, b, *params, integrand, wanted=None):
    m = integrand.m
    wanted = wanted or (True,) * (2 + len(params))
    g = B.flat_range(g, 0, m)  # the error estimate's cotangent reaches nothing
    floats = tuple(j for j, p in enumerate(params) if _is_float(p) and wanted[2 + j])
    cts = [None] * len(params)
    for group in _by_dtype(params, floats):  # one quadrature per precision (Integrand.adjoint's tolerance)
        pbar = quad_p(a, b, *params, g, integrand=integrand.adjoint(group))
        offset = 0
        for j in group:
            shape = B.shape_of(params[j])
            size = int(np.prod(shape, dtype=np.int64))
            cts[j] = B.astype(B.reshape(B.flat_range(pbar, offset, size), shape), _dtype(params[j]))
            offset += size

    def limit(x, sign):
        return B.multiply(sign, B.sum(B.multiply(g, integrand.value(x, params)), (0,)))
    return (limit(a, -1.0) if wanted[0] else None, limit(b, 1.0) if wanted[1] else None, *cts)


_quad_vjp.takes_wanted = True  # the AD transform passes wanted= (see jitad.transforms.ad.vjp_values)

quad_p = Primitive(
    "quad", impl=lambda a, b, *params, integrand: integrand.integrate(a, b, params),
    shape_rule=_quad_shape, jvp=_quad_jvp, vjp=_quad_vjp, kind="callback")

__all__ = ["ode_solve_p", "quad_p"]
