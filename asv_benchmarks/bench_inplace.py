"""value_and_grad of a loop that fills an output array with in-place writes (issue 11, item 4).

jitad runs the NumPy program as written (`out = np.zeros(n); out[i] = ...`); JAX needs the
functional spelling `out = out.at[i].set(...)` under `jax.jit`; autograd cannot differentiate
in-place writes at all (its setup says so and asv skips it). The Python loop is unrolled by
every tracer, so n = 10,000 is also a test of how a tracer copes with a 10,000-step graph.
"""
import numpy as np

import jitad

from ._common import jax_timed, need_jax, warmed


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
    params = ([1000, 10000], ["jitad", "jax", "autograd"])
    param_names = ["n", "impl"]
    timeout = 3600  # the first jitad and JAX calls trace and compile an n-step unrolled loop

    def setup(self, n, impl):
        x = np.random.default_rng(0).standard_normal(n)
        if impl == "jitad":
            self.call = warmed(jitad.value_and_grad(fill), x)
        elif impl == "jax":
            jax, jnp = need_jax()
            self.call = jax_timed(jax.jit(jax.value_and_grad(fill_jax(jnp))), x)
        else:
            self.call = _autograd_call(x)

    def time_value_and_grad(self, n, impl):
        self.call()
