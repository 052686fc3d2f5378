"""Gauss-Newton on a residual vector written as np.array([...]) of traced values, with the
Jacobian from jitad.jacobian (the scheduler picks the mode).

    python examples/gauss_newton.py
"""
import numpy as np

import jitad


def residuals(x):
    """Rosenbrock as a least-squares problem: r = (10 (x1 - x0^2), 1 - x0)."""
    return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def main(steps=10):
    J = jitad.jacobian(residuals)
    x = np.array([-1.2, 1.0])
    print("plan:", J.plan(x).mode)
    for step in range(steps):
        r, Jx = residuals(x), J(x)
        x = x - np.linalg.solve(Jx.T @ Jx, Jx.T @ r)
        print(f"step {step}: x = {x}, |r| = {np.linalg.norm(residuals(x)):.3e}")
    return x


if __name__ == "__main__":
    main()
