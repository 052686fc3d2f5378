"""The NumPy API on traced values, built from primitives.

`UFUNCS` maps NumPy ufuncs and `FUNCTIONS` maps NumPy functions to builders; the
tracer's `__array_ufunc__` / `__array_function__` look them up. Builders that are
compositions (mean, var, einsum, norm, ...) are differentiated through their parts.
"""
import builtins
import math
import operator
import warnings

import numpy as np

from jitad import primitives as P
from jitad.errors import AxisError, ShapeError, UnsupportedOperationError
from jitad.frontend import guards
from jitad.ir import is_tracer


def shape_of(x):
    try:
        return tuple(x.shape)
    except AttributeError:
        return np.shape(x)


def ndim_of(x):
    return len(shape_of(x))


def normalize_axis(axis, ndim):
    """One axis as a non-negative int; NumPy's AxisError (jitad.AxisError) when out of range."""
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise AxisError(axis, ndim)
    return axis % ndim


def _axes(axis, ndim):
    """Sorted non-negative axes of `axis` (None = all, an int, or a tuple), checked like NumPy."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = [normalize_axis(a, ndim) for a in axis]
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axis}")
    return tuple(sorted(out))


# --- shape builders ------------------------------------------------------------------------
def reshape(x, *shape, order="C"):
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = shape[0]
    shape = tuple(map(int, shape))
    if order != "C":
        return _reshape_in_order(x, shape, order) if is_tracer(x) else np.reshape(x, shape, order=order)
    current = shape_of(x)
    if shape == current:  # the common no-op (a matmul of matrices, x[i] of a vector, ...)
        return x
    size = math.prod(current)
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if not known:  # NumPy: -1 cannot be inferred next to a zero-size axis
            raise ShapeError(f"cannot reshape array of size {size} into shape {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if math.prod(shape) != size:
        raise ShapeError(f"cannot reshape array of shape {current} into shape {shape}")
    if shape == current:
        return x
    return P.reshape_p(x, shape=shape)


def _reshape_in_order(x, shape, order):
    """reshape in order 'F' (first index fastest), 'A' (F when x is Fortran-contiguous) or, for
    ravel, 'K' (memory order): a gather of x's C-ordered elements. x's memory layout is the one
    jitad records for in-place writes (`Tracer._view` positions, `Tracer._layout`)."""
    if order not in ("F", "A", "K") or (order == "K" and len(shape) != 1):
        allowed = "'C', 'F', 'A' or 'K'" if len(shape) == 1 else "'C', 'F' or 'A'"
        raise ValueError(f"order must be one of {allowed} (got {order!r})")
    current = shape_of(x)
    target = np.empty(current, dtype=np.bool_).reshape(shape).shape  # (NumPy's errors and its -1)
    index = np.arange(math.prod(current), dtype=np.int64).reshape(current)
    if order != "F":
        laid = x._layout if x._view is None else x._view[1]
        if x._view is None and laid is None:  # a C-ordered root
            laid = index
        if laid is None:
            raise UnsupportedOperationError(f"reshape/ravel(order={order!r}) of a view jitad cannot follow",
                                            "Its memory layout is unknown: pass order='C' or 'F'. ")
        if order == "A":
            order = "F" if laid.flags.f_contiguous and not laid.flags.c_contiguous else "C"
        else:  # x's C indices laid out as x is in memory, read in that order
            laid_index = np.empty_like(laid, order="K")
            laid_index[...] = index
            index = laid_index
    gather = index.ravel(order="K") if order == "K" else np.reshape(index, target, order=order).ravel()
    if np.array_equal(gather, np.arange(gather.size)):
        return reshape(x, target)
    return P.reshape_p(P.take_p(P.reshape_p(x, shape=(gather.size,)), gather, axis=0), shape=target)


def transpose(x, axes=None):
    nd = ndim_of(x)
    perm = tuple(reversed(range(nd))) if axes is None else tuple(normalize_axis(a, nd) for a in axes)
    if len(perm) != nd:
        raise ShapeError(f"transpose: axes {tuple(axes)} don't match an array of {nd} dimensions")
    if len(set(perm)) != nd:
        raise ShapeError(f"transpose: repeated axis in {tuple(axes)}")
    if perm == tuple(range(nd)):
        return x
    return P.transpose_p(x, perm=perm)


def swapaxes(x, a, b):
    perm = list(range(ndim_of(x)))
    a, b = normalize_axis(a, len(perm)), normalize_axis(b, len(perm))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def moveaxis(x, source, destination):
    nd = ndim_of(x)
    source = [normalize_axis(s, nd) for s in np.atleast_1d(source)]
    destination = [normalize_axis(d, nd) for d in np.atleast_1d(destination)]
    order = [n for n in range(nd) if n not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(x, order)


def broadcast_to(x, shape):
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    if shape_of(x) == shape:
        return x
    return P.broadcast_to_p(x, shape=shape)


def ravel(x, order="C"):
    return reshape(x, (-1,), order=order)


def squeeze(x, axis=None):
    shape = shape_of(x)
    if axis is None:
        axes = tuple(i for i, n in enumerate(shape) if n == 1)
    else:
        axes = _axes(axis, len(shape))
        if any(shape[a] != 1 for a in axes):
            raise ShapeError("cannot select an axis to squeeze out which has size not equal to one")
    return reshape(x, tuple(n for i, n in enumerate(shape) if i not in axes))


def expand_dims(x, axis):
    shape = list(shape_of(x))
    axes = _axes(axis, len(shape) + (1 if np.isscalar(axis) else len(axis)))
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


def atleast_1d(x):
    return reshape(x, (1,)) if ndim_of(x) == 0 else x


def atleast_2d(x):
    nd = ndim_of(x)
    return reshape(x, (1,) * (2 - nd) + shape_of(x)) if nd < 2 else x


def concatenate(arrays, axis=0, out=None, dtype=None):
    if out is not None:
        from jitad.errors import InPlaceUpdateError
        raise InPlaceUpdateError("np.concatenate(out=...) with traced values")
    arrays = [asarray(a) for a in arrays]
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    nd = ndim_of(arrays[0])
    if nd == 0:
        raise ShapeError("zero-dimensional arrays cannot be concatenated")
    axis = normalize_axis(axis, nd)
    if len(arrays) == 1:
        return arrays[0]
    result = P.concatenate_p(*arrays, axis=axis)
    return result if dtype is None else astype(result, dtype)


def stack(arrays, axis=0, out=None):
    arrays = [asarray(a) for a in arrays]
    shapes = {shape_of(a) for a in arrays}
    if len(shapes) != 1:
        raise ShapeError("all input arrays must have the same shape")
    nd = ndim_of(arrays[0]) + 1
    axis = normalize_axis(axis, nd)
    return concatenate([expand_dims(a, axis) for a in arrays], axis=axis, out=out)


def hstack(arrays):
    arrays = [atleast_1d(asarray(a)) for a in arrays]
    return concatenate(arrays, axis=0 if ndim_of(arrays[0]) == 1 else 1)


def vstack(arrays):
    return concatenate([atleast_2d(asarray(a)) for a in arrays], axis=0)


def column_stack(arrays):
    arrays = [asarray(a) for a in arrays]
    return concatenate([reshape(a, (-1, 1)) if ndim_of(a) < 2 else a for a in arrays], axis=1)


def flip(x, axis=None):
    shape = shape_of(x)
    axes = _axes(axis, len(shape))
    starts = tuple(n - 1 if i in axes else 0 for i, n in enumerate(shape))
    steps = tuple(-1 if i in axes else 1 for i in range(len(shape)))
    return P.slice_p(x, starts=starts, steps=steps, shape=shape)


def _take_slice(x, axis, start, stop):
    """x[..., start:stop, ...] along `axis` (a static slice)."""
    index = [slice(None)] * ndim_of(x)
    index[axis] = slice(start, stop)
    return getitem(x, tuple(index))


def diff(x, n=1, axis=-1, prepend=None, append=None):
    x = asarray(x)
    axis = normalize_axis(axis, ndim_of(x))
    if prepend is not None or append is not None:
        parts = [np.broadcast_to(p, shape_of(x)[:axis] + (1,) + shape_of(x)[axis + 1:]) if np.ndim(p) == 0 else p
                 for p in (prepend, append) if p is not None]
        x = concatenate(([parts[0]] if prepend is not None else []) + [x] +
                        ([parts[-1]] if append is not None else []), axis=axis)
    for _ in range(n):
        x = _take_slice(x, axis, 1, None) - _take_slice(x, axis, None, -1)
    return x


def roll(x, shift, axis=None):
    if axis is None:
        return reshape(roll(ravel(x), shift, 0), shape_of(x))
    shifts, axes = np.broadcast_arrays(np.atleast_1d(shift), np.atleast_1d(axis))
    for s, a in zip(shifts, axes):
        a = normalize_axis(int(a), ndim_of(x))
        n = shape_of(x)[a]
        s = int(s) % n if n else 0
        if s:
            x = concatenate([_take_slice(x, a, n - s, None), _take_slice(x, a, None, n - s)], axis=a)
    return x


def tile(x, reps):
    reps = (int(reps),) if np.ndim(reps) == 0 else tuple(int(r) for r in reps)
    x = asarray(x)
    nd = max(ndim_of(x), len(reps))
    x = reshape(x, (1,) * (nd - ndim_of(x)) + shape_of(x))
    reps = (1,) * (nd - len(reps)) + reps
    shape = shape_of(x)
    expanded = reshape(x, tuple(v for n in shape for v in (1, n)))
    tiled = broadcast_to(expanded, tuple(v for r, n in zip(reps, shape) for v in (r, n)))
    return reshape(tiled, tuple(r * n for r, n in zip(reps, shape)))


def repeat(x, repeats, axis=None):
    if is_tracer(repeats):
        raise UnsupportedOperationError("np.repeat with traced repeats", "The result's shape would depend on the "
                                        "values: pass concrete repeats. ")
    if axis is None:
        x, axis = ravel(x), 0
    axis = normalize_axis(axis, ndim_of(x))
    shape = shape_of(x)
    if np.ndim(repeats) != 0:  # per-element counts: a gather of index i repeats[i] times
        counts = np.broadcast_to(np.asarray(repeats, dtype=np.intp), (shape[axis],))
        return P.take_p(x, np.repeat(np.arange(shape[axis]), counts), axis=axis)
    expanded = expand_dims(x, axis + 1)
    out = broadcast_to(expanded, shape[:axis + 1] + (int(repeats),) + shape[axis + 1:])
    return reshape(out, shape[:axis] + (shape[axis] * int(repeats),) + shape[axis + 1:])


def _pad_widths(pad_width, nd):
    return np.broadcast_to(np.asarray(pad_width, dtype=int).reshape(-1, 2) if np.ndim(pad_width) else
                           np.full((1, 2), int(pad_width)), (nd, 2))


def pad(x, pad_width, mode="constant", constant_values=0, reflect_type="even"):
    x = asarray(x)
    if mode in ("edge", "reflect", "symmetric", "wrap") and reflect_type == "even":
        # entries of x repeated: one gather per axis, its indices NumPy's own np.pad of arange(n)
        for axis, (before, after) in enumerate(_pad_widths(pad_width, ndim_of(x))):
            if before or after:
                source = np.pad(np.arange(shape_of(x)[axis]), (int(before), int(after)), mode=mode)
                x = P.take_p(x, source, axis=axis)
        return x
    if mode != "constant":
        raise UnsupportedOperationError(f"np.pad(mode={mode!r})", "jitad implements the modes 'constant', 'edge', "
                                        "'reflect', 'symmetric' and 'wrap' (reflect_type='even'). ")
    widths = _pad_widths(pad_width, ndim_of(x))
    values = np.broadcast_to(np.asarray(constant_values, dtype=float).reshape(-1, 2) if np.ndim(constant_values)
                             else np.full((1, 2), float(constant_values)), (ndim_of(x), 2))
    for axis, ((before, after), (value_before, value_after)) in enumerate(zip(widths, values)):
        shape = list(shape_of(x))
        parts = []
        if before:
            shape[axis] = before
            parts.append(np.full(shape, value_before, x.dtype))
        parts.append(x)
        if after:
            shape[axis] = after
            parts.append(np.full(shape, value_after, x.dtype))
        x = concatenate(parts, axis=axis) if len(parts) > 1 else x
    return x


def split(x, indices_or_sections, axis=0):
    axis = normalize_axis(axis, ndim_of(x))
    n = shape_of(x)[axis]
    if np.ndim(indices_or_sections) == 0:
        sections = int(indices_or_sections)
        if n % sections:
            raise ShapeError("array split does not result in an equal division")
        bounds = [n // sections * k for k in range(1, sections)]
    else:
        bounds = [int(b) for b in indices_or_sections]
    edges = [0] + bounds + [n]
    return [_take_slice(x, axis, a, b) for a, b in zip(edges[:-1], edges[1:])]


def array_split(x, indices_or_sections, axis=0):
    if np.ndim(indices_or_sections) != 0:
        return split(x, indices_or_sections, axis)
    n, sections = shape_of(x)[normalize_axis(axis, ndim_of(x))], int(indices_or_sections)
    sizes = [n // sections + (1 if k < n % sections else 0) for k in range(sections)]
    return split(x, list(np.cumsum(sizes)[:-1]), axis)


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """np.cross of 3-vectors, and of 2-vectors as NumPy (deprecated there): a missing z is 0, and
    two 2-vectors give the z component only. `axis` overrides axisa, axisb and axisc."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = moveaxis(asarray(a), axisa, -1), moveaxis(asarray(b), axisb, -1)
    na, nb = shape_of(a)[-1], shape_of(b)[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ShapeError("incompatible dimensions for cross product (dimension must be 2 or 3)")
    if na == 2 or nb == 2:
        warnings.warn("Arrays of 2-dimensional vectors are deprecated. Use arrays of 3-dimensional vectors "
                      "instead. (deprecated in NumPy 2.0)", DeprecationWarning, stacklevel=3)
    a0, a1, b0, b1 = getitem(a, (Ellipsis, 0)), getitem(a, (Ellipsis, 1)), getitem(b, (Ellipsis, 0)), getitem(b, (Ellipsis, 1))
    z = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return z
    a2 = getitem(a, (Ellipsis, 2)) if na == 3 else None
    b2 = getitem(b, (Ellipsis, 2)) if nb == 3 else None
    x = -(a2 * b1) if b2 is None else a1 * b2 if a2 is None else a1 * b2 - a2 * b1
    y = a2 * b0 if b2 is None else -(a0 * b2) if a2 is None else a2 * b0 - a0 * b2
    shape = np.broadcast_shapes(shape_of(x), shape_of(y), shape_of(z))
    return moveaxis(stack([broadcast_to(c, shape) for c in (x, y, z)], axis=-1), -1, axisc)


def kron(a, b):
    a, b = asarray(a), asarray(b)
    nd = max(ndim_of(a), ndim_of(b))
    a = reshape(a, (1,) * (nd - ndim_of(a)) + shape_of(a))
    b = reshape(b, (1,) * (nd - ndim_of(b)) + shape_of(b))
    interleaved = reshape(a, tuple(v for n in shape_of(a) for v in (n, 1))) * \
        reshape(b, tuple(v for n in shape_of(b) for v in (1, n)))
    return reshape(interleaved, tuple(m * n for m, n in zip(shape_of(a), shape_of(b))))


def take_along_axis(x, indices, axis):
    """x's entries picked per position along `axis` (a gather, differentiable in x)."""
    x = asarray(x)
    if axis is None:
        x, axis = ravel(x), 0
    axis, indices = normalize_axis(axis, ndim_of(x)), asarray(indices)
    if ndim_of(indices) != ndim_of(x):
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    x, indices = moveaxis(x, axis, -1), moveaxis(indices, axis, -1)
    n = shape_of(x)[-1]
    # the other axes broadcast against each other (size 1 in either), as NumPy's fancy indexing does
    batch = np.broadcast_shapes(shape_of(x)[:-1], shape_of(indices)[:-1])
    x, indices = broadcast_to(x, batch + (n,)), broadcast_to(indices, batch + shape_of(indices)[-1:])
    # negative positions count from the end of their row (added to the row offsets below they would not)
    indices = P.where_p(P.less_p(indices, 0), indices + n, indices) if is_tracer(indices) else \
        np.where(indices < 0, indices + n, indices)
    rows = int(math.prod(shape_of(indices)[:-1]))
    offsets = (np.arange(rows, dtype=np.int64) * n).reshape(shape_of(indices)[:-1] + (1,))
    flat = P.take_p(ravel(x), add(indices, offsets), axis=0)
    return moveaxis(flat, -1, axis)


def argsort(x, axis=-1, kind=None, order=None, stable=None):
    x = asarray(x)
    if axis is None:
        x, axis = ravel(x), 0
    axis = normalize_axis(axis, ndim_of(x))
    return moveaxis(P.argsort_p(moveaxis(x, axis, -1)), -1, axis)


def sort(x, axis=-1, kind=None, order=None, stable=None):
    """Sorted values; the derivative moves each cotangent back to where its value came from."""
    x = asarray(x)
    if axis is None:
        x, axis = ravel(x), 0
    return take_along_axis(x, argsort(x, axis), axis)


def median(x, axis=None, out=None, overwrite_input=False, keepdims=False):
    """The middle of the sorted values (the mean of the two middles for an even count)."""
    x = asarray(x)
    shape = shape_of(x)
    axes = _axes(axis, len(shape))
    kept = [a for a in range(len(shape)) if a not in axes]
    n = int(math.prod([shape[a] for a in axes]))
    flat = reshape(transpose(x, kept + list(axes)), tuple(shape[a] for a in kept) + (n,))
    middle = _take_slice(sort(flat, -1), len(kept), (n - 1) // 2, n // 2 + 1)
    result = mean(middle, axis=-1)
    if keepdims:
        result = reshape(result, tuple(1 if a in axes else m for a, m in enumerate(shape)))
    return result


def ptp(x, axis=None, out=None, keepdims=False):
    return amax(x, axis=axis, keepdims=keepdims) - amin(x, axis=axis, keepdims=keepdims)


def real(x):
    return x


def imag(x):
    return zeros_like(x)


def fmod(x, y):
    if _integer_quotient_dtype(x, y) is not None:
        return x - P.trunc_p(x / y) * y
    return P.fmod_p(x, y)


def astype(x, dtype, copy=True, **_):
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x
    if dtype.kind not in "fiub":
        raise UnsupportedOperationError(f"astype({dtype.name})", "jitad traces float, integer and boolean "
                                        "arrays only (no complex, object or string dtypes). ")
    return P.convert_p(x, dtype=dtype)


# --- indexing --------------------------------------------------------------------------------
def getitem(x, key):
    """NumPy indexing: basic slices, ints, None, ..., integer arrays and boolean masks (a traced
    mask is read from the trace's values and guarded: `mask_value`)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(is_tracer(k) and k.dtype == bool for k in key):
        key = tuple(mask_value(k) if is_tracer(k) and k.dtype == bool else k for k in key)
    if len(key) == 1 and isinstance(key[0], (np.ndarray, np.bool_, bool)) and np.ndim(key[0]) == 0 and \
            np.asarray(key[0]).dtype == bool:
        # x[b] with a 0-d boolean (x[x > 0] of a 0-d x): NumPy adds an axis of length 1 (True) or 0 (False)
        shape = shape_of(x)
        grown = reshape(x, (1,) + shape)
        return grown if bool(key[0]) else P.slice_p(grown, starts=(0,) * (len(shape) + 1),
                                                     steps=(1,) * (len(shape) + 1), shape=(0,) + shape)
    shape = shape_of(x)
    window = _basic_window(key, shape)
    if window is not None:  # ints and slices only (x[t], z[:, :n]): the nodes the general path makes
        starts, steps, counts, layout = window
        if counts != shape or any(s != 1 for s in steps):
            x = P.slice_p(x, starts=starts, steps=steps, shape=counts)
        return x if layout == counts else P.reshape_p(x, shape=layout)  # (`reshape`, its checks hold)
    items = []
    for k in key:
        if is_tracer(k):
            items.append(("array", k, 1))
        elif isinstance(k, (list, np.ndarray)):
            arr = np.asarray(k)
            if arr.dtype == bool:
                if arr.ndim == 0:
                    raise IndexError("a 0-d boolean index is not supported")
                # a concrete mask has a static result shape: its nonzero() positions
                items.extend(("array", a, 1) for a in arr.nonzero())
            elif arr.dtype.kind in "iu" or arr.size == 0:
                items.append(("array", arr.astype(np.intp), 1))
            else:
                raise IndexError("arrays used as indices must be of integer (or boolean) type")
        elif k is None:
            items.append(("new", None, 0))
        elif k is Ellipsis:
            items.append(("ellipsis", None, 0))
        elif isinstance(k, slice):
            items.append(("slice", k, 1))
        elif isinstance(k, (int, np.integer)):
            items.append(("int", int(k), 1))
        else:
            raise IndexError(f"unsupported index {k!r} of type {type(k).__name__}")
    used = builtins.sum(n for _, _, n in items)
    _check_masks(key, items, shape)
    if used > len(shape):
        raise IndexError(f"too many indices for array: array is {len(shape)}-dimensional, "
                         f"but {used} were indexed")
    if not any(kind == "ellipsis" for kind, _, _ in items):
        items.append(("ellipsis", None, 0))
    expanded = []
    for kind, k, n in items:
        if kind == "ellipsis":
            if any(e[0] == "ellipsis" for e in expanded):
                raise IndexError("an index can only have a single ellipsis ('...')")
            expanded.extend(("slice", slice(None), 1) for _ in range(len(shape) - used))
            expanded.append(("ellipsis", None, 0))
        else:
            expanded.append((kind, k, n))
    starts, steps, counts, layout, advanced = [], [], [], [], []
    axis = 0
    for kind, k, _ in expanded:
        if kind == "new":
            layout.append(1)
        elif kind == "slice":
            start, stop, step = k.indices(shape[axis])
            count = len(range(start, stop, step))
            starts.append(start if count else 0), steps.append(step), counts.append(count)
            layout.append(count)
            axis += 1
        elif kind == "int":
            n = shape[axis]
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
            starts.append(k % n), steps.append(1), counts.append(1)
            axis += 1
        elif kind == "array":
            n = shape[axis]
            if not is_tracer(k):
                if k.size and (k.max() >= n or k.min() < -n):
                    raise IndexError(f"index out of bounds for axis {axis} with size {n}")
                k = np.where(k < 0, k + n, k)
            starts.append(0), steps.append(1), counts.append(n)
            advanced.append((len(layout), k))
            layout.append(n)
            axis += 1
    if tuple(counts) != shape or any(s != 1 for s in steps):
        x = P.slice_p(x, starts=tuple(starts), steps=tuple(steps), shape=tuple(counts))
    x = reshape(x, tuple(layout))
    if not advanced:
        return x
    # NumPy: with index arrays present, integers are advanced indices too; when the advanced
    # indices are not next to each other in the key (a slice, None or ... between them), the
    # broadcast index dimensions go first, else where the first of them stood
    where = [j for j, (kind, _, _) in enumerate(expanded) if kind in ("int", "array")]
    front = where != list(range(where[0], where[0] + len(where)))
    if len(advanced) == 1:
        position, idx = advanced[0]
        out = P.take_p(x, idx, axis=position)
        if front and position:
            width = np.ndim(idx)
            rank = len(shape_of(out))
            moved = list(range(position, position + width))
            out = transpose(out, moved + [a for a in range(rank) if a not in moved])
        return out
    return _take_many(x, advanced, front)


def _basic_window(key, shape):
    """(starts, steps, counts, layout) of a key of Python ints and slices alone, at most one per
    axis and every int in range, as `getitem`'s general path computes them; else None (that path
    then decides, and raises NumPy's errors)."""
    if len(key) > len(shape):
        return None
    starts, steps, counts, layout = [], [], [], []
    for k, n in zip(key, shape):
        if type(k) is slice:
            start, stop, step = k.indices(n)
            count = len(range(start, stop, step))
            starts.append(start if count else 0)
            steps.append(step)
            counts.append(count)
            layout.append(count)
        elif type(k) is int and -n <= k < n:
            starts.append(k % n)
            steps.append(1)
            counts.append(1)
        else:
            return None
    rest = shape[len(key):]
    counts.extend(rest)
    layout.extend(rest)
    return (tuple(starts) + (0,) * len(rest), tuple(steps) + (1,) * len(rest), tuple(counts), tuple(layout))


def _check_masks(key, items, shape):
    """A boolean mask must match the axes it indexes, as NumPy requires (it raises IndexError)."""
    if not any(isinstance(k, (list, np.ndarray)) and np.asarray(k).dtype == bool for k in key):
        return
    if builtins.sum(1 for kind, _, _ in items if kind == "ellipsis"):
        ellipsis_at = next(j for j, k in enumerate(key) if k is Ellipsis)
        counted = [k for k in key if k is not None and k is not Ellipsis]
        width = len(shape) - (builtins.sum(np.ndim(k) if isinstance(k, (list, np.ndarray)) and
                                           np.asarray(k).dtype == bool else 1 for k in counted))
    axis = 0
    for j, k in enumerate(key):
        if k is None:
            continue
        if k is Ellipsis:
            axis += width
            continue
        if isinstance(k, (list, np.ndarray)) and np.asarray(k).dtype == bool:
            mask = np.asarray(k)
            for a, n in enumerate(mask.shape):
                if axis + a < len(shape) and shape[axis + a] != n:
                    raise IndexError(f"boolean index did not match indexed array along axis {axis + a}; size of "
                                     f"axis is {shape[axis + a]} but size of corresponding boolean axis is {n}")
            axis += mask.ndim
        else:
            axis += 1


def _take_many(x, advanced, front):
    """Several index arrays: merge their axes and take on the flat index (NumPy placement:
    the broadcast index dimensions go first when `front`, else where the first array stood)."""
    positions = [p for p, _ in advanced]
    shape = shape_of(x)
    traced = any(is_tracer(idx) for _, idx in advanced)
    if not traced:
        arrays = np.broadcast_arrays(*[idx for _, idx in advanced])
    target = 0 if front else positions[0]
    rest = [a for a in range(len(shape)) if a not in positions]
    order = rest[:target] + positions + rest[target:]
    x = transpose(x, order)
    merged = shape_of(x)[:target] + (int(math.prod([shape[p] for p in positions])),) + \
        shape_of(x)[target + len(positions):]
    x = reshape(x, merged)
    if traced:  # (x[np.unravel_index(np.argmax(y), y.shape)]): the flat index, computed
        flat, stride = 0, 1
        for p, idx in reversed(advanced):
            n = shape[p]
            idx = P.where_p(P.less_p(idx, 0), idx + n, idx) if is_tracer(idx) else idx
            flat, stride = flat + idx * stride, stride * n
        return P.take_p(x, astype(flat, np.intp), axis=target)
    flat = np.ravel_multi_index(tuple(arrays), tuple(shape[p] for p in positions))
    return P.take_p(x, flat.astype(np.intp), axis=target)


# --- reductions --------------------------------------------------------------------------------
def _reduce(prim, x, axis, keepdims):
    x = asarray(x)
    shape = shape_of(x)
    axes = _axes(axis, len(shape))
    out = prim(x, axes=axes) if axes else x
    if keepdims:
        out = reshape(out, tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return out


def _check_reduce_kwargs(name, out=None, where=None, initial=None, **_):
    if out is not None:
        from jitad.errors import InPlaceUpdateError
        raise InPlaceUpdateError(f"np.{name}(out=...) with a traced value")
    if where is not None and where is not True:
        raise UnsupportedOperationError(f"{name}(where=...)", "Mask the input with np.where first. ")
    if initial is not None:
        raise UnsupportedOperationError(f"{name}(initial=...)", "")


def _masked(x, where, fill):
    """x with `fill` where the `where=` mask of a reduction is False (x itself without a mask)."""
    if where is None or where is True:
        return x
    return P.where_p(broadcast_to(asarray(where), shape_of(x)), x, np.asarray(fill, x.dtype))


def _with_initial(result, initial, combine):
    """A reduction's `initial=` folded into its result with `combine` (NumPy casts it to the result's dtype)."""
    if initial is None:
        return result
    return combine(result, initial if is_tracer(initial) else np.asarray(initial, result.dtype))


def sum(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _check_reduce_kwargs("sum", out)
    x = asarray(x)
    if x.dtype == bool:
        x = astype(x, np.int64)
    result = _with_initial(_reduce(P.reduce_sum_p, _masked(x, where, 0), axis, keepdims), initial, add)
    return result if dtype is None else astype(result, dtype)


def prod(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    _check_reduce_kwargs("prod", out)
    x = asarray(x)
    return _with_initial(_reduce(P.reduce_prod_p, _masked(x, where, 1), axis, keepdims), initial, multiply)


def _extreme(prim, combine, name, x, axis, out, keepdims, initial, where):
    """max / min with `initial=` (a value the result is at least / at most, the result of an empty
    reduction) and `where=` (masked entries take no part: NumPy asks for `initial` with it)."""
    _check_reduce_kwargs(name, out)
    x = asarray(x)
    if where is not None and where is not True and initial is None:
        raise ValueError(f"reduction operation '{'maximum' if name == 'max' else 'minimum'}' does not have an "
                         "identity, so to use a where mask one has to specify 'initial'")
    if initial is not None and 0 in [shape_of(x)[a] for a in _axes(axis, ndim_of(x))]:
        kept = _reduce(P.reduce_sum_p, x, axis, keepdims)  # the result's shape (an empty sum is 0)
        return full(shape_of(kept), initial, x.dtype)
    if where is not None and where is not True:
        fill = (-np.inf if name == "max" else np.inf) if x.dtype.kind == "f" else \
            (np.iinfo(x.dtype).min if name == "max" else np.iinfo(x.dtype).max) if x.dtype.kind in "iu" else name == "min"
        x = _masked(x, where, fill)
    return _with_initial(_reduce(prim, x, axis, keepdims), initial, combine)


def amax(x, axis=None, out=None, keepdims=False, initial=None, where=None):
    return _extreme(P.reduce_max_p, lambda a, b: P.maximum_p(a, b), "max", x, axis, out, keepdims, initial, where)


def amin(x, axis=None, out=None, keepdims=False, initial=None, where=None):
    return _extreme(P.reduce_min_p, lambda a, b: P.minimum_p(a, b), "min", x, axis, out, keepdims, initial, where)


def _per(n):
    """1/n as a Python float; inf for n = 0, so an empty mean is NaN as in NumPy (no ZeroDivisionError)."""
    return 1.0 / n if n > 0 else math.inf


def _count(x, axis):
    shape = shape_of(x)
    return int(math.prod([shape[a] for a in _axes(axis, len(shape))]))


def mean(x, axis=None, dtype=None, out=None, keepdims=False, where=None):
    _check_reduce_kwargs("mean", out)
    x = asarray(x)
    if x.dtype.kind != "f":
        x = astype(x, np.float64)
    if where is not None and where is not True:  # the mean of the selected entries (NaN where none is)
        selected = broadcast_to(asarray(where), shape_of(x))
        count = sum(selected, axis=axis, keepdims=keepdims)
        return sum(x, axis=axis, keepdims=keepdims, where=selected) / astype(count, x.dtype)
    return sum(x, axis=axis, keepdims=keepdims) * _per(_count(x, axis))


def var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None, correction=None):
    _check_reduce_kwargs("var", out, where)
    x = asarray(x)
    if correction is not None:
        ddof = correction
    centred = x - globals()["mean"](x, axis=axis, keepdims=True)
    return sum(centred * centred, axis=axis, keepdims=keepdims) * _per(_count(x, axis) - ddof)


def std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None, correction=None):
    # safe_sqrt: the std of identical entries (one element, say) has derivative 0.
    return P.safe_sqrt_p(var(x, axis=axis, out=out, ddof=ddof, keepdims=keepdims, where=where,
                             correction=correction))


def average(x, axis=None, weights=None, returned=False, keepdims=False):
    if weights is None:
        result, total = mean(x, axis=axis, keepdims=keepdims), _count(x, axis)
    else:
        weights = broadcast_to(asarray(weights), shape_of(x)) if ndim_of(weights) == ndim_of(x) or axis is None \
            else reshape(weights, tuple(-1 if i == normalize_axis(axis, ndim_of(x)) else 1 for i in range(ndim_of(x))))
        total = sum(broadcast_to(weights, shape_of(x)), axis=axis, keepdims=keepdims)
        result = sum(x * weights, axis=axis, keepdims=keepdims) / total
    return (result, total) if returned else result


def cumsum(x, axis=None, dtype=None, out=None):
    if out is not None:
        from jitad.errors import InPlaceUpdateError
        raise InPlaceUpdateError("np.cumsum(out=...) with a traced value")
    if dtype is not None:  # NumPy accumulates in `dtype`
        x = astype(x, dtype)
    if axis is None:
        x, axis = ravel(x), 0
    return P.cumsum_p(x, axis=normalize_axis(axis, ndim_of(x)))


# --- products -----------------------------------------------------------------------------------
def matmul(a, b, out=None, **_):
    a, b = asarray(a), asarray(b)
    sa, sb = shape_of(a), shape_of(b)
    if len(sa) == len(sb) == 2 and sa[1] == sb[0]:  # matrices: one node, no reshapes to undo
        return P.matmul_p(a, b)
    if ndim_of(a) == 0 or ndim_of(b) == 0:
        raise ShapeError("matmul: input operand does not have enough dimensions (use * for scalars)")
    inner = shape_of(b)[-2] if ndim_of(b) > 1 else shape_of(b)[0]
    if shape_of(a)[-1] != inner:
        raise ShapeError(f"matmul: shapes {shape_of(a)} and {shape_of(b)} are not aligned "
                         f"({shape_of(a)[-1]} != {inner})")
    a2 = reshape(a, (1,) + shape_of(a)) if ndim_of(a) == 1 else a
    b2 = reshape(b, shape_of(b) + (1,)) if ndim_of(b) == 1 else b
    result = P.matmul_p(a2, b2)
    shape = shape_of(result)
    if ndim_of(b) == 1:
        shape = shape[:-1]
    if ndim_of(a) == 1:
        shape = shape[:-2] + shape[-1:] if ndim_of(b) != 1 else shape[:-1]
    return reshape(result, shape)


def dot(a, b, out=None):
    if ndim_of(a) == 0 or ndim_of(b) == 0:
        return multiply(a, b)
    if ndim_of(a) <= 2 and ndim_of(b) <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([-1], [max(ndim_of(b) - 2, 0)]))


def vdot(a, b):
    return sum(ravel(a) * ravel(b))


def inner(a, b):
    if ndim_of(a) == 0 or ndim_of(b) == 0:
        return multiply(a, b)
    return tensordot(a, b, axes=([-1], [-1]))


def outer(a, b, out=None):
    return reshape(ravel(a), (-1, 1)) * reshape(ravel(b), (1, -1))


def tensordot(a, b, axes=2):
    a, b = asarray(a), asarray(b)
    na, nb = ndim_of(a), ndim_of(b)
    if isinstance(axes, (int, np.integer)):
        axes_a, axes_b = list(range(na - axes, na)), list(range(axes))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, (int, np.integer)) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, (int, np.integer)) else list(axes_b)
    if len(axes_a) != len(axes_b):
        raise ShapeError("tensordot: shape-mismatch for sum (as many axes of a as of b are summed)")
    axes_a, axes_b = [normalize_axis(x, na) for x in axes_a], [normalize_axis(x, nb) for x in axes_b]
    sa, sb = shape_of(a), shape_of(b)
    for i, j in zip(axes_a, axes_b):
        if sa[i] != sb[j]:
            raise ShapeError(f"tensordot: shape mismatch for sum ({sa[i]} != {sb[j]})")
    free_a = [i for i in range(na) if i not in axes_a]
    free_b = [j for j in range(nb) if j not in axes_b]
    k = int(math.prod([sa[i] for i in axes_a]))
    m = int(math.prod([sa[i] for i in free_a]))
    n = int(math.prod([sb[j] for j in free_b]))
    a2 = reshape(transpose(a, free_a + axes_a), (m, k))
    b2 = reshape(transpose(b, axes_b + free_b), (k, n))
    return reshape(P.matmul_p(a2, b2), tuple(sa[i] for i in free_a) + tuple(sb[j] for j in free_b))


def _einsum_sublists(args):
    """The string form of einsum's sublist form (operand, sublist, operand, sublist, ..., [output]):
    axis labels 0..51 are NumPy's letters a-z, A-Z; Ellipsis is `...`."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def spec(sublist):
        out = []
        for label in sublist:
            if label is Ellipsis:
                out.append("...")
            elif isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < 52:
                out.append(letters[label])
            else:
                raise ValueError(f"einsum: subscript in a sublist must be Ellipsis or an int in [0, 52), got {label!r}")
        return "".join(out)
    operands, specs = list(args[0:len(args) - len(args) % 2:2]), [spec(s) for s in args[1::2]]
    subscripts = ",".join(specs)
    if len(args) % 2:
        subscripts += "->" + spec(args[-1])
    return subscripts, operands


def einsum(subscripts, *operands, optimize=False, out=None, dtype=None, order="K", casting="safe"):
    """einsum by diagonals, sums, transposes and (batched) matmuls, so it differentiates and compiles.

    As NumPy's: `...` stands for broadcast axes, a size-1 axis broadcasts against the same
    letter's size elsewhere, and more than two operands are contracted pairwise in the order
    np.einsum_path finds (greedy), so no large intermediate is formed.
    """
    if out is not None:
        from jitad.errors import InPlaceUpdateError
        raise InPlaceUpdateError("np.einsum(out=...) with a traced value")
    if not isinstance(subscripts, str):  # sublist form: einsum(x, [0, 1], y, [1, 2], [0, 2])
        subscripts, operands = _einsum_sublists((subscripts,) + operands)
    operands = [asarray(x) for x in operands]
    specs, output = _einsum_parse(subscripts.replace(" ", ""), operands)
    operands, specs = _einsum_broadcast(operands, specs, output)
    terms = [_einsum_prepare(x, spec, output + "".join(s for j, s in enumerate(specs) if j != i))
             for i, (x, spec) in enumerate(zip(operands, specs))]
    for pair in _einsum_order(terms, output):
        (x, sx), (y, sy) = (terms[k] for k in pair)
        terms = [t for k, t in enumerate(terms) if k not in pair]
        later = output + "".join(s for _, s in terms)
        x, sx = _einsum_prepare(x, sx, later + sy)
        y, sy = _einsum_prepare(y, sy, later + sx)
        terms.append(_einsum_pair(x, sx, y, sy, later))
    x, spec = _einsum_prepare(*terms[0], output)
    result = transpose(x, [spec.index(c) for c in output])
    return result if dtype is None else astype(result, dtype)


def _einsum_parse(subscripts, operands):
    """Input specs and output of one letter per axis: `...` becomes letters of its own (broadcast,
    aligned on the right); without `->` the output is the ellipsis then the letters used once, sorted."""
    inputs, arrow, output = subscripts.partition("->")
    specs = inputs.split(",")
    if len(specs) != len(operands):
        raise ShapeError(f"einsum: {len(specs)} subscripts but {len(operands)} operands")
    used = set(subscripts) - set(",.->")
    spare = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used)
    width = 0
    for x, spec in zip(operands, specs):
        if "..." in spec:
            width = builtins.max(width, ndim_of(x) - len(spec.replace("...", "")))
    letters = "".join(next(spare) for _ in range(width))
    resolved = []
    for x, spec in zip(operands, specs):
        if spec.count(".") not in (0, 3) or (spec.count(".") == 3 and "..." not in spec):
            raise ShapeError(f"einsum: invalid subscript {spec!r}")
        n = ndim_of(x) - len(spec.replace("...", ""))
        if "..." not in spec and n != 0 or n < 0:
            raise ShapeError(f"einsum: operand of shape {shape_of(x)} does not fit subscript {spec!r}")
        resolved.append(spec.replace("...", letters[width - n:] if n else ""))
    if arrow:
        output = output.replace("...", letters)
    else:
        counts = "".join(resolved)
        output = letters + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in letters))
    return resolved, output


def _einsum_broadcast(operands, specs, output):
    """Size-1 axes whose letter has another size elsewhere are squeezed out (they broadcast, as NumPy's)."""
    sizes = {}
    for x, spec in zip(operands, specs):
        for c, n in zip(spec, shape_of(x)):
            if n != 1 and sizes.get(c, 1) not in (1, n):
                raise ShapeError(f"einsum: operands could not be broadcast together: letter {c!r} has sizes "
                                 f"{sizes[c]} and {n}")
            sizes[c] = n if n != 1 else sizes.get(c, 1)
    new_operands, new_specs = [], []
    for x, spec in zip(operands, specs):
        keep = [k for k, (c, n) in enumerate(zip(spec, shape_of(x))) if not (n == 1 and sizes[c] != 1)]
        if len(keep) < len(spec):
            x = reshape(x, tuple(shape_of(x)[k] for k in keep))
            spec = "".join(spec[k] for k in keep)
        new_operands.append(x)
        new_specs.append(spec)
    return new_operands, new_specs


def _einsum_order(terms, output):
    """Pairs of positions in the list of terms (each pair's result appended at the end), the greedy
    path of np.einsum_path for these shapes (computed on shape-only stand-ins, no data)."""
    if len(terms) < 2:
        return []
    if len(terms) == 2:
        return [(0, 1)]
    stand_ins = [np.broadcast_to(np.zeros((), np.float64), shape_of(x)) for x, _ in terms]
    path, _ = np.einsum_path(",".join(s for _, s in terms) + "->" + output, *stand_ins, optimize="greedy")
    pairs = []
    count = len(terms)
    for step in path[1:]:
        step = tuple(sorted(step))
        while len(step) > 2:  # more than two at once: pair them from the left
            pairs.append(step[:2])
            count -= 1
            step = tuple(k - (k > step[1]) - (k > step[0]) for k in step[2:]) + (count - 1,)
        if len(step) == 2:
            pairs.append(step)
            count -= 1
    return pairs


def _einsum_prepare(x, spec, keep):
    """Take diagonals for repeated letters; sum letters that appear nowhere in `keep`."""
    while len(set(spec)) < len(spec):
        c = next(c for c in spec if spec.count(c) > 1)
        i = spec.index(c)
        j = spec.index(c, i + 1)
        x = P.diagonal_p(x, offset=0, axis1=i, axis2=j)
        spec = spec[:i] + spec[i + 1:j] + spec[j + 1:] + c
    drop = tuple(i for i, c in enumerate(spec) if c not in keep)
    if drop:
        x = P.reduce_sum_p(x, axes=drop)
        spec = "".join(c for c in spec if c in keep)
    return x, spec


def _einsum_pair(a, sa, b, sb, later):
    batch = [c for c in sa if c in sb and c in later]
    contract = [c for c in sa if c in sb and c not in later]
    free_a = [c for c in sa if c not in sb]
    free_b = [c for c in sb if c not in sa]
    size = dict(zip(sa, shape_of(a)))
    size.update(zip(sb, shape_of(b)))

    def prod(letters):
        return int(math.prod([size[c] for c in letters]))

    a3 = reshape(transpose(a, [sa.index(c) for c in batch + free_a + contract]),
                 (prod(batch), prod(free_a), prod(contract)))
    b3 = reshape(transpose(b, [sb.index(c) for c in batch + contract + free_b]),
                 (prod(batch), prod(contract), prod(free_b)))
    c3 = P.matmul_p(a3, b3)
    letters = batch + free_a + free_b
    return reshape(c3, tuple(size[c] for c in letters)), "".join(letters)


def trace(x, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    return sum(diagonal(x, offset, axis1, axis2), axis=-1)


def diagonal(x, offset=0, axis1=0, axis2=1):
    nd = ndim_of(x)
    if nd < 2:
        raise ShapeError(f"diagonal/trace need an array of at least two dimensions, got shape {shape_of(x)}")
    axis1, axis2 = _axes(axis1, nd)[0], _axes(axis2, nd)[0]
    if axis1 == axis2:
        raise ShapeError("diagonal/trace: axis1 and axis2 cannot be the same")
    return P.diagonal_p(x, offset=int(offset), axis1=axis1, axis2=axis2)


def diag(v, k=0):
    if ndim_of(v) == 1:
        n = shape_of(v)[0] + abs(k)
        return P.diag_embed_p(v, shape=(n, n), offset=int(k), axis1=0, axis2=1)
    if ndim_of(v) == 2:
        return diagonal(v, k)
    raise ShapeError("diag: input must be 1-d or 2-d")


def _tri_mask(x, k, lower):
    n, m = shape_of(x)[-2:]
    mask = np.tril(np.ones((n, m), bool), k) if lower else np.triu(np.ones((n, m), bool), k)
    return where(mask, x, 0.0)


def triu(x, k=0):
    return _tri_mask(x, k, lower=False)


def tril(x, k=0):
    return _tri_mask(x, k, lower=True)


# --- elementwise conveniences ------------------------------------------------------------------------
def mask_value(mask, what="Indexing with a traced boolean mask"):
    """The concrete value of a traced boolean array whose True entries decide a result's shape
    (x[mask], np.nonzero(mask)): the trace reads it from the call's values and records a guard
    (`guards.selection`), so a later call with another mask is traced again for it (up to
    jitad.config.specializations masks per input signature). np.where(mask, x, 0) keeps the
    shape static and needs no guard."""
    return guards.selection(mask, f"{what} (the result's shape depends on the mask)")


def _nonzero_mask(a, name):
    a = asarray(a)
    if ndim_of(a) == 0:
        raise ValueError(f"Calling {name} on 0d arrays is not allowed. Use np.atleast_1d(scalar).nonzero() "
                         "instead.")
    return mask_value(a if a.dtype == bool else P.not_equal_p(a, np.zeros((), a.dtype)), f"np.{name} of a traced array")


def nonzero(a):
    """np.nonzero of a traced array: the indices of its nonzero entries, read from the call's
    values (a guard, `mask_value`); integer constants, no derivative."""
    return np.nonzero(_nonzero_mask(a, "nonzero"))


def argwhere(a):
    a = asarray(a)
    if ndim_of(a) == 0:  # NumPy: a 0-d array is treated as 1-d
        a = reshape(a, (1,))
        return np.argwhere(_nonzero_mask(a, "argwhere"))[:, :0]
    return np.argwhere(_nonzero_mask(a, "argwhere"))


def flatnonzero(a):
    return np.flatnonzero(_nonzero_mask(ravel(asarray(a)), "flatnonzero"))


def _allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """np.allclose: a Python bool, taken from the concrete values (a guard: jitad.frontend.guards)."""
    return bool(_isclose(a, b, rtol, atol, equal_nan).all())


def _array_equal(a1, a2, equal_nan=False):
    """np.array_equal: False for different shapes, else all elements equal (a guard, as `_allclose`)."""
    if shape_of(a1) != shape_of(a2):
        return False
    same = P.equal_p(a1, a2)
    if equal_nan:
        same = P.logical_or_p(same, P.logical_and_p(P.isnan_p(a1), P.isnan_p(a2)))
    return bool(same.all())


def _isclose(a, b, rtol, atol, equal_nan):
    """NumPy's isclose: |a - b| <= atol + rtol |b|, infinities equal to themselves (no derivative)."""
    close = P.logical_or_p(P.less_equal_p(P.abs_p(a - b), atol + rtol * P.abs_p(b)), P.equal_p(a, b))
    if equal_nan:
        close = P.logical_or_p(close, P.logical_and_p(P.isnan_p(a), P.isnan_p(b)))
    return close


def where(cond, x=None, y=None):
    if x is None and y is None:
        return nonzero(cond)
    return P.where_p(cond, x, y)


def clip(x, a_min=None, a_max=None, out=None, **kwargs):
    if out is not None:
        from jitad.errors import InPlaceUpdateError
        raise InPlaceUpdateError("np.clip(out=...) with a traced value")
    a_min = kwargs.get("min", a_min)
    a_max = kwargs.get("max", a_max)
    if not is_tracer(x):  # NumPy makes the clipped value an array first: a Python float is float64
        x = np.asarray(x)
    if a_min is not None:
        x = P.maximum_p(x, a_min)
    if a_max is not None:
        x = P.minimum_p(x, a_max)
    return x


def power(x, y):
    if not is_tracer(y) and np.ndim(y) == 0:
        if type(y) not in (int, float, bool):  # a NumPy scalar or 0-d array is not weakly typed
            dtype = np.result_type(x.dtype, np.asarray(y).dtype)
            x = astype(x, dtype) if dtype.kind == "f" else x
        exponent = y.item() if isinstance(y, np.ndarray) else y
        exponent = int(exponent) if float(exponent).is_integer() and abs(exponent) < 2 ** 31 else float(exponent)
        if exponent == 1:
            return x
        if exponent == 0.5:
            return sqrt(x)
        return P.power_scalar_p(x, exponent=exponent)
    return P.power_p(x, y)


def sqrt(x):
    """np.sqrt; of a sum of squares it is a norm, whose gradient at 0 is 0 (the subgradient)
    instead of inf * 0 = NaN: np.sqrt(np.sum(x**2)) differentiates like np.linalg.norm(x)."""
    if is_tracer(x) and _sum_of_squares(x.node):
        return P.safe_sqrt_p(x)
    return P.sqrt_p(x)


def _sum_of_squares(node):
    prim = node.prim
    if prim is P.square_p or (prim is P.power_scalar_p and node.params["exponent"] == 2):
        return True
    if prim is P.multiply_p:
        return node.inputs[0] is node.inputs[1]
    if prim in (P.reduce_sum_p, P.add_p, P.reshape_p, P.broadcast_to_p, P.transpose_p):
        return all(_sum_of_squares(i) for i in node.inputs)
    if prim is P.matmul_p:  # x @ x of a vector: a (1, n) row times an (n, 1) column of the same x
        a, b = node.inputs
        return a.prim is b.prim is P.reshape_p and a.inputs[0] is b.inputs[0] and \
            a.inputs[0].ndim == 1 and a.shape[-2] == 1 and b.shape[-1] == 1
    return False


def asarray(x, dtype=None, order=None, **_):
    if is_tracer(x):
        return x if dtype is None else astype(x, dtype)
    if isinstance(x, (list, tuple)) and _contains_tracer(x):
        result = stack([asarray(v) for v in x])
        return result if dtype is None else astype(result, dtype)
    return np.asarray(x, dtype=dtype)


def _contains_tracer(x):
    if is_tracer(x):
        return True
    if isinstance(x, (list, tuple)):
        return any(_contains_tracer(v) for v in x)
    return False


def copy(x, *args, **kwargs):
    return x


def full(shape, fill_value, dtype):
    """A constant array as a broadcast node, so no full-size constant enters the graph."""
    shape = tuple(shape)
    value = np.asarray(fill_value, dtype)
    return P.broadcast_to_p(value, shape=shape) if shape else value


def zeros_like(x, dtype=None, *args, **kwargs):
    return full(shape_of(x), 0, dtype or x.dtype)


def ones_like(x, dtype=None, *args, **kwargs):
    return full(shape_of(x), 1, dtype or x.dtype)


def full_like(x, fill_value, dtype=None, *args, **kwargs):
    return full(shape_of(x), fill_value, dtype or x.dtype)


def _round(x, decimals=0, out=None):
    """As NumPy: rint(x * 10**d) / 10**d, or rint(x / 10**-d) * 10**-d for d < 0 (multiplying by
    10**-d instead rounds: np.round(0.3, 1) would be 0.30000000000000004)."""
    if decimals > 0:
        scale = 10.0 ** decimals
        return P.rint_p(x * scale) / scale
    if decimals < 0:
        scale = 10.0 ** -decimals
        return P.rint_p(x / scale) * scale
    return P.rint_p(x)


def _integer_quotient_dtype(x, y):
    """The integer dtype of x // y and x % y when both operands are integers (NumPy keeps them), else None."""
    dtype = np.result_type(*[a.dtype if is_tracer(a) else a if type(a) in (int, float, bool) else np.asarray(a).dtype
                             for a in (x, y)])
    return dtype if dtype.kind in "iu" else None


def _float_divmod(x, y):
    """NumPy's floor division and remainder of floats (npy_divmod): from C's exact fmod, the
    remainder moved to the divisor's sign, and the quotient (x - fmod) / y rounded to an integer,
    so that 5.0 % 0.1 is 0.09999999999999973 and 2.0 // 0.2 is 9.0 as in NumPy (x - floor(x / y) * y
    gives 0.0 and 10.0). Signed zeros, infinities and NaN come out as NumPy's."""
    m = P.fmod_p(x, y)
    moved = P.logical_and_p(P.not_equal_p(m, 0.0), P.not_equal_p(P.less_p(y, 0.0), P.less_p(m, 0.0)))
    zero, negative_zero = np.zeros((), m.dtype), np.array(-0.0, m.dtype)
    remainder = where(moved, m + y, where(P.equal_p(m, 0.0), where(P.less_p(y, 0.0), negative_zero, zero), m))
    div = (x - m) / y
    div = where(moved, div - 1.0, div)
    quotient = P.floor_p(div)
    quotient = where(P.greater_p(div - quotient, 0.5), quotient + 1.0, quotient)
    q = x / y
    quotient = where(P.equal_p(div, 0.0), P.floor_p(q) * 0.0, quotient)  # a zero of a / b's sign
    quotient = where(P.equal_p(y, 0.0), P.floor_p(q), quotient)  # inf or nan, as a / b
    return quotient, remainder


def mod(x, y):
    dtype = _integer_quotient_dtype(x, y)
    if dtype is None:
        return _float_divmod(x, y)[1]
    remainder = x - floor_divide(x, y) * y
    if not is_tracer(y) and np.all(np.asarray(y) != 0):
        return remainder
    return where(P.equal_p(y, 0), np.zeros((), dtype), remainder)  # 0 for y == 0, like NumPy


def floor_divide(x, y):
    dtype = _integer_quotient_dtype(x, y)
    if dtype is None:
        return _float_divmod(x, y)[0]
    quotient = astype(P.floor_p(x / y), dtype)  # exact for |x| < 2**53
    if not is_tracer(y) and np.all(np.asarray(y) != 0):
        return quotient
    return where(P.equal_p(y, 0), np.zeros((), dtype), quotient)


def _pos(x):
    return x


def _deg2rad(x):
    return x * (np.pi / 180.0)


def _rad2deg(x):
    return x * (180.0 / np.pi)


def _logaddexp2(x, y):
    ln2 = math.log(2.0)  # a Python float, so float32 operands stay float32
    return P.logaddexp_p(x * ln2, y * ln2) * (1.0 / ln2)


def _fabs(x):
    return P.abs_p(x)


def _boolean(prim, name):
    """`&`, `|`, `^`, `~` between a NumPy array and a traced one arrive as bitwise ufuncs:
    on booleans they are the logical operations; on integers jitad has no bitwise ops."""
    def builder(*args):
        if any(np.dtype(getattr(a, "dtype", None) or np.result_type(a)) != bool for a in args):
            raise UnsupportedOperationError(f"np.{name} on integers", "Only boolean operands are supported. ")
        return prim(*args)
    return builder


def _float_power(x, y):
    return power(astype(asarray(x), np.float64) if is_tracer(x) else np.asarray(x, float), y)


add, subtract, multiply, divide = P.add_p, P.subtract_p, P.multiply_p, P.divide_p
absolute, not_equal = P.abs_p, P.not_equal_p

# A ufunc that is one primitive is named by the primitive's declaration (`ufunc=`); the rest
# below are compositions, or choose between primitives (np.sqrt of a sum of squares, np.power
# by a constant exponent), and override a declared entry.
UFUNCS = {prim.ufunc: prim for prim in P.REGISTRY.values() if prim.ufunc is not None}
UFUNCS.update({
    np.positive: _pos, np.power: power, np.float_power: _float_power, np.sqrt: sqrt, np.fabs: _fabs,
    np.logaddexp2: _logaddexp2, np.bitwise_and: _boolean(P.logical_and_p, "bitwise_and"),
    np.bitwise_or: _boolean(P.logical_or_p, "bitwise_or"), np.bitwise_xor: _boolean(P.logical_xor_p, "bitwise_xor"),
    np.invert: _boolean(P.logical_not_p, "invert"),
    np.matmul: matmul, np.remainder: mod, np.floor_divide: floor_divide, np.fmod: fmod,
    np.divmod: lambda x, y, *_, **__: (floor_divide(x, y), mod(x, y)), np.conjugate: _pos,
    np.deg2rad: _deg2rad, np.radians: _deg2rad, np.rad2deg: _rad2deg, np.degrees: _rad2deg,
})

def _logaddexp_reduce(base2):
    """np.logaddexp.reduce (np.logaddexp2.reduce): shift + log(sum(exp(x - shift))) with the largest
    entry as the shift, made 0 where it is not finite (all -inf: -inf; an inf: inf; a NaN: NaN, as
    NumPy's pairwise logaddexp). The shift is a constant to AD: the derivative is the softmax."""
    name = "np.logaddexp2.reduce" if base2 else "np.logaddexp.reduce"

    def reduce(x, axis=0, dtype=None, keepdims=False, **others):
        for key in others:  # initial= (where= with out= reaches here as where=True: nothing to do)
            if key != "where" or others[key] is not True:
                raise UnsupportedOperationError(f"{name}({key}=...)", f"jitad implements {name}(x, axis, dtype, "
                                                "keepdims); concatenate an initial value to x, or mask with np.where "
                                                "(-inf leaves an entry out). ")
        x = asarray(x)
        if dtype is not None:
            x = astype(x, dtype)
        elif x.dtype.kind != "f":
            x = astype(x, np.float64)
        if x.ndim == 0 and (axis is None or axis in (0, -1, ())):  # NumPy reduces a 0-d array to itself
            return x
        axes = _axes(axis, x.ndim)
        shape = shape_of(x)
        if any(shape[i] == 0 for i in axes):  # the identity of logaddexp: -inf
            kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
            out = np.full(kept, -np.inf, x.dtype)
            return out if keepdims else out.reshape(tuple(n for i, n in enumerate(shape) if i not in axes))
        shift = P.finite_shift_p(amax(x, axis=axes, keepdims=True))
        if base2:
            out = P.log2_p(sum(P.exp2_p(x - shift), axis=axes, keepdims=True)) + shift
        else:
            out = P.log_p(sum(P.exp_p(x - shift), axis=axes, keepdims=True)) + shift
        return out if keepdims else squeeze(out, axis=axes)
    return reduce


UFUNC_REDUCE = {np.add: sum, np.multiply: prod, np.maximum: amax, np.minimum: amin,
                np.logaddexp: _logaddexp_reduce(False), np.logaddexp2: _logaddexp_reduce(True)}
UFUNC_ACCUMULATE = {}  # ufunc -> builder of ufunc.accumulate(x, axis=0, dtype=None) (filled by numpy_extra)

FUNCTIONS = {
    np.sum: sum, np.prod: prod, np.max: amax, np.amax: amax, np.min: amin, np.amin: amin,
    np.mean: mean, np.var: var, np.std: std, np.average: average, np.cumsum: cumsum,
    np.dot: dot, np.vdot: vdot, np.inner: inner, np.outer: outer, np.tensordot: tensordot,
    np.einsum: einsum, np.matmul: matmul, np.trace: trace, np.diag: diag, np.diagonal: diagonal,
    np.triu: triu, np.tril: tril, 
    np.reshape: reshape, np.transpose: transpose, np.ravel: ravel, np.squeeze: squeeze,
    np.expand_dims: expand_dims, np.broadcast_to: broadcast_to, np.concatenate: concatenate,
    np.stack: stack, np.hstack: hstack, np.vstack: vstack, np.column_stack: column_stack,
    np.swapaxes: swapaxes, np.moveaxis: moveaxis, np.flip: flip, np.diff: diff, np.roll: roll, np.tile: tile,
    np.repeat: repeat, np.pad: pad, np.median: median, np.ptp: ptp, np.real: real, np.imag: imag, np.sort: sort, np.argsort: argsort, np.take_along_axis: take_along_axis, np.split: split, np.array_split: array_split, np.cross: cross, np.kron: kron, np.atleast_1d: atleast_1d,
    np.atleast_2d: atleast_2d, np.where: where, np.clip: clip, np.copy: copy, np.asarray: asarray,
    np.zeros_like: zeros_like, np.ones_like: ones_like, np.full_like: full_like,
    np.empty_like: zeros_like, np.round: _round, np.around: _round,
    np.any: lambda x, axis=None, out=None, keepdims=False, **_: x.any(axis=axis, keepdims=keepdims),
    np.all: lambda x, axis=None, out=None, keepdims=False, **_: x.all(axis=axis, keepdims=keepdims),
    np.nonzero: nonzero, np.argwhere: argwhere, np.flatnonzero: flatnonzero,
    np.isclose: lambda a, b, rtol=1e-05, atol=1e-08, equal_nan=False: _isclose(a, b, rtol, atol, equal_nan),
    np.allclose: _allclose, np.array_equal: _array_equal,
    np.result_type: lambda *args: np.result_type(*[a.dtype if is_tracer(a) else a for a in args]),
    np.shape: shape_of, np.ndim: ndim_of, np.size: lambda x, axis=None: int(math.prod(shape_of(x))) if axis is None
    else shape_of(x)[axis],
    # traced values are never complex: these are constants (autograd's programs test them before squaring)
    np.iscomplexobj: lambda x: False, np.isrealobj: lambda x: True,
    np.iscomplex: lambda x: np.zeros(shape_of(x), bool), np.isreal: lambda x: np.ones(shape_of(x), bool),
    np.real_if_close: lambda a, tol=100: asarray(a),  # a real array: NumPy returns it as it is
}


# --- more NumPy functions: replacements, appending, flips and rotations, sinc, i0 -------------------------
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """Non-finite entries replaced by constants: derivative 1 at the finite entries, 0 at the others."""
    x = asarray(x)
    if x.dtype.kind != "f":
        return x
    info = np.finfo(x.dtype)
    nan, posinf, neginf = (np.asarray(v, x.dtype) for v in (nan, info.max if posinf is None else posinf,
                                                              info.min if neginf is None else neginf))
    return where(P.isnan_p(x), nan, where(P.equal_p(x, np.inf), posinf, where(P.equal_p(x, -np.inf), neginf, x)))


def heaviside(x1, x2):
    """0 below 0, 1 above, x2 at 0: derivative 0 in x1 (a jump, the convention of np.sign), [x1 == 0] in x2."""
    dtype = np.result_type(*[a.dtype if is_tracer(a) else a if np.isscalar(a) else np.asarray(a) for a in (x1, x2)])
    x1, x2 = asarray(x1), x2 if is_tracer(x2) else np.asarray(x2, dtype)
    step = where(P.less_p(x1, 0), np.zeros((), dtype), where(P.greater_p(x1, 0), np.ones((), dtype), x2))
    return where(P.isnan_p(x1), np.asarray(np.nan, dtype), step)


def append(arr, values, axis=None):
    arr, values = asarray(arr), asarray(values)
    if axis is None:
        arr, values, axis = ravel(arr), ravel(values), 0
    return concatenate([arr, values], axis=axis)


def flipud(x):
    if ndim_of(x) < 1:
        raise ShapeError("Input must be >= 1-d.")
    return flip(x, 0)


def fliplr(x):
    if ndim_of(x) < 2:
        raise ShapeError("Input must be >= 2-d.")
    return flip(x, 1)


def rot90(m, k=1, axes=(0, 1)):
    nd = ndim_of(m)
    if len(axes) != 2:
        raise ShapeError("len(axes) must be 2.")
    first, second = normalize_axis(axes[0], nd), normalize_axis(axes[1], nd)
    if first == second:
        raise ShapeError("Axes must be different.")
    k = operator.index(k) % 4
    if k == 0:
        return m
    if k == 2:
        return flip(flip(m, first), second)
    perm = list(range(nd))
    perm[first], perm[second] = perm[second], perm[first]
    return transpose(flip(m, second), perm) if k == 1 else flip(transpose(m, perm), second)


FUNCTIONS.update({
    np.nan_to_num: nan_to_num, np.append: append, np.flipud: flipud, np.fliplr: fliplr, np.rot90: rot90,
    np.sinc: lambda x: P.sinc_p(asarray(x)),
    np.i0: lambda x: P.bessel_i_p(asarray(x), n=0, scaled=False),
})
UFUNCS[np.heaviside] = heaviside

