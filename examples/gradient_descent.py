"""Gradient descent with jitad's exact gradient against zero-order descent with the
two-point estimator G = d (L(w + eps v) - L(w - eps v)) / (2 eps) v (the lectures' comparison).

    python examples/gradient_descent.py
"""
import numpy as np

import jitad


def loss(w, A, b):
    """A least-squares loss 1/2 ||A w - b||^2."""
    r = A @ w - b
    return 0.5 * np.sum(r ** 2)


def main(d=20, steps=300, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((2 * d, d)) / np.sqrt(d)
    b = rng.standard_normal(2 * d)
    lr = 1.0 / np.linalg.norm(A, 2) ** 2
    grad = jitad.grad(loss)
    w_exact = np.zeros(d)
    w_zero = np.zeros(d)
    eps = 1e-4
    for _ in range(steps):
        w_exact = w_exact - lr * grad(w_exact, A, b)
        v = rng.standard_normal(d)
        v /= np.linalg.norm(v)  # a random direction on the unit sphere
        estimate = d * (loss(w_zero + eps * v, A, b) - loss(w_zero - eps * v, A, b)) / (2 * eps) * v
        w_zero = w_zero - lr / d * estimate  # the estimator's variance needs a step d times smaller
    optimum = loss(np.linalg.lstsq(A, b, rcond=None)[0], A, b)
    gap_exact = loss(w_exact, A, b) - optimum
    gap_zero = loss(w_zero, A, b) - optimum
    print(f"after {steps} steps in dimension {d}: loss - optimum = {gap_exact:.3e} with the exact gradient, "
          f"{gap_zero:.3e} with the two-point zero-order estimator")
    return gap_exact, gap_zero


if __name__ == "__main__":
    main()
