"""Issue 4: Jacobian modes side by side (auto, forward, reverse, mixed), the copy-A floor,
Hessian and HVP against JAX. Skipped until jitad has jacobian/jacfwd/jacrev/hessian/hvp."""
import numpy as np

from ._cases import rosenbrock
from ._common import jax_timed, need, need_jax, rng, warmed

import jitad

SIZES = [10, 30, 100, 300, 1000]
# f(x) = A x: n = 100 inputs with m outputs, then m = 100 outputs with n inputs
SWEEP = [f"n100_m{m}" for m in SIZES] + [f"n{n}_m100" for n in SIZES if n != 100]
MODES = ["auto", "forward", "reverse", "mixed"]


def _linear(point):
    n, m = (int(part[1:]) for part in point.split("_"))
    r = rng(n * 10007 + m)
    return r.standard_normal((m, n)), r.standard_normal(n)


def _jax_jacobian(kind, fun_of_matrix, *args):
    """jax.jit(jacfwd|jacrev) with the matrices as arguments (a closed-over constant would
    let XLA fold J = A at compile time)."""
    jax, jnp = need_jax()
    transform = {"jax_jacfwd": jax.jacfwd, "jax_jacrev": jax.jacrev}[kind]
    return jax_timed(jax.jit(transform(fun_of_matrix(jnp), argnums=len(args) - 1)), *args)


def prepare_sweep(point, impl):
    A, x = _linear(point)
    if impl == "copy_A":
        return warmed(np.copy, A)
    if impl.startswith("jax_"):
        return _jax_jacobian(impl, lambda xp: lambda A, x: A @ x, A, x)
    need("jacobian")
    return warmed(jitad.jacobian(lambda x: A @ x, mode=impl), x)


def _bottleneck():
    r = rng(7)
    return r.standard_normal((2, 1000)) / 30, r.standard_normal((1000, 2)), r.standard_normal(1000)


def prepare_bottleneck(impl):
    B, C, x = _bottleneck()
    if impl.startswith("jax_"):
        return _jax_jacobian(impl, lambda xp: lambda B, C, x: xp.tanh(C @ (B @ x)), B, C, x)
    need("jacobian")
    return warmed(jitad.jacobian(lambda x: np.tanh(C @ (B @ x)), mode=impl), x)


FLOOR = ["jacfwd_n100_m1000", "jacrev_n1000_m100"]


def prepare_floor(case, impl):
    kind, point = case.split("_", 1)
    A, x = _linear(point)
    if impl == "copy_A":
        return warmed(np.copy, A)
    if impl == "jax":
        return _jax_jacobian("jax_" + kind, lambda xp: lambda A, x: A @ x, A, x)
    need(kind)
    return warmed(getattr(jitad, kind)(lambda x: A @ x), x)


def prepare_hessian(impl, n=100):
    x = rng(3).uniform(-1.5, 1.5, n)
    if impl == "numpy_forward":
        return warmed(rosenbrock(np), x)
    if impl == "jax_hessian":
        jax, jnp = need_jax()
        return jax_timed(jax.jit(jax.hessian(rosenbrock(jnp))), x)
    need("hessian")
    return warmed(jitad.hessian(rosenbrock(np)), x)


def prepare_hvp(impl, n=10 ** 5):
    r = rng(4)
    x, v = r.uniform(-1.5, 1.5, n), r.standard_normal(n)
    if impl == "numpy_forward":
        return warmed(rosenbrock(np), x)
    if impl == "jitad_value_and_grad":
        return warmed(jitad.value_and_grad(rosenbrock(np)), x)
    if impl == "jax_hvp":
        jax, jnp = need_jax()
        f = rosenbrock(jnp)
        return jax_timed(jax.jit(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1]), x, v)
    need("hvp")
    f = rosenbrock(np)
    return warmed(lambda: jitad.hvp(f, (x,), (v,)))


class JacobianSweep:
    """J of f(x) = A x along the lecture's sweep; copy_A is the floor (J = A)."""
    params = (SWEEP, MODES + ["copy_A", "jax_jacfwd", "jax_jacrev"])
    param_names = ["point", "impl"]
    timeout = 300

    def setup(self, point, impl):
        self.call = prepare_sweep(point, impl)

    def time_jacobian(self, point, impl):
        self.call()


class Bottleneck:
    """x in R^1000 -> z = B x in R^2 -> tanh(C z) in R^1000: mixed needs 2 + 2 sweeps."""
    params = MODES + ["jax_jacfwd", "jax_jacrev"]
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl):
        self.call = prepare_bottleneck(impl)

    def time_jacobian(self, impl):
        self.call()


class JacobianFloor:
    """jacfwd of A x (n=100, m=1000) and jacrev (n=1000, m=100) against copying A."""
    params = (FLOOR, ["jitad", "copy_A", "jax"])
    param_names = ["case", "impl"]
    timeout = 300

    def setup(self, case, impl):
        self.call = prepare_floor(case, impl)

    def time_jacobian(self, case, impl):
        self.call()


class HessianRosenbrock:
    """Hessian of Rosenbrock, n = 100 (forward over reverse)."""
    params = ["jitad_hessian", "jax_hessian", "numpy_forward"]
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl):
        self.call = prepare_hessian(impl)

    def time_hessian(self, impl):
        self.call()


class HvpRosenbrock:
    """Hessian-vector product of Rosenbrock, n = 1e5, next to its forward pass and gradient."""
    params = ["jitad_hvp", "jax_hvp", "jitad_value_and_grad", "numpy_forward"]
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl):
        self.call = prepare_hvp(impl)

    def time_hvp(self, impl):
        self.call()
