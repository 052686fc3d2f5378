"""Failures the fuzzer has found that are known and not fixed yet (see /work/fuzz_findings.md).

The fuzz tests report these as xfail instead of failing, so the default test run stays
green while they are being fixed; any other failure fails the test. Each entry matches a
failure by its check, exception and message (a wrong value: by what its program does), so a
fix makes the entry simply stop matching (then delete it). Keep the list short and specific.
"""


# (id, description, predicate(failure) -> bool)
KNOWN = [
    # Found by the fuzzer and fixed meanwhile (kept here as examples of the format):
    #   empty-scatter-add    reverse mode of x[..., [i, j]] with an empty result (structural._scatter_add_impl)
    #   empty-batched-matmul jacfwd of a matmul with a zero-length contraction (batching._matmul)
    #   median-tuple-axis    np.median(x, axis=(k,)) raised TypeError (ops.median)
    # ("empty-scatter-add", "...", lambda f: f.exc == "ValueError" and "cannot reshape array of size 0" in f.message),
    # fixed in session 3: float32-vander-cov-dtype, float32-quantile-dtype,
    # view-or-copy-of-trivial-ops (writes through np.positive/np.conj/x ** 1/astype(copy=False)/...)
    # and layout-of-ufunc-results (a ufunc result of a transposed view is Fortran-ordered, as in NumPy)
]


def match(failure):
    """The id of the known bug `failure` looks like, or None."""
    for name, _, pred in KNOWN:
        try:
            if pred(failure):
                return name
        except Exception:
            continue
    return None
