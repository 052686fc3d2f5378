"""Array-level helpers called by address (jitad/backend/calls.py): a kernel holds a call, not the
helper's code; a fresh process registers what a cached kernel calls from its .symbols record; a
lost record makes Numba compile the kernel again; a damaged one is a RuntimeError, never a call to
an unknown address."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jitad
from jitad.backend import cache

SCRIPT = textwrap.dedent("""
    import json, numpy as np, jitad
    jitad.config.compile = "eager"
    def f(A, B):
        return np.trace(np.linalg.inv(A) @ B) + np.sum(A @ B.T)
    A = np.eye(4) * 3 + np.arange(16.).reshape(4, 4) / 40; B = np.arange(16.).reshape(4, 4) / 7
    try:
        v, (gA, gB) = jitad.value_and_grad(f, argnums=(0, 1))(A, B)
    except RuntimeError as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        print(json.dumps({"value": float(v), "gA": gA.tolist(), "gB": gB.tolist(), **jitad.cache_info()}))
""")


def _run(folder):
    env = dict(os.environ, JITAD_CACHE_DIR=str(folder))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def _expected():
    A = np.eye(4) * 3 + np.arange(16.).reshape(4, 4) / 40
    B = np.arange(16.).reshape(4, 4) / 7
    Ai = np.linalg.inv(A)
    ones = np.ones((4, 4))
    return np.trace(Ai @ B) + np.sum(A @ B.T), -(Ai @ B @ Ai).T + ones @ B, Ai.T + ones @ A


def _check(result):
    value, gA, gB = _expected()
    assert result["value"] == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(result["gA"], gA, rtol=1e-10)
    np.testing.assert_allclose(result["gB"], gB, rtol=1e-10)


def test_a_kernel_calls_its_helpers_by_address_and_a_fresh_process_registers_them(tmp_path):
    first = _run(tmp_path)
    _check(first)
    assert first["numba_compilations"] == 1
    (record,) = tmp_path.glob("jitad_*.symbols")
    listed = {tuple(json.loads(line)[:2]) for line in record.read_text().splitlines()}
    assert listed == {("K", "dot"), ("KL", "inv")}
    second = _run(tmp_path)  # the machine code from Numba's cache; the helpers from the record
    _check(second)
    assert (second["numba_compilations"], second["disk_loads"]) == (0, 1)

    (record,) = tmp_path.glob("jitad_*.symbols")
    record.unlink()  # lost: Numba compiles the kernel again and typing writes the record again
    third = _run(tmp_path)
    _check(third)
    assert third["numba_compilations"] == 1
    assert {tuple(json.loads(line)[:2]) for line in record.read_text().splitlines()} == listed

    record.write_text("")  # damaged: the kernel refuses the call and names the way out
    assert "delete the jitad cache folder" in _run(tmp_path)["error"]


def test_the_helpers_code_is_not_in_the_kernel(reference_backend):
    """The kernel's LLVM IR calls the helper through the table; it does not define it (linking
    would compile the helper's machine code again in every kernel: 0.4-1.7 s a helper)."""
    jitad.config.backend = "numba"

    def f(A):
        return np.sum(np.linalg.inv(A))
    A = np.eye(3) * 2 + 0.1
    np.testing.assert_allclose(jitad.jit(f)(A), f(A), rtol=1e-12)
    source = jitad.explain(jitad.jit(f), A).source
    kernel = cache.load_kernel(source)
    (ir,) = kernel.inspect_llvm().values()
    assert "jitad_helper_table" in ir
    defined = [line for line in ir.splitlines() if line.startswith("define") and "inv" in line]
    assert defined == [], defined
