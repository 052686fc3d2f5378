"""jitad.dask (issue 15): map_grad and grad_sum on a LocalCluster of two worker processes equal the
single-process results; workers load the kernels this process compiled (the disk cache) and a
worker's second task traces and compiles nothing; a worker that dies mid-task changes nothing.

One cluster for the module (about 2 s to start). Its workers start with a cache folder and a
compile mode of their own, so the tests see `jitad.dask.setup` point them at this process's.
Skipped when dask[distributed] is not installed (`pip install "jitad[dask]"`).
"""
import logging
import os
import subprocess
import shutil
import sys
import tempfile
import threading

import numpy as np
import pytest

import jitad

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
import jitad.dask as jd  # noqa: E402
from jitad.pytrees import tree_leaves  # noqa: E402

COUNTERS = ("traces", "kernel_misses", "disk_loads", "numba_compilations", "numpy_tier_calls")


def loss(params, inputs, targets):
    """The lectures' MLP (small: one compile of its gradient serves the module)."""
    for W, b in params:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return np.mean((outputs - targets) ** 2)


def make_params(seed, widths=(2, 8, 1)):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((m, n)) / np.sqrt(m), 0.1 * rng.standard_normal(n))
            for m, n in zip(widths[:-1], widths[1:])]


def data(rows=96, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (rows, 2))
    return X, np.sin(3 * X[:, :1]) * np.cos(2 * X[:, 1:2])


def assert_trees_close(got, want, rtol=1e-12, atol=1e-14):
    got, want = tree_leaves(got), tree_leaves(want)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def client():
    elsewhere = tempfile.mkdtemp(prefix="jitad-dask-worker-cache-")
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
        silence_logs=logging.CRITICAL,  # the killed worker's tracebacks are expected
        env={"JITAD_CACHE_DIR": elsewhere, "JITAD_COMPILE": "background"})
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(elsewhere, ignore_errors=True)


@pytest.fixture
def numpy_tier(client, monkeypatch):
    """No kernels compiled here or on the workers (compile="off") while a test runs."""
    jd.setup(client)  # now, or the first call's set-up would make the workers compile (compile="eager")
    monkeypatch.setattr(jitad.config, "compile", "off")
    modes = client.run(lambda: jitad.config.compile)
    client.run(lambda: setattr(jitad.config, "compile", "off"))
    yield
    client.run(lambda mode: setattr(jitad.config, "compile", mode), next(iter(modes.values())))


@pytest.fixture(scope="module")
def reference():
    """Single-process gradients (compiled here, eagerly, into the session's disk cache)."""
    X, Y = data()
    params_list = [make_params(seed) for seed in range(6)]
    value_and_grad = jitad.value_and_grad(loss)
    return X, Y, params_list, [value_and_grad(p, X, Y) for p in params_list]


def test_setup_points_workers_at_this_cache_and_compile_mode(client):
    jd.setup(client)
    dirs = client.run(lambda: os.environ["JITAD_CACHE_DIR"])
    modes = client.run(lambda: jitad.config.compile)
    assert set(dirs.values()) == {os.environ["JITAD_CACHE_DIR"]}
    assert set(modes.values()) == {"eager"}


def test_map_grad_equals_single_process_and_workers_compile_nothing(client, reference):
    X, Y, params_list, want = reference
    before = jd.cache_info(client)
    grads = jd.map_grad(loss, params_list, X, Y, client=client, batch_size=2)
    for g, (_, w) in zip(grads, want):
        assert_trees_close(g, w)
    pairs = jd.map_grad(loss, params_list, X, Y, client=client, value=True)
    for (v, g), (wv, wg) in zip(pairs, want):
        assert v == pytest.approx(wv, rel=1e-13)
        assert_trees_close(g, wg)
    futures = jd.map_grad(loss, params_list[:3], X, Y, client=client, futures=True)
    assert len(futures) == 3 and all(isinstance(f, distributed.Future) for f in futures)
    for f, (_, w) in zip(futures, want):
        assert_trees_close(f.result(), w)
    after = jd.cache_info(client)
    # the kernel was compiled in this process: the workers load it from the shared disk cache
    assert sum(after[w]["numba_compilations"] - before[w]["numba_compilations"] for w in after) == 0
    assert sum(after[w]["disk_loads"] - before[w]["disk_loads"] for w in after) >= 1


def test_second_task_on_each_worker_traces_and_compiles_nothing(client, reference):
    X, Y, params_list, want = reference
    token, payload = jd._ship("grad", loss, argnums=0, has_aux=False)
    for worker in client.scheduler_info()["workers"]:
        first = client.submit(jd._grad_batch, params_list[:2], token, payload, (X, Y), workers=[worker], pure=False)
        first.result()
        before = jd.cache_info(client)[worker]
        second = client.submit(jd._grad_batch, params_list[2:4], token, payload, (X, Y), workers=[worker], pure=False)
        for g, (_, w) in zip(second.result(), want[2:4]):
            assert_trees_close(g, w)
        after = jd.cache_info(client)[worker]
        assert {k: after[k] - before[k] for k in COUNTERS} == dict.fromkeys(COUNTERS, 0), worker


def test_grad_sum_equals_the_whole_data_gradient(client, reference):
    X, Y, params_list, _ = reference
    params = params_list[0]
    want_value, want = jitad.value_and_grad(loss)(params, X, Y)
    bounds = [0, 10, 40, 64, 96]  # chunks of different sizes: the mean weighs them by their rows
    chunks = [(X[a:b], Y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    value, grad = jd.grad_sum(loss, params, chunks, client=client, reduce="mean", value=True, fan_in=2)
    assert value == pytest.approx(want_value, rel=1e-13)
    assert_trees_close(grad, want)
    # a tuple of Dask arrays chunked alike along axis 0
    dX, dY = da.from_array(X, chunks=(24, 2)), da.from_array(Y, chunks=(24, 1))
    assert_trees_close(jd.grad_sum(loss, params, (dX, dY), client=client, reduce="mean"), want)


def total(params, inputs):
    return np.sum(np.tanh(inputs @ params[0][0]) ** 2)


def test_grad_sum_of_one_dask_array_chunked_along_both_axes(client, reference, numpy_tier):
    X, _, params_list, _ = reference
    assert_trees_close(jd.grad_sum(total, params_list[0], da.from_array(X, chunks=(30, 1)), client=client),
                       jitad.grad(total)(params_list[0], X))


def test_a_killed_worker_changes_nothing(client, reference, tmp_path):
    X, Y, params_list, want = reference
    marker = str(tmp_path / "killed")

    def fragile(params, inputs, targets):  # the first worker to trace it dies mid-task
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return loss(params, inputs, targets)
        os._exit(1)
        return loss(params, inputs, targets)
    grads = jd.map_grad(fragile, params_list, X, Y, client=client, batch_size=3)
    assert os.path.exists(marker)
    for g, (_, w) in zip(grads, want):
        assert_trees_close(g, w)
    # the worker that replaced it was set up too (the plugin runs on every worker that starts)
    client.wait_for_workers(2, timeout=60)
    assert set(client.run(lambda: os.environ["JITAD_CACHE_DIR"]).values()) == {os.environ["JITAD_CACHE_DIR"]}


def test_a_function_that_cannot_be_pickled_is_a_send_error(client, reference):
    X, Y, params_list, _ = reference
    lock = threading.Lock()

    def locked(params, inputs, targets):
        with lock:
            return loss(params, inputs, targets)
    with pytest.raises(jd.SendError, match="`lock` \\(a lock\\)"):
        jd.map_grad(locked, params_list, X, Y, client=client)


def test_importing_jitad_imports_no_dask():
    code = "import sys, jitad, jitad.dask; print(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "JITAD_COMPILE": "off"})
    assert out.stdout.strip() == "False"


def test_the_example_trains_an_ensemble_and_fits_least_squares(client, numpy_tier, capsys):
    import cloudpickle
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "dask_ensemble.py")
    spec = importlib.util.spec_from_file_location("example_dask_ensemble", path)
    example = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    cloudpickle.register_pickle_by_value(example)  # the workers cannot import it by this name
    try:
        (first, final), (w, exact) = example.main(client, members=4, steps=4, chunks=3)
    finally:
        cloudpickle.unregister_pickle_by_value(example)
        del sys.modules[spec.name]
    assert np.mean(final) < np.mean(first)
    np.testing.assert_allclose(w, exact, atol=1e-6)


def _transforms():
    """(name, transformed function, arguments) for every transform and its options, of functions
    pickled by value (closures), each called here first (so each holds its table of transforms)."""
    scale = np.array([1.0, 2.0, 0.5])

    def f(x):
        return np.sum(np.sin(x) * x ** 2 * scale)

    def two(x, y):
        return np.sum(np.tanh(x * y) * scale)

    def with_aux(x):
        return np.sum(x ** 3), {"norm": np.sqrt(np.sum(x ** 2))}

    def vector(x):
        return np.sin(x) * np.roll(x, 1) * scale

    x, y = np.array([0.3, -0.7, 1.1]), np.array([0.5, 0.2, -0.4])
    made = [
        ("grad", jitad.grad(f), (x,)), ("grad target", jitad.grad(f, target="cpu"), (x,)),
        ("grad argnums", jitad.grad(two, argnums=(0, 1)), (x, y)), ("grad argnums=1", jitad.grad(two, argnums=1), (x, y)),
        ("grad has_aux", jitad.grad(with_aux, has_aux=True), (x,)),
        ("grad memory", jitad.grad(f, memory="recompute"), (x,)),
        ("value_and_grad", jitad.value_and_grad(two, argnums=(0, 1)), (x, y)),
        ("value_and_grad has_aux", jitad.value_and_grad(with_aux, has_aux=True), (x,)),
        ("jacobian", jitad.jacobian(vector), (x,)), ("jacobian reverse", jitad.jacobian(vector, mode="reverse"), (x,)),
        ("jacobian forward", jitad.jacobian(vector, mode="forward"), (x,)),
        ("jacfwd", jitad.jacfwd(vector), (x,)), ("jacrev", jitad.jacrev(vector), (x,)),
        ("jacrev argnums", jitad.jacrev(two, argnums=(0, 1)), (x, y)),
        ("hessian", jitad.hessian(f), (x,)), ("jit", jitad.jit(vector), (x,)),
        ("grad of grad", jitad.grad(jitad.grad(lambda t: t ** 3 * scale[1])), (0.7,)),
    ]
    return [(name, fn, args, fn(*args)) for name, fn, args in made]


def test_every_transform_pickles_and_runs_on_the_workers(client, numpy_tier):
    import cloudpickle
    made = _transforms()  # pickling is the point: no kernels compiled (numpy_tier)
    for name, fn, args, want in made:
        again = cloudpickle.loads(cloudpickle.dumps(fn))
        assert type(again) is type(fn), name
        assert_trees_close(again(*args), want, rtol=1e-14, atol=0)
    remote = client.gather([client.submit(fn, *args, pure=False) for _, fn, args, _ in made])
    for (name, _, _, want), got in zip(made, remote):
        assert type(got) is type(want), name
        assert_trees_close(got, want, rtol=1e-14, atol=0)


def big(W, inputs):
    return np.sum(np.tanh(inputs @ W) ** 2)


def test_large_shared_values_go_once_and_calls_repeat(client, numpy_tier):
    """Parameters above 64 KiB are sent to the workers once, as futures: as a keyword of
    Client.map they would be keyed by the keyword's name, and a second call hung the scheduler."""
    rng = np.random.default_rng(3)
    W, X = 0.1 * rng.standard_normal((128, 128)), rng.standard_normal((12, 128))  # 128 KiB, 12 KiB
    chunks = [X[:5], X[5:]]
    want = jitad.grad(big)(W, X)
    for _ in range(2):
        assert_trees_close(jd.grad_sum(big, W, chunks, client=client), want)
    got = jd.map_grad(big, [W, 2 * W], X, client=client)
    assert_trees_close(got, [want, jitad.grad(big)(2 * W, X)])
