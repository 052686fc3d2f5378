"""The Primitive class and the factories that declare primitives from their math.

A primitive holds, in one place: its shape/dtype rule, its NumPy reference
implementation, its JVP rule, its VJP rule, and its lowering for the compiled
backend. Rules are written with NumPy calls on IR values (tracers), so every rule is
itself traceable and transforms compose (grad of grad).
"""
import functools
import warnings

import numpy as np

from jitad.ir import bind, is_tracer

REGISTRY = {}


class Primitive:
    """One operation of the IR.

    kind: "elementwise" (broadcasting, fusible), "reduction" (fusible accumulator),
    "index" (a pure index mapping: fusible as a read), or "library" (a call between
    loop nests). `scalar` is the expression the fused loop computes for one element
    (a format string over the operand names and params). `jvp(primals, tangents, out,
    **params)` returns the output tangent; tangents of constant inputs are None.
    `vjp(g, out, *primals, **params)` returns one cotangent per input (None = zero).
    """

    def __init__(self, name, *, impl, shape_rule, jvp=None, vjp=None, kind="library",
                 scalar=None, differentiable=True, foldable=True, domain=None):
        self.name = name
        self.impl = impl
        self.shape_rule = shape_rule
        self.jvp_rule = jvp
        self.vjp_rule = vjp
        self.kind = kind
        self.scalar = scalar
        self.differentiable = differentiable
        self.foldable = foldable
        self.domain = domain  # test domain: (low, high) of safe inputs, for the test table
        assert name not in REGISTRY, name
        REGISTRY[name] = self

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        return bind(self, args, params)

    __call__ = bind

    def evaluate(self, args, params):
        """Constant folding: all arguments concrete, so run the NumPy reference."""
        # np.errstate is per thread; warnings.catch_warnings would not be (transforms are also
        # traced in a background thread while the caller's thread folds constants)
        with np.errstate(all="ignore"):
            return self.impl(*[np.asarray(a) for a in args], **params)


@functools.lru_cache(maxsize=None)
def numpy_dtype(np_fn, dtypes):
    """The dtype NumPy itself gives `np_fn` applied to 0-d arrays of `dtypes`."""
    with np.errstate(all="ignore"):
        return np.asarray(np_fn(*[np.ones((), d) for d in dtypes])).dtype


def broadcast_shapes(*shapes):
    from jitad.errors import ShapeError
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ShapeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast") from None


def unbroadcast(g, shape):
    """Sum a cotangent down to `shape` (the transpose of NumPy broadcasting)."""
    if g is None:
        return None
    gshape = np.shape(g)
    if tuple(gshape) == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1)
    if axes:
        g = np.sum(g, axis=axes)
    if np.shape(g) != tuple(shape):
        g = np.reshape(g, shape)
    return g


def zeros_like_node(node):
    return np.zeros(node.shape, node.dtype)


def elementwise_shape(np_fn):
    def rule(*nodes, **params):
        shape = broadcast_shapes(*(n.shape for n in nodes))
        return shape, numpy_dtype(np_fn, tuple(n.dtype for n in nodes))
    return rule


def _float_dtype(dtype):
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def unary(name, np_fn, derivative, scalar, domain=(-2.0, 2.0)):
    """An elementwise one-argument primitive from its local derivative d(x, y)."""
    def jvp(primals, tangents, out):
        (x,), (t,) = primals, tangents
        return scale(t, derivative(x, out))

    def vjp(g, out, x):
        return (mul_cotangent(g, derivative(x, out)),)

    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn), jvp=jvp,
                     vjp=vjp, kind="elementwise", scalar=scalar, domain=domain)


def binary(name, np_fn, dx, dy, scalar, domain=(-2.0, 2.0)):
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
        return np.broadcast_to(total, np.shape(out))

    def vjp(g, out, x, y):
        return (unbroadcast(mul_cotangent(g, dx(x, y, out)), np.shape(x)),
                unbroadcast(mul_cotangent(g, dy(x, y, out)), np.shape(y)))

    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn), jvp=jvp,
                     vjp=vjp, kind="elementwise", scalar=scalar, domain=domain)


def comparison(name, np_fn, scalar):
    """A primitive with a boolean (or otherwise non-differentiable) result."""
    return Primitive(name, impl=np_fn, shape_rule=elementwise_shape(np_fn),
                     kind="elementwise", scalar=scalar, differentiable=False)


def scale(t, d):
    """t * d without recording a multiplication by a literal 1 or -1."""
    if isinstance(d, float):
        if d == 1.0:
            return t
        if d == -1.0:
            return -t
    return t * d


def mul_cotangent(g, d):
    """g * d, kept finite where g comes from an untaken np.where branch.

    The adjoint of np.where(c, a, b) sends where(c, g, 0) to `a`. Multiplying that by a
    local derivative that is inf or NaN where the branch is not taken (sqrt at
    negatives, log at 0) would give 0 * inf = NaN. Pushing the product inside the
    select keeps the untaken lanes exactly 0, as the user's np.where intends.
    """
    if is_tracer(g) and g.node.prim.name == "where":
        cond, a, b = g.node.inputs
        wrap = g.builder.wrap
        if _is_zero(b):
            return np.where(wrap(cond), wrap(a) * d, 0.0)
        if _is_zero(a):
            return np.where(wrap(cond), 0.0, wrap(b) * d)
    return scale(g, d)


def _is_zero(node):
    return node.prim.name == "const" and node.value.size == 1 and node.value.item() == 0
