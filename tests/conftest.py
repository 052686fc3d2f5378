"""Shared test setup: one temporary jitad disk cache for the whole session, so compiled
kernels are shared across tests (and across the subprocesses some tests start)."""
import os
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


def pytest_addoption(parser):
    """Options of the differential fuzzer in tests/fuzz (the default run is its fast profile)."""
    group = parser.getgroup("fuzz", "jitad differential fuzzer (tests/fuzz)")
    group.addoption("--fuzz-long", action="store_true", default=False,
                    help="run the long fuzz profile (thousands of programs)")
    group.addoption("--fuzz-count", type=int, default=None, help="number of programs for the reference fuzz test")
    group.addoption("--fuzz-seed", type=int, default=None, help="run seed of the fuzz tests (default: fixed)")
