"""Time to the first result and time until the compiled kernel serves (issue 10), each in a
fresh process with an empty jitad cache, side by side with autograd's and JAX's first calls.

    python asv_benchmarks/firstresult.py [--only NAME ...] [--impls jitad,jitad_eager,autograd,jax]
                                         [--limit SECONDS] [--json OUT]

For every program of `_programs.PROGRAMS` and every implementation, one child process:
imports (not timed), builds the inputs, then times
  first    - the first value_and_grad call (trace + transform + whatever the tier needs),
  ready    - from the start of the first call until a call is answered by the compiled
             kernel (jitad: a call that did not go to the NumPy tier; others: = first),
  steady   - the median of later calls.
Each row is one run of each implementation, interleaved, so a noisy neighbour slows all
alike; run it twice before quoting a number. `bench_firstresult.py` gives asv the same.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, shutil, statistics, sys, tempfile, time
sys.path.insert(0, {programs_root!r})
sys.path.insert(0, {root!r})
cache = tempfile.mkdtemp(prefix="jitad-first-")
os.environ["JITAD_CACHE_DIR"] = cache
impl, name, limit = {impl!r}, {name!r}, {limit!r}
os.environ["JITAD_COMPILE"] = "eager" if impl == "jitad_eager" else "background"
import numpy as np
from asv_benchmarks._programs import PROGRAMS
make, make_args = PROGRAMS[name]
args = make_args()
if impl.startswith("jitad"):
    import jitad
    vg = jitad.value_and_grad(make(np))
    def numpy_calls():
        return jitad.cache_info().get("numpy_tier_calls", 0)
elif impl == "autograd":
    import autograd, autograd.numpy as anp
    vg = autograd.value_and_grad(make(anp))
    numpy_calls = None
else:
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    args = jax.tree_util.tree_map(jnp.asarray, args)
    jitted = jax.jit(jax.value_and_grad(make(jnp)))
    def vg(*a):
        return jax.block_until_ready(jitted(*a))
    numpy_calls = None
t0 = time.perf_counter()
vg(*args)
first = time.perf_counter() - t0
ready = first
if numpy_calls is not None:
    ready = None
    while time.perf_counter() - t0 < limit:
        before = numpy_calls()
        vg(*args)
        if numpy_calls() == before:
            ready = time.perf_counter() - t0
            break
        time.sleep(0.005)
times = []
for _ in range(7):
    t = time.perf_counter()
    vg(*args)
    times.append(time.perf_counter() - t)
shutil.rmtree(cache, ignore_errors=True)
print(json.dumps({{"first": first, "ready": ready, "steady": statistics.median(times)}}))
"""


def run_child(name, impl, limit=900.0, root=ROOT):
    """{"first", "ready", "steady"} seconds for one program and implementation, or {"error": ...}.
    `root`: the checkout whose jitad to import (another commit's worktree, for before/after)."""
    code = CHILD.format(root=root, programs_root=ROOT, impl=impl, name=name, limit=limit)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             timeout=limit + 120)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {limit + 120:.0f} s"}
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last}
    return json.loads(out.stdout.strip().splitlines()[-1])


def available(impl):
    if impl == "autograd":
        module = "autograd"
    elif impl == "jax":
        module = "jax"
    else:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _fmt(seconds):
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv=None):
    from asv_benchmarks._programs import PROGRAMS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--impls", default="jitad,jitad_eager,autograd,jax")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds to wait for the compiled tier")
    parser.add_argument("--json", default=None)
    parser.add_argument("--root", default=ROOT, help="import jitad from this checkout (e.g. a worktree of an "
                                                      "earlier commit, for before/after tables)")
    opts = parser.parse_args(argv)
    impls = [i for i in opts.impls.split(",") if available(i)]
    names = [n for n in PROGRAMS if opts.only is None or any(s in n for s in opts.only)]
    results = {}
    print("| program | " + " | ".join(f"{i} first | {i} ready | {i} steady" for i in impls) + " |")
    print("|---|" + "---|" * (3 * len(impls)))
    for name in names:
        row = results[name] = {impl: run_child(name, impl, opts.limit, opts.root) for impl in impls}
        cells = []
        for impl in impls:
            r = row[impl]
            if "error" in r:
                cells += [f"error: {r['error'][:40]}", "", ""]
            else:
                cells += [_fmt(r["first"]), _fmt(r["ready"]), _fmt(r["steady"])]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
