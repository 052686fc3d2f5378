"""Hutchinson's estimator tr(H) = E[v^T H v] from Hessian-vector products only, for several
seeds, against the exact trace (the lectures' running-estimate experiment).

    python examples/hutchinson.py
"""
import numpy as np

import jitad


def f(x):
    return np.sum(np.exp(0.5 * x) * x ** 2) + 0.5 * np.sum(x[1:] * x[:-1])


def main(n=50, samples=(10, 100, 1000), seeds=(0, 1, 2)):
    x = np.linspace(-1, 1, n)
    exact = np.trace(jitad.hessian(f)(x))
    print(f"exact tr(H) = {exact:.4f}")
    for num in samples:
        estimates = [jitad.hutchinson_trace(f, x, num_samples=num, seed=s, return_stderr=True) for s in seeds]
        text = ", ".join(f"{e:.3f} ± {se:.3f}" for e, se in estimates)
        print(f"{num:5d} samples: {text}")
    return exact, estimates


if __name__ == "__main__":
    main()
