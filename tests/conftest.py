"""Shared test setup: one temporary jitad disk cache for the whole session, so compiled
kernels are shared across tests (and across the subprocesses some tests start).

The second core: a session that runs the compile-heaviest files (`WARMED`) and other tests
starts one "warmer" process at once, which runs those files first (its results are not
used) and so compiles their kernels into the shared disk cache while this process runs the
other files; this process runs the warmed files last and loads their kernels from the cache
(the cache's lock makes a kernel the two reach at once compile once). Results come only from
this process. `JITAD_TEST_WARMER=0` turns the warmer off.
"""
import os
import subprocess
import sys
import tempfile

_CACHE = tempfile.mkdtemp(prefix="jitad-test-cache-")
os.environ.setdefault("JITAD_CACHE_DIR", _CACHE)
# the tests compare compiled kernels with the reference: compile before the first result
# (tests/test_tiers.py opts into "background" where it tests the tiers)
os.environ.setdefault("JITAD_COMPILE", "eager")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jitad  # noqa: E402


@pytest.fixture
def reference_backend():
    """Run a test on the NumPy reference executor (no Numba compilation)."""
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    yield
    jitad.config.backend = saved


@pytest.fixture
def rng():
    return np.random.default_rng(0)


WARMED = ("test_compiled.py", "test_numpy_extra.py", "test_fuzz.py", "test_linalg.py")
_warmer = []


def _warmed(item):
    return os.path.basename(str(item.fspath)) in WARMED


def pytest_collection_modifyitems(session, config, items):
    """The warmed files run last here, while the warmer compiles their kernels from the start."""
    warmed = [item for item in items if _warmed(item)]
    if not warmed or len(warmed) == len(items) or os.environ.get("JITAD_TEST_WARMER") in ("0", "running"):
        return
    if os.environ.get("JITAD_COMPILE", "eager") != "eager" or (os.cpu_count() or 1) < 2:
        return
    items[:] = [item for item in items if not _warmed(item)] + warmed
    files = sorted({str(item.fspath) for item in warmed}, key=lambda f: WARMED.index(os.path.basename(f)))
    env = dict(os.environ, JITAD_TEST_WARMER="running", JITAD_TEST_WARMER_PARENT=str(os.getpid()))
    _warmer.append(subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(config.rootpath), *files],
        env=env, cwd=str(config.rootpath), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def _exit_with_parent(parent):
    """In the warmer: leave when the session that started it is gone (killed, interrupted)."""
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()


if os.environ.get("JITAD_TEST_WARMER") == "running":
    _exit_with_parent(int(os.environ["JITAD_TEST_WARMER_PARENT"]))


def pytest_sessionfinish(session, exitstatus):
    for proc in _warmer:  # never an orphan: its work is only a head start
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def pytest_addoption(parser):
    """Options of the differential fuzzer in tests/fuzz (the default run is its fast profile)."""
    group = parser.getgroup("fuzz", "jitad differential fuzzer (tests/fuzz)")
    group.addoption("--fuzz-long", action="store_true", default=False,
                    help="run the long fuzz profile (thousands of programs)")
    group.addoption("--fuzz-count", type=int, default=None, help="number of programs for the reference fuzz test")
    group.addoption("--fuzz-seed", type=int, default=None, help="run seed of the fuzz tests (default: fixed)")
