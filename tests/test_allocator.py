"""jitad keeps freed array memory in the process (jitad/backend/allocator.py): after its first call,
allocating and freeing a 2 MiB array again and again faults in no fresh pages; with
JITAD_KEEP_MEMORY=0 malloc's settings are left alone (and each round faults its pages in again)."""
import os
import subprocess
import sys

import pytest

from jitad.backend import allocator

PROGRAM = """
import resource, numpy as np, jitad
from jitad.backend import allocator
jitad.config.compile = "off"
jitad.grad(lambda x: np.sum(x * x))(np.ones(3))
for _ in range(3):
    a = np.ones((512, 512)); del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = np.ones((512, 512)); b = a * 2; del a, b
print(allocator.keep_freed_memory(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_round(keep):
    env = dict(os.environ, JITAD_KEEP_MEMORY="1" if keep else "0")
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(not allocator.available(), reason="glibc's malloc only")
def test_freed_arrays_are_reused_without_page_faults():
    applied, kept = _faults_per_round(True)
    skipped, default = _faults_per_round(False)
    assert applied and not skipped
    # a 2 MiB array is 512 pages; two of them a round when malloc maps and unmaps them
    assert kept < 100 < 400 < default, (kept, default)
