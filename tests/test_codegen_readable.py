"""Generated code reads as if written by hand (issue 9, item 5): names from the graph without
counter suffixes, one `# %k = prim(...)` comment per computing line, a header mapping the
kernel's arguments, identical constants merged, no dead copies, no unused imports; and the
cache key of a kernel ignores its comments but not its code."""
import re
import warnings

import numpy as np
import pytest

import jitad
from jitad.backend import codegen
from jitad.backend.cache import source_hash
from jitad.frontend.tracer import trace
from jitad.passes import optimize

_W, _X = np.ones((3, 2)), np.ones((4, 3))
_C1 = np.array([0.25, 1.5, -3.0])
_C2 = np.array([0.25, 1.5, -3.0])  # equal to _C1, another array
_C3 = np.array([0.25, 1.5, -4.0])


def loss(w, x):
    return np.sum(np.tanh(x @ w) ** 2)


def graph_of(fun, *args):
    def listed(*values):
        out = fun(*values)
        return list(out) if isinstance(out, (tuple, list)) else [out]
    return optimize(trace(listed, [(np.shape(a), np.asarray(a).dtype) for a in args])[0])


def value_and_grad_source(fun, *args, labels=None):
    graph = graph_of(lambda *a: jitad.value_and_grad(fun)(*a), *args)
    return codegen.generate(graph, labels=labels)


def body(source):
    return source.split("def kernel(", 1)[1]


def statements(source):
    """(code, comment) of the kernel's body lines that are code."""
    out = []
    for line in body(source).splitlines()[1:]:
        code, _, comment = line.partition("  # ")
        if code.strip() and not code.strip().startswith("#"):
            out.append((code.strip(), comment))
    return out


def test_names_come_from_the_graph():
    source = value_and_grad_source(loss, _W, _X)[0]
    names = set(re.findall(r"\b([a-z_]+\d+)(?:_\d+)?\b", body(source)))
    assert not re.search(r"\b[a-z]+\d+_\d+\b", body(source)), source  # no counter suffixes here
    assert not re.search(r"\b[vroas]\d+\b", body(source)), source      # no v3/r2/o12/a5 names
    # a value's name is its primitive's short name and its node number, as in its comment
    for code, comment in statements(source):
        match = re.match(r"%(\d+) = (\w+)\(", comment)
        lhs = re.match(r"(\w+)", code).group(1)
        if match:
            assert re.fullmatch(rf"[a-z][a-z0-9_]*?{match.group(1)}", lhs), (code, comment)
    assert {"x0", "x1", "tanh5", "matmul4", "matmul11"} <= names
    assert "    matmul4_i = matmul4[i0, i1]\n" in source  # an element read is named after its array


def layer_loss(w, b, x):
    return np.sum((x @ w + b) ** 2)


@pytest.mark.parametrize("fun, args", [(loss, (_W, _X)), (layer_loss, (_W, np.ones(2), _X))])
def test_one_comment_per_computing_line_with_parameters(fun, args):
    graph = graph_of(lambda *a: (lambda v, g: [v, *g])(*jitad.value_and_grad(fun, argnums=(0, 1))(*a)), *args)
    source = codegen.generate(graph)[0]
    comments = []
    for code, comment in statements(source):
        rhs = code.split(" = ", 1)[1] if " = " in code else ""
        if re.fullmatch(r"[\w.]+(\[[^\]]*\])?", rhs) or rhs.startswith(("np.empty(", "np.full(")):
            assert comment == "", code  # reads, stores, allocations and initial values compute nothing
        elif rhs:
            assert re.match(r"%\d+ = \w+\(", comment), code
            comments.append(comment)
    assert len(comments) == len(set(comments)), source  # each node's line is commented once
    assert "power_scalar(%" in source and "exponent=2)" in source
    assert "reduce_sum(%" in source and "axes=(0, 1))" in source


def test_a_stored_value_used_again_is_named_as_the_outputs_element():
    graph = graph_of(lambda *a: (lambda v, g: [v, *g])(*jitad.value_and_grad(layer_loss, argnums=(0, 1))(*a)),
                     _W, np.ones(2), _X)
    source = codegen.generate(graph)[0]
    stored = re.search(r"^ +(\w+)\[i0, i1\] = (\w+)$", source, re.M)
    assert stored and stored.group(2) == stored.group(1) + "_i", source


def test_header_maps_arguments_to_the_callers_paths():
    source = value_and_grad_source(loss, _W, _X)[0]
    assert "    # x0: input 0 (3, 2) float64\n" in source
    assert "    # x1: input 1 (4, 3) float64\n" in source
    labelled = value_and_grad_source(loss, _W, _X, labels=["args[0]['w']", "args[1]"])[0]
    assert "    # x0: args[0]['w'] (3, 2) float64\n" in labelled
    assert source_hash(labelled) == source_hash(source)


def test_the_header_names_the_callers_argument_paths():
    """Through the API: a kernel's arguments are named by the user's parameters and pytree paths."""
    def fit(params, x, *rest):
        return np.sum(np.tanh(x * params["w"]) ** 2) * params["scale"][1] + rest[0]
    args = ({"w": np.ones(3), "scale": (1.0, 2.0)}, np.arange(3.0), 0.5)
    source = jitad.explain(jitad.grad(fit), *args).source
    for line in ("# x0: params['scale'][0] () float64", "# x1: params['scale'][1] () float64",
                 "# x2: params['w'] (3,) float64", "# x3: x (3,) float64", "# x4: rest[0] () float64"):
        assert line in source, source


def test_identical_constants_are_one_argument():
    def f(x):
        return np.sum(x * _C1) + np.sum(np.sin(x) * _C2) + np.sum(np.cos(x) * _C3)
    source, consts, _, _ = codegen.generate(graph_of(f, np.ones(3)))
    assert "def kernel(x0, c0, c1):" in source, source
    assert sorted(tuple(c) for c in consts) == sorted([tuple(_C1), tuple(_C3)])
    assert re.search(r"# c\d: constant %\d+, %\d+ \(3,\) float64", source), source
    assert len(re.findall(r"= c\d\[i0\]", source)) == 2, source  # each array read once


def test_no_dead_copies():
    source = value_and_grad_source(loss, _W, _X)[0]
    code = [c for c, _ in statements(source)]
    for k, line in enumerate(code):
        match = re.fullmatch(r"([\w\[\], ]+) = (\w+)", line)
        if match and not match.group(2)[0].isdigit() and match.group(2) not in ("True", "False"):
            uses = sum(len(re.findall(rf"\b{match.group(2)}\b", c)) for c in code)
            assert uses > 2, f"{line!r} copies a value used nowhere else"
    assert "mul10[i0, i1] = (mul6 * sub9)" in source  # the output is computed in place


def test_only_used_modules_are_imported():
    def f(x):
        return x * 2.0 + 1.0
    source = codegen.generate(graph_of(f, np.ones(3)))[0]
    assert "calls" not in source and "kernels" not in source
    for alias in re.findall(r"^(?:import|from) .* as (\w+)$", source, re.M):
        assert re.search(rf"\b{alias}\.", body(source)), f"{alias} imported but unused"
    matmul_source = value_and_grad_source(loss, _W, _X)[0]
    # K of a compiled kernel: the kernels module with its array-level helpers called by address
    assert 'from jitad.backend import calls\nK = calls.namespace("K", __file__)\n' in matmul_source
    assert "KL" not in matmul_source


def test_vectorisable_calls_are_chosen_per_node_while_emitting():
    def f(x, y):
        return np.exp(x) * 3.0, np.sum(np.tanh(y) > 0.5), np.sum(np.tanh(x))
    source = codegen.generate(graph_of(f, np.ones(5), np.ones(4)))[0]
    # exp's inner loop can vectorise; y's tanh has an integer running sum (kept in order): libm;
    # x's tanh is summed through the reassociable K.radd, which vectorises
    assert "K.fexp(x0_i)" in source and "np.tanh(x1_i)" in source, source
    assert "K.ftanh(x0_i)" in source and "K.radd(" in source and "K.ftanh(x1_i)" not in source, source


def test_source_hash_ignores_comments_but_not_code():
    source = value_and_grad_source(loss, _W, _X)[0]
    bare = "\n".join(line.partition("  # ")[0] for line in source.splitlines()
                     if not line.strip().startswith("#"))
    padded = source.replace("\n    return", "\n\n    # the outputs\n    return")
    assert source_hash(bare) == source_hash(source) == source_hash(padded)
    assert source_hash(source.replace("(2.0 * tanh5)", "(2.0 + tanh5)")) != source_hash(source)
    assert source_hash(source.replace("sum13", "total")) != source_hash(source)
    assert source_hash(source.replace("    mul10 =", "     mul10 =")) != source_hash(source)
    # a `#` inside a string is code
    assert source_hash('x = "#a"  # c\n') != source_hash('x = "#b"  # c\n')
    assert source_hash('x = "#a"  # c\n') == source_hash('x = "#a"  # d\n')
    assert source_hash('x = """\n# a\n"""\n') != source_hash('x = """\n# b\n"""\n')


@pytest.mark.parametrize("steps", [6])
def test_split_nests_are_canonical_and_readable(steps):
    def rnn(params, xs):
        wx, wh = params
        h = np.zeros((xs.shape[1], wh.shape[0]))
        for t in range(xs.shape[0]):
            h = np.tanh(xs[t] @ wx + h @ wh)
        return np.sum(h ** 2)
    params = (np.ones((3, 5)) * 0.1, np.ones((5, 5)) * 0.1)
    def value_and_grads(p0, p1, xs):
        value, grads = jitad.value_and_grad(rnn)((p0, p1), xs)
        return [value, *grads]
    graph = graph_of(value_and_grads, *params, np.ones((steps, 4, 3)))
    split = codegen.generate_split(graph)
    assert len(split.calls) > len(split.nests)  # steps share nest kernels
    for nest in split.nests:
        assert not re.search(r"%\d+ = \w+\([^)]*=", nest), nest  # no step-specific parameters
        for code, comment in statements(nest):
            assert not re.search(r"\b[a-z]+\d+_\d+\b", code) or "_i" in code, code
    assert "# x0: input 0 (3, 5) float64" in split.source
    assert re.search(r"^    \w+, = N0\(", split.source, re.M)


def test_readable_kernel_computes_what_numpy_does():
    """One compile: merged constants, in-place outputs and the header run as they read."""
    def f(w, x):
        return np.sum(np.tanh(x @ w) ** 2 * _C1[:2]) + np.sum(w * _C2[:2])
    args = (_W * 0.3, _X * 0.2)
    value, grad = jitad.value_and_grad(f)(*args)
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    try:
        want_value, want_grad = jitad.value_and_grad(f)(*args)
    finally:
        jitad.config.backend = saved
    assert value == pytest.approx(f(*args), rel=1e-13)
    assert value == pytest.approx(want_value, rel=1e-13)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12)


def test_the_split_drivers_dels_come_after_a_loops_body():
    """A value last read in a loop's header or body is deleted after the loop, not inside it (the
    rows of a scan's body are lines of their own, indented in their text: a `del` between them
    made the driver an IndentationError, found by test_compiled's second-order binary group)."""
    from jitad.backend.codegen import _released
    lines = [("n = f(x)", None, 0), ("for t in range(n):\n    b = g(x, t)", None, 0), ("    c = h(b)", None, 0),
             ("m = k(x)", None, 0), ("for s in range(m):", None, 0), ("q = g(s)", None, 1), ("d = k(x)", None, 0),
             ("return (d,)", None, 0)]
    out = _released(lines)
    source = "def driver(x):\n" + "\n".join("    " * (depth + 1) + text.replace("\n", "\n    ")
                                           for text, _, depth in out)
    compile(source, "driver", "exec")
    assert source.index("del n") > source.index("c = h(b)") and source.index("del m") > source.index("q = g(s)")


def test_a_loops_packed_value_is_read_back_as_views_but_outputs_are_copies():
    """A scan packs its outputs into one array; reading them back (slice + reshape) is a view of it
    (no loop, no new array), except for the kernel's own outputs, which callers own: writing into one
    changes neither another output nor a later call's."""
    def f(w, xs):
        h, hs = jitad.scan(lambda h, x: (np.tanh(h * w + x), h * 2.0), np.zeros(3), xs)
        return h, hs, np.sum(hs ** 2) + np.sum(h)
    w, xs = 0.7, np.linspace(-1.0, 1.0, 12).reshape(4, 3)
    vg = jitad.value_and_grad(lambda w, xs: f(w, xs)[2])
    report = jitad.explain(vg, w, xs, print_report=False)
    assert "(a view: no copy)" in report.source
    value, grad = vg(w, xs)
    jitad.config.backend, saved = "reference", jitad.config.backend
    try:
        want = jitad.value_and_grad(lambda w, xs: f(w, xs)[2])(w, xs)
    finally:
        jitad.config.backend = saved
    assert value == pytest.approx(want[0], rel=1e-13) and grad == pytest.approx(want[1], rel=1e-12)
    jitted = jitad.jit(f)
    h, hs, total = jitted(w, xs)
    h_want, hs_want, _ = f(w, xs)
    hs[...] = 0.0
    h[...] = -1.0
    h2, hs2, _ = jitted(w, xs)
    np.testing.assert_allclose(hs2, hs_want, rtol=1e-13)
    np.testing.assert_allclose(h2, h_want, rtol=1e-13)


def test_rows_of_an_argument_a_library_call_reads_are_a_view_of_it():
    """`x[1:] @ w` reads rows 1: of the argument x in place (a view, of x's own layout: a transposed
    x too), never writes x, and gives NumPy's values; a Fortran-ordered x gives the same."""
    def f(x, w):
        return np.sum(np.tanh(x[1:] @ w))
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(5, 3)), rng.normal(size=(3, 2))
    vg = jitad.value_and_grad(f, argnums=(0, 1))
    report = jitad.explain(vg, x, w, print_report=False)
    assert re.search(r"= x0\[1:.*\]  # %\d+ = slice\(.*\(a view: no copy\)", report.source), report.source
    # the products read the rows as a C array (x may have any layout): no np.dot of an 'A' array
    assert re.search(r"K\.dot\(np\.ascontiguousarray\(slice\d+\)\.T, ", report.source), report.source
    assert "np.ascontiguousarray(np.ascontiguousarray(" not in report.source
    jitad.config.backend, saved = "reference", jitad.config.backend
    try:
        want = jitad.value_and_grad(f, argnums=(0, 1))(x, w)
    finally:
        jitad.config.backend = saved
    for x_in in (x, np.asfortranarray(x)):
        before = x_in.copy()
        with warnings.catch_warnings():  # the product reads the rows as a C array (no NumbaPerformanceWarning)
            warnings.simplefilter("error")
            value, (gx, gw) = vg(x_in, w)
        np.testing.assert_array_equal(x_in, before)
        assert value == pytest.approx(f(x, w), rel=1e-13) and value == pytest.approx(want[0], rel=1e-13)
        np.testing.assert_allclose(gx, want[1][0], rtol=1e-12)
        np.testing.assert_allclose(gw, want[1][1], rtol=1e-12)


def test_a_chain_of_reshapes_that_merge_axes_is_stored_every_second_link():
    """A reshape that merges or splits axes reads through divisions and modulos; two composed cost more
    than fusion inlines, so the second is stored (prod's second-order rule composed such chains into
    index expressions of kilobytes, which took Numba and LLVM 38 s to compile). One is still fused."""
    x = np.arange(24.0).reshape(2, 3, 4)
    one = jitad.jit(lambda x: np.sin(x.reshape(6, 4)))
    two = jitad.jit(lambda x: np.sin(x.reshape(6, 4).T.reshape(4, 2, 3)))
    sources = [jitad.explain(f, x, print_report=False).source for f in (one, two)]
    stored = [re.findall(r"(\w+) = np\.empty\(", src) for src in sources]
    assert [name.rstrip("0123456789") for name in stored[0]] == ["sin"], stored
    assert [name.rstrip("0123456789") for name in stored[1]] == ["reshape", "sin"], stored
    np.testing.assert_allclose(two(x), np.sin(x.reshape(6, 4).T.reshape(4, 2, 3)), rtol=1e-15, atol=1e-15)
