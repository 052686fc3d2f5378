"""The checks run on each generated program, and the batched compiled-vs-reference check.

Ground truth is plain NumPy (forward values, shapes, dtypes, exceptions) and central
finite differences with Richardson extrapolation (first derivatives of the NumPy
program; second derivatives from differences of jitad's own reference-backend
gradient, which the first-order checks vouch for). The bulk runs on jitad's reference
backend; `check_batch` compiles many programs as one function per transform and
compares with the reference results, bisecting when something goes wrong.
"""
from __future__ import annotations

import contextlib
import math
import re
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np

import jitad

from . import gen

FD_STEP = 3e-5
SECOND_FD_STEP = 1e-4
ALL_CHECKS = ("forward.jit", "forward.recall", "forward.vag", "grad.fd", "jvp.primal", "jvp.fd", "vjp.primal", "vjp.fd",
              "jacfwd.fd", "jacrev.fd", "jacobian.auto", "hessian.fd", "hvp.fd", "autograd.grad", "pytree.vag",
              "tier.vag", "tier.hvp", "inputs.unmodified", "raises")
COMPILED_STAGES = ("jit", "vag", "jvp", "hvp")
FAST_STAGES = ("jit", "vag")

try:  # autograd is an optional peer to compare against, never a dependency
    import autograd as _autograd
    import autograd.numpy as _anp
except Exception:  # pragma: no cover
    _autograd = _anp = None


@contextlib.contextmanager
def backend(name):
    """Run on jitad's "reference" or "numba" backend; "numba" compiles before the first result
    (config.compile = "eager"), so the compiled kernel itself is what gets checked."""
    saved = jitad.config.backend
    saved_compile = getattr(jitad.config, "compile", None)
    jitad.config.backend = name
    if name == "numba" and saved_compile is not None:
        jitad.config.compile = "eager"
    try:
        yield
    finally:
        jitad.config.backend = saved
        if saved_compile is not None and jitad.config.compile != saved_compile:
            jitad.config.compile = saved_compile


_ARGN = "argnums=tuple(range(len(args)))"
HOW = {  # how to run each check on a repro (which defines f, g and args)
    "forward.jit": "jitad.jit(f)(*args) vs f(*args)",
    "forward.recall": "jf = jitad.jit(f); jf(*args); jf(*[a * 1.01 for a in args]) vs f(*[a * 1.01 for a in args])",
    "forward.vag": f"jitad.value_and_grad(g, {_ARGN})(*args)",
    "grad.fd": f"jitad.grad(g, {_ARGN})(*args) vs central differences of g",
    "jvp.primal": "jitad.jvp(f, args, tangents)[0] vs f(*args)",
    "jvp.fd": "jitad.jvp(f, args, tangents)[1] vs central differences of f along tangents",
    "vjp.primal": "jitad.vjp(f, *args)[0] vs f(*args)",
    "vjp.fd": "jitad.vjp(f, *args)[1](cotangent) vs cotangent . (central-difference Jacobian of f)",
    "jacfwd.fd": f"jitad.jacfwd(f, {_ARGN})(*args) vs the central-difference Jacobian",
    "jacrev.fd": f"jitad.jacrev(f, {_ARGN})(*args) vs the central-difference Jacobian",
    "jacobian.auto": f"jitad.jacobian(f, {_ARGN})(*args) vs the central-difference Jacobian",
    "hessian.fd": f"jitad.hessian(g, {_ARGN})(*args) vs central differences of jitad.grad(g)",
    "hvp.fd": "jitad.hvp(g, args, tangents) vs central differences of jitad.grad(g)",
    "autograd.grad": "jitad.grad(g) vs autograd.grad(g) (where autograd agrees with finite differences)",
    "pytree.vag": "jitad.value_and_grad(h)(tree): g's inputs packed in a dict/list/tuple/registered dataclass, "
                  "vs jitad.value_and_grad(g, argnums=...)(*args)",
    "tier.vag": f"jitad.value_and_grad(g, {_ARGN})(*args) on the NumPy tier (backend 'numba', compile='off': the "
                "rules run on arrays, as a first call does) vs the reference backend, NaN for NaN",
    "tier.hvp": "jitad.hvp(g, args, tangents) on the NumPy tier vs the reference backend, NaN for NaN",
    "inputs.unmodified": "every jitad call above leaves the caller's arrays (args) unchanged",
    "raises": "f(*args) raises in NumPy; jitad.jit(f)(*args) must raise too",
    "compiled.jit": "jitad.jit(f)(*args) on the numba backend (config.compile='eager') vs NumPy and the reference",
    "compiled.vag": f"jitad.value_and_grad(g, {_ARGN})(*args) compiled vs the reference backend",
    "compiled.jvp": "jitad.jvp(f, args, tangents) compiled vs the reference backend",
    "compiled.hvp": "jitad.hvp(g, args, tangents) compiled vs the reference backend",
}


def how(check):
    base = check.replace(".batch-only", "")
    return HOW.get(base, check)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Failure:
    check: str
    message: str
    program: gen.Program | None = None
    expected: object = None
    got: object = None
    exc: str | None = None          # exception type name, when jitad raised
    detail: str = ""                # traceback tail
    shrunk: bool = False
    also: list = field(default_factory=list)   # other checks of the same program that raised the same

    def __post_init__(self):
        self.message = _ANSI.sub("", self.message)   # Numba colours its messages
        self.detail = _ANSI.sub("", self.detail)

    @property
    def unsupported(self):
        """jitad says it does not support the operation: a coverage gap, not a wrong answer."""
        return self.exc == "UnsupportedOperationError"

    def key(self):
        return (self.check, self.exc or "")

    def signature(self):
        """What makes two failures 'the same': for an exception, its type and message (without
        numbers and shapes) whichever check hit it; for a wrong value, the check; and the kinds
        of ops in the (shrunk) program."""
        kinds = tuple(sorted({k.split("/")[0] for k in self.program.kinds()})) if self.program else ()
        if self.exc:
            msg = re.sub(r"\([^()]*\)|\d+", "", self.message)[:80]
            return ("exception", self.exc, msg, kinds)
        return (self.check.replace(".batch-only", ""), "", kinds)

    def report(self):
        lines = [f"CHECK FAILED: {self.check}" + (f" (raised {self.exc})" if self.exc else "") +
                 (f" [also: {', '.join(self.also)}]" if self.also else ""), f"  {self.message}"]
        if self.program is not None:
            lines.append("--- repro " + "-" * 60)
            lines.append(self.program.repro().rstrip())
            lines.append(f"# check: {self.check}; program seed {self.program.seed}; dtype {self.program.dtype}")
            lines.append(f"# run:   {how(self.check)}")
        if self.expected is not None or self.got is not None:
            with np.printoptions(precision=6, threshold=40, linewidth=110):
                lines.append(f"# expected: {_show(self.expected)}")
                lines.append(f"# got:      {_show(self.got)}")
        if self.detail:
            lines.append("# traceback (tail):")
            lines += ["#   " + ln for ln in self.detail.rstrip().split("\n")]
        return "\n".join(lines)


def _show(x):
    if isinstance(x, tuple):
        return "(" + ", ".join(_show(v) for v in x) + ")"
    if isinstance(x, np.ndarray):
        return f"{np.array2string(x)} shape={x.shape} dtype={x.dtype}"
    if isinstance(x, (float, np.floating)):
        return f"{x!r} ({type(x).__name__})"
    return repr(x)


def _tb_tail(e, n=6):
    lines = traceback.format_exception(type(e), e, e.__traceback__)
    text = "".join(lines).rstrip().split("\n")
    return "\n".join(text[-n:])


# --- functions from programs -------------------------------------------------------------------
def make_functions(program, np_module=np):
    """Fresh function objects f and g (fresh, so no jitad cache is shared between backends)."""
    ns = {"np": np_module, "scipy": gen.scipy}
    src = program.source(with_g=not program.expect_error)
    exec(compile(src, f"<fuzz seed {program.seed}>", "exec"), ns)
    return ns["f"], ns.get("g")


def _leaves(x):
    return list(x) if isinstance(x, tuple) else [x]


def _flat(x):
    return np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in _leaves(x)] + [np.zeros(0)])


def _float_arg(v):
    return isinstance(v, float)


class Flat:
    """The program as a function of one flat float64 vector (for finite differences)."""

    def __init__(self, program):
        self.program = program
        self.vals = [program.values[n] for n in program.inputs]
        self.shapes = [np.shape(v) for v in self.vals]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.offsets = np.cumsum([0] + self.sizes)
        self.n = int(self.offsets[-1])
        self.x = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in self.vals] + [np.zeros(0)])

    def unflatten(self, vec, dtype=None):
        out = []
        for v, shape, o, s in zip(self.vals, self.shapes, self.offsets, self.sizes):
            piece = vec[o:o + s].reshape(shape)
            if _float_arg(v):
                out.append(float(piece))
            else:
                out.append(np.asarray(piece, dtype=dtype or np.asarray(v).dtype))
        return out

    def f(self, vec):
        values = dict(zip(self.program.inputs, self.unflatten(vec, dtype=np.float64)))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _flat(gen.run_numpy(self.program, values=values))


def fd_jacobian(fun, x, h):
    """Central differences with one Richardson step: (J, error estimate), each (m, n).

    Where f(x) is finite but a step lands where f is not (log of a value that changes sign within
    h of x: an iterated sin of x^-2 moved by 2 in 1e-5, seed 202020003307), the column is taken
    again with steps 1e3 and 1e6 times smaller before NaN is kept (then the check fails: a
    derivative that finite differences cannot see stays reported).

    Where the two estimates of a column disagree by more than 1e-6 of their size (a function that
    oscillates within h: an iterated sin(v) x at x = 195, derivative 3.28e8 by mpmath, FD -7.6e6,
    loops profile seed 181818001333), steps 1e2 and 1e4 times smaller are tried too and the column
    whose estimates agree best is kept: the differences get more accurate, never looser."""
    cols, errs = [], []
    finite_at_x = bool(np.all(np.isfinite(fun(x))))

    def column(e, step):
        d1 = (fun(x + step * e) - fun(x - step * e)) / (2 * step)
        d2 = (fun(x + step / 2 * e) - fun(x - step / 2 * e)) / step
        return d1, d2

    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = 1.0
        for step in (h, h * 1e-3, h * 1e-6):
            d1, d2 = column(e, step)
            if not finite_at_x or np.all(np.isfinite(d1)) and np.all(np.isfinite(d2)):
                break
        err = np.abs(d2 - d1)
        if finite_at_x and np.all(np.isfinite(err)) and np.any(err > 1e-6 * (1.0 + np.abs(d2))):
            for smaller in (step * 1e-2, step * 1e-4):
                s1, s2 = column(e, smaller)
                serr = np.abs(s2 - s1)
                if np.all(np.isfinite(serr)) and np.max(serr) < np.max(err):
                    d1, d2, err = s1, s2, serr
        cols.append((4 * d2 - d1) / 3)
        errs.append(err)
    m = fun(x).size
    if not cols:
        return np.zeros((m, 0)), np.zeros((m, 0))
    return np.stack(cols, axis=1), np.stack(errs, axis=1)


# --- comparisons ---------------------------------------------------------------------------------
class Mismatch(Exception):
    def __init__(self, message, expected=None, got=None):
        super().__init__(message)
        self.expected, self.got = expected, got


def _tol(dtype):
    return (1e-9, 1e-9) if np.dtype(dtype) == np.float64 else (2e-4, 2e-4)


def compare_values(expected, got, scale, dtype, what="value", check_dtype=True):
    """NumPy's value against jitad's: structure, shape, dtype, values (scale-aware)."""
    if isinstance(expected, tuple) != isinstance(got, tuple) or \
            (isinstance(expected, tuple) and len(expected) != len(got)):
        raise Mismatch(f"{what}: output structure differs", expected, got)
    rtol, atol = _tol(dtype)
    for k, (e, g) in enumerate(zip(_leaves(expected), _leaves(got))):
        where = f"{what}[{k}]" if isinstance(expected, tuple) else what
        if np.shape(e) != np.shape(g):
            raise Mismatch(f"{where}: shape {np.shape(g)} != NumPy's {np.shape(e)}", e, g)
        if check_dtype and np.asarray(e).dtype != np.asarray(g).dtype:
            raise Mismatch(f"{where}: dtype {np.asarray(g).dtype} != NumPy's {np.asarray(e).dtype}", e, g)
        ea, ga = np.asarray(e, dtype=float), np.asarray(g, dtype=float)
        if ga.size and not np.all(np.isfinite(ga)) and np.all(np.isfinite(ea)):
            raise Mismatch(f"{where}: non-finite values where NumPy's are finite", e, g)
        bad = np.abs(ga - ea) > atol * (1.0 + scale) + rtol * np.abs(ea)
        if np.any(bad):
            i = np.unravel_index(int(np.argmax(np.abs(ga - ea))), ea.shape) if ea.ndim else ()
            raise Mismatch(f"{where}: values differ (max abs diff {np.max(np.abs(ga - ea)):.3g} at {i}, "
                           f"{int(np.sum(bad))}/{bad.size} entries)", e, g)


def compare_fd(what, ad, fd, err, dtype=np.float64, expected_shape=None):
    """AD (flat) against finite differences (flat) with their error estimate."""
    ad = np.asarray(ad, dtype=float)
    if ad.shape != fd.shape:
        raise Mismatch(f"{what}: shape {ad.shape} != expected {fd.shape}", fd, ad)
    scale = 1.0 + (np.max(np.abs(fd)) if fd.size else 0.0)
    if np.dtype(dtype) == np.float64:
        tol = 1e-6 * scale + 1e-5 * np.abs(fd) + 50 * err
    else:
        tol = 2e-3 * scale + 1e-2 * np.abs(fd) + 50 * err
    if ad.size and not np.all(np.isfinite(ad)) and np.all(np.isfinite(fd)):
        raise Mismatch(f"{what}: non-finite derivative where finite differences are finite", fd, ad)
    bad = ~(np.abs(ad - fd) <= tol)
    if np.any(bad):
        i = int(np.argmax(np.where(bad, np.abs(ad - fd), -1)))
        raise Mismatch(f"{what}: differs from finite differences at {int(np.sum(bad))}/{bad.size} entries "
                       f"(flat index {i}: AD {ad.flat[i]:.10g}, FD {fd.flat[i]:.10g})", fd, ad)


def compare_close(what, ref, got, rtol=1e-8):
    """Two jitad results that must agree (compiled vs reference, autograd vs jitad)."""
    if isinstance(ref, tuple) != isinstance(got, tuple) or (isinstance(ref, tuple) and len(ref) != len(got)):
        raise Mismatch(f"{what}: structure differs", ref, got)
    for k, (r, g) in enumerate(zip(_leaves(ref), _leaves(got))):
        if isinstance(r, tuple) or isinstance(g, tuple):
            compare_close(f"{what}[{k}]", r, g, rtol)
            continue
        if np.shape(r) != np.shape(g):
            raise Mismatch(f"{what}[{k}]: shape {np.shape(g)} != {np.shape(r)}", r, g)
        if np.asarray(r).dtype != np.asarray(g).dtype:
            raise Mismatch(f"{what}[{k}]: dtype {np.asarray(g).dtype} != {np.asarray(r).dtype}", r, g)
        ra, ga = np.asarray(r, dtype=float), np.asarray(g, dtype=float)
        if ra.size == 0:
            continue
        if not np.all(np.isfinite(ga)) and np.all(np.isfinite(ra)):
            raise Mismatch(f"{what}[{k}]: non-finite values", r, g)
        scale = 1.0 + np.max(np.abs(ra))
        bad = ~(np.abs(ga - ra) <= rtol * scale)
        if np.any(bad):
            raise Mismatch(f"{what}[{k}]: max abs diff {np.max(np.abs(ga - ra)):.3g} "
                           f"({int(np.sum(bad))}/{bad.size} entries)", r, g)


def compare_same_nans(what, ref, got, float32=False):
    """compare_close, where NaN in the reference must be NaN in `got` and the other way round
    (relative tolerance 1e-9, float32 values 2e-5: the tiers may round sums apart; `float32`: a
    float32 program, whose float64 values, like g's sum with float64 weights, carry float32 rounding)."""
    if len(ref) != len(got):
        raise Mismatch(f"{what}: structure differs", ref, got)
    for k, (r, g) in enumerate(zip(ref, got)):
        rtol = 2e-5 if float32 or np.asarray(r).dtype == np.float32 else 1e-9
        ra, ga = np.asarray(r, dtype=float), np.asarray(g, dtype=float)
        if ra.shape != ga.shape or np.asarray(r).dtype != np.asarray(g).dtype:
            raise Mismatch(f"{what}[{k}]: shape/dtype {ga.shape} {np.asarray(g).dtype} != {ra.shape} "
                           f"{np.asarray(r).dtype}", r, g)
        if not np.array_equal(np.isnan(ra), np.isnan(ga)):
            raise Mismatch(f"{what}[{k}]: NaN at other places", r, g)
        keep = ~np.isnan(ra)
        ra, ga = ra[keep], ga[keep]
        if ra.size and not np.array_equal(np.isinf(ra), np.isinf(ga)):
            raise Mismatch(f"{what}[{k}]: inf at other places", r, g)
        finite = np.isfinite(ra)
        if finite.any() and np.any(np.abs(ga[finite] - ra[finite]) > rtol * (1.0 + np.max(np.abs(ra[finite])))):
            raise Mismatch(f"{what}[{k}]: max abs diff {np.max(np.abs(ga[finite] - ra[finite])):.3g}", r, g)


def _numpy_tier(fn):
    """fn() on the NumPy tier: the numba backend with compile='off' (the rules run on arrays)."""
    saved = jitad.config.backend, jitad.config.compile
    jitad.config.backend, jitad.config.compile = "numba", "off"
    try:
        return fn()
    finally:
        jitad.config.backend, jitad.config.compile = saved


def _tuple_vag(result):
    value, grads = result
    return (value,) + tuple(grads)


def _as_tuple(res, n):
    return tuple(res) if n > 1 else (res,)


def _assemble(blocks, nested, in_sizes, out_sizes):
    """jitad's Jacobian pytree (per output, per input) as one (m, n) matrix."""
    rows = []
    per_out = blocks if nested else (blocks,)
    for k, row in enumerate(per_out):
        rows.append(np.concatenate([np.reshape(np.asarray(b, dtype=float), (out_sizes[k], s))
                                    for b, s in zip(row, in_sizes)], axis=1))
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, sum(in_sizes)))


def _weights(program, out_shapes):
    return np.concatenate([np.ravel(np.asarray(eval(gen.weight_expr(s, k), {"np": np}), dtype=float))
                           for k, s in enumerate(out_shapes)] + [np.zeros(0)])


def _directions(seed, flat):
    rng = np.random.default_rng([seed, 99])
    t = rng.standard_normal(flat.n)
    return t


def _tree_like(flat_vec, template_leaves):
    out, o = [], 0
    for leaf in template_leaves:
        s = int(np.size(leaf))
        shape = np.shape(leaf)
        v = flat_vec[o:o + s].reshape(shape)
        dt = np.asarray(leaf).dtype
        out.append(float(v) if isinstance(leaf, float) else np.asarray(v, dtype=dt))
        o += s
    return out


# --- one program on the reference backend --------------------------------------------------------
@dataclass
class Reference:
    """jitad's reference-backend results for one program, kept for the compiled comparison."""
    fwd: object = None
    grads: object = None
    gvalue: object = None
    jvp_out: object = None
    tangents: object = None
    hvp: object = None
    ok: set = field(default_factory=set)


class Stats:
    def __init__(self):
        self.programs = 0
        self.checks = 0
        self.skipped = 0
        self.peer_crashes = []   # (seed, what happened): autograd crashed or hung its child process
        self.failures = []
        self.counts = {}

    def count(self, name):
        self.checks += 1
        self.counts[name] = self.counts.get(name, 0) + 1


def check_program(program, only=None, second_order=True, use_autograd=True, stats=None, jacobians=True):
    """Run every check on `program` (reference backend). Returns (failures, Reference)."""
    stats = stats or Stats()
    failures = []
    ref = Reference()
    xs = [program.values[n] for n in program.inputs]

    def want(name):
        return only is None or name in only

    def run(name, fn, always=False):
        if not (always or want(name)):
            return None
        stats.count(name)
        try:
            result = fn()
        except Mismatch as m:
            failures.append(Failure(name, str(m), program, m.expected, m.got))
            return None
        except Exception as e:  # jitad raised where NumPy did not
            failures.append(Failure(name, f"{type(e).__name__}: {e}", program, exc=type(e).__name__,
                                    detail=_tb_tail(e)))
            return None
        ref.ok.add(name)
        return result

    snapshot = [gen._copy(x) for x in xs]
    failures_out, ref = _check_program(program, xs, only, second_order, use_autograd, stats, jacobians, failures, ref,
                                       want, run)
    if want("inputs.unmodified"):
        def unmodified():
            for name, x, x0 in zip(program.inputs, xs, snapshot):
                if isinstance(x, np.ndarray) and not np.array_equal(x, x0, equal_nan=True):
                    raise Mismatch(f"jitad modified the caller's array {name}", x0, x)
        run("inputs.unmodified", unmodified)
        failures_out = merge(failures)
    return failures_out, ref


def _check_program(program, xs, only, second_order, use_autograd, stats, jacobians, failures, ref, want, run):
    with backend("reference"), np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if program.expect_error:
            exc = gen.numpy_raises(program)
            f, _ = make_functions(program)

            def raises():
                try:
                    out = jitad.jit(f)(*xs)
                except Exception:
                    return True
                raise Mismatch(f"NumPy raises {type(exc).__name__}: {exc}; jitad returned a value",
                               f"{type(exc).__name__}: {exc}", out)
            run("raises", raises)
            return merge(failures), ref

        expected = gen.run_numpy(program)
        scale = program_scale(program)
        dtype = np.dtype(program.dtype)
        f, g = make_functions(program)
        argnums = tuple(range(len(xs)))
        out_leaves = _leaves(expected)
        out_shapes = [np.shape(o) for o in out_leaves]
        out_sizes = [int(np.size(o)) for o in out_leaves]
        flat = Flat(program)
        W = _weights(program, out_shapes)
        need_fd = any(want(c) for c in ("grad.fd", "jvp.fd", "vjp.fd", "jacfwd.fd", "jacrev.fd", "jacobian.auto",
                                        "hessian.fd", "hvp.fd"))
        J = E = None
        if need_fd:
            J, E = fd_jacobian(flat.f, flat.x, FD_STEP)
            if dtype == np.float32 and not np.allclose(_flat(expected).astype(np.float64), flat.f(flat.x), rtol=1e-3,
                                                       atol=1e-3 * (1.0 + scale), equal_nan=True):
                # the differences are taken in float64, jitad differentiates the float32 program: where the
                # two programs part (an iterated sin of values near 1e9, loops seed 303030001322: jitad's
                # float32 gradient is the one along NumPy's float32 values, 1.9e8 where float64's is 1.3e8)
                # they say nothing of it. An infinite error estimate passes every finite derivative and
                # still fails a NaN or inf one where the differences are finite.
                E = np.full_like(E, np.inf)
                stats.skipped += 1

        jf = jitad.jit(f)

        def fwd_jit():
            out = jf(*xs)
            compare_values(expected, out, scale, dtype, "jit(f)")
            for k, name in enumerate(program.outputs):
                if name in program.inputs and isinstance(program.values[name], np.ndarray):
                    o = _leaves(out)[k]
                    if isinstance(o, np.ndarray) and np.shares_memory(o, program.values[name]):
                        raise Mismatch(f"jit(f) output {k} is (a view of) input {name} itself, not a new array")
            ref.fwd = out
            return out
        run("forward.jit", fwd_jit)

        def recall():   # a second call, other values, same shapes: through jitad's caches
            p2 = program.perturbed()
            try:
                exp2 = gen.run_numpy(p2)
            except gen.Reject:  # NumPy itself refuses the new values (shapes that follow a mask, np.unique)
                return
            if not np.all(np.isfinite(_flat(exp2))):
                return
            compare_values(exp2, jf(*[p2.values[n] for n in p2.inputs]), program_scale(p2), dtype,
                           "jit(f) second call, inputs * 1.01")
        if ref.fwd is not None:
            run("forward.recall", recall)

        def vag():
            value, grads = jitad.value_and_grad(g, argnums=argnums)(*xs)
            g_np = _np_g(program, xs)
            compare_values(g_np, value, scale * max(1, W.size), dtype, "value_and_grad(g) value", check_dtype=False)
            if not isinstance(grads, tuple) or len(grads) != len(xs):
                raise Mismatch("grads: not one per input", None, grads)
            for k, (x, gr) in enumerate(zip(xs, grads)):
                if np.shape(gr) != np.shape(x):
                    raise Mismatch(f"grad[{k}]: shape {np.shape(gr)} != input shape {np.shape(x)}", x, gr)
                if not isinstance(x, float) and np.asarray(gr).dtype != np.asarray(x).dtype:
                    raise Mismatch(f"grad[{k}]: dtype {np.asarray(gr).dtype} != input dtype {x.dtype}", x, gr)
            ref.grads, ref.gvalue = grads, value
            return grads
        grads = None
        if want("forward.vag") or want("grad.fd") or want("hessian.fd") or want("hvp.fd") or want("autograd.grad"):
            grads = run("forward.vag", vag) if want("forward.vag") else _quiet(lambda: vag())

        if grads is not None and J is not None:
            run("grad.fd", lambda: compare_fd("grad of g", _flat(tuple(grads)), W @ J, np.abs(W) @ E, dtype))

        t = _directions(program.seed, flat)
        tangents = _tree_like(t, xs)

        def jvp_check():
            out, tout = jitad.jvp(f, tuple(xs), tuple(tangents))
            ref.jvp_out, ref.tangents = tout, tangents
            if want("jvp.primal"):
                stats.count("jvp.primal")
                try:
                    compare_values(expected, out, scale, dtype, "jvp primal out")
                except Mismatch as m:
                    failures.append(Failure("jvp.primal", str(m), program, m.expected, m.got))
            compare_fd("jvp tangent out", _flat(tout), J @ t, E @ np.abs(t), dtype)
        if want("jvp.fd") or want("jvp.primal"):
            run("jvp.fd", jvp_check, always=True)

        def vjp_check():
            out, fn = jitad.vjp(f, *xs)
            if want("vjp.primal"):
                stats.count("vjp.primal")
                try:
                    compare_values(expected, out, scale, dtype, "vjp primal out")
                except Mismatch as m:
                    failures.append(Failure("vjp.primal", str(m), program, m.expected, m.got))
            u = np.random.default_rng([program.seed, 5]).standard_normal(J.shape[0])
            cts = _tree_like(u, out_leaves)
            cts = [np.asarray(c, dtype=np.asarray(o).dtype) if np.ndim(o) else
                   np.asarray(c, dtype=np.asarray(o).dtype)[()] for c, o in zip(cts, out_leaves)]
            ct = tuple(cts) if isinstance(expected, tuple) else cts[0]
            res = fn(ct)
            compare_fd("vjp", _flat(tuple(res)), u @ J, np.abs(u) @ E, dtype)
        if want("vjp.fd") or want("vjp.primal"):
            run("vjp.fd", vjp_check, always=True)

        small = J is not None and J.size <= 3000 and dtype == np.float64
        n_out = len(out_leaves)
        if jacobians and small:
            run("jacfwd.fd", lambda: compare_fd("jacfwd", _assemble(jitad.jacfwd(f, argnums=argnums)(*xs), n_out > 1,
                                                                    flat.sizes, out_sizes), J, E))
            run("jacrev.fd", lambda: compare_fd("jacrev", _assemble(jitad.jacrev(f, argnums=argnums)(*xs), n_out > 1,
                                                                    flat.sizes, out_sizes), J, E))
            if second_order:
                run("jacobian.auto", lambda: compare_fd("jacobian(mode=auto)", _assemble(
                    jitad.jacobian(f, argnums=argnums)(*xs), n_out > 1, flat.sizes, out_sizes), J, E))

        if second_order and grads is not None and dtype == np.float64 and flat.n <= 40 and \
                (want("hessian.fd") or want("hvp.fd")):
            gradfn = jitad.grad(g, argnums=argnums)

            def flat_grad(vec):
                return _flat(tuple(gradfn(*flat.unflatten(vec))))
            H, HE = fd_jacobian(flat_grad, flat.x, SECOND_FD_STEP)
            run("hessian.fd", lambda: compare_fd("hessian of g", _assemble(
                jitad.hessian(g, argnums=argnums)(*xs), True, flat.sizes, flat.sizes), H, HE))

            def hvp_check():
                res = jitad.hvp(g, tuple(xs), tuple(tangents))
                res = res if len(xs) > 1 else (res,)
                ref.hvp = res
                compare_fd("hvp of g", _flat(tuple(res)), H @ t, HE @ np.abs(t))
            run("hvp.fd", hvp_check)

        if grads is not None and want("tier.vag"):
            run("tier.vag", lambda: compare_same_nans("NumPy tier value_and_grad vs reference", (ref.gvalue,) + tuple(
                grads), _numpy_tier(lambda: _tuple_vag(jitad.value_and_grad(g, argnums=argnums)(*xs))),
                program.dtype == "float32"))
        if ref.hvp is not None and want("tier.hvp"):
            run("tier.hvp", lambda: compare_same_nans("NumPy tier hvp vs reference", tuple(ref.hvp), _numpy_tier(
                lambda: _as_tuple(jitad.hvp(g, tuple(xs), tuple(tangents)), len(xs))), program.dtype == "float32"))

        if grads is not None and want("pytree.vag") and program.seed % 3 == 1:
            run("pytree.vag", lambda: _pytree_check(program, g, xs, value_of_g=ref.gvalue, grads=grads))

        if use_autograd and _autograd is not None and grads is not None and want("autograd.grad") and \
                dtype == np.float64 and not program.in_place:
            ag = _autograd_grads(program, xs, stats)
            # autograd has bugs of its own (and FD may be inconclusive): a disagreement counts
            # only where autograd agrees with finite differences
            if ag is not None and J is not None and [np.shape(a) for a in ag] == [np.shape(x) for x in xs] and \
                    _passes(lambda: compare_fd("autograd", _flat(tuple(ag)), W @ J, np.abs(W) @ E)):
                run("autograd.grad", lambda: compare_close("jitad grad vs autograd", tuple(ag), tuple(
                    np.asarray(v, dtype=float) for v in grads), rtol=1e-8))
    return merge(failures), ref


@dataclass
class _Params:        # a registered dataclass as an argument of value_and_grad (the pytree check)
    first: object
    rest: object


jitad.register_dataclass(_Params)


def _pack(kind, xs, names):
    """xs as a pytree of `kind`, and the function that unpacks it back to the list."""
    if kind == "dict":
        return {n: x for n, x in zip(names, xs)}, lambda t: [t[n] for n in names]
    if kind == "list":
        return list(xs), lambda t: list(t)
    if kind == "nested":   # a tuple holding a dict and a list
        return (xs[0], {"more": list(xs[1:])}), lambda t: [t[0]] + list(t[1]["more"])
    return _Params(xs[0], tuple(xs[1:])), lambda t: [t.first] + list(t.rest)


def _pytree_check(program, g, xs, value_of_g, grads):
    """value_and_grad of g with its inputs packed in a pytree: the same value and gradients
    (as a pytree of the same structure) as with positional arguments."""
    kind = ("dict", "list", "nested", "dataclass")[(program.seed // 3) % 4]
    tree, unpack = _pack(kind, xs, program.inputs)

    def h(t):
        return g(*unpack(t))
    value, gtree = jitad.value_and_grad(h)(tree)
    if type(gtree) is not type(tree):
        raise Mismatch(f"pytree ({kind}): gradient is a {type(gtree).__name__}, not a {type(tree).__name__}",
                       type(tree).__name__, type(gtree).__name__)
    compare_close(f"pytree ({kind}) value", (np.asarray(value_of_g),), (np.asarray(value),), rtol=1e-12)
    got = unpack(gtree)
    compare_close(f"pytree ({kind}) gradients", tuple(np.asarray(v) for v in grads),
                  tuple(np.asarray(v) for v in got), rtol=1e-10)


def merge(failures):
    """One failure per distinct exception: checks of one program that raised the same error are
    listed in `also` of the first."""
    out, seen = [], {}
    for f in failures:
        key = (f.exc, f.message) if f.exc else None
        if key is not None and key in seen:
            seen[key].also.append(f.check)
            continue
        if key is not None:
            seen[key] = f
        out.append(f)
    return out


def _passes(fn):
    try:
        fn()
    except Exception:
        return False
    return True


def _quiet(fn):
    try:
        return fn()
    except Exception:
        return None


def _np_g(program, xs):
    _, g = make_functions(program)
    with np.errstate(all="ignore"):
        return g(*[gen._copy(x) for x in xs])


def _autograd_grads_here(program, xs):
    try:
        _, g = make_functions(program, np_module=_anp)
        return [np.asarray(_autograd.grad(g, k)(*[np.asarray(x, float) if not isinstance(x, float) else x
                                                  for x in xs]), dtype=float) for k in range(len(xs))]
    except Exception:
        return None   # autograd cannot run this program: nothing to compare


PEER_TIMEOUT = 120.0   # seconds an autograd comparison may take before it counts as a hung peer


class PeerCrashed(Exception):
    """The peer (autograd) killed or hung the process it ran in: nothing to compare, not jitad's failure."""


def in_child(fn, timeout=PEER_TIMEOUT):
    """fn() in a forked child process; its (picklable) result, or PeerCrashed when the child died of a
    signal (autograd segfaults on some programs), exited without a result, or ran past `timeout`.
    Where fork is unavailable, fn() runs here."""
    import multiprocessing
    if "fork" not in multiprocessing.get_all_start_methods():
        return fn()
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child():
        import faulthandler
        faulthandler.disable()   # a crash is reported by the parent, without the child's stack dump
        receive.close()
        try:
            out = ("ok", fn())
        except BaseException as e:   # noqa: BLE001 - reported to the parent
            out = ("error", f"{type(e).__name__}: {e}")
        send.send(out)
        send.close()
    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise PeerCrashed(f"no answer within {timeout:.0f} s" if proc.is_alive() else
                              f"the process died (exit code {_exit_text(proc)})")
        try:
            status, value = receive.recv()
        except EOFError:
            proc.join(5)
            raise PeerCrashed(f"the process died (exit code {_exit_text(proc)})") from None
    finally:
        receive.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if status == "error":
        raise RuntimeError(value)
    return value


def _exit_text(proc):
    proc.join(5)
    code = proc.exitcode
    if code is not None and code < 0:
        import signal
        try:
            return f"{code}, {signal.Signals(-code).name}"
        except ValueError:
            return str(code)
    return str(code)


def _autograd_grads(program, xs, stats=None):
    """autograd's gradients of g, computed in a child process so that a crash of autograd itself (a
    segfault on one structural program) becomes a recorded skip instead of the end of the run."""
    try:
        return in_child(lambda: _autograd_grads_here(program, xs))
    except PeerCrashed as e:
        if stats is not None:
            stats.skipped += 1
            stats.peer_crashes.append((program.seed, str(e)))
        return None


def program_scale(program):
    """The largest magnitude of any value in the program (the scale of rounding errors)."""
    env = gen.numpy_env()
    m = 1.0
    for name in program.inputs:
        env[name] = gen._copy(program.values[name])
        m = max(m, float(np.max(np.abs(program.values[name]), initial=0)))
    for op in program.ops:
        v = gen.exec_op(op, env, guards=False)
        a = np.asarray(v, dtype=float)
        if a.size:
            m = max(m, float(np.max(np.abs(a))))
    return m


# --- many programs, compiled as one function per transform ---------------------------------------
def batch_source(programs):
    """A module with f_k, g_k for each program, F (all outputs) and G (sum of the g's)."""
    parts, params, calls_f, calls_g = ["import numpy as np", ""], [], [], []
    for k, p in enumerate(programs):
        parts.append(p.source(name=f"f_{k}", g_name=f"g_{k}"))
        names = [f"p{k}_{n}" for n in p.inputs]
        params += names
        calls_f.append(f"f_{k}({', '.join(names)})")
        calls_g.append(f"g_{k}({', '.join(names)})")
    parts.append(f"def F({', '.join(params)}):\n    return ({', '.join(calls_f)},)\n")
    parts.append(f"def G({', '.join(params)}):\n    return " + " + ".join(calls_g) + "\n")
    # G and F each call every program once: in-place programs write into their arguments, so G
    # gets copies (NumPy semantics: a second call would see the first call's writes)
    copies = ", ".join(f"_fresh({p})" for p in params)
    parts.append("def _fresh(v):\n    return v.copy() if hasattr(v, 'copy') else v\n")
    parts.append(f"def G_aux({', '.join(params)}):\n    return (G({copies}), F({', '.join(params)}))\n")
    return "\n".join(parts)


def _batch_fns(programs):
    ns = {"np": np, "scipy": gen.scipy}
    exec(compile(batch_source(programs), "<fuzz batch>", "exec"), ns)
    return ns["F"], ns["G"], ns["G_aux"]


def _split(flat_values, programs):
    out, o = [], 0
    for p in programs:
        n = len(p.inputs)
        out.append(flat_values[o:o + n])
        o += n
    return out


def run_compiled_stage(stage, programs, refs):
    """Run one transform of the batch on the compiled backend; returns per-program results."""
    F, G, G_aux = _batch_fns(programs)
    xs = [p.values[n] for p in programs for n in p.inputs]
    with backend("numba"), np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xs2 = [p.perturbed().values[n] for p in programs for n in p.inputs]
        if stage == "jit":   # a first call, then a second with other values (the cached fast path)
            jF = jitad.jit(F)
            return list(zip(jF(*xs), jF(*xs2)))
        if stage == "vag":  # one kernel: the forward values (as aux) and the gradients
            vg = jitad.value_and_grad(G_aux, argnums=tuple(range(len(xs))), has_aux=True)
            (value, outs), grads = vg(*xs)
            (value2, outs2), grads2 = vg(*xs2)
            return list(zip(outs, _split(list(grads), programs), outs2, _split(list(grads2), programs)))
        ts = [t for r in refs for t in r.tangents]
        if stage == "jvp":
            _, tout = jitad.jvp(F, tuple(xs), tuple(ts))
            return list(tout)
        if stage == "hvp":
            res = jitad.hvp(G, tuple(xs), tuple(ts))
            return _split(list(res) if len(xs) > 1 else [res], programs)
    raise ValueError(stage)


def _compare_stage(stage, program, ref, got):
    dt = np.dtype(program.dtype)
    p2 = program.perturbed()
    second = np.all(np.isfinite(_flat(gen.run_numpy(p2))))
    if stage == "jit":
        got, got2 = got
        compare_close("compiled jit(f) vs reference", ref.fwd if isinstance(ref.fwd, tuple) else (ref.fwd,),
                      got if isinstance(got, tuple) else (got,), rtol=1e-9 if program.dtype == "float64" else 1e-4)
        expected = gen.run_numpy(program)
        compare_values(expected, got, program_scale(program), dt, "compiled jit(f) vs NumPy")
        if second:
            compare_values(gen.run_numpy(p2), got2, program_scale(p2), dt, "compiled jit(f) second call vs NumPy")
    elif stage == "vag":
        out, grads, out2, grads2 = got
        compare_values(gen.run_numpy(program), out, program_scale(program), dt,
                       "compiled value_and_grad aux f() vs NumPy")
        compare_close("compiled grad vs reference", tuple(ref.grads), tuple(grads),
                      rtol=1e-8 if program.dtype == "float64" else 1e-3)
        if second:
            compare_values(gen.run_numpy(p2), out2, program_scale(p2), dt,
                           "compiled value_and_grad aux f() second call vs NumPy")
            _, g2 = make_functions(p2)
            with backend("reference"):
                _, ref_grads2 = jitad.value_and_grad(g2, argnums=tuple(range(len(p2.inputs))))(
                    *[p2.values[n] for n in p2.inputs])
            compare_close("compiled grad second call vs reference", tuple(ref_grads2), tuple(grads2),
                          rtol=1e-8 if program.dtype == "float64" else 1e-3)
    elif stage == "jvp":
        r = ref.jvp_out if isinstance(ref.jvp_out, tuple) else (ref.jvp_out,)
        compare_close("compiled jvp vs reference", r, got if isinstance(got, tuple) else (got,),
                      rtol=1e-8 if program.dtype == "float64" else 1e-3)
    elif stage == "hvp":
        compare_close("compiled hvp vs reference", tuple(ref.hvp), tuple(got), rtol=1e-7)


def stage_ready(stage, program, ref):
    need = {"jit": ref.fwd is not None, "vag": ref.grads is not None and ref.fwd is not None,
            "jvp": ref.jvp_out is not None, "hvp": ref.hvp is not None}[stage]
    return need and not program.expect_error


def check_batch(programs, refs, stages=COMPILED_STAGES, stats=None, log=None):
    """Compiled vs reference for many programs at once; bisects when the batch raises, and
    reruns a mismatching program alone to tell its own bug from an interaction."""
    stats = stats or Stats()
    failures = []
    for stage in stages:
        items = [(p, r) for p, r in zip(programs, refs) if stage_ready(stage, p, r)]
        if items:
            failures += _check_stage(stage, items, stats, log, top=True)
    return failures


def _check_stage(stage, items, stats, log, top=False):
    programs = [p for p, _ in items]
    refs = [r for _, r in items]
    name = f"compiled.{stage}"
    try:
        results = run_compiled_stage(stage, programs, refs)
    except Exception as e:
        if len(items) == 1:
            stats.count(name)
            return [Failure(name, f"{type(e).__name__}: {e}", programs[0], exc=type(e).__name__,
                            detail=_tb_tail(e))]
        if log:
            log(f"  {name}: batch of {len(items)} raised {type(e).__name__}; bisecting")
        mid = len(items) // 2
        found = _check_stage(stage, items[:mid], stats, log) + _check_stage(stage, items[mid:], stats, log)
        if not any(f.exc == type(e).__name__ for f in found):
            # only the whole batch raises: report it as one merged program (which shrinks like any other)
            found.append(Failure(name + ".batch-only", f"{type(e).__name__}: {e} (only when these programs "
                                 f"are compiled together)", gen.merge(programs), exc=type(e).__name__,
                                 detail=_tb_tail(e)))
        return found
    failures = []
    for p, r, got in zip(programs, refs, results):
        stats.count(name)
        try:
            _compare_stage(stage, p, r, got)
        except Mismatch as m:
            failures.append(Failure(name, str(m), p, m.expected, m.got))
        except Exception as e:  # jitad's result has a form the comparison did not expect
            failures.append(Failure(name, f"comparing the result failed: {type(e).__name__}: {e}", p, None, got,
                                    detail=_tb_tail(e)))
    if failures and len(items) > 1:
        confirmed = []
        for fl in failures:
            k = next(i for i, q in enumerate(programs) if q is fl.program)
            alone = _check_stage(stage, [(fl.program, refs[k])], Stats(), log)
            if alone:
                confirmed += alone
            else:
                fl.check = name + ".batch-only"
                fl.message += " (only inside the batch, not alone: an interaction between programs)"
                fl.program = gen.merge(programs)
                confirmed.append(fl)
        failures = confirmed
    return failures


def compiled_alone(stage, program, only_check=None):
    """Predicate helper for shrinking a compiled failure: the failures of `program` alone."""
    fails, ref = check_program(program, only={"forward.jit", "forward.vag", "jvp.fd", "hvp.fd", "hessian.fd"},
                               second_order=(stage == "hvp"), use_autograd=False, jacobians=False)
    if not stage_ready(stage, program, ref):
        return []
    return _check_stage(stage, [(program, ref)], Stats(), None)
