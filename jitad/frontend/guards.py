"""Python control flow on traced values, by guarded specialisation.

A top-level call traces the user's function with its arguments at hand, so a traced value has
a concrete value too: the trace's builder evaluates it on demand (`Builder.evaluate`, each
primitive's NumPy implementation, remembered). `if x > 0:`, `while err > tol:`, `and`/`or`,
`bool()`, `int()`, `float()` and `.item()` of a traced value take that value, and the trace
records a `Guard`: what it assumed (the outcome of a test, or the value converted). The graph
is the program of the path taken, so its derivatives are those of the branch taken (autograd's).

Every later call checks the guards: `staging` appends one boolean output per guard to the
transformed graph, computed with everything else (in the compiled kernel too), and a call
whose guards do not all hold is traced again for its own path (`Transform.run` keeps a bounded
number of such specialisations per signature). A conversion that would lose a derivative --
`float()` of a value that depends on a differentiated argument -- is a ConcretizationError,
never a silent zero.
"""
import numpy as np

from jitad import primitives as P
from jitad.errors import ConcretizationError, user_frame


limits = {"specializations": 16}  # jitad.config.specializations; 0: no Python control flow on traced values


class Guard:
    """One assumption of a trace: the value of `node` (in `builder`'s graph) was `expected`.

    `kind` "truth": bool(value) was `expected` (a Python bool); "value": the value was exactly
    `expected` (an array; NaN equals NaN). `where`: the user's file:line that assumed it."""

    __slots__ = ("node", "kind", "expected", "where")

    def __init__(self, node, kind, expected, where):
        self.node, self.kind, self.expected, self.where = node, kind, expected, where

    def holds(self, value):
        """The traced test that this guard holds for `value`, a tracer of node's value: a
        boolean 0-d tracer (True when the call takes the path this trace assumed)."""
        if self.kind == "truth":
            flat = P.reshape_p(value, shape=()) if value.shape != () else value
            zero = np.zeros((), flat.dtype)
            return P.not_equal_p(flat, zero) if self.expected else P.equal_p(flat, zero)
        same = P.equal_p(value, self.expected)
        if np.asarray(self.expected).dtype.kind == "f":
            same = P.logical_or_p(same, P.logical_and_p(P.isnan_p(value), np.isnan(self.expected)))
        return _all(same)


def _all(flags):
    return flags if flags.shape == () else flags.all()


_DROPPED = ("the value depends on a differentiated argument, and a Python float carries no derivative "
            "(keep it an array: `x` or `x * 1.0` instead of `float(x)`; comparisons such as "
            "`if x > 0:` are fine)")


def concrete(tracer, what):
    """The concrete value of `tracer` (an array), or a ConcretizationError saying why there is none."""
    if not limits["specializations"]:
        raise ConcretizationError(what, "jitad.config.specializations is 0, which turns off Python control "
                                  "flow on traced values")
    value = tracer.builder.evaluate(tracer.node)
    if value is None:
        raise ConcretizationError(what)
    return value


def _record(tracer, kind, expected):
    tracer.builder.guards.append(Guard(tracer.node, kind, expected, user_frame() or "?"))


def truth(tracer):
    """bool(tracer) (Python `if`, `while`, `and`, `or`, `not`): NumPy's truth value of the
    concrete value, recorded as a guard."""
    if tracer.size != 1:
        raise ValueError("The truth value of an array with more than one element is ambiguous. "
                         "Use a.any() or a.all()")
    value = concrete(tracer, "A Python `if`, `while`, `and`/`or` or bool() on a traced value")
    outcome = bool(value.reshape(()))
    _record(tracer, "truth", outcome)
    return outcome


def scalar(tracer, convert, what):
    """int()/float()/index/.item() of a one-element traced value: `convert` of its concrete
    value, recorded as a guard on the value. A float that depends on a differentiated
    argument would carry no derivative, so it is an error; integers (piecewise constant,
    derivative zero) are fine."""
    if tracer.size != 1:
        raise TypeError(f"only one-element arrays can be converted to Python scalars ({what})")
    value = concrete(tracer, what)
    result = convert(value.reshape(()))
    if isinstance(result, float) and tracer.builder.depends(tracer.node):
        raise ConcretizationError(what, _DROPPED)
    _record(tracer, "value", value)
    return result


def selection(tracer, what):
    """The concrete value of a traced boolean or integer array that decides the shape of a
    result (a boolean mask, the argument of np.nonzero, the order and ties np.unique finds),
    recorded as a guard on the value, as for `if`: a later call where it differs is traced
    again for its own values. Such arrays carry no derivative."""
    if tracer.dtype.kind not in "biu":
        raise TypeError(f"guards.selection of a {tracer.dtype} array")  # callers compare floats first
    value = concrete(tracer, what)
    _record(tracer, "value", value)
    return value


def values(tracer, what):
    """The concrete array of `tracer` for .tolist(): as `scalar`, for a whole array."""
    value = concrete(tracer, what)
    if value.dtype.kind == "f" and tracer.builder.depends(tracer.node):
        raise ConcretizationError(what, _DROPPED)
    _record(tracer, "value", value)
    return value
