"""`python -m jitad modes`: forward, reverse, mixed and auto Jacobians timed side by side.

Reproduces the lecture's figure of forward- and reverse-mode time for f(x) = A x with
n = 100 inputs and a growing number m of outputs (and the mirror sweep, m = 100 and n
growing), adds the nonlinear map tanh(A x), and a graph with a narrow waist,
x -> z = B x (2 values) -> tanh(C z), where mixed mode needs 2 + 2 sweeps instead of n.
Each time is the median of repeats with the compiled kernels warm. Prints a table and
writes jacobian_modes.csv and jacobian_modes.png (time vs m and vs n, one line per
mode, auto's choice ringed).

    python -m jitad modes --quick --out /tmp/modes
"""
import argparse
import csv
import functools
import os
import statistics
import sys
import time

import numpy as np

SIZES = (10, 30, 100, 300, 1000)
QUICK_SIZES = (10, 100)
FIXED = 100  # the other dimension in each sweep
MODES = ("forward", "reverse", "mixed", "auto")
COLORS = {"forward": "tab:blue", "reverse": "tab:orange", "mixed": "tab:green", "auto": "black"}


def _points(sizes, seed):
    """(function, n, m, f, x) for each point of the sweep, each (function, n, m) once."""
    rng = np.random.default_rng(seed)
    points = []
    shapes = [(FIXED, m) for m in sizes] + [(n, FIXED) for n in sizes if n != FIXED]
    for name in ("A x", "tanh(A x)"):
        for n, m in shapes:
            A = rng.standard_normal((m, n)) / np.sqrt(n)
            f = (lambda A: lambda x: A @ x)(A) if name == "A x" else (lambda A: lambda x: np.tanh(A @ x))(A)
            points.append((name, n, m, f, rng.standard_normal(n)))
    for n in sizes:
        B = rng.standard_normal((2, n)) / np.sqrt(n)
        C = rng.standard_normal((n, 2))
        points.append(("bottleneck", n, n, (lambda B, C: lambda x: np.tanh(C @ (B @ x)))(B, C),
                       rng.standard_normal(n)))
    return points


def _batch_size(call, min_batch):
    """How many calls one timed batch makes, so that it lasts at least `min_batch` s (timeit's autorange)."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            call()
        elapsed = time.perf_counter() - start
        if elapsed >= min_batch or number >= 1000:
            return number
        number *= 2 if elapsed <= 0 else max(2, min(10, int(min_batch / elapsed) + 1))


def _median_times(calls, repeats, min_batch):
    """Median seconds per call of each entry of `calls`; repeats go round-robin over the
    entries, so a burst of load elsewhere on the machine hits them alike."""
    numbers = {key: _batch_size(call, min_batch) for key, call in calls.items()}
    times = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            start = time.perf_counter()
            for _ in range(numbers[key]):
                call()
            times[key].append((time.perf_counter() - start) / numbers[key])
    return {key: statistics.median(t) for key, t in times.items()}


def run(sizes, repeats, min_batch, seed=0, progress=True):
    """Time every mode at every point; returns one dict per (point, mode)."""
    from tqdm import tqdm

    from jitad import jacobian
    points = _points(sizes, seed)
    rows = []
    bar = tqdm(points, desc="timing Jacobians", unit="point", file=sys.stderr, disable=not progress)
    for name, n, m, f, x in bar:
        bar.set_postfix_str(f"{name} n={n} m={m}")
        auto_choice = jacobian(f).plan(x).mode
        jacobians = {mode: jacobian(f, mode=mode) for mode in MODES}
        results = {mode: J(x) for mode, J in jacobians.items()}  # traces and compiles: timing starts warm
        times = _median_times({mode: functools.partial(J, x) for mode, J in jacobians.items()}, repeats, min_batch)
        fastest = min(("forward", "reverse", "mixed"), key=times.get)
        error = max(float(np.max(np.abs(results[mode] - results["forward"]))) for mode in MODES)
        for mode in MODES:
            rows.append({"function": name, "n": n, "m": m, "mode": mode, "median_s": times[mode],
                         "auto_choice": auto_choice, "fastest": fastest,
                         "auto_over_fastest": times["auto"] / times[fastest], "max_abs_diff": error})
    return rows


def _table(rows):
    by_point = {}
    for r in rows:
        by_point.setdefault((r["function"], r["n"], r["m"]), {})[r["mode"]] = r
    header = f"{'function':<11}{'n':>6}{'m':>6}" + "".join(f"{mode:>11}" for mode in MODES) + \
        f"{'auto picks':>12}{'fastest':>9}{'auto/fastest':>14}"
    lines = [header, "-" * len(header)]
    for (name, n, m), modes in by_point.items():
        first = modes["auto"]
        lines.append(f"{name:<11}{n:>6}{m:>6}" + "".join(f"{_ms(modes[mode]['median_s']):>11}" for mode in MODES)
                     + f"{first['auto_choice']:>12}{first['fastest']:>9}{first['auto_over_fastest']:>13.2f}x")
    return "\n".join(lines)


def _ms(seconds):
    return f"{seconds * 1e3:.3g} ms"


def _write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _plot(rows, path, backend_name):
    from matplotlib.figure import Figure  # object-oriented Agg: no pyplot, no global backend

    fig = Figure(figsize=(15, 8.5), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    panels = [(grid[0, 0], "A x", "m", FIXED), (grid[0, 1], "A x", "n", FIXED),
              (grid[1, 0], "tanh(A x)", "m", FIXED), (grid[1, 1], "tanh(A x)", "n", FIXED),
              (grid[:, 2], "bottleneck", "n", None)]
    for cell, name, axis, fixed in panels:
        ax = fig.add_subplot(cell)
        other = "n" if axis == "m" else "m"
        picked = [r for r in rows if r["function"] == name and (fixed is None or r[other] == fixed)]
        xs = sorted({r[axis] for r in picked})
        for mode in MODES:
            t = [next(r["median_s"] for r in picked if r[axis] == v and r["mode"] == mode) for v in xs]
            style = dict(linestyle="--", marker="x") if mode == "auto" else dict(marker="o")
            ax.plot(xs, t, color=COLORS[mode], label=mode, **style)
        chosen = [next(r for r in picked if r[axis] == v and r["mode"] == r["auto_choice"]) for v in xs]
        ax.scatter([r[axis] for r in chosen], [r["median_s"] for r in chosen], s=180, facecolors="none",
                   edgecolors="red", linewidths=1.5, label="auto's choice", zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        if name == "bottleneck":
            ax.set_title("bottleneck x -> Bx (2) -> tanh(C Bx), n = m")
            ax.set_xlabel("n = m")
        else:
            ax.set_title(f"{name}: {'n' if axis == 'm' else 'm'} = {fixed}, {axis} varies")
            ax.set_xlabel(axis)
        ax.set_ylabel("time per Jacobian (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"jitad Jacobian modes ({backend_name} backend; median of repeats, kernels warm)")
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jitad modes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} and fewer repeats")
    parser.add_argument("--sizes", help=f"comma-separated sizes to sweep (default {','.join(map(str, SIZES))})")
    parser.add_argument("--repeats", type=int, help="timed repeats per mode (default 7, quick 3)")
    parser.add_argument("--out", default=".", help="folder for jacobian_modes.csv and .png (default: .)")
    parser.add_argument("--backend", choices=("numba", "reference"), help="jitad backend (default: jitad's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    from jitad import config
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else QUICK_SIZES if args.quick else SIZES
    repeats = args.repeats or (3 if args.quick else 7)
    saved = config.backend, config.compile
    if args.backend:
        config.backend = args.backend
    config.compile = "eager"  # time the compiled kernels, not the NumPy tier while they compile
    try:
        backend_name = config.backend
        rows = run(sizes, max(1, repeats), 0.002 if args.quick else 0.02, args.seed, not args.no_progress)
    finally:
        config.backend, config.compile = saved
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "jacobian_modes.csv")
    png_path = os.path.join(args.out, "jacobian_modes.png")
    print(f"Jacobian of f: R^n -> R^m, median time per call ({backend_name} backend, kernels warm)")
    print(_table(rows))
    _write_csv(rows, csv_path)
    _plot(rows, png_path, backend_name)
    print(f"wrote {csv_path}\nwrote {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
