"""Builders for rules and transforms: IR values made by binding primitives directly.

The transforms (ad, batching) and the passes build IR with these instead of the NumPy
front-end, so the IR layers run without it. Each builder records no node for an identity
(a reshape to the same shape, a broadcast to the same shape, a cast to the same dtype),
as the NumPy front-end does. Python scalars take the dtype of a traced float operand
(NumPy 2's weak scalars): `bind` does that for every primitive.
"""
import numpy as np

from jitad.errors import ShapeError
from jitad.ir import is_tracer
from jitad.primitives.elementwise import (abs_p, add_p, convert_p, divide_p, maximum_p, multiply_p, negative_p,
                                          subtract_p, where_p)
from jitad.primitives.structural import (broadcast_to, concatenate_p, diagonal_p, full, lead_batch,  # noqa: F401
                                         matmul_p, reduce_max_p, reduce_sum_p, reshape, shape_of, slice_p,
                                         transpose, unbroadcast, zeros_like)

__all__ = ["shape_of", "asarray", "reshape", "transpose", "broadcast_to", "lead_batch", "astype", "full",
           "zeros_like", "unbroadcast", "add", "subtract", "multiply", "divide", "negative", "abs", "maximum",
           "where", "sum", "max", "stack", "index_first", "concatenate", "flat", "flat_range", "swap_leading",
           "axis_range", "expand_dims", "matrix_transpose", "matmul", "tril", "triu", "diagonal", "trace"]


def asarray(x):
    return x if is_tracer(x) else np.asarray(x)


def astype(x, dtype):
    dtype = np.dtype(dtype)
    if not is_tracer(x):
        return np.asarray(x).astype(dtype)
    return x if x.dtype == dtype else convert_p(x, dtype=dtype)


def add(x, y):
    return add_p(x, y)


def subtract(x, y):
    return subtract_p(x, y)


def multiply(x, y):
    return multiply_p(x, y)


def divide(x, y):
    return divide_p(x, y)


def negative(x):
    return negative_p(x)


def abs(x):  # noqa: A001 (the name of the operation)
    return abs_p(x)


def maximum(x, y):
    return maximum_p(x, y)


def where(cond, x, y):
    return where_p(cond, x, y)


def _axes(axes, ndim):
    """`axes` (an int or ints, negatives counted from the end) as sorted non-negative ints."""
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    if any(not -ndim <= a < ndim for a in axes):
        raise np.exceptions.AxisError(f"axes {axes} out of bounds for an array of dimension {ndim}")
    return tuple(sorted(int(a) % ndim for a in axes))


def _reduce(prim, x, axes, keepdims):
    shape = shape_of(x)
    axes = _axes(axes, len(shape))
    out = prim(x, axes=axes) if axes else x
    return reshape(out, tuple(1 if i in axes else n for i, n in enumerate(shape))) if keepdims else out


def sum(x, axes, keepdims=False):  # noqa: A001 (the name of the operation)
    """x summed over `axes` (as np.sum's axis=, of a non-boolean x); no node when there are none."""
    return _reduce(reduce_sum_p, x, axes, keepdims)


def max(x, axes, keepdims=False, empty=None):  # noqa: A001 (the name of the operation)
    """The largest entry over `axes` (as np.max's axis=). Over axes with no entries NumPy raises;
    with `empty` given, the result is `empty` there (as np.max(initial=empty) for values that are
    all >= empty, such as the absolute values or the flags the derivative rules take maxima of)."""
    shape = shape_of(x)
    if empty is not None and any(shape[a] == 0 for a in _axes(axes, len(shape))):
        reduced = _axes(axes, len(shape))
        out = tuple(1 if i in reduced else n for i, n in enumerate(shape)) if keepdims else \
            tuple(n for i, n in enumerate(shape) if i not in reduced)
        return full(out, empty, x.dtype)
    return _reduce(reduce_max_p, x, axes, keepdims)


def index_first(x, i):
    """x[i] along the leading axis."""
    shape = shape_of(x)
    row = slice_p(x, starts=(i,) + (0,) * (len(shape) - 1), steps=(1,) * len(shape), shape=(1,) + shape[1:])
    return reshape(row, shape[1:])


def stack(values):
    """Values of one shape stacked along a new leading axis."""
    values = [asarray(v) for v in values]
    rows = [reshape(v, (1,) + shape_of(v)) for v in values]
    return rows[0] if len(rows) == 1 else concatenate_p(*rows, axis=0)


def concatenate(values, axis=0):
    """Values joined along `axis` (negatives count from the end; no node for one value)."""
    values = [asarray(v) for v in values]
    axis = _axes(axis, len(shape_of(values[0])))[0]
    return values[0] if len(values) == 1 else concatenate_p(*values, axis=axis)


def flat(x):
    """x as a 1-D array, in C order."""
    return reshape(x, (int(np.prod(shape_of(x), dtype=np.int64)),))


def flat_range(x, start, size):
    """x[start:start + size] of a 1-D x (no node for all of it)."""
    if (start, size) == (0, shape_of(x)[0]):
        return x
    return slice_p(x, starts=(start,), steps=(1,), shape=(size,))


def swap_leading(x):
    """x with its first two axes swapped."""
    rank = len(shape_of(x))
    return transpose(x, (1, 0) + tuple(range(2, rank)))


def axis_range(x, axis, start=None, stop=None):
    """x[..., start:stop, ...] along `axis` (a step-1 slice, Python's bounds; no node for all of it)."""
    shape = shape_of(x)
    axis = _axes(axis, len(shape))[0]
    begin, end, _ = slice(start, stop).indices(shape[axis])
    size = end - begin if end > begin else 0
    if (begin, size) == (0, shape[axis]):
        return x
    starts = tuple(begin if k == axis else 0 for k in range(len(shape)))
    return slice_p(x, starts=starts, steps=(1,) * len(shape), shape=shape[:axis] + (size,) + shape[axis + 1:])


def expand_dims(x, axis):
    """x with a new axis of length 1 at `axis` (as np.expand_dims: -1 is the new last axis)."""
    shape = shape_of(x)
    axis = _axes(axis, len(shape) + 1)[0]
    return reshape(x, shape[:axis] + (1,) + shape[axis:])


def matrix_transpose(x):
    """Each matrix of a stack transposed (np.swapaxes(x, -1, -2))."""
    rank = len(shape_of(x))
    if rank < 2:
        raise ShapeError(f"matrix_transpose needs at least two dimensions, got shape {shape_of(x)}")
    return transpose(x, tuple(range(rank - 2)) + (rank - 1, rank - 2))


def matmul(*factors):
    """The product of stacks of matrices (each at least 2-D, batch axes broadcast), left to right:
    matmul(a, b, c) is (a @ b) @ c."""
    result = asarray(factors[0])
    for factor in factors[1:]:
        factor = asarray(factor)
        if len(shape_of(result)) < 2 or len(shape_of(factor)) < 2:
            raise ShapeError(f"matmul of shapes {shape_of(result)} and {shape_of(factor)}: the builder takes "
                             "stacks of matrices (promote vectors first)")
        result = matmul_p(result, factor)
    return result


def _triangle(x, k, lower):
    """x with the entries outside a triangle of each matrix set to zero (of x's dtype)."""
    n, m = shape_of(x)[-2:]
    mask = np.tril(np.ones((n, m), bool), k) if lower else np.triu(np.ones((n, m), bool), k)
    return where_p(mask, x, np.zeros((), x.dtype))


def tril(x, k=0):
    """np.tril: the lower triangle of each matrix (on and below the k-th diagonal)."""
    return _triangle(asarray(x), k, lower=True)


def triu(x, k=0):
    """np.triu: the upper triangle of each matrix (on and above the k-th diagonal)."""
    return _triangle(asarray(x), k, lower=False)


def diagonal(x, offset=0, axis1=-2, axis2=-1):
    """np.diagonal (its default here: the diagonal of each matrix of a stack, along the last axis)."""
    rank = len(shape_of(x))
    axis1, axis2 = _axes(axis1, rank)[0], _axes(axis2, rank)[0]
    if axis1 == axis2:
        raise ShapeError("diagonal: axis1 and axis2 cannot be the same")
    return diagonal_p(x, offset=int(offset), axis1=axis1, axis2=axis2)


def trace(x):
    """The trace of each matrix of a stack (np.trace(x, axis1=-2, axis2=-1) of a non-boolean x)."""
    d = diagonal(x)
    return sum(d, len(shape_of(d)) - 1)
