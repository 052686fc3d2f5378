"""jitad.dask on a LocalCluster of 2 worker processes (one thread each) against one process
(issue 15):

  map_grad   gradients of the MLP loss ([64, 256, 256, 10], batch 128) at 64 parameter sets:
             jitad.dask.map_grad on 2 workers vs a loop of jitad.grad in this process
  grad_sum   the gradient of the mean loss over 16 chunks of 128 rows (2,048 rows in all):
             jitad.dask.grad_sum on 2 workers vs one jitad.value_and_grad call on all rows
  overhead   map_grad of a trivial gradient (sum(x ** 2) of 3 numbers) at 64 points, one task
             each: the wall time per task is Dask's overhead per task (with 2 workers)

    python asv_benchmarks/bench_dask.py [--rounds N] [--compile-modes]

prints them side by side (best of interleaved rounds, kernels warm on every worker);
`--compile-modes` times the first map_grad calls of a new MLP shape with the workers'
jitad.config.compile "eager" vs "background" (each in a fresh disk cache and a fresh cluster).

Measured 2026-12-02 on the shared 2-core machine with a load average of 8-11 from other
sessions (so the two workers share about two cores with ~10 other busy processes: these are
not the ratios of an idle machine), `python asv_benchmarks/bench_dask.py --rounds 7`:

| 64 MLP gradients [64, 256, 256, 10], batch 128 | serial loop | map_grad, 2 workers | ratio |
|---|---|---|---|
| wall time | 1073.9 ms | 3251.9 ms | 0.33x |
| grad_sum, mean over 16 chunks of 128 rows | one call on all rows | grad_sum, 2 workers | |
| wall time | 353.7 ms | 1058.4 ms | 0.33x |

per-task overhead (map_grad of sum(x**2), 64 tasks of one point, 2 workers): 6.8 ms per task
(23.5 ms in a run at load 12); gradients identical to the serial loop's. map_grad moves each
parameter set (84k floats, 670 KB) and its gradient through the scheduler: 43 MB each way.

`--compile-modes` (a new MLP shape [32, 128, 128, 4], fresh cache and cluster per mode, six
map_grad calls of 64 sets): "eager" 17.1 s for the first call (one worker compiles, the other
loads the kernel from the shared cache), then 1.1-1.5 s per call, 23.5 s in all, no processes
left; "background" 12.1 s for the first call (the NumPy tier), then 3.6-5.9 s per call still on
the NumPy tier after 33 s (the compile processes, one per worker, compete with the tasks for
the cores), 33.5 s in all, 2 compile processes left. Hence jitad.dask.setup's compile="eager".
"""
import argparse
import os
import sys
import tempfile
import time

if __package__:
    from . import _common  # noqa: F401 -- the benchmarks' disk cache and compile="eager"
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from asv_benchmarks import _common  # noqa: F401 -- the benchmarks' disk cache and compile="eager"

import numpy as np  # noqa: E402

import jitad  # noqa: E402
from jitad.pytrees import tree_leaves  # noqa: E402

N_SETS, N_CHUNKS, ROWS = 64, 16, 128
WIDTHS = (64, 256, 256, 10)


def mlp_loss(params, inputs, targets):
    for W, b in params:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return np.mean((outputs - targets) ** 2)


def square(x):
    return np.sum(x ** 2)


def mlp_params(seed, widths=WIDTHS):
    r = np.random.default_rng(seed)
    return [(r.normal(size=(m, n)) / np.sqrt(m), r.normal(size=n) * 0.1) for m, n in zip(widths[:-1], widths[1:])]


def mlp_data(rows, widths=WIDTHS, seed=100):
    r = np.random.default_rng(seed)
    return r.normal(size=(rows, widths[0])), r.normal(size=(rows, widths[-1]))


def start_cluster(**env):
    import logging

    import distributed
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                       silence_logs=logging.ERROR, env=env or None)
    return cluster, distributed.Client(cluster, set_as_default=False)


def need_dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise NotImplementedError('dask[distributed] is not installed (pip install "jitad[dask]")')
    import jitad.dask
    return jitad.dask


class _Cluster:
    timeout = 600

    def setup(self):
        self.jd = need_dask()
        self.cluster, self.client = start_cluster()
        self.params_list = [mlp_params(seed) for seed in range(N_SETS)]
        self.X, self.T = mlp_data(ROWS * N_CHUNKS)
        self.chunks = [(self.X[k * ROWS:(k + 1) * ROWS], self.T[k * ROWS:(k + 1) * ROWS]) for k in range(N_CHUNKS)]
        self.grad = jitad.grad(mlp_loss)
        self.value_and_grad = jitad.value_and_grad(mlp_loss)
        self.points = [np.full(3, float(k)) for k in range(N_SETS)]
        # warm: every kernel compiled here and loaded by both workers
        self.serial_map_grad(), self.serial_grad_sum(), self.dask_map_grad(), self.dask_grad_sum()
        self.dask_overhead()

    def teardown(self):
        self.client.close()
        self.cluster.close()

    def serial_map_grad(self):
        return [self.grad(p, self.X[:ROWS], self.T[:ROWS]) for p in self.params_list]

    def dask_map_grad(self):
        return self.jd.map_grad(mlp_loss, self.params_list, self.X[:ROWS], self.T[:ROWS], client=self.client)

    def serial_grad_sum(self):
        return self.value_and_grad(self.params_list[0], self.X, self.T)

    def dask_grad_sum(self):
        return self.jd.grad_sum(mlp_loss, self.params_list[0], self.chunks, client=self.client,
                                reduce="mean", value=True)

    def dask_overhead(self):
        return self.jd.map_grad(square, self.points, client=self.client, batch_size=1)


class DaskMapGrad(_Cluster):
    def time_serial(self):
        self.serial_map_grad()

    def time_two_workers(self):
        self.dask_map_grad()


class DaskGradSum(_Cluster):
    def time_one_process(self):
        self.serial_grad_sum()

    def time_two_workers(self):
        self.dask_grad_sum()


class DaskOverhead(_Cluster):
    def time_64_trivial_tasks(self):
        self.dask_overhead()


def best_of(rounds, fns):
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(ts) for name, ts in times.items()}


def compile_modes(calls=6):
    """Seconds of each of the first `calls` map_grad calls of a new MLP shape (fresh cache, fresh
    cluster) with the workers compiling "eager" vs "background", and the processes they left."""
    import subprocess
    jd = need_dask()
    widths = (32, 128, 128, 4)  # a shape the warm benchmarks did not compile
    params_list = [mlp_params(seed, widths) for seed in range(N_SETS)]
    X, T = mlp_data(ROWS, widths)
    for mode in ("eager", "background"):
        folder = tempfile.mkdtemp(prefix=f"jitad-dask-{mode}-")
        cluster, client = start_cluster(JITAD_CACHE_DIR=folder)
        try:
            jd.setup(client, cache_dir=folder, compile=mode)
            seconds = []
            for _ in range(calls):
                t0 = time.perf_counter()
                jd.map_grad(mlp_loss, params_list, X, T, client=client)
                seconds.append(time.perf_counter() - t0)
            info = jd.cache_info(client)
            pids = client.run(os.getpid)
            children = sum(int(subprocess.run(["pgrep", "-c", "-P", str(pid)], capture_output=True,
                                               text=True).stdout.strip() or 0) for pid in pids.values())
        finally:
            client.close()
            cluster.close()
        summed = {k: sum(i[k] for i in info.values()) for k in ("numba_compilations", "disk_loads",
                                                                 "numpy_tier_calls", "tier_switches")}
        print(f"compile={mode:10s} calls: " + " ".join(f"{s:.2f}" for s in seconds)
              + f" s; total {sum(seconds):.2f} s; workers' child processes after: {children}; {summed}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--compile-modes", action="store_true")
    opts = parser.parse_args(argv)
    if opts.compile_modes:
        compile_modes()
        return
    bench = _Cluster()
    bench.setup()
    try:
        ref, got = bench.serial_map_grad(), bench.dask_map_grad()
        diff = max(np.max(np.abs(a - b)) for g, r in zip(got, ref)
                   for a, b in zip(tree_leaves(g), tree_leaves(r)))
        t = best_of(opts.rounds, {"serial": bench.serial_map_grad, "map_grad": bench.dask_map_grad,
                                  "one": bench.serial_grad_sum, "grad_sum": bench.dask_grad_sum,
                                  "overhead": bench.dask_overhead})
    finally:
        bench.teardown()
    ms = 1e3
    print(f"| {N_SETS} MLP gradients {list(WIDTHS)}, batch {ROWS} | serial loop | map_grad, 2 workers | ratio |")
    print("|---|---|---|---|")
    print(f"| wall time | {t['serial'] * ms:.1f} ms | {t['map_grad'] * ms:.1f} ms | {t['serial'] / t['map_grad']:.2f}x |")
    print(f"| grad_sum, mean over {N_CHUNKS} chunks of {ROWS} rows | one call on all rows | grad_sum, 2 workers | |")
    print(f"| wall time | {t['one'] * ms:.1f} ms | {t['grad_sum'] * ms:.1f} ms | {t['one'] / t['grad_sum']:.2f}x |")
    print(f"per-task overhead (map_grad of sum(x**2), {N_SETS} tasks of one point, 2 workers): "
          f"{t['overhead'] / N_SETS * ms:.2f} ms per task ({t['overhead'] * ms:.1f} ms in all); "
          f"map_grad vs serial gradients differ by at most {diff:.1e}")


if __name__ == "__main__":
    # run as the module asv_benchmarks.bench_dask, so the workers import mlp_loss by reference
    from asv_benchmarks.bench_dask import main as module_main
    module_main()
