"""Tracing: run plain NumPy code on `Tracer` values and record it as a Graph."""
import contextlib
import dis
import sys
import threading

import numpy as np

from jitad.frontend import guards, inplace
from jitad.frontend import linalg_ops
from jitad.frontend import numpy_ops
from jitad import primitives as P
from jitad.errors import ConcretizationError, InPlaceUpdateError, JitadError, ShapeError, UnsupportedOperationError
from jitad.ir import Builder, Graph, building, current_builder, is_tracer

_r = inplace.resolve  # a Workspace array met by a traced operation: what it holds now


class _ForeignAttributeError(UnsupportedOperationError, AttributeError):
    """A SciPy function jitad does not implement read an ndarray attribute of a traced array."""


class Tracer:
    """An array seen by user code while jitad traces it: NumPy calls on it record IR nodes.

    It is mutable like an ndarray: `x[i] = v` points it at a new node (jitad.frontend.inplace).
    A view (`x[1:]`, `x.T`, ...) records its root tracer and the root positions it shows, and
    re-reads the root when the root changed since."""

    __slots__ = ("_node", "builder", "_view", "_version", "_layout", "_scalar")
    __array_priority__ = 1000

    def __init__(self, node, builder):
        self._node = node
        self.builder = builder
        self._view = None  # (root tracer, positions in the root, root version seen) for a view
        self._version = 0  # bumped by each write into this (root) tracer
        self._layout = None  # None: C order; else this root's positions laid out as NumPy lays out its memory
        self._scalar = False  # a Python/NumPy scalar argument: nothing is a view of it (NumPy copies it)

    @classmethod
    def of_result(cls, node, builder):
        """A computed value. NumPy returns a scalar, not a 0-d array, for a 0-d result (ufuncs,
        operators, reductions, x[i], np.interp, ...): nothing is a view of it, so reshaping it
        and writing into the reshaped array leaves it alone. The few functions that return 0-d
        arrays (np.where, np.array, np.copy, ...: `_ARRAY_RESULTS`) clear the mark."""
        tracer = cls(node, builder)
        tracer._scalar = not node.shape
        return tracer

    @property
    def node(self):
        view = self._view
        if view is not None and view[0]._version != view[2]:
            inplace.refresh(self)
        return self._node

    # static facts ---------------------------------------------------------------------------
    shape = property(lambda self: self.node.shape)
    dtype = property(lambda self: self.node.dtype)
    ndim = property(lambda self: len(self.node.shape))
    size = property(lambda self: self.node.size)
    T = property(lambda self: _view_of(self, numpy_ops.transpose(self), np.transpose))
    mT = property(lambda self: _view_of(self, numpy_ops.swapaxes(self, -1, -2), lambda p: np.swapaxes(p, -1, -2)))
    real = property(lambda self: self)  # a real array's .real is itself (a view of all of it)

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
        out = kwargs.pop("out", None)
        if method == "at":
            return inplace.add_at(ufunc, *inputs)
        inputs = tuple(_r(i) for i in inputs)
        if out is not None and any(o is not None and not is_tracer(o) and not isinstance(o, inplace.Workspace)
                                   for o in out):
            raise InPlaceUpdateError(f"np.{ufunc.__name__}(out=...) of a traced value into a NumPy array that is "
                                     "not traced (or an augmented assignment of one into it)", inplace.NOT_TRACED)
        # where= of a call: the result where it holds, out's values elsewhere (np.where(where, result, out))
        where = kwargs.pop("where", True) if method == "__call__" else True
        if where is not True and out is None:
            raise UnsupportedOperationError(
                f"np.{ufunc.__name__}(where=...) without out=", "NumPy leaves the entries where the condition is "
                "False uninitialised: pass out= (the values they keep), or use np.where. ")
        if out is not None:
            return inplace.write_out(out, self.__array_ufunc__(ufunc, method, *inputs, **kwargs),
                                     f"np.{ufunc.__name__}", where)
        if method == "__call__":
            builder = numpy_ops.UFUNCS.get(ufunc)
            if builder is None:  # called inside a SciPy function (scipy.special.zeta): that function's name
                raise linalg_ops.foreign_call_error() or UnsupportedOperationError(_ufunc_name(ufunc))
            dtype = kwargs.pop("dtype", None)
            result = builder(*inputs, **kwargs) if ufunc.signature else builder(*inputs)  # gufuncs: axis=
            return _layout_k(_fresh(result if dtype is None else numpy_ops.astype(result, dtype), inputs), inputs)
        if method == "reduce" and ufunc in numpy_ops.UFUNC_REDUCE:
            return _fresh(numpy_ops.UFUNC_REDUCE[ufunc](*inputs, **kwargs), inputs)
        if method == "accumulate" and ufunc in numpy_ops.UFUNC_ACCUMULATE:
            return _fresh(numpy_ops.UFUNC_ACCUMULATE[ufunc](*inputs, **kwargs), inputs)
        if method == "outer" and len(inputs) == 2 and ufunc in numpy_ops.UFUNCS and not kwargs:
            a, b = numpy_ops.asarray(inputs[0]), numpy_ops.asarray(inputs[1])  # a[..., None, ...] op b
            return self.__array_ufunc__(ufunc, "__call__", numpy_ops.reshape(a, a.shape + (1,) * b.ndim), b)
        raise UnsupportedOperationError(f"{_ufunc_name(ufunc)}.{method}")

    def __array_function__(self, func, types, args, kwargs):
        result = self._array_function(func, args, kwargs)
        if func in _ARRAY_RESULTS:
            result = _array_not_scalar(result, args)
        return result

    def _array_function(self, func, args, kwargs):
        builder = numpy_ops.FUNCTIONS.get(func)
        if builder is None:  # called inside a SciPy function (scipy.signal.medfilt): that function's name
            module = getattr(func, "__module__", "numpy") or "numpy"
            raise linalg_ops.foreign_call_error() or UnsupportedOperationError(f"{module}.{func.__name__}")
        out = kwargs.pop("out", None)
        args, kwargs = inplace.resolve_tree(args), {k: inplace.resolve_tree(v) for k, v in kwargs.items()}
        result = builder(*args, **(_builder_keywords(func, builder, kwargs) if kwargs else kwargs))
        if out is not None:
            return inplace.write_out(out, result, f"np.{func.__name__}")
        if func in _VIEW_FUNCTIONS and args and is_tracer(args[0]):
            if result is args[0] and func in (np.asarray, np.asanyarray):
                return _not_the_scalar(result)
            return _view_of(args[0], result, lambda p: func(p, *args[1:], **kwargs))
        if func is np.linalg.matrix_power and result is args[0]:
            return result  # n == 1: NumPy hands back the array itself
        if func is _originals["copy"] and args and kwargs.get("order", args[1] if len(args) > 1 else "K") == "K":
            return _layout_k(_fresh(result, args), args[:1])
        if func is np.einsum and len(args) == 2 and isinstance(args[0], str) and is_tracer(args[1]):
            # one operand: NumPy's result is a view when the subscripts only permute or take a diagonal
            return _view_of(args[1], _fresh(result, args), lambda p: func(args[0], p, **kwargs))
        return _fresh(result, args)

    def __getattr__(self, name):
        # an ndarray attribute jitad does not model (`.flags`, `.ctypes`, ...): reached from SciPy's own
        # code, the SciPy function is one jitad does not implement (hasattr() still sees False)
        error = None if name.startswith("__") else linalg_ops.foreign_call_error()
        if error is not None:
            raise _ForeignAttributeError(error.name)
        raise AttributeError(f"'Tracer' object (a traced array) has no attribute {name!r}")

    def __array__(self, dtype=None, copy=None):
        error = linalg_ops.foreign_call_error()  # a SciPy function says so by name
        if error is None and dtype is not None and _store_error(2) is None:
            name = np.dtype(dtype).name  # np.int64(x): NumPy's scalar types convert through an array
            error = ConcretizationError(f"np.{name}(x) of a traced array x", "NumPy converts it to an array of "
                                        f"concrete values. Write x.astype(np.{name}), which jitad traces" +
                                        (" (positions made so index arrays)" if np.dtype(dtype).kind in "iu" else ""))
        raise error or _conversion_error(
            "Converting a traced array to a NumPy array (np.asarray / np.array of it, or assigning it "
            "into a NumPy array)")

    # Python control flow and conversions take the concrete value and record a guard
    # (jitad.frontend.guards); NumPy's store of a traced value into a plain array stays an error
    def __bool__(self):
        return guards.truth(self)

    def __float__(self):
        _refuse_store()
        return guards.scalar(self, float, "float() (or a math-module function) on a traced value")

    def __int__(self):
        _refuse_store()
        return guards.scalar(self, int, "int() on a traced value")

    def __index__(self):
        if self.dtype.kind not in "iub":
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return guards.scalar(self, int, "Using a traced value as a Python index or size")

    def __complex__(self):
        raise ConcretizationError("complex() on a traced value")

    def item(self, *args):
        if args:
            return self.reshape(-1)[np.ravel_multi_index(args, self.shape) if len(args) > 1 else args[0]].item()
        return guards.scalar(self, lambda v: v.item(), ".item() on a traced value")

    def nonzero(self):
        return numpy_ops.nonzero(self)

    def tolist(self):
        return guards.values(self, ".tolist() on a traced value").tolist()

    def __setitem__(self, key, value):
        inplace.setitem(self, inplace.resolve_tree(key), value)

    def __getitem__(self, key):
        key = inplace.resolve_tree(key)
        try:
            result = _fresh(numpy_ops.getitem(self, key), (self,))
        except ShapeError:
            error = linalg_ops.foreign_call_error()  # a traced mask in SciPy's own code: a function jitad lacks
            if error is None:
                raise
            raise error from None
        if _basic(key):  # NumPy gives a view (or, for a full integer index, a scalar copy)
            inplace.make_view(result, self, inplace.positions_of(self)[key])
        return result

    # operators ------------------------------------------------------------------------------
    __add__ = lambda self, other: P.add_p(self, _r(other))
    __radd__ = lambda self, other: P.add_p(_r(other), self)
    __sub__ = lambda self, other: P.subtract_p(self, _r(other))
    __rsub__ = lambda self, other: P.subtract_p(_r(other), self)
    __mul__ = lambda self, other: P.multiply_p(self, _r(other))
    __rmul__ = lambda self, other: P.multiply_p(_r(other), self)
    __truediv__ = lambda self, other: P.divide_p(self, _r(other))
    __rtruediv__ = lambda self, other: P.divide_p(_r(other), self)
    __pow__ = lambda self, other: numpy_ops.power(self, _r(other))
    __rpow__ = lambda self, other: P.power_p(_r(other), self)
    __matmul__ = lambda self, other: numpy_ops.matmul(self, _r(other))
    __rmatmul__ = lambda self, other: numpy_ops.matmul(_r(other), self)
    __mod__ = lambda self, other: numpy_ops.mod(self, _r(other))
    __rmod__ = lambda self, other: numpy_ops.mod(_r(other), self)
    __floordiv__ = lambda self, other: numpy_ops.floor_divide(self, _r(other))
    __rfloordiv__ = lambda self, other: numpy_ops.floor_divide(_r(other), self)
    __divmod__ = lambda self, other: (numpy_ops.floor_divide(self, other), numpy_ops.mod(self, _r(other)))
    __rdivmod__ = lambda self, other: (numpy_ops.floor_divide(other, self), numpy_ops.mod(_r(other), self))
    __round__ = lambda self, ndigits=None: numpy_ops._round(self, ndigits or 0)
    __neg__ = lambda self: P.negative_p(self)
    __pos__ = lambda self: _fresh(self, (self,))
    __abs__ = lambda self: P.abs_p(self)
    __lt__ = lambda self, other: P.less_p(self, _r(other))
    __le__ = lambda self, other: P.less_equal_p(self, _r(other))
    __gt__ = lambda self, other: P.greater_p(self, _r(other))
    __ge__ = lambda self, other: P.greater_equal_p(self, _r(other))
    __eq__ = lambda self, other: P.equal_p(self, _r(other))
    __ne__ = lambda self, other: P.not_equal_p(self, _r(other))
    __and__ = lambda self, other: P.logical_and_p(self, _r(other))
    __rand__ = lambda self, other: P.logical_and_p(_r(other), self)
    __or__ = lambda self, other: P.logical_or_p(self, _r(other))
    __ror__ = lambda self, other: P.logical_or_p(_r(other), self)
    __xor__ = lambda self, other: P.logical_xor_p(self, _r(other))
    __rxor__ = lambda self, other: P.logical_xor_p(_r(other), self)
    __invert__ = lambda self: P.logical_not_p(self)

    # augmented assignment writes into the array, as NumPy's does (its views see it)
    __iadd__ = lambda self, other: _augmented(self, other, np.add)
    __isub__ = lambda self, other: _augmented(self, other, np.subtract)
    __imul__ = lambda self, other: _augmented(self, other, np.multiply)
    __itruediv__ = lambda self, other: _augmented(self, other, np.true_divide)
    __ifloordiv__ = lambda self, other: _augmented(self, other, np.floor_divide)
    __imod__ = lambda self, other: _augmented(self, other, np.remainder)
    __ipow__ = lambda self, other: _augmented(self, other, np.power)
    __iand__ = lambda self, other: _augmented(self, other, np.logical_and)
    __ior__ = lambda self, other: _augmented(self, other, np.logical_or)
    __ixor__ = lambda self, other: _augmented(self, other, np.logical_xor)

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

    # methods whose functions live in jitad.frontend.numpy_extra: through NumPy's dispatch to them
    def cumprod(self, axis=None, dtype=None, out=None):
        return np.cumprod(self, axis=axis, dtype=dtype, out=out)

    def argmax(self, axis=None, out=None, *, keepdims=False):
        return np.argmax(self, axis=axis, out=out, keepdims=keepdims)

    def argmin(self, axis=None, out=None, *, keepdims=False):
        return np.argmin(self, axis=axis, out=out, keepdims=keepdims)

    def argsort(self, axis=-1, kind=None, order=None, *, stable=None):
        return numpy_ops.argsort(self, axis=axis)

    def repeat(self, repeats, axis=None):
        return numpy_ops.repeat(self, repeats, axis=axis)

    def take(self, indices, axis=None, out=None, mode="raise"):
        return np.take(self, indices, axis=axis, out=out, mode=mode)

    def reshape(self, *shape, order="C"):
        return _view_of(self, numpy_ops.reshape(self, *shape, order=order), lambda p: p.reshape(*shape, order=order))

    def transpose(self, *axes):
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return _view_of(self, numpy_ops.transpose(self, axes or None), lambda p: p.transpose(axes or None))

    def swapaxes(self, a, b):
        return _view_of(self, numpy_ops.swapaxes(self, a, b), lambda p: p.swapaxes(a, b))

    def ravel(self, order="C"):
        return _view_of(self, numpy_ops.ravel(self, order), lambda p: p.ravel(order))

    def flatten(self, order="C"):  # always a copy
        return _fresh(numpy_ops.ravel(self, order), (self,))

    def squeeze(self, axis=None):
        return _view_of(self, numpy_ops.squeeze(self, axis), lambda p: p.squeeze(axis))

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        if not copy and np.dtype(dtype) == self.dtype:
            return self  # NumPy hands back the array itself
        return _fresh(numpy_ops.astype(self, dtype), (self,))

    def copy(self, order="C"):
        return _fresh(self, (self,))

    def dot(self, other):
        return numpy_ops.dot(self, other)

    def clip(self, min=None, max=None, **kw):
        return numpy_ops.clip(self, min, max, **kw)

    def trace(self, offset=0, axis1=0, axis2=1, **kw):
        return numpy_ops.trace(self, offset, axis1, axis2)

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return _view_of(self, numpy_ops.diagonal(self, offset, axis1, axis2),
                        lambda p: p.diagonal(offset, axis1, axis2))

    def conj(self):
        return self  # real arrays only: NumPy's ndarray.conj() of a real array is the array itself

    def sort(self, axis=-1, kind=None, order=None):
        """In place, as ndarray.sort: the array (and its views) now hold the sorted values."""
        self[...] = numpy_ops.FUNCTIONS[np.sort](self, axis=axis)

    def fill(self, value):
        self[...] = value

    def view(self, dtype=None, type=None):
        if dtype is not None or type is not None:
            raise UnsupportedOperationError("ndarray.view(dtype) of a traced value (reinterpreting its bytes)")
        return _view_of(self, Tracer(self.node, self.builder), lambda p: p.view())

    conjugate = conj

    def round(self, decimals=0):
        return numpy_ops._round(self, decimals)

    def any(self, axis=None, keepdims=False):  # (initial=: over no elements, False as NumPy's)
        return numpy_ops.amax(numpy_ops.astype(self != 0, np.float64), axis=axis, keepdims=keepdims, initial=0.0) > 0

    def all(self, axis=None, keepdims=False):  # (over no elements, True)
        return numpy_ops.amin(numpy_ops.astype(self != 0, np.float64), axis=axis, keepdims=keepdims, initial=1.0) > 0


Builder.tracer_type = Tracer


def _plain_c(o):
    """An operand that cannot make a result non-C-ordered: a scalar, a C-ordered array or root."""
    if is_tracer(o):
        return o._view is None and o._layout is None
    return not isinstance(o, np.ndarray) or o.flags.c_contiguous


def _new_array_operator(op):
    """An operator whose result is always a new array in NumPy, even where a builder simplifies
    (x ** 1, x * 1.0, x + 0): a later write into the result must not reach an operand."""
    def method(self, *others):
        result = op(self, *others)
        if is_tracer(result):
            if result is self or any(result is o for o in others):
                result = Tracer(result.node, result.builder)
            if self._view is None and self._layout is None and all(map(_plain_c, others)):
                return result  # the common case: C-ordered operands, nothing to record
            return _layout_k(result, (self, *others))
        return _layout_k(_fresh(result, (self, *others)), (self, *others))
    method.__name__ = op.__name__
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
              "__pow__", "__rpow__", "__matmul__", "__rmatmul__", "__mod__", "__rmod__", "__floordiv__",
              "__rfloordiv__", "__divmod__", "__rdivmod__", "__round__", "__neg__", "__abs__"):
    setattr(Tracer, _name, _new_array_operator(getattr(Tracer, _name)))

# NumPy functions that return a view of their first argument (jitad follows writes through them)
_VIEW_FUNCTIONS = frozenset((np.reshape, np.transpose, np.swapaxes, np.moveaxis, np.ravel, np.squeeze,
                             np.expand_dims, np.diagonal, np.atleast_1d, np.atleast_2d, np.atleast_3d,
                             np.real, np.flip, np.flipud, np.fliplr, np.rot90, np.broadcast_to, np.asarray,
                             np.asanyarray, np.split, np.array_split, np.hsplit, np.vsplit, np.dsplit,
                             np.diff, np.broadcast_arrays,
                             *((np.unstack,) if hasattr(np, "unstack") else ()),
                             np.matrix_transpose if hasattr(np, "matrix_transpose") else np.transpose,
                             np.permute_dims if hasattr(np, "permute_dims") else np.transpose))


def _basic(key):
    """Whether NumPy indexes with `key` by a view (ints, slices, None, ...) rather than a copy."""
    items = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer)) and not isinstance(k, bool)
               for k in items)


def _fresh(result, inputs):
    """`result` as a new array object: a builder may hand back its input unchanged (x ** 1,
    np.positive(x), np.concatenate([x]), x.copy(), ...), but NumPy gives a new array there, and a
    later write into the result must not reach the input. `inputs` may nest lists and tuples."""
    if type(result) is Tracer:  # the common case: a flat tuple of operands, checked without the tree walk
        for i in inputs:
            if i is result:
                return Tracer(result.node, result.builder)
            if isinstance(i, (list, tuple)):
                break
        else:
            return result
    seen = {id(leaf) for leaf in inplace._leaves(inputs) if is_tracer(leaf)}
    return _fresh_ids(result, seen)


def _fresh_ids(result, seen):
    if is_tracer(result):
        return Tracer(result.node, result.builder) if id(result) in seen else result
    if isinstance(result, (list, tuple)) and not hasattr(result, "_fields"):
        return type(result)(_fresh_ids(r, seen) for r in result)
    return result


def _layout_k(result, operands):
    """A new array from an elementwise operation (or np.copy) is laid out like its operands (NumPy's
    order='K'): `x.T * 1.0` is Fortran-ordered, so its ravel is a copy and its .T.ravel() a view.
    Record that layout on the result so views of it follow NumPy's view-or-copy decisions."""
    if not is_tracer(result) or result._view is not None:
        return result
    for o in operands:  # the common case: C-ordered roots and scalars, nothing to record
        if type(o) is Tracer:
            if o._view is None and o._layout is None:
                continue
        elif type(o) in (float, int, bool):
            continue
        break
    else:
        return result
    arrays, c_order = [], True
    leaves = [inplace.resolve(o) for o in inplace._leaves(operands)]  # a Workspace as the value it holds
    for o in leaves:
        if is_tracer(o):
            if o._view is None and o._layout is None:  # a C-ordered root: the common case, no array needed
                arrays.append(None)
                continue
            o = inplace.positions_of(o)
        elif not (isinstance(o, np.ndarray) and o.ndim):
            continue
        arrays.append(o)
        c_order = c_order and o.flags.c_contiguous
    if c_order:
        return result
    arrays = [inplace.root_positions(shape) if a is None else a
              for a, shape in zip(arrays, [getattr(o, "shape", None) for o in leaves
                                           if is_tracer(o) or (isinstance(o, np.ndarray) and o.ndim)])]
    try:
        combined = arrays[0]
        for a in arrays[1:]:  # the iterator NumPy's ufuncs use picks the layout from the operands' strides
            combined = np.add(combined, np.empty_like(a, dtype=np.int64) if a.dtype.kind not in "iu" else a)
        template = np.empty_like(combined, dtype=np.int64, order="K")
    except (ValueError, TypeError):
        return result
    if template.shape != result.shape or template.flags.c_contiguous:
        return result
    template[...] = inplace.root_positions(result.shape)
    result._layout = template
    return result


def _view_of(base, result, on_positions):
    """`result` of a view-making NumPy operation on `base`, recorded as a view of base's root."""
    positions = inplace.positions_of(base)
    try:
        view_positions = on_positions(positions)
    except Exception:  # NumPy accepted the call on the values but not on the positions
        view_positions = None
    if isinstance(result, (list, tuple)):
        parts = view_positions if isinstance(view_positions, (list, tuple)) else [None] * len(result)
        return type(result)(_view_of(base, r, lambda _, v=v: v) for r, v in zip(result, parts))
    if not is_tracer(result):
        return result
    result = Tracer(result.node, result.builder) if result is base or result._view is not None else result
    if view_positions is None:
        return inplace.opaque_view(result, base)
    return inplace.make_view(result, base, view_positions)


def _augmented(target, other, ufunc):
    """`target op= other`: NumPy computes into `target`, so every alias and view of it changes. A
    NumPy scalar (or Python number) cannot change: `v += 1` binds v to a new scalar, and the old
    one's other names keep its value."""
    result = ufunc(target, _r(other))
    if target._scalar and target._view is None:
        return result
    if result.dtype != target.dtype and not np.can_cast(result.dtype, target.dtype, "same_kind"):
        raise TypeError(f"Cannot cast ufunc {ufunc.__name__!r} output from {result.dtype!r} to "
                        f"{target.dtype!r} with casting rule 'same_kind'")
    target[...] = result
    return target

_STORE_OPCODES = {dis.opmap[name] for name in ("STORE_SUBSCR", "STORE_SLICE") if name in dis.opmap}


def _store_error(depth):
    """An InPlaceUpdateError when NumPy is converting a traced value for `array[i] = traced` (a
    store into an array jitad does not trace, which would drop the value's dependence on the
    inputs), else None.

    NumPy calls __array__/__float__ from C, so the frame `depth` above the caller of this
    function is the user's, and it executes a subscript store exactly when the user writes
    into an array.
    """
    frame = sys._getframe(depth)
    if frame.f_code.co_code[frame.f_lasti] in _STORE_OPCODES:
        return InPlaceUpdateError(
            "assignment of a traced value into a NumPy array that is not traced (`array[i] = traced`)",
            inplace.NOT_TRACED)
    return None


def _refuse_store():
    error = _store_error(3)
    if error is not None:
        raise error


_READ_OPCODES = {dis.opmap[name] for name in ("BINARY_SUBSCR", "BINARY_SLICE") if name in dis.opmap}


def _conversion_error(what):
    """ConcretizationError, or InPlaceUpdateError when NumPy converts the value for `array[i] = traced`."""
    error, user = _store_error(3), sys._getframe(2)
    if error is None and user.f_code.co_code[user.f_lasti] in _READ_OPCODES:
        # NumPy converts a traced index of `table[idx]`, `table` an array jitad did not see created
        what = ("Indexing a NumPy array that is not traced with a traced index (`table[idx]`, say "
                "`table[np.floor(x).astype(int)]`: NumPy needs the index's value). Gather with "
                "np.take_along_axis, which jitad traces: np.take_along_axis(table, idx[:, None], axis=0) "
                "for rows, np.take_along_axis(table.ravel(), i * table.shape[1] + j, axis=0) for entries "
                "(np.take dispatches on the table only)")
    return error or ConcretizationError(what)


_NO_MAP = object()
_argument_maps = {}  # NumPy function -> {NumPy parameter name: the builder's name for it (None: it has none)}


def _argument_map(func, builder):
    """How NumPy's parameter names of `func` are named by jitad's `builder` (the same position; a
    keyword-only one the same name);
    _NO_MAP where either signature is unknown or the builder takes *args (its keywords pass through)."""
    found = _argument_maps.get(func)
    if found is None:
        import inspect
        try:
            numpy_params = list(inspect.signature(func).parameters.values())
            builder_params = list(inspect.signature(builder).parameters.values())
        except (TypeError, ValueError):
            numpy_params = builder_params = None
        if numpy_params is None or any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in builder_params):
            found = _NO_MAP
        else:
            builder_names = [p.name for p in builder_params]
            found = {}
            for i, p in enumerate(numpy_params):
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                if p.kind is not p.KEYWORD_ONLY and i < len(builder_names):
                    found[p.name] = builder_names[i]  # by position, as positional arguments pass: `a` is `x`
                else:
                    found[p.name] = p.name if p.name in builder_names else None
            found = (found, {p.name: p.default for p in numpy_params})
        _argument_maps[func] = found
    return found


def _builder_keywords(func, builder, kwargs):
    """A call's keyword arguments by NumPy's names (np.swapaxes(x, axis1=0, axis2=1), np.sum(a=x),
    vstack(tup, dtype=None, casting=...) as np.row_stack makes it) renamed to the builder's names; a
    keyword the builder does not take is dropped when it is NumPy's default, else an
    UnsupportedOperationError names it (instead of a TypeError from jitad's own code)."""
    found = _argument_map(func, builder)
    if found is _NO_MAP:
        return kwargs
    names, defaults = found
    if all(names.get(k, k) == k for k in kwargs):
        return kwargs  # NumPy's names are the builder's (unknown names: NumPy's TypeError, as before)
    renamed = {}
    for k, v in kwargs.items():
        if k not in names:
            renamed[k] = v
            continue
        target = names[k]
        if target is None:
            default = defaults.get(k)
            if v is default or (isinstance(v, (str, type(None), bool, int)) and type(v) is type(default)
                                and v == default):
                continue
            raise UnsupportedOperationError(f"np.{func.__name__}({k}={v!r})")
        renamed[target] = v
    return renamed


# np.array and np.asarray are not dispatched through __array_function__, yet users build
# residual vectors with np.array([expr, expr, ...]). While tracing, jitad wraps them so
# that a (nested) list holding traced values becomes one stacked node.
_original_array, _original_asarray = np.array, np.asarray


def _array(obj, dtype=None, *args, **kwargs):
    obj = inplace.resolve_tree(obj) if isinstance(obj, (list, tuple)) else obj
    if isinstance(obj, inplace.Workspace) and obj.current() is not None:
        obj = obj.current()
    if is_tracer(obj) or (isinstance(obj, (list, tuple)) and numpy_ops._contains_tracer(obj)):
        result = numpy_ops.asarray(obj, dtype=dtype)
        copy = kwargs.get("copy", args[0] if args else True)
        if isinstance(copy, np._CopyMode):  # NumPy's own callers pass the enum (IF_NEEDED, NEVER, ALWAYS)
            copy = copy is np._CopyMode.ALWAYS
        if not copy:
            return _not_the_scalar(result)  # copy=None/False: NumPy's array itself
        result = _array_not_scalar(_fresh(result, (obj,)), ())  # np.array(x) of a 0-d x: a 0-d array
        return _layout_k(result, (obj,)) if is_tracer(obj) and kwargs.get("order", "K") == "K" else result
    return _made_by_user(_original_array(obj, dtype, *args, **kwargs), sys._getframe(1))


def _asarray(obj, dtype=None, *args, **kwargs):
    if isinstance(obj, inplace.Workspace):
        traced = obj.current()
        if traced is not None:
            return traced if dtype is None else numpy_ops.asarray(traced, dtype=dtype)
        if dtype is None or np.dtype(dtype) == obj.dtype:
            return obj
    if is_tracer(obj) or (isinstance(obj, (list, tuple)) and numpy_ops._contains_tracer(obj)):
        return _not_the_scalar(numpy_ops.asarray(inplace.resolve_tree(obj), dtype=dtype))
    return _original_asarray(obj, dtype, *args, **kwargs)


# NumPy functions whose 0-d results are 0-d arrays, not scalars (their views and writes are followed)
_ARRAY_RESULTS = frozenset((np.where, np.copy, np.zeros_like, np.ones_like, np.empty_like, np.full_like, np.select,
                            np.piecewise, np.choose, np.require, np.asarray, np.asanyarray, np.array))


def _array_not_scalar(result, args):
    """`result` as a 0-d array (not a NumPy scalar): unmarked, or a new tracer of it where it is an input."""
    if is_tracer(result) and result._scalar and result._view is None:
        if any(result is a for a in args):
            return Tracer(result.node, result.builder)
        result._scalar = False
    return result


def _not_the_scalar(result):
    """`result`, or a new tracer of its value when it is a scalar argument (NumPy makes an array
    of a Python or NumPy scalar: a write into it must not reach the argument)."""
    if is_tracer(result) and inplace.root_of(result)._scalar:
        return Tracer(result.node, result.builder)
    return result


def _made_by_user(array, frame):
    """An array made by the user's code while tracing becomes a Workspace (it may be written
    into with traced values); NumPy's, SciPy's and jitad's own stay plain."""
    if type(array) is not np.ndarray or current_builder() is None:  # another thread's NumPy code stays plain
        return array
    caller = frame.f_globals.get("__name__", "")
    if caller.partition(".")[0] in inplace.LIBRARIES:
        return array
    return inplace.own(array)


_CREATORS = ("zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like",
             "copy", "eye", "identity")
_originals = {name: getattr(np, name) for name in _CREATORS}


def _creator(name):
    original = _originals[name] if name != "empty" else _originals["zeros"]  # deterministic contents
    if name == "empty_like":
        original = _originals["zeros_like"]

    def make(*args, **kwargs):
        if name in ("full", "full_like"):  # a traced fill value: a new traced array of it
            fill = inplace.resolve(args[1] if len(args) > 1 else kwargs.get("fill_value"))
            if is_tracer(fill):
                return _traced_full(name, fill, *args, **kwargs)
        return _made_by_user(original(*args, **kwargs), sys._getframe(1))
    make.__name__ = make.__qualname__ = name
    make.__wrapped__ = _originals[name]
    return make


_hooked = {name: _creator(name) for name in _CREATORS}


def _traced_full(name, fill, first, fill_value=None, dtype=None, *rest, **kwargs):
    """np.full(shape, traced) / np.full_like(a, traced): a new (writable) array of the fill value."""
    del fill_value, rest
    if name == "full":
        shape = (first,) if isinstance(first, (int, np.integer)) else tuple(first)
    else:
        shape = kwargs.get("shape") or numpy_ops.shape_of(first)
        dtype = dtype or numpy_ops.asarray(first).dtype
    value = numpy_ops.astype(fill, dtype) if dtype is not None else fill
    return Tracer(numpy_ops.broadcast_to(value, tuple(shape)).node, value.builder)


def _contiguous(name, order):
    """np.ascontiguousarray / np.asfortranarray (not dispatched to __array_function__): the array
    itself when it is laid out so already (NumPy returns it: a write into the result reaches it),
    else a copy laid out in that order; at least one dimension, as in NumPy."""
    original = _originals[name] = getattr(np, name)

    def make(a, dtype=None, *, like=None):
        a = inplace.resolve(a) if isinstance(a, inplace.Workspace) and a.current() is not None else a
        if not (is_tracer(a) or (isinstance(a, (list, tuple)) and numpy_ops._contains_tracer(a))):
            return original(a, dtype=dtype) if like is None else original(a, dtype=dtype, like=like)
        result = _array(a, dtype, copy=None)
        if result.ndim == 0:
            return Tracer(numpy_ops.reshape(result, (1,)).node, result.builder)
        positions = inplace.positions_of(result) if result._view is None or result._view[1] is not None else None
        if positions is not None and positions.flags[f"{order}_CONTIGUOUS"]:
            return result
        copy = Tracer(result.node, result.builder)
        if order == "F" and copy.ndim > 1:
            copy._layout = np.empty(copy.shape, np.int64, order="F")
            copy._layout[...] = inplace.root_positions(copy.shape)
        return copy
    make.__name__ = make.__qualname__ = name
    make.__wrapped__ = original
    return make


_hooked.update(ascontiguousarray=_contiguous("ascontiguousarray", "C"),
               asfortranarray=_contiguous("asfortranarray", "F"))


def _array_like_arguments(module, name, positions):
    """np.mean([x, x + 2]), np.linalg.norm((x, y)), np.append([[x, ...]], ...): NumPy dispatches on a
    list's type, not on the traced values inside it, and converts it to an array of concrete values
    (a ConcretizationError). While tracing, the hook makes such a list one stacked traced array first
    (as np.array([...]) of it), then calls NumPy's function, which dispatches to jitad."""
    original = getattr(module, name)
    names = tuple(n for _, n in positions)

    def traced_list(v):
        return isinstance(v, (list, tuple)) and numpy_ops._contains_tracer(v)

    def make(*args, **kwargs):
        if any(traced_list(a) for a in args[:len(positions)]) or any(traced_list(kwargs.get(n)) for n in names):
            args = tuple(_asarray(a) if i < len(positions) and traced_list(a) else a for i, a in enumerate(args))
            kwargs = {k: _asarray(v) if k in names and traced_list(v) else v for k, v in kwargs.items()}
        return original(*args, **kwargs)
    make.__name__ = make.__qualname__ = name
    make.__wrapped__ = original
    return original, make


_ARRAY_LIKE_FIRST = ("mean", "sum", "prod", "std", "var", "max", "min", "amax", "amin", "average", "median",
                     "cumsum", "cumprod", "ptp", "nanmean", "nansum", "nanstd", "nanvar", "nanmax", "nanmin")
_module_hooks = []  # (module, name, original, hook): the same, on np and np.linalg
for _name in _ARRAY_LIKE_FIRST:
    _module_hooks.append((np, _name) + _array_like_arguments(np, _name, [(0, "a")]))
_module_hooks.append((np, "append") + _array_like_arguments(np, "append", [(0, "arr"), (1, "values")]))
_module_hooks.append((np.linalg, "norm") + _array_like_arguments(np.linalg, "norm", [(0, "x")]))


_patch_depth = 0
_patch_lock = threading.Lock()  # traces may run in several threads (a background transform)
# NumPy's creators (np.empty, ...) are the hooks above while any thread traces; a Numba compile in
# this process resolves `np.empty` in generated code by the module's attribute at typing time, so
# compiles (`numpy_unhooked`) and the hooks' installation exclude each other across threads
_patch_cond = threading.Condition(_patch_lock)
_compiling = 0
_local = threading.local()  # .depth: the traces this thread has open


def tracing_here():
    """Whether this thread is inside a trace (NumPy's creators are jitad's hooks)."""
    return getattr(_local, "depth", 0) > 0


@contextlib.contextmanager
def numpy_array_hooks():
    global _patch_depth
    mine = getattr(_local, "depth", 0)
    with _patch_cond:
        while _compiling and not mine:  # another thread compiles: its Numba typing reads np.*
            _patch_cond.wait()
        if _patch_depth == 0:
            np.array, np.asarray = _array, _asarray
            for name, hook in _hooked.items():
                setattr(np, name, hook)
            for module, name, _, hook in _module_hooks:
                setattr(module, name, hook)
        _patch_depth += 1
    _local.depth = mine + 1
    try:
        yield
    finally:
        _local.depth = mine
        with _patch_cond:
            _patch_depth -= 1
            if _patch_depth == 0:
                np.array, np.asarray = _original_array, _original_asarray
                for name, original in _originals.items():
                    setattr(np, name, original)
                for module, name, original, _ in _module_hooks:
                    setattr(module, name, original)
            _patch_cond.notify_all()


@contextlib.contextmanager
def numpy_unhooked():
    """Around a Numba compile in this process: waits until no other thread traces, and keeps new
    traces from installing the hooks until it is done. Inside a trace of this thread there is
    nothing to wait for (callers evaluate on the reference executor there instead of compiling)."""
    global _compiling
    with _patch_cond:
        if not tracing_here():
            while _patch_depth > 0:
                _patch_cond.wait()
        _compiling += 1
    try:
        yield
    finally:
        with _patch_cond:
            _compiling -= 1
            _patch_cond.notify_all()


def trace(fun, avals, concrete=None, differentiated=()):
    """Trace `fun` on inputs of the given (shape, dtype) pairs.

    Returns (graph, captured): `captured` lists the outer tracers this trace closed over (they
    are the graph's trailing inputs). `concrete`: the inputs' values when they are at hand (an
    array, or the outer tracer an input stands for, or None), so Python control flow on traced
    values can take them (jitad.frontend.guards); `differentiated`: indices of the inputs whose
    derivatives are taken. What the trace assumed of the values is `graph.guards`.
    """
    builder = Builder()
    with building(builder), numpy_array_hooks(), linalg_ops.scipy_hooks():
        args = [builder.new_input(shape, dtype) for shape, dtype in avals]
        if concrete is not None:
            builder.know(concrete, differentiated)
        try:
            result = fun(*args)
        except ValueError as error:
            # NumPy replaces an error raised while it stores a traced value into an array
            # ("setting an array element with a sequence"); show jitad's own error instead.
            if isinstance(error.__cause__, JitadError):
                raise error.__cause__ from None
            # a SciPy function handing a traced array to compiled code that rejects it by its value
            # (scipy.signal.lfilter: "could not convert b, a, and x to a common type")
            unsupported = _foreign_value_error(error)
            if unsupported is None:
                raise
            raise unsupported from error
        except TypeError as error:
            # a SciPy function passing a traced array to compiled code ("argument 1 must be
            # numpy.ndarray, not Tracer"), or writing into a NumPy array in its own code: name
            # the SciPy function and the way out
            unsupported = _foreign_type_error(error)
            if unsupported is None:
                raise
            raise unsupported from error
        outputs = [_to_node(builder, r) for r in result]
    captured = [tracer for tracer, _ in builder.captured.values()]
    inputs = builder.inputs + [node for _, node in builder.captured.values()]
    graph = Graph(inputs, outputs)
    graph.guards = builder.guards
    return graph, captured


def _ufunc_name(ufunc):
    """`np.sin`, or `scipy.special.yn` for a ufunc of SciPy's (ufuncs do not record their module)."""
    name = ufunc.__name__
    special = sys.modules.get("scipy.special")
    if getattr(np, name, None) is not ufunc and getattr(special, name, None) is ufunc:
        return f"scipy.special.{name}"
    return f"np.{name}"


def _foreign_type_error(error):
    """The UnsupportedOperationError for a TypeError about a Tracer (or jitad's own error about an
    in-place write or a concrete value) raised in SciPy's code, or None."""
    if not isinstance(error, (InPlaceUpdateError, ConcretizationError)) and "Tracer" not in str(error):
        return None
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return linalg_ops.foreign_call_error(tb.tb_frame)


def _foreign_value_error(error):
    """The UnsupportedOperationError for a ValueError raised by compiled code that a SciPy function
    called with a traced array (the innermost Python frame is SciPy's and holds a Tracer), or None."""
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame
    if not frame.f_globals.get("__name__", "").startswith("scipy."):
        return None
    values = list(frame.f_locals.values())
    values += [v for value in values if isinstance(value, (tuple, list)) for v in value]
    if not any(is_tracer(value) for value in values):
        return None
    return linalg_ops.foreign_call_error(frame)


def _to_node(builder, value):
    value = _r(value)
    if is_tracer(value):
        if value.builder is builder:
            return value.node
        return builder.capture(value)
    return builder.const(np.asarray(value))
