"""Reductions, shape and index primitives, and matmul.

Index primitives (reshape, transpose, broadcast_to, slice, pad, diagonal, ...) are pure
index mappings: the fused backend reads through them instead of copying. Each
declares `index_map(node, out_index, ctx) -> (input_index, condition)` where indices
are lists of `Ix` index expressions (arithmetic on them parenthesises itself, so maps
compose); `ctx.size(node, axis)` is the code for a dimension and
`ctx.start(node, axis)` the code for a slice/pad start (both read at run time, so a
kernel does not embed the sizes it was traced at).
"""
import numpy as np

from jitad.primitives.core import Primitive, numpy_dtype, unbroadcast
from jitad.ixexpr import Ix
from jitad.errors import ShapeError


def _index(name, impl, shape_rule, jvp, vjp, index_map, foldable=True):
    prim = Primitive(name, impl=impl, shape_rule=shape_rule, jvp=jvp, vjp=vjp, kind="index",
                     foldable=foldable)
    prim.index_map = index_map
    return prim


def _linear_jvp(builder):
    return lambda primals, tangents, out, **params: builder(tangents[0], **params)


# --- reductions -----------------------------------------------------------------------
def _reduce_shape(x, axes):
    return tuple(n for i, n in enumerate(x.shape) if i not in axes), x.dtype


def _expand(g, shape, axes):
    """Put reduced axes back as size-1 axes and broadcast to `shape`."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    g = np.reshape(g, kept)
    # broadcast_to_p, not np.broadcast_to: a concrete seed must stay a broadcast node,
    # never a full-size constant array in the graph
    return g if np.shape(g) == tuple(shape) else broadcast_to_p(g, shape=tuple(shape))


def _sum_vjp(g, out, x, axes):
    return (_expand(g, np.shape(x), axes),)


reduce_sum_p = Primitive("reduce_sum", impl=lambda x, axes: np.sum(x, axis=axes), shape_rule=_reduce_shape,
                         jvp=_linear_jvp(lambda t, axes: reduce_sum_p(t, axes=axes)), vjp=_sum_vjp,
                         kind="reduction")
reduce_sum_p.accumulate = ("0.0", "{acc} + {x}")


def _argext_mask(x, out, axes):
    """Where x attains the extremum, divided by how many entries tie (even split)."""
    hit = (x == _expand(out, np.shape(x), axes)).astype(x.dtype)
    return hit / _expand(reduce_sum_p(hit, axes=axes), np.shape(x), axes)


def _extremum(name, np_fn, init, combine):
    prim = Primitive(
        name, impl=lambda x, axes: np_fn(x, axis=axes), shape_rule=_reduce_shape,
        jvp=lambda primals, tangents, out, axes: reduce_sum_p(tangents[0] * _argext_mask(primals[0], out, axes), axes=axes),
        vjp=lambda g, out, x, axes: (_expand(g, np.shape(x), axes) * _argext_mask(x, out, axes),),
        kind="reduction")
    prim.accumulate = (init, combine)
    return prim


reduce_max_p = _extremum("reduce_max", np.max, "-np.inf", "max({acc}, {x})")
reduce_min_p = _extremum("reduce_min", np.min, "np.inf", "min({acc}, {x})")


def _prod_others(x, axes):
    """prod over `axes` of all entries but the one at each position, from a tree of products.

    Only multiplications (no division, no select), so it is exact where x has zeros and
    so are all its derivatives (grad of grad of prod). Up the tree: pairwise products,
    level by level; down: a child's "product of everything else" is its parent's times
    its sibling's value.
    """
    shape = np.shape(x)
    kept = [a for a in range(len(shape)) if a not in axes]
    perm = kept + list(axes)
    lead = tuple(shape[a] for a in kept)
    n = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    values = np.reshape(np.transpose(x, perm), lead + (n,))
    width = 1 << max(n - 1, 0).bit_length()  # pad with ones to a power of two
    if width > n:
        values = np.concatenate([values, np.ones(lead + (width - n,), x.dtype)], axis=-1)
    levels = [values]
    while levels[-1].shape[-1] > 1:
        pairs = np.reshape(levels[-1], lead + (levels[-1].shape[-1] // 2, 2))
        levels.append(pairs[..., 0] * pairs[..., 1])
    others = np.ones(lead + (1,), x.dtype)
    for level in reversed(levels[:-1]):
        pairs = np.reshape(level, lead + (level.shape[-1] // 2, 2))
        others = np.reshape(np.stack([others * pairs[..., 1], others * pairs[..., 0]], axis=-1),
                            lead + (level.shape[-1],))
    others = np.reshape(others[..., :n], lead + tuple(shape[a] for a in axes))
    return np.transpose(others, tuple(np.argsort(perm)))


reduce_prod_p = Primitive(
    "reduce_prod", impl=lambda x, axes: np.prod(x, axis=axes), shape_rule=_reduce_shape,
    jvp=lambda primals, tangents, out, axes: reduce_sum_p(tangents[0] * _prod_others(primals[0], axes), axes=axes),
    vjp=lambda g, out, x, axes: (_expand(g, np.shape(x), axes) * _prod_others(x, axes),),
    kind="reduction", domain=(0.5, 1.5))
reduce_prod_p.accumulate = ("1.0", "{acc} * {x}")


# --- shape primitives -------------------------------------------------------------------
def _row_major(index, sizes):
    flat = index[0] if index else Ix.of(0)
    for i, n in zip(index[1:], sizes[1:]):
        flat = flat * n + i
    return flat


def _reshape_map(node, out_index, ctx):
    (x,) = node.inputs
    squeezed_in = [i for i, n in enumerate(x.shape) if n != 1]
    squeezed_out = [i for i, n in enumerate(node.shape) if n != 1]
    if [x.shape[i] for i in squeezed_in] == [node.shape[i] for i in squeezed_out]:
        # only size-1 axes inserted or removed: a renaming of loop indices
        index = [Ix.of(0)] * x.ndim
        for i, o in zip(squeezed_in, squeezed_out):
            index[i] = out_index[o]
        return index, None
    flat = _row_major(out_index, [Ix.of(ctx.size(node, a)) for a in range(node.ndim)])
    index, stride = [], Ix.of(1)
    for axis in reversed(range(x.ndim)):
        size = Ix.of(ctx.size(x, axis))
        index.append(flat // stride % size)
        stride = stride * size
    return index[::-1], None


reshape_p = _index(
    "reshape", lambda x, shape: np.reshape(x, shape), lambda x, shape: (tuple(shape), x.dtype),
    _linear_jvp(lambda t, shape: np.reshape(t, shape)),
    lambda g, out, x, shape: (np.reshape(g, np.shape(x)),), _reshape_map)


def _inverse(perm):
    return tuple(np.argsort(perm))


transpose_p = _index(
    "transpose", lambda x, perm: np.transpose(x, perm),
    lambda x, perm: (tuple(x.shape[p] for p in perm), x.dtype),
    _linear_jvp(lambda t, perm: np.transpose(t, perm)),
    lambda g, out, x, perm: (np.transpose(g, _inverse(perm)),),
    lambda node, out_index, ctx: ([out_index[p] for p in _inverse(node.params["perm"])], None))


def _broadcast_map(node, out_index, ctx):
    (x,) = node.inputs
    lead = node.ndim - x.ndim
    return [(Ix.of(0) if n == 1 and node.shape[lead + i] != 1 else out_index[lead + i])
            for i, n in enumerate(x.shape)], None


def _broadcast_shape(x, shape):
    ok = len(shape) >= x.ndim and all(n in (1, m) for n, m in zip(x.shape[::-1], shape[::-1]))
    if not ok:
        raise ShapeError(f"cannot broadcast shape {x.shape} to {tuple(shape)}")
    return tuple(shape), x.dtype


broadcast_to_p = _index(
    "broadcast_to", lambda x, shape: np.broadcast_to(x, shape), _broadcast_shape,
    _linear_jvp(lambda t, shape: np.broadcast_to(t, shape)),
    lambda g, out, x, shape: (unbroadcast(g, np.shape(x)),), _broadcast_map, foldable=False)


# slice: out[i] = x[start + step * i] along every axis (steps may be negative).
def _slice_impl(x, starts, steps, shape):
    index = tuple(slice(s, s + st * n if s + st * n >= 0 else None, st)
                  for s, st, n in zip(starts, steps, shape))
    return x[index]


def _slice_map(node, out_index, ctx):
    steps = node.params["steps"]
    return [Ix.of(ctx.start(node, axis)) + step * i for axis, (step, i) in enumerate(zip(steps, out_index))], None


slice_p = _index(
    "slice", _slice_impl, lambda x, starts, steps, shape: (tuple(shape), x.dtype),
    _linear_jvp(lambda t, starts, steps, shape: slice_p(t, starts=starts, steps=steps, shape=shape)),
    lambda g, out, x, starts, steps, shape: (pad_p(g, starts=starts, steps=steps, shape=np.shape(x)),),
    _slice_map)


def _pad_impl(g, starts, steps, shape):
    out = np.zeros(shape, g.dtype)
    out[tuple(slice(s, s + st * n if s + st * n >= 0 else None, st)
              for s, st, n in zip(starts, steps, g.shape))] = g
    return out


def _pad_map(node, out_index, ctx):
    """pad is slice's transpose: out[start + step*i] = g[i], zero elsewhere."""
    (g,) = node.inputs
    p = node.params
    index, conds = [], []
    for axis, (s, st, i) in enumerate(zip(p["starts"], p["steps"], out_index)):
        if st == 1 and s == 0 and g.shape[axis] == node.shape[axis]:
            index.append(i)
            continue
        offset = i - Ix.of(ctx.start(node, axis))
        size = Ix.of(ctx.size(g, axis))
        if st == 1:
            j = offset
            conds.append(f"0 <= {j} < {size}")
        else:
            j = offset // st
            conds.append(f"{offset % st} == 0 and 0 <= {j} < {size}")
        index.append(j)
    return index, (" and ".join(conds) or None)


pad_p = _index(
    "pad", _pad_impl, lambda g, starts, steps, shape: (tuple(shape), g.dtype),
    _linear_jvp(lambda t, starts, steps, shape: pad_p(t, starts=starts, steps=steps, shape=shape)),
    lambda g, out, x, starts, steps, shape: (slice_p(g, starts=starts, steps=steps, shape=np.shape(x)),),
    _pad_map)


# diagonal: out[..., k] = x[..., k + max(-offset, 0), k + max(offset, 0)] over (axis1, axis2)
def _diagonal_shape(x, offset, axis1, axis2):
    n1, n2 = x.shape[axis1], x.shape[axis2]
    length = max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))
    rest = tuple(n for i, n in enumerate(x.shape) if i not in (axis1, axis2))
    return rest + (length,), x.dtype


def _diagonal_map(node, out_index, ctx):
    (x,) = node.inputs
    p = node.params
    k = out_index[-1]
    rest = iter(out_index[:-1])
    index = []
    for axis in range(x.ndim):
        if axis == p["axis1"]:
            index.append(k + max(-p["offset"], 0))
        elif axis == p["axis2"]:
            index.append(k + max(p["offset"], 0))
        else:
            index.append(next(rest))
    return index, None


diagonal_p = _index(
    "diagonal", lambda x, offset, axis1, axis2: np.diagonal(x, offset, axis1, axis2).copy(), _diagonal_shape,
    _linear_jvp(lambda t, **p: diagonal_p(t, **p)),
    lambda g, out, x, **p: (diag_embed_p(g, shape=np.shape(x), **p),), _diagonal_map)


def _diag_embed_impl(g, shape, offset, axis1, axis2):
    out = np.zeros(shape, g.dtype)
    for k in range(g.shape[-1]):
        index = [slice(None)] * len(shape)
        index[axis1] = k + max(-offset, 0)
        index[axis2] = k + max(offset, 0)
        out[tuple(index)] = g[..., k]
    return out


def _diag_embed_map(node, out_index, ctx):
    p = node.params
    i, j = out_index[p["axis1"]], out_index[p["axis2"]]
    rest = [ix for a, ix in enumerate(out_index) if a not in (p["axis1"], p["axis2"])]
    k = i - max(-p["offset"], 0)
    (g,) = node.inputs
    return rest + [k], f"{j - i} == {p['offset']} and 0 <= {k} < {Ix.of(ctx.size(g, g.ndim - 1))}"


diag_embed_p = _index(
    "diag_embed", _diag_embed_impl, lambda g, shape, **p: (tuple(shape), g.dtype),
    _linear_jvp(lambda t, **p: diag_embed_p(t, **p)),
    lambda g, out, x, shape, **p: (diagonal_p(g, **p),), _diag_embed_map)


# --- gather / scatter --------------------------------------------------------------------
def _take_shape(x, idx, axis):
    if idx.dtype.kind not in "iu":
        raise ShapeError(f"array indices must be integers, got {idx.dtype}")
    return x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype


take_p = Primitive(
    "take", impl=lambda x, idx, axis: np.take(x, idx, axis=axis), shape_rule=_take_shape,
    jvp=lambda primals, tangents, out, axis: take_p(tangents[0], primals[1], axis=axis),
    vjp=lambda g, out, x, idx, axis: (scatter_add_p(g, idx, axis=axis, size=np.shape(x)[axis]), None),
    kind="library")


def _scatter_add_impl(g, idx, axis, size):
    shape = g.shape[:axis] + (size,) + g.shape[axis + idx.ndim:]
    out = np.zeros(shape, g.dtype)
    moved = np.moveaxis(out, axis, 0)
    gm = np.moveaxis(g.reshape(g.shape[:axis] + (idx.size,) + g.shape[axis + idx.ndim:]), axis, 0)
    np.add.at(moved, idx.ravel(), gm)
    return out


scatter_add_p = Primitive(
    "scatter_add", impl=_scatter_add_impl,
    shape_rule=lambda g, idx, axis, size: (g.shape[:axis] + (size,) + g.shape[axis + idx.ndim:], g.dtype),
    jvp=lambda primals, tangents, out, axis, size: scatter_add_p(tangents[0], primals[1], axis=axis, size=size),
    vjp=lambda g, out, x, idx, axis, size: (take_p(g, idx, axis=axis), None), kind="library")


# argsort along the last axis: an integer result, so no derivative; sort = gather by it.
argsort_p = Primitive(
    "argsort", impl=lambda x: np.argsort(x, axis=-1, kind="stable"),
    shape_rule=lambda x: (x.shape, np.dtype(np.int64)), kind="library", differentiable=False)
argsort_p.lower = lambda node, out, ins, ctx: (
    f"{out} = K.argsort_rows(np.ascontiguousarray({ins[0]}).reshape((-1, {ctx.size(node.inputs[0], -1) if node.ndim else 1})))"
    f".reshape({ctx.shape_code(node)})")


# --- joins and scans ------------------------------------------------------------------------
def _concat_shape(*xs, axis):
    first = xs[0].shape
    for x in xs:
        if x.ndim != len(first) or any(a != b for i, (a, b) in enumerate(zip(x.shape, first)) if i != axis):
            raise ShapeError(f"concatenate: shapes {[x.shape for x in xs]} differ off axis {axis}")
    shape = list(first)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return tuple(shape), numpy_dtype(lambda *a: np.concatenate([np.atleast_1d(v) for v in a]),
                                     tuple(x.dtype for x in xs))


def _concat_vjp(g, out, *xs, axis):
    parts, start = [], 0
    for x in xs:
        shape = np.shape(x)
        starts = [0] * len(shape)
        starts[axis] = start
        parts.append(slice_p(g, starts=tuple(starts), steps=(1,) * len(shape), shape=shape))
        start += shape[axis]
    return tuple(parts)


def _concat_jvp(primals, tangents, out, axis):
    ts = [np.zeros_like(p) if t is None else t for p, t in zip(primals, tangents)]
    return concatenate_p(*ts, axis=axis)


concatenate_p = Primitive("concatenate", impl=lambda *xs, axis: np.concatenate(xs, axis=axis),
                          shape_rule=_concat_shape, jvp=_concat_jvp, vjp=_concat_vjp, kind="library")


def _flip(x, axis):
    shape = np.shape(x)
    starts = [0] * len(shape)
    steps = [1] * len(shape)
    starts[axis], steps[axis] = shape[axis] - 1, -1
    return slice_p(x, starts=tuple(starts), steps=tuple(steps), shape=shape)


cumsum_p = Primitive(
    "cumsum", impl=lambda x, axis: np.cumsum(x, axis=axis), shape_rule=lambda x, axis: (x.shape, x.dtype),
    jvp=_linear_jvp(lambda t, axis: cumsum_p(t, axis=axis)),
    vjp=lambda g, out, x, axis: (_flip(cumsum_p(_flip(g, axis), axis=axis), axis),), kind="library")


# --- matmul (both operands at least 2-D; the numpy-level builder promotes vectors) ------
def _matmul_shape(a, b):
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError("matmul_p needs 2-D operands")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                         f"({a.shape[-1]} != {b.shape[-2]})")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return tuple(batch) + (a.shape[-2], b.shape[-1]), np.result_type(a.dtype, b.dtype)


def _swap(x):
    return np.swapaxes(x, -1, -2)


def _matmul_jvp(primals, tangents, out):
    a, b = primals
    ta, tb = tangents
    terms = []
    if ta is not None:
        terms.append(matmul_p(ta, b))
    if tb is not None:
        terms.append(matmul_p(a, tb))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


matmul_p = Primitive(
    "matmul", impl=np.matmul, shape_rule=_matmul_shape, jvp=_matmul_jvp,
    vjp=lambda g, out, a, b: (unbroadcast(matmul_p(g, _swap(b)), np.shape(a)),
                              unbroadcast(matmul_p(_swap(a), g), np.shape(b))),
    kind="library")
