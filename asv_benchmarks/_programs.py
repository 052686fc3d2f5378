"""Real programs as users write them (issue 10): Python loops over time steps, layers and
mixture components, written once for a NumPy-like module `xp` (NumPy for jitad, autograd's
wrapped NumPy, jax.numpy), with their inputs.

Each entry of PROGRAMS: name -> (make(xp) -> loss, args(seed) -> tuple of NumPy inputs).
The loss is differentiated in its first argument (a pytree of parameters).
"""
import math

import numpy as np


def rnn(steps):
    """A tanh RNN, hidden 16, batch 32, inputs of width 8, `steps` steps of a Python loop."""
    def make(xp):
        def rnn_loss(params, xs, ys):
            Wx, Wh, b, Wo = params
            h = xp.zeros((xs.shape[1], Wh.shape[0]))
            for t in range(xs.shape[0]):
                h = xp.tanh(xs[t] @ Wx + h @ Wh + b)
            return xp.mean((h @ Wo - ys) ** 2)
        return rnn_loss

    def args(seed=0):
        r = np.random.default_rng(seed)
        params = (r.normal(size=(8, 16)) * 0.3, r.normal(size=(16, 16)) * 0.3, r.normal(size=16) * 0.1,
                  r.normal(size=(16, 1)) * 0.3)
        return params, r.normal(size=(steps, 32, 8)), r.normal(size=(32, 1))
    return make, args


def lstm(steps, layers=2, hidden=14):
    """A stacked LSTM language-model-style loss: `layers` layers, `steps` steps, batch 16."""
    def make(xp):
        def sigmoid(x):
            return 0.5 * (xp.tanh(0.5 * x) + 1.0)

        def lstm_loss(params, xs, ys):
            inputs = [xs[t] for t in range(xs.shape[0])]
            for W, U, b in params["layers"]:
                n = U.shape[0]
                h = xp.zeros((xs.shape[1], n))
                c = xp.zeros((xs.shape[1], n))
                outputs = []
                for x in inputs:
                    z = x @ W + h @ U + b
                    gate_i, gate_f = sigmoid(z[:, :n]), sigmoid(z[:, n:2 * n])
                    gate_o, cand = sigmoid(z[:, 2 * n:3 * n]), xp.tanh(z[:, 3 * n:])
                    c = gate_f * c + gate_i * cand
                    h = gate_o * xp.tanh(c)
                    outputs.append(h)
                inputs = outputs
            return xp.mean((inputs[-1] @ params["out"] - ys) ** 2)
        return lstm_loss

    def args(seed=0):
        r = np.random.default_rng(seed)
        width, stack = 10, []
        for _ in range(layers):
            stack.append((r.normal(size=(width, 4 * hidden)) * 0.2, r.normal(size=(hidden, 4 * hidden)) * 0.2,
                          r.normal(size=4 * hidden) * 0.1))
            width = hidden
        params = {"layers": stack, "out": r.normal(size=(hidden, 1)) * 0.3}
        return params, r.normal(size=(steps, 16, 10)), r.normal(size=(16, 1))
    return make, args


def gmm(components=25, n=2000, d=2):
    """Negative log-likelihood of a diagonal Gaussian mixture, a Python loop over components."""
    def make(xp):
        def gmm_nll(params, X):
            means, log_sds, logits = params
            top = xp.max(logits)
            log_w = logits - (top + xp.log(xp.sum(xp.exp(logits - top))))
            columns = []
            for j in range(means.shape[0]):
                z = (X - means[j]) / xp.exp(log_sds[j])
                columns.append(log_w[j] - 0.5 * xp.sum(z ** 2, axis=1) - xp.sum(log_sds[j])
                               - 0.5 * X.shape[1] * math.log(2 * math.pi))
            L = xp.stack(columns, axis=1)
            m = xp.max(L, axis=1, keepdims=True)
            return -xp.sum(m[:, 0] + xp.log(xp.sum(xp.exp(L - m), axis=1)))
        return gmm_nll

    def args(seed=0):
        r = np.random.default_rng(seed)
        params = (r.normal(size=(components, d)) * 2.0, r.normal(size=(components, d)) * 0.1,
                  r.normal(size=components) * 0.1)
        return params, r.normal(size=(n, d)) * 2.0
    return make, args


def logistic_regression():
    """autograd's README example: logistic regression on four points."""
    def make(xp):
        def sigmoid(x):
            return 0.5 * (xp.tanh(x / 2.0) + 1)

        def training_loss(weights, inputs, targets):
            preds = sigmoid(xp.dot(inputs, weights))
            label_probabilities = preds * targets + (1 - preds) * (1 - targets)
            return -xp.sum(xp.log(label_probabilities))
        return training_loss

    def args(seed=0):
        inputs = np.array([[0.52, 1.12, 0.77], [0.88, -1.08, 0.15], [0.52, 0.06, -1.30], [0.74, -2.49, 1.39]])
        return np.array([0.0, 0.0, 0.0]), inputs, np.array([True, True, False, True]) * 1.0
    return make, args


def mlp():
    """The MLP of the steady-state benchmarks: layers [64, 256, 256, 10], batch 128."""
    def make(xp):
        def mlp_loss(params, inputs, targets):
            for W, b in params:
                outputs = inputs @ W + b
                inputs = xp.tanh(outputs)
            return xp.mean((outputs - targets) ** 2)
        return mlp_loss

    def args(seed=0):
        r = np.random.default_rng(seed)
        sizes = [64, 256, 256, 10]
        params = [(r.normal(size=(m, n)) / np.sqrt(m), r.normal(size=n) * 0.1) for m, n in zip(sizes[:-1], sizes[1:])]
        return params, r.normal(size=(128, 64)), r.normal(size=(128, 10))
    return make, args


PROGRAMS = {
    "logreg": logistic_regression(),
    "mlp": mlp(),
    "rnn_T5": rnn(5),
    "rnn_T10": rnn(10),
    "rnn_T100": rnn(100),
    "rnn_T1000": rnn(1000),
    "lstm_T8": lstm(8),
    "lstm_T64": lstm(64),
    "gmm_k25": gmm(25),
}
