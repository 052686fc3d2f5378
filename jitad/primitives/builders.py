"""Builders for rules and transforms: IR values made by binding primitives directly.

The transforms (ad, batching) and the passes build IR with these instead of the NumPy
front-end, so the IR layers run without it. Each builder records no node for an identity
(a reshape to the same shape, a broadcast to the same shape, a cast to the same dtype),
as the NumPy front-end does. Python scalars take the dtype of a traced float operand
(NumPy 2's weak scalars): `bind` does that for every primitive.
"""
import numpy as np

from jitad.ir import is_tracer
from jitad.primitives.elementwise import (add_p, convert_p, multiply_p, negative_p, subtract_p, where_p)
from jitad.primitives.structural import (broadcast_to, concatenate_p, full, lead_batch, reduce_sum_p,  # noqa: F401
                                         reshape, shape_of, slice_p, transpose, unbroadcast, zeros_like)

__all__ = ["shape_of", "asarray", "reshape", "transpose", "broadcast_to", "lead_batch", "astype", "full",
           "zeros_like", "unbroadcast", "add", "subtract", "multiply", "negative", "where", "sum", "stack",
           "index_first", "concatenate", "flat", "flat_range", "swap_leading"]


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


def negative(x):
    return negative_p(x)


def where(cond, x, y):
    return where_p(cond, x, y)


def sum(x, axes):  # noqa: A001 (the name of the operation)
    """x summed over `axes` (non-negative ints); no node when there are none."""
    axes = tuple(sorted(axes))
    return reduce_sum_p(x, axes=axes) if axes else x


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
    """Values joined along `axis` (no node for one value)."""
    values = [asarray(v) for v in values]
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
