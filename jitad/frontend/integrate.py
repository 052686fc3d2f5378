"""scipy.integrate.odeint and solve_ivp of a right-hand side that uses traced values.

While jitad traces, `scipy.integrate.odeint` and `scipy.integrate.solve_ivp` are swapped for the
builders here (through `linalg_ops.SCIPY_FUNCTIONS`; a name bound before tracing, as in
`from scipy.integrate import odeint`, is swapped in the traced function's module and closure).
They dispatch every call made while the thread traces, because the traced values usually
reach the solver only through the right-hand side's closure (`lambda y, t: -theta[0] * y`).

The right-hand side is traced once into its own graph with inputs (y, t, *captured): the
traced values it closes over (and traced `args=`) become explicit inputs. The solve is one
`ode_solve` node (jitad.primitives.ode) whose value comes from SciPy's own integrator with
the user's method, tolerances and options, the right-hand side evaluated by the reference
executor. Its derivative rules are ODE solves of augmented systems that an `OdeSystem` derives
from jitad's own jvp and vjp of the right-hand side's graph: the sensitivity equations (forward
mode) and the adjoint ODE solved backwards (reverse mode), with the integrator and tolerances the
user chose; derivatives of derivatives are the same rules again. A call that involves no traced
value at all is SciPy's own call.

Cost: SciPy's integrator calls the right-hand side (and the augmented systems' jvp/vjp graphs)
from Python at every step. Those graphs run on the executor `RHS_EXECUTOR` makes: jitad.backend
compiles each like any graph (a Numba kernel per graph, in the disk cache; the NumPy executor
serves while a background compile runs), else the reference executor runs them node by node. The
graph that holds the solve runs on the NumPy executor around it (the solve is a call into Python).
"""
import inspect
import threading

import numpy as np

from jitad.frontend import linalg_ops
from jitad.frontend import numpy_ops
from jitad.frontend import scipy_code
from jitad.frontend.tracer import trace, tracing_here
from jitad import primitives as P
from jitad.errors import JitadError, ShapeError, UnsupportedOperationError
from jitad.interpreter import evaluate, replay
from jitad.ir import is_tracer
from jitad.transforms import ad  # a module: ad may still be importing the frontend

_F64 = np.dtype(np.float64)
# options that still mean the same for the augmented (tangent, adjoint) systems
_ODEINT_AUGMENTED = ("rtol", "atol", "hmax", "hmin", "mxstep", "mxordn", "mxords")
_IVP_AUGMENTED = ("rtol", "atol", "max_step", "min_step")


# graph -> executor(list of arrays) -> list of arrays, or None: how the right-hand side (and the
# augmented systems' and Jacobians' graphs) run at every step of SciPy's integrator. jitad.backend
# sets it to compile them like any graph (jitad.config.compile: background, eager or off); unset,
# or None for a graph, the reference executor runs them node by node.
RHS_EXECUTOR = [None]


class OdeSolveError(JitadError):
    """SciPy's integrator failed on the values of this call."""


def _scipy(name):
    """SciPy's own function (not the dispatcher that stands in its place while jitad traces)."""
    if name == "odeint":
        from scipy.integrate._odepack_py import odeint
        return scipy_code.unswapped(odeint)
    if name == "quad":
        from scipy.integrate._quadpack_py import quad
        return scipy_code.unswapped(quad)
    if name == "quad_vec":
        from scipy.integrate._quad_vec import quad_vec
        return scipy_code.unswapped(quad_vec)
    from scipy.integrate._ivp.ivp import solve_ivp
    return scipy_code.unswapped(solve_ivp)


class _Derived:
    """What an ODE system and an integrand share: graphs derived once (thread-safe), and the
    executor that runs a graph at every step of SciPy's routine."""

    def _made(self, key, make):
        with self._lock:
            if key not in self._derived:
                self._derived[key] = make()
            return self._derived[key]

    def _executor(self, key, graph):
        """What runs `graph` at each step of the integrator: the backend's executor (compiled, as
        `RHS_EXECUTOR` makes it) or the reference executor; made once per graph. Inside a trace
        (a guard evaluating the solve) the reference executor: no compile under the trace's hooks."""
        if tracing_here():
            return lambda args: evaluate(graph, args)

        def make():
            made = RHS_EXECUTOR[0](graph) if RHS_EXECUTOR[0] is not None else None
            return made if made is not None else (lambda args: evaluate(graph, args))
        return self._made(("executor", key), make)


class OdeSystem(_Derived):
    """dy/dt = f(y, t, *params) as a traced graph, and how SciPy integrates it.

    `solver` is "odeint" or solve_ivp's `method`; `options` are the options of the forward
    solve (the user's, for the user's system). The augmented systems of the derivative rules
    (jitad.primitives.ode) are OdeSystems too, made when first needed from f's traced jvp and
    vjp; they keep the integrator and the tolerances.
    """

    def __init__(self, name, graph, solver, options, jac=False):
        self.name, self.graph, self.solver, self.options = name, graph, solver, options
        self.n = graph.inputs[0].shape[0]
        keep = _ODEINT_AUGMENTED if solver == "odeint" else _IVP_AUGMENTED
        self.augmented = {k: v for k, v in options.items() if k in keep and v is not None}
        # the user's Jacobian closes over traced values too: the forward solve gets jitad's, of the traced f
        self.jac = ("Dfun" if solver == "odeint" else "jac") if jac else None
        self._derived, self._lock = {}, threading.RLock()

    def __repr__(self):
        return f"{self.name}[rhs of {len(self.graph.nodes)} nodes]"

    # --- f on IR values, and the augmented systems of the derivative rules ----------------------
    def rhs_value(self, y, t, params):
        """f(y, t, *params) recorded into the current trace (or computed, on concrete values)."""
        env = replay(self.graph, [y, t, *params])
        return env[self.graph.outputs[0].id]

    def _floats(self):
        return [j for j, node in enumerate(self.graph.inputs[2:]) if node.dtype.kind == "f"]

    def _system(self, suffix, fun, avals):
        graph, captured = trace(lambda *xs: [numpy_ops.astype(fun(*xs), _F64)], avals)
        assert not captured, "an augmented system uses only its own inputs"
        size = graph.inputs[0].shape[0]
        # a user who gave a Jacobian (a stiff problem) gets jitad's for the augmented systems too
        return OdeSystem(f"{self.name} ({suffix})", graph, self.solver, self._tolerances(size), jac=bool(self.jac))

    def tangent_system(self, moving):
        """z = [y, s] with ds/dt = ∂f/∂y s + Σ ∂f/∂pⱼ ṗⱼ for the params j in `moving`; inputs
        (z, t, *params, *ṗ)."""
        def make():
            graph, n, k = self.graph, self.n, len(self.graph.inputs)
            avals = [(node.shape, node.dtype) for node in graph.inputs]

            def fun(z, t, *rest):
                wrt = [0] + [2 + j for j in moving]
                (f,), ((fdot,),) = ad.jvp_values(graph, [z[:n], t, *rest[:k - 2]], [[z[n:], *rest[k - 2:]]], wrt)
                return numpy_ops.concatenate([f, fdot])
            return self._system("tangent", fun, [((2 * n,), _F64)] + avals[1:] + [avals[2 + j] for j in moving])
        return self._made(("tangent", moving), make)

    def adjoint_system(self):
        """z = [y, a, p̄] with dy/dt = f, da/dt = -aᵀ ∂f/∂y, dp̄/dt = -aᵀ ∂f/∂p (float params,
        flattened); inputs (z, t, *params)."""
        def make():
            graph, n = self.graph, self.n
            floats = self._floats()
            avals = [(node.shape, node.dtype) for node in graph.inputs]
            size = 2 * n + sum(int(np.prod(avals[2 + j][0], dtype=np.int64)) for j in floats)

            def fun(z, t, *params):
                (f,), (cts,) = ad.vjp_values(graph, [z[:n], t, *params], [[z[n:2 * n]]], [0] + [2 + j for j in floats])
                return numpy_ops.concatenate([f, -cts[0], *[-numpy_ops.ravel(numpy_ops.asarray(c)) for c in cts[1:]]])
            return self._system("adjoint", fun, [((size,), _F64)] + avals[1:])
        return self._made("adjoint", make)

    def _jacobian_graph(self):
        """(y, t, *params) -> [∂f/∂y], one jvp per column."""
        def make():
            graph, n = self.graph, self.n

            def fun(*xs):
                eye = np.eye(n)
                _, columns = ad.jvp_values(graph, list(xs), [[eye[j]] for j in range(n)], [0])
                return [numpy_ops.stack([c[0] for c in columns], axis=1)]
            derived, captured = trace(fun, [(node.shape, node.dtype) for node in graph.inputs])
            assert not captured
            return derived
        return self._made("jacobian", make)

    # --- integration on real arrays ------------------------------------------------------------
    def _tolerances(self, size):
        """The tolerances for a system of `size` unknowns whose first n are this one's y."""
        options = dict(self.augmented)
        for key in ("rtol", "atol"):
            tol = options.get(key)
            if tol is not None and np.ndim(tol) > 0:
                tol = np.asarray(tol, _F64)
                options[key] = np.concatenate([tol, np.full(size - tol.size, np.min(tol))])
        return options

    def solve(self, y0, span, ts, params):
        """The value of ode_solve: SciPy's integrator, f evaluated by the executor of its graph."""
        params = [np.asarray(p) for p in params]
        y0, span, ts = np.asarray(y0, _F64), np.asarray(span, _F64), np.asarray(ts, _F64)
        options = dict(self.options)
        if self.jac:
            jacobian = self._executor("jacobian", self._jacobian_graph())
            options[self.jac] = lambda t, y: jacobian([y, np.float64(t), *params])[0]
        rhs = self._executor("rhs", self.graph)

        def fun(t, y):
            return rhs([y, np.float64(t), *params])[0]
        if np.all(ts == span[0]):  # nothing to integrate (odeint's first time is its initial time: the
            # adjoint's last step, from it to itself)
            return np.tile(y0, (len(ts), 1))
        if self.solver == "odeint":
            prepend = ts[0] != span[0]
            times = np.concatenate([span[:1], ts]) if prepend else ts
            ys = _scipy("odeint")(fun, y0, times, tfirst=True, **options)
            return np.asarray(ys[1:] if prepend else ys, _F64)
        result = _scipy("solve_ivp")(fun, (span[0], span[1]), y0, method=self.solver, t_eval=ts, **options)
        if not result.success:
            raise OdeSolveError(f"{self.name} failed on this call's values: {result.message} (status "
                                f"{result.status}). Try another method or other tolerances")
        return np.asarray(result.y.T, _F64)


# --- the builders ---------------------------------------------------------------------------
def _float_vector(x, what, name, scalar_ok):
    x = numpy_ops.asarray(x)
    if x.dtype.kind not in "fiub":
        raise UnsupportedOperationError(f"{name} with a {x.dtype.name} {what}", "jitad integrates real "
                                        "(float) systems only. ")
    ndim = len(numpy_ops.shape_of(x))
    if ndim > 1 or (ndim == 0 and not scalar_ok):
        raise ShapeError(f"{name}: the {what} must be one-dimensional, got shape {numpy_ops.shape_of(x)}")
    if ndim == 0:
        x = numpy_ops.reshape(x, (1,)) if is_tracer(x) else np.reshape(x, (1,))
    if is_tracer(x):
        return numpy_ops.astype(x, _F64) if x.dtype != _F64 else x
    return np.asarray(x, _F64)


def _trace_rhs(call, n, name):
    """Trace call(y, t) -> dy/dt; returns (graph with inputs (y, t, *captured), captured tracers)."""
    def fun(y, t):
        out = numpy_ops.asarray(call(y, t))
        if numpy_ops.shape_of(out) != (n,):
            if int(np.prod(numpy_ops.shape_of(out))) != n:
                raise ShapeError(f"{name}: the right-hand side returned shape {numpy_ops.shape_of(out)} for a "
                                 f"state of {n} values; it must return one derivative per state value")
            out = numpy_ops.reshape(out, (n,)) if is_tracer(out) else np.reshape(out, (n,))
        if not is_tracer(out):
            return [np.asarray(out, _F64)]
        return [numpy_ops.astype(out, _F64) if out.dtype != _F64 else out]
    return trace(fun, [((n,), _F64), ((), _F64)])


def _arguments(name, args, kwargs):
    bound = inspect.signature(_scipy(name)).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def odeint(*call_args, **call_kwargs):
    """scipy.integrate.odeint(func, y0, t, ...) on traced values (in func's closure, `args`, y0 or t).

    Returns the (len(t), len(y0)) solution like SciPy. Differentiable in y0, t and every float
    value func uses, to any order; `full_output=1` is not supported. A `Dfun` is replaced by
    jitad's exact Jacobian of the traced func (the user's Dfun closes over traced values too).

    >>> import numpy as np, scipy.integrate, jitad
    >>> def final(k):  # y' = -k y from y(0) = 1, so y(1) = exp(-k)
    ...     return scipy.integrate.odeint(lambda y, t: -k * y, 1.0, [0.0, 1.0], rtol=1e-10, atol=1e-10)[-1, 0]
    >>> round(float(jitad.grad(final)(0.5)), 6)  # -exp(-0.5)
    -0.606531
    """
    name = "scipy.integrate.odeint"
    a = _arguments("odeint", call_args, call_kwargs)
    if a["full_output"]:
        raise UnsupportedOperationError(f"{name}(full_output=1)", "The solver's diagnostics are not known "
                                        "while jitad traces; call it without full_output. ")
    if a["Dfun"] is not None and (a["ml"] is not None or a["mu"] is not None):
        raise UnsupportedOperationError(f"{name}(Dfun=..., ml=..., mu=...)", "A banded Dfun cannot be "
                                        "replaced by jitad's Jacobian; leave out Dfun. ")
    func, extra, tfirst = a["func"], a["args"], a["tfirst"]
    extra = extra if isinstance(extra, tuple) else (extra,)
    y0 = _float_vector(a["y0"], "initial condition y0", name, scalar_ok=True)
    t = _float_vector(a["t"], "time points t", name, scalar_ok=False)
    call = (lambda y, s: func(s, y, *extra)) if tfirst else (lambda y, s: func(y, s, *extra))
    graph, captured = _trace_rhs(call, numpy_ops.shape_of(y0)[0], name)
    if not captured and not is_tracer(y0) and not is_tracer(t):
        return _scipy("odeint")(*call_args, **call_kwargs)
    options = {k: a[k] for k in ("ml", "mu", "rtol", "atol", "tcrit", "h0", "hmax", "hmin", "ixpr", "mxstep",
                                 "mxhnil", "mxordn", "mxords", "printmessg")}
    system = OdeSystem(name, graph, "odeint", options, jac=a["Dfun"] is not None)
    span = numpy_ops.stack([t[0], t[-1]]) if is_tracer(t) else t[[0, -1]]
    return P.ode_solve_p(y0, span, t, *captured, system=system)


_IVP_UNSUPPORTED = {"dense_output": "a dense solution object", "events": "event functions",
                    "vectorized": "a vectorized right-hand side"}


class TracedOdeResult(dict):
    """What solve_ivp returns while jitad traces: `t` and `y` (traced), and success flags that
    hold if the solve runs (a failed solve raises OdeSolveError when the function runs)."""

    def __getattr__(self, key):
        if key in self:
            return self[key]
        if key in ("nfev", "njev", "nlu"):
            raise UnsupportedOperationError(f"scipy.integrate.solve_ivp(...).{key}", "The solver's statistics "
                                            "are not known while jitad traces. ")
        raise AttributeError(key)


def solve_ivp(*call_args, **call_kwargs):
    """scipy.integrate.solve_ivp(fun, t_span, y0, t_eval=..., ...) on traced values.

    `t_eval` is required (the output times must be known when jitad traces); dense_output,
    events and vectorized are not supported. Returns a result whose `.y` is (len(y0),
    len(t_eval)) and `.t` is t_eval, differentiable (to any order) in y0, t_span[0], t_eval and
    every float value `fun` uses. A callable `jac` is replaced by jitad's exact Jacobian of the
    traced fun.

    >>> import numpy as np, scipy.integrate, jitad
    >>> def final(k):
    ...     sol = scipy.integrate.solve_ivp(lambda t, y: -k * y, (0.0, 1.0), [1.0], t_eval=[1.0],
    ...                                     rtol=1e-10, atol=1e-12)
    ...     return sol.y[0, -1]
    >>> round(float(jitad.grad(final)(0.5)), 6)
    -0.606531
    """
    name = "scipy.integrate.solve_ivp"
    a = _arguments("solve_ivp", call_args, call_kwargs)
    for key, what in _IVP_UNSUPPORTED.items():
        if a[key] not in (None, False):
            raise UnsupportedOperationError(f"{name}({key}=...)", f"jitad does not trace {what}. ")
    if a["t_eval"] is None:
        raise UnsupportedOperationError(f"{name} without t_eval", "The number of output times would depend on "
                                        "the values; pass the times you need as t_eval=... ")
    options = dict(a["options"])
    fun, extra = a["fun"], a["args"]
    extra = () if extra is None else (extra if isinstance(extra, tuple) else (extra,))
    y0 = _float_vector(a["y0"], "initial state y0", name, scalar_ok=False)
    ts = _float_vector(a["t_eval"], "t_eval", name, scalar_ok=False)
    t_span = a["t_span"]
    if len(t_span) != 2:
        raise ValueError("t_span must have 2 elements")
    span = numpy_ops.astype(numpy_ops.asarray(list(t_span)), _F64) if numpy_ops._contains_tracer(list(t_span)) \
        else np.asarray(t_span, _F64)
    graph, captured = _trace_rhs(lambda y, s: fun(s, y, *extra), numpy_ops.shape_of(y0)[0], name)
    if not captured and not any(is_tracer(x) for x in (y0, ts, span)):
        return _scipy("solve_ivp")(*call_args, **call_kwargs)
    jac = callable(options.get("jac"))
    if jac:
        del options["jac"]
    system = OdeSystem(name, graph, a["method"], options, jac=jac)
    ys = P.ode_solve_p(y0, span, ts, *captured, system=system)
    return TracedOdeResult(t=ts, y=numpy_ops.transpose(ys), sol=None, t_events=None, y_events=None,
                           status=0, message="traced by jitad: the solve runs when the function runs",
                           success=True)


# --- quadrature ------------------------------------------------------------------------------
class Integrand(_Derived):
    """g(x, *params) -> float64[m] as a traced graph with inputs (x, *params), and how SciPy
    integrates it (jitad.primitives.ode's quad): the user's own call as the user made it (quad, or
    quad_vec with every option given: `vec_options`, so the value and error are SciPy's); an
    integrand of the derivative rules with `quad` for one entry, `quad_vec` (max norm, its own
    limit) for more. Those are Integrands too, derived when first needed from g's traced jvp
    (tangent) and vjp (adjoint); they keep the tolerances and break points (`options`)."""

    def __init__(self, name, graph, options, vec_options=None):
        self.name, self.graph, self.options, self.vec_options = name, graph, options, vec_options
        self.m = graph.outputs[0].shape[0]
        self._derived, self._lock = {}, threading.RLock()

    def __repr__(self):
        return f"{self.name}[integrand of {len(self.graph.nodes)} nodes]"

    def value(self, x, params):
        """g(x, *params) recorded into the current trace (or computed, on concrete values)."""
        return replay(self.graph, [x, *params])[self.graph.outputs[0].id]

    def _integrand(self, suffix, fun, avals, options=None):
        graph, captured = trace(lambda *xs: [numpy_ops.astype(numpy_ops.ravel(fun(*xs)), _F64)], avals)
        assert not captured, "a derived integrand uses only its own inputs"
        return Integrand(f"{self.name} ({suffix})", graph, self.options if options is None else options)

    def _avals(self):
        return [(node.shape, node.dtype) for node in self.graph.inputs]

    def tangent(self, moving):
        """x, *params, *ṗ -> ∂g/∂p ṗ for the params j in `moving`."""
        def make():
            graph, k = self.graph, len(self.graph.inputs)

            def fun(x, *rest):
                _, ((tangent,),) = ad.jvp_values(graph, [x, *rest[:k - 1]], [list(rest[k - 1:])], [1 + j for j in moving])
                return tangent
            avals = self._avals()
            return self._integrand("tangent", fun, avals + [avals[1 + j] for j in moving])
        return self._made(("tangent", moving), make)

    def adjoint(self, floats):
        """x, *params, ḡ -> ḡᵀ ∂g/∂p for the params j in `floats` (of one dtype: jitad.primitives.ode
        groups them), flattened and joined. Each cotangent is rounded to its param's dtype at every x,
        so these values have that dtype's precision only: the relative tolerance is at least SciPy's
        rounding floor at that precision, 50 eps (quad_vec's own rounding test knows float64's eps only,
        and for float32 params subdivided to its limit, 10000 intervals, for no better integral)."""
        def make():
            graph = self.graph

            def fun(x, *rest):
                _, (cts,) = ad.vjp_values(graph, [x, *rest[:-1]], [[rest[-1]]], [1 + j for j in floats])
                return numpy_ops.concatenate([numpy_ops.ravel(numpy_ops.asarray(c)) for c in cts])
            avals = self._avals()
            eps = max(float(np.finfo(avals[1 + j][1]).eps) for j in floats)
            options = {**self.options, "epsrel": max(self.options.get("epsrel") or 0.0, 50 * eps)}
            return self._integrand("adjoint", fun, avals + [((self.m,), _F64)], options)
        return self._made(("adjoint", floats), make)

    def integrate(self, a, b, params):
        """The value of quad: [integral (m entries), SciPy's error estimate]."""
        params = [np.asarray(p) for p in params]
        if self.m == 0:  # an empty integrand (the adjoint of parameters with no entries): nothing to integrate
            return np.zeros(1, _F64)
        run = self._executor("integrand", self.graph)
        a, b = float(a), float(b)
        options = {k: v for k, v in self.options.items() if v is not None}
        with np.errstate(all="ignore"):
            if self.m == 1 and self.vec_options is None:
                value, error = _scipy("quad")(lambda x: float(run([np.float64(x), *params])[0][0]), a, b, **options)
                return np.array([value, error], _F64)
            if self.vec_options is None:
                options.pop("limit", None)  # quad's count of subintervals; quad_vec's default is its own
                options["norm"] = "max"
            else:
                options = {k: v for k, v in self.vec_options.items() if v is not None}
            value, error = _scipy("quad_vec")(lambda x: run([np.float64(x), *params])[0], a, b, **options)
        return np.concatenate([np.asarray(value, _F64), [error]])


def _limit(x, name, which):
    if is_tracer(x):
        if x.size != 1:
            raise ShapeError(f"{name}: the {which} limit must be a number, got shape {x.shape}")
        return numpy_ops.astype(numpy_ops.reshape(x, ()), _F64)
    return np.float64(x)


def _quadrature(name, func, lo, hi, extra, options, scalar, vec_options=None):
    """(quad node's value, the integrand's output shape) of ∫ func(x, *extra) dx from lo to hi; None
    when nothing in it is traced (then SciPy's own function is the answer). `vec_options`: those of the
    user's quad_vec call (see Integrand)."""
    shape = []

    def fun(x):
        out = numpy_ops.asarray(func(x, *extra))
        out_shape = numpy_ops.shape_of(out)
        if scalar and int(np.prod(out_shape)) != 1:
            raise ShapeError(f"{name}: the integrand returned shape {out_shape}; it must return one number")
        shape.append(() if scalar else out_shape)
        if not is_tracer(out):
            return [np.asarray(out, _F64).reshape(-1)]
        return [numpy_ops.astype(numpy_ops.reshape(out, (-1,)), _F64)]
    graph, captured = trace(fun, [((), _F64)])
    if not captured and not is_tracer(lo) and not is_tracer(hi):
        return None, (None, None)
    integrand = Integrand(name, graph, options, vec_options)
    value = P.quad_p(_limit(lo, name, "lower"), _limit(hi, name, "upper"), *captured, integrand=integrand)
    return value, (shape[0], None if scalar else _weak_x_dtype(func, extra, graph.outputs[0].dtype))


def _weak_x_dtype(func, extra, traced):
    """The float dtype of func(x, *extra) when SciPy calls it with x a Python float (a weak scalar in
    NumPy 2, as jitad's tracers treat Python scalars): func traced once more at x = 0.5. `traced`
    (the dtype with a float64 x) if that fails."""
    def fun():
        return [numpy_ops.asarray(func(0.5, *extra))]
    try:
        graph, _ = trace(fun, [])
    except Exception:  # noqa: BLE001 -- a probe only: the integrand's own trace has succeeded
        return traced
    dtype = np.dtype(graph.outputs[0].dtype)
    return dtype if dtype.kind == "f" else _F64


def quad(*call_args, **call_kwargs):
    """scipy.integrate.quad(func, a, b, ...) on traced values (in func's closure, `args`, a or b).

    Returns (integral, error estimate) as SciPy does, the integral SciPy's own (quad with the
    user's epsabs, epsrel, limit and points; func runs as a traced graph). Differentiable in a, b
    and every float value func uses, to any order: the derivative rules are quadratures of
    func's traced derivatives (with quad_vec for vectors) and Leibniz's rule at the limits. The
    error estimate is a diagnostic without a derivative. `weight`, `full_output` and
    `complex_func` are not supported; func is traced with a symbolic x, so a Python `if` on x is a
    ConcretizationError (use np.where).

    >>> import numpy as np, scipy.integrate, jitad
    >>> def area(k):  # ∫₀¹ exp(-k x) dx = (1 - exp(-k)) / k
    ...     return scipy.integrate.quad(lambda x: np.exp(-k * x), 0.0, 1.0)[0]
    >>> round(float(jitad.grad(area)(1.0)), 8)  # (2 exp(-1) - 1)
    -0.26424112
    """
    name = "scipy.integrate.quad"
    a = _arguments("quad", call_args, call_kwargs)
    for key in ("full_output", "weight", "complex_func"):
        if a[key]:
            raise UnsupportedOperationError(f"{name}({key}=...)", "jitad integrates plain real integrands with "
                                            "quad's default rule; call SciPy's quad on NumPy values for this. ")
    extra = a["args"] if isinstance(a["args"], tuple) else (a["args"],)
    options = {k: a[k] for k in ("epsabs", "epsrel", "limit", "points")}
    if options["points"] is not None:
        options["points"] = tuple(float(p) for p in np.ravel(options["points"]))
    out, _ = _quadrature(name, a["func"], a["a"], a["b"], extra, options, scalar=True)
    if out is None:
        return _scipy("quad")(*call_args, **call_kwargs)
    return out[0], out[1]


def quad_vec(*call_args, **call_kwargs):
    """scipy.integrate.quad_vec(f, a, b, ...) on traced values: as `quad`, for an integrand with an
    array value; returns (integral of f's shape, error estimate), differentiable as quad's. Both are
    SciPy's quad_vec's with the user's options (epsabs, epsrel, points, limit, norm)."""
    name = "scipy.integrate.quad_vec"
    a = _arguments("quad_vec", call_args, call_kwargs)
    if a["full_output"] or a["quadrature"] not in (None, "gk21") or a["workers"] != 1:
        raise UnsupportedOperationError(f"{name}(full_output/quadrature/workers=...)", "jitad integrates with "
                                        "quad_vec's defaults there; call SciPy's quad_vec on NumPy values for this. ")
    extra = a["args"] if isinstance(a["args"], tuple) else (a["args"],)
    options = {"epsabs": a["epsabs"], "epsrel": a["epsrel"],
               "points": None if a["points"] is None else tuple(float(p) for p in np.ravel(a["points"]))}
    vec_options = {**options, "limit": a["limit"], "norm": a["norm"]}
    out, (shape, dtype) = _quadrature(name, a["f"], a["a"], a["b"], extra, options, scalar=False,
                                      vec_options=vec_options)
    if out is None:
        return _scipy("quad_vec")(*call_args, **call_kwargs)
    value = numpy_ops.astype(numpy_ops.reshape(out[:-1], shape), dtype)  # the integrand's float dtype, as SciPy's
    return value, out[-1]


odeint.while_tracing = solve_ivp.while_tracing = True  # the dispatcher sends every call while tracing
quad.while_tracing = quad_vec.while_tracing = True
linalg_ops.SCIPY_FUNCTIONS.update({("scipy.integrate", "odeint"): odeint,
                                   ("scipy.integrate", "solve_ivp"): solve_ivp,
                                   ("scipy.integrate", "quad"): quad,
                                   ("scipy.integrate", "quad_vec"): quad_vec})

__all__ = ["odeint", "solve_ivp", "quad", "quad_vec", "Integrand", "OdeSystem", "OdeSolveError", "TracedOdeResult"]
