"""Issue 13's targets in one place: jitad against JAX's jit on the CPU, each allowed its default threads.

Every row of the issue's list (value_and_grad of the elementwise function at n = 1e5 and 1e6 in
float64 and float32, Rosenbrock at 1e6, the MLP B = 256 [64, 256, 256, 10], MDS at N = 200 and
1000; the gradient of tr(A X^-1 B) at n = 100; the Hessian of (1/3)|x|^3 at n = 100; the Jacobians
of A x at (m, n) = (1000, 100) and (100, 1000)), as a warm no-argument call. The ratios are printed
by `python asv_benchmarks/ratios.py --only "issue 13"` (interleaved rounds in one process).
"""
import numpy as np

from . import _cases, bench_float32, bench_jacobians, bench_linalg
from ._common import jax_timed, need_jax, rng, warmed

import jitad

ROWS = ["elementwise_1e5_f64", "elementwise_1e6_f64", "elementwise_1e5_f32", "elementwise_1e6_f32",
        "rosenbrock_1e6", "mlp", "mds_N200", "mds_N1000", "trace_inv_n100", "hessian_cube_norm_n100",
        "jacobian_m1000_n100", "jacobian_m100_n1000"]
IMPLS = ["jitad", "jax"]


def cube_norm(xp):
    def cube_norm(x):
        return xp.sqrt(xp.sum(x * x)) ** 3 / 3
    return cube_norm


def _value_and_grad(make, args, impl):
    if impl == "jax":
        jax, jnp = need_jax()
        return jax_timed(jax.jit(jax.value_and_grad(make(jnp))), *args)
    return warmed(jitad.value_and_grad(make(np)), *args)


def prepare(row, impl):
    """A warm no-argument callable running `impl` ("jitad" or "jax") on the row."""
    if row.startswith("elementwise"):
        case, dtype = row.rsplit("_", 1)
        return bench_float32.prepare(case, {"f64": "float64", "f32": "float32"}[dtype], impl)
    if row == "rosenbrock_1e6" or row == "mlp":
        case = _cases.CASES[row]
        return _value_and_grad(case.make, case.args(), impl)
    if row.startswith("mds"):
        return _value_and_grad(_cases.mds, _cases.mds_args(int(row[len("mds_N"):])), impl)
    if row == "trace_inv_n100":
        X, A, B = bench_linalg._trace_inv_args(100)
        if impl == "jax":
            jax, jnp = need_jax()
            return jax_timed(jax.jit(jax.grad(bench_linalg.trace_inv(jnp))), X, A, B)
        f = bench_linalg.trace_inv(np)
        return warmed(jitad.grad(lambda X: f(X, A, B)), X)
    if row == "hessian_cube_norm_n100":
        x = rng(7).standard_normal(100)
        if impl == "jax":
            jax, jnp = need_jax()
            return jax_timed(jax.jit(jax.hessian(cube_norm(jnp))), x)
        return warmed(jitad.hessian(cube_norm(np)), x)
    if row.startswith("jacobian"):
        m, n = (int(p[1:]) for p in row.split("_")[1:])
        A, x = rng(8).standard_normal((m, n)), rng(9).standard_normal(n)
        if impl == "jax":
            return bench_jacobians._jax_jacobian("jax_jacfwd" if m >= n else "jax_jacrev",
                                                 lambda xp: lambda A, x: A @ x, A, x)
        return warmed(jitad.jacobian(lambda x: A @ x), x)
    raise KeyError(row)


class TimeCpuTargets:
    params = (ROWS, IMPLS)
    param_names = ["row", "impl"]
    timeout = 300

    def setup(self, row, impl):
        self.call = prepare(row, impl)

    def time_call(self, row, impl):
        self.call()
