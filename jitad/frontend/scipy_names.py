"""Names bound to a hooked SciPy function before jitad traces.

While tracing, `linalg_ops.scipy_hooks` swaps the SciPy functions jitad implements on their
modules (`scipy.special.logsumexp`) and classes (`rv_continuous.logpdf`) for dispatchers. A
name bound earlier still holds SciPy's own function, which needs concrete arrays; the usual
ways programs bind them are swapped for the dispatchers too, for as long as the outermost
trace lasts, and put back after it:

* `from scipy.special import logsumexp` (a function),
* `logpdf = norm.logpdf`, `lp = multivariate_normal(m, S).logpdf` (a bound method),
* `lse = functools.partial(logsumexp, axis=1)` (a partial, rebuilt around the dispatcher),

held in the globals of any loaded module of the user's (one not installed in site-packages
nor part of the standard library: so the user's helper modules are reached, not only the
traced function's own; an environment with jax, torch or dask loaded holds thousands of
installed modules, and scanning them cost 10 ms per trace), in
the default arguments of those modules' functions, and in the traced function's closure cells
and defaults. A function reached only through another object (a dict, a list, an attribute
of an instance or a class) stays SciPy's own: `linalg_ops.foreign_call_error` names it and
the way out.
"""
import functools
import os
import sys
import sysconfig
import types

# modules never scanned: they do not call SciPy on traced values from names they bound
SKIPPED_ROOTS = frozenset(sys.stdlib_module_names) | {
    "scipy", "numpy", "numba", "llvmlite", "jitad", "optree", "platformdirs", "networkx", "matplotlib", "tqdm",
    "pytest", "_pytest", "pluggy", "hypothesis", "asv", "IPython", "ipykernel", "jupyter_client", "zmq",
    "tornado", "traitlets", "prompt_toolkit", "pygments", "jedi", "parso", "dask", "distributed", "pandas",
    "yaml", "charset_normalizer", "colorama", "requests", "urllib3", "certifi", "idna", "packaging", "six",
    "dateutil", "pytz", "jax", "jaxlib", "autograd", "torch", "_distutils_hack", "pkg_resources", "setuptools"}


def _installed_folders():
    """The folders of installed code, each as given and resolved (a module's path is resolved only
    when it is in none of them as given: resolving every loaded module's path cost milliseconds
    of a first call)."""
    folders = set()
    paths = sysconfig.get_paths()
    given = [paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    # site-packages folders of other schemes (user site, virtualenvs)
    given += [path for path in sys.path if os.path.basename(path.rstrip(os.sep)) in ("site-packages", "dist-packages")]
    for path in given:
        if path:
            folders.add(os.path.join(path, ""))
            folders.add(os.path.join(os.path.realpath(path), ""))
    return tuple(folders)


_INSTALLED = []  # the folders of installed code, found once
_SCANNED = {}  # module name -> (module, whether its globals are scanned)


def _scanned(name, module):
    """Whether the globals of `module` are scanned: a module of the user's (see the docstring)."""
    known = _SCANNED.get(name)
    if known is not None and known[0] is module:
        return known[1]
    scan = False
    if name.partition(".")[0] not in SKIPPED_ROOTS:
        path = getattr(module, "__file__", None)
        if name == "__main__" or (isinstance(path, str) and path):
            if not _INSTALLED:
                _INSTALLED.append(_installed_folders())
            scan = name == "__main__" or not (path.startswith(_INSTALLED[0]) or
                                              os.path.realpath(path).startswith(_INSTALLED[0]))
    _SCANNED[name] = (module, scan)
    return scan


_USER = [None, ()]  # (the sys.modules size it was found at, the user's modules)


def _user_modules():
    """The loaded modules whose globals are scanned (found again when a module was loaded)."""
    modules = sys.modules
    if _USER[0] != len(modules):
        _USER[1] = tuple(module for name, module in list(modules.items()) if _scanned(name, module))
        _USER[0] = len(modules)
    return _USER[1]


def replacement(value, swaps):
    """What stands in for `value` while tracing, or None if it holds no hooked SciPy function.
    `swaps`: id(original) -> (original, dispatcher), from `linalg_ops.scipy_hooks`."""
    kind = type(value)
    if kind is types.MethodType:
        hit = swaps.get(id(value.__func__))
        return types.MethodType(hit[1], value.__self__) if hit is not None and hit[0] is value.__func__ else None
    if kind is functools.partial:
        inner = replacement(value.func, swaps)
        return None if inner is None else functools.partial(inner, *value.args, **value.keywords)
    hit = swaps.get(id(value))
    return hit[1] if hit is not None and hit[0] is value else None


def _swap_item(container, key, value, swaps, undo):
    new = replacement(value, swaps)
    if new is not None:
        container[key] = new
        undo.append((container, key, value, new))


def _swap_defaults(fun, swaps, undo):
    defaults = getattr(fun, "__defaults__", None)
    if defaults and any(replacement(value, swaps) is not None for value in defaults):
        fun.__defaults__ = tuple(replacement(value, swaps) or value for value in defaults)
        undo.append((fun, "__defaults__", defaults, fun.__defaults__))
    keywords = getattr(fun, "__kwdefaults__", None)
    for name, value in list((keywords or {}).items()):
        _swap_item(keywords, name, value, swaps, undo)


_HOLDERS = (types.FunctionType, types.MethodType, functools.partial)  # the kinds `replacement` looks into


def _swap_namespace(namespace, swaps, undo):
    for name, value in list(namespace.items()):
        kind = type(value)
        if kind not in _HOLDERS:  # most names: modules, classes, constants (a module's scan is per trace)
            continue
        _swap_item(namespace, name, value, swaps, undo)
        if kind is types.FunctionType and (value.__defaults__ or value.__kwdefaults__):
            _swap_defaults(value, swaps, undo)


def swap_modules(swaps):
    """Swap the names of every scanned module (see the module docstring); returns the undo list."""
    undo = []
    if swaps:
        for module in _user_modules():
            namespace = getattr(module, "__dict__", None)
            if isinstance(namespace, dict):
                _swap_namespace(namespace, swaps, undo)
    return undo


def _inner_function(value):
    """The user's function a closure cell's value calls, if any (a function, a partial of one, a
    method; not one of an installed library's)."""
    while type(value) in (functools.partial, types.MethodType):
        value = value.func if type(value) is functools.partial else value.__func__
    if type(value) is not types.FunctionType:
        return None
    return None if value.__globals__.get("__name__", "").partition(".")[0] in SKIPPED_ROOTS else value


def swap_function(fun, swaps, _seen=None, _undo=None):
    """Swap the names `fun` holds itself: its module's globals (a module skipped above), its
    closure cells and its default arguments, and those of the functions its closure cells hold
    (a wrapper such as `def symmetrized(*a): return fun(sym(a[0]), *a[1:])` around `mvn.logpdf`,
    to any depth); returns the undo list."""
    undo = [] if _undo is None else _undo
    seen = set() if _seen is None else _seen
    if not swaps or id(fun) in seen:
        return undo
    seen.add(id(fun))
    namespace = getattr(fun, "__globals__", None)
    if isinstance(namespace, dict) and namespace.get("__name__", "").partition(".")[0] in SKIPPED_ROOTS:
        _swap_namespace(namespace, swaps, undo)
    for cell in getattr(fun, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        new = replacement(value, swaps)
        if new is not None:
            cell.cell_contents = new
            undo.append((cell, None, value, new))
        elif (inner := _inner_function(value)) is not None:
            swap_function(inner, swaps, seen, undo)
    if type(fun) is types.FunctionType:
        _swap_defaults(fun, swaps, undo)
    return undo


def restore(undo):
    """Put back what `swap_modules` / `swap_function` swapped, where it still holds the swap."""
    for where, key, original, new in reversed(undo):
        if key is None:  # a closure cell
            if where.cell_contents is new:
                where.cell_contents = original
        elif key == "__defaults__" and not isinstance(where, dict):
            if where.__defaults__ is new:
                where.__defaults__ = original
        elif where.get(key) is new:
            where[key] = original
