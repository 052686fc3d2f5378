"""User derivative rules and recomputation: custom_vjp, custom_jvp and checkpoint.

All three put an *alias* node on each float output. Its value is its first input, the
output of the user's function; its other inputs are the function's arguments, which
only its derivative rules read. The rules are the user's (custom_vjp, custom_jvp) or a
recomputation (checkpoint). For the custom rules the primal computation sits behind
`stop_gradient` (or in a non-differentiable callback), so AD sees the rules and nothing
else. Aliases live until AD is done: `passes.simplify` replaces each by its first input,
so graphs must not be optimized before they are differentiated.

When jitad cannot trace a user function or rule, it becomes a `callback` node
(kind="callback"): its impl runs the Python function on real arrays, and the compiled
backend calls back into Python for it. Callback nodes have no derivatives of their own,
so differentiating through one again raises NonDifferentiableError, never a zero.
"""
import functools
import itertools
import warnings

import numpy as np
import optree

from jitad.frontend import rng
from jitad.transforms.ad import checkpoint_barrier_p, vjp_values  # the adjoint of checkpoint replays on barriers
from jitad.errors import JitadError, NonDifferentiableError, ShapeError
from jitad.interpreter import replay
from jitad.ir import is_tracer
from jitad.primitives import REGISTRY, Primitive
from jitad.frontend.tracer import trace
from jitad.pytrees import tree_flatten, tree_leaves

_ids = itertools.count()


def _same_shape(x):
    return x.shape, x.dtype


stop_gradient_p = Primitive("stop_gradient", impl=lambda x: x, shape_rule=_same_shape, kind="elementwise",
                            scalar="{0}", differentiable=False)


def _local_primitive(name, **rules):
    """A primitive made for one user function, kept out of the global REGISTRY."""
    prim = Primitive(f"{name}#{next(_ids)}", **rules)
    del REGISTRY[prim.name]
    return prim


def _alias(name, jvp, vjp):
    """The value of the first input; the other inputs (the arguments) feed only `jvp` and `vjp`."""
    return _local_primitive(name, impl=lambda y, *args, index: y,
                            shape_rule=lambda y, *args, index: (y.shape, y.dtype), jvp=jvp, vjp=vjp, kind="alias")


def _not_differentiable(message):
    def rule(*args, **params):
        raise NonDifferentiableError(message)
    return rule


def _is_array(leaf):
    return is_tracer(leaf) or isinstance(leaf, (np.ndarray, np.generic, float))


def _float(dtype):
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


class _Skeleton:
    """The structure of one call's arguments: array leaves become node inputs, other leaves stay static."""

    def __init__(self, args):
        leaves, self.tree = tree_flatten(args)
        self.positions = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]
        self.static = [None if i in self.positions else leaf for i, leaf in enumerate(leaves)]
        self.arrays = [leaves[i] if is_tracer(leaves[i]) else np.asarray(leaves[i]) for i in self.positions]
        self.avals = [(tuple(a.shape), np.dtype(a.dtype)) for a in self.arrays]
        self.floats = [j for j, (_, dtype) in enumerate(self.avals) if dtype.kind == "f"]

    def traced(self):
        return any(is_tracer(a) for a in self.arrays)

    def stripped(self):
        """A copy without the argument values, to keep in a cache (no tracer outlives its trace)."""
        copy = object.__new__(_Skeleton)
        copy.__dict__.update(self.__dict__, arrays=None)
        return copy

    def key(self):
        static = []
        for i, leaf in enumerate(self.static):
            if i not in self.positions:
                try:
                    hash(leaf)
                except TypeError:
                    leaf = ("id", id(leaf))
                static.append((i, type(leaf), leaf))
        return self.tree, tuple(static), tuple((s, d.str) for s, d in self.avals)

    def rebuild(self, arrays, static=True):
        """The argument tuple with `arrays` in the array slots (static leaves, or None for tangents)."""
        leaves = list(self.static) if static else [None] * len(self.static)
        for i, a in zip(self.positions, arrays):
            leaves[i] = a
        return optree.tree_unflatten(self.tree, leaves)

    def zero_tangent(self, j):
        shape, dtype = self.avals[j]
        return np.zeros(shape, _float(dtype))

    def flat_size(self):
        return sum(int(np.prod(self.avals[j][0], dtype=np.int64)) for j in self.floats)

    def flat_dtype(self):
        return np.result_type(*[self.avals[j][1] for j in self.floats]) if self.floats else np.dtype(np.float64)

    def split(self, flat):
        """Per array input: its piece of the flat cotangent `flat`, or None for non-float inputs."""
        cts, offset = [None] * len(self.avals), 0
        whole = len(self.floats) == 1
        for j in self.floats:
            shape, dtype = self.avals[j]
            size = int(np.prod(shape, dtype=np.int64))
            piece = np.reshape(flat if whole else flat[offset:offset + size], shape)
            cts[j] = piece if dtype == self.flat_dtype() else piece.astype(dtype)
            offset += size
        return cts

    def concatenate(self, cts, name):
        """The flat cotangent from one cotangent (or None) per array input, checking shapes."""
        pieces = []
        for j in self.floats:
            shape, dtype = self.avals[j]
            ct = cts[j]
            if ct is None:
                ct = np.zeros(shape, dtype)
            if np.shape(ct) != shape:
                raise ShapeError(f"the derivative rule of `{name}` gave a cotangent of shape {np.shape(ct)} "
                                 f"for an argument of shape {shape}")
            pieces.append(np.ravel(np.asarray(ct, dtype=self.flat_dtype())))
        return np.concatenate(pieces) if pieces else np.zeros(0)


def _trace_flat(fun, avals):
    """Trace `fun` (flat arrays -> pytree); returns (graph, captured tracers, output tree)."""
    box = {}

    def flat(*xs):
        leaves, box["tree"] = tree_flatten(fun(*xs))
        return leaves

    graph, captured = trace(flat, avals)
    return graph, captured, box["tree"]


def _closure_error(kind, name):
    return JitadError(f"the {kind} function `{name}` uses a traced value it closes over; jitad runs it "
                      "on other values than the ones it was traced with, so pass that value as an argument")


def _pair(value, what, name):
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError(f"the {what} of `{name}` must return a pair, got {type(value).__name__}")
    return value


def _quietly(fun, *args):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fun(*args)


class _Site:
    """One custom function at one argument signature: how its primal outputs are computed.

    If jitad can trace the function, its graph is inlined behind stop_gradient; otherwise
    it is a callback node per output leaf (each runs the whole function, so a function
    with k outputs runs k times) and the output shapes come from running it once on
    arrays of ones, warnings suppressed.
    """

    def __init__(self, kind, name, fun, skeleton):
        skeleton = skeleton.stripped()
        self.name, self.skeleton = name, skeleton
        flat_fun = lambda *xs: fun(*skeleton.rebuild(xs))  # noqa: E731
        try:
            self.graph, captured, self.out_tree = _trace_flat(flat_fun, skeleton.avals)
        except Exception:  # untraceable (SciPy, np.sort, ...): run it as a callback instead;
            # a genuine bug in `fun` raises again when it runs on arrays of ones below
            self.graph = None
            out = _quietly(flat_fun, *[np.ones(s, d) for s, d in skeleton.avals])  # errors here are the user's
            leaves, self.out_tree = tree_flatten(out)
            if any(is_tracer(leaf) for leaf in leaves):
                raise _closure_error(kind, name) from None
            self.out_avals = [(np.shape(v), np.asarray(v).dtype) for v in leaves]
            self.primal_p = _local_primitive(
                f"{kind}[{name}].fun", impl=self._run_primal(flat_fun), differentiable=False, kind="callback",
                shape_rule=lambda *nodes, index: self.out_avals[index])
        else:
            if captured:
                raise _closure_error(kind, name)
            self.out_avals = [(o.shape, o.dtype) for o in self.graph.outputs]

    def _run_primal(self, flat_fun):
        def impl(*arrays, index):
            leaves = tree_leaves(flat_fun(*arrays))
            if len(leaves) != len(self.out_avals) or np.shape(leaves[index]) != self.out_avals[index][0]:
                raise ShapeError(f"`{self.name}` returned outputs of another shape than when jitad first ran it")
            return leaves[index]
        return impl

    def apply(self, alias_p, arrays):
        if self.graph is not None:
            env = replay(self.graph, [stop_gradient_p(a) for a in arrays])
            outs = [env[o.id] for o in self.graph.outputs]
        else:
            outs = [self.primal_p(*arrays, index=k) for k in range(len(self.out_avals))]
        outs = [alias_p(y, *arrays, index=k) if dtype.kind == "f" else y
                for k, (y, (_, dtype)) in enumerate(zip(outs, self.out_avals))]
        return optree.tree_unflatten(self.out_tree, outs)

    def output_cotangent(self, g, index):
        """The cotangent of the whole output: g at leaf `index`, zeros elsewhere."""
        leaves = [np.zeros(shape, _float(dtype)) for shape, dtype in self.out_avals]
        leaves[index] = g if is_tracer(g) else np.asarray(g)
        return optree.tree_unflatten(self.out_tree, leaves)


class _Custom:
    kind = ""

    def __init__(self, fun):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self._sites = {}

    def __call__(self, *args):
        skeleton = _Skeleton(args)
        if not skeleton.traced():
            return self.fun(*args)
        key = skeleton.key()
        entry = self._sites.get(key)
        if entry is None:
            with rng.forbidding(f"{self.kind} function `{self.__name__}`"):  # a draw there is an error
                site = _Site(self.kind, self.__name__, self.fun, skeleton)
            entry = self._sites[key] = (site, self._alias(site))
        site, alias_p = entry
        return site.apply(alias_p, skeleton.arrays)


class custom_vjp(_Custom):
    """Give a function its own reverse-mode rule, run on real arrays.

    `f.defvjp(fwd, bwd)`: `fwd(*args) -> (out, residuals)`, `bwd(residuals, g) -> tuple`
    with one cotangent per argument (None for zero). `f` itself runs on NumPy arrays, so it
    may call anything (SciPy, np.sort, ...): this is the way to differentiate a function
    jitad cannot trace. Called on plain arrays, `f` just runs. When jitad can trace fwd and
    bwd (NumPy and the SciPy functions it implements; no Python branching on their values),
    their graph is inlined into the adjoint, compiled with it, and differentiated again:
    second derivatives in reverse mode (grad of grad), as JAX's custom_vjp and autograd's
    defvjp. Otherwise they run on NumPy arrays at every reverse pass, once per output leaf,
    and a second derivative through `f` raises NonDifferentiableError. Forward mode (jvp,
    jacfwd, hessian) through `f` raises NonDifferentiableError either way.

    >>> import numpy as np, scipy.special, jitad
    >>> @jitad.custom_vjp
    ... def erf(x):
    ...     return scipy.special.erf(x)
    >>> def erf_fwd(x):
    ...     return erf(x), x
    >>> def erf_bwd(x, g):
    ...     return (g * 2 / np.sqrt(np.pi) * np.exp(-x ** 2),)
    >>> erf.defvjp(erf_fwd, erf_bwd)
    >>> round(float(jitad.grad(lambda x: erf(x) * 2)(0.0)), 6)
    2.256758
    """

    kind = "custom_vjp"

    def __init__(self, fun):
        super().__init__(fun)
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd

    def _alias(self, site):
        name, skeleton = self.__name__, site.skeleton
        bwd_p = None
        if skeleton.floats:
            bwd_p = _local_primitive(
                f"custom_vjp[{name}].bwd", impl=self._run_bwd(site), kind="callback",
                shape_rule=lambda g, *args, index: ((skeleton.flat_size(),), skeleton.flat_dtype()),
                jvp=_not_differentiable(f"cannot differentiate the derivative of custom_vjp function `{name}` "
                                        "again: its bwd rule runs on real arrays. For higher derivatives "
                                        "use @jitad.custom_jvp with a rule jitad can trace"),
                vjp=_not_differentiable(f"cannot take a second derivative through custom_vjp function "
                                        f"`{name}`: its bwd rule runs on real arrays. For higher derivatives "
                                        "use @jitad.custom_jvp with a rule jitad can trace"))

        traced = {}  # output leaf -> the graph of fwd and bwd, or None (they run on real arrays)

        def vjp(g, out, y, *args, index):
            if self.bwd is None:
                raise NonDifferentiableError(f"custom_vjp function `{name}` has no rule: call "
                                             f"{name}.defvjp(fwd, bwd) before differentiating it")
            if bwd_p is None:
                return (None,) * (1 + len(args))
            if index not in traced:
                traced[index] = self._traced_bwd(site, index)
            graph = traced[index]
            if graph is None:
                return (None, *skeleton.split(bwd_p(g, *args, index=index)))
            env = replay(graph, [g, *args])
            result = [None] * len(args)
            for j, o in zip(skeleton.floats, graph.outputs):
                result[j] = env[o.id]
            return (None, *result)

        jvp = _not_differentiable(f"forward mode (jvp, jacfwd, hessian) through custom_vjp function `{name}` "
                                  "is not available: a custom_vjp rule gives reverse mode only. Use "
                                  "@jitad.custom_jvp to give a rule that serves both modes")
        return _alias(f"custom_vjp[{name}]", jvp, vjp)

    def _cotangents(self, site, g, arrays, index):
        """bwd(fwd(*args)[1], the output cotangent) as one cotangent per argument leaf (None for
        a non-array leaf), checked against the arguments."""
        name, skeleton = self.__name__, site.skeleton
        args = skeleton.rebuild(arrays)
        _, residuals = _pair(self.fwd(*args), "fwd rule", name)
        cts = self.bwd(residuals, site.output_cotangent(g, index))
        if not isinstance(cts, (tuple, list)) or len(cts) != len(args):
            raise TypeError(f"the bwd rule of custom_vjp function `{name}` must return a tuple with one "
                            f"cotangent per argument ({len(args)}), got {cts!r:.80}")
        leaves = []
        for tree, ct in zip(skeleton.tree.children(), cts):
            leaves.extend([None] * tree.num_leaves if ct is None else tree.flatten_up_to(ct))
        return leaves

    def _traced_bwd(self, site, index):
        """The graph (g, *arrays) -> one cotangent per float array argument of fwd and bwd traced,
        for output leaf `index`; None when jitad cannot trace them (or they close over a traced
        value): then they run on real arrays, and a second derivative through them is an error."""
        skeleton, name = site.skeleton, self.__name__
        shape, dtype = site.out_avals[index]

        def flat(g, *arrays):
            leaves = self._cotangents(site, g, arrays, index)
            out = []
            for j in skeleton.floats:
                ct, (ct_shape, ct_dtype) = leaves[skeleton.positions[j]], skeleton.avals[j]
                if ct is None:
                    ct = np.zeros(ct_shape, ct_dtype)
                if np.shape(ct) != ct_shape:
                    raise ShapeError(f"the derivative rule of `{name}` gave a cotangent of shape {np.shape(ct)} "
                                     f"for an argument of shape {ct_shape}")
                out.append(ct.astype(ct_dtype) if is_tracer(ct) else np.asarray(ct, ct_dtype))
            return out

        try:
            with rng.forbidding(f"custom_vjp function `{name}`"):
                graph, captured, _ = _trace_flat(flat, [(shape, _float(dtype))] + skeleton.avals)
        except ShapeError:
            raise
        except Exception:  # noqa: BLE001 -- a rule jitad cannot trace runs on real arrays (its errors raise there)
            return None
        return None if captured else graph

    def _run_bwd(self, site):
        name, skeleton = self.__name__, site.skeleton

        def impl(g, *arrays, index):
            leaves = self._cotangents(site, g, arrays, index)
            return skeleton.concatenate([leaves[i] for i in skeleton.positions], name)
        return impl


class custom_jvp(_Custom):
    """Give a function its own forward-mode rule; reverse mode is derived from it.

    `f.defjvp(rule)`: `rule(primals, tangents) -> (out, tangent_out)`, where primals and
    tangents are tuples of the arguments, and tangent_out must be linear in tangents.
    If jitad can trace the rule, it is inlined: forward mode is the rule, reverse mode
    transposes its traced tangent map, and higher derivatives differentiate the rule.
    Otherwise the rule runs on real arrays: reverse mode then evaluates it once per
    element of the float arguments (a basis tangent each), and second derivatives raise
    NonDifferentiableError.

    >>> import numpy as np, jitad
    >>> @jitad.custom_jvp
    ... def log1pexp(x):
    ...     return np.logaddexp(0.0, x)
    >>> @log1pexp.defjvp
    ... def log1pexp_jvp(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     return log1pexp(x), t / (1.0 + np.exp(-x))
    >>> float(jitad.grad(log1pexp)(1000.0))
    1.0
    """

    kind = "custom_jvp"

    def __init__(self, fun):
        super().__init__(fun)
        self.rule = None

    def defjvp(self, rule):
        self.rule = rule
        self._sites.clear()
        return rule

    def _alias(self, site):
        name, skeleton, n = self.__name__, site.skeleton, len(site.skeleton.avals)
        resolved = {}

        def derivatives():
            # resolved at first use, not at the first call: the rule may call this very function
            if "rule" not in resolved:
                if self.rule is None:
                    raise NonDifferentiableError(f"custom_jvp function `{name}` has no rule: call "
                                                 f"{name}.defjvp(rule) before differentiating it")
                resolved["rule"] = self._traced_rule(site) or self._callback_rule(site)
            return resolved["rule"]

        def jvp(primals, tangents, out, index):
            ts = [t if t is not None else skeleton.zero_tangent(j) for j, t in enumerate(tangents[1:])]
            return derivatives()[0](list(primals[1:]), ts, index)

        def vjp(g, out, y, *args, index):
            if not skeleton.floats:
                return (None,) * (1 + n)
            return (None, *derivatives()[1](g, list(args), index))

        return _alias(f"custom_jvp[{name}]", jvp, vjp)

    def _flat_rule(self, site):
        """The rule as flat arrays (primals, then tangents) -> tangent_out leaves."""
        skeleton, n = site.skeleton, len(site.skeleton.avals)

        def flat_rule(*xs):
            out, tangent_out = _pair(self.rule(skeleton.rebuild(xs[:n]), skeleton.rebuild(xs[n:], static=False)),
                                     "jvp rule", self.__name__)
            leaves = tree_leaves(tangent_out)
            if len(leaves) != len(site.out_avals):
                raise TypeError(f"the jvp rule of `{self.__name__}` returned {len(leaves)} tangent leaves "
                                f"for {len(site.out_avals)} outputs")
            return leaves
        return flat_rule

    def _traced_rule(self, site):
        """(jvp, vjp) from the rule's traced graph, or None if jitad cannot trace the rule."""
        skeleton, n = site.skeleton, len(site.skeleton.avals)
        tangent_avals = [(s, _float(d)) for s, d in skeleton.avals]
        try:
            graph, captured, _ = _trace_flat(self._flat_rule(site), skeleton.avals + tangent_avals)
        except Exception:  # an untraceable rule runs on real arrays (a bug in it raises there)
            return None
        if captured:
            raise _closure_error("custom_jvp rule of", self.__name__)

        def jvp(primals, tangents, index):
            env = replay(graph, primals + tangents)
            return env[graph.outputs[index].id]

        def vjp(g, primals, index):
            # tangent_out is linear in the tangents: its VJP at zero tangents is the transpose
            cts = [None] * len(graph.outputs)
            cts[index] = g
            zeros = [skeleton.zero_tangent(j) for j in range(n)]
            _, (grads,) = vjp_values(graph, primals + zeros, [cts], [n + j for j in skeleton.floats])
            result = [None] * n
            for j, ct in zip(skeleton.floats, grads):
                result[j] = ct
            return result
        return jvp, vjp

    def _callback_rule(self, site):
        """(jvp, vjp) as callback nodes that run the rule on real arrays."""
        name, skeleton, n = self.__name__, site.skeleton, len(site.skeleton.avals)
        flat_rule = self._flat_rule(site)
        again = _not_differentiable(f"cannot differentiate the jvp rule of custom_jvp function `{name}`: jitad "
                                    "could not trace it, so it runs on real arrays. Write the rule with NumPy "
                                    "operations jitad supports to get higher derivatives")

        def run_jvp(*xs, index):
            return flat_rule(*xs)[index]

        def run_transpose(g, *xs, index):
            # one evaluation of the rule per element of the float arguments: entry e of J^T g
            cts = [None] * n
            for j in skeleton.floats:
                ct = np.zeros(skeleton.avals[j][0], skeleton.avals[j][1])
                for e in range(ct.size):
                    tangents = [skeleton.zero_tangent(k) for k in range(n)]
                    tangents[j].flat[e] = 1.0
                    ct.flat[e] = np.sum(np.asarray(flat_rule(*xs, *tangents)[index]) * g)
                cts[j] = ct
            return skeleton.concatenate(cts, name)

        jvp_p = _local_primitive(f"custom_jvp[{name}].jvp", impl=run_jvp, kind="callback", jvp=again, vjp=again,
                                 shape_rule=lambda *nodes, index: (site.out_avals[index][0],
                                                                   _float(site.out_avals[index][1])))
        transpose_p = _local_primitive(
            f"custom_jvp[{name}].transpose", impl=run_transpose, kind="callback", jvp=again, vjp=again,
            shape_rule=lambda g, *xs, index: ((skeleton.flat_size(),), skeleton.flat_dtype()))

        def jvp(primals, tangents, index):
            return jvp_p(*primals, *tangents, index=index)

        def vjp(g, primals, index):
            return skeleton.split(transpose_p(g, *primals, index=index))
        return jvp, vjp


def checkpoint(fun):
    """Same values as `fun`; reverse mode recomputes the inside of `fun` instead of storing it.

    The adjoint replays `fun`'s graph on `checkpoint_barrier` copies of its inputs, so the
    recomputed nodes are distinct nodes of the adjoint graph (the builder would otherwise
    merge them with the forward ones); only `fun`'s inputs need to be kept for them.
    Forward mode differentiates `fun` as usual. `fun` must be traceable.

    >>> import numpy as np, jitad
    >>> layer = jitad.checkpoint(lambda x: np.tanh(np.sin(x)))
    >>> round(float(jitad.grad(lambda x: np.sum(layer(x)))(0.0)), 6)
    1.0
    """
    name = getattr(fun, "__name__", "fun")

    @functools.wraps(fun)
    def checkpointed(*args):
        skeleton = _Skeleton(args)
        if not skeleton.traced():
            return fun(*args)
        graph, captured, out_tree = _trace_flat(lambda *xs: fun(*skeleton.rebuild(xs)), skeleton.avals)
        inputs = skeleton.arrays + list(captured)
        wrt = [j for j, node in enumerate(graph.inputs) if node.dtype.kind == "f"]

        def jvp(primals, tangents, out, index):
            return tangents[0] if tangents[0] is not None else np.zeros(out.shape, out.dtype)

        def vjp(g, out, y, *args, index):
            fresh = [checkpoint_barrier_p(a) if is_tracer(a) else a for a in args]
            cts = [None] * len(graph.outputs)
            cts[index] = g
            _, (grads,) = vjp_values(graph, fresh, [cts], wrt)
            result = [None] * len(args)
            for j, ct in zip(wrt, grads):
                result[j] = ct
            return (None, *result)

        alias_p = _alias(f"checkpoint[{name}]", jvp, vjp)
        env = replay(graph, inputs)
        outs = [env[o.id] for o in graph.outputs]
        outs = [alias_p(y, *inputs, index=k) if o.dtype.kind == "f" else y
                for k, (y, o) in enumerate(zip(outs, graph.outputs))]
        return optree.tree_unflatten(out_tree, outs)

    return checkpointed
