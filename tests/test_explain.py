"""explain reads the record of what a transform ran (`jitad.staging.Stage`), names the transform
it was given, numbers nodes one way from the graph to the kernel, and returns an `Explanation`
whose fields the tests read. One small kernel is compiled here (the rest run with compile="off")."""
import re

import numpy as np
import pytest

import jitad
from jitad.tools.explain import Explanation


def small_loss(x, y):
    return np.sum(np.tanh(x * y) ** 2) + np.sum(np.exp(-x))


@pytest.fixture
def compile_off():
    """The NumPy tier alone: the transforms trace, nothing compiles (explain fills in the stages)."""
    saved = jitad.config.compile
    jitad.config.compile = "off"
    yield
    jitad.config.compile = saved


@pytest.mark.usefixtures("compile_off")
def test_explain_names_the_transform_it_was_given():
    x, y = np.linspace(0.1, 1.0, 6), np.linspace(1.0, 2.0, 6)
    wide = lambda x: np.tanh(np.outer(x, x)).ravel()  # noqa: E731
    narrow = lambda x: np.tanh(np.ones((3, 6)) @ x)  # noqa: E731

    def named(fun, *args):
        report = jitad.explain(fun, *args, print_report=False)
        return report.transform, report.mode

    assert named(jitad.value_and_grad(small_loss), x, y) == ("value_and_grad", "reverse")
    assert named(jitad.grad(small_loss, argnums=(0, 1)), x, y) == ("grad", "reverse")
    assert named(jitad.jit(small_loss), x, y) == ("jit", "evaluation only")
    auto = jitad.explain(jitad.jacobian(narrow), x, print_report=False)
    assert auto.transform == "jacobian" and auto.mode == auto.jacobian_plan.mode  # the mode auto chose
    assert named(jitad.jacobian(wide, mode="mixed"), x) == ("jacobian", "mixed")
    assert named(jitad.jacfwd(narrow), x) == ("jacfwd", "forward")
    assert named(jitad.hessian(lambda x: small_loss(x, y)), x) == ("hessian", "forward over reverse")
    inner = jitad.grad(lambda x: np.sum(np.sin(x)))
    assert named(jitad.jacfwd(inner), x) == ("jacfwd", "forward")  # not the name of the transform inside
    assert named(jitad.jit(inner), x) == ("jit", "evaluation only")
    # a plain function: value_and_grad when it returns a float scalar, else jit
    assert named(small_loss, x, y) == ("value_and_grad", "reverse")
    assert named(wide, x) == ("jit", "evaluation only")
    assert jitad.explain(small_loss, x, y, transform="jit", print_report=False).transform == "jit"
    with pytest.raises(ValueError, match="transform must be"):
        jitad.explain(small_loss, x, y, transform="hessian", print_report=False)


@pytest.mark.usefixtures("compile_off")
def test_explanation_fields_and_text(capsys):
    x, y = np.linspace(0.1, 1.0, 6), np.linspace(1.0, 2.0, 6)
    report = jitad.explain(jitad.value_and_grad(small_loss), x, y)
    assert capsys.readouterr().out.strip() == str(report).strip()  # print_report=True prints the text
    assert isinstance(report, Explanation) and isinstance(report, str)
    assert report.function == "small_loss"
    assert [name for name, _ in report.passes] and report.optimized is report.passes[-1][1]
    assert len(report.graph.outputs) == 1 and len(report.transformed.outputs) == 2  # value, gradient
    assert report.plan is not None and "def kernel(" in report.source
    assert report.tier == "NumPy executor (compile='off')" and report.jacobian_plan is None
    assert {"trace", "transform", "passes"} <= set(report.timings)
    assert "== value_and_grad, reverse" in report and "== generated source ==" in report


@pytest.mark.usefixtures("compile_off")
def test_a_jacobian_report_holds_its_plan():
    A = np.ones((3, 2000))  # R^2000 -> R^3: reverse mode, one sweep of 3 cotangents
    report = jitad.explain(jitad.jacobian(lambda x: np.tanh(A @ x)), np.ones(2000), print_report=False)
    plan = report.jacobian_plan
    assert plan.mode == "reverse" == report.mode and plan.num_sweeps == 1
    assert plan.costs["forward"] > plan.costs["reverse"]
    forced = jitad.explain(jitad.jacfwd(lambda x: np.tanh(A @ x)), np.ones(2000), print_report=False)
    assert forced.mode == "forward" and forced.jacobian_plan.costs["reverse"] is not None  # estimates shown


def test_explain_reads_the_stage_that_ran_and_numbers_nodes_one_way():
    """The compiled stage is read, not rebuilt (no new trace); the plan's %k, the graph's node k
    and the kernel's `# %k = prim(...)` comments are one numbering."""
    x, y = np.linspace(0.1, 1.0, 6), np.linspace(1.0, 2.0, 6)
    vg = jitad.value_and_grad(small_loss)
    vg(x, y)  # compiles (the suite's compile mode is "eager")
    before = jitad.cache_info()["traces"]
    report = jitad.explain(vg, x, y, print_report=False)
    assert jitad.cache_info()["traces"] == before
    stage = vg.jitad_transform.stage_for((x, y))
    assert report.stage is stage and report.source is stage.source and report.optimized is stage.optimized
    assert report.tier == "compiled kernel (Numba)" and "backend" in report.timings

    graph = report.optimized
    number = graph.numbering()
    node_of = {k: node for node in list(graph.inputs) + list(graph.nodes) for k in [number[node.id]]}
    comments = re.findall(r"# %(\d+) = (\w+)\(([^)]*)\)", report.source)
    assert len(comments) > 5
    for k, prim, args in comments:
        node = node_of[int(k)]
        assert node.prim.name == prim, (k, prim)
        # the operands, then the parameters (`power_scalar(%3, exponent=2)`)
        assert [f"%{number[i.id]}" for i in node.inputs] == [a for a in args.split(", ") if a.startswith("%")]
    plan_roots = re.findall(r"%(\d+):(\w+)", report.split("== fusion plan ==")[1].split("==")[0])
    assert plan_roots and all(node_of[int(k)].prim.name == prim for k, prim in plan_roots)
    optimized_text = report.split("== after pass")[-1].split("== fusion plan ==")[0]
    for line in optimized_text.strip().splitlines()[2:-1]:  # the optimized graph's nodes
        k, prim = re.match(r"\s+%(\d+):\S+ = (\w+)", line).groups()
        assert node_of[int(k)].prim.name == prim


@pytest.mark.usefixtures("compile_off")
def test_a_split_forms_nest_numbers_map_to_the_graphs(monkeypatch):
    """A nest kernel numbers nodes its own way (identical nests share it); explain gives, per call,
    the graph's number of each: the operation and operands of each `# %k = prim(...)` line are
    those of the graph's node it maps to."""
    monkeypatch.setattr(jitad.backend.cache, "SPLIT_NODES", 5)

    def f(x, y):
        a = np.sin(x) * y
        return np.sum(np.tanh(a @ y.T) + 1.0) + np.sum(a * a)
    x, y = np.ones((3, 4)), np.full((3, 4), 0.5)
    report = jitad.explain(jitad.value_and_grad(f), x, y, print_report=False)
    assert len(report.nests) >= 3 and len(report.nest_numbers) >= len(report.nests)
    graph = report.optimized
    number = graph.numbering()
    node_of = {number[node.id]: node for node in list(graph.inputs) + list(graph.nodes)}
    checked = 0
    for index, numbers in report.nest_numbers:
        for k, prim, args in re.findall(r"# %(\d+) = (\w+)\(([^)]*)\)", report.nests[index]):
            node = node_of[numbers[int(k)]]
            assert node.prim.name == prim, (index, k, prim)
            operands = [numbers[int(a[1:])] for a in args.split(", ") if a.startswith("%")]
            assert [number[i.id] for i in node.inputs] == operands, (index, k, prim)
            checked += 1
    assert checked > 8
    assert "its numbers at the driver's call 0 of N0: %0 = %" in report


@pytest.mark.usefixtures("compile_off")
def test_explain_says_which_loop_nests_run_on_threads_and_why(monkeypatch):
    """Target "auto" (the default) compiles a kernel whose graph holds an array of at least
    backend.AUTO_ELEMENTS elements, or a costly function (exp, ...) of backend.AUTO_HEAVY_ELEMENTS, in
    the parallel form (loop nests of >= codegen.PARALLEL_ELEMENTS on threads), unless
    jitad.config.threads is 1; a split-form kernel shows the prange nests."""
    from jitad.backend import codegen
    if jitad.config.threads < 2:
        pytest.skip("one thread: target 'auto' is serial")
    monkeypatch.setattr(jitad.backend, "AUTO_ELEMENTS", 4 * codegen.PARALLEL_ELEMENTS)  # less tracing
    small, big = np.linspace(0.1, 1.0, 6), np.linspace(0.1, 1.0, codegen.PARALLEL_ELEMENTS)
    huge = np.linspace(0.1, 1.0, jitad.backend.AUTO_ELEMENTS)

    def target_line(fun, x, **options):
        report = jitad.explain(jitad.value_and_grad(fun, **options), x, print_report=False)
        return report, report.split("== target ==\n")[1].splitlines()[0]

    for x in (small, big):
        report, line = target_line(lambda x: np.sum(np.tanh(x) ** 2), x)
        assert line.startswith("  auto: serial, the same kernel as target 'cpu': no array computed"), line
        assert "prange" not in report.source
    report, line = target_line(lambda x: np.sum(np.tanh(x) ** 2), huge)
    assert re.match(r"  auto: \d of \d loop nests run on jitad.config.threads = \d+ threads", line), line
    assert "numba.prange(" in report.source
    # below AUTO_ELEMENTS, a costly function (exp) of AUTO_HEAVY_ELEMENTS pays for threads, a polynomial not
    heavy = np.linspace(0.1, 1.0, jitad.backend.AUTO_HEAVY_ELEMENTS)
    monkeypatch.setattr(jitad.backend, "AUTO_ELEMENTS", 4 * jitad.backend.AUTO_HEAVY_ELEMENTS)
    _, line = target_line(lambda x: np.sum(np.exp(-x * x)), heavy)
    assert re.match(r"  auto: \d of \d loop nests run on", line), line
    _, line = target_line(lambda x: np.sum((1.0 - x[1:] * x[:-1]) ** 2), heavy)
    assert line.startswith("  auto: serial, the same kernel as target 'cpu': no array computed"), line
    _, line = target_line(lambda x: np.sum(np.tanh(x) ** 2), big, target="parallel")
    assert re.match(r"  parallel: \d of \d loop nests run on", line), line
    _, line = target_line(lambda x: np.sum(np.tanh(x) ** 2), big, target="cpu")
    assert line == "  cpu: every loop nest serial (target='auto' or 'parallel' run large ones on threads)"
    monkeypatch.setattr(jitad.config, "threads", 1)
    _, line = target_line(lambda x: np.sum(np.sin(x) ** 2), huge)
    assert line.startswith("  auto: serial, since jitad.config.threads = 1")
    monkeypatch.setattr(jitad.config, "threads", 2)

    def long(x):  # over cache.SPLIT_NODES nodes: the split form, one kernel per distinct nest
        for k in range(60):
            x = np.tanh(x * 0.5 + k)
        return np.sum(x * x)
    report, line = target_line(long, big, target="parallel")
    assert report.nests and all("numba.prange(" in nest for nest in report.nests), report.nests
    assert re.match(r"  parallel: \d+ of \d+ loop nests run on", line), line


@pytest.mark.usefixtures("compile_off")
def test_a_long_rolled_loop_stays_serial(monkeypatch):
    """A loop's stored states are large and its arithmetic per step small: target "auto" counts only
    the arrays computed elementwise or reduced (backend.largest_computed), so a long rolled loop
    compiles the serial kernels of a short one (the parallel form would only thread the copies)."""
    from jitad.backend import codegen
    if jitad.config.threads < 2:
        pytest.skip("one thread: target 'auto' is serial")
    monkeypatch.setattr(jitad.backend, "AUTO_ELEMENTS", codegen.PARALLEL_ELEMENTS)  # less tracing
    steps = 2 * jitad.backend.AUTO_ELEMENTS // 64

    def rnn(w, xs):  # as jitad rolls a Python loop (compile="off" answers on the unrolled trace)
        h, _ = jitad.scan(lambda h, x: (np.tanh(h * w + x), None), np.zeros(64), xs)
        return np.sum(h)
    xs = np.linspace(-1.0, 1.0, steps * 64).reshape(steps, 64)

    def explained(fun, *args):
        report = jitad.explain(jitad.value_and_grad(fun), *args, print_report=False)
        return report, report.split("== target ==\n")[1].splitlines()[0]
    report, line = explained(rnn, 0.5, xs)
    assert "scan(" in report and "prange" not in report.source
    assert line.startswith("  auto: serial, the same kernel as target 'cpu': no array computed"), line
    big = np.linspace(0.1, 1.0, jitad.backend.AUTO_ELEMENTS)
    _, line = explained(lambda x: np.sum(x * x), big)  # arithmetic on AUTO_ELEMENTS: threads
    assert re.match(r"  auto: \d of \d loop nests run on", line), line


def test_vectorized_loops_reads_the_llvm_ir_per_loop_nest():
    """A recurrence does not vectorise, an elementwise loop does; the nest is found by the source
    line of the loop LLVM transformed."""
    from jitad.tools.explain import vectorized_loops
    source = "\n".join([
        "import numpy as np", "import numba", "", "",
        "@numba.njit(error_model='numpy', nogil=True)",
        "def kernel(x0):",
        "    # loop nest over (x0.shape[0]): a recurrence",
        "    rec = np.empty(x0.shape[0])",
        "    acc = 0.0",
        "    for i0 in range(x0.shape[0]):",
        "        acc = acc * 0.5 + x0[i0]",
        "        rec[i0] = acc",
        "    # loop nest over (x0.shape[0]): elementwise",
        "    out = np.empty(x0.shape[0])",
        "    for i0 in range(x0.shape[0]):",
        "        out[i0] = x0[i0] * 2.0 + 1.0",
        "    # loop nest over (): a scalar",
        "    s = rec[0] + out[0]",
        "    return rec, out, s", ""])
    namespace = {}
    exec(compile(source, "<kernel>", "exec"), namespace)  # noqa: S102
    namespace["kernel"](np.ones(10))
    assert vectorized_loops(source, namespace["kernel"]) == [
        ("# loop nest over (x0.shape[0]): a recurrence", False),
        ("# loop nest over (x0.shape[0]): elementwise", True),
        ("# loop nest over (): a scalar", None)]
    x = np.linspace(0.1, 1.0, 6)
    report = jitad.explain(jitad.value_and_grad(small_loss), x, x, print_report=False, vectorization=True)
    assert any(vectorized is True for _, _, vectorized in report.vectorized), report.vectorized
    assert "== vectorisation (LLVM IR, per loop nest) ==" in report
