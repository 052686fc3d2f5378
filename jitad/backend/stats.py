"""Counters of the backend's work, read by `jitad.cache_info()`."""
STATS = {"traces": 0, "signature_hits": 0, "kernel_hits": 0, "kernel_misses": 0, "disk_loads": 0,
         "numba_compilations": 0, "reference_fallbacks": 0,
         # tiers: calls answered on the NumPy executor while their kernel compiled elsewhere, kernels the
         # background worker compiled (or found compiled by another process), switches to a compiled kernel
         "numpy_tier_calls": 0, "background_compiles": 0, "background_cached": 0, "tier_switches": 0}
