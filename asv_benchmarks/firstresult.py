"""Time to the first result and time until the compiled kernel serves (issue 10), each in a
fresh process with an empty jitad cache, side by side with autograd's and JAX's first calls.

    python asv_benchmarks/firstresult.py [--only NAME ...]
                                         [--impls jitad,jitad_eager,jitad_reference,autograd,jax]
                                         [--limit SECONDS] [--json OUT]

For every program of `_programs.PROGRAMS` and every implementation, one child process:
imports (not timed), builds the inputs, then times
  first    - the first value_and_grad call (trace + transform + whatever the tier needs),
  ready    - from the start of the first call until a call is answered by the compiled
             kernel (jitad: a call that did not go to the NumPy tier; others: = first),
  steady   - the median of later calls.
`jitad_reference` runs on jitad's NumPy reference executor only (no compiled tier: ready "—").
Programs come from `_programs.loss_for(name, lib)`, so SciPy calls use each library's own.
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
impl, name, limit, steady_calls = {impl!r}, {name!r}, {limit!r}, {steady_calls!r}
os.environ["JITAD_COMPILE"] = "eager" if impl == "jitad_eager" else "background"
import numpy as np
from asv_benchmarks._programs import PROGRAMS, loss_for
make, make_args = PROGRAMS[name]
args = make_args()
if impl.startswith("jitad"):
    import jitad
    if impl == "jitad_reference":
        jitad.config.backend = "reference"
    vg = jitad.value_and_grad(loss_for(name, "numpy"))
    def numpy_calls():
        return jitad.cache_info().get("numpy_tier_calls", 0)
    if impl == "jitad_reference":
        numpy_calls = None
elif impl == "autograd":
    import autograd
    vg = autograd.value_and_grad(loss_for(name, "autograd"))
    numpy_calls = None
else:
    import jax, jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)
    args = jax.tree_util.tree_map(jnp.asarray, args)
    jitted = jax.jit(jax.value_and_grad(loss_for(name, "jax")))
    def vg(*a):
        return jax.block_until_ready(jitted(*a))
    numpy_calls = None
t0 = time.perf_counter()
vg(*args)
first = time.perf_counter() - t0
ready = None if impl == "jitad_reference" else first
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
for _ in range(steady_calls):
    t = time.perf_counter()
    vg(*args)
    times.append(time.perf_counter() - t)
shutil.rmtree(cache, ignore_errors=True)
print(json.dumps({{"first": first, "ready": ready, "steady": statistics.median(times)}}))
"""

# (program, impl) pairs not run, with the reason: their first call takes far longer than a
# benchmark may (see bench_inplace.py's docstring for the measurements).
SKIP = {
    # (until 2026-12-03 the compiled tier of the unrolled in-place loop failed from n = 200 on; a
    # one-element write in a rolled loop is now written after the loop, so it compiles like any scan)
    ("inplace_n10000", "jax"): "jax.jit of a 10,000-step unrolled loop is impractical here (n = 1,000: 443 s)",
    **{(name, "autograd"): "autograd cannot differentiate in-place writes into an ndarray"
       for name in ("inplace_n1000", "inplace_n10000")},
}

# programs whose calls take seconds: fewer steady-state calls
SLOW = {"inplace_n10000": 3}


def run_child(name, impl, limit=900.0, root=ROOT):
    """{"first", "ready", "steady"} seconds for one program and implementation, {"skipped": why}
    or {"error": ...}. `root`: the checkout whose jitad to import (another commit's worktree, for
    before/after)."""
    if (name, impl) in SKIP:
        return {"skipped": SKIP[name, impl]}
    code = CHILD.format(root=root, programs_root=ROOT, impl=impl, name=name, limit=limit,
                        steady_calls=SLOW.get(name, 7))
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
                cells += [f"error: {r['error'][:60]}", "", ""]
            elif "skipped" in r:
                cells += ["skipped", "", ""]
            else:
                cells += [_fmt(r["first"]), _fmt(r["ready"]), _fmt(r["steady"])]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
