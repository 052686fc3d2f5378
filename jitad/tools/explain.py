"""explain: show what jitad does with a function -- trace, passes, fusion, generated source."""
from jitad import api
from jitad.backend.codegen import generate
from jitad.backend.fusion import LibraryCall
from jitad.passes import optimize
from jitad.frontend.tracer import trace


def _plan_text(plan):
    lines = []
    for k, step in enumerate(plan.steps):
        if isinstance(step, LibraryCall):
            node = step.node
            lines.append(f"  step {k}: library call {node.prim.name} -> %{node.id} {list(node.shape)}")
        else:
            roots = ", ".join(f"%{r.id}:{r.prim.name}" for r in step.roots)
            lines.append(f"  step {k}: loop nest over {list(step.shape)} computing {roots}")
    stored = sorted(plan.materialized)
    lines.append(f"  stored values: {', '.join('%' + str(i) for i in stored)}")
    return "\n".join(lines)


def _timings(fun, args, transform, nums):
    """The compile profile of building and compiling the transform of `fun` at `args` now."""
    from jitad import backend, profiling
    if transform == "value_and_grad":
        staged = api.Staged(fun, api._build_value_and_grad(nums, False), nums)
    else:
        staged = api.Staged(fun, api._build_forward)
    saved = backend.config.compile
    backend.config.compile = "eager"
    try:
        with profiling.profile(numba=backend.config.backend == "numba") as prof:
            staged.run(args, {})
    finally:
        backend.config.compile = saved
    return prof.report(passes=3)


def explain(fun, *args, transform=None, argnums=0, print_report=True, timings=False):
    """Print and return a report of how jitad compiles `fun` at `args`.

    `transform` is "value_and_grad" (the default when `fun` returns a scalar) or "jit".
    Given a `jitad.jacobian(...)` function, it shows the plan: the chosen mode and the
    estimated cost of each candidate.
    The report lists the traced IR, each pass by name with the graph after it, the
    AD transform's graph, the fusion plan (loop nests and library calls), and the
    generated kernel source. With `timings=True` it also builds and compiles the transform
    in this process (compile="eager", the usual disk cache: a kernel already there loads
    instead of compiling) and appends the per-phase compile profile (`jitad.profiling`).
    """
    if callable(getattr(fun, "plan", None)) and hasattr(fun, "fun"):
        # a jitad.jacobian / jacfwd / jacrev function: its plan is the chosen mode and why
        report = "== Jacobian plan ==\n" + repr(fun.plan(*args))
        if print_report:
            print(report)
        return report
    nums, _ = api._normalize_argnums(argnums, len(args))
    sig = api._Signature(args, nums if transform != "jit" else ())
    graph, captured, out_tree = api.trace_user(fun, sig, {})
    if transform is None:
        scalar = out_tree.num_leaves == 1 and graph.outputs[0].shape == () and graph.outputs[0].dtype.kind == "f"
        transform = "value_and_grad" if scalar else "jit"
    sections = [f"== traced IR of {getattr(fun, '__name__', fun)!s} ==", repr(graph)]
    draws = [d for d in getattr(graph, "draws", ()) if hasattr(d, "shape")]
    if draws:  # jitad.frontend.rng: inputs after the arguments' that each call draws
        first = len(sig.traced)
        sections.append("random draws made at each call: " + ", ".join(
            f"%{graph.inputs[first + k].id} = {d.source.label}.{d.method}(...)" for k, d in enumerate(draws)))
    if transform == "value_and_grad":
        body, _, _ = api._build_value_and_grad(nums, False)(graph, sig, out_tree)
        mode = "reverse (one adjoint sweep for the scalar output)"
    else:
        body, _, _ = api._build_forward(graph, sig, out_tree)
        mode = "forward evaluation only"
    transformed, _ = trace(body, [(n.shape, n.dtype) for n in graph.inputs])
    sections += [f"== {transform}: mode {mode} ==", repr(transformed)]
    log = []
    final = optimize(transformed, log)
    for name, g in log:
        sections += [f"== after pass {name} ==", repr(g)]
    source, consts, fresh, plan = generate(final)
    sections += ["== fusion plan ==", _plan_text(plan), "== generated source ==", source.rstrip()]
    if timings:
        sections += ["== compile profile ==", _timings(fun, args, transform, nums)]
    report = "\n".join(sections)
    if print_report:
        print(report)
    return report
