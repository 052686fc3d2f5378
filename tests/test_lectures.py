"""The lecture examples users learn AD from, each against its closed-form derivative.

These run on the default backend (no fixture), so they exercise the compiled path
whenever it is the default. Each test is one example, or a few that share a theme.
"""
import math

import numpy as np
import pytest

import jitad


def test_scalar_traces_by_hand():
    """The three scalar functions the lectures trace forward and backward by hand."""
    g = jitad.grad(lambda x1, x2: x1 * x2 + np.sin(x1), argnums=(0, 1))(2.0, 5.0)
    assert g == pytest.approx((5.0 + math.cos(2.0), 2.0), abs=1e-12)

    def L(w1, w2):
        return w2 * np.log(w1) + np.sqrt(w2 * np.log(w1))

    w1, w2 = 2.0, 5.0
    s = math.sqrt(w2 * math.log(w1))
    expected = (w2 / w1 * (1.0 + 0.5 / s), math.log(w1) * (1.0 + 0.5 / s))
    assert jitad.grad(L, argnums=(0, 1))(w1, w2) == pytest.approx(expected, abs=1e-12)

    def f(x1, x2):
        return np.cos(x1 + x2 ** 3) ** 2

    x1, x2 = 0.3, 0.7
    u = x1 + x2 ** 3
    expected = (-math.sin(2 * u), -math.sin(2 * u) * 3 * x2 ** 2)
    assert jitad.grad(f, argnums=(0, 1))(x1, x2) == pytest.approx(expected, abs=1e-12)
    out, tangent = jitad.jvp(f, (x1, x2), (1.0, 0.0))  # forward mode gives the same partial
    assert tangent == pytest.approx(expected[0], abs=1e-12)


def test_tanh_through_exp_first_and_second_derivative():
    def tanh(x):
        e = np.exp(-2.0 * x)
        return (1.0 - e) / (1.0 + e)

    d1, d2 = jitad.grad(tanh), jitad.grad(jitad.grad(tanh))
    for x in (-1.3, 0.0, 0.4, 2.0):
        t = math.tanh(x)
        assert d1(x) == pytest.approx(1.0 - t * t, abs=1e-12)
        assert d2(x) == pytest.approx(-2.0 * t * (1.0 - t * t), abs=1e-12)


def test_matrix_calculus_quadratics():
    rng = np.random.default_rng(0)
    n = 4
    A, b, c, x = rng.standard_normal((n, n)), rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n)
    np.testing.assert_allclose(jitad.grad(lambda x: c @ x)(x), c, atol=1e-12)
    np.testing.assert_allclose(jitad.grad(lambda x: 0.5 * x @ A @ x + b @ x)(x), 0.5 * (A + A.T) @ x + b,
                               atol=1e-12)
    M = rng.standard_normal((6, n))
    y = rng.standard_normal(6)
    np.testing.assert_allclose(jitad.grad(lambda x: np.sum((M @ x - y) ** 2))(x), 2.0 * M.T @ (M @ x - y),
                               atol=1e-12)


def test_trace_of_product():
    rng = np.random.default_rng(1)
    A, X, B = rng.standard_normal((2, 3)), rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    np.testing.assert_allclose(jitad.grad(lambda X: np.trace(A @ X @ B))(X), A.T @ B.T, atol=1e-12)


def test_weighted_residual_wrt_x_A_and_s():
    rng = np.random.default_rng(2)
    x, A, s, W = rng.standard_normal(3), rng.standard_normal((3, 2)), rng.standard_normal(2), \
        rng.standard_normal((3, 3))

    def f(x, A, s):
        r = x - A @ s
        return r @ W @ r

    gx, gA, gs = jitad.grad(f, argnums=(0, 1, 2))(x, A, s)
    r = x - A @ s
    sym = (W + W.T) @ r
    np.testing.assert_allclose(gx, sym, atol=1e-12)
    np.testing.assert_allclose(gA, -np.outer(sym, s), atol=1e-12)
    np.testing.assert_allclose(gs, -A.T @ sym, atol=1e-12)


def test_norm_gaussian_and_cosine_sum():
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(jitad.grad(np.linalg.norm)(x), x / np.linalg.norm(x), atol=1e-12)
    np.testing.assert_allclose(jitad.grad(lambda x: -np.exp(-x @ x))(x), 2.0 * x * np.exp(-x @ x), atol=1e-12)
    np.testing.assert_allclose(jitad.grad(lambda x: np.sum(np.cos(x)))(x), -np.sin(x), atol=1e-12)


def test_gradient_of_a_dict_is_a_dict():
    d = {"cat": 0.7, "dog": -1.2}
    g = jitad.grad(lambda d: np.sin(d["cat"]))(d)
    assert set(g) == {"cat", "dog"}
    assert g["cat"] == pytest.approx(math.cos(0.7), abs=1e-12)
    assert g["dog"] == 0.0


def _mlp_loss(params, inputs, targets):
    for W, b in params:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return np.mean((outputs - targets) ** 2)


def _mlp_backprop(params, X, Y):
    """The per-layer chain rule of the lectures, written out by hand."""
    activations, a = [X], X
    for W, b in params:
        z = a @ W + b
        a = np.tanh(z)
        activations.append(a)
    delta = 2.0 * (z - Y) / z.size          # dC/dz of the last layer (its output is z, not tanh z)
    grads = []
    for layer in reversed(range(len(params))):
        W, _ = params[layer]
        grads.append((activations[layer].T @ delta, delta.sum(axis=0)))
        if layer:
            delta = (delta @ W.T) * (1.0 - activations[layer] ** 2)
    return grads[::-1]


def test_mlp_gradient_wrt_list_of_layer_tuples():
    rng = np.random.default_rng(3)
    sizes = [3, 5, 4, 2]
    params = [(rng.standard_normal((m, n)) * 0.5, rng.standard_normal(n) * 0.1) for m, n in zip(sizes, sizes[1:])]
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    value, g = jitad.value_and_grad(_mlp_loss)(params, X, Y)
    assert value == pytest.approx(_mlp_loss(params, X, Y), abs=1e-12)
    assert isinstance(g, list) and len(g) == len(params) and all(isinstance(layer, tuple) for layer in g)
    for (gW, gb), (eW, eb) in zip(g, _mlp_backprop(params, X, Y)):
        np.testing.assert_allclose(gW, eW, atol=1e-12)
        np.testing.assert_allclose(gb, eb, atol=1e-12)


def test_multidimensional_scaling_stress():
    rng = np.random.default_rng(4)
    W = rng.standard_normal((5, 2))
    P = rng.standard_normal((5, 2))
    D = np.sum((P[:, None, :] - P[None, :, :]) ** 2, axis=-1)  # symmetric target distances

    def stress(W, D):
        sq = np.sum((W[:, None, :] - W[None, :, :]) ** 2, axis=-1)
        return np.sum((sq - D) ** 2)

    diff = W[:, None, :] - W[None, :, :]
    delta = np.sum(diff ** 2, axis=-1) - D
    expected = 4.0 * np.einsum("ij,ijk->ik", delta + delta.T, diff)
    np.testing.assert_allclose(jitad.grad(stress)(W, D), expected, atol=1e-10)
    # gradient descent on the stress recovers the distances (up to a rigid motion)
    g = jitad.grad(stress)
    start = stress(W, D)
    for _ in range(300):
        W = W - 2e-3 * g(W, D)
    assert stress(W, D) < 1e-8 * start


# --- the demo: `python -m jitad demo` prints these examples ---------------------------------------
def test_demo_examples_agree(reference_backend):
    import io

    from jitad.tools import demo
    from jitad.tools import demo_linalg
    assert all(entry in demo.EXAMPLES for entry in demo_linalg.EXAMPLES)
    out = io.StringIO()
    assert demo.main(out) == 0
    text = out.getvalue()
    assert f"{len(demo.EXAMPLES)} of {len(demo.EXAMPLES)} examples agree" in text
    assert text.count("AD:") == text.count("analytic:") == text.count("error:") == len(demo.EXAMPLES)


def test_demo_reports_a_mismatch(reference_backend, monkeypatch):
    import io

    from jitad.tools import demo
    assert demo.error((1.0, np.ones(2)), (1.0, np.array([1.0, 1.5]))) == 0.5
    monkeypatch.setattr(demo, "EXAMPLES", [("wrong on purpose", lambda: (jitad.grad(np.sin)(0.0), 0.5))])
    out = io.StringIO()
    assert demo.main(out) == 1
    assert "MISMATCH" in out.getvalue() and "0 of 1" in out.getvalue()


def test_command_line(monkeypatch):
    import subprocess
    import sys
    import types

    from jitad import __main__ as cli
    result = subprocess.run([sys.executable, "-m", "jitad", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "demo" in result.stdout and "modes" in result.stdout
    seen = []
    fake = types.SimpleNamespace(main=lambda argv: seen.append(argv))
    import jitad.tools
    monkeypatch.setitem(sys.modules, "jitad.tools.modes", fake)
    monkeypatch.setattr(jitad.tools, "modes", fake, raising=False)
    cli.main(["modes", "--quick", "--sizes", "3"])
    assert seen == [["--quick", "--sizes", "3"]]
