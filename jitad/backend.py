"""Backend selection: turns an optimized Graph into a callable on flat arrays."""


class Config:
    """jitad.config.backend: "numba" (compiled, the default) or "reference" (NumPy, for debugging)."""
    backend = "numba"


config = Config()


def compile(graph):
    from .cache import ReferenceGraph, compile_graph
    if config.backend == "reference":
        return ReferenceGraph(graph)
    return compile_graph(graph)
