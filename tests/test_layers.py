"""One direction of flow (STYLE.md): a module imports, at module level, only from its own
layer or the layers before it. Lazy imports inside functions are how a layer reaches a
later one on purpose (the backend choosing the compiler, the Jacobian scheduler's networkx)."""
import ast
import pathlib

import jitad

LAYERS = [
    {"errors", "profiling"},
    {"ir", "ixexpr"},
    {"primitives", "primitives.core", "primitives.elementwise", "primitives.structural", "primitives.linalg",
     "primitives.special"},
    {"ops", "linalg_ops", "scipy_ops"},
    {"trace", "rng"},
    {"interpreter"},
    {"passes"},
    {"ad"},
    {"batching", "custom"},
    {"fusion", "kernels", "kernels_linalg", "kernels_special"},
    {"codegen"},
    {"cache", "worker"},
    {"backend"},
    {"api"},
    {"checks", "jacobians", "explain"},
    {"demo", "demo_linalg", "modes_script", "__main__", "__init__"},
]
ROOT = pathlib.Path(jitad.__file__).parent


def _layer(module):
    for k, layer in enumerate(LAYERS):
        if module in layer:
            return k
    raise AssertionError(f"jitad.{module} is in no layer of tests/test_layers.py: add it where it belongs")


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts)


def _imports(path, module):
    if path.name == "__init__.py":
        package = "" if module == "__init__" else module
    else:
        package = module.rsplit(".", 1)[0] if "." in module else ""
    for node in ast.parse(path.read_text()).body:  # module level only
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
            names = [target] if node.module else [f"{target}.{a.name}".strip(".") for a in node.names]
            yield from (n for n in names if n)
        elif isinstance(node, ast.Import):
            yield from (a.name[len("jitad."):] for a in node.names if a.name.startswith("jitad."))


def test_every_module_imports_only_from_earlier_layers():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_name(path)
        if module.endswith("__init__") and module != "__init__":
            module = module[:-len(".__init__")]
        for target in _imports(path, module):
            target = target if target in {m for layer in LAYERS for m in layer} else target.split(".")[0]
            if _layer(target) > _layer(module):
                problems.append(f"jitad.{module} imports jitad.{target} from a later layer")
    assert not problems, "\n".join(problems)
