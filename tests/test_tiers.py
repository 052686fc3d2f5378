"""Tiered execution (jitad.config.compile): the first calls answer on the NumPy executor
while a worker process compiles the kernel into the disk cache, then the kernel serves.

The rest of the suite runs with compile="eager" (tests/conftest.py); these tests opt
into "background". Those that need a fresh process (what is imported, worker deaths,
several processes on one cache, exit) run a script in a subprocess with its own cache.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import scipy.special

import jitad
from jitad.backend import worker
from jitad.backend.cache import cache_info, describe_args, numba_type

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the program the subprocesses run: a small tanh RNN's value and gradient, called until the
# compiled kernel serves (the fast path of value_and_grad is installed only then)
PROGRAM = """
import json, os, signal, sys, time, warnings
import numpy as np
import jitad

def loss(W, x):
    h = x
    for _ in range(3):
        h = np.tanh(h @ W + 0.1)
    return np.sum(h ** 2)

rng = np.random.default_rng(0)
W, x = 0.5 * rng.standard_normal((8, 8)), rng.standard_normal((4, 8))
vg = jitad.value_and_grad(loss)

def until_compiled(fn, args, timeout=90.0):
    deadline, outs = time.time() + timeout, []
    while not fn._jitad_fast and time.time() < deadline:
        outs.append(fn(*args))
        time.sleep(0.01)
    return outs

def until_switched(fn, args, timeout=90.0):
    switches, deadline, outs = jitad.cache_info()["tier_switches"], time.time() + timeout, []
    while jitad.cache_info()["tier_switches"] == switches and time.time() < deadline:
        outs.append(fn(*args))
        time.sleep(0.01)
    return outs
"""


def run(script, cache, timeout=120, **env):
    """Run `PROGRAM + script` in a fresh process on cache folder `cache`; its last stdout line, as JSON."""
    full_env = dict(os.environ, **{"JITAD_CACHE_DIR": str(cache), "JITAD_COMPILE": "background", **env})
    path = f"{cache}-script.py"  # a file, so that spawned multiprocessing children can import it
    with open(path, "w") as f:
        f.write(PROGRAM + textwrap.dedent(script))
    out = subprocess.run([sys.executable, path], env=full_env, cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def reference(W, x):
    """The RNN's value and gradient on the NumPy reference executor."""
    namespace = {}
    exec(PROGRAM, namespace)
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    try:
        return jitad.value_and_grad(namespace["loss"])(W, x)
    finally:
        jitad.config.backend = saved


def program_inputs():
    namespace = {}
    exec(PROGRAM, namespace)
    return namespace["W"], namespace["x"]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_dead(pids, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@pytest.fixture
def background(tmp_path, monkeypatch):
    """compile="background" in this process, on an empty cache of its own."""
    monkeypatch.setenv("JITAD_CACHE_DIR", str(tmp_path))
    saved = jitad.config.compile
    jitad.config.compile = "background"
    yield tmp_path
    jitad.config.compile = saved
    # a kernel queued by this test and compiled during the next would count in the next one's figures
    assert worker.wait_idle(timeout=120), "the background compile worker did not finish its queue"


def test_argument_descriptions_rebuild_numba_typeof():
    numba = pytest.importorskip("numba")
    a = np.arange(12.0).reshape(3, 4)
    readonly = np.ones(3)
    readonly.flags.writeable = False
    values = [1.5, True, 7, np.float32(2), np.int64(3), np.bool_(False), np.float64(1), a, a.T, a[:, ::2],
              a[::2], np.ones(5, np.float32), np.arange(4), np.zeros(2, bool), readonly, np.ones(()),
              (3, 4), (np.int64(1), 2), (), np.empty((0, 3))]
    for v in values:
        assert numba_type(describe_args([v])[0]) == numba.typeof(v), v
    assert describe_args([object()]) is None


def test_the_worker_imports_this_jitad():
    """The worker's `python -c` puts the folder holding this jitad package on its path (not the
    package folder itself, which left a checkout that is not installed on the NumPy tier for good)."""
    root = worker.package_root()
    assert os.path.samefile(os.path.join(root, "jitad", "__init__.py"), jitad.__file__)
    out = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import jitad; "
                          "print(jitad.__file__)", root], capture_output=True, text=True, cwd=os.sep,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0 and os.path.samefile(out.stdout.strip(), jitad.__file__), out.stderr


def test_compile_setting_and_environment_variable():
    with pytest.raises(ValueError):
        jitad.config.compile = "later"
    script = "import json, jitad; print(json.dumps(jitad.config.compile))"
    outs = {}
    for value in ("", "eager", "off", "Background", "sometimes"):
        env = dict(os.environ, JITAD_COMPILE=value)
        out = subprocess.run([sys.executable, "-W", "always", "-c", script], env=env, capture_output=True,
                             text=True, check=True)
        outs[value] = (json.loads(out.stdout), "JITAD_COMPILE" in out.stderr)
    assert outs == {"": ("background", False), "eager": ("eager", False), "off": ("off", False),
                    "Background": ("background", False), "sometimes": ("background", True)}


def test_first_results_on_numpy_then_the_compiled_kernel(tmp_path):
    result = run("""
        v0, g0 = vg(W, x)
        first = {"numba_imported": "numba" in sys.modules, "info": jitad.cache_info()}
        outs = until_compiled(vg, (W, x))
        v1, g1 = vg(W, x)  # the compiled kernel, through the fast path
        a, b = np.arange(3.0), np.arange(3.0) + 1
        dot = jitad.grad(lambda a, b: np.vdot(a, b))  # the gradient is the input b: a copy
        copies = []
        for compiled in (False, True):  # on the NumPy tier, then compiled
            g = dot(a, b)
            copies.append(not np.shares_memory(g, b) and np.array_equal(g, b))
            if not compiled:
                until_switched(dot, (a, b))
        print(json.dumps({
            "first": first, "after": jitad.cache_info(), "numpy_calls": len(outs) + 1,
            "value_rel": max(abs(v - v1) / abs(v1) for v, g in outs + [(v0, g0)]),
            "grad_rel": max(float(np.max(np.abs(g - g1))) / float(np.max(np.abs(g1))) for v, g in outs + [(v0, g0)]),
            "v1": v1, "g1": g1.tolist(), "copies": copies, "fast": bool(vg._jitad_fast)}))
    """, tmp_path)
    first, after = result["first"], result["after"]
    assert not first["numba_imported"]  # the first result needs neither Numba nor a compile
    assert first["info"]["numpy_tier_calls"] == 1 and first["info"]["numba_compilations"] == 0
    assert result["fast"] and after["tier_switches"] >= 1
    assert after["background_compiles"] >= 1
    assert after["numba_compilations"] == 0  # the worker compiled for the exact argument types
    assert after["disk_loads"] >= 1
    assert result["value_rel"] <= 1e-12 and result["grad_rel"] <= 1e-12
    v, g = reference(*program_inputs())
    assert abs(result["v1"] - v) <= 1e-12 * abs(v)
    np.testing.assert_allclose(result["g1"], g, rtol=1e-12, atol=1e-14)
    assert all(result["copies"])
    assert any(p.name.endswith(".ready") for p in tmp_path.iterdir())


def test_in_an_ipython_shell_like_jupyter(tmp_path):
    """Jupyter runs cells through IPython's InteractiveShell: functions defined in a cell have no
    module file. The first result comes from the NumPy tier, then the worker's kernel serves."""
    pytest.importorskip("IPython")
    cell = PROGRAM + textwrap.dedent("""
        v0, g0 = vg(W, x)
        outs = until_compiled(vg, (W, x))
        v1, g1 = vg(W, x)
        info = jitad.cache_info()
    """)
    script = textwrap.dedent(f"""
        import json, sys
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        result = shell.run_cell({cell!r})
        result.raise_error()
        ns = shell.user_ns
        print(json.dumps({{"file": ns["loss"].__code__.co_filename, "info": ns["info"],
                          "same": bool(abs(ns["v0"] - ns["v1"]) <= 1e-12 * abs(ns["v1"])),
                          "fast": bool(ns["vg"]._jitad_fast)}}))
    """)
    env = dict(os.environ, JITAD_CACHE_DIR=str(tmp_path), JITAD_COMPILE="background")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["file"].startswith("<ipython-input") or "ipykernel" in result["file"]
    assert result["fast"] and result["same"]
    assert result["info"]["numpy_tier_calls"] >= 1 and result["info"]["tier_switches"] >= 1
    assert result["info"]["numba_compilations"] == 0  # compiled by the worker, loaded from the cache


def test_transforms_with_extra_inputs_switch_tiers(background):
    """vjp, jvp and jacobian calls (kernels with extra inputs) go through the tier object too."""
    A = np.linspace(-1, 1, 12).reshape(3, 4)

    def f(x):
        return np.sin(A @ x) * x[:3]

    x = np.linspace(0.1, 0.9, 4)
    J = jitad.jacobian(f)
    expected = np.cos(A @ x)[:, None] * A * x[:3, None] + np.eye(3, 4) * np.sin(A @ x)[:, None]
    before = cache_info()
    deadline = time.time() + 90
    while cache_info()["tier_switches"] == before["tier_switches"] and time.time() < deadline:
        np.testing.assert_allclose(J(x), expected, rtol=1e-12, atol=1e-15)
        time.sleep(0.01)
    assert cache_info()["tier_switches"] > before["tier_switches"]
    assert cache_info()["numpy_tier_calls"] > before["numpy_tier_calls"]
    np.testing.assert_allclose(J(x), expected, rtol=1e-12, atol=1e-15)
    out, tangent = jitad.jvp(f, (x,), (np.ones(4),))
    np.testing.assert_allclose(tangent, expected @ np.ones(4), rtol=1e-12)


def test_custom_rules_stay_on_the_reference_executor(background):
    @jitad.custom_vjp
    def cube(x):
        return x ** 3

    # a bwd rule jitad cannot trace (SciPy's chdtr, which jitad does not implement; 1.0 here) runs on
    # NumPy arrays as a callback (a traceable one is inlined and compiles: test_custom.py)
    cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (3 * x ** 2 * g * scipy.special.chdtr(1.0, 0.0 * x + 1e9),))
    before = cache_info()
    g = jitad.grad(lambda x: np.sum(cube(x)))
    np.testing.assert_allclose(g(np.arange(3.0)), 3 * np.arange(3.0) ** 2)  # the eager first tier
    deadline = time.time() + 60  # the graph is built in a background thread: it lands on the reference executor
    while cache_info()["reference_fallbacks"] == before["reference_fallbacks"] and time.time() < deadline:
        time.sleep(0.01)
    assert cache_info()["reference_fallbacks"] == before["reference_fallbacks"] + 1
    np.testing.assert_allclose(g(np.arange(3.0)), 3 * np.arange(3.0) ** 2)
    assert cache_info()["background_compiles"] == before["background_compiles"]


def test_compile_off_never_imports_numba(tmp_path):
    result = run("""
        import threading
        v, g = vg(W, x)
        for _ in range(3):
            vg(W, x)
        H = jitad.hessian(lambda z: np.sum(np.tanh(z) ** 2))(np.linspace(0, 1, 3))
        J = jitad.jacobian(lambda z: np.sin(z))(np.linspace(0, 1, 3))
        f = jitad.jit(lambda z: np.cumsum(z) * 2)(np.arange(3.0))
        print(json.dumps({"numba": sorted(m for m in sys.modules if m.split(".")[0] in ("numba", "llvmlite")),
                          "threads": [t.name for t in threading.enumerate()], "v": v, "g": g.tolist(),
                          "H": H.tolist(), "J": J.tolist(), "f": f.tolist(), "info": jitad.cache_info()}))
    """, tmp_path, JITAD_COMPILE="off")
    assert result["numba"] == []
    assert not any("jitad" in name for name in result["threads"])
    assert result["info"]["numpy_tier_calls"] == 0 and result["info"]["background_compiles"] == 0
    v, g = reference(*program_inputs())
    assert abs(result["v"] - v) <= 1e-12 * abs(v)
    np.testing.assert_allclose(result["g"], g, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(result["J"], np.diag(np.cos(np.linspace(0, 1, 3))), atol=1e-15)
    np.testing.assert_allclose(result["f"], [0.0, 2.0, 6.0])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("jitad_")]


def test_worker_killed_mid_compile(tmp_path):
    """The function keeps answering, the worker is restarted, the kernel compiles; the cache
    serves a fresh process afterwards without a compile."""
    result = run("""
        import fcntl, glob, signal
        from jitad.backend import worker
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            v0, g0 = vg(W, x)
            killed = None
            deadline = time.time() + 60
            while killed is None and time.time() < deadline:
                vg(W, x)
                for path in glob.glob(os.path.join(os.environ["JITAD_CACHE_DIR"], "*.lock")):
                    fd = os.open(path, os.O_RDWR)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:  # the worker holds it: it is compiling
                        killed = worker.worker_pid()
                        os.kill(killed, signal.SIGKILL)
                    finally:
                        os.close(fd)
                time.sleep(0.005)
            outs = until_compiled(vg, (W, x))
            v1, g1 = vg(W, x)
        print(json.dumps({"killed": killed, "restarted": worker.worker_pid(), "info": jitad.cache_info(),
                          "warnings": [str(w.message) for w in caught],
                          "same": all(abs(v - v1) <= 1e-12 * abs(v1) and np.allclose(g, g1, rtol=1e-12, atol=0)
                                      for v, g in outs + [(v0, g0)])}))
    """, tmp_path)
    assert result["killed"] and result["restarted"] and result["restarted"] != result["killed"]
    assert result["info"]["tier_switches"] == 1 and result["info"]["numba_compilations"] == 0
    assert result["same"]
    assert len(result["warnings"]) == 1 and "exited" in result["warnings"][0]
    fresh = run("""
        v, g = vg(W, x)
        print(json.dumps({"info": jitad.cache_info(), "v": v}))
    """, tmp_path, JITAD_COMPILE="eager")
    assert fresh["info"]["disk_loads"] == 1 and fresh["info"]["numba_compilations"] == 0
    assert abs(fresh["v"] - reference(*program_inputs())[0]) <= 1e-12 * abs(fresh["v"])


def test_processes_sharing_one_empty_cache_compile_each_kernel_once(tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "worker.log"
    script = PROGRAM + textwrap.dedent("""
        v0, g0 = vg(W, x)
        outs = until_compiled(vg, (W, x))
        v1, g1 = vg(W, x)
        print(json.dumps({"v": [v0, v1], "g": [g0.tolist(), g1.tolist()], "info": jitad.cache_info()}))
    """)
    env = dict(os.environ, JITAD_CACHE_DIR=str(cache), JITAD_COMPILE="background", JITAD_WORKER_LOG=str(log))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=150)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    v, g = reference(*program_inputs())
    for r in results:
        for value, grad in zip(r["v"], r["g"]):
            assert abs(value - v) <= 1e-12 * abs(v)
            np.testing.assert_allclose(grad, g, rtol=1e-12, atol=1e-14)
        assert r["info"]["numba_compilations"] == 0
    lines = log.read_text().splitlines()
    compiled = [line for line in lines if " compiled jitad_" in line]
    assert len(compiled) == 1, lines
    assert sum(r["info"]["background_compiles"] for r in results) == 1
    assert len([p for p in cache.iterdir() if p.suffix == ".py"]) == 1


def test_no_worker_outlives_its_process(tmp_path):
    """Normal exit mid-compile (atexit), a SIGKILLed parent (the worker sees its stdin close)
    and a spawn-context multiprocessing pool whose children each start a worker."""
    normal = run("""
        from jitad.backend import worker
        vg(W, x)
        deadline = time.time() + 30
        while worker.worker_pid() is None and time.time() < deadline:
            time.sleep(0.01)
        print(json.dumps({"pid": worker.worker_pid()}))
    """, tmp_path / "a")
    script = PROGRAM + textwrap.dedent("""
        from jitad.backend import worker
        vg(W, x)
        deadline = time.time() + 30
        while worker.worker_pid() is None and time.time() < deadline:
            time.sleep(0.01)
        print(worker.worker_pid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, JITAD_CACHE_DIR=str(tmp_path / "b"), JITAD_COMPILE="background")
    killed = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    spawned = run("""
        import multiprocessing
        from jitad.backend import worker

        def child(k):
            v, g = vg(W * k, x)
            deadline = time.time() + 30
            while worker.worker_pid() is None and time.time() < deadline:
                time.sleep(0.01)
            return v, worker.worker_pid()

        if __name__ == "__main__":
            with multiprocessing.get_context("spawn").Pool(2) as pool:
                out = pool.map(child, [1.0, 0.5])
            print(json.dumps({"values": [v for v, _ in out], "pids": [p for _, p in out],
                              "expected": [float(vg(W * k, x)[0]) for k in (1.0, 0.5)]}))
    """, tmp_path / "c")
    assert normal["pid"] and spawned["pids"][0] and spawned["pids"][1]
    np.testing.assert_allclose(spawned["values"], spawned["expected"], rtol=1e-12)
    pids = [normal["pid"], int(killed.stdout.split()[0])] + spawned["pids"]
    assert wait_dead(pids) == []


def test_a_worker_that_cannot_start_leaves_the_numpy_tier_answering(tmp_path):
    result = run("""
        sys.executable = os.path.join(os.environ["JITAD_CACHE_DIR"], "no-such-python")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outs = [vg(W, x) for _ in range(3)]
            vg.jitad_transform.latest.pending.wait()  # the compiled form is built (slow on a loaded machine)
            time.sleep(0.5)
            outs += [vg(W, x) for _ in range(3)]
            other = jitad.grad(lambda z: np.sum(z ** 3))(np.ones(2))
            time.sleep(0.5)
            other = jitad.grad(lambda z: np.sum(z ** 3))(np.ones(2))
        print(json.dumps({"v": [v for v, _ in outs], "info": jitad.cache_info(), "other": other.tolist(),
                          "warnings": [str(w.message) for w in caught if "jitad" in str(w.message)]}))
    """, tmp_path)
    v, _ = reference(*program_inputs())
    np.testing.assert_allclose(result["v"], v, rtol=1e-12)
    assert result["other"] == [3.0, 3.0]
    assert result["info"]["numpy_tier_calls"] == 8 and result["info"]["tier_switches"] == 0
    assert len(result["warnings"]) == 1 and "could not start" in result["warnings"][0]


@pytest.mark.parametrize("fun", [
    lambda x: np.sum(np.where(x > 0, np.sqrt(x), 0.0)),
    lambda x: np.sum(np.where(x != 0.3, 1.0 / (x - 0.3), 0.0)),
    lambda x: np.sum(np.where(x <= 0, 0.0, np.log(x)) * x),
])
def test_numpy_tier_keeps_untaken_where_branches_out_of_the_gradient(fun):
    """Found by a helper session: the NumPy tier (the first calls of compile="background", all of
    compile="off") gave NaN where np.where's untaken branch has an infinite derivative, and the
    compiled kernel 0: the rule that keeps those lanes 0 read the select off the graph, which the
    NumPy tier does not build. Both tiers agree now (with JAX's and autograd's double-where idiom)."""
    x = np.array([-1.0, 0.0, 0.3, 4.0])
    saved = jitad.config.compile
    try:
        results = {}
        for mode in ("off", "eager"):
            jitad.config.compile = mode
            with np.errstate(all="ignore"):
                results[mode] = (jitad.grad(fun)(x), jitad.hessian(fun)(x), jitad.value_and_grad(fun)(x)[1])
    finally:
        jitad.config.compile = saved
    for numpy_tier, compiled in zip(results["off"], results["eager"]):
        assert np.all(np.isfinite(numpy_tier)), numpy_tier
        np.testing.assert_array_equal(numpy_tier, compiled)


def test_an_integer_argument_that_changes_at_every_call(background, monkeypatch):
    """An optimiser's step number passed as a Python int (autograd's `objective(params, i)`): each
    value is a trace of its own. The stages kept are bounded (one per call was kept for ever), the
    transform says once which argument changes, and from then on a stage's compiled form is built
    only when its value comes again; the values stay NumPy's."""
    from jitad import staging
    built = []
    monkeypatch.setattr(staging.Pending, "build", lambda self, first_args=None: built.append(self))
    monkeypatch.setattr(staging, "STAGE_LIMIT", 12)
    X = np.linspace(-1.0, 1.0, 24).reshape(6, 4)

    def objective(w, it):
        return np.sum((X @ w) ** 2) * (1.0 + 0.0 * it)

    g = jitad.grad(objective)
    w = np.arange(4.0)
    with pytest.warns(RuntimeWarning, match=r"traced again 8 times because the value of `it` changed.*np\.asarray"):
        for it in range(staging.SCALAR_RETRACES + 1):
            np.testing.assert_allclose(g(w, it), 2.0 * X.T @ (X @ w), rtol=1e-12)
    assert len(built) == staging.SCALAR_RETRACES  # the ninth value's stage waits for a second call
    g(w, staging.SCALAR_RETRACES)
    assert len(built) == staging.SCALAR_RETRACES + 1
    for it in range(40):
        g(w, 100 + it)
    transform = next(t for t in objective._jitad_transforms.values() if hasattr(t, "stages"))
    assert len(transform.stages) == 12
    assert len(built) == staging.SCALAR_RETRACES + 1  # values seen once build nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        g(w, 1000)
    # a float changing at every call is a traced value: one trace
    h = jitad.grad(lambda w, s: np.sum((X @ w) ** 2) * s)
    traces = cache_info()["traces"]
    for k in range(10):
        np.testing.assert_allclose(h(w, 1.0 + k), (1.0 + k) * 2.0 * X.T @ (X @ w), rtol=1e-12)
    assert cache_info()["traces"] == traces + 1


def test_numpy_tier_holds_one_version_of_an_array_written_in_a_loop():
    """A loop of n writes out[i] = v is n selects of the whole array: the NumPy tier held every
    version (the forward values), a chain of every cotangent (its record of selects held each
    one's other branch) and n cotangents of the broadcast values (swept after the whole chain):
    78 MB at n = 1500, 1.8-3 GB and 8-19 s at n = 10,000. Now one version at a time."""
    import tracemalloc

    def fill(x):
        out = np.zeros(x.shape[0])
        for i in range(x.shape[0]):
            out[i] = np.sin(x[i]) * x[i - 1]
        return np.sum(out ** 2)

    n = 1500
    x = np.random.default_rng(0).standard_normal(n)
    saved = jitad.config.compile
    jitad.config.compile = "off"
    try:
        vg = jitad.value_and_grad(fill)
        vg(x + 1.0)  # the trace
        tracemalloc.start()
        try:
            v, g = vg(x)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        jitad.config.compile = saved
    out = np.sin(x) * np.roll(x, 1)
    np.testing.assert_allclose(v, np.sum(out ** 2), rtol=1e-13)
    expected = 2 * out * np.cos(x) * np.roll(x, 1) + np.roll(2 * out * np.sin(x), -1)
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-14)
    assert peak < 12e6, f"{peak / 1e6:.1f} MB held by one call (an array is {8 * n / 1e3:.0f} kB)"


def test_numpy_tier_takes_python_number_arguments_as_arrays():
    """The NumPy tier (the first calls of compile="background", all of compile="off") handed a Python
    float argument to the derivative rules as it came: d(x**0)/dx, whose rule reads x.dtype, raised
    AttributeError: 'float' object has no attribute 'dtype' for grad(lambda x: x ** 0.0)(0.0) on the
    default backend (autograd's test_scalar_ops::test_power_arg0, run compiled by a helper session).
    Its inputs are now arrays of the graph's input dtypes, as the other executors make them."""
    saved = jitad.config.compile
    try:
        jitad.config.compile = "off"
        for fun in (lambda x: np.power(x, 0.0), lambda x: x ** 0 + 2.0 * x):
            want = 0.0 if fun(3.0) == 1.0 else 2.0
            for x in (0.0, 2.0, np.float64(0.0), np.array(1.5)):
                g = jitad.grad(fun)(x)
                assert g == want and np.asarray(g).dtype == np.float64, (x, g)
                assert jitad.grad(jitad.grad(fun))(x) == 0.0
                v, g = jitad.value_and_grad(fun)(x)
                assert v == fun(x) and g == want
        assert isinstance(jitad.jit(lambda x: x)(1.5), (np.ndarray, np.generic))
    finally:
        jitad.config.compile = saved
