"""Reductions, shape and index primitives, and matmul.

Index primitives (reshape, transpose, broadcast_to, slice, pad, diagonal, ...) are pure
index mappings: the fused backend reads through them instead of copying. Each
declares `index_map(node, out_index, ctx) -> (input_index, condition)` where indices
are lists of `Ix` index expressions (arithmetic on them parenthesises itself, so maps
compose); `ctx.size(node, axis)` is the code for a dimension and
`ctx.start(node, axis)` the code for a slice/pad start (both read at run time, so a
kernel does not embed the sizes it was traced at).

Each also declares `symbolic_shape(node, ins, shapes)` when fusion's symbolic sizes of its
result are not those of an elementwise op or a reduction (`shapes` is fusion's shape
inference: `fresh_dim`, `near`, `matching`, `dims.unify`, `record_start`), and its
batching rule. The builders `reshape`, `transpose` and `broadcast_to` skip identities.
"""
import numpy as np

from jitad.ir import Kind, const_p, is_tracer
from jitad.primitives.core import (EXPENSIVE, as_dtype, bilinear, library_call, linear, numpy_dtype, reduction, same_type,
                                   shift_axis, shift_params, size_cost, three_sizes, wrap_like)
from jitad.ixexpr import Ix
from jitad.errors import ShapeError


def _index(name, impl, shape_rule, transpose, index_map, **facts):
    """An index primitive: linear, fused as a read through `index_map`."""
    return linear(name, impl, shape_rule, transpose, kind=Kind.INDEX, index_map=index_map, **facts)


def shape_of(x):
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


# --- builders of the shape primitives (identities are not recorded) -----------------------
def reshape(x, shape):
    shape = tuple(shape)
    return x if shape_of(x) == shape else reshape_p(x, shape=shape)


def transpose(x, perm):
    perm = tuple(perm)
    return x if perm == tuple(range(len(perm))) else transpose_p(x, perm=perm)


def broadcast_to(x, shape):
    shape = tuple(shape)
    return x if shape_of(x) == shape else broadcast_to_p(x, shape=shape)


def full(shape, fill_value, dtype):
    """A constant array as a broadcast node, so no full-size constant enters the graph."""
    shape = tuple(shape)
    value = np.asarray(fill_value, dtype)
    return broadcast_to_p(value, shape=shape) if shape else value


def zeros_like(x, dtype=None):
    return full(shape_of(x), 0, dtype or x.dtype)


def unbroadcast(g, shape):
    """Sum a cotangent down to `shape` (the transpose of NumPy broadcasting)."""
    if g is None:
        return None
    gshape = shape_of(g)
    shape = tuple(shape)
    if gshape == shape:
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1)
    if axes:
        g = reduce_sum_p(g, axes=axes)
    return reshape(g, shape)


def lead_batch(x, ndim):
    """A batched value (k, *s) with size-1 axes after the batch axis, to rank ndim + 1, so that
    NumPy's right-aligned broadcasting lines it up with unbatched operands of rank <= ndim."""
    shape = shape_of(x)
    missing = ndim + 1 - len(shape)
    return x if missing <= 0 else reshape(x, shape[:1] + (1,) * missing + shape[1:])


def is_matrix_transpose(node):
    return node.prim is transpose_p and node.params["perm"] == (1, 0)


# --- reductions -----------------------------------------------------------------------
def _expand(g, shape, axes):
    """Put reduced axes back as size-1 axes and broadcast to `shape`."""
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    g = reshape(g, kept)
    # broadcast_to_p, not np.broadcast_to: a concrete seed must stay a broadcast node,
    # never a full-size constant array in the graph
    return g if shape_of(g) == tuple(shape) else broadcast_to_p(g, shape=tuple(shape))


def _sum_vjp(g, out, x, axes):
    return (_expand(g, shape_of(x), axes),)


reduce_sum_p = reduction("reduce_sum", lambda x, axes: np.sum(x, axis=axes),
                         jvp=lambda primals, tangents, out, axes: reduce_sum_p(tangents[0], axes=axes), vjp=_sum_vjp,
                         accumulate=("0.0", "{acc} + {x}"), short="sum")


def _argext_mask(x, out, axes):
    """Where x attains the extremum, divided by how many entries tie (even split). The boolean hits
    become x's dtype by a product with a one of that dtype (convert_p is elementwise's, which builds
    on this module): exact, and no call into the NumPy front-end."""
    hit = (x == _expand(out, shape_of(x), axes)) * np.ones((), x.dtype)
    return hit / _expand(reduce_sum_p(hit, axes=axes), shape_of(x), axes)


def _extremum(name, np_fn, init, combine, short):
    return reduction(
        name, lambda x, axes: np_fn(x, axis=axes),
        jvp=lambda primals, tangents, out, axes: reduce_sum_p(tangents[0] * _argext_mask(primals[0], out, axes), axes=axes),
        vjp=lambda g, out, x, axes: (_expand(g, shape_of(x), axes) * _argext_mask(x, out, axes),),
        accumulate=(init, combine), short=short)


reduce_max_p = _extremum("reduce_max", np.max, "-np.inf", "max({acc}, {x})", "max")
reduce_min_p = _extremum("reduce_min", np.min, "np.inf", "min({acc}, {x})", "min")


def _prod_others(x, axes):
    """prod over `axes` of all entries but the one at each position, from a tree of products.

    Only multiplications (no division, no select), so it is exact where x has zeros and
    so are all its derivatives (grad of grad of prod). Up the tree: pairwise products,
    level by level; down: a child's "product of everything else" is its parent's times
    its sibling's value.
    """
    shape = shape_of(x)
    kept = [a for a in range(len(shape)) if a not in axes]
    perm = kept + list(axes)
    lead = tuple(shape[a] for a in kept)
    n = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    values = reshape(transpose(x, perm), lead + (n,))
    width = 1 << max(n - 1, 0).bit_length()  # pad with ones to a power of two
    if width > n:
        values = concatenate_p(values, np.ones(lead + (width - n,), x.dtype), axis=len(lead))
    levels = [values]
    while shape_of(levels[-1])[-1] > 1:
        first, second = _halves(levels[-1], lead)
        levels.append(first * second)
    others = np.ones(lead + (1,), x.dtype)
    for level in reversed(levels[:-1]):
        first, second = _halves(level, lead)
        # (second * others, not others * second: `others` starts as a NumPy array; the product commutes exactly)
        pairs = [reshape(half * others, lead + (shape_of(level)[-1] // 2, 1)) for half in (second, first)]
        others = reshape(concatenate_p(*pairs, axis=len(lead) + 1), lead + (shape_of(level)[-1],))
    part = others if n == shape_of(others)[-1] else \
        slice_p(others, starts=(0,) * (len(lead) + 1), steps=(1,) * (len(lead) + 1), shape=lead + (n,))
    return transpose(reshape(part, lead + tuple(shape[a] for a in axes)), tuple(np.argsort(perm)))


def _halves(level, lead):
    """The entries of even and of odd positions along the last axis of `level` (of even length)."""
    pairs = reshape(level, lead + (shape_of(level)[-1] // 2, 2))
    rank = len(lead) + 2
    return [reshape(slice_p(pairs, starts=(0,) * (rank - 1) + (k,), steps=(1,) * rank,
                            shape=shape_of(pairs)[:-1] + (1,)), shape_of(pairs)[:-1]) for k in (0, 1)]


reduce_prod_p = reduction(
    "reduce_prod", lambda x, axes: np.prod(x, axis=axes),
    jvp=lambda primals, tangents, out, axes: reduce_sum_p(tangents[0] * _prod_others(primals[0], axes), axes=axes),
    vjp=lambda g, out, x, axes: (_expand(g, shape_of(x), axes) * _prod_others(x, axes),),
    accumulate=("1.0", "{acc} * {x}"), domain=(0.5, 1.5), short="prod")


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
        # the flat index is below the size: the first axis needs no modulo (an integer division)
        index.append(flat // stride if axis == 0 else flat // stride % size)
        stride = stride * size
    return index[::-1], None


def _reshape_dims(node, ins, shapes):
    (x,) = node.inputs
    kept_in = [d for d, n in zip(ins[0], x.shape) if n != 1]
    kept_out = [a for a, n in enumerate(node.shape) if n != 1]
    if [n for n in x.shape if n != 1] == [node.shape[a] for a in kept_out]:
        out = [1] * node.ndim
        for a, d in zip(kept_out, kept_in):
            out[a] = d
        return tuple(out)
    return tuple(shapes.matching(n, ins[0]) if n != 1 else 1 for n in node.shape)


def _shift_shape(p, k):
    return {**p, "shape": (k,) + tuple(p["shape"])}


def _fold_reshape(node, inputs, values):
    """reshape(x) to its own shape is x; reshape(reshape(x)) is one reshape."""
    (inner,) = inputs
    if inner.shape == node.shape:
        return values[0]
    if inner.prim is reshape_p and is_tracer(values[0]):
        x = wrap_like(values[0], inner.inputs[0])
        return x if inner.inputs[0].shape == node.shape else reshape_p(x, **node.params)
    return None


def _renames_axes(node):
    """Whether a reshape only inserts or removes size-1 axes (its read is a renaming of indices)."""
    (x,) = node.inputs
    return [n for n in x.shape if n != 1] == [n for n in node.shape if n != 1]


def _reshape_cost(node):
    """A reshape that merges or splits axes reads through an integer division and a modulo per axis
    of its operand. Two of them composed cost more than fusion inlines (INLINE_LIMIT = 48): a chain
    (the exclusive products of prod's rule: reshapes, transposes and concatenations) is stored every
    second link, rather than composed into one index expression per read whose size multiplies
    with each link (Numba and LLVM took 38 s to compile prod's second-order kernel; now 12 s)."""
    return 0 if _renames_axes(node) else 25


reshape_p = _index(
    "reshape", lambda x, shape: np.reshape(x, shape), lambda x, shape: (tuple(shape), x.dtype),
    lambda g, x, shape: (reshape(g, shape_of(x)),), _reshape_map, injective=True,
    symbolic_shape=_reshape_dims, batch=shift_params(_shift_shape), simplify=_fold_reshape,
    inline_cost=_reshape_cost)


def _inverse(perm):
    return tuple(np.argsort(perm))


def _fold_transpose(node, inputs, values):
    """transpose by the identity is x; transpose(transpose(x)) is one transpose."""
    perm = node.params["perm"]
    if perm == tuple(range(node.ndim)):
        return values[0]
    (inner,) = inputs
    if inner.prim is transpose_p and is_tracer(values[0]):
        x = wrap_like(values[0], inner.inputs[0])
        perm = tuple(inner.params["perm"][p] for p in perm)
        return x if perm == tuple(range(len(perm))) else transpose_p(x, perm=perm)
    return None


transpose_p = _index(
    "transpose", lambda x, perm: np.transpose(x, perm),
    lambda x, perm: (tuple(x.shape[p] for p in perm), x.dtype),
    lambda g, x, perm: (transpose(g, _inverse(perm)),),
    lambda node, out_index, ctx: ([out_index[p] for p in _inverse(node.params["perm"])], None),
    injective=True, symbolic_shape=lambda node, ins, shapes: tuple(ins[0][p] for p in node.params["perm"]),
    batch=shift_params(lambda p, k: {**p, "perm": (0,) + tuple(a + 1 for a in p["perm"])}),
    simplify=_fold_transpose, short="tr")


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


def _broadcast_dims(node, ins, shapes):
    (x,) = node.inputs
    lead = node.ndim - x.ndim
    return tuple(shapes.fresh_dim(n) if a < lead or x.shape[a - lead] != n else ins[0][a - lead]
                 for a, n in enumerate(node.shape))


def _batch_broadcast(node, values, batched, k):
    return broadcast_to_p(lead_batch(values[0], node.ndim), **_shift_shape(node.params, k))


broadcast_to_p = _index(
    "broadcast_to", lambda x, shape: np.broadcast_to(x, shape), _broadcast_shape,
    lambda g, x, shape: (unbroadcast(g, shape_of(x)),), _broadcast_map, foldable=False,
    symbolic_shape=_broadcast_dims, batch=_batch_broadcast, short="bcast",
    simplify=lambda node, inputs, values: values[0] if inputs[0].shape == node.shape else None)


# slice: out[i] = x[start + step * i] along every axis (steps may be negative).
def _slice_impl(x, starts, steps, shape):
    index = tuple(slice(s, s + st * n if s + st * n >= 0 else None, st)
                  for s, st, n in zip(starts, steps, shape))
    return x[index]


def _slice_map(node, out_index, ctx):
    steps = node.params["steps"]
    return [Ix.of(ctx.start(node, axis)) + step * i for axis, (step, i) in enumerate(zip(steps, out_index))], None


def _slice_dims(node, ins, shapes):
    (x,) = node.inputs
    starts, steps = node.params["starts"], node.params["steps"]
    out = []
    for axis, (n, start, step) in enumerate(zip(node.shape, starts, steps)):
        base = ins[0][axis]
        shapes.record_start(node, axis, base, x.shape[axis], start)
        out.append(shapes.near(base, n) if step == 1 else shapes.fresh_dim(n))
    return tuple(out)


def _shift_window(p, k):
    return {**p, "starts": (0,) + tuple(p["starts"]), "steps": (1,) + tuple(p["steps"]),
            "shape": (k,) + tuple(p["shape"])}


def _whole_window(node, inputs, values):
    """A slice or pad that keeps every element in place is its operand (a loop's stacked xs[t])."""
    p = node.params
    whole = inputs[0].shape == node.shape and not any(p["starts"]) and all(st == 1 for st in p["steps"])
    return values[0] if whole else None


slice_p = _index(
    "slice", _slice_impl, lambda x, starts, steps, shape: (tuple(shape), x.dtype),
    lambda g, x, starts, steps, shape: (pad_p(g, starts=starts, steps=steps, shape=shape_of(x)),),
    _slice_map, injective=True, symbolic_shape=_slice_dims, batch=shift_params(_shift_window), simplify=_whole_window)


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


def _pad_dims(node, ins, shapes):
    out = []
    for axis, (n, start) in enumerate(zip(node.shape, node.params["starts"])):
        base = ins[0][axis]
        dim = shapes.near(base, n) if node.params["steps"][axis] == 1 else shapes.fresh_dim(n)
        out.append(dim)
        shapes.record_start(node, axis, dim, n, start)
    return tuple(out)


pad_p = _index(
    "pad", _pad_impl, lambda g, starts, steps, shape: (tuple(shape), g.dtype),
    lambda g, x, starts, steps, shape: (slice_p(g, starts=starts, steps=steps, shape=shape_of(x)),),
    _pad_map, injective=True, symbolic_shape=_pad_dims, batch=shift_params(_shift_window), simplify=_whole_window)


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


def _shift_diagonal(p, k):
    return {**p, "axis1": p["axis1"] + 1, "axis2": p["axis2"] + 1}


diagonal_p = _index(
    "diagonal", lambda x, offset, axis1, axis2: np.diagonal(x, offset, axis1, axis2).copy(), _diagonal_shape,
    lambda g, x, **p: (diag_embed_p(g, shape=shape_of(x), **p),), _diagonal_map, injective=True,
    batch=shift_params(_shift_diagonal))


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
    lambda g, x, shape, **p: (diagonal_p(g, **p),), _diag_embed_map, injective=True,
    batch=shift_params(lambda p, k: _shift_diagonal(_shift_shape(p, k), k)))


# --- gather / scatter --------------------------------------------------------------------
def _take_shape(x, idx, axis):
    if idx.dtype.kind not in "iu":
        raise ShapeError(f"array indices must be integers, got {idx.dtype}")
    return x.shape[:axis] + idx.shape + x.shape[axis + 1:], x.dtype


def _lower_take(node, out, ins, ctx):
    x, idx = node.inputs
    axis = node.params["axis"]
    before, extent, after = three_sizes(ctx, x, axis, ctx.size(x, axis))
    idx_code = f"np.ascontiguousarray({ins[1]}).ravel()" if idx.ndim else f"np.array([{ins[1]}])"
    return (f"{out} = K.take3(np.ascontiguousarray({ins[0]}).reshape(({before}, {extent}, {after})), "
            f"{idx_code}).reshape({ctx.shape_code(node)})")


def _take_dims(node, ins, shapes):
    axis = node.params["axis"]
    return ins[0][:axis] + ins[1] + ins[0][axis + 1:]


take_p = linear(
    "take", lambda x, idx, axis: np.take(x, idx, axis=axis), _take_shape,
    lambda g, x, idx, axis: (scatter_add_p(g, idx, axis=axis, size=shape_of(x)[axis]), None),
    lower=_lower_take, symbolic_shape=_take_dims, batch=shift_params(shift_axis), cost=size_cost)


def _scatter_add_impl(g, idx, axis, size):
    shape = g.shape[:axis] + (size,) + g.shape[axis + idx.ndim:]
    out = np.zeros(shape, g.dtype)
    moved = np.moveaxis(out, axis, 0)
    gm = np.moveaxis(g.reshape(g.shape[:axis] + (idx.size,) + g.shape[axis + idx.ndim:]), axis, 0)
    np.add.at(moved, idx.ravel(), gm)
    return out


def _lower_scatter_add(node, out, ins, ctx):
    g, idx = node.inputs
    axis = node.params["axis"]
    before = " * ".join(ctx.size(g, a) for a in range(axis)) or "1"
    after = " * ".join(ctx.size(g, a) for a in range(axis + idx.ndim, g.ndim)) or "1"
    extent = " * ".join(ctx.size(idx, a) for a in range(idx.ndim)) or "1"
    idx_code = f"np.ascontiguousarray({ins[1]}).ravel()" if idx.ndim else f"np.array([{ins[1]}])"
    return (f"{out} = K.scatter_add3(np.ascontiguousarray({ins[0]}).reshape(({before}, {extent}, {after})), "
            f"{idx_code}, {ctx.size(node, axis)}).reshape({ctx.shape_code(node)})")


scatter_add_p = linear(
    "scatter_add", _scatter_add_impl,
    lambda g, idx, axis, size: (g.shape[:axis] + (size,) + g.shape[axis + idx.ndim:], g.dtype),
    lambda g, x, idx, axis, size: (take_p(g, idx, axis=axis), None),
    lower=_lower_scatter_add, batch=shift_params(shift_axis), cost=size_cost, short="scatter")


# dynamic_slice: x[start:start + size] along `axis` at a traced int start (a checkpointed loop's
# segment reads its rows of the xs so, jitad.transforms.loops). Invariant, kept by its callers:
# 0 <= start <= x.shape[axis] - size (the reference executor checks it). Compiled: a copy, or rows
# s:s + size of the stored operand read in place (codegen `KernelWriter._rows_view`).
def _dynamic_slice_impl(x, start, axis, size):
    start = int(start)
    if not 0 <= start <= x.shape[axis] - size:
        raise IndexError(f"dynamic_slice: rows {start}:{start + size} of an axis of {x.shape[axis]}")
    return x[(slice(None),) * axis + (slice(start, start + size),)].copy()


def _dynamic_slice_shape(x, start, axis, size):
    if start.ndim != 0 or np.dtype(start.dtype).kind not in "iu":
        raise ShapeError(f"dynamic_slice: the start must be an integer scalar, got {start.dtype}{tuple(start.shape)}")
    if not 0 <= size <= x.shape[axis]:
        raise ShapeError(f"dynamic_slice: {size} rows of an axis of {x.shape[axis]}")
    return x.shape[:axis] + (size,) + x.shape[axis + 1:], x.dtype


def _dynamic_slice_transpose(g, x, start, axis, size):
    """The cotangent g scattered back to rows start ... start + size - 1 (zero elsewhere)."""
    rows = start + np.arange(size, dtype=np.int64)  # a traced start's operator: an add node
    return scatter_add_p(g, rows, axis=axis, size=shape_of(x)[axis]), None


def _lower_dynamic_slice(node, out, ins, ctx):
    axis, start = node.params["axis"], ins[1]
    index = ", ".join([":"] * axis + [f"{start}:{start} + {ctx.size(node, axis)}"])
    return f"{out} = {ins[0]}[{index}].copy()"


def _dynamic_slice_dims(node, ins, shapes):
    axis = node.params["axis"]
    return ins[0][:axis] + (shapes.fresh_dim(node.params["size"]),) + ins[0][axis + 1:]


dynamic_slice_p = linear(
    "dynamic_slice", _dynamic_slice_impl, _dynamic_slice_shape, _dynamic_slice_transpose,
    lower=_lower_dynamic_slice, symbolic_shape=_dynamic_slice_dims, batch=shift_params(shift_axis),
    cost=size_cost, contiguous_output=True, short="rows")


# argsort along the last axis: an integer result, so no derivative; sort = gather by it.
argsort_p = library_call(
    "argsort", lambda x: np.argsort(x, axis=-1, kind="stable"), lambda x: (x.shape, np.dtype(np.int64)),
    jvp=None, vjp=None, differentiable=False,
    lower=lambda node, out, ins, ctx: (
        f"{out} = K.argsort_rows(np.ascontiguousarray({ins[0]}).reshape((-1, {ctx.size(node.inputs[0], -1) if node.ndim else 1})))"
        f".reshape({ctx.shape_code(node)})"))


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
        shape = shape_of(x)
        starts = [0] * len(shape)
        starts[axis] = start
        parts.append(slice_p(g, starts=tuple(starts), steps=(1,) * len(shape), shape=shape))
        start += shape[axis]
    return tuple(parts)


def _concat_jvp(primals, tangents, out, axis):
    ts = [zeros_like(p) if t is None else t for p, t in zip(primals, tangents)]
    return concatenate_p(*ts, axis=axis)


def _lower_concatenate(node, out, ins, ctx):
    parts = ", ".join(f"np.ascontiguousarray({as_dtype(code, part, node.dtype)})"
                      for code, part in zip(ins, node.inputs))
    return f"{out} = np.concatenate(({parts},), axis={node.params['axis']})"


def _batch_concatenate(node, values, batched, k):
    """Any operand may be batched: the unbatched ones are broadcast along the batch axis."""
    values = [v if b else broadcast_to(v, (k,) + i.shape) for v, b, i in zip(values, batched, node.inputs)]
    return concatenate_p(*values, **shift_axis(node.params, k))


concatenate_p = library_call("concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_shape,
                             _concat_jvp, _concat_vjp, lower=_lower_concatenate, batch=_batch_concatenate,
                             cost=size_cost, short="concat")


def _flip(x, axis):
    shape = shape_of(x)
    starts = [0] * len(shape)
    steps = [1] * len(shape)
    starts[axis], steps[axis] = shape[axis] - 1, -1
    return slice_p(x, starts=tuple(starts), steps=tuple(steps), shape=shape)


def _lower_cumsum(node, out, ins, ctx):
    (x,) = node.inputs
    axis = node.params["axis"]
    before, extent, after = three_sizes(ctx, x, axis, ctx.size(x, axis))
    return (f"{out} = K.cumsum3(np.ascontiguousarray({ins[0]}).reshape(({before}, {extent}, {after})))"
            f".reshape({ctx.shape_code(node)})")


cumsum_p = linear(
    "cumsum", lambda x, axis: np.cumsum(x, axis=axis), lambda x, axis: (x.shape, x.dtype),
    lambda g, x, axis: (_flip(cumsum_p(_flip(g, axis), axis=axis), axis),),
    lower=_lower_cumsum, symbolic_shape=lambda node, ins, shapes: ins[0], batch=shift_params(shift_axis),
    cost=size_cost)


# --- matmul (both operands at least 2-D; the numpy-level builder promotes vectors) ------
def _matmul_shape(a, b):
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError("matmul_p needs 2-D operands")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} are not aligned "
                         f"({a.shape[-1]} != {b.shape[-2]})")
    if a.ndim == b.ndim == 2:  # the common case: no batch axes to broadcast
        return (a.shape[0], b.shape[1]), np.result_type(a.dtype, b.dtype)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return tuple(batch) + (a.shape[-2], b.shape[-1]), np.result_type(a.dtype, b.dtype)


def _swap(x):
    """The matrix transpose of each matrix of a stack."""
    n = len(shape_of(x))
    return transpose(x, tuple(range(n - 2)) + (n - 1, n - 2))


def _matmul_dims(node, ins, shapes):
    a, b = node.inputs
    shapes.dims.unify(ins[0][-1], ins[1][-2])
    batch = []
    for axis in range(node.ndim - 2):
        chosen = 1
        for i, shape in zip((a, b), ins):
            k = axis - (node.ndim - i.ndim)
            if k >= 0 and i.shape[k] != 1:
                chosen = shape[k] if chosen == 1 else chosen
        batch.append(chosen)
    return tuple(batch) + (ins[0][-2], ins[1][-1])


def _lower_matmul(node, out, ins, ctx):
    a, b = node.inputs
    ins = [as_dtype(code, operand, node.dtype) for code, operand in zip(ins, node.inputs)]
    if a.ndim == 2 and b.ndim == 2:
        operands = [code if code.endswith(".T") or ctx.is_contiguous(operand, code) else f"np.ascontiguousarray({code})"
                    for code, operand in zip(ins, node.inputs)]
        # in a kernel, K.dot: Numba's np.dot would compile its BLAS call again in every process
        return f"{out} = {'np' if ctx.split else 'K'}.dot({operands[0]}, {operands[1]})"
    batch = [ctx.size(node, k) for k in range(node.ndim - 2)]
    bsize = " * ".join(batch)
    m, kk, n = ctx.size(a, a.ndim - 2), ctx.size(a, a.ndim - 1), ctx.size(b, b.ndim - 1)
    bshape = ", ".join(batch)
    return "\n".join([
        f"a3_{out} = np.ascontiguousarray(np.broadcast_to({ins[0]}, ({bshape}, {m}, {kk}))).reshape(({bsize}, {m}, {kk}))",
        f"b3_{out} = np.ascontiguousarray(np.broadcast_to({ins[1]}, ({bshape}, {kk}, {n}))).reshape(({bsize}, {kk}, {n}))",
        f"{out} = K.bmm(a3_{out}, b3_{out}).reshape({ctx.shape_code(node)})",
    ])


def _matmul_operands(node):
    """The operands stored for the call; BLAS reads a 2-D transpose as a view of its input."""
    if node.ndim == 2:
        return [i.inputs[0] if is_matrix_transpose(i) else i for i in node.inputs]
    return list(node.inputs)


def _batch_matmul(node, values, batched, k):
    """One 2-D product where the batch folds into rows or columns; else NumPy's batched matmul."""
    (a, b), (A, B) = values, node.inputs
    if batched[0] and not batched[1] and B.ndim == 2:  # (k, ..., m, n) @ (n, p)
        rows = matmul_p(reshape(a, (k * int(np.prod(A.shape[:-1], dtype=np.int64)), A.shape[-1])), b)
        return reshape(rows, (k,) + node.shape)
    if batched[1] and not batched[0] and A.ndim == 2 and B.ndim == 2:  # (m, n) @ (k, n, p)
        (n, p), m = B.shape, A.shape[0]
        if p == 1:  # columns: a 2-D transpose BLAS reads as a view
            out = matmul_p(a, transpose(reshape(b, (k, n)), (1, 0)))
            return reshape(transpose(out, (1, 0)), (k, m, 1))
        cols = reshape(transpose(b, (1, 0, 2)), (n, k * p))
        return transpose(reshape(matmul_p(a, cols), (m, k, p)), (1, 0, 2))
    return matmul_p(*[lead_batch(v, node.ndim) if f else v for v, f in zip(values, batched)])


def _is_identity(node):
    """Whether `node` is a constant identity matrix (a one-sweep Jacobian's seed)."""
    if node.prim is not const_p or node.ndim != 2 or node.shape[0] != node.shape[1]:
        return False
    return bool(np.array_equal(node.value, np.eye(node.shape[0])))


def _drop_identity_factor(node, inputs, values):
    """a @ I = a and I @ b = b."""
    a, b = inputs
    if _is_identity(b) and same_type(node, a):
        return values[0]
    if _is_identity(a) and same_type(node, b):
        return values[1]
    return None


matmul_p = bilinear(
    "matmul", np.matmul, _matmul_shape,
    lambda g, a, b: unbroadcast(matmul_p(g, _swap(b)), shape_of(a)),
    lambda g, a, b: unbroadcast(matmul_p(_swap(a), g), shape_of(b)),
    kind=Kind.LIBRARY, lower=_lower_matmul, stored_operands=_matmul_operands, contiguous_output=True,
    symbolic_shape=_matmul_dims, batch=_batch_matmul, simplify=_drop_identity_factor,
    cost=lambda node: node.size * node.inputs[0].shape[-1])
