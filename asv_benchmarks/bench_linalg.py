"""Issue 5: gradients through np.linalg against their forward passes. Skipped while jitad
does not support the np.linalg function (an UnsupportedOperationError when tracing)."""
import numpy as np
import scipy.linalg

from ._common import jax_timed, need_jax, rng, warmed

import jitad


def _supported(fun, *args):
    """Trace and run `fun` once; NotImplementedError (asv: skipped) if jitad lacks an op."""
    try:
        fun(*args)
    except jitad.UnsupportedOperationError as error:
        raise NotImplementedError(str(error)) from error


# --- f(X) = tr(A X^-1 B), n = 200 ------------------------------------------------------------------
def trace_inv(xp):
    def trace_inv(X, A, B):
        return xp.trace(A @ xp.linalg.inv(X) @ B)
    return trace_inv


def trace_inv_handwritten(X, A, B):
    """The lecture's closed form: value and gradient -X^-T A^T B^T X^-T from one inverse."""
    Xi = np.linalg.inv(X)
    AXi = A @ Xi
    return np.trace(AXi @ B), -(Xi @ B @ AXi).T


def _trace_inv_args(n=200):
    r = rng(5)
    return r.standard_normal((n, n)) + n ** 0.5 * np.eye(n), r.standard_normal((n, n)), r.standard_normal((n, n))


def prepare_trace_inv(impl):
    X, A, B = _trace_inv_args()
    f = trace_inv(np)
    if impl == "numpy_forward":
        return warmed(f, X, A, B)
    if impl == "numpy_handwritten":
        return warmed(trace_inv_handwritten, X, A, B)
    if impl == "jax_grad":
        jax, jnp = need_jax()
        return jax_timed(jax.jit(jax.grad(trace_inv(jnp))), X, A, B)
    transform = {"jitad_grad": jitad.grad, "jitad_value_and_grad": jitad.value_and_grad}[impl]
    g = transform(lambda X: f(X, A, B))
    _supported(g, X)
    return warmed(g, X)


# --- L(A, b) = 0.5 |solve(A, b)|^2, n = 500 ----------------------------------------------------------
def solve_loss(xp):
    def solve_loss(A, b):
        x = xp.linalg.solve(A, b)
        return 0.5 * xp.sum(x * x)
    return solve_loss


def solve_loss_handwritten(A, b):
    """One LU factorisation: x = A^-1 b, gb = A^-T x, gA = -gb x^T."""
    lu = scipy.linalg.lu_factor(A, check_finite=False)
    x = scipy.linalg.lu_solve(lu, b, check_finite=False)
    gb = scipy.linalg.lu_solve(lu, x, trans=1, check_finite=False)
    return 0.5 * (x @ x), (-np.outer(gb, x), gb)


def _solve_args(n=500):
    r = rng(6)
    return r.standard_normal((n, n)) + n ** 0.5 * np.eye(n), r.standard_normal(n)


def prepare_solve(impl):
    A, b = _solve_args()
    if impl == "numpy_solve":
        return warmed(np.linalg.solve, A, b)
    if impl == "numpy_forward":
        return warmed(solve_loss(np), A, b)
    if impl == "scipy_handwritten":
        return warmed(solve_loss_handwritten, A, b)
    if impl == "jax_grad":
        jax, jnp = need_jax()
        return jax_timed(jax.jit(jax.grad(solve_loss(jnp), argnums=(0, 1))), A, b)
    transform = {"jitad_grad": jitad.grad, "jitad_value_and_grad": jitad.value_and_grad}[impl]
    g = transform(solve_loss(np), argnums=(0, 1))
    _supported(g, A, b)
    return warmed(g, A, b)


class TraceInverseGrad:
    """Gradient of tr(A X^-1 B) at n = 200 against its forward pass (target: within 3x)."""
    params = ["numpy_forward", "jitad_grad", "jitad_value_and_grad", "numpy_handwritten", "jax_grad"]
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl):
        self.call = prepare_trace_inv(impl)

    def time_trace_inverse(self, impl):
        self.call()


class SolveGrad:
    """Gradient of 0.5 |A^-1 b|^2 w.r.t. (A, b) at n = 500 against one np.linalg.solve
    (target: within 2.5x, which needs the LU factors reused by the adjoint)."""
    params = ["numpy_solve", "numpy_forward", "jitad_grad", "jitad_value_and_grad", "scipy_handwritten", "jax_grad"]
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl):
        self.call = prepare_solve(impl)

    def time_solve(self, impl):
        self.call()
