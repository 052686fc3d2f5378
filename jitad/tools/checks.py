"""check_grads: compare AD with central finite differences along random directions."""
import numpy as np

from jitad.api import jvp, vjp
from jitad.pytrees import tree_flatten, tree_unflatten


def _float_leaves(tree):
    leaves, treedef = tree_flatten(tree)
    return [np.asarray(leaf, dtype=float) if not isinstance(leaf, np.ndarray) else leaf for leaf in leaves], treedef


def _dtype_tolerance(leaves):
    low = any(getattr(leaf, "dtype", np.float64) == np.float32 for leaf in leaves)
    return (1e-2, 2e-2) if low else (1e-5, 1e-5)


def _add(tree_leaves, direction, scale):
    return [np.asarray(x + scale * v, dtype=x.dtype) for x, v in zip(tree_leaves, direction)]


def _inner(a, b):
    return float(sum(np.sum(np.asarray(x, float) * np.asarray(y, float)) for x, y in zip(a, b)))


def _rebuild(args, trees, leaves_per_arg):
    out = []
    for tree, leaves, original in zip(trees, leaves_per_arg, args):
        if isinstance(original, float):
            out.append(leaves[0].item())
        else:
            out.append(tree_unflatten(tree, leaves))
    return tuple(out)


def check_grads(fun, args, order=1, modes=("fwd", "rev"), eps=None, atol=None, rtol=None, seed=0, _of=()):
    """Raise AssertionError if jitad's derivatives of `fun` at `args` disagree with finite differences.

    Each argument is perturbed in turn along a random direction v; forward mode compares
    jvp(fun, args, v) with (f(x + eps v) - f(x - eps v)) / (2 eps); reverse mode compares
    <vjp(u), v> with <u, that difference> for a random output cotangent u. `order=2`
    checks the derivative functions themselves the same way (grad of grad).

    >>> import numpy as np, jitad
    >>> jitad.check_grads(lambda x: np.sum(np.sin(x) * x), (np.linspace(0, 1, 5),), order=2)
    """
    args = tuple(args)
    # `_of` lists the derivatives taken to get `fun` (order > 1), for the failure message
    level = f"order {len(_of) + 1}" + "".join(f", of the {m} derivative" for m in reversed(_of))
    rng = np.random.default_rng(seed)
    flat = [_float_leaves(a) for a in args]
    trees = [t for _, t in flat]
    leaves = [lv for lv, _ in flat]
    default_eps, default_tol = _dtype_tolerance([x for lv in leaves for x in lv])
    eps = default_eps if eps is None else eps
    atol = default_tol if atol is None else atol
    rtol = default_tol if rtol is None else rtol
    out0 = fun(*_rebuild(args, trees, [_add(lv, lv, 0.0) for lv in leaves]))  # on copies: fun may write into them
    out_leaves, out_tree = _float_leaves(out0)
    for position in range(len(args)):
        if not leaves[position]:
            continue
        direction = [rng.standard_normal(np.shape(x)).astype(x.dtype) for x in leaves[position]]

        def perturbed(scale):
            new = list(leaves)
            new[position] = _add(leaves[position], direction, scale)
            return _rebuild(args, trees, new)

        f_plus, _ = _float_leaves(fun(*perturbed(eps)))
        f_minus, _ = _float_leaves(fun(*perturbed(-eps)))
        numeric = [(p - m) / (2 * eps) for p, m in zip(f_plus, f_minus)]
        tangents = tuple(
            _rebuild((args[i],), (trees[i],), [direction if i == position else [np.zeros_like(x) for x in leaves[i]]])[0]
            for i in range(len(args)))
        if "fwd" in modes:
            _, tangent_out = jvp(fun, args, tangents)
            analytic, _ = _float_leaves(tangent_out)
            for k, (a, n) in enumerate(zip(analytic, numeric)):
                if not np.allclose(a, n, atol=atol, rtol=rtol, equal_nan=True):
                    gap = np.abs(np.asarray(a, float) - np.asarray(n, float))
                    entry = tuple(int(i) for i in np.unravel_index(np.nanargmax(gap), gap.shape)) if gap.ndim else ()
                    raise AssertionError(
                        f"check_grads: forward mode ({level}) disagrees with finite differences for "
                        f"argument {position}, output leaf {k}, worst at entry {entry}: jvp "
                        f"{float(np.asarray(a)[entry])!r} vs finite differences {float(np.asarray(n)[entry])!r}\n"
                        f"  jvp:                {np.asarray(a)!r}\n  finite differences: {np.asarray(n)!r}")
        if "rev" in modes:
            cotangent = [rng.standard_normal(np.shape(o)).astype(o.dtype if o.dtype.kind == "f" else float)
                         for o in out_leaves]
            _, vjp_fn = vjp(fun, *args)
            grads = vjp_fn(tree_unflatten(out_tree, [c if np.ndim(c) else c[()] for c in cotangent]))
            g_leaves, _ = _float_leaves(grads[position])
            analytic = _inner(g_leaves, direction)
            numeric_dot = _inner(cotangent, numeric)
            if not np.isclose(analytic, numeric_dot, atol=atol * (1 + abs(numeric_dot)), rtol=rtol, equal_nan=True):
                raise AssertionError(
                    f"check_grads: reverse mode ({level}) disagrees with finite differences for "
                    f"argument {position}:\n  <vjp(u), v>:               {analytic!r}\n"
                    f"  <u, finite differences v>: {numeric_dot!r}")
    if order > 1:
        if "rev" in modes:
            cotangent = tree_unflatten(out_tree, [
                c if np.ndim(c) else c[()] for c in
                (rng.standard_normal(np.shape(o)).astype(o.dtype if o.dtype.kind == "f" else float) for o in out_leaves)])

            def reverse_derivative(*xs):
                return vjp(fun, *xs)[1](cotangent)
            check_grads(reverse_derivative, args, order - 1, modes, eps, atol, rtol, seed + 1,
                        _of + ("reverse-mode",))
        if "fwd" in modes:
            tangents = tuple(tree_unflatten(trees[i], [rng.standard_normal(np.shape(x)).astype(x.dtype)
                                                             for x in leaves[i]]) for i in range(len(args)))
            tangents = tuple(t.item() if isinstance(a, float) else t for t, a in zip(tangents, args))

            def forward_derivative(*xs):
                return jvp(fun, xs, tangents)[1]
            check_grads(forward_derivative, args, order - 1, modes, eps, atol, rtol, seed + 2,
                        _of + ("forward-mode",))
