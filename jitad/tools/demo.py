"""`python -m jitad demo`: the lecture examples, each AD result beside its closed form.

`EXAMPLES` is a list of `(title, run)`; `run()` returns `(ad, analytic)`, two values of
the same structure (a number, an array, or a tuple/list/dict of them). The demo prints
both and their error, the largest absolute difference over all entries. The
linear-algebra examples of `jitad.tools.demo_linalg` are appended at the end.
"""
import math
import sys

import numpy as np

import jitad

from jitad.tools import demo_linalg
from jitad.pytrees import tree_flatten, tree_leaves

EXAMPLES = []
example = demo_linalg.registrar(EXAMPLES)


_rng = np.random.default_rng(0)
A, B = _rng.standard_normal((3, 3)), _rng.standard_normal((3, 2))
b, c, x0 = _rng.standard_normal(3), _rng.standard_normal(3), _rng.standard_normal(3)


# --- scalar functions, traced by hand in the lectures -------------------------------------------
@example("f(x1, x2) = x1 x2 + sin x1 at (2, 5);  grad = (x2 + cos x1, x1)")
def _product_and_sine():
    grad = jitad.grad(lambda x1, x2: x1 * x2 + np.sin(x1), argnums=(0, 1))(2.0, 5.0)
    return grad, (5.0 + math.cos(2.0), 2.0)


@example("L(w1, w2) = w2 log w1 + sqrt(w2 log w1) at (2, 5)")
def _log_and_root():
    w1, w2 = 2.0, 5.0
    grad = jitad.grad(lambda w1, w2: w2 * np.log(w1) + np.sqrt(w2 * np.log(w1)), argnums=(0, 1))(w1, w2)
    s = math.sqrt(w2 * math.log(w1))
    return grad, (w2 / w1 * (1 + 0.5 / s), math.log(w1) * (1 + 0.5 / s))


@example("f(x1, x2) = cos^2(x1 + x2^3) at (0.3, 0.7);  grad = -sin(2u) (1, 3 x2^2), u = x1 + x2^3")
def _cos_squared():
    x1, x2 = 0.3, 0.7
    grad = jitad.grad(lambda x1, x2: np.cos(x1 + x2 ** 3) ** 2, argnums=(0, 1))(x1, x2)
    u = x1 + x2 ** 3
    return grad, (-math.sin(2 * u), -math.sin(2 * u) * 3 * x2 ** 2)


@example("tanh x = (1 - e^-2x) / (1 + e^-2x) at 0.5: first and second derivative (grad of grad)")
def _tanh():
    def tanh(x):
        e = np.exp(-2.0 * x)
        return (1.0 - e) / (1.0 + e)
    t = math.tanh(0.5)
    return (jitad.grad(tanh)(0.5), jitad.grad(jitad.grad(tanh))(0.5)), (1 - t * t, -2 * t * (1 - t * t))


@example("directional derivative d^T grad f against central differences (f(x+eps d) - f(x-eps d)) / 2 eps")
def _central_difference():
    f = lambda x: np.sum(np.sin(x) * np.exp(-x ** 2))  # noqa: E731
    d, eps = _rng.standard_normal(3), 1e-6
    return float(d @ jitad.grad(f)(x0)), (f(x0 + eps * d) - f(x0 - eps * d)) / (2 * eps)


# --- matrix calculus ---------------------------------------------------------------------------
@example("f(x) = c^T x;  grad = c")
def _linear():
    return jitad.grad(lambda x: c @ x)(x0), c


@example("f(x) = 1/2 x^T A x + b^T x;  grad = (A + A^T) x / 2 + b")
def _quadratic():
    return jitad.grad(lambda x: 0.5 * x @ A @ x + b @ x)(x0), 0.5 * (A + A.T) @ x0 + b


@example("f(x) = ||A x - b||^2;  grad = 2 A^T (A x - b)")
def _least_squares():
    return jitad.grad(lambda x: np.sum((A @ x - b) ** 2))(x0), 2 * A.T @ (A @ x0 - b)


@example("f(X) = tr(A X B);  grad = A^T B^T")
def _trace():
    A2, X, B2 = _rng.standard_normal((2, 3)), _rng.standard_normal((3, 4)), _rng.standard_normal((4, 2))
    return jitad.grad(lambda X: np.trace(A2 @ X @ B2))(X), A2.T @ B2.T


@example("f(x, A, s) = (x - A s)^T W (x - A s);  grads = (W + W^T) r, -(W + W^T) r s^T, -A^T (W + W^T) r")
def _weighted_residual():
    W, s = _rng.standard_normal((3, 3)), _rng.standard_normal(2)

    def f(x, A, s):
        r = x - A @ s
        return r @ W @ r
    r = x0 - B @ s
    sym = (W + W.T) @ r
    return jitad.grad(f, argnums=(0, 1, 2))(x0, B, s), (sym, -np.outer(sym, s), -B.T @ sym)


@example("f(x) = ||x||_2;  grad = x / ||x||")
def _norm():
    return jitad.grad(np.linalg.norm)(x0), x0 / np.linalg.norm(x0)


@example("f(x) = -exp(-x^T x);  grad = 2 x exp(-x^T x)")
def _gaussian():
    return jitad.grad(lambda x: -np.exp(-x @ x))(x0), 2 * x0 * np.exp(-x0 @ x0)


@example("f(x) = sum_i cos x_i;  grad = -sin x")
def _sum_cos():
    return jitad.grad(lambda x: np.sum(np.cos(x)))(x0), -np.sin(x0)


@example("g(x) = ||x||^3 / 3: Hessian-vector product (forward over reverse);  H = x x^T / ||x|| + ||x|| I")
def _hvp():
    v = _rng.standard_normal(3)
    g = lambda x: np.linalg.norm(x) ** 3 / 3.0  # noqa: E731
    n = np.linalg.norm(x0)
    return jitad.jvp(jitad.grad(g), (x0,), (v,))[1], (np.outer(x0, x0) / n + n * np.eye(3)) @ v


# --- data structures and models ------------------------------------------------------------------
@example('d = {"cat": a0, "dog": a1}, f(d) = sin(d["cat"]);  the gradient is a dict {"cat": cos a0, "dog": 0}')
def _dict():
    grad = jitad.grad(lambda d: np.sin(d["cat"]))({"cat": 0.7, "dog": -1.2})
    return grad, {"cat": math.cos(0.7), "dog": 0.0}


def mlp_loss(params, inputs, targets):
    """The lectures' feed-forward net: tanh layers, mean squared error of the last outputs."""
    for W, b in params:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return np.mean((outputs - targets) ** 2)


def mlp_backprop(params, X, Y):
    """dC/dw layer by layer, by hand: delta = 2 (a - y) / n, then delta W^T * (1 - tanh^2)."""
    activations, a = [X], X
    for W, b in params:
        z = a @ W + b
        a = np.tanh(z)
        activations.append(a)
    delta = 2.0 * (z - Y) / z.size
    grads = []
    for layer in reversed(range(len(params))):
        grads.append((activations[layer].T @ delta, delta.sum(axis=0)))
        if layer:
            delta = (delta @ params[layer][0].T) * (1.0 - activations[layer] ** 2)
    return grads[::-1]


@example("MLP loss mean((net(X) - Y)^2) w.r.t. a list of (W, b) layers;  against hand-written backprop")
def _mlp():
    sizes = [4, 8, 8, 2]
    params = [(_rng.standard_normal((m, n)) * 0.5, _rng.standard_normal(n) * 0.1) for m, n in zip(sizes, sizes[1:])]
    X, Y = _rng.standard_normal((16, 4)), _rng.standard_normal((16, 2))
    return jitad.grad(mlp_loss)(params, X, Y), mlp_backprop(params, X, Y)


@example("MDS stress S(W) = sum_ij (||W_i - W_j||^2 - D_ij)^2;  grad_i = 4 sum_j (Delta_ij + Delta_ji)(W_i - W_j)")
def _mds():
    W, P = _rng.standard_normal((6, 2)), _rng.standard_normal((6, 2))
    D = np.sum((P[:, None] - P[None]) ** 2, axis=-1)

    def stress(W):
        return np.sum((np.sum((W[:, None, :] - W[None, :, :]) ** 2, axis=-1) - D) ** 2)
    diff = W[:, None] - W[None]
    delta = np.sum(diff ** 2, axis=-1) - D
    return jitad.grad(stress)(W), 4.0 * np.einsum("ij,ijk->ik", delta + delta.T, diff)


EXAMPLES += demo_linalg.EXAMPLES


# --- printing ------------------------------------------------------------------------------------
def _show(value):
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        text = ", ".join(_show(v) for v in value)
        return f"[{text}]" if isinstance(value, list) else f"({text})"
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return f"{float(array):.8g}"
    if array.size > 6:
        return f"array{list(array.shape)}"
    return np.array2string(array, precision=6, separator=", ", suppress_small=True).replace("\n", "")


def error(ad, analytic):
    """Largest absolute difference over all entries of two values of the same structure."""
    ad_leaves, ad_tree = tree_flatten(ad)
    ref_leaves, ref_tree = tree_flatten(analytic)
    if ad_tree.num_leaves != ref_tree.num_leaves:
        return math.inf
    return max((float(np.max(np.abs(np.asarray(a, float) - np.asarray(r, float)), initial=0.0))
                for a, r in zip(ad_leaves, ref_leaves)), default=0.0)


def main(out=None):
    """Run every example; print AD, analytic and error. Returns 1 if any disagrees, else 0."""
    out = out or sys.stdout
    print(f"jitad {jitad.__version__} demo: lecture examples, AD against the closed form "
          f"(backend: {jitad.config.backend}, compile: {jitad.config.compile})\n", file=out)
    failures = 0
    for number, (title, run) in enumerate(EXAMPLES, start=1):
        ad, analytic = run()
        err = error(ad, analytic)
        scale = max((float(np.max(np.abs(np.asarray(leaf, float)), initial=0.0))
                     for leaf in tree_leaves(analytic)), default=1.0)
        ok = err <= 1e-6 * max(1.0, scale)
        failures += not ok
        print(f"{number:2d}. {title}\n      AD:       {_show(ad)}\n      analytic: {_show(analytic)}\n"
              f"      error:    {err:.1e}{'' if ok else '   <-- MISMATCH'}\n", file=out)
    print(f"{len(EXAMPLES) - failures} of {len(EXAMPLES)} examples agree with their closed form.", file=out)
    return 1 if failures else 0
