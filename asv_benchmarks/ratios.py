"""The ratios the team quotes: the asv cases timed side by side in ONE process.

    python asv_benchmarks/ratios.py [--quick] [--only SUBSTRING ...] [--threads one|pinned|default]

For each row (a case), every implementation is prepared (compiled, warm), then the
implementations are timed in interleaved rounds (the order rotates each round) and the
median per-call time of the rounds is kept, so a noisy neighbour slows all of them
alike. First calls are timed in fresh `python` subprocesses. The last column of each
table says whether the issue's target is met ("ok") or not ("MISS").

Threads (asv_benchmarks/__init__.py): by default every peer is given one BLAS/XLA thread, except
the groups whose targets are stated for each peer's default threads (issue 13's), which run in a
child process with nothing set. `--threads pinned` pins the whole run to one CPU (the only way to
keep JAX 0.10 on one core); `--threads default` runs every group with default threads.
"""
import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

if __package__:
    from . import _cases, bench_backend, bench_cpu_targets, bench_jacobians, bench_linalg
    from ._common import jax_or_none
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from asv_benchmarks import _cases, bench_backend, bench_cpu_targets, bench_jacobians, bench_linalg
    from asv_benchmarks._common import jax_or_none

import jitad  # noqa: E402


class Ratio:
    """`num` over the fastest of `dens` (or its inverse with invert=True), with an optional target."""

    def __init__(self, label, num, dens, target=None, target_text="", invert=False):
        self.label, self.num, self.dens = label, num, tuple(dens)
        self.target, self.target_text, self.invert = target, target_text, invert

    def value(self, times):
        if self.num not in times or not any(d in times for d in self.dens):
            return None
        den = min(times[d] for d in self.dens if d in times)
        return den / times[self.num] if self.invert else times[self.num] / den


class Group:
    """`limit`: optional (impl, seconds) the impl's time per call must not exceed."""

    def __init__(self, title, rows, impls, prepare, ratios, note=None, limit=None, threads=None):
        self.title, self.rows, self.impls = title, rows, impls
        self.prepare, self.ratios, self.note, self.limit = prepare, ratios, note, limit
        self.threads = threads  # "default": timed with every peer's default threads unless --threads says


def _batch(call, number):
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        return time.perf_counter() - t0
    finally:
        if gc_was:
            gc.enable()


def measure(calls, rounds, min_batch):
    """Median seconds per call of each callable, timed in interleaved rounds."""
    numbers = {}
    for name, call in calls.items():
        number = 1
        while True:
            t = _batch(call, number)
            if t >= min_batch or number >= 10 ** 6:
                break
            number = min(10 ** 6, max(2 * number, int(number * 1.2 * min_batch / max(t, 1e-9))))
        numbers[name] = number
    samples = {name: [] for name in calls}
    order = list(calls)
    for r in range(rounds):
        for name in order[r % len(order):] + order[:r % len(order)]:
            samples[name].append(_batch(calls[name], numbers[name]) / numbers[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def fmt_time(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def print_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


_APART = """
import json, sys
sys.path.insert(0, {root!r})
from asv_benchmarks import ratios
group = next(g for g in ratios.groups() if g.title == {title!r})
try:
    call = group.prepare({row!r}, {impl!r})
except NotImplementedError as error:
    print("ratios.py apart: " + json.dumps(str(error).splitlines()[0][:80]))
else:
    print("ratios.py apart: " + json.dumps(ratios.measure({{"x": call}}, {rounds}, {min_batch})["x"]))
"""


def measure_apart(group, row, rounds, min_batch, processes):
    """Median seconds per call of each implementation of `row`, each timed in processes of its own
    (`processes` per implementation, alternating), and the skipped ones' reasons. With default
    threads, peers in one process slow each other (one's idle threads spinning on the cores the
    other needs, a thread pool gone to sleep between batches): JAX's MLP measured 3.0-3.6 ms
    interleaved with jitad in one process, 2.0-2.35 ms alone."""
    samples, skipped = {impl: [] for impl in group.impls}, {}
    for p in range(processes):
        order = group.impls[p % len(group.impls):] + group.impls[:p % len(group.impls)]
        for impl in order:
            if impl in skipped:
                continue
            code = _APART.format(root=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                 title=group.title, row=row, impl=impl, rounds=rounds, min_batch=min_batch)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            lines = [line for line in out.stdout.splitlines() if line.startswith("ratios.py apart: ")]
            if out.returncode or not lines:
                skipped[impl] = f"failed: {out.stderr.strip().splitlines()[-1][:80] if out.stderr.strip() else out.returncode}"
                continue
            value = json.loads(lines[-1][len("ratios.py apart: "):])
            if isinstance(value, str):
                skipped[impl] = value
            else:
                samples[impl].append(value)
    return {impl: statistics.median(v) for impl, v in samples.items() if v}, list(skipped.items())


def run_group(group, rounds, min_batch, processes=3):
    print(f"\n## {group.title}")
    from asv_benchmarks import THREADS
    if THREADS == "default":
        print(f"(each implementation timed in processes of its own: the median of {processes} processes, "
              "alternating, each the median of its interleaved rounds)")
    header = ["case"] + group.impls + [r.label for r in group.ratios] + (["note"] if group.note else []) + \
        (["target"] if group.limit else [])
    table, misses = [], []
    for row in group.rows:
        calls, skipped = {}, []
        if THREADS == "default":
            times, skipped = measure_apart(group, row, rounds, min_batch, processes)
        else:
            for impl in group.impls:
                try:
                    calls[impl] = group.prepare(row, impl)
                except NotImplementedError as error:
                    skipped.append((impl, str(error).splitlines()[0][:80]))
            times = measure(calls, rounds, min_batch) if calls else {}
        cells = [row] + [fmt_time(times.get(impl)) for impl in group.impls]
        for ratio in group.ratios:
            v = ratio.value(times)
            if v is None:
                cells.append("-")
                continue
            cell = f"{v:.2f}"
            if ratio.target is not None and ratio.target(row):
                met = ratio.target(row)(v)
                cell += f" {'ok' if met else 'MISS'}({ratio.target_text})"
                if not met:
                    misses.append(f"{row}: {ratio.label} = {v:.2f}, target {ratio.target_text}")
            cells.append(cell)
        if group.note:
            cells.append(group.note(row))
        if group.limit and group.limit[0] in times:
            impl, seconds = group.limit
            met = times[impl] <= seconds
            cells.append(f"{'ok' if met else 'MISS'}({impl} <= {fmt_time(seconds)})")
            if not met:
                misses.append(f"{row}: {impl} = {fmt_time(times[impl])}, target <= {fmt_time(seconds)}")
        table.append(cells)
        for impl, why in skipped:
            if not impl.startswith("jax") or "JAX is not installed" not in why:
                print(f"  (skipped {row}/{impl}: {why})")
        del calls
    print_table(header, table)
    return misses


def _always(test):
    return lambda row: test


# --- groups ------------------------------------------------------------------------------------------------
def groups():
    vg_target = {"elementwise_1e6", "rosenbrock_1e6"}
    value_and_grad = Group(
        "value_and_grad (issue 3): time per call; ratios are jitad value_and_grad over the peer",
        list(_cases.CASES), _cases.IMPLS, _cases.prepare,
        [Ratio("jitad/numpy_fwd", "jitad_value_and_grad", ["numpy_forward"],
               lambda row: (lambda v: v <= 1.5) if row in vg_target else (lambda v: v < 1.0) if row == "mds" else None,
               "<=1.5 at 1e6; MDS <1"),
         Ratio("jitad/handwritten", "jitad_value_and_grad", ["numba_handwritten"], _always(lambda v: v <= 1.3), "<=1.3"),
         Ratio("jitad/jax", "jitad_value_and_grad", ["jax_value_and_grad"])])
    overhead = Group(
        "call overhead (issue 3): grad(lambda a, b: a*b + np.sin(a))(2.0, 5.0)",
        ["python floats"], ["jitad", "jitad_new_lambda", "jax"],
        lambda row, impl: _overhead(impl),
        [Ratio("jitad/jax", "jitad", ["jax"])],
        limit=("jitad", 3e-6))
    sweep_modes = bench_jacobians.MODES + ["copy_A", "jax_jacfwd", "jax_jacrev"]
    sweep = Group(
        "Jacobian of f(x) = A x along the sweep (issue 4)",
        bench_jacobians.SWEEP, sweep_modes, bench_jacobians.prepare_sweep,
        [Ratio("auto/best(fwd,rev)", "auto", ["forward", "reverse"], _always(lambda v: v <= 1.2), "<=1.2"),
         Ratio("auto/copy_A", "auto", ["copy_A"]),
         Ratio("auto/best(jax)", "auto", ["jax_jacfwd", "jax_jacrev"])],
        note=_auto_mode)
    bottleneck = Group(
        "bottleneck x in R^1000 -> B x in R^2 -> tanh(C z) in R^1000 (issue 4)",
        ["n=m=1000"], bench_jacobians.MODES + ["jax_jacfwd", "jax_jacrev"],
        lambda row, impl: bench_jacobians.prepare_bottleneck(impl),
        [Ratio("best(fwd,rev)/mixed", "mixed", ["forward", "reverse"], _always(lambda v: v >= 10), ">=10", invert=True),
         Ratio("auto/mixed", "auto", ["mixed"], _always(lambda v: v <= 1.2), "<=1.2"),
         Ratio("mixed/best(jax)", "mixed", ["jax_jacfwd", "jax_jacrev"])])
    floor = Group(
        "jacfwd / jacrev of A x against copying A (issue 4)",
        bench_jacobians.FLOOR, ["jitad", "copy_A", "jax"], bench_jacobians.prepare_floor,
        [Ratio("jitad/copy_A", "jitad", ["copy_A"], _always(lambda v: v <= 3), "<=3"),
         Ratio("jitad/jax", "jitad", ["jax"])])
    hessian = Group(
        "Hessian of Rosenbrock, n = 100 (issue 4)",
        ["n=100"], ["jitad_hessian", "jax_hessian", "numpy_forward"],
        lambda row, impl: bench_jacobians.prepare_hessian(impl),
        [Ratio("jitad/jax", "jitad_hessian", ["jax_hessian"]),
         Ratio("jitad/numpy_fwd", "jitad_hessian", ["numpy_forward"])])
    hvp = Group(
        "Hessian-vector product of Rosenbrock, n = 1e5 (issue 4)",
        ["n=1e5"], ["jitad_hvp", "jax_hvp", "jitad_value_and_grad", "numpy_forward"],
        lambda row, impl: bench_jacobians.prepare_hvp(impl),
        [Ratio("jitad/jax", "jitad_hvp", ["jax_hvp"]),
         Ratio("hvp/value_and_grad", "jitad_hvp", ["jitad_value_and_grad"]),
         Ratio("hvp/numpy_fwd", "jitad_hvp", ["numpy_forward"])])
    trace_inv = Group(
        "grad of tr(A X^-1 B), n = 200 (issue 5)",
        ["n=200"], ["numpy_forward", "jitad_grad", "jitad_value_and_grad", "numpy_handwritten", "jax_grad"],
        lambda row, impl: bench_linalg.prepare_trace_inv(impl),
        [Ratio("grad/numpy_fwd", "jitad_grad", ["numpy_forward"], _always(lambda v: v <= 3), "<=3"),
         Ratio("grad/handwritten", "jitad_grad", ["numpy_handwritten"]),
         Ratio("grad/jax", "jitad_grad", ["jax_grad"])])
    solve = Group(
        "grad of 0.5|solve(A, b)|^2 w.r.t. (A, b), n = 500 (issue 5)",
        ["n=500"], ["numpy_solve", "numpy_forward", "jitad_grad", "jitad_value_and_grad", "scipy_handwritten", "jax_grad"],
        lambda row, impl: bench_linalg.prepare_solve(impl),
        [Ratio("grad/one_solve", "jitad_grad", ["numpy_solve"], _always(lambda v: v <= 2.5), "<=2.5"),
         Ratio("grad/handwritten", "jitad_grad", ["scipy_handwritten"]),
         Ratio("grad/jax", "jitad_grad", ["jax_grad"])])
    cpu_targets = Group(
        "issue 13 targets: jitad against JAX's jit, each with its default threads",
        bench_cpu_targets.ROWS, bench_cpu_targets.IMPLS, bench_cpu_targets.prepare,
        [Ratio("jitad/jax", "jitad", ["jax"], _always(lambda v: v <= 0.8), "<=0.8")],
        threads="default")
    return [value_and_grad, overhead, sweep, bottleneck, floor, hessian, hvp, trace_inv, solve, cpu_targets]


def _overhead(impl):
    bench = bench_backend.CallOverhead()
    bench.setup(impl)
    return lambda: bench.g(2.0, 5.0)


def _auto_mode(point):
    if not hasattr(jitad, "jacobian"):
        return ""
    A, x = bench_jacobians._linear(point)
    return "auto picks " + jitad.jacobian(lambda x: A @ x).plan(x).mode


# --- first calls in fresh processes, and new sizes -------------------------------------------------
def _subprocess_first_call(case, fresh, impl="jitad"):
    stmt, setup = bench_backend._child(case, fresh, impl)
    code = setup + "\nimport time\nt0 = time.perf_counter()\n" + stmt + \
        "\nt1 = time.perf_counter()\nprint(json.dumps([t1 - t0, jitad.cache_info()]))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, info = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, info


def first_calls(rounds):
    print("\n## first value_and_grad call in a fresh process, after `import jitad` (issue 3)")
    print("cold: fresh empty JITAD_CACHE_DIR (trace + codegen + Numba compile); "
          "warm: populated disk cache (trace + load). Target: warm MLP <= 0.3 s, no compilation.\n"
          "handwritten warm: first call of the cached hand-written @njit kernel (Numba's own start-up).")
    table, misses = [], []
    for case in bench_backend.FIRST_CALL_CASES:
        bench_backend._populate(case)
        cold, warm, warm_compiles, hand = [], [], [], []
        for _ in range(rounds):
            cold.append(_subprocess_first_call(case, True)[0])
            seconds, info = _subprocess_first_call(case, False)
            warm.append(seconds)
            warm_compiles.append(info["numba_compilations"])
            hand.append(_subprocess_first_call(case, False, "handwritten")[0])
        w = statistics.median(warm)
        cells = [case, fmt_time(statistics.median(cold)), fmt_time(w), max(warm_compiles),
                 fmt_time(statistics.median(hand))]
        if case == "mlp":
            met = w <= 0.3 and max(warm_compiles) == 0
            cells.append("ok" if met else "MISS")
            if not met:
                misses.append(f"first call mlp (warm disk) = {w:.3f} s, {max(warm_compiles)} compilations; target <= 0.3 s, 0")
        else:
            cells.append("ok" if max(warm_compiles) == 0 else "MISS")
        table.append(cells)
    code = "import time; t0 = time.perf_counter(); import jitad; print(time.perf_counter() - t0)"
    imports = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(rounds)]
    print_table(["case", "cold", "warm disk", "warm numba compilations", "handwritten warm", "target"], table)
    print(f"(import jitad in a fresh process: {fmt_time(statistics.median(imports))}, not included above)")
    return misses


def new_sizes():
    print("\n## a new array size after a warm call: Numba compilations (issue 3; target 0)")
    table, misses = [], []
    for case, size in _cases.RESIZED.items():
        bench = bench_backend.NewSize()
        bench.setup(case)
        n = bench.track_new_size_numba_compilations(case)
        table.append([case, size, n, "ok" if n == 0 else "MISS"])
        if n:
            misses.append(f"new size {case}: {n} Numba compilations")
    print_table(["case", "new size", "numba compilations", "target"], table)
    return misses


MISSES = "ratios.py child misses: "


def run_group_in_child(group, opts):
    """Run `group` in a fresh `python ratios.py` with the thread variables this package set removed."""
    from asv_benchmarks import SET_HERE
    env = {k: v for k, v in os.environ.items() if k not in SET_HERE}
    env["JITAD_BENCH_THREADS"] = group.threads
    argv = [sys.executable, os.path.abspath(__file__), "--child", "--only", group.title] + \
        (["--quick"] if opts.quick else [])
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode:
        print(out.stdout, out.stderr, sep="\n")
        return [f"{group.title}: the child process failed ({out.returncode})"]
    lines = out.stdout.splitlines()
    misses = json.loads(next(line for line in lines if line.startswith(MISSES))[len(MISSES):])
    start = next(i for i, line in enumerate(lines) if line.startswith("## "))
    print()
    print(f"(in a child process with every peer's default threads: "
          f"{lines[0].split(';')[-1].strip()})")
    print("\n".join(line for line in lines[start:] if not line.startswith(MISSES)).rstrip())
    return misses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter batches")
    parser.add_argument("--only", nargs="*", default=None, help="run only groups whose title contains one of these")
    parser.add_argument("--threads", choices=["one", "pinned", "default"], default=None,
                        help="one BLAS/XLA thread per peer (default), the whole run pinned to one CPU, "
                             "or every peer's default threads for every group")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    from asv_benchmarks import THREADS
    if opts.threads is not None and opts.threads != THREADS:
        # the thread variables act only before NumPy is imported: run again with them set
        from asv_benchmarks import SET_HERE
        env = {k: v for k, v in os.environ.items() if k not in SET_HERE}
        env["JITAD_BENCH_THREADS"] = opts.threads
        sys.exit(subprocess.run([sys.executable, os.path.abspath(__file__)] + (argv or sys.argv[1:]),
                                env=env).returncode)
    rounds, min_batch, sub_rounds = (5, 0.01, 1) if opts.quick else (15, 0.05, 3)
    import numba
    import numpy as np
    jax = jax_or_none()
    print(f"jitad {jitad.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
          f"jax {'(not installed)' if jax is None else jax[0].__version__}; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"JITAD_CACHE_DIR={os.environ.get('JITAD_CACHE_DIR')}, threads: {THREADS}"
          + (f" (pinned to CPU {sorted(os.sched_getaffinity(0))})" if THREADS == "pinned" else ""))
    print(f"{rounds} interleaved rounds, batches of >= {min_batch * 1e3:.0f} ms, median per call")
    misses = []
    selected = [g for g in groups() if opts.only is None or any(s in g.title for s in opts.only)]
    for group in selected:
        if group.threads and opts.threads is None and group.threads != THREADS and not opts.child:
            misses += run_group_in_child(group, opts)
        else:
            misses += run_group(group, rounds, min_batch, 1 if opts.quick else 3)
    if opts.child:
        print(MISSES + json.dumps(misses))
        return
    if opts.only is None or any(s in "first call" for s in opts.only):
        misses += first_calls(sub_rounds)
    if opts.only is None or any(s in "new size" for s in opts.only):
        misses += new_sizes()
    print("\n## targets missed" if misses else "\n## all targets met")
    for m in misses:
        print("  -", m)


if __name__ == "__main__":
    main()
