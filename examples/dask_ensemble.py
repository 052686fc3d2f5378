"""Past one machine with jitad.dask: an ensemble of small neural nets trained with `map_grad`, and
a data-parallel least-squares fit with `grad_sum` inside `scipy.optimize.minimize`.

    pip install "jitad[dask]"
    python examples/dask_ensemble.py                     # a LocalCluster on this machine
    python examples/dask_ensemble.py tcp://scheduler:8786  # a running cluster (dask-jobqueue,
                                                         # Kubernetes, `dask scheduler` + `dask worker`)

On a cluster, the workers need jitad installed and this script importable (or they receive its
functions by value, as here), and `jitad.dask.setup(client, cache_dir=...)` can name a disk cache
on a shared file system so every kernel is compiled once in all.
"""
import sys

import numpy as np
import scipy.optimize

import jitad.dask


def mlp_loss(params, inputs, targets):
    for W, b in params:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return np.mean((outputs - targets) ** 2)


def least_squares(w, X, y):
    return np.mean((X @ w - y) ** 2)


def train_ensemble(client, members=8, steps=100, lr=0.3, widths=(2, 16, 16, 1), seed=0):
    """`members` nets from different initial weights, each trained by gradient descent on the same
    data; each step computes all members' gradients with one map_grad call (one task per worker)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (256, widths[0]))
    Y = np.sin(3 * X[:, :1]) * np.cos(2 * X[:, 1:2])
    ensemble = [[(rng.standard_normal((m, n)) / np.sqrt(m), np.zeros(n)) for m, n in zip(widths[:-1], widths[1:])]
                for _ in range(members)]
    first = [mlp_loss(p, X, Y) for p in ensemble]
    for step in range(steps):
        grads = jitad.dask.map_grad(mlp_loss, ensemble, X, Y, client=client)
        ensemble = [[(W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(params, g)]
                    for params, g in zip(ensemble, grads)]
    final = [mlp_loss(p, X, Y) for p in ensemble]
    prediction = np.mean([_predict(p, X) for p in ensemble], axis=0)
    print(f"ensemble of {members}: losses {np.mean(first):.4f} -> {np.mean(final):.4f} (mean of members), "
          f"{np.mean((prediction - Y) ** 2):.4f} (the ensemble's mean prediction)")
    return first, final


def _predict(params, inputs):
    for W, b in params:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return outputs


def fit_least_squares(client, chunks=8, rows=500, features=5, seed=1):
    """min_w mean((X w - y)^2) over data held in `chunks` pieces on the workers: each evaluation is
    one grad_sum (a task per chunk, added by a tree reduction)."""
    rng = np.random.default_rng(seed)
    w_true = rng.standard_normal(features)
    pieces = []
    for _ in range(chunks):
        X = rng.standard_normal((rows, features))
        pieces.append((X, X @ w_true + 0.1 * rng.standard_normal(rows)))
    on_workers = client.scatter(pieces)  # sent once; each evaluation refers to them
    result = scipy.optimize.minimize(
        lambda w: jitad.dask.grad_sum(least_squares, w, on_workers, client=client, reduce="mean", value=True),
        np.zeros(features), jac=True, method="BFGS", options={"gtol": 1e-10})
    X_all = np.concatenate([X for X, _ in pieces])
    y_all = np.concatenate([y for _, y in pieces])
    exact = np.linalg.lstsq(X_all, y_all, rcond=None)[0]
    print(f"least squares over {chunks} x {rows} rows: {result.nit} iterations, "
          f"|w - lstsq| = {np.max(np.abs(result.x - exact)):.2e}")
    return result.x, exact


def main(client=None, members=8, steps=100, chunks=8):
    if client is None:
        client = jitad.dask.local_client()
    print(f"workers: {len(client.scheduler_info()['workers'])}")
    ensemble = train_ensemble(client, members=members, steps=steps)
    fit = fit_least_squares(client, chunks=chunks)
    return ensemble, fit


if __name__ == "__main__":  # a LocalCluster starts worker processes: keep the script's work under this guard
    if len(sys.argv) > 1:
        import distributed
        main(distributed.Client(sys.argv[1]))
    else:
        main()
