"""SciPy functions reached through any object while jitad traces: their code swapped for a trampoline.

`linalg_ops.scipy_hooks` swaps the SciPy functions jitad implements on their modules and classes,
and `scipy_names` swaps the names bound to them before tracing. A function held somewhere else (a
dict `{"lse": logsumexp}`, an attribute `self.f = norm.logpdf`, a list) is still SciPy's own
function object. So, while the hooks are on, that object's `__code__` becomes a trampoline to the
same dispatcher: a call through any reference dispatches traced arguments to jitad and runs a copy
of SciPy's own code for concrete ones (other threads calling SciPy meanwhile get SciPy's values).
The code comes back when the outermost trace ends.

Only plain Python functions are swapped (not builtins or ufuncs, which jitad reaches through
`__array_ufunc__`). Builders that call SciPy's function themselves (odeint, solve_ivp) reach its
own code through `unswapped`.
"""
import types

_DISPATCH = {}  # key -> the dispatcher a trampoline calls
_OWN_CODE = {}  # id of a swapped function -> its own code, while swapped
_TRAMPOLINES = {}  # number of free variables -> the code of a trampoline with that many


def call(key, args, kwargs):
    """What every trampoline runs: the dispatcher of the function it stands in for."""
    return _DISPATCH[key](*args, **kwargs)


def _trampoline(free):
    """The code of `def f(*args, **kwargs): return call(key, args, kwargs)` with `free` free variables
    (a function's code can only be replaced by one with as many as its closure has cells). The key
    is read from the code's constants, replaced per function."""
    code = _TRAMPOLINES.get(free)
    if code is None:
        names = [f"_free{i}" for i in range(free)]
        lines = ["def outer():", *[f"    {name} = None" for name in names],
                 "    def trampoline(*args, **kwargs):",
                 *([f"        if False: ({', '.join(names)},)"] if names else []),
                 "        return __import__('jitad.frontend.scipy_code', fromlist=['call']).call("
                 "'__jitad_key__', args, kwargs)",
                 "    return trampoline"]
        namespace = {}
        exec("\n".join(lines), namespace)  # noqa: S102 (fixed source, no user input)
        code = namespace["outer"]().__code__
        assert len(code.co_freevars) == free
        _TRAMPOLINES[free] = code
    return code


def copy_of(function):
    """A new function object running `function`'s current code (SciPy's own, kept while it is swapped)."""
    copy = types.FunctionType(function.__code__, function.__globals__, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__dict__.update(function.__dict__)
    copy.__qualname__, copy.__module__, copy.__doc__ = function.__qualname__, function.__module__, function.__doc__
    return copy


def swappable(function, builder):
    return isinstance(function, types.FunctionType)


def unswapped(function):
    """`function` running SciPy's own code, also while its code is swapped (for the builders that call
    SciPy's function themselves, such as odeint's)."""
    code = _OWN_CODE.get(id(function))
    if code is None:
        return function
    copy = copy_of(function)
    copy.__code__ = code
    return copy


def _key(function):
    return f"{function.__module__}.{function.__qualname__}#{id(function)}"


def trampoline_for(function):
    """The code that stands in for `function`'s own (made once per function: `linalg_ops._hook_for`)."""
    code = _trampoline(len(function.__code__.co_freevars))
    key = _key(function)
    consts = tuple(key if c == "__jitad_key__" else c for c in code.co_consts)
    names = {"co_name": function.__code__.co_name, "co_filename": function.__code__.co_filename}
    if hasattr(code, "co_qualname"):  # Python >= 3.11
        names["co_qualname"] = function.__code__.co_qualname
    return code.replace(co_consts=consts, **names)


def swap(function, dispatcher, trampoline):
    """Make `function` (SciPy's own function object) run `dispatcher` through `trampoline`
    (`trampoline_for(function)`); returns what `restore` takes."""
    key = _key(function)
    saved = (function, function.__code__, key)
    _DISPATCH[key] = dispatcher
    _OWN_CODE[id(function)] = function.__code__
    function.__code__ = trampoline
    return saved


def restore(saved):
    for function, code, key in reversed(saved):
        function.__code__ = code
        _DISPATCH.pop(key, None)
        _OWN_CODE.pop(id(function), None)
