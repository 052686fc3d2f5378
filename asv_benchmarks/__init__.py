"""asv benchmarks of jitad (see asv.conf.json at the repository root). Run
`asv run --python=same --quick`, or `python asv_benchmarks/ratios.py` for the ratios
the team quotes (one process, interleaved repeats)."""
