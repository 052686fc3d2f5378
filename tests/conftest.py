"""Shared test setup: one temporary jitad disk cache for the whole session, so compiled
kernels are shared across tests (and across the subprocesses some tests start)."""
import os
import tempfile

_CACHE = tempfile.mkdtemp(prefix="jitad-test-cache-")
os.environ.setdefault("JITAD_CACHE_DIR", _CACHE)

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
