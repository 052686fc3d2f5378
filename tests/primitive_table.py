"""The primitive table: one row per primitive (and per NumPy / SciPy entry point built from them).

Every test of a primitive is generated from this one table:

- tests/test_primitives.py: each row's forward value equals NumPy's, and check_grads compares
  forward and reverse mode with central finite differences at order 1 and 2 (3 in reverse),
  in float64 and float32, on the reference executor; a registered primitive that no row reaches
  fails `test_every_primitive_has_a_row`.
- tests/test_compiled.py: the compiled (Numba) path equals the reference executor. Rows are
  packed into generated groups (`compiled_groups`), one kernel for many rows, because each Numba
  compile costs seconds: values and reverse mode for the rows of a group; the rows with
  `compiled_order=2` in groups of their own, whose one transform compiles the values, reverse
  mode, second order and forward mode.

A row is a function of arrays, the domain its inputs are drawn from (away from kinks and
poles), and the shape groups it runs on (broadcasting groups such as `[(), (3,), (2, 1, 3)]`).
Adding a primitive adds a row here; its section puts it in a compiled group.
"""
from dataclasses import dataclass, replace

import numpy as np
import optree
import scipy.linalg
import scipy.special as sc
import scipy.stats as st
from scipy.stats import norm  # bound before tracing: the class methods are swapped, so it works

import jitad
from jitad import primitives as P
from jitad.primitives import REGISTRY

# --- shape groups -------------------------------------------------------------------------
UNARY = [(), (3,), (2, 3), (2, 1, 3)]
BINARY = [((), ()), ((3,), (3,)), ((2, 3), (2, 3)), ((2, 1), (1, 3)), ((3,), ()), ((), (2, 3)),
          ((4, 1, 3), (2, 1))]
TERNARY = [((), (), ()), ((2, 3), (2, 3), (2, 3)), ((2, 1), (1, 3), ()), ((3,), (2, 1), (1,))]

SECTION = ""  # a row's `group` / `compiled_order` left to its section's default


@dataclass(frozen=True)
class Row:
    """One row of the table.

    name: test id; fun: the function of arrays; shapes: list of per-argument shape tuples;
    domain: (low, high) for every argument, or one (low, high) per argument; dtype of the inputs;
    the modes and the highest order check_grads runs (all of them unless the row says why not;
    0: the forward value only, for functions finite differences cannot follow);
    make_args(shapes, seed): inputs not drawn uniformly from `domain` (conditioned matrices,
    fixed SciPy parameters); rtol: of the forward value against NumPy's; third_order / float32:
    whether the reverse^3 and float32 checks apply (a row that opts out says why);
    group: the compiled group (SECTION: its section's; None: not compiled, the row says why);
    compiled_order: 1 = values and reverse mode compiled, 2 = also second order and forward mode
        (in one transform: tests/test_compiled.py's check_group_second_order);
    compiled_shapes: index into `shapes` of the shapes the compiled check uses.
    """
    name: str
    fun: object
    shapes: tuple
    domain: tuple = (-2.0, 2.0)
    dtype: type = np.float64
    modes: tuple = ("fwd", "rev")
    max_order: int = 2
    make_args: object = None
    rtol: float = 1e-12
    third_order: bool = True
    float32: bool = True
    group: object = SECTION
    compiled_order: object = SECTION
    compiled_shapes: int = -1

    def args(self, shapes, seed=0):
        if self.make_args is not None:
            return self.make_args(shapes, seed)
        rng = np.random.default_rng(seed)
        domains = self.domain if isinstance(self.domain[0], tuple) else (self.domain,) * len(shapes)
        return tuple(np.asarray(rng.uniform(lo, hi, shape), self.dtype) for (lo, hi), shape in zip(domains, shapes))

    def compiled_args(self):
        return self.args(self.shapes[self.compiled_shapes], seed=5)


def section(rows, group, compiled_order):
    """Give a section's rows their compiled group and order, where a row does not set its own."""
    return [replace(row, group=group if row.group == SECTION else row.group,
                    compiled_order=compiled_order if row.compiled_order == SECTION else row.compiled_order)
            for row in rows]


def _unary_rows():
    rows = []
    names = ["sqrt", "cbrt", "reciprocal", "square", "exp", "exp2", "expm1", "log", "log1p", "log2",
             "log10", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh",
             "arccosh", "arctanh", "negative", "positive", "absolute", "fabs", "deg2rad", "rad2deg"]
    for name in names:
        ufunc = getattr(np, name)
        prim = REGISTRY.get({"absolute": "abs", "fabs": "abs"}.get(name, name))
        domain = prim.domain if prim is not None and prim.domain else (-2.0, 2.0)
        if name in ("absolute", "fabs"):
            domain = (-2.0, 2.0)  # both signs; random points are never within eps of the kink
        rows.append(Row(name, ufunc, [(s,) for s in UNARY], domain))
    rows += [
        Row("operator_neg", lambda x: -x, [((2, 3),)]),
        Row("operator_abs", lambda x: abs(x), [((2, 3),)]),
        Row("operator_pos", lambda x: +x * x, [((3,),)]),
    ]
    return rows


def _binary_rows():
    rows = []
    for name, domain in [("add", (-2.0, 2.0)), ("subtract", (-2.0, 2.0)), ("multiply", (-2.0, 2.0)),
                         ("divide", ((-2.0, 2.0), (0.5, 2.0))), ("maximum", (-2.0, 2.0)),
                         ("minimum", (-2.0, 2.0)), ("fmax", (-2.0, 2.0)), ("fmin", (-2.0, 2.0)),
                         ("hypot", (-2.0, 2.0)), ("logaddexp", (-2.0, 2.0)), ("logaddexp2", (-2.0, 2.0)),
                         ("arctan2", ((0.3, 2.0), (-2.0, 2.0))), ("power", ((0.3, 2.0), (-2.0, 2.0))),
                         ("float_power", ((0.3, 2.0), (-2.0, 2.0))), ("fmod", ((2.1, 2.9), (1.9, 2.0)))]:
        rows.append(Row(name, getattr(np, name), BINARY, domain))
    rows += [
        Row("operator_add", lambda x, y: x + y + 1.0 + (2.0 + x), BINARY[:4]),
        Row("operator_sub", lambda x, y: x - y - 1.0 - (2.0 - y), BINARY[:4]),
        Row("operator_mul", lambda x, y: x * y * 3.0 * (2.0 * x), BINARY[:4]),
        Row("operator_div", lambda x, y: x / y / 3.0 + 2.0 / y, BINARY[:4], ((-2.0, 2.0), (0.5, 2.0))),
        Row("operator_pow", lambda x, y: x ** y, BINARY[:4], ((0.3, 2.0), (-2.0, 2.0))),
        Row("operator_rpow", lambda x: 2.0 ** x + np.e ** x, [((3,),), ((),)]),
    ]
    for exponent in [0, 1, 2, 3, -1, 0.5, 2.5, -1.5, 1 / 3, 7, np.float64(2.0), np.array(3.0)]:
        rows.append(Row(f"power_scalar[{exponent!r}]", lambda x, e=exponent: x ** e,
                        [(s,) for s in UNARY[:3]], (0.2, 2.0)))
    rows += [
        Row("power_scalar_negative_base", lambda x: x ** 3 + np.power(x, 2) + x ** -2, [((2, 3),)], (-2.0, -0.3)),
        Row("square_via_multiply", lambda x: x * x, [((3,),)]),
        Row("clip", lambda x: np.clip(x, -0.5, 0.5), [((2, 3),)], (-1.0, 1.0)),
        Row("clip_traced_bounds", lambda x, lo, hi: np.clip(x, lo, hi), TERNARY[:2],
            ((-1.0, 1.0), (-0.4, -0.1), (0.1, 0.4))),
        Row("clip_one_sided", lambda x: np.clip(x, None, 0.5) + x.clip(min=-0.5), [((2, 3),)], (-1.0, 1.0)),
        Row("where_traced_cond", lambda x, y: np.where(x > y, x * y, x - y), BINARY[:5]),
        Row("where_concrete_cond", lambda x, y: np.where(np.arange(3) % 2 == 0, np.sin(x), y), [((3,), (3,)),
                                                                                               ((2, 3), ())]),
        Row("where_scalar_branches", lambda x: np.where(x > 0, x, 0.0) + np.where(x < 0, 1.0, x * x),
            [((2, 3),)]),
        Row("where_three_traced", lambda c, x, y: np.where(c > 0, x, y), TERNARY),
    ]
    return rows


def _predicate_rows():
    """Boolean primitives have no derivative; they must flow through np.where untouched."""
    return [
        Row("greater_less", lambda x, y: np.where(x > y, x, 0.0) + np.where(x < y, y, 0.0), BINARY[:3]),
        Row("greater_equal_less_equal", lambda x, y: np.where(x >= y, x * x, y) + np.where(x <= y, x, y * y),
            BINARY[:3]),
        Row("equal_not_equal", lambda x, y: np.where(x == y, 0.0, x) + np.where(x != y, y, 0.0), BINARY[:3]),
        Row("logical", lambda x, y: np.where((x > 0) & (y > 0), x * y, 0.0)
            + np.where((x > 0) | (y > 0), x, y) + np.where((x > 0) ^ (y > 0), y, x)
            + np.where(~(x > 0), x, 2.0 * x) + np.where(np.logical_not(y > 0), y, -y), BINARY[:3]),
        Row("logical_functions", lambda x, y: np.where(np.logical_and(x > 0, y > 0), x, y)
            + np.where(np.logical_or(x > 0, y > 0), x, y) + np.where(np.logical_xor(x > 0, y > 0), x, y),
            BINARY[:3]),
        Row("bitwise_on_booleans", lambda x: np.where((np.arange(3) > 0) & (x > 0), x, 2.0 * x)
            + np.where((np.arange(3) > 1) | (x > 0), x * x, x) + np.where((np.arange(3) > 0) ^ (x > 0), x, 0.0)
            + np.where(~(x > 0), x, 0.0) + np.where(np.invert(x > 0), 3.0 * x, 0.0), [((3,),)]),
        Row("isnan_isfinite_isinf", lambda x: np.where(np.isnan(x), 0.0, x) + np.where(np.isfinite(x), x * x, 0.0)
            + np.where(np.isinf(x), 0.0, np.sin(x)), [((2, 3),)]),
        # piecewise-constant functions: derivative 0 away from their jumps
        Row("sign", lambda x: x * np.sign(x), [((2, 3),)], (0.2, 2.0)),
        Row("sign_negative", lambda x: x * np.sign(x), [((2, 3),)], (-2.0, -0.2)),
        Row("floor", lambda x: x * np.floor(x), [((2, 3),)], (1.1, 1.9)),
        Row("ceil", lambda x: x * np.ceil(x), [((2, 3),)], (1.1, 1.9)),
        Row("rint", lambda x: x * np.rint(x) + x * np.round(x) + np.round(x, 1) * x, [((2, 3),)], (1.62, 1.64)),
        Row("trunc", lambda x: x * np.trunc(x), [((2, 3),)], (-1.9, -1.1)),
        Row("mod_floor_divide", lambda x, y: x % y + x // y + np.remainder(x, 1.5) * x + 5.5 % y + 5.5 // y
            + divmod(x, y)[1] * divmod(7.0, x)[1] + np.divmod(x, y)[1] * np.fmod(-x, y), [((3,), (3,))],
            ((2.1, 2.9), (1.9, 2.0))),
        Row("isclose", lambda x, y: np.where(np.isclose(x, y), x, y) + np.where(np.isclose(x, x), y, x), BINARY[:3]),
        # a boolean used as a number (from tests/test_compiled.py's binary group)
        Row("compare_times", lambda x, y: (x < y) * x + (x >= y) * y * 2.0, BINARY[:4]),
    ]


# the reductions' (axis, keepdims) variants that the compiled groups hold: a middle axis, the inner axis
# with keepdims, a pair of axes (all axes and the outer axis are compiled by the `[all]` and `sum_method` rows;
# the others are the same nests in another order)
COMPILED_REDUCTION_AXES = [(1, False), (2, True), ((0, 2), False)]


def _reduction_rows():
    rows = []
    reductions = {
        "sum": np.sum, "mean": np.mean, "prod": np.prod, "max": np.max, "min": np.min,
        "var": np.var, "std": np.std,
    }
    for name, fn in reductions.items():
        domain = (0.5, 1.5) if name == "prod" else (-2.0, 2.0)
        rows.append(Row(f"{name}[all]", fn, [(s,) for s in [(), (3,), (2, 3)]], domain))
        for axis in [0, 1, -1, 2, (0, 2), (2, 0), (0, 1, 2), ()]:
            for keepdims in (False, True):
                # compiled: one loop nest per distinct (axes, keepdims); the others repeat them
                compiled = (axis, keepdims) in COMPILED_REDUCTION_AXES
                rows.append(Row(f"{name}[axis={axis},keepdims={keepdims}]",
                                lambda x, fn=fn, axis=axis, keepdims=keepdims: fn(x, axis=axis, keepdims=keepdims),
                                [((2, 3, 4),)], domain, group=SECTION if compiled else None,
                                compiled_order=2 if (axis, keepdims) == (1, False) else SECTION))
    rows += [
        Row("sum_method", lambda x: x.sum(axis=0) + x.mean(axis=1).sum() + x.prod() + x.max(axis=1, keepdims=True)
            + x.min(0).sum() + x.var() + x.std(axis=1, keepdims=True), [((2, 3),)], (0.5, 1.5)),
        Row("var_ddof", lambda x: np.var(x, ddof=1) + np.std(x, axis=0, ddof=1), [((3, 2),)]),
        Row("average_weights", lambda x, w: np.average(x, axis=0, weights=w), [((3, 2), (3,))],
            ((-2.0, 2.0), (0.5, 1.5))),
        Row("sum_ufunc_reduce", lambda x: np.add.reduce(x, axis=1) + np.multiply.reduce(x, axis=1)
            + np.maximum.reduce(x, axis=1), [((2, 3),)], (0.5, 1.5)),
        Row("max_scalar_input", lambda x: np.max(x) + np.min(x), [((),)]),
    ]
    return rows


def _shape_rows():
    return [
        Row("reshape", lambda x: np.reshape(x, (3, 2)) * np.arange(6.0).reshape(3, 2), [((2, 3),)]),
        Row("reshape_method_minus_one", lambda x: x.reshape(-1) ** 2 + x.reshape(6, 1).ravel(), [((2, 3),)]),
        Row("reshape_add_axes", lambda x: np.sin(x.reshape(1, 2, 1, 3)), [((2, 3),)]),
        Row("ravel_flatten", lambda x: np.ravel(x) * x.flatten(), [((2, 3),)]),
        Row("transpose", lambda x: np.transpose(x) * np.arange(6.0).reshape(3, 2), [((2, 3),)]),
        Row("transpose_axes", lambda x: np.sin(np.transpose(x, (1, 2, 0))) + x.transpose(1, 2, 0),
            [((2, 3, 4),)]),
        Row("dot_T", lambda x: x.T @ x, [((2, 3),)]),
        Row("swapaxes_moveaxis", lambda x: np.swapaxes(x, 0, 2) * np.moveaxis(x, 0, -1).transpose(1, 0, 2),
            [((2, 3, 4),)]),
        Row("slice_basic", lambda x: x[1:] * x[:-1], [((4,),), ((4, 2),)]),
        Row("slice_negative_step", lambda x: x[::-1] * np.arange(5.0) + x[::-2].sum() + x[-1:0:-2].sum(),
            [((5,),)]),
        Row("slice_2d", lambda x: x[1:, ::-2] * x[:-1, 1::2], [((3, 4),)]),
        Row("slice_negative_steps_2d", lambda x: x[::-1, -2::-1] ** 2, [((3, 4),)]),
        Row("slice_empty", lambda x: x[2:2].sum() + x[3:1].sum() + x.sum(), [((4,),)]),
        Row("int_index", lambda x: x[1] * x[-1] + x[0, 2] * x[1, -3], [((2, 3),)]),
        Row("int_index_scalar_result", lambda x: x[0] * x[2] + x[-1], [((3,),)]),
        Row("none_ellipsis", lambda x: x[None, ..., 1] * x[..., None][:, 0] + x[..., 0][None], [((2, 3),)]),
        Row("int_array_index", lambda x: x[[0, 2, 2, -1]] * np.arange(4.0), [((3,),)]),
        Row("int_array_index_axis1", lambda x: x[:, np.array([2, 0, 2])] + x[np.array([[1, 0], [0, 0]])].sum(),
            [((2, 3),)]),
        Row("int_array_index_pair", lambda x: x[[0, 1, 1], [2, 0, 2]] + x[np.array([1, 0]), 1:].sum(),
            [((2, 3),)]),
        Row("int_array_index_split", lambda x: x[[0, 1], :, [1, 0]], [((2, 3, 2),)]),
        Row("bool_mask_index", lambda x: x[np.array([True, False, True])] * 2.0
            + x[np.array([[True, False], [False, True], [True, True]])].sum(), [((3, 2),)]),
        Row("bool_mask_index_full", lambda x: np.sin(x[np.array([[True, False, True], [False, True, True]])]),
            [((2, 3),)]),
        Row("expand_dims", lambda x: np.expand_dims(x, 0) * np.expand_dims(x, -1).sum(-1)
            + np.expand_dims(x, (0, 2)).sum((0, 2)), [((3,),), ((2, 3),)]),
        Row("squeeze", lambda x: np.squeeze(x) * x.squeeze(axis=0).sum(0) + np.squeeze(x, axis=(0, 2)),
            [((1, 3, 1),)]),
        Row("broadcast_to", lambda x: np.broadcast_to(x, (2, 4, 3)) * np.arange(24.0).reshape(2, 4, 3),
            [((3,),), ((4, 1),), ((),)]),
        Row("concatenate", lambda x, y: np.concatenate([x, y, x * y], axis=0), [((2, 3), (2, 3)), ((1, 3), (2, 3))]),
        Row("concatenate_axis1", lambda x, y: np.concatenate([np.sin(x), y], axis=-1), [((2, 3), (2, 1))]),
        Row("concatenate_constant", lambda x: np.concatenate([x, np.ones(2), x[:1]]), [((3,),)]),
        Row("concatenate_axis_none", lambda x, y: np.concatenate([x, y], axis=None), [((2, 2), (3,))]),
        Row("stack", lambda x, y: np.stack([x, y, x * y]) + np.stack([x, y, y], axis=-1).T, [((3,), (3,))]),
        Row("stack_axis1", lambda x, y: np.stack([x, y], axis=1), [((2, 3), (2, 3))]),
        Row("hstack_vstack", lambda x, y: np.hstack([x, y]).sum() * np.vstack([x, y]) + np.column_stack([x, y]).T,
            [((3,), (3,))]),
        Row("np_array_of_traced", lambda x: np.array([x[0] ** 2 - x[1], np.sin(x[1]), 3.0, x[2] * x[0]]),
            [((3,),)]),
        Row("np_array_nested", lambda x, y: np.array([[x, y], [y * x, x + 1.0]]), [((), ()), ((3,), (3,))]),
        Row("np_asarray_list", lambda x: np.asarray([x, 2.0 * x]) @ np.ones(3), [((3,),)]),
        Row("flip", lambda x: np.flip(x) * np.flip(x, axis=1), [((2, 3),)]),
        Row("diff", lambda x: np.diff(x, axis=1) ** 2 + np.diff(x, n=2, axis=0).sum(), [((3, 4),)]),
        Row("roll", lambda x: np.roll(x, 1, axis=1) * x + np.roll(x, -2), [((3, 4),)]),
        Row("tile_repeat", lambda x: np.tile(x, (2, 1)) ** 2 + np.repeat(x, 2, axis=0).sum(), [((2, 3),)]),
        Row("pad_constant", lambda x: np.pad(x, 1) ** 2 + np.pad(x, ((0, 1), (2, 0)), constant_values=1.5).sum(),
            [((2, 3),)]),
        Row("split", lambda x: np.split(x, 2, axis=1)[0] * np.array_split(x, 3, axis=1)[2], [((3, 4),)]),
        Row("sort", lambda x: np.sort(x, axis=1) * np.arange(4.0) + np.sort(x, axis=0) ** 2
            + np.take_along_axis(x, np.argsort(x, axis=0), axis=0) * np.sort(x, axis=None)[:4], [((3, 4),)]),
        Row("median_ptp", lambda x: np.median(x) * np.median(x, axis=1) + np.ptp(x, axis=0)[:3].sum(),
            [((3, 4),)]),
        Row("real_if_close", lambda x: np.real_if_close(x) * x + np.real_if_close(np.sin(x), tol=1000), [((3, 4),), ((),)]),
        Row("fmod_real_imag", lambda x: np.fmod(x * 5.0, 0.7) + np.real(x) * np.conj(x) + np.imag(x), [((3, 4),)],
            domain=(0.02, 0.12)),  # 5x stays below 0.7: no jump of fmod inside a finite-difference step
        Row("cross_kron", lambda x: np.cross(x[:, :3], x[:, 1:]).sum() * np.kron(x[:2, :2], x[1:, 2:]), [((3, 4),)]),
        # `axis` (it overrides axisa/b/c: ignored before, a silently wrong product), the array API's cross
        Row("cross_axis", lambda x: np.cross(x[:, :3], x[:, 1:], axis=0) * 2.0 + np.linalg.cross(x[:, 1:], x[:, :3])
            + np.cross(x[:, :3], x[:, 1:], axisa=0, axisb=0, axisc=0), [((3, 4),)]),
        Row("atleast", lambda x: np.atleast_1d(x) * np.atleast_2d(x), [((),), ((3,),)]),
        Row("astype_float64", lambda x: np.sin(x.astype(np.float64)) * 2.0, [((3,),)]),
        # through float32 and back: finite differences cannot follow the float32 rounding, so the
        # forward value (reference and compiled) only
        Row("astype_float32_roundtrip", lambda x: x.astype(np.float32).astype(np.float64) * x, [((3, 4),)],
            max_order=0, float32=False),
        Row("copy", lambda x: np.copy(x) * x.copy(), [((3,),)]),
        Row("like_constructors", lambda x: x * np.ones_like(x) + np.zeros_like(x) + np.full_like(x, 2.0) * x,
            [((2, 3),)]),
        Row("array_methods", lambda x: x.mT * x.real.T + x.conj().T * x.conjugate().T + x.swapaxes(0, 1), [((2, 3),)]),
        Row("iterate_rows", lambda x: np.stack([r * i for i, r in enumerate(x)]), [((3, 2),)]),
    ]


def _product_rows():
    d = (-1.0, 1.0)
    return [
        Row("dot", np.dot, [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 3), (3, 4)), ((), (2, 3)),
                            ((2, 2, 3), (3, 4)), ((2, 3), (2, 3, 2))], d),
        Row("dot_method", lambda a, b: a.dot(b), [((2, 3), (3,))], d),
        Row("matmul", np.matmul, [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 3), (3, 4)),
                                  ((4, 2, 3), (3, 2)), ((2, 3), (4, 3, 2)), ((2, 1, 2, 3), (3, 3, 2)),
                                  ((3,), (2, 3, 4)), ((2, 3, 4), (4,))], d),
        Row("matmul_operator", lambda a, b: a @ b + (a @ b) @ np.eye(2), [((2, 3), (3, 2))], d),
        Row("rmatmul_constant", lambda b: np.arange(6.0).reshape(2, 3) @ b, [((3,),), ((3, 2),)], d),
        Row("vdot", np.vdot, [((3,), (3,)), ((2, 3), (3, 2))], d),
        Row("inner", np.inner, [((3,), (3,)), ((2, 3), (4, 3)), ((), (3,)), ((2, 2, 3), (3,))], d),
        Row("outer", np.outer, [((3,), (2,)), ((2, 2), (3,)), ((), (3,))], d),
        Row("tensordot", lambda a, b: np.tensordot(a, b, axes=1), [((2, 3), (3, 4)), ((3,), (3, 2))], d),
        Row("tensordot_2", lambda a, b: np.tensordot(a, b), [((2, 3, 4), (3, 4, 2)), ((3, 4), (3, 4))], d),
        Row("tensordot_pairs", lambda a, b: np.tensordot(a, b, axes=([1, 0], [0, 2])),
            [((3, 2, 4), (2, 5, 3))], d),
        Row("tensordot_0", lambda a, b: np.tensordot(a, b, axes=0), [((2,), (3,))], d),
        Row("einsum_matmul", lambda a, b: np.einsum("ij,jk->ik", a, b), [((2, 3), (3, 4))], d),
        Row("einsum_implicit", lambda a, b: np.einsum("ij,jk", a, b), [((2, 3), (3, 4))], d),
        Row("einsum_inner_full", lambda a, b: np.einsum("ij,ij->", a, b), [((2, 3), (2, 3))], d),
        Row("einsum_dot", lambda a, b: np.einsum("i,i->", a, b), [((3,), (3,))], d),
        Row("einsum_matvec", lambda a, b: np.einsum("ij,j->i", a, b), [((2, 3), (3,))], d),
        Row("einsum_outer", lambda a, b: np.einsum("i,j->ij", a, b), [((2,), (3,))], d),
        Row("einsum_batched", lambda a, b: np.einsum("bij,bjk->bik", a, b), [((2, 2, 3), (2, 3, 2))], d),
        Row("einsum_mult", lambda a, b: np.einsum("ij,ij->ij", a, b), [((2, 3), (2, 3))], d),
        Row("einsum_abt", lambda a, b: np.einsum("ij,kj->ik", a, b), [((2, 3), (4, 3))], d),
        Row("einsum_sum_free", lambda a, b: np.einsum("ij,jk->i", a, b), [((2, 3), (3, 4))], d),
        Row("einsum_diag_pair", lambda a, b: np.einsum("ii,i->i", a, b), [((3, 3), (3,))], d),
        Row("einsum_trace", lambda a: np.einsum("ii", a), [((3, 3),)], d),
        Row("einsum_diag", lambda a: np.einsum("ii->i", a), [((3, 3),)], d),
        Row("einsum_transpose", lambda a: np.einsum("ij->ji", a), [((2, 3),)], d),
        Row("einsum_sum", lambda a: np.einsum("ijk->j", a), [((2, 3, 4),)], d),
        Row("einsum_three", lambda a, b, c: np.einsum("ij,jk,k->i", a, b, c), [((2, 3), (3, 4), (4,))], d),
        Row("einsum_sublists", lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [0, 2]) + np.einsum(a, [1, 0], b, [0, 2]),
            [((2, 3), (3, 2)), ((3, 3), (3, 3))], d),
        Row("einsum_sublists_ellipsis", lambda a, b: np.einsum(a, [Ellipsis, 0, 1], b, [Ellipsis, 1, 2], [Ellipsis, 0, 2]),
            [((2, 2, 3), (2, 3, 4)), ((2, 3), (2, 3, 4))], d),
        Row("multi_dot", lambda a, b, c: np.linalg.multi_dot([a, b, c]), [((2, 3), (3, 4), (4, 2))], d),
        Row("trace", np.trace, [((3, 3),), ((2, 4),), ((3, 2),)]),
        Row("trace_offset_axes", lambda x: np.trace(x, offset=1) + np.trace(x, -1, 1, 2).sum() + x.trace(),
            [((3, 3, 3),)]),
        Row("diag_of_vector", lambda v: np.diag(v) * np.arange(9.0).reshape(3, 3), [((3,),)]),
        Row("diag_of_vector_offset", lambda v: np.diag(v, 1) + np.diag(v, k=-1)[::-1], [((2,),)]),
        Row("diag_of_matrix", lambda x: np.diag(x) + np.diag(x, 1)[0] + np.diag(x, -1)[-1], [((3, 3),), ((3, 4),)]),
        Row("diagonal", lambda x: np.diagonal(x) * x.diagonal(1) .sum(), [((3, 4),)]),
        Row("diagonal_axes", lambda x: np.diagonal(x, 0, 1, 2) + np.diagonal(x, -1, 2, 0).sum(), [((2, 3, 3),)]),
        Row("triu", lambda x: np.triu(x) + np.triu(x, 1) * 2.0 + np.triu(x, -1), [((3, 3),), ((3, 4),), ((2, 3, 3),)]),
        Row("tril", lambda x: np.tril(x) + np.tril(x, -1) * 2.0 + np.tril(x, 2), [((3, 3),), ((4, 3),), ((2, 3, 3),)]),
        Row("cumsum", lambda x: np.cumsum(x) + x.cumsum().sum(), [((4,),), ((2, 3),)]),
        Row("cumsum_axis", lambda x: np.cumsum(x, axis=0) * np.cumsum(x, axis=-1) + np.add.accumulate(x, axis=1),
            [((2, 3),), ((3, 2),)]),
        Row("norm", np.linalg.norm, [((3,),), ((2, 3),), ((2, 2, 3),)]),
        Row("norm_vector_ords", lambda x: np.linalg.norm(x, 1) + np.linalg.norm(x, 2) + np.linalg.norm(x, np.inf)
            + np.linalg.norm(x, -np.inf) + np.linalg.norm(x, 3) + np.linalg.norm(x, 0.5), [((4,),)]),
        Row("norm_matrix_ords", lambda x: np.linalg.norm(x, "fro") + np.linalg.norm(x, 1) + np.linalg.norm(x, np.inf)
            + np.linalg.norm(x, -1) + np.linalg.norm(x, -np.inf), [((3, 4),)]),
        Row("norm_axis", lambda x: np.linalg.norm(x, axis=1) + np.linalg.norm(x, 1, axis=0).sum()
            + np.linalg.norm(x, np.inf, axis=-1), [((2, 3),)]),
        Row("norm_axis_pair_keepdims", lambda x: np.linalg.norm(x, axis=(1, 2), keepdims=True)
            * np.linalg.norm(x, keepdims=True) + np.linalg.norm(x, "fro", axis=(0, 2)).sum(), [((2, 3, 2),)]),
    ]


def _direct_rows():
    """Primitives that the NumPy API only reaches inside derivatives: exercised directly."""
    idx = np.array([2, 0, 2, 1])
    return [
        Row("pad_p", lambda g: P.pad_p(g, starts=(1, 3), steps=(1, -1), shape=(4, 4)), [((2, 3),)]),
        Row("slice_p", lambda x: P.slice_p(x, starts=(1, 3), steps=(2, -1), shape=(2, 3)), [((4, 4),)]),
        Row("diag_embed_p", lambda g: P.diag_embed_p(g, shape=(2, 3, 4), offset=1, axis1=1, axis2=2),
            [((2, 3),)]),
        Row("take_p", lambda x: P.take_p(x, idx, axis=1), [((2, 3),)]),
        Row("scatter_add_p", lambda g: P.scatter_add_p(g, idx, axis=1, size=3), [((2, 4),)]),
        Row("dynamic_slice_p", lambda x: P.dynamic_slice_p(x, np.int64(1), axis=1, size=2), [((2, 4),)]),
        Row("safe_sqrt_p", lambda x: P.safe_sqrt_p(x), [((3,),)], (0.1, 3.0)),
        Row("convert_p", lambda x: np.sin(x.astype(np.float64)), [((3,),)], (-1.0, 1.0), np.float32),
    ]


def _spd(a):
    """A well-conditioned symmetric positive definite matrix from any square `a`."""
    n = a.shape[-1]
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def _conditioned(a):
    return a + 3.0 * np.eye(a.shape[-1])


def _sign_free(v):
    """Columns of eigen/singular vectors are defined up to sign; v * v[0] is not."""
    return v * v[..., :1, :]


def _linalg_rows():
    """np.linalg (and scipy.linalg) on inputs away from singular and repeated-spectrum points."""
    d = (-1.0, 1.0)
    return [
        Row("solve", lambda a, b: np.linalg.solve(_conditioned(a), b),
            [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3, 1))], d),
        Row("inv", lambda a: np.linalg.inv(_conditioned(a)), [((3, 3),), ((2, 2, 2),)], d),
        # 4a: a 1-norm above the degree-13 Pade bound (5.37), so the compiled kernel scales and squares
        Row("expm", lambda a: scipy.linalg.expm(a) + scipy.linalg.expm(4.0 * a) * 0.01, [((3, 3),), ((2, 2, 2),)], d),
        Row("det", lambda a: np.linalg.det(_conditioned(a)), [((3, 3),), ((2, 2, 2),)], d),
        Row("slogdet", lambda a: np.linalg.slogdet(_conditioned(a))[1] * np.linalg.slogdet(-_conditioned(a))[0],
            [((3, 3),)], d),
        Row("matrix_power", lambda a: np.linalg.matrix_power(a, 3) + np.linalg.matrix_power(_conditioned(a), -1),
            [((3, 3),)], d),
        Row("cholesky", lambda a: np.linalg.cholesky(_spd(a)), [((3, 3),), ((2, 2, 2),)], d),
        Row("eigh", lambda a: np.linalg.eigh(a + a.T)[0] * 2.0 + _sign_free(np.linalg.eigh(a + a.T)[1]).sum(0),
            [((3, 3),)], d),
        Row("eigvalsh", lambda a: np.linalg.eigvalsh(_spd(a)), [((3, 3),)], d),
        Row("svd_values", lambda a: np.linalg.svd(a, compute_uv=False), [((3, 2),), ((2, 3),)], d),
        Row("svd_vectors", lambda a: np.linalg.svd(a, full_matrices=False)[0] @ np.linalg.svd(a, full_matrices=False)[2]
            + _sign_free(np.linalg.svd(a, full_matrices=False)[0]), [((3, 3),), ((3, 2),)], d),
        Row("svd_full", lambda a: _sign_free(np.linalg.svd(a)[0]).sum() + _sign_free(np.linalg.svd(a)[2].T).sum(),
            [((2, 2),)], d),
        Row("qr", lambda a: np.linalg.qr(a)[0] + np.linalg.qr(a)[1].sum(), [((3, 3),), ((3, 2),)], d),
        Row("pinv", lambda a: np.linalg.pinv(a), [((3, 2),), ((2, 3),)], d),
        Row("norm_nuc_2", lambda a: np.linalg.norm(a, "nuc") + np.linalg.norm(a, 2) + np.linalg.norm(a, -2),
            [((3, 2),)], d),
        Row("solve_triangular", lambda a, b: scipy.linalg.solve_triangular(np.tril(a) + 3.0 * np.eye(3), b, lower=True)
            + scipy.linalg.solve_triangular(np.triu(a) + 3.0 * np.eye(3), b, trans="T"), [((3, 3), (3, 2))], d),
        # SciPy's modes (the signs of LAPACK's geqrf, as SciPy's; 'r' pads a tall R with zero rows)
        Row("scipy_qr", lambda a: np.concatenate([
            scipy.linalg.qr(a[:, :2], mode="economic")[0] * 2.0 + scipy.linalg.qr(a[:, :2], mode="r")[0][:, :1],
            scipy.linalg.qr(a)[0] + scipy.linalg.qr(a)[1]], axis=1), [((3, 3),)], d),
        Row("lu_factor_solve", lambda a, b: scipy.linalg.lu_solve(scipy.linalg.lu_factor(_conditioned(a)), b)
            + scipy.linalg.lu_solve(scipy.linalg.lu_factor(_conditioned(a)), b, trans=1),
            [((3, 3), (3,)), ((3, 3), (3, 2))], d),
        # the factors themselves have no derivative here (a NonDifferentiableError): values only, so not
        # in a compiled group (its vjp raises); test_linalg compiles them (test_lu_factor_compiled_values)
        Row("lu_factor_values", lambda a: scipy.linalg.lu_factor(a)[0] * scipy.linalg.lu_factor(a)[1],
            [((3, 3),)], d, max_order=0, float32=False, group=None),
        # scipy.linalg.lu: P, L, U (and P L, and p) read from the packed LU node; L and U differentiate
        Row("scipy_lu", lambda a: scipy.linalg.lu(a)[1] * 2.0 + scipy.linalg.lu(a)[2] + scipy.linalg.lu(a)[0] * a
            + scipy.linalg.lu(a, permute_l=True)[0] * scipy.linalg.lu(a, p_indices=True)[0][..., None],
            [((3, 3),), ((2, 3, 3),)], d),
        Row("cho_solve", lambda a, b: scipy.linalg.cho_solve(scipy.linalg.cho_factor(_spd(a)), b),
            [((3, 3), (3,))], d),
        Row("tensorinv_tensorsolve", lambda a, b: np.concatenate([
            np.linalg.tensorinv(_conditioned(a.reshape(4, 4)).reshape(4, 2, 2), ind=1).ravel(),
            np.linalg.tensorsolve(_conditioned(a.reshape(4, 4)).reshape(2, 2, 4), b.reshape(2, 2)),
            np.linalg.tensorsolve(_conditioned(a.reshape(4, 4)).reshape(4, 2, 2), b.reshape(2, 2), axes=(0,))]),
            [((16,), (4,))], d),
        # banded systems (solved dense): tridiagonal and upper bidiagonal, vector and matrix right-hand sides
        Row("solve_banded", lambda ab, b: scipy.linalg.solve_banded((1, 1), ab + np.array([[0.0], [4.0], [0.0]]), b)
            + scipy.linalg.solve_banded((0, 1), ab[1:] + np.array([[0.0], [3.0]]), b) * 0.5,
            [((3, 4), (4,)), ((3, 4), (4, 2))], d),
        # SciPy's Schur-based sqrtm and solve_sylvester have no compiled lowering (a function calling them
        # runs on the NumPy executor): not in a compiled group
        Row("sqrtm", lambda a: scipy.linalg.sqrtm(_spd(a)) + scipy.linalg.sqrtm(_conditioned(a) + a.T) * 0.5,
            [((3, 3),), ((2, 2, 2),)], d, group=None),
        # logm (SciPy's, no compiled lowering): of a matrix whose eigenvalues lie near 3, a real logarithm
        Row("logm", lambda a: scipy.linalg.logm(_conditioned(a)) + scipy.linalg.logm(_spd(a)) * 0.5,
            [((3, 3),), ((2, 2, 2),)], d, group=None),
        # schur: SciPy's (T, Z), values only (no derivative: a NonDifferentiableError, test_linalg)
        Row("schur_values", lambda a: scipy.linalg.schur(_conditioned(a))[0] + scipy.linalg.schur(a)[1],
            [((3, 3),), ((2, 2, 2),)], d, max_order=0, float32=False, group=None),
        Row("solve_sylvester", lambda a, b, q: scipy.linalg.solve_sylvester(_conditioned(a), _conditioned(b), q),
            [((3, 3), (2, 2), (3, 2)), ((2, 2), (2, 2), (2, 2, 2))], d, group=None),
        # scipy.linalg's mirrors of np.linalg (compositions of the rows above; 'pos' reads the upper triangle)
        Row("scipy_linalg_mirrors", lambda a, b: np.concatenate([
            scipy.linalg.solve(_conditioned(a), b), scipy.linalg.solve(_spd(a) + np.tril(a, -1), b, assume_a="pos"),
            scipy.linalg.solve(_conditioned(a), b, assume_a="lower triangular", transposed=True),
            scipy.linalg.inv(_conditioned(a)).ravel(), [scipy.linalg.det(_conditioned(a)), scipy.linalg.norm(a)],
            scipy.linalg.eigvalsh(_spd(a)), scipy.linalg.svd(_conditioned(a), compute_uv=False)]),
            [((3, 3), (3,))], d, group=None, third_order=False),  # (third order: the rows above)
    ]


def _special_rows():
    """scipy.special on traced values (its ufuncs through __array_ufunc__, its functions swapped while
    tracing) and the NumPy functions added with them (sinc, i0, heaviside, nan_to_num, repeat, flips)."""
    rows = []
    for name in ["expit", "logit", "log_expit", "gammaln", "gamma", "digamma", "erf", "erfc", "erfinv", "ndtr",
                 "log_ndtr", "ndtri", "entr", "sinc"]:
        prim = REGISTRY[name]
        rows.append(Row(name, np.sinc if name == "sinc" else getattr(sc, name), [(s,) for s in UNARY], prim.domain))
    for name in ["i0", "i1", "i0e", "i1e"]:  # both signs: i0e and i1e have a kink at 0 (|x|)
        rows.append(Row(name, getattr(sc, name), [(s,) for s in UNARY[:3]]))
    for name in ["betaln", "xlogy", "xlog1py"]:
        rows.append(Row(name, getattr(sc, name), BINARY, REGISTRY[name].domain))
    rows += [
        Row("erfcinv", sc.erfcinv, [((3,),), ((2, 3),)], (0.1, 1.9)),
        Row("polygamma", lambda x: sc.polygamma(1, x) + 0.1 * sc.polygamma(3, x) + sc.polygamma(0, x) * x,
            [(s,) for s in UNARY[:3]], (0.5, 3.0)),
        Row("multigammaln", lambda a: sc.multigammaln(a, 3) + sc.multigammaln(a, 1), [((),), ((3,),)], (1.5, 4.0)),
        Row("logsumexp", lambda x: sc.logsumexp(x) + sc.logsumexp(x, axis=-1, keepdims=True) + sc.logsumexp(x, axis=0),
            [((3,),), ((2, 3),)]),
        Row("logsumexp_weights", lambda a, b: sc.logsumexp(a, axis=0, b=b) + sc.logsumexp(a, b=np.array([1.0, 0.0, 2.0])),
            [((2, 3), (2, 3)), ((2, 3), (3,))], ((-2.0, 2.0), (0.5, 2.0))),
        # log-sum-exp's shift at +-1e3 (exp alone overflows; the compiled kernel shifts too)
        Row("logsumexp_at_1e3", lambda x: sc.logsumexp(x + 1000.0, axis=0) - 1000.0
            + np.sum(sc.logsumexp(x - 1000.0, axis=1) + 1000.0), [((3, 4),)], (0.2, 0.9)),
        # return_sign=True: log |sum| and its sign, for a positive and a negative weighted sum
        Row("logsumexp_sign", lambda a: _times(*sc.logsumexp(a, axis=0, b=np.array([[1.0], [-0.05]]), return_sign=True))
            + _times(*sc.logsumexp(a, b=np.array([[-1.0, -1.0, -1.0], [0.05, 0.05, 0.05]]), return_sign=True)),
            [((2, 3),)], (-1.0, 1.0)),
        Row("softmax", lambda x: sc.softmax(x, axis=-1) * sc.log_softmax(x, axis=0) + sc.softmax(x) + sc.log_softmax(x),
            [((3,),), ((2, 3),)]),
        Row("sinc_near_zero", np.sinc, [((3,),)], (-0.09, 0.09)),
        Row("erfcx", sc.erfcx, [(s,) for s in UNARY], (-2.0, 3.0)),
        # the incomplete gamma and beta functions: in x (their shape parameters have no derivative)
        Row("gammainc", lambda x: sc.gammainc(2.5, x) * sc.gammaincc(np.array([0.7, 1.5, 3.0]), x),
            [((3,),), ((2, 3),)], (0.2, 4.0)),
        Row("betainc", lambda x: sc.betainc(2.0, np.array([1.5, 3.0, 0.8]), x) + sc.betainc(0.7, 2.5, x) ** 2,
            [((3,),), ((2, 3),)], (0.1, 0.9)),
        # Bessel functions of real order: in x (the order has no derivative), orders that broadcast
        Row("bessel_jv_yv", lambda x: sc.jv(np.array([0.5, 1.5, 2.0]), x) + sc.yv(1.5, x) * sc.jv(0.0, x),
            [((3,),), ((2, 3),)], (0.5, 4.0)),
        Row("bessel_iv_ive", lambda x: sc.iv(np.array([0.5, 1.0, 2.5]), x) - sc.ive(1.5, x) * sc.iv(0.0, x),
            [((3,),), ((2, 3),)], (0.3, 3.0)),
        Row("bessel_kv_kve", lambda x: sc.kv(np.array([0.5, 1.5, 2.5]), x) + sc.kve(0.5, x) ** 2,
            [((3,),), ((2, 3),)], (0.3, 4.0)),
        Row("bessel_j0_j1_y0_y1", lambda x: sc.j0(x) * sc.j1(x) + sc.y0(x) - sc.y1(x), [(s,) for s in UNARY[:3]],
            (0.3, 4.0)),
        # the inverses of the incomplete gamma functions, in y (none in the shape a)
        Row("gammaincinv", lambda y: sc.gammaincinv(2.5, y) + sc.gammainccinv(np.array([0.7, 1.5, 3.0]), y) ** 2,
            [((3,),), ((2, 3),)], (0.1, 0.9)),
        Row("exponential_integrals", lambda x: sc.exp1(x) + sc.expi(x) * sc.expn(2, x) + sc.expn(np.array([0, 1, 3]), x),
            [((3,),), ((2, 3),)], (0.3, 3.0)),
        Row("bessel_yn", lambda x: sc.yn(2, x) + sc.yn(np.array([0, 1, 3]), x) * x, [((3,),), ((2, 3),)], (0.5, 4.0)),
        # the inverses of the incomplete beta function, and the F quantile, in y / p (none in the shapes)
        Row("betaincinv_fdtri", lambda y: sc.betaincinv(2.5, np.array([0.7, 1.5, 3.0]), y)
            + sc.betainccinv(1.5, 0.8, y) ** 2 + sc.fdtri(np.array([1.5, 3.0, 5.0]), 4.0, y) * 0.1,
            [((3,),), ((2, 3),)], (0.1, 0.9)),
        # the Hurwitz zeta function in q (SciPy's values; no compiled lowering, so not in a compiled group)
        Row("zeta", lambda q: sc.zeta(np.array([2.5, 3.0, 4.5]), q) + sc.zeta(3.0, q) ** 2, [((3,),), ((2, 3),)],
            (0.5, 3.0), group=None),
        # the Riemann zeta function: values only (no derivative in x: a NonDifferentiableError, test_scipy)
        Row("riemann_zeta_values", lambda x: sc.zeta(x) * sc.zeta(x - 4.0), [((3,),)], (1.5, 4.0), max_order=0,
            float32=False, group=None),
        Row("poch", sc.poch, BINARY, ((0.5, 3.0), (-0.4, 2.0))),
        # Spence's function, also near z = 1 (its slope's series) and the elliptic integrals near m = 0 (theirs)
        Row("spence", sc.spence, [(s,) for s in UNARY[:3]], (0.2, 3.0)),
        Row("spence_near_one", sc.spence, [((3,),)], (0.96, 1.04)),
        Row("ellipk_ellipe", lambda m: sc.ellipk(m) + sc.ellipe(m) * m, [(s,) for s in UNARY[:3]], (-2.0, 0.9)),
        Row("ellipk_ellipe_near_zero", lambda m: sc.ellipk(m) * sc.ellipe(m), [((3,),)], (-0.09, 0.09)),
        # sici and fresnel (two outputs each) and Dawson's integral
        Row("sici_fresnel_dawsn", lambda x: sc.sici(x)[0] * sc.sici(x)[1] + sc.fresnel(x)[0] + sc.fresnel(x)[1] ** 2
            + sc.dawsn(x), [(s,) for s in UNARY[:3]], (0.3, 4.0)),
        Row("owens_t", sc.owens_t, BINARY),
        Row("huber_pseudo_huber", lambda d, r: sc.huber(d, r) + sc.pseudo_huber(d, r) * 2.0, BINARY,
            ((0.2, 2.0), (-3.0, 3.0))),
        # 1/Γ, the sign of Γ and binom (SciPy's values), on both sides of 1/2 where 1/Γ's rule changes form
        Row("rgamma_gammasgn", lambda x: sc.rgamma(x) + sc.gammasgn(x) * x, [(s,) for s in UNARY[:3]], (-2.9, 2.9)),
        Row("binom", sc.binom, [BINARY[0], BINARY[3]], ((2.0, 6.0), (-1.9, 3.0))),
        # ...and at the poles of Γ, where 1/Γ and binom are 0 but not flat (binom(1, 3), binom(3, -1)):
        # every order is finite there (finite differences through the pole are the reference)
        Row("rgamma_binom_at_poles", lambda x, n, k: np.sum(sc.rgamma(x) * x) + sc.binom(n, k),
            [((4,), (6,), (6,))], make_args=lambda shapes, seed: (
                np.array([-2.0, -1.0, 0.0, 1.0]), np.array([1.0, 3.0, 0.5, 2.0, 10.0, 2.5]),
                np.array([3.0, -1.0, -2.0, 3.0, -3.0, 4.0]))),
        # one ulp moved (derivative 1 in x), and the exponent (no derivative) and mantissa of np.frexp
        Row("nextafter_frexp", lambda x, y: np.nextafter(x, y) + np.frexp(x)[0] * np.frexp(3.0 * y)[1],
            [((3,), (3,)), ((2, 3), ())], ((-2.0, 2.0), (0.4, 2.0))),
        Row("np_i0", np.i0, [((3,),)]),
        Row("heaviside", lambda x, y: np.heaviside(x, y) * x + np.heaviside(x, 0.5) * y
            + np.heaviside(np.array([-1.0, 0.0, 2.0]), y) * y, [((3,), (3,)), ((2, 3), ())]),
        Row("nan_to_num", lambda x: np.nan_to_num(x + np.array([0.0, np.inf, np.nan]), posinf=2.0) * x
            + np.nan_to_num(x - np.array([np.inf, 0.0, np.nan]), nan=0.5, neginf=-3.0) ** 2, [((3,),), ((2, 3),)]),
        Row("repeat_counts", lambda x: np.repeat(x, [2, 0, 1], axis=1) ** 2 + np.repeat(x[0], [1, 3, 2]).sum()
            + np.repeat(x, [3], axis=0)[1:3] + np.repeat(x, [2, 1], axis=0)[::2], [((2, 3),)]),
        Row("append_flip_rot90", lambda x: np.concatenate([
            np.append(x, 2.0 * x), np.append(x, [[1.0, 2.0, 3.0]], axis=0).ravel(), (np.flipud(x) * np.fliplr(x)).ravel(),
            np.rot90(x).ravel() ** 2, np.rot90(x, 2).ravel(), np.rot90(x, -1, axes=(1, 0)).ravel(), np.rot90(x, 3).ravel()]),
            [((2, 3),)]),
    ]
    # second order and forward mode compiled for a few scalar kernels' derivative rules and log-sum-exp
    second = {"digamma", "ndtri", "log_ndtr", "i1e", "sinc", "logsumexp", "xlogy", "bessel_j0_j1_y0_y1"}
    return [replace(row, compiled_order=2) if row.name in second else row for row in rows]


@jitad.custom_vjp
def _softplus(x):
    return np.log1p(np.exp(x))


_softplus.defvjp(lambda x: (np.log1p(np.exp(x)), x), lambda x, g: (g / (1.0 + np.exp(-x)),))


@jitad.custom_jvp
def _log_sigmoid(x):
    return -np.log1p(np.exp(-x))


@_log_sigmoid.defjvp
def _log_sigmoid_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _log_sigmoid(x), t / (1.0 + np.exp(x))


def _custom_rows():
    """User rules: stop_gradient hides the primal from AD, checkpoint_barrier guards recomputation."""
    return [
        # a custom_vjp rule gives reverse mode only; jitad traces this one's fwd and bwd, so reverse
        # over reverse differentiates them (test_custom.py: a rule that runs on real arrays)
        Row("custom_vjp", lambda x: _softplus(x) * x, [((3,),), ((2, 3),)], modes=("rev",)),
        Row("custom_jvp", lambda x: _log_sigmoid(x) * x, [((3,),), ((2, 3),)]),
        Row("checkpoint", lambda x, y: jitad.checkpoint(lambda a, b: np.sin(a) * np.exp(b))(x, y) * x,
            BINARY[:4]),
    ]


def _conditioned_input(shape, seed=0):
    """A standard normal input; a square matrix gets n on its diagonal (well conditioned)."""
    r = np.random.default_rng(seed)
    n = shape[-1] if shape else 1
    return r.standard_normal(shape) + (n * np.eye(n) if len(shape) > 1 and shape[-1] == shape[-2] else 0.0)


def _conditioned_args(shapes, seed):
    return tuple(_conditioned_input(s, seed=seed + k) for k, s in enumerate(shapes))


def _decomposition_rows():
    """np.linalg / scipy.linalg called the many ways users call them, on standard normal inputs with a
    strong diagonal (tests/test_linalg.py's table): batched, broadcast, both triangles, every mode.
    Rows with max_order=1 check the vectors of a decomposition (their second derivatives repeat the
    first-order rules) or a variant of a row already checked at order 2."""
    def row(name, fun, shapes, top):
        return Row(name, fun, [tuple(shapes)], make_args=_conditioned_args, max_order=top, rtol=1e-10,
                   # float32: the dtype of the gradients is checked by test_linalg.test_float32_gradients_keep_dtype;
                   # finite differences of decompositions in float32 are too coarse to compare
                   float32=False)
    return [
        row("solve_vector", np.linalg.solve, [(4, 4), (4,)], 2),
        row("solve_matrix", np.linalg.solve, [(3, 3), (3, 2)], 2),
        row("solve_batched", np.linalg.solve, [(2, 3, 3), (2, 3, 2)], 2),
        row("solve_batch_broadcast", np.linalg.solve, [(3, 3), (2, 3, 1)], 1),
        row("solve_vector_batched_a", np.linalg.solve, [(2, 3, 3), (3,)], 1),
        row("inv_4x4", np.linalg.inv, [(4, 4)], 2),
        row("inv_batched", np.linalg.inv, [(2, 2, 3, 3)], 1),
        row("det_4x4", np.linalg.det, [(4, 4)], 2),
        row("det_batched", np.linalg.det, [(3, 2, 2)], 2),
        row("slogdet_batched", lambda a: np.linalg.slogdet(a).logabsdet * np.linalg.slogdet(a).sign, [(2, 4, 4)], 2),
        row("cholesky_spd", lambda a: np.linalg.cholesky(_spd(a)), [(4, 4)], 2),
        row("cholesky_lower_triangle", lambda a: np.linalg.cholesky(a + 3.0 * np.eye(3)), [(2, 3, 3)], 2),
        row("cholesky_upper", lambda a: np.linalg.cholesky(a, upper=True), [(3, 3)], 1),
        row("eigvalsh_4x4", np.linalg.eigvalsh, [(4, 4)], 2),
        row("eigvalsh_upper_batched", lambda a: np.linalg.eigvalsh(a, UPLO="U"), [(2, 3, 3)], 2),
        row("eigh_vectors", lambda a: _sign_free(np.linalg.eigh(a).eigenvectors), [(4, 4)], 1),
        # raw eigenvectors (not sign-free): their signs are those of the LAPACK driver NumPy or SciPy calls;
        # forward value only (order 0): a driver's sign choice can flip under the finite differences' steps
        # (their derivatives are those of the rows above, the same rules)
        row("eigh_vectors_upper_and_scipy", lambda a: np.linalg.eigh(a, "U")[1] + scipy.linalg.eigh(a)[1]
            + scipy.linalg.eigh(a, lower=False, driver="evd")[1], [(3, 3)], 0),
        row("eigh_both_batched", lambda a: np.linalg.eigh(a)[0][..., None] * _sign_free(np.linalg.eigh(a)[1]),
            [(2, 3, 3)], 1),
        row("svdvals_tall", lambda a: np.linalg.svd(a, compute_uv=False), [(5, 3)], 2),
        row("svdvals_wide_batched", np.linalg.svdvals, [(2, 2, 4)], 2),
        row("svd_tall", lambda a: [_sign_free(x) for x in np.linalg.svd(a, full_matrices=False)[::2]], [(5, 3)], 1),
        row("svd_wide", lambda a: [_sign_free(x) for x in np.linalg.svd(a, full_matrices=False)[::2]], [(2, 4)], 1),
        row("svd_square_full", lambda a: _sign_free(np.linalg.svd(a)[0]) + np.linalg.svd(a)[1], [(3, 3)], 1),
        row("svd_batched", lambda a: (lambda u, s, vh: (u * s[..., None, :]) @ vh)(*np.linalg.svd(a, full_matrices=False)),
            [(2, 4, 3)], 1),
        row("qr_tall", lambda a: list(np.linalg.qr(a)), [(5, 3)], 1),
        row("qr_square_batched", lambda a: list(np.linalg.qr(a)), [(2, 3, 3)], 1),
        row("qr_wide", lambda a: list(np.linalg.qr(a)), [(3, 5)], 1),
        row("qr_r_only", lambda a: np.linalg.qr(a, mode="r"), [(4, 3)], 2),
        row("pinv_tall", np.linalg.pinv, [(5, 3)], 2),
        row("pinv_wide_batched", np.linalg.pinv, [(2, 2, 4)], 1),
        row("matrix_power_5", lambda a: np.linalg.matrix_power(a, 5), [(3, 3)], 2),
        row("matrix_power_negative", lambda a: np.linalg.matrix_power(a, -3), [(3, 3)], 1),
        row("norm_2", lambda a: np.linalg.norm(a, 2), [(4, 3)], 2),
        row("norm_minus_2", lambda a: np.linalg.norm(a, -2, keepdims=True), [(3, 4)], 1),
        row("norm_nuc_axes", lambda a: np.linalg.norm(a, "nuc", axis=(2, 0)), [(3, 2, 4)], 2),
        row("matrix_norm_api", lambda a: np.linalg.matrix_norm(a, ord="nuc") + np.linalg.matrix_norm(a), [(2, 3, 3)], 1),
        row("vector_norm_api", lambda a: np.linalg.vector_norm(a, axis=(0, 2), keepdims=True), [(2, 3, 2)], 2),
        row("trace_multi_dot", lambda a, b: np.trace(np.linalg.multi_dot([a, b, a])) + np.linalg.trace(a),
            [(3, 3), (3, 3)], 2),
        row("solve_triangular_lower", lambda a, b: scipy.linalg.solve_triangular(a, b, lower=True), [(3, 3), (3, 2)], 2),
        row("solve_triangular_upper_trans", lambda a, b: scipy.linalg.solve_triangular(a, b, trans="T"),
            [(3, 3), (3,)], 2),
        row("solve_triangular_unit", lambda a, b: scipy.linalg.solve_triangular(a, b, lower=True, unit_diagonal=True),
            [(3, 3), (3, 2)], 1),
        row("cho_factor_solve", lambda a, b: scipy.linalg.cho_solve(scipy.linalg.cho_factor(_spd(a)), b),
            [(3, 3), (3,)], 2),
        row("cho_solve_lower", lambda a, b: scipy.linalg.cho_solve(scipy.linalg.cho_factor(_spd(a), lower=True), b),
            [(3, 3), (3, 2)], 1),
        row("scipy_cholesky", lambda a: scipy.linalg.cholesky(_spd(a)), [(3, 3)], 1),
    ]


def _simplex(v):
    e = np.exp(v)
    return e / e.sum(axis=0)


def _stats_rows():
    """scipy.stats distributions called the usual ways (tests/test_scipy.py's table): positional and keyword
    parameters, Python-float parameters, frozen distributions, names imported before tracing. Every argument
    is differentiated, to order 2 unless the row is a variant of calling one already checked to order 2.
    Parameters are fixed values (Python floats among them): no float32 variant and no shape groups."""
    r = np.random.default_rng(7)
    x_ = r.uniform(-1.5, 1.5, (2, 3))
    pos = r.uniform(0.5, 2.5, (2, 3))
    unit = r.uniform(0.1, 0.9, (2, 3))
    a_ = r.uniform(-1.0, 1.0, (3, 3))

    def spd(a):
        return a @ a.T + 3.0 * np.eye(a.shape[-1])

    def row(name, fun, args, top=2, group=None):
        # group None: compositions of special functions and reductions compiled in other rows; the rows
        # named with a group are compiled together as one check of the stats methods
        return Row(name, fun, [tuple(np.shape(a) for a in args)], make_args=lambda shapes, seed: args,
                   max_order=top, rtol=1e-12, third_order=False, float32=False, group=group)
    return [
        row("norm.logpdf", lambda x, loc, scale: st.norm.logpdf(x, loc, scale), (x_, 0.3, 1.7), group="stats"),
        row("norm.logpdf_keywords", lambda x, loc, scale: st.norm.logpdf(x, scale=scale, loc=loc), (x_, x_[0], pos)),
        row("norm.pdf", lambda x, loc, scale: st.norm.pdf(x, loc, scale), (x_, 0.3, 1.7)),
        row("norm.cdf", lambda x, loc, scale: st.norm.cdf(x, loc, scale), (x_, 0.3, 1.7)),
        row("norm.logcdf", lambda x, loc, scale: st.norm.logcdf(x, loc, scale), (x_, 0.3, 1.7), group="stats"),
        row("norm.sf", lambda x, loc, scale: st.norm.sf(x, loc, scale), (x_, 0.3, 1.7)),
        row("norm.logsf", lambda x, loc, scale: st.norm.logsf(x, loc, scale), (x_, 0.3, 1.7)),
        row("norm.ppf", lambda q, loc, scale: st.norm.ppf(q, loc, scale), (unit, 0.3, 1.7)),
        row("norm.isf", lambda q, loc, scale: st.norm.isf(q, loc, scale), (unit, 0.3, 1.7)),
        row("norm.from_import", lambda x, scale: norm.logpdf(x, scale=scale), (x_, 1.3)),
        # SciPy's closed-form quantiles (its _ppf/_isf formulas), in q, loc, scale and the shapes
        row("ppf_isf.closed_forms", lambda q, loc, scale, s: (
            st.expon.ppf(q, loc, scale) + st.laplace.isf(q, loc, scale) + st.logistic.ppf(q, loc, scale)
            + st.cauchy.isf(q, loc, scale) * 0.1 + st.gumbel_r.ppf(q, loc, scale) + st.rayleigh.isf(q, loc, scale)
            + st.halfnorm.ppf(q, loc, scale) + st.lognorm.isf(q, s, loc, scale) + st.weibull_min.ppf(q, s + 1.0, loc, scale)
            + st.uniform.isf(q, loc, scale) + st.expon.isf(q, scale=scale) * st.laplace.ppf(q) + st.gumbel_r.isf(q)
            + st.rayleigh.ppf(q) + st.halfnorm.isf(q) + st.logistic.isf(q) + st.cauchy.ppf(q) * 0.1
            + st.lognorm.ppf(q, s) + st.weibull_min.isf(q, s + 1.0) + st.uniform.ppf(q)), (unit, 0.3, 1.7, 0.8),
            group="stats"),
        row("ppf_isf.incomplete_gamma_t", lambda q, loc, scale: st.gamma.ppf(q, 2.5, loc, scale)
            + st.chi2.isf(q, 3.0, loc, scale) + st.invgamma.ppf(q, 2.5, loc, scale) * st.gamma.isf(q, 0.7)
            + st.chi2.ppf(q, 1.5) + st.invgamma.isf(q, 3.5) + st.t.ppf(q, 3.5, loc, scale) * st.t.isf(q, 6.0)
            + st.pareto.isf(q, 2.5, loc, scale) + st.pareto.ppf(q, 3.0), (unit, 0.3, 1.7), group="stats"),
        row("ppf_isf.incomplete_beta_f", lambda q, loc, scale: st.beta.ppf(q, 2.5, 1.5, loc, scale)
            + st.beta.isf(q, 0.8, 3.0) + 0.1 * st.f.ppf(q, 3.0, 5.0, loc, scale) + 0.1 * st.f.isf(q, 4.0, 6.0, scale=scale),
            (unit, 0.3, 1.7), group="stats"),
        row("norm.frozen", lambda x, loc, scale: norm(loc, scale).logpdf(x) + st.norm(loc).pdf(x), (x_, 0.3, 1.7)),
        row("t.logpdf", lambda x, df, loc, scale: st.t.logpdf(x, df, loc, scale), (x_, pos + 1.0, 0.2, 1.5),
            group="stats"),
        row("gamma.logpdf", lambda x, a, scale: st.gamma.logpdf(x, a, scale=scale), (pos, unit + 1.5, 0.8),
            group="stats"),
        row("gamma.pdf_loc", lambda x, a, loc: st.gamma.pdf(x, a, loc), (pos, 2.5, -0.3)),
        row("beta.logpdf", lambda x, a, b: st.beta.logpdf(x, a, b), (unit, pos, pos[::-1])),
        row("laplace.logpdf", lambda x, loc, scale: st.laplace.logpdf(x, loc, scale), (x_, 0.1, 1.3)),
        row("expon.logpdf", lambda x, loc, scale: st.expon.logpdf(x, loc, scale), (pos, -0.2, 1.3)),
        row("poisson.logpmf", lambda mu: st.poisson.logpmf(np.array([[0, 1, 2], [3, 5, 8]]), mu), (pos,),
            group="stats"),
        row("poisson.pmf", lambda mu: st.poisson.pmf(np.arange(4), mu), (2.5,)),
        row("bernoulli.logpmf", lambda p: st.bernoulli.logpmf(np.array([[0, 1, 1], [1, 0, 0]]), p), (unit,)),
        row("dirichlet.logpdf", lambda x, alpha: st.dirichlet.logpdf(_simplex(x), alpha), (x_[:, 0], pos[0, :2])),
        row("dirichlet.logpdf_points", lambda x, alpha: st.dirichlet.logpdf(_simplex(x), alpha), (x_, pos[:, 0])),
        row("dirichlet.pdf_last_implied", lambda x, alpha: st.dirichlet.pdf(0.3 * unit[:, 0] + 0.01 * x, alpha),
            (x_[:, 0], pos[0])),
        row("multivariate_normal.logpdf", lambda x, mean, a: st.multivariate_normal.logpdf(x, mean, spd(a)),
            (x_[:, :2], x_[0, :2], a_[:2, :2])),
        row("multivariate_normal.pdf_vector", lambda x, mean, a: st.multivariate_normal.pdf(x, mean=mean, cov=spd(a)),
            (x_[1], x_[0], a_), 1),
        row("multivariate_normal.diagonal_cov", lambda x, var: st.multivariate_normal.logpdf(x, np.zeros(3), var),
            (x_, pos[0]), 1),
        row("multivariate_normal.frozen", lambda x: st.multivariate_normal(np.ones(3), spd(a_)).logpdf(x), (x_,)),
        row("multivariate_normal.scalar", lambda x, mean, var: st.multivariate_normal.logpdf(x, mean, var),
            (x_[0], 0.2, 1.4), 1),
        # entropy, and a frozen distribution of traced parameters (SciPy's own eigendecomposes cov when made)
        row("multivariate_normal.entropy_traced_frozen", lambda x, mean, a: st.multivariate_normal.entropy(mean, spd(a))
            + st.multivariate_normal(mean, spd(a)).logpdf(x) + st.multivariate_normal(mean, cov=spd(a)).entropy(),
            (x_, x_[0], a_)),
        # more distributions, and the cdf / sf / logcdf / logsf of the continuous ones (issue 11b)
        row("more.logpdf", lambda x, loc, scale: st.cauchy.logpdf(x, loc, scale) + st.logistic.logpdf(x, loc, scale)
            + st.gumbel_r.logpdf(x, loc, scale) + st.halfnorm.logpdf(x, -2.0, scale) + st.rayleigh.pdf(x, -2.0, scale)
            + st.uniform.logpdf(x, -2.0, 4.0 * scale), (x_, 0.3, 1.7)),
        row("more.logpdf_shapes", lambda x, s, a, c: st.lognorm.logpdf(x, s) + st.invgamma.logpdf(x, a)
            + st.weibull_min.pdf(x, c), (pos, 0.8, unit + 1.5, 1.7)),
        row("cdfs", lambda x, loc, scale: (
            st.gamma.cdf(x, 2.5, -2.0, scale), st.beta.sf(x, 2.0, 3.0, -2.0, 4.0 * scale), st.t.cdf(x, 4.0, loc, scale),
            st.chi2.logcdf(x, 3.0, -2.0, scale), st.expon.logsf(x, -2.0, scale), st.laplace.cdf(x, loc, scale),
            st.logistic.sf(x, loc, scale), st.cauchy.logcdf(x, loc, scale), st.weibull_min.cdf(x, 1.7, -2.0, scale),
            st.lognorm.sf(x, 0.7, -2.0, scale), st.invgamma.cdf(x, 2.5, -2.0, scale), st.halfnorm.logsf(x, -2.0, scale),
            st.rayleigh.cdf(x, -2.0, scale), st.gumbel_r.cdf(x, loc, scale), st.uniform.cdf(x, -2.0, 4.0 * scale)),
            (x_, 0.3, 1.7)),
        row("binom_nbinom_geom", lambda p, n: st.binom.logpmf(np.array([[0, 1, 2], [3, 5, 6]]), 6, p)
            + st.nbinom.logpmf(np.array([[0, 1, 2], [3, 5, 8]]), n, p) + st.geom.pmf(np.array([[1, 2, 3], [1, 4, 2]]), p),
            (unit, pos)),
        row("more.logpdf_2", lambda x, kappa, a: st.vonmises.logpdf(x, kappa, 0.1, 1.3) + st.skewnorm.logpdf(x, a)
            + st.truncnorm.logpdf(x, -2.0, a + 1.0, 0.1, 1.3) + st.pareto.logpdf(x + 2.6, kappa, 0.1, 1.3)
            + st.f.pdf(x + 1.6, kappa, a + 2.0, 0.1), (x_, 1.7, 1.2)),
        row("invgauss", lambda x, mu, loc, scale: (
            st.invgauss.logpdf(x, mu, loc, scale), st.invgauss.pdf(x, mu), st.invgauss.cdf(x, mu, loc, scale),
            st.invgauss.logcdf(x, mu), st.invgauss.sf(x, mu, scale=scale), st.invgauss.logsf(x, mu, loc, scale)),
            (pos, 0.8, -0.2, 1.3), group="stats"),
        row("multinomial", lambda v, w: st.multinomial.logpmf(np.array([[1, 2, 3], [0, 4, 2]]), 6, _simplex(v))
            + st.multinomial(6, _simplex(w)).pmf([2, 2, 2]) + st.multinomial.pmf([1, 1], 2, [v[0] ** 2, 1 - v[0] ** 2]),
            (x_[0] * 0.5 + 0.1, x_[1] * 0.3), group="stats"),
        row("discrete_cdfs", lambda mu, p: (
            st.poisson.cdf(np.array([[0, 1, 2], [3, 5.5, 8]]), mu), st.poisson.logsf(np.array([0, 1, 4]), mu[0]),
            st.binom.sf(np.array([0, 2, 6]), 6, p[0]), st.binom.logcdf(np.array([0, 2.5, 4]), 6, p[1]),
            st.nbinom.cdf(np.array([0, 3, 7]), 2.5, p[0]), st.geom.logsf(np.array([1, 2, 4]), p[1]),
            st.bernoulli.cdf(np.array([-1, 0, 3]), p[0])), (pos, unit)),
    ]


_C64 = np.random.default_rng(1).uniform(-1, 1, (4, 2))


def _float32_rows():
    """float32 inputs meeting float64 constants: BLAS and concatenate need one dtype in Numba
    (tests/test_compiled.py's float32 group); compiled in a group of their own, at float32 tolerance."""
    d = (0.2, 0.9)
    return [
        Row("float32_matmul_constant", lambda x: x @ _C64 + (_C64.T @ x.T).T, [((3, 4),)], d, np.float32),
        Row("float32_array_of_constants", lambda x: np.array([x[0, 0] * 2.0, x[1, 1], 1.0]), [((3, 4),)], d, np.float32),
        Row("float32_elementwise", lambda x: np.sin(x) * np.float32(3.0) + x ** 2 + np.sum(x * x), [((3, 4),)], d,
            np.float32),
    ]


# The compiled selection. Numba's compile time is the suite's budget, so a row whose kernels another row
# already compiles (another spelling of the same primitive applications, on the same kind of shapes) is
# not compiled again, and second order is compiled for one row per family of rules.
_SAME_KERNELS = {
    # products: einsum and tensordot lower to the matmul / multiply / transpose / diagonal / sum that
    # dot, matmul, inner, outer, einsum_batched, einsum_trace, einsum_diag_pair, einsum_sum, einsum_three
    # and tensordot_pairs compile
    "dot_method", "matmul_operator", "tensordot_2", "tensordot_0", "einsum_implicit", "einsum_inner_full",
    "einsum_dot", "einsum_matvec", "einsum_outer", "einsum_mult", "einsum_abt", "einsum_sum_free", "einsum_diag",
    "einsum_transpose", "multi_dot",
    # decompositions: the same library calls and rules as the linalg rows (2-D and batched; qr, svd both ways,
    # solve_triangular lower and transposed) and the decomposition rows kept (solve broadcast over a batch,
    # cholesky upper, eigvalsh upper batched, wide svd and qr, unit-diagonal triangular solve)
    "solve_vector", "solve_matrix", "solve_batched", "inv_4x4", "det_4x4", "det_batched", "slogdet_batched",
    "cholesky_spd", "cholesky_lower_triangle", "eigvalsh_4x4", "eigh_vectors", "svdvals_tall",
    "svdvals_wide_batched", "svd_tall", "qr_tall", "qr_square_batched", "pinv_tall", "matrix_power_5",
    "norm_2", "norm_minus_2", "matrix_norm_api", "vector_norm_api", "trace_multi_dot", "solve_triangular_lower",
    "cho_factor_solve", "scipy_cholesky", "inv_batched", "solve_vector_batched_a", "eigh_both_batched",
    "svd_square_full", "svd_batched", "qr_r_only", "pinv_wide_batched", "matrix_power_negative", "norm_nuc_axes",
    "solve_triangular_upper_trans", "cho_solve_lower",
}
# Second order (reverse over reverse) and forward mode compiled: every elementwise rule, one row per family
# of structural and product rules (each row has inputs of its own, so a second-order kernel grows with
# every row: these kernels are the suite's slowest)
_SECOND_ORDER = {
    "binary": {"add", "subtract", "multiply", "divide", "maximum", "minimum", "fmax", "fmin", "hypot", "logaddexp",
               "logaddexp2", "arctan2", "power", "float_power", "clip_traced_bounds", "where_traced_cond",
               "power_scalar[2.5]", "power_scalar[-1]", "power_scalar_negative_base"},
    "shapes": {"reshape_method_minus_one", "transpose_axes", "slice_negative_steps_2d", "none_ellipsis",
               "int_array_index_pair", "bool_mask_index", "concatenate", "np_array_of_traced", "pad_constant", "sort"},
    "products": {"dot", "matmul", "tensordot_pairs", "einsum_batched", "einsum_trace", "diag_of_matrix", "triu",
                 "cumsum_axis", "norm_axis"},
}


def _select(rows):
    rows = [replace(row, group=None) if row.name in _SAME_KERNELS else row for row in rows]
    return [replace(row, compiled_order=1) if row.group in _SECOND_ORDER and row.name not in _SECOND_ORDER[row.group]
            else row for row in rows]


# section, its compiled group and the default order of its compiled check: second order is compiled for the
# sections whose rules are cheap to compile twice over; reductions, linear algebra and SciPy pick a few rows
TABLE = (section(_custom_rows(), "custom", 1) + section(_unary_rows(), "unary", 2)
         + section(_binary_rows(), "binary", 2) + section(_predicate_rows(), "predicates", 1)
         + section(_reduction_rows(), "reductions", 1) + section(_shape_rows(), "shapes", 2)
         + section(_product_rows(), "products", 2) + section(_linalg_rows(), "linalg", 1)
         + section(_decomposition_rows(), "linalg", 1) + section(_direct_rows(), "direct", 1)
         + section(_special_rows(), "special", 1) + section(_stats_rows(), None, 1)
         + section(_float32_rows(), "float32", 1))
TABLE = _select(TABLE)
assert not _SAME_KERNELS - {row.name for row in TABLE}, "_SAME_KERNELS names rows that do not exist"
assert all(names <= {row.name for row in TABLE} for names in _SECOND_ORDER.values())
ROWS = {row.name: row for row in TABLE}
assert len(ROWS) == len(TABLE), "row names must be unique"

# Registered primitives that no row's graph (or its reverse-mode derivative's) holds, and why; each has a
# test of its own.
EXEMPT = {
    "svd_full": "the completed columns of U / rows of Vh of a non-square svd(full_matrices=True) are any "
                "orthonormal completion: no derivative, so differentiating must raise "
                "(tests/test_primitives.py::test_svd_full_has_no_derivative_and_says_so)",
    "no_derivative": "guards a discrete count (scipy.stats poisson / bernoulli k): differentiating through it must "
                     "raise (tests/test_scipy.py::test_derivatives_that_do_not_exist_are_errors)",
    "ode_solve": "scipy.integrate.odeint / solve_ivp: SciPy's integrator on a traced right-hand side, a graph per call "
                 "site (no row of fixed functions reaches it); values, both modes and orders 2 and 3 are checked in "
                 "tests/test_integrate.py",
    "quad": "scipy.integrate.quad / quad_vec: SciPy's quadrature of a traced integrand, a graph per call site (no "
            "row of fixed functions reaches it); values, both modes, order 2 against closed forms, traced and "
            "infinite limits are checked in tests/test_integrate.py",
    "scan": "jitad.scan / fori_loop and the loops jitad rolls: a node whose body is a traced sub-graph (no row of "
            "fixed functions reaches it); values on every executor, both modes, orders 1 and 2, batching and "
            "compiled == reference are checked against the unrolled loops in tests/test_loops.py and "
            "tests/test_rolling.py",
    "while": "jitad.while_loop (and fori_loop with traced bounds): a sub-graph body; tests/test_loops.py checks it "
             "against the unrolled loop in both modes",
    "while_vjp": "reverse mode of a while loop, made only by while's vjp rule; its own derivatives raise "
                 "NonDifferentiableError (tests/test_loops.py::test_second_order_through_while_raises)",
}


# --- the generated compiled groups ----------------------------------------------------------------
MAX_ROWS_PER_KERNEL = 24  # Numba's compile time grows with a kernel's size: groups split into kernels of this many
# ... and faster than linearly for the linear-algebra rows (each several nests and LAPACK calls): 22 rows
# in one kernel took 141 s, the longest test of the suite, which one process had to run alone
ROWS_PER_KERNEL = {"linalg": 6}


def compiled_groups(table=TABLE, max_rows=MAX_ROWS_PER_KERNEL):
    """[(id, rows)]: the rows of each compiled group, in table order, split into kernels of at most max_rows."""
    groups = {}
    for row in table:
        if row.group is not None:
            groups.setdefault(row.group, []).append(row)
    out = []
    for name, rows in groups.items():
        limit = min(max_rows, ROWS_PER_KERNEL.get(name, max_rows))
        size = -(-len(rows) // -(-len(rows) // limit))  # balanced: ceil(n / number of kernels)
        chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
        out += [(name if len(chunks) == 1 else f"{name}{k + 1}", chunk) for k, chunk in enumerate(chunks)]
    return out


def group_function(rows):
    """One function of every row of a group: arguments a list with one tuple per row, result a dict by row name."""
    def group(args):
        return {row.name: row.fun(*a) for row, a in zip(rows, args)}
    return group


def _times(value, sign):
    return value * sign


def leaves(tree):
    return optree.tree_leaves(tree, none_is_leaf=False)
