"""Issue 13: call overhead of a compiled transform on tiny inputs, against its floor: the Numba
dispatcher alone, calling an @njit function of the same arguments that returns as many values.

    grad_2_floats    jitad.grad(lambda a, b: a * b + np.sin(a))(2.0, 5.0)
    vg_2_floats      value_and_grad of the same
    jit_2_floats     jit of the same
    grad_1d_array    jitad.grad(lambda x: np.sum(x * x))(x), x of 10 float64

`python -m asv_benchmarks.bench_overhead [--rounds N]` prints each case's time (the minimum over
N rounds of 2,000 calls, all cases interleaved so that they see the same load), its floor, and
jitad's own share (the difference); JAX's jitted grad of the floats when JAX is installed.
Short rounds (about 2 ms) on purpose: on a loaded machine nearly every longer window holds a
preemption (grad of two floats: 0.8 us as the minimum of 2,000-call rounds, 2.5-4.5 us as the
minimum of 20,000-call rounds, 4.7 us as ratios.py's median of 50 ms batches, at load 10-13).
"""
import argparse
import timeit

import numpy as np

import jitad

from ._common import jax_or_none


def _floats(a, b):
    return a * b + np.sin(a)


def _squares(x):
    return np.sum(x * x)


def _floors():
    """Numba functions of the same arguments and outputs as jitad's kernels: the dispatcher's cost."""
    import numba

    @numba.njit(nogil=True)
    def two_floats(a, b):
        return a * b + np.sin(a), b + np.cos(a)

    @numba.njit(nogil=True)
    def jit_floats(a, b):
        return (a * b + np.sin(a),)

    @numba.njit(nogil=True)
    def array(x):
        return np.sum(x * x), x + x
    return {"two_floats": two_floats, "jit_floats": jit_floats, "array": array}


X = np.linspace(0.0, 1.0, 10)
CASES = {  # name: (make the jitad call, its arguments, its floor)
    "grad_2_floats": (lambda: jitad.grad(_floats), (2.0, 5.0), "two_floats"),
    "vg_2_floats": (lambda: jitad.value_and_grad(_floats), (2.0, 5.0), "two_floats"),
    "jit_2_floats": (lambda: jitad.jit(_floats), (2.0, 5.0), "jit_floats"),
    "grad_1d_array": (lambda: jitad.grad(_squares), (X,), "array"),
}


class CallOverhead:
    """One warm call of a transformed function (`jitad`) or of its floor (`numba`)."""
    params = (list(CASES), ["jitad", "numba"])
    param_names = ["case", "impl"]

    def setup(self, case, impl):
        make, self.args, floor = CASES[case]
        self.fn = make() if impl == "jitad" else _floors()[floor]
        self.fn(*self.args)
        self.fn(*self.args)

    def time_call(self, case, impl):
        self.fn(*self.args)


def measure(rounds=30, number=2000):
    """{case: (jitad us, floor us)}, each the minimum over `rounds` interleaved rounds."""
    floors = _floors()
    timers = {}
    for name, (make, args, floor) in CASES.items():
        for impl, fn in (("jitad", make()), ("numba", floors[floor])):
            fn(*args)
            fn(*args)
            timers[name, impl] = timeit.Timer("fn(*args)", globals={"fn": fn, "args": args})
    pair = jax_or_none()
    if pair is not None:
        jax, jnp = pair
        jg = jax.jit(jax.grad(lambda a, b: a * b + jnp.sin(a)))
        jg(2.0, 5.0)
        timers["jax_grad_2_floats", "jax"] = timeit.Timer("jg(2.0, 5.0)", globals={"jg": jg})
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(rounds):
        for key, timer in timers.items():
            best[key] = min(best[key], timer.timeit(number) / number * 1e6)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    best = measure(parser.parse_args().rounds)
    print(f"{'case':16s} {'jitad us':>9s} {'floor us':>9s} {'jitad - floor':>14s}")
    for name in CASES:
        total, floor = best[name, "jitad"], best[name, "numba"]
        print(f"{name:16s} {total:9.3f} {floor:9.3f} {total - floor:14.3f}")
    if ("jax_grad_2_floats", "jax") in best:
        print(f"{'jax grad (jit)':16s} {best['jax_grad_2_floats', 'jax']:9.3f}")


if __name__ == "__main__":
    main()
