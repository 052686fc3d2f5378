"""One row per primitive (and per NumPy entry point built from them), run through check_grads.

Each row is a function of arrays, the domain its inputs are drawn from (chosen away
from kinks and poles), and the shape groups it runs on. Every row is checked with
forward and reverse mode against central finite differences at order 1 and order 2.
A registered primitive without a row fails `test_every_primitive_has_a_row`.
"""
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import jitad
from jitad import primitives as P
from jitad.primitives import REGISTRY
from jitad.frontend.tracer import trace

pytestmark = pytest.mark.usefixtures("reference_backend")

# --- shape groups -------------------------------------------------------------------------
UNARY = [(), (3,), (2, 3), (2, 1, 3)]
BINARY = [((), ()), ((3,), (3,)), ((2, 3), (2, 3)), ((2, 1), (1, 3)), ((3,), ()), ((), (2, 3)),
          ((4, 1, 3), (2, 1))]
TERNARY = [((), (), ()), ((2, 3), (2, 3), (2, 3)), ((2, 1), (1, 3), ()), ((3,), (2, 1), (1,))]


@dataclass(frozen=True)
class Row:
    """name: test id; fun: the function of arrays; shapes: list of per-argument shape tuples;
    domain: (low, high) for every argument, or one (low, high) per argument; dtype of the inputs;
    the modes and the highest order check_grads runs (all of them unless the row says why not)."""
    name: str
    fun: object
    shapes: tuple
    domain: tuple = (-2.0, 2.0)
    dtype: type = np.float64
    modes: tuple = ("fwd", "rev")
    max_order: int = 2

    def args(self, shapes, seed=0):
        rng = np.random.default_rng(seed)
        domains = self.domain if isinstance(self.domain[0], tuple) else (self.domain,) * len(shapes)
        return tuple(np.asarray(rng.uniform(lo, hi, shape), self.dtype) for (lo, hi), shape in zip(domains, shapes))


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
                         ("float_power", ((0.3, 2.0), (-2.0, 2.0)))]:
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
            + divmod(x, y)[1] * divmod(7.0, x)[1], [((3,), (3,))], ((2.1, 2.9), (1.9, 2.0))),
        Row("isclose", lambda x, y: np.where(np.isclose(x, y), x, y) + np.where(np.isclose(x, x), y, x), BINARY[:3]),
    ]


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
                rows.append(Row(f"{name}[axis={axis},keepdims={keepdims}]",
                                lambda x, fn=fn, axis=axis, keepdims=keepdims: fn(x, axis=axis, keepdims=keepdims),
                                [((2, 3, 4),)], domain))
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
        Row("fmod_real_imag", lambda x: np.fmod(x * 5.0, 0.7) + np.real(x) * np.conj(x) + np.imag(x), [((3, 4),)],
            domain=(0.02, 0.12)),  # 5x stays below 0.7: no jump of fmod inside a finite-difference step
        Row("cross_kron", lambda x: np.cross(x[:, :3], x[:, 1:]).sum() * np.kron(x[:2, :2], x[1:, 2:]), [((3, 4),)]),
        Row("atleast", lambda x: np.atleast_1d(x) * np.atleast_2d(x), [((),), ((3,),)]),
        Row("astype_float64", lambda x: np.sin(x.astype(np.float64)) * 2.0, [((3,),)]),
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
    import scipy.linalg
    d = (-1.0, 1.0)
    return [
        Row("solve", lambda a, b: np.linalg.solve(_conditioned(a), b),
            [((3, 3), (3,)), ((3, 3), (3, 2)), ((2, 3, 3), (2, 3, 1))], d),
        Row("inv", lambda a: np.linalg.inv(_conditioned(a)), [((3, 3),), ((2, 2, 2),)], d),
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
        Row("cho_solve", lambda a, b: scipy.linalg.cho_solve(scipy.linalg.cho_factor(_spd(a)), b),
            [((3, 3), (3,))], d),
    ]


def _special_rows():
    """scipy.special on traced values (its ufuncs through __array_ufunc__, its functions swapped while
    tracing) and the NumPy functions added with them (sinc, i0, heaviside, nan_to_num, repeat, flips)."""
    import scipy.special as sc
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
        Row("softmax", lambda x: sc.softmax(x, axis=-1) * sc.log_softmax(x, axis=0) + sc.softmax(x) + sc.log_softmax(x),
            [((3,),), ((2, 3),)]),
        Row("sinc_near_zero", np.sinc, [((3,),)], (-0.09, 0.09)),
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
    return rows


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
        # a custom_vjp rule gives reverse mode only, and its bwd runs on real arrays: order 1
        Row("custom_vjp", lambda x: _softplus(x) * x, [((3,),), ((2, 3),)], modes=("rev",), max_order=1),
        Row("custom_jvp", lambda x: _log_sigmoid(x) * x, [((3,),), ((2, 3),)]),
        Row("checkpoint", lambda x, y: jitad.checkpoint(lambda a, b: np.sin(a) * np.exp(b))(x, y) * x,
            BINARY[:4]),
    ]


TABLE = (_custom_rows() + _unary_rows() + _binary_rows() + _predicate_rows() + _reduction_rows() + _shape_rows()
         + _product_rows() + _linalg_rows() + _direct_rows() + _special_rows())
CASES = [pytest.param(row, shapes, order, id=f"{row.name}-{'x'.join(map(str, shapes))}-{order}".replace(" ", ""))
         for row in TABLE for shapes in row.shapes for order in (1, 2) if order <= row.max_order]

# Primitives without a check_grads row, and why; each has a test of its own below.
INTERNAL = {
    "svd_full": "the completed columns of U / rows of Vh of a non-square svd(full_matrices=True) are any "
                "orthonormal completion: no derivative, so differentiating must raise",
    "no_derivative": "guards a discrete count (scipy.stats poisson / bernoulli k): differentiating through it must "
                     "raise (tests/test_scipy.py)",
}


@pytest.mark.parametrize("row,shapes,order", CASES)
def test_primitive(row, shapes, order):
    args = row.args(shapes)
    expected = row.fun(*args)
    out = jitad.vjp(row.fun, *args)[0]  # the traced forward pass matches NumPy
    np.testing.assert_allclose(out, expected, rtol=1e-12 if row.dtype == np.float64 else 1e-6, atol=1e-12)
    assert np.shape(out) == np.shape(expected)
    jitad.check_grads(row.fun, args, order=order, modes=row.modes)


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in TABLE if row.max_order >= 2])
def test_primitive_third_order(row):
    """Rules are built from differentiable ops, so the third derivative is right too (reverse^3)."""
    jitad.check_grads(row.fun, row.args(row.shapes[-1], seed=1), order=3, modes=("rev",))


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in TABLE if row.dtype == np.float64])
def test_primitive_float32(row):
    """float32 end to end: NumPy's result dtype forward, the input's dtype for every derivative."""
    args = tuple(a.astype(np.float32) for a in row.args(row.shapes[0]))
    expected = np.asarray(row.fun(*args))
    out, vjp_fn = jitad.vjp(row.fun, *args)
    assert np.asarray(out).dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    grads = vjp_fn(np.ones_like(expected)[()])
    assert [np.asarray(g).dtype for g in grads] == [np.dtype(np.float32)] * len(args)
    if "fwd" in row.modes:
        _, tangent = jitad.jvp(row.fun, args, tuple(np.ones_like(a) for a in args))
        assert np.asarray(tangent).dtype == expected.dtype
    jitad.check_grads(row.fun, args, order=1, modes=row.modes)


def test_svd_full_has_no_derivative_and_says_so():
    a = np.random.default_rng(0).standard_normal((3, 2))
    u = jitad.vjp(lambda m: np.linalg.svd(m)[0], a)[0]
    np.testing.assert_allclose(np.abs(u[:, :2]), np.abs(np.linalg.svd(a)[0][:, :2]), atol=1e-12)
    for fun in (lambda m: np.sum(np.linalg.svd(m)[0] ** 3), lambda m: np.sum(np.linalg.svd(m)[2] ** 3)):
        with pytest.raises(jitad.NonDifferentiableError, match="full_matrices"):
            jitad.grad(fun)(a)
    # the singular values of the same call still differentiate
    np.testing.assert_allclose(jitad.grad(lambda m: np.sum(np.linalg.svd(m)[1]))(a),
                               np.linalg.svd(a, full_matrices=False)[0] @ np.linalg.svd(a, full_matrices=False)[2])


def _primitives_in(row):
    """Primitives in a row's graph and in its reverse-mode derivative's graph."""
    args = row.args(row.shapes[0])
    avals = [(a.shape, a.dtype) for a in args]

    def pullback(*xs):
        out, vjp_fn = jitad.vjp(row.fun, *xs)
        return [out, *vjp_fn(np.ones(out.shape, out.dtype))]

    names = set()
    for fun in (lambda *xs: [row.fun(*xs)], pullback):
        graph, _ = trace(fun, avals)
        names |= {node.prim.name for node in graph.nodes}
    return names


def test_every_primitive_has_a_row():
    covered = set().union(*(_primitives_in(row) for row in TABLE))
    missing = set(REGISTRY) - covered - set(INTERNAL)
    assert not missing, f"registered primitives without a row in tests/test_primitives.py: {sorted(missing)}"
    assert not set(INTERNAL) - set(REGISTRY), "INTERNAL lists primitives that no longer exist"


def test_check_grads_catches_a_wrong_rule(monkeypatch):
    """The table can fail: a wrong JVP or VJP rule of one primitive is caught at its order."""
    x = (np.linspace(0.2, 1.0, 3),)
    fresh_sin = lambda: (lambda v: np.sin(v))  # noqa: E731  (a new function: no cached derivative)
    monkeypatch.setattr(P.sin_p, "vjp_rule", lambda g, out, x: (g * np.cos(x) * 1.01,))
    with pytest.raises(AssertionError, match="reverse mode"):
        jitad.check_grads(fresh_sin(), x, order=1, modes=("rev",))
    monkeypatch.undo()
    monkeypatch.setattr(P.sin_p, "jvp_rule", lambda primals, tangents, out: tangents[0] * np.cos(primals[0]) + 1e-3)
    with pytest.raises(AssertionError, match="forward mode"):
        jitad.check_grads(fresh_sin(), x, order=1, modes=("fwd",))
    monkeypatch.undo()
    # a second derivative that is wrong while the first is right: cos's rules feed d²sin
    monkeypatch.setattr(P.cos_p, "vjp_rule", lambda g, out, x: (g * np.sin(x),))
    jitad.check_grads(fresh_sin(), x, order=1, modes=("rev",))
    with pytest.raises(AssertionError, match="reverse mode \\(order 2, of the reverse-mode derivative\\)"):
        jitad.check_grads(fresh_sin(), x, order=2, modes=("rev",))
    monkeypatch.undo()
    monkeypatch.setattr(P.cos_p, "jvp_rule", lambda primals, tangents, out: tangents[0] * np.sin(primals[0]))
    jitad.check_grads(fresh_sin(), x, order=1, modes=("fwd",))
    with pytest.raises(AssertionError, match="forward mode \\(order 2, of the forward-mode derivative\\)"):
        jitad.check_grads(fresh_sin(), x, order=2, modes=("fwd",))


# --- broadcasting, drawn by hypothesis --------------------------------------------------------
BROADCAST_OPS = [np.add, np.subtract, np.multiply, np.maximum, np.hypot, np.logaddexp, np.arctan2]


@settings(max_examples=40, deadline=None, derandomize=True)  # CI sees the same examples as here
@given(data=st.data())
def test_binary_broadcasting(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3)).input_shapes
    op = data.draw(st.sampled_from(BROADCAST_OPS))
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    args = tuple(np.asarray(rng.uniform(0.3, 2.0, s)) for s in shapes)
    jitad.check_grads(op, args, order=1, modes=("fwd", "rev"), seed=seed)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), data=st.data())
def test_reductions_any_axes(shape, data):
    axis = data.draw(st.none() | hnp.valid_tuple_axes(len(shape)))
    keepdims = data.draw(st.booleans())
    fn = data.draw(st.sampled_from([np.sum, np.mean, np.max, np.var, np.std]))
    x = np.random.default_rng(len(shape)).uniform(-2.0, 2.0, shape)
    jitad.check_grads(lambda v: fn(v, axis=axis, keepdims=keepdims), (x,), order=1)
