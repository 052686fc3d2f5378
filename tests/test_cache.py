"""Caches and fusion of the compiled backend: what is reused, what is stored, what is fused."""
import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jitad
from jitad.backend.cache import cache_dir, cache_info


def elementwise(x):
    return np.sum(np.sin(x) * x + np.exp(-x * x) + np.log1p(x * x))


def rosenbrock(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def mds_stress(W, D):
    return np.sum((np.sum((W[:, None, :] - W[None, :, :]) ** 2, axis=-1) - D) ** 2)


def delta(before, key):
    return cache_info()[key] - before[key]


def test_second_call_neither_traces_nor_compiles():
    vg = jitad.value_and_grad(rosenbrock)
    x = np.linspace(-1, 1, 50)
    vg(x)
    before = cache_info()
    vg(x)
    assert delta(before, "traces") == 0
    assert delta(before, "numba_compilations") == 0


def test_new_size_and_new_closure_reuse_the_compiled_kernel():
    for fun, make in [(rosenbrock, lambda n: (np.linspace(-1, 1, n),)),
                      (mds_stress, lambda n: (np.linspace(0, 1, 3 * n).reshape(n, 3), np.ones((n, n))))]:
        jitad.value_and_grad(fun)(*make(7))
        before = cache_info()
        value, grad = jitad.value_and_grad(lambda *a: fun(*a))(*make(11))  # new closure, new size
        assert delta(before, "traces") == 1
        assert delta(before, "numba_compilations") == 0, fun.__name__
        jitad.config.backend = "reference"
        try:
            ref_value, ref_grad = jitad.value_and_grad(fun)(*make(11))
        finally:
            jitad.config.backend = "numba"
        np.testing.assert_allclose(value, ref_value)
        np.testing.assert_allclose(grad, ref_grad)


def test_captured_constants_are_arguments_not_literals():
    sources = []
    for scale in (3.7, 4.2):
        a = np.full(5, scale)
        before = cache_info()
        g = jitad.grad(lambda x: np.sum(np.sin(a * x) * scale))(np.ones(5))
        np.testing.assert_allclose(g, scale * a * np.cos(a))
        sources.append(delta(before, "numba_compilations"))
    assert sources[1] == 0


def test_fresh_process_loads_kernels_from_disk():
    script = textwrap.dedent("""
        import json, numpy as np, jitad
        def rosenbrock(x):
            return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
        v, g = jitad.value_and_grad(rosenbrock)(np.linspace(-1, 1, 33))
        print(json.dumps(jitad.cache_info()))
    """)
    env = dict(os.environ, JITAD_CACHE_DIR=cache_dir())
    first = json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      check=True).stdout.splitlines()[-1])
    second = json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                       check=True).stdout.splitlines()[-1])
    assert first["kernel_misses"] == 1
    assert second["numba_compilations"] == 0
    assert second["disk_loads"] == 1


def test_disk_entries_are_private_and_a_tampered_entry_is_rebuilt(tmp_path):
    env = dict(os.environ, JITAD_CACHE_DIR=str(tmp_path))
    script = "import numpy as np, jitad; print(jitad.grad(lambda x: np.sum(np.tanh(x)))(np.zeros(4)))"
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o700
    entries = [p for p in tmp_path.iterdir() if p.name.startswith("jitad_") and p.suffix == ".py"]
    assert len(entries) == 1
    assert stat.S_IMODE(os.stat(entries[0]).st_mode) == 0o600
    entries[0].write_text("raise SystemExit('tampered entry executed')\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "[1. 1. 1. 1.]" in out.stdout
    assert "tampered" not in entries[0].read_text()


def test_elementwise_value_and_grad_is_one_fused_loop():
    report = jitad.explain(elementwise, np.linspace(-1, 1, 100), print_report=False)
    plan = report.split("== fusion plan ==")[1].split("== generated source ==")[0]
    assert plan.count("loop nest") == 1, plan
    assert "library call" not in plan
    source = report.split("== generated source ==")[1]
    assert source.count("np.empty(") == 1  # the gradient output only: no temporaries
    assert source.count("for i0 in range(") == 1


def test_mds_broadcast_difference_is_never_stored():
    n, d = 20, 3
    report = jitad.explain(mds_stress, np.ones((n, d)), np.ones((n, n)), print_report=False)
    source = report.split("== generated source ==")[1]
    # allocations are at most N x N or N x d: no N x N x d temporary
    for line in source.splitlines():
        if "np.empty(" in line or "np.full(" in line:
            assert line.count(",") <= 3, line
    assert "x0.shape[0], x0.shape[0], x0.shape[1]" not in source


def test_jit_compiles_the_forward_function():
    f = jitad.jit(rosenbrock)
    x = np.linspace(-1, 1, 20)
    np.testing.assert_allclose(f(x), rosenbrock(x))
    before = cache_info()
    f(x)
    assert delta(before, "traces") == 0


def test_explain_shows_the_jacobian_plan():
    A = np.ones((3, 2000))  # R^2000 -> R^3: reverse mode, one sweep of 3 cotangents
    report = jitad.explain(jitad.jacobian(lambda x: np.tanh(A @ x)), np.ones(2000), print_report=False)
    assert "reverse mode" in report and "est. cost" in report


def test_a_kernel_numba_cannot_compile_raises_a_named_error(monkeypatch):
    """Numba's passes recurse over very deep expressions (a chain of hundreds of in-place writes
    into one array): the caller gets jitad.CompileError naming the way out, not a raw RecursionError."""
    from jitad.backend import cache
    saved = jitad.config.compile
    jitad.config.compile = "eager"
    try:
        def deep(*args):
            raise RecursionError("maximum recursion depth exceeded")
        monkeypatch.setattr(cache.CompiledGraph, "direct", lambda self, args: deep())
        f = jitad.jit(lambda x: np.sin(x) * 3.0 + x)
        with pytest.raises(jitad.CompileError, match="compile = 'off'"):
            f(np.arange(3.0))
    finally:
        jitad.config.compile = saved
