"""Issue 13, item 3: threads. The "parallel" target (numba.prange over chunks of a large loop
nest's outer loop) against the default "cpu" target, at 1 and all threads; what parfors costs in
compile time; where the size threshold (codegen.PARALLEL_ELEMENTS) comes from; and whether user
threads overlap in one kernel (kernels are nogil).

    python -m asv_benchmarks.bench_threads [--quick]

prints every table side by side in one process (compile times in fresh processes).
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from . import _cases
from ._common import ROOT

import jitad

CASES = ["elementwise_1e6", "rosenbrock_1e6", "mlp"]
# (target, jitad.config.threads): the cpu target ignores the thread count
RUNS = [("cpu", 1), ("parallel", 1), ("parallel", 2)]


def _value_and_grad(case_name, target):
    case = _cases.CASES[case_name]
    args = case.args()
    vg = jitad.value_and_grad(case.make(np), target=target)
    vg(*args)
    return lambda: vg(*args)


class TimeParallel:
    """value_and_grad at n = 1e6 (elementwise, rosenbrock) and the MLP, per target and threads."""
    params = (CASES, [f"{t}-{n}" for t, n in RUNS])
    param_names = ["case", "target-threads"]
    timeout = 600

    def setup(self, case, run):
        target, threads = run.rsplit("-", 1)
        if int(threads) > jitad.config.threads:
            raise NotImplementedError(f"this machine has {jitad.config.threads} threads")
        self.saved = jitad.config.threads
        jitad.config.threads = int(threads)
        self.call = _value_and_grad(case, target)

    def teardown(self, case, run):
        jitad.config.threads = self.saved

    def time_value_and_grad(self, case, run):
        self.call()


def overlap(call, workers=2, repeat=5):
    """Wall time of `workers` Python threads each making one call, over the time of one call
    (best of `repeat`): 1.0 when they run at the same time (nogil), `workers` when serialised."""
    def best(fn):
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    def together():
        threads = [threading.Thread(target=call) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return best(together) / best(call)


def busy_cores(call, workers=2):
    """CPU time over wall time of `workers` Python threads each making one call: at most 1.0 if the
    GIL serialised them, up to `workers` when they run at once (and the machine has the cores)."""
    threads = [threading.Thread(target=call) for _ in range(workers)]
    wall, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


class TrackNogil:
    """Two user threads calling one target-"cpu" kernel (elementwise value_and_grad, n = 1e6) at
    once: their wall time over one call's (1.0: they overlap; 2.0: one waits for the other)."""
    unit = "ratio"
    timeout = 300

    def setup(self):
        self.call = _value_and_grad("elementwise_1e6", "cpu")

    def track_two_threads_over_one(self):
        return overlap(self.call)


_COMPILE = """
import json, os, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import jitad
from asv_benchmarks import _cases
import numba  # both targets import Numba: not part of the compile
from jitad.backend import kernels  # nor loading the helpers from Numba's cache
case = _cases.CASES[{case!r}]
args = case.args()
vg = jitad.value_and_grad(case.make(np), target={target!r})
wall, cpu = time.perf_counter(), time.process_time()
vg(*args)
print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))
"""


def compile_seconds(case, target):
    """(wall, CPU) seconds of the first call (trace, codegen, Numba compile, call) of the case's
    value_and_grad on `target`, in a fresh process with an empty jitad cache ("eager")."""
    env = dict(os.environ, JITAD_CACHE_DIR=tempfile.mkdtemp(prefix="jitad-threads-"), JITAD_COMPILE="eager")
    out = subprocess.run([sys.executable, "-c", _COMPILE.format(root=ROOT, case=case, target=target)],
                         env=env, capture_output=True, text=True, timeout=600, check=True)
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


class TrackCompile:
    """CPU seconds of the first call (mostly Numba's compile) per target: what parfors adds."""
    params = (CASES, ["cpu", "parallel"])
    param_names = ["case", "target"]
    unit = "seconds"
    timeout = 900
    number = repeat = 1

    def track_first_call_cpu(self, case, target):
        return compile_seconds(case, target)[1]


# --- the threshold: a cheap and an expensive nest, serial and chunked, from 2^12 to 2^20 elements ----
def _cheap(x):
    return np.sum(x * x)


NESTS = {"cheap sum(x*x)": _cheap, "elementwise": _cases.elementwise(np), "rosenbrock": _cases.rosenbrock(np)}


def threshold_table(sizes=tuple(2 ** k for k in range(14, 21)), repeat=15):
    """{(nest, n): (serial seconds, parallel seconds at all threads)} of value_and_grad, every nest
    in the parallel form whatever its size (codegen.PARALLEL_ELEMENTS lowered to 0 meanwhile)."""
    from jitad.backend import codegen
    saved = codegen.PARALLEL_ELEMENTS
    codegen.PARALLEL_ELEMENTS = 0
    try:
        out = {}
        for name, fun in NESTS.items():
            serial, parallel = jitad.value_and_grad(fun, target="cpu"), jitad.value_and_grad(fun, target="parallel")
            for n in sizes:
                x = np.random.default_rng(0).uniform(-1, 1, n)
                calls = {"serial": lambda: serial(x), "parallel": lambda: parallel(x)}
                for call in calls.values():
                    call()
                number = max(1, 2 ** 20 // n // 4)
                best = {k: float("inf") for k in calls}
                for _ in range(repeat):
                    for k, call in calls.items():
                        t0 = time.perf_counter()
                        for _ in range(number):
                            call()
                        best[k] = min(best[k], (time.perf_counter() - t0) / number)
                out[(name, n)] = (best["serial"], best["parallel"])
        return out
    finally:
        codegen.PARALLEL_ELEMENTS = saved


# --- parallel kernels next to OpenBLAS's threads -----------------------------------------------
_MIXED = """
import json, os, statistics, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import jitad
jitad.config.compile = "eager"
from asv_benchmarks import _cases
rng = np.random.default_rng(0)
sizes = [64, 256, 256, 10]
params = [(rng.standard_normal((m, n)) / np.sqrt(m), rng.standard_normal(n)) for m, n in zip(sizes[:-1], sizes[1:])]
X, T = rng.standard_normal((512, 64)), rng.standard_normal((512, 10))
A, B = rng.standard_normal((256, 256)), rng.standard_normal((256, 256))
x = rng.uniform(-1, 1, 2 ** 18)
mlp = {{t: jitad.value_and_grad(_cases.mlp(np), target=t) for t in ("cpu", "auto")}}
elementwise = jitad.value_and_grad(_cases.elementwise(np), target="parallel")
calls = {{"mlp_B512_cpu": lambda: mlp["cpu"](params, X, T), "mlp_B512_auto": lambda: mlp["auto"](params, X, T),
         "matmul_then_parallel_kernel": lambda: (A @ B, elementwise(x)), "matmul": lambda: A @ B,
         "parallel_kernel": lambda: elementwise(x)}}
out = {{}}
for name, call in calls.items():
    call()
    times = []
    for _ in range({repeat}):
        t0 = time.perf_counter()
        for _ in range(10):
            call()
        times.append((time.perf_counter() - t0) / 10)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def mixed_with_blas(policy=None, repeat=7):
    """Seconds per call, in a fresh process where OpenBLAS and jitad have their default threads, of:
    the MLP B = 512 value_and_grad on the cpu and auto targets (auto: parallel loop nests between
    OpenBLAS's products), a 256x256 `A @ B` followed by a parallel kernel, and each alone.
    `policy`: OMP_WAIT_POLICY for the child (None: unset, jitad's own choice)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY",
                        "GOMP_SPINCOUNT", "NUMBA_NUM_THREADS")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", _MIXED.format(root=ROOT, repeat=repeat)], env=env,
                         capture_output=True, text=True, timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class TrackMixedWithBlas:
    """The MLP B = 512 value_and_grad on the default target (a parallel kernel whose loop nests
    alternate with OpenBLAS's products), in a fresh process with default threads, over the same on the
    serial target. GNU OpenMP's spinning idle threads made it 8x; jitad has them wait passively."""
    unit = "ratio"
    timeout = 900
    number = repeat = 1

    def track_auto_over_cpu(self):
        times = mixed_with_blas()
        return times["mlp_B512_auto"] / times["mlp_B512_cpu"]


def _best(call, repeat):
    call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no compile-time table")
    opts = parser.parse_args(argv)
    repeat = 5 if opts.quick else 15
    threads = jitad.config.threads
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{threads} threads available; load average {load:.1f} at start (best of {repeat}, interleaved)")

    print("\nvalue_and_grad, ms per call: target cpu (what jitad.config.threads = 1 runs) | parallel, 1 thread | "
          f"parallel, {threads} threads | speedup of {threads} threads over jitad with 1 thread (cpu; issue 13: "
          ">= 1.7 on elementwise_1e6) | of the parallel form"
          f"'s {threads} threads over its 1")
    for case in CASES:
        calls = {"cpu": _value_and_grad(case, "cpu"), "parallel": _value_and_grad(case, "parallel")}
        best = {}
        for _ in range(repeat):
            for run, n in (("cpu", 1), ("parallel", 1), ("parallel", threads)):
                jitad.config.threads = n
                best[(run, n)] = min(best.get((run, n), float("inf")), _best(calls[run], 1))
        jitad.config.threads = threads
        row = [best[("cpu", 1)], best[("parallel", 1)], best[("parallel", threads)]]
        print(f"  {case:<16}" + "".join(f"{t * 1e3:10.2f}" for t in row) + f"{row[0] / row[2]:10.2f}x"
              f"{row[1] / row[2]:10.2f}x")

    print("\nthreshold: value_and_grad serial | chunked on all threads, us per call (parallel/serial)")
    for (name, n), (serial, parallel) in threshold_table(repeat=repeat).items():
        print(f"  {name:<16} n = 2^{int(np.log2(n)):<3}{serial * 1e6:11.1f}{parallel * 1e6:11.1f}"
              f"{parallel / serial:8.2f}")

    print("\nnext to OpenBLAS's threads, ms per call in a fresh process with default threads: "
          "OMP_WAIT_POLICY unset (jitad sets PASSIVE) | ACTIVE (GNU OpenMP's spinning, before jitad set it)")
    mixed = {policy: mixed_with_blas(policy, repeat=repeat) for policy in (None, "ACTIVE")}
    for name in mixed[None]:
        print(f"  {name:<28}" + "".join(f"{mixed[p][name] * 1e3:10.2f}" for p in (None, "ACTIVE")))

    call = _value_and_grad("elementwise_1e6", "cpu")
    print("\nnogil: two user threads calling one cpu-target kernel (elementwise_1e6): wall time over one "
          f"call's = {overlap(call):.2f} (1.0 overlapped, 2.0 serialised); CPU time over wall time = "
          f"{max(busy_cores(call) for _ in range(repeat)):.2f} (best of {repeat}; <= 1.0 if serialised)")

    if not opts.quick:
        print("\nfirst call (trace + codegen + Numba compile + call) in a fresh process, s: wall / CPU")
        for case in CASES:
            cells = []
            for target in ("cpu", "parallel"):
                wall, cpu = compile_seconds(case, target)
                cells.append(f"{target} {wall:6.2f} / {cpu:5.2f}")
            print(f"  {case:<16}  " + "   ".join(cells))


if __name__ == "__main__":
    main()
