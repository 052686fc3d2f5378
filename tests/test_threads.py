"""Threads (issue 13, item 3): kernels release the GIL, and the "parallel" target runs large loop
nests as `numba.prange` over chunks of their outer loop, with a partial per chunk for a reduction
over it. Speed is measured in asv_benchmarks/bench_threads.py; here: the source's shape, equal
results (NaN and inf propagate as in NumPy; the same bits for any number of threads), race-free
gradients, and concurrent calls from user threads."""
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import jitad
from jitad.backend import codegen
from jitad.frontend.tracer import trace
from jitad.interpreter import evaluate
from jitad.passes import optimize


def _graph(fun, *args):
    def listed(*values):
        value, grad = jitad.value_and_grad(fun)(*values)
        return [value, grad]
    return optimize(trace(listed, [(a.shape, a.dtype) for a in args])[0])


def loss(X):
    """Reductions of every kind the parallel form handles: a full sum, max and min over the chunked
    axis (a partial per chunk), row sums (each chunk its own rows)."""
    rows = np.sum(X * X, axis=1)
    return np.sum(np.tanh(X) ** 2) + np.max(X) + 0.5 * np.sum(rows) - np.min(rows)


def column_loss(X):
    """A column sum accumulates across the outer loop: a copy of it per chunk."""
    return np.sum(np.sum(X, axis=0) ** 2) + np.sum(np.tanh(X))


BIG = (320, 256)  # 81920 elements: above codegen.PARALLEL_ELEMENTS
SMALL = (8, 16)


def test_kernels_release_the_gil():
    for parallel in (False, True):
        source = codegen.generate(_graph(loss, np.ones(BIG)), parallel=parallel)[0]
        assert re.search(r"@numba\.njit\([^)]*nogil=True", source), source
    from jitad.backend import kernels, kernels_linalg
    assert kernels.dot.targetoptions.get("nogil") and kernels_linalg.lu_factor.targetoptions.get("nogil")


def test_parallel_form_only_for_large_nests():
    small = codegen.generate(_graph(loss, np.ones(SMALL)), parallel=True)[0]
    assert "prange" not in small and "parallel=True" not in small
    cpu = codegen.generate(_graph(loss, np.ones(BIG)))[0]
    assert "prange" not in cpu  # target "cpu" is serial at every size
    big = codegen.generate(_graph(loss, np.ones(BIG)), parallel=True)[0]
    assert "parallel=True" in big and "numba.prange(nchunks)" in big, big
    # the full sum and max keep a partial per chunk, combined after the chunks
    assert re.search(r"(sum|max)\d+_p\[chunk\] = \1\d+_t", big), big
    # the column sum adds into the same elements from every row: a copy of it per chunk, combined
    # in chunk order; unless the copies would hold over 2^20 elements and a quarter of the nest's
    columns = codegen.generate(_graph(column_loss, np.ones(BIG)), parallel=True)[0]
    assert re.search(r"(sum\d+)_p\[chunk, i1\] = K\.radd\(\1_p\[chunk, i1\], x0_i\)", columns), columns
    wide = codegen.generate(_graph(column_loss, np.empty((300, 8192))), parallel=True)[0]
    nests = wide.split("# loop nest")[1:]
    assert [("np.full(" in nest, "prange" in nest) for nest in nests if "np.full(" in nest] == [(True, False)], wide


def both_losses(X):
    return loss(X) + column_loss(X)


@pytest.fixture(scope="module")
def parallel_vg():
    return jitad.value_and_grad(both_losses, target="parallel")


def _expected(X):
    graph = _graph(both_losses, X)
    value, grad = evaluate(graph, [X])
    return value, grad


@pytest.mark.parametrize("special", [None, np.nan, np.inf, -np.inf])
def test_parallel_equals_numpy(parallel_vg, special):
    X = np.random.default_rng(1).uniform(-2, 2, BIG)
    if special is not None:
        X[-1, -3] = special  # in the last chunk: a per-chunk partial must carry it to the result
    value, grad = parallel_vg(X)
    want_value, want_grad = _expected(X)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    assert np.isnan(value) == np.isnan(want_value)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)  # NaN where NumPy's is NaN
    assert grad.dtype == X.dtype


def test_same_bits_for_any_thread_count(parallel_vg):
    X = np.random.default_rng(2).uniform(-2, 2, BIG)
    saved = jitad.config.threads
    try:
        jitad.config.threads = 1
        one = parallel_vg(X)
        jitad.config.threads = saved
        many = parallel_vg(X)
    finally:
        jitad.config.threads = saved
    assert one[0] == many[0]
    np.testing.assert_array_equal(one[1], many[1])


def test_user_threads_call_kernels_at_once(parallel_vg):
    """Kernels are nogil: several Python threads run one kernel at the same time (each with its own
    Numba thread setting), each getting its own correct result."""
    inputs = [np.random.default_rng(k).uniform(-2, 2, BIG) for k in range(4)]
    expected = [parallel_vg(X) for X in inputs]
    results = [None] * len(inputs)

    def work(k):
        for _ in range(3):
            results[k] = parallel_vg(inputs[k])
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (value, grad), (want_value, want_grad) in zip(results, expected):
        assert value == want_value
        np.testing.assert_array_equal(grad, want_grad)


_WORKQUEUE = """
import sys, threading
sys.path.insert(0, {tests!r})
import numpy as np, jitad, numba, test_threads
vg = jitad.value_and_grad(test_threads.both_losses, target="parallel")
inputs = [np.random.default_rng(k).uniform(-2, 2, test_threads.BIG) for k in range(3)]
want = [vg(X)[0] for X in inputs]
def work(k):
    for _ in range(3):
        assert vg(inputs[k])[0] == want[k]
threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print("ok", numba.threading_layer())
"""


def test_workqueue_layer_runs_parallel_kernels_one_at_a_time(parallel_vg):
    """Numba's workqueue threading layer (no TBB, no OpenMP) aborts the process when two threads
    launch parallel kernels at once: jitad then runs them one at a time."""
    parallel_vg(np.ones(BIG))  # compiled into the session's disk cache: the child loads it
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue", JITAD_COMPILE="eager")
    out = subprocess.run([sys.executable, "-c", _WORKQUEUE.format(tests=os.path.dirname(__file__))], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.split() == ["ok", "workqueue"], out.stderr[-2000:]


def one_dimensional(x):
    """A one-dimensional nest reading at shifted, reversed, strided, rolled and padded indices, and
    elements taken at negative indices."""
    d = x[1:] - x[:-1]
    total = np.sum(d ** 2) + np.sum(np.sin(x[::-1] * x)) + np.sum(x[:-1:2] * x[1::2])
    total = total + np.sum(np.roll(x, 3) * x) + np.sum(np.diff(x, 2) ** 2) + np.sum(np.pad(x, 2) ** 3)
    return total + np.sum(x[np.array([-1, 0, -2, 5, -7])] ** 2)


def test_one_dimensional_parallel_nests_index_unsigned_and_equal_numpy(monkeypatch):
    """A chunk of a one-dimensional nest indexes with np.uint64 (Numba's negative-index test on `i0`
    from `range(lo, hi)` kept LLVM to gathers: a Rosenbrock gradient 4.5x slower on one thread than
    the serial kernel); the values are the serial ones, on small arrays (threshold lowered)."""
    monkeypatch.setattr(codegen, "PARALLEL_ELEMENTS", 16)
    x = np.random.default_rng(3).uniform(-1, 1, 1001)  # 240 chunks of 4 or 5 elements
    graph = _graph(one_dimensional, x)
    source = codegen.generate(graph, parallel=True)[0]
    assert "numba.prange(" in source and "x0[np.uint64(1 + i0)]" in source, source
    value, grad = jitad.value_and_grad(one_dimensional, target="parallel")(x)
    want_value, want_grad = evaluate(graph, [x])
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-12)


_WAIT_POLICY = """
import os, sys
sys.path.insert(0, {tests!r})
import numpy as np, jitad, test_threads
before = os.environ.get("OMP_WAIT_POLICY")
vg = jitad.value_and_grad(test_threads.both_losses, target="parallel")
vg(np.ones(test_threads.BIG))
import numba
print(before, os.environ.get("OMP_WAIT_POLICY"), numba.threading_layer())
"""


@pytest.mark.parametrize("user", [None, "ACTIVE"])
def test_openmp_threads_wait_passively_unless_the_user_says(parallel_vg, user):
    """GNU OpenMP's idle threads spin by default, as OpenBLAS's do after a product: alternating the two
    (a product in a parallel kernel, or NumPy's `@` between parallel kernels) made an MLP's gradient
    8x slower (asv_benchmarks/bench_threads.py, TimeMixedWithBlas). Loading a parallel kernel sets
    OMP_WAIT_POLICY=PASSIVE before Numba starts OpenMP, unless the user chose a policy."""
    parallel_vg(np.ones(BIG))  # compiled into the session's disk cache: the child loads it
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update({"JITAD_COMPILE": "eager"}, **({"OMP_WAIT_POLICY": user} if user else {}))
    env.pop("NUMBA_THREADING_LAYER", None)
    out = subprocess.run([sys.executable, "-c", _WAIT_POLICY.format(tests=os.path.dirname(__file__))], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, layer = out.stdout.split()
    assert (before, after) == (str(user), user or "PASSIVE")


def test_threads_setting():
    assert jitad.config.threads >= 1
    for bad in (0, -1, True, 2.0, "2", 10 ** 6):
        with pytest.raises(ValueError, match="jitad.config.threads"):
            jitad.config.threads = bad


def test_a_kernel_compiles_while_another_thread_traces():
    """While a thread traces, NumPy's creators (np.empty, ...) are jitad's hooks, process-wide, and
    Numba typing a kernel (or a helper of jitad.backend's kernel modules) in another thread then can
    read `np.empty` as the hook: TypingError 'Use of unsupported NumPy function' (found by the fuzzer,
    long profile seed 585858: a background transform's trace during an eager compile). A compile
    (`numpy_unhooked`, around a kernel's first call) waits for other threads' traces to end, and a
    trace waits for a compile to end."""
    from jitad.frontend import tracer
    original = np.empty
    inside, seen = threading.Event(), {}

    def traced():
        with tracer.numpy_array_hooks():
            seen["hooked"] = np.empty is not original
            inside.set()
            import time
            time.sleep(0.5)
    thread = threading.Thread(target=traced)
    thread.start()
    inside.wait(10)
    with tracer.numpy_unhooked():
        seen["compiling"] = np.empty is original
        later = threading.Thread(target=traced)
        later.start()
        import time
        time.sleep(0.2)
        seen["still"] = np.empty is original  # the new trace waits for the compile
    later.join()
    thread.join()
    assert seen == {"hooked": True, "compiling": True, "still": True}
    assert np.empty is original
    # and a kernel compiled in this thread while another traces is right
    x = np.linspace(0.1, 1.0, 7)
    thread = threading.Thread(target=traced)
    thread.start()
    inside.wait(10)
    grad = jitad.grad(lambda x: np.sum(np.exp(-x) * np.cos(3.0 * x) + x ** 3))(x)
    thread.join()
    np.testing.assert_allclose(grad, -np.exp(-x) * np.cos(3 * x) - 3 * np.exp(-x) * np.sin(3 * x) + 3 * x ** 2,
                               rtol=1e-12)
