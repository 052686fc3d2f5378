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
    # session 3 (tests/test_regressions.py::test_float32_vander_cov_corrcoef_are_float64_like_numpy)
    ("float32-vander-cov-dtype", "np.vander/np.cov/np.corrcoef of float32 are float32 (NumPy: float64)",
     lambda f: f.exc is None and "dtype float32 != NumPy's float64" in f.message and f.program is not None
     and any(k.split(":")[-1].split("/")[0] in ("vander", "cov", "corrcoef") for k in f.program.kinds())),
    # session 3 (tests/test_regressions.py::test_float32_quantile_with_python_float_q_stays_float32)
    ("float32-quantile-dtype", "np.quantile/percentile/nanmedian of float32 at a float q, np.ediff1d(to_begin=) "
     "of float32 are float64 (NumPy: float32)",
     lambda f: f.exc is None and "dtype float64 != NumPy's float32" in f.message and f.program is not None
     and any(k.split(":")[-1].split("/")[0] in ("quantile", "percentile", "nanquantile", "nanpercentile",
                                                 "nanmedian", "ediff1d") for k in f.program.kinds())),
    ("view-or-copy-of-trivial-ops", "a write through np.conj/np.positive/x ** 1/np.concatenate([x])/... (NumPy "
     "copies, jitad aliases) or astype(copy=False)/np.array(copy=None)/diff(n=0)/einsum identity (the reverse)",
     lambda f: f.program is not None and "dtype" not in f.message and _writes_through_known_aliasing_form(f.program)),
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


# copies jitad aliases and views jitad copies (tests/test_regressions.py::test_write_into_a_copy_...,
# ::test_write_into_a_view_reaches_the_original)
ALIASING_FORMS = ("np.conj({out})", "np.positive({out})", "{out} ** 1", "np.concatenate([{out}])", "{out}.conj()",
                  "{out}.astype({out}.dtype, copy=False)", "np.array({out}, copy=None)", "np.diff({out}, n=0)",
                  "np.einsum('...->...', {out})", "np.broadcast_arrays({out}, {out})[0]")


def _writes_through_known_aliasing_form(program):
    return any(op.kind == "inplace:view" and any(form in op.template for form in ALIASING_FORMS)
               for op in program.ops)


def match(failure):
    """The id of the known bug `failure` looks like, or None."""
    for name, _, pred in KNOWN:
        try:
            if pred(failure):
                return name
        except Exception:
            continue
    return None
