"""asv benchmarks of jitad (see asv.conf.json at the repository root). Run
`asv run --python=same --quick`, or `python asv_benchmarks/ratios.py` for the ratios
the team quotes (one process, interleaved repeats)."""
import os
import sys

# One BLAS/XLA thread for every peer, unless the caller says otherwise. The machine is
# shared: multi-threaded OpenBLAS on busy cores measures the scheduler (a 256x256 matmul
# went from 0.8 ms to 13-30 ms with 2 threads while tests ran), not the code. asv runs
# get these variables from the "matrix" "env" of asv.conf.json (asv has imported NumPy
# before this package); this block covers `python asv_benchmarks/ratios.py`. They only
# take effect before NumPy is imported, so nothing is set when it already is (pytest, asv).
if "numpy" not in sys.modules:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
