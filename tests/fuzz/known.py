"""Failures the fuzzer has found that are known and not fixed yet (see /work/fuzz_findings.md).

The fuzz tests report these as xfail instead of failing, so the default test run stays
green while they are being fixed; any other failure fails the test. Each entry matches a
failure by its check, exception and message (a wrong value: by what its program does), so a
fix makes the entry simply stop matching (then delete it). Keep the list short and specific.
"""

import numpy as np

# (id, description, predicate(failure) -> bool)
KNOWN = [
    # Found by the fuzzer and fixed meanwhile (kept here as examples of the format):
    #   empty-scatter-add    reverse mode of x[..., [i, j]] with an empty result (structural._scatter_add_impl)
    #   empty-batched-matmul jacfwd of a matmul with a zero-length contraction (batching._matmul)
    #   median-tuple-axis    np.median(x, axis=(k,)) raised TypeError (ops.median)
    # ("empty-scatter-add", "...", lambda f: f.exc == "ValueError" and "cannot reshape array of size 0" in f.message),
    # fixed in session 3 (fc25032, b99835b): float32-vander-cov-dtype, float32-quantile-dtype,
    # view-or-copy-of-trivial-ops (writes through np.positive/np.conj/x ** 1/astype(copy=False)/...)
    # session 3 (tests/test_regressions.py::test_ravel_of_fortran_ordered_result_is_a_copy_like_numpy)
    ("layout-of-ufunc-results", "writes through ravel/reshape of a ufunc result of a transposed view: NumPy keeps "
     "the input's layout (a copy), jitad assumes C order (a view)",
     lambda f: f.program is not None and "dtype" not in f.message and
     _writes_through_ravel_of_non_c_layout(f.program)),
]


def _writes_through_ravel_of_non_c_layout(program):
    """The program writes through a ravel/reshape of an array that NumPy holds in a non-C layout
    (the result of a ufunc of a transposed or reversed view keeps that layout)."""
    from . import gen
    env = gen.numpy_env()
    for name in program.inputs:
        env[name] = gen._copy(program.values[name])
    for op in program.ops:
        if op.kind == "inplace:view" and ("ravel" in op.template or "reshape(-1)" in op.template):
            operand = env.get(op.args[0])
            if isinstance(operand, np.ndarray) and operand.ndim >= 2 and not operand.flags.c_contiguous:
                return True
        gen.exec_op(op, env, guards=False)
    return False


def match(failure):
    """The id of the known bug `failure` looks like, or None."""
    for name, _, pred in KNOWN:
        try:
            if pred(failure):
                return name
        except Exception:
            continue
    return None
