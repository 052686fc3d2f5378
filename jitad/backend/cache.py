"""Compiled kernels: generated source -> Numba function, cached in memory and on disk.

The key is the content hash of the generated source (plus jitad, Numba and NumPy
versions), not the user's function object, so a new closure, a new array size or a
new process with the same structure reuses the compiled kernel. On disk each entry is a
Python module named by that hash; Numba's own `cache=True` stores the machine code
beside it, so a warm process skips LLVM. Entries are written atomically (temp file +
link or rename), readable by the user only, and checked against their hash before import.

Tiers (`jitad.config.compile`): with "background" (the default) a new kernel's first calls
run the optimised graph on the NumPy executor (`TieredGraph`) while a worker process
(`jitad.backend.worker`) compiles the kernel into this disk cache for the exact argument types of
the first call; the next call after it is ready loads it (a Numba cache hit) and from
then on the kernel serves. "eager" compiles before the first result; "off" never compiles.
Whoever compiles a kernel holds its lock file (`jitad_<hash>.lock`, `fcntl.flock`) and,
when done, writes a marker `jitad_<hash>.<signature hash>.ready` holding the source file's
stamp, so processes sharing a cache never compile one kernel twice at the same time and
know, without importing Numba, that a kernel is ready.

Numba is imported only when a kernel is loaded or compiled in this process.
"""
import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
import warnings

import numpy as np

from jitad.backend.stats import STATS
from jitad.primitives.core import NumpyOnly
from jitad.interpreter import evaluate
from jitad.profiling import note, phase

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock (Numba's own cache writes stay atomic)
    fcntl = None

_VERSION_SALT = None
_lock = threading.Lock()
_kernels = {}   # source hash -> numba dispatcher
_ready = set()  # (source hash, signature hash) known compiled in the disk cache


def cache_info():
    """Counters of jitad's caches: traces, kernel hits/misses, disk loads, Numba compilations,
    calls answered on the NumPy tier and kernels compiled by the background worker."""
    return dict(STATS)


def cache_dir():
    path = os.environ.get("JITAD_CACHE_DIR")
    if not path:
        import platformdirs
        path = platformdirs.user_cache_dir("jitad")
    path = os.path.abspath(path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _numba_version():
    """Numba's version without importing Numba (importing it costs more than a first NumPy call)."""
    try:
        from importlib.metadata import version
        return version("numba")
    except Exception:  # no distribution metadata (a vendored copy): ask the module
        import numba
        return numba.__version__


def _salt():
    global _VERSION_SALT
    if _VERSION_SALT is None:
        from jitad import __version__
        _VERSION_SALT = f"jitad {__version__} numba {_numba_version()} numpy {np.__version__} " \
                        f"python {sys.version_info[:2]} helpers {_helpers_hash()}\n"
    return _VERSION_SALT


def _helpers_hash():
    """The hash of the helper modules generated kernels call and inline (K., KL.: kernels*.py):
    a change to one of them must not let a kernel compiled against the old one be loaded."""
    folder = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.startswith("kernels") and name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()[:16]


def source_hash(source):
    """The key of a kernel: the hash of its code without comments or blank lines (`code_of`),
    so renaming or commenting generated code does not split the cache, while any change to the
    code changes the key."""
    return hashlib.sha256((_salt() + code_of(source)).encode()).hexdigest()[:32]


def code_of(source):
    """`source` without comments, blank lines or trailing spaces. Line by line while a `#` can
    only start a comment (no quote before it on its line, no string spanning lines); otherwise
    by Python's tokenizer."""
    lines = []
    for line in source.splitlines():
        cut = line.find("#")
        code = line if cut < 0 else line[:cut]
        if (cut >= 0 and ("'" in code or '"' in code)) or '"""' in code or "'''" in code or code.endswith("\\"):
            return _code_tokens(source)
        code = code.rstrip()
        if code:
            lines.append(code)
    return "\n".join(lines)


def _code_tokens(source):
    import io
    import tokenize
    skip = (tokenize.COMMENT, tokenize.NL)
    try:
        tokens = [f"{tok.type} {tok.string}" for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                  if tok.type not in skip]
    except (tokenize.TokenError, SyntaxError):  # not Python: every character counts
        return source
    return "\n".join(tokens)


def _file_is_intact(path, digest):
    try:
        with open(path, encoding="utf-8") as f:
            return source_hash(f.read()) == digest
    except OSError:
        return False


def write_source(folder, digest, source):
    """The path of the entry for `source`, written if it is missing, truncated or altered.

    A new entry is linked into place, so it never replaces an intact one another process
    wrote meanwhile (a rewrite changes the file's stamp, which invalidates Numba's cache)."""
    path = os.path.join(folder, f"jitad_{digest}.py")
    if _file_is_intact(path, digest):
        return path
    # the record of the helpers its machine code calls by address (jitad/backend/calls.py), there
    # before the source is: a kernel whose source is there and record is not has lost its record
    os.close(os.open(os.path.join(folder, f"jitad_{digest}.symbols"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(source)
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            if not _file_is_intact(path, digest):  # a missing, truncated or altered entry is rewritten
                os.replace(tmp, path)
                tmp = None
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def import_kernel(path, digest):
    """Import a checked entry and return its Numba dispatcher (this imports Numba)."""
    name = f"jitad_kernel_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.kernel


def load_kernel(source):
    """The Numba dispatcher for `source`, from memory, from disk, or newly written."""
    digest = source_hash(source)
    fn = _kernels.get(digest)
    if fn is not None:
        STATS["kernel_hits"] += 1
        return fn
    STATS["kernel_misses"] += 1
    if is_parallel(source):
        openmp_waits_passively()  # before Numba compiles it, which starts its thread pool
    with _lock:
        fn = _kernels.get(digest)
        if fn is None:
            with phase("kernel import"):
                fn = _kernels[digest] = import_kernel(write_source(cache_dir(), digest, source), digest)
    return fn


# --- kernels shared between processes: lock, ready markers, argument types ------------------------
@contextlib.contextmanager
def kernel_lock(folder, digest):
    """Held by whoever compiles kernel `digest` (this process, its worker or another process)."""
    if fcntl is None:
        yield
        return
    fd = os.open(os.path.join(folder, f"jitad_{digest}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock (also when the holder dies)


def _stamp(path):
    st = os.stat(path)
    return f"{st.st_mtime_ns} {st.st_size}"


def _marker_path(folder, digest, sighash):
    return os.path.join(folder, f"jitad_{digest}.{sighash}.ready")


def marker_valid(folder, digest, sighash):
    """Whether Numba's disk cache holds kernel `digest` compiled for signature `sighash`: its
    marker exists and names the current stamp of the source file (Numba's cache key)."""
    try:
        with open(_marker_path(folder, digest, sighash), encoding="ascii") as f:
            return f.read() == _stamp(os.path.join(folder, f"jitad_{digest}.py"))
    except (OSError, ValueError):
        return False


def write_marker(folder, digest, sighash):
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".ready")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(_stamp(os.path.join(folder, f"jitad_{digest}.py")))
        os.replace(tmp, _marker_path(folder, digest, sighash))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _describe(value):
    kind = type(value)
    if kind is np.ndarray:
        dtype = value.dtype
        if dtype.kind not in "biuf" or not dtype.isnative:
            return None
        flags = value.flags
        layout = "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"
        return ["a", dtype.str, value.ndim, layout, not flags.writeable]
    if kind is float:
        return ["s", np.dtype(np.float64).str]
    if kind is bool:
        return ["s", np.dtype(np.bool_).str]
    if kind is int:
        return ["s", np.dtype(np.int64).str] if -2 ** 63 <= value < 2 ** 63 else None
    if isinstance(value, np.generic):
        dtype = value.dtype
        return ["s", dtype.str] if dtype.kind in "biuf" and dtype.isnative else None
    if kind is tuple:
        items = [_describe(v) for v in value]
        return None if any(i is None for i in items) else ["t", items]
    return None


def describe_args(values):
    """The Numba types of kernel arguments as plain JSON data, computed without importing Numba
    (what `numba.typeof` gives, see `numba_type`); None if some argument is of another kind."""
    out = []
    for v in values:
        d = _describe(v)
        if d is None:
            return None
        out.append(d)
    return out


def signature_hash(description):
    return hashlib.sha256(json.dumps(description).encode()).hexdigest()[:16]


def numba_type(d):
    """The Numba type a `describe_args` entry stands for (imports Numba)."""
    from numba.core import types
    from numba.np.numpy_support import from_dtype
    if d[0] == "a":
        return types.Array(from_dtype(np.dtype(d[1])), d[2], d[3], readonly=d[4])
    if d[0] == "s":
        return from_dtype(np.dtype(d[1]))
    return types.BaseTuple.from_types([numba_type(x) for x in d[1]])


def _kernel_arguments(scalar_inputs, args, extra):
    """The arguments a kernel is called with: 0-d array inputs as scalars, then the extras."""
    if scalar_inputs:
        args = list(args)
        for k in scalar_inputs:
            v = args[k]
            if isinstance(v, np.ndarray):
                args[k] = v[()]
    return list(args) + list(extra)


def _uses_dims(source):
    from jitad.backend.codegen import uses_dims
    return uses_dims(source)


# --- threads of the parallel target -------------------------------------------------------------
THREADS = [None]  # jitad.config.threads: None = all of Numba's threads (NUMBA_NUM_THREADS)
_thread_state = threading.local()


def default_threads():
    """Numba's thread count (NUMBA_NUM_THREADS, default: the CPUs), read without importing Numba."""
    value = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


def is_parallel(source):
    """Whether a kernel's source runs loop nests on several threads (codegen's parallel form)."""
    return "numba.prange(" in source


_LAYER = [None]                # Numba's threading layer, known after the first parallel call
_one_at_a_time = threading.Lock()


def openmp_waits_passively():
    """Have OpenMP's idle threads sleep at once (OMP_WAIT_POLICY=PASSIVE) unless the user set a
    wait policy, before Numba's "omp" threading layer loads libgomp (it reads the variable then).

    With GNU OpenMP's default, a thread that finishes a parallel loop keeps spinning on its core
    for a while, as OpenBLAS's idle threads do after a matrix product; a kernel that alternates
    products and parallel loops (an MLP's value_and_grad), or a program that alternates NumPy's
    `@` with a parallel kernel, then has each library's threads take the other's cores. Measured
    on the 2-core machine (/tmp/s15/mlp_one.py, /tmp/s15/after.py): the MLP B = 512 [64, 256, 256,
    10] value_and_grad took 34 ms on the parallel target against 4.1 ms serial (4.4 ms passive);
    a 256x256 `A @ B` alternated with a one-loop parallel kernel 8.6 ms a pair (0.73 ms passive);
    GOMP_SPINCOUNT=30000 still 10 ms. A parallel loop nest here is >= 2^16 elements of work, so
    waking a sleeping thread (microseconds) costs little."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def threaded(dispatcher):
    """`dispatcher` called with this thread's Numba thread count set to jitad.config.threads first
    (Numba's setting is per calling thread, so a user thread or a Dask worker's gets it too). Under
    Numba's "workqueue" threading layer (no TBB or OpenMP), which aborts the process when two
    threads launch parallel work at once, parallel kernels run one at a time."""
    state = _thread_state

    def call(*args):
        if getattr(state, "threads", None) != THREADS[0]:
            import numba
            numba.set_num_threads(min(THREADS[0] or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS))
            state.threads = THREADS[0]
        if _LAYER[0] in ("omp", "tbb"):
            return dispatcher(*args)
        with _one_at_a_time:
            out = dispatcher(*args)
            if _LAYER[0] is None:
                import numba
                _LAYER[0] = numba.threading_layer()
        return out
    return call


# --- executors: flat input values in, list of outputs out --------------------------------------
class CompiledGraph:
    """Calls one kernel: flat input values in, list of outputs out."""

    def __init__(self, graph, source, dispatcher, consts, fresh, plan):
        self.graph = graph
        self.source = source
        self.numba_dispatcher = dispatcher
        self.dispatcher = threaded(dispatcher) if is_parallel(source) else dispatcher
        self.plan = plan
        self.extra = tuple(consts) + ((tuple(fresh),) if _uses_dims(source) else ())
        self.scalar_inputs = [k for k, n in enumerate(graph.inputs) if n.ndim == 0]
        self.casts = [(k, o.dtype.type) for k, o in enumerate(graph.outputs)
                      if o.ndim == 0 and o.dtype != np.float64]
        self.checked = False

    @property
    def serving(self):
        """The compiled executor that answers calls (callers may install fast paths on it)."""
        return self

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
        """The first call also records whether Numba compiled the kernel or loaded it from disk.
        A compile holds the kernel's lock and leaves a ready marker for other processes."""
        description = describe_args(list(args) + list(self.extra))
        if description is None:
            outs = self._counted_call(args)
        else:
            digest, sighash, folder = source_hash(self.source), signature_hash(description), cache_dir()
            if (digest, sighash) in _ready or marker_valid(folder, digest, sighash):
                outs = self._counted_call(args)
            else:
                with kernel_lock(folder, digest):
                    outs = self._counted_call(args)
                    write_marker(folder, digest, sighash)
            _ready.add((digest, sighash))
        self.checked = True
        return outs

    def _counted_call(self, args):
        before = len(self.numba_dispatcher.signatures)
        hits = sum(self.numba_dispatcher.stats.cache_hits.values())
        from jitad.frontend.tracer import numpy_unhooked  # noqa: PLC0415
        try:
            with numpy_unhooked():  # Numba types the kernel now: not while another thread traces
                outs = self.direct(args)
        except RecursionError as exc:  # Numba's passes recurse over very deep expressions
            from jitad.errors import CompileError
            raise CompileError(
                f"Numba could not compile the generated kernel ({len(self.graph.nodes)} graph nodes): its "
                "expressions nest too deeply (RecursionError in Numba). This happens for very long chains "
                "of in-place writes or elementwise operations on one array. Way out: "
                "jitad.config.compile = 'off' runs the function on the NumPy executor (same results), or "
                "write the loop as whole-array operations.") from exc
        if len(self.numba_dispatcher.signatures) > before:
            if sum(self.numba_dispatcher.stats.cache_hits.values()) > hits:
                STATS["disk_loads"] += 1
            else:
                STATS["numba_compilations"] += 1
        return outs


class ReferenceGraph:
    """Graphs that call back into Python (custom rules) run on the reference executor; `why`
    says what keeps a graph from compiling (None: compile="off")."""
    serving = None  # no compiled kernel: callers keep calling through this object

    def __init__(self, graph, why=None):
        self.graph = graph
        self.source = None
        self.why = why

    def __call__(self, args):
        outs = evaluate(self.graph, args)
        # like compiled kernels, never hand out a graph constant or an input itself
        return [o.copy() if node.prim.kind == "leaf" and o.ndim else o for node, o in zip(self.graph.outputs, outs)]


_warned = set()


def _warn_once(kind, message):
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


class TieredGraph:
    """A kernel in the making: calls run the graph on the NumPy executor until the
    background worker has compiled the kernel for the first call's argument types; the
    first call after that loads it from disk, and from then on `serving` is the compiled
    executor (so `Staged` callers install their fast paths only then). Each call checks one
    attribute of the job (`done`, set by the worker client's thread): no lock, no syscall.
    """

    def __init__(self, graph, source, consts, fresh, plan):
        self.graph, self.source, self.plan = graph, source, plan
        self.consts, self.fresh = consts, fresh
        self.extra = tuple(consts) + ((tuple(fresh),) if _uses_dims(source) else ())
        self.scalar_inputs = [k for k, n in enumerate(graph.inputs) if n.ndim == 0]
        self.digest = source_hash(source)
        self.reference = ReferenceGraph(graph)
        self.serving = None  # the CompiledGraph, once it answers
        self.job = None      # the worker's job (None before the first call)
        self._request = None
        self._submissions = 0
        self._lock = threading.Lock()

    def __call__(self, args):
        serving = self.serving
        if serving is not None:
            return serving(args)
        job = self.job
        if job is None:
            return self._first_call(args)
        if job.done:
            self._settle(job)
            if self.serving is not None:
                return self.serving(args)
        else:
            job.calls += 1  # the worker compiles the most called kernel first
        STATS["numpy_tier_calls"] += 1
        return self.reference(args)

    def _first_call(self, args):
        self.start(args)
        return self(args)

    def start(self, args):
        """Ask the worker for the kernel, for the types of `args` (or load it, if it is ready)."""
        with self._lock:
            if self.serving is None and self.job is None:
                description = describe_args(_kernel_arguments(self.scalar_inputs, args, self.extra))
                if description is None:  # an argument the worker cannot describe: compile here
                    self.serving = self._compiled()
                else:
                    sighash = signature_hash(description)
                    folder = cache_dir()
                    if (self.digest, sighash) in _ready or marker_valid(folder, self.digest, sighash):
                        self.serving = self._compiled()  # compiled before (by any process): load it now
                    else:
                        self._request = {"folder": folder, "digest": self.digest, "source": self.source,
                                         "signature": description}
                        self._submit()

    def _submit(self):
        from jitad.backend import worker
        self._submissions += 1
        self.job = worker.submit(self._request)

    def _compiled(self):
        return CompiledGraph(self.graph, self.source, load_kernel(self.source), self.consts, self.fresh, self.plan)

    def _settle(self, job):
        """The worker is done with `job` (called by the caller's thread): switch, resubmit or stay."""
        from jitad.backend import worker
        with self._lock:
            if self.serving is not None or self.job is not job:
                return
            for note in worker.take_notes():
                _warn_once("worker", f"jitad: {note}")
            if job.status in ("compiled", "loaded", "cached"):
                try:
                    self.serving = self._compiled()
                    STATS["tier_switches"] += 1
                    return
                except Exception as exc:  # noqa: BLE001 -- stay on the NumPy tier, and say why
                    message = f"loading the compiled kernel failed ({type(exc).__name__}: {exc})"
            elif job.status == "retry" and self._submissions < 3:  # the worker was lost in a fork
                self._submit()
                return
            else:
                message = job.message or f"the background compile ended with status {job.status!r}"
            self.job = worker.NEVER
            _warn_once(job.status, f"jitad: {message}. {_staying(job.status)}")


# --- the split form: one kernel per distinct loop nest, called from a plain Python driver -----------
# graphs with more nodes than this compile in the split form (a long program: typically a Python
# loop whose steps repeat the same nests); smaller ones as one kernel, whose steady state is
# better (no Python driver between nests: an RNN of 10 steps runs in 45 us fused, 210 us split)
SPLIT_NODES = 300


class SplitCompiledGraph(CompiledGraph):
    """A graph in the split form (`codegen.SplitForm`): its driver is plain Python calling one
    Numba kernel per distinct loop nest, so compile time follows the number of distinct nests,
    not the length of the program (each step of an unrolled loop calls the same kernel)."""

    def __init__(self, graph, split):
        self.split = split
        namespace = {f"N{k}": threaded(load_kernel(source)) if is_parallel(source) else load_kernel(source)
                     for k, source in enumerate(split.nests)}
        code = compile(split.source, f"<jitad driver {source_hash(split.source)}>", "exec")
        exec(code, namespace)  # noqa: S102 -- jitad's own generated source
        super().__init__(graph, split.source, namespace["kernel"], split.consts, split.fresh, split.plan)

    def _first_call(self, args):
        self.checked = True
        from jitad.frontend.tracer import numpy_unhooked  # noqa: PLC0415
        with numpy_unhooked():  # the nests compile at their first calls
            return self.direct(args)


def _nest_requests(split, args):
    """Worker requests for the nest kernels (and argument types) not yet compiled on disk, or
    None when some argument type cannot be described (then nests compile where they run)."""
    folder, requests, seen = cache_dir(), [], set()
    for k, values in split.example_arguments(args):
        description = describe_args(values)
        if description is None:
            return None
        digest, sighash = source_hash(split.nests[k]), signature_hash(description)
        if (digest, sighash) in seen or (digest, sighash) in _ready or marker_valid(folder, digest, sighash):
            continue
        seen.add((digest, sighash))
        requests.append({"folder": folder, "digest": digest, "source": split.nests[k], "signature": description})
    return requests


class TieredSplit(TieredGraph):
    """`TieredGraph` for the split form: the worker compiles every nest kernel (one job each);
    when all are done the driver serves."""

    def __init__(self, graph, split):
        self.graph, self.split, self.source, self.plan = graph, split, split.source, split.plan
        self.extra = tuple(split.consts) + ((tuple(split.fresh),) if _uses_dims(split.source) else ())
        self.scalar_inputs = [k for k, n in enumerate(graph.inputs) if n.ndim == 0]
        self.reference = ReferenceGraph(graph)
        self.serving, self.jobs = None, None
        self._lock = threading.Lock()

    def __call__(self, args):
        serving = self.serving
        if serving is not None:
            return serving(args)
        jobs = self.jobs
        if jobs is None:
            return self._first_call(args)
        if all(job.done for job in jobs):
            self._settle_all(jobs)
            if self.serving is not None:
                return self.serving(args)
        else:
            for job in jobs:
                job.calls += 1
        STATS["numpy_tier_calls"] += 1
        return self.reference(args)

    def start(self, args):
        with self._lock:
            if self.serving is None and self.jobs is None:
                requests = _nest_requests(self.split, _kernel_arguments(self.scalar_inputs, args, ()))
                if not requests:  # all compiled before, or types only the running driver can tell
                    self.serving = self._compiled()
                else:
                    from jitad.backend import worker
                    self.jobs = [worker.submit(request) for request in requests]

    def _compiled(self):
        return SplitCompiledGraph(self.graph, self.split)

    def _settle_all(self, jobs):
        from jitad.backend import worker
        with self._lock:
            if self.serving is not None or self.jobs is not jobs:
                return
            for note in worker.take_notes():
                _warn_once("worker", f"jitad: {note}")
            failed = [job for job in jobs if job.status not in ("compiled", "loaded", "cached")]
            if not failed:
                try:
                    self.serving = self._compiled()
                    STATS["tier_switches"] += 1
                    return
                except Exception as exc:  # noqa: BLE001 -- stay on the NumPy tier, and say why
                    message = f"loading the compiled kernels failed ({type(exc).__name__}: {exc})"
            else:
                job = failed[0]
                message = job.message or f"the background compile ended with status {job.status!r}"
            self.jobs = [worker.NEVER]
            status = failed[0].status if failed else "load"
            _warn_once(status, f"jitad: {message}. {_staying(status)}")


def _staying(status):
    """What a caller left on the NumPy tier should know: compiling in this process helps only when the
    worker could not run; a kernel that failed to compile (status "error") would fail here too."""
    if status == "error":
        return ("This function keeps running on the NumPy executor (same results). Please report the error "
                "with the program; jitad.config.compile = 'off' silences this.")
    return ("This function keeps running on the NumPy executor; set jitad.config.compile = 'eager' to "
            "compile in this process.")


# the dtypes Numba compiles arrays of; a graph with a value of any other runs on the NumPy executor
NUMBA_DTYPES = frozenset(map(np.dtype, [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                         np.uint32, np.uint64, np.float32, np.float64, np.complex64,
                                         np.complex128]))


def _calls_back(graph, seen=None):
    """Why only the NumPy executor can run `graph` (None when it compiles): it, or a loop body in
    it at any depth (an ODE solve or an untraceable custom rule inside jitad.scan), calls back into
    Python, holds a primitive with no compiled lowering, or a value of a dtype Numba has no type for."""
    seen = set() if seen is None else seen
    for node in graph.nodes:
        if node.prim.kind == "callback":
            return f"`{node.prim.name}` calls back into Python"
        if isinstance(node.prim.lower, NumpyOnly):  # (a library call with no compiled lowering: scipy.linalg.sqrtm)
            return f"`{node.prim.name}` has no compiled lowering ({node.prim.lower.reason})"
        if node.dtype not in NUMBA_DTYPES:  # (float16, longdouble): NumPy computes them
            return f"Numba has no {node.dtype.name} type"
        for value in node.params.values():
            body = getattr(value, "graph", None)  # a loop's Body (jitad.primitives.control)
            if body is not None and hasattr(body, "nodes") and id(body) not in seen:
                seen.add(id(body))
                why = _calls_back(body, seen)
                if why is not None:
                    return why
    return None


def compile_graph(graph, mode="eager", labels=None, target="cpu"):
    """An executor for `graph`: compiled now ("eager"), on the NumPy tier while a worker
    compiles ("background"), or NumPy only ("off"). Graphs of more than SPLIT_NODES nodes
    compile in the split form. `labels`: optional text per graph input (the caller's argument
    path) for the kernel's header comment. `target`: "cpu" or "parallel" (loop nests of at least
    codegen.PARALLEL_ELEMENTS elements run on jitad.config.threads threads)."""
    if target not in ("cpu", "parallel"):
        raise ValueError(f"jitad: compile_graph builds target 'cpu' or 'parallel', not {target!r}")
    parallel = target == "parallel"
    why = _calls_back(graph)
    if why is not None:
        STATS["reference_fallbacks"] += 1
        return ReferenceGraph(graph, why)
    if mode == "off":
        return ReferenceGraph(graph)
    if len(graph.nodes) > SPLIT_NODES:
        from jitad.backend.codegen import generate_split
        with phase("codegen"):
            split = generate_split(graph, labels, parallel=parallel)
        note(graph, split.plan, [split.source, *split.nests], split.nests)
        return TieredSplit(graph, split) if mode == "background" else SplitCompiledGraph(graph, split)
    from jitad.backend.codegen import generate
    with phase("codegen"):
        source, consts, fresh, plan = generate(graph, labels, parallel=parallel)
    note(graph, plan, [source])
    if mode == "background":
        return TieredGraph(graph, source, consts, fresh, plan)
    return CompiledGraph(graph, source, load_kernel(source), consts, fresh, plan)
