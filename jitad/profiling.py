"""Compile-time profile: where the time of building and compiling a transform goes.

`python -m jitad profile-compile SCRIPT [args]` runs a script with `jitad.config.compile =
"eager"` in a fresh, empty disk cache and prints, per compiled transform and in total, the
time of each phase of jitad's pipeline and of Numba's compiler. In Python:

    with jitad.profiling.profile() as prof:
        jitad.value_and_grad(loss)(params, xs, ys)
    print(prof.report())

jitad's own phases are marked in the pipeline with `phase(name)` (trace, transform,
passes, fusion, codegen, kernel import, first call): with no profile active it returns a
shared no-op context manager, so the marks cost one global read on the (already slow)
path that builds a transform and nothing on the path that calls a compiled one. Numba's
phases come from its event API (`numba.core.event`): "numba:run_pass" (each compiler pass,
named), "numba:llvm_lock" (llvmlite's lock, held around every call into LLVM),
"numba:compile" and "numba:compiler_lock". Time is attributed exclusively: every instant
counts once, to the innermost open phase or event of its thread, so the phases of a
transform add up to its wall time (a helper Numba compiles while typing a kernel counts
under the helper's own passes; a trace nested in another counts as that trace).

This module is at the bottom of the layers: every other module may import it; it imports
Numba only when a profile starts.
"""
import contextlib
import os
import threading
import time

_active = None  # the Profile being recorded, or None
_NULL = contextlib.nullcontext()

# report rows: (category, label, how it is measured)
PHASES = [
    ("trace", "user-function trace", "jitad phase mark"),
    ("transform", "AD transform (trace of the body)", "jitad phase mark"),
    ("passes", "passes (optimize)", "jitad phase mark"),
    ("fusion", "fusion plan", "jitad phase mark"),
    ("codegen", "codegen (source)", "jitad phase mark"),
    ("kernel import", "kernel import", "jitad phase mark"),
    ("numba:ir", "Numba bytecode/IR passes", "numba:run_pass (untyped passes, SSA, rewrites)"),
    ("numba:inline", "Numba IR inlining", "numba:run_pass (inline_inlinables, inline_overloads, ...)"),
    ("numba:typing", "Numba type inference", "numba:run_pass (*type_inference)"),
    ("numba:lowering", "Numba lowering", "numba:run_pass (native_lowering, nopython_backend, ...)"),
    ("numba:other", "Numba other (dispatch, cache)", "numba:compile / numba:compiler_lock outside passes"),
    ("llvm", "LLVM (optimise, machine code)", "numba:llvm_lock (time inside llvmlite calls)"),
    ("first call", "first call (runs the kernel)", "jitad phase mark, minus the Numba time inside"),
]
_LABELS = {c: label for c, label, _ in PHASES}
_NUMBA_PASS = {"inline_inlinables": "numba:inline", "inline_overloads": "numba:inline",
               "inline_closure_likes": "numba:inline", "native_lowering": "numba:lowering",
               "nopython_backend": "numba:lowering", "native_parfor_lowering": "numba:lowering"}
_EVENTS = ("numba:run_pass", "numba:llvm_lock", "numba:compile", "numba:compiler_lock")


def _pass_category(name):
    return _NUMBA_PASS.get(name) or ("numba:typing" if "type_inference" in name else "numba:ir")


def phase(name, owner=None):
    """A context manager timing phase `name` of the current transform while a profile is
    active (a no-op otherwise). `owner`: the `staging.Transform` whose user function is being
    traced; a phase with an owner that opens on an idle thread starts a new transform."""
    profile = _active
    if profile is None:
        return _NULL
    return profile._frame(name, owner)


def note(graph=None, plan=None, sources=(), nests=None):
    """Record the size of what the current transform compiles (no-op without a profile)."""
    profile = _active
    if profile is not None:
        profile._note(graph, plan, sources, nests)


class Record:
    """One compiled transform: its label, time per category, pass times and counts."""

    def __init__(self, label):
        self.label = label
        self.times = {}    # category -> exclusive wall seconds
        self.cpu = {}      # category -> exclusive CPU seconds of the thread (robust on a busy machine)
        self.passes = {}   # Numba pass name -> exclusive wall seconds
        self.counts = {}
        self.numba_compiles = 0   # kernels Numba compiled (outermost numba:compile events)
        self.numba_helpers = 0    # functions compiled while compiling one (overloads, helpers)
        self.helpers = {}         # their inclusive compile seconds, by name
        self.kernels = {}         # inclusive compile seconds of the kernels, by name

    @property
    def total(self):
        return sum(self.times.values())


class _Thread(threading.local):
    def __init__(self):
        self.stack = []   # [category, record, pass name or None]
        self.last = self.last_cpu = 0.0
        self.compiles = []  # open numba:compile events: (name, start)


class _Listener:
    """Numba event listener (made a `numba.core.event.Listener` when a profile starts, so this
    module imports Numba only then): pushes and pops frames of the profile's clock."""

    def __init__(self, profile, kind):
        self.profile, self.kind = profile, kind

    def on_start(self, event):
        profile, kind = self.profile, self.kind
        if kind == "numba:run_pass":
            name = event.data["name"].split(" [")[0]
            profile._push(_pass_category(name), None, name)
        elif kind == "numba:llvm_lock":
            profile._push("llvm", None)
        else:
            if kind == "numba:compile":
                local = profile._local
                record = profile._current_record()
                if local.compiles:
                    record.numba_helpers += 1
                else:
                    record.numba_compiles += 1
                local.compiles.append((_compiled_name(event.data), time.perf_counter()))
            profile._push("numba:other", None)

    def on_end(self, event):
        profile = self.profile
        if self.kind == "numba:compile" and profile._local.compiles:
            name, start = profile._local.compiles.pop()
            # inclusive time by name: of the kernels compiled, and of the helpers compiled for them
            table = profile._current_record().helpers if profile._local.compiles else \
                profile._current_record().kernels
            table[name] = table.get(name, 0.0) + time.perf_counter() - start
        profile._pop()


def _compiled_name(data):
    fun = getattr(data.get("dispatcher"), "py_func", None)
    name = getattr(fun, "__qualname__", None) or "?"
    module = getattr(fun, "__module__", None) or ""
    if module.startswith("jitad_kernel_"):  # a generated kernel: its cache entry and its arity
        return f"jitad_{module[len('jitad_kernel_'):][:8]}({len(data.get('args', ()))} args)"
    return f"{module}.{name}" if module else name


def _listener_type():
    from numba.core import event
    return type("JitadProfileListener", (_Listener, event.Listener), {})


class Profile:
    """Times of the transforms built while it is active (see the module docstring)."""

    def __init__(self):
        self.records = []
        self._local = _Thread()
        self._lock = threading.Lock()
        self._other = None
        self._listeners = []
        self.numba_import = None
        self.wall = self.cpu = 0.0

    # --- the clock ----------------------------------------------------------------------
    def _charge(self, local):
        now, cpu = time.perf_counter(), time.thread_time()
        if local.stack:
            category, record, pass_name = local.stack[-1]
            elapsed = now - local.last
            with self._lock:
                record.times[category] = record.times.get(category, 0.0) + elapsed
                record.cpu[category] = record.cpu.get(category, 0.0) + cpu - local.last_cpu
                if pass_name is not None:
                    record.passes[pass_name] = record.passes.get(pass_name, 0.0) + elapsed
        local.last, local.last_cpu = now, cpu

    def _current_record(self):
        local = self._local
        if local.stack:
            return local.stack[-1][1]
        with self._lock:
            if self.records:  # a background thread's phases belong to the latest transform
                return self.records[-1]
            if self._other is None:
                self._other = Record("(outside any transform)")
            return self._other

    def _push(self, category, owner, pass_name=None):
        local = self._local
        self._charge(local)
        if owner is not None and not local.stack:
            record = Record(_label(owner))
            with self._lock:
                self.records.append(record)
        else:
            record = self._current_record()
        local.stack.append((category, record, pass_name))

    def _pop(self):
        local = self._local
        if local.stack:
            self._charge(local)
            local.stack.pop()

    @contextlib.contextmanager
    def _frame(self, name, owner):
        self._push(name, owner)
        try:
            yield
        finally:
            self._pop()

    def _note(self, graph, plan, sources, nests):
        from jitad.backend.fusion import LibraryCall  # lazily: fusion is a later layer
        counts = self._current_record().counts
        if graph is not None:
            counts["graph nodes"] = counts.get("graph nodes", 0) + len(graph.nodes)
        if plan is not None:
            library = sum(isinstance(s, LibraryCall) for s in plan.steps)
            counts["loop nests"] = counts.get("loop nests", 0) + len(plan.steps) - library
            counts["library calls"] = counts.get("library calls", 0) + library
        if nests is not None:
            counts["distinct nest kernels"] = counts.get("distinct nest kernels", 0) + len(nests)
        counts["source lines"] = counts.get("source lines", 0) + sum(s.count("\n") for s in sources)

    # --- start and stop -------------------------------------------------------------------
    def start(self, numba=True):
        """Start recording (a profile started inside another takes over until it stops)."""
        global _active
        self._outer = _active
        self._started, self._cpu = time.perf_counter(), time.process_time()
        if numba:  # Numba's one-time setup (import, registries) is timed apart from the transforms'
            t0 = time.perf_counter()
            from numba.core import event, registry
            registry.cpu_target.typing_context.refresh()
            registry.cpu_target.target_context.refresh()
            self.numba_import = time.perf_counter() - t0
            listener_type = _listener_type()
            for kind in _EVENTS:
                listener = listener_type(self, kind)
                event.register(kind, listener)
                self._listeners.append((kind, listener))
        _active = self
        return self

    def stop(self):
        global _active
        if _active is self:
            _active = self._outer
        if self._listeners:
            from numba.core import event
            for kind, listener in self._listeners:
                event.unregister(kind, listener)
            self._listeners = []
        self.wall, self.cpu = time.perf_counter() - self._started, time.process_time() - self._cpu

    # --- the report -----------------------------------------------------------------------
    def totals(self, cpu=False):
        """Wall (or CPU) seconds per category over all transforms (and Numba work outside them)."""
        out = {}
        for record in self.records + ([self._other] if self._other else []):
            for category, seconds in (record.cpu if cpu else record.times).items():
                out[category] = out.get(category, 0.0) + seconds
        return out

    def report(self, passes=0, notes=True):
        records = self.records + ([self._other] if self._other else [])
        lines = []
        for k, record in enumerate(records, 1):
            lines.append(f"== transform {k}: {record.label} ==")
            lines += _table(record.times, record.cpu)
            counts = dict(record.counts)
            counts["Numba compiles"] = record.numba_compiles
            if record.numba_helpers:
                counts["Numba helper compiles"] = record.numba_helpers
            lines.append("   " + ", ".join(f"{name} {value}" for name, value in counts.items()))
            if passes:
                top = sorted(record.passes.items(), key=lambda kv: -kv[1])[:passes]
                if top:
                    lines.append("   slowest Numba passes (exclusive): " +
                                 ", ".join(f"{name} {seconds:.3f} s" for name, seconds in top))
                for title, table in (("kernel", record.kernels), ("helper", record.helpers)):
                    top = sorted(table.items(), key=lambda kv: -kv[1])[:passes]
                    if top and (title == "helper" or len(table) > 1):
                        lines.append(f"   slowest {title} compiles (inclusive): " +
                                     ", ".join(f"{name} {seconds:.3f} s" for name, seconds in top))
            lines.append("")
        if len(records) != 1:
            lines.append(f"== all {len(self.records)} transforms ==")
            lines += _table(self.totals(), self.totals(cpu=True))
            lines.append("")
        attributed = sum(self.totals().values())
        lines.append(f"wall time {self.wall:.3f} s (process CPU time {self.cpu:.3f} s), of which the transforms' "
                     f"phases {attributed:.3f} s"
                     + (f"; before it, Numba's import and one-time setup {self.numba_import:.3f} s"
                        if self.numba_import is not None else ""))
        if notes:
            lines.append("how each phase is measured (exclusive times: each instant counts once, to the innermost "
                         "open phase of its thread; CPU s: that thread's CPU time, which other processes on a busy "
                         "machine do not inflate):")
            lines.append(f"   {'jitad phases':<34} jitad.profiling.phase marks in staging.py, backend/cache.py, backend/codegen.py")
            lines += [f"   {label:<34} {how}" for _, label, how in PHASES if not how.startswith("jitad")]
        return "\n".join(lines)


def _table(times, cpu):
    total = sum(times.values())
    rows = [(c, _LABELS[c]) for c, _, _ in PHASES if c in times]
    rows += [(c, c) for c in times if c not in _LABELS]
    lines = [f"   {'phase':<34} {'wall s':>8} {'%':>6} {'CPU s':>8}"]
    lines += [f"   {label:<34} {times[c]:8.3f} {100 * times[c] / total if total else 0:5.1f}% {cpu.get(c, 0.0):8.3f}"
              for c, label in rows]
    lines.append(f"   {'total':<34} {total:8.3f} {100.0 if total else 0:5.1f}% {sum(cpu.values()):8.3f}")
    return lines


def _label(owner):
    """`value_and_grad(loss)` for a staging.Transform of `loss`."""
    fun = getattr(owner, "fun", owner)
    name = getattr(fun, "__name__", None) or type(fun).__name__
    build = getattr(owner, "build", None)
    kind = getattr(build, "__qualname__", "").split(".")[0].removeprefix("_build_") or "transform"
    return f"{kind}({name})"


@contextlib.contextmanager
def profile(numba=True):
    """Record a compile profile of what runs inside (see `Profile.report`)."""
    prof = Profile().start(numba)
    try:
        yield prof
    finally:
        prof.stop()


def run_script(path, argv=(), cache=None, passes=0, out=None, keep=False):
    """Run the script at `path` (as `__main__`, with `sys.argv = [path, *argv]`) with
    compile="eager" in the disk cache `cache` (default: a fresh temporary folder, removed
    afterwards unless `keep`) and print the profile to `out` (default: stderr). Returns the
    script's exit status."""
    import runpy
    import shutil
    import sys
    import tempfile
    from jitad import backend
    temporary = cache is None
    if temporary:
        cache = tempfile.mkdtemp(prefix="jitad-profile-cache-")
    saved = sys.argv, {k: os.environ.get(k) for k in ("JITAD_CACHE_DIR", "JITAD_COMPILE")}, backend.config.compile
    os.environ["JITAD_CACHE_DIR"] = cache
    os.environ["JITAD_COMPILE"] = "eager"  # also for jitad in the script's child processes
    backend.config.compile = "eager"
    out = out or sys.stderr
    sys.argv = [path, *argv]
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # as `python SCRIPT` would
    status = 0
    prof = Profile().start()
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        prof.stop()
        sys.argv, environ, backend.config.compile = saved
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        for key, value in environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        where = f"a fresh cache, kept in {cache}" if temporary and keep else \
            "a fresh cache" if temporary else f"the cache {cache}"
        print(f"\n== jitad compile profile of {path} (compile='eager', {where}) ==", file=out)
        print(prof.report(passes=passes), file=out, flush=True)
        if temporary and not keep:
            shutil.rmtree(cache, ignore_errors=True)
    return status
