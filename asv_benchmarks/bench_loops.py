"""Loops that stay loops (issue 12, item 2): the gradient of a 1,000-step tanh recurrence
h <- tanh(W h + x_t), hidden 256, loss sum(h_T ** 2), with respect to W:

  scan       written with jitad.scan (one scan node; its adjoint a reverse scan)
  unrolled   the same recurrence as a plain Python for loop: 1,000 steps in the trace (the pass
             that rolls repeated steps back into a loop, jitad.config.roll_loops, is switched
             off for it)

timed per call once compiled and warm (`time_grad`), and the first call of a fresh process with
an empty disk cache: trace + transform + compile + run (`track_first_call`, seconds).

    python asv_benchmarks/bench_loops.py [--steps N] [--rounds N]

prints both side by side from one process (steady state, interleaved rounds) and the first
calls from fresh subprocesses.

Measured 2026-12-02 on the shared 2-core machine (load average 8-9 from other sessions: read the
ratios, and expect 2x between runs), `python asv_benchmarks/bench_loops.py --steps 1000 --rounds 5`:
steady state scan 68 ms, unrolled 294 ms (0.23), JAX's jit(grad) of lax.scan 77 ms (scan / JAX
0.89); first call in a fresh process and cache scan 7.3 s, unrolled 9.0 s (0.81; 11.5 s vs 21.4 s
in a run under other load). CPU seconds of the first call by `python -m jitad profile-compile`
(less sensitive to the load): scan 2.8 s (graph 15 nodes, 133 source lines, Numba helper compiles
8), unrolled 3.9 s (16,006 nodes, 6,157 source lines in the split form, 9 distinct nest kernels).
Gradients agree to 2e-15. History of the scan's steady state in that session: 152 ms (the forward
loop run twice, the adjoint's running sum of W's cotangent a new array every step), 142 ms
(forward once), 134 ms (the sum added in place), 95 -> 68 ms (W's outer-product increment added
in one pass without storing it).
"""
import argparse
import os
import subprocess
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

HIDDEN, STEPS = 256, 1000
FORMS = ["scan", "unrolled"]


def data(steps=STEPS, hidden=HIDDEN):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)
    xs = rng.normal(size=(steps, hidden)) * 0.1
    h0 = np.zeros(hidden)
    return w, xs, h0


def loss_scan(w, xs, h0):
    h, _ = jitad.scan(lambda h, x: (np.tanh(w @ h + x), None), h0, xs)
    return np.sum(h ** 2)


def loss_unrolled(w, xs, h0):
    h = h0
    for t in range(xs.shape[0]):
        h = np.tanh(w @ h + xs[t])
    return np.sum(h ** 2)


LOSSES = {"scan": loss_scan, "unrolled": loss_unrolled}


def grad_of(form):
    """The gradient function of `form`, traced (by its first call) with jitad.config.roll_loops off
    for "unrolled" (the pass that rolls a Python loop's steps into a scan)."""
    fn = jitad.grad(LOSSES[form])

    def call(*args):
        saved = jitad.config.roll_loops
        jitad.config.roll_loops = form != "unrolled"
        try:
            return fn(*args)
        finally:
            jitad.config.roll_loops = saved
    return call


def jax_grad(steps=STEPS):
    """(no-argument call of JAX's jit(grad) of the lax.scan version, its first result) on `data`."""
    jax, jnp = _common.need_jax()

    def loss(w, xs, h0):
        h, _ = jax.lax.scan(lambda h, x: (jnp.tanh(w @ h + x), None), h0, xs)
        return jnp.sum(h ** 2)
    fn = jax.jit(jax.grad(loss))
    args = [jnp.asarray(a) for a in data(steps)]
    result = np.asarray(jax.block_until_ready(fn(*args)))
    return (lambda: jax.block_until_ready(fn(*args))), result


class LoopGrad:
    params = (FORMS,)
    param_names = ["form"]
    timeout = 1800

    def setup(self, form):
        self.args = data()
        self.fn = grad_of(form)
        self.fn(*self.args)  # compiles

    def time_grad(self, form):
        self.fn(*self.args)


_FIRST_CALL = """
import time, sys
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import jitad
jitad.config.compile = "eager"
from asv_benchmarks.bench_loops import data, grad_of
args = data({steps})
t1 = time.perf_counter()
grad_of({form!r})(*args)
print(time.perf_counter() - t1)
"""


def first_call(form, steps=STEPS):
    """Seconds of the first grad call (trace, transform, compile, run) in a fresh process with an
    empty disk cache."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JITAD_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", _FIRST_CALL.format(root=root, steps=steps, form=form)],
                             env=env, capture_output=True, text=True, check=True, timeout=3600)
    return float(out.stdout.strip().splitlines()[-1])


class LoopFirstCall:
    params = (FORMS,)
    param_names = ["form"]
    timeout = 3600
    number, repeat = 1, 1

    def track_first_call(self, form):
        return first_call(form)

    track_first_call.unit = "seconds"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args(argv)
    args = data(opts.steps)
    grads, times = {}, {form: [] for form in FORMS}
    fns = {form: grad_of(form) for form in FORMS}
    for form in FORMS:
        grads[form] = fns[form](*args)
    for _ in range(opts.rounds):
        for form in FORMS:
            t0 = time.perf_counter()
            fns[form](*args)
            times[form].append(time.perf_counter() - t0)
    try:
        t0 = time.perf_counter()
        jax_call, grads["jax"] = jax_grad(opts.steps)
        jax_first = time.perf_counter() - t0
        times["jax"] = []
        for _ in range(opts.rounds):
            t0 = time.perf_counter()
            jax_call()
            times["jax"].append(time.perf_counter() - t0)
    except NotImplementedError:
        jax_first = None
    diff = np.max(np.abs(grads["scan"] - grads["unrolled"])) / np.max(np.abs(grads["unrolled"]))
    print(f"| {opts.steps}-step tanh recurrence, hidden {HIDDEN}, grad | scan | unrolled | scan / unrolled |")
    print("|---|---|---|---|")
    best = {form: min(times[form]) for form in FORMS}
    print(f"| steady state per call | {best['scan'] * 1e3:.1f} ms | {best['unrolled'] * 1e3:.1f} ms | "
          f"{best['scan'] / best['unrolled']:.2f} |", flush=True)
    first = {form: first_call(form, opts.steps) for form in FORMS}
    print(f"| first call, fresh process and cache | {first['scan']:.2f} s | {first['unrolled']:.2f} s | "
          f"{first['scan'] / first['unrolled']:.2f} |")
    if jax_first is not None:
        jdiff = np.max(np.abs(grads["scan"] - grads["jax"])) / np.max(np.abs(grads["jax"]))
        print(f"JAX jit(grad) of lax.scan: steady state {min(times['jax']) * 1e3:.1f} ms (scan / JAX "
              f"{best['scan'] / min(times['jax']):.2f}), first call in this process {jax_first:.2f} s "
              f"(JAX's import not counted); gradient agrees with jitad's to {jdiff:.1e}")
    print(f"gradients agree to {diff:.1e} (relative)")


if __name__ == "__main__":
    main()
