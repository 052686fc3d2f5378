"""Values a traced function reads from outside its arguments: the globals and closure variables a
trace bakes into its graph (an array becomes a constant the kernel takes by reference, a number a
literal). Writes into such an array are seen by every call (the kernel reads it); but rebinding the
name (`X = next_batch` in a training loop whose loss reads the global X) or changing a number would
leave a cached trace computing with the old value, silently. `Captures` records what a function's
code can read when it is traced (less what the function changes itself while traced: a counter, a
log list), and `unchanged()` tells whether each name still holds the same array (the same object)
or an equal number, so a transform traces again when one does not.

What is followed: the names of the function's code (and of the code of functions defined in it),
in its globals and closure cells; the items of a dict and the attributes of a plain object bound to
such a name (`config["lr"]`, `model.W`, up to 64 of them); and, two levels deep, the Python
functions it calls by a global or closure name (a loss calling `predict`, which reads the global
weights). Data is an ndarray, a Python or NumPy number, or a tuple or list of those (compared
element by element). Deeper values (`config["opt"]["lr"]`, attributes of attributes) and what
other objects compute are baked in at the trace, as in JAX's jit.
"""
import types

import numpy as np

_NUMBERS = (int, float, complex, bool, np.number, np.bool_)
_MISSING = object()
_DEPTH = 2  # levels of called functions followed


def _is_data(value):
    if isinstance(value, (np.ndarray,) + _NUMBERS):
        return True
    return isinstance(value, (tuple, list)) and 0 < len(value) <= 64 and \
        all(isinstance(v, (np.ndarray,) + _NUMBERS) for v in value)


def _same(old, new):
    """Whether `new`, now bound where `old` was when traced, computes the same: the same array
    object, an equal number of the same type, or a sequence of those (NaN equals NaN)."""
    if isinstance(old, np.ndarray):
        return new is old
    if type(new) is not type(old):
        return False
    if isinstance(old, (tuple, list)):
        return len(new) == len(old) and all(_same(a, b) for a, b in zip(old, new))
    return new == old or (new != new and old != old)


def _code_names(code, out):
    out.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_names(const, out)
    return out


def _attributes(value):
    """The attribute dict of a plain instance (not a module, class, function or NumPy object), or None."""
    if isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, np.ndarray,
                          np.ufunc)) or callable(value):
        return None
    attributes = getattr(value, "__dict__", None)
    return attributes if isinstance(attributes, dict) else None


def _unwrap(fun):
    for _ in range(8):  # functools.wraps chains (jitad's own transforms keep the user's function there)
        inner = getattr(fun, "__wrapped__", None)
        if inner is None:
            break
        fun = inner
    return fun


class Captures:
    """The data `fun` reads from its globals and closures, as it is when traced."""

    __slots__ = ("entries",)

    def __init__(self, fun):
        self.entries = []  # (globals dict, name, value) or (cell, None, value)
        self._visit(_unwrap(fun), _DEPTH, set())
        # a copy of each list: a list changed in place must not change the record of it
        self.entries = [(where, name, list(value) if isinstance(value, list) else value)
                        for where, name, value in self.entries]

    def _visit(self, fun, depth, seen):
        if not isinstance(fun, types.FunctionType) or id(fun) in seen:
            return
        seen.add(id(fun))
        namespace = fun.__globals__
        for name in _code_names(fun.__code__, set()):
            value = namespace.get(name, _MISSING)
            self._note(namespace, name, value, depth, seen)
        for cell in fun.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # a closure variable not assigned yet
                continue
            self._note(cell, None, value, depth, seen)

    def _note(self, where, name, value, depth, seen):
        if value is _MISSING:
            return
        if _is_data(value):
            self.entries.append((where, name, value))
        elif depth > 0 and isinstance(value, types.FunctionType):
            self._visit(value, depth - 1, seen)
        elif id(value) not in seen:  # a dict, or an object's attributes (`config["lr"]`, `model.W`): one level
            seen.add(id(value))
            items = value if isinstance(value, dict) else _attributes(value)
            if items is not None and len(items) <= 64:
                self.entries += [(items, key, v) for key, v in items.items() if _is_data(v)]

    def settle(self):
        """Forget what the function changed itself while it was traced (a counter it increments, a list it
        appends to): its own side effects are not inputs, and checking them would trace every call."""
        self.entries = [entry for entry in self.entries if _holds(*entry)]

    def unchanged(self):
        for entry in self.entries:
            if not _holds(*entry):
                return False
        return True


def _holds(where, name, value):
    """Whether the name (a cell's content for name None) still holds `value` or an equal one."""
    if name is None:
        try:
            now = where.cell_contents
        except ValueError:  # (deleted)
            return False
    else:
        now = where.get(name, _MISSING)
    return now is value or _same(value, now)
