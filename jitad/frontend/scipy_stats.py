"""scipy.stats descriptive statistics and scipy.optimize's Rosenbrock function on traced values.

SciPy computes these with its array-API helpers (`array_namespace`, `xp_promote`, the
`_axis_nan_policy` decorator), which need real arrays. While tracing, `linalg_ops.scipy_hooks` swaps
the public functions (`scipy.stats.skew`, ...: the decorated wrappers, which are also the objects
`from scipy.stats import skew` binds) for the builders below, written with NumPy calls on tracers.
They follow SciPy's formulas (the same central moments by repeated squaring, the same bias
corrections and zero-variance NaNs), so values agree with SciPy's to rounding and derivatives
come from the composition.

Reducing functions take `axis` as SciPy's decorator does: an int, a tuple of ints, or None
(flatten); the reduced axes are moved last and merged, and `keepdims` puts them back as ones. A
sample too small for the statistic (empty; one value for `sem`) gives NaN as in SciPy.
Only nan_policy='propagate' is implemented on traced values (NaNs flow through the formulas):
'omit' and 'raise' need the positions of the NaNs, which are values, and raise
UnsupportedOperationError.
"""
import math

import numpy as np

from jitad.frontend import linalg_ops
from jitad.frontend import numpy_ops
from jitad.frontend import scipy_ops
from jitad import primitives as P
from jitad.errors import UnsupportedOperationError
from jitad.ir import is_tracer


def _float_dtype(dtype):
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _as_float(x):
    x = numpy_ops.asarray(x)
    dtype = _float_dtype(x.dtype)
    return x if x.dtype == dtype else numpy_ops.astype(x, dtype)


def _policy(name, nan_policy):
    if nan_policy not in ("propagate", "omit", "raise"):
        raise ValueError("nan_policy must be one of {'propagate', 'omit', 'raise'}")
    if nan_policy != "propagate":
        raise UnsupportedOperationError(
            f"scipy.stats.{name}(nan_policy={nan_policy!r})",
            "jitad implements nan_policy='propagate' only on traced values: 'omit' and 'raise' depend on where "
            "the NaNs are, which is data. Remove the NaNs first (np.where with a mask you know, or weights), "
            "or leave nan_policy at 'propagate'. ")


class _Sample:
    """A traced sample with the reduced axes moved last and merged into one (SciPy's decorator does
    the same), and how to give a reduced result the shape SciPy returns (keepdims)."""

    def __init__(self, name, a, axis, keepdims):
        a = numpy_ops.asarray(a)
        shape = tuple(numpy_ops.shape_of(a))
        if axis is None:
            axes = tuple(range(len(shape)))
        else:
            try:
                axes = (int(axis),) if np.ndim(axis) == 0 else tuple(int(i) for i in axis)
            except TypeError:
                raise UnsupportedOperationError(f"scipy.stats.{name}(axis={axis!r})",
                                                "Pass axis as an int, a tuple of ints or None. ") from None
            if len(shape) == 0 and all(i in (0, -1) for i in axes):  # a scalar is a one-value sample
                a, shape = numpy_ops.reshape(a, (1,)), (1,)
            axes = tuple(_normalize(i, len(shape)) for i in axes)
            if len(set(axes)) != len(axes):
                raise ValueError("`axis` must contain only distinct elements")
        kept = [i for i in range(len(shape)) if i not in axes]
        self.n = math.prod(shape[i] for i in axes)
        self.outer = tuple(shape[i] for i in kept)
        self.kept_shape = tuple(1 if i in axes else n for i, n in enumerate(shape))
        self.keepdims = keepdims
        self.shape = shape
        self.axes, self.kept = axes, kept
        self.a = self.arrange(a)

    def arrange(self, x):
        """x (broadcast to the sample's shape) with the reduced axes last, merged."""
        x = numpy_ops.asarray(x)
        if tuple(numpy_ops.shape_of(x)) != self.shape:
            x = numpy_ops.broadcast_to(x, self.shape)
        order = self.kept + list(self.axes)
        if order != list(range(len(order))):
            x = np.transpose(x, order)
        return numpy_ops.reshape(x, self.outer + (self.n,))

    def finish(self, result):
        return numpy_ops.reshape(result, self.kept_shape) if self.keepdims else result

    def nan(self, dtype):
        return np.full(self.kept_shape if self.keepdims else self.outer, np.nan, dtype)


def _normalize(axis, ndim):
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


def _central_moment(d, order):
    """mean(d**order, axis=-1) by SciPy's exponentiation by squares (stats._stats_py._moment)."""
    steps, current = [order], order
    while current > 2:
        current = (current - 1) // 2 if current % 2 else current // 2
        steps.append(current)
    s = d if steps[-1] == 1 else d ** 2
    for k in steps[-2::-1]:
        s = s ** 2
        if k % 2:
            s = s * d
    return np.mean(s, axis=-1)


def _mean_and_moments(a, orders):
    mean = np.mean(a, axis=-1, keepdims=True)
    d = a - mean
    return mean[..., 0], [_central_moment(d, k) for k in orders]


def skew(a, axis=0, bias=True, nan_policy="propagate", *, keepdims=False):
    _policy("skew", nan_policy)
    sample = _Sample("skew", _as_float(a), axis, keepdims)
    a, n = sample.a, sample.n
    if n == 0:
        return sample.nan(a.dtype)
    mean, (m2, m3) = _mean_and_moments(a, (2, 3))
    zero = m2 <= (np.finfo(a.dtype).eps * mean) ** 2
    vals = np.where(zero, np.nan, m3 / m2 ** 1.5)
    if not bias and n > 2:
        nval = ((n - 1.0) * n) ** 0.5 / (n - 2.0) * m3 / m2 ** 1.5
        vals = np.where(zero, vals, nval)
    return sample.finish(vals)


def kurtosis(a, axis=0, fisher=True, bias=True, nan_policy="propagate", *, keepdims=False):
    _policy("kurtosis", nan_policy)
    sample = _Sample("kurtosis", _as_float(a), axis, keepdims)
    a, n = sample.a, sample.n
    if n == 0:
        return sample.nan(a.dtype)
    mean, (m2, m4) = _mean_and_moments(a, (2, 4))
    zero = m2 <= (np.finfo(a.dtype).eps * mean) ** 2
    vals = np.where(zero, np.nan, m4 / m2 ** 2.0)
    if not bias and n > 3:
        nval = 1.0 / (n - 2) / (n - 3) * ((n ** 2 - 1.0) * m4 / m2 ** 2.0 - 3 * (n - 1) ** 2.0)
        vals = np.where(zero, vals, nval + 3.0)
    vals = vals - 3 if fisher else vals
    return sample.finish(vals)


def _concrete_order(order):
    if is_tracer(order) or numpy_ops._contains_tracer([order]):
        raise UnsupportedOperationError("scipy.stats.moment with a traced order",
                                        "Pass order as an int (or a list of ints) known when tracing. ")
    order = np.asarray(order)
    if order.size == 0 or order.ndim > 1:
        raise ValueError("`order` must be a scalar or a non-empty 1D array.")
    if np.any(order != np.round(order)):
        raise ValueError("All elements of `order` must be integral.")
    return order


def moment(a, order=1, axis=0, nan_policy="propagate", *, center=None, keepdims=False, **renamed):
    if "moment" in renamed:  # SciPy's old name of `order`
        order = renamed.pop("moment")
    if renamed:
        raise TypeError(f"moment() got an unexpected keyword argument {next(iter(renamed))!r}")
    _policy("moment", nan_policy)
    order = _concrete_order(order)
    sample = _Sample("moment", _as_float(a), axis, keepdims)
    a, dtype = sample.a, sample.a.dtype
    if center is not None:
        center = numpy_ops.asarray(center)
        center = sample.arrange(center if center.dtype == dtype else numpy_ops.astype(center, dtype))
    mean = None
    if center is None and np.any(order > 1) and sample.n > 0:
        mean = np.mean(a, axis=-1, keepdims=True)

    def one(k):
        k = int(k)
        if sample.n == 0:
            return sample.nan(dtype)
        if k == 0 or (k == 1 and center is None):  # constants, NaN for a sample with a NaN (SciPy's decorator)
            value = np.where(numpy_ops.sum(np.isnan(a), axis=-1) > 0, np.nan, 1.0 if k == 0 else 0.0)
            return sample.finish(numpy_ops.astype(numpy_ops.asarray(value), dtype))
        return sample.finish(_central_moment(a - (center if center is not None else mean), k))
    if order.ndim == 0:
        return one(order)
    return numpy_ops.stack([one(k) for k in order], axis=0)


def variation(a, axis=0, nan_policy="propagate", ddof=0, *, keepdims=False):
    _policy("variation", nan_policy)
    sample = _Sample("variation", a, axis, keepdims)
    a, n = sample.a, sample.n
    dtype = _float_dtype(a.dtype)
    if n == 0:
        return sample.nan(dtype)
    mean = np.mean(a, axis=-1)
    std = np.std(a, axis=-1)
    if ddof == n:
        result = np.where(std > 0, np.copysign(np.asarray(np.inf, dtype), mean), np.nan)
    else:
        correction = (np.asarray(n, a.dtype) / np.asarray(n - ddof, a.dtype)) ** 0.5
        result = std * correction / mean
    return sample.finish(result)


def sem(a, axis=0, ddof=1, nan_policy="propagate", *, keepdims=False):
    _policy("sem", nan_policy)
    sample = _Sample("sem", a, axis, keepdims)
    a, n = sample.a, sample.n
    if n <= 1:  # SciPy's decorator: too small a sample
        return sample.nan(_float_dtype(a.dtype))
    return sample.finish(np.std(a, axis=-1, ddof=ddof) / n ** 0.5)


def _weighted_mean(x, weights, sample):
    if weights is None:
        return np.mean(x, axis=-1)
    w = sample.arrange(_cast(weights, x.dtype))
    return numpy_ops.sum(x * w, axis=-1) / numpy_ops.sum(w, axis=-1)


def _cast(x, dtype):
    x = numpy_ops.asarray(x)
    return x if dtype is None or x.dtype == dtype else numpy_ops.astype(x, dtype)


def _means_setup(name, a, axis, dtype, weights, nan_policy, keepdims):
    _policy(name, nan_policy)
    a = _cast(a, dtype)
    if weights is not None:  # paired with a: broadcast together
        shape = tuple(np.broadcast_shapes(tuple(numpy_ops.shape_of(a)),
                                          tuple(numpy_ops.shape_of(numpy_ops.asarray(weights)))))
        a = numpy_ops.broadcast_to(a, shape) if tuple(numpy_ops.shape_of(a)) != shape else a
        weights = numpy_ops.broadcast_to(numpy_ops.asarray(weights), shape)
    return _Sample(name, a, axis, keepdims), weights


def gmean(a, axis=0, dtype=None, weights=None, *, nan_policy="propagate", keepdims=False):
    sample, weights = _means_setup("gmean", a, axis, dtype, weights, nan_policy, keepdims)
    log_a = np.log(_as_float(sample.a))
    if sample.n == 0:
        return sample.nan(log_a.dtype)
    return sample.finish(np.exp(_weighted_mean(log_a, weights, sample)))


def hmean(a, axis=0, dtype=None, *, weights=None, nan_policy="propagate", keepdims=False):
    sample, weights = _means_setup("hmean", a, axis, dtype, weights, nan_policy, keepdims)
    a = sample.a
    if sample.n == 0:
        return sample.nan(_float_dtype(a.dtype))
    a = np.where(a < 0, np.nan, a)  # SciPy: the harmonic mean of a sample with a negative value is NaN
    return sample.finish(1.0 / _weighted_mean(1.0 / a, weights, sample))


def zscore(a, axis=0, ddof=0, nan_policy="propagate"):
    _policy("zscore", nan_policy)
    a = _as_float(a)
    mean = np.mean(a, axis=axis, keepdims=True)
    d = a - mean
    var = np.mean(d * d, axis=axis, keepdims=True)
    if ddof != 0:
        n = a.size if axis is None else math.prod(
            numpy_ops.shape_of(a)[i] for i in ((axis,) if np.ndim(axis) == 0 else axis))
        var = var * (n / (n - ddof)) if n - ddof > 0 else var * np.nan
    std = var ** 0.5
    z = d / std
    return np.where(std <= np.abs(np.finfo(z.dtype).eps * mean), np.nan, z)


def entropy(pk, qk=None, base=None, axis=0, *, nan_policy="propagate", keepdims=False):
    if base is not None and base <= 0:
        raise ValueError("`base` must be a positive number or `None`.")
    _policy("entropy", nan_policy)
    pk = numpy_ops.asarray(pk)
    if qk is not None:
        qk = numpy_ops.asarray(qk)
        dtype = np.result_type(pk.dtype, qk.dtype)
        shape = tuple(np.broadcast_shapes(tuple(numpy_ops.shape_of(pk)), tuple(numpy_ops.shape_of(qk))))
        pk, qk = (numpy_ops.broadcast_to(_cast(x, dtype), shape) for x in (pk, qk))
    sample = _Sample("entropy", pk, axis, keepdims)
    pk = sample.a
    pk = pk / numpy_ops.sum(pk, axis=-1, keepdims=True)
    if qk is None:
        vec = P.entr_p(pk)
    else:
        qk = sample.arrange(qk)
        qk = qk / numpy_ops.sum(qk, axis=-1, keepdims=True)
        vec = scipy_ops._rel_entr(pk, qk)
    s = numpy_ops.sum(vec, axis=-1)
    if base is not None:
        s = s / math.log(base)
    return sample.finish(s)


# --- scipy.optimize -----------------------------------------------------------------------------
def rosen(x):
    """sum(100 (x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2) along axis 0, as SciPy's."""
    x = _as_float(x)
    return numpy_ops.sum(100.0 * (x[1:] - x[:-1] ** 2.0) ** 2.0 + (1 - x[:-1]) ** 2.0, axis=0, dtype=x.dtype)


def rosen_der(x):
    """SciPy's gradient of the Rosenbrock function, built by concatenation (no item assignment)."""
    x = _as_float(x)
    xm, xm_m1, xm_p1 = x[1:-1], x[:-2], x[2:]
    middle = 200 * (xm - xm_m1 ** 2) - 400 * (xm_p1 - xm ** 2) * xm - 2 * (1 - xm)
    first = -400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0])
    last = 200 * (x[-1] - x[-2] ** 2)
    return numpy_ops.concatenate([numpy_ops.expand_dims(first, 0), middle, numpy_ops.expand_dims(last, 0)], axis=0)


STATS = {"skew": skew, "kurtosis": kurtosis, "moment": moment, "variation": variation, "sem": sem,
         "gmean": gmean, "hmean": hmean, "zscore": zscore, "entropy": entropy}
linalg_ops.SCIPY_FUNCTIONS.update({("scipy.stats", name): builder for name, builder in STATS.items()})
linalg_ops.SCIPY_FUNCTIONS.update({("scipy.optimize", "rosen"): rosen, ("scipy.optimize", "rosen_der"): rosen_der})

__all__ = [*STATS, "rosen", "rosen_der"]
