"""Compiled kernels: generated source -> Numba function, cached in memory and on disk.

The key is the content hash of the generated source (plus jitad, Numba and NumPy
versions), not the user's function object, so a new closure, a new array size or a
new process with the same structure reuses the compiled kernel. On disk each entry is a
Python module named by that hash; Numba's own `cache=True` stores the machine code
beside it, so a warm process skips LLVM. Entries are written atomically (temp file +
rename), readable by the user only, and checked against their hash before import.
"""
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading

import numba
import numpy as np

from .interpreter import evaluate

_VERSION_SALT = None
_lock = threading.Lock()
_kernels = {}   # source hash -> numba dispatcher
STATS = {"traces": 0, "signature_hits": 0, "kernel_hits": 0, "kernel_misses": 0, "disk_loads": 0,
         "numba_compilations": 0, "reference_fallbacks": 0}


def cache_info():
    """Counters of jitad's caches: traces, kernel hits/misses, disk loads, Numba compilations."""
    return dict(STATS)


def cache_dir():
    path = os.environ.get("JITAD_CACHE_DIR")
    if not path:
        import platformdirs
        path = platformdirs.user_cache_dir("jitad")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _salt():
    global _VERSION_SALT
    if _VERSION_SALT is None:
        from . import __version__
        _VERSION_SALT = f"jitad {__version__} numba {numba.__version__} numpy {np.__version__} " \
                        f"python {sys.version_info[:2]}\n"
    return _VERSION_SALT


def source_hash(source):
    return hashlib.sha256((_salt() + source).encode()).hexdigest()[:32]


def _file_is_intact(path, digest):
    try:
        with open(path, encoding="utf-8") as f:
            return source_hash(f.read()) == digest
    except OSError:
        return False


def load_kernel(source):
    """The Numba dispatcher for `source`, from memory, from disk, or newly written."""
    digest = source_hash(source)
    fn = _kernels.get(digest)
    if fn is not None:
        STATS["kernel_hits"] += 1
        return fn
    STATS["kernel_misses"] += 1
    with _lock:
        folder = cache_dir()
        path = os.path.join(folder, f"jitad_{digest}.py")
        if not _file_is_intact(path, digest):
            # a missing, truncated or altered entry is rewritten, never imported
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".py")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(source)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        name = f"jitad_kernel_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        fn = module.kernel
        _kernels[digest] = fn
    return fn


class CompiledGraph:
    """Calls one kernel: flat input values in, list of outputs out."""

    def __init__(self, graph, source, dispatcher, consts, fresh, plan):
        self.graph = graph
        self.source = source
        self.dispatcher = dispatcher
        self.plan = plan
        self.extra = tuple(consts) + ((tuple(fresh),) if "dims[" in source else ())
        self.scalar_inputs = [k for k, n in enumerate(graph.inputs) if n.ndim == 0]
        self.casts = [(k, o.dtype.type) for k, o in enumerate(graph.outputs)
                      if o.ndim == 0 and o.dtype != np.float64]
        self.checked = False

    def __call__(self, args):
        if self.scalar_inputs:
            args = list(args)
            for k in self.scalar_inputs:
                v = args[k]
                if isinstance(v, np.ndarray):
                    args[k] = v[()]
        if not self.checked:
            return self._first_call(args)
        return self.direct(args)

    def direct(self, args):
        """Call with arguments that need no conversion (Python floats, arrays)."""
        outs = self.dispatcher(*args, *self.extra)
        if self.casts:
            outs = list(outs)
            for k, t in self.casts:
                outs[k] = t(outs[k])
        return outs

    def _first_call(self, args):
        """The first call also records whether Numba compiled the kernel or loaded it from disk."""
        before = len(self.dispatcher.signatures)
        hits = sum(self.dispatcher.stats.cache_hits.values())
        outs = self.direct(args)
        if len(self.dispatcher.signatures) > before:
            if sum(self.dispatcher.stats.cache_hits.values()) > hits:
                STATS["disk_loads"] += 1
            else:
                STATS["numba_compilations"] += 1
        self.checked = True
        return outs


class ReferenceGraph:
    """Graphs that call back into Python (custom rules) run on the reference executor."""

    def __init__(self, graph):
        self.graph = graph
        self.source = None

    def __call__(self, args):
        outs = evaluate(self.graph, args)
        # like compiled kernels, never hand out a graph constant or an input itself
        return [o.copy() if node.prim.kind == "leaf" and o.ndim else o for node, o in zip(self.graph.outputs, outs)]


def compile_graph(graph):
    if any(n.prim.kind == "callback" for n in graph.nodes):
        STATS["reference_fallbacks"] += 1
        return ReferenceGraph(graph)
    from .codegen import generate
    source, consts, fresh, plan = generate(graph)
    return CompiledGraph(graph, source, load_kernel(source), consts, fresh, plan)
