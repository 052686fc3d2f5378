"""The compiled (Numba) path equals the reference executor.

Primitives are grouped so that one compiled kernel covers many of them (Numba compiles
cost seconds); each group is compared in reverse mode at orders 1 and 2 and in forward
mode, values and derivatives, with broadcasting shapes.
"""
import numpy as np
import pytest

import jitad

rng = np.random.default_rng(1)
X = rng.uniform(0.2, 0.9, (3, 4))
Y = rng.uniform(0.2, 0.9, (4,))
Z = rng.uniform(0.2, 0.9, (3, 1))
B = rng.uniform(-1, 1, (2, 4, 3))
IDX = np.array([2, 0, 1, 1])


def unary_group(x):
    return {
        "negative": -x, "sqrt": np.sqrt(x), "cbrt": np.cbrt(x), "reciprocal": np.reciprocal(x),
        "square": np.square(x), "exp": np.exp(x), "exp2": np.exp2(x), "expm1": np.expm1(x), "log": np.log(x),
        "log1p": np.log1p(x), "log2": np.log2(x), "log10": np.log10(x), "sin": np.sin(x), "cos": np.cos(x),
        "tan": np.tan(x), "arcsin": np.arcsin(x), "arccos": np.arccos(x), "arctan": np.arctan(x),
        "sinh": np.sinh(x), "cosh": np.cosh(x), "tanh": np.tanh(x), "arcsinh": np.arcsinh(x),
        "arccosh": np.arccosh(x + 1.5), "arctanh": np.arctanh(x), "abs": np.abs(x - 0.5),
        "sign": np.sign(x - 0.5) * x, "power3": x ** 3, "power_half": x ** 0.5, "power_m1": x ** -1.0,
        "power_2.5": x ** 2.5, "floor": np.floor(3 * x) * x, "float32": x.astype(np.float32).astype(np.float64),
    }


def binary_group(x, y, z):
    return {
        "add": x + y, "sub": z - x, "mul": x * z, "div": x / y, "pow": x ** y, "rpow": 2.0 ** x,
        "arctan2": np.arctan2(x, z), "hypot": np.hypot(y, z), "maximum": np.maximum(x, y),
        "minimum": np.minimum(z, x), "fmax": np.fmax(x, y), "fmin": np.fmin(x, z),
        "logaddexp": np.logaddexp(x, z), "where": np.where(x > y, x * y, z), "clip": np.clip(x, 0.3, 0.7),
        "compare": (x < z) * x,
    }


def reduction_group(x, b):
    out = {}
    for name, fn in [("sum", np.sum), ("mean", np.mean), ("prod", np.prod), ("max", np.max), ("min", np.min),
                     ("var", np.var), ("std", np.std)]:
        for axis in [None, 0, 1, (0, 1)]:
            out[f"{name}{axis}"] = fn(x, axis=axis)
        out[f"{name}_keep"] = fn(x, axis=1, keepdims=True) * x
        out[f"{name}_3d"] = fn(b, axis=(0, 2))
    out["cumsum0"] = np.cumsum(x, axis=0)
    out["cumsum"] = np.cumsum(x)
    return out


def shape_group(x, b):
    return {
        "reshape": x.reshape(2, 6) * 2.0, "reshape_flat": x.reshape(-1) ** 2, "T": x.T @ x,
        "transpose3": np.transpose(b, (2, 0, 1)) ** 2, "slice": x[1:, ::2] ** 2, "neg_step": x[::-1, -2::-1] ** 2,
        "int_index": x[1] * x[:, 2].sum(), "none": x[None, :, 1:2] * x[:, None, :1], "ellipsis": b[..., 1] ** 2,
        "take": x[:, IDX] ** 2, "take_rows": x[[0, 2, 2]] ** 2, "mask": x[x.shape[0] * [True, False, True][:3]
                                                                        if False else np.array([True, False, True])],
        "fancy2": x[[0, 1, 2], [3, 1, 0]] ** 2, "concat": np.concatenate([x, x ** 2], axis=1),
        "stack": np.stack([x[:, 0], x[:, 1] ** 2], axis=1), "expand": np.expand_dims(x, 1) * x[:, None, :],
        "squeeze": np.squeeze(x[:, :1]) ** 2, "broadcast": np.broadcast_to(x[0], (3, 4)) * x,
        "array": np.array([x[0, 0] ** 2 - x[1, 1], x[2, 3] * x[0, 1], 1.0]),
    }


def linear_group(x, y, b):
    return {
        "dot": np.dot(x, y), "dot2": np.dot(x.T, x), "matvec": x @ y, "vecmat": y @ x.T, "vdot": np.vdot(x, x),
        "inner": np.inner(x, x), "outer": np.outer(y, y), "tensordot": np.tensordot(b, x, axes=([1, 2], [1, 0])),
        "batched": b @ x, "batched_bcast": np.swapaxes(b, 1, 2) @ b[:1], "einsum": np.einsum("ij,jk->ik", x, x.T),
        "einsum_b": np.einsum("bij,ki->bkj", b, x), "einsum_trace": np.einsum("ii", x[:, :3]),
        "trace": np.trace(x[:, :3]), "diag": np.diag(y) @ x.T, "diag_k": np.diag(y, 1) ** 2,
        "diagonal": np.diagonal(x, 1), "triu": np.triu(x), "tril": np.tril(x, -1),
        "norm": np.linalg.norm(x), "norm1": np.linalg.norm(y, 1), "norm_inf": np.linalg.norm(y, np.inf),
        "norm_fro": np.linalg.norm(x, "fro"), "norm_axis": np.linalg.norm(x, axis=1),
    }


def reduction_second_order_group(x, b):
    """Each reduction once: second-order graphs of the full group are too large to compile quickly."""
    return {"sum": np.sum(x, axis=0), "mean": np.mean(x, axis=1, keepdims=True) * x, "prod": np.prod(x, axis=1),
            "max": np.max(x, axis=0), "min": np.min(b, axis=(0, 2)), "var": np.var(x, axis=1),
            "std": np.std(x), "cumsum": np.cumsum(x, axis=1)}


def helpers_group(x):
    """NumPy functions built from the shape primitives: diff, roll, tile, repeat, pad, split, cross, kron."""
    return {"diff": np.diff(x, axis=1) ** 2, "roll": np.roll(x, 1, axis=1) * x, "tile": np.tile(x, (2, 1)) ** 2,
            "repeat": np.repeat(x, 2, axis=0) * 2.0, "pad": np.pad(x, ((0, 1), (2, 0)), constant_values=1.5) ** 2,
            "split": np.array_split(x, 3, axis=1)[2] * x[:, :1], "cross": np.cross(x[:, :3], x[:, 1:]),
            "kron": np.kron(x[:2, :2], x[1:, 2:]), "sort": np.sort(x, axis=1) * np.arange(4.0),
            "sort0": np.sort(x, axis=0) ** 2}


GROUPS = [
    ("unary", unary_group, (X,)),
    ("binary", binary_group, (X, Y, Z)),
    ("reductions", reduction_group, (X, B)),
    ("shapes", shape_group, (X, B)),
    ("linear", linear_group, (X, Y, B)),
    ("helpers", helpers_group, (X,)),
]


def _both_backends(fn):
    saved = jitad.config.backend
    try:
        jitad.config.backend = "numba"
        compiled = fn()
        jitad.config.backend = "reference"
        reference = fn()
    finally:
        jitad.config.backend = saved
    return compiled, reference


def _assert_trees_close(a, b, what):
    import optree
    la, ta = optree.tree_flatten(a)
    lb, tb = optree.tree_flatten(b)
    assert ta == tb, what
    paths = optree.tree_paths(a)
    for path, x, y in zip(paths, la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{what} at {path}")


@pytest.mark.parametrize("name, fn, args", GROUPS, ids=[g[0] for g in GROUPS])
def test_compiled_matches_reference_reverse(name, fn, args):
    out = fn(*args)
    ct = {k: np.random.default_rng(2).standard_normal(np.shape(v)) for k, v in out.items()}

    def run():
        value, vjp_fn = jitad.vjp(fn, *args)
        return value, vjp_fn(ct)
    compiled, reference = _both_backends(run)
    _assert_trees_close(compiled, reference, f"{name} value/vjp")


SECOND_ORDER_GROUPS = [g if g[0] != "reductions" else ("reductions", reduction_second_order_group, (X, B))
                       for g in GROUPS]


@pytest.mark.parametrize("name, fn, args", SECOND_ORDER_GROUPS, ids=[g[0] for g in SECOND_ORDER_GROUPS])
def test_compiled_matches_reference_second_order(name, fn, args):
    tangents = tuple(np.random.default_rng(3).standard_normal(np.shape(a)) for a in args)

    def scalar(*xs):
        out = fn(*xs)
        return sum(np.sum(np.sin(v)) for v in out.values())

    def run():
        hvp_like = jitad.grad(lambda *xs: sum(np.vdot(g, t) for g, t in
                                              zip(jitad.grad(scalar, argnums=tuple(range(len(xs))))(*xs), tangents)),
                              argnums=tuple(range(len(args))))
        forward = jitad.jvp(fn, args, tangents)
        return hvp_like(*args), forward
    compiled, reference = _both_backends(run)
    _assert_trees_close(compiled, reference, f"{name} second order / jvp")


C64 = rng.uniform(-1, 1, (4, 2))


def float32_group(x):
    """float32 inputs meeting float64 constants: BLAS and concatenate need one dtype in Numba."""
    return {"matmul_const": x @ C64, "rmatmul": C64.T @ x.T, "array": np.array([x[0, 0] * 2.0, x[1, 1], 1.0]),
            "elementwise": np.sin(x) * np.float32(3.0) + x ** 2, "sum": np.sum(x * x)}


def test_compiled_float32_matches_reference():
    x = X.astype(np.float32)
    out = float32_group(x)
    ct = {k: np.asarray(np.random.default_rng(4).standard_normal(np.shape(v)), np.asarray(v).dtype)
          for k, v in out.items()}

    def run():
        value, vjp_fn = jitad.vjp(float32_group, x)
        return value, vjp_fn({k: (v if np.ndim(v) else v[()]) for k, v in ct.items()})
    compiled, reference = _both_backends(run)
    assert compiled[1][0].dtype == np.float32
    import optree
    for a, b in zip(optree.tree_leaves(compiled), optree.tree_leaves(reference)):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5, atol=1e-6)
