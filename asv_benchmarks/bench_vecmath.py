"""Issue 13, items 1-2: elementary functions and reductions in fused loops, n = 1e6.

Each row is one NumPy function applied to a vector and summed, `np.sum(f(x))`, compiled by
jitad (its loop calls the vectorisable K.f<name> and accumulates through K.radd, so it is SIMD
code), against NumPy (libm/SVML loops and a pairwise sum) and JAX's jit (XLA's vectorised
approximations). As a script it prints the table side by side, with the value_and_grad row of
ratios.py last:

    python -m asv_benchmarks.bench_vecmath [--cpu]
"""
import time

import numpy as np

from ._common import jax_or_none, need_jax

import jitad

N = 10 ** 6
# name: (the function for a NumPy-like module, the argument's range)
FUNCTIONS = {
    "sin": (lambda xp, x: xp.sin(x), (-10.0, 10.0)),
    "cos": (lambda xp, x: xp.cos(x), (-10.0, 10.0)),
    "tan": (lambda xp, x: xp.tan(x), (-1.5, 1.5)),
    "exp": (lambda xp, x: xp.exp(x), (-10.0, 10.0)),
    "log": (lambda xp, x: xp.log(x), (0.01, 100.0)),
    "log1p": (lambda xp, x: xp.log1p(x), (-0.5, 10.0)),
    "arctan": (lambda xp, x: xp.arctan(x), (-10.0, 10.0)),
    "tanh": (lambda xp, x: xp.tanh(x), (-5.0, 5.0)),
    "sinh": (lambda xp, x: xp.sinh(x), (-5.0, 5.0)),
    "arcsin": (lambda xp, x: xp.arcsin(x), (-1.0, 1.0)),
    "cbrt": (lambda xp, x: xp.cbrt(x), (-10.0, 10.0)),
    "power": (lambda xp, x: x ** 1.7, (0.0, 10.0)),
    "max": (lambda xp, x: x, (-1.0, 1.0)),  # a max reduction instead of the sum
}
IMPLS = ["jitad", "numpy", "jax"]


def prepare(name, impl):
    fun, (lo, hi) = FUNCTIONS[name]
    x = np.random.default_rng(0).uniform(lo, hi, N)
    reduce = "max" if name == "max" else "sum"
    if impl == "jax":
        jax, jnp = need_jax()
        f = jax.jit(lambda v: getattr(jnp, reduce)(fun(jnp, v)))
        xj = jnp.asarray(x)
        f(xj).block_until_ready()
        return lambda: f(xj).block_until_ready()
    f = (lambda v: getattr(np, reduce)(fun(np, v)))
    if impl == "jitad":
        f = jitad.jit(f)
    f(x)
    return lambda: f(x)


class ElementwiseReduce:
    """`np.sum(f(x))` (or np.max) for x of size 1e6."""
    params = (list(FUNCTIONS), IMPLS)
    param_names = ["function", "impl"]
    timeout = 300

    def setup(self, name, impl):
        self.call = prepare(name, impl)

    def time_reduce(self, name, impl):
        self.call()


def _best(call, repeat=7, clock=time.perf_counter):
    call()
    times = []
    for _ in range(repeat):
        t0 = clock()
        call()
        call()
        times.append((clock() - t0) / 2)
    return min(times)


def _elementwise_value_and_grad(impl):
    """value_and_grad of the issue's `sum(sin(x) x + exp(-x^2) + log1p(x^2))` at n = 1e6 (ratios.py's row)."""
    from . import _cases
    return _cases.prepare("elementwise_1e6", {"jitad": "jitad_value_and_grad", "numpy": "numpy_forward",
                                              "jax": "jax_value_and_grad"}[impl])


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true",
                        help="CPU time of this process (time.process_time) instead of wall time: on a shared "
                             "machine it is what a call costs whoever else runs (JAX's threads add up)")
    opts = parser.parse_args(argv)
    clock = time.process_time if opts.cpu else time.perf_counter
    impls = IMPLS if jax_or_none() else IMPLS[:2]
    unit = "CPU ms" if opts.cpu else "ms"
    print(f"np.sum(f(x)), n = {N}: best of 7, {unit}" + ("" if "jax" in impls else " (JAX not installed)"))
    print("function  " + "  ".join(f"{i:>8}" for i in impls) + "  jitad/numpy" + ("  jitad/jax" if "jax" in impls else ""))
    rows = [(name, lambda impl, name=name: prepare(name, impl)) for name in FUNCTIONS]
    rows.append(("v&g elementwise_1e6", _elementwise_value_and_grad))
    for name, make in rows:
        t = {impl: _best(make(impl), clock=clock) for impl in impls}
        row = f"{name:<9} " + "  ".join(f"{t[i] * 1e3:8.2f}" for i in impls) + f"  {t['jitad'] / t['numpy']:11.2f}"
        if "jax" in t:
            row += f"  {t['jitad'] / t['jax']:9.2f}"
        print(row)


if __name__ == "__main__":
    main()
