"""Tracing: run plain NumPy code on `Tracer` values and record it as a Graph."""
import contextlib
import dis
import sys
import threading

import numpy as np

from jitad.frontend import linalg_ops
from jitad.frontend import numpy_ops
from jitad import primitives as P
from jitad.errors import ConcretizationError, InPlaceUpdateError, JitadError, UnsupportedOperationError
from jitad.ir import Builder, Graph, building, is_tracer


class Tracer:
    """An array seen by user code while jitad traces it: NumPy calls on it record IR nodes."""

    __slots__ = ("node", "builder")
    __array_priority__ = 1000

    def __init__(self, node, builder):
        self.node = node
        self.builder = builder

    # static facts ---------------------------------------------------------------------------
    shape = property(lambda self: self.node.shape)
    dtype = property(lambda self: self.node.dtype)
    ndim = property(lambda self: len(self.node.shape))
    size = property(lambda self: self.node.size)
    T = property(lambda self: numpy_ops.transpose(self))
    mT = property(lambda self: numpy_ops.swapaxes(self, -1, -2))
    real = property(lambda self: self)

    def __len__(self):
        if not self.node.shape:
            raise TypeError("len() of unsized object (a 0-d traced array)")
        return self.node.shape[0]

    def __iter__(self):
        if not self.node.shape:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(self.node.shape[0]))

    def __repr__(self):
        return f"Tracer({self.dtype.name}{list(self.shape)}, %{self.node.id})"

    __hash__ = object.__hash__

    # NumPy protocols ------------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if kwargs.get("out") is not None:
            raise InPlaceUpdateError(f"np.{ufunc.__name__}(out=...) with a traced value (or an augmented "
                                     "assignment of one into a NumPy array)")
        kwargs.pop("out", None)
        if method == "__call__":
            builder = numpy_ops.UFUNCS.get(ufunc)
            if builder is None:
                raise UnsupportedOperationError(f"np.{ufunc.__name__}")
            dtype = kwargs.pop("dtype", None)
            if kwargs.get("where", True) is not True:
                raise UnsupportedOperationError(f"np.{ufunc.__name__}(where=...)", "Use np.where instead. ")
            result = builder(*inputs)
            return result if dtype is None else numpy_ops.astype(result, dtype)
        if method == "reduce" and ufunc in numpy_ops.UFUNC_REDUCE:
            return numpy_ops.UFUNC_REDUCE[ufunc](*inputs, **kwargs)
        if method == "accumulate" and ufunc is np.add:
            return numpy_ops.cumsum(*inputs, **{k: v for k, v in kwargs.items() if k == "axis"})
        raise UnsupportedOperationError(f"np.{ufunc.__name__}.{method}")

    def __array_function__(self, func, types, args, kwargs):
        builder = numpy_ops.FUNCTIONS.get(func)
        if builder is None:
            module = getattr(func, "__module__", "numpy") or "numpy"
            raise UnsupportedOperationError(f"{module}.{func.__name__}")
        return builder(*args, **kwargs)

    def __array__(self, dtype=None, copy=None):
        raise linalg_ops.foreign_call_error() or _conversion_error(  # a SciPy function says so by name
            "Converting a traced array to a NumPy array (np.asarray / np.array of it, or assigning it "
            "into a NumPy array)")

    def __bool__(self):
        raise ConcretizationError("A Python `if`, `while`, `and`/`or` or bool() on a traced value")

    def __float__(self):
        raise _conversion_error("float() (or a math-module function) on a traced value")

    def __int__(self):
        raise _conversion_error("int() on a traced value")

    def __index__(self):
        raise ConcretizationError("Using a traced value as a Python index or size")

    def __complex__(self):
        raise ConcretizationError("complex() on a traced value")

    def item(self, *args):
        raise ConcretizationError(".item() on a traced value")

    def tolist(self):
        raise ConcretizationError(".tolist() on a traced value")

    def __setitem__(self, key, value):
        raise InPlaceUpdateError("item assignment on a traced array")

    def __getitem__(self, key):
        return numpy_ops.getitem(self, key)

    # operators ------------------------------------------------------------------------------
    __add__ = lambda self, other: P.add_p(self, other)
    __radd__ = lambda self, other: P.add_p(other, self)
    __sub__ = lambda self, other: P.subtract_p(self, other)
    __rsub__ = lambda self, other: P.subtract_p(other, self)
    __mul__ = lambda self, other: P.multiply_p(self, other)
    __rmul__ = lambda self, other: P.multiply_p(other, self)
    __truediv__ = lambda self, other: P.divide_p(self, other)
    __rtruediv__ = lambda self, other: P.divide_p(other, self)
    __pow__ = lambda self, other: numpy_ops.power(self, other)
    __rpow__ = lambda self, other: P.power_p(other, self)
    __matmul__ = lambda self, other: numpy_ops.matmul(self, other)
    __rmatmul__ = lambda self, other: numpy_ops.matmul(other, self)
    __mod__ = lambda self, other: numpy_ops.mod(self, other)
    __rmod__ = lambda self, other: numpy_ops.mod(other, self)
    __floordiv__ = lambda self, other: numpy_ops.floor_divide(self, other)
    __rfloordiv__ = lambda self, other: numpy_ops.floor_divide(other, self)
    __divmod__ = lambda self, other: (numpy_ops.floor_divide(self, other), numpy_ops.mod(self, other))
    __rdivmod__ = lambda self, other: (numpy_ops.floor_divide(other, self), numpy_ops.mod(other, self))
    __round__ = lambda self, ndigits=None: numpy_ops._round(self, ndigits or 0)
    __neg__ = lambda self: P.negative_p(self)
    __pos__ = lambda self: self
    __abs__ = lambda self: P.abs_p(self)
    __lt__ = lambda self, other: P.less_p(self, other)
    __le__ = lambda self, other: P.less_equal_p(self, other)
    __gt__ = lambda self, other: P.greater_p(self, other)
    __ge__ = lambda self, other: P.greater_equal_p(self, other)
    __eq__ = lambda self, other: P.equal_p(self, other)
    __ne__ = lambda self, other: P.not_equal_p(self, other)
    __and__ = lambda self, other: P.logical_and_p(self, other)
    __rand__ = lambda self, other: P.logical_and_p(other, self)
    __or__ = lambda self, other: P.logical_or_p(self, other)
    __ror__ = lambda self, other: P.logical_or_p(other, self)
    __xor__ = lambda self, other: P.logical_xor_p(self, other)
    __rxor__ = lambda self, other: P.logical_xor_p(other, self)
    __invert__ = lambda self: P.logical_not_p(self)

    def __iadd__(self, other):  # x += y rebinds x to a new traced value; nothing is written
        return self + other

    # methods --------------------------------------------------------------------------------
    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return numpy_ops.sum(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kw)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return numpy_ops.mean(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kw)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return numpy_ops.prod(self, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **kw)

    def max(self, axis=None, out=None, keepdims=False, **kw):
        return numpy_ops.amax(self, axis=axis, out=out, keepdims=keepdims, **kw)

    def min(self, axis=None, out=None, keepdims=False, **kw):
        return numpy_ops.amin(self, axis=axis, out=out, keepdims=keepdims, **kw)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
        return numpy_ops.var(self, axis=axis, out=out, ddof=ddof, keepdims=keepdims, **kw)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
        return numpy_ops.std(self, axis=axis, out=out, ddof=ddof, keepdims=keepdims, **kw)

    def cumsum(self, axis=None, dtype=None, out=None):
        return numpy_ops.cumsum(self, axis=axis, out=out)

    def reshape(self, *shape, order="C"):
        return numpy_ops.reshape(self, *shape, order=order)

    def transpose(self, *axes):
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return numpy_ops.transpose(self, axes or None)

    def swapaxes(self, a, b):
        return numpy_ops.swapaxes(self, a, b)

    def ravel(self, order="C"):
        return numpy_ops.ravel(self, order)

    flatten = ravel

    def squeeze(self, axis=None):
        return numpy_ops.squeeze(self, axis)

    def astype(self, dtype, *args, **kwargs):
        return numpy_ops.astype(self, dtype)

    def copy(self, order="C"):
        return self

    def dot(self, other):
        return numpy_ops.dot(self, other)

    def clip(self, min=None, max=None, **kw):
        return numpy_ops.clip(self, min, max, **kw)

    def trace(self, offset=0, axis1=0, axis2=1, **kw):
        return numpy_ops.trace(self, offset, axis1, axis2)

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return numpy_ops.diagonal(self, offset, axis1, axis2)

    def conj(self):
        return self

    conjugate = conj

    def round(self, decimals=0):
        return numpy_ops._round(self, decimals)

    def any(self, axis=None, keepdims=False):
        return numpy_ops.amax(numpy_ops.astype(self != 0, np.float64), axis=axis, keepdims=keepdims) > 0

    def all(self, axis=None, keepdims=False):
        return numpy_ops.amin(numpy_ops.astype(self != 0, np.float64), axis=axis, keepdims=keepdims) > 0


Builder.tracer_type = Tracer

_STORE_OPCODES = {dis.opmap[name] for name in ("STORE_SUBSCR", "STORE_SLICE") if name in dis.opmap}


def _conversion_error(what):
    """ConcretizationError, or InPlaceUpdateError when NumPy converts the value for `array[i] = traced`.

    NumPy calls __array__/__float__ from C, so the frame above the dunder is the user's,
    and it is executing a subscript store exactly when the user writes into an array.
    """
    frame = sys._getframe(2)
    if frame.f_code.co_code[frame.f_lasti] in _STORE_OPCODES:
        return InPlaceUpdateError("assignment of a traced value into a NumPy array (`array[i] = traced`)")
    return ConcretizationError(what)


# np.array and np.asarray are not dispatched through __array_function__, yet users build
# residual vectors with np.array([expr, expr, ...]). While tracing, jitad wraps them so
# that a (nested) list holding traced values becomes one stacked node.
_original_array, _original_asarray = np.array, np.asarray


def _array(obj, dtype=None, *args, **kwargs):
    if is_tracer(obj) or (isinstance(obj, (list, tuple)) and numpy_ops._contains_tracer(obj)):
        return numpy_ops.asarray(obj, dtype=dtype)
    return _original_array(obj, dtype, *args, **kwargs)


def _asarray(obj, dtype=None, *args, **kwargs):
    if is_tracer(obj) or (isinstance(obj, (list, tuple)) and numpy_ops._contains_tracer(obj)):
        return numpy_ops.asarray(obj, dtype=dtype)
    return _original_asarray(obj, dtype, *args, **kwargs)


_patch_depth = 0
_patch_lock = threading.Lock()  # traces may run in several threads (a background transform)


@contextlib.contextmanager
def numpy_array_hooks():
    global _patch_depth
    with _patch_lock:
        if _patch_depth == 0:
            np.array, np.asarray = _array, _asarray
        _patch_depth += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                np.array, np.asarray = _original_array, _original_asarray


def trace(fun, avals):
    """Trace `fun` on abstract inputs of the given (shape, dtype) pairs.

    Returns (graph, outputs, captured): `outputs` is whatever `fun` returned with traced
    leaves replaced by their graph output position, and `captured` lists the outer
    tracers this trace closed over (they are the graph's trailing inputs).
    """
    builder = Builder()
    with building(builder), numpy_array_hooks(), linalg_ops.scipy_hooks():
        args = [builder.new_input(shape, dtype) for shape, dtype in avals]
        try:
            result = fun(*args)
        except ValueError as error:
            # NumPy replaces an error raised while it stores a traced value into an array
            # ("setting an array element with a sequence"); show jitad's own error instead.
            if isinstance(error.__cause__, JitadError):
                raise error.__cause__ from None
            raise
        outputs = [_to_node(builder, r) for r in result]
    captured = [tracer for tracer, _ in builder.captured.values()]
    inputs = builder.inputs + [node for _, node in builder.captured.values()]
    return Graph(inputs, outputs), captured


def _to_node(builder, value):
    if is_tracer(value):
        if value.builder is builder:
            return value.node
        return builder.capture(value)
    return builder.const(np.asarray(value))
