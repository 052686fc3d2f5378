"""Shared by the benchmark modules and `ratios.py`: the disk-cache folder, the optional
JAX peer, and the way a benchmark says "this feature is not there yet" (asv skips a
benchmark whose setup raises NotImplementedError)."""
import os
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Benchmarks keep their compiled kernels apart from the user's cache (and from the
# test suite's); a JITAD_CACHE_DIR set by the caller wins.
os.environ.setdefault("JITAD_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jitad-asv-cache"))

import numpy as np  # noqa: E402

import jitad  # noqa: E402

# The benchmarks time compiled kernels: compile before the first result rather than answer on
# the NumPy tier meanwhile. Set in this process only (not in os.environ), so child processes
# that time the tiers (firstresult.py) keep jitad's default.
jitad.config.compile = "eager"

_jax = None


def jax_or_none():
    """(jax, jax.numpy) with float64 enabled, or None when JAX is not installed."""
    global _jax
    if _jax is None:
        try:
            import jax
            import jax.numpy as jnp
        except ImportError:
            _jax = False
        else:
            jax.config.update("jax_enable_x64", True)
            _jax = (jax, jnp)
    return _jax or None


def need_jax():
    pair = jax_or_none()
    if pair is None:
        raise NotImplementedError("JAX is not installed (optional peer: pip install jax jaxlib)")
    return pair


def need(*names):
    """Skip (NotImplementedError) unless jitad has all of `names` yet."""
    missing = [name for name in names if not hasattr(jitad, name)]
    if missing:
        raise NotImplementedError(f"jitad has no {', '.join(missing)} yet")


def jax_timed(fn, *args):
    """A no-argument callable running a jitted JAX function to completion on device arrays."""
    jax, jnp = need_jax()
    args = jax.tree_util.tree_map(jnp.asarray, args)
    jax.block_until_ready(fn(*args))  # compile outside the timed call

    def call():
        return jax.block_until_ready(fn(*args))
    return call


def warmed(fn, *args):
    """A no-argument callable for `fn(*args)`, called once first (compile, disk load)."""
    fn(*args)
    return lambda: fn(*args)


def rng(seed=0):
    return np.random.default_rng(seed)
