"""The Jacobian transforms: jacfwd, jacrev, jacobian, hessian, hvp, hutchinson_trace.

A Jacobian is built from sweeps (`jitad.sweeps`): compiled calls that each push a chunk of
k directions through a batched JVP or VJP graph. `jacobian(mode="auto")` lets the scheduler
(`jitad.schedule`) pick forward, reverse or mixed mode from the traced graph;
`J.plan(*args)` shows the choice and the estimates. Each `jacobian(f)` is a
`staging.Transform` of `f`, so its compiled sweeps are cached with `f`'s other transforms.

`hessian` is forward over reverse; `hvp` and `hutchinson_trace` never form H.
"""
import functools

import numpy as np

from jitad import backend
from jitad.api import fast_key, grad, jvp_tangents, scalar_output, tangents_fast
from jitad.errors import JitadError
from jitad.frontend.tracer import trace
from jitad.ir import is_tracer
from jitad.pytrees import tree_flatten
from jitad.schedule import ELEMENT_BUDGET, MAX_CHUNK, MODES, make_plan
from jitad.staging import Signature, Transform, argnums_alias, normalize_argnums, trace_user, transform_of
from jitad.sweeps import Layout, assemble, avals, batched_jvp, concat, sweep_body, unflatten_blocks
from jitad.transforms import ad


class _JacobianFunction:
    """`J(*args)` computes the Jacobian; `J.plan(*args)` shows how. Its compiled sweeps are a
    `staging.Transform` kept with the user's function (`cache_on`), shared by every
    jacobian of it made with the same name, mode, chunk size and argnums."""

    def __init__(self, fun, argnums, mode, chunk_size, cache_on=None, name="jacobian", describe=None,
                 target=None, made=None):
        if mode not in MODES:
            raise ValueError(f"jacobian: mode must be one of {MODES}, got {mode!r}")
        functools.update_wrapper(self, fun)
        self.target = backend.check_target(target)
        self._made = made  # (the public function that made it, the user's function, its options): for pickle
        self.fun, self.argnums, self.mode, self.chunk_size = fun, argnums, mode, chunk_size
        self.name = self.jitad_name = name  # update_wrapper copied `fun`'s if it is a transform
        self._describe = describe or _plan_mode
        spec = argnums if isinstance(argnums, (int, np.integer)) else tuple(argnums)
        self.jitad_transform = transform_of(
            fun if cache_on is None else cache_on, (name, mode, chunk_size, spec),
            lambda: Transform(fun, _build_sweeps(mode, chunk_size), spec, name, self._describe))

    def __reduce__(self):
        if self._made is None:
            raise TypeError(f"{self!r} cannot be pickled")
        return _rebuild, self._made

    def __call__(self, *args, **kwargs):
        if self.target is not None:
            with backend.using_target(self.target):
                return self._jacobian(args, kwargs)
        if not kwargs:
            key = fast_key(args)
            hit = None if key is None else self.jitad_transform.fast.get(key)
            if hit is not None and (hit[2] is None or hit[2]()):
                kernel, finish, _ = hit
                return finish(kernel(*args, _ZERO))
        return self._jacobian(args, kwargs)

    def _jacobian(self, args, kwargs):
        transform = self.jitad_transform
        if kwargs:  # bind them, so the sweeps of this call share one trace
            transform = Transform(functools.partial(self.fun, **kwargs), transform.build, transform.argnums,
                                  self.name, self._describe)
        outs, (plan, layout, out_tree), sig = transform.run(args, {}, extra=[np.int64(0)])
        served = transform.last_extra
        results, drawn = [outs], transform.last_draws  # every sweep sees the first one's random draws
        for s in range(1, plan.num_sweeps):
            results.append(transform.run(args, {}, extra=[np.int64(s * plan.chunk_size)], draws=drawn)[0])
        single = isinstance(self.argnums, (int, np.integer))
        out = unflatten_blocks(assemble(plan, layout, results), layout, sig, sig.diff_argnums, single, out_tree)
        if not kwargs and self.target is None:
            self._install(args, transform, served, plan, layout, single, out)
        return out

    def _install(self, args, transform, served, plan, layout, single, out):
        """Calls with arguments of these shapes go straight to the kernel that just served, when it
        computes the whole Jacobian in one sweep of one float array input and output: the block is
        `assemble`'s J reshaped, as `unflatten_blocks` makes it (checked against this call's)."""
        key = fast_key(args)
        if key is None or served is None or served.casts or plan.num_sweeps != 1 or not single or \
                len(layout.wrt) != 1 or len(layout.outputs.shapes) != 1 or type(out) is not np.ndarray:
            return
        shape = tuple(layout.outputs.shapes[0]) + tuple(layout.inputs.shapes[0])
        if out.shape != shape or not shape or not out.flags.c_contiguous:
            return
        dispatcher, extra = served.dispatcher, served.extra
        kernel = (lambda *a: dispatcher(*a, *extra)) if extra else dispatcher
        dtype = out.dtype

        def finish(outs):
            J = assemble(plan, layout, [outs])
            block = J.reshape(shape)
            return np.ascontiguousarray(block, dtype) if block.dtype != dtype or not block.flags.c_contiguous \
                else block
        transform.fast[key] = (kernel, finish, transform.capture_check())  # (a Jacobian's own table)

    def plan(self, *args, **kwargs):
        """The `JacobianPlan` this function uses for arguments like `args` (traces, does not run)."""
        nums, _ = normalize_argnums(self.argnums, len(args))
        sig = Signature(args, nums)
        graph, _, _ = trace_user(self.fun, sig, kwargs)
        return make_plan(graph, Layout(graph, sig, nums), self.mode, self.chunk_size, estimate=True)

    def __repr__(self):
        return f"<jitad.{self.name} of {getattr(self.fun, '__name__', self.fun)!s}, mode={self.mode!r}>"


_ZERO = np.int64(0)  # the first direction of a sweep


def _plan_mode(meta):
    """The mode a Jacobian stage's plan chose (its meta is (plan, layout, output structure))."""
    return meta[0].mode if meta else None


def _build_sweeps(mode, chunk_size):
    def build(graph, sig, out_tree):
        layout = Layout(graph, sig, sig.diff_argnums)
        plan = make_plan(graph, layout, mode, chunk_size, estimate=mode == "auto")
        body = sweep_body(graph, layout, plan.mode, plan.chunk_size, plan.cut_nodes)
        return body, [((), np.dtype(np.int64))], (plan, layout, out_tree)
    return build


def jacobian(fun, argnums=0, mode="auto", chunk_size=None, target=None, *, argnum=None):
    """Return `J(*args)`, the Jacobian of `fun`: for each output leaf and each input leaf of
    `argnums`, a block of shape `out.shape + in.shape`, nested as the output (outside) and
    the arguments (inside). `mode` is "auto" (cheapest by the scheduler's estimate),
    "forward", "reverse" or "mixed"; `J.plan(*args)` shows the choice and the estimates.
    `chunk_size` fixes the directions per compiled sweep (default: up to 256, fewer when k
    times the graph's values would not fit in ~32 MB, and up to 8 when the graph holds a
    primitive without a batching rule, which a sweep unrolls k times). `target`: where its
    kernels run (see value_and_grad).

    >>> import numpy as np, jitad
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> J = jitad.jacobian(lambda x: np.tanh(A @ x))
    >>> J(np.zeros(2)).tolist()
    [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    >>> J.plan(np.zeros(2)).mode
    'forward'
    """
    argnums = argnums_alias(argnums, argnum)  # autograd's spelling
    return _JacobianFunction(fun, argnums, mode, chunk_size, target=target, made=(
        jacobian, fun, dict(argnums=argnums, mode=mode, chunk_size=chunk_size, target=target)))


def jacfwd(fun, argnums=0, chunk_size=None, target=None, *, argnum=None):
    """The Jacobian by forward mode: ceil(n/k) compiled sweeps of k tangent directions.

    >>> import numpy as np, jitad
    >>> jitad.jacfwd(lambda x: x ** 2)(np.array([1.0, 2.0])).tolist()
    [[2.0, 0.0], [0.0, 4.0]]
    """
    argnums = argnums_alias(argnums, argnum)  # autograd's spelling
    return _JacobianFunction(fun, argnums, "forward", chunk_size, name="jacfwd", target=target, made=(
        jacfwd, fun, dict(argnums=argnums, chunk_size=chunk_size, target=target)))


def jacrev(fun, argnums=0, chunk_size=None, target=None, *, argnum=None):
    """The Jacobian by reverse mode: ceil(m/k) compiled sweeps of k output cotangents.

    >>> import numpy as np, jitad
    >>> jitad.jacrev(lambda x, y: x * y, argnums=(0, 1))(2.0, 3.0)
    (3.0, 2.0)
    """
    argnums = argnums_alias(argnums, argnum)  # autograd's spelling
    return _JacobianFunction(fun, argnums, "reverse", chunk_size, name="jacrev", target=target, made=(
        jacrev, fun, dict(argnums=argnums, chunk_size=chunk_size, target=target)))


def hessian(fun, argnums=0, target=None, *, argnum=None):
    """The Hessian of scalar `fun`, forward over reverse: shape `in.shape + in.shape`.

    >>> import numpy as np, jitad
    >>> jitad.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 2.0])).tolist()
    [[4.0, 2.0], [2.0, 0.0]]
    """
    argnums = argnums_alias(argnums, argnum)  # autograd's spelling
    return _JacobianFunction(jacrev(fun, argnums), argnums, "forward", None, cache_on=fun, name="hessian",
                             describe=_forward_over_reverse, target=target,
                             made=(hessian, fun, dict(argnums=argnums, target=target)))


def _forward_over_reverse(meta):
    return "forward over reverse"


def _rebuild(make, fun, options):
    return make(fun, **options)


def hvp(fun, primals, tangents, target=None):
    """The Hessian-vector product of scalar `fun` at `primals` along `tangents`, forward
    over reverse (a directional derivative of the gradient), never forming the Hessian.
    With one primal it returns that argument's structure, else a tuple over the arguments.
    Repeated calls with the same function and shapes reuse one compiled kernel. `target`: where
    its kernels run (see value_and_grad).

    >>> import numpy as np, jitad
    >>> jitad.hvp(lambda x: np.sum(x ** 3), (np.array([1.0, 2.0]),), (np.array([1.0, 0.0]),)).tolist()
    [6.0, 0.0]
    """
    if backend.check_target(target) is not None:
        with backend.using_target(target):
            return hvp(fun, primals, tangents)
    primals, tangents = tuple(primals), tuple(tangents)
    argnums = 0 if len(primals) == 1 else tuple(range(len(primals)))
    # the gradient function lives on `fun`, so jvp's compiled kernel (kept on it) is found again
    gradient = transform_of(fun, ("hvp_grad", argnums), lambda: grad(fun, argnums))
    fast = transform_of(gradient, ("hvp fast path",), dict)
    outs = tangents_fast(fast, primals, tangents)  # float arrays: straight to the kernel that served before
    if outs is not None:
        return outs[0] if len(primals) == 1 else tuple(outs)
    return jvp_tangents(gradient, primals, tangents, fast)  # not the gradient itself: neither computed nor allocated


# --- Hutchinson's trace estimator ----------------------------------------------------------------
def _gradient_graph(graph, sig, out_tree, wrt):
    """(primals...) -> gradient leaves of `wrt`, as a graph."""
    out = scalar_output(graph, out_tree, False)

    def gradient(*inputs):
        seeds = [np.ones((), out.dtype)] + [None] * (len(graph.outputs) - 1)
        return ad.vjp_values(graph, inputs, [seeds], wrt)[1][0]
    grad_graph, captured = trace(gradient, avals(graph.inputs))
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
    staged = transform_of(fun, ("hutchinson", k), lambda: Transform(
        fun, _build_quadratic_forms(k), (0,), "hutchinson_trace", "forward over reverse"))
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
    forms = concat(forms)[:num_samples]
    estimate = np.mean(forms)
    stderr = np.std(forms, ddof=1) / np.sqrt(num_samples) if num_samples > 1 else np.inf
    if not is_tracer(estimate):
        estimate, stderr = float(estimate), float(stderr)
    return (estimate, stderr) if return_stderr else estimate
