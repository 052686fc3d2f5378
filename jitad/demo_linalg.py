"""Linear-algebra lecture examples for `python -m jitad demo` (filled in by the linear-algebra work)."""

EXAMPLES = []
