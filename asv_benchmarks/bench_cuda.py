"""Issue 14: the cuda target on a GPU. value_and_grad of elementwise n = 1e7, Rosenbrock n = 1e7, the
MLP at batch 4096 and MDS at N = 2000, on the cuda target with the inputs on the device (numba
device arrays in, device arrays out: no transfers in the timed call), on the cuda target with
NumPy inputs (copied to the device and back), on the cpu target, and JAX's value_and_grad on the
GPU where JAX has one.

Skipped (setup raises NotImplementedError) without a CUDA GPU: Numba's simulator runs every
thread in Python, its timings mean nothing. Whether a GPU is there is asked in a fresh process
(Numba reads NUMBA_ENABLE_CUDASIM once), so this module never turns the simulator on.
"""
import os
import subprocess
import sys

import numpy as np

from . import _cases
from ._common import need_jax

import jitad

_GPU = None

SIZES = {"elementwise_1e7": ("elementwise", 10 ** 7), "rosenbrock_1e7": ("rosenbrock", 10 ** 7),
         "mlp_4096": ("mlp", 4096), "mds_2000": ("mds", 2000)}


def _need_gpu():
    global _GPU
    if _GPU is None:
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}  # a GPU, not the simulator
        try:
            out = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
                                 env=env, capture_output=True, text=True, timeout=120)
            _GPU = out.stdout.strip().endswith("True")
        except (OSError, subprocess.TimeoutExpired):
            _GPU = False
    if not _GPU:
        raise NotImplementedError("no CUDA GPU (numba.cuda.is_available() is False)")


def _args(case):
    name, size = SIZES[case]
    if name in ("elementwise", "rosenbrock"):
        return name, (np.random.default_rng(0).uniform(-1.5, 1.5, size),)
    if name == "mlp":
        return name, _cases.mlp_args(batch=size)
    return name, _cases.mds_args(N=size)


class CudaValueAndGrad:
    """One row per program, one column per implementation (warm calls)."""
    params = (list(SIZES), ["cuda_device_arrays", "cuda_numpy_arrays", "cpu", "jax_gpu"])
    param_names = ["case", "impl"]
    timeout = 600

    def setup(self, case, impl):
        _need_gpu()
        name, args = _args(case)
        make = getattr(_cases, name)
        if impl == "jax_gpu":
            jax, jnp = need_jax()
            if not jax.devices("gpu"):
                raise NotImplementedError("JAX has no GPU device here")
            fn = jax.jit(jax.value_and_grad(make(jnp)))
            dargs = jax.tree_util.tree_map(jnp.asarray, args)
            jax.block_until_ready(fn(*dargs))
            self.call = lambda: jax.block_until_ready(fn(*dargs))
            return
        target = "cpu" if impl == "cpu" else "cuda"
        vg = jitad.value_and_grad(make(np), target=target)
        if impl == "cuda_device_arrays":
            import optree
            from numba import cuda
            args = optree.tree_map(cuda.to_device, args)

            def call():
                out = vg(*args)
                cuda.synchronize()
                return out
            self.call = call
        else:
            self.call = lambda: vg(*args)
        self.call()

    def time_value_and_grad(self, case, impl):
        self.call()

