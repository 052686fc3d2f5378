"""Issue 3: the compiled backend. Value and gradient side by side with NumPy's forward
pass, a hand-written Numba kernel and JAX; call overhead; cold and warm first calls;
a new size compiles nothing."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from . import _cases
from ._common import ROOT, need_jax

import jitad


class ValueAndGrad:
    """One row per case, one column per implementation (asv prints them as a grid).
    numpy_forward is the forward pass alone, the others value and gradient, warm."""
    params = (list(_cases.CASES), _cases.IMPLS)
    param_names = ["case", "impl"]
    timeout = 300

    def setup(self, case, impl):
        self.call = _cases.prepare(case, impl)

    def time_value_and_grad(self, case, impl):
        self.call()


def _scalar_fun(a, b):
    return a * b + np.sin(a)


class CallOverhead:
    """`grad(lambda a, b: a*b + np.sin(a))(2.0, 5.0)` on Python floats. `jitad` reuses one
    grad function (the dispatch path); `jitad_new_lambda` builds a new lambda and grad
    every call (re-trace, compiled kernel reused)."""
    params = ["jitad", "jitad_new_lambda", "jax"]
    param_names = ["impl"]

    def setup(self, impl):
        if impl == "jitad":
            g = jitad.grad(lambda a, b: a * b + np.sin(a))
        elif impl == "jitad_new_lambda":
            def g(a, b):
                return jitad.grad(lambda a, b: a * b + np.sin(a))(a, b)
        else:
            jax, jnp = need_jax()
            jg = jax.jit(jax.grad(lambda a, b: a * b + jnp.sin(a)))

            def g(a, b):
                return float(jg(a, b))
        g(2.0, 5.0)
        self.g = g

    def time_grad_python_floats(self, impl):
        self.g(2.0, 5.0)


# --- first calls in a fresh process -------------------------------------------------------------
FIRST_CALL_CASES = ["elementwise_1e3", "rosenbrock_1e3", "mlp", "mds"]

_CHILD_SETUP = """
import json, os, sys, tempfile
sys.path.insert(0, {root!r})
os.environ.setdefault("JITAD_COMPILE", "eager")
if {fresh!r}:
    import atexit, shutil
    os.environ["JITAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="jitad-asv-cold-")
    atexit.register(shutil.rmtree, os.environ["JITAD_CACHE_DIR"], True)
import numpy as np
import jitad
from asv_benchmarks import _cases
case = _cases.CASES[{case!r}]
args = case.args()
vg = jitad.value_and_grad(case.make(np))
kernel_args = case.kernel_args(*args)
"""
_STMT = {"jitad": "vg(*args)", "handwritten": "case.kernel(*kernel_args)"}


def _child(case, fresh, impl="jitad"):
    """(stmt, setup) for asv's timeraw: setup imports and builds inputs, stmt is the first call."""
    return _STMT[impl], _CHILD_SETUP.format(root=ROOT, fresh=fresh, case=case)


def _populate(case):
    """Compile the case into the disk caches (jitad's, and Numba's for the hand-written kernel)."""
    c = _cases.CASES[case]
    args = c.args()
    jitad.value_and_grad(c.make(np))(*args)
    c.kernel(*c.kernel_args(*args))


class FirstCall:
    """Time of the first value_and_grad call in a new Python process, after imports:
    cold = trace + generate + Numba compile into a fresh, empty JITAD_CACHE_DIR;
    warm_disk = trace + load from a populated disk cache (no LLVM);
    handwritten_warm_disk = the first call of the hand-written `@njit(cache=True)` kernel,
    which pays Numba's own one-time start-up (target context, BLAS binding) just the same."""
    params = FIRST_CALL_CASES
    param_names = ["case"]
    number = 1
    repeat = (1, 3, 30.0)
    timeout = 300

    def setup(self, case):
        _populate(case)

    def timeraw_cold(self, case):
        return _child(case, True)

    def timeraw_warm_disk(self, case):
        return _child(case, False)

    def timeraw_handwritten_warm_disk(self, case):
        return _child(case, False, "handwritten")

    def track_warm_disk_numba_compilations(self, case):
        """Numba compilations in a new process whose disk cache is warm (should be 0)."""
        code = _CHILD_SETUP.format(root=ROOT, fresh=False, case=case) + textwrap.dedent("""
            vg(*args)
            print(json.dumps(jitad.cache_info()))
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])["numba_compilations"]
    track_warm_disk_numba_compilations.unit = "compilations"


class ImportTime:
    """`import jitad` in a new process (context for the first-call times, which exclude it)."""
    number = 1
    repeat = (1, 3, 20.0)

    def timeraw_import_jitad(self):
        return "import jitad", ""


class NewSize:
    """Numba compilations triggered by calling a warm value_and_grad with a new array size
    (should be 0: kernels read sizes from their inputs)."""
    params = list(_cases.RESIZED)
    param_names = ["case"]

    def setup(self, case):
        c = _cases.CASES[case]
        self.vg = jitad.value_and_grad(c.make(np))
        self.vg(*c.args())
        self.resized = c.args(_cases.RESIZED[case])

    def track_new_size_numba_compilations(self, case):
        before = jitad.cache_info()["numba_compilations"]
        self.vg(*self.resized)
        return jitad.cache_info()["numba_compilations"] - before
    track_new_size_numba_compilations.unit = "compilations"
