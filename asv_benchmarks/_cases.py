"""The value-and-gradient cases of issue 3, each with its peers.

For every case: the NumPy function (what a user writes; jitad traces it and NumPy runs
it as the forward baseline), the same function for JAX, a hand-written Numba
value-and-gradient kernel (the speed jitad aims at), and the inputs. The hand-written
kernels use the flags jitad's generated kernels use (`error_model="numpy"`, no
fastmath), so the comparison is loop against loop. tests/test_bench_kernels.py checks
them against jitad's gradients.
"""
import numba
import numpy as np

from ._common import jax_timed, need_jax, rng, warmed

import jitad

njit = numba.njit(cache=True, error_model="numpy")


# --- the functions, written once for a NumPy-like module `xp` -----------------------------------
def elementwise(xp):
    def elementwise(x):
        return xp.sum(xp.sin(x) * x + xp.exp(-x * x) + xp.log1p(x * x))
    return elementwise


def rosenbrock(xp):
    def rosenbrock(x):
        return xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    return rosenbrock


def mlp(xp):
    def mlp_loss(params, inputs, targets):
        for W, b in params:
            outputs = inputs @ W + b
            inputs = xp.tanh(outputs)
        return xp.mean((outputs - targets) ** 2)
    return mlp_loss


def mds(xp):
    def mds_stress(W, D):
        return xp.sum((xp.sum((W[:, None, :] - W[None, :, :]) ** 2, -1) - D) ** 2)
    return mds_stress


# --- hand-written value-and-gradient kernels -----------------------------------------------------
@njit
def elementwise_vg(x):
    g = np.empty_like(x)
    f = 0.0
    for i in range(x.shape[0]):
        xi = x[i]
        s, c = np.sin(xi), np.cos(xi)
        x2 = xi * xi
        e = np.exp(-x2)
        f += s * xi + e + np.log1p(x2)
        g[i] = c * xi + s - 2.0 * xi * e + 2.0 * xi / (1.0 + x2)
    return f, g


@njit
def rosenbrock_vg(x):
    n = x.shape[0]
    g = np.empty_like(x)
    f = 0.0
    carry = 0.0  # d/dx[i] of the term i-1, 200 (x[i] - x[i-1]^2)
    for i in range(n - 1):
        xi = x[i]
        a = x[i + 1] - xi * xi
        b = 1.0 - xi
        f += 100.0 * a * a + b * b
        g[i] = carry - 400.0 * a * xi - 2.0 * b
        carry = 200.0 * a
    g[n - 1] = carry
    return f, g


@njit
def _tanh_bias_(Z, b):
    """Z <- tanh(Z + b) in place."""
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] = np.tanh(Z[i, j] + b[j])


@njit
def _tanh_backward_(dH, H):
    """dH <- dH * (1 - H^2) in place; returns the bias gradient (column sums)."""
    gb = np.zeros(dH.shape[1])
    for i in range(dH.shape[0]):
        for j in range(dH.shape[1]):
            d = dH[i, j] * (1.0 - H[i, j] * H[i, j])
            dH[i, j] = d
            gb[j] += d
    return gb


@njit
def mlp3_vg(W1, b1, W2, b2, W3, b3, X, T):
    """Loss and gradients of the three-layer MLP loss (the last layer's output is not squashed)."""
    H1 = np.dot(X, W1)
    _tanh_bias_(H1, b1)
    H2 = np.dot(H1, W2)
    _tanh_bias_(H2, b2)
    Z = np.dot(H2, W3)
    scale = 2.0 / Z.size
    dZ = np.empty_like(Z)
    gb3 = np.zeros(Z.shape[1])
    f = 0.0
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            r = Z[i, j] + b3[j] - T[i, j]
            f += r * r
            dZ[i, j] = scale * r
            gb3[j] += scale * r
    gW3 = np.dot(H2.T, dZ)
    dH2 = np.dot(dZ, W3.T)
    gb2 = _tanh_backward_(dH2, H2)
    gW2 = np.dot(H1.T, dH2)
    dH1 = np.dot(dH2, W2.T)
    gb1 = _tanh_backward_(dH1, H1)
    gW1 = np.dot(X.T, dH1)
    return f / Z.size, gW1, gb1, gW2, gb2, gW3, gb3


@njit
def mds_vg(W, D):
    """One pass over the N^2 pairs: r = |w_i - w_j|^2 - D_ij, f = sum r^2,
    df/dw_i += 4 r (w_i - w_j), df/dw_j -= 4 r (w_i - w_j). D need not be symmetric."""
    N, d = W.shape
    g = np.zeros_like(W)
    f = 0.0
    for i in range(N):
        for j in range(N):
            d2 = 0.0
            for k in range(d):
                t = W[i, k] - W[j, k]
                d2 += t * t
            r = d2 - D[i, j]
            f += r * r
            c = 4.0 * r
            for k in range(d):
                t = c * (W[i, k] - W[j, k])
                g[i, k] += t
                g[j, k] -= t
    return f, g


# --- cases ------------------------------------------------------------------------------------------
def _vector(n, seed=0):
    return (rng(seed).uniform(-1.5, 1.5, n),)


def mlp_args(batch=256, widths=(64, 256, 256, 10), seed=0):
    r = rng(seed)
    params = [(r.standard_normal((m, n)) / np.sqrt(m), 0.1 * r.standard_normal(n))
              for m, n in zip(widths, widths[1:])]
    return params, r.standard_normal((batch, widths[0])), r.standard_normal((batch, widths[-1]))


def mds_args(N=200, d=3, seed=0):
    r = rng(seed)
    W = r.standard_normal((N, d))
    P = r.standard_normal((N, d))
    D = np.sum((P[:, None, :] - P[None, :, :]) ** 2, -1)  # a realistic target: distances of another layout
    return W, D


def _flat_mlp(params, X, T):
    return [a for layer in params for a in layer] + [X, T]


def _mlp_kernel_tree(out):
    f, gW1, gb1, gW2, gb2, gW3, gb3 = out
    return f, [(gW1, gb1), (gW2, gb2), (gW3, gb3)]


class Case:
    """make(xp) -> function; args(size) -> arguments (size None: the benchmarked one);
    kernel(*kernel_args(*args)) -> (value, flat gradients); to_tree(kernel output) -> (value, gradient
    as jitad returns it)."""

    def __init__(self, make, args, kernel, kernel_args=lambda *a: a[:1], to_tree=lambda out: out):
        self.make, self.args, self.kernel = make, args, kernel
        self.kernel_args, self.to_tree = kernel_args, to_tree


CASES = {
    "elementwise_1e3": Case(elementwise, lambda n=None: _vector(n or 1000), elementwise_vg),
    "elementwise_1e6": Case(elementwise, lambda n=None: _vector(n or 10 ** 6), elementwise_vg),
    "rosenbrock_1e3": Case(rosenbrock, lambda n=None: _vector(n or 1000), rosenbrock_vg),
    "rosenbrock_1e6": Case(rosenbrock, lambda n=None: _vector(n or 10 ** 6), rosenbrock_vg),
    "mlp": Case(mlp, lambda batch=None: mlp_args(batch or 256), mlp3_vg, _flat_mlp, _mlp_kernel_tree),
    "mds": Case(mds, lambda N=None: mds_args(N or 200), mds_vg, lambda W, D: (W, D)),
}
# A second size for "a new size compiles nothing": (case, size) pairs.
RESIZED = {"elementwise_1e3": 1500, "rosenbrock_1e3": 1500, "mlp": 128, "mds": 150}

IMPLS = ["numpy_forward", "jitad_value_and_grad", "numba_handwritten", "jax_value_and_grad"]


def prepare(case_name, impl):
    """A no-argument callable running `impl` on the case, already warm (compiled, loaded).
    Raises NotImplementedError when the peer is missing (asv then skips it)."""
    case = CASES[case_name]
    args = case.args()
    if impl == "numpy_forward":
        return warmed(case.make(np), *args)
    if impl == "jitad_value_and_grad":
        return warmed(jitad.value_and_grad(case.make(np)), *args)
    if impl == "numba_handwritten":
        return warmed(case.kernel, *case.kernel_args(*args))
    if impl == "jax_value_and_grad":
        jax, jnp = need_jax()
        return jax_timed(jax.jit(jax.value_and_grad(case.make(jnp))), *args)
    raise ValueError(impl)
