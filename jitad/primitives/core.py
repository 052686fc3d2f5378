"""The Primitive class and the factories that declare primitives from their math.

A primitive holds, in one place, everything the rest of jitad needs to know about it:
its shape/dtype rule, its NumPy reference implementation, its JVP and VJP rules, its
loop lowering (scalar code, accumulator, index map) or library call, its batching rule,
its cost for the Jacobian scheduler, its fusion facts and its algebraic identities. It
is given all of them at construction: its fields are __slots__, so nothing can be
attached afterwards, and tests/test_primitive_declarations.py fails on library code that
assigns to a field outside a declaration (tests may still mutate a rule to show a check
can fail). So no other module keeps a table keyed by a primitive's name.

Factories for the families: `linear` (the JVP is the op on the tangent; give only the
transpose), `bilinear` (products), `reduction`, `library_call` here; `unary`, `binary` and
`comparison` (from local derivatives) in jitad.primitives.elementwise. Rules are written
on IR values, so every rule is itself traceable and transforms compose (grad of grad).
"""
import contextlib
import functools
import math
import threading
import warnings

import numpy as np

from jitad.ir import Kind, bind, const_p, is_tracer

REGISTRY = {}

# relative cost of recomputing one element of a node inline, for fusion's decisions
CHEAP, EXPENSIVE = 1, 4


def own_inline_cost(node):
    """The cost of computing one element of `node` from its inputs' (its primitive's `inline_cost`:
    a number, or a function of the node for a primitive whose cost depends on its shapes)."""
    cost = node.prim.inline_cost
    return cost(node) if callable(cost) else cost

# kind -> the fields a declaration of that kind must give (besides impl and shape_rule)
REQUIRED = {
    Kind.ELEMENTWISE: ("scalar", "inline_cost"),
    Kind.REDUCTION: ("accumulate", "batch"),
    Kind.INDEX: ("index_map", "batch"),
    Kind.LIBRARY: ("lower",),
    Kind.ALIAS: (),
    Kind.CALLBACK: (),
}


def size_cost(node):
    """Element operations of a node that touches each output element once."""
    return node.size


def input_size_cost(node):
    """A reduction reads each input element once."""
    return node.inputs[0].size


def dense_cost(node):
    """Dense linear algebra: about n^3 for the largest operand of n x n."""
    if not node.inputs:
        return node.size
    biggest = max(node.inputs, key=lambda n: n.size)
    return biggest.size * max(biggest.shape or (1,))


_DEFAULT_COST = {Kind.REDUCTION: input_size_cost, Kind.LIBRARY: dense_cost}


class Primitive:
    """One operation of the IR, declared once with all its rules.

    Rules: `impl(*arrays, **params)` is the NumPy reference; `shape_rule(*nodes, **params)`
    returns (shape, dtype); `jvp(primals, tangents, out, **params)` returns the output
    tangent (tangents of constant inputs are None); `vjp(g, out, *primals, **params)`
    returns one cotangent per input (None = zero).

    Lowering: ELEMENTWISE gives `scalar`, the code of one element (a format string over
    the operand names and params, or a function of the params returning one);
    REDUCTION gives `accumulate = (init, combine)`; INDEX gives `index_map(node,
    out_index, ctx) -> (input_index, condition)`; LIBRARY gives `lower(node, out, ins,
    ctx)`, the statements of the call, and `kernel_module`, the kernels module they use.

    Transforms and backend: `batch(node, values, batched, k)` is the batching rule
    (None: kind default -- elementwise broadcasts, others run k slices); it may return
    None to fall back to k slices. `cost(node)` is the element operations the Jacobian
    scheduler estimates; `inline_cost` the cost fusion counts per recomputed element;
    `injective` says each input element is read at most once (no broadcast reuse);
    `symbolic_shape(node, ins, shapes)` gives fusion symbolic dims when its shape
    is not elementwise or a reduction's; `stored_operands(node)` the inputs a library
    call needs stored (BLAS reads a transpose as a view); `contiguous_output` that a
    library call's result is C-contiguous; `simplify(node, inputs, values)` an
    algebraic identity (the value to use instead of the node, or None); `ufunc` the NumPy
    ufunc the front-end maps to it; `short` its name in generated code (`mul`, `sum`).
    `domain` is the test domain of safe inputs. `vjp_reads`: the operands whose values the vjp
    rule reads (indices; it reads the others' shapes and dtypes at most, and not the output's
    value); None, the default: every operand and the output. The reverse pass frees the rest early.
    """

    __slots__ = ("name", "kind", "impl", "shape_rule", "jvp_rule", "vjp_rule", "differentiable", "foldable",
                 "domain", "scalar", "inline_cost", "ufunc", "accumulate", "index_map", "injective", "lower",
                 "kernel_module", "stored_operands", "contiguous_output", "symbolic_shape", "batch", "cost",
                 "simplify", "short", "vjp_reads")

    def __init__(self, name, *, impl, shape_rule, jvp=None, vjp=None, kind=Kind.LIBRARY, scalar=None,
                 differentiable=True, foldable=True, domain=None, inline_cost=None, ufunc=None,
                 accumulate=None, index_map=None, injective=False, lower=None, kernel_module="K",
                 stored_operands=None, contiguous_output=False, symbolic_shape=None, batch=None, cost=None,
                 simplify=None, short=None, vjp_reads=None, register=True):
        kind = Kind(kind)
        if inline_cost is None:
            inline_cost = {Kind.ELEMENTWISE: CHEAP, Kind.INDEX: 0}.get(kind)
        fields = dict(
            name=name, kind=kind, impl=impl, shape_rule=shape_rule, jvp_rule=jvp, vjp_rule=vjp,
            differentiable=differentiable, foldable=foldable, domain=domain, scalar=scalar,
            inline_cost=inline_cost, ufunc=ufunc, accumulate=accumulate, index_map=index_map,
            injective=injective, lower=lower, kernel_module=kernel_module, stored_operands=stored_operands,
            contiguous_output=contiguous_output, symbolic_shape=symbolic_shape, batch=batch,
            cost=cost or _DEFAULT_COST.get(kind, size_cost), simplify=simplify, short=short or name,
            vjp_reads=vjp_reads)
        for key, value in fields.items():
            setattr(self, key, value)
        if register:
            assert name not in REGISTRY, name
            REGISTRY[name] = self

    def missing(self):
        """The fields its kind needs that the declaration does not give (empty when complete)."""
        needed = ["impl", "shape_rule", "cost", *REQUIRED[self.kind]]
        if self.differentiable:
            needed += ["jvp_rule", "vjp_rule"]
        return [f for f in needed if getattr(self, f) is None]

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        return bind(self, args, params)

    __call__ = bind

    def evaluate(self, args, params):
        """Constant folding: all arguments concrete, so run the NumPy reference."""
        if _QUIET.on:  # inside quiet_folding(): NumPy's errors are already off
            return self.impl(*[np.asarray(a) for a in args], **params)
        # np.errstate is per thread; warnings.catch_warnings would not be (transforms are also
        # traced in a background thread while the caller's thread folds constants)
        with np.errstate(all="ignore"):
            return self.impl(*[np.asarray(a) for a in args], **params)


class _Quiet(threading.local):
    on = False  # whether this thread is inside quiet_folding()


_QUIET = _Quiet()


@contextlib.contextmanager
def quiet_folding():
    """NumPy's floating-point errors off for a whole run of constant folding (the NumPy tier runs
    a transform op by op): one np.errstate for the run instead of one per primitive."""
    if _QUIET.on:
        yield
        return
    with np.errstate(all="ignore"):
        _QUIET.on = True
        try:
            yield
        finally:
            _QUIET.on = False


@functools.lru_cache(maxsize=None)
def numpy_dtype(np_fn, dtypes):
    """The dtype NumPy itself gives `np_fn` applied to 0-d arrays of `dtypes`."""
    with np.errstate(all="ignore"):
        return np.asarray(np_fn(*[np.ones((), d) for d in dtypes])).dtype


_BROADCASTS = {}  # shapes -> their broadcast: a trace meets the same few combinations again and again


def broadcast_shapes(*shapes):
    """NumPy's broadcast of `shapes` (tuples of ints) as a tuple of Python ints, in plain Python
    and remembered (the tracer asks for every elementwise op; np.broadcast_shapes makes arrays)."""
    out = _BROADCASTS.get(shapes)
    if out is None:
        out = _broadcast(shapes)
        if len(_BROADCASTS) > 4096:
            _BROADCASTS.clear()
        _BROADCASTS[shapes] = out
    return out


def _broadcast(shapes):
    ndim = max(len(s) for s in shapes)
    out = [1] * ndim
    for s in shapes:
        for axis, n in enumerate(s, ndim - len(s)):
            m = out[axis]
            if n != m and n != 1:
                if m != 1:
                    from jitad.errors import ShapeError
                    raise ShapeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
                out[axis] = int(n)
    return tuple(out)


def elementwise_shape(np_fn):
    """The shape rule of an elementwise primitive: NumPy's broadcast of the operands' shapes and
    the dtype NumPy gives `np_fn` (remembered per operand shapes and dtypes)."""
    known = {}

    def rule(*nodes, **params):
        key = tuple([(n.shape, n.dtype) for n in nodes])
        found = known.get(key)
        if found is None:
            found = broadcast_shapes(*[n.shape for n in nodes]), numpy_dtype(np_fn, tuple(n.dtype for n in nodes))
            if len(known) > 1024:
                known.clear()
            known[key] = found
        return found
    return rule


def linear(name, impl, shape_rule, transpose, kind=Kind.LIBRARY, **facts):
    """A primitive linear in its first operand (any others are non-differentiable data, such as
    indices). Its JVP is itself applied to the tangent, so only the transpose is given:
    `transpose(g, *primals, **params)` returns one cotangent per operand."""
    def jvp(primals, tangents, out, **params):
        return prim.bind(tangents[0], *primals[1:], **params)

    def vjp(g, out, *primals, **params):
        return transpose(g, *primals, **params)

    prim = Primitive(name, impl=impl, shape_rule=shape_rule, jvp=jvp, vjp=vjp, kind=kind, **facts)
    return prim


def bilinear(name, impl, shape_rule, transpose_lhs, transpose_rhs, **facts):
    """A primitive linear in each of its two operands (a product): d(a b) = da b + a db, so only
    the two transposes are given, `transpose_lhs(g, a, b)` and `transpose_rhs(g, a, b)`."""
    def jvp(primals, tangents, out):
        (a, b), (ta, tb) = primals, tangents
        terms = []
        if ta is not None:
            terms.append(prim.bind(ta, b))
        if tb is not None:
            terms.append(prim.bind(a, tb))
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]

    def vjp(g, out, a, b):
        return transpose_lhs(g, a, b), transpose_rhs(g, a, b)

    prim = Primitive(name, impl=impl, shape_rule=shape_rule, jvp=jvp, vjp=vjp, **facts)
    return prim


def reduce_shape(x, axes):
    return tuple(n for i, n in enumerate(x.shape) if i not in axes), x.dtype


def shift_params(adjust):
    """A batching rule for a primitive whose first operand alone may carry the batch axis:
    the same primitive with its axis-valued params shifted by `adjust(params, k)`."""
    def rule(node, values, batched, k):
        if any(batched[1:]):
            return None
        return node.prim.bind(*values, **adjust(node.params, k))
    return rule


def shift_axes(params, k):
    return {**params, "axes": tuple(a + 1 for a in params["axes"])}


def shift_axis(params, k):
    return {**params, "axis": params["axis"] + 1}


def reduction(name, impl, jvp, vjp, accumulate, **facts):
    """A fusible reduction over `axes`: `impl(x, axes)`, its accumulator `(init, combine)`
    (code, with `{acc}` and `{x}` in `combine`); it batches by shifting its axes."""
    return Primitive(name, impl=impl, shape_rule=reduce_shape, jvp=jvp, vjp=vjp, kind=Kind.REDUCTION,
                     accumulate=accumulate, batch=shift_params(shift_axes), **facts)


class NumpyOnly:
    """The lowering of a library primitive that has none (a SciPy routine Numba cannot reach, such
    as a Schur decomposition): a graph holding it runs on the NumPy executor
    (jitad.backend.cache._calls_back); generating a kernel for it raises NotImplementedError."""

    def __init__(self, reason):
        self.reason = reason

    def __call__(self, node, out, ins, ctx):
        raise NotImplementedError(f"no compiled lowering for `{node.prim.name}` ({self.reason}): "
                                  "a function calling it runs on the NumPy executor")


def library_call(name, impl, shape_rule, jvp, vjp, lower, kernel_module="K", **facts):
    """A primitive computed by a call between loop nests: `lower(node, out, ins, ctx)` returns
    the statements (code) that store its value in `out`, reading its operands `ins`; the
    calls use the kernels module `kernel_module` (K: jitad.backend.kernels, KL: kernels_linalg)."""
    return Primitive(name, impl=impl, shape_rule=shape_rule, jvp=jvp, vjp=vjp, kind=Kind.LIBRARY, lower=lower,
                     kernel_module=kernel_module, **facts)


# --- helpers for lowerings ------------------------------------------------------------------
def dtype_code(dtype):
    return f"np.{np.dtype(dtype).name}" if np.dtype(dtype).name != "bool" else "np.bool_"


def as_dtype(code, node, dtype):
    """Operand code cast to `dtype` when it differs (BLAS and np.concatenate in Numba need one dtype)."""
    return code if node.dtype == dtype else f"{code}.astype({dtype_code(dtype)})"


def three_sizes(ctx, node, axis, extent_of):
    """Code for the (before, axis, after) sizes of `node` around `axis`."""
    before = " * ".join(ctx.size(node, a) for a in range(axis)) or "1"
    after = " * ".join(ctx.size(node, a) for a in range(axis + 1, node.ndim)) or "1"
    return before, extent_of, after


# --- helpers for algebraic identities -------------------------------------------------------
def same_type(node, other):
    return node.shape == other.shape and node.dtype == other.dtype


def const_scalar(node):
    """The value of a node that is one constant broadcast or reshaped, else None."""
    while node.prim.name in ("broadcast_to", "reshape"):
        node = node.inputs[0]
    if node.prim is const_p and node.value.size == 1:
        return node.value.item()
    return None


def drop_neutral(neutral, either_side=True):
    """The identity x op neutral = x (and neutral op x = x when `either_side`) of a binary op.
    A float zero is neutral to the bit only with its sign: x + -0.0 and x - 0.0 (-0.0 + 0.0 is +0.0)."""
    def is_neutral(node, sign):
        value = const_scalar(node)
        return value == neutral and not (isinstance(value, float) and neutral == 0 and
                                         math.copysign(1.0, value) != sign)

    def simplify(node, inputs, values):
        a, b = inputs
        sign = -1.0 if either_side else 1.0  # add: -0.0; subtract: +0.0
        if is_neutral(b, sign) and same_type(node, a):
            return values[0]
        if either_side and is_neutral(a, sign) and same_type(node, b):
            return values[1]
        return None
    return simplify


def wrap_like(value, node):
    """`node` as a value of the trace `value` belongs to (None when `value` is not traced)."""
    return value.builder.wrap(node) if is_tracer(value) else None
