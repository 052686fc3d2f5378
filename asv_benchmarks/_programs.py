"""Real programs as users write them (issues 10 and 11): Python loops over time steps, layers
and mixture components, SciPy's statistics functions, in-place writes; written once for a
NumPy-like module `xp` (NumPy for jitad, autograd's wrapped NumPy, jax.numpy), with their inputs.

Each entry of PROGRAMS: name -> (make(xp, sp) -> loss, args(seed) -> tuple of NumPy inputs).
`sp` is the library's SciPy (`scipy_shim(lib)`: `logsumexp`, `mvn_logpdf`, and `lib`, the
library's name); for jitad it is SciPy itself, so jitad runs the program exactly as a NumPy
user wrote it. `loss_for(name, lib)` builds one program for "numpy" (jitad), "autograd" or "jax".
The loss is differentiated in its first argument (a pytree of parameters).
"""
import math
import types

import numpy as np
import scipy.special
import scipy.stats


def _scipy_logsumexp(*args, **kwargs):
    return scipy.special.logsumexp(*args, **kwargs)


def _scipy_mvn_logpdf(*args, **kwargs):
    return scipy.stats.multivariate_normal.logpdf(*args, **kwargs)


def scipy_shim(lib):
    """The SciPy functions the programs call, from `lib` ("numpy", "autograd" or "jax").

    For jitad the functions look SciPy's up on the module at call time
    (`scipy.special.logsumexp(...)`), as user code does: jitad dispatches SciPy calls it
    implements when they are looked up while tracing (or bound by `from scipy.special import
    logsumexp` in the traced function's module); a SciPy function or bound method stored on an
    object before tracing (`ns.lse = scipy.special.logsumexp`) is SciPy's own and fails on traced
    values with a clear UnsupportedOperationError."""
    if lib == "numpy":
        return types.SimpleNamespace(lib=lib, logsumexp=_scipy_logsumexp, mvn_logpdf=_scipy_mvn_logpdf)
    if lib == "autograd":
        import autograd.scipy.special
        import autograd.scipy.stats.multivariate_normal
        return types.SimpleNamespace(lib=lib, logsumexp=autograd.scipy.special.logsumexp,
                                     mvn_logpdf=autograd.scipy.stats.multivariate_normal.logpdf)
    if lib == "jax":
        import jax.scipy.special
        import jax.scipy.stats
        return types.SimpleNamespace(lib=lib, logsumexp=jax.scipy.special.logsumexp,
                                     mvn_logpdf=jax.scipy.stats.multivariate_normal.logpdf)
    raise ValueError(f"unknown library {lib!r}: expected 'numpy', 'autograd' or 'jax'")


def numpy_module(lib):
    """The NumPy-like module of `lib` (float64 enabled for JAX)."""
    if lib == "numpy":
        return np
    if lib == "autograd":
        import autograd.numpy
        return autograd.numpy
    if lib == "jax":
        import jax
        import jax.numpy
        jax.config.update("jax_enable_x64", True)
        return jax.numpy
    raise ValueError(f"unknown library {lib!r}: expected 'numpy', 'autograd' or 'jax'")


def loss_for(name, lib, programs=None):
    """The loss of program `name` written against `lib`'s NumPy and SciPy."""
    make, _ = (PROGRAMS if programs is None else programs)[name]
    return make(numpy_module(lib), scipy_shim(lib))


def rnn(steps):
    """A tanh RNN, hidden 16, batch 32, inputs of width 8, `steps` steps of a Python loop."""
    def make(xp, sp=None):
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
    def make(xp, sp=None):
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
    def make(xp, sp=None):
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
    def make(xp, sp=None):
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
    def make(xp, sp=None):
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


def gp(n=500):
    """The log marginal likelihood of a Gaussian process with a squared-exponential
    kernel (traced log length scale, log amplitude, log noise), n 1-D inputs, through
    `scipy.stats.multivariate_normal.logpdf(y, mean, K)` (a Cholesky of the n x n K)."""
    def make(xp, sp):
        def gp_log_marginal(params, X, y):
            length = xp.exp(params[0])
            amplitude = xp.exp(params[1])
            noise = xp.exp(params[2])
            sq = xp.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=2)
            K = amplitude ** 2 * xp.exp(-0.5 * sq / length ** 2) + (noise ** 2 + 1e-6) * xp.eye(X.shape[0])
            return sp.mvn_logpdf(y, xp.zeros(X.shape[0]), K)
        return gp_log_marginal

    def args(seed=0):
        r = np.random.default_rng(seed)
        X = np.sort(r.uniform(-3.0, 3.0, size=(n, 1)), axis=0)
        y = np.sin(2.0 * X[:, 0]) + 0.1 * r.normal(size=n)
        return np.array([np.log(0.7), np.log(1.2), np.log(0.2)]), X, y
    return make, args


def gmm_logsumexp(components=25, n=10000, d=2):
    """Negative log-likelihood of a diagonal Gaussian mixture, vectorised over components,
    with `scipy.special.logsumexp` for the mixture weights and over components per point."""
    def make(xp, sp):
        def gmm_nll_lse(params, X):
            means, log_sds, logits = params
            log_w = logits - sp.logsumexp(logits)
            z = (X[:, None, :] - means[None, :, :]) / xp.exp(log_sds)[None, :, :]
            L = (log_w[None, :] - 0.5 * xp.sum(z ** 2, axis=2) - xp.sum(log_sds, axis=1)[None, :]
                 - 0.5 * X.shape[1] * math.log(2 * math.pi))
            return -xp.sum(sp.logsumexp(L, axis=1))
        return gmm_nll_lse

    def args(seed=0):
        r = np.random.default_rng(seed)
        params = (r.normal(size=(components, d)) * 2.0, r.normal(size=(components, d)) * 0.1,
                  r.normal(size=components) * 0.1)
        return params, r.normal(size=(n, d)) * 2.0
    return make, args


def inplace_fill(n=10000):
    """`bench_inplace.py`'s loop: fill an output array with in-place writes, n steps of a Python
    loop. jitad and autograd get the NumPy spelling (`out[i] = ...`; autograd cannot
    differentiate it and says so); JAX needs the functional `out = out.at[i].set(...)`."""
    def make(xp, sp):
        if sp is not None and sp.lib == "jax":
            def fill_functional(x):
                out = xp.zeros(x.shape[0])
                for i in range(x.shape[0]):
                    out = out.at[i].set(xp.sin(x[i]) * x[i - 1])
                return xp.sum(out ** 2)
            return fill_functional

        def fill(x):
            out = xp.zeros(x.shape[0])
            for i in range(x.shape[0]):
                out[i] = xp.sin(x[i]) * x[i - 1]
            return xp.sum(out ** 2)
        return fill

    def args(seed=0):
        return (np.random.default_rng(seed).standard_normal(n),)
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
    "gp_n500": gp(500),
    "gmm_logsumexp": gmm_logsumexp(25, 10000, 2),
    "inplace_n1000": inplace_fill(1000),
    "inplace_n10000": inplace_fill(10000),
}
