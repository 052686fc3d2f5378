"""The vectorisable exp / expm1 / tanh that fused inner loops use agree with NumPy to a few ulp,
with NumPy's overflow, underflow, signed-zero and NaN behaviour."""
import numba
import numpy as np
import pytest

from jitad.backend import kernels as K

rng = np.random.default_rng(0)
X = np.concatenate([
    rng.uniform(-750, 750, 20000), rng.uniform(-30, 30, 20000), rng.uniform(-1e-3, 1e-3, 2000),
    rng.uniform(-1e-12, 1e-12, 200),
    [0.0, -0.0, np.inf, -np.inf, np.nan, 709.78, 709.79, -745.13, -745.14, -708.5, 1e-300, -40.0, -40.1, 20.0,
     20.1, 709.6, -709.6]])


def _loop(f):
    @numba.njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])
    return loop


@pytest.mark.parametrize("fast, reference", [(K.fexp, np.exp), (K.fexpm1, np.expm1), (K.ftanh, np.tanh)],
                         ids=["exp", "expm1", "tanh"])
def test_matches_numpy(fast, reference):
    out = np.empty_like(X)
    _loop(fast)(X, out)
    with np.errstate(all="ignore"):
        expected = reference(X)
    finite = np.isfinite(expected) & (np.abs(expected) > 1e-300)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=2e-15, atol=0)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(out[np.isinf(expected)], expected[np.isinf(expected)])
    tiny = ~finite & np.isfinite(expected)
    np.testing.assert_allclose(out[tiny], expected[tiny], rtol=0, atol=1e-300)
