"""Train the lectures' feed-forward net with jitad.value_and_grad on a list of (W, b) layers.

    python examples/mlp_training.py
"""
import numpy as np

import jitad


def loss(params, inputs, targets):
    for W, b in params:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return np.mean((outputs - targets) ** 2)


def main(widths=(2, 32, 32, 1), steps=300, lr=0.1, seed=0):
    rng = np.random.default_rng(seed)
    params = [(rng.standard_normal((m, n)) / np.sqrt(m), np.zeros(n)) for m, n in zip(widths[:-1], widths[1:])]
    X = rng.uniform(-1, 1, (256, widths[0]))
    Y = np.sin(3 * X[:, :1]) * np.cos(2 * X[:, 1:2])
    value_and_grad = jitad.value_and_grad(loss)
    first = None
    for step in range(steps):
        value, grads = value_and_grad(params, X, Y)  # grads: the same list of (W, b) tuples
        first = value if first is None else first
        params = [(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, grads)]
        if step % 100 == 0:
            print(f"step {step:4d}  loss {value:.5f}")
    final = loss(params, X, Y)
    print(f"loss {first:.5f} -> {final:.5f}")
    return first, final


if __name__ == "__main__":
    main()
