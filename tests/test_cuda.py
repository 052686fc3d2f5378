"""The cuda target (jitad/backend/cuda.py) on Numba's CUDA simulator.

Numba reads NUMBA_ENABLE_CUDASIM when it is first imported, so the simulator tests run in a
subprocess with it set (`test_cuda_on_the_simulator` starts `pytest` on this file there); in the
default process they are skipped, and only the tests that need no CUDA run. The simulator runs
every thread in Python: tiny arrays, the table's rows packed into a few groups.

What lowers to CUDA: every fused loop nest (elementwise, broadcasting, indexing, reductions),
take / scatter-add / concatenate / matmul / cumsum / argsort; what raises CudaUnsupportedError (a
jitad.UnsupportedOperationError, when the graph is compiled): the other library calls (linear
algebra, scans and while loops, custom rules calling back into Python) and the
scalar special functions without a device version (`UNSUPPORTED_ROWS` below, checked to raise).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import optree
import pytest

import jitad

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
on_simulator = pytest.mark.skipif(not SIMULATOR, reason="runs in the simulator subprocess (test_cuda_on_the_simulator)")

# the table's sections whose rows the cuda target compiles (elementwise, broadcasting, indexing, reductions)
GROUPS = ("unary", "binary", "predicates", "reductions", "shapes", "products", "float32")
# rows of those sections the cuda target cannot compile, and the primitive each one names
UNSUPPORTED_ROWS = {"norm_nuc_2": "svd_factor", "bessel_j0_j1_y0_y1": "j0"}  # (SciPy's Bessel routines: CPU only)
MAX_ROWS = 40  # rows per simulated group (the simulator's time is per launch, not per row)


_RECORD = os.path.join(tempfile.gettempdir(), f"jitad-cuda-launches-{os.getpid()}.json")


def test_cuda_on_the_simulator():
    """Every test below marked on_simulator, run in a process with NUMBA_ENABLE_CUDASIM=1."""
    if SIMULATOR:
        pytest.skip("this process is the simulator's")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", JITAD_COMPILE="eager", JITAD_TEST_CUDA_RECORD=_RECORD)
    proc = subprocess.run([sys.executable, "-m", "pytest", __file__, "-x", "-p", "no:cacheprovider", "-rA"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    passed = proc.stdout.count("\nPASSED ")
    assert passed >= 10 and "\nFAILED " not in proc.stdout, proc.stdout[-6000:]


def test_simulated_kernels_compile_to_ptx():
    """The kernels of `_kitchen_sink` (every kind this target emits), launched on the simulator with their
    argument types recorded, compile to PTX for sm_75 with the real numba.cuda and NVVM (no GPU needed):
    what the simulator's Python accepts but a GPU compiler would not fails here."""
    if SIMULATOR or not os.path.exists(_RECORD):
        pytest.skip("needs the simulator run's record (test_cuda_on_the_simulator)")
    with open(_RECORD, encoding="utf-8") as f:
        records = _one_of_each_kind(json.load(f))
    with open(_RECORD, "w", encoding="utf-8") as f:
        json.dump(records, f)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    try:
        proc = subprocess.run([sys.executable, "-m", "jitad.tools.cuda_check", "--compile-ptx", _RECORD, "--cc", "7.5"],
                              env=env, capture_output=True, text=True, timeout=600)
    finally:
        os.unlink(_RECORD)
    if proc.returncode == 2:
        pytest.skip(proc.stdout.strip())  # no CUDA toolkit (NVVM) here
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert " kernel launches compile" in proc.stdout


# the library kernels compiled in the default suite's PTX check (fixed text; `cuda-check --ptx` compiles all)
_PTX_LIBRARY = {"_matmul_kernel", "_scatter_add3_kernel", "_argsort_kernel"}


def _one_of_each_kind(records):
    """The first launch of each kind of generated kernel (NVVM takes about a second a kernel): by what its
    source uses -- shared memory, atomics, one thread, device helpers not yet covered -- and a few library
    kernels."""
    import re
    kept, kinds, helpers = [], set(), set()
    for path, name, described in records:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        body = re.search(rf"^def {name}\(.*?(?=^\S)", source + "\nEND", re.S | re.M).group(0)
        if not re.fullmatch(r"[KF]\d+", name) and name not in _PTX_LIBRARY:
            continue
        kind = name if not re.fullmatch(r"[KF]\d+", name) else (
            name[0], "cuda.shared" in body, "cuda.atomic" in body, "# one thread:" in body)
        calls = set(re.findall(r"\bd_\w+", body))
        if kind not in kinds or calls - helpers:
            kinds.add(kind)
            helpers |= calls
            kept.append([path, name, described])
    return kept


def test_import_does_not_import_numba_cuda():
    code = "import sys, jitad; print(any(m == 'numba.cuda' or m.startswith('numba.cuda.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_gpu_or_simulator_the_error_says_what_to_do():
    if SIMULATOR:
        pytest.skip("the simulator is on in this process")
    from numba import cuda
    if cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(jitad.errors.CompileError, match="NUMBA_ENABLE_CUDASIM=1") as info:
        jitad.grad(lambda x: np.sum(x * x), target="cuda")(np.ones(3))
    assert "jitad[cuda]" in str(info.value) or "target='cpu'" in str(info.value)


# --- on the simulator ------------------------------------------------------------------------------
@pytest.fixture
def cuda_target():
    from jitad.backend import cuda
    saved = jitad.config.target
    jitad.config.target = "cuda"
    before = cuda.CALLS["count"]
    yield cuda
    jitad.config.target = saved
    assert cuda.CALLS["count"] > before, "no call ran on the cuda target"


def _groups():
    if not SIMULATOR:  # the table is imported where it runs
        return []
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from primitive_table import TABLE, compiled_groups
    rows = [row for row in TABLE if row.group in GROUPS and row.name not in UNSUPPORTED_ROWS]
    return compiled_groups(rows, MAX_ROWS)


@on_simulator
@pytest.mark.parametrize("name, rows", _groups(), ids=[n for n, _ in _groups()])
def test_table_compiled_on_cuda_matches_reference(cuda_target, name, rows):
    """Values (also against NumPy) and a vjp of each group: the cuda target against the reference executor."""
    from test_compiled import check_group_reverse
    check_group_reverse(rows)


@on_simulator
def test_unsupported_rows_raise_naming_the_primitive(cuda_target):
    from primitive_table import ROWS, group_function
    cuda_target.CALLS["count"] += 1  # nothing runs here on purpose
    for name, primitive in UNSUPPORTED_ROWS.items():
        row = ROWS[name]
        with pytest.raises(jitad.UnsupportedOperationError, match=f"`{primitive}`.*target='cpu'"):
            jitad.vjp(group_function([row]), [row.compiled_args()])


@on_simulator
def test_linear_algebra_raises_at_compile_time(cuda_target):
    cuda_target.CALLS["count"] += 1
    a = np.eye(3) * 2.0 + 0.1
    with pytest.raises(jitad.UnsupportedOperationError, match="`inv`.*target='cpu'") as info:
        jitad.grad(lambda a: np.sum(np.linalg.inv(a)))(a)
    assert info.value.name == "inv"
    # the way out works: the same function on the cpu target (its NumPy tier: no Numba compile here)
    saved = jitad.config.compile
    jitad.config.compile = "off"
    try:
        g = jitad.grad(lambda a: np.sum(np.linalg.inv(a)), target="cpu")(a)
    finally:
        jitad.config.compile = saved
    inv = np.linalg.inv(a)
    np.testing.assert_allclose(g, -(inv.T @ np.ones((3, 3)) @ inv.T), rtol=1e-10)


def _rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _mlp_loss(params, inputs, targets):
    for W, b in params:
        outputs = inputs @ W + b
        inputs = np.tanh(outputs)
    return np.mean((outputs - targets) ** 2)


def _mds_stress(X, D):
    diff = X[:, None, :] - X[None, :, :]
    dist = np.sqrt(np.sum(diff ** 2, axis=-1) + 1e-12)
    return np.sum((dist - D) ** 2)


def _lecture_cases():
    rng = np.random.default_rng(0)
    params = [(rng.standard_normal((2, 5)), rng.standard_normal(5)), (rng.standard_normal((5, 1)), np.zeros(1))]
    X = rng.uniform(-1, 1, (7, 2))
    Y = np.sin(3 * X[:, :1])
    P = rng.standard_normal((5, 2))
    D = np.abs(rng.standard_normal((5, 5)))
    A, b = rng.standard_normal((4, 4)), rng.standard_normal(4)
    return [
        ("rosenbrock", _rosenbrock, (rng.uniform(-1, 1, 150),), 0),  # 38 blocks of 4 > 16: grid-stride
        ("mlp", _mlp_loss, (params, X, Y), 0),
        ("mds", _mds_stress, (P, D), 0),
        ("quadratic", lambda x, A, b: 0.5 * x @ A @ x + b @ x + np.max(np.abs(x)), (rng.standard_normal(4), A, b),
         (0, 2)),
        ("softmax_cross_entropy", lambda z, y: -np.sum(y * (z - np.log(np.sum(np.exp(z), axis=1, keepdims=True)))),
         (rng.standard_normal((3, 4)), np.eye(4)[[0, 2, 3]]), 0),
    ]


@on_simulator
def test_lecture_examples_value_and_grad(cuda_target):
    for name, fn, args, argnums in _lecture_cases():
        value, grads = jitad.value_and_grad(fn, argnums=argnums)(*args)
        jitad.config.backend = "reference"
        try:
            ref_value, ref_grads = jitad.value_and_grad(fn, argnums=argnums)(*args)
        finally:
            jitad.config.backend = "numba"
        assert isinstance(value, np.float64) and abs(value - fn(*args)) <= 1e-10 * max(1.0, abs(value)), name
        for a, b in zip(optree.tree_leaves(grads), optree.tree_leaves(ref_grads)):
            assert isinstance(a, np.ndarray), name
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)


@on_simulator
def test_device_arrays_stay_on_the_device(cuda_target):
    from numba import cuda
    x = np.random.default_rng(1).uniform(-1, 1, 6)
    value, grad = jitad.value_and_grad(_rosenbrock, target="cuda")(cuda.to_device(x))
    assert hasattr(grad, "copy_to_host") and hasattr(value, "copy_to_host")  # device arrays out
    jitad.config.backend = "reference"
    try:
        ref_value, ref_grad = jitad.value_and_grad(_rosenbrock)(x)
    finally:
        jitad.config.backend = "numba"
    np.testing.assert_allclose(grad.copy_to_host(), ref_grad, rtol=1e-12)
    np.testing.assert_allclose(value.copy_to_host(), ref_value, rtol=1e-12)
    # NumPy in, NumPy out
    value, grad = jitad.value_and_grad(_rosenbrock, target="cuda")(x)
    assert type(grad) is np.ndarray and isinstance(value, np.float64)
    # a device array on another target is a clear error, not NumPy's on a foreign object
    with pytest.raises(jitad.errors.LeafTypeError, match="GPU array.*target='cuda'"):
        jitad.value_and_grad(_rosenbrock, target="cpu")(cuda.to_device(x))


@on_simulator
def test_a_wrong_kernel_is_caught(cuda_target, monkeypatch):
    """The comparison can fail: a device sin off by 1e-6 disagrees with the reference."""
    from primitive_table import ROWS
    from test_compiled import check_group_reverse
    from jitad.backend import cuda_codegen
    rows = [ROWS["sin"], ROWS["sum[all]"]]
    check_group_reverse(rows)
    monkeypatch.setitem(cuda_codegen._NP_CALLS, "sin", "1.000001 * math.sin")
    with pytest.raises(AssertionError, match="value / vjp"):
        check_group_reverse(rows)


@on_simulator
def test_source_is_cached_on_disk_by_target_and_shown_by_explain(cuda_target):
    from jitad.backend import cache
    fn = jitad.grad(lambda x: np.sum(np.sin(x) * x))
    fn(np.ones(5))
    text = str(jitad.explain(fn, np.ones(5), print_report=False))
    sources = [name for name in os.listdir(cache.cache_dir()) if name.endswith(".py")]
    cuda_sources = []
    for name in sources:
        with open(os.path.join(cache.cache_dir(), name), encoding="utf-8") as f:
            source = f.read()
        if 'TARGET = "cuda simulator"' in source and "math.sin" in source:
            cuda_sources.append(source)
    assert cuda_sources, "no cuda module in the disk cache"
    assert "@cuda.jit" in cuda_sources[0] and "cuda.grid(1)" in cuda_sources[0]
    assert "@cuda.jit" in text and 'TARGET = "cuda simulator"' in text


def _kitchen_sink(x, W, b):
    """A function whose cuda module holds every kind of kernel: fused nests, a block tree reduction
    and its second pass, atomic adds into 1-D and 2-D arrays, a serial nest (max over the outer axis),
    device helpers, and matmul, take / scatter-add, concatenate, cumsum and argsort."""
    h = np.tanh(x @ W + b)                                   # matmul; b's gradient: an atomic 1-D add
    m = np.max(h, axis=0)                                    # max over the outer axis: serial
    t = np.sum(x[:, None, :] * h[:, :, None], axis=(0, 2))   # an atomic add into a 1-D array of a 3-D nest
    u = np.sum(x[:, None, :] * h[:, :, None], axis=0)        # ... and into a 2-D array
    c = np.cumsum(x[:, 0])
    g = x[np.array([0, 2, 2, 1])]                            # take; its adjoint: a scatter-add
    z = np.concatenate([x[0], np.sort(x[1])])                # concatenate, argsort
    return (np.sum(h ** 2) + np.sum(m) + np.sum(t) + np.sum(u * u) + np.sum(c * np.floor(c))
            + np.sum(g ** 3) + np.sum(np.maximum(z, 0.1)) + np.mean(np.abs(x)))


@on_simulator
def test_kitchen_sink_value_and_grad(cuda_target):
    """Every kernel kind against the reference; the launches' argument types are recorded for
    test_simulated_kernels_compile_to_ptx."""
    from jitad.tools.cuda_check import recording_launches
    rng = np.random.default_rng(4)
    args = (rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, 4))
    records = []
    with recording_launches(records):
        value, grads = jitad.value_and_grad(_kitchen_sink, argnums=(0, 1, 2))(*args)
    jitad.config.backend = "reference"
    try:
        ref_value, ref_grads = jitad.value_and_grad(_kitchen_sink, argnums=(0, 1, 2))(*args)
    finally:
        jitad.config.backend = "numba"
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for a, b in zip(grads, ref_grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    names = {name for _, name, _ in records}
    assert {"_matmul_kernel", "_take3_kernel", "_scatter_add3_kernel", "_copy_into_kernel", "_cumsum3_kernel",
            "_argsort_kernel"} <= names, names
    path = os.environ.get("JITAD_TEST_CUDA_RECORD")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(records, f)
