"""float32 end to end (issue 13, item 4): generated loops compute float32 nodes in float32 (float32
literals, no float64 casts), and results match NumPy's float32 ones within tolerances scaled to
float32's eps. A full sum accumulates in float64 and is rounded once at the end: a float32
accumulator is ~1e-4 off at n = 1e6 (NumPy's pairwise sum ~1e-7) and no faster, since the loop's
work is in the elements (asv_benchmarks/bench_float32.py)."""
import re

import numpy as np

import jitad
from jitad.backend import codegen
from jitad.frontend.tracer import trace
from jitad.passes import optimize

EPS32 = float(np.finfo(np.float32).eps)


def elementwise(x):
    return np.sum(np.sin(x) * x + np.exp(-x * x) + np.log1p(x * x))


def mlp_loss(W1, b1, W2, b2, X, T):
    H = np.tanh(X @ W1 + b1)
    return np.mean((H @ W2 + b2 - T) ** 2)


def _source(fun, *args):
    def listed(*values):
        value, grads = jitad.value_and_grad(fun, argnums=tuple(range(len(values))))(*values)
        return [value, *grads]
    graph = optimize(trace(listed, [(a.shape, a.dtype) for a in args])[0])
    return codegen.generate(graph)[0]


def _float64_in_float32_lines(source):
    """Lines of the kernel body that bring a float64 into a float32 computation: a float literal
    outside np.float32(...), or an np.float64 cast."""
    body = source.split("def kernel(", 1)[1]
    found = []
    for line in body.splitlines()[1:]:
        code = line.split("  #", 1)[0]
        if code.strip().startswith("#"):
            continue
        if "np.float64" in code:
            found.append(line)
        elif "np.float32(" in code and codegen._FLOAT_LITERAL.search(re.sub(r"np\.float32\([\d.e+-]+\)", "", code)):
            found.append(line)
    return found


def _full_sum_accumulators(source):
    return re.findall(r"^\s+(sum\d+) = 0\.0$", source, re.M)


def test_float32_kernels_have_no_float64_literals_or_casts():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 1000).astype(np.float32)
    shapes = [(8, 16), (16,), (16, 4), (4,), (32, 8), (32, 4)]
    mlp = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for source in (_source(elementwise, x), _source(mlp_loss, *mlp)):
        assert "np.float32(1.0)" in source or "np.float32(2.0)" in source, source  # the literals are float32
        assert _float64_in_float32_lines(source) == [], source
        # the one float64 value: the accumulator of a full sum (rounded to float32 when returned)
        assert len(_full_sum_accumulators(source)) == 1, source


def test_float32_matches_numpy_within_float32_eps():
    x = np.random.default_rng(1).uniform(-3, 3, 2 ** 20).astype(np.float32)
    value, grad = jitad.value_and_grad(elementwise)(x)
    assert isinstance(value, np.float32) and grad.dtype == np.float32
    x64 = x.astype(np.float64)
    exact = elementwise(x64)
    numpy32 = float(elementwise(x))
    # the float64 accumulator: the sum of the float32 terms, rounded once (a float32 one: ~1e-4 off)
    assert abs(float(value) - exact) <= 2 * EPS32 * abs(exact), (float(value), exact, numpy32)
    assert abs(float(value) - exact) <= max(abs(numpy32 - exact), EPS32 * abs(exact))
    # each gradient entry: a few float32 roundings of the float64 one
    want = np.cos(x64) * x64 + np.sin(x64) - 2 * x64 * np.exp(-x64 * x64) + 2 * x64 / (1 + x64 * x64)
    np.testing.assert_array_less(np.abs(grad - want) / np.maximum(np.abs(want), 1.0), 8 * EPS32)


# --- the float32 versions of exp, expm1, tanh, log, log1p (float32 nodes' vectorisable calls) ------
_FUNCTIONS32 = {"fexp32": np.exp, "fexpm1_32": np.expm1, "ftanh32": np.tanh, "flog32": np.log, "flog1p32": np.log1p}


def _sweep_points():
    """>= 1e6 float32 values per function: random bit patterns (every exponent, subnormals, inf,
    NaN), dense ranges where each function changes regime, and the edge cases."""
    rng = np.random.default_rng(13)
    patterns = rng.integers(0, 2 ** 32, 600_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    dense = np.concatenate([rng.uniform(-110, 95, 200_000), rng.uniform(-12, 12, 200_000), rng.uniform(-1, 10, 200_000),
                            rng.uniform(-1, 1, 100_000) * 2.0 ** rng.integers(-40, 0, 100_000)])
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 88.72, 88.73, -87.3, -103.9, -104.0, 1e-45, -1e-45,
             1.17e-38, 3.4e38, -3.4e38, 2.0 ** -30, -2.0 ** -30, 2.0 ** -12, -2.0 ** -12, 10.0, -10.0, -18.0, -0.9999999]
    return np.concatenate([patterns, dense.astype(np.float32), np.array(edges, np.float32)])


def _float32_ulps(a, b):
    """Distance in float32 ulps (NaN to NaN: 0; NaN to a number: huge; +0 to -0: 1)."""
    ia, ib = (np.where(v.view(np.int32) < 0, -(v.view(np.int32).astype(np.int64) & 0x7FFFFFFF),
                       v.view(np.int32).astype(np.int64)) for v in (a, b))
    ia, ib = np.where(np.signbit(a) & (a == 0), -1, ia), np.where(np.signbit(b) & (b == 0), -1, ib)
    return np.where(np.isnan(a) & np.isnan(b), 0, np.where(np.isnan(a) | np.isnan(b), 2 ** 40, np.abs(ia - ib)))


def test_float32_functions_within_one_ulp_over_every_exponent():
    """K.fexp32, ... rounded to float32 are within 1 float32 ulp of NumPy's float64 function rounded to
    float32 (NumPy's own float32 loops: up to 3 ulp), with NaN, inf, signed zeros and subnormals
    exactly; they take the float64 polynomials' place for float32 nodes."""
    import numba
    from jitad.backend import kernels as K

    @numba.njit(error_model="numpy")  # no cache=True: Numba's cache would not see kernels_vecmath change
    def run_all(x):
        out = np.empty((5, x.shape[0]), np.float32)
        for i in range(x.shape[0]):
            out[0, i] = np.float32(K.fexp32(x[i]))
            out[1, i] = np.float32(K.fexpm1_32(x[i]))
            out[2, i] = np.float32(K.ftanh32(x[i]))
            out[3, i] = np.float32(K.flog32(x[i]))
            out[4, i] = np.float32(K.flog1p32(x[i]))
        return out

    x = _sweep_points()
    assert x.size >= 10 ** 6
    got = run_all(x)
    with np.errstate(all="ignore"):
        for row, (name, reference) in zip(got, _FUNCTIONS32.items()):
            want = reference(x.astype(np.float64)).astype(np.float32)
            d = _float32_ulps(row, want)
            assert d.max() <= 1, (name, x[d.argmax()], row[d.argmax()], want[d.argmax()])
            special = ~np.isfinite(want) | (want == 0)
            assert (d[special] == 0).all(), (name, x[special][d[special] > 0])
    source = _source(elementwise, np.ones(8, np.float32))
    assert "K.fexp32(" in source and "K.flog1p32(" in source, source


def test_a_float32_sum_read_again_is_the_rounded_sum():
    """A float32 sum accumulates in float64 and is rounded to float32 when done, before anything reads
    it: the min of row sums and its tie mask compare the rounded values, as NumPy does (reading the
    unrounded accumulator gave a mask of no ties and a NaN gradient)."""
    X = np.random.default_rng(5).uniform(-1, 1, (50, 30)).astype(np.float32)

    def f(X):
        return np.min(np.sum(X, axis=1)) + np.max(X)

    value, grad = jitad.value_and_grad(f)(X)
    rows = X.sum(axis=1)
    np.testing.assert_allclose(value, rows.min() + X.max(), rtol=4 * EPS32)
    want = np.zeros_like(X)
    want[rows.argmin()] = 1.0
    want[np.unravel_index(X.argmax(), X.shape)] += 1.0
    np.testing.assert_array_equal(grad, want)


def test_float16_inputs_run_on_the_numpy_executor(monkeypatch):
    """Numba has no float16 type: a function of float16 arrays is not compiled (it raised Numba's bare
    NotImplementedError) but answered by the NumPy executor, with NumPy's float16 values, and
    `explain` says why."""
    monkeypatch.setattr(jitad.config, "compile", "eager")
    x = np.linspace(0.0, 1.0, 6, dtype=np.float16).reshape(3, 2)
    f = lambda a: np.sum(np.sin(a) ** 2)  # noqa: E731
    vg = jitad.value_and_grad(f)
    value, grad = vg(x)
    assert type(value) is np.float16 and value == f(x)
    assert grad.dtype == np.float16
    np.testing.assert_allclose(grad, 2 * np.sin(x) * np.cos(x), rtol=2e-3)
    assert jitad.jit(lambda a: a * 2)(x).dtype == np.float16
    report = jitad.explain(vg, x, print_report=False)
    assert "reference executor (NumPy): Numba has no float16 type" in str(report)
