"""Programs with control flow (issue 12): plain Python loops that jitad rolls into loops.

  LoopLength     trace + transform + compile + first run of value_and_grad of a plain Python
                 `for` loop (a tanh RNN, hidden 16, batch 32) at T = 10 and T = 10,000 steps, each
                 in a fresh process with an empty disk cache (compile="eager"): with the steps
                 rolled into one scan, the 10,000-step program costs about what the 10-step one
                 does (tracing still runs the Python loop).
  LSTM           value_and_grad of a 2-layer LSTM (hidden 14, batch 16, 1,024 steps) written as
                 plain Python loops, steady state: jitad (rolled), JAX's jit of the lax.scan
                 version, autograd (the plain loops); and their first calls in fresh processes.

    python asv_benchmarks/bench_control.py [--steps 1024] [--rounds 5] [--no-first]

prints both tables, side by side from one run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

if __package__:
    from . import _common
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from asv_benchmarks import _common

import numpy as np  # noqa: E402

from asv_benchmarks._programs import lstm, rnn  # noqa: E402

ROOT = _common.ROOT
LSTM_STEPS = 1024

_LENGTH_CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
os.environ["JITAD_COMPILE"] = "eager"
import numpy as np, jitad
from asv_benchmarks._programs import rnn
make, args = rnn({steps})
vg = jitad.value_and_grad(make(np))
a = args()
t0 = time.perf_counter()
vg(*a)
print(time.perf_counter() - t0)
"""


def loop_length_seconds(steps):
    """Seconds from the first value_and_grad call to its compiled result, fresh process, empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JITAD_CACHE_DIR=cache, OPENBLAS_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", _LENGTH_CHILD.format(root=ROOT, steps=steps)],
                             env=env, capture_output=True, text=True, check=True, timeout=3600)
    return float(out.stdout.strip().splitlines()[-1])


class LoopLength:
    params = ([10, 10000],)
    param_names = ["steps"]
    timeout = 3600
    number, repeat = 1, 1

    def track_first_compiled_result(self, steps):
        return loop_length_seconds(steps)
    track_first_compiled_result.unit = "seconds"


def jax_lstm(steps=LSTM_STEPS):
    """JAX's jit(value_and_grad) of the LSTM written with lax.scan, and its arguments."""
    jax, jnp = _common.need_jax()

    def sigmoid(x):
        return 0.5 * (jnp.tanh(0.5 * x) + 1.0)

    def loss(params, xs, ys):
        inputs = xs
        for W, U, b in params["layers"]:
            n = U.shape[0]

            def step(carry, x, W=W, U=U, b=b, n=n):
                h, c = carry
                z = x @ W + h @ U + b
                c = sigmoid(z[:, n:2 * n]) * c + sigmoid(z[:, :n]) * jnp.tanh(z[:, 3 * n:])
                h = sigmoid(z[:, 2 * n:3 * n]) * jnp.tanh(c)
                return (h, c), h
            zeros = jnp.zeros((xs.shape[1], n))
            _, inputs = jax.lax.scan(step, (zeros, zeros), inputs)
        return jnp.mean((inputs[-1] @ params["out"] - ys) ** 2)
    _, make_args = lstm(steps)
    args = jax.tree_util.tree_map(jnp.asarray, make_args())
    fn = jax.jit(jax.value_and_grad(loss))
    return (lambda: jax.block_until_ready(fn(*args)))


def jitad_lstm(steps=LSTM_STEPS):
    import jitad
    make, make_args = lstm(steps)
    vg = jitad.value_and_grad(make(np))
    args = make_args()
    return lambda: vg(*args)


def autograd_lstm(steps=LSTM_STEPS):
    import autograd
    import autograd.numpy as anp
    make, make_args = lstm(steps)
    vg = autograd.value_and_grad(make(anp))
    args = make_args()
    return lambda: vg(*args)


IMPLS = {"jitad": jitad_lstm, "jax_scan": jax_lstm, "autograd": autograd_lstm}


class LSTM:
    params = (list(IMPLS),)
    param_names = ["impl"]
    timeout = 3600

    def setup(self, impl):
        if impl == "autograd":
            try:
                import autograd  # noqa: F401
            except ImportError:
                raise NotImplementedError("autograd is not installed")
        self.call = IMPLS[impl]()
        self.call()  # compiles

    def time_value_and_grad(self, impl):
        self.call()


_FIRST_CHILD = """
import json, os, sys, time
sys.path.insert(0, {root!r})
os.environ["JITAD_COMPILE"] = "background"
import numpy as np
t0 = time.perf_counter()
from asv_benchmarks.bench_control import IMPLS
import jitad
jitad.config.compile = "background"  # (asv_benchmarks._common sets "eager" for the steady-state rows)
call = IMPLS[{impl!r}]({steps})
call()
print(json.dumps(time.perf_counter() - t0))
"""


def first_call(impl, steps=LSTM_STEPS):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JITAD_CACHE_DIR=cache, OPENBLAS_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", _FIRST_CHILD.format(root=ROOT, impl=impl, steps=steps)],
                             env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=LSTM_STEPS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-first", action="store_true", help="skip the fresh-process first calls")
    ap.add_argument("--no-length", action="store_true", help="skip the T = 10 / 10,000 loop-length rows")
    args = ap.parse_args(argv)
    if not args.no_length:
        print("| plain Python loop (RNN) | first compiled result (fresh process, eager) |\n|---|---|")
        for steps in (10, 10000):
            print(f"| T = {steps} | {loop_length_seconds(steps):.2f} s |", flush=True)
    calls = {}
    for impl, make in IMPLS.items():
        try:
            calls[impl] = make(args.steps)
            calls[impl]()
        except (ImportError, NotImplementedError) as exc:
            print(f"{impl}: skipped ({exc})")
    times = {impl: [] for impl in calls}
    for _ in range(args.rounds):  # interleaved rounds: a noisy neighbour slows all alike
        for impl, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[impl].append(time.perf_counter() - t0)
    print(f"\n| LSTM 2 x 14, {args.steps} steps, value_and_grad | steady (median) | vs jitad | first call (fresh) |")
    print("|---|---|---|---|")
    base = statistics.median(times["jitad"])
    for impl, ts in times.items():
        first = None if args.no_first else first_call(impl, args.steps)
        first_text = "—" if first is None else f"{first:.2f} s"
        print(f"| {impl} | {statistics.median(ts) * 1e3:.1f} ms | {statistics.median(ts) / base:.2f}x | {first_text} |",
              flush=True)


if __name__ == "__main__":
    main()
