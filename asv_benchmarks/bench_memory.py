"""Reverse mode under a memory budget (issue 12, item 3): the gradient of a 1,000-step tanh
recurrence h <- tanh(W h + x_t), hidden 256, loss sum(h_T ** 2), with respect to W, written with
jitad.scan, its reverse pass

  stored        keeping every step's carry (jitad.config.memory = "store": 1,000 x 2 KiB)
  recompute     memory="recompute": 31 checkpoints, 32-step segments run again (at most 63
                carries held)
  checkpointed  within a budget of 1/10 of those carries' bytes (grad(f, memory=budget); the
                budget counts each stored step's product w @ h too: 1 checkpoint of 500-step
                halves, each with 13 checkpoints of 36-step segments, 172 KiB held)

`peakmem_grad` (asv: the process's peak RSS, which includes Numba and the compiled kernels: the
difference is the part to read) and `time_grad` of both.

    python asv_benchmarks/bench_memory.py [--steps N] [--rounds N]

prints them side by side: per call, the best of interleaved rounds; the peak memory of one call
of the compiled kernel above the memory before it (Linux, a fresh process per form with malloc
returning blocks of >= 64 KiB to the system when freed: the peak RSS is reset through
/proc/self/clear_refs before the call, then read from VmHWM); and of one call on the NumPy
executor (compile="off") by tracemalloc (the arrays NumPy allocates).

Straight-line graphs (`--straight`): grad of a 64-layer tanh chain written out (batch 512, width
64, each layer its own weights, jitad.config.roll_loops = False), with respect to the weights:
stored, recompute, and a budget of 1/4 of the stored values (`StraightLineGrad`).

    python asv_benchmarks/bench_memory.py --straight --rounds 3

Measured 2026-12-02, load average 9-11 (read the ratios):

| 64-layer tanh chain, batch 512, width 64, grad of the weights | stored | recompute | budget 8192 KiB | recompute / stored | budget / stored |
|---|---|---|---|---|---|
| predicted peak of the values held (explain) | 32768 KiB | 5632 KiB | 7680 KiB | 0.17 | 0.23 |
| compiled, per call (best of rounds) | 637 ms | 857 ms | 896 ms | 1.35 | 1.41 |
| compiled, peak RSS of a call above the RSS before it | 16760 KiB | 3012 KiB | 3692 KiB | 0.18 | 0.22 |
| ... less the gradient it returns (2048 KiB) | 14712 KiB | 964 KiB | 1644 KiB | 0.07 | 0.11 |
| NumPy executor, peak of NumPy arrays (tracemalloc) | 35889 KiB | 38795 KiB | 42058 KiB | 1.08 | 1.17 |

Gradients identical. Before the split driver deleted dead values and the gradients were emitted in
the order the sweep makes them, the compiled peaks were 67752 / 98560 / 100164 KiB (recompute held
more than storing). The NumPy executor holds every value of a call until it returns, so the policy
saves nothing there (it only recomputes).

The loop, measured 2026-12-02 on the shared 2-core machine (load average ~5 from other sessions),
`python asv_benchmarks/bench_memory.py --rounds 9`, before this session's changes:

| 1000-step tanh recurrence, hidden 256, grad | stored | recompute | budget 200 KiB | ratios to stored |
|---|---|---|---|---|
| carries held for the reverse pass | 2000 KiB | 126 KiB | 190 KiB | 0.06 / 0.10 |
| compiled, per call | 43.2 ms | 56.4 ms | 53.0 ms | 1.30 / 1.23 |
| compiled, peak RSS of a call | 4372 KiB | 3536 KiB | 3528 KiB | 0.81 / 0.81 |
| NumPy executor, peak of NumPy arrays | 7573 KiB | 6206 KiB | 6131 KiB | 0.82 / 0.81 |

After (this session: the checkpointed passes compute only the cotangents that are read, so no
longer the xs' 2000 KiB; a compiled scan's running sum is its slot of the loop's value; a budget
counts a stored step's product w @ h with its carry, so the budget form takes 3 levels), load 9-11:

| 1000-step tanh recurrence, hidden 256, grad | stored | recompute | budget 200 KiB | ratios to stored |
|---|---|---|---|---|
| bytes held for the reverse pass (carries and stored products) | 4000 KiB | 190 KiB | 172 KiB | 0.05 / 0.04 |
| compiled, per call | 526 ms | 717 ms | 788 ms | 1.36 / 1.50 |
| compiled, peak RSS of a call | 7796 KiB | 1308 KiB | 3040 KiB | 0.17 / 0.39 |
| NumPy executor, peak of NumPy arrays | 8549 KiB | 3394 KiB | 5038 KiB | 0.40 / 0.59 |

(gradients identical; time within the <= 3x target.) The schedule's bytes are within the budget;
a call's peak is not: besides the gradient it returns (W's cotangent, 512 KiB), each level of
checkpoints holds W's running cotangent in its scan's packed value and a copy of it read back
(slice + reshape of the packed value is a loop nest that copies): about 2 x 512 KiB a level, so
the 3-level budget form peaks above the 2-level recompute form. Reading a loop's packed value back
as views would remove those copies.

2026-12-03: a loop's packed value is now read back as views (codegen: a nest that only copies a
contiguous block of a library call's output is `packed[a:b].reshape(...)`). Same command, loaded
host (a fuzzer and the suite running), before -> after: compiled peak RSS of a call stored 7932 ->
4412 KiB, recompute 1480 -> 1476 KiB, budget 2836 -> 3008 KiB (its copies are elsewhere: the
budget form's peak is still above its budget); per call, checkpointed / stored 1.48 -> 1.53.

2026-12-03, later: a checkpointed segment reads its rows of the xs as a view (`dynamic_slice` at
its traced start) instead of gathering them (500 rows = 1000 KiB per outer segment), and the
levels of checkpoints add W's cotangent into one array they lend each other (codegen
`KernelWriter.may_take`) instead of a new sum and a copy per segment. Same command, before ->
after: compiled peak RSS of a call stored 4416 -> 4264-4480 KiB, recompute 1544 -> 448-576 KiB,
budget 3008 -> 576 KiB (the gradient it returns is 512 KiB of it); per call (--rounds 9, both
with jitad's allocator) 48.0 / 61.4 / 67.4 ms -> 45.2 / 57.1 / 62.7 ms, checkpointed / stored
1.41 -> 1.39. The peak runs with jitad's allocator off (JITAD_KEEP_MEMORY=0: it keeps freed
memory on purpose, which hides a call's peak).
"""
import argparse
import gc
import os
import subprocess
import sys
import time
import tracemalloc

if __package__:
    from . import _common  # noqa: F401 -- the benchmarks' disk cache and compile="eager"
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from asv_benchmarks import _common  # noqa: F401 -- the benchmarks' disk cache and compile="eager"

import numpy as np  # noqa: E402

import jitad  # noqa: E402
from jitad.primitives import control  # noqa: E402

HIDDEN, STEPS = 256, 1000
FORMS = ["stored", "recompute", "checkpointed"]
MEMORY = {"stored": "store", "recompute": "recompute"}


def data(steps=STEPS, hidden=HIDDEN):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)
    xs = rng.normal(size=(steps, hidden)) * 0.1
    h0 = np.zeros(hidden)
    return w, xs, h0


def loss(w, xs, h0):
    h, _ = jitad.scan(lambda h, x: (np.tanh(w @ h + x), None), h0, xs)
    return np.sum(h ** 2)


def stored_bytes(steps=STEPS, hidden=HIDDEN):
    """The bytes of every step's carry: what "store" keeps for the reverse pass."""
    return steps * hidden * 8


def grad_of(form, steps=STEPS):
    # a function of its own per form: the two transforms are cached apart anyway (memory is in the key)
    def fn(w, xs, h0):
        return loss(w, xs, h0)
    return jitad.grad(fn, memory=MEMORY.get(form, stored_bytes(steps) // 10))


# --- a straight-line graph: an n-layer tanh chain written out, each layer its own weights ---------
LAYERS, BATCH, WIDTH = 64, 512, 64
CHAIN_BUDGET = 4  # the budget form: a quarter of what storing holds


def chain_data(layers=LAYERS):
    rng = np.random.default_rng(1)
    return [rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH) for _ in range(layers)], rng.normal(size=(BATCH, WIDTH))


def chain_loss(ws, x):
    for w in ws:
        x = np.tanh(x @ w)
    return np.sum(x ** 2)


def chain_stored_bytes(layers=LAYERS):
    """The bytes of the values "store" keeps: each layer's x @ w and tanh of it."""
    return 2 * layers * BATCH * WIDTH * 8


def chain_grad_of(form, layers=LAYERS):
    jitad.config.roll_loops = False  # straight-line: not rolled into a scan

    def fn(ws, x):
        return chain_loss(ws, x)
    return jitad.grad(fn, memory=MEMORY.get(form, chain_stored_bytes(layers) // CHAIN_BUDGET))


class StraightLineGrad:
    """grad of the 64-layer chain (batch 512, width 64) with respect to its weights: stored,
    recompute and a budget of 1/4 of the stored values."""
    params = (FORMS,)
    param_names = ["form"]
    timeout = 1800

    def setup(self, form):
        self.args = chain_data()
        self.fn = chain_grad_of(form)
        self.fn(*self.args)  # compiles

    def time_grad(self, form):
        self.fn(*self.args)

    def peakmem_grad(self, form):
        self.fn(*self.args)

    def teardown(self, form):
        jitad.config.roll_loops = True


class MemoryGrad:
    params = (FORMS,)
    param_names = ["form"]
    timeout = 1800

    def setup(self, form):
        self.args = data()
        self.fn = grad_of(form)
        self.fn(*self.args)  # compiles

    def time_grad(self, form):
        self.fn(*self.args)

    def peakmem_grad(self, form):
        self.fn(*self.args)


def _status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def call_peak(fn, args):
    """Bytes of RSS one call of `fn` peaks at above the RSS before it (Linux), else None."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM (the peak RSS) to the current RSS
    except OSError:
        return None
    before = _status("VmRSS")
    fn(*args)
    return _status("VmHWM") - before


def peak_in_subprocess(form, steps, straight=False):
    """`call_peak` of `form`'s compiled gradient in a fresh process (the kernel from the disk cache)
    whose malloc returns every block of 64 KiB or more to the system when it is freed: glibc
    otherwise keeps freed blocks, and the RSS before a call would already hold the last call's
    (jitad.backend.allocator, which keeps them on purpose, is switched off there)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", JITAD_KEEP_MEMORY="0")  # jitad's allocator: off
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak", form, "--steps", str(steps)]
                         + (["--straight"] if straight else []),
                         env=env, capture_output=True, text=True, check=True, timeout=3600)
    return int(out.stdout.strip().splitlines()[-1])


def traced_peak(fn, args):
    """Bytes of NumPy arrays one call allocates at its peak (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--straight", action="store_true", help="the straight-line chain instead of the loop")
    parser.add_argument("--peak", choices=FORMS, help=argparse.SUPPRESS)  # one form's call_peak (a subprocess)
    opts = parser.parse_args(argv)
    if opts.straight and not opts.peak:
        return straight_main(opts)
    args = chain_data() if opts.straight else data(opts.steps)
    if opts.peak:
        fn = chain_grad_of(opts.peak) if opts.straight else grad_of(opts.peak, opts.steps)
        fn(*args)
        fn(*args)
        print(max(call_peak(fn, args) or 0 for _ in range(3)))
        return
    fns = {form: grad_of(form, opts.steps) for form in FORMS}
    grads = {form: fns[form](*args) for form in FORMS}  # compiles
    times = {form: [] for form in FORMS}
    for _ in range(opts.rounds):
        for form in FORMS:
            t0 = time.perf_counter()
            fns[form](*args)
            times[form].append(time.perf_counter() - t0)
    peaks = {form: peak_in_subprocess(form, opts.steps) for form in FORMS}
    jitad.config.compile = "off"
    tier = {form: grad_of(form, opts.steps) for form in FORMS}
    for form in FORMS:
        tier[form](*args)  # traced once
    numpy_peaks = {form: traced_peak(tier[form], args) for form in FORMS}
    jitad.config.compile = "eager"
    budget = stored_bytes(opts.steps) // 10
    kib = 1 / 1024
    print(f"| {opts.steps}-step tanh recurrence, hidden {HIDDEN}, grad | stored | recompute | checkpointed "
          f"(budget {budget * kib:.0f} KiB) | recompute / stored | checkpointed / stored |")
    print("|---|---|---|---|---|---|")

    def row(label, values, unit, scale):
        cells = " | ".join(f"{values[form] * scale:.1f} {unit}" for form in FORMS)
        ratios = " | ".join(f"{values[form] / values['stored']:.2f}" for form in FORMS[1:])
        print(f"| {label} | {cells} | {ratios} |")
    carry = products = HIDDEN * 8  # a step's carry h and its stored product w @ h
    held = {"stored": control.held_bytes(None, opts.steps, carry, products),
            "recompute": control.held_bytes(control.plan(opts.steps), opts.steps, carry, products),
            "checkpointed": control.held_bytes(control.plan(opts.steps, budget // (carry + products)), opts.steps,
                                               carry, products)}
    row("bytes held for the reverse pass (the schedule's: carries, stored products)", held, "KiB", kib)
    row("compiled, per call (best of rounds)", {form: min(times[form]) for form in FORMS}, "ms", 1e3)
    if all(peaks.values()):
        row("compiled, peak RSS of a call above the RSS before it", peaks, "KiB", kib)
    row("NumPy executor, peak of NumPy arrays in a call (tracemalloc)", numpy_peaks, "KiB", kib)
    diff = max(np.max(np.abs(grads["stored"] - grads[form])) for form in FORMS)
    print(f"stored carries: {stored_bytes(opts.steps) * kib:.0f} KiB; gradients differ by at most {diff:.1e}")

def straight_main(opts):
    """The table of the straight-line chain: predicted and measured peaks, time per call."""
    from jitad.transforms import ad  # noqa: PLC0415
    args = chain_data()
    fns = {form: chain_grad_of(form) for form in FORMS}
    grads = {form: fns[form](*args) for form in FORMS}  # compiles
    times = {form: [] for form in FORMS}
    for _ in range(opts.rounds):
        for form in FORMS:
            t0 = time.perf_counter()
            fns[form](*args)
            times[form].append(time.perf_counter() - t0)
    predicted = {}
    for form in FORMS:
        graph = jitad.explain(fns[form], *args, print_report=False).graph
        plan = ad.plans.get(graph)
        predicted[form] = chain_stored_bytes() if plan is None else getattr(plan, "peak", plan)
    peaks = {form: peak_in_subprocess(form, 0, straight=True) for form in FORMS}
    out_bytes = sum(g.nbytes for g in grads["stored"])
    jitad.config.compile = "off"
    tier = {form: chain_grad_of(form) for form in FORMS}
    for form in FORMS:
        tier[form](*args)  # traced once
    numpy_peaks = {form: traced_peak(tier[form], args) for form in FORMS}
    jitad.config.compile = "eager"
    budget = chain_stored_bytes() // CHAIN_BUDGET
    kib = 1 / 1024
    print(f"| {LAYERS}-layer tanh chain, batch {BATCH}, width {WIDTH}, grad of the weights | stored | recompute | "
          f"budget {budget * kib:.0f} KiB | recompute / stored | budget / stored |")
    print("|---|---|---|---|---|---|")

    def row(label, values, unit, scale):
        cells = " | ".join(f"{values[form] * scale:.1f} {unit}" for form in FORMS)
        ratios = " | ".join(f"{values[form] / values['stored']:.2f}" for form in FORMS[1:])
        print(f"| {label} | {cells} | {ratios} |")
    row("predicted peak of the values held (explain)", predicted, "KiB", kib)
    row("compiled, per call (best of rounds)", {form: min(times[form]) for form in FORMS}, "ms", 1e3)
    if all(peaks.values()):
        row("compiled, peak RSS of a call above the RSS before it", peaks, "KiB", kib)
        row("... less the gradient it returns", {f: p - out_bytes for f, p in peaks.items()}, "KiB", kib)
    row("NumPy executor, peak of NumPy arrays in a call (tracemalloc)", numpy_peaks, "KiB", kib)
    diff = max(max(np.max(np.abs(a - b)) for a, b in zip(grads["stored"], grads[form])) for form in FORMS)
    print(f"the gradient: {out_bytes * kib:.0f} KiB; gradients differ by at most {diff:.1e}")


if __name__ == "__main__":
    main()
