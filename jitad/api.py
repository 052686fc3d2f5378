"""The user-facing transforms: grad, value_and_grad, vjp, jvp, and their call machinery.

A transform call flattens its arguments (optree), looks up a compiled entry by input
signature, and runs it. On a miss it traces the user's function into a Graph, applies
the AD transform (itself a trace), runs the passes and compiles the result. Called on
traced values (inside another transform) it inlines the transformed graph instead,
which is how transforms compose.
"""
import _thread
import functools
import queue
import threading
import types
import warnings

import numpy as np
import optree

from jitad import backend, ir
from jitad.transforms import ad
from jitad.frontend import linalg_ops
from jitad.frontend import rng
from jitad.errors import InputDtypeError, LeafTypeError, NonScalarOutputError, ShapeError
from jitad.backend.cache import STATS
from jitad.interpreter import replay
from jitad.passes import optimize
from jitad.profiling import phase
from jitad.frontend.tracer import Tracer, trace
from jitad.pytrees import tree_flatten

_FLOAT_TYPES = (float, np.floating)


def _normalize_argnums(argnums, nargs):
    single = isinstance(argnums, (int, np.integer))
    nums = (int(argnums),) if single else tuple(int(a) for a in argnums)
    for a in nums:
        if not -nargs <= a < nargs:
            raise TypeError(f"argnums={argnums} but the function was called with {nargs} positional arguments")
    return tuple(a % nargs for a in nums), single


def _classify(leaf, position, differentiated):
    """('traced', shape, dtype) for values jitad traces, or ('static', value)."""
    if isinstance(leaf, Tracer):
        kind = ("traced", leaf.shape, leaf.dtype)
    elif isinstance(leaf, np.ndarray):
        if leaf.dtype.kind not in "fiub":
            if differentiated:
                raise InputDtypeError(position, leaf.dtype)
            raise LeafTypeError(position, leaf)
        kind = ("traced", leaf.shape, leaf.dtype)
    elif isinstance(leaf, _FLOAT_TYPES):
        kind = ("traced", (), np.dtype(type(leaf)) if isinstance(leaf, np.floating) else np.dtype(np.float64))
    elif isinstance(leaf, (bool, int, np.integer, np.bool_)):
        if differentiated:
            raise InputDtypeError(position, np.asarray(leaf).dtype)
        kind = ("static", leaf)
    elif isinstance(leaf, complex):
        raise InputDtypeError(position, np.dtype(complex))
    else:
        if differentiated:
            raise LeafTypeError(position, leaf)
        kind = ("static", leaf)
    if differentiated and kind[0] == "traced" and kind[2].kind != "f":
        raise InputDtypeError(position, kind[2])
    return kind


class _Signature:
    """The flattened arguments of one call, split into traced and static leaves."""

    def __init__(self, args, diff_argnums):
        self.trees, self.leaves, self.kinds, self.owner = [], [], [], []
        for position, arg in enumerate(args):
            leaves, tree = tree_flatten(arg)
            self.trees.append(tree)
            for leaf in leaves:
                self.kinds.append(_classify(leaf, position, position in diff_argnums))
                self.leaves.append(leaf)
                self.owner.append(position)
        self.traced = [i for i, k in enumerate(self.kinds) if k[0] == "traced"]

    def key(self):
        parts = []
        for kind in self.kinds:
            if kind[0] == "traced":
                parts.append((kind[1], kind[2].str))
            else:
                value = kind[1]
                if isinstance(value, rng.GENERATOR_TYPES):  # drawn from at call time: any generator of its type
                    parts.append(("generator", type(value)))
                    continue
                try:
                    hash(value)
                except TypeError:
                    value = ("id", id(value))
                parts.append(("static", type(value), value))
        return tuple(self.trees), tuple(parts)

    def avals(self):
        return [(self.kinds[i][1], self.kinds[i][2]) for i in self.traced]

    def rebuild(self, traced_values):
        """The user's positional arguments with traced leaves replaced by `traced_values`."""
        leaves = list(self.leaves)
        for i, v in zip(self.traced, traced_values):
            leaves[i] = v
        args, start = [], 0
        for tree in self.trees:
            n = tree.num_leaves
            args.append(optree.tree_unflatten(tree, leaves[start:start + n]))
            start += n
        return args

    def traced_positions_of(self, argnums):
        """Indices into the traced-leaf list of the leaves that belong to `argnums`."""
        return [k for k, i in enumerate(self.traced) if self.owner[i] in argnums]


def trace_user(fun, sig, kwargs, draws=None):
    """Trace the user's function; returns (graph, captured, out_tree).

    Its random draws become graph inputs after the traced arguments' (`graph.draws` describes
    them; `rng.perform` makes them at call time). `draws`: those of an earlier run to reuse."""
    box = {}

    def flat(*traced):
        with rng.recording(fun, sig, kwargs) as rec, linalg_ops.bound_names(fun):
            out = fun(*rec.arguments(sig.rebuild(traced)), **rec.keywords(kwargs))
        box["draws"] = rec.draws
        leaves, box["tree"] = tree_flatten(out)
        for leaf in leaves:
            if not isinstance(leaf, (Tracer, np.ndarray, float, int, np.number, bool, np.bool_)):
                raise LeafTypeError("(output)", leaf)
        return leaves

    def traced_graph():
        graph, captured = trace(flat, sig.avals())
        graph.draws = box["draws"]
        return graph, captured

    graph, captured = rng.traced(fun, None if kwargs else sig.key(), traced_graph, draws)
    return graph, captured, box["tree"]


def _to_python(value):
    """0-d arrays come out as NumPy scalars (a float64 is a Python float)."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


class Staged:
    """A transform of a user function, compiled and cached per input signature.

    `build(graph, sig, out_tree) -> (body, extra_avals, meta)`: `body` takes the traced
    graph's inputs followed by extra inputs (e.g. output cotangents) of the given
    (shape, dtype); its trace is the transformed graph. `meta` helps unpack outputs.
    """

    def __init__(self, fun, build, diff_argnums=()):
        self.fun = fun
        self.build = build
        self.diff_argnums = diff_argnums
        self.entries = {}
        self.last = None  # the compiled kernel that served the latest call, if any (for fast paths)
        self.last_draws = ()  # the random draws of the latest call (rng.perform), to pass back as `draws`

    def run(self, args, kwargs, extra=(), draws=None):
        """Returns (flat outputs, meta, signature). `draws`: the `last_draws` of an earlier run whose
        random numbers this run uses again (the sweeps of one Jacobian, both halves of a vjp)."""
        sig = _Signature(args, self.diff_argnums)
        nested = bool(ir.builders()) or any(isinstance(v, Tracer) for v in extra) or \
            any(isinstance(sig.leaves[i], Tracer) for i in sig.traced)
        key = None
        if not nested and not kwargs:
            key = (sig.key(), tuple((np.shape(e), np.asarray(e).dtype.str) for e in extra))
            entry = self.entries.get(key)
            if entry is not None:
                compiled, meta = entry
                flat = [sig.leaves[i] for i in sig.traced] + list(extra)
                # a function that draws random numbers draws them first (rng.Drawing)
                outs = compiled(flat, sig, draws, self) if type(compiled) is rng.Drawing else compiled(flat)
                # a kernel compiled in the background serves from some later call on: fast paths then
                self.last = None if extra else compiled.serving
                return outs, meta, sig
        STATS["traces"] += 1
        with phase("trace", self):
            graph, captured, out_tree = trace_user(self.fun, sig, kwargs, draws)
        body, extra_avals, meta = self.build(graph, sig, out_tree)
        for e, (shape, _) in zip(extra, extra_avals):
            if np.shape(e) != tuple(shape):
                raise ShapeError(f"expected an array of shape {tuple(shape)}, got shape {np.shape(e)}")
        inputs = [(n.shape, n.dtype) for n in graph.inputs] + list(extra_avals)
        if key is not None and not captured and not isinstance(graph.draws, rng.Retraced) and \
                backend.config.backend == "numba" and backend.config.compile in ("background", "off"):
            # first answer without waiting: the transform runs on the arrays at once (the NumPy
            # tier); its graph is built, optimised and compiled in the background
            drawn, self.last_draws = rng.perform(graph.draws, sig, draws)
            values = [sig.leaves[i] for i in sig.traced] + drawn + list(extra)
            background = backend.config.compile == "background"
            pending = Pending(body, counted=background)
            outs = pending(values)
            if background:  # after the first result: the thread would slow it
                pending.build(inputs, first_args=values)
            self.entries[key] = (rng.Drawing(pending, graph.draws, len(sig.traced)) if graph.draws else pending, meta)
            self.last = None
            return outs, meta, sig
        with phase("transform"):
            transformed, _ = trace(body, inputs)
        drawn, self.last_draws = rng.perform(graph.draws, sig, draws)
        values = [sig.leaves[i] for i in sig.traced] + drawn + list(captured) + list(extra)
        if nested or captured or isinstance(graph.draws, rng.Retraced):  # Retraced: traced again every call
            env = replay(transformed, values)
            self.last = None
            return [env[o.id] for o in transformed.outputs], meta, sig
        with phase("passes"):
            optimized = optimize(transformed)
        compiled = backend.compile(optimized)
        if key is not None:
            served = rng.Drawing(compiled, graph.draws, len(sig.traced)) if graph.draws else compiled
            self.entries[key] = (served, meta)
        with phase("first call"):
            outs = compiled(values)
        # callers install fast paths on `last` only when the compiled kernel serves (not on the NumPy tier)
        self.last = compiled.serving if key is not None and not extra and not graph.draws else None
        return outs, meta, sig


def run_eagerly(body, args):
    """A transform's body run on concrete arrays: each primitive's NumPy implementation, op by
    op (no graph), as autograd would. Outputs that are inputs are copies (callers own them)."""
    with np.errstate(all="ignore"):
        outs = body(*args)
    ids = {id(a) for a in args}
    return [np.array(o) if id(o) in ids else o for o in outs]


class Pending:
    """A transform whose graph is being built: calls run its body eagerly (`run_eagerly`, the
    NumPy tier) while a background thread traces the transformed graph, optimises it and hands
    it to the backend (which compiles it in the worker process, `cache.TieredGraph`); then the
    backend's executor takes over. Without `build` (compile="off") the body always runs eagerly.

    The thread only traces jitad's own rules (never user code) into a builder of its own
    (builders are per thread); a failure leaves the function on the NumPy tier with a warning.
    """

    def __init__(self, body, counted=True):
        self.body = body
        self.counted = counted  # NumPy-tier calls are counted while a compiled form is on its way
        self.executor = None
        self.thread = None

    def build(self, avals, first_args=None):
        """Build the compiled form in the background thread (for the types of `first_args`)."""
        self.thread = _builder()
        self.done = threading.Event()
        _build_jobs.put((self, avals, first_args))

    def _run(self, avals, first_args):
        try:
            self._build(avals, first_args)
        finally:
            self.done.set()

    def _build(self, avals, first_args):
        try:
            with phase("transform"):
                transformed, _ = trace(self.body, avals)
            with phase("passes"):
                optimized = optimize(transformed)
            executor = backend.compile(optimized)
            if first_args is not None and hasattr(executor, "start"):
                executor.start(first_args)  # the worker starts on the kernel for the first call's types
            self.executor = executor
        except Exception as exc:  # noqa: BLE001 -- the NumPy tier keeps answering; say why once
            warnings.warn(f"jitad: building the compiled form failed ({type(exc).__name__}: {exc}); "
                          "this function keeps running on the NumPy executor", RuntimeWarning, stacklevel=1)

    @property
    def serving(self):
        executor = self.executor
        return None if executor is None else getattr(executor, "serving", None)

    def wait(self):
        """Block until the graph is built (tests, benchmarks); returns the executor or None."""
        if self.thread is not None:
            self.done.wait()
        return self.executor

    def __call__(self, args):
        executor = self.executor
        if executor is not None:
            return executor(args)
        if self.counted:
            STATS["numpy_tier_calls"] += 1
        return run_eagerly(self.body, args)


_build_jobs = queue.Queue()
_build_thread = None
_build_lock = threading.Lock()


def _builder():
    """The one background thread that builds transforms' compiled forms, in order. Started
    once, with the low-level `_thread` API: `Thread.start` would wait until the new thread
    runs, which on a busy machine costs the caller a scheduling quantum. Like a daemon
    thread, it does not keep the interpreter alive."""
    global _build_thread
    with _build_lock:
        if _build_thread is None:
            _build_thread = _thread.start_new_thread(_build_forever, ())
        return _build_thread


def _build_forever():
    while True:
        pending, avals, first_args = _build_jobs.get()
        try:
            pending._run(avals, first_args)
        except BaseException:  # noqa: BLE001 -- _run warns; the thread serves the next job
            pass


def _unflatten_grads(sig, argnums, single, grads):
    """Split flat gradients (in leaf order) into one pytree per differentiated argument, in argnums order."""
    leaves_of, it = {a: [] for a in argnums}, iter(grads)
    for i, owner in enumerate(sig.owner):
        if owner in leaves_of:
            leaf = next(it)
            if isinstance(sig.leaves[i], _FLOAT_TYPES):  # a scalar in gives a scalar of its type out
                leaf = _to_python(leaf)
            leaves_of[owner].append(leaf)
    per_arg = [optree.tree_unflatten(sig.trees[a], leaves_of[a]) for a in argnums]
    return per_arg[0] if single else tuple(per_arg)


def _scalar_output(graph, out_tree, has_aux):
    if has_aux:
        if out_tree.num_children != 2 or out_tree.kind not in (optree.PyTreeKind.TUPLE, optree.PyTreeKind.LIST):
            raise TypeError("has_aux=True requires the function to return a pair (value, aux)")
        value_tree = out_tree.children()[0]
        if value_tree.num_leaves != 1:
            raise NonScalarOutputError(("pytree",))
    elif out_tree.num_leaves != 1:
        raise NonScalarOutputError(("pytree with %d leaves" % out_tree.num_leaves,))
    out = graph.outputs[0]
    if out.shape != ():
        raise NonScalarOutputError(out.shape)
    if out.dtype.kind != "f":
        raise InputDtypeError("(output)", out.dtype)
    return out


def value_and_grad(fun, argnums=0, has_aux=False):
    """Return a function computing `(fun(*args), gradient)`.

    >>> import numpy as np, jitad
    >>> v, g = jitad.value_and_grad(lambda x: np.sum(x ** 2))(np.array([1.0, 2.0]))
    >>> float(v), g.tolist()
    (5.0, [2.0, 4.0])
    """
    fast = {}  # fast path: plain float / array arguments -> one compiled call

    @functools.wraps(fun)
    def value_and_grad_fun(*args, **kwargs):
        if not kwargs and not ir.builders():
            hit = fast.get(_fast_key(args))
            if hit is not None:
                return hit(args)
        nums, single = _normalize_argnums(argnums, len(args))
        staged = _staged_for(value_and_grad_fun, fun, nums, _build_value_and_grad(nums, has_aux))
        outs, out_tree, sig = staged.run(args, kwargs)
        grads = _unflatten_grads(sig, nums, single, outs[out_tree.num_leaves:])
        result = optree.tree_unflatten(out_tree, [_to_python(v) for v in outs[:out_tree.num_leaves]])
        key = _fast_key(args)
        if key is not None and not kwargs and not has_aux and staged.last is not None:
            fast[key] = _fast_value_and_grad(staged.last, single)
        return result, grads
    value_and_grad_fun._jitad_staged = {}
    value_and_grad_fun._jitad_fast = fast
    return value_and_grad_fun


def _fast_key(args):
    """A cheap signature for calls whose every argument is a Python float or a float array."""
    key = []
    for a in args:
        kind = type(a)
        if kind is float:
            key.append(kind)
        elif kind is np.ndarray and a.ndim and a.dtype.kind == "f":
            key.append((a.shape, a.dtype.char))
        else:
            return None
    return tuple(key)


def _fast_value_and_grad(compiled, single):
    if single and not compiled.casts:
        kernel, extra = compiled.dispatcher, compiled.extra  # the kernel returns (value, gradient)
        return (lambda args: kernel(*args)) if not extra else (lambda args: kernel(*args, *extra))
    call = compiled.direct
    if single:
        return lambda args: (lambda outs: (outs[0], outs[1]))(call(args))
    return lambda args: (lambda outs: (outs[0], tuple(outs[1:])))(call(args))


def _staged_for(holder, fun, nums, build):
    staged = holder._jitad_staged.get(nums)
    if staged is None:
        staged = holder._jitad_staged[nums] = Staged(fun, build, nums)
    return staged


def _build_value_and_grad(nums, has_aux):
    def build(graph, sig, out_tree):
        out = _scalar_output(graph, out_tree, has_aux)
        wrt = sig.traced_positions_of(nums)

        def body(*inputs):
            seeds = [np.ones((), out.dtype)] + [None] * (len(graph.outputs) - 1)
            outs, (grads,) = ad.vjp_values(graph, inputs, [seeds], wrt)
            return outs + grads
        return body, (), out_tree
    return build


def grad(fun, argnums=0, has_aux=False):
    """Return a function computing the gradient of scalar-valued `fun`.

    >>> import numpy as np, jitad
    >>> jitad.grad(lambda x1, x2: x1 * x2 + np.sin(x1), argnums=(0, 1))(2.0, 5.0)
    (4.583853163452858, 2.0)
    """
    vg = value_and_grad(fun, argnums, has_aux)
    fast = vg._jitad_fast

    @functools.wraps(fun)
    def grad_fun(*args, **kwargs):
        if not kwargs and not ir.builders():
            hit = fast.get(_fast_key(args))
            if hit is not None:
                return hit(args)[1]
        value, g = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return grad_fun


def _transform_of(fun, key, make):
    """The Staged transform `key` of `fun`, kept on `fun` so later calls share its signature cache.

    Only Python functions carry the cache; other callables (ufuncs, bound methods, objects
    jitad does not own) get a fresh Staged each call.
    """
    if not isinstance(fun, types.FunctionType):
        return make()
    table = fun.__dict__.get("_jitad_transforms")
    # functools.wraps copies __dict__, so a wrapper (grad's grad_fun) starts out holding the
    # table of the function it wraps: it gets its own, or jvp(grad(f)) would find jvp(f)
    if table is None or table["owner"] != id(fun):
        table = fun._jitad_transforms = {"owner": id(fun)}
    staged = table.get(key)
    if staged is None:
        staged = table[key] = make()
    return staged


def _build_forward(graph, sig, out_tree):
    return (lambda *inputs: ad.replay_outputs(graph, inputs)), (), out_tree


def _value_tree(out_tree, has_aux):
    if has_aux and (out_tree.num_children != 2 or
                    out_tree.kind not in (optree.PyTreeKind.TUPLE, optree.PyTreeKind.LIST)):
        raise TypeError("has_aux=True requires the function to return a pair (out, aux)")
    return out_tree.children()[0] if has_aux else out_tree


def _build_vjp_backward(nums, has_aux):
    def build(graph, sig, out_tree):
        wrt = sig.traced_positions_of(nums)
        n_value = _value_tree(out_tree, has_aux).num_leaves
        k = len(graph.inputs)

        def body(*inputs):
            cts = list(inputs[k:]) + [None] * (len(graph.outputs) - n_value)
            _, (grads,) = ad.vjp_values(graph, inputs[:k], [cts], wrt)
            return grads
        return body, [(o.shape, _cotangent_dtype(o)) for o in graph.outputs[:n_value]], None
    return build


def vjp(fun, *primals, has_aux=False):
    """Return `(fun(*primals), vjp_fn)`; `vjp_fn(cotangent)` is a tuple, one entry per primal.

    With has_aux=True, `fun` returns (out, aux) and vjp returns (out, vjp_fn, aux).

    >>> import numpy as np, jitad
    >>> out, vjp_fn = jitad.vjp(lambda x: x * x, np.array([1.0, 2.0]))
    >>> vjp_fn(np.ones(2))[0].tolist()
    [2.0, 4.0]
    """
    nums = tuple(range(len(primals)))
    forward = _transform_of(fun, ("vjp_forward", nums), lambda: Staged(fun, _build_forward, nums))
    outs, out_tree, sig = forward.run(primals, {})
    drawn = forward.last_draws  # the backward pass uses the forward pass's random numbers
    out = optree.tree_unflatten(out_tree, [_to_python(v) for v in outs])
    value_tree = _value_tree(out_tree, has_aux)
    value_dtypes = [_float_dtype(np.dtype(getattr(v, "dtype", None) or np.result_type(v)))
                    for v in outs[:value_tree.num_leaves]]
    backward = _transform_of(fun, ("vjp_backward", nums, has_aux),
                             lambda: Staged(fun, _build_vjp_backward(nums, has_aux), nums))

    def vjp_fn(cotangent):
        ct_leaves, ct_tree = tree_flatten(cotangent)
        if ct_tree != value_tree:
            raise TypeError(f"the cotangent's structure {ct_tree} does not match the output's {value_tree}")
        # a cotangent has its output's (float) dtype, whatever the caller passed
        ct_leaves = [c if isinstance(c, Tracer) else np.asarray(c, d)
                     for c, d in zip(ct_leaves, value_dtypes)]
        grads, _, _ = backward.run(primals, {}, extra=ct_leaves, draws=drawn)
        return _unflatten_grads(sig, nums, False, grads)

    if has_aux:
        return out[0], vjp_fn, out[1]
    return out, vjp_fn


def _float_dtype(dtype):
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _cotangent_dtype(node):
    return _float_dtype(node.dtype)


def jvp(fun, primals, tangents, has_aux=False):
    """Forward mode: `(fun(*primals), directional derivative along tangents)`.

    >>> import numpy as np, jitad
    >>> jitad.jvp(np.sin, (0.0,), (2.0,))
    (0.0, 2.0)
    """
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise TypeError("jvp: primals and tangents must have the same number of entries")
    nums = tuple(range(len(primals)))
    tangent_leaves = []
    for p, t in zip(primals, tangents):
        p_leaves, p_tree = tree_flatten(p)
        t_leaves, t_tree = tree_flatten(t)
        if p_tree != t_tree:
            raise TypeError(f"jvp: tangent structure {t_tree} does not match primal structure {p_tree}")
        for pl, tl in zip(p_leaves, t_leaves):
            if np.shape(pl) != np.shape(tl):
                raise ShapeError(f"jvp: tangent shape {np.shape(tl)} does not match primal shape {np.shape(pl)}")
        tangent_leaves.extend(tl if isinstance(tl, Tracer) else np.asarray(tl, dtype=_leaf_dtype(pl))
                              for pl, tl in zip(p_leaves, t_leaves))

    staged = _transform_of(fun, ("jvp", nums), lambda: Staged(fun, _build_jvp(nums), nums))
    outs, out_tree, sig = staged.run(primals, {}, extra=tangent_leaves)
    n = out_tree.num_leaves
    out = optree.tree_unflatten(out_tree, [_to_python(v) for v in outs[:n]])
    tout = optree.tree_unflatten(out_tree, [_to_python(v) for v in outs[n:]])
    if has_aux:
        return out[0], tout[0], out[1]
    return out, tout


def _build_jvp(nums):
    def build(graph, sig, out_tree):
        wrt = sig.traced_positions_of(nums)
        k = len(graph.inputs)

        def body(*inputs):
            outs, (touts,) = ad.jvp_values(graph, inputs[:k], [list(inputs[k:])], wrt)
            return outs + touts
        return body, [(graph.inputs[i].shape, graph.inputs[i].dtype) for i in wrt], out_tree
    return build


def _leaf_dtype(leaf):
    dtype = getattr(leaf, "dtype", None)
    return dtype if dtype is not None and np.dtype(dtype).kind == "f" else np.float64


def jit(fun):
    """Compile the forward function alone through the same trace -> fuse -> Numba path.

    >>> import numpy as np, jitad
    >>> f = jitad.jit(lambda x: np.sum(np.sin(x) ** 2))
    >>> round(float(f(np.zeros(3))), 6)
    0.0
    """
    staged = Staged(fun, _build_forward)

    @functools.wraps(fun)
    def jitted(*args, **kwargs):
        outs, out_tree, _ = staged.run(args, kwargs)
        return optree.tree_unflatten(out_tree, [_to_python(v) for v in outs])
    jitted._jitad_staged = staged
    return jitted
