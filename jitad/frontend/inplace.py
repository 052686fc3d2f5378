"""In-place writes in traced code, as functional updates (versioned values).

`x[key] = v` on a traced array computes the whole new array and points the `Tracer` object at
it (the object is mutable; its graph node is the current version). NumPy's aliasing is kept
by *positions*: every traced view (a basic slice, a reshape, a transpose, ...) records its root
array and, as a concrete integer array, the flat positions in the root it shows. A write
through a view updates the root at those positions; a view read after its root changed is
re-read from the root. Whether an operation gives a view or a copy is decided by NumPy
itself, applied to the positions array.

Arrays the user creates while tracing (np.zeros, np.empty, np.array of numbers, ...) are
`Workspace` arrays: ordinary ndarrays until a traced value is written into one, traced from
then on (its views included, found through NumPy's memory layout).
"""
import functools

import numpy as np

from jitad import primitives as P
from jitad.errors import InPlaceUpdateError
from jitad.frontend import numpy_ops
from jitad.ir import current_builder, is_tracer


# callers whose np.zeros & co. stay plain arrays while tracing (only the user's become Workspaces)
LIBRARIES = frozenset(("jitad", "numpy", "scipy", "numba", "optree", "llvmlite", "networkx"))


NOT_TRACED = ("That array is the caller's, captured from outside, or made by a function jitad does not "
              "watch (only np.zeros/ones/empty/full, their _like forms, np.array, np.copy, np.eye and "
              "np.identity called in the function make writable arrays); jitad never modifies the caller's "
              "arrays. Copy it inside the function (a = np.array(a)) and write into the copy.")


# --- positions ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def root_positions(shape):
    """arange(size).reshape(shape), shared: the positions a root array shows. Never written into:
    it stays writeable so that NumPy marks the views it cannot write through (broadcast_to,
    diagonal) read-only, as it does for the values."""
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def positions_of(tracer):
    view = tracer._view
    if view is None:  # a root: its own positions, in its memory layout (C unless recorded)
        return root_positions(tracer.shape) if tracer._layout is None else tracer._layout
    return view[1]


def root_of(tracer):
    view = tracer._view
    return tracer if view is None else view[0]


def _has_tracer(key):
    if is_tracer(key):
        return True
    if isinstance(key, (tuple, list)):
        return any(_has_tracer(k) for k in key)
    return isinstance(key, Workspace) and key.current() is not None


def refresh(view):
    """Re-read a view whose root was written since: the root's values at the view's positions."""
    root, positions, _ = view._view
    if positions is None:
        raise InPlaceUpdateError("a read of a view made by an operation jitad cannot follow, after a write "
                                 "into the array it views", "Make a copy (.copy()) before writing, or "
                                 "index the written array again after the write. ")
    flat = numpy_ops.reshape(root, (root.size,))
    new = numpy_ops.getitem(flat, positions)
    view._node = new.node
    view._view = (root, positions, root._version)


def opaque_view(result, base):
    """A result that may share memory with `base` in a way jitad cannot follow: reading it is fine
    until `base` is written; a write into it is an error."""
    root = root_of(base)
    if root._scalar:  # NumPy made a new array of a scalar argument
        return result
    result._view = (root, None, root._version)
    return result


def make_view(result, base, positions):
    """Mark `result` (a fresh Tracer of the same values) as a view of `base` if `positions`
    (NumPy's answer on base's positions array) shares memory with them; else leave it a copy."""
    base_positions = positions_of(base)
    if not isinstance(positions, np.ndarray) or not np.may_share_memory(positions, base_positions) or \
            root_of(base)._scalar:  # (NumPy makes a new array of a scalar argument)
        return result
    if positions.shape != result.shape:
        raise AssertionError(f"view positions {positions.shape} do not match the value {result.shape}")
    root = root_of(base)
    result._view = (root, positions, root._version)
    return result


# --- the functional update ------------------------------------------------------------------
def _cast(value, dtype):
    if is_tracer(value):
        return value if value.dtype == dtype else numpy_ops.astype(value, dtype)
    return np.asarray(value).astype(dtype, copy=False)


def _fit(value, shape):
    """`value` broadcast to the written block's shape, with NumPy's assignment rules."""
    vshape = numpy_ops.shape_of(value)
    while len(vshape) > len(shape) and vshape[0] == 1:  # NumPy drops leading length-1 axes
        vshape = vshape[1:]
        value = numpy_ops.reshape(value, vshape)
    try:
        fits = len(vshape) <= len(shape) and np.broadcast_shapes(vshape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"could not broadcast input array from shape {numpy_ops.shape_of(value)} "
                         f"into shape {tuple(shape)}")
    return numpy_ops.broadcast_to(value, tuple(shape))


def update(root, positions, value, accumulate=False):
    """The new value of `root` with `value` written (or, accumulating, added) at `positions`."""
    positions = np.asarray(positions)
    if positions.size == 0:
        return root
    value = _fit(_cast(value, root.dtype), positions.shape)
    size, shape = root.size, root.shape
    flat = positions.ravel()
    root_flat = numpy_ops.reshape(root, (size,))
    values = numpy_ops.reshape(value, (flat.size,))
    if accumulate:  # np.add.at: repeated positions add up (unbuffered)
        new = root_flat + P.scatter_add_p(values, flat, axis=0, size=size)
        return numpy_ops.reshape(new, shape)
    # plain assignment: of repeated positions the last write wins, as in NumPy
    reversed_first = np.unique(flat[::-1], return_index=True)[1] if flat.size > 1 else flat
    if reversed_first.size != flat.size:
        keep = np.sort(flat.size - 1 - reversed_first)
        flat, values = flat[keep], numpy_ops.getitem(values, keep)
    # new = where(written, new values, old). The positions are kernel arguments (index arrays),
    # never literals in generated code, so a loop's many writes share one compiled kernel.
    ones = numpy_ops.broadcast_to(np.ones((), np.float64), (flat.size,))
    hit = P.scatter_add_p(ones, flat, axis=0, size=size) > 0
    if flat.size == 1:  # one element (x[i] = v): broadcast it
        written = numpy_ops.broadcast_to(numpy_ops.reshape(values, ()), (size,))
    else:  # a gather of the written values, bit for bit (a scatter would add onto +0.0: -0.0 + 0.0 is +0.0)
        source = np.zeros(size, np.int64)
        source[flat] = np.arange(flat.size)
        written = P.take_p(values, source, axis=0)
    new = numpy_ops.where(hit, written, root_flat)
    return numpy_ops.reshape(new, shape)


# comparing each of n written positions with each of an array's m positions: n * m at most
TRACED_WRITE_LIMIT = 1 << 24


def traced_update(target, key, value):
    """The new value of `target` (in its shape) with `value` written at traced positions.

    Traced integer indices (x[np.argmax(y)] = v, x[idx, 1:] = v): every position of x takes the
    value of the last write to it, NumPy's order, found by comparing each written position with
    each position of x; the derivative reaches the written values and the kept old ones. A traced
    boolean mask of the leading axes (x[x < 0] = 0) writes a value that broadcasts over the masked
    rows: np.where(mask, value, x); any other write with a traced mask reads the mask from the
    call's values (a guard, `numpy_ops.mask_value`)."""
    keys = key if isinstance(key, tuple) else (key,)
    value, shape = _cast(resolve(value), target.dtype), target.shape
    if any(is_tracer(k) and k.dtype == bool for k in keys):
        mask, row = keys[0], None
        if len(keys) == 1 and mask.ndim and mask.shape == shape[:mask.ndim]:
            rest = shape[mask.ndim:]
            try:  # a value that fits any number of rows (x[x < 0] = 0): np.where, no guard
                row = numpy_ops.reshape(_fit(value, (1,) + rest), rest)
            except ValueError:
                pass
        if row is None:  # the positions written are read from the call's values (a guard)
            key = tuple(numpy_ops.mask_value(k, "Assignment with a traced boolean mask")
                        if is_tracer(k) and k.dtype == bool else k for k in keys)
            if not _has_tracer(key):
                return update(target, root_positions(shape)[key], value)
        else:
            mask = numpy_ops.reshape(mask, mask.shape + (1,) * len(rest))
            return numpy_ops.where(mask, numpy_ops.broadcast_to(row, shape), target)
    positions = numpy_ops.getitem(root_positions(shape), key)  # traced: the flat positions written
    block = numpy_ops.shape_of(positions)
    count, size = int(np.prod(block, dtype=np.int64)), target.size
    if count == 0:
        return target
    if count * size > TRACED_WRITE_LIMIT:
        raise InPlaceUpdateError(
            f"assignment of {count} values at traced positions into an array of {size}",
            f"jitad compares each written position with each position of the array ({count} x {size} "
            "comparisons). Write the new array with np.where(mask, new, x), or make the indices concrete. ")
    values = numpy_ops.reshape(_fit(value, block), (count,))
    written_at = numpy_ops.reshape(positions, (count, 1)) == np.arange(size)[None, :]
    last = numpy_ops.amax(numpy_ops.where(written_at, np.arange(count)[:, None], -1), axis=0)  # -1: kept
    new = numpy_ops.where(last >= 0, P.take_p(values, np.maximum(last, 0), axis=0),
                          numpy_ops.reshape(target, (size,)))
    return numpy_ops.reshape(new, shape)


def _commit(root, new):
    """Point the root Tracer at its new version; its views re-read it when next used."""
    if new is root:
        return
    node = new.node
    if node.dtype != root.dtype or node.shape != root.shape:
        raise AssertionError(f"in-place update changed {root.shape}/{root.dtype} into {node.shape}/{node.dtype}")
    root._node = node
    root._version += 1


def setitem(target, key, value, accumulate=False):
    """`target[key] = value` (or np.add.at(target, key, value)) on a Tracer."""
    what = "np.add.at" if accumulate else "assignment"
    value = resolve(value)
    if target._view is not None and target._view[1] is None:
        raise InPlaceUpdateError(f"{what} into a view made by an operation jitad cannot follow",
                                 "Make a copy (.copy()) and write into it, or write into the original array. ")
    if root_of(target).builder is not current_builder():
        raise InPlaceUpdateError(f"{what} into a traced array of an enclosing function (captured by a "
                                 "closure) from inside a nested transform", "Return the new value instead. ")
    if not positions_of(target).flags.writeable:
        raise ValueError("assignment destination is read-only (NumPy gives a read-only view here: "
                         "a broadcast or a diagonal); write into a copy (.copy()) instead")
    if accumulate and any(is_tracer(k) and k.dtype == bool for k in (key if isinstance(key, tuple) else (key,))):
        key = tuple(numpy_ops.mask_value(k, "np.add.at with a traced boolean mask") if is_tracer(k) and
                    k.dtype == bool else k for k in (key if isinstance(key, tuple) else (key,)))
    if not accumulate and _has_tracer(key):
        new = traced_update(target, resolve_tree(key), value)
        if target._view is None:
            _commit(target, new)
        else:  # through a view: the view's new values, written at its (concrete) positions
            setitem(target, Ellipsis, new)
        return
    if not accumulate or not _has_tracer(key):  # concrete positions
        positions = positions_of(target)[key]
        root = root_of(target)
        _commit(root, update(root, positions, value, accumulate))
        return
    # np.add.at at traced indices: one integer index array along the first axis
    if isinstance(key, tuple):
        if len(key) != 1:
            raise InPlaceUpdateError("np.add.at with traced indices on more than the first axis",
                                     "Pass one integer index array for the first axis. ")
        key = key[0]
    if not is_tracer(key) or key.dtype.kind not in "iu" or target._view is not None:
        raise InPlaceUpdateError("np.add.at with traced indices into a view or with a traced mask",
                                 "Pass one integer index array for the first axis of an array. ")
    rows = key.shape + target.shape[1:]
    value = _fit(_cast(value, target.dtype), rows)
    _commit(target, target + P.scatter_add_p(value, key, axis=0, size=target.shape[0]))


def add_at(ufunc, target, key, value=None):
    """np.add.at / np.subtract.at into a Tracer or a Workspace."""
    if ufunc not in (np.add, np.subtract) or value is None:
        raise InPlaceUpdateError(f"np.{ufunc.__name__}.at with a traced value",
                                 "np.add.at and np.subtract.at are supported. ")
    value = resolve(value)
    if ufunc is np.subtract:
        value = -value if is_tracer(value) else -np.asarray(value)
    if isinstance(target, Workspace):
        target = target.as_tracer()
    elif not is_tracer(target):
        raise InPlaceUpdateError(f"np.{ufunc.__name__}.at of a traced value into a NumPy array that is not "
                                 "traced", NOT_TRACED)
    setitem(target, key, value, accumulate=True)


# --- arrays created while tracing -----------------------------------------------------------
class Workspace(np.ndarray):
    """An ndarray made inside a traced function: concrete, until a traced value is written
    into it (or into one of its views); from then on every use sees the traced value."""

    def root(self):
        base = np.ndarray.__getattribute__(self, "base")
        return base if isinstance(base, Workspace) and base.base is None else self

    def current(self):
        """The traced value this array (or view) holds, or None while it is concrete."""
        root = Workspace.root(self)
        traced = root.__dict__.get("_traced")
        if traced is None:
            return None
        if root is self:
            return traced
        view = root.__dict__["_views"].get(id(self))
        if view is None or view[0] is not self:
            view = (self, _view_tracer(traced, Workspace.positions(self, root)))
            root.__dict__["_views"][id(self)] = view
        return view[1]

    def positions(self, root):
        """Root flat (C-order) positions of this view's elements, from NumPy's memory layout."""
        if self.itemsize != root.itemsize or not (root.flags.c_contiguous or root.flags.f_contiguous):
            raise InPlaceUpdateError("a write through a view jitad cannot follow (another dtype or layout)",
                                     "Write into the original array instead. ")
        step = 8  # bytes per int64 position
        memory = np.empty(root.size, np.int64)
        np.ndarray(root.shape, np.int64, buffer=memory,
                   strides=tuple(s // root.itemsize * step for s in root.strides))[...] = root_positions(root.shape)
        offset = (self.__array_interface__["data"][0] - root.__array_interface__["data"][0]) // root.itemsize
        return np.ndarray(self.shape, np.int64, buffer=memory, offset=offset * step,
                          strides=tuple(s // root.itemsize * step for s in self.strides))

    def as_tracer(self):
        """This array as a traced value, making its root traced if it is not yet."""
        root = Workspace.root(self)
        if root.__dict__.get("_traced") is None:
            builder = current_builder()
            snapshot = np.array(root.view(np.ndarray))
            root.__dict__["_traced"] = builder.wrap(builder.const(snapshot))
            root.__dict__["_views"] = {}
            if root.dtype.kind == "f":  # a library that reads the stale memory directly gets NaN, not old values
                np.ndarray.fill(root, np.nan)
        return Workspace.current(self)

    # writes and reads ------------------------------------------------------------------
    def __setitem__(self, key, value):
        if _has_tracer(value) or _has_tracer(key) or Workspace.current(self) is not None:
            setitem(Workspace.as_tracer(self), key, value)
        else:
            np.ndarray.__setitem__(self, key, value)

    def __getitem__(self, key):
        traced = Workspace.current(self)
        if traced is not None:
            return traced[key]
        if _has_tracer(key):
            return numpy_ops.getitem(np.array(self.view(np.ndarray)), key)
        return np.ndarray.__getitem__(self, key)

    def __getattribute__(self, name):
        if name in _FORWARDED:
            traced = Workspace.current(self)
            if traced is not None:
                return getattr(traced, name)
        return np.ndarray.__getattribute__(self, name)

    def __iter__(self):
        traced = Workspace.current(self)
        return iter(traced) if traced is not None else np.ndarray.__iter__(self)

    def __float__(self):
        traced = Workspace.current(self)
        return float(traced) if traced is not None else np.ndarray.__float__(self)

    def __int__(self):
        traced = Workspace.current(self)
        return int(traced) if traced is not None else np.ndarray.__int__(self)

    def __bool__(self):
        traced = Workspace.current(self)
        return bool(traced) if traced is not None else np.ndarray.__bool__(self)

    def __repr__(self):
        traced = Workspace.current(self)
        return repr(traced) if traced is not None else repr(self.view(np.ndarray))

    __str__ = __repr__

    def __reduce__(self):  # a leftover Workspace pickles as the plain array it holds
        return np.ndarray.__reduce__(np.array(self.view(np.ndarray)))

    # NumPy protocols: traced as soon as a traced value is involved --------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.pop("out", None)
        if method == "at":
            if _has_tracer(inputs) or (isinstance(inputs[0], Workspace) and Workspace.current(inputs[0]) is not None):
                return add_at(ufunc, *inputs)
            return ufunc.at(*[_plain(i) for i in inputs])
        traced = _has_tracer(inputs) or _has_tracer(kwargs.get("where")) or any(
            isinstance(i, Workspace) and i.current() is not None for i in inputs + (out or ()))
        if not traced:
            outs = None if out is None else tuple(_plain(o) for o in out)
            kw = kwargs if outs is None else dict(kwargs, out=outs)
            if isinstance(kw.get("where"), Workspace):  # (NumPy dispatches on where= too)
                kw = dict(kw, where=_plain(kw["where"]))
            result = getattr(ufunc, method)(*[_plain(i) for i in inputs], **kw)
            return out[0] if out is not None and len(out) == 1 else out if out is not None else own(result)
        where = kwargs.pop("where", True) if method == "__call__" and out is not None else True
        result = getattr(ufunc, method)(*[resolve(i) for i in inputs], **kwargs)
        return write_out(out, result, f"np.{ufunc.__name__}", where)

    def __array_function__(self, func, types, args, kwargs):
        traced_args = any(isinstance(a, Workspace) and a.current() is not None for a in _leaves(args))
        if func in WRITERS and args and (_has_tracer(args) or _has_tracer(list(kwargs.values())) or traced_args):
            return WRITERS[func](args[0], *resolve_tree(args[1:]), **{k: resolve_tree(v) for k, v in kwargs.items()})
        if not _has_tracer(args) and not _has_tracer(list(kwargs.values())) and \
                not any(isinstance(a, Workspace) and a.current() is not None for a in _leaves(args)):
            return own(np.ndarray.__array_function__(self, func, types, args, kwargs))
        return func(*resolve_tree(args), **{k: v if k == "out" else resolve_tree(v) for k, v in kwargs.items()})


# np.copyto, np.put, np.putmask, np.place -> their builders (jitad.frontend.numpy_extra): they write
# into their first argument, so a Workspace passes itself, not what it holds
WRITERS = {}

_FORWARDED = frozenset((
    "sum", "mean", "prod", "max", "min", "var", "std", "cumsum", "cumprod", "reshape", "transpose",
    "swapaxes", "ravel", "flatten", "squeeze", "astype", "copy", "dot", "clip", "trace", "diagonal", "conj",
    "conjugate", "round", "any", "all", "T", "mT", "real", "item", "tolist", "argmax", "argmin", "sort",
    "argsort", "fill", "put", "take", "repeat", "nonzero", "ptp", "__array__", "__len__"))


def _view_tracer(root_tracer, positions):
    flat = numpy_ops.reshape(root_tracer, (root_tracer.size,))
    view = numpy_ops.getitem(flat, positions)
    view._view = (root_tracer, positions, root_tracer._version)
    return view


def _leaves(tree):
    if isinstance(tree, (list, tuple)):
        for t in tree:
            yield from _leaves(t)
    else:
        yield tree


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, Workspace) else x


def own(result):
    """A fresh array result made while tracing, as a Workspace (so it can be written into)."""
    if type(result) is np.ndarray or (isinstance(result, Workspace) and result.base is not None
                                      and not isinstance(result.base, Workspace)):
        owned = np.ndarray.__new__(Workspace, result.shape, result.dtype)
        np.ndarray.__setitem__(owned, Ellipsis, result)
        return owned
    if isinstance(result, tuple):
        return tuple(own(r) for r in result)
    if isinstance(result, list):
        return [own(r) for r in result]
    return result


def resolve(x):
    """A Workspace as what it holds now: its traced value, or (meeting a traced value) a snapshot."""
    if isinstance(x, Workspace):
        traced = x.current()
        return traced if traced is not None else np.array(x.view(np.ndarray))
    return x


def resolve_tree(x):
    if isinstance(x, Workspace):
        return resolve(x)
    if isinstance(x, list):
        return [resolve_tree(v) for v in x]
    if isinstance(x, tuple):
        return tuple(resolve_tree(v) for v in x)
    return x


def write_out(out, result, what, where=True):
    """Honour `out=` of a NumPy call whose result is traced: write it into the out arrays; with a ufunc's
    `where=`, only where it holds (NumPy's semantics: out becomes np.where(where, result, out))."""
    if out is None:
        return result
    results = result if isinstance(result, tuple) else (result,)
    outs = out if isinstance(out, tuple) else (out,)
    for o, r in zip(outs, results):
        if o is None:
            continue
        if isinstance(o, Workspace) or is_tracer(o):
            if where is not True:
                r = np.where(resolve(where), r, resolve(o))
            o[...] = r
        else:
            raise InPlaceUpdateError(f"{what}(out=...) of a traced value into a NumPy array that is not traced",
                                     NOT_TRACED)
    return out[0] if isinstance(out, tuple) and len(out) == 1 else out
