"""Elementwise primitives: one row each, with local derivatives and the scalar code of one element."""
import math

import numpy as np

from jitad.primitives.core import Primitive, binary, comparison, elementwise_shape, unary, unbroadcast

LN2, LN10 = math.log(2.0), math.log(10.0)


def _safe_sqrt(x):
    return np.sqrt(x)


def _linear_unary(name, np_fn, scalar):
    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn),
                     jvp=lambda primals, tangents, out: np_fn(tangents[0]),
                     vjp=lambda g, out, x: (np_fn(g),), kind="elementwise", scalar=scalar)


def _zero_derivative(name, np_fn, scalar):
    """Piecewise-constant functions: derivative 0 wherever it exists (NumPy-AD convention)."""
    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn),
                     jvp=lambda primals, tangents, out: np.zeros_like(out),
                     vjp=lambda g, out, x: (None,), kind="elementwise", scalar=scalar)


# Vectorisable replacements (jitad.backend.kernels) for C-library calls: used in loop nests that
# LLVM can vectorise (no other library call, branch or scalar accumulator in the inner
# loop), where SIMD beats the one-call-per-element libm path several times over.
VECTORISABLE_CALLS = {"np.exp(": "K.fexp(", "np.expm1(": "K.fexpm1(", "np.tanh(": "K.ftanh("}

# --- unary --------------------------------------------------------------------------
negative_p = _linear_unary("negative", np.negative, "(-{0})")
sqrt_p = unary("sqrt", np.sqrt, lambda x, y: 0.5 / y, "np.sqrt({0})", domain=(0.1, 3.0))
cbrt_p = unary("cbrt", np.cbrt, lambda x, y: 1.0 / (3.0 * y * y), "np.cbrt({0})", domain=(0.1, 3.0))
reciprocal_p = unary("reciprocal", np.reciprocal, lambda x, y: -(y * y), "(1.0 / {0})", domain=(0.5, 3.0))
square_p = unary("square", np.square, lambda x, y: 2.0 * x, "({0} * {0})")
exp_p = unary("exp", np.exp, lambda x, y: y, "np.exp({0})")
exp2_p = unary("exp2", np.exp2, lambda x, y: y * LN2, "np.exp2({0})")
expm1_p = unary("expm1", np.expm1, lambda x, y: y + 1.0, "np.expm1({0})")
log_p = unary("log", np.log, lambda x, y: 1.0 / x, "np.log({0})", domain=(0.1, 3.0))
log1p_p = unary("log1p", np.log1p, lambda x, y: 1.0 / (1.0 + x), "np.log1p({0})", domain=(-0.5, 3.0))
log2_p = unary("log2", np.log2, lambda x, y: 1.0 / (x * LN2), "np.log2({0})", domain=(0.1, 3.0))
log10_p = unary("log10", np.log10, lambda x, y: 1.0 / (x * LN10), "np.log10({0})", domain=(0.1, 3.0))
sin_p = unary("sin", np.sin, lambda x, y: np.cos(x), "np.sin({0})")
cos_p = unary("cos", np.cos, lambda x, y: -np.sin(x), "np.cos({0})")
tan_p = unary("tan", np.tan, lambda x, y: 1.0 + y * y, "np.tan({0})", domain=(-1.2, 1.2))
arcsin_p = unary("arcsin", np.arcsin, lambda x, y: 1.0 / np.sqrt(1.0 - x * x), "np.arcsin({0})", domain=(-0.9, 0.9))
arccos_p = unary("arccos", np.arccos, lambda x, y: -1.0 / np.sqrt(1.0 - x * x), "np.arccos({0})", domain=(-0.9, 0.9))
arctan_p = unary("arctan", np.arctan, lambda x, y: 1.0 / (1.0 + x * x), "np.arctan({0})")
sinh_p = unary("sinh", np.sinh, lambda x, y: np.cosh(x), "np.sinh({0})")
cosh_p = unary("cosh", np.cosh, lambda x, y: np.sinh(x), "np.cosh({0})")
tanh_p = unary("tanh", np.tanh, lambda x, y: 1.0 - y * y, "np.tanh({0})")
arcsinh_p = unary("arcsinh", np.arcsinh, lambda x, y: 1.0 / np.sqrt(x * x + 1.0), "np.arcsinh({0})")
arccosh_p = unary("arccosh", np.arccosh, lambda x, y: 1.0 / np.sqrt(x * x - 1.0), "np.arccosh({0})", domain=(1.2, 3.0))
arctanh_p = unary("arctanh", np.arctanh, lambda x, y: 1.0 / (1.0 - x * x), "np.arctanh({0})", domain=(-0.9, 0.9))
abs_p = unary("abs", np.abs, lambda x, y: np.sign(x), "abs({0})")  # d|x| = 0 at 0
# sqrt whose derivative is 0 at 0 (the subgradient): used by std and norm, where a
# zero argument means "all entries equal / all zero" and the gradient there is 0.
# The inner where keeps the untaken lane finite (1/1, not 1/0) in every higher derivative too.
safe_sqrt_p = unary("safe_sqrt", _safe_sqrt, lambda x, y: np.where(y > 0, 0.5 / np.where(y > 0, y, 1.0), 0.0),
                    "np.sqrt({0})", domain=(0.1, 3.0))
sign_p = _zero_derivative("sign", np.sign, "np.sign({0})")
floor_p = _zero_derivative("floor", np.floor, "np.floor({0})")
ceil_p = _zero_derivative("ceil", np.ceil, "np.ceil({0})")
rint_p = _zero_derivative("rint", np.rint, "np.rint({0})")
trunc_p = _zero_derivative("trunc", np.trunc, "np.trunc({0})")


def _power_scalar(x, exponent):
    return np.power(x, np.asarray(exponent, x.dtype) if x.dtype.kind == "f" else exponent)


def _power_scalar_derivative(x, exponent):
    if exponent == 0:
        return np.zeros_like(x)  # d(x**0)/dx = 0, also at x = 0
    if exponent == 1:
        return np.ones_like(x)
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
    shape_rule=lambda x, exponent: (x.shape, x.dtype if x.dtype.kind == "f" else np.result_type(x.dtype, type(exponent))),
    jvp=lambda primals, tangents, out, exponent: tangents[0] * _power_scalar_derivative(primals[0], exponent),
    vjp=lambda g, out, x, exponent: (g * _power_scalar_derivative(x, exponent),),
    kind="elementwise", scalar=_power_scalar_code, domain=(0.2, 2.0))

convert_p = Primitive(
    "convert", impl=lambda x, dtype: x.astype(dtype),
    shape_rule=lambda x, dtype: (x.shape, np.dtype(dtype)),
    jvp=lambda primals, tangents, out, dtype: tangents[0].astype(dtype),
    vjp=lambda g, out, x, dtype: (g.astype(x.dtype),),
    kind="elementwise", scalar=lambda dtype: "np.{dtype}({{0}})".format(dtype=np.dtype(dtype).name))


# --- binary -------------------------------------------------------------------------
def _one(*_):
    return 1.0


def _minus_one(*_):
    return -1.0


def _select_first(x, y):
    """d max(x, y)/dx: 1 where x wins, 1/2 on ties (the cotangent is split evenly)."""
    return np.where(x > y, 1.0, np.where(x == y, 0.5, 0.0))


add_p = binary("add", np.add, _one, _one, "({0} + {1})")
subtract_p = binary("subtract", np.subtract, _one, _minus_one, "({0} - {1})")
multiply_p = binary("multiply", np.multiply, lambda x, y, o: y, lambda x, y, o: x, "({0} * {1})")
divide_p = binary("divide", np.true_divide, lambda x, y, o: 1.0 / y, lambda x, y, o: -o / y, "({0} / {1})",
                  domain=(0.5, 2.0))
def _power_dx(x, y, o):
    """y x^(y-1), and 0 at x = y = 0 (d(x**0)/dx = 0 also at 0). Only that one point is
    selected away, so at y = 0 elsewhere the value is 0 and its y-derivative 1/x survives."""
    origin = (y == 0) & (x == 0)
    return np.where(origin, 0.0, y * np.power(np.where(origin, 1.0, x), y - 1.0))


power_p = binary(
    "power", np.power, _power_dx,
    lambda x, y, o: np.where(x == 0, 0.0, o * np.log(np.where(x == 0, 1.0, x))),
    "({0} ** {1})", domain=(0.3, 2.0))
arctan2_p = binary("arctan2", np.arctan2,
                   lambda y, x, o: x / (x * x + y * y), lambda y, x, o: -y / (x * x + y * y),
                   "np.arctan2({0}, {1})", domain=(0.3, 2.0))
hypot_p = binary("hypot", np.hypot,
                 lambda x, y, o: np.where(o == 0, 0.0, x / np.where(o == 0, 1.0, o)),
                 lambda x, y, o: np.where(o == 0, 0.0, y / np.where(o == 0, 1.0, o)),
                 "np.hypot({0}, {1})")
maximum_p = binary("maximum", np.maximum, lambda x, y, o: _select_first(x, y),
                   lambda x, y, o: _select_first(y, x), "max({0}, {1})")
minimum_p = binary("minimum", np.minimum, lambda x, y, o: _select_first(-x, -y),
                   lambda x, y, o: _select_first(-y, -x), "min({0}, {1})")
# fmax/fmin ignore a NaN operand: the other one gets the whole cotangent.
fmax_p = binary("fmax", np.fmax,
                lambda x, y, o: np.where(np.isnan(y), 1.0, _select_first(x, y)),
                lambda x, y, o: np.where(np.isnan(x), 1.0, _select_first(y, x)), "np.fmax({0}, {1})")
fmin_p = binary("fmin", np.fmin,
                lambda x, y, o: np.where(np.isnan(y), 1.0, _select_first(-x, -y)),
                lambda x, y, o: np.where(np.isnan(x), 1.0, _select_first(-y, -x)), "np.fmin({0}, {1})")
logaddexp_p = binary("logaddexp", np.logaddexp, lambda x, y, o: np.exp(x - o), lambda x, y, o: np.exp(y - o),
                     "np.logaddexp({0}, {1})")


def _where_jvp(primals, tangents, out):
    cond = primals[0]
    _, ta, tb = tangents
    ta = np.zeros_like(out) if ta is None else ta
    tb = np.zeros_like(out) if tb is None else tb
    return np.broadcast_to(np.where(cond, ta, tb), np.shape(out))


def _where_vjp(g, out, cond, a, b):
    return (None, unbroadcast(np.where(cond, g, 0.0), np.shape(a)),
            unbroadcast(np.where(cond, 0.0, g), np.shape(b)))


def _where_shape(cond, a, b):
    shape = np.broadcast_shapes(cond.shape, a.shape, b.shape)
    return shape, np.result_type(a.dtype, b.dtype)


where_p = Primitive("where", impl=np.where, shape_rule=_where_shape, jvp=_where_jvp, vjp=_where_vjp,
                    kind="elementwise", scalar="({1} if {0} else {2})")

# --- predicates: boolean results, no derivative -------------------------------------
greater_p = comparison("greater", np.greater, "({0} > {1})")
greater_equal_p = comparison("greater_equal", np.greater_equal, "({0} >= {1})")
less_p = comparison("less", np.less, "({0} < {1})")
less_equal_p = comparison("less_equal", np.less_equal, "({0} <= {1})")
equal_p = comparison("equal", np.equal, "({0} == {1})")
not_equal_p = comparison("not_equal", np.not_equal, "({0} != {1})")
logical_and_p = comparison("logical_and", np.logical_and, "({0} and {1})")
logical_or_p = comparison("logical_or", np.logical_or, "({0} or {1})")
logical_xor_p = comparison("logical_xor", np.logical_xor, "(bool({0}) != bool({1}))")
logical_not_p = comparison("logical_not", np.logical_not, "(not {0})")
isnan_p = comparison("isnan", np.isnan, "np.isnan({0})")
isfinite_p = comparison("isfinite", np.isfinite, "np.isfinite({0})")
isinf_p = comparison("isinf", np.isinf, "np.isinf({0})")
