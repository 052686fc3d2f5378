"""Reverse mode under a memory budget (issue 12, item 3): the gradient of a 1,000-step tanh
recurrence h <- tanh(W h + x_t), hidden 256, loss sum(h_T ** 2), with respect to W, written with
jitad.scan, its reverse pass

  stored        keeping every step's carry (jitad.config.memory = "store": 1,000 x 2 KiB)
  recompute     memory="recompute": 31 checkpoints, 32-step segments run again (at most 63
                carries held)
  checkpointed  within a budget of 1/10 of those bytes (grad(f, memory=budget): 11 checkpoints,
                84-step segments run again, at most 95 carries held)

`peakmem_grad` (asv: the process's peak RSS, which includes Numba and the compiled kernels: the
difference is the part to read) and `time_grad` of both.

    python asv_benchmarks/bench_memory.py [--steps N] [--rounds N]

prints them side by side: per call, the best of interleaved rounds; the peak memory of one call
of the compiled kernel above the memory before it (Linux, a fresh process per form with malloc
returning blocks of >= 64 KiB to the system when freed: the peak RSS is reset through
/proc/self/clear_refs before the call, then read from VmHWM); and of one call on the NumPy
executor (compile="off") by tracemalloc (the arrays NumPy allocates).

Measured 2026-12-02 on the shared 2-core machine (load average ~5 from other sessions),
`python asv_benchmarks/bench_memory.py --rounds 9`:

| 1000-step tanh recurrence, hidden 256, grad | stored | recompute | budget 200 KiB | ratios to stored |
|---|---|---|---|---|
| carries held for the reverse pass | 2000 KiB | 126 KiB | 190 KiB | 0.06 / 0.10 |
| compiled, per call | 43.2 ms | 56.4 ms | 53.0 ms | 1.30 / 1.23 |
| compiled, peak RSS of a call | 4372 KiB | 3536 KiB | 3528 KiB | 0.81 / 0.81 |
| NumPy executor, peak of NumPy arrays | 7573 KiB | 6206 KiB | 6131 KiB | 0.82 / 0.81 |

(time ratios 1.1-1.4 across runs; gradients identical.) The carries held are within the budget;
a call's peak is not: it also holds W's cotangent and its copies (512 KiB each) and the xs'
cotangent (2000 KiB), which every mode computes although grad is not taken with respect to xs
(a vjp rule is not told which of its inputs are differentiated).
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


def peak_in_subprocess(form, steps):
    """`call_peak` of `form`'s compiled gradient in a fresh process (the kernel from the disk cache)
    whose malloc returns every block of 64 KiB or more to the system when it is freed: glibc
    otherwise keeps freed blocks, and the RSS before a call would already hold the last call's."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak", form, "--steps", str(steps)],
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
    parser.add_argument("--peak", choices=FORMS, help=argparse.SUPPRESS)  # one form's call_peak (a subprocess)
    opts = parser.parse_args(argv)
    args = data(opts.steps)
    if opts.peak:
        fn = grad_of(opts.peak, opts.steps)
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
    carry = HIDDEN * 8
    held = {"stored": opts.steps * carry, "recompute": control.held(control.plan(opts.steps), opts.steps) * carry,
            "checkpointed": control.held(control.plan(opts.steps, budget // carry), opts.steps) * carry}
    row("carries held for the reverse pass (the schedule's)", held, "KiB", kib)
    row("compiled, per call (best of rounds)", {form: min(times[form]) for form in FORMS}, "ms", 1e3)
    if all(peaks.values()):
        row("compiled, peak RSS of a call above the RSS before it", peaks, "KiB", kib)
    row("NumPy executor, peak of NumPy arrays in a call (tracemalloc)", numpy_peaks, "KiB", kib)
    diff = max(np.max(np.abs(grads["stored"] - grads[form])) for form in FORMS)
    print(f"stored carries: {stored_bytes(opts.steps) * kib:.0f} KiB; gradients differ by at most {diff:.1e}")

if __name__ == "__main__":
    main()
