"""Fit a damped oscillator's parameters to noisy data: scipy.integrate.odeint inside the loss,
scipy.optimize.minimize with the exact gradient from jitad.grad (the adjoint method).

    python examples/ode_fit.py

x'' = -k x - c x' with x(0) = x0, x'(0) = 0. The loss is the squared distance of the solution's
positions from the measured ones; jitad differentiates through the ODE solve in k, c and x0.
"""
import numpy as np
import scipy.integrate
import scipy.optimize

import jitad

TRUE = np.array([4.0, 0.5, 1.5])  # stiffness k, damping c, initial position x0


def positions(params, ts):
    k, c, x0 = params[0], params[1], params[2]
    y0 = np.array([x0, 0.0])  # [position, velocity]
    ys = scipy.integrate.odeint(lambda y, t: np.array([y[1], -k * y[0] - c * y[1]]), y0, ts, rtol=1e-9, atol=1e-9)
    return ys[:, 0]


def main(points=30, noise=0.02, seed=0):
    ts = np.linspace(0.0, 6.0, points)
    rng = np.random.default_rng(seed)
    data = positions(TRUE, ts) + noise * rng.standard_normal(points)

    def loss(params):
        return np.sum((positions(params, ts) - data) ** 2)

    start = np.array([2.0, 1.0, 1.0])
    result = scipy.optimize.minimize(loss, start, jac=jitad.grad(loss), method="BFGS")
    print(f"true   k, c, x0 = {TRUE}")
    print(f"fitted k, c, x0 = {np.round(result.x, 4)} after {result.nit} iterations "
          f"({result.njev} gradients), loss {result.fun:.4g}: {result.message}")
    return result.x


if __name__ == "__main__":
    main()
