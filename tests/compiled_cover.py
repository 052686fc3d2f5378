"""Which rows of the primitive table the default suite compiles: a set of rows whose generated
kernels hold every line that the whole table's kernels hold.

Numba costs ~0.25 s per loop nest, and most rows' kernels repeat lines that other rows' kernels
already hold (`operator_add` and `add`, the axis variants of one reduction, the exponents of
power_scalar that lower alike). test_compiled.py compiles, by default, a greedy cover of the
table: rows are taken, most new lines first, until every *line template* of every row's
generated source is in some kept row's kernel. A line template is a line of generated code with
its names and numbers abstracted (`add3 = (x0_i + mul2)` and `add7 = (x1_i + sin5)` are one
template; an integer literal and a float literal are different ones, as Numba types them
differently), plus each argument's dtype. Rows whose kernels call a library kernel (KL., KB.:
LAPACK, Bessel) are always kept: what those do depends on the shapes at run time, which the
source does not show. Every row is still checked in every mode on the reference executor
(test_primitives.py), and `JITAD_TEST_FULL=1` compiles every row.

The cover is computed by generating the kernels' source without compiling them (a few seconds),
in a subprocess so that no cache of this test session holds the stand-in executors it uses; the
two test processes share one result through a file in the session's jitad cache folder.
"""
import contextlib
import json
import os
import re
import subprocess
import sys

_IDENT = re.compile(r"(?<![.\w])[A-Za-z_]\w*")
_FLOAT = re.compile(r"(?<![\w.])\d+\.\d*(e[-+]?\d+)?|(?<![\w.])\d+e[-+]?\d+")
_INT = re.compile(r"(?<![\w.])\d+(?![\w.])")
_KEEP = {"np", "K", "KL", "KB", "math", "numba", "range", "prange", "for", "in", "if", "else", "elif", "while",
         "return", "and", "or", "not", "is", "True", "False", "None"}
_DTYPE = re.compile(r"^\s*# \w+: .*\b(float32|float64|int64|int32|int8|uint8|bool|complex64|complex128)\b", re.M)
_LIBRARY = re.compile(r"\b(KL|KB)\.")


def templates(source):
    """The line templates of one generated kernel's source."""
    out = {"dtype " + m.group(1) for m in _DTYPE.finditer(source)}
    for line in source.split("\n"):
        code = line.split("#", 1)[0].strip()
        if not code or code.startswith(("import ", "from ", "@", "def ")):
            continue
        code = _FLOAT.sub("<.>", code)  # placeholders of symbols only
        code = _INT.sub("<:>", code)
        out.add(_IDENT.sub(lambda m: m.group(0) if m.group(0) in _KEEP else
                           ("i" if re.fullmatch(r"i\d+", m.group(0)) else "v"), code))
    return out


def _row_sources(check, rows):
    """The kernel sources `check(rows)` would compile, generated but not compiled (the graphs run
    on the reference executor meanwhile)."""
    import jitad
    from jitad.backend import cache, codegen
    sources = []

    def generate_only(graph, mode="eager", labels=None, target="cpu"):
        if len(graph.nodes) > cache.SPLIT_NODES:
            split = codegen.generate_split(graph, labels)
            sources.extend([split.source, *split.nests])
        else:
            sources.append(codegen.generate(graph, labels)[0])
        return cache.ReferenceGraph(graph)
    saved, saved_backend = cache.compile_graph, jitad.config.backend
    cache.compile_graph, jitad.config.backend = generate_only, "numba"
    try:
        check(rows)
    finally:
        cache.compile_graph, jitad.config.backend = saved, saved_backend
    return sources


def compute():
    """[(kind, row name)] of the rows to compile: "reverse" or "second" by test_compiled's groups."""
    import test_compiled as T
    found, library = {}, set()
    for kind, groups, check in (("reverse", T.GROUPS, T.check_group_reverse),
                                ("second", T.SECOND_ORDER, T.check_group_second_order)):
        for _, rows in groups:
            for row in rows:
                try:
                    sources = _row_sources(check, [row])
                except NotImplementedError:  # rules the compiler cannot lower (custom_vjp): the group runs them
                    sources = [f"# row {row.name}"]
                    library.add((kind, row.name))
                found[(kind, row.name)] = set().union(*map(templates, sources)) if sources else set()
                if any(_LIBRARY.search(source) for source in sources):
                    library.add((kind, row.name))
    chosen, covered = list(library), set().union(*(found[key] for key in library))
    every = set().union(*found.values())
    while covered != every:
        best = max(found, key=lambda key: len(found[key] - covered))  # first of the best: deterministic
        chosen.append(best)
        covered |= found[best]
    return sorted(chosen)


@contextlib.contextmanager
def _locked(path):
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_MEMO = []


def kept_rows():
    """The set of (kind, row name) the default suite compiles, or None with JITAD_TEST_FULL=1 (all)."""
    if os.environ.get("JITAD_TEST_FULL", "") not in ("", "0"):
        return None
    if _MEMO:
        return _MEMO[0]
    folder = os.environ["JITAD_CACHE_DIR"]
    path = os.path.join(folder, "compiled-cover.json")
    with _locked(path):
        if not os.path.exists(path):
            import jitad
            here = os.path.dirname(os.path.abspath(__file__))
            package_root = os.path.dirname(os.path.dirname(os.path.abspath(jitad.__file__)))
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, package_root, os.environ.get("PYTHONPATH", "")]))
            out = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, cwd=here,
                                 capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError("tests/compiled_cover.py failed:\n" + out.stdout[-2000:] + out.stderr[-4000:])
            with open(path + ".tmp", "w") as f:
                f.write(out.stdout)
            os.replace(path + ".tmp", path)
        with open(path) as f:
            _MEMO.append({tuple(key) for key in json.load(f)})
    return _MEMO[0]


if __name__ == "__main__":
    os.environ["JITAD_COMPILE"] = "eager"  # as conftest: every graph goes through compile_graph
    print(json.dumps(compute()))
