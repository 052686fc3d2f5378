"""More NumPy (and scipy.signal) on traced values: jitad.frontend.numpy_extra, einsum's
ellipsis / broadcasting / many operands, integer % and //, and the generated coverage table.

Each row: forward value and dtype equal to NumPy's (or SciPy's), and derivatives to order 2
in both modes against finite differences. One grouped test compiles values and gradients of
many rows into one kernel and compares it with the reference executor.
"""
import numpy as np
import optree
import pytest
import scipy.signal

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
]


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
