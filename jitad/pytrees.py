"""Pytrees: nested containers of arrays, flattened with optree in jitad's own namespace.

Every module flattens through these wrappers, so a class the user registers with
`register_pytree_node` or `register_dataclass` is a container everywhere: in arguments,
outputs, cotangents, tangents and `custom_vjp` residuals. Gradients come back as instances of
the registered class, as in JAX.
"""
import dataclasses

import optree

NAMESPACE = "jitad"


def tree_flatten(tree):
    """(leaves, treespec) of `tree`; None is an empty container, as in optree and JAX."""
    return optree.tree_flatten(tree, namespace=NAMESPACE)


def tree_leaves(tree):
    return optree.tree_leaves(tree, namespace=NAMESPACE)


def tree_structure(tree):
    return optree.tree_structure(tree, namespace=NAMESPACE)


def tree_unflatten(treespec, leaves):
    return optree.tree_unflatten(treespec, leaves)


def tree_map(fun, tree, *rest):
    return optree.tree_map(fun, tree, *rest, namespace=NAMESPACE)


def register_pytree_node(cls, flatten, unflatten):
    """Make instances of `cls` containers that jitad differentiates through, like a tuple.

    `flatten(obj)` returns `(children, aux_data)`: the children are arrays or other pytrees,
    `aux_data` is hashable static data (it is part of the compiled-call cache key).
    `unflatten(aux_data, children)` rebuilds an instance. Same contract as
    `jax.tree_util.register_pytree_node`. Returns `cls`.

    >>> import numpy as np, jitad
    >>> class Poly:
    ...     def __init__(self, coef, shift): self.coef, self.shift = coef, shift
    >>> _ = jitad.register_pytree_node(Poly, lambda p: ((p.coef,), p.shift),
    ...                                lambda shift, kids: Poly(kids[0], shift))
    >>> g = jitad.grad(lambda p, x: np.sum(p.coef * (x - p.shift)))(Poly(np.ones(2), 1.0), np.arange(2.0))
    >>> type(g).__name__, g.coef
    ('Poly', array([-1.,  0.]))
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_pytree_node needs a class, got {cls!r}")
    optree.register_pytree_node(cls, flatten, unflatten, namespace=NAMESPACE)
    return cls


def register_dataclass(cls=None, *, data_fields=None, meta_fields=None):
    """Register a `dataclasses.dataclass` as a pytree: it differentiates like a tuple of its fields.

    By default every field is data (an array, number or nested pytree); name the static
    fields (ints, strings, flags, which must be hashable) in `meta_fields`. Use as a decorator
    (`@jitad.register_dataclass`) or call it on the class; like
    `jax.tree_util.register_dataclass`. Unregistered dataclasses are leaves, as in JAX, and
    cannot be differentiated.

    >>> import dataclasses, numpy as np, jitad
    >>> @jitad.register_dataclass
    ... @dataclasses.dataclass
    ... class Line:
    ...     w: np.ndarray
    ...     b: float
    >>> g = jitad.grad(lambda p: np.sum(p.w * 2.0) + p.b)(Line(np.ones(3), 0.5))
    >>> g.w, float(g.b)
    (array([2., 2., 2.]), 1.0)
    """
    if cls is None:
        return lambda c: register_dataclass(c, data_fields=data_fields, meta_fields=meta_fields)
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"register_dataclass needs a class decorated with @dataclasses.dataclass, got {cls!r}; "
                        "for other classes use jitad.register_pytree_node(cls, flatten, unflatten)")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    meta = tuple(meta_fields or ())
    data = tuple(data_fields) if data_fields is not None else tuple(n for n in names if n not in meta)
    unknown = set(data + meta) - set(names)
    missing = set(names) - set(data + meta)
    if unknown or missing or set(data) & set(meta):
        raise ValueError(f"register_dataclass({cls.__name__}): data_fields {list(data)} and meta_fields "
                         f"{list(meta)} must split the init fields {names} between them, each once")

    def flatten(obj):
        return [getattr(obj, n) for n in data], tuple(getattr(obj, n) for n in meta), data

    def unflatten(meta_values, children):
        return cls(**dict(zip(data, children)), **dict(zip(meta, meta_values)))

    optree.register_pytree_node(cls, flatten, unflatten, path_entry_type=optree.DataclassEntry,
                                namespace=NAMESPACE)
    return cls
