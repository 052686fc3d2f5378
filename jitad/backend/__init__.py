"""Backend selection: turns an optimized Graph into a callable on flat arrays."""
import contextlib
import math
import os
import threading
import warnings

from jitad.frontend import guards, integrate, rolling
from jitad.ir import Kind
from jitad.primitives import control

COMPILE_MODES = ("background", "eager", "off")
TARGETS = ("auto", "cpu", "parallel", "cuda")


def _compile_default():
    value = os.environ.get("JITAD_COMPILE", "").strip().lower()
    if not value:
        return "background"
    if value not in COMPILE_MODES:
        warnings.warn(f"JITAD_COMPILE={value!r} is not one of {COMPILE_MODES}; using 'background'",
                      RuntimeWarning, stacklevel=2)
        return "background"
    return value


def _target_default():
    value = os.environ.get("JITAD_TARGET", "").strip().lower()
    if not value:
        return "auto"
    if value not in TARGETS:
        warnings.warn(f"JITAD_TARGET={value!r} is not one of {TARGETS}; using 'auto'", RuntimeWarning, stacklevel=2)
        return "auto"
    return value


def check_target(target):
    """`target` if it is one of TARGETS (None passes: the configured target), else a ValueError."""
    if target is not None and target not in TARGETS:
        raise ValueError(f"jitad: target must be one of {TARGETS}, got {target!r}")
    return target


class Config:
    """jitad's switches.

    backend: "numba" (compiled, the default) or "reference" (every graph on the NumPy
        reference executor, for debugging).
    compile: when the "numba" backend compiles a new kernel (default: $JITAD_COMPILE, else
        "background"):
        "background"  the first calls run on the NumPy executor while a worker process
                      compiles the kernel into the disk cache; later calls run the kernel
        "eager"       compile in this process before the first result
        "off"         never compile: the NumPy executor only (Numba is not even imported)
    memory: what reverse mode through a loop (jitad.scan, fori_loop, a rolled Python loop) keeps
        for its reverse pass (default "store"; `grad(f, memory=...)` overrides it for one transform):
        "store"       every step's carry (memory O(n) carries, no recomputation)
        "recompute"   every ~sqrt(n)-th carry; each segment is run again in the reverse pass
                      (O(sqrt(n)) carries, about one extra forward pass)
        an int        a byte budget: at most budget // (bytes of one carry) carries held at once
                      (all n when they fit; else more levels of checkpoints, each one more
                      forward pass). See jitad.primitives.control.
        Read when a reverse pass is traced; grad, value_and_grad and vjp key their cache on it.
    specializations: how many paths through Python `if`/`while` on traced values one function
        keeps per input signature (each traced and compiled for itself) before a call that
        takes yet another path is an error (default 16); 0 makes any Python control flow on a
        traced value a ConcretizationError (as JAX's jit does).
    target: where compiled kernels run (default: $JITAD_TARGET, else "auto"); a transform's
        `target=` keyword overrides it for its calls:
        "auto"      decided when a kernel is compiled (shapes are known at trace time): a kernel
                    whose graph computes an array of at least AUTO_ELEMENTS elements (elementwise
                    or reduced; copies do not count) is compiled as
                    for "parallel" while `threads` > 1; others as for "cpu" (no parfors compile
                    cost, the same overhead)
        "cpu"       Numba kernels on the CPU, every loop serial
        "parallel"  Numba kernels whose large loop nests run on several threads (prange)
        "cuda"      numba-cuda kernels on the GPU (jitad.backend.cuda; the [cuda] extra)
    threads: how many threads the loop nests of "parallel" (and "auto") kernels run on (default:
        all of Numba's, NUMBA_NUM_THREADS, the CPUs); 1 runs them on the calling thread only, and
        "auto" then compiles serial kernels.
    """

    @property
    def backend(self):
        return self._backend

    @backend.setter
    def backend(self, value):
        if value not in ("numba", "reference"):
            raise ValueError(f"jitad.config.backend must be 'numba' or 'reference', got {value!r}")
        self._backend = value
        self._changed()

    def _changed(self):
        """The settings a compiled call's fast path depends on, as one string (`STATE`; a string
        hashes once), and the same with each target instead of the configured one (`STATE_ON`)."""
        settings = f"{self._backend} compile-off={self._compile == 'off'} memory={control.settings['memory']}"
        for target, state in STATE_ON.items():
            state[0] = f"{settings} {target}"
        STATE[0] = STATE_ON[self._target][0]

    @property
    def roll_loops(self):
        """Whether repeated steps of a traced Python loop become one scan node (frontend.rolling)."""
        return rolling.settings["enabled"]

    @roll_loops.setter
    def roll_loops(self, value):
        rolling.settings["enabled"] = bool(value)

    @property
    def memory(self):
        return control.settings["memory"]

    @memory.setter
    def memory(self, value):
        control.settings["memory"] = control.check_memory(value)
        self._changed()  # transforms made with memory=None serve the policy set at the call

    @property
    def threads(self):
        from jitad.backend.cache import THREADS, default_threads
        return THREADS[0] or default_threads()

    @threads.setter
    def threads(self, value):
        from jitad.backend.cache import THREADS, default_threads
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"jitad.config.threads must be a positive int, got {value!r}")
        if value > default_threads():
            raise ValueError(f"jitad.config.threads = {value} is more than Numba's {default_threads()} threads "
                             "(set NUMBA_NUM_THREADS before Numba is imported for more)")
        THREADS[0] = value  # applied in each calling thread before a parallel kernel runs (cache.threaded)

    @property
    def specializations(self):
        return guards.limits["specializations"]

    @specializations.setter
    def specializations(self, value):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"jitad.config.specializations must be a non-negative int, got {value!r}")
        guards.limits["specializations"] = value

    def __init__(self):
        self._backend = "numba"
        self._compile = _compile_default()
        self._target = _target_default()
        self._changed()

    @property
    def target(self):
        return self._target

    @target.setter
    def target(self, value):
        if value is None:
            raise ValueError(f"jitad.config.target must be one of {TARGETS}, got None")
        self._target = check_target(value)
        self._changed()

    @property
    def compile(self):
        return self._compile

    @compile.setter
    def compile(self, value):
        if value not in COMPILE_MODES:
            raise ValueError(f"jitad.config.compile must be one of {COMPILE_MODES}, got {value!r}")
        self._compile = value
        self._changed()


STATE = [None]  # backend, compile == "off", memory and target of `config`, kept by its setters
STATE_ON = {target: [None] for target in TARGETS}  # the same with `target`: transforms given target=
config = Config()


def _ode_executor(graph):
    """How an ODE's right-hand side runs at each step of SciPy's integrator (frontend.integrate): compiled
    like any graph on the cpu target (None: the reference executor, for config.backend == "reference")."""
    if config.backend == "reference":
        return None
    from jitad.backend.cache import compile_graph
    from jitad.passes import optimize
    return compile_graph(optimize(graph), mode=config.compile, target="cpu")


integrate.RHS_EXECUTOR[0] = _ode_executor


_scope = threading.local()
OPEN = [0]  # `using_target` scopes open in any thread: while none is, no thread-local lookup
_open_lock = threading.Lock()


def current_target():
    """The target of the call being run: that of the innermost transform given `target=`
    (`using_target`), else jitad.config.target."""
    if not OPEN[0]:
        return config._target
    return getattr(_scope, "target", None) or config._target


@contextlib.contextmanager
def using_target(target):
    """Calls inside run on `target` (a transform's `target=` keyword; None: no change)."""
    if target is None:
        yield
        return
    outer = getattr(_scope, "target", None)
    _scope.target = target
    with _open_lock:
        OPEN[0] += 1
    try:
        yield
    finally:
        _scope.target = outer
        with _open_lock:
            OPEN[0] -= 1


def compile(graph, target="cpu", labels=None):
    """An executor of `graph` for `target` (see Config.target). `labels`: the caller's path to
    each of the first inputs, which the kernel's header names."""
    from jitad.backend.cache import ReferenceGraph, compile_graph
    if config.backend == "reference":
        return ReferenceGraph(graph)
    if target == "cuda":
        from jitad.backend import cuda
        return cuda.compile_graph(graph, labels)
    return compile_graph(graph, config.compile, labels=labels, target=resolved(target, graph))


# target "auto": a kernel is compiled in the parallel form when its graph computes an array of at
# least AUTO_ELEMENTS elements (elementwise, or reduced: `largest_computed`), or a costly elementwise function (exp, sin, log, tanh, sqrt, a
# division, ...: a primitive declared with inline_cost=EXPENSIVE) of one of at least
# AUTO_HEAVY_ELEMENTS (then its loop nests of >= codegen.PARALLEL_ELEMENTS run on threads).
# Measured on the quiet 2-core machine (/tmp/exp/thr2.py: value_and_grad, best of 7 x 10 calls,
# the serial kernel against the parallel form on 2 threads): sum(sin(x) x + exp(-x^2) + log1p(x^2))
# gains 1.40x at 2^16 elements, 1.48x at 2^17, 1.59-1.77x from 2^18; Rosenbrock (multiplies and
# adds, memory-bound) loses below 2^21 (0.66-0.81x at 2^16-2^20) and gains 1.29x at 2^21.
# Measured again (session 15, /tmp/s15/rosen_big.py, median of 7 x 3 calls, OMP_WAIT_POLICY=PASSIVE),
# after the parallel form's one-dimensional chunks index unsigned (codegen.unsigned_outer_index; before,
# they vectorised as gathers and Rosenbrock's was 2.5-2.9x slower than serial even at 2^21): Rosenbrock
# serial against parallel 0.31 / 0.29 ms at 2^19, 0.76 / 0.54 at 2^20, 1.68 / 1.07 at 2^21, 20.2 / 14.3
# at 2^22; sum(x*x) 0.86x at 2^19, 0.64x at 2^20 (bench_threads' threshold table): hence 2^20.
AUTO_ELEMENTS = 1 << 20
AUTO_HEAVY_ELEMENTS = 1 << 17


def largest_computed(graph):
    """The element count of the largest loop of arithmetic in `graph`: an elementwise node's
    value, or the operand of a reduction. Copies (reshapes, slices, pads, a loop's stacked
    states) and library calls do not count: threads hardly speed up a copy, and the parallel
    form costs compile time (a 10,000-step rolled loop's stored states are large, its arithmetic
    small: the serial form, the same kernels as 10 steps)."""
    sizes = [math.prod(n.shape) for n in graph.nodes if n.prim.kind == Kind.ELEMENTWISE]
    sizes += [math.prod(n.inputs[0].shape) for n in graph.nodes if n.prim.kind == Kind.REDUCTION and n.inputs]
    return max(sizes, default=0)


def _threads_pay(graph):
    """Whether the parallel form pays for `graph` (see AUTO_ELEMENTS)."""
    if largest_computed(graph) >= AUTO_ELEMENTS:
        return True
    from jitad.primitives.core import EXPENSIVE
    return any(node.prim.kind == Kind.ELEMENTWISE and node.prim.inline_cost >= EXPENSIVE and
               math.prod(node.shape) >= AUTO_HEAVY_ELEMENTS for node in graph.nodes)


def resolved(target, graph=None):
    """The form a kernel of `target` is compiled in: "cpu" (serial) or "parallel" (large loop
    nests on threads). "auto" is "parallel" when jitad.config.threads > 1 and `graph` computes
    an array of at least AUTO_ELEMENTS elements (`largest_computed`) or a costly elementwise function (inline_cost
    EXPENSIVE: exp, sin, log, division, ...) of one of at least AUTO_HEAVY_ELEMENTS."""
    if target == "auto":
        return "parallel" if config.threads > 1 and (graph is None or _threads_pay(graph)) else "cpu"
    return "parallel" if target == "parallel" else "cpu"
