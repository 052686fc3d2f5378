"""asv benchmarks of jitad (see asv.conf.json at the repository root). Run
`asv run --python=same --quick`, or `python asv_benchmarks/ratios.py` for the ratios
the team quotes (one process, interleaved repeats)."""
import os
import sys

# How many threads the peers get, from JITAD_BENCH_THREADS (`ratios.py --threads` sets it):
#   "one" (the default): one BLAS/XLA thread for every peer, unless the caller says otherwise.
#       The machine is shared: multi-threaded OpenBLAS on busy cores measures the scheduler (a
#       256x256 matmul went from 0.8 ms to 13-30 ms with 2 threads while tests ran), not the code.
#       JAX 0.10 does not honour these XLA_FLAGS: its CPU runtime still runs a 256x256 matmul on
#       two cores (785 us of CPU time in 454 us of wall time); only "pinned" confines it.
#   "pinned": as "one", and the process (so every thread it starts) is pinned to one CPU.
#   "default": nothing is set; every peer runs with its own default threads (issue 13's targets).
# asv runs get the "one" variables from the "matrix" "env" of asv.conf.json (asv has imported
# NumPy before this package); this block covers `python asv_benchmarks/ratios.py`. They only
# take effect before NumPy is imported, so nothing is set when it already is (pytest, asv).
THREADS = os.environ.get("JITAD_BENCH_THREADS", "one")
SET_HERE = []  # the variables this block set (ratios.py drops them for a child with default threads)
if "numpy" not in sys.modules and THREADS in ("one", "pinned"):
    for _var, _value in (("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
                         ("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")):
        if _var not in os.environ:
            os.environ[_var] = _value
            SET_HERE.append(_var)
    if THREADS == "pinned":
        os.environ.setdefault("NUMBA_NUM_THREADS", "1")
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # before any other thread starts
