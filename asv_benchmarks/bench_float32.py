"""Issue 13, item 4: float32 at float32 speed. value_and_grad of the issue's elementwise function
`sum(sin(x) x + exp(-x^2) + log1p(x^2))` (ratios.py's row) at n = 1e5 and 1e6 and of the MLP
(B = 256, [64, 256, 256, 10]), in float32 and float64, jitad against JAX's jit (same dtype).

    python -m asv_benchmarks.bench_float32 [--cpu]

prints the table side by side (interleaved rounds, best of each).
"""
import time

import numpy as np

from . import _cases
from ._common import jax_or_none, need_jax

import jitad

CASES = {"elementwise_1e5": 10 ** 5, "elementwise_1e6": 10 ** 6, "mlp": None}
DTYPES = ["float32", "float64"]
IMPLS = ["jitad", "jax"]


def _args(case, dtype):
    if case == "mlp":
        params, X, T = _cases.mlp_args()
        cast = [(W.astype(dtype), b.astype(dtype)) for W, b in params]
        return (cast, X.astype(dtype), T.astype(dtype)), _cases.mlp
    x = np.random.default_rng(0).uniform(-3, 3, CASES[case]).astype(dtype)
    return (x,), _cases.elementwise


def prepare(case, dtype, impl):
    args, make = _args(case, dtype)
    if impl == "jax":
        jax, jnp = need_jax()
        f = jax.jit(jax.value_and_grad(make(jnp)))
        jargs = jax.tree_util.tree_map(jnp.asarray, args)
        jax.block_until_ready(f(*jargs))
        return lambda: jax.block_until_ready(f(*jargs))
    f = jitad.value_and_grad(make(np))
    value, _ = f(*args)
    assert np.asarray(value).dtype == np.dtype(dtype)
    return lambda: f(*args)


class TimeFloat32:
    params = (list(CASES), DTYPES, IMPLS)
    param_names = ["case", "dtype", "impl"]
    timeout = 300

    def setup(self, case, dtype, impl):
        self.call = prepare(case, dtype, impl)

    def time_value_and_grad(self, case, dtype, impl):
        self.call()


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="CPU time of this process instead of wall time")
    parser.add_argument("--rounds", type=int, default=15)
    opts = parser.parse_args(argv)
    clock = time.process_time if opts.cpu else time.perf_counter
    impls = IMPLS if jax_or_none() else IMPLS[:1]
    print(f"value_and_grad, {'CPU ' if opts.cpu else ''}ms per call, best of {opts.rounds} interleaved rounds")
    print(f"{'case':<16}" + "".join(f"{i + ' ' + d[5:]:>12}" for d in DTYPES for i in impls)
          + "  jitad 32/64" + ("  jitad/jax 32  jitad/jax 64" if "jax" in impls else ""))
    for case in CASES:
        calls = {(i, d): prepare(case, d, i) for d in DTYPES for i in impls}
        number = 3 if case == "elementwise_1e6" else 20
        best = {k: float("inf") for k in calls}
        for _ in range(opts.rounds):
            for k, call in calls.items():
                t0 = clock()
                for _ in range(number):
                    call()
                best[k] = min(best[k], (clock() - t0) / number)
        row = f"{case:<16}" + "".join(f"{best[(i, d)] * 1e3:12.3f}" for d in DTYPES for i in impls)
        row += f"{best[('jitad', 'float32')] / best[('jitad', 'float64')]:13.2f}"
        if "jax" in impls:
            row += "".join(f"{best[('jitad', d)] / best[('jax', d)]:14.2f}" for d in DTYPES)
        print(row)


if __name__ == "__main__":
    main()
