"""A primitive declares everything about itself (issue 9, item 1).

Outside jitad/primitives/ no code dispatches on a primitive's name (`prim.name == "matmul"`,
`node.prim.name in (...)`, `TABLE[prim.name]`): it reads a field of the declaration instead.
No library code assigns a primitive's field after its declaration. Every registered
primitive gives the fields its kind needs. Each scan is shown able to fail.
"""
import ast
import pathlib
import sys

import numpy as np
import pytest

import jitad
from jitad.ir import Kind, const_p, input_p
from jitad.primitives import REGISTRY
from jitad.primitives.core import REQUIRED, Primitive

ROOT = pathlib.Path(jitad.__file__).parent

# Files another change owns, with the name dispatches still in them: the scheduler's cost
# estimate (`_work`, moving from jacobians.py to schedule.py), to be replaced by
# `node.prim.cost(node)`, which gives today's values. The count may only go down.
PENDING = {
    "jacobians.py": 2,
    "schedule.py": 2,
}


def _is_prim_name(expr, aliases):
    """Whether `expr` reads a primitive's name: `<x>.prim.name`, `prim.name`, `<x>_p.name`, or a
    local variable assigned from one of those."""
    if isinstance(expr, ast.Name):
        return expr.id in aliases
    if not (isinstance(expr, ast.Attribute) and expr.attr == "name"):
        return False
    owner = expr.value
    if isinstance(owner, ast.Attribute):
        return owner.attr == "prim"
    return isinstance(owner, ast.Name) and (owner.id == "prim" or owner.id.endswith("_p"))


def name_dispatches(source):
    """Line numbers where `source` branches or looks up a table on a primitive's name."""
    tree = ast.parse(source)
    aliases = {target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and _is_prim_name(node.value, ())
               for target in node.targets if isinstance(target, ast.Name)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            if any(_is_prim_name(e, aliases) for e in [node.left, *node.comparators]):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _is_prim_name(node.slice, aliases):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if node.args and _is_prim_name(node.args[0], aliases):
                lines.append(node.lineno)
    return sorted(set(lines))


def field_assignments(source):
    """Line numbers where `source` assigns an attribute of a primitive (`sin_p.vjp_rule = ...`,
    `prim.lower = ...`) instead of giving it at construction."""
    fields = set(Primitive.__slots__)
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr in fields and isinstance(target.value, ast.Name) \
                    and (target.value.id == "prim" or target.value.id.endswith("_p")):
                lines.append(node.lineno)
    return lines


def _library_files():
    return [p for p in sorted(ROOT.rglob("*.py")) if "primitives" not in p.relative_to(ROOT).parts]


def test_no_name_dispatch_outside_the_primitives():
    found = {}
    for path in _library_files():
        lines = name_dispatches(path.read_text())
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    pending = {f: n for f, n in PENDING.items() if f in found}
    for f, n in pending.items():
        assert len(found.pop(f)) <= n, f"jitad/{f} has more name dispatches than before: use a primitive's field"
    assert not found, f"dispatch on a primitive's name outside jitad/primitives (use a field of the declaration): {found}"


def test_the_name_dispatch_scan_can_fail():
    assert name_dispatches('if node.prim.name == "matmul":\n    pass\n') == [1]
    assert name_dispatches('x = prim.name in ("a", "b")\n') == [1]
    assert name_dispatches('name = node.prim.name\nif name != "add":\n    pass\n') == [2]
    assert name_dispatches('rule = RULES.get(prim.name)\n') == [1]
    assert name_dispatches('rule = RULES[node.prim.name]\n') == [1]
    assert name_dispatches('ok = sin_p.name == "sin"\n') == [1]
    # naming a primitive in a message or a repr is not a dispatch
    assert name_dispatches('raise E(f"no rule for {node.prim.name}")\nlabel = node.prim.name\n') == []
    assert name_dispatches('if self.name not in CONTINUOUS:\n    pass\n') == []  # not a primitive


def test_no_field_is_set_after_construction():
    found = {}
    for path in [*_library_files(), *sorted((ROOT / "primitives").glob("*.py"))]:
        lines = field_assignments(path.read_text())
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert not found, f"primitive fields assigned after construction (give them to the factory): {found}"


def test_the_field_scan_can_fail():
    assert field_assignments("argsort_p.lower = lambda node, out, ins, ctx: ''\n") == [1]
    assert field_assignments("prim.index_map = index_map\n") == [1]
    assert field_assignments("self.lower = 3\nnode.name = 'x'\n") == []


def test_nothing_can_be_attached_to_a_primitive():
    prim = REGISTRY["sin"]
    try:
        prim.colour = "blue"
    except AttributeError:
        pass
    else:
        raise AssertionError("a primitive accepted an undeclared field")
    for leaf in (input_p, const_p):
        try:
            leaf.kind = Kind.LIBRARY
        except AttributeError:
            pass
        else:
            raise AssertionError("a leaf primitive's kind was changed")


def test_every_declaration_is_complete_for_its_kind():
    incomplete = {name: prim.missing() for name, prim in REGISTRY.items() if prim.missing()}
    assert not incomplete, f"primitives missing fields their kind needs: {incomplete}"
    assert all(isinstance(prim.kind, Kind) for prim in REGISTRY.values())
    kinds = {prim.kind for prim in REGISTRY.values()}
    assert {Kind.ELEMENTWISE, Kind.REDUCTION, Kind.INDEX, Kind.LIBRARY} <= kinds


def test_the_completeness_check_can_fail():
    lonely = Primitive("lonely_index", impl=lambda x: x, shape_rule=lambda x: (x.shape, x.dtype), kind="index",
                       register=False)
    assert lonely.missing() == ["index_map", "batch", "jvp_rule", "vjp_rule"]
    assert set(REQUIRED) == set(Kind) - {Kind.LEAF}
    lib = Primitive("lonely_call", impl=lambda x: x, shape_rule=lambda x: (x.shape, x.dtype), differentiable=False,
                    register=False)
    assert lib.missing() == ["lower"]
    assert "lonely_index" not in REGISTRY and "lonely_call" not in REGISTRY


def test_the_scheduler_cost_of_each_family():
    """`prim.cost(node)`: element operations, today's estimates (flops for matmul, n^3 for LAPACK)."""
    from jitad.frontend.tracer import trace
    a = np.ones((4, 3))

    def costs(fun, shape):
        graph, _ = trace(lambda x: [fun(x)], [(shape, np.float64)])
        return {n.prim.name: n.prim.cost(n) for n in graph.nodes}
    assert costs(lambda x: np.sum(np.sin(x) @ a.T), (4, 3)) == {"input": 0, "const": 0, "sin": 12,
                                                              "matmul": 4 * 4 * 3, "reduce_sum": 16}
    solve = costs(lambda x: np.linalg.solve(x, x[:, 0]), (3, 3))
    assert solve["lu_factor"] == 9 * 3 and solve["slice"] == 3


# --- rules build IR with primitive builders, never through the NumPy front-end (issue 9, item 2) ---
def _front_end_codes():
    """The code the NumPy front-end runs on a traced value: its modules' functions and the tracer's
    NumPy protocols and the methods that reach them (`@`, `x[...]`, `.astype`, ...: they call into
    numpy_ops). The arithmetic operators (+, -, *, /, comparisons) bind primitives directly."""
    import jitad.frontend.linalg_ops
    import jitad.frontend.numpy_extra
    import jitad.frontend.numpy_ops
    import jitad.frontend.scipy_ops
    from jitad.frontend.tracer import Tracer
    files = {m.__file__ for m in (jitad.frontend.numpy_ops, jitad.frontend.numpy_extra, jitad.frontend.linalg_ops,
                                  jitad.frontend.scipy_ops)}
    return files, {Tracer.__array_function__.__code__, Tracer.__array_ufunc__.__code__}


class _FrontEndCalls:
    """While open: every entry into the NumPy front-end, as 'file:line function -> entry' of the
    nearest caller outside jitad/frontend/ (the rule that called np.* or used `@`)."""

    def __init__(self):
        self.files, self.codes = _front_end_codes()
        self.frontend = str(pathlib.Path(next(iter(self.files))).parent)
        self.seen = []

    def _profile(self, frame, event, arg):
        if event != "call" or not (frame.f_code in self.codes or frame.f_code.co_filename in self.files):
            return
        caller = frame.f_back
        while caller is not None and caller.f_code.co_filename.startswith(self.frontend):
            if caller.f_code in self.codes or caller.f_code.co_filename in self.files:
                return  # inside the front-end already: its entry was recorded
            caller = caller.f_back
        where = "?" if caller is None else \
            f"{pathlib.Path(caller.f_code.co_filename).name}:{caller.f_lineno} {caller.f_code.co_name}"
        called = frame.f_locals.get("func", frame.f_locals.get("ufunc")) if frame.f_code in self.codes else None
        self.seen.append(f"{where} -> {f'np.{called.__name__}' if called is not None else frame.f_code.co_name}")

    def __enter__(self):
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(None)


def _derivative_graphs(graph):
    """The JVP and VJP graphs of `graph` in its float inputs (the AD transform's rules run here)."""
    from jitad.ir import build_graph
    from jitad.transforms import ad
    n, wrt = len(graph.inputs), [i for i, node in enumerate(graph.inputs) if node.dtype.kind == "f"]
    avals = [(node.shape, node.dtype) for node in graph.inputs]
    outs = [(node.shape, node.dtype if node.dtype.kind == "f" else np.dtype(np.float64)) for node in graph.outputs]

    def forward(*xs):
        values, (tangents,) = ad.jvp_values(graph, list(xs[:n]), [list(xs[n:])], wrt)
        return list(values) + list(tangents)

    def reverse(*xs):
        return ad.vjp_values(graph, list(xs[:n]), [list(xs[n:])], wrt)[1][0]
    return (build_graph(forward, avals + [avals[i] for i in wrt])[0],
            build_graph(reverse, avals + outs)[0])


def front_end_calls_of_rules(fun, args, order=2):
    """Calls into the NumPy front-end made by the JVP and VJP rules that differentiating `fun` at
    `args` runs, up to `order` (the derivative graphs differentiated again). Tracing `fun` itself
    goes through the front-end, as user code does: only the transforms are watched."""
    import optree
    from jitad.frontend.tracer import trace
    graph, _ = trace(lambda *xs: optree.tree_leaves(fun(*xs)), [(np.shape(a), np.asarray(a).dtype) for a in args],
                     concrete=list(args))
    graphs, calls = [graph], []
    for _ in range(order):
        with _FrontEndCalls() as watch:
            graphs = [d for g in graphs for d in _derivative_graphs(g)]
        calls += watch.seen
    return calls


def _table_rows():
    """The primitive table's differentiable rows, but for the custom rules' (their rules are user code,
    which legitimately goes through the front-end)."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from primitive_table import TABLE
    return [row for row in TABLE if row.group != "custom" and row.max_order >= 1]


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in _table_rows()])
def test_rules_do_not_reach_the_numpy_front_end(row):
    """The derivative rules each row's primitives run (forward and reverse, and those of the
    derivatives again) bind primitives through jitad.primitives.builders: none calls np.* or `@`
    on a traced value."""
    calls = front_end_calls_of_rules(row.fun, row.args(row.shapes[-1]))
    assert not calls, f"{len(calls)} calls into the NumPy front-end, first ones: {sorted(set(calls))[:12]}"


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in _table_rows()
                                 if len(row.args(row.shapes[-1])) > 1])
def test_rules_with_a_constant_operand_do_not_reach_the_numpy_front_end(row):
    """With one argument differentiated and the others constants, a rule meets NumPy arrays among its
    operands (a constant's value): an operator whose left operand is one would reach the front-end."""
    from jitad.errors import ConcretizationError
    args = row.args(row.shapes[-1])
    for i, arg in enumerate(args):
        if np.asarray(arg).dtype.kind != "f":
            continue
        try:
            calls = front_end_calls_of_rules(lambda x: row.fun(*args[:i], x, *args[i + 1:]), [arg], order=1)
        except ConcretizationError:  # the function cannot take a constant there (ndarray.dot(traced))
            continue
        assert not calls, f"argument {i}: calls into the NumPy front-end: {sorted(set(calls))[:12]}"


def test_the_front_end_watch_can_fail():
    """A rule that calls np.swapaxes or `@` on a traced value is caught; one that binds primitives is not."""
    from jitad.primitives.core import library_call
    from jitad.primitives.structural import transpose

    def make(swap):
        return library_call("leaky_transpose", lambda x: np.swapaxes(x, -1, -2).copy(),
                            lambda x: (x.shape[:-2] + x.shape[-2:][::-1], x.dtype),
                            jvp=lambda primals, tangents, out: swap(tangents[0]),
                            vjp=lambda g, out, x: (swap(g),), lower=None, register=False)
    leaky = make(lambda t: np.swapaxes(t, -1, -2) @ np.eye(2))
    clean = make(lambda t: transpose(t, (1, 0)))
    calls = front_end_calls_of_rules(lambda a: leaky(a) @ a, [np.ones((2, 2))], order=1)
    assert any(c.endswith("-> np.swapaxes") for c in calls) and any(c.endswith("-> matmul") for c in calls), calls
    assert not front_end_calls_of_rules(lambda a: clean(a) * a, [np.ones((2, 2))], order=1)


def _loop_program(w, xs):
    """A scan with a per-step input (and a per-step output of it alone) and a fori_loop, through w."""
    import jitad
    carry, (ys, ones) = jitad.scan(lambda c, x: (np.tanh(c * w + x), (c * x, 2.0 * x)), np.zeros(3), xs)
    carry = jitad.fori_loop(0, 3, lambda i, c: c * w + 0.1, carry)
    return np.sum(carry) + np.sum(ys) + np.sum(ones)


def _while_program(w, xs):
    """A while_loop through w (its reverse pass differentiates once: see primitives/control.py)."""
    import jitad
    carry, _ = jitad.while_loop(lambda s: s[1] < 2, lambda s: (np.sin(s[0]) * w, s[1] + 1), (xs[0], 0))
    return np.sum(carry)


@pytest.mark.parametrize("memory", ["store", "recompute", 200])
def test_loop_bodies_derivatives_do_not_reach_the_numpy_front_end(memory):
    """The bodies of a loop's derivatives (its jvp, reverse sweep, checkpointed segments under a
    memory policy) are built at the IR level (jitad.transforms.loops), as the rules are."""
    from jitad.primitives.control import memory_policy
    w, xs = np.array([0.3, -0.2, 0.5]), np.linspace(-1.0, 1.0, 24).reshape(8, 3)
    with memory_policy(memory):
        calls = front_end_calls_of_rules(_loop_program, [w, xs]) + \
            front_end_calls_of_rules(_while_program, [w, xs], order=1)
    assert not calls, f"calls into the NumPy front-end: {sorted(set(calls))[:12]}"


def test_batched_loop_bodies_do_not_reach_the_numpy_front_end():
    """A scan and a while loop batched in w (transforms.batching, as jacobian's batched tangents run
    them; a per-step output of the unbatched xs alone is broadcast), and their derivatives, are built at
    the IR level."""
    from jitad.frontend.tracer import trace
    from jitad.ir import build_graph
    from jitad.transforms.batching import batch_replay
    w, xs = np.array([0.3, -0.2, 0.5]), np.linspace(-1.0, 1.0, 24).reshape(8, 3)
    avals = [((2,) + w.shape, w.dtype), (xs.shape, xs.dtype)]
    graphs = [trace(lambda a, b: [program(a, b)], [(w.shape, w.dtype), (xs.shape, xs.dtype)], concrete=[w, xs])[0]
              for program in (_loop_program, _while_program)]
    with _FrontEndCalls() as watch:
        for graph in graphs:
            batched, _ = build_graph(lambda a, b: batch_replay(graph, [a, b], [True, False], 2)[0], avals)
            if graph is graphs[0]:
                _derivative_graphs(batched)
    assert not watch.seen, f"calls into the NumPy front-end: {sorted(set(watch.seen))[:12]}"
