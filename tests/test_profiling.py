"""The compile profile: `jitad.profiling`, `python -m jitad profile-compile`, `explain(timings=True)`.

One tiny program of its own (so its kernel is compiled here, not found in the shared test cache)."""
import os
import sys
import time

import numpy as np

import jitad
from jitad import profiling
from jitad.__main__ import main

JITAD_PHASES = {"trace", "transform", "passes", "fusion", "codegen", "first call"}
NUMBA_PHASES = {"numba:typing", "numba:lowering", "llvm"}


def profiled_loss(x):
    return np.sum(np.arctan(x) * np.cbrt(x + 3.0) - x ** 4)


def test_phase_marks_cost_nothing_without_a_profile():
    assert profiling._active is None
    assert profiling.phase("trace") is profiling.phase("codegen")  # one shared no-op context
    profiling.note(None)  # no profile: nothing recorded, no error


def test_profile_times_every_phase_of_a_compile():
    x = np.linspace(0.1, 0.9, 7)
    value_and_grad = jitad.value_and_grad(profiled_loss)
    with profiling.profile() as prof:
        start = time.perf_counter()
        value, grad = value_and_grad(x)
        wall = time.perf_counter() - start
    assert profiling._active is None
    np.testing.assert_allclose(grad, 1 / (1 + x ** 2) * np.cbrt(x + 3) + np.arctan(x) / (3 * np.cbrt(x + 3) ** 2)
                               - 4 * x ** 3, rtol=1e-6)
    (record,) = prof.records
    assert record.label == "value_and_grad(profiled_loss)"
    assert JITAD_PHASES <= set(record.times) and set(record.cpu) == set(record.times)
    assert record.numba_compiles == 1 and NUMBA_PHASES <= set(record.times)
    assert all(seconds >= 0 for seconds in record.times.values())
    # exclusive times add up to the call's wall time (the call is the transform, less its last few lines)
    assert 0.5 * wall <= record.total <= wall + 1e-3
    assert record.times["llvm"] + record.times["numba:lowering"] > record.times["codegen"]
    assert record.counts["graph nodes"] > 5 and record.counts["loop nests"] >= 1 and record.counts["source lines"] > 10
    report = prof.report(passes=3)
    for label in ("user-function trace", "AD transform", "passes (optimize)", "fusion plan", "codegen (source)",
                  "Numba type inference", "Numba lowering", "LLVM", "CPU s", "slowest Numba passes", "numba:llvm_lock"):
        assert label in report
    # a second call is served by the kernel: nothing more is recorded
    with profiling.profile() as again:
        value_and_grad(x)
    assert again.records == []


def test_explain_appends_the_phase_table():
    report = jitad.explain(profiled_loss, np.linspace(0.1, 0.9, 7), timings=True, print_report=False)
    table = report[report.index("== compile profile =="):]
    assert "user-function trace" in table and "codegen (source)" in table and "graph nodes" in table


SCRIPT = """
import sys
import numpy as np
import jitad

def script_loss(w, x):
    return np.sum(np.arctan(x @ w) * np.cbrt(w[0] + 3.0))

print("args", sys.argv[1:], jitad.config.compile)
jitad.grad(script_loss)(np.full(3, 0.5), np.ones((2, 3)) / 10)
"""


def test_profile_compile_command(tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    environ = {k: os.environ.get(k) for k in ("JITAD_CACHE_DIR", "JITAD_COMPILE")}
    compile_mode, argv = jitad.config.compile, list(sys.argv)
    status = main(["profile-compile", "--cache", os.environ["JITAD_CACHE_DIR"], str(script), "one", "--two"])
    out, err = capsys.readouterr()
    assert status == 0
    assert "args ['one', '--two'] eager" in out
    assert "== transform 1: value_and_grad(script_loss) ==" in err  # grad is value_and_grad's gradient
    for label in ("user-function trace", "AD transform", "Numba type inference", "LLVM", "total", "graph nodes",
                  "loop nests", "library calls", "source lines", "how each phase is measured"):
        assert label in err
    # the command leaves the process as it found it
    assert {k: os.environ.get(k) for k in environ} == environ
    assert jitad.config.compile == compile_mode and sys.argv == argv and profiling._active is None


def test_profile_compile_removes_its_fresh_cache(tmp_path, capsys):
    script = tmp_path / "where.py"
    script.write_text("import os\nprint('cache', os.environ['JITAD_CACHE_DIR'])\nraise SystemExit(3)\n")
    assert main(["profile-compile", str(script)]) == 3  # the script's exit status
    out, err = capsys.readouterr()
    folder = out.split("cache ", 1)[1].strip()
    assert folder != os.environ["JITAD_CACHE_DIR"] and not os.path.exists(folder)
    assert "compile='eager', a fresh cache)" in err and "wall time" in err
