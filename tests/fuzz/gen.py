"""Random straight-line NumPy programs, represented as data and printable as Python source.

A `Program` is a list of input names (with concrete values) and a list of `Op`s. Each op
defines one variable from earlier ones through a *template*: a Python expression (or, for
loops, a small block of statements) with `{0}`, `{1}` ... for its operands and `{out}` for
the variable it defines. Axes, slices, shapes and constants are baked into the template
text, so the rendered source is the whole program and the repro of any failure.

The generator builds a program op by op on concrete values: every candidate op is run by
NumPy right away, so the program is valid NumPy by construction (a candidate NumPy rejects
is simply dropped), its shapes are known, and a *guard* (another expression over the same
operands) measures how far the inputs are from the op's kinks (ties in max/min/maximum,
zero of abs, integer jumps of floor, ...). An op whose guard is below MARGIN is rejected,
so finite differences around the generated inputs are accurate.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy
import scipy.special
import scipy.stats

MAX_SIZE = 60          # elements of any intermediate value
MAX_ABS = 1e3          # values stay well scaled for finite differences
MARGIN = 2e-2          # distance to a kink that a guard requires
MAX_INPUT_SIZE = 30


@dataclass
class Op:
    out: str
    template: str
    args: tuple
    kind: str
    guard: str | None = None
    block: bool = False

    def statement(self, args=None):
        args = self.args if args is None else args
        text = self.template.replace("{out}", self.out)
        for k, a in enumerate(args):
            text = text.replace("{%d}" % k, a)
        if self.block:
            return text
        return f"{self.out} = {text}"

    def guard_expr(self):
        text = self.guard
        for k, a in enumerate(self.args):
            text = text.replace("{%d}" % k, a)
        return text


@dataclass
class Program:
    inputs: list                     # names
    values: dict                     # name -> ndarray or Python float
    ops: list
    outputs: list
    dtype: str = "float64"
    expect_error: bool = False
    seed: int = 0

    def copy(self, **changes):
        new = dataclasses.replace(self, inputs=list(self.inputs), values=dict(self.values),
                                  ops=list(self.ops), outputs=list(self.outputs))
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def perturbed(self, factor=1.01):
        """The same program at inputs scaled by `factor` (for second calls that hit jitad's caches)."""
        vals = {n: (float(v) * factor if isinstance(v, float) else np.asarray(v * factor, dtype=v.dtype))
                for n, v in self.values.items()}
        return self.copy(values=vals)

    def kinds(self):
        return [op.kind for op in self.ops]

    @property
    def in_place(self):
        """The program writes into arrays (autograd cannot differentiate it)."""
        return any(op.kind.startswith("inplace:") for op in self.ops)

    def fresh_values(self):
        """The input values as new arrays (in-place programs write into their arguments)."""
        return {n: _copy(v) for n, v in self.values.items()}

    # --- rendering ------------------------------------------------------------------------
    def source(self, name="f", with_g=None, g_name="g"):
        with_g = (not self.expect_error) if with_g is None else with_g
        lines = [f"def {name}({', '.join(self.inputs)}):"]
        for op in self.ops:
            for line in op.statement().split("\n"):
                lines.append("    " + line)
        ret = self.outputs[0] if len(self.outputs) == 1 else ", ".join(self.outputs)
        lines.append(f"    return {ret}")
        if with_g:
            lines.append("")
            lines.append("")
            lines += self.g_source(name, g_name)
        return "\n".join(lines) + "\n"

    def out_shapes(self):
        outs = run_numpy(self)
        outs = outs if isinstance(outs, tuple) else (outs,)
        return [np.shape(o) for o in outs]

    def g_source(self, fname="f", gname="g", shapes=None):
        """g = a fixed random weighting of f's outputs, summed: the scalar that grad checks."""
        shapes = self.out_shapes() if shapes is None else shapes
        lines = [f"def {gname}({', '.join(self.inputs)}):", f"    _o = {fname}({', '.join(self.inputs)})"]
        terms = []
        for k, shape in enumerate(shapes):
            o = "_o" if len(shapes) == 1 else f"_o[{k}]"
            terms.append(f"np.sum({o} * {weight_expr(shape, k)})")
        lines.append("    return " + " + ".join(terms))
        return lines

    def input_source(self):
        parts = []
        for name in self.inputs:
            v = self.values[name]
            if isinstance(v, float):
                parts.append(f"{name} = {float(v)!r}")
            else:
                text = np.array2string(v, separator=", ", precision=17, floatmode="unique", threshold=10 ** 6,
                                       max_line_width=100)
                dt = "" if v.dtype == np.float64 else f", dtype=np.{v.dtype}"
                if v.ndim == 0:
                    parts.append(f"{name} = np.array({float(v)!r}{dt})")
                elif v.size == 0:
                    parts.append(f"{name} = np.zeros({v.shape}{dt})")
                else:
                    parts.append(f"{name} = np.array({text}{dt})")
        return "\n".join(parts)

    def repro(self):
        return ("import numpy as np\nimport scipy.special\nimport scipy.stats\n\n" + self.source() + "\n" + self.input_source() +
                f"\nargs = ({', '.join(self.inputs)}{',' if len(self.inputs) == 1 else ''})\n")


def weight_expr(shape, k):
    n = math.prod(shape)
    if not shape:
        return repr(round(0.7 - 0.3 * k, 2))
    base = f"np.cos(np.arange({n}) * 1.7 + {0.3 + k:.1f})"
    return base if len(shape) == 1 else f"{base}.reshape({tuple(shape)})"


# --- guard helpers (only visible to guards, never to the program) -----------------------------
def _as_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim for a in axes) if ndim else ()


def _groups(a, axis):
    a = np.asarray(a, dtype=float)
    if a.ndim == 0:
        return a.reshape(1, 1)
    axes = _as_axes(axis, a.ndim)
    rest = [d for d in range(a.ndim) if d not in axes]
    moved = np.transpose(a, rest + list(axes))
    k = math.prod(a.shape[d] for d in axes)
    return moved.reshape(-1, k) if k else moved.reshape(0, 0)


def _g_gap(a, axis=None):
    """Smallest gap between the two largest and between the two smallest entries of each group."""
    g = _groups(a, axis)
    if g.size == 0 or g.shape[1] < 2:
        return np.inf
    s = np.sort(g, axis=1)
    return float(min(np.min(s[:, -1] - s[:, -2]), np.min(s[:, 1] - s[:, 0])))


def _g_sortgap(a, axis=-1):
    if axis is None:
        a, axis = np.ravel(a), 0
    a = np.asarray(a, dtype=float)
    if a.ndim == 0 or a.shape[axis] < 2:
        return np.inf
    return float(np.min(np.diff(np.sort(a, axis=axis), axis=axis))) if a.size else np.inf


def _g_absmin(a):
    a = np.asarray(a, dtype=float)
    return float(np.min(np.abs(a))) if a.size else np.inf


def _g_min(a):
    a = np.asarray(a, dtype=float)
    return float(np.min(a)) if a.size else np.inf


def _g_frac(a):
    a = np.asarray(a, dtype=float)
    return float(np.min(np.abs(a - np.round(a)))) if a.size else np.inf


def _g_half(a):
    """Distance to the rounding jumps of np.rint (x.5)."""
    a = np.asarray(a, dtype=float)
    return float(np.min(np.abs(a - np.floor(a) - 0.5))) if a.size else np.inf


def _g_std(a, axis=None, ddof=0):
    g = _groups(a, axis)
    if g.size == 0 or g.shape[1] <= max(ddof, 1):
        return np.inf
    return float(np.min(np.std(g, axis=1, ddof=ddof)))


def _g_sv(a, what):
    a = np.asarray(a, dtype=float)
    s = np.linalg.svd(a, compute_uv=False)
    if s.size == 0:
        return np.inf
    if what == "min":
        return float(np.min(s))
    if s.shape[-1] < 2:
        return np.inf
    return float(np.min(s[..., 0] - s[..., 1]))


def _g_eiggap(a):
    w = np.linalg.eigvalsh(np.asarray(a, dtype=float))
    return float(np.min(np.diff(w, axis=-1))) if w.shape[-1] > 1 else np.inf


def _g_atan2(y, x):
    y, x = np.broadcast_arrays(np.asarray(y, float), np.asarray(x, float))
    if y.size == 0:
        return np.inf
    r = np.hypot(y, x)
    cut = np.where(x < 0, np.abs(y), np.inf)  # the branch cut along the negative x axis
    return float(min(np.min(r), np.min(cut)))


def _g_vnorm(a, ord, axis):
    a = np.asarray(a, dtype=float)
    if a.size == 0:
        return np.inf
    m = float(np.min(np.linalg.norm(a, ord=None, axis=axis))) if axis is None or isinstance(axis, int) else np.inf
    if ord == 1:
        m = min(m, _g_absmin(a))
    if ord in (np.inf, -np.inf):
        m = min(m, _g_gap(np.abs(a), axis), _g_absmin(a))
    return m


GUARD_HELPERS = {k: v for k, v in globals().items() if k.startswith("_g_")}


class Reject(Exception):
    """The candidate op or program is not a valid, well-conditioned NumPy program."""


def _check_value(value, dtype, rng=None):
    if isinstance(value, (tuple, list)):
        raise Reject("tuple result")
    arr = np.asarray(value)
    if rng is not None and arr.size == 0 and rng.random() < 0.85:
        raise Reject("empty (kept only now and then)")
    if arr.dtype.kind != "f":
        raise Reject(f"non-float result {arr.dtype}")
    if arr.size > MAX_SIZE:
        raise Reject("too big")
    if arr.size and not np.all(np.isfinite(arr)):
        raise Reject("non-finite")
    if arr.size and np.max(np.abs(arr)) > MAX_ABS:
        raise Reject("too large")


def _check_written(value):
    """An operand a block op may have written into stays finite and well scaled, as op results do
    (np.exp of a large intermediate written into x, then np.sin(x): finite differences of sin(1e31))."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
        if not np.all(np.isfinite(value)):
            raise Reject("non-finite write")
        if np.max(np.abs(value)) > MAX_ABS:
            raise Reject("too large a write")


def exec_op(op, env, guards=True):
    """Run one op in `env` (a namespace holding np and the variables); returns its value."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            exec(op.statement(), env)
        except Reject:
            raise
        except Exception as e:  # NumPy rejects the program
            raise Reject(f"numpy: {type(e).__name__}: {e}") from None
        value = env[op.out]
        if guards and op.guard:
            ns = dict(env)
            ns.update(GUARD_HELPERS)
            try:
                margin = eval(op.guard_expr(), ns)
            except Exception as e:
                raise Reject(f"guard: {type(e).__name__}: {e}") from None
            if not margin >= MARGIN:
                raise Reject(f"guard {op.guard} = {margin}")
    return value


def _copy(v):
    return v.copy() if isinstance(v, np.ndarray) else v


def numpy_env(np_module=np):
    return {"np": np_module, "scipy": scipy, "__builtins__": __builtins__}


def run_numpy(program, values=None, guards=False, check=False):
    """Evaluate `program` op by op with NumPy; returns its output (a value or a tuple)."""
    env = numpy_env()
    vals = program.values if values is None else values
    for name in program.inputs:
        env[name] = _copy(vals[name])
    for op in program.ops:
        v = exec_op(op, env, guards=guards)
        if check:
            _check_value(v, program.dtype)
            if op.block:  # a write into an operand (inplace:arg, views): later ops read the written array
                for name in op.args:
                    _check_written(env.get(name))
    outs = tuple(env[o] for o in program.outputs)
    return outs[0] if len(outs) == 1 else outs


def validate(program):
    """Raise Reject unless `program` runs in NumPy, stays away from kinks and is well scaled."""
    run_numpy(program, guards=True, check=True)
    if not program.outputs:
        raise Reject("no outputs")


def numpy_raises(program):
    """The exception NumPy raises on `program`, or None."""
    env = numpy_env()
    for name in program.inputs:
        env[name] = _copy(program.values[name])
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for op in program.ops:
                exec(op.statement(), env)
    except Exception as e:
        return e
    return None


# --- the generator -----------------------------------------------------------------------------
def _fmt(x):
    return repr(round(float(x), 2))


def const_expr(rng, shape):
    """A compact constant of `shape` (NumPy code with no inputs: jitad sees a constant)."""
    lo = round(float(rng.uniform(-1.5, -0.2)), 2)
    hi = round(float(rng.uniform(0.2, 1.5)), 2)
    if rng.random() < 0.5:
        lo, hi = hi, lo
    n = math.prod(shape)
    if not shape:
        return _fmt(rng.choice([-1, 1]) * rng.uniform(0.3, 1.5))
    base = f"np.linspace({lo}, {hi}, {n})"
    return base if len(shape) == 1 else f"{base}.reshape{tuple(shape)}"


def _slice_text(rng, n, allow_neg=True):
    def bound():
        if rng.random() < 0.4:
            return None
        lo = -n - 1 if allow_neg else 0
        return int(rng.integers(lo, n + 2))
    start, stop = bound(), bound()
    step = rng.choice([None, None, 1, 2, -1, -1, -2, 3])
    text = ("" if start is None else str(start)) + ":" + ("" if stop is None else str(stop))
    if step is not None:
        text += f":{step}"
    return text


def _int_list(rng, n, length=None):
    length = int(rng.integers(1, 5)) if length is None else length
    return [int(v) for v in rng.integers(-n, n, size=length)]


class State:
    def __init__(self, rng, program):
        self.rng = rng
        self.program = program
        self.env = numpy_env()
        for name in program.inputs:
            self.env[name] = _copy(program.values[name])
        self.vars = list(program.inputs)
        self.tags = {}
        self.counter = 0

    def value(self, name):
        return self.env[name]

    def shape(self, name):
        return np.shape(self.env[name])

    def fresh(self):
        name = f"v{self.counter}"
        self.counter += 1
        return name

    def pick(self, pred=lambda v: True, exclude=()):
        cands = [n for n in self.vars if n not in exclude and pred(np.asarray(self.env[n]))]
        if not cands:
            return None
        last = self.vars[-1]
        if last in cands and self.rng.random() < 0.45:
            return last
        weights = np.array([1.0 + 2.0 * (i >= len(cands) - 3) for i in range(len(cands))])
        return cands[int(self.rng.choice(len(cands), p=weights / weights.sum()))]

    def partner(self, a, ok, exclude_self=False):
        """A variable b with ok(shape_a, shape_b), or None."""
        sa = self.shape(a)
        cands = [n for n in self.vars if (not exclude_self or n != a) and ok(sa, self.shape(n))]
        if not cands:
            return None
        return cands[int(self.rng.integers(len(cands)))]


def _broadcastable(sa, sb):
    try:
        shape = np.broadcast_shapes(sa, sb)
    except ValueError:
        return False
    return math.prod(shape) <= MAX_SIZE


def _rand_axis(rng, ndim, allow_tuple=True, allow_none=True):
    if ndim == 0:
        return None if allow_none or rng.random() < 0.5 else ()
    r = rng.random()
    if allow_none and r < 0.25:
        return None
    if allow_tuple and r > 0.75:
        k = int(rng.integers(1, ndim + 1))
        axes = [int(a) for a in rng.permutation(ndim)[:k]]
        return tuple(a - ndim if rng.random() < 0.3 else a for a in axes)
    a = int(rng.integers(ndim))
    return a - ndim if rng.random() < 0.35 else a


UNARY = [
    ("np.sin({0})", None), ("np.cos({0})", None), ("np.tanh({0})", None), ("np.exp({0})", None),
    ("np.log({0} * {0} + 1.0)", None), ("np.log1p({0} * {0})", None), ("np.sqrt({0} * {0} + 0.5)", None),
    ("np.arctan({0})", None), ("np.arcsinh({0})", None), ("np.sinh({0})", None), ("np.cosh({0})", None),
    ("np.expm1({0})", None), ("np.square({0})", None), ("-{0}", None), ("{0} ** 2", None), ("{0} ** 3", None),
    ("np.power({0} * {0} + 1.0, 1.5)", None), ("np.cbrt({0} * {0} + 1.0)", None),
    ("np.reciprocal({0} * {0} + 1.0)", None), ("1.0 / ({0} * {0} + 1.0)", None),
    ("np.arcsin(0.9 * np.tanh({0}))", None), ("np.arccos(0.9 * np.tanh({0}))", None),
    ("np.arctanh(0.9 * np.tanh({0}))", None), ("np.arccosh({0} * {0} + 1.5)", None),
    ("np.log2({0} * {0} + 1.0)", None), ("np.log10({0} * {0} + 0.5)", None), ("np.exp2({0})", None),
    ("np.tan(0.5 * np.tanh({0}))", None), ("np.positive({0})", None), ("np.deg2rad({0})", None),
    ("2.0 * {0} - 0.5", None), ("{0} / 3.0", None), ("0.5 - {0}", None), ("np.logaddexp({0}, 0.5)", None),
    ("np.sin({0}) * {0}", None), ("np.cbrt({0})", "_g_absmin({0})"),
    ("np.abs({0})", "_g_absmin({0})"), ("np.fabs({0})", "_g_absmin({0})"),
    ("np.sign({0}) * {0}", "_g_absmin({0})"), ("np.floor(2.0 * {0}) + {0}", "_g_frac(2.0 * {0})"),
    ("np.ceil({0}) * {0}", "_g_frac({0})"), ("np.rint(3.0 * {0}) - {0}", "_g_half(3.0 * {0})"),
    ("np.trunc(2.0 * {0}) + np.sin({0})", "_g_frac(2.0 * {0})"),
    ("np.sqrt({0})", "_g_min({0})"), ("np.log({0})", "_g_min({0})"), ("{0} ** 0.5", "_g_min({0})"),
    ("np.abs({0}) ** 1.5", "_g_absmin({0})"), ("1.0 / {0}", "_g_absmin(10.0 * {0})"),
    ("np.clip({0}, -0.5, 0.6)", "min(_g_absmin({0} + 0.5), _g_absmin({0} - 0.6))"),
    ("np.clip({0}, 0.1, None)", "_g_absmin({0} - 0.1)"),
    ("np.maximum({0}, 0.2)", "_g_absmin({0} - 0.2)"), ("np.minimum({0}, -0.1)", "_g_absmin({0} + 0.1)"),
    ("np.where({0} > 0.3, {0}, np.sin({0}))", "_g_absmin({0} - 0.3)"),
    ("np.round({0}, 1) + {0}", "_g_half(10.0 * {0})"),
    ("abs({0})", "_g_absmin({0})"), ("{0} % 1.7", "_g_frac({0} / 1.7)"), ("{0} // 0.7 + {0}", "_g_frac({0} / 0.7)"),
    ("np.remainder({0}, 0.9) * {0}", "_g_frac({0} / 0.9)"), ("np.fmod({0}, 0.8)", "min(_g_frac({0} / 0.8), _g_absmin({0}))"),
    ("{0}.clip(-0.5, 0.5)", "min(_g_absmin({0} + 0.5), _g_absmin({0} - 0.5))"),
    ("+{0}", None), ("np.float64(2.0) * {0}", None), ("{0}.astype(np.float64)", None), ("{0} ** -2", "_g_absmin(5.0 * {0})"),
    ("np.exp(-{0} * {0})", None),
    ("np.conj({0})", None), ("np.real({0})", None),
]

BINARY = [
    ("{0} + {1}", None), ("{0} - {1}", None), ("{0} * {1}", None), ("{0} / ({1} * {1} + 1.0)", None),
    ("{0} / {1}", "_g_absmin(10.0 * {1})"), ("np.add({0}, {1})", None), ("np.multiply({0}, {1})", None),
    ("np.maximum({0}, {1})", "_g_absmin({0} - {1})"), ("np.minimum({0}, {1})", "_g_absmin({0} - {1})"),
    ("np.fmax({0}, {1})", "_g_absmin({0} - {1})"), ("np.fmin({0}, {1})", "_g_absmin({0} - {1})"),
    ("np.hypot({0}, {1})", "_g_min(np.hypot({0}, {1}))"), ("np.arctan2({0}, {1})", "_g_atan2({0}, {1})"),
    ("np.logaddexp({0}, {1})", None), ("np.where({0} > {1}, {0}, 2.0 * {1})", "_g_absmin({0} - {1})"),
    ("np.where({0} < {1}, np.sin({0}), {1} * {1})", "_g_absmin({0} - {1})"),
    ("np.power({0} * {0} + 0.5, {1})", None), ("{0} ** 2 * {1}", None), ("np.subtract({1}, {0})", None),
    ("np.true_divide({0}, {1} * {1} + 0.5)", None), ("np.clip({0}, {1} - 0.3, {1} + 0.3)",
                                                      "min(_g_absmin({0} - {1} + 0.3), _g_absmin({0} - {1} - 0.3))"),
    ("np.sin({0}) * np.cos({1})", None), ("{0} * {1} + {1}", None),
    ("{0} ** {1}", "_g_min({0} + 0.0 * {1})"), ("np.float_power({0} * {0} + 0.5, {1})", None),
    ("({0} > {1}) * {0}", "_g_absmin({0} - {1})"),
    ("np.logaddexp2({0}, {1})", None), ("np.divide({0}, np.exp({1}))", None),
]


def b_unary(st):
    a = st.pick()
    tmpl, guard = UNARY[int(st.rng.integers(len(UNARY)))]
    name = tmpl.split("(")[0].replace("np.", "") if tmpl.startswith("np.") else tmpl
    return [Op(st.fresh(), tmpl, (a,), "unary:" + name, guard)]


def b_binary(st):
    a = st.pick()
    tmpl, guard = BINARY[int(st.rng.integers(len(BINARY)))]
    kind = "binary:" + (tmpl.split("(")[0].replace("np.", "") if tmpl.startswith("np.") else tmpl)
    if st.rng.random() < 0.15:
        sa = st.shape(a)
        k = int(st.rng.integers(0, len(sa) + 1))
        shape = tuple(1 if st.rng.random() < 0.3 else d for d in sa[k:])
        c = "(" + const_expr(st.rng, shape) + ")"
        if st.rng.random() < 0.5:
            return [Op(st.fresh(), tmpl.replace("{1}", c), (a,), kind + "/const",
                       guard and guard.replace("{1}", c))]
        t2 = tmpl.replace("{0}", "\0").replace("{1}", "{0}").replace("\0", c)
        return [Op(st.fresh(), t2, (a,), kind + "/const", guard and guard.replace("{0}", "\0")
                   .replace("{1}", "{0}").replace("\0", c))]
    b = st.partner(a, _broadcastable, exclude_self=st.rng.random() < 0.8)
    if b is None:
        return None
    args = (a, b) if st.rng.random() < 0.5 else (b, a)
    kind += "/bcast" if st.shape(args[0]) != st.shape(args[1]) else ""
    return [Op(st.fresh(), tmpl, args, kind, guard)]


def b_where_mask(st):
    a = st.pick()
    sa = st.shape(a)
    n = math.prod(sa)
    k = int(st.rng.integers(2, 4))
    r = int(st.rng.integers(k))
    mask = f"np.arange({n}).reshape{tuple(sa)} % {k} == {r}" if sa else "True"
    b = st.partner(a, lambda x, y: np.broadcast_shapes(x, y) == x if _broadcastable(x, y) else False)
    if b is None or st.rng.random() < 0.3:
        return [Op(st.fresh(), f"np.where({mask}, {{0}}, {const_expr(st.rng, ())})", (a,), "where:mask")]
    return [Op(st.fresh(), f"np.where({mask}, {{0}}, np.sin({{1}}))", (a, b), "where:mask")]


REDUCE = ["sum", "mean", "max", "min", "prod", "var", "std", "sum", "mean", "max"]


def _axis_text(axis):
    return repr(axis)


def b_reduce(st):
    a = st.pick()
    nd = len(st.shape(a))
    fn = REDUCE[int(st.rng.integers(len(REDUCE)))]
    axis = _rand_axis(st.rng, nd)
    keep = st.rng.random() < 0.3
    ddof = 1 if fn in ("var", "std") and st.rng.random() < 0.25 else 0
    kw = []
    if axis is not None or st.rng.random() < 0.2:
        kw.append(f"axis={_axis_text(axis)}")
    if keep:
        kw.append("keepdims=True")
    if ddof:
        kw.append(f"ddof={ddof}")
    if fn == "max" and st.rng.random() < 0.3:
        fname = "np.amax"
    elif fn == "min" and st.rng.random() < 0.3:
        fname = "np.amin"
    else:
        fname = f"np.{fn}"
    if st.rng.random() < 0.3:
        tmpl = "{0}." + fn + "(" + ", ".join(kw) + ")"
    else:
        tmpl = fname + "({0}" + "".join(", " + k for k in kw) + ")"
    guard = None
    if fn in ("max", "min"):
        guard = f"_g_gap({{0}}, {axis!r})"
    elif fn == "std":
        guard = f"_g_std({{0}}, {axis!r}, {ddof})"
    elif fn == "prod":
        guard = None
    return [Op(st.fresh(), tmpl, (a,), f"reduce:{fn}" + ("/tuple" if isinstance(axis, tuple) else ""), guard)]


def b_reduce_more(st):
    a = st.pick(lambda v: v.ndim >= 1)
    if a is None:
        return None
    nd = len(st.shape(a))
    axis = _rand_axis(st.rng, nd, allow_tuple=True)
    r = st.rng.random()
    if r < 0.3:
        guard = f"_g_sortgap({{0}}, {axis!r})" if not isinstance(axis, tuple) else f"_g_gap({{0}}, {axis!r})"
        if isinstance(axis, tuple):
            guard = f"min(_g_gap({{0}}, {axis!r}), _g_sortgap(np.reshape(np.moveaxis({{0}}, {axis!r}, "
            guard += f"tuple(range(-{len(axis)}, 0))), np.shape({{0}})[:{len(st.shape(a)) - len(axis)}] + (-1,)), -1))"
        return [Op(st.fresh(), f"np.median({{0}}, axis={axis!r})", (a,), "reduce:median", guard)]
    if r < 0.55:
        return [Op(st.fresh(), f"np.ptp({{0}}, axis={axis!r})", (a,), "reduce:ptp", f"_g_gap({{0}}, {axis!r})")]
    if r < 0.8:
        ax = int(st.rng.integers(nd))
        n = st.shape(a)[ax]
        w = f"np.linspace(0.5, 1.5, {n})"
        return [Op(st.fresh(), f"np.average({{0}}, axis={ax}, weights={w})", (a,), "reduce:average")]
    return [Op(st.fresh(), "np.sum({0} * {0})", (a,), "reduce:sumsq")]


def _index_key(st, shape, mode):
    rng = st.rng
    nd = len(shape)
    parts = []
    if mode == "mask_full":
        n = math.prod(shape)
        k = int(rng.integers(2, 4))
        return f"np.arange({n}).reshape{tuple(shape)} % {k} {rng.choice(['==', '!='])} {int(rng.integers(k))}"
    if mode == "mixed":  # like x[3, 2:, [1, 3]]
        comps = []
        n_adv = 0
        for d in range(nd):
            r = rng.random()
            if r < 0.3:
                comps.append(str(int(rng.integers(-shape[d], shape[d]))))
            elif r < 0.6 and n_adv < 2:
                n_adv += 1
                comps.append(str(_int_list(rng, shape[d], length=2 if n_adv > 1 else int(rng.integers(1, 4)))))
            else:
                comps.append(_slice_text(rng, shape[d]))
        if n_adv == 0 and nd:
            d = int(rng.integers(nd))
            comps[d] = str(_int_list(rng, shape[d]))
        return ", ".join(comps)
    n_addr = int(rng.integers(1, nd + 1))
    ellipsis = rng.random() < 0.25
    split = int(rng.integers(0, n_addr + 1)) if ellipsis else n_addr
    dims = list(range(split)) + list(range(nd - (n_addr - split), nd))
    comps = []
    adv = mode == "adv"
    n_arrays = 0
    for j, d in enumerate(dims):
        if ellipsis and j == split:
            comps.append("...")
        n = shape[d]
        r = rng.random()
        if r < 0.55 or (not adv and r < 0.8):
            comps.append(_slice_text(rng, n))
        elif not adv or r < 0.75:
            comps.append(str(int(rng.integers(-n, n))) if n else ":")
        elif r < 0.9 or n_arrays:
            n_arrays += 1
            comps.append(str(_int_list(rng, n)) if rng.random() < 0.7 else f"np.array({_int_list(rng, n)})")
        else:  # a concrete boolean mask along this axis
            n_arrays += 1
            comps.append("np.array([" + ", ".join(str(bool(b)) for b in rng.random(n) < 0.6) + "])")
    if ellipsis and split == len(dims):
        comps.append("...")
    for _ in range(int(rng.random() < 0.25) + int(rng.random() < 0.1)):
        comps.insert(int(rng.integers(0, len(comps) + 1)), "None")
    if adv and rng.random() < 0.15 and nd:
        n0 = shape[0]
        comps = [f"np.array([{_int_list(rng, n0, 2)}, {_int_list(rng, n0, 2)}])"] + comps[1:] if dims and dims[0] == 0 \
            else comps
    return ", ".join(comps) if comps else "..."


def b_index(st, a=None):
    a = a or st.pick(lambda v: v.ndim >= 1)
    if a is None:
        return None
    shape = st.shape(a)
    mode = st.rng.choice(["basic", "basic", "adv", "adv", "mixed", "mask_full"])
    key = _index_key(st, shape, mode)
    return [Op(st.fresh(), "{0}[" + key + "]", (a,), f"index:{mode}")]


def _factor(rng, size, max_nd=3):
    if size == 0:
        return (0,)
    nd = int(rng.integers(1, max_nd + 1))
    dims = []
    rest = size
    for _ in range(nd - 1):
        divs = [d for d in range(1, rest + 1) if rest % d == 0]
        d = int(rng.choice(divs))
        dims.append(d)
        rest //= d
    dims.append(rest)
    rng.shuffle(dims)
    return tuple(int(d) for d in dims)


def b_struct(st):
    rng = st.rng
    a = st.pick()
    shape = st.shape(a)
    nd = len(shape)
    size = math.prod(shape)
    choices = ["reshape", "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze", "concatenate", "stack",
               "broadcast_to", "flip", "roll", "tile", "repeat", "pad", "diff", "cumsum", "diag", "diagonal",
               "trace", "triu", "ravel", "sort", "hstack", "vstack", "split", "atleast_2d", "kron", "cross",
               "T", "column_stack"]
    which = str(rng.choice(choices))
    fresh = st.fresh
    if which == "reshape":
        new = _factor(rng, size)
        if rng.random() < 0.3 and new:
            new = list(new)
            new[int(rng.integers(len(new)))] = -1
            new = tuple(new)
        if rng.random() < 0.5:
            return [Op(fresh(), f"np.reshape({{0}}, {new!r})", (a,), "struct:reshape")]
        return [Op(fresh(), "{0}.reshape(" + ", ".join(map(str, new)) + ")", (a,), "struct:reshape")]
    if which == "T" and nd >= 2:
        form = str(rng.choice(["{0}.T", "{0}.transpose()", "{0}.swapaxes(0, -1)", "{0}.diagonal()",
                               "{0}.trace()", "{0}.transpose(" + ", ".join(map(str, rng.permutation(nd))) + ")"]))
        return [Op(fresh(), form, (a,), "struct:T" if "T" in form or "transpose" in form or "swap" in form else
                   "struct:diagonal")]
    if which == "squeeze" and nd and rng.random() < 0.2 and any(d == 1 for d in shape):
        return [Op(fresh(), "{0}.squeeze()", (a,), "struct:squeeze")]
    if nd == 0:
        if which in ("expand_dims", "stack", "broadcast_to", "atleast_2d"):
            pass
        else:
            return [Op(fresh(), f"np.reshape({{0}}, {(1,) * int(rng.integers(1, 3))})", (a,), "struct:reshape")]
    if which == "transpose" or (which == "T" and nd < 2):
        if rng.random() < 0.3:
            return [Op(fresh(), "np.transpose({0})", (a,), "struct:transpose")]
        perm = [int(p) - (nd if rng.random() < 0.2 else 0) for p in rng.permutation(nd)]
        return [Op(fresh(), f"np.transpose({{0}}, {tuple(perm)!r})", (a,), "struct:transpose")]
    if which == "swapaxes":
        i, j = int(rng.integers(-nd, nd)), int(rng.integers(-nd, nd))
        return [Op(fresh(), f"np.swapaxes({{0}}, {i}, {j})", (a,), "struct:swapaxes")]
    if which == "moveaxis":
        i, j = int(rng.integers(-nd, nd)), int(rng.integers(-nd, nd))
        return [Op(fresh(), f"np.moveaxis({{0}}, {i}, {j})", (a,), "struct:moveaxis")]
    if which == "expand_dims":
        if rng.random() < 0.25 and nd:
            ax = tuple(sorted({int(rng.integers(0, nd + 2)) for _ in range(2)}))
        else:
            ax = int(rng.integers(-nd - 1, nd + 1))
        return [Op(fresh(), f"np.expand_dims({{0}}, {ax!r})", (a,), "struct:expand_dims")]
    if which == "squeeze":
        ones = [d for d in range(nd) if shape[d] == 1]
        if not ones:
            return [Op(fresh(), "{0}[:, None]" if nd else "{0}[None]", (a,), "index:newaxis")]
        if rng.random() < 0.4:
            return [Op(fresh(), "np.squeeze({0})", (a,), "struct:squeeze")]
        ax = int(rng.choice(ones)) - (nd if rng.random() < 0.3 else 0)
        return [Op(fresh(), f"np.squeeze({{0}}, axis={ax})", (a,), "struct:squeeze")]
    if which in ("concatenate", "hstack", "vstack", "column_stack"):
        ax = int(rng.integers(-nd, nd))
        axn = ax % nd

        def ok(sa, sb):
            return len(sb) == len(sa) and all(x == y for d, (x, y) in enumerate(zip(sa, sb)) if d != axn)
        b = st.partner(a, ok)
        fn = which
        axis_txt = f", axis={ax}" if which == "concatenate" else ""
        if b is not None and rng.random() < 0.7:
            return [Op(fresh(), f"np.{fn}([{{0}}, {{1}}]{axis_txt})", (a, b), f"struct:{fn}")]
        sl = ", ".join([":"] * axn + ["1:"])
        second = "np.cos({0}[" + sl + "])" if which == "concatenate" else "np.cos({0})"
        parts = ["{0}", second] + (["2.0 * {0}"] if rng.random() < 0.3 else [])
        return [Op(fresh(), f"np.{fn}([" + ", ".join(parts) + f"]{axis_txt})", (a,), f"struct:{fn}")]
    if which == "stack":
        b = st.partner(a, lambda sa, sb: sa == sb, exclude_self=True)
        ax = int(rng.integers(-nd - 1, nd + 1))
        if b is not None and rng.random() < 0.7:
            return [Op(fresh(), f"np.stack([{{0}}, {{1}}], axis={ax})", (a, b), "struct:stack")]
        return [Op(fresh(), f"np.stack([{{0}}, np.sin({{0}}), {{0}} * {{0}}], axis={ax})", (a,), "struct:stack")]
    if which == "broadcast_to":
        new = tuple(int(rng.integers(2, 4)) for _ in range(int(rng.integers(0, 2)))) + \
            tuple(int(rng.integers(2, 4)) if d == 1 and rng.random() < 0.7 else d for d in shape)
        return [Op(fresh(), f"np.broadcast_to({{0}}, {new!r})", (a,), "struct:broadcast_to")]
    if which == "flip":
        ax = _rand_axis(rng, nd)
        return [Op(fresh(), "np.flip({0}" + ("" if ax is None else f", axis={ax!r}") + ")", (a,), "struct:flip")]
    if which == "roll":
        ax = _rand_axis(rng, nd)
        if isinstance(ax, tuple):
            shift = tuple(int(rng.integers(-4, 5)) for _ in ax)
        else:
            shift = int(rng.integers(-5, 6))
        return [Op(fresh(), f"np.roll({{0}}, {shift!r}" + ("" if ax is None else f", axis={ax!r}") + ")", (a,),
                   "struct:roll")]
    if which == "tile":
        reps = int(rng.integers(1, 4)) if rng.random() < 0.4 else \
            tuple(int(rng.integers(1, 3)) for _ in range(int(rng.integers(1, nd + 2))))
        return [Op(fresh(), f"np.tile({{0}}, {reps!r})", (a,), "struct:tile")]
    if which == "repeat":
        if rng.random() < 0.3:
            return [Op(fresh(), f"np.repeat({{0}}, {int(rng.integers(1, 4))})", (a,), "struct:repeat")]
        ax = int(rng.integers(-nd, nd))
        if rng.random() < 0.5:
            reps = [int(r) for r in rng.integers(0, 3, size=shape[ax])]
        else:
            reps = int(rng.integers(1, 4))
        return [Op(fresh(), f"np.repeat({{0}}, {reps!r}, axis={ax})", (a,), "struct:repeat")]
    if which == "pad":
        if rng.random() < 0.3:
            pw = int(rng.integers(0, 3))
        else:
            pw = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(nd))
        cv = "" if rng.random() < 0.5 else f", constant_values={_fmt(rng.uniform(-1, 1))}"
        return [Op(fresh(), f"np.pad({{0}}, {pw!r}{cv})", (a,), "struct:pad")]
    if which == "diff":
        ax = int(rng.integers(-nd, nd))
        n = int(rng.choice([1, 1, 2]))
        extra = ""
        if rng.random() < 0.2:
            extra = f", prepend={_fmt(rng.uniform(-1, 1))}"
        return [Op(fresh(), f"np.diff({{0}}, n={n}, axis={ax}{extra})" if n != 1 or rng.random() < 0.5 else
                   f"np.diff({{0}}, axis={ax}{extra})", (a,), "struct:diff")]
    if which == "cumsum":
        ax = None if rng.random() < 0.3 else int(rng.integers(-nd, nd))
        if rng.random() < 0.3:
            return [Op(fresh(), "{0}.cumsum(" + ("" if ax is None else f"axis={ax}") + ")", (a,), "struct:cumsum")]
        return [Op(fresh(), "np.cumsum({0}" + ("" if ax is None else f", axis={ax}") + ")", (a,), "struct:cumsum")]
    if which == "diag":
        k = int(rng.integers(-2, 3))
        if nd == 1:
            return [Op(fresh(), f"np.diag({{0}}, {k})" if k else "np.diag({0})", (a,), "struct:diag1d")]
        if nd == 2:
            return [Op(fresh(), f"np.diag({{0}}, k={k})" if k else "np.diag({0})", (a,), "struct:diag2d")]
        return [Op(fresh(), "np.diag(np.ravel({0}))", (a,), "struct:diag1d")]
    if which in ("diagonal", "trace"):
        if nd < 2:
            return [Op(fresh(), "np.diag({0})", (a,), "struct:diag1d")]
        off = int(rng.integers(-1, 2))
        a1, a2 = [int(x) for x in rng.permutation(nd)[:2]]
        if rng.random() < 0.3:
            a1 -= nd
        return [Op(fresh(), f"np.{which}({{0}}, {off}, {a1}, {a2})" if rng.random() < 0.6 else
                   f"np.{which}({{0}}, offset={off}, axis1={a1}, axis2={a2})", (a,), f"struct:{which}")]
    if which == "triu":
        if nd < 2:
            return [Op(fresh(), "np.outer({0}, {0})", (a,), "matmul:outer")]
        fn = str(rng.choice(["triu", "tril"]))
        return [Op(fresh(), f"np.{fn}({{0}}, {int(rng.integers(-1, 2))})", (a,), f"struct:{fn}")]
    if which == "ravel":
        return [Op(fresh(), str(rng.choice(["np.ravel({0})", "{0}.ravel()", "{0}.flatten()", "{0}.reshape(-1)"])),
                   (a,), "struct:ravel")]
    if which == "sort":
        ax = int(rng.integers(-nd, nd))
        return [Op(fresh(), f"np.sort({{0}}, axis={ax})", (a,), "struct:sort", f"_g_sortgap({{0}}, {ax})")]
    if which == "split":
        ax = int(rng.integers(-nd, nd))
        n = shape[ax]
        if n >= 2 and n % 2 == 0:
            return [Op(fresh(), f"np.split({{0}}, 2, axis={ax})[{int(rng.integers(2))}]", (a,), "struct:split")]
        return [Op(fresh(), f"np.array_split({{0}}, 2, axis={ax})[{int(rng.integers(2))}]", (a,), "struct:array_split")]
    if which == "atleast_2d":
        return [Op(fresh(), "np.atleast_2d({0})", (a,), "struct:atleast_2d")]
    if which == "kron":
        b = st.pick(lambda v: 0 < v.size <= 6 and v.ndim <= 2)
        if b is None:
            return None
        return [Op(fresh(), "np.kron({0}, {1})", (a, b), "struct:kron")]
    if which == "cross":
        if shape[-1] != 3:
            return [Op(fresh(), "np.cumsum({0}, axis=-1)", (a,), "struct:cumsum")]
        b = st.partner(a, lambda sa, sb: sb[-1:] == (3,) and _broadcastable(sa, sb))
        return [Op(fresh(), "np.cross({0}, {1})", (a, b), "struct:cross")]
    return None


def _matmul_ok(sa, sb):
    if not sa or not sb:
        return False
    try:
        out = np.matmul(np.empty(sa), np.empty(sb)).shape
    except ValueError:
        return False
    return math.prod(out) <= MAX_SIZE


def b_matmul(st):
    rng = st.rng
    a = st.pick(lambda v: v.ndim >= 1)
    if a is None:
        return None
    sa = st.shape(a)
    r = rng.random()
    if r < 0.55:
        b = st.partner(a, _matmul_ok)
        form = str(rng.choice(["{0} @ {1}", "np.matmul({0}, {1})", "np.dot({0}, {1})", "{0}.dot({1})"]))
        if b is not None and (len(sa) <= 2 or "dot" not in form) and rng.random() < 0.75:
            return [Op(st.fresh(), form, (a, b), "matmul:" + ("dot" if "dot" in form else "matmul"))]
        if len(sa) >= 2 and rng.random() < 0.5:
            return [Op(st.fresh(), "{0} @ np.swapaxes({0}, -1, -2)", (a,), "matmul:gram")]
        k = int(rng.integers(1, 4))
        c = const_expr(rng, (sa[-1], k) if rng.random() < 0.7 else (sa[-1],))
        return [Op(st.fresh(), "{0} @ " + c, (a,), "matmul:const")]
    if r < 0.8:
        return b_einsum(st, a)
    b = st.pick(lambda v: v.ndim >= 1, exclude=())
    which = str(rng.choice(["outer", "inner", "tensordot", "vdot"]))
    sb = st.shape(b)
    if which == "outer":
        return [Op(st.fresh(), "np.outer({0}, {1})", (a, b), "matmul:outer")]
    if which == "inner":
        return [Op(st.fresh(), "np.inner({0}, {1})", (a, b), "matmul:inner")]
    if which == "vdot":
        b = st.partner(a, lambda x, y: math.prod(x) == math.prod(y))
        return [Op(st.fresh(), "np.vdot({0}, {1})", (a, b), "matmul:vdot")]
    pairs = [(i, j) for i in range(len(sa)) for j in range(len(sb)) if sa[i] == sb[j]]
    if not pairs:
        return None
    i, j = pairs[int(rng.integers(len(pairs)))]
    if rng.random() < 0.3 and i == len(sa) - 1 and j == 0:
        return [Op(st.fresh(), "np.tensordot({0}, {1}, axes=1)", (a, b), "matmul:tensordot")]
    return [Op(st.fresh(), f"np.tensordot({{0}}, {{1}}, axes=([{i}], [{j}]))", (a, b), "matmul:tensordot")]


def b_einsum(st, a=None):
    rng = st.rng
    a = a or st.pick(lambda v: v.ndim >= 1)
    if a is None:
        return None
    sa = st.shape(a)
    letters = iter("ijklmnopqrs")
    size_of = {}
    la = []
    for d in sa:
        same = [l for l in la if size_of[l] == d]
        if same and rng.random() < 0.12:
            la.append(same[0])
            continue
        l = next(letters)
        size_of[l] = d
        la.append(l)
    specs, args = ["".join(la)], [a]
    if rng.random() < 0.7:
        b = st.pick(lambda v: v.ndim >= 1)
        sb = st.shape(b)
        lb = []
        for d in sb:
            same = [l for l in set(la) if size_of[l] == d and l not in lb]
            if same and rng.random() < 0.6:
                lb.append(sorted(same)[0])
            else:
                l = next(letters)
                size_of[l] = d
                lb.append(l)
        specs.append("".join(lb))
        args.append(b)
    used = list(dict.fromkeys("".join(specs)))
    out = [l for l in used if rng.random() < 0.55]
    rng.shuffle(out)
    if math.prod(size_of[l] for l in out) > MAX_SIZE:
        return None
    spec = ",".join(specs) + ("->" + "".join(out) if rng.random() < 0.85 else "")
    placeholders = ", ".join("{%d}" % k for k in range(len(args)))
    return [Op(st.fresh(), f'np.einsum("{spec}", {placeholders})', tuple(args), "matmul:einsum")]


def b_linalg(st):
    rng = st.rng
    ops = []
    mat = st.pick(lambda v: v.ndim >= 2 and v.shape[-1] == v.shape[-2] and v.shape[-1] >= 1, exclude=())
    mats = [n for n in st.vars if st.tags.get(n) in ("spd", "wc")]
    if mats and rng.random() < 0.6:
        S = mats[int(rng.integers(len(mats)))]
        tag = st.tags[S]
    else:
        src = st.pick(lambda v: v.ndim >= 2 and v.shape[-2] <= 5 and v.size <= 30)
        if src is None:
            src = st.pick(lambda v: v.ndim == 1 and 1 <= v.size <= 5)
            if src is None:
                return None
            m = st.shape(src)[0]
            S = st.fresh()
            ops.append(Op(S, f"np.outer(np.tanh({{0}}), np.tanh({{0}})) + 1.5 * np.eye({m})", (src,), "linalg:spd"))
            tag = "spd"
        elif mat is not None and rng.random() < 0.4 and st.shape(mat)[-1] <= 5:
            m = st.shape(mat)[-1]
            S = st.fresh()
            ops.append(Op(S, f"np.tanh({{0}}) + {m}.5 * np.eye({m})", (mat,), "linalg:diagdom"))
            tag = "wc"
        else:
            m = st.shape(src)[-2]
            S = st.fresh()
            ops.append(Op(S, f"np.tanh({{0}}) @ np.swapaxes(np.tanh({{0}}), -1, -2) + 2.0 * np.eye({m})", (src,),
                          "linalg:spd"))
            tag = "spd"
    # the shape of S is known once its op ran; the caller runs ops in order, so defer with a lambda
    which = str(rng.choice(["solve", "solve", "inv", "det", "slogdet", "cholesky", "norm", "norm", "eigvalsh",
                            "svdvals", "matrix_power"]))
    if which == "cholesky" and tag != "spd":
        which = "inv"
    if which == "eigvalsh" and tag != "spd":
        which = "det"
    out = st.fresh()

    def finish(shape_S):
        m = shape_S[-1]
        if which == "solve":
            def ok(sa, sb):
                try:
                    np.linalg.solve(np.ones(shape_S), np.ones(sb))
                except Exception:
                    return False
                return True
            b = st.partner(S, ok, exclude_self=True)
            if b is None or rng.random() < 0.3:
                rhs = (m,) if rng.random() < 0.5 else tuple(shape_S[:-1]) + (int(rng.integers(1, 3)),)
                return Op(out, f"np.linalg.solve({{0}}, {const_expr(rng, rhs)})", (S,), "linalg:solve")
            return Op(out, "np.linalg.solve({0}, {1})", (S, b), "linalg:solve")
        if which == "inv":
            return Op(out, "np.linalg.inv({0})", (S,), "linalg:inv")
        if which == "det":
            return Op(out, "np.linalg.det({0})", (S,), "linalg:det")
        if which == "slogdet":
            form = str(rng.choice(["np.linalg.slogdet({0})[1]", "np.linalg.slogdet({0})[0] * np.linalg.slogdet({0})[1]",
                                   "np.linalg.slogdet({0}).logabsdet"]))
            return Op(out, form, (S,), "linalg:slogdet")
        if which == "cholesky":
            return Op(out, "np.linalg.cholesky({0})", (S,), "linalg:cholesky")
        if which == "eigvalsh":
            return Op(out, "np.linalg.eigvalsh({0})", (S,), "linalg:eigvalsh", "_g_eiggap({0})")
        if which == "svdvals":
            return Op(out, "np.linalg.svd({0}, compute_uv=False)", (S,), "linalg:svdvals", "_g_sv({0}, 'gap')")
        if which == "matrix_power":
            return Op(out, f"np.linalg.matrix_power({{0}}, {int(rng.integers(0, 4))})", (S,), "linalg:matrix_power")
        # norm of any variable
        x = st.pick(lambda v: v.size >= 1)
        nd = len(st.shape(x))
        r = rng.random()
        if nd >= 2 and r < 0.35:
            ordv = rng.choice(["None", "'fro'", "'nuc'", "2"])
            axes = (-2, -1) if nd == 2 and rng.random() < 0.5 else tuple(int(v) for v in rng.permutation(nd)[:2])
            guard = {"'nuc'": "_g_sv(np.moveaxis({0}, " + repr(axes) + ", (-2, -1)), 'min')",
                     "2": "_g_sv(np.moveaxis({0}, " + repr(axes) + ", (-2, -1)), 'gap')"}.get(ordv)
            return Op(out, f"np.linalg.norm({{0}}, ord={ordv}, axis={axes!r})", (x,), "linalg:matnorm", guard)
        ordv = rng.choice([None, None, 2, 1, np.inf])
        axis = None if nd == 0 or rng.random() < 0.4 else int(rng.integers(-nd, nd))
        if nd > 1 and axis is None and ordv is not None:
            ordv = None
        kw = "" if ordv is None else f", ord={'np.inf' if ordv == np.inf else ordv}"
        kw += "" if axis is None else f", axis={axis}"
        kw += ", keepdims=True" if rng.random() < 0.2 else ""
        guard = f"_g_vnorm({{0}}, {'np.inf' if ordv == np.inf else ordv}, {axis})"
        return Op(out, f"np.linalg.norm({{0}}{kw})", (x,), "linalg:norm", guard)
    ops.append(("deferred", finish, S, tag))
    return ops


_WRITE_LOOPS = [  # (template, kind): writes inside a loop (rolling's write-only arrays and their limits)
    ("{out} = np.zeros(%(shape)s)\n_h = {0}[0] * 0.5\nfor _i in range(%(n)d):\n"
     "    _h = np.tanh(_h + {0}[_i])\n    {out}[_i] = _h * 2.0", "inplace:loop_fill"),
    ("{out} = np.ones(%(shape)s)\n_h = {0}[0]\nfor _i in range(%(n)d):\n"
     "    _h = np.sin(_h) * 0.9 + {0}[_i] * 0.1\n    {out}[_i] += _h", "inplace:loop_aug"),
    ("{out} = np.zeros(%(shape)s)\nfor _i in range(%(n)d):\n"
     "    {out}[_i] = np.cos({0}[_i]) + np.sum({out}) * 0.1", "inplace:loop_read"),
    ("{out} = np.zeros(%(shape)s)\n_h = {0}[0]\nfor _i in range(%(n)d):\n"
     "    _h = np.tanh(_h * 1.1 + {0}[_i])\n    {out}[_i %% 2] = _h", "inplace:loop_repeat"),
    ("{out} = np.zeros(%(shape)s)\n_h = {0}[0]\nfor _i in range(%(n)d):\n"
     "    _h = np.tanh(_h * 0.7) + {0}[_i]\n    {out}[%(n)d - 1 - _i] = _h\n    _h = _h + {out}[0] * 0.1",
     "inplace:loop_reversed"),
    ("{out} = np.zeros(%(shape)s)\n{out}[0] = {0}[0] * 0.5\nfor _i in range(1, %(n)d):\n"
     "    {out}[_i] = {out}[_i - 1] + 0.1 * np.sin({out}[_i - 1]) + {0}[_i] * 0.2", "inplace:loop_euler"),
    ("{out} = np.zeros(%(shape)s)\n{out}[0] = {0}[0]\nfor _i in range(1, %(n)d):\n"
     "    {out}[_i] = 1.2 * {out}[_i - 1] - 0.5 * {out}[max(_i - 2, 0)] + 0.1 * np.tanh({0}[_i])",
     "inplace:loop_two_back"),
]


def b_write_loop(st):
    """A Python loop writing into an array (profile "loops"; its own family, so the other profiles
    draw the programs they drew before)."""
    rng = st.rng
    a = st.pick(lambda v: v.ndim >= 1 and 2 <= v.shape[0] <= 8)
    if a is None:
        return None
    tmpl, kind = _WRITE_LOOPS[int(rng.integers(len(_WRITE_LOOPS)))]
    return [Op(st.fresh(), tmpl % {"shape": tuple(st.shape(a)), "n": st.shape(a)[0]}, (a,), kind, None, block=True)]


def b_loop(st):
    rng = st.rng
    a = st.pick()
    sa = st.shape(a)
    r = rng.random()
    K = int(rng.integers(2, 5))
    if r < 0.4:
        b = st.partner(a, lambda x, y: _broadcastable(x, y) and np.broadcast_shapes(x, y) == x)
        body = str(rng.choice(["np.tanh({out} * 0.8 + {1})", "np.sin({out}) * {1} + 0.5 * {out}",
                               "{out} - 0.1 * ({out} - {1}) ** 3"]))
        tmpl = "{out} = {0}\nfor _i in range(%d):\n    {out} = %s" % (K, body)
        return [Op(st.fresh(), tmpl, (a, b), "loop:recurrence", None, block=True)]
    if len(sa) >= 1 and 1 <= sa[0] <= 5:
        n = sa[0]
        if r < 0.7:
            tmpl = ("{out} = {0}[0] * 0.5\nfor _i in range(1, %d):\n    {out} = np.sin({out}) + {0}[_i]" % n)
            return [Op(st.fresh(), tmpl, (a,), "loop:rows", None, block=True)]
        form = str(rng.choice(["np.stack([np.sum({0}[_i] ** 2) for _i in range(%d)])",
                               "np.array([np.sum({0}[_i]) for _i in range(%d)])",
                               "sum({0}[_i] * (_i + 1.0) for _i in range(%d))",
                               "np.array([np.sum({0}), np.mean({0}) * 2.0, 1.5])"]))
        return [Op(st.fresh(), form.replace("%d", str(n)), (a,), "loop:list")]
    return [Op(st.fresh(), "{out} = {0}\nfor _i in range(%d):\n    {out} = 0.5 * {out} + np.cos({out})" % K, (a,),
               "loop:recurrence", None, block=True)]


def b_chain(st):
    """A structural op and, right after, an indexing of its result (like np.diag(v)[::-1])."""
    first = b_struct(st) if st.rng.random() < 0.8 else b_matmul(st)
    if not first:
        return None

    def then(st_):
        last = first[-1].out if isinstance(first[-1], Op) else None
        if last is None or last not in st_.vars or np.ndim(st_.env[last]) == 0:
            return None
        return b_index(st_, last)[0]
    return first + [("then", then)]


# --- in-place writes (autograd cannot run these: the autograd comparison skips them) -----------
def _write_key(st, shape):
    """A concrete key for a write into an array of `shape` (basic, integer lists with repeats,
    masks, mixed), and the shape of the selection it addresses."""
    rng = st.rng
    for _ in range(6):
        mode = str(rng.choice(["basic", "basic", "int", "adv", "mixed", "mask_full", "repeat"]))
        if mode == "int":
            key = ", ".join(str(int(rng.integers(-d, d))) for d in shape[:int(rng.integers(1, len(shape) + 1))])
        elif mode == "repeat":   # repeated positions (x[[1, 1, 3]] += v applies once per position: buffered)
            n = shape[0]
            i = int(rng.integers(-n, n))
            key = str([i, i] + _int_list(rng, n, int(rng.integers(0, 3))))
        else:
            key = _index_key(st, shape, mode)
        try:
            sel = np.empty(shape)[eval(key, {"np": np})] if key != "..." else np.empty(shape)
        except Exception:
            continue
        if 0 < np.size(sel) <= MAX_SIZE:
            return key, np.shape(sel)
    return None, None


def _write_value(st, tshape, exclude=()):
    """An expression (with operand {1} when it reads a variable) of a value that broadcasts to `tshape`."""
    rng = st.rng
    n = math.prod(tshape)
    r = rng.random()
    src = st.pick(lambda v: v.size >= n, exclude=exclude) if r < 0.6 else None
    if src is not None:
        fn = str(rng.choice(["np.sin", "np.tanh", "", "2.0 * ", "np.exp"]))
        flat = f"np.ravel({{1}})[{int(rng.integers(0, np.size(st.value(src)) - n + 1))}:][:{n}]"
        return f"{fn}({flat}).reshape({tuple(tshape)!r})" if fn else f"{flat}.reshape({tuple(tshape)!r})", src
    src = st.pick(lambda v: True, exclude=exclude)
    if src is not None and r < 0.85:
        return str(rng.choice(["np.sum({1}) * 0.5", "np.cos(np.mean({1}))", "np.max({1} * 0.0) + 0.3"])), src
    return const_expr(rng, tshape if rng.random() < 0.6 else ()), None


# what a write goes through: views (the write changes the array) and copies NumPy makes in
# trivial cases (it does not); NumPy decides which, and jitad must agree
WRITE_THROUGH = ["{out}[1:]", "{out}[::-1]", "{out}[..., ::2]", "{out}.T", "{out}.reshape(-1)",
                 "np.swapaxes({out}, 0, -1)", "{out}[None]", "np.ravel({out})", "np.asarray({out})",
                 "np.atleast_1d({out})", "np.real({out})", "np.flip({out})", "np.moveaxis({out}, 0, -1)",
                 "np.split({out}, 1)[0]", "np.expand_dims({out}, 0)", "{out}.squeeze()",
                 "np.conj({out})", "np.positive({out})", "{out} ** 1", "np.concatenate([{out}])", "{out}.conj()",
                 "{out}.astype({out}.dtype, copy=False)", "np.array({out}, copy=None)", "np.copy({out})",
                 "{out}.astype(np.float64)", "np.diff({out}, n=0)", "np.einsum('...->...', {out})",
                 "np.broadcast_arrays({out}, {out})[0]"]


def b_inplace(st):
    rng = st.rng
    a = st.pick(lambda v: v.ndim >= 1 and v.size >= 1)
    if a is None:
        return None
    shape = st.shape(a)
    out = st.fresh()
    which = str(rng.choice(["copy", "copy", "aug", "arg", "view", "loop", "add_at", "out", "alias", "scalar"]))
    if which == "scalar":  # 0-d values: NumPy scalars (immutable, reshaped into new arrays) or 0-d arrays
        zero_d = str(rng.choice(["np.sum({0})", "np.max({0}) * 2.0", "{0}[(0,) * np.ndim({0})]", "np.array(np.mean({0}))",
                                 "np.where(np.sum({0}) > 0, np.sum({0}), 0.5)", "np.copy(np.min({0}))"]))
        form = str(rng.choice(["_s = {z}\n_t = _s\n_s += 0.5\n{{out}} = {{0}} * _t + _s",
                               "_s = {z}\n_w = np.reshape(_s, (1,))\n_w[0] = 0.25\n{{out}} = {{0}} * _s + _w[0]",
                               "_s = {z}\n_w = _s.reshape(1)\n_w *= 3.0\n{{out}} = {{0}} - _s * _w[0]"]))
        return [Op(out, form.format(z=zero_d), (a,), "inplace:scalar", block=True)]
    key, tshape = _write_key(st, shape)
    if key is None:
        return None
    val, src = _write_value(st, tshape)
    args = (a,) if src is None else (a, src)
    if which == "copy":   # z = x.copy(); z[...] = v
        first = str(rng.choice(["{0}.copy()", "np.copy({0})", "np.array({0})", "{0} * 1.0"]))
        tmpl = f"{{out}} = {first}\n{{out}}[{key}] = {val}"
        return [Op(out, tmpl, args, "inplace:copy", block=True)]
    if which == "aug":    # z[idx] += v (repeated positions: once, as NumPy)
        opname = str(rng.choice(["+=", "-=", "*="]))
        tmpl = f"{{out}} = {{0}} + 0.0\n{{out}}[{key}] {opname} {val}"
        return [Op(out, tmpl, args, "inplace:aug", block=True)]
    if which == "arg":    # a write into an existing variable (an input or an intermediate): later uses see it
        tmpl = f"{{0}}[{key}] = {val}\n{{out}} = np.sin({{0}})"
        if src == a:
            return None
        return [Op(out, tmpl, args, "inplace:arg", block=True)]
    if which == "view":   # writes through a view change the array it views
        view = str(rng.choice(WRITE_THROUGH))
        try:
            vshape = eval(view.replace("{out}", "_x"), {"np": np, "_x": np.empty(shape)}).shape
        except Exception:
            return None
        if not all(vshape):
            return None
        vkey, vt = _write_key(st, vshape)
        if vkey is None:
            return None
        vval, vsrc = _write_value(st, vt)
        vargs = (a,) if vsrc is None else (a, vsrc)
        tmpl = (f"{{out}} = np.cos({{0}})\n_w = {view}\n_w[{vkey}] = {vval}\n"
                + ("{out} = {out} + _w.sum() * 0.5" if rng.random() < 0.3 else "{out}[...] = {out} * 2.0"))
        return [Op(out, tmpl, vargs, "inplace:view", block=True)]
    if which == "loop":   # out = np.zeros(n); writes in a loop reading earlier writes
        n = shape[0]
        if n > 6:
            return None
        body = str(rng.choice(["np.sin({0}[_i]) * ({out}[_i - 1] if _i else 1.0)",
                               "{0}[_i] * 0.5 + ({out}[_i - 1] * 0.7 if _i else 0.0)",
                               "np.tanh({0}[_i] + {out}[max(_i - 1, 0)])"]))
        tmpl = (f"{{out}} = np.zeros({shape!r})\nfor _i in range({n}):\n    {{out}}[_i] = {body}")
        return [Op(out, tmpl, (a,), "inplace:loop", block=True)]
    if which == "add_at":  # np.add.at / np.subtract.at with repeated indices (unbuffered: repeats add up)
        n = shape[0]
        idx = _int_list(rng, n, int(rng.integers(2, 6)))
        idx[-1] = idx[0]
        m = len(idx)
        vshape = (m,) + tuple(shape[1:])
        vval, vsrc = _write_value(st, vshape)
        ufunc = str(rng.choice(["add", "add", "subtract"]))
        start = str(rng.choice(["np.zeros({shape!r})".format(shape=shape), "{0} * 1.0"]))
        vargs = (a,) if vsrc is None else (a, vsrc)
        tmpl = f"{{out}} = {start}\nnp.{ufunc}.at({{out}}, {idx!r}, {vval})"
        return [Op(out, tmpl, vargs, "inplace:add_at", block=True)]
    if which == "out":    # ufuncs with out=
        b = st.partner(a, lambda x, y: _broadcastable(x, y) and np.broadcast_shapes(x, y) == x)
        form = str(rng.choice(["np.multiply({0}, {1}, out={out})", "np.add({0}, {1}, out={out})",
                               "np.sin({0}, out={out})", "np.exp({1} * 0.5, out={out})",
                               "np.subtract({1}, {0}, out={out}); {out} += 1.0"]))
        into = str(rng.choice(["np.empty({shape!r})".format(shape=shape), "np.zeros_like({0})"]))
        tmpl = f"{{out}} = {into}\n" + form.replace("; ", "\n")
        if rng.random() < 0.3 and shape[0] >= 2:   # into a view of a copy
            tmpl = (f"{{out}} = {{0}} * 1.0\nnp.tanh({{1}}[1:] if np.ndim({{1}}) == {len(shape)} "
                    f"and np.shape({{1}})[0] == {shape[0]} else {{out}}[1:], out={{out}}[1:])")
        return [Op(out, tmpl, (a, b), "inplace:out", block=True)]
    # alias: z = y; z += v changes y too
    b = st.partner(a, lambda x, y: _broadcastable(x, y) and np.broadcast_shapes(x, y) == x)
    tmpl = "_y = {0} * 1.0\n_z = _y\n_z += np.sin({1})\n{out} = _y + _z"
    return [Op(out, tmpl, (a, b), "inplace:alias", block=True)]


# --- NumPy functions of numpy_extra.py -----------------------------------------------------------
def _g_knots(x, xp):
    """Distance of x from the knots xp (the kinks of np.interp)."""
    x = np.ravel(np.asarray(x, dtype=float))
    xp = np.ravel(np.asarray(xp, dtype=float))
    if x.size == 0 or xp.size == 0:
        return np.inf
    return float(np.min(np.abs(x[:, None] - xp[None, :])))


GUARD_HELPERS["_g_knots"] = _g_knots


def b_extra(st):
    rng = st.rng
    a = st.pick()
    shape = st.shape(a)
    nd = len(shape)
    size = math.prod(shape)
    out = st.fresh()
    which = str(rng.choice(["linspace", "logspace", "geomspace", "gradient", "interp", "quantile", "nan",
                            "cov", "corrcoef", "convolve", "einsum", "r_", "c_", "cumprod", "trapezoid",
                            "select", "polyval", "vander", "ediff1d", "insert", "cumulative"]))
    ax = int(rng.integers(-nd, nd)) if nd else None
    if which == "linspace":
        num = int(rng.integers(2, 6))
        ep = "" if rng.random() < 0.6 else ", endpoint=False"
        if nd == 0 or rng.random() < 0.5:
            s0 = "np.sum({0}) * 0.3" if nd else "{0}"
            return [Op(out, f"np.linspace({s0}, 1.5, {num}{ep})", (a,), "extra:linspace")]
        if size * num > MAX_SIZE:
            return None
        axis = int(rng.integers(-nd - 1, nd + 1))
        return [Op(out, f"np.linspace({{0}}, 2.0 * {{0}} + 1.0, {num}{ep}, axis={axis})", (a,), "extra:linspace")]
    if which == "logspace":
        base = str(rng.choice(["", ", base=2.0"]))
        return [Op(out, f"np.logspace(0.3 * np.tanh({{0}}), 0.5, {int(rng.integers(2, 5))}{base})", (a,),
                   "extra:logspace")]
    if which == "geomspace":
        return [Op(out, f"np.geomspace({{0}} * {{0}} + 0.5, 3.0, {int(rng.integers(2, 5))})", (a,),
                   "extra:geomspace")]
    if which == "gradient":
        if nd == 0 or shape[ax] < 2:
            return None
        eo = ", edge_order=2" if shape[ax] >= 3 and rng.random() < 0.4 else ""
        sp = str(rng.choice(["", ", 0.5", f", np.linspace(0.0, 2.0, {shape[ax]}) ** 1.5"]))
        if nd == 1 and rng.random() < 0.5:
            return [Op(out, f"np.gradient({{0}}{sp}{eo})", (a,), "extra:gradient")]
        return [Op(out, f"np.gradient({{0}}{sp}, axis={ax}{eo})", (a,), "extra:gradient")]
    if which == "interp":
        k = int(rng.integers(3, 7))
        xp = f"np.linspace(-1.2, 1.3, {k})"
        fp_var = st.pick(lambda v: v.shape == (k,))
        if fp_var is not None and rng.random() < 0.5:   # differentiable in fp (the points are constants)
            return [Op(out, f"np.interp({const_expr(rng, (3,))}, {xp}, {{0}})", (fp_var,), "extra:interp")]
        lr = ", left=-0.5, right=0.25" if rng.random() < 0.3 else ""
        return [Op(out, f"np.interp({{0}}, {xp}, np.cos({xp}) * 1.3{lr})", (a,), "extra:interp",
                   f"min(_g_knots({{0}}, {xp}), _g_knots({{0}}, [-1.2, 1.3]))")]
    if which == "quantile":
        if nd == 0:
            return None
        fn = str(rng.choice(["quantile", "percentile"]))
        q = rng.choice([0.3, 0.5, 0.85, "[0.2, 0.7]"])
        if fn == "percentile":
            q = rng.choice([30.0, 50.0, 85.0, "[20.0, 70.0]"])
        axis = None if rng.random() < 0.3 else ax
        method = str(rng.choice(["", "", ", method='lower'", ", method='higher'", ", method='midpoint'",
                                 ", method='nearest'"]))
        keep = ", keepdims=True" if rng.random() < 0.2 else ""
        return [Op(out, f"np.{fn}({{0}}, {q}, axis={axis}{method}{keep})", (a,), f"extra:{fn}",
                   f"_g_sortgap({{0}}, {axis})")]
    if which == "nan":
        if nd == 0 or size < 2:
            return None
        fn = str(rng.choice(["nansum", "nanmean", "nanvar", "nanstd", "nanmax", "nanmin", "nanprod", "nancumsum",
                             "nanmedian"]))
        mask = f"np.arange({size}).reshape{shape} % {int(rng.integers(3, 5))} == 1"
        axis = None if rng.random() < 0.4 else ax
        kw = "" if axis is None else f", axis={axis}"
        guard = None
        masked = f"np.where({mask}, 0.0, {{0}})"
        if fn in ("nanmax", "nanmin"):
            guard = f"_g_gap(np.where({mask}, np.nan, {{0}})[~({mask})], None)" if axis is None else None
            if axis is not None:
                return None
        if fn == "nanmedian":
            if axis is not None:
                return None
            guard = f"_g_sortgap({{0}}[~({mask})], None)"
        if fn == "nanstd":
            guard = f"_g_std({masked}, {axis!r})"
        return [Op(out, f"np.{fn}(np.where({mask}, np.nan, {{0}}){kw})", (a,), f"extra:{fn}", guard)]
    if which in ("cov", "corrcoef"):
        if nd != 2 and nd != 1:
            return None
        kw = str(rng.choice(["", ", rowvar=False", ", bias=True", ", ddof=0"] if which == "cov" else
                            ["", ", rowvar=False"]))
        guard = None
        if which == "corrcoef":
            ax_std = None if nd == 1 else (1 if "rowvar" not in kw else 0)
            guard = f"_g_std({{0}}, {ax_std!r})"
        n_obs = shape[-1] if "rowvar" not in kw else shape[0]
        if n_obs < 2:
            return None
        return [Op(out, f"np.{which}({{0}}{kw})", (a,), f"extra:{which}", guard)]
    if which == "convolve":
        if nd != 1:
            return None
        b = st.pick(lambda v: v.ndim == 1 and v.size >= 1)
        mode = str(rng.choice(["", ", 'full'", ", 'same'", ", 'valid'"]))
        fn = str(rng.choice(["convolve", "correlate"]))
        if b is None or rng.random() < 0.3:
            return [Op(out, f"np.{fn}({{0}}, {const_expr(rng, (int(rng.integers(1, 4)),))}{mode})", (a,),
                       f"extra:{fn}")]
        return [Op(out, f"np.{fn}({{0}}, {{1}}{mode})", (a, b), f"extra:{fn}")]
    if which == "einsum":
        if nd == 0:
            return None
        r = rng.random()
        if r < 0.35:
            b = st.partner(a, _broadcastable)
            return [Op(out, 'np.einsum("...i,...i->...", {0}, {1})', (a, b), "extra:einsum")]
        if r < 0.55:
            return [Op(out, 'np.einsum("...i->...", {0})' if rng.random() < 0.5 else 'np.einsum("i...->...", {0})',
                       (a,), "extra:einsum")]
        if r < 0.8 and nd == 2:
            m, n = shape
            k = int(rng.integers(1, 4))
            c = st.partner(a, lambda x, y: y in ((k,), (1,)))
            third = "{1}" if c is not None else const_expr(rng, (k,))
            return [Op(out, f'np.einsum("ij,jk,k->i", {{0}}, {const_expr(rng, (n, k))}, {third})',
                       (a, c) if c is not None else (a,), "extra:einsum3")]
        if nd == 2:   # size-1 broadcasting of a named axis
            b = st.partner(a, lambda x, y: len(y) == 2 and (y[0] in (1, x[0])) and (y[1] in (1, x[1])))
            return [Op(out, 'np.einsum("ij,ij->i", {0}, {1})', (a, b), "extra:einsum")]
        return None
    if which in ("r_", "c_"):
        b = st.pick(lambda v: v.ndim == 1) if nd == 1 else None
        if nd != 1:
            return [Op(out, "np.r_[np.ravel({0}), 0.5, np.ravel({0})[:2] * 2.0]", (a,), "extra:r_")]
        if which == "c_":
            bb = st.partner(a, lambda x, y: y == x)
            return [Op(out, "np.c_[{0}, np.sin({1})]", (a, bb), "extra:c_")]
        return [Op(out, "np.r_[{0}, -0.5, np.cos({1})]" if b else "np.r_[{0}, 1.5]", (a, b) if b else (a,),
                   "extra:r_")]
    if which == "cumprod":
        axis = None if nd == 0 or rng.random() < 0.3 else ax
        if rng.random() < 0.3:
            return [Op(out, "{0}.cumprod(" + ("" if axis is None else f"axis={axis}") + ")", (a,), "extra:cumprod")]
        return [Op(out, "np.cumprod({0}" + ("" if axis is None else f", axis={axis}") + ")", (a,), "extra:cumprod")]
    if which == "trapezoid":
        if nd == 0:
            return None
        kw = str(rng.choice(["", ", dx=0.5", f", x=np.linspace(0.0, 1.0, {shape[ax]}) ** 2"]))
        return [Op(out, f"np.trapezoid({{0}}{kw}, axis={ax})", (a,), "extra:trapezoid")]
    if which == "select":
        return [Op(out, "np.select([{0} > 0.2, {0} < -0.3], [{0} ** 2, np.sin({0})], default=0.5)", (a,),
                   "extra:select", "min(_g_absmin({0} - 0.2), _g_absmin({0} + 0.3))")]
    if which == "polyval":
        p = st.pick(lambda v: v.ndim == 1 and 1 <= v.size <= 4)
        if p is None:
            return [Op(out, "np.polyval([0.5, -1.0, 0.3], {0})", (a,), "extra:polyval")]
        return [Op(out, "np.polyval({1}, {0})", (a, p), "extra:polyval")]
    if which == "vander":
        if nd != 1 or size > 6:
            return None
        return [Op(out, f"np.vander({{0}}, {int(rng.integers(1, 4))}" + (", increasing=True)" if rng.random() < 0.5
                                                                         else ")"), (a,), "extra:vander")]
    if which == "ediff1d":
        return [Op(out, "np.ediff1d({0}" + (", to_begin=0.5)" if rng.random() < 0.4 else ")"), (a,), "extra:ediff1d")]
    if which == "insert":
        if nd == 0:
            return None
        pos = int(rng.integers(0, shape[0] + 1))
        return [Op(out, f"np.insert({{0}}, {pos}, 0.75, axis=0)", (a,), "extra:insert")]
    axis = ax if nd else None
    if nd > 1 and axis is None:
        return None
    fn = str(rng.choice(["cumulative_sum", "cumulative_prod"]))
    if nd == 0:
        return None
    return [Op(out, f"np.{fn}({{0}}, axis={axis}, include_initial={bool(rng.random() < 0.5)})", (a,),
               f"extra:{fn}")]


# --- scipy.special and scipy.stats (arguments kept inside each function's domain) ----------------
SPECIAL_UNARY = [
    "scipy.special.expit({0})", "scipy.special.log_expit({0})", "scipy.special.logit(0.45 * np.tanh({0}) + 0.5)",
    "scipy.special.gammaln({0} * {0} + 0.5)", "scipy.special.digamma({0} * {0} + 0.5)", "scipy.special.erf({0})",
    "scipy.special.erfc({0})", "scipy.special.ndtr({0})", "scipy.special.log_ndtr(2.0 * {0})",
    "scipy.special.ndtri(0.45 * np.tanh({0}) + 0.5)", "scipy.special.erfinv(0.9 * np.tanh({0}))",
    "scipy.special.gamma(0.5 * np.tanh({0}) + 1.5)", "scipy.special.entr({0} * {0} + 0.1)",
    "scipy.special.i0({0})", "scipy.special.i1({0})", "scipy.special.i0e({0})", "scipy.special.i1e({0})",
    "scipy.special.erfcinv(0.9 * np.tanh({0}) + 1.0)", "scipy.special.polygamma(1, {0} * {0} + 0.5)",
    "scipy.special.multigammaln({0} * {0} + 2.0, 2)",
    "scipy.stats.norm.logpdf({0})", "scipy.stats.norm.cdf({0})", "scipy.stats.norm.logcdf({0})",
    "scipy.stats.norm.sf({0})", "scipy.stats.norm.pdf({0}, 0.3, 1.7)",
    "scipy.stats.norm.ppf(0.45 * np.tanh({0}) + 0.5)",
    "scipy.stats.t.logpdf({0}, 3.0)", "scipy.stats.t.pdf({0}, df=2.5, loc=0.2)",
    "scipy.stats.gamma.logpdf({0} * {0} + 0.1, 2.0)", "scipy.stats.expon.logpdf({0} * {0} + 0.1, scale=1.5)",
    "scipy.stats.beta.logpdf(0.45 * np.tanh({0}) + 0.5, 2.0, 3.0)", "scipy.stats.chi2.logpdf({0} * {0} + 0.2, 3.0)",
    "scipy.stats.poisson.logpmf(3.0, {0} * {0} + 0.5)",
]
SPECIAL_BINARY = [
    "scipy.special.xlogy({0}, {1} * {1} + 0.5)", "scipy.special.xlog1py({0}, {1} * {1})",
    "scipy.special.betaln({0} * {0} + 0.5, {1} * {1} + 0.5)",
    "scipy.stats.norm.logpdf({0}, loc={1}, scale=1.3)", "scipy.stats.norm.logpdf({0}, {1}, {1} * {1} + 0.5)",
    "scipy.stats.norm.cdf({0}, scale={1} * {1} + 0.5)", "scipy.stats.t.logpdf({0}, df={1} * {1} + 1.0)",
    "scipy.stats.t.logpdf({0}, 4.0, loc={1}, scale=0.7)", "scipy.stats.gamma.logpdf({0} * {0} + 0.1, {1} * {1} + 1.0)",
    "scipy.stats.beta.logpdf(0.45 * np.tanh({0}) + 0.5, {1} * {1} + 1.0, 2.0)",
]


def b_special(st):
    rng = st.rng
    a = st.pick()
    nd = len(st.shape(a))
    out = st.fresh()
    r = rng.random()
    if r < 0.4:
        tmpl = SPECIAL_UNARY[int(rng.integers(len(SPECIAL_UNARY)))]
        return [Op(out, tmpl, (a,), "special:" + tmpl.split("(")[0].replace("scipy.", ""))]
    if r < 0.6:
        tmpl = SPECIAL_BINARY[int(rng.integers(len(SPECIAL_BINARY)))]
        b = st.partner(a, _broadcastable)
        return [Op(out, tmpl, (a, b), "special:" + tmpl.split("(")[0].replace("scipy.", ""))]
    if r < 0.75 and rng.random() < 0.5:  # laplace: a kink at loc
        return [Op(out, "scipy.stats.laplace.logpdf({0}, 0.1, 0.8)", (a,), "special:stats.laplace.logpdf",
                   "_g_absmin({0} - 0.1)")]
    fn = str(rng.choice(["logsumexp", "logsumexp", "softmax", "log_softmax"]))
    axis = _rand_axis(rng, nd) if fn == "logsumexp" else (None if nd == 0 or rng.random() < 0.3 else
                                                           int(rng.integers(-nd, nd)))
    kw = "" if axis is None else f", axis={axis!r}"
    if fn == "logsumexp":
        if rng.random() < 0.3:
            kw += ", keepdims=True"
        if rng.random() < 0.3:   # weights b: a positive variable, or a positive constant
            b = st.partner(a, lambda x, y: _broadcastable(x, y) and np.broadcast_shapes(x, y) == x)
            if b is not None and rng.random() < 0.6:
                return [Op(out, f"scipy.special.logsumexp({{0}}{kw}, b={{1}} * {{1}} + 0.2)", (a, b),
                           "special:logsumexp/b")]
            shape = st.shape(a)
            const = f"np.linspace(0.2, 1.5, {math.prod(shape)})" + (f".reshape{shape}" if len(shape) > 1 else "")
            kw += f", b={const}" if shape else ", b=0.7"
    return [Op(out, f"scipy.special.{fn}({{0}}{kw})", (a,), f"special:{fn}")]


# --- Python control flow on traced values (jitad.frontend.guards) ------------------------------
_BRANCH_TESTS = ["np.sum({0})", "np.max({0})", "np.mean(np.sin({0}))", "np.min({0} * {0})", "np.sum({0} * {1})"]
_BRANCH_ARMS = ["np.tanh({0}) * {1}", "{0} ** 2 + {1}", "np.sin({0} + {1})", "{0} * 0.5 - {1}",
                "np.exp(-{0} * {0}) * {1}"]
_WHILE_BODIES = {"damp": "{out} * 0.7 + 0.1 * np.sin({1})", "cubic": "{out} - 0.2 * {out} ** 3 + 0.05 * {1}"}


def _g_while(x, b, threshold, body, limit):
    """The distance of each test of the fuzzer's `while` loop from its threshold (smallest)."""
    step = {"damp": lambda o: o * 0.7 + 0.1 * np.sin(b), "cubic": lambda o: o - 0.2 * o ** 3 + 0.05 * b}[body]
    out, k, margin = x, 0, np.inf
    while True:
        test = float(np.sum(np.abs(out)))
        margin = min(margin, abs(test - threshold))
        if not (test > threshold and k < limit):
            return margin
        out, k = step(out), k + 1


GUARD_HELPERS["_g_while"] = _g_while


def b_branch(st):
    """`if`/`elif`/`while` on traced values, `and`/`or`, int() of a traced count: both arms are
    valid NumPy, and the tests stay MARGIN away from their thresholds (so finite differences do
    not cross them; the recall at inputs * 1.01 may take the other path, which jitad must trace)."""
    rng = st.rng
    a = st.pick()
    b = st.partner(a, lambda x, y: _broadcastable(x, y) and np.broadcast_shapes(x, y) == x)
    if a is None or b is None:
        return None
    env = dict(st.env)
    r = rng.random()

    def value_of(text):
        with np.errstate(all="ignore"):
            return float(eval(text.replace("{0}", a).replace("{1}", b), env))

    def threshold(test):
        v = value_of(test)
        return round(v + float(rng.choice([-1, 1])) * float(rng.uniform(0.05, 0.5)) * max(1.0, abs(v)), 3)
    if r < 0.55:
        test, test2 = (str(t) for t in rng.choice(_BRANCH_TESTS, 2))
        c1, c2 = threshold(test), threshold(test2)
        arm1, arm2, arm3 = (str(t) for t in rng.choice(_BRANCH_ARMS, 3))
        join = str(rng.choice(["and", "or"]))
        if rng.random() < 0.5:
            tmpl = f"if {test} > {c1}:\n    {{out}} = {arm1}\nelse:\n    {{out}} = {arm2}"
            guard = f"abs({test} - {c1})"
        else:
            tmpl = (f"if {test} > {c1} {join} {test2} < {c2}:\n    {{out}} = {arm1}\n"
                    f"elif {test2} > {c2}:\n    {{out}} = {arm2}\nelse:\n    {{out}} = {arm3}")
            guard = f"min(abs({test} - {c1}), abs({test2} - {c2}))"
        return [Op(st.fresh(), tmpl, (a, b), "control:if", guard, block=True)]
    if r < 0.85:
        body = str(rng.choice(list(_WHILE_BODIES)))
        limit = int(rng.integers(2, 7))
        start = value_of("np.sum(np.abs({0}))")
        c = round(start * float(rng.uniform(0.2, 0.9)), 3)
        tmpl = (f"{{out}} = {{0}}\n_k = 0\nwhile np.sum(np.abs({{out}})) > {c} and _k < {limit}:\n"
                f"    {{out}} = {_WHILE_BODIES[body]}\n    _k += 1")
        return [Op(st.fresh(), tmpl, (a, b), "control:while", f"_g_while({{0}}, {{1}}, {c}, {body!r}, {limit})",
                   block=True)]
    # int() of a traced count: a piecewise-constant factor (derivative zero)
    return [Op(st.fresh(), "{0} * float(int(np.sum({1} > 0)) + 1)", (a, b), "control:int",
               "np.min(np.abs({1}))")]


FAMILIES = [
    (b_unary, 14), (b_binary, 16), (b_reduce, 10), (b_reduce_more, 2), (b_index, 16), (b_struct, 22),
    (b_matmul, 8), (b_linalg, 5), (b_loop, 4), (b_where_mask, 2), (b_chain, 8),
]
# index maps only (slices, reshapes, transposes, diag, flips, ...): cheap to compile, and what
# the code generator's index arithmetic is made of
STRUCTURAL = [(b_index, 20), (b_struct, 25), (b_chain, 20), (b_binary, 5), (b_unary, 3), (b_reduce, 4)]
# the features of session 3: in-place writes, numpy_extra's functions, scipy.special/stats
NEW = [(b_inplace, 14), (b_extra, 12), (b_special, 10), (b_unary, 4), (b_binary, 6), (b_reduce, 3), (b_index, 4),
       (b_struct, 4)]
# everything ("long"): the old families and the new ones
LONG = FAMILIES + [(b_inplace, 10), (b_extra, 8), (b_special, 7), (b_branch, 6)]
# session 4: Python control flow on traced values
CONTROL = [(b_branch, 14), (b_unary, 4), (b_binary, 6), (b_reduce, 3), (b_index, 3), (b_loop, 2), (b_inplace, 2)]
# session 4: Python loops (rolled into scans) with recurrences and writes
LOOPS = [(b_loop, 10), (b_write_loop, 8), (b_branch, 3), (b_unary, 4), (b_binary, 5), (b_reduce, 3), (b_index, 3),
         (b_inplace, 3)]
PROFILES = {"full": FAMILIES, "structural": STRUCTURAL, "new": NEW, "long": LONG, "control": CONTROL,
            "loops": LOOPS}


# --- invalid ops: NumPy raises, so jitad must raise too ----------------------------------------
def b_error(st):
    rng = st.rng
    a = st.pick()
    shape = st.shape(a)
    nd = len(shape)
    bad = nd + int(rng.integers(0, 2))
    bad = bad if rng.random() < 0.5 else -bad - 1
    cands = [
        (f"np.diff({{0}}, axis={bad})", "error:diff_axis"), (f"np.cumsum({{0}}, axis={bad})", "error:cumsum_axis"),
        (f"np.sort({{0}}, axis={bad})", "error:sort_axis"), (f"np.sum({{0}}, axis={bad})", "error:sum_axis"),
        (f"np.max({{0}}, axis={bad})", "error:max_axis"), (f"np.mean({{0}}, axis=({0 if nd else bad}, "
                                                           f"{0 if nd else bad}))", "error:dup_axis"),
        (f"np.flip({{0}}, axis={bad})", "error:flip_axis"), (f"np.roll({{0}}, 1, axis={bad})", "error:roll_axis"),
        (f"np.expand_dims({{0}}, {bad + (1 if bad > 0 else -1)})", "error:expand_dims_axis"),
        (f"np.swapaxes({{0}}, 0, {bad})", "error:swapaxes_axis"),
        (f"np.moveaxis({{0}}, {bad}, 0)", "error:moveaxis_axis"),
        (f"np.repeat({{0}}, 2, axis={bad})", "error:repeat_axis"),
        (f"np.concatenate([{{0}}, {{0}}], axis={bad})", "error:concat_axis"),
        (f"np.stack([{{0}}, {{0}}], axis={bad + (1 if bad > 0 else -1)})", "error:stack_axis"),
        (f"np.cumsum({{0}}, axis={bad})", "error:cumsum_axis"),
        (f"np.var({{0}}, axis={bad})", "error:var_axis"),
        (f"np.diagonal({{0}}, 0, 0, {bad})", "error:diagonal_axis"),
        (f"np.reshape({{0}}, ({math.prod(shape) + 1},))", "error:reshape_size"),
        (f"np.transpose({{0}}, {tuple(range(nd + 1))!r})", "error:transpose_perm"),
        (f"np.squeeze({{0}}, axis={[d for d in range(nd) if shape[d] != 1][0] if any(d != 1 for d in shape) else bad})",
         "error:squeeze_axis"),
        ("{0}[" + ", ".join([":"] * max(nd - 1, 0) + [str(shape[-1] if nd else 0)]) + "]", "error:index_oob"),
        ("{0}[" + ", ".join([":"] * max(nd - 1, 0) + [f"[0, {-(shape[-1] if nd else 0) - 1}]"]) + "]",
         "error:index_array_oob"),
        ("{0}[" + ", ".join(["0"] * (nd + 1)) + "]", "error:too_many_indices"),
        ("{0} + " + f"np.ones({(shape[-1] + 1 if nd else 2,) if True else ()})", "error:broadcast"),
        ("{0} @ " + f"np.ones({(shape[-1] + 1 if nd else 2, 2)})", "error:matmul_shape"),
        ("np.linalg.inv({0})", "error:inv_nonsquare"),
        (f"np.broadcast_to({{0}}, {(shape[-1] + 1 if nd else 0,) + shape[1:] if nd else (0,)})", "error:broadcast_to"),
        ("{0}[np.array([True, False, True, True, False, True, True])]", "error:mask_shape"),
        (f"np.einsum('i,i->', np.ravel({{0}}), np.ones({math.prod(shape) + 1}))", "error:einsum_shape"),
        ("np.diff({0}, axis=0)" if nd == 0 else f"np.cumsum({{0}}, axis={nd})", "error:axis_0d"),
        (f"np.linalg.solve(np.eye(3), {{0}}[..., None] * np.ones({(1, 4)}))" if nd else "np.linalg.solve({0}, {0})",
         "error:solve_shape"),
    ]
    tmpl, kind = cands[int(rng.integers(len(cands)))]
    return [Op(st.fresh(), tmpl, (a,), kind)]


def make_inputs(rng, dtype="float64"):
    nd = int(rng.choice([0, 1, 1, 2, 2, 2, 3, 3]))
    base = []
    for _ in range(nd):
        base.append(int(rng.choice([1, 2, 3, 3, 4, 4, 5])))
    while math.prod(base) > MAX_INPUT_SIZE:
        base[int(np.argmax(base))] -= 1
    if nd >= 2 and rng.random() < 0.4:
        base[-1] = base[-2]
    n_in = int(rng.choice([1, 1, 2, 2, 2, 3]))
    inputs, values = [], {}
    for i in range(n_in):
        r = rng.random()
        if i == 0 or r < 0.35:
            shape = tuple(base)
        elif r < 0.5:
            shape = ()
        elif r < 0.7:
            shape = tuple(base[int(rng.integers(0, len(base) + 1)):])
        elif r < 0.85:
            shape = tuple(1 if rng.random() < 0.5 else d for d in base)
        else:
            shape = tuple(int(rng.integers(1, 5)) for _ in range(int(rng.integers(1, 3))))
        name = f"x{i}"
        v = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 1.3, size=shape)
        if shape == () and rng.random() < 0.6 and dtype == "float64":
            values[name] = float(v)
        else:
            values[name] = np.asarray(v, dtype=dtype)
        inputs.append(name)
    return inputs, values


def _apply(st, ops):
    """Run `ops` on the state (all or none). Returns the list of Op objects applied."""
    applied = []
    saved_env = {k: _copy(v) for k, v in st.env.items()}
    try:
        for item in ops:
            if isinstance(item, tuple) and item[0] == "deferred":
                _, finish, S, tag = item
                op = finish(np.shape(st.env[S]))
                if op is None:
                    raise Reject("deferred op gave up")
            elif isinstance(item, tuple) and item[0] == "then":
                op = item[1](st)
                if op is None:
                    raise Reject("chained op gave up")
            else:
                op = item
            value = exec_op(op, st.env, guards=True)
            _check_value(value, st.program.dtype, st.rng)
            if op.block:
                for name in op.args:
                    _check_written(st.env.get(name))
            applied.append(op)
            st.vars.append(op.out)
            if op.kind in ("linalg:spd",):
                st.tags[op.out] = "spd"
            elif op.kind == "linalg:diagdom":
                st.tags[op.out] = "wc"
    except Reject:
        st.env = saved_env
        for op in applied:
            st.vars.remove(op.out)
            st.tags.pop(op.out, None)
        raise
    return applied


def generate(seed, error=False, dtype=None, n_ops=None, profile="full"):
    """A random valid program from `seed` (deterministic). error=True appends an op NumPy rejects."""
    rng = np.random.default_rng([seed, 7])
    if dtype is None:
        dtype = "float32" if rng.random() < 0.12 else "float64"
    for _ in range(50):
        inputs, values = make_inputs(rng, dtype)
        program = Program(inputs, values, [], [], dtype=dtype, seed=seed)
        st = State(rng, program)
        target = int(rng.integers(2, 9)) if n_ops is None else n_ops
        fams = [f for f, _ in PROFILES[profile]]
        weights = np.array([w for _, w in PROFILES[profile]], dtype=float)
        attempts = 0
        while len(program.ops) < target and attempts < 40 * target:
            attempts += 1
            fam = fams[int(rng.choice(len(fams), p=weights / weights.sum()))]
            try:
                ops = fam(st)
                if not ops:
                    continue
                program.ops += _apply(st, ops)
            except Reject:
                continue
            except (StopIteration, ValueError, IndexError, TypeError, ZeroDivisionError):
                continue
        if not program.ops:
            continue
        used = {a for op in program.ops for a in op.args}
        outs = [op.out for op in program.ops if op.out not in used]
        program.outputs = outs[-3:]
        r = rng.random()
        if r < 0.06:   # an input handed straight back (jitad must not return the input object itself)
            program.outputs.append(program.inputs[int(rng.integers(len(program.inputs)))])
        elif r < 0.1:  # the same value twice
            program.outputs.append(program.outputs[0])
        if error:
            for _ in range(30):
                try:
                    (op,) = b_error(st)
                except (IndexError, ValueError):
                    continue
                cand = program.copy(ops=program.ops + [op], outputs=[op.out], expect_error=True)
                if numpy_raises(cand) is not None and numpy_raises(program) is None:
                    return cand
            continue
        try:
            validate(program)
        except Reject:
            continue
        return program
    raise RuntimeError(f"could not generate a program from seed {seed}")


def merge(programs):
    """One program computing all of `programs` side by side (inputs and variables renamed):
    a batch that fails only as a whole becomes a single program the shrinker can work on."""
    inputs, values, ops, outputs = [], {}, [], []
    n_in = n_v = 0
    for p in programs:
        names = {}
        for name in p.inputs:
            names[name] = f"x{n_in}"
            n_in += 1
            inputs.append(names[name])
            values[names[name]] = p.values[name]
        for op in p.ops:
            names[op.out] = f"v{n_v}"
            n_v += 1
            ops.append(Op(names[op.out], op.template, tuple(names[a] for a in op.args), op.kind, op.guard, op.block))
        outputs += [names[o] for o in p.outputs]
    dtype = "float32" if any(p.dtype == "float32" for p in programs) else "float64"
    return Program(inputs, values, ops, outputs, dtype=dtype, seed=programs[0].seed)


def prune(program):
    """Drop ops that no output depends on, and inputs no op uses (keeps at least one input)."""
    needed = set(program.outputs)
    keep = []
    for op in reversed(program.ops):
        if op.out in needed:
            keep.append(op)
            needed.update(op.args)
    keep.reverse()
    inputs = [n for n in program.inputs if n in needed] or program.inputs[:1]
    return program.copy(ops=keep, inputs=inputs, values={n: program.values[n] for n in inputs})


# --- issue 11's functions and the rest of the coverage table (profiles "new" and "long") ---------
# Domain maps of a real operand: a probability, a bounded positive value, a value above 1.
_P = "(0.45 * np.tanh({0}) + 0.5)"        # (0.05, 0.95)
_POS = "(0.8 * np.tanh({0}) + 1.2)"       # (0.4, 2.0)
_P1 = _P.replace("{0}", "{1}")
_POS1 = _POS.replace("{0}", "{1}")
_SS = "scipy.special."

RECENT_SPECIAL_UNARY = [  # (template, guard)
    (f"{_SS}betaincinv(2.0, 3.0, {_P})", None), (f"{_SS}betainccinv(1.5, 2.5, {_P})", None),
    (f"{_SS}betainc(2.0, 3.0, {_P})", None), (f"{_SS}fdtri(3.0, 5.0, {_P})", None),
    (f"{_SS}zeta(3.0, {_POS})", None), (f"{_SS}zeta(2.5, {_POS} + 0.5)", None),
    (f"{_SS}poch({_POS}, 1.5)", None), (f"{_SS}poch(2.0, 0.6 * np.tanh({{0}}))", None),
    (f"{_SS}spence({_POS})", None), (f"{_SS}ellipk(0.9 * np.tanh({{0}}))", None),
    (f"{_SS}ellipe(0.9 * np.tanh({{0}}))", None), (f"{_SS}sici({{0}})[0]", None), (f"{_SS}sici({_POS})[1]", None),
    (f"{_SS}fresnel(1.5 * np.tanh({{0}}))[0]", None), (f"{_SS}fresnel(1.5 * np.tanh({{0}}))[1]", None),
    (f"{_SS}dawsn({{0}})", None), (f"{_SS}owens_t({{0}}, 0.7)", None), (f"{_SS}owens_t(0.4, {{0}})", None),
    (f"{_SS}huber(0.5, {{0}})", "_g_absmin(np.abs({0}) - 0.5)"), (f"{_SS}pseudo_huber(0.7, {{0}})", None),
    (f"{_SS}erfcx(np.tanh({{0}}))", None), (f"{_SS}exp1({_POS})", None), (f"{_SS}expi({_POS})", None),
    (f"{_SS}expi(-{_POS})", None), (f"{_SS}expn(2, {_POS})", None), (f"{_SS}exp10(0.5 * np.tanh({{0}}))", None),
    (f"{_SS}exp2(np.tanh({{0}}))", None), (f"{_SS}expm1(np.tanh({{0}}))", None), (f"{_SS}log1p({{0}} * {{0}})", None),
    (f"{_SS}cbrt({{0}})", "_g_absmin({0})"), (f"{_SS}gammainc(2.0, {_POS})", None),
    (f"{_SS}gammaincc(1.5, {_POS})", None), (f"{_SS}gammaincinv(2.0, {_P})", None),
    (f"{_SS}gammainccinv(1.5, {_P})", None), (f"{_SS}binom({_POS} + 3.0, 2.0)", None),
    (f"{_SS}binom(5.0, {_POS})", None), (f"{_SS}comb({_POS} + 3.0, 2.0)", None), (f"{_SS}factorial({_POS})", None),
    (f"{_SS}gammasgn({{0}}) * {{0}}", "min(_g_frac({0}), _g_absmin({0}))"), (f"{_SS}rgamma(2.0 * np.tanh({{0}}))", None),
    (f"{_SS}loggamma({_POS})", None), (f"{_SS}psi({_POS})", None), (f"{_SS}boxcox({_POS}, 0.5)", None),
    (f"{_SS}boxcox({_POS}, -0.3)", None), (f"{_SS}iv(1.0, 2.0 * np.tanh({{0}}))", None),
    (f"{_SS}ive(2.0, 2.0 * np.tanh({{0}}))", None), (f"{_SS}kv(1.5, {_POS})", None), (f"{_SS}kve(0.5, {_POS})", None),
    (f"{_SS}jv(1.5, {_POS})", None), (f"{_SS}yv(0.5, {_POS})", None), (f"{_SS}j0({{0}})", None),
    (f"{_SS}j1({{0}})", None), (f"{_SS}y0({_POS})", None), (f"{_SS}y1({_POS})", None), (f"{_SS}yn(2, {_POS} + 0.3)", None),
    (f"{_SS}stdtrit(4.0, {_P})", None), (f"{_SS}kl_div({_POS}, 1.1)", None), (f"{_SS}rel_entr({_POS}, 0.8)", None),
    (f"{_SS}beta({_POS}, 1.5)", None), (f"{_SS}gamma({_POS})", None), (f"{_SS}gammaln({_POS})", None),
]
RECENT_SPECIAL_BINARY = [
    (f"{_SS}poch({_POS}, 0.6 * np.tanh({{1}}))", None), (f"{_SS}owens_t({{0}}, {{1}})", None),
    (f"{_SS}pseudo_huber({_POS1}, {{0}})", None),
    (f"{_SS}huber({_POS1}, {{0}})", "_g_absmin(np.abs({0}) - (0.8 * np.tanh({1}) + 1.2))"),
    (f"{_SS}kl_div({_POS}, {_POS1})", None), (f"{_SS}rel_entr({_POS}, {_POS1})", None),
    (f"{_SS}beta({_POS}, {_POS1})", None), (f"{_SS}boxcox({_POS}, 0.5 * np.tanh({{1}}))", None),
    (f"{_SS}binom({_POS} + 3.0, {_POS1})", None), (f"{_SS}xlogy({{0}}, {_POS1})", None),
]

# scipy.stats: name -> (x domain, constant shapes, traced shapes (with {1}) or None, traced shapes allowed in
# the cdf/sf/ppf/isf (closed forms) or only in logpdf/pdf (incomplete gamma/beta functions), methods)
_ALL8 = ("logpdf", "pdf", "cdf", "logcdf", "sf", "logsf", "ppf", "isf")
_REAL_X, _POS_X, _UNIT_X = "{0}", _POS, _P
RECENT_DISTS = {
    "norm": (_REAL_X, "", None, True, _ALL8),
    "t": (_REAL_X, "3.0", "{1} * {1} + 1.0", False, _ALL8),
    "cauchy": (_REAL_X, "", None, True, _ALL8),
    "logistic": (_REAL_X, "", None, True, _ALL8),
    "gumbel_r": (_REAL_X, "", None, True, _ALL8),
    "laplace": (_REAL_X, "", None, True, _ALL8),
    "skewnorm": (_REAL_X, "2.0", "{1}", True, ("logpdf", "pdf")),
    "vonmises": ("(2.5 * np.tanh({0}))", "1.5", "{1} * {1} + 0.5", True, ("logpdf", "pdf")),
    "truncnorm": ("(0.9 * np.tanh({0}) + 0.2)", "-1.0, 1.5", None, True, ("logpdf", "pdf")),
    "gamma": (_POS_X, "2.0", "{1} * {1} + 1.0", False, _ALL8),
    "expon": (_POS_X, "", None, True, _ALL8),
    "chi2": (_POS_X, "3.0", "{1} * {1} + 1.0", False, _ALL8),
    "halfnorm": (_POS_X, "", None, True, _ALL8),
    "lognorm": (_POS_X, "0.7", "{1} * {1} + 0.5", True, _ALL8),
    "invgamma": (_POS_X, "2.5", "{1} * {1} + 1.0", False, _ALL8),
    "weibull_min": (_POS_X, "1.5", "{1} * {1} + 0.8", True, _ALL8),
    "rayleigh": (_POS_X, "", None, True, _ALL8),
    "invgauss": (_POS_X, "0.8", "{1} * {1} + 0.5", True, ("logpdf", "pdf", "cdf", "logcdf", "sf", "logsf")),
    "f": (_POS_X, "3.0, 5.0", "{1} * {1} + 2.0, 5.0", False, ("logpdf", "pdf", "ppf", "isf")),
    "pareto": ("(1.6 + 0.5 * np.tanh({0}))", "2.5", "{1} * {1} + 1.0", True, ("logpdf", "pdf", "ppf", "isf")),
    "beta": (_UNIT_X, "2.0, 3.0", "{1} * {1} + 1.0, 2.0", False, _ALL8),
    "uniform": (_UNIT_X, "", None, True, _ALL8),
}
# discrete: name -> (counts k, constant shapes before p, traced shape before p (logpmf/pmf) or None, p's map)
RECENT_DISCRETE = {
    "poisson": ((0.0, 1.0, 2.0, 4.0), "", None, "({0} * {0} + 0.5)"),
    "bernoulli": ((0.0, 1.0), "", None, _P),
    "binom": ((1.0, 2.0, 3.0), "5.0, ", None, _P),
    "nbinom": ((0.0, 1.0, 3.0), "3.0, ", "{1} * {1} + 1.0, ", _P),
    "geom": ((1.0, 2.0, 4.0), "", None, _P),
}
_DISCRETE_METHODS = ("logpmf", "pmf", "cdf", "logcdf", "sf", "logsf")


def _b_recent_stats(st, a):
    rng = st.rng
    out = st.fresh()
    if rng.random() < 0.25:   # discrete: the count is a constant, the probability or rate traced
        name = str(rng.choice(sorted(RECENT_DISCRETE)))
        ks, shapes, traced, pmap = RECENT_DISCRETE[name]
        method = str(rng.choice(_DISCRETE_METHODS))
        k = float(rng.choice(ks))
        b = st.partner(a, _broadcastable) if traced and method in ("logpmf", "pmf") and rng.random() < 0.5 else None
        sh = traced if b is not None else shapes
        return [Op(out, f"scipy.stats.{name}.{method}({k}, {sh}{pmap})", (a, b) if b else (a,),
                   f"recent:stats.{name}.{method}")]
    name = str(rng.choice(sorted(RECENT_DISTS)))
    xmap, shapes, traced, traced_everywhere, methods = RECENT_DISTS[name]
    method = str(rng.choice(methods))
    quantile = method in ("ppf", "isf")
    b = st.partner(a, _broadcastable) if rng.random() < 0.5 else None
    args, kw, guard = [_P if quantile else xmap], [], None
    if b is not None and traced and (traced_everywhere or method in ("logpdf", "pdf")) and rng.random() < 0.5:
        args.append(traced)
    elif shapes:
        args.append(shapes)
    elif b is not None and rng.random() < 0.5:
        b = None
    real_support = xmap == _REAL_X or quantile
    if b is not None and len(args) == 1 or (b is not None and "{1}" not in args[-1]):
        if real_support and rng.random() < 0.5:
            kw.append("loc=0.5 * {1}")
        else:
            kw.append("scale=" + _POS1)
    elif rng.random() < 0.3:
        kw.append(str(rng.choice(["loc=0.2", "scale=1.3", "loc=-0.3, scale=0.8"])) if real_support else "scale=1.3")
    text = ", ".join(args + kw)
    if b is not None and "{1}" not in text:
        b = None
    if name == "laplace":
        if quantile:
            guard = f"_g_absmin({_P} - 0.5)"
        else:
            loc = "0.5 * {1}" if "loc=0.5" in text else ("0.2" if "loc=0.2" in text else
                                                          ("-0.3" if "loc=-0.3" in text else "0.0"))
            guard = f"_g_absmin({{0}} - {loc})"
    return [Op(out, f"scipy.stats.{name}.{method}({text})", (a, b) if b is not None else (a,),
               f"recent:stats.{name}.{method}", guard)]


def _b_recent_multivariate(st):
    rng = st.rng
    a = st.pick(lambda v: v.ndim == 1 and 2 <= v.size <= 5)
    if a is None:
        return None
    m = st.shape(a)[0]
    out = st.fresh()
    which = str(rng.choice(["multinomial", "multinomial", "mvn", "mvn", "dirichlet"]))
    if which == "multinomial":
        counts = [int(c) for c in rng.integers(0, 4, size=m)]
        method = str(rng.choice(["logpmf", "pmf"]))
        return [Op(out, f"scipy.stats.multinomial.{method}({counts!r}, {sum(counts)}, scipy.special.softmax({{0}}))",
                   (a,), f"recent:stats.multinomial.{method}")]
    if which == "dirichlet":
        b = st.partner(a, lambda x, y: y == x)
        alpha = "{1} * {1} + 0.5" if b is not None and rng.random() < 0.6 else "np.linspace(0.8, 2.5, %d)" % m
        method = str(rng.choice(["logpdf", "pdf"]))
        # in float64 (SciPy's simplex check allows 1e-10: a float32 softmax misses it)
        return [Op(out, f"scipy.stats.dirichlet.{method}(scipy.special.softmax({{0}}.astype(np.float64)), {alpha})",
                   (a, b) if "{1}" in alpha else (a,), f"recent:stats.dirichlet.{method}")]
    method = str(rng.choice(["logpdf", "pdf"]))
    b = st.partner(a, lambda x, y: y == x)
    cov = (f"np.outer(np.tanh({{1}}), np.tanh({{1}})) * 0.5 + np.eye({m})" if b is not None and rng.random() < 0.6
           else f"np.eye({m}) * 1.5 + 0.3")
    mean = "np.linspace(-0.5, 0.5, %d)" % m
    return [Op(out, f"scipy.stats.multivariate_normal.{method}({{0}}, {mean}, {cov})",
               (a, b) if "{1}" in cov else (a,), f"recent:stats.multivariate_normal.{method}")]


def _square_texts(m):
    """Well-conditioned m x m matrices made from an operand: symmetric positive definite from a
    matrix or a vector, diagonally dominant (no pivoting in LU, no negative real eigenvalues)."""
    return {"spd": f"(np.tanh({{0}}) @ np.tanh({{0}}).T + 2.0 * np.eye({m}))",
            "dd": f"(np.tanh({{0}}) + {m}.5 * np.eye({m}))",
            "spdv": f"(np.outer(np.tanh({{0}}), np.tanh({{0}})) + 1.5 * np.eye({m}))"}


def _b_recent_linalg(st):
    rng = st.rng
    a = st.pick(lambda v: (v.ndim == 2 and v.shape[0] == v.shape[1] and 1 <= v.shape[0] <= 4) or
                (v.ndim == 1 and 1 <= v.size <= 4))
    if a is None:
        return None
    m = st.shape(a)[0]
    tx = _square_texts(m)
    if len(st.shape(a)) == 1:
        S = D = tx["spdv"]
    else:
        S, D = tx["spd"], tx["dd"]
    rhs = const_expr(rng, (m,) if rng.random() < 0.5 else (m, 2))
    b = st.partner(a, lambda x, y: y == (m,) or y == (m, 1) or y == (m, 2))
    if b is not None and rng.random() < 0.6:
        rhs = "np.sin({1})"
    L = "scipy.linalg."
    cands = [
        (f"{L}expm(0.5 * np.tanh({{0}}))" if len(st.shape(a)) == 2 else f"{L}expm({S} * 0.3)", None),
        (f"{L}logm({S})", None), (f"{L}logm({D})", None), (f"{L}sqrtm({S})", None), (f"{L}sqrtm({D})", None),
        (f"{L}lu({D})[1]", None), (f"{L}lu({D})[2]", None), (f"{L}lu({D}, permute_l=True)[0]", None),
        (f"{L}lu_solve({L}lu_factor({D}), {rhs})", None),
        (f"{L}inv({D})", None), (f"{L}det({D})", None), (f"{L}solve({S}, {rhs}, assume_a='pos')", None),
        (f"{L}solve({S}, {rhs}, assume_a='sym')", None), (f"{L}solve({D}, {rhs})", None),
        (f"{L}solve_triangular(np.triu({D}), {rhs})", None),
        (f"{L}solve_triangular(np.tril({D}), {rhs}, lower=True)", None),
        (f"{L}cholesky({S})", None), (f"{L}cholesky({S}, lower=True)", None),
        (f"{L}cho_solve({L}cho_factor({S}), {rhs})", None), (f"{L}cho_factor({S}, lower=True)[0]", None),
        (f"{L}eigh({S})[0]", "_g_eiggap(" + S + ")"), (f"{L}eigh({S})[1] ** 2", "_g_eiggap(" + S + ")"),
        (f"{L}eigvalsh({S})", "_g_eiggap(" + S + ")"), (f"{L}svd({D})[1]", "_g_sv(" + D + ", 'gap')"),
        (f"{L}svd({D}, compute_uv=False)", "_g_sv(" + D + ", 'gap')"), (f"{L}qr({D})[1]", None),
        (f"{L}qr({D}, mode='r')[0]", None), (f"{L}norm({D})", None), (f"{L}norm({D}, 1)", "_g_gap(np.sum(np.abs(" + D + "), axis=0))"),
        (f"{L}solve_sylvester({D}, {S}, np.cos({{0}}))" if len(st.shape(a)) == 2 else
         f"{L}solve_sylvester({D}, {D}.T, np.ones(({m}, {m})))", None),
        (f"np.linalg.cond({D})", "_g_sv(" + D + ", 'gap')"), (f"np.linalg.eigh({S})[0]", "_g_eiggap(" + S + ")"),
        (f"np.linalg.eigh({S}).eigenvectors ** 2", "_g_eiggap(" + S + ")"),
        (f"np.linalg.lstsq({D}, {rhs}, rcond=None)[0]", None), (f"np.linalg.pinv({D})", "_g_sv(" + D + ", 'gap')"),
        (f"np.linalg.qr({D})[1]", None), (f"np.linalg.qr({D}).Q", None), (f"np.linalg.svdvals({D})", "_g_sv(" + D + ", 'gap')"),
        (f"np.linalg.matrix_norm({D})", None), (f"np.linalg.matrix_norm({D}, ord='nuc')", "_g_sv(" + D + ", 'min')"),
        (f"np.linalg.multi_dot([{D}, {S}, {D}.T])", None), (f"np.linalg.tensorsolve({D}, {rhs})" if "{1}" not in rhs
                                                            or True else None, None),
        (f"np.linalg.trace({D})", None), (f"np.linalg.diagonal({S})", None), (f"np.linalg.matrix_transpose({D})", None),
        (f"np.linalg.matmul({D}, {S})", None), (f"np.linalg.inv({D})", None),
        (f"np.linalg.tensorinv({S}.reshape(2, 2, 2, 2))" if m == 4 else f"np.linalg.tensorinv({S}, ind=1)", None),
        (f"{{0}} * np.linalg.matrix_rank({D})", None),
        (f"{L}solve_banded((1, 1), np.stack([0.3 * np.tanh({{0}}), 3.0 + np.tanh({{0}}), 0.2 * np.cos({{0}})]), "
         f"np.linspace(0.5, 1.0, {st.shape(a)[-1]}))" if len(st.shape(a)) == 1 else
         f"{L}solve_banded((0, 1), np.stack([0.3 * np.tanh({{0}}[0]), 3.0 + np.tanh({{0}}[-1])]), np.ones({m}))", None),
        (f"scipy.integrate.odeint(lambda y, t: -0.5 * y + np.sin(t), np.ravel({{0}}), [0.0, 0.5, 1.0])", None),
    ]
    tmpl, guard = cands[int(rng.integers(len(cands)))]
    if "tensorsolve" in tmpl and "{1}" not in tmpl and rhs.count("reshape"):
        return None
    args = (a, b) if "{1}" in tmpl else (a,)
    name = tmpl.split("(")[0]
    return [Op(st.fresh(), tmpl, args, "recent:" + name.replace("scipy.", ""), guard)]


def _b_recent_numpy(st, a):
    rng = st.rng
    shape = st.shape(a)
    nd = len(shape)
    size = math.prod(shape)
    out = st.fresh()
    ax = int(rng.integers(-nd, nd)) if nd else None
    mask = f"(np.arange({size}).reshape{shape} % {int(rng.integers(2, 4))} == 1)" if nd else "True"
    which = str(rng.choice(["nan", "quantile", "gradient", "interp", "convolve", "einsum", "linspace", "append",
                            "flip", "rot90", "where_out", "misc", "misc", "poly", "split", "sortlike", "scatter",
                            "vec", "integrate", "signal", "stack"]))
    if which == "nan":
        if nd == 0 or size < 2:
            return None
        fn = str(rng.choice(["nanpercentile", "nanquantile", "nansum", "nanmean", "nanvar", "nanstd", "nanprod",
                             "nancumsum", "nan_to_num", "nanargmax", "nanargmin"]))
        x = f"np.where({mask}, np.nan, {{0}})"
        keep = f"{{0}}[~{mask}]"
        if fn in ("nanpercentile", "nanquantile"):
            q = "35.0" if fn == "nanpercentile" else "0.35"
            return [Op(out, f"np.{fn}({x}, {q})", (a,), f"recent:{fn}", f"_g_sortgap({keep}, None)")]
        if fn == "nan_to_num":
            return [Op(out, f"np.nan_to_num({x}, nan=0.25) * {{0}}", (a,), "recent:nan_to_num")]
        if fn in ("nanargmax", "nanargmin"):
            return [Op(out, f"{{0}} * (np.{fn}({x}) + 1.0)", (a,), f"recent:{fn}", f"_g_gap({keep}, None)")]
        axis = "" if nd == 1 or rng.random() < 0.4 else f", axis={ax}"
        guard = f"_g_std(np.where({mask}, 0.0, {{0}}), None)" if fn == "nanstd" else None
        if fn == "nanstd" and axis:
            return None
        return [Op(out, f"np.{fn}({x}{axis})", (a,), f"recent:{fn}", guard)]
    if which == "quantile":
        if nd == 0:
            return None
        fn = str(rng.choice(["percentile", "quantile"]))
        q = "[15.0, 60.0]" if fn == "percentile" else "[0.15, 0.6]"
        # the methods jitad implements (the others are an UnsupportedOperationError that names these)
        method = str(rng.choice(["linear", "lower", "higher", "midpoint", "nearest"]))
        axis = None if rng.random() < 0.4 else ax
        return [Op(out, f"np.{fn}({{0}}, {q}, axis={axis}, method={method!r})", (a,), f"recent:{fn}/{method}",
                   f"_g_sortgap({{0}}, {axis})")]
    if which == "gradient":
        if nd == 0 or min(shape) < 3:
            return None
        if nd >= 2 and rng.random() < 0.5:
            return [Op(out, "np.stack(np.gradient({0}, 0.5, axis=(0, 1)))", (a,), "recent:gradient")]
        return [Op(out, f"np.gradient({{0}}, np.cumsum(np.linspace(0.5, 1.0, {shape[ax]})), axis={ax}, edge_order=2)",
                   (a,), "recent:gradient")]
    if which == "interp":
        xp = "np.linspace(-1.0, 1.0, 5)"
        b = st.partner(a, lambda x, y: y == (5,))
        if b is not None and rng.random() < 0.6:   # traced fp and traced x
            return [Op(out, f"np.interp(np.tanh({{0}}), {xp}, {{1}}, period={'None' if rng.random() < 0.7 else 3.0})",
                       (a, b), "recent:interp", f"_g_knots(np.tanh({{0}}), {xp})" if True else None)]
        return [Op(out, f"np.interp(np.tanh({{0}}), {xp}, np.sin({xp}), left=0.1, right=-0.2)", (a,), "recent:interp",
                   f"_g_knots(np.tanh({{0}}), {xp})")]
    if which == "convolve":
        if nd != 1:
            return None
        b = st.pick(lambda v: v.ndim == 1 and v.size >= 1)
        fn = str(rng.choice(["np.convolve", "np.correlate", "scipy.signal.convolve", "scipy.signal.correlate",
                             "scipy.signal.fftconvolve", "scipy.signal.oaconvolve"]))
        mode = str(rng.choice(["full", "same", "valid"]))
        return [Op(out, f"{fn}({{0}}, {{1}}, mode={mode!r})", (a, b), "recent:" + fn.replace("scipy.", ""))]
    if which == "signal":
        if nd != 2:
            return None
        b = st.pick(lambda v: v.ndim == 2)
        fn = str(rng.choice(["convolve2d", "correlate2d", "convolve", "fftconvolve"]))
        mode = str(rng.choice(["full", "same", "valid"]))
        return [Op(out, f"scipy.signal.{fn}({{0}}, {{1}}, mode={mode!r})", (a, b), f"recent:signal.{fn}")]
    if which == "einsum":
        if nd == 2 and shape[0] == shape[1]:
            spec = str(rng.choice(["ii->i", "ii", "ij->ji", "ij,jk->ik", "ij,ij->", "ij,ji->i", "ik,kj,jl->il"]))
            n_ops = spec.split("->")[0].count(",") + 1
            opt = str(rng.choice(["", ", optimize=True", ", optimize='greedy'"]))
            return [Op(out, f"np.einsum({spec!r}, " + ", ".join(["{0}"] * n_ops) + f"{opt})", (a,), "recent:einsum")]
        if nd >= 1:
            b = st.partner(a, lambda x, y: len(y) >= 1 and y[-1] == x[-1] and _broadcastable(x[:-1], y[:-1]))
            spec = str(rng.choice(["...i,...i->...", "...i,...j->...ij", "i...,i...->..."]))
            if spec == "...i,...j->...ij" and size * st.shape(b)[-1] > MAX_SIZE:
                return None
            if spec == "i...,i...->..." and st.shape(b) != shape:
                return None
            return [Op(out, f"np.einsum({spec!r}, {{0}}, {{1}})", (a, b), "recent:einsum")]
        return None
    if which == "linspace":
        b = st.partner(a, _broadcastable)
        num = int(rng.integers(2, 5))
        if math.prod(np.broadcast_shapes(shape, st.shape(b))) * num > MAX_SIZE:
            return None
        ep = str(rng.choice(["", ", endpoint=False", ", axis=-1", ", retstep=True)[0"]))
        return [Op(out, f"np.linspace({{0}}, {{1}} + 1.5, {num}{ep})", (a, b), "recent:linspace")]
    if which == "append":
        b = st.pick()
        if nd and rng.random() < 0.5:
            axis_ok = st.partner(a, lambda x, y: len(y) == len(x) and y[1:] == x[1:])
            if axis_ok is not None:
                return [Op(out, "np.append({0}, np.sin({1}), axis=0)", (a, axis_ok), "recent:append")]
        return [Op(out, "np.append({0}, {1})", (a, b), "recent:append")]
    if which == "flip":
        if nd < 2:
            return None
        return [Op(out, str(rng.choice(["np.fliplr({0})", "np.flipud({0})", "np.flip({0}, (0, -1))"])), (a,),
                   "recent:flip")]
    if which == "rot90":
        if nd < 2:
            return None
        k = int(rng.integers(-2, 4))
        axes = "" if rng.random() < 0.5 else f", axes=({nd - 1}, 0)"
        return [Op(out, f"np.rot90({{0}}, {k}{axes})", (a,), "recent:rot90")]
    if which == "where_out":
        if nd == 0:
            return None
        b = st.partner(a, lambda x, y: _broadcastable(x, y) and np.broadcast_shapes(x, y) == x)
        form = str(rng.choice([f"np.add({{0}}, {{1}}, out=np.zeros({shape}), where={mask})",
                               f"np.multiply({{0}}, {{1}}, out=np.full({shape}, 0.25), where={mask})",
                               f"np.sin({{0}}, out=np.ones_like({{0}}), where={mask})",
                               f"np.exp(np.tanh({{0}}), out={{1}} * 1.0, where={mask})" if st.shape(b) == shape
                               else f"np.exp(np.tanh({{0}}), out=np.zeros({shape}), where={mask})",
                               "np.tanh({0}, out=np.zeros_like({0}), where={0} > 0.2)",
                               f"np.maximum({{0}}, {{1}}, out=np.zeros({shape}), where=~{mask})"]))
        guard = "_g_absmin({0} - 0.2)" if "> 0.2" in form else ("_g_absmin({0} - {1})" if "maximum" in form else None)
        return [Op(out, form, (a, b) if "{1}" in form else (a,), "recent:ufunc_where", guard)]
    if which == "misc":
        cands = [
            ("np.absolute({0})", "_g_absmin({0})"), ("np.negative({0})", None), ("np.conjugate({0})", None),
            ("np.degrees({0})", None), ("np.rad2deg({0})", None), ("np.radians({0})", None),
            ("np.around({0}, 1) + {0}", "_g_half(10.0 * {0})"), ("np.fix(2.0 * {0}) + {0}", "_g_frac(2.0 * {0})"),
            ("np.copysign({0}, -1.0)", "_g_absmin({0})"), ("np.copysign(1.5, {0}) * {0}", "_g_absmin({0})"),
            ("np.heaviside({0}, 0.5) * {0}", "_g_absmin({0})"), ("np.ldexp({0}, 2)", None),
            ("np.frexp({0})[0]", "_g_absmin(np.log2(np.abs({0})) - np.round(np.log2(np.abs({0}))))"),
            ("np.modf({0})[0]", "min(_g_frac({0}), _g_absmin({0}))"), ("np.modf(2.0 * {0})[1] + {0}", "_g_frac(2.0 * {0})"),
            ("np.floor_divide({0}, 0.6) + {0}", "_g_frac({0} / 0.6)"), ("np.nextafter({0}, np.inf)", None),
            ("np.sinc({0})", None), ("np.imag({0}) + {0}", None),
            ("np.unwrap(2.0 * {0})", None), ("np.ones_like({0}) * 0.5 + np.full_like({0}, 0.25) * {0}", None),
            ("np.diagflat({0})", None), ("np.atleast_3d({0})", None), ("np.resize({0}, (7,))", None),
            ("np.piecewise({0}, [{0} < -0.2, {0} > 0.4], [np.sin, lambda t: t * t, 0.3])",
             "min(_g_absmin({0} + 0.2), _g_absmin({0} - 0.4))"),
            ("np.where(np.isclose({0}, 0.5, atol=0.01), 0.0, {0})", "_g_absmin({0} - 0.5)"),
            ("{0} * np.count_nonzero({0} > 0.1)", "_g_absmin({0} - 0.1)"),
            ("{0} * np.digitize({0}, [-0.5, 0.0, 0.5])", "_g_knots({0}, [-0.5, 0.0, 0.5])"),
            ("{0} * np.searchsorted([-0.4, 0.3], np.ravel({0})).reshape(np.shape({0}))", "_g_knots({0}, [-0.4, 0.3])"),
            ("np.histogram(np.tanh({0}), bins=[-1.0, -0.3, 0.2, 1.0], weights={0} * {0})[0]",
             "_g_knots(np.tanh({0}), [-0.3, 0.2])"),
            ("np.where(np.isin(np.arange(%d).reshape(%s), [1, 4]), {0}, -{0})" % (max(size, 1), shape), None),
            ("{0} * np.signbit({0})", "_g_absmin({0})"),
            ("np.where(np.logical_and(np.greater({0}, -0.2), np.less_equal({0}, 0.5)), {0} * {0}, np.sin({0}))",
             "min(_g_absmin({0} + 0.2), _g_absmin({0} - 0.5))"),
            ("np.where(np.logical_or(np.isnan({0}), np.logical_not(np.isfinite({0} * 0.5))), 0.0, {0}) * "
             "np.not_equal({0}, 0.7) + np.logical_xor(np.less({0}, 0.1), np.greater_equal({0}, 0.3))",
             "min(_g_absmin({0} - 0.7), _g_absmin({0} - 0.1), _g_absmin({0} - 0.3))"),
            ("np.divmod({0}, 0.7)[1] + np.divmod({0}, 0.7)[0]", "_g_frac({0} / 0.7)"),
            ("np.angle({0}) + {0}", "_g_absmin({0})"), ("np.isinf({0}) + np.equal({0}, 2.0) + {0}", "_g_absmin({0} - 2.0)"),
        ]
        tmpl, guard = cands[int(rng.integers(len(cands)))]
        if ("isin" in tmpl or "diagflat" in tmpl or "resize" in tmpl) and nd == 0:
            return None
        return [Op(out, tmpl, (a,), "recent:" + tmpl.split("(")[0].replace("np.", "").replace("{0} * ", ""), guard)]
    if which == "poly":
        if nd != 1 or size > 5:
            return None
        b = st.pick(lambda v: v.ndim == 1 and 1 <= v.size <= 5)
        # polymul's leading coefficients nonzero: NumPy drops leading zeros (a length jitad refuses to trace)
        form = str(rng.choice(["np.polyadd({0}, {1})", "np.polysub({0}, {1})",
                               "np.polymul(np.concatenate(([1.5], {0})), np.concatenate(([-0.75], {1})))",
                               "np.polyder({0})" if size > 1 else "np.polyint({0})", "np.polyint({0}, m=2)",
                               "np.polyfit(np.linspace(-1.0, 1.0, %d), {0}, %d)" % (size, max(size - 2, 0))
                               if size >= 2 else "np.polyint({0})"]))
        return [Op(out, form, (a, b) if "{1}" in form else (a,), "recent:" + form.split("(")[0].replace("np.", ""))]
    if which == "split":
        if nd < 2 and rng.random() < 0.5:
            return None
        fn = str(rng.choice(["hsplit", "vsplit", "dsplit", "unstack"]))
        if fn == "unstack":
            return [Op(out, f"np.unstack({{0}}, axis={ax})[0]", (a,), "recent:unstack")] if nd else None
        axis = {"hsplit": 1 if nd > 1 else 0, "vsplit": 0, "dsplit": 2}[fn]
        if nd <= axis or shape[axis] < 2 or shape[axis] % 2:
            return None
        return [Op(out, f"np.{fn}({{0}}, 2)[{int(rng.integers(2))}]", (a,), f"recent:{fn}")]
    if which == "sortlike":
        if nd == 0:
            return None
        n = shape[-1]
        kth = int(rng.integers(n))
        form = str(rng.choice([f"np.partition({{0}}, {kth})[..., {kth}]",
                               f"np.take_along_axis({{0}}, np.argsort({{0}}, axis=-1), axis=-1)",
                               f"np.take_along_axis({{0}}, np.argpartition({{0}}, {kth}, axis=-1), axis=-1)[..., {kth}]",
                               f"np.take(np.ravel({{0}}), np.lexsort((np.ravel({{0}}),)))",
                               "np.ravel({0})[np.argmin(np.ravel({0}))] + np.ravel({0})[np.argmax(np.ravel({0}))]"]))
        guard = "_g_sortgap({0}, -1)" if "lexsort" not in form and "argm" not in form else "_g_sortgap({0}, None)"
        return [Op(out, form, (a,), "recent:" + form.split("(")[1].replace("np.", "").split(" ")[0] if "take" in form
                   else "recent:" + form.split("(")[0].replace("np.", ""), guard)]
    if which == "scatter":
        if nd == 0:
            return None
        form = str(rng.choice([
            "{out} = {0} * 1.0\nnp.put({out}, [0, -1], [0.5, -0.5])",
            "{out} = {0} * 1.0\nnp.putmask({out}, %s, np.sin({0}))" % mask,
            "{out} = {0} * 1.0\nnp.place({out}, %s, [0.25, 0.75])" % mask,
            "{out} = np.zeros(%s)\nnp.copyto({out}, np.cos({0}), where=%s)" % (shape, mask),
            "{out} = {0} * 1.0\nnp.put_along_axis({out}, np.zeros(%s, dtype=np.intp), 0.5, axis=-1)"
            % (shape[:-1] + (1,),),
            "{out} = np.outer(np.ravel({0})[:3], np.ravel({0})[:3])\nnp.fill_diagonal({out}, np.ravel({0})[:1])",
            "{out} = np.delete({0}, [0], axis=%d)" % ax if shape[ax] >= 2 else "{out} = np.delete({0}, [])",
            "{out} = np.bincount([0, 2, 2, 1], weights=np.ravel({0})[:4] if np.size({0}) >= 4 else "
            "np.resize(np.ravel({0}), 4))",
        ]))
        fn = next(f for f in ("putmask", "put_along_axis", "put", "place", "copyto", "fill_diagonal", "delete",
                              "bincount") if f"np.{f}(" in form)
        return [Op(out, form, (a,), "recent:" + fn, block=True)]
    if which == "vec":
        if nd == 0:
            return None
        n = shape[-1]
        b = st.partner(a, lambda x, y: len(y) >= 1 and y[-1] == x[-1] and _broadcastable(x[:-1], y[:-1]))
        form = str(rng.choice(["np.vecdot({0}, {1})", "np.linalg.vecdot({0}, {1})",
                               f"np.matvec({const_expr(rng, (2, n))}, {{0}})", f"np.vecmat({{0}}, {const_expr(rng, (n, 2))})",
                               "np.matrix_transpose({0})" if nd >= 2 else "np.linalg.outer({0}, {0})",
                               "np.linalg.vector_norm({0}, axis=-1)", "np.linalg.vector_norm({0}, ord=3)",
                               "np.linalg.tensordot({0}, {1}, axes=([-1], [-1]))" if nd + len(st.shape(b)) <= 4
                               else "np.linalg.vecdot({0}, {1})",
                               "np.linalg.cross({0}, {1})" if n == 3 else "np.vecdot({0}, {0})"]))
        guard = "_g_min(np.sum({0} * {0}, axis=-1))" if "vector_norm" in form else None
        if "tensordot" in form and math.prod(shape[:-1] + st.shape(b)[:-1]) > MAX_SIZE:
            return None
        return [Op(out, form, (a, b) if "{1}" in form else (a,), "recent:" + form.split("(")[0].replace("np.", ""),
                   guard)]
    if which == "integrate":
        if nd == 0 or shape[ax] < 2:
            return None
        n = shape[ax]
        form = str(rng.choice([f"scipy.integrate.simpson({{0}}, axis={ax})", f"scipy.integrate.simpson({{0}}, dx=0.3, axis={ax})",
                               f"scipy.integrate.simpson({{0}}, x=np.linspace(0.0, 1.0, {n}) ** 2, axis={ax})",
                               f"scipy.integrate.trapezoid({{0}}, axis={ax})",
                               f"scipy.integrate.cumulative_trapezoid({{0}}, axis={ax})",
                               f"scipy.integrate.cumulative_trapezoid({{0}}, dx=0.5, axis={ax}, initial=0)"]))
        return [Op(out, form, (a,), "recent:" + form.split("(")[0].replace("scipy.", ""))]
    # stack-like
    form = str(rng.choice(["np.dstack([{0}, np.sin({0})])", "np.block([[{0}, {0}], [np.cos({0}), {0}]])" if nd == 2
                           else "np.block([{0}, {0} * 2.0])" if nd == 1 else "np.hstack([{0}, {0}])",
                           "np.column_stack([{0}, np.cos({0})])" if nd <= 2 else "np.vstack([{0}, {0}])",
                           "np.rollaxis({0}, %d)" % (nd - 1) if nd else "np.atleast_1d({0})",
                           "np.meshgrid(np.ravel({0})[:3], np.ravel({0})[-2:])[0] * np.meshgrid(np.ravel({0})[:3], "
                           "np.ravel({0})[-2:])[1]",
                           "np.ascontiguousarray({0}.T) + np.asfortranarray({0})",
                           "np.apply_along_axis(np.cumsum, -1, {0})" if nd else "np.atleast_2d({0})",
                           "scipy.linalg.toeplitz(np.ravel({0})[:4])", "scipy.linalg.block_diag({0}, 2.0 * {0})"
                           if nd <= 2 else "np.vstack([{0}])"]))
    return [Op(out, form, (a,), "recent:" + form.split("(")[0].replace("np.", "").replace("scipy.", ""))]


def b_recent(st):
    """issue 11's functions (scipy.special, scipy.stats, scipy.linalg, scipy.integrate/signal) and the
    covered NumPy functions the other families never write, each argument mapped into its domain
    (tanh-bounded probabilities and positive values) and guarded away from kinks."""
    rng = st.rng
    r = rng.random()
    if r < 0.08:
        return _b_recent_multivariate(st)
    if r < 0.2:
        return _b_recent_linalg(st)
    a = st.pick()
    if a is None:
        return None
    if r < 0.45:
        if rng.random() < 0.75:
            tmpl, guard = RECENT_SPECIAL_UNARY[int(rng.integers(len(RECENT_SPECIAL_UNARY)))]
            return [Op(st.fresh(), tmpl, (a,), "recent:" + tmpl.split("(")[0].replace("scipy.", ""), guard)]
        tmpl, guard = RECENT_SPECIAL_BINARY[int(rng.integers(len(RECENT_SPECIAL_BINARY)))]
        b = st.partner(a, _broadcastable)
        if b is None:
            return None
        return [Op(st.fresh(), tmpl, (a, b), "recent:" + tmpl.split("(")[0].replace("scipy.", ""), guard)]
    if r < 0.7:
        return _b_recent_stats(st, a)
    try:
        return _b_recent_numpy(st, a)
    except KeyError:   # no partner operand of the shape a template needs
        return None


NEW.append((b_recent, 12))
LONG.append((b_recent, 12))
# issue 11's functions mostly (b_recent), with a few ops around them
PROFILES["recent"] = [(b_recent, 20), (b_unary, 3), (b_binary, 4), (b_reduce, 2), (b_index, 2), (b_struct, 2)]


# --- shapes that depend on values (guards), and quadrature ------------------------------------------
def b_shapes(st):
    """Boolean-mask indexing and writes, np.nonzero / one-argument where / argwhere / flatnonzero,
    np.unique, np.bincount of traced labels, np.compress / extract (a mask read from the values,
    guarded: the thresholds are kept away from the values so finite differences keep the mask),
    and scipy.integrate.quad / quad_vec of an integrand closing over a traced value (tight
    tolerances: the differences of an adaptive rule; quad_vec's limit=100 stops SciPy's own call on a
    float32 integrand, which never meets them, at 100 intervals instead of 10000: 0.2 s, not 7 s, per
    NumPy run. A float64 integrand converges in 2)."""
    rng = st.rng
    a = st.pick()
    if a is None:
        return None
    shape, nd = tuple(st.shape(a)), len(st.shape(a))
    t = round(float(rng.uniform(-0.5, 0.5)), 2)
    near = f"_g_absmin({{0}} - {t})"
    cands = [
        (f"np.sum({{0}}[{{0}} > {t}] ** 2) + np.sin({{0}})", near, False),
        (f"np.cumsum(np.ravel({{0}})[np.ravel({{0}}) < {t}] * 2.0)", near, False),
        (f"np.ravel({{0}})[np.flatnonzero(np.ravel({{0}}) > {t})] ** 3", near, False),
        (f"np.sum(np.extract({{0}} > {t}, np.tanh({{0}}))) * {{0}}", near, False),
        ("np.unique(np.ravel({0}))", "_g_sortgap({0}, None)", False),
        ("np.unique(np.round(2.0 * {0}), return_counts=True)[1] * np.mean({0})", "_g_half(2.0 * {0})", False),
        ("np.unique(np.round(2.0 * {0}), return_inverse=True)[1].reshape(-1) * np.ravel({0})", "_g_half(2.0 * {0})",
         False),
        ("np.bincount(np.argsort(np.ravel({0})) % 3, weights=np.ravel({0}) ** 2)", "_g_sortgap({0}, None)", False),
        (f"{{out}} = {{0}} * 1.0\n{{out}}[{{0}} > {t}] = np.cos({{0}}[{{0}} > {t}])", near, True),
        (f"{{out}} = np.zeros_like({{0}})\nnp.add.at({{out}}, {{0}} < {t}, {{0}} * 0.0 + 1.5)\n{{out}} = {{out}} * {{0}}",
         near, True),
        ("np.array(scipy.integrate.quad(lambda s: np.exp(-s * s * np.mean({0} * {0})) * np.cos(s + np.sum({0})), "
         "0.0, 1.5, epsabs=1e-13, epsrel=1e-13)[0]) * {0}", None, False),
        ("scipy.integrate.quad_vec(lambda s: np.sin(s * np.tanh({0})), 0.0, 1.0, epsabs=1e-13, epsrel=1e-13, "
         "limit=100)[0]",
         None, False),
    ]
    if nd >= 1:
        cands += [
            (f"{{0}}[np.nonzero({{0}} > {t})]", near, False),
            (f"{{0}}[np.where({{0}} <= {t})] * 2.0", near, False),
            (f"np.sum({{0}}[tuple(np.argwhere({{0}} > {t}).T)])", near, False),
            (f"np.compress(np.ravel({{0}})[:{shape[0]}] > {t}, {{0}}, axis=0)", near, False),
        ]
    tmpl, guard, block = cands[int(rng.integers(len(cands)))]
    kind = "shapes:" + ("quad_vec" if "quad_vec" in tmpl else "quad" if "quad" in tmpl else
                        "write" if block else tmpl.split("(")[0].replace("np.", "").replace("{0}[", "mask"))
    return [Op(st.fresh(), tmpl, (a,), kind, guard, block=block)]


LONG.append((b_shapes, 5))
PROFILES["recent"].append((b_shapes, 6))
PROFILES["shapes"] = [(b_shapes, 16), (b_unary, 3), (b_binary, 4), (b_reduce, 2), (b_index, 2), (b_struct, 2)]
