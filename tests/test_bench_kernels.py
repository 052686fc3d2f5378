"""The hand-written Numba kernels the benchmarks compare jitad against compute the same
value and gradient as jitad. Small sizes; jitad runs on the reference executor so this
file compiles only the hand-written kernels (cached on disk by Numba)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from asv_benchmarks import _cases  # noqa: E402

import jitad  # noqa: E402

SMALL = {
    "elementwise": (_cases.elementwise, lambda: _cases._vector(37), _cases.elementwise_vg, lambda x: (x,), None),
    "rosenbrock": (_cases.rosenbrock, lambda: _cases._vector(37), _cases.rosenbrock_vg, lambda x: (x,), None),
    "mlp": (_cases.mlp, lambda: _cases.mlp_args(batch=5, widths=(4, 7, 6, 3)), _cases.mlp3_vg,
            _cases._flat_mlp, _cases._mlp_kernel_tree),
    # a non-symmetric D: the kernel must not assume symmetry
    "mds": (_cases.mds, lambda: (_cases.rng(1).standard_normal((9, 3)), _cases.rng(2).random((9, 9))),
            _cases.mds_vg, lambda W, D: (W, D), None),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_handwritten_kernel_matches_jitad(name, reference_backend):
    make, args, kernel, kernel_args, to_tree = SMALL[name]
    args = args()
    value, grad = jitad.value_and_grad(make(np))(*args)
    out = kernel(*kernel_args(*args))
    k_value, k_grad = to_tree(out) if to_tree else out
    assert k_value == pytest.approx(value, rel=1e-12)
    assert k_value == pytest.approx(make(np)(*args), rel=1e-12)
    for mine, theirs in zip(jitad_leaves(k_grad), jitad_leaves(grad)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12)
    assert len(jitad_leaves(k_grad)) == len(jitad_leaves(grad))


def jitad_leaves(tree):
    import optree
    return optree.tree_leaves(tree)


@pytest.mark.parametrize("name", sorted(_cases.CASES))
def test_benchmark_case_builds_its_arguments(name):
    case = _cases.CASES[name]
    args = case.args()
    assert np.isfinite(case.make(np)(*args))
