"""Staging: a transform of a user function, run per input signature, and the record of what
each stage of the pipeline made. This module holds jitad's one cache of compiled transforms.

A `Transform` is one transform of one user function: value_and_grad of `f` with respect to
some arguments, a Jacobian's sweep, `jit(f)`. Called, it flattens the arguments into a
`Signature` and looks up the `Stage` of that signature (the cache). On a miss it makes one:

    trace      the user's function at the signature's shapes     -> stage.graph
    transform  the transform's body traced over that graph      -> stage.transformed
    passes     `passes.optimize`, each pass's output by name     -> stage.passes
    backend    fusion plan, generated source, compiled kernel    -> stage.executor
               (`stage.plan`, `stage.source`, `stage.tier` read it)

and notes the seconds each took (`stage.timings`). `explain` reads these records instead of
running a pipeline of its own. Called on traced values (inside another transform), a
transform replays its graph into the enclosing trace instead, which is how transforms compose.

The first call of a signature need not wait for Numba: with compile="background" (the
default) or "off" the body runs eagerly on the arrays (`run_eagerly`, the NumPy tier) while a
background thread builds the transformed graph and hands it to the backend (`Pending`).

Transforms live in `transform_of(fun, key, make)`: a table kept on the user's function, so
`jitad.grad(f)` made twice, `hvp(f, ...)` called in a loop and `hessian(f)` find the stages
compiled before, and the table goes when the function does.
"""
import _thread
import contextlib
import gc
import inspect
import queue
import re
import threading
import time
import types
import warnings

import numpy as np

from jitad import backend, ir
from jitad.backend import allocator, worker
from jitad.backend.cache import STATS
from jitad.errors import InputDtypeError, LeafTypeError, ShapeError, SpecializationError
from jitad.frontend import guards, linalg_ops, rng, rolling
from jitad.frontend.captures import Captures
from jitad.frontend.tracer import Tracer, trace
from jitad.interpreter import replay
from jitad.primitives.core import quiet_folding
from jitad.primitives.elementwise import eager_selects
from jitad.passes import optimize
from jitad.profiling import phase
from jitad.pytrees import tree_flatten, tree_unflatten

FLOAT_TYPES = (float, np.floating)  # Python and NumPy float scalars: traced as 0-d arrays


def normalize_argnums(argnums, nargs):
    """(argnums as a tuple of non-negative ints, whether one int was given), for `nargs`
    positional arguments; a TypeError names an out-of-range entry."""
    single = isinstance(argnums, (int, np.integer))
    nums = (int(argnums),) if single else tuple(int(a) for a in argnums)
    for a in nums:
        if not -nargs <= a < nargs:
            raise TypeError(f"argnums={argnums} but the function was called with {nargs} positional arguments")
    return tuple(a % nargs for a in nums), single


def argnums_alias(argnums, argnum):
    """`argnums`, or autograd's spelling `argnum=` of it (grad(f, argnum=1)) when given."""
    if argnum is None:
        return argnums
    if argnums != 0:
        raise TypeError("give argnums= or argnum= (autograd's spelling of it), not both")
    return argnum


def _device_array_type(leaf):
    """The dtype of a GPU array (a numba device array, or anything with __cuda_array_interface__:
    CuPy, PyTorch CUDA tensors), else None. No CUDA module is imported."""
    if hasattr(leaf, "copy_to_host") and hasattr(leaf, "shape"):
        return np.dtype(leaf.dtype)
    interface = getattr(leaf, "__cuda_array_interface__", None)
    return np.dtype(interface["typestr"]) if isinstance(interface, dict) else None


class _DeviceArrayError(LeafTypeError):
    """A GPU array passed to a transform whose target is not "cuda"."""

    def __init__(self, position, leaf):
        TypeError.__init__(
            self, f"argument {position} is a GPU array ({type(leaf).__name__}), which only target='cuda' runs on "
            f"(this call's target is {backend.current_target()!r}). Pass target='cuda' to the transform (or set "
            "jitad.config.target = 'cuda'), or copy the array to the host first (.copy_to_host(), .get(), .cpu()).")


def classify(leaf, position, differentiated):
    """('traced', shape, dtype) for values jitad traces, or ('static', value)."""
    if isinstance(leaf, Tracer):
        kind = ("traced", leaf.shape, leaf.dtype)
    elif isinstance(leaf, np.ndarray):
        if leaf.dtype.kind not in "fiub":
            if differentiated:
                raise InputDtypeError(position, leaf.dtype)
            raise LeafTypeError(position, leaf)
        kind = ("traced", leaf.shape, leaf.dtype)
    elif isinstance(leaf, FLOAT_TYPES):
        kind = ("traced", (), np.dtype(type(leaf)) if isinstance(leaf, np.floating) else np.dtype(np.float64))
    elif isinstance(leaf, (bool, int, np.integer, np.bool_)):
        if differentiated:
            raise InputDtypeError(position, np.asarray(leaf).dtype)
        kind = ("static", leaf)
    elif isinstance(leaf, complex):
        raise InputDtypeError(position, np.dtype(complex)) if differentiated else LeafTypeError(position, leaf)
    elif _device_array_type(leaf) is not None:  # a GPU array (target="cuda"): traced by shape and dtype
        if backend.current_target() != "cuda":
            raise _DeviceArrayError(position, leaf)
        kind = ("traced", tuple(leaf.shape), _device_array_type(leaf))
    else:
        if differentiated:
            raise LeafTypeError(position, leaf)
        kind = ("static", leaf)
    if differentiated and kind[0] == "traced" and kind[2].kind != "f":
        raise InputDtypeError(position, kind[2])
    return kind


def _parameter_names(fun, count):
    """Names of `fun`'s first `count` positional arguments (`rest[j]` for those `*rest` takes,
    `args[k]` where `fun` has no signature)."""
    names, rest = [], "args"
    try:
        parameters = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        parameters = []
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            rest = parameter.name
        if parameter.kind not in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            break
        names.append(parameter.name)
    start = len(names) if rest != "args" else 0
    return names[:count] + [f"{rest}[{k - start}]" for k in range(len(names), count)]


class Signature:
    """The flattened arguments of one call, split into traced and static leaves.

    `trees`: one pytree structure per positional argument; `leaves`, `kinds` (`classify`) and
    `owner` (the argument a leaf belongs to) per leaf; `traced`: the indices of traced leaves;
    `diff_argnums`: the differentiated arguments (their leaves must be float)."""

    def __init__(self, args, diff_argnums):
        self.diff_argnums = diff_argnums
        self.trees, self.leaves, self.kinds, self.owner = [], [], [], []
        for position, arg in enumerate(args):
            leaves, tree = tree_flatten(arg)
            self.trees.append(tree)
            for leaf in leaves:
                self.kinds.append(classify(leaf, position, position in diff_argnums))
                self.leaves.append(leaf)
                self.owner.append(position)
        self.traced = [i for i, k in enumerate(self.kinds) if k[0] == "traced"]

    def key(self):
        parts = []
        for kind, leaf in zip(self.kinds, self.leaves):
            if kind[0] == "traced":  # (a scalar argument is no array: nothing can be a view of it)
                parts.append((kind[1], kind[2].str, isinstance(leaf, (np.ndarray, Tracer))))
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

    def labels(self, fun):
        """The caller's path to each traced leaf (`params[0]['W']`, `x`): the kernel header's
        names of its arguments. Arguments are named by `fun`'s parameters where it has them."""
        names = _parameter_names(fun, len(self.trees))
        paths, seen = [], {}
        for i in range(len(self.leaves)):
            position = self.owner[i]
            index = seen[position] = seen.get(position, -1) + 1
            if self.kinds[i][0] == "traced":
                paths.append((position, index))
        accessors = {}
        for position, index in paths:
            if position not in accessors:
                accessors[position] = self.trees[position].accessors()
        return [accessors[position][index].codify(names[position]) for position, index in paths]


    def rebuild(self, traced_values):
        """The user's positional arguments with traced leaves replaced by `traced_values`."""
        leaves = list(self.leaves)
        for i, v in zip(self.traced, traced_values):
            leaves[i] = v
        args, start = [], 0
        for tree in self.trees:
            n = tree.num_leaves
            args.append(tree_unflatten(tree, leaves[start:start + n]))
            start += n
        return args

    def traced_positions_of(self, argnums):
        """Indices into the traced-leaf list of the leaves that belong to `argnums`."""
        return [k for k, i in enumerate(self.traced) if self.owner[i] in argnums]


_GC = {"depth": 0, "was": False}
_GC_LOCK = threading.Lock()


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off while jitad builds graphs (in any thread), on again
    after the last build ends if it was on. A trace makes many objects and no garbage cycles, and
    the collector's passes over them grow with the graph: 30-45 % of tracing a 10,000-step loop."""
    with _GC_LOCK:
        if _GC["depth"] == 0:
            _GC["was"] = gc.isenabled()
            gc.disable()
        _GC["depth"] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC["depth"] -= 1
            if _GC["depth"] == 0 and _GC["was"]:
                gc.enable()


def trace_user(fun, sig, kwargs, draws=None, roll=True):
    """Trace the user's function; returns (graph, captured, out_tree). `roll`: roll the repeated
    steps of its Python loops into scans (`rolling.roll`; the NumPy tier's first call runs the
    unrolled trace while the rolled one is built in the background).

    Its random draws become graph inputs after the traced arguments' (`graph.draws` describes
    them; `rng.perform` makes them at call time). `draws`: those of an earlier run to reuse."""
    box = {}

    def flat(*traced):
        for i, tracer in zip(sig.traced, traced):
            leaf = sig.leaves[i]  # a Python or NumPy scalar, or an enclosing trace's tracer of one
            if not isinstance(leaf, (np.ndarray, Tracer)) or (isinstance(leaf, Tracer) and leaf._scalar):
                tracer._scalar = True
        with rng.recording(fun, sig, kwargs) as rec, linalg_ops.bound_names(fun):
            out = fun(*rec.arguments(sig.rebuild(traced)), **rec.keywords(kwargs))
        box["draws"] = rec.draws
        leaves, box["tree"] = tree_flatten(out)
        for leaf in leaves:
            if not isinstance(leaf, (Tracer, np.ndarray, float, int, np.number, bool, np.bool_)):
                raise LeafTypeError("(output)", leaf)
        return leaves

    values = [sig.leaves[i] if isinstance(sig.leaves[i], Tracer) else np.asarray(sig.leaves[i], sig.kinds[i][2])
              for i in sig.traced]
    differentiated = sig.traced_positions_of(sig.diff_argnums)

    def traced_graph():
        graph, captured = trace(flat, sig.avals(), values, differentiated)
        if roll:
            graph = rolling.roll(graph)  # a Python loop's repeated steps become one scan node
        graph.draws = box["draws"]
        return graph, captured

    with gc_paused():
        graph, captured = rng.traced(fun, None if kwargs else sig.key(), traced_graph, draws)
    return graph, captured, box["tree"]


# --- the record of one transform at one signature ------------------------------------------------
class Stage:
    """What the pipeline made for one transform at one input signature.

    `transform` (its name, e.g. "value_and_grad"), `function` (the user function's name),
    `graph` (the traced graph), `meta` (what the transform's build returned to unpack outputs),
    `transformed` (the transform's graph), `passes` ([(pass name, graph after it)]),
    `executor` (what answers calls), `timings` ({phase: seconds}), `inlined` (True when it ran
    inside an enclosing trace, replayed instead of compiled). Read from them: `optimized`,
    `plan` (the fusion plan), `source` (generated kernel source), `tier`, `mode`.
    """

    def __init__(self, transform, key):
        self.transform = transform.name
        self.function = getattr(transform.fun, "__name__", None) or type(transform.fun).__name__
        self._mode = transform.mode
        self.key = key
        self.graph = self.meta = self.transformed = self.executor = None
        self.body, self.avals, self.extra_avals = None, (), ()
        self.passes = []
        self.timings = {}
        self.inlined = False
        self.target = "cpu"  # where its kernel runs (backend.Config.target)
        self.n_traced = 0  # inputs of `graph` that are the call's traced leaves (random draws follow)
        self.labels = None  # the caller's path to each of them (Signature.labels), for the kernel's header

    @contextlib.contextmanager
    def timed(self, name, owner=None, profiled=True):
        """Time phase `name` into `timings` (and into an active compile profile when `profiled`)."""
        start = time.perf_counter()
        try:
            with phase(name, owner) if profiled else contextlib.nullcontext():
                yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start

    def run_transform(self):
        """The transform's body traced over the user's graph: `transformed`."""
        with self.timed("transform"), gc_paused():
            self.transformed, _ = trace(self.body, self.avals)

    def run_passes(self):
        """`passes.optimize` on the transformed graph, each pass's output kept: `passes`."""
        log = []
        with self.timed("passes"), gc_paused():
            optimize(self.transformed, log)
        self.passes = log

    def complete(self):
        """Wait for a graph being built in the background; build the stages the backend skipped
        (compile="off": the NumPy tier alone never traces the transform). Returns self."""
        pending = self.pending
        if pending is not None:
            pending.wait()
        if self.transformed is None and self.body is not None:
            self.run_transform()
        if not self.passes and self.transformed is not None:
            self.run_passes()
        return self

    @property
    def optimized(self):
        """The graph the backend compiles: the last pass's output."""
        return self.passes[-1][1] if self.passes else self.transformed

    @property
    def _served(self):
        """The executor, unwrapped from the random draws a function that draws makes first."""
        executor = self.executor
        return executor.kernel if isinstance(executor, rng.Drawing) else executor

    @property
    def pending(self):
        """The `Pending` build answering on the NumPy tier, if this stage started as one."""
        executor = self._served
        return executor if isinstance(executor, Pending) else None

    @property
    def backend(self):
        """The backend's executor (`jitad.backend.cache`), or None before it exists."""
        executor = self._served
        return executor.executor if isinstance(executor, Pending) else executor

    @property
    def plan(self):
        """The fusion plan the kernel was generated from (None without a generated kernel)."""
        return getattr(self.backend, "plan", None)

    @property
    def source(self):
        """The generated kernel's source (the split form's driver), or None."""
        return getattr(self.backend, "source", None)

    @property
    def nests(self):
        """The split form's loop-nest kernels (their node numbers are the nest's own), else ()."""
        split = getattr(self.backend, "split", None)
        return tuple(split.nests) if split is not None else ()

    @property
    def nest_numbers(self):
        """Per call of a split form's nest kernel: (nest index, {the nest's node number: the graph's})."""
        split = getattr(self.backend, "split", None)
        return tuple(split.nest_numbers) if split is not None else ()

    @property
    def mode(self):
        """The transform's mode at this signature ("reverse"; a Jacobian's plan's choice)."""
        mode = self._mode
        return mode(self.meta) if callable(mode) else mode

    @property
    def tier(self):
        """What answers this signature's calls now."""
        if self.inlined:
            return "inlined into the enclosing trace"
        executor = self.backend
        if executor is None:
            pending = self.pending
            if pending is not None and pending.thread is None:
                return "NumPy executor (compile='off')"
            return "NumPy executor while the compiled form is built"
        if getattr(executor, "dispatcher", None) is not None or getattr(executor, "serving", None) is not None:
            return "compiled kernel (Numba)"
        if getattr(executor, "source", None) is not None:
            return "NumPy executor while a worker process compiles the kernel"
        why = getattr(executor, "why", None)
        return "reference executor (NumPy)" + (f": {why}" if why else "")


# --- a transform of a user function, cached per signature --------------------------------------
# the signatures whose stages a transform keeps; a new one beyond them drops the oldest (a Python
# int argument that changes at every call, such as an optimiser's step number, made one stage per
# call, kept for ever: memory grew without bound)
STAGE_LIMIT = 64
# traces told apart only by the values of Python int/bool (or NumPy integer) arguments, after which
# a transform says so once and builds a new stage's compiled form only when that stage is called
# again (a value seen once never reuses its kernel; building it cost the caller CPU)
SCALAR_RETRACES = 8
_SCALAR_TYPES = (bool, int, np.integer, np.bool_)


def _scalar_blind(key):
    """A signature key with the values of static Python/NumPy integers and bools left out."""
    trees, parts = key
    return trees, tuple(("static", part[1]) if part[0] == "static" and issubclass(part[1], _SCALAR_TYPES) else part
                        for part in parts)


class Transform:
    """A transform of a user function, compiled and cached per input signature (one `Stage` each).

    `build(graph, sig, out_tree) -> (body, extra_avals, meta)`: `body` takes the traced
    graph's inputs followed by extra inputs (e.g. output cotangents) of the given
    (shape, dtype); its trace is the transformed graph. `meta` helps unpack outputs.
    `argnums`: the differentiated arguments (as the user gave them); `name` and `mode` are what
    `explain` calls it (`mode` may be a function of a stage's meta, as a Jacobian's plan).
    """

    def __init__(self, fun, build, argnums=(), name="transform", mode=None):
        self.fun = fun
        self.build = build
        self.argnums = argnums
        self.name, self.mode = name, mode
        # (signature key, extra inputs' shapes and dtypes, backend, compile == "off", target) -> Stage
        self.stages = {}
        self.fast = {}  # api's fast paths: a cheap key of plain float/array arguments -> a direct kernel call
        self.variants = {}  # signature key -> the specialisations of a function with guards (Stages)
        self.latest = None  # the Stage of the latest call
        self.last = None  # the compiled kernel that served the latest call, if any (for fast paths)
        self.last_extra = None  # the same for calls with `extra` arguments (their kernels take them last)
        self.last_draws = ()  # the random draws of the latest call (rng.perform), to pass back as `draws`
        self._nums = {}
        # what the function read from its globals and closures when last traced (frontend.captures): a
        # call after one of them was rebound traces again; `fast_tables`: fast paths forgotten then
        self.captures = None
        self.fast_tables = [self.fast]
        self.scalar_retraces = 0  # traces that differ from a kept one only in static integer values
        self.lazy_build = False   # (then a stage's compiled form is built at its second call)

    def captures_ok(self):
        """Whether the globals and closure variables the traces read still hold what they did."""
        captures = self.captures
        return captures is None or captures.unchanged()

    def capture_check(self):
        """What a fast path calls to know that (None: nothing to check)."""
        captures = self.captures
        return captures.unchanged if captures is not None and captures.entries else None

    def forget(self):
        """Drop every trace and fast path (a global or closure variable they read was rebound)."""
        self.stages.clear()
        self.variants.clear()
        self.latest = self.last = self.last_extra = None
        self.captures = None
        for table in self.fast_tables:
            table.clear()

    def diff_argnums(self, nargs):
        """The differentiated arguments of a call with `nargs` positional arguments."""
        nums = self._nums.get(nargs)
        if nums is None:
            nums = self._nums[nargs] = normalize_argnums(self.argnums, nargs)[0]
        return nums

    def stage_for(self, args):
        """The cached Stage of a call with positional `args` (any extra inputs) on the current
        backend, or None."""
        key = Signature(args, self.diff_argnums(len(args))).key()
        config = (backend.config.backend, backend.config.compile == "off", backend.current_target())
        return next((stage for k, stage in self.stages.items() if k[0] == key and k[2:] == config), None)

    def prepare(self, args, kwargs=None):
        """A Stage for `args` traced, transformed and optimised, without a kernel; not cached."""
        sig = Signature(args, self.diff_argnums(len(args)))
        stage = Stage(self, None)
        stage.n_traced, stage.labels = len(sig.traced), sig.labels(self.fun)
        stage.graph, _, out_tree = trace_user(self.fun, sig, kwargs or {})
        stage.body, stage.extra_avals, stage.meta = self._build(stage.graph, sig, out_tree)
        stage.avals = [(n.shape, n.dtype) for n in stage.graph.inputs] + list(stage.extra_avals)
        stage.run_transform()
        stage.run_passes()
        return stage

    def _build(self, graph, sig, out_tree):
        """`build`, with the checks of the trace's guards (`guards.Guard`) appended to the body's
        outputs as one boolean vector: every call computes them with everything else."""
        body, extra_avals, meta = self.build(graph, sig, out_tree)
        if not graph.guards:
            return body, extra_avals, meta
        checked = ir.Graph(graph.inputs, [g.node for g in graph.guards])
        n = len(graph.inputs)

        def body_and_guards(*inputs):
            outs = list(body(*inputs))
            env = replay(checked, inputs[:n])
            return outs + [np.stack([g.holds(env[g.node.id]) for g in graph.guards])]
        return body_and_guards, extra_avals, meta

    @staticmethod
    def _call(stage, flat, sig, draws, transform):
        compiled = stage.executor
        # a function that draws random numbers draws them first (rng.Drawing)
        return compiled(flat, sig, draws, transform) if type(compiled) is rng.Drawing else compiled(flat)

    def _checked(self, stage, outs):
        """(outputs without the guards' vector, whether every guard held) of a guarded stage."""
        if not stage.graph.guards:
            return outs, True
        return outs[:-1], bool(np.all(outs[-1]))

    def _specialisation(self, key, failed, flat, sig, draws):
        """After the guards of `failed` did not hold for a call: (stage, outputs) of another
        specialisation of the same signature whose guards hold, or (None, None) when none does
        and there is room for a new one; a SpecializationError when there is not."""
        variants = self.variants.setdefault(key, [failed])
        for other in variants:
            if other is failed:
                continue
            outs, held = self._checked(other, self._call(other, flat, sig, draws, self))
            if held:
                self.stages[key] = other
                return other, outs
        if len(variants) >= backend.config.specializations:
            raise SpecializationError(self.name, failed.function, variants, failed.graph.guards)
        return None, None

    def run(self, args, kwargs, extra=(), draws=None):
        """Returns (flat outputs, meta, signature). `draws`: the `last_draws` of an earlier run whose
        random numbers this run uses again (the sweeps of one Jacobian, both halves of a vjp)."""
        sig = Signature(args, self.diff_argnums(len(args)))
        self.last_extra = None
        if self.captures is not None and not self.captures.unchanged():
            self.forget()  # a global or closure variable the traces read now holds another value
        nested = bool(ir.builders()) or any(isinstance(v, Tracer) for v in extra) or \
            any(isinstance(sig.leaves[i], Tracer) for i in sig.traced)
        key = None
        if not nested and not kwargs:
            # a stage serves the backend it was built for (a NumPy-only stage of compile="off" too)
            key = (sig.key(), tuple((np.shape(e), np.asarray(e).dtype.str) for e in extra),
                   backend.config.backend, backend.config.compile == "off", backend.current_target())
            stage = self.stages.get(key)
            if stage is not None:
                self.latest = stage
                flat = [sig.leaves[i] for i in sig.traced] + list(extra)
                outs, held = self._checked(stage, self._call(stage, flat, sig, draws, self))
                if held:
                    # a kernel compiled in the background serves from some later call on: fast paths then
                    served = None if stage.graph.guards else stage.executor.serving
                    self.last, self.last_extra = (None, served) if extra else (served, None)
                    return outs, stage.meta, sig
                # the call takes another path through the function's `if`/`while`
                other, outs = self._specialisation(key, stage, flat, sig, draws)
                if other is not None:
                    self.latest, self.last = other, None
                    return outs, other.meta, sig
        STATS["traces"] += 1
        allocator.keep_freed_memory()  # (once per process: see jitad/backend/allocator.py)
        if key is not None:
            self._count_scalar_retrace(key, sig)
        if self.captures is None:
            self.captures = Captures(self.fun)
        stage = self.latest = Stage(self, key)
        stage.n_traced, stage.labels = len(sig.traced), sig.labels(self.fun)
        stage.target = backend.current_target()
        tier_first = key is not None and backend.config.backend == "numba" and \
            backend.config.compile in ("background", "off") and stage.target != "cuda"
        with stage.timed("trace", self):
            graph, captured, out_tree = trace_user(self.fun, sig, kwargs, draws, roll=not tier_first)
        self.captures.settle()  # (what the function changed itself while traced is not an input)
        if tier_first and (captured or isinstance(graph.draws, rng.Retraced)):
            tier_first = False
            graph = rolling.roll(graph)
        stage.graph = graph
        body, extra_avals, meta = self._build(graph, sig, out_tree)
        stage.body, stage.extra_avals, stage.meta = body, extra_avals, meta
        for e, (shape, _) in zip(extra, extra_avals):
            if np.shape(e) != tuple(shape):
                raise ShapeError(f"expected an array of shape {tuple(shape)}, got shape {np.shape(e)}")
        stage.avals = [(n.shape, n.dtype) for n in graph.inputs] + list(extra_avals)
        guarded = bool(graph.guards)
        if tier_first:
            # first answer without waiting: the transform runs on the arrays at once (the NumPy
            # tier, on the unrolled trace); its loops are rolled and its graph is built,
            # optimised and compiled in the background
            drawn, self.last_draws = rng.perform(graph.draws, sig, draws)
            values = [sig.leaves[i] for i in sig.traced] + drawn + list(extra)
            background = backend.config.compile == "background"
            pending = Pending(stage, counted=background, reroll=lambda g: self._build(g, sig, out_tree)[0])
            outs = pending(values)
            if background and self.lazy_build:
                pending.deferred = True  # built when this signature is called again
            elif background:  # after the first result: the thread would slow it
                pending.build(first_args=values)
            stage.executor = rng.Drawing(pending, graph.draws, len(sig.traced)) if graph.draws else pending
            self._keep(key, stage)
            self.last = None
            return (outs[:-1] if guarded else outs), meta, sig
        stage.run_transform()
        drawn, self.last_draws = rng.perform(graph.draws, sig, draws)
        values = [sig.leaves[i] for i in sig.traced] + drawn + list(captured) + list(extra)
        if nested or captured or isinstance(graph.draws, rng.Retraced):  # Retraced: traced again every call
            stage.inlined = True
            env = replay(stage.transformed, values)
            self.last = None
            outs = [env[o.id] for o in stage.transformed.outputs]
            if guarded:  # the enclosing trace assumes what this one did
                outs, checks = outs[:-1], outs[-1]
                _enclosing_guard(checks, graph.guards)
            return outs, meta, sig
        stage.run_passes()
        with stage.timed("backend", profiled=False):  # fusion, codegen, kernel import: phases of their own
            compiled = backend.compile(stage.optimized, stage.target, stage.labels)
        stage.executor = rng.Drawing(compiled, graph.draws, len(sig.traced)) if graph.draws else compiled
        if key is not None:
            self._keep(key, stage)
        with stage.timed("first call"):
            outs = compiled(values)
        # callers install fast paths on `last` only when the compiled kernel serves (not on the NumPy tier)
        served = compiled.serving if key is not None and not graph.draws and not guarded else None
        self.last, self.last_extra = (None, served) if extra else (served, None)
        return (outs[:-1] if guarded else outs), meta, sig

    def _count_scalar_retrace(self, key, sig):
        """Count a trace whose key differs from a kept stage's only in integer/bool values; at
        SCALAR_RETRACES of them, warn once (naming the arguments) and build lazily from then on."""
        blind = _scalar_blind(key[0])
        earlier = next((k for k in reversed(self.stages) if k[1:] == key[1:] and _scalar_blind(k[0]) == blind), None)
        if earlier is None:
            return
        self.scalar_retraces += 1
        if self.scalar_retraces != SCALAR_RETRACES:
            return
        self.lazy_build = True
        names = _parameter_names(self.fun, len(sig.trees))
        changed = sorted({sig.owner[i] for i, (a, b) in enumerate(zip(key[0][1], earlier[0][1])) if a != b})
        shown = ", ".join(f"`{names[p]}`" for p in changed) or "an integer argument"
        warnings.warn(
            f"jitad: {self.name} of `{getattr(self.fun, '__name__', 'function')}` was traced again "
            f"{SCALAR_RETRACES} times because the value of {shown} changed: Python ints and bools (and "
            "NumPy integers) are fixed values of a trace (they may set shapes, loop counts, indices), so "
            "each new value traces the function again and runs it on the NumPy executor; a compiled "
            "kernel serves only values that come again. If the value only enters the arithmetic, pass "
            "it as an array (np.asarray(i) or float(i)) so it is traced as a value.",
            RuntimeWarning, stacklevel=4)

    def _keep(self, key, stage):
        """Cache `stage` for signature `key`; a guarded one joins the specialisations of `key`.
        Beyond STAGE_LIMIT signatures the oldest goes."""
        if key not in self.stages and len(self.stages) >= STAGE_LIMIT:
            oldest = next(iter(self.stages))
            del self.stages[oldest]
            self.variants.pop(oldest, None)
        self.stages[key] = stage
        if stage.graph.guards:
            self.variants.setdefault(key, []).append(stage)


def _enclosing_guard(checks, assumed):
    """A transform inlined into an enclosing trace (`checks`: the tracer of its guards' vector)
    makes the enclosing trace assume what it did: every one of its guards holds."""
    builder = ir.current_builder()
    if not ir.is_tracer(checks) or builder is None:
        if not np.all(checks):
            raise RuntimeError("jitad: a nested transform's guards do not hold for the values it traced")
        return
    builder.guards.append(guards.Guard(checks.node, "value", np.ones(len(assumed), bool),
                                       "; ".join(sorted({g.where for g in assumed}))))


class Transforms(dict):
    """A function's table of transforms (in its `__dict__`, see transform_of). It pickles empty: a
    function pickled by value (cloudpickle: a lambda, a closure, a function of `__main__` or a
    notebook, sent to a Dask worker) carries no stages and locks; where it lands it gets its own."""

    def __init__(self, owner=None):
        super().__init__()
        self.owner = owner

    def __reduce__(self):
        return Transforms, ()


def transform_of(fun, key, make):
    """The transform `key` of `fun` (made by `make()` the first time): jitad's cache of transforms.

    It is a table kept on the user's function, so it lives as long as the function. Only Python
    functions and jitad's own transformed functions (`keeps_transforms`, as api.Transformed) carry one; other callables (ufuncs, bound methods, objects jitad does not own)
    get `make()` each time, and the caller keeps it (as `jitad.grad(np.sin)` does).
    """
    if not isinstance(fun, types.FunctionType) and not getattr(type(fun), "keeps_transforms", False):
        return make()
    table = fun.__dict__.get("_jitad_transforms")
    # functools.wraps copies __dict__, so a wrapper (grad's grad_fun) starts out holding the
    # table of the function it wraps: it gets its own, or jvp(grad(f)) would find jvp(f)
    if not isinstance(table, Transforms) or table.owner != id(fun):
        table = fun._jitad_transforms = Transforms(id(fun))
    found = table.get(key)
    if found is None:
        found = table[key] = make()
    return found


# --- the NumPy tier and the background build ----------------------------------------------------
def run_eagerly(body, args):
    """A transform's body run on concrete arrays: each primitive's NumPy implementation, op by
    op (no graph), as autograd would. Outputs that are inputs are copies (callers own them)."""
    with quiet_folding(), eager_selects():
        outs = body(*args)
    ids = {id(a) for a in args}
    return [np.array(o) if id(o) in ids else o for o in outs]


def _as_arrays(args, avals):
    """The NumPy tier's inputs as the graph types them: a Python number argument becomes a 0-d
    array of its input's dtype (the derivative rules read .dtype of their inputs; the compiled and
    reference executors convert the same way)."""
    if all(isinstance(a, (np.ndarray, np.generic)) for a in args):
        return args
    return [a if isinstance(a, (np.ndarray, np.generic)) or aval is None else np.asarray(a, aval[1])
            for a, aval in zip(args, list(avals) + [None] * (len(args) - len(avals)))]


class Pending:
    """A stage whose graph is being built: calls run its body eagerly (`run_eagerly`, the NumPy
    tier) while a background thread traces the transformed graph, optimises it and hands it to
    the backend (which compiles it in the worker process, `cache.TieredGraph`), recording each
    step on the stage; then the backend's executor takes over. Without `build`
    (compile="off") the body always runs eagerly.

    The thread only traces jitad's own rules (never user code) into a builder of its own
    (builders are per thread); a failure leaves the function on the NumPy tier with a warning.
    """

    def __init__(self, stage, counted=True, reroll=None):
        self.stage = stage
        self.body = stage.body
        self.reroll = reroll  # graph -> the transform's body over it: for the rolled graph
        self.counted = counted  # NumPy-tier calls are counted while a compiled form is on its way
        self.executor = None
        self.thread = None
        self.deferred = False  # True: build at the next call (the transform builds lazily)
        self.done = threading.Event()

    def build(self, first_args=None):
        """Build the compiled form in the background thread (for the types of `first_args`)."""
        self.thread = _builder()
        _build_jobs.put((self, first_args))

    def _run(self, first_args):
        # the compile worker starts (and imports Numba) while this thread builds the kernel's source:
        # from here, after the first result, not before the trace (starting a thread on the caller's
        # made it wait a scheduling quantum or two: ~5-9 ms of a 20-50 ms first call)
        worker.warm()
        try:
            self._build(first_args)
        finally:
            self.done.set()

    def _build(self, first_args):
        stage = self.stage
        try:
            rolled = rolling.roll(stage.graph) if self.reroll is not None else stage.graph
            if rolled is not stage.graph:  # the compiled form runs the loops as loops
                stage.body = self.reroll(rolled)
                stage.avals = [(n.shape, n.dtype) for n in rolled.inputs] + list(stage.extra_avals)
                stage.graph = rolled
            stage.run_transform()
            stage.run_passes()
            with stage.timed("backend", profiled=False):
                executor = backend.compile(stage.optimized, stage.target, stage.labels)
            if first_args is not None and hasattr(executor, "start"):
                executor.start(first_args)  # the worker starts on the kernel for the first call's types
            self.executor = executor  # (before the preload: the kernel serves even if a preload fails)
            if first_args is not None and hasattr(executor, "start"):
                _preload(executor)  # loading its kernel needs Numba and jitad's helper kernels here
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
        outs = run_eagerly(self.body, _as_arrays(args, self.stage.avals))
        if self.deferred:  # called again: now the compiled form is worth building
            self.deferred = False
            self.build(first_args=list(args))
        return outs


def _preload(executor):
    """Import, while the worker compiles, what loading the kernel will import in this process:
    Numba and the kernel modules its source calls (K, KL, KB), which load their cached helpers."""
    import importlib
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target
    with global_compiler_lock:  # Numba's first load fills its typing and target registries (~0.5 s)
        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()
    sources = [getattr(executor, "source", None) or ""]
    split = getattr(executor, "split", None)
    if split is not None:
        sources += [split.source, *split.nests]
    text = "\n".join(sources)
    for module in sorted(set(re.findall(r"^from jitad\.backend import (\w+) as \w+$", text, re.M))):
        importlib.import_module(f"jitad.backend.{module}")


_build_jobs = queue.Queue()
_build_thread = None
_build_lock = threading.Lock()


def _builder():
    """The one background thread that builds stages' compiled forms, in order. Started once,
    with the low-level `_thread` API: `Thread.start` would wait until the new thread runs,
    which on a busy machine costs the caller a scheduling quantum. Like a daemon thread, it
    does not keep the interpreter alive."""
    global _build_thread
    with _build_lock:
        if _build_thread is None:
            _build_thread = _thread.start_new_thread(_build_forever, ())
        return _build_thread


def _build_forever():
    while True:
        pending, first_args = _build_jobs.get()
        try:
            pending._run(first_args)
        except BaseException:  # noqa: BLE001 -- _run warns; the thread serves the next job
            pass
