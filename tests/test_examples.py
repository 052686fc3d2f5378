"""The example scripts run and show what they claim (small sizes)."""
import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exact_gradient_beats_zero_order_descent(capsys):
    gap_exact, gap_zero = load("gradient_descent").main(d=10, steps=200)
    assert gap_exact < 1e-4 and gap_exact < 1e-3 * gap_zero


def test_mlp_training_lowers_the_loss(capsys):
    first, final = load("mlp_training").main(widths=(2, 8, 1), steps=60)
    assert final < 0.8 * first


def test_gauss_newton_finds_the_rosenbrock_minimum(capsys):
    np.testing.assert_allclose(load("gauss_newton").main(steps=8), [1.0, 1.0], atol=1e-10)


@pytest.mark.parametrize("num", [400])
def test_hutchinson_estimates_are_near_the_trace(capsys, num):
    exact, estimates = load("hutchinson").main(n=20, samples=(num,), seeds=(0, 1))
    for estimate, stderr in estimates:
        assert abs(estimate - exact) < 4 * stderr + 1e-9
