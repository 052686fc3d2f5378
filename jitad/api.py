"""The user-facing transforms: grad, value_and_grad, vjp, jvp and jit.

Each is a `staging.Transform` of the user's function (found again in `staging.transform_of`,
jitad's one cache of transforms) with a `build` that says what to trace over the user's
graph; a call flattens the arguments, looks up the compiled stage of their signature and
runs it (`jitad.staging`). Called on traced values (inside another transform) it inlines
the transformed graph instead, which is how transforms compose. `value_and_grad` and `grad`
keep a fast path: plain float and float-array arguments go straight to the compiled kernel.
"""
import functools

import numpy as np
import optree

from jitad import backend, ir
from jitad.errors import InputDtypeError, NonScalarOutputError, ShapeError
from jitad.frontend.tracer import Tracer
from jitad.primitives import control
from jitad.pytrees import tree_flatten, tree_unflatten
from jitad.staging import FLOAT_TYPES, Transform, argnums_alias, transform_of
from jitad.transforms import ad


class Transformed(functools.partial):
    """What grad, value_and_grad and jit return. A call goes to the transform's function (`func`,
    made by `_fast_call`) through the partial's own call, which is C: no Python frame between the
    user and that function. It pickles by reference to the user's function plus the transform's
    options (`make(fun, **options)` rebuilds it where it is unpickled, e.g. on a Dask worker, which
    then finds its kernels in the disk cache). The attributes of the wrapped function
    (`jitad_transform`, `__wrapped__`, `__name__`...) are its own."""

    keeps_transforms = True  # staging.transform_of keeps the transforms of it (jvp(grad(f))) on it

    def __new__(cls, call, make, fun, options):
        self = super().__new__(cls, call)
        self.__dict__.update(call.__dict__)
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(self, name, getattr(call, name, None))
        self._call, self._make, self._fun, self._options = call, make, fun, options
        return self

    def __reduce__(self):
        return _rebuild, (self._make, self._fun, self._options)

    def __repr__(self):
        return f"<jitad.{self.__dict__.get('jitad_name', 'transform')} of {getattr(self._fun, '__name__', self._fun)!s}>"


def _rebuild(make, fun, options):
    return make(fun, **options)


def _on_target(call, target):
    """`call`, run on `target` (a transform's `target=` keyword) unless it is None."""
    if backend.check_target(target) is None:
        return call

    @functools.wraps(call)
    def on_target(*args, **kwargs):
        with backend.using_target(target):
            return call(*args, **kwargs)
    return on_target


def _to_python(value):
    """0-d arrays come out as NumPy scalars (a float64 is a Python float)."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _argnums_key(argnums):
    """`argnums` as given, hashable (an int or a tuple of ints), to key the transform's cache."""
    return int(argnums) if isinstance(argnums, (int, np.integer)) else tuple(int(a) for a in argnums)


def _unflatten_grads(sig, argnums, single, grads):
    """Split flat gradients (in leaf order) into one pytree per differentiated argument, in argnums order."""
    leaves_of, it = {a: [] for a in argnums}, iter(grads)
    for i, owner in enumerate(sig.owner):
        if owner in leaves_of:
            leaf = next(it)
            if isinstance(sig.leaves[i], FLOAT_TYPES):  # a scalar in gives a scalar of its type out
                leaf = _to_python(leaf)
            leaves_of[owner].append(leaf)
    per_arg = [tree_unflatten(sig.trees[a], leaves_of[a]) for a in argnums]
    return per_arg[0] if single else tuple(per_arg)


def scalar_output(graph, out_tree, has_aux):
    """The output node of a function `grad` can differentiate: one float scalar (the first of a
    `(value, aux)` pair with `has_aux`); otherwise a NonScalarOutputError or InputDtypeError."""
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


def _memory_key(key, memory):
    """A transform's cache key with its memory policy ("store" keeps the key it always had)."""
    return key if memory == "store" else key + (("memory", memory),)


def _with_memory(transform, memory):
    """`transform`, marked with the memory policy its reverse passes use (`explain` shows it)."""
    transform.memory = memory
    return transform


def _per_memory(memory, make):
    """`memory` checked, and a function of the call: the transform of the policy it uses (`memory`,
    else jitad.config.memory at the call), each made once by `make(policy)`."""
    if memory is not None:
        memory = control.check_memory(memory)
    made = {}

    def transform_for():
        policy = memory or control.settings["memory"]
        found = made.get(policy)
        if found is None:
            found = made[policy] = make(policy)
        return found
    transform_for.made = made
    return transform_for


def value_and_grad(fun, argnums=0, has_aux=False, memory=None, target=None, *, argnum=None):
    """Return a function computing `(fun(*args), gradient)` (`argnum=`: autograd's name of argnums).

    `memory` ("store", "recompute" or a byte budget; default: jitad.config.memory at each call)
    is what reverse mode through loops keeps (see jitad.config). `target` ("auto", "cpu",
    "parallel", "cuda"; default: jitad.config.target at each call) is where its kernels run.

    >>> import numpy as np, jitad
    >>> v, g = jitad.value_and_grad(lambda x: np.sum(x ** 2))(np.array([1.0, 2.0]))
    >>> float(v), g.tolist()
    (5.0, [2.0, 4.0])
    """
    return _reverse(value_and_grad, fun, argnums_alias(argnums, argnum), has_aux, memory, target)


def grad(fun, argnums=0, has_aux=False, memory=None, target=None, *, argnum=None):
    """Return a function computing the gradient of scalar-valued `fun` (`memory`, `target`,
    `argnum`: see value_and_grad).

    >>> import numpy as np, jitad
    >>> jitad.grad(lambda x1, x2: x1 * x2 + np.sin(x1), argnums=(0, 1))(2.0, 5.0)
    (4.583853163452858, 2.0)
    """
    return _reverse(grad, fun, argnums_alias(argnums, argnum), has_aux, memory, target)


def _reverse(make, fun, argnums, has_aux, memory, target):
    """grad or value_and_grad (`make`) of `fun`: one kernel computes the value and the gradient."""
    spec = _argnums_key(argnums)
    single = isinstance(spec, int)
    # the fast paths of both (plain float / array arguments -> the kernel), shared by every wrapper
    # of `fun` with these options; kept per memory policy and target by their key (backend.STATE)
    paths = transform_of(fun, ("fast paths", spec, has_aux, memory), lambda: {"grad": {}, "value_and_grad": {}})

    def made(policy):
        transform = _with_memory(Transform(fun, _build_value_and_grad(has_aux, policy), spec, "value_and_grad",
                                           "reverse"), policy)
        transform.fast_tables += [paths["grad"], paths["value_and_grad"]]  # forgotten with its traces
        return transform
    transform_for = _per_memory(memory, lambda policy: transform_of(
        fun, _memory_key(("value_and_grad", spec, has_aux), policy), lambda: made(policy)))
    transform = transform_for()
    name = make.__name__

    @functools.wraps(fun)
    def value_and_grad_fun(*args, **kwargs):
        outs, out_tree, sig = transform_for().run(args, kwargs)
        grads = _unflatten_grads(sig, sig.diff_argnums, single, outs[out_tree.num_leaves:])
        if not kwargs and not has_aux:
            served = transform_for()
            _install(paths["value_and_grad"], args, served, slice(None) if single else None)
            _install(paths["grad"], args, served, 1 if single else slice(1, None))
        if name == "grad" and not has_aux:
            return grads
        value = tree_unflatten(out_tree, [_to_python(v) for v in outs[:out_tree.num_leaves]])
        if name == "grad":
            return grads, value[1]
        return value, grads
    # jitad_transform: the transform of the memory policy when the wrapper was made
    call = _fast_call(fun, paths[name], _on_target(value_and_grad_fun, target), target)
    call.jitad_transform, call.jitad_name = transform, name
    call._jitad_transform_for = transform_for
    call._jitad_fast = paths[name]
    return Transformed(call, make, fun, dict(argnums=argnums, has_aux=has_aux, memory=memory, target=target))


class _Shapes(dict):
    """A fast path's entries for one tuple of argument types holding arrays, by their shapes and dtypes."""


def _shapes(args):
    """The key of `args` in a `_Shapes` (that of one array: its shape and dtype, as `_fast_call` makes it)."""
    if len(args) == 1:
        return args[0].shape, args[0].dtype.char
    return tuple([(a.shape, a.dtype.char) if type(a) is np.ndarray else None for a in args])


def _fast_call(fun, fast, slow, target):
    """`slow` (a transform's call), except that calls whose every argument is a Python float or a
    float array of rank >= 1 go straight to the compiled kernel `fast` holds for their types (and
    shapes): `fast[(settings, *types)]` is `(kernel, part, check)`, or a `_Shapes` of them; the call
    returns `kernel(*args)[part]`, or `(outs[0], outs[1:])` for part None (`_install`), when `check`
    is None or says the globals and closure variables the trace read are unchanged.

    This is the one Python frame between the user and Numba's dispatcher for such calls, so it is
    written for speed: the key is built from the types alone (explicitly for one and two arguments),
    the settings it depends on are one string (backend.STATE). A call with keyword arguments, on
    traced values, or inside a trace (its values may belong to it) takes `slow`, and so does a call
    after a global or closure variable the traces read was rebound (the transform traces again)."""
    get, state, opened = fast.get, backend.STATE, backend.OPEN
    local = ir._local  # this thread's open traces: `ir.builders()` without a call
    own = None if target is None else backend.STATE_ON[backend.check_target(target)]

    @functools.wraps(fun)
    def call(*args, **kwargs):
        if not kwargs and not local.stack:
            head = state[0] if own is None and not opened[0] else _settings(own)
            n = len(args)
            hit = get((head, type(args[0])) if n == 1 else (head, type(args[0]), type(args[1])) if n == 2
                      else (head, *map(type, args)))
            if hit is not None and type(hit) is _Shapes:
                hit = hit.get((args[0].shape, args[0].dtype.char) if n == 1 else _shapes(args))
            if hit is not None and (hit[2] is None or hit[2]()):
                kernel, part, _ = hit
                outs = kernel(*args)
                return outs[part] if part is not None else (outs[0], outs[1:])
        return slow(*args, **kwargs)
    return call


def _settings(own):
    """The settings of a call (`own`: those of the transform's target= when given)."""
    return own[0] if own is not None else backend.STATE_ON[backend.current_target()][0]


def _install(fast, args, transform, part):
    """Make the kernel that just served `transform`'s call with `args` (if one did) the fast path of
    calls with arguments of the same types and shapes, returning `outs[part]` (see _fast_call)."""
    compiled = transform.last
    if compiled is None:
        return
    for a in args:
        if type(a) is not float and not (type(a) is np.ndarray and a.ndim and a.dtype.kind == "f"):
            return
    if compiled.casts:  # non-float64 scalar outputs: their NumPy scalar types
        direct = compiled.direct
        kernel = lambda *args: tuple(direct(args))  # noqa: E731
    elif compiled.extra:  # captured arrays and constants, sizes: arguments after the user's
        dispatcher, extra = compiled.dispatcher, compiled.extra
        kernel = lambda *args: dispatcher(*args, *extra)  # noqa: E731
    else:
        kernel = compiled.dispatcher
    key = (_settings(None), *map(type, args))
    entry = (kernel, part, transform.capture_check())
    if np.ndarray in key:
        fast.setdefault(key, _Shapes())[_shapes(args)] = entry
    else:
        fast[key] = entry


def _build_value_and_grad(has_aux, memory="store"):
    def build(graph, sig, out_tree):
        out = scalar_output(graph, out_tree, has_aux)
        wrt = sig.traced_positions_of(sig.diff_argnums)

        def body(*inputs):
            seeds = [np.ones((), out.dtype)] + [None] * (len(graph.outputs) - 1)
            with control.memory_policy(memory):
                outs, (grads,) = ad.vjp_values(graph, inputs, [seeds], wrt, memory=memory)
            return outs + grads
        return body, (), out_tree
    return build


def _build_forward(graph, sig, out_tree):
    return (lambda *inputs: ad.replay_outputs(graph, inputs)), (), out_tree


def _value_tree(out_tree, has_aux):
    if has_aux and (out_tree.num_children != 2 or
                    out_tree.kind not in (optree.PyTreeKind.TUPLE, optree.PyTreeKind.LIST)):
        raise TypeError("has_aux=True requires the function to return a pair (out, aux)")
    return out_tree.children()[0] if has_aux else out_tree


def _build_vjp_backward(has_aux, memory="store"):
    def build(graph, sig, out_tree):
        wrt = sig.traced_positions_of(sig.diff_argnums)
        n_value = _value_tree(out_tree, has_aux).num_leaves
        k = len(graph.inputs)

        def body(*inputs):
            cts = list(inputs[k:]) + [None] * (len(graph.outputs) - n_value)
            with control.memory_policy(memory):
                _, (grads,) = ad.vjp_values(graph, inputs[:k], [cts], wrt, memory=memory)
            return grads
        return body, [(o.shape, _cotangent_dtype(o)) for o in graph.outputs[:n_value]], None
    return build


def vjp(fun, *primals, has_aux=False, memory=None, target=None):
    """Return `(fun(*primals), vjp_fn)`; `vjp_fn(cotangent)` is a tuple, one entry per primal.

    With has_aux=True, `fun` returns (out, aux) and vjp returns (out, vjp_fn, aux). `memory`,
    `target` (for both passes): see value_and_grad.

    >>> import numpy as np, jitad
    >>> out, vjp_fn = jitad.vjp(lambda x: x * x, np.array([1.0, 2.0]))
    >>> vjp_fn(np.ones(2))[0].tolist()
    [2.0, 4.0]
    """
    if backend.check_target(target) is not None:
        with backend.using_target(target):
            result = vjp(fun, *primals, has_aux=has_aux, memory=memory)
        return result[:1] + (_on_target(result[1], target),) + result[2:]
    nums = tuple(range(len(primals)))
    forward = transform_of(fun, ("vjp_forward", nums), lambda: Transform(
        fun, _build_forward, nums, "vjp (forward pass)", "evaluation only"))
    outs, out_tree, sig = forward.run(primals, {})
    drawn = forward.last_draws  # the backward pass uses the forward pass's random numbers
    out = tree_unflatten(out_tree, [_to_python(v) for v in outs])
    value_tree = _value_tree(out_tree, has_aux)
    value_dtypes = [_float_dtype(np.dtype(getattr(v, "dtype", None) or np.result_type(v)))
                    for v in outs[:value_tree.num_leaves]]
    backward = _per_memory(memory, lambda policy: transform_of(
        fun, _memory_key(("vjp_backward", nums, has_aux), policy), lambda: _with_memory(Transform(
            fun, _build_vjp_backward(has_aux, policy), nums, "vjp", "reverse"), policy)))()

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


def jvp(fun, primals, tangents, has_aux=False, target=None):
    """Forward mode: `(fun(*primals), directional derivative along tangents)` (`target`: see
    value_and_grad).

    >>> import numpy as np, jitad
    >>> jitad.jvp(np.sin, (0.0,), (2.0,))
    (0.0, 2.0)
    """
    if backend.check_target(target) is not None:
        with backend.using_target(target):
            return jvp(fun, primals, tangents, has_aux)
    outs, out_tree = _run_jvp(fun, primals, tangents, tangents_only=False)
    n = out_tree.num_leaves
    out = tree_unflatten(out_tree, [_to_python(v) for v in outs[:n]])
    tout = tree_unflatten(out_tree, [_to_python(v) for v in outs[n:]])
    if has_aux:
        return out[0], tout[0], out[1]
    return out, tout


def jvp_tangents(fun, primals, tangents, fast=None):
    """jvp's directional derivative alone: its kernel neither computes nor allocates fun's value
    (jacobians.hvp, whose value would be the whole gradient). `fast`: a dict in which the compiled
    kernel that served the call is kept for calls on float arrays of these shapes (`tangents_fast`)."""
    outs, out_tree, transform = _run_jvp(fun, primals, tangents, tangents_only=True, with_transform=True)
    if fast is not None:
        key = _tangents_key(primals, tangents)
        compiled = transform.last_extra
        if key is not None and compiled is not None and not compiled.casts:
            dispatcher, extra = compiled.dispatcher, compiled.extra
            fast[key] = ((lambda *args: dispatcher(*args, *extra)) if extra else dispatcher, transform)
            if not any(table is fast for table in transform.fast_tables):
                transform.fast_tables.append(fast)  # forgotten with the transform's traces
    return tree_unflatten(out_tree, [_to_python(v) for v in outs])


def fast_key(arrays):
    """The key a fast path (a kernel kept for calls like this one) files a call under: the settings it
    depends on and the arrays' shapes and dtypes, when every argument is a float array of rank >= 1
    and the call is outside any trace and any target scope; else None."""
    if ir._local.stack or backend.OPEN[0] or not arrays:
        return None
    for a in arrays:
        if type(a) is not np.ndarray or not a.ndim or a.dtype.kind != "f":
            return None
    return backend.STATE[0], tuple((a.shape, a.dtype.char) for a in arrays)


def _tangents_key(primals, tangents):
    """The fast-path key of a jvp call whose tangents are arrays of its primals' shapes and dtypes."""
    key = fast_key(primals)
    if key is None or len(primals) != len(tangents) or any(
            type(t) is not np.ndarray or t.shape != p.shape or t.dtype != p.dtype for p, t in zip(primals, tangents)):
        return None
    return key


def tangents_fast(fast, primals, tangents):
    """The tangents `jvp_tangents(..., fast=fast)` would return, straight from the kernel kept in
    `fast` for calls like this one (a tuple of arrays, one per primal), or None when none is kept."""
    key = _tangents_key(primals, tangents)
    hit = None if key is None else fast.get(key)
    if hit is None or not hit[1].captures_ok():  # (a rebound global: the transform traces again)
        return None
    return hit[0](*primals, *tangents)


def _run_jvp(fun, primals, tangents, tangents_only, with_transform=False):
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
    if tangents_only:
        transform = transform_of(fun, ("jvp_tangents", nums), lambda: Transform(
            fun, _build_jvp_tangents, nums, "jvp (tangents)", "forward"))
    else:
        transform = transform_of(fun, ("jvp", nums), lambda: Transform(fun, _build_jvp, nums, "jvp", "forward"))
    outs, out_tree, _ = transform.run(primals, {}, extra=tangent_leaves)
    return (outs, out_tree, transform) if with_transform else (outs, out_tree)


def _build_jvp_tangents(graph, sig, out_tree):
    body, extra_avals, out_tree = _build_jvp(graph, sig, out_tree)
    n = len(graph.outputs)
    return (lambda *inputs: body(*inputs)[n:]), extra_avals, out_tree


def _build_jvp(graph, sig, out_tree):
    wrt = sig.traced_positions_of(sig.diff_argnums)
    k = len(graph.inputs)

    def body(*inputs):
        outs, (touts,) = ad.jvp_values(graph, inputs[:k], [list(inputs[k:])], wrt)
        return outs + touts
    return body, [(graph.inputs[i].shape, graph.inputs[i].dtype) for i in wrt], out_tree


def _leaf_dtype(leaf):
    dtype = getattr(leaf, "dtype", None)
    return dtype if dtype is not None and np.dtype(dtype).kind == "f" else np.float64


def jit(fun, target=None):
    """Compile the forward function alone through the same trace -> fuse -> Numba path
    (`target`: see value_and_grad).

    >>> import numpy as np, jitad
    >>> f = jitad.jit(lambda x: np.sum(np.sin(x) ** 2))
    >>> round(float(f(np.zeros(3))), 6)
    0.0
    """
    transform = transform_of(fun, ("jit",), lambda: Transform(fun, _build_forward, (), "jit", "evaluation only"))

    @functools.wraps(fun)
    def jitted(*args, **kwargs):
        outs, out_tree, _ = transform.run(args, kwargs)
        if not kwargs and out_tree.kind == optree.PyTreeKind.LEAF:
            _install(transform.fast, args, transform, 0)
        elif not kwargs and out_tree.kind == optree.PyTreeKind.TUPLE and out_tree.num_leaves == out_tree.num_children:
            _install(transform.fast, args, transform, slice(None))  # a tuple of arrays and scalars
        return tree_unflatten(out_tree, [_to_python(v) for v in outs])
    call = _fast_call(fun, transform.fast, _on_target(jitted, target), target)
    call.jitad_transform, call.jitad_name, call._jitad_fast = transform, "jit", transform.fast
    return Transformed(call, jit, fun, dict(target=target))
