"""Elementwise primitives: one row each, with local derivatives and the scalar code of one element.

The factories `unary`, `binary` and `comparison` derive a primitive's JVP and VJP from its local
derivatives; their rules build IR with primitives (`where_p`, `broadcast_to`, `unbroadcast`).
"""
import contextlib
import functools
import math
import threading
import weakref

import numpy as np

from jitad.ir import Kind, const_p, is_tracer
from jitad.primitives.core import CHEAP, EXPENSIVE, Primitive, drop_neutral, elementwise_shape, linear, wrap_like
from jitad.primitives.structural import broadcast_to, full, shape_of, unbroadcast, zeros_like

LN2, LN10 = math.log(2.0), math.log(10.0)


def _safe_sqrt(x):
    return np.sqrt(x)


def _zero_derivative(name, np_fn, scalar):
    """Piecewise-constant functions: derivative 0 wherever it exists (NumPy-AD convention)."""
    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn),
                     jvp=lambda primals, tangents, out: zeros_like(out),
                     vjp=lambda g, out, x: (None,), kind=Kind.ELEMENTWISE, scalar=scalar, ufunc=np_fn)


def _cancel_double_negation(node, inputs, values):
    """-(-x) = x."""
    inner = inputs[0]
    return wrap_like(values[0], inner.inputs[0]) if inner.prim is negative_p else None


# --- factories ------------------------------------------------------------------------
def _ufunc_of(np_fn):
    return np_fn if isinstance(np_fn, np.ufunc) else None


def unary(name, np_fn, derivative, scalar, domain=(-2.0, 2.0), inline_cost=CHEAP, short=None):
    """An elementwise one-argument primitive from its local derivative d(x, y).
    A NumPy ufunc as `np_fn` is also the ufunc the front-end maps to it."""
    def jvp(primals, tangents, out):
        (x,), (t,) = primals, tangents
        return scale(t, derivative(x, out))

    def vjp(g, out, x):
        return (mul_cotangent(g, derivative(x, out)),)

    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn), jvp=jvp, vjp=vjp,
                     kind=Kind.ELEMENTWISE, scalar=scalar, domain=domain, inline_cost=inline_cost,
                     ufunc=_ufunc_of(np_fn), short=short)


def binary(name, np_fn, dx, dy, scalar, domain=(-2.0, 2.0), inline_cost=CHEAP, simplify=None, short=None):
    """An elementwise two-argument primitive from its partial derivatives d(x, y, out)."""
    def jvp(primals, tangents, out):
        x, y = primals
        tx, ty = tangents
        terms = []
        if tx is not None:
            terms.append(scale(tx, dx(x, y, out)))
        if ty is not None:
            terms.append(scale(ty, dy(x, y, out)))
        total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        return broadcast_to(total, shape_of(out))

    def vjp(g, out, x, y):
        return (unbroadcast(mul_cotangent(g, dx(x, y, out)), shape_of(x)),
                unbroadcast(mul_cotangent(g, dy(x, y, out)), shape_of(y)))

    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn), jvp=jvp, vjp=vjp,
                     kind=Kind.ELEMENTWISE, scalar=scalar, domain=domain, inline_cost=inline_cost,
                     ufunc=_ufunc_of(np_fn), simplify=simplify, short=short)


def comparison(name, np_fn, scalar, short=None):
    """A primitive with a boolean (or otherwise non-differentiable) result."""
    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn), kind=Kind.ELEMENTWISE,
                     scalar=scalar, differentiable=False, ufunc=_ufunc_of(np_fn), short=short)


def scale(t, d):
    """t * d without recording a multiplication by a literal 1 or -1."""
    if isinstance(d, float):
        if d == 1.0:
            return t
        if d == -1.0:
            return negative_p(t)
    return multiply_p(t, d)


def mul_cotangent(g, d):
    """g * d, kept finite where g comes from an untaken np.where branch.

    The adjoint of np.where(c, a, b) sends where(c, g, 0) to `a`. Multiplying that by a
    local derivative that is inf or NaN where the branch is not taken (sqrt at
    negatives, log at 0) would give 0 * inf = NaN. Pushing the product inside the
    select keeps the untaken lanes exactly 0, as the user's np.where intends. The NumPy
    tier, which runs the rules on arrays (no nodes), finds the select it made in `_selects`.
    """
    if is_tracer(g) and g.node.prim is where_p:
        cond, a, b = g.node.inputs
        wrap = g.builder.wrap
        if _is_zero(b):
            return _shaped(where_p(wrap(cond), wrap(a) * d, 0.0), g, d)
        if _is_zero(a):
            return _shaped(where_p(wrap(cond), 0.0, wrap(b) * d), g, d)
    elif _selects.table is not None:
        found = _selects.table.get(id(g))
        if found is not None and found[0]() is g:  # g is the other branch where `cond` picks it
            _, cond, zero_second = found
            return _shaped(where_p(cond, g * d, 0.0) if zero_second else where_p(cond, 0.0, g * d), g, d)
    return scale(g, d)


def _shaped(product, g, d):
    """The select's product with the shape g * d has: the zero branch may be what gave g its shape
    (a size-1 array of zeros, where(c, a, np.zeros((1, 1))) of a 0-d c and a)."""
    shape = np.broadcast_shapes(shape_of(g), shape_of(d))
    return product if shape_of(product) == shape else broadcast_to(product, shape)


def _is_zero(node):
    return node.prim is const_p and node.value.size == 1 and node.value.item() == 0


class _Selects(threading.local):
    """While the NumPy tier runs a transform (`eager_selects`): id of each array np.where's
    implementation made with a zero scalar branch -> (weak reference to it, condition, whether the
    zero is the second branch), the facts mul_cotangent reads off a where node. The other branch is
    not held: where the condition picks it, the select's own values are it (holding it kept a chain
    of every cotangent of a loop of writes alive, each select holding the one before)."""
    table = None


_selects = _Selects()


@contextlib.contextmanager
def eager_selects():
    """Record the selects with a zero branch made in this block (the NumPy tier's run of a transform)."""
    saved, _selects.table = _selects.table, {}
    try:
        yield
    finally:
        _selects.table = saved


def _where_impl(cond, a, b):
    out = np.where(cond, a, b)
    table = _selects.table
    if table is not None and isinstance(out, np.ndarray):
        for zero, zero_second in ((b, True), (a, False)):
            if np.size(zero) == 1 and np.asarray(zero).item() == 0:
                key = id(out)
                table[key] = (weakref.ref(out, functools.partial(_forget_select, table, key)), cond, zero_second)
                break
    return out


def _forget_select(table, key, ref):
    """The entry of a select that died goes with it (a reverse pass of n in-place writes makes 2n
    selects of the whole array)."""
    found = table.get(key)
    if found is not None and found[0] is ref:
        del table[key]


# Vectorisable replacements (jitad.backend.kernels) for C-library calls: used in loop nests that
# LLVM can vectorise (no other library call, branch or scalar accumulator in the inner
# loop), where SIMD beats the one-call-per-element libm path several times over.
VECTORISABLE_CALLS = {"np.exp(": "K.fexp(", "np.expm1(": "K.fexpm1(", "np.tanh(": "K.ftanh("}

# --- unary --------------------------------------------------------------------------
negative_p = linear("negative", np.negative, elementwise_shape(np.negative), lambda g, x: (negative_p(g),),
                    kind=Kind.ELEMENTWISE, scalar="(-{0})", ufunc=np.negative, simplify=_cancel_double_negation,
                    short="neg")
sqrt_p = unary("sqrt", np.sqrt, lambda x, y: 0.5 / y, "np.sqrt({0})", domain=(0.1, 3.0), inline_cost=EXPENSIVE)
cbrt_p = unary("cbrt", np.cbrt, lambda x, y: 1.0 / (3.0 * y * y), "np.cbrt({0})", domain=(0.1, 3.0),
               inline_cost=EXPENSIVE)
reciprocal_p = unary("reciprocal", np.reciprocal, lambda x, y: -(y * y), "(1.0 / {0})", domain=(0.5, 3.0),
                      inline_cost=EXPENSIVE, short="recip")
square_p = unary("square", np.square, lambda x, y: 2.0 * x, "({0} * {0})")
exp_p = unary("exp", np.exp, lambda x, y: y, "np.exp({0})", inline_cost=EXPENSIVE)
exp2_p = unary("exp2", np.exp2, lambda x, y: y * LN2, "np.exp2({0})", inline_cost=EXPENSIVE)
expm1_p = unary("expm1", np.expm1, lambda x, y: y + 1.0, "np.expm1({0})", inline_cost=EXPENSIVE)
log_p = unary("log", np.log, lambda x, y: 1.0 / x, "np.log({0})", domain=(0.1, 3.0), inline_cost=EXPENSIVE)
log1p_p = unary("log1p", np.log1p, lambda x, y: 1.0 / (1.0 + x), "np.log1p({0})", domain=(-0.5, 3.0),
                inline_cost=EXPENSIVE)
log2_p = unary("log2", np.log2, lambda x, y: 1.0 / (x * LN2), "np.log2({0})", domain=(0.1, 3.0), inline_cost=EXPENSIVE)
log10_p = unary("log10", np.log10, lambda x, y: 1.0 / (x * LN10), "np.log10({0})", domain=(0.1, 3.0),
                inline_cost=EXPENSIVE)
sin_p = unary("sin", np.sin, lambda x, y: cos_p(x), "np.sin({0})", inline_cost=EXPENSIVE)
cos_p = unary("cos", np.cos, lambda x, y: -sin_p(x), "np.cos({0})", inline_cost=EXPENSIVE)
tan_p = unary("tan", np.tan, lambda x, y: 1.0 + y * y, "np.tan({0})", domain=(-1.2, 1.2), inline_cost=EXPENSIVE)
arcsin_p = unary("arcsin", np.arcsin, lambda x, y: 1.0 / sqrt_p(1.0 - x * x), "np.arcsin({0})", domain=(-0.9, 0.9),
                 inline_cost=EXPENSIVE)
arccos_p = unary("arccos", np.arccos, lambda x, y: -1.0 / sqrt_p(1.0 - x * x), "np.arccos({0})", domain=(-0.9, 0.9),
                 inline_cost=EXPENSIVE)
arctan_p = unary("arctan", np.arctan, lambda x, y: 1.0 / (1.0 + x * x), "np.arctan({0})", inline_cost=EXPENSIVE)
sinh_p = unary("sinh", np.sinh, lambda x, y: cosh_p(x), "np.sinh({0})", inline_cost=EXPENSIVE)
cosh_p = unary("cosh", np.cosh, lambda x, y: sinh_p(x), "np.cosh({0})", inline_cost=EXPENSIVE)
tanh_p = unary("tanh", np.tanh, lambda x, y: 1.0 - y * y, "np.tanh({0})", inline_cost=EXPENSIVE)
arcsinh_p = unary("arcsinh", np.arcsinh, lambda x, y: 1.0 / sqrt_p(x * x + 1.0), "np.arcsinh({0})",
                  inline_cost=EXPENSIVE)
arccosh_p = unary("arccosh", np.arccosh, lambda x, y: 1.0 / sqrt_p(x * x - 1.0), "np.arccosh({0})", domain=(1.2, 3.0),
                  inline_cost=EXPENSIVE)
arctanh_p = unary("arctanh", np.arctanh, lambda x, y: 1.0 / (1.0 - x * x), "np.arctanh({0})", domain=(-0.9, 0.9),
                  inline_cost=EXPENSIVE)
abs_p = unary("abs", np.abs, lambda x, y: sign_p(x), "abs({0})")  # d|x| = 0 at 0
# sqrt whose derivative is 0 at 0 (the subgradient): used by std and norm, where a
# zero argument means "all entries equal / all zero" and the gradient there is 0.
# The inner where keeps the untaken lane finite (1/1, not 1/0) in every higher derivative too.
safe_sqrt_p = unary("safe_sqrt", _safe_sqrt, lambda x, y: where_p(y > 0, 0.5 / where_p(y > 0, y, 1.0), 0.0),
                    "np.sqrt({0})", domain=(0.1, 3.0), inline_cost=EXPENSIVE)
sign_p = _zero_derivative("sign", np.sign, "np.sign({0})")
floor_p = _zero_derivative("floor", np.floor, "np.floor({0})")
ceil_p = _zero_derivative("ceil", np.ceil, "np.ceil({0})")
rint_p = _zero_derivative("rint", np.rint, "np.rint({0})")
trunc_p = _zero_derivative("trunc", np.trunc, "np.trunc({0})")


def _power_scalar(x, exponent):
    return np.power(x, np.asarray(exponent, x.dtype) if x.dtype.kind == "f" else exponent)


def _power_scalar_derivative(x, exponent):
    if exponent == 0:
        return zeros_like(x)  # d(x**0)/dx = 0, also at x = 0
    if exponent == 1:
        return full(shape_of(x), 1, x.dtype)
    if exponent == 2:
        return 2.0 * x
    return exponent * power_scalar_p(x, exponent=exponent - 1)


def _power_scalar_code(exponent):
    if exponent == 2:
        return "({0} * {0})"
    if exponent == 3:
        return "({0} * {0} * {0})"
    if exponent == 0.5:
        return "np.sqrt({0})"
    if exponent == -1:
        return "(1.0 / {0})"
    return "({0} ** {exponent!r})"


power_scalar_p = Primitive(
    "power_scalar", impl=_power_scalar,
    shape_rule=lambda x, exponent: (x.shape, x.dtype if x.dtype.kind == "f" else
                                    np.result_type(x.dtype, type(exponent))),
    jvp=lambda primals, tangents, out, exponent: tangents[0] * _power_scalar_derivative(primals[0], exponent),
    vjp=lambda g, out, x, exponent: (g * _power_scalar_derivative(x, exponent),),
    kind=Kind.ELEMENTWISE, scalar=_power_scalar_code, domain=(0.2, 2.0), short="pow")

convert_p = Primitive(
    "convert", impl=lambda x, dtype: x.astype(dtype),
    shape_rule=lambda x, dtype: (x.shape, np.dtype(dtype)),
    jvp=lambda primals, tangents, out, dtype: _convert(tangents[0], dtype),
    vjp=lambda g, out, x, dtype: (_convert(g, x.dtype),),
    kind=Kind.ELEMENTWISE, scalar=lambda dtype: "np.{dtype}({{0}})".format(dtype=np.dtype(dtype).name),
    simplify=lambda node, inputs, values: values[0] if inputs[0].dtype == node.dtype else None)


def _convert(x, dtype):
    """x as `dtype` (no node when it has it already)."""
    return x if x.dtype == np.dtype(dtype) else convert_p(x, dtype=dtype)


# --- binary -------------------------------------------------------------------------
# Either operand of a binary primitive may be a NumPy array (a constant: only the other is
# differentiated), so their derivatives bind primitives instead of using operators, whose
# NumPy-array left operand would reach the NumPy front-end.
def _one(*_):
    return 1.0


def _minus_one(*_):
    return -1.0


def _select_first(x, y):
    """d max(x, y)/dx: 1 where x wins, 1/2 on ties (the cotangent is split evenly)."""
    return where_p(greater_p(x, y), 1.0, where_p(equal_p(x, y), 0.5, 0.0))


add_p = binary("add", np.add, _one, _one, "({0} + {1})", simplify=drop_neutral(0))
subtract_p = binary("subtract", np.subtract, _one, _minus_one, "({0} - {1})",
                    simplify=drop_neutral(0, either_side=False), short="sub")
multiply_p = binary("multiply", np.multiply, lambda x, y, o: y, lambda x, y, o: x, "({0} * {1})",
                    simplify=drop_neutral(1), short="mul")
divide_p = binary("divide", np.true_divide, lambda x, y, o: 1.0 / y, lambda x, y, o: -o / y, "({0} / {1})",
                  domain=(0.5, 2.0), inline_cost=EXPENSIVE, short="div")
def _sum_of_squares(x, y):
    """x * x + y * y."""
    return add_p(multiply_p(x, x), multiply_p(y, y))


def _power_dx(x, y, o):
    """y x^(y-1), and 0 at x = y = 0 (d(x**0)/dx = 0 also at 0). Only that one point is
    selected away, so at y = 0 elsewhere the value is 0 and its y-derivative 1/x survives."""
    origin = logical_and_p(equal_p(y, 0), equal_p(x, 0))
    return where_p(origin, 0.0, multiply_p(y, power_p(where_p(origin, 1.0, x), subtract_p(y, 1.0))))


power_p = binary(
    "power", np.power, _power_dx,
    lambda x, y, o: where_p(x == 0, 0.0, o * log_p(where_p(x == 0, 1.0, x))),
    "({0} ** {1})", domain=(0.3, 2.0), inline_cost=EXPENSIVE, short="pow")
arctan2_p = binary("arctan2", np.arctan2,
                   lambda y, x, o: divide_p(x, _sum_of_squares(x, y)),
                   lambda y, x, o: divide_p(-y, _sum_of_squares(x, y)),
                   "np.arctan2({0}, {1})", domain=(0.3, 2.0), inline_cost=EXPENSIVE)
hypot_p = binary("hypot", np.hypot,
                 lambda x, y, o: where_p(o == 0, 0.0, divide_p(x, where_p(o == 0, 1.0, o))),
                 lambda x, y, o: where_p(o == 0, 0.0, divide_p(y, where_p(o == 0, 1.0, o))),
                 "np.hypot({0}, {1})", inline_cost=EXPENSIVE)
# C's fmod, exact as NumPy's (x - trunc(x / y) * y rounds: 5.0 fmod 0.1 would be 0, not 0.09999999999999973):
# out = x - n y for the integer n = (x - out) / y, so d/dx = 1 and d/dy = -n
fmod_p = binary("fmod", np.fmod, _one, lambda x, y, o: negative_p(rint_p(divide_p(subtract_p(x, o), y))),
                "np.fmod({0}, {1})",
                domain=((-2.0, 2.0), (0.7, 0.9)), inline_cost=EXPENSIVE)
# (NaN-propagating, as NumPy's: Python's max/min drop a NaN that comes second)
maximum_p = binary("maximum", np.maximum, lambda x, y, o: _select_first(x, y),
                   lambda x, y, o: _select_first(y, x), "K.nmax({0}, {1})")
minimum_p = binary("minimum", np.minimum, lambda x, y, o: _select_first(-x, -y),
                   lambda x, y, o: _select_first(-y, -x), "K.nmin({0}, {1})")
# fmax/fmin ignore a NaN operand: the other one gets the whole cotangent.
fmax_p = binary("fmax", np.fmax,
                lambda x, y, o: where_p(isnan_p(y), 1.0, _select_first(x, y)),
                lambda x, y, o: where_p(isnan_p(x), 1.0, _select_first(y, x)), "np.fmax({0}, {1})")
fmin_p = binary("fmin", np.fmin,
                lambda x, y, o: where_p(isnan_p(y), 1.0, _select_first(-x, -y)),
                lambda x, y, o: where_p(isnan_p(x), 1.0, _select_first(-y, -x)), "np.fmin({0}, {1})")
logaddexp_p = binary("logaddexp", np.logaddexp, lambda x, y, o: exp_p(subtract_p(x, o)),
                     lambda x, y, o: exp_p(subtract_p(y, o)),
                     "np.logaddexp({0}, {1})", inline_cost=EXPENSIVE)


def _where_jvp(primals, tangents, out):
    cond = primals[0]
    _, ta, tb = tangents
    ta = zeros_like(out) if ta is None else ta
    tb = zeros_like(out) if tb is None else tb
    return broadcast_to(where_p(cond, ta, tb), shape_of(out))


def _where_vjp(g, out, cond, a, b):
    return (None, unbroadcast(where_p(cond, g, 0.0), shape_of(a)),
            unbroadcast(where_p(cond, 0.0, g), shape_of(b)))


def _where_shape(cond, a, b):
    shape = np.broadcast_shapes(cond.shape, a.shape, b.shape)
    return shape, np.result_type(a.dtype, b.dtype)


where_p = Primitive("where", impl=_where_impl, shape_rule=_where_shape, jvp=_where_jvp, vjp=_where_vjp,
                    kind=Kind.ELEMENTWISE, scalar="({1} if {0} else {2})", vjp_reads=(0,))

# --- predicates: boolean results, no derivative -------------------------------------
greater_p = comparison("greater", np.greater, "({0} > {1})", short="gt")
greater_equal_p = comparison("greater_equal", np.greater_equal, "({0} >= {1})", short="ge")
less_p = comparison("less", np.less, "({0} < {1})", short="lt")
less_equal_p = comparison("less_equal", np.less_equal, "({0} <= {1})", short="le")
equal_p = comparison("equal", np.equal, "({0} == {1})", short="eq")
not_equal_p = comparison("not_equal", np.not_equal, "({0} != {1})", short="ne")
logical_and_p = comparison("logical_and", np.logical_and, "({0} and {1})", short="and")
logical_or_p = comparison("logical_or", np.logical_or, "({0} or {1})", short="or")
logical_xor_p = comparison("logical_xor", np.logical_xor, "(bool({0}) != bool({1}))", short="xor")
logical_not_p = comparison("logical_not", np.logical_not, "(not {0})", short="not")
isnan_p = comparison("isnan", np.isnan, "np.isnan({0})")
isfinite_p = comparison("isfinite", np.isfinite, "np.isfinite({0})")
isinf_p = comparison("isinf", np.isinf, "np.isinf({0})")
