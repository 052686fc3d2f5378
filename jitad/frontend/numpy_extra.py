"""More of NumPy (and scipy.signal) on traced values: the functions published programs call.

Each builder is a composition of `jitad.primitives` (slices, gathers, sorts, where, matmul),
so it differentiates to any order in both modes and compiles like the rest. Importing the
module registers the builders in `numpy_ops.FUNCTIONS`; scipy.signal's functions and the
`np.r_` / `np.c_` index tricks (objects whose `[...]` NumPy evaluates with its own
`array`, not through `__array_function__`) are swapped while tracing through
`linalg_ops.SCIPY_FUNCTIONS` (see `linalg_ops.scipy_hooks`).

Options whose result would depend on the traced values (a traced `q` of a percentile, traced
`xp` spacing of `gradient`) or that jitad does not implement are `UnsupportedOperationError`s
that say what to pass instead.
"""
import builtins
import operator

import numpy as np

from jitad import primitives as P
from jitad.errors import InPlaceUpdateError, ShapeError, UnsupportedOperationError
from jitad.frontend import guards, inplace
from jitad.frontend import linalg_ops
from jitad.frontend import numpy_ops as ops
from jitad.ir import is_tracer


def _proxy(x):
    """A concrete stand-in of x with its shape and dtype (for asking NumPy a result dtype)."""
    return np.zeros(x.shape, x.dtype) if is_tracer(x) else x


def _numpy_dtype(fun, *args, **kwargs):
    """The dtype NumPy's own `fun` gives for arguments of these dtypes (zeros in place of traced values)."""
    with np.errstate(all="ignore"):
        return np.asarray(fun(*[_proxy(a) for a in args], **kwargs)).dtype


def _float(x):
    x = ops.asarray(x)
    return x if x.dtype.kind == "f" else ops.astype(x, np.float64)


def _no_out(name, out):
    if out is not None:
        raise InPlaceUpdateError(f"np.{name}(out=...) with a traced value")


def _concrete(value, what):
    if ops._contains_tracer(value) if isinstance(value, (list, tuple)) else is_tracer(value):
        raise UnsupportedOperationError(f"{what} traced", "It decides which entries are read, so jitad needs it "
                                        "concrete: compute it from NumPy values, not from traced ones. ")
    return value


# --- evenly spaced values -------------------------------------------------------------------------
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    """np.linspace with traced end points: start + arange(num) * step, the last value exactly `stop`."""
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    out_dtype = _numpy_dtype(np.linspace, start, stop, num=max(num, 2), endpoint=endpoint, dtype=dtype, axis=0)
    work = np.dtype(np.float64) if out_dtype.kind != "f" else out_dtype
    start, stop = ops.astype(ops.asarray(start), work), ops.astype(ops.asarray(stop), work)
    div = (num - 1) if endpoint else num
    delta = stop - start
    shape = (-1,) + (1,) * ops.ndim_of(delta)
    y = np.arange(0, num, dtype=work).reshape(shape)
    step = delta / div if div > 0 else ops.full(ops.shape_of(delta), np.nan, work)
    y = (y * step if div > 0 else y * delta) + start
    if endpoint and num > 1:
        y = ops.concatenate([ops._take_slice(y, 0, None, num - 1),
                             ops.expand_dims(ops.broadcast_to(stop, ops.shape_of(y)[1:]), 0)], axis=0)
    if axis != 0:
        y = ops.moveaxis(y, 0, axis)
    if out_dtype.kind in "iu":
        y = P.floor_p(y)
    y = ops.astype(y, out_dtype)
    return (y, step) if retstep else y


def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    """base ** linspace(start, stop): differentiable in start, stop and base."""
    if ops.ndim_of(base) != 0:
        raise UnsupportedOperationError("np.logspace with an array base", "Pass one scalar base. ")
    out_dtype = _numpy_dtype(np.logspace, start, stop, num=max(num, 2), endpoint=endpoint, base=_proxy(base),
                             dtype=dtype, axis=0)
    exponent = linspace(start, stop, num=num, endpoint=endpoint, axis=axis)
    base = base if is_tracer(base) else np.asarray(base, np.result_type(exponent.dtype, np.asarray(base).dtype))
    return ops.astype(P.power_p(base, exponent), out_dtype)


def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    """Geometric sequence start ... stop (positive end points; exact first and last values)."""
    ones = [np.ones(ops.shape_of(v), v.dtype) if is_tracer(v) else np.ones_like(v) if isinstance(v, np.ndarray)
            else 1 if isinstance(v, int) else 1.0 for v in (start, stop)]  # positive stand-ins of the same types
    out_dtype = _numpy_dtype(np.geomspace, *ones, num=max(num, 2), endpoint=endpoint, dtype=dtype, axis=0)
    if not is_tracer(start) and not is_tracer(stop) and (np.any(np.asarray(start) <= 0) or
                                                         np.any(np.asarray(stop) <= 0)):
        raise UnsupportedOperationError("np.geomspace with non-positive end points", "")
    start, stop = _float(start), _float(stop)
    y = P.exp_p(linspace(P.log_p(start), P.log_p(stop), num=num, endpoint=endpoint))
    if num > 0:  # NumPy puts the end points back exactly
        parts = [ops.expand_dims(ops.broadcast_to(start, ops.shape_of(y)[1:]), 0)]
        inner = ops._take_slice(y, 0, 1, num - 1 if endpoint and num > 1 else None)
        parts += [inner] if ops.shape_of(inner)[0] else []
        if endpoint and num > 1:
            parts.append(ops.expand_dims(ops.broadcast_to(stop, ops.shape_of(y)[1:]), 0))
        y = ops.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    if axis != 0:
        y = ops.moveaxis(y, 0, axis)
    return ops.astype(y, out_dtype)


def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    if indexing not in ("xy", "ij"):
        raise ValueError("Valid values for `indexing` are 'xy' and 'ij'.")
    xi = [ops.ravel(ops.asarray(x)) for x in xi]
    nd = len(xi)
    shapes = [(1,) * k + (-1,) + (1,) * (nd - k - 1) for k in range(nd)]
    if indexing == "xy" and nd > 1:
        shapes[0], shapes[1] = (1, -1) + (1,) * (nd - 2), (-1, 1) + (1,) * (nd - 2)
    grids = [ops.reshape(x, s) for x, s in zip(xi, shapes)]
    if not sparse:
        full = tuple(np.broadcast_shapes(*[ops.shape_of(g) for g in grids]))
        grids = [ops.broadcast_to(g, full) for g in grids]
    return tuple(grids)


# --- finite differences and integration -------------------------------------------------------------
def _slice_along(x, axis, start, stop):
    return ops._take_slice(x, axis, start, stop)


def _along(values, axis, nd):
    """A concrete 1-d array of coefficients shaped to broadcast along `axis` of an nd array."""
    shape = [1] * nd
    shape[axis] = -1
    return np.asarray(values).reshape(shape)


def _gradient_axis(f, axis, spacing, edge_order):
    n = ops.shape_of(f)[axis]
    if n < edge_order + 1:
        raise ValueError("Shape of array too small to calculate a numerical gradient, at least (edge_order + 1) "
                         "elements are required.")
    nd = ops.ndim_of(f)

    def at(start, stop="one"):  # f[start] kept as an axis of length 1, or f[start:stop]
        if stop == "one":
            stop = start + 1 if start != -1 else None
        return _slice_along(f, axis, start, stop)

    uniform = ops.ndim_of(spacing) == 0
    if uniform:
        dx = spacing
        interior = (at(2, None) - at(0, -2)) / (2.0 * dx)
        if edge_order == 1:
            first, last = (at(1) - at(0)) / dx, (at(-1) - at(-2)) / dx
        else:
            first = (-1.5 / dx) * at(0) + (2.0 / dx) * at(1) + (-0.5 / dx) * at(2)
            last = (0.5 / dx) * at(-3) + (-2.0 / dx) * at(-2) + (1.5 / dx) * at(-1)
    else:
        dx = spacing
        dx1, dx2 = dx[:-1], dx[1:]
        a = _along(-dx2 / (dx1 * (dx1 + dx2)), axis, nd)
        b = _along((dx2 - dx1) / (dx1 * dx2), axis, nd)
        c = _along(dx1 / (dx2 * (dx1 + dx2)), axis, nd)
        interior = a * at(0, -2) + b * at(1, -1) + c * at(2, None)
        if edge_order == 1:
            first, last = (at(1) - at(0)) / dx[0], (at(-1) - at(-2)) / dx[-1]
        else:
            d1, d2 = dx[0], dx[1]
            first = (-(2.0 * d1 + d2) / (d1 * (d1 + d2))) * at(0) + ((d1 + d2) / (d1 * d2)) * at(1) + \
                (-d1 / (d2 * (d1 + d2))) * at(2)
            d1, d2 = dx[-2], dx[-1]
            last = (d2 / (d1 * (d1 + d2))) * at(-3) + (-(d2 + d1) / (d1 * d2)) * at(-2) + \
                ((2.0 * d2 + d1) / (d2 * (d1 + d2))) * at(-1)
    return ops.concatenate([first, interior, last], axis=axis)


def gradient(f, *varargs, axis=None, edge_order=1):
    """np.gradient: second-order central differences inside, one-sided (edge_order 1 or 2) at the ends.
    Spacings: none (1), one scalar, or one scalar or concrete coordinate array per axis."""
    f = ops.asarray(f)
    otype = f.dtype if f.dtype.kind == "f" else np.dtype(np.float64)
    f = ops.astype(f, otype) if f.dtype != otype else f
    nd = ops.ndim_of(f)
    axes = ops._axes(axis, nd) if axis is not None else tuple(range(nd))
    if axis is not None and not isinstance(axis, (int, np.integer)):
        axes = tuple(ops.normalize_axis(a, nd) for a in axis)
    if edge_order not in (1, 2):
        raise ValueError("'edge_order' greater than 2 not supported")
    if not varargs:
        spacings = [1.0] * len(axes)
    elif len(varargs) == 1 and ops.ndim_of(varargs[0]) == 0:
        spacings = [varargs[0]] * len(axes)
    elif len(varargs) == len(axes):
        spacings = []
        for a, d in zip(axes, varargs):
            if ops.ndim_of(d) == 0:
                spacings.append(d)
                continue
            d = np.asarray(_concrete(d, "np.gradient with coordinate arrays"), dtype=np.float64)
            if d.ndim != 1:
                raise ValueError("distances must be either scalars or 1d")
            if len(d) != ops.shape_of(f)[a]:
                raise ValueError("when 1d, distances must match the length of the corresponding dimension")
            diffs = np.diff(d)
            spacings.append(diffs[0] if (diffs == diffs[0]).all() else diffs)
    else:
        raise TypeError("invalid number of arguments")
    outs = tuple(ops.astype(_gradient_axis(f, a, d, edge_order), otype) for a, d in zip(axes, spacings))
    return outs[0] if len(outs) == 1 else outs


def _trapezoids(y, x, dx, axis):
    """The areas of the trapezoids between neighbours of `y` along `axis` (spacing `x` or `dx`), and the axis."""
    y = _float(y)
    axis = ops.normalize_axis(axis, ops.ndim_of(y))
    n = ops.shape_of(y)[axis]
    if x is None:
        d = dx
    else:
        x = ops.asarray(x)
        d = ops.diff(x, axis=-1 if ops.ndim_of(x) == 1 else axis)
        if ops.ndim_of(x) == 1:
            d = ops.reshape(d, tuple(-1 if a == axis else 1 for a in range(ops.ndim_of(y))))
    return d * (_slice_along(y, axis, 1, None) + _slice_along(y, axis, 0, n - 1)) / 2.0, axis


def trapezoid(y, x=None, dx=1.0, axis=-1):
    pieces, axis = _trapezoids(y, x, dx, axis)
    return ops.sum(pieces, axis=axis)


def cumulative_trapezoid(y, x=None, dx=1.0, axis=-1, initial=None):
    """scipy.integrate.cumulative_trapezoid: the running sums of trapezoid's pieces (with `initial`, which
    SciPy allows only as 0, in front)."""
    pieces, axis = _trapezoids(y, x, dx, axis)
    out = ops.cumsum(pieces, axis=axis)
    if initial is not None:
        if not np.isscalar(initial) or initial != 0:
            raise ValueError("`initial` must be `None` or `0`.")
        shape = list(ops.shape_of(out))
        shape[axis] = 1
        out = ops.concatenate([ops.full(tuple(shape), 0.0, out.dtype), out], axis=axis)
    return out


def cumprod(a, axis=None, dtype=None, out=None):
    """Running products by doubling (log2 n steps, each a shifted product), so zeros and negative
    entries are exact and the derivative is that of the products."""
    _no_out("cumprod", out)
    a = ops.asarray(a) if dtype is None else ops.astype(ops.asarray(a), dtype)  # NumPy multiplies in `dtype`
    if axis is None:
        a, axis = ops.ravel(a), 0
    axis = ops.normalize_axis(axis, ops.ndim_of(a))
    n = ops.shape_of(a)[axis]
    shift = 1
    while shift < n:
        ones = list(ops.shape_of(a))
        ones[axis] = shift
        a = a * ops.concatenate([ops.full(tuple(ones), 1, a.dtype), _slice_along(a, axis, 0, n - shift)], axis=axis)
        shift *= 2
    return a


def ediff1d(ary, to_end=None, to_begin=None):
    flat = ops.ravel(ops.asarray(ary))
    dtype = flat.dtype

    def cast(extra, name):  # NumPy casts to_begin and to_end to the array's dtype, same_kind only
        extra = ops.ravel(ops.asarray(extra))
        if not np.can_cast(extra.dtype, dtype, "same_kind"):
            raise TypeError(f"dtype of `{name}` must be compatible with input `ary` under the `same_kind` rule.")
        return ops.astype(extra, dtype)

    parts = [cast(to_begin, "to_begin")] if to_begin is not None else []
    parts.append(ops.diff(flat))
    if to_end is not None:
        parts.append(cast(to_end, "to_end"))
    return ops.concatenate(parts) if len(parts) > 1 else parts[0]


# --- interpolation, quantiles ---------------------------------------------------------------------
def interp(x, xp, fp, left=None, right=None, period=None):
    """Piecewise-linear interpolation, differentiable in x (the slope), fp and xp (a gather of the
    interval's ends). Like NumPy: x == xp[-1] gives fp[-1], outside the range `left`/`right`; with
    `period`, x and xp are wrapped into one period (xp sorted, fp with it) and padded by one point at
    each end from the neighbouring periods, as NumPy does (left and right are then ignored)."""
    x, xp, fp = (ops.astype(ops.asarray(v), np.float64) for v in (x, xp, fp))
    if period is not None:
        if is_tracer(period):
            raise UnsupportedOperationError("np.interp with a traced period", "Pass the period as a number. ")
        if period == 0:
            raise ValueError("period must be a non-zero value")
        period = abs(float(period))
        if ops.ndim_of(xp) != 1 or ops.ndim_of(fp) != 1:
            raise ValueError("Data points must be 1-D sequences")
        if ops.shape_of(fp)[0] != ops.shape_of(xp)[0]:
            raise ValueError("fp and xp are not of the same length")
        x, xp = ops.mod(x, period), ops.mod(xp, period)
        order = ops.argsort(xp)
        xp, fp = ops.take_along_axis(xp, order, 0), ops.take_along_axis(fp, order, 0)
        xp = ops.concatenate([ops.getitem(xp, slice(-1, None)) - period, xp, ops.getitem(xp, slice(0, 1)) + period])
        fp = ops.concatenate([ops.getitem(fp, slice(-1, None)), fp, ops.getitem(fp, slice(0, 1))])
        left = right = None
    if ops.ndim_of(xp) != 1 or ops.ndim_of(fp) != 1:
        raise ValueError("Data points must be 1-D sequences")
    n = ops.shape_of(xp)[0]
    if ops.shape_of(fp)[0] != n:
        raise ValueError("fp and xp are not of the same length.")
    if n == 0:
        raise ValueError("array of sample points is empty")
    first, last = ops.getitem(xp, 0), ops.getitem(xp, -1)
    left = ops.getitem(fp, 0) if left is None else left
    right = ops.getitem(fp, -1) if right is None else right
    if n == 1:
        inside = ops.broadcast_to(ops.getitem(fp, 0), ops.shape_of(x))
    else:
        # the interval j with xp[j] <= x < xp[j + 1]: how many of xp[1:-1] lie at or below x
        j = ops.sum(P.less_equal_p(ops.getitem(xp, slice(1, n - 1)), ops.expand_dims(x, -1)), axis=-1)
        xj, xj1 = P.take_p(xp, j, axis=0), P.take_p(xp, j + 1, axis=0)
        fj, fj1 = P.take_p(fp, j, axis=0), P.take_p(fp, j + 1, axis=0)
        slope = (fj1 - fj) / (xj1 - xj)
        inside = P.where_p(P.equal_p(x, last), ops.getitem(fp, -1), slope * (x - xj) + fj)
    return P.where_p(P.less_p(x, first), left, P.where_p(P.greater_p(x, last), right, inside))


_QUANTILE_METHODS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile_points(n, q, method):
    """Concrete (previous index, next index, weight of next) of NumPy's method for n sorted values."""
    virtual = (n - 1) * q
    if method == "lower":
        virtual = np.floor(virtual)
    elif method == "higher":
        virtual = np.ceil(virtual)
    elif method == "nearest":
        virtual = np.around(virtual)
    previous = np.clip(np.floor(virtual), 0, n - 1).astype(np.intp)
    following = np.clip(previous + 1, 0, n - 1).astype(np.intp)
    gamma = virtual - previous
    if method == "midpoint":
        gamma = np.where(gamma == 0, 0.0, 0.5)
    return previous, following, gamma


def _quantile_q(q, name):
    """(q as given, q as fractions in [0, 1]) for np.quantile/percentile and their nan forms. The
    q as given sets the result dtype as NumPy's: a Python float keeps a float32 array's dtype."""
    q_given = _concrete(q, f"np.{name} with q")
    q = np.asarray(q_given, dtype=np.float64)
    percent = name.endswith("percentile")
    if percent:
        q = np.true_divide(q, 100)
    if np.any(q < 0) or np.any(q > 1) or np.any(np.isnan(q)):
        raise ValueError("Percentiles must be in the range [0, 100]" if percent else
                         "Quantiles must be in the range [0, 1]")
    return q_given, q


def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False, *, weights=None,
             interpolation=None, _name="quantile"):
    """Quantiles of the sorted values, interpolated as NumPy's `method` ('linear' by default; also 'lower',
    'higher', 'midpoint', 'nearest'). The derivative reaches the two order statistics each one reads."""
    _no_out(_name, out)
    method = interpolation or method
    if method not in _QUANTILE_METHODS:
        raise UnsupportedOperationError(f"np.{_name}(method={method!r})", f"jitad implements the methods "
                                        f"{', '.join(_QUANTILE_METHODS)}. ")
    if weights is not None:
        raise UnsupportedOperationError(f"np.{_name}(weights=...)", "")
    q_given, q = _quantile_q(q, _name)
    a = ops.asarray(a)
    shape = ops.shape_of(a)
    out_dtype = _numpy_dtype(np.percentile if _name == "percentile" else np.quantile, np.zeros((2,), a.dtype),
                             q_given, method=method)
    axes = ops._axes(axis, len(shape))
    kept = [d for d in range(len(shape)) if d not in axes]
    n = int(np.prod([shape[d] for d in axes], dtype=np.int64))
    if n == 0:
        raise ValueError(f"np.{_name} of an empty selection")
    values = _float(ops.reshape(ops.transpose(a, kept + list(axes)), tuple(shape[d] for d in kept) + (n,)))
    ordered = ops.sort(values, axis=-1)
    previous, following, gamma = _quantile_points(n, q.ravel(), method)
    last = len(kept)
    low, high = P.take_p(ordered, previous, axis=last), P.take_p(ordered, following, axis=last)
    diff = high - low
    result = P.where_p(gamma >= 0.5, high - diff * (1 - gamma), low + diff * gamma)  # NumPy's _lerp
    if values.dtype.kind == "f":  # a NaN anywhere in a slice gives NaN, as NumPy's
        result = P.where_p(P.isnan_p(ops.getitem(ordered, (Ellipsis, slice(n - 1, n)))), np.nan, result)
    result = ops.moveaxis(ops.reshape(result, ops.shape_of(result)[:-1] + q.shape), range(-q.ndim, 0),
                          range(q.ndim)) if q.ndim else ops.reshape(result, ops.shape_of(result)[:-1])
    if keepdims:
        result = ops.reshape(result, q.shape + tuple(1 if d in axes else m for d, m in enumerate(shape)))
    return ops.astype(result, out_dtype)


def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False, *, weights=None,
               interpolation=None):
    return quantile(a, q, axis, out, overwrite_input, method, keepdims, weights=weights, interpolation=interpolation,
                    _name="percentile")


# --- NaN-ignoring reductions ---------------------------------------------------------------------------
def _nan_args(name, out=None, where=np._NoValue, initial=np._NoValue, keepdims=np._NoValue, **_):
    _no_out(name, out)
    if where is not np._NoValue and where is not True:
        raise UnsupportedOperationError(f"np.{name}(where=...)", "Mask the input with np.where first. ")
    if initial is not np._NoValue:
        raise UnsupportedOperationError(f"np.{name}(initial=...)", "")
    return False if keepdims is np._NoValue else bool(keepdims)


def _replace_nan(a, value):
    a = ops.asarray(a)
    if a.dtype.kind != "f":
        return a, None
    mask = P.isnan_p(a)
    return P.where_p(mask, np.asarray(value, a.dtype), a), mask


def _count(mask, a, axis, keepdims, dtype):
    if mask is None:
        return ops.full((), ops._count(a, axis), dtype)
    return ops.astype(ops.sum(P.logical_not_p(mask), axis=axis, keepdims=keepdims), dtype)


def nansum(a, axis=None, dtype=None, out=None, keepdims=np._NoValue, initial=np._NoValue, where=np._NoValue):
    keepdims = _nan_args("nansum", out, where, initial, keepdims)
    return ops.sum(_replace_nan(a, 0)[0], axis=axis, dtype=dtype, keepdims=keepdims)


def nanprod(a, axis=None, dtype=None, out=None, keepdims=np._NoValue, initial=np._NoValue, where=np._NoValue):
    keepdims = _nan_args("nanprod", out, where, initial, keepdims)
    result = ops.prod(_replace_nan(a, 1)[0], axis=axis, keepdims=keepdims)
    return result if dtype is None else ops.astype(result, dtype)


def nancumsum(a, axis=None, dtype=None, out=None):
    _no_out("nancumsum", out)
    result = ops.cumsum(_replace_nan(a, 0)[0], axis=axis)
    return result if dtype is None else ops.astype(result, dtype)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=np._NoValue, *, where=np._NoValue):
    keepdims = _nan_args("nanmean", out, where, keepdims=keepdims)
    arr, mask = _replace_nan(a, 0)
    if mask is None:
        return ops.mean(arr, axis=axis, dtype=dtype, keepdims=keepdims)
    total = ops.sum(arr, axis=axis, keepdims=keepdims)
    return total / _count(mask, arr, axis, keepdims, total.dtype)  # an all-NaN slice is 0/0 = NaN, as NumPy's


def nanvar(a, axis=None, dtype=None, out=None, ddof=0, keepdims=np._NoValue, *, where=np._NoValue,
           mean=np._NoValue, correction=np._NoValue):
    keepdims = _nan_args("nanvar", out, where, keepdims=keepdims)
    if mean is not np._NoValue:
        raise UnsupportedOperationError("np.nanvar(mean=...)", "")
    ddof = ddof if correction is np._NoValue else correction
    arr, mask = _replace_nan(a, 0)
    if mask is None:
        return ops.var(arr, axis=axis, ddof=ddof, keepdims=keepdims)
    count = _count(mask, arr, axis, True, arr.dtype)
    centred = P.where_p(mask, np.zeros((), arr.dtype), arr - ops.sum(arr, axis=axis, keepdims=True) / count)
    total = ops.sum(centred * centred, axis=axis, keepdims=keepdims)
    dof = _count(mask, arr, axis, keepdims, arr.dtype) - ddof
    return P.where_p(P.less_equal_p(dof, 0), np.asarray(np.nan, arr.dtype), total / dof)


def nanstd(a, axis=None, dtype=None, out=None, ddof=0, keepdims=np._NoValue, *, where=np._NoValue,
           mean=np._NoValue, correction=np._NoValue):
    # safe_sqrt, as np.std: identical entries have derivative 0, not inf * 0
    return P.safe_sqrt_p(nanvar(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean, correction=correction))


def _nan_extreme(name, reduce, fill):
    def builder(a, axis=None, out=None, keepdims=np._NoValue, initial=np._NoValue, where=np._NoValue):
        keepdims = _nan_args(name, out, where, initial, keepdims)
        arr, mask = _replace_nan(a, fill)
        result = reduce(arr, axis=axis, keepdims=keepdims)
        if mask is None:
            return result
        all_nan = P.logical_not_p(ops.amax(ops.astype(P.logical_not_p(mask), np.float64), axis=axis,
                                           keepdims=keepdims) > 0)
        return P.where_p(all_nan, np.asarray(np.nan, arr.dtype), result)
    builder.__name__ = name
    return builder


nanmax = _nan_extreme("nanmax", ops.amax, -np.inf)
nanmin = _nan_extreme("nanmin", ops.amin, np.inf)


# --- statistics --------------------------------------------------------------------------------------
def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *, dtype=None):
    if fweights is not None or aweights is not None:
        raise UnsupportedOperationError("np.cov with fweights/aweights", "")
    x = ops.asarray(m)
    x = ops.astype(x, np.result_type(x.dtype, np.float64))  # NumPy computes in float64 at least
    if ops.ndim_of(x) > 2:
        raise ValueError("m has more than 2 dimensions")
    x = ops.atleast_2d(x)
    if not rowvar and ops.shape_of(x)[0] != 1:
        x = ops.transpose(x)
    if y is not None:
        y = ops.atleast_2d(ops.astype(ops.asarray(y), x.dtype))
        if not rowvar and ops.shape_of(y)[0] != 1:
            y = ops.transpose(y)
        x = ops.concatenate([x, y], axis=0)
    ddof = (0 if bias else 1) if ddof is None else ddof
    n = ops.shape_of(x)[1]
    centred = x - ops.mean(x, axis=1, keepdims=True)
    c = ops.matmul(centred, ops.transpose(centred)) * ops._per(n - ddof)
    c = ops.squeeze(c) if ops.shape_of(c) == (1, 1) else c
    return c if dtype is None else ops.astype(c, dtype)


def corrcoef(x, y=None, rowvar=True, *, dtype=None):
    c = cov(x, y, rowvar, dtype=dtype)
    if ops.ndim_of(c) == 0:
        return c / c
    d = ops.diagonal(c)
    s = P.sqrt_p(d)
    c = c / ops.reshape(s, (-1, 1)) / ops.reshape(s, (1, -1))
    return ops.clip(c, -1, 1)


def select(condlist, choicelist, default=0):
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    result = default
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        result = P.where_p(cond, choice, result)
    return ops.asarray(result)


# --- stacking ---------------------------------------------------------------------------------------
def atleast_3d(*arys):
    def one(x):
        x = ops.asarray(x)
        shape = ops.shape_of(x)
        return ops.reshape(x, {0: (1, 1, 1), 1: (1,) + shape + (1,), 2: shape + (1,)}.get(len(shape), shape))
    out = [one(x) for x in arys]
    return out[0] if len(out) == 1 else tuple(out)


def dstack(tup):
    return ops.concatenate([atleast_3d(x) for x in tup], axis=2)


def block(arrays):
    def depth(a):
        return 1 + depth(a[0]) if isinstance(a, list) else 0
    levels = depth(arrays)

    def build(a, level):
        if not isinstance(a, list):
            return ops.asarray(a)
        parts = [build(x, level + 1) for x in a]
        nd = max(levels, max(ops.ndim_of(p) for p in parts))
        parts = [ops.reshape(p, (1,) * (nd - ops.ndim_of(p)) + ops.shape_of(p)) for p in parts]
        return ops.concatenate(parts, axis=-(levels - level))
    return build(arrays, 0)


# --- convolution and correlation -----------------------------------------------------------------------
def _common_float(a, v):
    a, v = ops.asarray(a), ops.asarray(v)
    dtype = np.result_type(a.dtype, v.dtype)
    work = dtype if dtype.kind == "f" else np.dtype(np.float64)
    return ops.astype(a, work), ops.astype(v, work), dtype


def _correlate_full(a, v):
    """Full n-d correlation: out[k] = Σ_j a[k + j - (m - 1)] v[j] (zero outside a), as one gather of
    the windows and one matrix-vector product, so both operands differentiate."""
    a_shape, v_shape = ops.shape_of(a), ops.shape_of(v)
    padded = ops.pad(a, [(m - 1, m - 1) for m in v_shape])
    out_shape = tuple(n + m - 1 for n, m in zip(a_shape, v_shape))
    nd = len(a_shape)
    k = np.indices(out_shape).reshape(nd, -1)
    j = np.indices(v_shape).reshape(nd, -1)
    windows = np.ravel_multi_index(tuple(k[:, :, None] + j[:, None, :]), ops.shape_of(padded))
    gathered = P.take_p(ops.ravel(padded), windows.reshape(-1), axis=0)
    products = ops.matmul(ops.reshape(gathered, (k.shape[1], j.shape[1])), ops.ravel(v))
    return ops.reshape(products, out_shape)


def _crop(x, starts, lengths):
    return ops.getitem(x, tuple(slice(s, s + n) for s, n in zip(starts, lengths)))


def _mode(mode):
    mode = {0: "valid", 1: "same", 2: "full"}.get(mode, mode)
    if mode not in ("valid", "same", "full"):
        raise ValueError(f"mode must be one of 'valid', 'same', or 'full' (got {mode!r})")
    return mode


def _numpy_correlate(a, v, mode, name):
    a, v = ops.atleast_1d(ops.asarray(a)), ops.atleast_1d(ops.asarray(v))
    if ops.ndim_of(a) != 1 or ops.ndim_of(v) != 1:
        raise ValueError("object too deep for desired array")
    n, m = ops.shape_of(a)[0], ops.shape_of(v)[0]
    if n == 0 or m == 0:
        raise ValueError(f"{'a' if n == 0 else 'v'} cannot be empty")
    a, v, dtype = _common_float(a, v)
    mode = _mode(mode)
    inverted = n < m
    if inverted:  # NumPy correlates the other way round and reverses
        a, v, n, m = v, a, m, n
    full = _correlate_full(a, v)
    start, length = {"valid": (m - 1, n - m + 1), "same": ((m - 1) - m // 2, n), "full": (0, n + m - 1)}[mode]
    out = _crop(full, (start,), (length,))
    return ops.astype(ops.flip(out) if inverted else out, dtype)


def correlate(a, v, mode="valid"):
    return _numpy_correlate(a, v, mode, "correlate")


def convolve(a, v, mode="full"):
    a, v = ops.atleast_1d(ops.asarray(a)), ops.atleast_1d(ops.asarray(v))
    if ops.ndim_of(v) == 1 and ops.ndim_of(a) == 1 and ops.shape_of(v)[0] > ops.shape_of(a)[0]:
        a, v = v, a
    return _numpy_correlate(a, ops.flip(v), mode, "convolve")


def _signal_method(method, name):
    if method not in ("auto", "direct", "fft"):
        raise ValueError("Acceptable method flags are 'auto', 'direct', or 'fft'.")


def signal_correlate(in1, in2, mode="full", method="auto"):
    """scipy.signal.correlate of any dimension, computed directly (for method 'fft' too: same values)."""
    _signal_method(method, "correlate")
    a, v, dtype = _common_float(in1, in2)
    if ops.ndim_of(a) == ops.ndim_of(v) == 0:
        return ops.astype(a * v, dtype)
    if ops.ndim_of(a) != ops.ndim_of(v):
        raise ValueError("in1 and in2 should have the same dimensionality")
    mode = _mode(mode)
    n, m = ops.shape_of(a), ops.shape_of(v)
    full = _correlate_full(a, v)
    if mode == "full":
        out = full
    elif mode == "same":
        out = _crop(full, [(f - k) // 2 for f, k in zip(ops.shape_of(full), n)], n)
    else:
        if not (all(x >= y for x, y in zip(n, m)) or all(y >= x for x, y in zip(n, m))):
            raise ValueError("For 'valid' mode, one must be at least as large as the other in every dimension")
        lengths = [abs(x - y) + 1 for x, y in zip(n, m)]
        if 0 in n or 0 in m:  # an empty operand: SciPy's zeros of the valid shape (|n - m| + 1)
            return ops.astype(ops.broadcast_to(ops.sum(full) * 0.0, lengths) + 0.0, dtype)
        out = _crop(full, [min(x, y) - 1 for x, y in zip(n, m)], lengths)
    return ops.astype(out, dtype)


def signal_convolve(in1, in2, mode="full", method="auto"):
    v = ops.asarray(in2)
    return signal_correlate(in1, ops.flip(v) if ops.ndim_of(v) else v, mode, method)


def _fill_boundary(boundary, fillvalue, name):
    if boundary not in ("fill", "pad") or np.any(np.asarray(_concrete(fillvalue, "fillvalue")) != 0):
        raise UnsupportedOperationError(f"scipy.signal.{name}(boundary={boundary!r}, fillvalue={fillvalue!r})",
                                        "jitad implements zero filling (boundary='fill', fillvalue=0). ")


def convolve2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    _fill_boundary(boundary, fillvalue, "convolve2d")
    if ops.ndim_of(in1) != 2 or ops.ndim_of(in2) != 2:
        raise ValueError("convolve2d inputs must both be 2-D arrays")
    return signal_convolve(in1, in2, mode)


def correlate2d(in1, in2, mode="full", boundary="fill", fillvalue=0):
    _fill_boundary(boundary, fillvalue, "correlate2d")
    if ops.ndim_of(in1) != 2 or ops.ndim_of(in2) != 2:
        raise ValueError("correlate2d inputs must both be 2-D arrays")
    if _mode(mode) == "same":  # SciPy's 2-D routine centres 'same' at in2's shape // 2 (correlate: (shape - 1) // 2)
        a, v, dtype = _common_float(in1, in2)
        return ops.astype(_crop(_correlate_full(a, v), [m // 2 for m in ops.shape_of(v)], ops.shape_of(a)), dtype)
    return signal_correlate(in1, in2, mode)


# --- np.r_ and np.c_ --------------------------------------------------------------------------------
def _axis_concatenate(self, key):
    """AxisConcatenator.__getitem__ (np.r_[...], np.c_[...]) for keys holding traced values."""
    if isinstance(key, str) or getattr(self, "matrix", False):
        raise UnsupportedOperationError("np.r_ / np.c_ building a matrix", "")
    key = key if isinstance(key, tuple) else (key,)
    axis, ndmin, trans1d = self.axis, self.ndmin, self.trans1d
    objs, scalars = [], []
    for k, item in enumerate(key):
        if isinstance(item, str):
            if k != 0:
                raise ValueError("special directives must be the first entry.")
            if item in ("r", "c"):
                raise UnsupportedOperationError("np.r_ / np.c_ building a matrix", "")
            vec = [int(x) for x in item.split(",")]  # "axis" or "axis,ndmin" or "axis,ndmin,trans1d"
            axis = vec[0]
            ndmin = vec[1] if len(vec) > 1 else ndmin
            trans1d = vec[2] if len(vec) > 2 else trans1d
            continue
        if isinstance(item, slice):
            objs.append(np.asarray(np.r_[item]))
            continue
        if type(item) in np.ScalarType:
            scalars.append(len(objs))
            objs.append(item)
            continue
        x = ops.asarray(item)
        item_ndim = ops.ndim_of(x)
        if item_ndim < ndmin:
            x = ops.reshape(x, (1,) * (ndmin - item_ndim) + ops.shape_of(x))
            if trans1d != -1:
                k2, k1 = ndmin - item_ndim, trans1d
                k1 = k1 + k2 + 1 if k1 < 0 else k1
                order = list(range(ndmin))
                x = ops.transpose(x, order[:k1] + order[k2:] + order[k1:k2])
        objs.append(x)
    dtype = np.result_type(*[o if j in scalars else o.dtype for j, o in enumerate(objs)])
    objs = [ops.reshape(np.asarray(o, dtype), (1,) * builtins.max(ndmin, 1)) if j in scalars else
            ops.astype(o, dtype) for j, o in enumerate(objs)]
    result = ops.concatenate(objs, axis=axis)
    if any(result is item for item in key):  # np.r_[y] is a new array: a write into it must not reach y
        result = type(result)(result.node, result.builder)
    return result


# --- indices of extremes, counts, searches (integer results: no derivative) ------------------------
def _arg_extreme(name, reduce):
    def builder(a, axis=None, out=None, *, keepdims=False):
        """The first position of the extreme (of the first NaN, if any), as NumPy's."""
        _no_out(name, out)
        a = ops.asarray(a)
        if axis is None:
            a, axis = ops.ravel(a), 0
        axis = ops.normalize_axis(axis, ops.ndim_of(a))
        n = ops.shape_of(a)[axis]
        if n == 0:
            raise ValueError(f"attempt to get {name} of an empty sequence")
        hit = P.equal_p(a, reduce(a, axis=axis, keepdims=True))
        if a.dtype.kind == "f":
            hit = P.logical_or_p(hit, P.isnan_p(a))
        positions = _along(np.arange(n, dtype=np.intp), axis, ops.ndim_of(a))
        return ops.amin(P.where_p(hit, positions, np.intp(n)), axis=axis, keepdims=keepdims)
    builder.__name__ = name
    return builder


argmax = _arg_extreme("argmax", ops.amax)
argmin = _arg_extreme("argmin", ops.amin)


def count_nonzero(a, axis=None, *, keepdims=False):
    result = ops.sum(P.not_equal_p(ops.asarray(a), 0), axis=axis, keepdims=keepdims)
    return ops.astype(result, np.intp)


def searchsorted(a, v, side="left", sorter=None):
    """Insertion points of v in the sorted a: how many entries of a lie below (side='right': at or below)."""
    if sorter is not None:
        a = ops.getitem(ops.asarray(a), np.asarray(_concrete(sorter, "np.searchsorted's sorter")))
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right' (got {side!r})")
    a, v = ops.asarray(a), ops.asarray(v)
    if ops.ndim_of(a) != 1:
        raise ValueError("object too deep for desired array")
    below = P.less_p(a, ops.expand_dims(v, -1)) if side == "left" else P.less_equal_p(a, ops.expand_dims(v, -1))
    return ops.astype(ops.sum(below, axis=-1), np.intp)


def digitize(x, bins, right=False):
    bins = np.asarray(_concrete(bins, "np.digitize's bins"))
    increasing = bins.size < 2 or bins[-1] >= bins[0]
    if increasing:
        return searchsorted(bins, x, side="left" if right else "right")
    return bins.size - searchsorted(bins[::-1], x, side="left" if right else "right")


# --- gathers and reshapes ---------------------------------------------------------------------------
def take(a, indices, axis=None, out=None, mode="raise"):
    _no_out("take", out)
    if mode not in ("raise", "clip", "wrap"):
        raise ValueError(f"np.take: mode must be 'raise', 'clip' or 'wrap', not {mode!r}")
    a = ops.asarray(a)
    if axis is None:
        a, axis = ops.ravel(a), 0
    axis = ops.normalize_axis(axis, ops.ndim_of(a))
    if mode != "raise":
        if is_tracer(indices):
            raise UnsupportedOperationError(f"np.take(mode={mode!r}) at traced positions",
                                            "Clip or wrap the indices first (np.clip, np.mod). ")
        n, indices = ops.shape_of(a)[axis], np.asarray(indices)
        indices = np.clip(indices, 0, n - 1) if mode == "clip" else np.mod(indices, n)
    return ops.getitem(a, (slice(None),) * axis + (indices,))


def delete(arr, obj, axis=None):
    arr = ops.asarray(arr)
    if axis is None:
        arr, axis = ops.ravel(arr), 0
    axis = ops.normalize_axis(axis, ops.ndim_of(arr))
    n = ops.shape_of(arr)[axis]
    keep = np.ones(n, bool)
    positions = np.arange(n)[obj] if isinstance(obj, slice) else np.asarray(_concrete(obj, "np.delete's positions"))
    if positions.size == 0 and not isinstance(obj, np.ndarray):  # NumPy: an empty list deletes nothing
        positions = positions.astype(np.intp)
    keep[positions] = False
    return ops.getitem(arr, (slice(None),) * axis + (np.flatnonzero(keep),))


def insert(arr, obj, values, axis=None):
    """Values placed before the given positions (concrete): a gather from the array and the values."""
    arr = ops.asarray(arr)
    if axis is None:
        arr, axis = ops.ravel(arr), 0
    axis = ops.normalize_axis(axis, ops.ndim_of(arr))
    n = ops.shape_of(arr)[axis]
    positions = np.arange(n + 1)[obj] if isinstance(obj, slice) else np.asarray(_concrete(obj, "np.insert's positions"))
    scalar = positions.ndim == 0
    positions = np.where(positions.ravel() < 0, positions.ravel() + n, positions.ravel())
    count = len(positions)
    shape = list(ops.shape_of(arr))
    values = ops.asarray(values)
    if scalar:  # NumPy: one position takes the values as an array of arr's rank, its first axis moved to `axis`
        nd = ops.ndim_of(arr)
        values = ops.reshape(values, (1,) * (nd - ops.ndim_of(values)) + ops.shape_of(values))
        values = ops.moveaxis(values, 0, axis)
        count = ops.shape_of(values)[axis]
        positions = np.repeat(positions, count)
    shape[axis] = count
    values = ops.broadcast_to(ops.astype(values, arr.dtype) if values.dtype != arr.dtype else values, tuple(shape))
    order = np.argsort(np.concatenate([np.arange(n), positions - 0.5]), kind="stable")  # before arr[position]
    return ops.getitem(ops.concatenate([arr, values], axis=axis), (slice(None),) * axis + (order,))


def diagflat(v, k=0):
    return ops.diag(ops.ravel(ops.asarray(v)), k)


def rollaxis(a, axis, start=0):
    nd = ops.ndim_of(a)
    axis = ops.normalize_axis(axis, nd)
    start = start + nd if start < 0 else start
    if not 0 <= start <= nd:
        raise ops.AxisError(start, nd + 1)
    if axis < start:
        start -= 1
    return ops.moveaxis(a, axis, start) if axis != start else a


def hsplit(x, indices_or_sections):
    return ops.split(x, indices_or_sections, axis=1 if ops.ndim_of(x) > 1 else 0)


def vsplit(x, indices_or_sections):
    return ops.split(x, indices_or_sections, axis=0)


def dsplit(x, indices_or_sections):
    return ops.split(x, indices_or_sections, axis=2)


def broadcast_arrays(*args, subok=False):
    args = [ops.asarray(a) for a in args]
    shape = tuple(np.broadcast_shapes(*[ops.shape_of(a) for a in args]))
    return tuple(ops.broadcast_to(a, shape) for a in args)


def unstack(x, /, *, axis=0):
    x = ops.asarray(x)
    axis = ops.normalize_axis(axis, ops.ndim_of(x))
    return tuple(ops.getitem(x, (slice(None),) * axis + (k,)) for k in range(ops.shape_of(x)[axis]))


def cumulative_sum(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
    return _cumulative(ops.cumsum, 0, x, axis, dtype, out, include_initial, "cumulative_sum")


def cumulative_prod(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
    return _cumulative(cumprod, 1, x, axis, dtype, out, include_initial, "cumulative_prod")


def _cumulative(running, initial, x, axis, dtype, out, include_initial, name):
    _no_out(name, out)
    x = ops.asarray(x)
    if axis is None:
        if ops.ndim_of(x) > 1:
            raise ValueError(f"np.{name}: axis must be given for arrays of more than one dimension")
        axis = 0
    axis = ops.normalize_axis(axis, ops.ndim_of(x))
    result = running(x, axis=axis)
    if include_initial:
        shape = list(ops.shape_of(result))
        shape[axis] = 1
        result = ops.concatenate([ops.full(tuple(shape), initial, result.dtype), result], axis=axis)
    return result if dtype is None else ops.astype(result, dtype)


def fix(x, out=None):
    _no_out("fix", out)
    return P.trunc_p(ops.asarray(x))


# --- polynomials (coefficients highest power first, as NumPy's) --------------------------------------
def polyval(p, x):
    """Horner's rule; differentiable in the coefficients and in x."""
    p, x = ops.asarray(p), ops.asarray(x)
    if ops.ndim_of(p) != 1:
        raise UnsupportedOperationError("np.polyval with a poly1d or 2-d coefficients", "")
    result = ops.zeros_like(x, np.result_type(p.dtype, x.dtype))
    for k in range(ops.shape_of(p)[0]):
        result = result * x + ops.getitem(p, k)
    return result


def polyder(p, m=1):
    p = ops.asarray(p)
    for _ in range(operator.index(m)):
        n = ops.shape_of(p)[0] - 1
        p = ops.getitem(p, slice(0, n)) * np.arange(n, 0, -1, dtype=np.float64) if n > 0 else ops.zeros_like(
            ops.getitem(p, slice(0, 1)))
    return p


def polyint(p, m=1, k=None):
    if k is not None and np.any(np.asarray(_concrete(k, "np.polyint's k")) != 0):
        raise UnsupportedOperationError("np.polyint with integration constants k", "Add them to the result. ")
    p = _float(p)
    for _ in range(operator.index(m)):
        n = ops.shape_of(p)[0]
        p = ops.concatenate([p / np.arange(n, 0, -1, dtype=np.float64), np.zeros(1, p.dtype)])
    return p


def _poly_pad(a, b):
    a, b = ops.atleast_1d(ops.asarray(a)), ops.atleast_1d(ops.asarray(b))
    na, nb = ops.shape_of(a)[0], ops.shape_of(b)[0]
    return (ops.pad(a, (nb - na, 0)) if na < nb else a), (ops.pad(b, (na - nb, 0)) if nb < na else b)


def polyadd(a1, a2):
    a, b = _poly_pad(a1, a2)
    return a + b


def polysub(a1, a2):
    a, b = _poly_pad(a1, a2)
    return a - b


def polymul(a1, a2):
    """NumPy's: each operand as a poly1d, whose leading zero coefficients are dropped, then convolved.
    A traced operand whose leading coefficient is exactly 0 would give a result whose length depends
    on its values (and no derivative in that coefficient): an UnsupportedOperationError. Its test
    is a guard, so a later call with a zero there traces again and raises too."""
    return convolve(_poly_trimmed(a1), _poly_trimmed(a2))


def _poly_trimmed(a):
    a = ops.atleast_1d(ops.asarray(a))
    if is_tracer(a):
        if ops.ndim_of(a) == 1 and ops.shape_of(a)[0] > 1 and bool(a[0] == 0):
            raise UnsupportedOperationError(
                "np.polymul of a traced polynomial whose leading coefficient is 0",
                "NumPy drops leading zero coefficients, so the result's length would depend on the values. "
                "Use np.convolve(a1, a2) for the product with every coefficient kept. ")
        return a
    a = np.asarray(a)
    if a.ndim == 1 and a.shape[0] > 1 and a[0] == 0:
        a = np.poly1d(a).coeffs  # NumPy's trimming of a constant operand
    return a


def polyfit(x, y, deg, rcond=None, full=False, w=None, cov=False):
    """Least squares through jitad's lstsq on NumPy's column-scaled Vandermonde matrix: differentiable
    in x and y. NumPy's RankWarning cannot be decided while tracing (the rank is a traced value)."""
    if full or cov or w is not None:
        raise UnsupportedOperationError("np.polyfit with full, cov or w", "Call np.linalg.lstsq on np.vander(x, "
                                        "deg + 1) yourself for the residuals, rank and singular values. ")
    x, y = _float(x), _float(y)
    order = operator.index(deg) + 1
    if order < 1:
        raise ValueError("expected deg >= 0")
    if ops.ndim_of(x) != 1 or ops.ndim_of(y) not in (1, 2) or ops.shape_of(x)[0] != ops.shape_of(y)[0]:
        raise TypeError("expected 1-D x and 1-D or 2-D y of the same length")
    rcond = ops.shape_of(x)[0] * np.finfo(x.dtype).eps if rcond is None else rcond
    lhs = vander(x, order)
    scale = P.sqrt_p(ops.sum(lhs * lhs, axis=0))
    coefficients = linalg_ops.lstsq(lhs / scale, y, rcond)[0]
    return coefficients / (ops.reshape(scale, (-1, 1)) if ops.ndim_of(y) == 2 else scale)


def vander(x, N=None, increasing=False):
    x = ops.asarray(x)
    if ops.ndim_of(x) != 1:
        raise ValueError("x must be a one-dimensional array or sequence.")
    n = ops.shape_of(x)[0] if N is None else operator.index(N)
    dtype = np.promote_types(x.dtype, np.int_)  # NumPy multiplies into an array of that dtype
    if dtype != x.dtype:
        x = ops.astype(x, dtype)
    powers = range(n) if increasing else range(n - 1, -1, -1)
    columns = [ops.ones_like(x) if k == 0 else P.power_scalar_p(x, exponent=k) for k in powers]
    return ops.stack(columns, axis=1) if columns else ops.reshape(x, (-1, 0))


# --- NaN-ignoring order statistics ---------------------------------------------------------------------
def nanquantile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=np._NoValue, *,
                weights=None, interpolation=None, _name="nanquantile"):
    """Quantiles of the non-NaN values of each slice ('linear' method): NaNs sort last, and the
    interpolation reads positions computed from each slice's count (all-NaN slices give NaN)."""
    _no_out(_name, out)
    keepdims = False if keepdims is np._NoValue else bool(keepdims)
    method = interpolation or method
    if method != "linear" or weights is not None:
        raise UnsupportedOperationError(f"np.{_name}(method={method!r}{', weights' if weights is not None else ''})",
                                        "jitad implements the default 'linear' method without weights. ")
    q_given, q = _quantile_q(q, _name)
    a = ops.asarray(a)
    if a.dtype.kind != "f":
        return quantile(a, q * 100 if _name == "nanpercentile" else q, axis=axis, keepdims=keepdims,
                        _name=_name.replace("nan", ""))
    out_dtype = _numpy_dtype(np.nanpercentile if _name == "nanpercentile" else np.nanquantile,
                             np.zeros((2,), a.dtype), q_given)
    shape = ops.shape_of(a)
    if 0 in shape:  # NumPy's own branch for an array of no values: nanmean over the axes (NaN, no q axis)
        return nanmean(a, axis=axis, keepdims=keepdims)
    axes = ops._axes(axis, len(shape))
    kept = [d for d in range(len(shape)) if d not in axes]
    n = int(np.prod([shape[d] for d in axes], dtype=np.int64))
    values = ops.reshape(ops.transpose(a, kept + list(axes)), tuple(shape[d] for d in kept) + (n,))
    ordered = ops.sort(values, axis=-1)  # NaNs last
    count = ops.sum(P.logical_not_p(P.isnan_p(values)), axis=-1, keepdims=True)  # (kept..., 1), integers
    virtual = ops.astype(count - 1, np.float64) * q.ravel()  # (kept..., Q), no derivative
    previous = P.maximum_p(P.floor_p(virtual), 0.0)
    gamma = virtual - previous
    previous = ops.astype(previous, np.intp)
    following = P.minimum_p(previous + 1, P.maximum_p(count - 1, 0))
    low, high = ops.take_along_axis(ordered, previous, -1), ops.take_along_axis(ordered, following, -1)
    diff = high - low
    result = P.where_p(gamma >= 0.5, high - diff * (1 - gamma), low + diff * gamma)
    result = P.where_p(P.equal_p(count, 0), np.asarray(np.nan, result.dtype), result)
    result = ops.moveaxis(ops.reshape(result, ops.shape_of(result)[:-1] + q.shape), range(-q.ndim, 0),
                          range(q.ndim)) if q.ndim else ops.reshape(result, ops.shape_of(result)[:-1])
    if keepdims:
        result = ops.reshape(result, q.shape + tuple(1 if d in axes else m for d, m in enumerate(shape)))
    return ops.astype(result, out_dtype)


def nanpercentile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=np._NoValue, *,
                  weights=None, interpolation=None):
    return nanquantile(a, q, axis, out, overwrite_input, method, keepdims, weights=weights,
                       interpolation=interpolation, _name="nanpercentile")


def nanmedian(a, axis=None, out=None, overwrite_input=False, keepdims=np._NoValue):
    return nanquantile(a, 0.5, axis, out, keepdims=keepdims, _name="nanmedian")


# --- a few more: apply_along_axis, isin, angle, linalg.cond / matrix_rank ------------------------------
def apply_along_axis(func1d, axis, arr, *args, **kwargs):
    """func1d called on every 1-d slice (a Python loop, unrolled while tracing), results stacked like NumPy's."""
    arr = ops.asarray(arr)
    nd = ops.ndim_of(arr)
    axis = ops.normalize_axis(axis, nd)
    moved = ops.moveaxis(arr, axis, -1)
    outer = ops.shape_of(moved)[:-1]
    if not int(np.prod(outer, dtype=np.int64)):
        raise ValueError("Cannot apply_along_axis when any iteration dimensions are 0")
    results = [ops.asarray(func1d(ops.getitem(moved, index), *args, **kwargs)) for index in np.ndindex(*outer)]
    out = ops.reshape(ops.stack(results), outer + ops.shape_of(results[0]))
    rank = ops.ndim_of(results[0])  # NumPy puts the result's axes where the sliced axis was
    order = list(range(axis)) + list(range(len(outer), len(outer) + rank)) + list(range(axis, len(outer)))
    return ops.transpose(out, order)


def isin(element, test_elements, assume_unique=False, invert=False, *, kind=None):
    test = np.asarray(_concrete(test_elements, "np.isin's test_elements")).ravel()
    element = ops.asarray(element)
    hit = ops.amax(ops.astype(P.equal_p(ops.expand_dims(element, -1), test), np.float64), axis=-1) > 0 \
        if test.size else ops.full(ops.shape_of(element), False, np.bool_)
    return P.logical_not_p(hit) if invert else hit


def angle(z, deg=False):
    """The angle of a real number: pi below 0, else 0 (a constant: derivative 0)."""
    z = _float(z)
    half_turn = 180.0 if deg else np.pi
    return P.where_p(P.less_p(z, 0), np.asarray(half_turn, z.dtype), np.zeros((), z.dtype))


def cond(x, p=None):
    """np.linalg.cond: the ratio of extreme singular values (p None, 2, -2), else norm(x, p) norm(inv(x), p)."""
    x = _float(x)
    if ops.ndim_of(x) >= 2 and 0 in ops.shape_of(x)[-2:]:
        raise np.linalg.LinAlgError("cond is not defined on empty arrays")  # NumPy's check and message
    if p is None or p in (2, -2):
        s = linalg_ops.svdvals(x)
        big, small = ops.amax(s, axis=-1), ops.amin(s, axis=-1)
        return small / big if p == -2 else big / small
    shape = ops.shape_of(x)
    if len(shape) >= 2 and shape[-1] != shape[-2]:  # NumPy's check (before inv), and its message
        raise np.linalg.LinAlgError("Last 2 dimensions of the array must be square")
    return linalg_ops.norm(x, p, axis=(-2, -1)) * linalg_ops.norm(linalg_ops.inv(x), p, axis=(-2, -1))


def matrix_rank(A, tol=None, hermitian=False, *, rtol=None):
    """The number of singular values above the tolerance (an integer: no derivative)."""
    A = _float(A)
    if ops.ndim_of(A) < 2:
        return ops.astype(ops.amax(ops.astype(P.not_equal_p(A, 0), np.float64)) > 0, np.int64) if \
            ops.ndim_of(A) == 1 else ops.astype(P.not_equal_p(A, 0), np.int64)
    s = linalg_ops.svdvals(A)
    largest = linalg_ops._largest(s, -1, keepdims=True)
    if tol is None:
        scale = rtol if rtol is not None else max(ops.shape_of(A)[-2:]) * np.finfo(s.dtype).eps
        threshold = largest * scale
    else:
        threshold = ops.expand_dims(ops.asarray(tol), -1) if ops.ndim_of(tol) else tol
    return ops.sum(P.greater_p(s, threshold), axis=-1)


def signal_fftconvolve(in1, in2, mode="full", axes=None):
    """scipy.signal.fftconvolve / oaconvolve, computed directly: the same values up to rounding."""
    if axes is not None:
        raise UnsupportedOperationError("scipy.signal.fftconvolve(axes=...)", "Convolve over all axes. ")
    return signal_convolve(in1, in2, mode)


# --- signs, exponents, vector products (ufuncs and gufuncs) --------------------------------------
def _negative_sign(x):
    """The sign bit of x, -0.0 included, without a division: arctan2(x, -1) is -pi at -0.0, +pi at +0.0."""
    return P.less_p(np.arctan2(x, -1.0), 0.0)


def copysign(x1, x2):
    """|x1| with the sign of x2, bit for bit (x1 negated where the signs differ): d/dx1 = ±1, and
    d/dx2 = 0 (the result is piecewise constant in x2; JAX and autograd agree)."""
    dtype = _numpy_dtype(np.copysign, x1, x2)
    x1, x2 = ops.astype(ops.asarray(x1), dtype), ops.asarray(x2)
    flip = P.not_equal_p(_negative_sign(x1), _negative_sign(x2))
    return ops.where(flip, -x1, ops.broadcast_to(x1, ops.shape_of(flip)))


def ldexp(x1, x2):
    """x1 * 2**x2 for an integer x2, as two exact powers of two (one rounding, like ldexp, except in
    the subnormal range); no derivative in the integer x2."""
    dtype = _numpy_dtype(np.ldexp, x1, x2)  # (NumPy's TypeError for a float exponent)
    x1 = ops.astype(ops.asarray(x1), dtype)
    if is_tracer(x2):
        half = ops.floor_divide(x2, 2)
        first, second = ops.astype(half, dtype), ops.astype(x2 - half, dtype)
        return x1 * ops.power(np.asarray(2.0, dtype), first) * ops.power(np.asarray(2.0, dtype), second)
    x2 = np.asarray(x2)
    half = x2 // 2
    return x1 * np.ldexp(np.ones((), dtype), half) * np.ldexp(np.ones((), dtype), x2 - half)


def _gufunc_axis(name, axis=None, axes=None, keepdims=False, **rest):
    if axes is not None or keepdims or rest:
        given = ["axes"] * (axes is not None) + ["keepdims"] * bool(keepdims) + list(rest)
        raise UnsupportedOperationError(f"np.{name}({', '.join(given)}=...)", "jitad implements the axis= argument. ")
    return -1 if axis is None else axis


def vecdot(x1, x2, /, **kwargs):
    """Σ conj(x1) x2 along `axis` (real arrays: Σ x1 x2), broadcasting the other axes."""
    axis = _gufunc_axis("vecdot", **kwargs)
    x1, x2 = ops.asarray(x1), ops.asarray(x2)
    if ops.ndim_of(x1) == 0 or ops.ndim_of(x2) == 0:
        raise ValueError("vecdot: Input operand does not have enough dimensions")
    a, b = ops.moveaxis(x1, axis, -1), ops.moveaxis(x2, axis, -1)
    if ops.shape_of(a)[-1] != ops.shape_of(b)[-1]:
        raise ValueError(f"vecdot: core dimensions {ops.shape_of(a)[-1]} and {ops.shape_of(b)[-1]} differ")
    return ops.sum(a * b, axis=-1)


def matvec(x1, x2, /, **kwargs):
    """A stack of matrix-vector products: (..., m, n) and (..., n) give (..., m)."""
    _gufunc_axis("matvec", **kwargs) if kwargs else None
    x1, x2 = ops.asarray(x1), ops.asarray(x2)
    if ops.ndim_of(x1) < 2 or ops.ndim_of(x2) < 1:
        raise ValueError("matvec: Input operand does not have enough dimensions")
    return ops.squeeze(ops.matmul(x1, ops.expand_dims(x2, -1)), axis=-1)


def vecmat(x1, x2, /, **kwargs):
    """A stack of vector-matrix products: (..., n) and (..., n, m) give (..., m)."""
    _gufunc_axis("vecmat", **kwargs) if kwargs else None
    x1, x2 = ops.asarray(x1), ops.asarray(x2)
    if ops.ndim_of(x1) < 1 or ops.ndim_of(x2) < 2:
        raise ValueError("vecmat: Input operand does not have enough dimensions")
    return ops.squeeze(ops.matmul(ops.expand_dims(x1, -2), x2), axis=-2)


# --- histograms, piecewise functions, partitions, phase unwrapping --------------------------------
def _histogram_edges(a, bins, range, name):
    """(edges, number of bins) of np.histogram's `bins` and `range` for the values a (1-D)."""
    if isinstance(bins, str):
        raise UnsupportedOperationError(f"np.{name}(bins={bins!r}) of traced values", "The number of bins "
                                        "would depend on the values: pass the number of bins or the edges. ")
    if ops.ndim_of(bins) != 0:
        edges = ops.asarray(bins)
        return edges, ops.shape_of(edges)[0] - 1
    count = operator.index(bins)
    if count < 1:
        raise ValueError("`bins` must be positive, when an integer")
    edge_dtype = _numpy_dtype(np.histogram_bin_edges, a, bins=count, range=range or (0.0, 1.0))
    if range is not None:
        return np.linspace(float(range[0]), float(range[1]), count + 1, dtype=edge_dtype), count
    # NumPy: a.min() and a.max(), widened by 0.5 when they are equal
    first, last = ops.astype(ops.amin(a), edge_dtype), ops.astype(ops.amax(a), edge_dtype)
    if not bool(P.isfinite_p(first) & P.isfinite_p(last)):  # read through a guard, as NumPy raises
        raise ValueError(f"np.{name}: the autodetected range of the values is not finite (a NaN or "
                         "an infinity among them): pass range=(low, high)")
    same = P.equal_p(first, last)
    first, last = ops.where(same, first - 0.5, first), ops.where(same, last + 0.5, last)
    return linspace(first, last, count + 1, dtype=edge_dtype), count


def _bin_hits(a, edges, count):
    """(count, len(a)) booleans: value j falls in bin i (edge i <= a < edge i+1, the last bin closed);
    values outside the range fall nowhere."""
    index = ops.astype(searchsorted(edges, a, side="right"), np.int64) - 1
    index = ops.where(P.equal_p(a, ops.getitem(edges, -1)), count - 1, index)
    inside = (index >= 0) & (index < count)
    return P.equal_p(ops.expand_dims(index, 0), np.arange(count)[:, None]) & ops.expand_dims(inside, 0)


def histogram(a, bins=10, range=None, density=None, weights=None):
    """np.histogram of traced values: NumPy's bins (edge i <= a < edge i+1, the last bin closed).
    The counts are integers, with no derivative (locally constant in `a`, as in JAX); weighted
    counts are differentiable in the weights; the edges, when NumPy computes them from a.min()
    and a.max(), in those two values (JAX's convention too)."""
    a = ops.ravel(ops.asarray(a))
    if weights is not None:
        weights = ops.ravel(ops.asarray(weights))
        if ops.shape_of(weights) != ops.shape_of(a):
            raise ValueError("weights should have the same shape as a.")
    edges, count = _histogram_edges(a, bins, range, "histogram")
    hits = _bin_hits(a, edges, count)
    if weights is None:
        counts = ops.sum(ops.astype(hits, np.int64), axis=1)
    else:
        counts = ops.sum(ops.where(hits, ops.expand_dims(weights, 0), 0), axis=1)
    if density:
        widths = ops.diff(edges)
        counts = counts / ops.astype(widths, np.result_type(counts.dtype, np.float64)) / ops.sum(counts)
    return counts, edges


def histogram2d(x, y, bins=10, range=None, density=None, weights=None):
    """np.histogram2d of traced values: H[i, j] counts (or sums the weights of) the points in x-bin i
    and y-bin j, each axis binned as np.histogram does. H is float, as NumPy's; differentiable in the
    weights, the edges in the values' extremes when NumPy takes them from the data."""
    x, y = ops.ravel(ops.asarray(x)), ops.ravel(ops.asarray(y))
    if ops.shape_of(x) != ops.shape_of(y):
        raise ValueError("x and y must have the same length.")
    try:
        several = len(bins)
    except TypeError:
        several = 1
    if several not in (1, 2):
        bins = [bins, bins]  # one array of edges for both axes
    elif several == 1:
        bins = [bins, bins] if ops.ndim_of(bins) == 0 else [bins[0], bins[0]]
    ranges = (None, None) if range is None else range
    hits = []
    edges = []
    for values, axis_bins, axis_range in zip((x, y), bins, ranges):
        axis_edges, count = _histogram_edges(values, axis_bins, axis_range, "histogram2d")
        if axis_range is not None:
            axis_edges = axis_edges.astype(np.float64)  # histogramdd's np.linspace of the range (a NumPy array)
        edges.append(axis_edges)
        hits.append(_bin_hits(values, axis_edges, count))
    dtype = np.float64 if weights is None else np.result_type(weights.dtype if is_tracer(weights) else
                                                              np.asarray(weights).dtype, np.float64)
    left = ops.astype(hits[0], dtype)
    right = ops.astype(hits[1], dtype)
    if weights is not None:
        right = right * ops.expand_dims(ops.astype(ops.ravel(ops.asarray(weights)), dtype), 0)
    counts = ops.matmul(left, ops.swapaxes(right, 0, 1))
    if density:
        area = ops.expand_dims(ops.diff(edges[0]), 1) * ops.expand_dims(ops.diff(edges[1]), 0)
        counts = counts / area / ops.sum(counts)
    return counts, edges[0], edges[1]


def piecewise(x, condlist, funclist, *args, **kw):
    """np.piecewise: each function applied where its condition holds, later conditions winning; a
    function is called on all of x (not on x[cond], whose shape a traced condition would decide),
    so it must work elementwise; the result has x's dtype, as in NumPy."""
    x = ops.asarray(x)
    scalar = not isinstance(condlist, (list, tuple)) and ops.ndim_of(condlist) == 0
    if scalar or (ops.ndim_of(x) != 0 and not (isinstance(condlist[0], (list, np.ndarray)) or
                                             (is_tracer(condlist[0]) and condlist[0].ndim))):
        condlist = [condlist]  # NumPy's rule: one condition, not a list of them
    condlist = [ops.broadcast_to(ops.asarray(c), ops.shape_of(x)) for c in condlist]
    if len(funclist) == len(condlist) + 1:  # the last function: where no condition holds
        otherwise = condlist[0]
        for c in condlist[1:]:
            otherwise = otherwise | c
        condlist.append(P.logical_not_p(otherwise))
    elif len(funclist) != len(condlist):
        raise ValueError(f"with {len(condlist)} condition(s), either {len(condlist)} or {len(condlist) + 1} "
                         f"functions are expected")
    y = ops.broadcast_to(np.zeros((), x.dtype), ops.shape_of(x))
    for cond, fun in zip(condlist, funclist):
        value = fun(x, *args, **kw) if callable(fun) else fun
        value = ops.astype(ops.asarray(value), x.dtype) if (is_tracer(value) or np.ndim(value)) else \
            np.asarray(value).astype(x.dtype)
        y = ops.where(cond, value, y)
    return ops.broadcast_to(y, ops.shape_of(x)) if ops.shape_of(y) != ops.shape_of(x) else y


def _check_kth(x, kth, axis):
    n = ops.shape_of(x)[axis] if ops.ndim_of(x) else 1
    for k in np.atleast_1d(_concrete(kth, "np.partition's kth")):
        if not -n <= int(k) < n:
            raise ValueError(f"kth(={int(k)}) out of bounds ({n})")


def partition(a, kth, axis=-1, kind="introselect", order=None):
    """np.partition of traced values, fully sorted: the k-th entry is where NumPy puts it, the
    smaller ones before it and the larger after, as NumPy guarantees; within those two parts NumPy
    leaves the order unspecified, jitad gives them sorted. The derivative is sort's."""
    a = ops.asarray(a)
    if axis is not None:
        _check_kth(a, kth, ops.normalize_axis(axis, ops.ndim_of(a)))
    return ops.sort(a, axis=axis)


def argpartition(a, kth, axis=-1, kind="introselect", order=None):
    """np.argpartition of traced values: the stable argsort (see `partition`)."""
    a = ops.asarray(a)
    if axis is not None:
        _check_kth(a, kth, ops.normalize_axis(axis, ops.ndim_of(a)))
    return ops.argsort(a, axis=axis)


def unwrap(p, discont=None, axis=-1, *, period=2 * np.pi):
    """np.unwrap, NumPy's steps on traced values: the corrections are multiples of the period,
    piecewise constant, so the derivative passes straight through (d unwrap(p)/dp = I)."""
    p = ops.asarray(p)
    axis = ops.normalize_axis(axis, ops.ndim_of(p))
    dd = ops.diff(p, axis=axis)
    if discont is None:
        discont = period / 2
    dtype = np.result_type(_proxy(dd), period)
    if np.issubdtype(dtype, np.integer):
        interval_high, rem = divmod(period, 2)
        boundary_ambiguous = rem == 0
    else:
        interval_high, boundary_ambiguous = period / 2, True
    interval_low = -interval_high
    ddmod = np.mod(dd - interval_low, period) + interval_low
    if boundary_ambiguous:  # abs(dd) == period / 2: keep the sign of dd
        ddmod = ops.where(P.equal_p(ddmod, interval_low) & P.greater_p(dd, 0), interval_high, ddmod)
    correction = ops.where(P.less_p(np.abs(dd), discont), 0, ddmod - dd)
    p = ops.astype(p, dtype)
    rest = _slice_along(p, axis, 1, None) + ops.cumsum(correction, axis=axis)
    return ops.concatenate([_slice_along(p, axis, 0, 1), rest], axis=axis)


# --- writes: np.copyto, np.put, np.putmask, np.place -----------------------------------------------
def _writable(a, name):
    if not (is_tracer(a) or isinstance(a, inplace.Workspace)):
        raise InPlaceUpdateError(f"np.{name} of a traced value into a NumPy array that is not traced",
                                 inplace.NOT_TRACED)
    return a


def _current(a):
    return inplace.resolve(a)


def _cycled(values, count, dtype):
    """`values` flattened and repeated to `count` entries (np.resize), cast to `dtype`."""
    flat = ops.ravel(ops.astype(ops.asarray(values), dtype))
    size = ops.shape_of(flat)[0]
    if size == 0:
        raise ValueError("cannot write from an empty array of values")
    return flat if size == count else ops.getitem(flat, np.arange(count) % size)


def copyto(dst, src, casting="same_kind", where=True):
    """np.copyto into an array written while tracing: dst = where(where, src, dst)."""
    _writable(dst, "copyto")
    current = _current(dst)
    src = ops.asarray(src)
    if not np.can_cast(src.dtype, current.dtype, casting=casting):
        raise TypeError(f"Cannot cast array data from dtype('{src.dtype}') to dtype('{current.dtype}') according "
                        f"to the rule '{casting}'")
    src = ops.astype(src, current.dtype)
    if where is True:
        dst[...] = src
    else:
        dst[...] = ops.where(ops.asarray(where), src, current)


def put(a, ind, v, mode="raise"):
    """np.put: a.flat[ind] = v, v repeated to the number of indices (the last of repeated indices wins)."""
    _writable(a, "put")
    current = _current(a)
    size = current.size
    if is_tracer(ind):
        if mode != "raise":
            raise UnsupportedOperationError(f"np.put(mode={mode!r}) at traced indices", "Pass mode='raise'. ")
        ind = ops.ravel(ind)
    else:
        ind = np.ravel(np.asarray(ind))
        if mode == "wrap":
            ind = ind % size
        elif mode == "clip":
            ind = np.clip(ind, 0, size - 1)
        elif ind.size and (ind.max() >= size or ind.min() < -size):
            raise IndexError(f"index {int(ind.max()) if ind.max() >= size else int(ind.min())} is out of bounds "
                             f"for axis 0 with size {size}")
    count = ops.shape_of(ind)[0]
    if count == 0:
        return
    values = _cycled(v, count, current.dtype)
    shape = tuple(current.shape)
    if len(shape) <= 1:
        flat = a.reshape(-1)  # a view of a 0-d or 1-d a: the write reaches a
        flat[ind] = values
        return
    # a.flat[ind]: C-order positions of a's elements, also when a is not C-ordered in memory (then
    # a.reshape(-1) is a copy, and a write into it would not reach a): written at their indices
    if is_tracer(ind):
        ind = ops.where(P.less_p(ind, 0), ind + size, ind)
        a[unravel_index(ind, shape)] = values
    else:
        a[np.unravel_index(np.where(ind < 0, ind + size, ind), shape)] = values


def putmask(a, mask, values):
    """np.putmask: a.flat[n] = values[n % len(values)] where mask.flat[n] (the values follow the
    positions, not the count of True entries), so a traced mask is fine."""
    _writable(a, "putmask")
    current = _current(a)
    mask = ops.asarray(mask)
    if ops.shape_of(mask) != ops.shape_of(current):
        raise ValueError("putmask: mask and data must be the same size")
    cycled = ops.reshape(_cycled(values, current.size, current.dtype), ops.shape_of(current))
    a[...] = ops.where(mask, cycled, current)


def place(arr, mask, vals):
    """np.place: the True entries of mask take vals in order (repeated); with a traced mask, vals
    must be one value (how many entries it selects is not known while tracing)."""
    _writable(arr, "place")
    current = _current(arr)
    mask = ops.asarray(mask)
    if ops.shape_of(mask) != ops.shape_of(current):
        raise ValueError("place: mask and data must be the same size")
    vals = ops.asarray(vals)
    if is_tracer(mask):
        if vals.size != 1:
            raise InPlaceUpdateError(f"np.place of {vals.size} values with a traced mask", "How many entries "
                                     "the mask selects is known only when the function runs: pass one value, or "
                                     "write arr = np.where(mask, new, arr) with `new` of arr's shape. ")
        arr[...] = ops.where(mask, ops.astype(ops.reshape(vals, ()), current.dtype), current)
        return
    mask = np.asarray(mask, dtype=bool)
    count = int(mask.sum())
    if count:
        arr[mask] = _cycled(vals, count, current.dtype)


WRITERS = {np.copyto: copyto, np.put: put, np.putmask: putmask, np.place: place}


def fill_diagonal(a, val, wrap=False):
    """np.fill_diagonal: the main diagonal (every index equal) takes val, repeated."""
    _writable(a, "fill_diagonal")
    shape = ops.shape_of(_current(a))
    if len(shape) < 2:
        raise ValueError("array must be at least 2-d")
    if len(shape) == 2:
        step, end = shape[1] + 1, None if wrap else shape[1] * shape[1]
    else:
        if len(set(shape)) != 1:
            raise ValueError("All dimensions of input must be of equal length")
        step, end = 1 + int(np.cumprod(shape[:-1]).sum()), None
    count = len(range(0, int(np.prod(shape)) if end is None else min(end, int(np.prod(shape))), step))
    flat = a.reshape(-1)
    flat[:end:step] = _cycled(val, count, _current(a).dtype)


def put_along_axis(arr, indices, values, axis):
    """np.put_along_axis: arr[..., indices, ...] = values along `axis` (traced indices too)."""
    _writable(arr, "put_along_axis")
    shape = ops.shape_of(_current(arr))
    if axis is None:
        arr.reshape(-1)[indices] = values
        return
    axis = ops.normalize_axis(axis, len(shape))
    if ops.ndim_of(indices) != len(shape):
        raise ValueError("`indices` and `arr` must have the same number of dimensions")
    key = tuple(indices if d == axis else np.arange(n).reshape((1,) * d + (n,) + (1,) * (len(shape) - d - 1))
                for d, n in enumerate(shape))
    arr[key] = values


WRITERS_MORE = {np.fill_diagonal: fill_diagonal, np.put_along_axis: put_along_axis}


def unravel_index(indices, shape, order="C"):
    """np.unravel_index of traced integer indices (of an argmax, say): integer arithmetic, no derivative."""
    shape = tuple(operator.index(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    if order not in ("C", "F"):
        raise ValueError("only 'C' or 'F' order is permitted")
    indices = ops.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"only int indices permitted, not {indices.dtype}")
    out, rest = [], indices
    for n in (reversed(shape) if order == "C" else shape):
        out.append(ops.mod(rest, n))
        rest = ops.floor_divide(rest, n)
    return tuple(reversed(out)) if order == "C" else tuple(out)


def bincount(x, weights=None, minlength=0):
    """np.bincount: a scatter-add of the weights (or of ones) at the labels, linear in the weights.
    Traced labels are scattered as they are; only the result's length, max(labels) + 1, is read
    from the call's values (and their minimum, which NumPy checks), as guards: a later call whose
    largest label differs is traced again."""
    if is_tracer(x):
        if x.dtype.kind not in "biu":
            raise TypeError(f"Cannot cast array data from dtype('{x.dtype}') to dtype('int64') according to "
                            "the rule 'safe'")
        if x.ndim != 1:
            raise ValueError("object too deep for desired array" if x.ndim > 1 else "object of too small depth "
                             "for desired array")
        size = operator.index(minlength)
        if x.size:
            if int(x.min()) < 0:
                raise ValueError("'list' argument must have no negative elements")
            size = max(int(x.max()) + 1, size)
        labels = ops.astype(x, np.intp)
        if weights is None:
            ones = ops.broadcast_to(np.ones((), np.float64), x.shape)
            return ops.astype(P.scatter_add_p(ones, labels, axis=0, size=size), np.intp)
        return _weighted_counts(weights, labels, size)
    x = np.asarray(x)
    if x.ndim != 1 or (x.size and x.min() < 0):
        raise ValueError("'list' argument must be 1-d of non-negative integers")
    size = max(int(x.max()) + 1 if x.size else 0, operator.index(minlength))
    if weights is None:
        return np.bincount(x, minlength=minlength)
    return _weighted_counts(weights, x.astype(np.intp), size)


def _weighted_counts(weights, labels, size):
    """np.bincount with weights: the float64 sum of the weights at each label. An empty list is NumPy's
    early return, intp zeros whatever the weights (not even their length is checked)."""
    if not ops.shape_of(labels)[0]:
        return np.zeros(size, np.intp)
    weights = _float(weights)
    if ops.shape_of(weights) != ops.shape_of(labels):
        raise ValueError("The weights and list don't have the same length.")
    return P.scatter_add_p(ops.astype(weights, np.float64), labels, axis=0, size=size)


def compress(condition, a, axis=None, out=None):
    """np.compress: the slices of `a` along `axis` where `condition` is true (a traced condition is
    read from the call's values and guarded, as a mask: `numpy_ops.mask_value`)."""
    _no_out("compress", out)
    condition = ops.asarray(condition)
    if ops.ndim_of(condition) != 1:
        raise ValueError("condition must be a 1-d array")
    flags = ops.mask_value(ops.astype(condition, bool), "np.compress with a traced condition") \
        if is_tracer(condition) else np.asarray(condition, bool)
    return take(a, np.nonzero(flags)[0], axis=axis)


def extract(condition, arr):
    """np.extract: the entries of ravel(arr) where ravel(condition) is true (np.compress)."""
    return compress(ops.ravel(ops.asarray(condition)), ops.ravel(ops.asarray(arr)))


def unique(ar, return_index=False, return_inverse=False, return_counts=False, axis=None, *, equal_nan=True,
           **options):
    """np.unique of a traced array. Which entries are equal, and their order, are read from the
    call's values as guards (the stable sorting permutation, and which neighbours in sorted order
    are equal; a later call where either differs is traced again); the unique values gather the
    array, each at its first occurrence (the derivative too), and the index, inverse and counts
    are integer constants: np.unique's own, computed on ranks with the same order and ties."""
    a = ops.asarray(ar)
    if not is_tracer(a):
        return np.unique(a, return_index, return_inverse, return_counts, axis, equal_nan=equal_nan, **options)
    if axis is not None:
        raise UnsupportedOperationError("np.unique(axis=...) of a traced array", "Its rows are compared as wholes; "
                                        "call it on concrete values (np.unique of indices computed outside). ")
    flat = ops.ravel(a)
    what = "np.unique of a traced array"
    ranks = np.zeros(flat.size, np.intp)
    if flat.size:
        keys = ops.astype(flat, np.int8) if flat.dtype == bool else flat
        order = guards.selection(ops.argsort(keys), what)
        ordered = P.take_p(flat, order, axis=0)
        ties = P.equal_p(ordered[1:], ordered[:-1])
        if flat.dtype.kind == "f" and equal_nan:
            ties = P.logical_or_p(ties, P.logical_and_p(P.isnan_p(ordered[1:]), P.isnan_p(ordered[:-1])))
        ties = guards.selection(ties, what) if flat.size > 1 else np.zeros(0, bool)
        ranks[order] = np.cumsum(np.concatenate([[True], ~ties])) - 1
    # NumPy's own answer for integers ordered and tied as the values are
    result = np.unique(ranks.reshape(ops.shape_of(a)), True, return_inverse, return_counts, **options)
    values = P.take_p(flat, result[1], axis=0)
    extra = [result[1]] if return_index else []
    extra += list(result[2:])
    return (values, *extra) if extra else values


def resize(a, new_shape):
    """np.resize: a's entries in order, repeated to fill `new_shape`."""
    shape = tuple(new_shape) if isinstance(new_shape, (tuple, list)) else (operator.index(new_shape),)
    a = ops.asarray(a)
    count = int(np.prod(shape, dtype=np.int64))
    if a.size == 0 or count == 0:
        return ops.reshape(ops.broadcast_to(np.zeros((), a.dtype), (count,)), shape)
    return ops.reshape(_cycled(a, count, a.dtype), shape)


def modf(x):
    """(fractional part, integral part), both with x's sign as NumPy's; d frac/dx = 1."""
    x = _float(x)
    whole = P.trunc_p(x)
    frac = copysign(ops.where(P.isinf_p(x), 0.0, x - whole), x)
    return frac, whole


def signbit(x):
    """Whether the sign bit is set (-0.0 included; NaN's sign is not read)."""
    x = ops.asarray(x)
    return _negative_sign(x) if x.dtype.kind == "f" else P.less_p(x, 0)


def _nan_arg_extreme(name, plain):
    def builder(a, axis=None, out=None, *, keepdims=False):
        """The position of the extreme ignoring NaNs; an all-NaN slice raises ValueError, as NumPy
        (jitad reads the traced values there and records the answer as a guard)."""
        a = ops.asarray(a)
        if a.dtype.kind != "f":
            return plain(a, axis=axis, out=out, keepdims=keepdims)
        missing = P.isnan_p(a)
        if bool(missing.all(axis=axis).any()):
            raise ValueError("All-NaN slice encountered")
        fill = -np.inf if name == "nanargmax" else np.inf
        return plain(ops.where(missing, fill, a), axis=axis, out=out, keepdims=keepdims)
    builder.__name__ = name
    return builder


nanargmax = _nan_arg_extreme("nanargmax", argmax)
nanargmin = _nan_arg_extreme("nanargmin", argmin)

# --- running extremes, sort keys, floating-point structure, trimming -------------------------------
def _running(array, axis, combine, fill):
    """The running `combine` (maximum, minimum) along `axis` by doubling: log2 n steps, each combining
    the values with themselves shifted by 1, 2, 4, ... places (`fill` before the start). Each step is
    the binary ufunc, so ties split the cotangent evenly between the two windows that hold them."""
    axis = ops.normalize_axis(axis, ops.ndim_of(array))
    n = ops.shape_of(array)[axis]
    if array.dtype == bool:
        fill = combine is P.minimum_p
    elif array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        fill = info.min if combine is P.maximum_p else info.max
    shift = 1
    while shift < n:
        pad = list(ops.shape_of(array))
        pad[axis] = shift
        shifted = ops.concatenate([ops.full(tuple(pad), fill, array.dtype), _slice_along(array, axis, 0, n - shift)],
                                  axis=axis)
        array = combine(array, shifted)
        shift *= 2
    return array


def _accumulate_extreme(name, combine, fill):
    def builder(array, axis=0, dtype=None, out=None):
        """np.maximum.accumulate / np.minimum.accumulate: the running extreme along `axis` (0 by default);
        NaN propagates as in NumPy."""
        _no_out(f"{name}.accumulate", out)
        array = ops.asarray(array)
        if dtype is not None:
            array = ops.astype(array, dtype)
        if axis is None:
            array, axis = ops.ravel(array), 0
        return _running(array, axis, combine, fill)
    builder.__name__ = f"{name}_accumulate"
    return builder


def _accumulate_sum(running):
    def builder(array, axis=0, dtype=None, out=None):
        """np.add.accumulate / np.multiply.accumulate: cumsum / cumprod along `axis` (0 by default)."""
        _no_out("accumulate", out)
        array = ops.asarray(array)
        if ops.ndim_of(array) == 0:
            raise TypeError("cannot accumulate on a scalar")
        if dtype is not None:
            array = ops.astype(array, dtype)
        return running(array, axis=0 if axis is None else axis)
    return builder


def frexp(x):
    """(mantissa, exponent) with x = mantissa 2^exponent and 1/2 <= |mantissa| < 1, as NumPy's; the
    exponent is an int32 with no derivative, the mantissa ldexp(x, -exponent): derivative 2^-exponent."""
    x = _float(x)
    exponent = P.frexp_exponent_p(x)
    return ldexp(x, -exponent), exponent


def nextafter(x1, x2):
    """The float after x1 towards x2: derivative 1 in x1 (it is x1 moved by one ulp), 0 in x2."""
    dtype = _numpy_dtype(np.nextafter, x1, x2)
    return P.nextafter_p(ops.astype(ops.asarray(x1), dtype), ops.astype(ops.asarray(x2), dtype))


def lexsort(keys, axis=-1):
    """Indices sorting by the last key, ties broken by the one before, and so on: stable sorts by each
    key from the first to the last. Integer indices, no derivative."""
    keys = list(keys) if isinstance(keys, (list, tuple)) else [keys[k] for k in builtins.range(ops.shape_of(keys)[0])]
    if not keys:
        raise TypeError("need sequence of keys with len > 0 in lexsort")
    keys = broadcast_arrays(*[ops.asarray(k) for k in keys])
    order = ops.argsort(keys[0], axis=axis)
    for key in keys[1:]:
        order = ops.take_along_axis(order, ops.argsort(ops.take_along_axis(key, order, axis), axis=axis), axis)
    return order


def trim_zeros(filt, trim="fb", axis=None):
    """np.trim_zeros: the zeros at the front and/or back of each axis trimmed. Which entries are zero
    decides the shape, so jitad reads it from the traced values (a guard, as for `if`): a later call
    with other zeros at the ends traces again."""
    a = ops.asarray(filt)
    trim = trim.lower()
    if trim not in {"fb", "bf", "f", "b"}:
        raise ValueError(f"unexpected character(s) in `trim`: {trim!r}")
    axes = tuple(builtins.range(ops.ndim_of(a))) if axis is None else \
        tuple(ops.normalize_axis(k, ops.ndim_of(a)) for k in (axis if isinstance(axis, (tuple, list)) else (axis,)))
    if not axes:
        return filt
    nonzero = P.not_equal_p(a, 0)
    empty = not bool(nonzero.any())
    index = []
    for k in builtins.range(ops.ndim_of(a)):
        if k not in axes:
            index.append(slice(None))
            continue
        if empty:
            index.append(slice(0, 0))
            continue
        others = tuple(j for j in builtins.range(ops.ndim_of(a)) if j != k)
        along = nonzero.any(axis=others) if others else nonzero
        n = ops.shape_of(a)[k]
        start = int(argmax(along)) if "f" in trim else None
        stop = n - int(argmax(ops.flip(along, 0))) if "b" in trim else None
        index.append(slice(start, stop))
    return ops.getitem(a, tuple(index))


FUNCTIONS = {
    np.linspace: linspace, np.logspace: logspace, np.geomspace: geomspace, np.meshgrid: meshgrid,
    np.gradient: gradient, np.trapezoid: trapezoid, np.cumprod: cumprod, np.ediff1d: ediff1d,
    np.interp: interp, np.quantile: quantile, np.percentile: percentile,
    np.nansum: nansum, np.nanprod: nanprod, np.nancumsum: nancumsum, np.nanmean: nanmean, np.nanvar: nanvar,
    np.nanstd: nanstd, np.nanmax: nanmax, np.nanmin: nanmin,
    np.cov: cov, np.corrcoef: corrcoef, np.select: select,
    np.atleast_3d: atleast_3d, np.dstack: dstack, np.block: block,
    np.convolve: convolve, np.correlate: correlate,
    np.argmax: argmax, np.argmin: argmin, np.count_nonzero: count_nonzero, np.searchsorted: searchsorted,
    np.digitize: digitize, np.take: take, np.delete: delete, np.insert: insert, np.diagflat: diagflat,
    np.rollaxis: rollaxis, np.hsplit: hsplit, np.vsplit: vsplit, np.dsplit: dsplit,
    np.broadcast_arrays: broadcast_arrays, np.unstack: unstack, np.cumulative_sum: cumulative_sum,
    np.cumulative_prod: cumulative_prod, np.fix: fix, np.polyval: polyval, np.polyder: polyder, np.polyint: polyint,
    np.polyfit: polyfit, np.polyadd: polyadd, np.polysub: polysub, np.polymul: polymul, np.vander: vander,
    np.nanquantile: nanquantile, np.nanpercentile: nanpercentile, np.nanmedian: nanmedian,
    np.apply_along_axis: apply_along_axis, np.isin: isin, np.angle: angle, np.linalg.cond: cond,
    np.linalg.matrix_rank: matrix_rank,
    np.histogram: histogram, np.piecewise: piecewise, np.partition: partition, np.argpartition: argpartition,
    np.unwrap: unwrap, **WRITERS, **WRITERS_MORE, np.unravel_index: unravel_index, np.bincount: bincount,
    np.resize: resize, np.nanargmax: nanargmax, np.nanargmin: nanargmin,
    np.histogram2d: histogram2d, np.lexsort: lexsort, np.trim_zeros: trim_zeros, np.unique: unique,
    np.compress: compress, np.extract: extract,
    # (while tracing, np.ascontiguousarray / np.asfortranarray are jitad.frontend.tracer's hooks: NumPy does
    # not dispatch them; these rows list them in the coverage table and serve a direct call)
    np.ascontiguousarray: lambda a, dtype=None, *, like=None: np.ascontiguousarray(a, dtype=dtype),
    np.asfortranarray: lambda a, dtype=None, *, like=None: np.asfortranarray(a, dtype=dtype),
    np.matrix_transpose: lambda x, /: ops.swapaxes(x, -1, -2), np.astype: lambda x, dtype, /, *, copy=True, **_:
    ops.astype(x, dtype),
}
ops.FUNCTIONS.update(FUNCTIONS)
ops.UFUNC_ACCUMULATE.update({
    np.add: _accumulate_sum(ops.cumsum), np.multiply: _accumulate_sum(cumprod),
    np.maximum: _accumulate_extreme("maximum", P.maximum_p, -np.inf),
    np.minimum: _accumulate_extreme("minimum", P.minimum_p, np.inf),
})
ops.UFUNCS.update({np.frexp: frexp, np.nextafter: nextafter, np.copysign: copysign, np.ldexp: ldexp, np.vecdot: vecdot,
                   np.modf: modf, np.signbit: signbit,
                   **({np.matvec: matvec, np.vecmat: vecmat} if hasattr(np, "matvec") else {})})  # NumPy >= 2.2
inplace.WRITERS.update({**WRITERS, **WRITERS_MORE})  # a Workspace hands itself (not a copy) to these

_INDEX_TRICKS = type(np.r_).__mro__[1]  # numpy's AxisConcatenator, the class of np.r_ and np.c_
linalg_ops.SCIPY_FUNCTIONS.update({
    ("scipy.signal", "convolve"): signal_convolve, ("scipy.signal", "correlate"): signal_correlate,
    ("scipy.signal", "convolve2d"): convolve2d, ("scipy.signal", "correlate2d"): correlate2d,
    ("scipy.integrate", "trapezoid"): trapezoid, ("scipy.integrate", "cumulative_trapezoid"): cumulative_trapezoid,
    ("scipy.signal", "fftconvolve"): signal_fftconvolve, ("scipy.signal", "oaconvolve"): signal_fftconvolve,
    (_INDEX_TRICKS.__module__, f"{_INDEX_TRICKS.__name__}.__getitem__"): _axis_concatenate,
})
