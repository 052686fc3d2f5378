"""Random draws happen at call time, from the generator and in the order NumPy would use.

jitad traces a function once per input signature and then reruns the compiled graph, so a number
drawn from `np.random` while tracing would be frozen into the graph. Instead, while jitad traces a
user function (`staging.trace_user`), each draw is *recorded*: it becomes an input of the graph (after
the traced arguments), described by a `Draw` (which generator, which method, the concrete
arguments, the shape and dtype of the result). Every call then performs the recorded draws in
order, on the real generator with the real arguments, and passes the values to the kernel
(`perform`, `Drawing`). So a seeded program gives the same numbers under jitad as without it, two
calls draw different numbers, and the generators end in the same state as after plain NumPy.
A nested transform's draws become draws of the enclosing trace; the sweeps of one Jacobian and
both halves of a `vjp` reuse one set of draws (`Transform.last_draws`, `Transform.run(draws=...)`).

What is intercepted, only while a user function is traced (a `_Scope` is open):

* the legacy functions `np.random.<name>` (the methods of NumPy's global RandomState, and `seed`,
  `ranf`, `sample`) and the constructors `np.random.default_rng`, `RandomState`, `Generator` and
  the bit generators: these module attributes are replaced by recording versions (`isinstance`
  against the classes keeps working). A generator created inside the function is created again
  at every call, as NumPy would;
* Generator / RandomState objects the function can reach -- its closure cells, the globals and
  default arguments it names, the attributes it names of `self` and of the modules, objects and
  classes it names, the same inside the functions it names (to depth 3), generator arguments,
  and bound methods of generators held in such variables (`from numpy.random import randn`) --
  are swapped for recording proxies (subclasses of the real types sharing their bit generator)
  and put back afterwards, also on errors. A draw from a variable is made at call time from
  whatever generator the variable holds then; a generator argument may differ between calls.

Draws whose parameters are traced are rewritten as a standard draw and NumPy operations (the
reparameterisation trick), with exactly NumPy's arithmetic and use of the stream, so they give
NumPy's numbers: normal = loc + scale * standard_normal, uniform = low + (high - low) * random,
exponential = scale * standard_exponential, lognormal = exp(mean + sigma * standard_normal);
`choice` and `permutation` of a traced array index it with a drawn index array. Other draws with
traced parameters raise `RandomDrawError`.

What cannot be recorded is never frozen: a draw jitad did not intercept (seen as a change of the
global RandomState or of a generator it watches: ones in lists, tuples and dicts it reaches, in a
`functools.partial`), `shuffle` of a concrete array, `get_state`, `bytes`, `spawn`, or a traced error
(a Python `if` on a drawn value, a drawn size) in a function that draws make jitad restore the
generators and trace that function again on every call with the draws made for real
(`RandomRetraceWarning`, once). Intercepted draws are remembered there too, so Jacobian sweeps and
vjp halves still agree.

Limits: generators jitad neither reaches nor watches (one more than three references away, one
created through an alias bound before tracing like `from numpy.random import RandomState`) are drawn
from while tracing and frozen;
a draw that only takes the legacy generator's cached second Gaussian is not seen; draws inside
custom_vjp / custom_jvp functions raise `RandomDrawError` (their rules run on real arrays); a
proxy that escapes the trace (stored in a global by the function) draws from the trace-time
generator; a `staging.Transform` remembers its latest draws, so one transform is not for several threads.
"""
import contextlib
import copy
import functools
import inspect
import os
import sys
import types
import warnings
import weakref

import numpy as np
import optree

from jitad import ir
from jitad.errors import ConcretizationError, JitadError, UnsupportedOperationError, _where
from jitad.ir import is_tracer
from jitad.pytrees import tree_flatten, tree_leaves, tree_map

_Generator, _RandomState = np.random.Generator, np.random.RandomState
_MT19937 = np.random.MT19937
GENERATOR_TYPES = (_Generator, _RandomState)
_mtrand = np.random.mtrand


class RandomDrawError(UnsupportedOperationError):
    """A random draw jitad cannot make at call time: traced parameters it cannot reparameterise."""

    def __init__(self, call, detail):
        JitadError.__init__(
            self,
            f"jitad cannot draw `{call}(...)` {detail}{_where()}. jitad makes random draws at call time and "
            "differentiates through them by reparameterisation: normal, uniform, exponential and lognormal "
            "accept traced parameters (as loc + scale * standard_normal(size) and the like), and choice and "
            "permutation accept a traced array. For other draws make the parameters concrete (a closure "
            "constant or a Python int, not a float argument of the function), or draw the samples outside "
            "the function and pass them in as an argument.")
        self.name = call


class RandomRetraceWarning(UserWarning):
    """A function's random draws cannot be recorded as graph inputs: jitad traces it on every call."""


class Retrace(BaseException):
    """Raised out of a trace whose draws cannot be recorded; the outermost trace retries per call.

    A BaseException, so that user code (`except Exception`) and jitad's own fallbacks let it pass."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Retraced(tuple):
    """`graph.draws` of a trace made in the per-call fallback: the values its intercepted draws took."""


# --- what a recorded draw reads from: sources ----------------------------------------------------
class _Legacy:
    """NumPy's global RandomState, through the `np.random.<name>` functions."""
    kind = "legacy"
    label = "np.random"

    @property
    def live(self):
        return _mtrand._rand

    def resolve(self, ctx):
        return _mtrand  # the original module functions (np.random.seed is not a RandomState method)

    def translate(self, tr):
        return self


LEGACY = _Legacy()


def _kind(obj):
    return "generator" if isinstance(obj, _Generator) else "legacy"


class _Held:
    """A generator held in a variable (closure cell, global, attribute, default argument):
    read again at every call, so rebinding the variable rebinds the draws."""

    def __init__(self, label, get, live):
        self.label, self.get, self.live, self.kind = label, get, live, _kind(live)

    def resolve(self, ctx):
        if ctx.live:
            return self.live
        try:
            obj = _unwrap(self.get())
        except (KeyError, AttributeError, ValueError, IndexError):
            obj = None
        if not isinstance(obj, GENERATOR_TYPES):
            raise JitadError(f"`{self.label}` held a random generator when jitad traced the function that "
                             f"draws from it, but now holds {type(obj).__name__}: make it a generator again")
        return obj

    def translate(self, tr):
        return self


class _Arg:
    """A generator passed as an argument (leaf `index` of the flattened arguments)."""

    def __init__(self, index, live):
        self.index, self.live, self.kind = index, live, _kind(live)
        self.label = "a generator argument"

    def resolve(self, ctx):
        return self.live if ctx.live else _unwrap(ctx.sig.leaves[self.index])

    def translate(self, tr):
        leaf = tr.sig.leaves[self.index]
        return _source_of(leaf) if isinstance(leaf, _PROXIES) else _Fixed(leaf)


class _Fixed:
    """One generator object (a keyword argument, one met inside a nested trace)."""

    def __init__(self, obj):
        self.live = self.obj = _unwrap(obj)
        self.kind = _kind(self.live)
        self.label = "a generator"

    def resolve(self, ctx):
        return self.obj

    def translate(self, tr):
        return self


class _Created:
    """A generator or bit generator the function creates (`default_rng(0)` inside it): every call
    creates its own, like NumPy. `args` may hold other `_Created` (Generator(PCG64(0)))."""

    def __init__(self, scope, ctor, args, kwargs, live):
        self.scope, self.ctor, self.args, self.kwargs, self.live = scope, ctor, args, kwargs, live
        self.kind = _kind(live)
        self.label = f"np.random.{getattr(ctor, '__name__', 'generator')}(...)"

    def resolve(self, ctx):
        if ctx.live:
            return self.live
        obj = ctx.memo.get(self)
        if obj is None:
            args = [a.resolve(ctx) if isinstance(a, _Created) else a for a in self.args]
            kwargs = {k: v.resolve(ctx) if isinstance(v, _Created) else v for k, v in self.kwargs.items()}
            obj = ctx.memo[self] = self.ctor(*args, **kwargs)
        return obj

    def translate(self, tr):
        if self.scope.active:  # created by a trace still open: the same object
            return self
        new = tr.memo.get(self)
        if new is None:  # created in a nested trace that has ended: created by the enclosing one
            args = tuple(a.translate(tr) if isinstance(a, _Created) else a for a in self.args)
            kwargs = {k: v.translate(tr) if isinstance(v, _Created) else v for k, v in self.kwargs.items()}
            new = tr.memo[self] = _Created(tr.scope, self.ctor, args, kwargs, self.live)
        return new


class _CallContext:
    """Resolves sources at call time: the generators of this call (sig), created ones made afresh."""
    live = False

    def __init__(self, sig):
        self.sig, self.memo = sig, {}


class _LiveContext:
    """Resolves sources to the generators as they are while tracing (the per-call fallback)."""
    live = True
    sig = None


_LIVE = _LiveContext()


class _Translation:
    """Moves the records of a finished nested trace into the enclosing one (`scope`)."""

    def __init__(self, scope, sig):
        self.scope, self.sig, self.memo = scope, sig, {}


# --- records --------------------------------------------------------------------------------------
class Draw:
    """One draw: `source.method(*args, **kwargs)`, a graph input of `shape` and `dtype`."""

    def __init__(self, source, method, args, kwargs, shape, dtype):
        self.source, self.method, self.args, self.kwargs = source, method, args, kwargs
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def perform(self, ctx):
        value = np.asarray(getattr(self.source.resolve(ctx), self.method)(*self.args, **self.kwargs))
        if value.shape != self.shape:
            raise JitadError(f"`{self.source.label}.{self.method}` drew an array of shape {value.shape} at "
                             f"call time but of shape {self.shape} when jitad traced it")
        if value.dtype != self.dtype:
            value = value.astype(self.dtype)
        return value if value.ndim else value[()]

    def translate(self, tr):
        return Draw(self.source.translate(tr), self.method, self.args, self.kwargs, self.shape, self.dtype)

    def __repr__(self):
        return f"Draw({self.source.label}.{self.method}, {self.dtype.name}{list(self.shape)})"


class Effect:
    """A call that changes a generator without drawing (`np.random.seed(0)` inside the function)."""

    def __init__(self, source, method, args, kwargs):
        self.source, self.method, self.args, self.kwargs = source, method, args, kwargs

    def perform(self, ctx):
        getattr(self.source.resolve(ctx), self.method)(*self.args, **self.kwargs)

    def translate(self, tr):
        return Effect(self.source.translate(tr), self.method, self.args, self.kwargs)

    def __repr__(self):
        return f"Effect({self.source.label}.{self.method})"


# --- generator states: detecting draws jitad did not see -----------------------------------------
def _state(obj):
    if isinstance(obj, _RandomState):
        return obj.get_state(legacy=False)
    if isinstance(obj, _Generator):
        return obj.bit_generator.state
    return obj.state  # a bit generator


def _set_state(obj, state):
    if isinstance(obj, _RandomState):
        obj.set_state(state)
    elif isinstance(obj, _Generator):
        obj.bit_generator.state = state
    else:
        obj.state = state


_mt_view = [None, None]  # NumPy's global bit generator and a uint32 view of its MT19937 key and pos


def _fingerprint(obj):
    """What tells whether `obj` was drawn from: its state; for NumPy's global RandomState (checked on
    every trace) the raw MT19937 key and position, read without building the state dict (0.5 us,
    not 60). It misses a draw that only takes the cached second Gaussian of the legacy generator."""
    if obj is not _mtrand._rand:
        return _state(obj)
    bg = obj._bit_generator
    if _mt_view[0] is not bg:  # holding `bg` keeps the memory the view reads alive
        view = None
        if type(bg) is _MT19937:
            try:
                import ctypes
                view = np.ctypeslib.as_array((ctypes.c_uint32 * 625).from_address(bg.ctypes.state_address))
                state = bg.state["state"]
                if not (np.array_equal(view[:624], state["key"]) and int(view[624]) == state["pos"]):
                    view = None  # not the layout this expects
            except Exception:  # noqa: BLE001 -- no ctypes interface: read the state dict instead
                view = None
        _mt_view[:] = [bg, view]
    view = _mt_view[1]
    return view.tobytes() if view is not None else _state(obj)


def _same(a, b):
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return a == b


# --- the recording scope ------------------------------------------------------------------------------
_scopes = []        # open scopes (and `_Forbidden` markers), innermost last
_concrete = 0       # > 0 while tracing in the per-call fallback: draws are made for real
# in the fallback: "record" lists the values the intercepted draws handed out, in order; "queue" (or
# "local", for one nested transform) hands out the values of an earlier run again instead of drawing
_replay = None
_patch_depth = 0

_IN_PLACE = {"shuffle"}
_UNRECORDABLE = {"get_state", "bytes", "spawn"}
_EFFECTS = {"seed", "set_state"}
_LEGACY_ALIASES = {"ranf": "random_sample", "sample": "random_sample"}
# method -> (parameter names and defaults, standard draw, how the draw is built from it)
_REPARAMETERISED = {
    "normal": ((("loc", 0.0), ("scale", 1.0)), "standard_normal", lambda loc, scale, z: loc + scale * z),
    "uniform": ((("low", 0.0), ("high", 1.0)), "random", lambda low, high, u: low + (high - low) * u),
    "exponential": ((("scale", 1.0),), "standard_exponential", lambda scale, e: scale * e),
    "lognormal": ((("mean", 0.0), ("sigma", 1.0)), "standard_normal",
                  lambda mean, sigma, z: np.exp(mean + sigma * z)),
}
_NONNEGATIVE = {"scale", "sigma"}


def _current():
    return _scopes[-1] if _scopes else None


def _unwrap(obj):
    return obj._jitad_real if isinstance(obj, _PROXIES) else obj


def _source_of(proxy):
    source = proxy._jitad_source
    if isinstance(source, _Created) and not source.scope.active:
        return _Fixed(proxy._jitad_real)  # a proxy that escaped the trace that created it
    return source


def _has_tracer(x):
    if is_tracer(x):
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_tracer(v) for v in x)
    if isinstance(x, dict):
        return any(_has_tracer(v) for v in x.values())
    return False


def _bind(call, params, args, kwargs):
    names = [n for n, _ in params]
    if len(args) > len(names):
        raise TypeError(f"{call}() takes at most {len(names)} positional arguments ({len(args)} given)")
    values = dict(params)
    values.update(zip(names, args))
    for k, v in kwargs.items():
        if k not in values:
            raise TypeError(f"{call}() got an unexpected keyword argument '{k}'")
        values[k] = v
    return values


def _draw_shape(size, params):
    """The shape NumPy gives a draw of `size` with (broadcast) parameter arrays `params`."""
    shape = np.broadcast_shapes(*[tuple(p.shape) if is_tracer(p) else np.shape(p) for p in params])
    if size is None:
        return shape
    size = tuple(int(s) for s in size) if np.iterable(size) else (int(size),)
    if np.broadcast_shapes(size, shape) != size:
        raise ValueError(f"shape mismatch: parameters of shape {shape} cannot be broadcast to size {size}")
    return size


def _float64(x):
    if is_tracer(x):
        return x if x.dtype == np.float64 else x.astype(np.float64)
    return np.asarray(x, np.float64)


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _take(x, index, axis):
    return x[(slice(None),) * axis + (index,)]


class _Scope:
    """Records the draws of one trace of a user function (see the module docstring)."""

    def __init__(self, builder, concrete):
        self.builder, self.concrete = builder, concrete
        self.specs = []
        self.active = True
        self._undo = []       # puts back what was swapped for proxies
        self._proxies = {}    # id(real generator) -> its proxy
        self._watched = {}    # id(object) -> (object, state when first seen)
        self._shadows = {}    # source -> a copy of its generator that shape probes draw from
        self._keep = []       # objects created while tracing, alive as long as the scope
        self._created = {}    # id(object created while tracing) -> its _Created
        self._arg_proxies = {}
        self._failed = None   # why this trace cannot record its draws (kept if user code swallows Retrace)
        self._names = set()   # the names the scanned code uses
        self._seen = set()

    @property
    def draws(self):
        return Retraced() if self.concrete else tuple(self.specs)

    # finding and swapping generators -----------------------------------------------------------
    def watch(self, obj):
        if id(obj) not in self._watched and not self.concrete:
            self._watched[id(obj)] = (obj, _state(obj), _fingerprint(obj))

    def _adopt(self, real, label, get, put):
        proxy = self._proxies.get(id(real))
        if proxy is None:
            proxy = self._proxies[id(real)] = _make_proxy(real, _Held(label, get, real))
            self.watch(real)
        put(proxy)
        # put back, unless the function itself rebound the variable (global g; g = default_rng(1))
        self._undo.append(lambda: get() is proxy and put(real))

    def _adopt_method(self, method, label, get, put):
        """A bound method of a generator held in a variable (`draw = rng.normal`, or a legacy function
        imported before tracing: `from numpy.random import randn`): the same method of its proxy."""
        real = method.__self__
        proxy = self._proxies.get(id(real))
        if proxy is None:
            proxy = self._proxies[id(real)] = _make_proxy(real, _Held(label, lambda: get().__self__, real))
            self.watch(real)
        replacement = getattr(proxy, method.__name__)
        put(replacement)
        self._undo.append(lambda: get() is replacement and put(method))

    def _visit(self, value, label, get, put, names, depth, seen):
        if isinstance(value, _PROXIES):
            return
        if isinstance(value, GENERATOR_TYPES):
            self._adopt(value, label, get, put)
        elif isinstance(getattr(value, "__self__", None), GENERATOR_TYPES) and \
                not isinstance(value.__self__, _PROXIES) and getattr(value, "__name__", None) in _INTERCEPTED:
            if put is None:  # passed as an argument (f(x, rng.normal)): cannot be swapped, so watched
                self.watch(value.__self__)
            else:
                self._adopt_method(value, label, get, put)
        elif isinstance(value, (types.FunctionType, types.MethodType, functools.partial)):
            self.scan(value, depth + 1, seen)
        elif isinstance(value, (list, tuple, dict)):  # not swapped: watched, so a draw from one falls back
            for v in (value.values() if isinstance(value, dict) else value):
                if isinstance(v, GENERATOR_TYPES) and not isinstance(v, _PROXIES):
                    self.watch(v)
        elif isinstance(value, types.ModuleType):
            if not _library_module(value):
                self._visit_attrs(value, names, depth + 1, seen)
        elif isinstance(value, type) or hasattr(value, "__dict__"):
            module = getattr(value, "__module__", None) if isinstance(value, type) else type(value).__module__
            if not _library_module(sys.modules.get(module or "")):
                self._visit_attrs(value, names, depth + 1, seen)

    def _visit_attrs(self, obj, names, depth, seen):
        """Generators in attributes of `obj` (an instance, class or module) that the code names."""
        if depth > 3 or id(obj) in seen:
            return
        seen.add(id(obj))
        holders = [obj] if isinstance(obj, (type, types.ModuleType)) else [obj, type(obj)]
        for holder in holders:
            attrs = getattr(holder, "__dict__", None)
            if not isinstance(attrs, (dict, types.MappingProxyType)):
                continue
            for name in names & attrs.keys():
                value = attrs[name]
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                self._visit(value, f"{getattr(holder, '__name__', type(holder).__name__)}.{name}",
                            functools.partial(getattr, holder, name), functools.partial(setattr, holder, name),
                            names, depth, seen)

    def scan(self, fun, depth=0, seen=None):
        """Swap the generators `fun` can reach for proxies (see the module docstring)."""
        seen = set() if seen is None else seen
        if depth > 3 or id(fun) in seen:
            return
        seen.add(id(fun))
        if isinstance(fun, functools.partial):
            for v in (*fun.args, *fun.keywords.values()):
                if isinstance(v, GENERATOR_TYPES) and not isinstance(v, _PROXIES):
                    self.watch(v)  # a partial's arguments cannot be swapped
            self.scan(fun.func, depth, seen)
            return
        if isinstance(fun, types.MethodType):
            self._scan_function(fun.__func__, depth, seen, owner=fun.__self__)
            return
        if isinstance(fun, types.FunctionType):
            self._scan_function(fun, depth, seen)
            return
        wrapped = getattr(fun, "__dict__", {}).get("__wrapped__")  # jitad.jacobian(f), custom_vjp(f), ...
        if wrapped is not None:
            self.scan(wrapped, depth, seen)
        call = getattr(type(fun), "__call__", None)
        if isinstance(call, types.FunctionType) and not _library_code(call.__code__):
            self._scan_function(call, depth, seen, owner=fun)

    def _scan_function(self, fn, depth, seen, owner=None):
        wrapped = fn.__dict__.get("__wrapped__")  # grad(f), jit(f), checkpoint(f): functools.wraps
        if wrapped is not None:
            self.scan(wrapped, depth, seen)
        code = fn.__code__
        if _library_code(code):
            return
        names = _names(code)
        self._names |= names
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # not assigned yet
                continue
            self._visit(value, name, lambda cell=cell: cell.cell_contents,
                        lambda v, cell=cell: setattr(cell, "cell_contents", v), names, depth, seen)
        g = fn.__globals__
        for name in names & g.keys():
            self._visit(g[name], name, functools.partial(g.__getitem__, name),
                        functools.partial(g.__setitem__, name), names, depth, seen)
        for i, value in enumerate(fn.__defaults__ or ()):
            if isinstance(value, GENERATOR_TYPES):
                def put(v, fn=fn, i=i):
                    d = list(fn.__defaults__)
                    d[i] = v
                    fn.__defaults__ = tuple(d)
                self._visit(value, fn.__code__.co_varnames[fn.__code__.co_argcount - len(fn.__defaults__) + i],
                            lambda fn=fn, i=i: fn.__defaults__[i], put,
                            names, depth, seen)
        kwdefaults = fn.__kwdefaults__ or {}
        for name, value in kwdefaults.items():
            if isinstance(value, GENERATOR_TYPES):
                self._visit(value, name, functools.partial(kwdefaults.__getitem__, name),
                            functools.partial(kwdefaults.__setitem__, name), names, depth, seen)
        if owner is not None:
            self._visit_attrs(owner, names, depth + 1, seen)

    def open(self, fun, sig, kwargs):
        if not any(isinstance(s, _Scope) for s in _scopes if s is not self):  # the outermost trace watches
            self.watch(_mtrand._rand)  # the global state for all
        self.scan(fun, seen=self._seen)
        arguments = list(enumerate(sig.leaves)) + [(None, v) for v in tree_leaves(kwargs)]
        for i, leaf in arguments:
            if isinstance(leaf, GENERATOR_TYPES) and not isinstance(leaf, _PROXIES):
                if i is not None:
                    self._arg_proxies[i] = _make_proxy(leaf, _Arg(i, leaf))
                    self.watch(leaf)
            elif not isinstance(leaf, (np.ndarray, np.generic, int, float, complex, str, bytes)) and \
                    not is_tracer(leaf):  # a callable or an object with a generator attribute (model.rng)
                self._visit(leaf, "an argument", None, None, self._names, 0, self._seen)

    def arguments(self, args):
        """The user's arguments with generator leaves replaced by proxies."""
        if not self._arg_proxies:
            return args
        leaves, tree = tree_flatten(list(args))
        for i, proxy in self._arg_proxies.items():
            leaves[i] = proxy
        return optree.tree_unflatten(tree, leaves)

    def keywords(self, kwargs):
        if not kwargs:
            return kwargs
        return tree_map(
            lambda v: _make_proxy(v, _Fixed(v)) if isinstance(v, GENERATOR_TYPES)
            and not isinstance(v, _PROXIES) else v, kwargs)

    def close(self, exc):
        """Put everything back. Returns the reason to retrace per call, or None."""
        for undo in reversed(self._undo):
            undo()
        self.active = False
        watched = self._watched.values()
        # a compiled entry keeps its records, and records keep their scope (for `active`): not the rest
        self.builder = self._undo = self._proxies = self._watched = self._shadows = self._keep = None
        self._created = self._arg_proxies = None
        if self.concrete:
            return None
        changed = []
        for obj, state, fingerprint in watched:
            if not _same(_fingerprint(obj), fingerprint):
                changed.append(obj)
                _set_state(obj, state)  # a failed or abandoned trace draws nothing
        if isinstance(exc, Retrace):
            return None
        if self._failed:
            return self._failed
        if changed:
            what = "NumPy's global random state" if changed[0] is _mtrand._rand else "a random generator"
            return (f"{what} was drawn from in a way jitad did not intercept (a generator held in a "
                    "container, a function imported as `from numpy.random import ...`, a bit generator method, "
                    "or a library drawing for you)")
        if exc is not None and self.specs and not isinstance(exc, RandomDrawError) and (
                isinstance(exc, JitadError) or isinstance(exc.__cause__, JitadError)):
            return f"tracing it with its draws as traced values failed: {str(exc).splitlines()[0][:200]}"
        return None

    # the interception ------------------------------------------------------------------------------
    def _shadow(self, source):
        shadow = self._shadows.get(source)
        if shadow is None:
            shadow = self._shadows[source] = copy.deepcopy(source.live)
        return shadow

    def call(self, source, method, args, kwargs):
        """`source.method(*args, **kwargs)` called by the user's code while tracing."""
        call = f"{source.label}.{method}"
        traced = _has_tracer(args) or _has_tracer(kwargs)
        if method in _IN_PLACE or kwargs.get("out") is not None:
            if traced:
                raise RandomDrawError(call, "on a traced array: it writes into the array in place")
            return self._live(source, method, args, kwargs, f"`{call}` writes into an array in place")
        if method in _UNRECORDABLE:
            return self._live(source, method, args, kwargs, f"`{call}` cannot be recorded as a draw")
        if traced:
            return self._reparameterised(source, method, call, args, kwargs)
        if method in _EFFECTS:
            if self.concrete:
                if _replay["queue"] is None and _replay["local"] is None:  # not again when replaying
                    getattr(source.resolve(_LIVE), method)(*args, **kwargs)
                return None
            getattr(self._shadow(source), method)(*args, **kwargs)  # NumPy checks the arguments
            self.specs.append(Effect(source, method, args, kwargs))
            return None
        return self.draw(source, method, args, kwargs)

    def _live(self, source, method, args, kwargs, reason):
        if not self.concrete:
            self._failed = self._failed or reason
            raise Retrace(reason)
        return getattr(source.resolve(_LIVE), method)(*args, **kwargs)

    def draw(self, source, method, args, kwargs):
        """The value (a traced graph input) of one draw with concrete arguments."""
        if self.concrete:
            value = next(_replay["local"], None) if _replay["local"] is not None else None
            if value is not None:  # a value of this nested transform's earlier run (not the program's stream)
                return _copy(value)
            value = next(_replay["queue"], None) if _replay["queue"] is not None else None
            value = getattr(source.resolve(_LIVE), method)(*args, **kwargs) if value is None else _copy(value)
            _replay["record"].append(_copy(value))
            return value
        probe_method = _LEGACY_ALIASES.get(method, method) if source is LEGACY else method
        probe = getattr(self._shadow(source), probe_method)(*args, **kwargs)  # NumPy's own argument errors
        if not isinstance(probe, (np.ndarray, np.generic, int, float, bool)) or \
                np.asarray(probe).dtype.kind not in "fiub":
            self._failed = self._failed or f"`{source.label}.{method}` returns {type(probe).__name__} values"
            raise Retrace(self._failed)
        probe = np.asarray(probe)
        return self.add(Draw(source, method, args, kwargs, probe.shape, probe.dtype))

    def add(self, spec):
        if self.concrete:  # a record of a nested trace made before the fallback started: perform it now
            return spec.perform(_LIVE)
        self.specs.append(spec)
        if isinstance(spec, Draw):
            return self.builder.new_input(spec.shape, spec.dtype)
        return None

    def _reparameterised(self, source, method, call, args, kwargs):
        if method in _REPARAMETERISED:
            params, standard, build = _REPARAMETERISED[method]
            values = _bind(call, params + (("size", None),), args, kwargs)
            size = values.pop("size")
            if _has_tracer(size):
                raise ConcretizationError(f"A traced value as the size of `{call}`")
            for name, v in values.items():
                if name in _NONNEGATIVE and not _has_tracer(v) and np.any(np.asarray(v) < 0):
                    raise ValueError(f"{name} < 0")
            values = {k: _float64(v) for k, v in values.items()}
            shape = _draw_shape(size, values.values())
            if source.kind == "legacy" and standard == "random":
                standard = "random_sample"
            z = self.draw(source, standard, (shape if shape else None,), {})
            return build(*values.values(), z)
        if method in ("choice", "permutation"):
            return self._indexing(source, method, call, args, kwargs)
        traced = [k for k, v in _named(method, args, kwargs) if _has_tracer(v)]
        raise RandomDrawError(call, f"with traced {' and '.join(f'`{t}`' for t in traced) or 'arguments'}")

    def _indexing(self, source, method, call, args, kwargs):
        """choice / permutation of a traced array: the array indexed by a drawn index array."""
        generator = source.kind == "generator"
        if method == "choice":
            params = (("a", None), ("size", None), ("replace", True), ("p", None))
            params += (("axis", 0), ("shuffle", True)) if generator else ()
        else:
            params = (("x", None),) + ((("axis", 0),) if generator else ())
        values = _bind(call, params, args, kwargs)
        x = values.pop(params[0][0])
        axis = values.pop("axis", 0)
        if not is_tracer(x) or any(_has_tracer(v) for v in values.values()):
            traced = [k for k, v in values.items() if _has_tracer(v)]
            raise RandomDrawError(call, f"with traced {' and '.join(f'`{t}`' for t in traced)}")
        if x.ndim == 0:
            raise ConcretizationError(f"A traced population size in `{call}`")
        if not generator and method == "choice" and x.ndim != 1:
            raise ValueError("a must be 1-dimensional")
        axis = int(axis) % x.ndim
        if method == "choice":
            extra = {"shuffle": values["shuffle"]} if generator else {}
            index = self.draw(source, "choice", (x.shape[axis], values["size"], values["replace"], values["p"]),
                              extra)
        else:
            index = self.draw(source, "permutation", (x.shape[axis],), {})
        return _take(x, index, axis)

    def create(self, ctor, args, kwargs):
        """`np.random.default_rng(...)`, `RandomState(...)`, `PCG64(...)`, ... called while tracing."""
        name = f"np.random.{ctor.__name__}"
        if _has_tracer(args) or _has_tracer(kwargs):
            raise RandomDrawError(name, "with a traced seed")
        if ctor is _default_rng and args and isinstance(args[0], _Generator):  # default_rng(g) is g itself
            g = args[0]
            if isinstance(g, _PROXIES):
                return g
            self.watch(g)
            return _make_proxy(g, _Fixed(g))
        live = ctor(*[_unwrap(a) for a in args], **{k: _unwrap(v) for k, v in kwargs.items()})
        self._keep.append(live)
        entry = _Created(self, ctor, tuple(self._created.get(id(a), a) for a in args),
                         {k: self._created.get(id(v), v) for k, v in kwargs.items()}, live)
        self._created[id(live)] = entry
        self.watch(live)
        if isinstance(live, GENERATOR_TYPES):
            return _make_proxy(live, entry)
        return live  # a bit generator: Generator(it) finds its entry


class _Forbidden:
    """Marks a trace in which a draw is an error (the function of a custom_vjp / custom_jvp)."""
    concrete = False

    def __init__(self, what):
        self.what = what

    def _error(self, call):
        return RandomDrawError(call, f"inside {self.what}: its derivative rules run on real arrays, and jitad "
                                     "cannot give them the same numbers")

    def call(self, source, method, args, kwargs):
        raise self._error(f"{source.label}.{method}")

    def create(self, ctor, args, kwargs):
        live = ctor(*args, **kwargs)
        return _make_proxy(live, _Fixed(live)) if isinstance(live, GENERATOR_TYPES) else live

    def add(self, spec):
        raise self._error(f"{spec.source.label}.{spec.method}")


@contextlib.contextmanager
def forbidding(what):
    """No random draws while tracing `what` (a draw raises RandomDrawError)."""
    if not _scopes:  # nothing is intercepted outside a traced user function
        yield
        return
    _scopes.append(_Forbidden(what))
    try:
        yield
    finally:
        _scopes.pop()


def _names(code, acc=None):
    """The global and attribute names a code object and the functions nested in it use."""
    acc = set() if acc is None else acc
    acc.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _names(const, acc)
    return acc


_LIBRARY_DIRS = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (np, ir))
_LIBRARY_PACKAGES = {"numpy", "scipy", "numba", "optree", "jitad", "builtins", "llvmlite", "networkx"}


def _library_code(code):
    return os.path.abspath(code.co_filename).startswith(_LIBRARY_DIRS) or code.co_filename.startswith("<frozen")


def _library_module(module):
    if module is None:
        return True
    name = (getattr(module, "__name__", "") or "").partition(".")[0]
    return name in _LIBRARY_PACKAGES or name in sys.stdlib_module_names or not getattr(module, "__file__", None)


# --- proxies: Generator / RandomState subclasses whose methods record -------------------------------
def _proxy_method(name):
    def method(self, *args, **kwargs):
        scope = _current()
        if scope is None:  # a proxy that escaped its trace behaves as the generator it stands for
            return getattr(self._jitad_real, name)(*args, **kwargs)
        return scope.call(_source_of(self), name, args, kwargs)
    method.__name__ = name
    return method


def _proxy_class(base):
    methods = {name: _proxy_method(name) for name in dir(base)
               if not name.startswith("_") and callable(getattr(base, name))}
    methods["__repr__"] = lambda self: f"<jitad recording proxy of {self._jitad_real!r}>"
    return type(f"Recording{base.__name__}", (base,), methods)


_GeneratorProxy = _proxy_class(_Generator)
_RandomStateProxy = _proxy_class(_RandomState)
_PROXIES = (_GeneratorProxy, _RandomStateProxy)
_INTERCEPTED = {name for cls in _PROXIES for name in vars(cls) if not name.startswith("_")}


def _make_proxy(real, source):
    if isinstance(real, _Generator):
        proxy = _GeneratorProxy(real.bit_generator)
    else:
        proxy = _RandomStateProxy(real._bit_generator)
    proxy._jitad_real, proxy._jitad_source = real, source
    return proxy


def _named(method, args, kwargs):
    """(name, value) of a call's arguments, positional ones named by NumPy's signature when known."""
    try:
        names = [n for n in inspect.signature(getattr(_Generator, method)).parameters if n != "self"]
    except (ValueError, TypeError, AttributeError):
        names = []
    named = [(names[i] if i < len(names) else f"argument {i}", v) for i, v in enumerate(args)]
    return named + list(kwargs.items())


# --- patching np.random while a user function is traced ----------------------------------------------
_default_rng = np.random.default_rng
_LEGACY_NAMES = sorted({"seed", "ranf", "sample"} | {
    n for n in dir(np.random) if getattr(getattr(np.random, n), "__self__", None) is _mtrand._rand})
_CLASSES = [c for c in (_RandomState, _Generator, _MT19937, np.random.PCG64,
                        getattr(np.random, "PCG64DXSM", None), np.random.Philox, np.random.SFC64) if c is not None]


_JITAD_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _from_jitad():
    """Whether the caller of a patched np.random function is jitad itself (hutchinson_trace's own
    generator, say), which draws for real."""
    return sys._getframe(2).f_code.co_filename.startswith(_JITAD_DIR)


def _legacy_function(name):
    original = getattr(np.random, name)

    @functools.wraps(original)
    def draw(*args, **kwargs):
        scope = _current()
        if scope is None or _from_jitad():
            return original(*args, **kwargs)
        return scope.call(LEGACY, name, args, kwargs)
    return draw


def _constructor(ctor):
    def create(*args, **kwargs):
        scope = _current()
        if scope is None or _from_jitad():
            return ctor(*args, **kwargs)
        return scope.create(ctor, args, kwargs)
    return create


class _ConstructorMeta(type):
    """A stand-in for a generator class: calling it records, isinstance/issubclass see the real class."""

    def __call__(cls, *args, **kwargs):
        scope = _current()
        if scope is None or _from_jitad():
            return cls._jitad_real(*args, **kwargs)
        return scope.create(cls._jitad_real, args, kwargs)

    def __instancecheck__(cls, obj):
        return isinstance(obj, cls._jitad_real)

    def __subclasscheck__(cls, sub):
        return issubclass(sub, cls._jitad_real)


def _stand_in(real):
    return _ConstructorMeta(real.__name__, (), {"_jitad_real": real, "__doc__": real.__doc__,
                                                "__module__": real.__module__})


_ORIGINALS = {name: getattr(np.random, name) for name in _LEGACY_NAMES + ["default_rng"]}
_ORIGINALS.update({c.__name__: c for c in _CLASSES})
_PATCHES = {name: _legacy_function(name) for name in _LEGACY_NAMES}
_PATCHES["default_rng"] = functools.wraps(_default_rng)(_constructor(_default_rng))
_PATCHES.update({c.__name__: _stand_in(c) for c in _CLASSES})


@contextlib.contextmanager
def _patched():
    global _patch_depth
    if _patch_depth == 0:
        for name, value in _PATCHES.items():
            setattr(np.random, name, value)
    _patch_depth += 1
    try:
        yield
    finally:
        _patch_depth -= 1
        if _patch_depth == 0:
            for name, value in _ORIGINALS.items():
                setattr(np.random, name, value)


class recording:
    """Context of one trace of a user function (in `staging.trace_user`): `rec.arguments(args)` and
    `rec.keywords(kwargs)` are what the function is called with; `rec.draws` what it drew."""

    def __init__(self, fun, sig, kwargs):
        self.fun, self.sig, self.kwargs = fun, sig, kwargs

    def __enter__(self):
        self.scope = _Scope(ir.current_builder(), concrete=_concrete > 0)
        self._patches = _patched()
        self._patches.__enter__()
        _scopes.append(self.scope)
        try:
            self.scope.open(self.fun, self.sig, self.kwargs)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self.scope

    def __exit__(self, exc_type, exc, tb):
        try:
            reason = self.scope.close(exc)
        finally:
            _scopes.remove(self.scope)
            self._patches.__exit__(None, None, None)
        if reason is not None:
            raise Retrace(reason) from exc
        return False


# which (function, signature) pairs need the per-call fallback, so it is not tried again
_needs_retrace = weakref.WeakKeyDictionary()


def traced(fun, key, thunk, given=None):
    """Run `thunk` (a trace of `fun` that opens a `recording`); on `Retrace`, run it again with the
    draws made for real (the per-call fallback). Nested traces leave that to the outermost one."""
    global _concrete, _replay
    if _concrete:  # nested in the fallback: note the values this trace drew, or hand out `given` again
        saved, start = _replay["local"], len(_replay["record"])
        _replay["local"] = iter(given) if isinstance(given, Retraced) else None
        try:
            graph, captured = thunk()
        finally:
            _replay["local"] = saved
        graph.draws = given if isinstance(given, Retraced) else Retraced(_replay["record"][start:])
        return graph, captured
    if _scopes:
        return thunk()
    try:
        known = key is not None and key in _needs_retrace.get(fun, ())
    except TypeError:  # an unhashable or not weakly referenceable callable
        known = False
    reason = None
    if not known:
        try:
            return thunk()
        except Retrace as retrace:
            reason = retrace.reason
    _concrete += 1
    _replay = {"queue": iter(given) if isinstance(given, Retraced) else None, "local": None, "record": []}
    try:
        graph, captured = thunk()
        graph.draws = Retraced(_replay["record"])
    finally:
        _concrete -= 1
        _replay = None
    if reason is not None:
        warnings.warn(f"jitad traces `{getattr(fun, '__name__', fun)}` again on every call: {reason}. "
                      "This is correct, but slower than drawing from a compiled function.",
                      RandomRetraceWarning, stacklevel=4)
        if key is not None:
            with contextlib.suppress(TypeError):
                _needs_retrace.setdefault(fun, set()).add(key)
    return graph, captured


# --- at call time -----------------------------------------------------------------------------------
def perform(draws, sig, given=None):
    """The values of the graph inputs of `draws` for this call, and what to remember as
    `Transform.last_draws` so a later run of the same call can pass it back as `given`.

    Outside any trace the draws are made now, in order, from the real generators. Inside a
    trace (a nested transform), they become draws of the enclosing trace."""
    if isinstance(draws, Retraced):
        return [], draws
    if not draws:
        return [], ()
    if given is not None and not isinstance(given, Retraced) and \
            len(given) == sum(isinstance(spec, Draw) for spec in draws):
        return list(given), given
    if ir.builders():
        scope = _current()
        if scope is None:
            raise JitadError("a function that draws random numbers was transformed inside a trace that "
                             "jitad does not record draws for")
        tr = _Translation(scope, sig)
        values = [scope.add(spec.translate(tr)) for spec in draws]
    else:
        ctx = _CallContext(sig)
        values = [spec.perform(ctx) for spec in draws]
    values = [v for spec, v in zip(draws, values) if isinstance(spec, Draw)]
    return values, values


class Drawing:
    """A compiled entry of a function that draws: performs the draws, then runs the kernel."""
    serving = None  # never a fast path: every call must draw

    def __init__(self, kernel, draws, n_inputs):
        self.kernel, self.draws, self.n_inputs = kernel, draws, n_inputs

    def __call__(self, flat, sig, given=None, staged=None):
        values, memory = perform(self.draws, sig, given)
        if staged is not None:
            staged.last_draws = memory
        n = self.n_inputs
        return self.kernel(list(flat[:n]) + values + list(flat[n:]))
