"""The cuda target: a graph as `numba.cuda.jit` kernels (`cuda_codegen`), cached on disk, and its executor.

`compile_graph(graph)` generates the module (kernels, launchers and a plain-Python driver), keys it
by the hash of its code -- which names the target (the simulator, or the GPU's compute
capability), so one source compiled for two targets is two entries -- writes it to jitad's disk
cache and imports it (Numba compiles each kernel at its first launch; `@cuda.jit(cache=True)`
keeps the machine code beside that file, so a warm process skips NVVM). The executor copies
NumPy inputs to the device and its outputs back; inputs that are device arrays
(`__cuda_array_interface__`: numba device arrays, CuPy, PyTorch CUDA tensors) stay there, and so do
the outputs of such a call.

Numba's CUDA support is imported only here, when a graph is compiled for the cuda target: with
neither a GPU nor the simulator (`NUMBA_ENABLE_CUDASIM=1`, read when Numba is first imported)
`CudaUnavailableError` says what to install or set.
"""
import threading

import numpy as np

from jitad.backend.cache import cache_dir, import_kernel, source_hash, write_source
from jitad.backend.cuda_codegen import CudaUnsupportedError, generate
from jitad.backend.stats import STATS
from jitad.errors import CompileError
from jitad.profiling import note, phase

_lock = threading.Lock()
_drivers = {}  # source hash -> driver function of an imported module
CALLS = {"count": 0}  # calls run on the cuda target (tests check that the target served them)


class CudaUnavailableError(CompileError):
    """target="cuda" without a usable numba.cuda (no numba-cuda, no GPU and no simulator)."""


def cuda_module():
    """`numba.cuda`, usable: on a GPU, or Numba's simulator (NUMBA_ENABLE_CUDASIM=1). Raises
    CudaUnavailableError saying what to install or set otherwise."""
    try:
        from numba import cuda
    except ImportError as exc:  # a Numba without its CUDA target (numba-cuda not installed)
        raise CudaUnavailableError(
            f"target='cuda' needs Numba's CUDA support, which cannot be imported here ({exc}). Install it with "
            "`pip install \"jitad[cuda]\"` (the numba-cuda package; a CUDA driver and toolkit for a GPU), or "
            "use target='cpu'.") from exc
    if simulator(cuda):
        return cuda
    try:
        available = cuda.is_available()
    except Exception:  # noqa: BLE001 -- a broken driver is "not available"
        available = False
    if not available:
        raise CudaUnavailableError(
            "target='cuda' found no usable CUDA GPU (numba.cuda.is_available() is False: no GPU, or no driver / "
            "toolkit Numba can load). To run the cuda target on Numba's CUDA simulator (slow: every thread is "
            "Python; for tests), set the environment variable NUMBA_ENABLE_CUDASIM=1 before Numba is first "
            "imported; otherwise use target='cpu'.")
    return cuda


def simulator(cuda=None):
    """Whether numba.cuda is Numba's simulator (numba-cuda's or the one built into Numba)."""
    if cuda is None:
        from numba import cuda
    return ".simulator" in getattr(cuda.jit, "__module__", "")


def _capability(cuda):
    if simulator(cuda):
        return None
    return tuple(cuda.get_current_device().compute_capability)


def is_device_array(value):
    """Whether `value` lives on the GPU: a numba device array, or anything with __cuda_array_interface__."""
    return hasattr(value, "copy_to_host") or getattr(value, "__cuda_array_interface__", None) is not None


def load_driver(source):
    """The driver function of the module `source`, from memory, or written to the disk cache and imported."""
    digest = source_hash(source)
    fn = _drivers.get(digest)
    if fn is not None:
        STATS["kernel_hits"] += 1
        return fn
    STATS["kernel_misses"] += 1
    with _lock:
        fn = _drivers.get(digest)
        if fn is None:
            with phase("kernel import"):
                fn = _drivers[digest] = import_kernel(write_source(cache_dir(), digest, source), digest)
    return fn


class CudaGraph:
    """Runs a graph's CUDA module: flat input values in, list of outputs out."""
    serving = None  # no fast path: calls go through __call__ (it moves the arrays)

    def __init__(self, graph, source, driver, consts, fresh, plan, cuda):
        self.graph, self.source, self.driver, self.plan = graph, source, driver, plan
        self._cuda = cuda
        self._consts = consts
        self._extra = None
        self._dims = (tuple(int(d) for d in fresh),) if "dims" in _driver_params(source) else ()

    def extra(self):
        """The constants on the device (copied once) and the sizes."""
        if self._extra is None:
            consts = [self._cuda.to_device(np.ascontiguousarray(c)) if isinstance(c, np.ndarray) else c
                      for c in self._consts]
            self._extra = tuple(consts) + self._dims
        return self._extra

    def __call__(self, args):
        cuda = self._cuda
        CALLS["count"] += 1
        on_device = any(is_device_array(v) for v in args)
        values = []
        for node, v in zip(self.graph.inputs, args):
            if node.ndim == 0:
                if is_device_array(v):
                    v = np.asarray(self._to_numba(v).copy_to_host())
                values.append(np.asarray(v).reshape(())[()])
            elif is_device_array(v):
                values.append(self._to_numba(v))
            else:
                values.append(cuda.to_device(np.ascontiguousarray(v)))
        outs = self.driver(*values, *self.extra())
        result = []
        for node, out in zip(self.graph.outputs, outs):
            if is_device_array(out):
                if node.ndim == 0:
                    out = out.reshape(()) if on_device else node.dtype.type(out.copy_to_host()[0])
                elif not on_device:
                    out = out.copy_to_host()
            elif node.ndim == 0:
                out = node.dtype.type(out)
            result.append(out)
        return result

    def _to_numba(self, value):
        if hasattr(value, "copy_to_host"):
            return value
        return self._cuda.as_cuda_array(value)  # CuPy, PyTorch: a view, no copy


def _driver_params(source):
    import re
    match = re.search(r"^def kernel\(([^)]*)\)", source, re.M)
    return match.group(1).split(", ") if match else []


def compile_graph(graph, labels=None):
    """An executor of `graph` on the cuda target (compiled before the first result: no NumPy tier).
    Raises CudaUnsupportedError (a jitad.UnsupportedOperationError) for a primitive with no CUDA
    kernel, and CudaUnavailableError without a GPU or the simulator."""
    cuda = cuda_module()
    with phase("codegen"):
        source, consts, fresh, plan, _ = generate(graph, labels, simulator=simulator(cuda),
                                                 capability=_capability(cuda))
    note(graph, plan, [source])
    return CudaGraph(graph, source, load_driver(source), consts, fresh, plan, cuda)


def environment():
    """What the cuda target runs on, as text (for `python -m jitad cuda-check`)."""
    cuda = cuda_module()
    if simulator(cuda):
        return "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1; no GPU): every thread runs in Python"
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    return f"GPU {name}, compute capability {'.'.join(map(str, device.compute_capability))}"


__all__ = ["compile_graph", "CudaGraph", "CudaUnavailableError", "CudaUnsupportedError", "cuda_module",
           "simulator", "is_device_array", "environment"]
