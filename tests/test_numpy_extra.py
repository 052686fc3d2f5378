"""More NumPy (and scipy.signal) on traced values: jitad.frontend.numpy_extra, einsum's
ellipsis / broadcasting / many operands, integer % and //, and the generated coverage table.

Each row: forward value and dtype equal to NumPy's (or SciPy's), and derivatives to order 2
in both modes against finite differences. One grouped test compiles values and gradients of
many rows into one kernel and compares it with the reference executor.
"""
import warnings

import numpy as np
import optree
import pytest
import scipy.integrate
import scipy.linalg
import scipy.signal
import scipy.special

import jitad
from jitad.errors import UnsupportedOperationError

pytestmark = pytest.mark.usefixtures("reference_backend")

rng = np.random.default_rng(11)
V = rng.uniform(-1.0, 1.0, 7)
W = rng.uniform(-1.0, 1.0, 4)
M = rng.uniform(-1.0, 1.0, (3, 5))
K = rng.uniform(-1.0, 1.0, (2, 3))
POS = rng.uniform(0.5, 2.0, 5)
XP = np.array([-1.0, -0.3, 0.2, 0.9, 1.5])
NANS = np.array([[np.nan, 0, 0, np.nan, 0], [0, 0, 0, 0, 0], [np.nan, np.nan, 0, 0, 0]])  # added to M


MASK = np.array([[True, False, True, True, False], [False, True, True, False, True], [True, True, False, True, True]])
ZEROS = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0])  # zeros at both ends and inside (a trim_zeros input)


def _with_nans(m):
    return m + NANS


# (name, function, arguments): each argument is differentiated to order 2 in both modes
ROWS = [
    ("linspace", lambda a, b: np.linspace(a, b, 6), (0.3, 1.7)),
    ("linspace_arrays_axis", lambda a, b: np.linspace(a, b, 4, axis=1), (V[:3], W[:3])),
    ("linspace_no_endpoint", lambda a, b: np.linspace(a, b, 5, endpoint=False), (0.3, 1.7)),
    ("linspace_retstep", lambda a, b: np.linspace(a, b, 5, retstep=True), (0.3, 1.7)),
    ("logspace", lambda a, b: np.logspace(a, b, 5), (0.1, 0.9)),
    ("logspace_base", lambda a, base: np.logspace(a, 1.0, 4, base=base), (0.1, 2.5)),
    ("geomspace", lambda a, b: np.geomspace(a, b, 5), (0.5, 3.0)),
    ("meshgrid", lambda a, b: np.meshgrid(a, b), (V[:3], W)),
    ("meshgrid_ij", lambda a, b: np.meshgrid(a, b, indexing="ij"), (V[:3], W)),
    ("gradient", lambda f: np.gradient(f), (V,)),
    ("gradient_spacing", lambda f, h: np.gradient(f, h), (V, 0.7)),
    ("gradient_edge2", lambda f: np.gradient(f, 0.5, edge_order=2), (V,)),
    ("gradient_coordinates", lambda f: np.gradient(f, np.cumsum(POS) ** 1.2, edge_order=2), (V[:5],)),
    ("gradient_coordinates_edge1", lambda f: np.gradient(f, np.cumsum(POS) ** 1.2), (V[:5],)),
    ("gradient_2d", lambda f: np.gradient(f), (M,)),
    ("gradient_2d_axis", lambda f: np.gradient(f, 0.3, axis=1, edge_order=2), (M,)),
    ("trapezoid", lambda y: np.trapezoid(y), (V,)),
    ("trapezoid_x", lambda y, x: np.trapezoid(y, x, axis=1), (M, np.cumsum(POS))),
    ("cumprod", lambda x: np.cumprod(x), (V,)),
    ("cumprod_axis", lambda x: np.cumprod(x, axis=0), (M,)),
    ("ediff1d", lambda x: np.ediff1d(x, to_begin=1.0, to_end=[2.0, 3.0]), (V,)),
    ("interp_x", lambda x: np.interp(x, XP, np.sin(XP)), (np.array([-1.3, -0.8, 0.05, 0.5, 1.2, 1.9]),)),
    ("interp_fp", lambda fp: np.interp(V, XP, fp), (np.cos(XP),)),
    ("interp_all", lambda x, xp, fp: np.interp(x, xp, fp, left=-2.0, right=3.0),
     (np.array([[-1.3, 0.05], [0.5, 1.9]]), XP, np.cos(XP))),
    ("quantile", lambda a: np.quantile(a, 0.3), (V,)),
    ("quantile_axis_many", lambda a: np.quantile(a, [0.1, 0.5, 0.95], axis=1), (M,)),
    ("percentile", lambda a: np.percentile(a, 40, axis=0, keepdims=True), (M,)),
    ("percentile_axes", lambda a: np.percentile(a, [25, 75], axis=(0, 1)), (M,)),
    ("percentile_midpoint", lambda a: np.percentile(a, 30, method="midpoint"), (V,)),
    ("percentile_lower", lambda a: np.percentile(a, 30, method="lower"), (V,)),
    ("percentile_nearest", lambda a: np.percentile(a, 60, method="nearest"), (V,)),
    ("nansum", lambda m: np.nansum(_with_nans(m), axis=1), (M,)),
    ("nanmean", lambda m: np.nanmean(_with_nans(m), axis=0), (M,)),
    ("nanmean_all", lambda m: np.nanmean(_with_nans(m)), (M,)),
    ("nanvar", lambda m: np.nanvar(_with_nans(m), axis=1, ddof=1), (M,)),
    ("nanstd", lambda m: np.nanstd(_with_nans(m), keepdims=True), (M,)),
    ("nanmax", lambda m: np.nanmax(_with_nans(m), axis=1), (M,)),
    ("nanmin", lambda m: np.nanmin(_with_nans(m), axis=0), (M,)),
    ("nanprod", lambda m: np.nanprod(_with_nans(m), axis=1), (M,)),
    ("nancumsum", lambda m: np.nancumsum(_with_nans(m), axis=1), (M,)),
    ("cov", lambda m: np.cov(m), (M,)),
    ("cov_rowvar", lambda m, y: np.cov(m, y, rowvar=False, ddof=0), (M.T, V[:5])),
    ("corrcoef", lambda m: np.corrcoef(m), (M,)),
    ("select", lambda x: np.select([x < -0.2, x > 0.5], [x ** 2, np.sin(x)], default=0.1 * x), (V,)),
    ("atleast_3d_dstack", lambda a, b: np.dstack([a, b]) * np.atleast_3d(a), (M, M[::-1])),
    ("block", lambda a, b: np.block([[a, b], [b, a]]), (K, K[:, ::-1])),
    ("convolve_full", lambda a, v: np.convolve(a, v), (V, W[:3])),
    ("convolve_same_swapped", lambda a, v: np.convolve(a, v, mode="same"), (W, V)),
    ("convolve_valid", lambda a, v: np.convolve(a, v, "valid"), (V, W)),
    ("correlate_valid", lambda a, v: np.correlate(a, v), (V, W)),
    ("correlate_same_even", lambda a, v: np.correlate(a, v, "same"), (V, W)),
    ("correlate_full_swapped", lambda a, v: np.correlate(a, v, "full"), (W, V)),
    ("correlate_same_swapped", lambda a, v: np.correlate(a, v, "same"), (W, V)),
    ("signal_convolve", lambda a, v: scipy.signal.convolve(a, v, method="direct"), (V, W)),
    ("signal_convolve_same_small", lambda a, v: scipy.signal.convolve(a, v, "same"), (W, V)),
    ("signal_correlate_2d", lambda a, v: scipy.signal.correlate(a, v, method="direct"), (M, K)),
    ("signal_correlate_2d_same", lambda a, v: scipy.signal.correlate(a, v, "same", method="direct"), (M, K)),
    ("signal_convolve_2d_valid", lambda a, v: scipy.signal.convolve(a, v, "valid", method="direct"), (M, K)),
    ("signal_correlate_valid_swapped", lambda a, v: scipy.signal.correlate(a, v, "valid"), (K, M)),
    ("convolve2d", lambda a, v: scipy.signal.convolve2d(a, v, mode="same"), (M, K)),
    ("correlate2d", lambda a, v: scipy.signal.correlate2d(a, v), (M, K)),
    ("r_", lambda x: np.r_[x, M[0], 1.5, x[:2]], (V,)),
    ("r_slice_and_directive", lambda x: np.r_["0,2", x, x], (M,)),
    ("r_range", lambda x: np.r_[x, 1:4], (V,)),
    ("c_", lambda x: np.c_[x, V[:5], x], (M[0],)),
    ("c_2d", lambda x: np.c_[x, M], (M,)),
    ("einsum_ellipsis", lambda a, b: np.einsum("...ij,...jk->...ik", a, b), (M.reshape(1, 3, 5), M.T.reshape(1, 5, 3))),
    ("einsum_ellipsis_implicit", lambda a: np.einsum("i...->...", a), (M,)),
    ("einsum_broadcast_size1", lambda a, w: np.einsum("mnd,mdo->mno", a, w),
     (V[:4].reshape(1, 4, 1), np.outer(V[:3], W[:2]).reshape(3, 1, 2))),
    ("einsum_three", lambda a, b, c: np.einsum("ij,jk,kl->il", a, b, c), (M, M.T, K.T)),
    ("einsum_four", lambda a, b, c, d: np.einsum("i,ij,jk,k->", a, b, c, d), (V[:3], M, M.T, V[:3])),
    ("einsum_trace_outer", lambda a, b: np.einsum("ii,j->j", a, b), (M[:, :3], V)),
    ("take", lambda a: np.take(a, [4, 0, 4], axis=1) + np.take(a, 7), (M,)),
    ("delete", lambda a: np.delete(a, [0, 3], axis=1) + np.delete(a, 1, axis=0)[:, 1:4].sum(), (M,)),
    ("insert", lambda a, v: np.insert(a, [1, 3, 3], v), (V, W[:3])),
    ("insert_scalar_axis", lambda a, v: np.insert(a, 2, v, axis=1), (M, V[:3])),
    ("diagflat", lambda v: np.diagflat(v, 1), (W,)),
    ("rollaxis_unstack", lambda a: np.rollaxis(a.reshape(3, 5, 1), 2)[0] * np.unstack(a, axis=1)[2][:, None], (M,)),
    ("splits", lambda a: np.hsplit(a, [2])[1].sum(axis=1, keepdims=True) * np.vsplit(a, 3)[1], (M,)),
    ("broadcast_arrays", lambda a, b: np.broadcast_arrays(a, b), (M[:, :1], W[:1])),
    ("cumulative_sum", lambda a: np.cumulative_sum(a, axis=1, include_initial=True), (M,)),
    ("cumulative_prod", lambda a: np.cumulative_prod(a), (V,)),
    ("polyval", lambda p, x: np.polyval(p, x), (W, M)),
    ("polyder_polyint", lambda p: np.polyval(np.polyder(p, 2), 0.7) + np.polyint(p), (V,)),
    ("polyadd_sub_mul", lambda a, b: np.polyadd(a, b) * np.polysub(b, a) + np.polymul(a, b)[:4], (W, W[:2])),
    ("vander", lambda x: np.vander(x, 4) + np.vander(x, 4, increasing=True), (V,)),
    ("polyfit", lambda x, y: np.polyfit(x, y, 2), (V, np.sin(3 * V))),
    ("polyfit_2d", lambda y: np.polyfit(V[:5], y, 1), (M.T,)),
    ("nanquantile", lambda m: np.nanquantile(_with_nans(m), [0.3, 0.8], axis=1), (M,)),
    ("nanpercentile", lambda m: np.nanpercentile(_with_nans(m), 40), (M,)),
    ("nanmedian", lambda m: np.nanmedian(_with_nans(m), axis=0, keepdims=True), (M,)),
    ("apply_along_axis", lambda a: np.apply_along_axis(lambda r: np.array([r.sum(), (r ** 2).max()]), 1, a), (M,)),
    ("apply_along_axis_0", lambda a: np.apply_along_axis(np.cumsum, 0, a), (M,)),
    ("angle", lambda a: np.angle(a) * a, (V,)),
    ("cond", lambda a: np.linalg.cond(a) + np.linalg.cond(a, "fro") + np.linalg.cond(a, -2), (M[:, :3] + 2 * np.eye(3),)),
    ("fftconvolve", lambda a, v: scipy.signal.fftconvolve(a, v, "same") + scipy.signal.oaconvolve(a, v, "same"), (M, K)),
    # present before this module, checked here with the rest of issue 11's list
    ("logaddexp2_deg2rad", lambda a, b: np.logaddexp2(a, b) + np.deg2rad(a) * np.rad2deg(b), (V, V[::-1])),
    ("append_flips", lambda a: np.append(np.flipud(a), np.fliplr(a)) + np.append(np.flip(a), np.rot90(a, 3)), (M,)),
    ("nan_to_num_heaviside_sinc", lambda a: np.nan_to_num(a + NANS) * np.heaviside(a - 0.1, 0.5) + np.sinc(a), (M,)),
    ("matrix_transpose_astype", lambda a: np.matrix_transpose(a) * np.astype(a, np.float64).T, (M,)),
    # issue 11's leftovers
    ("copysign", lambda a, b: np.copysign(a, b) + np.copysign(a, -1.0) * np.copysign(2.0, b), (V, V[::-1])),
    ("ldexp", lambda a: np.ldexp(a, np.array([1, -2, 3, 0, 5, -1, 2])) + np.ldexp(a, 3), (V,)),
    ("ldexp_float32", lambda a: np.ldexp(a, 2), (V.astype(np.float32),)),
    ("vecdot_matvec_vecmat", lambda a, v: (np.vecdot(a, v[:5]), np.vecdot(a, a, axis=0), np.matvec(a, v[:5]),
                                           np.vecmat(v[:3], a), np.linalg.vecdot(a, v[:5])), (M, V)),
    ("histogram_weights_edges", lambda a, w: (np.histogram(a, bins=4, weights=w), np.histogram(a, XP, weights=w)[0],
                                              np.histogram(a, bins=3, range=(-0.5, 0.5), weights=w, density=True)[0]),
     (V, 0.5 + np.abs(V[::-1]))),
    ("piecewise", lambda a: np.piecewise(a, [a < -0.3, a > 0.4], [lambda t: t ** 2, np.sin, 0.5]) +
     np.piecewise(a, a > 0, [lambda t, c: c * t, lambda t, c: -t], 3.0), (V,)),
    ("partition", lambda a: (np.partition(a, 2)[:, 2], np.sum(np.partition(a, 2)[:, :2], axis=1),
                             np.partition(a, [0, 2], axis=0)[[0, 2]], np.partition(a.ravel(), -3, axis=None)[-3],
                             a.ravel()[np.argpartition(a.ravel(), 4)[4]]), (M,)),
    ("unwrap", lambda p: np.unwrap(p), (np.cumsum(6.0 * V),)),
    ("unwrap_axis_period", lambda p: np.unwrap(p, period=3.0, axis=0) + np.unwrap(p, discont=2.5), (5.0 * M,)),
    ("contiguous_and_orders", lambda a: (np.ascontiguousarray(a.T), np.asfortranarray(a * 2.0).ravel("K"),
                                         a.ravel("F"), a.T.ravel("K"), a.reshape(5, 3, order="F"),
                                         np.ravel(a.T, order="A"), np.ascontiguousarray(a[0, 0])), (M,)),
    ("copyto_put_putmask_place", lambda a, v: _writers(a, v), (M, V)),
    # other gaps of published programs
    ("full_traced_fill", lambda a: _full_and_fill(a), (V,)),
    ("fill_diagonal_put_along_axis", lambda a, v: _fill_diagonal_put_along_axis(a, v), (M, V)),
    ("ufunc_outer_accumulate", lambda a, b: (np.subtract.outer(a, b), np.multiply.outer(a, b[:2]),
                                             np.multiply.accumulate(a), np.add.accumulate(b)), (V, W)),
    ("bincount_weights", lambda w: np.bincount(np.array([0, 1, 1, 4, 2, 1, 0]), weights=w, minlength=6), (V,)),
    ("resize_modf", lambda a: (np.resize(a, (3, 4)), np.modf(3.0 * a), np.resize(a[:2], 5)), (V,)),
    ("unravel_argmax_nanargmax", lambda a: (a[np.unravel_index(np.argmax(a), a.shape)],
                                            a[np.unravel_index(np.argmin(a), a.shape, order="F")],
                                            a[0, np.nanargmax(a[0] + NANS[0])] + a[2, np.nanargmin(a[2] + NANS[2])]),
     (M,)),
    # issue 11's leftovers, second round
    ("running_extremes", lambda a: (np.maximum.accumulate(a), np.minimum.accumulate(a, axis=1),
                                    np.maximum.accumulate(a.ravel()[::-1]), np.add.accumulate(a)), (M,)),
    ("reductions_where_initial", lambda a: (np.sum(a, axis=1, where=a > 0), np.prod(a, axis=0, where=MASK, initial=2.0),
                                            np.mean(a, axis=1, where=MASK), np.max(a, axis=1, initial=0.3),
                                            np.amin(a, axis=0, where=MASK, initial=0.5), a.max(initial=0.9),
                                            a.sum(where=MASK), np.min(a, initial=-0.2)), (M,)),
    ("frexp_nextafter", lambda a: (np.frexp(3.0 * a)[0], np.frexp(a)[0] * np.frexp(5.0 * a)[1],
                                   np.nextafter(a, 2.0), np.nextafter(a, a[::-1])), (V,)),
    ("histogram2d", lambda x, w: (np.histogram2d(x, x[::-1], bins=[3, 2], weights=w),
                                  np.histogram2d(x, w, bins=XP, weights=w * w, density=True)[0],
                                  np.histogram2d(x, x, bins=2, range=[(-0.5, 0.5), (-1.0, 1.0)], weights=w)[0]),
     (V, 0.5 + np.abs(V[::-1]))),
    ("trim_zeros", lambda a: (np.trim_zeros(a * ZEROS), np.trim_zeros(a * ZEROS, "b"),
                              np.trim_zeros(np.outer(a[:3] * ZEROS[1:4], a[2:6] * ZEROS[3:])),
                              np.trim_zeros(np.outer(a[:3] * ZEROS[1:4], a[2:6] * ZEROS[3:]), "f", axis=1)), (V,)),
    ("scipy_more", lambda a, b: (scipy.linalg.toeplitz(a), scipy.linalg.toeplitz(a[:2], b),
                                 scipy.linalg.block_diag(a, b[:, None]),
                                 scipy.special.comb(a + 5.0, b + 1.5), scipy.special.comb(4.0, b + 5.0),
                                 scipy.special.comb(a + 2.0, b + 1.0, repetition=True), scipy.special.factorial(a + b)),
     (V[:4], W)),
    ("scipy_integrate_trapezoid", lambda y, x: (scipy.integrate.trapezoid(y, x, axis=1),
                                                scipy.integrate.cumulative_trapezoid(y, x=x, axis=1, initial=0),
                                                scipy.integrate.cumulative_trapezoid(y, dx=0.5, axis=0)),
     (M, np.cumsum(POS))),
    ("special_more", lambda a, b: (scipy.special.beta(a + 1.5, b + 1.5), scipy.special.rel_entr(a + 1.0, b + 1.5),
                                   scipy.special.kl_div(a + 1.0, b + 1.5), scipy.special.boxcox(a + 1.5, b),
                                   scipy.special.boxcox(a + 1.5, 0.0), scipy.special.loggamma(a + 1.5),
                                   scipy.special.expm1(a), scipy.special.log1p(b), scipy.special.cbrt(a + 2.0),
                                   scipy.special.exp2(a), scipy.special.exp10(b)), (V[:4], W)),
]


def _full_and_fill(a):
    out = np.full(3, a[0])  # a traced fill value
    out[1] = a[1]
    return out, np.full_like(a, a[2]), np.full((2, 2), a[3], dtype=np.float64) * a[:2]


def _fill_diagonal_put_along_axis(a, v):
    b = np.zeros((4, 4))
    np.fill_diagonal(b, v[:2])  # repeated
    c = a * 1.0
    np.fill_diagonal(c, v[5])
    np.put_along_axis(c, np.array([[0], [4], [2]]), v[:3, None], axis=1)
    np.put_along_axis(c, np.argmax(a, axis=0)[None, :], v[None, :5] * 2.0, axis=0)  # traced indices
    return b, c


def _writers(a, v):
    out = np.zeros((3, 5))
    np.copyto(out, a)
    np.copyto(out, v[:5], where=a > 0)
    np.put(out, [0, 7, 14, 7], v[:3] * 2.0)  # 4 indices, 3 values: cycled; the last 7 wins
    np.put(out, np.argmax(a, axis=1) + np.array([0, 5, 10]), v[4:])  # at traced positions
    np.putmask(out, out < -0.5, v)  # the values follow the flat positions, cycled
    b = a * 1.0
    np.place(b, M > 0.3, v[:2])  # a concrete mask: the values in order, cycled
    np.place(b, b < -0.6, v[0])  # a traced mask: one value
    return out, b

# integer-valued functions: values and dtypes only (they have no derivative)
INTEGER_ROWS = [
    ("argmax", lambda a: np.argmax(a, axis=1)), ("argmax_all", lambda a: np.argmax(a)),
    ("argmin_keepdims", lambda a: np.argmin(a, axis=0, keepdims=True)),
    ("argmax_ties_and_nan", lambda a: np.argmax(np.where(a > 0.2, 0.2, a) + np.array([0, 0, 0, np.nan, 0]), axis=1)),
    ("count_nonzero", lambda a: np.count_nonzero(a > 0, axis=0)), ("count_nonzero_all", lambda a: np.count_nonzero(a)),
    ("searchsorted", lambda a: np.searchsorted(XP, a)), ("searchsorted_right", lambda a: np.searchsorted(XP, a, "right")),
    ("digitize", lambda a: np.digitize(a, XP)), ("digitize_decreasing", lambda a: np.digitize(a, XP[::-1], right=True)),
    ("fix", lambda a: np.fix(3 * a)),
    ("isin", lambda a: np.isin(a, [0.3, -0.2, 0.5])), ("isin_invert", lambda a: np.isin(a, XP, invert=True)),
    ("matrix_rank", lambda a: np.linalg.matrix_rank(a)),
    ("matrix_rank_deficient", lambda a: np.linalg.matrix_rank(np.outer(a[0], a[1]))),
    ("matrix_rank_tol", lambda a: np.linalg.matrix_rank(a, tol=0.5)),
    ("histogram", lambda a: np.histogram(a, bins=4)[0]), ("histogram_edges", lambda a: np.histogram(a, XP)[0]),
    ("histogram_range", lambda a: np.histogram(a, bins=5, range=(-0.5, 0.5))[0]),
    ("histogram_equal_values", lambda a: np.histogram(0.0 * a + 0.2, bins=2)[0]),
    ("argpartition_kth", lambda a: np.take_along_axis(a, np.argpartition(a, 3, axis=1), 1)[:, 3]),
    ("signbit", lambda a: np.signbit(np.concatenate([a[0], -0.0 * a[1], 0.0 * a[1]]))),
    ("unravel_index", lambda a: np.unravel_index(np.argmax(a, axis=1) + 5, (3, 2, 3))),
    ("lexsort", lambda a: np.lexsort((a[0], a[1], np.round(a[2])))),
    ("lexsort_2d", lambda a: np.lexsort(a[:2], axis=0)),
    ("frexp_exponent", lambda a: np.frexp(a)[1]), ("running_max_int", lambda a: np.maximum.accumulate(np.round(8 * a)
                                                                                                        .astype(int))),
    ("histogram2d_counts", lambda a: np.histogram2d(a[0], a[1], bins=3)[0]),
]


@pytest.mark.parametrize("name, fun", INTEGER_ROWS, ids=[r[0] for r in INTEGER_ROWS])
def test_integer_valued(name, fun):
    a = np.round(M, 1)  # ties and values equal to the bins
    expected, got = fun(a), jitad.jit(fun)(a)
    assert np.asarray(got).dtype == np.asarray(expected).dtype and np.shape(got) == np.shape(expected)
    np.testing.assert_array_equal(got, expected)


def _leaves(tree):
    return optree.tree_leaves(tree, none_is_leaf=False)


@pytest.mark.parametrize("name, fun, args", ROWS, ids=[r[0] for r in ROWS])
def test_values_and_derivatives(name, fun, args):
    expected = fun(*args)
    got = jitad.jit(fun)(*args)
    assert optree.tree_structure(got) == optree.tree_structure(expected), name
    for g, e in zip(_leaves(got), _leaves(expected)):
        assert np.asarray(g).dtype == np.asarray(e).dtype, (name, np.asarray(g).dtype, np.asarray(e).dtype)
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-13, err_msg=name)
    jitad.check_grads(fun, args, order=2, modes=("fwd", "rev"))


def test_lstsq_values_and_derivatives():
    a, b = rng.uniform(-1.0, 1.0, (6, 3)), rng.uniform(-1.0, 1.0, (6, 2))
    for args in [(a, b), (a, b[:, 0]), (a.T[:, :4], b[:3, 0])]:
        expected, got = np.linalg.lstsq(*args), jitad.jit(np.linalg.lstsq)(*args)
        for g, e in zip(got, expected):
            assert np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
        jitad.check_grads(lambda a, b: np.linalg.lstsq(a, b, rcond=None)[0], args, order=2, modes=("fwd", "rev"))
    jitad.check_grads(lambda a, b: np.linalg.lstsq(a, b)[1], (a, b), order=1, modes=("fwd", "rev"))
    # a rank-deficient a: NumPy's residuals are empty, a traced a cannot know in advance: NaN, not a wrong number
    deficient = np.ones((5, 2))
    residuals, rank = jitad.jit(lambda a: np.linalg.lstsq(a, np.arange(5.0))[1:3])(deficient)
    assert np.isnan(residuals).all() and rank == 1


def test_integer_floor_divide_and_remainder_stay_integers():
    x = np.array([-7.5, -3.0, 0.0, 2.0, 5.5, 9.0])
    divisors = np.array([3, -2, 1, 0, 5, 4])
    funs = [lambda x: x.astype(np.int64) % 4, lambda x: x.astype(np.int64) // 4,
            lambda x: x.astype(np.int32) // np.int32(3), lambda x: np.floor_divide(x.astype(np.int16), 3),
            lambda x: x.astype(np.int64) % divisors, lambda x: x.astype(np.int64) // divisors,  # // 0 and % 0 give 0
            lambda x: 17 % x.astype(np.int64), lambda x: divmod(x.astype(np.int64), 3), lambda x: x % 4, lambda x: x // 2.5]
    for fun in funs:
        with np.errstate(all="ignore"):
            expected, got = fun(x), jitad.jit(fun)(x)
        for e, g in zip(np.atleast_1d(expected) if not isinstance(expected, tuple) else expected,
                        np.atleast_1d(got) if not isinstance(got, tuple) else got):
            assert np.asarray(g).dtype == np.asarray(e).dtype
            np.testing.assert_array_equal(g, e)
    jitad.check_grads(lambda x: x * (x.astype(np.int64) % 3), (x + 0.25,), order=2, modes=("fwd", "rev"))
    # an integer value carries no derivative (it was x + int(x) in reverse mode: the cast passed it through)
    np.testing.assert_array_equal(jitad.grad(lambda x: np.sum(x.astype(np.int64) * x))(x + 0.25), [-7, -2, 0, 2, 5, 9])
    np.testing.assert_array_equal(jitad.jvp(lambda x: x.astype(np.int64) * x, (x + 0.25,), (np.ones(6),))[1],
                                  [-7, -2, 0, 2, 5, 9])


def test_unsupported_options_are_errors():
    x = np.linspace(0.5, 1.5, 5)
    cases = [
        (lambda x: np.percentile(x, 30, method="hazen"), UnsupportedOperationError, "method='hazen'"),
        (lambda x: np.quantile(x, x[0]), UnsupportedOperationError, "q traced"),
        (lambda x: np.interp(x, [0.0, 1.0], [1.0, 2.0], period=x[0]), UnsupportedOperationError, "period"),
        (lambda x: np.interp(x, [0.0, 1.0], [1.0, 2.0], period=0.0), ValueError, "non-zero"),
        (lambda x: np.gradient(x, x), UnsupportedOperationError, "coordinate arrays traced"),
        (lambda x: scipy.signal.convolve2d(x.reshape(1, 5), np.ones((1, 2)), boundary="wrap"),
         UnsupportedOperationError, "boundary='wrap'"),
        (lambda x: np.gradient(x[:2], edge_order=2), ValueError, "too small"),
        (lambda x: np.einsum("ij,jk", x[:4].reshape(2, 2), np.ones((3, 3))), jitad.ShapeError, "broadcast"),
    ]
    for fun, error, match in cases:
        with pytest.raises(error, match=match):
            jitad.grad(lambda x: np.sum(fun(x)))(x)


def test_histogram_and_nanargmax_of_values_numpy_refuses_raise_like_numpy():
    """NumPy raises on these values; jitad reads them through a guard and raises the same error."""
    bad = np.array([0.5, np.nan, 1.0])
    for transform in (jitad.jit(lambda a: np.histogram(a, bins=3)[0]),
                      jitad.grad(lambda a: np.sum(np.histogram(a, bins=3, weights=a)[0]))):
        with pytest.raises(ValueError, match="not finite"):
            transform(bad)
    with pytest.raises(ValueError, match="All-NaN"):
        jitad.jit(lambda a: np.nanargmax(a, axis=1))(np.array([[np.nan, np.nan], [1.0, 2.0]]))
    good = jitad.jit(lambda a: np.histogram(a, bins=3)[0])
    np.testing.assert_array_equal(good(np.array([0.5, 0.2, 1.0])), [1, 1, 1])


def test_nan_reductions_of_all_nan_and_too_few_values_are_nan_like_numpy():
    m = np.array([[np.nan, np.nan, np.nan], [1.0, np.nan, 2.0], [np.nan, 3.0, np.nan]])
    funs = [lambda m: np.nanmax(m, axis=1), lambda m: np.nanmin(m, axis=1), lambda m: np.nanmean(m, axis=1),
            lambda m: np.nanvar(m, axis=1, ddof=1), lambda m: np.nanstd(m, axis=1), lambda m: np.nansum(m, axis=1),
            lambda m: np.percentile(m, 50, axis=1)]
    for fun in funs:
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning) if fun is not funs[5] and fun is not funs[6] \
                else _nothing():
            expected = fun(m)
        np.testing.assert_array_equal(jitad.jit(fun)(m), expected)
    # the NaN entries get no cotangent; the others get the derivative of the reduction of the rest
    g = jitad.grad(lambda m: np.sum(np.nanmean(m, axis=1)[1:]))(m)
    np.testing.assert_array_equal(g, [[0, 0, 0], [0.5, 0, 0.5], [0, 1, 0]])


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_r_and_c_are_put_back_after_tracing():
    index_tricks = type(np.r_).__mro__[1]
    before = index_tricks.__getitem__
    jitad.jit(lambda x: np.r_[x, x])(np.ones(2))
    assert index_tricks.__getitem__ is before
    np.testing.assert_array_equal(np.r_[np.ones(2), 0:3], [1.0, 1.0, 0.0, 1.0, 2.0])


# --- compiled == reference: one kernel of values and reverse-mode gradient for many functions -------------
XP4 = np.array([-2.0, -0.5, 0.5, 2.0])
NAN34 = np.array([[0.0, np.nan, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [np.nan, 0.0, np.nan, 0.0]])


def extra_group(x, y):
    xn = x + NAN34
    return {
        "linspace": np.linspace(y[0], y[1], 5), "logspace": np.logspace(y[0], y[1], 4),
        "gradient": np.gradient(x, np.array([0.0, 0.5, 1.2, 2.0]), axis=1, edge_order=2), "gradient1": np.gradient(y),
        "interp": np.interp(2.0 * x[0] - 0.8, XP4, y), "quantile": np.quantile(x, [0.2, 0.7], axis=1),
        "nanmean": np.nanmean(xn, axis=0), "nanstd": np.nanstd(xn, axis=1), "nanmax": np.nanmax(xn, axis=1),
        "convolve": np.convolve(x[0], y[:3], "same"), "correlate2d": scipy.signal.correlate(x, x[:2, :2]),
        "cumprod": np.cumprod(y), "einsum": np.einsum("ij,j,kj->ik", x, y, x), "r_": np.r_[y, x[0]],
        "c_": np.c_[y, y], "cov": np.cov(x), "int_mod": x * ((10.0 * x).astype(np.int64) % 3),
        "lstsq": np.linalg.lstsq(x.T, y)[0], "polyval": np.polyval(y, x), "nanmedian": np.nanmedian(xn, axis=1),
        "insert": np.insert(y, [1, 3], x[0, :2]), "argmax": x[0] * np.argmax(x, axis=0),
        "searchsorted": y * np.searchsorted(XP4, 4.0 * y - 2.0), "vander": np.vander(y, 3),
        "copysign_ldexp": np.copysign(x, y - 0.5) + np.ldexp(x, 2), "unwrap": np.unwrap(8.0 * x, axis=0),
        "histogram": np.histogram(x, bins=3, weights=x)[0], "ravel_f": x.ravel("F"),
        # (the other new functions are compositions of primitives compiled here and in tests/test_compiled.py)
        "running": np.maximum.accumulate(x, axis=1) + np.minimum.accumulate(x),
        "trim_zeros": np.trim_zeros(y * np.array([0., 1, 1, 0])),  # its guards, checked in the kernel
    }


def test_compiled_matches_reference():
    gx = np.random.default_rng(1).uniform(0.2, 0.9, (3, 4))
    gy = np.random.default_rng(2).uniform(0.2, 0.9, (4,))
    out = extra_group(gx, gy)
    ct = {k: np.random.default_rng(3).standard_normal(np.shape(v)) for k, v in out.items()}

    def weighted(x, y):
        values = extra_group(x, y)
        return sum(np.sum(v * ct[k]) for k, v in values.items()), values

    results = {}
    for backend in ("numba", "reference"):
        jitad.config.backend = backend
        results[backend] = jitad.value_and_grad(weighted, argnums=(0, 1), has_aux=True)(gx, gy)
    compiled, reference = results["numba"], results["reference"]
    for path, a, b in zip(optree.tree_paths(compiled), optree.tree_leaves(compiled), optree.tree_leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"compiled vs reference at {path}")
    for name, value in out.items():
        np.testing.assert_allclose(compiled[0][1][name], value, rtol=1e-12, atol=1e-13, err_msg=f"{name}: NumPy's")


# --- the generated coverage table ----------------------------------------------------------------------
def test_readme_coverage_table_is_the_generated_one():
    from jitad.tools import coverage
    section = coverage.readme_section(coverage.readme_path().read_text())
    assert section is not None, "README.md lost its <!-- coverage:start --> ... <!-- coverage:end --> markers"
    assert section == coverage.table(), "README.md's coverage table is stale: run `python -m jitad coverage --write`"


def test_coverage_table_follows_the_registry(monkeypatch, tmp_path, capsys):
    from jitad.__main__ import main
    from jitad.frontend import numpy_ops
    from jitad.tools import coverage
    before, count = coverage.table(), coverage.count()
    assert "`interp`" in before and "`r_`" in before and "`scipy.signal`" in before and "`norm.logpdf`" in before
    assert "`nonzero`" in before and "`unique`" in before  # read from the values, guarded
    monkeypatch.setitem(numpy_ops.FUNCTIONS, np.histogramdd, lambda p, *_: p)  # a new registration changes the table
    after = coverage.table()
    assert after != before and "`histogramdd`" in after and coverage.count() == count + 1
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{coverage.START}\nold\n{coverage.END}\nrest\n")
    assert coverage.write_readme(readme) and coverage.readme_section(readme.read_text()) == after
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("rest\n")
    assert not coverage.write_readme(readme)
    assert main(["coverage"]) == 0 and capsys.readouterr().out == after


def test_array_methods_of_the_new_functions():
    a = np.round(M, 1)
    funs = [lambda a: a.argmax(axis=1), lambda a: a.argmin(), lambda a: a.argsort(axis=0), lambda a: a.cumprod(axis=1),
            lambda a: a.repeat(2, axis=0), lambda a: a.take([4, 0], axis=1)]
    for fun in funs:
        expected, got = fun(a), jitad.jit(fun)(a)
        assert np.asarray(got).dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-13)
    jitad.check_grads(lambda a: a.cumprod(axis=0) * a.take([1, 2], axis=1).repeat(2, axis=1)[:, :1], (M,), order=2)


def test_scipy_stats_chi2():
    import scipy.stats as st
    x = np.array([0.0, 0.3, 1.7, 4.0, -1.0])
    for df in (1.0, 2.0, 4.0, 3.3):
        for fun in (lambda x, df: st.chi2.logpdf(x, df), lambda x, df: st.chi2.pdf(x, df, scale=1.5)):
            with np.errstate(all="ignore"):
                np.testing.assert_allclose(jitad.jit(fun)(x, df), fun(x, df), rtol=1e-13)
    jitad.check_grads(lambda x, df, scale: st.chi2.logpdf(x, df, scale=scale), (POS, 3.3, 1.4), order=2)


def test_pad_modes_that_repeat_entries():
    """edge, reflect, symmetric and wrap: a gather per axis, its indices NumPy's own padding of arange(n)."""
    for mode in ("edge", "reflect", "symmetric", "wrap"):
        for width in (1, (1, 2), ((2, 0), (1, 3)), ((0, 0), (5, 2))):
            fun = lambda x: np.pad(x, width, mode=mode)  # noqa: E731
            expected, got = fun(M), jitad.jit(fun)(M)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)
        jitad.check_grads(lambda x: np.pad(x, ((2, 1), (3, 2)), mode=mode), (M,), order=2, modes=("fwd", "rev"))
    with pytest.raises(UnsupportedOperationError, match="mode='mean'"):
        jitad.jit(lambda x: np.pad(x, 1, mode="mean"))(M)


def test_cross_of_two_vectors_is_numpys():
    """2-vectors (deprecated in NumPy 2, which warns; so does jitad): a missing z is 0, and two
    2-vectors give the z component only."""
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    weights = np.arange(9.0).reshape(3, 3)
    funs = [lambda a: np.sum(np.cross(a[:, :2], b[:, :2]) ** 2), lambda a: np.sum(np.cross(a[:, :2], b) * weights),
            lambda a: np.sum(np.cross(a, b[0, :2]) * weights)]
    for fun in funs:
        with pytest.warns(DeprecationWarning, match="2-dimensional vectors"):
            expected = fun(a)
        with pytest.warns(DeprecationWarning, match="2-dimensional vectors"):
            value, grad = jitad.value_and_grad(fun)(a)
        assert value == pytest.approx(expected, rel=1e-13)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            jitad.check_grads(fun, (a,), order=2)
    with pytest.raises(jitad.ShapeError, match="dimension must be 2 or 3"):
        jitad.grad(lambda a: np.sum(np.cross(a, a)))(np.ones(4))


@pytest.mark.parametrize("shape", [(2, 1), (1, 2), (2, 2), (4, 2), (3, 4), (3, 3)])
def test_correlate2d_same_centres_as_scipy(shape):
    """Fuzz finding (issue 11's templates): scipy.signal.correlate2d(mode='same') with a kernel of an even
    size crops the full correlation at shape // 2, not at (shape - 1) // 2 as scipy.signal.correlate does:
    jitad gave correlate's window, silently wrong values. Now SciPy's, both operands differentiating."""
    x = rng.uniform(-1.0, 1.0, (3, 5))
    v = rng.uniform(-1.0, 1.0, shape)

    def f(x, v):
        return scipy.signal.correlate2d(x, v, mode="same")
    np.testing.assert_allclose(jitad.jit(f)(x, v), f(x, v), rtol=1e-13, atol=1e-15)
    jitad.check_grads(f, (x, v), modes=("fwd", "rev"))


def test_delete_of_an_empty_list_deletes_nothing():
    """Fuzz finding (issue 11's templates): np.delete(x, []) is a copy of x in NumPy (an empty list counts as
    integer positions); jitad raised IndexError ('arrays used as indices must be of integer type'). An
    empty float array stays NumPy's IndexError."""
    x = M
    for f in (lambda x: np.delete(x, []), lambda x: np.delete(x, [], axis=1), lambda x: np.delete(x, ())):
        np.testing.assert_array_equal(jitad.jit(f)(x), f(x))
        np.testing.assert_array_equal(jitad.grad(lambda x: np.sum(f(x) ** 2))(x), 2.0 * x)
    with pytest.raises(IndexError):
        jitad.jit(lambda x: np.delete(x, np.array([])))(x)


def test_valid_correlation_of_an_empty_operand_is_scipys_zeros():
    """Fuzz finding (recent profile seed 307): scipy.signal.correlate2d/convolve2d/correlate/convolve in mode
    'valid' with an empty operand give zeros of shape |n - m| + 1 in SciPy ((1, 0) against (1, 1): (1, 2));
    jitad's crop of the empty full correlation gave shape (1, 0)."""
    a, k = np.zeros((1, 0)), np.array([[-0.9]])
    for fn in (scipy.signal.correlate2d, scipy.signal.convolve2d, scipy.signal.correlate, scipy.signal.convolve):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # (SciPy's own, choosing a method for empty input)
            want = fn(a, k, mode="valid")
        got = jitad.jit(lambda a, k: fn(a, k, mode="valid"))(a, k)
        assert got.shape == want.shape == (1, 2)
        np.testing.assert_array_equal(got, want)
        ga, gk = jitad.grad(lambda a, k: np.sum(fn(a, k, mode="valid")), argnums=(0, 1))(a, k)
        assert ga.shape == (1, 0) and np.array_equal(gk, [[0.0]])


def test_polymul_drops_leading_zeros_as_numpy_or_says_it_cannot():
    """NumPy's polymul makes each operand a poly1d, which drops leading zero coefficients: the full
    convolution jitad gave had another length ([0, 0, 0.36] for NumPy's [0.36]; fuzzer, recent
    profile seed 323232). A constant operand is trimmed as NumPy does; a traced one with a zero
    leading coefficient is an UnsupportedOperationError (also at a later call, through its guard)."""
    f = jitad.jit(lambda a, b: np.polymul(a, b))
    a, b = np.array([1.0, 2.0]), np.array([3.0, 0.5])
    np.testing.assert_array_equal(f(a, b), np.polymul(a, b))
    with pytest.raises(jitad.UnsupportedOperationError, match="leading coefficient is 0.*np.convolve"):
        f(np.array([0.0, 0.6]), b)
    with pytest.raises(jitad.UnsupportedOperationError, match="leading coefficient is 0"):
        jitad.jit(lambda a: np.polymul(a, a))(np.array([0.0, 0.6]))
    constant = np.array([0.0, 0.0, 2.0])
    h = jitad.jit(lambda a: np.polymul(a, constant))
    np.testing.assert_array_equal(h(a), np.polymul(a, constant))
    jitad.check_grads(lambda a: np.polymul(a, constant), (a,), order=2)


def test_interp_with_a_period_is_numpys():
    """np.interp(..., period=) was an UnsupportedOperationError (the fuzz helper, new profile seed 575757):
    NumPy wraps x and xp into one period and pads one point from each neighbouring period."""
    x = np.array([-180.0, -170.0, -185.0, 185.0, -10.0, -5.0, 0.0, 365.0]) + 0.3
    xp, fp = np.array([190.0, -190.0, 350.0, -350.0]), np.array([5.0, 10.0, 3.0, 4.0])

    def f(x, xp, fp):
        return np.interp(x, xp, fp, period=-360)
    np.testing.assert_allclose(jitad.jit(f)(x, xp, fp), f(x, xp, fp), rtol=1e-14)
    g = jitad.grad(lambda x, xp, fp: np.sum(f(x, xp, fp) ** 2), argnums=(0, 1, 2))(x, xp, fp)
    eps = 1e-6
    for k, v in enumerate((x, xp, fp)):
        fd = []
        for e in np.eye(v.size):
            args_p, args_m = [x, xp, fp], [x, xp, fp]
            args_p[k], args_m[k] = v + eps * e, v - eps * e
            fd.append((np.sum(f(*args_p) ** 2) - np.sum(f(*args_m) ** 2)) / (2 * eps))
        np.testing.assert_allclose(g[k], fd, rtol=1e-6, atol=1e-6)
