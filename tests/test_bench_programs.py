"""The issue-11 benchmark programs (asv_benchmarks/_programs.py) compute the same loss and
gradient under jitad, NumPy finite differences, autograd and JAX (small sizes, jitad's
reference backend: no Numba compiles). The peer comparisons skip when the peer is absent."""
import numpy as np
import pytest

import jitad
from asv_benchmarks._programs import PROGRAMS, gmm_logsumexp, gp, inplace_fill, loss_for

SMALL = {"gp": gp(30), "gmm_logsumexp": gmm_logsumexp(5, 60, 2), "inplace": inplace_fill(12)}


def _flat(tree):
    leaves = tree if isinstance(tree, (tuple, list)) else (tree,)
    return np.concatenate([np.ravel(np.asarray(leaf, dtype=float)) for leaf in leaves])


def _fd_grad(loss, params, rest, h=1e-6):
    """Central differences of `loss` in every entry of the params (an array or a tuple of arrays)."""
    leaves = list(params) if isinstance(params, tuple) else [params]
    out = []
    for k, leaf in enumerate(leaves):
        g = np.zeros(leaf.size)
        for j in range(leaf.size):
            plus, minus = [np.array(x, dtype=float) for x in leaves], [np.array(x, dtype=float) for x in leaves]
            plus[k].flat[j] += h
            minus[k].flat[j] -= h
            wrap = tuple if isinstance(params, tuple) else (lambda ls: ls[0])
            g[j] = (loss(wrap(plus), *rest) - loss(wrap(minus), *rest)) / (2 * h)
        out.append(g)
    return np.concatenate(out)


def _close(a, b, rtol):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(np.max(np.abs(b)), 1e-300)
    return np.max(np.abs(a - b)) <= rtol * scale


@pytest.mark.parametrize("name", list(SMALL))
def test_jitad_matches_numpy_and_finite_differences(name, reference_backend):
    make, make_args = SMALL[name]
    args = make_args(1)
    before = [np.copy(leaf) for leaf in _flat_leaves(args)]
    loss = loss_for(name, "numpy", SMALL)
    value, grad = jitad.value_and_grad(loss)(*args)
    assert np.isclose(value, loss(*args), rtol=1e-12, atol=0)
    fd = _fd_grad(loss, args[0], args[1:])
    assert _close(_flat(grad), fd, 1e-6), (_flat(grad), fd)
    assert all(np.array_equal(a, b) for a, b in zip(before, _flat_leaves(args)))  # inputs untouched


def _flat_leaves(args):
    out = []
    for a in args:
        out.extend(_flat_leaves(a) if isinstance(a, (tuple, list)) else [a])
    return out


@pytest.mark.parametrize("peer", ["autograd", "jax"])
@pytest.mark.parametrize("name", ["gp", "gmm_logsumexp", "inplace"])
def test_peers_agree_with_jitad(name, peer, reference_backend):
    pytest.importorskip(peer)
    make, make_args = SMALL[name]
    args = make_args(2)
    value, grad = jitad.value_and_grad(loss_for(name, "numpy", SMALL))(*args)
    if peer == "autograd":
        import autograd
        fn = autograd.value_and_grad(loss_for(name, "autograd", SMALL))
        if name == "inplace":  # autograd cannot differentiate in-place writes into an ndarray
            with pytest.raises(Exception):
                fn(*args)
            return
        peer_value, peer_grad = fn(*args)
    else:
        import jax
        peer_value, peer_grad = jax.jit(jax.value_and_grad(loss_for(name, "jax", SMALL)))(
            *jax.tree_util.tree_map(jax.numpy.asarray, args))
    assert _close(value, peer_value, 1e-8), (value, peer_value)
    assert _close(_flat(grad), _flat(peer_grad), 1e-8), (_flat(grad), _flat(peer_grad))


def test_benchmark_sizes_are_the_issues():
    """The asv programs are the sizes issue 11 asks for."""
    assert PROGRAMS["gp_n500"][1]()[1].shape == (500, 1)
    params, X = PROGRAMS["gmm_logsumexp"][1]()
    assert params[0].shape == (25, 2) and X.shape == (10000, 2)
    assert PROGRAMS["inplace_n10000"][1]()[0].shape == (10000,)
