"""Backend selection: turns an optimized Graph into a callable on flat arrays."""
from .interpreter import evaluate


class Config:
    """jitad.config.backend: "numba" (compiled, the default) or "reference" (NumPy, for debugging)."""
    backend = "numba"


config = Config()


def compile(graph):
    if config.backend == "reference":
        return lambda args: evaluate(graph, args)
    from .cache import compile_graph
    return compile_graph(graph)
