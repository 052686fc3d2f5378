"""value_and_grad of a loop that fills an output array with in-place writes (issue 11, item 4).

jitad runs the NumPy program as written (`out = np.zeros(n); out[i] = ...`); JAX needs the
functional spelling `out = out.at[i].set(...)` under `jax.jit`; autograd cannot differentiate
in-place writes at all (its setup says so and asv skips it).

Every tracer unrolls the Python loop, so the trace has n steps. jitad rolls the steps back into
one loop (jitad.frontend.rolling), and a one-element write whose place no other step writes is
not carried through it: the loop outputs the written values and one gather after it writes
them, so a step costs O(1) and the compile does not grow with n. Measured on the 2-core
development machine (2026-12-03, `python asv_benchmarks/firstresult.py --only inplace_n1000
inplace_n10000 --impls jitad,jitad_eager`): eager compile 4.6 s / 9.2 s at n = 1,000 / 10,000,
then 0.3 / 3.8 ms a call; the NumPy tier (the unrolled trace, each write an O(n) functional
update) answers the first call in 0.44 s / 6.7 s. (2026-12-04, after the NumPy tier stopped
holding every version of the array and every cotangent: 0.30 s / 4.84 s, eager 2.89 s / 5.42 s,
`--only inplace_n1000 inplace_n10000 --impls jitad,jitad_eager`.) JAX's jit of the n = 1,000 loop took 443 s to
compile (10.7 ms a call after), so its n = 10,000 run is skipped (NotImplementedError).
"""
import numpy as np

import jitad

from ._common import jax_timed, need_jax, warmed

COMPILE_LIMIT = {"jax": 1000}  # the largest n it compiles here in minutes


def fill(x):
    """The program as a NumPy user writes it."""
    n = x.shape[0]
    out = np.zeros(n)
    for i in range(n):
        out[i] = np.sin(x[i]) * x[i - 1]
    return np.sum(out ** 2)


def fill_jax(jnp):
    def fill_functional(x):
        out = jnp.zeros(x.shape[0])
        for i in range(x.shape[0]):
            out = out.at[i].set(jnp.sin(x[i]) * x[i - 1])
        return jnp.sum(out ** 2)
    return fill_functional


def _autograd_call(x):
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        raise NotImplementedError("autograd is not installed (optional peer)") from None

    def fill_autograd(x):
        out = anp.zeros(x.shape[0])
        for i in range(x.shape[0]):
            out[i] = anp.sin(x[i]) * x[i - 1]
        return anp.sum(out ** 2)

    try:
        autograd.value_and_grad(fill_autograd)(x[:3])
    except Exception as error:  # autograd's boxes cannot be stored into an ndarray
        raise NotImplementedError(f"autograd cannot differentiate in-place writes ({type(error).__name__}: "
                                  f"{str(error)[:80]})") from None
    return warmed(autograd.value_and_grad(fill_autograd), x)


class InplaceLoop:
    params = ([300, 1000, 10000], ["jitad", "jitad_reference", "jax", "autograd"])
    param_names = ["n", "impl"]
    timeout = 3600  # the first calls trace (and compile) an n-step unrolled loop

    def setup(self, n, impl):
        x = np.random.default_rng(0).standard_normal(n)
        self.backend = jitad.config.backend
        if n > COMPILE_LIMIT.get(impl, n):
            raise NotImplementedError(f"{impl}: compiling the {n}-step unrolled loop is impractical here "
                                      "(its compile time grows with n; see the module docstring)")
        if impl == "jitad":
            self.call = warmed(jitad.value_and_grad(fill), x)
        elif impl == "jitad_reference":
            jitad.config.backend = "reference"
            self.call = warmed(jitad.value_and_grad(fill), x)
        elif impl == "jax":
            jax, jnp = need_jax()
            self.call = jax_timed(jax.jit(jax.value_and_grad(fill_jax(jnp))), x)
        else:
            self.call = _autograd_call(x)

    def teardown(self, n, impl):
        jitad.config.backend = self.backend

    def time_value_and_grad(self, n, impl):
        self.call()
