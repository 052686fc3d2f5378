"""One direction of flow (STYLE.md, issue 9): a module imports only from its own layer or the
layers before it, at module level and inside functions alike, and no two modules import each
other (directly or round a longer circle). The few lazy imports that reach a later layer on
purpose are listed in LAZY_UPWARD with the reason; anything else fails here."""
import ast
import functools
import pathlib

import jitad

# The package order of DESIGN.md's architecture, as packages of this repository.
LAYERS = [
    {"errors", "pytrees"},
    {"ixexpr", "profiling"},
    {"ir"},
    {"primitives", "primitives.core", "primitives.elementwise", "primitives.structural",
     "primitives.linalg", "primitives.special", "primitives.ode", "primitives.control", "primitives.builders"},
    {"interpreter", "passes"},
    {"transforms", "transforms.ad", "transforms.batching", "transforms.loops"},
    {"frontend", "frontend.tracer", "frontend.inplace", "frontend.numpy_ops", "frontend.linalg_ops",
     "frontend.scipy_ops", "frontend.scipy_names", "frontend.scipy_code", "frontend.numpy_extra", "frontend.rng",
     "frontend.integrate", "frontend.scipy_stats",
     "frontend.guards", "frontend.loops", "frontend.rolling", "frontend.captures"},
    {"transforms.custom"},
    {"backend.allocator", "backend.stats", "backend.fusion", "backend.kernels", "backend.kernels_linalg", "backend.kernels_special",
     "backend.kernels_vecmath"},
    {"backend.calls"},
    {"backend.codegen"},
    {"backend.cuda_codegen"},
    {"backend.worker"},
    {"backend.cache"},
    {"backend.compile_worker", "backend.cuda"},
    {"backend"},
    {"staging"},
    {"api"},
    {"sweeps"},
    {"schedule"},
    {"jacobians"},
    {"tools", "tools.checks", "tools.explain", "tools.demo", "tools.demo_linalg", "tools.modes", "tools.coverage",
     "tools.cuda_check", "__main__", "__init__"},
    {"dask"},  # jitad.dask: Dask clusters, on top of everything (imports dask lazily)
]

# (importer, imported): lazy imports that reach a later layer on purpose.
LAZY_UPWARD = {
    # the compile profiler (`python -m jitad profile-compile`) labels kernels by fusion's
    # library calls and switches the backend: a tool that lives beside the phase timers
    ("profiling", "backend.fusion"),
    ("profiling", "backend"),
    # the disk cache keys kernels by the package version
    ("backend.cache", "__init__"),
}
ROOT = pathlib.Path(jitad.__file__).parent
KNOWN = {m for layer in LAYERS for m in layer}


def _layer(module):
    for k, layer in enumerate(LAYERS):
        if module in layer:
            return k
    raise AssertionError(f"jitad.{module} is in no layer of tests/test_layers.py: add it where it belongs")


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _target(name):
    """The jitad module an import names (a name imported from a package may be a module)."""
    while name and name not in KNOWN:
        name = name.rpartition(".")[0]
    return name or "__init__"


def _imports(path):
    """(jitad module, lazy?) for every import of a jitad module in the file."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        lazy = id(node) not in top
        if isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path.relative_to(ROOT)}: use absolute imports (from jitad.x import y)"
            if node.module == "jitad" or (node.module or "").startswith("jitad."):
                for alias in node.names:
                    yield _target(f"{node.module}.{alias.name}"[len("jitad."):]), lazy
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("jitad."):
                    yield _target(alias.name[len("jitad."):]), lazy


@functools.lru_cache(maxsize=1)
def _graph():
    """Module -> {(imported module, lazily)}, parsed once per session (the checks only read it)."""
    edges = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        edges[module] = {(t, lazy) for t, lazy in _imports(path) if t != module}
    return edges


def _upward(graph):
    problems = []
    for module, targets in graph.items():
        for target, lazy in sorted(targets):
            if _layer(target) > _layer(module) and (module, target) not in LAZY_UPWARD:
                kind = "lazily " if lazy else ""
                problems.append(f"jitad.{module} {kind}imports jitad.{target} from a later layer")
    return problems


def _circles(graph):
    edges = {m: {t for t, _ in ts if (m, t) not in LAZY_UPWARD and t != "__init__"}
             for m, ts in graph.items()}
    done, stack, circles = set(), [], []

    def visit(m):
        if m in stack:
            circles.append(" -> ".join(stack[stack.index(m):] + [m]))
            return
        if m in done:
            return
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            visit(t)
        stack.pop()
        done.add(m)

    for m in sorted(edges):
        visit(m)
    return circles


def test_every_module_imports_only_from_earlier_layers():
    problems = _upward(_graph())
    assert not problems, "\n".join(problems)


def test_no_circle_of_imports():
    circles = _circles(_graph())
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_layer_checks_can_fail():
    """An upward import, a lazy one and a circle within one layer are all caught."""
    assert _upward({"ir": {("api", False)}}) == ["jitad.ir imports jitad.api from a later layer"]
    assert _upward({"ir": {("api", True)}}) == ["jitad.ir lazily imports jitad.api from a later layer"]
    assert _circles({"passes": {("interpreter", True)}, "interpreter": {("passes", False)}})
