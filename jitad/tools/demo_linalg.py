"""Linear-algebra lecture examples for `python -m jitad demo`: (title, run) with run() -> (ad, analytic)."""
import numpy as np

import jitad

def registrar(examples):
    """A decorator factory: `@example(title)` appends (title, run) to `examples`."""
    def example(title):
        def register(run):
            examples.append((title, run))
            return run
        return register
    return example


EXAMPLES = []
example = registrar(EXAMPLES)


_rng = np.random.default_rng(1)


def _well_conditioned(n):
    return _rng.standard_normal((n, n)) + n * np.eye(n)


@example("f(X) = tr(A X^-1 B);  grad = -X^-T A^T B^T X^-T")
def _trace_of_inverse():
    A, X, B = _rng.standard_normal((3, 4)), _well_conditioned(4), _rng.standard_normal((4, 3))
    Xit = np.linalg.inv(X).T
    return jitad.grad(lambda X: np.trace(A @ np.linalg.inv(X) @ B))(X), -Xit @ A.T @ B.T @ Xit


@example("g(x) = ||x||^3 / 3;  Hessian = x x^T / ||x|| + ||x|| I")
def _cubed_norm_hessian():
    x = _rng.standard_normal(4)
    n = np.linalg.norm(x)
    return jitad.hessian(lambda x: np.linalg.norm(x) ** 3 / 3.0)(x), np.outer(x, x) / n + n * np.eye(4)


@example("x = solve(A, b), L = ||x - t||^2 / 2;  dL/dA = -A^-T (dL/dx) x^T, dL/db = A^-T dL/dx")
def _through_solve():
    A, b, t = _well_conditioned(4), _rng.standard_normal(4), _rng.standard_normal(4)
    x = np.linalg.solve(A, b)
    gb = np.linalg.solve(A.T, x - t)
    loss = lambda A, b: 0.5 * np.sum((np.linalg.solve(A, b) - t) ** 2)  # noqa: E731
    return jitad.grad(loss, argnums=(0, 1))(A, b), (-np.outer(gb, x), gb)


def _nuclear(shape):
    W = _rng.standard_normal(shape)
    U, _, Vh = np.linalg.svd(W, full_matrices=False)
    return jitad.grad(lambda W: np.sum(np.linalg.svd(W, compute_uv=False)))(W), U @ Vh


@example("R(W) = tr(Sigma), W = U Sigma V^T tall (5 x 3);  dR/dW = U V^T")
def _nuclear_tall():
    return _nuclear((5, 3))


@example("R(W) = tr(Sigma), W = U Sigma V^T wide (3 x 5);  dR/dW = U V^T")
def _nuclear_wide():
    return _nuclear((3, 5))


@example("f(X) = det X;  grad = det(X) X^-T")
def _det():
    X = _well_conditioned(4)
    return jitad.grad(np.linalg.det)(X), np.linalg.det(X) * np.linalg.inv(X).T


@example("f(X) = log|det X| via slogdet;  grad = X^-T")
def _logdet():
    X = _well_conditioned(4) * np.array([1.0, -1.0, 1.0, 1.0])  # a negative determinant
    return jitad.grad(lambda X: np.linalg.slogdet(X)[1])(X), np.linalg.inv(X).T
