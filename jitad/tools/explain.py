"""explain: show what jitad did with a function -- trace, transform, passes, fusion, source.

`explain` reads the record of the stages a transform ran (`jitad.staging.Stage`): the traced
graph, the transformed graph, each pass's output, the fusion plan, the generated source and
the tier that answers calls. It runs the transform once on the arguments when it has not run
at their signature. Nodes are numbered one way throughout: in every graph shown, `%k` is the
graph's node k (`Graph.numbering`: its inputs first, then its other nodes in topological order),
which for the compiled graph is also the number in the fusion plan and in the kernel's
`# %k = prim(...)` comments.
"""
import numpy as np

from jitad import backend, profiling
from jitad.api import jit, value_and_grad
from jitad.backend.fusion import LibraryCall
from jitad.staging import Signature, Transform, trace_user

# how each transform reads in the report's header
_MODES = {
    "value_and_grad": "one adjoint sweep for the scalar output",
    "grad": "one adjoint sweep for the scalar output",
    "jit": "the forward function alone",
    "hessian": "forward-mode sweeps over the reverse-mode gradient",
}


def graph_text(graph):
    """The graph as text, its nodes numbered by `Graph.numbering`."""
    return graph.text(graph.numbering())


def plan_text(plan, graph):
    """The fusion plan's steps, nodes numbered as in `graph` (the graph it was made for)."""
    number = graph.numbering()
    lines = []
    for k, step in enumerate(plan.steps):
        if isinstance(step, LibraryCall):
            node = step.node
            lines.append(f"  step {k}: library call {node.prim.name} -> %{number[node.id]} {list(node.shape)}")
        else:
            roots = ", ".join(f"%{number[r.id]}:{r.prim.name}" for r in step.roots)
            lines.append(f"  step {k}: loop nest over {list(step.shape)} computing {roots}")
    stored = sorted(number[i] for i in plan.materialized if i in number)
    lines.append(f"  stored values: {', '.join('%' + str(i) for i in stored)}")
    return "\n".join(lines)


class Explanation(str):
    """What `explain` found; `str()` of it is the report's text (it is that string).

    Fields: `transform` (e.g. "value_and_grad", "jacobian", "jit"), `mode` ("reverse",
    "mixed", ...), `function` (the user function's name), `stage` (the `staging.Stage` read),
    `graph` (traced), `draws` (text of the random draws made at each call), `transformed`,
    `passes` ([(name, graph)]), `optimized`, `plan` (the fusion plan), `jacobian_plan` (a
    `JacobianPlan` or None), `source` (the kernel, or the split form's driver), `nests` (the
    split form's nest kernels), `nest_numbers` (per driver call of a nest kernel: (its index,
    {the nest's node number: the graph's number})), `tier` (what answers calls), `timings` ({phase: seconds} of
    building the stage), `profile` (the compile profile's text with `timings=True`, else None),
    `vectorized` ([(kernel, nest comment, True/False/None)] with `vectorization=True`, else None).
    """

    def __new__(cls, text, **fields):
        report = super().__new__(cls, text)
        report.__dict__.update(fields)
        return report


def _explained(fun, args, transform, argnums):
    """(a jitad-transformed function, its transform's name) for what explain was given."""
    if getattr(fun, "jitad_transform", None) is not None:
        return fun, getattr(fun, "jitad_name", fun.jitad_transform.name)
    if transform is None:
        graph, _, out_tree = trace_user(fun, Signature(args, ()), {})
        out = graph.outputs[0] if graph.outputs else None
        scalar = out_tree.num_leaves == 1 and out.shape == () and out.dtype.kind == "f"
        transform = "value_and_grad" if scalar else "jit"
    if transform == "value_and_grad":
        return value_and_grad(fun, argnums), transform
    if transform == "jit":
        return jit(fun), transform
    raise ValueError(f"explain: transform must be 'value_and_grad' or 'jit' (or give explain a jitad "
                     f"transform such as jitad.grad(f) or jitad.jacobian(f)), got {transform!r}")


def _profile(stage, transform, args):
    """The compile profile of building the same transform afresh at `args`, compiled in this
    process (compile="eager"; a kernel already in the disk cache loads instead)."""
    import numpy as np

    fresh = Transform(transform.fun, transform.build, transform.argnums, transform.name, transform.mode)
    extra = [np.zeros(shape, dtype) for shape, dtype in stage.extra_avals]
    saved = backend.config.compile
    backend.config.compile = "eager"
    try:
        with profiling.profile(numba=backend.config.backend == "numba") as prof:
            fresh.run(args, {}, extra=extra)
    finally:
        backend.config.compile = saved
    return prof.report(passes=3)


def _generated(stage):
    """(fusion plan, source, nests) of the stage's kernel; generated here for display, as the
    backend would (`cache.compile_graph`, in the form of the stage's target), when it made none
    (compile="off", backend="reference")."""
    if stage.source is not None:
        return stage.plan, stage.source, stage.nests, stage.nest_numbers
    from jitad.backend import codegen  # noqa: PLC0415 -- only for a graph the backend did not generate
    from jitad.backend.cache import SPLIT_NODES  # noqa: PLC0415
    parallel = getattr(stage, "target", "cpu") != "cuda" and backend.resolved(stage.target, stage.optimized) == "parallel"
    try:
        if len(stage.optimized.nodes) > SPLIT_NODES:
            split = codegen.generate_split(stage.optimized, parallel=parallel)
            return split.plan, split.source, tuple(split.nests), tuple(split.nest_numbers)
        source, _, _, plan = codegen.generate(stage.optimized, parallel=parallel)
    except Exception as exc:  # noqa: BLE001 -- e.g. a callback node, which only the reference executor runs
        return None, f"# no kernel: {type(exc).__name__}: {exc}", (), ()
    return plan, source, (), ()


def _target_text(stage, plan, sources):
    """Which form the kernels were compiled in and why (backend.Config.target: "auto" chooses)."""
    from jitad.backend import codegen  # noqa: PLC0415
    target = getattr(stage, "target", "cpu")
    if target == "cuda":
        return "  cuda: numba-cuda kernels, one per loop nest"
    threads = backend.config.threads
    on_threads = sum(source.count("numba.prange(") for source in sources)
    sizes = [int(np.prod(step.shape)) for step in (plan.steps if plan is not None else ())
             if not isinstance(step, LibraryCall)]
    threshold = f"{codegen.PARALLEL_ELEMENTS:,}"
    if on_threads:
        return (f"  {target}: {on_threads} of {len(sizes)} loop nests run on jitad.config.threads = {threads} threads "
                f"(numba.prange; nests of >= {threshold} elements), the others serially")
    if target == "cpu":
        return "  cpu: every loop nest serial (target='auto' or 'parallel' run large ones on threads)"
    largest = max(sizes, default=0)
    if threads == 1:
        return f"  {target}: serial, since jitad.config.threads = 1 (the largest loop nest has {largest:,} elements)"
    if target == "auto" and backend.resolved(target, stage.optimized) == "cpu":
        return (f"  auto: serial, the same kernel as target 'cpu': no array computed (elementwise or reduced) reaches "
                f"backend.AUTO_ELEMENTS = "
                f"{backend.AUTO_ELEMENTS:,} elements, nor a costly function (exp, sin, ...) backend.AUTO_HEAVY_ELEMENTS = "
                f"{backend.AUTO_HEAVY_ELEMENTS:,} (the largest loop nest has {largest:,})")
    return (f"  {target}: serial: no loop nest reaches {threshold} elements (the largest has {largest:,}), "
            "below which a thread launch costs more than it saves")


def vectorized_loops(source, dispatcher):
    """Per loop nest of a compiled kernel (in source order): (its `# loop nest` comment, whether
    LLVM vectorised a loop of it: True, False, or None when it has no loop or runs as parfors);
    first, if any, the libm functions whose vector calls are expanded to scalar ones.

    Read from the LLVM IR of the kernel compiled once more without the disk cache (a kernel loaded
    from Numba's cache keeps no IR): a loop the vectoriser transformed keeps a scalar remainder
    loop marked `llvm.loop.isvectorized`, whose blocks Numba names after the bytecode offset
    (`B626...`) of the kernel's Python source line, and so of its nest."""
    import dis  # noqa: PLC0415
    import re  # noqa: PLC0415

    import numba  # noqa: PLC0415
    signature = dispatcher.signatures[0]
    options = {k: v for k, v in dispatcher.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(dispatcher.py_func)
    fresh.compile(signature)
    llvm = fresh.inspect_llvm(signature)
    body = llvm.split("\ndefine ")[1] if "\ndefine " in llvm else ""
    marked = {m for m, text in re.findall(r"^(!\d+) = (?:distinct )?!\{(.*)\}$", llvm, re.M)
              if '"llvm.loop.isvectorized"' in text}
    vector_loops = {m for m, text in re.findall(r"^(!\d+) = (?:distinct )?!\{(.*)\}$", llvm, re.M)
                    if set(re.findall(r"!\d+", text)) & marked}
    starts = sorted(dis.findlinestarts(dispatcher.py_func.__code__))
    lines = source.splitlines()
    nests = [k + 1 for k, line in enumerate(lines) if line.strip().startswith("# loop nest")]
    found = {n: False for n in nests}
    for label, loop in re.findall(r"^(B\d+)[\w.]*:(?:(?!^[\w.]+:).)*?!llvm\.loop (!\d+)", body, re.M | re.S):
        if loop not in vector_loops:
            continue
        offset = int(label[1:])
        line = max((ln for off, ln in starts if off <= offset and ln is not None), default=0)
        owner = max((n for n in nests if n <= line), default=None)
        if owner is not None:
            found[owner] = True
    out = []
    # LLVM vectorises a loop calling llvm.cos.f64 (np.cos) too, but without SVML the backend expands
    # llvm.cos.v4f64 into scalar libm calls again: said in a last entry
    scalarised = sorted(set(re.findall(r"@llvm\.(sin|cos|exp|exp2|log|log2|log10|pow)\.v\d+f(?:32|64)", llvm)))
    if scalarised:
        out.append(("(libm calls in vectorised loops, made one element at a time: no SVML)", ", ".join(scalarised)))
    for k, n in enumerate(nests):
        end = nests[k + 1] if k + 1 < len(nests) else len(lines)
        text = "\n".join(lines[n:end])
        loops = "for " in text
        out.append((lines[n - 1].strip(), None if not loops or "prange" in text else found[n]))
    return out


def _vectorization(stage):
    """`vectorized_loops` of every kernel of a compiled stage, as report lines and a list."""
    from jitad.backend.cache import load_kernel  # noqa: PLC0415
    executor = getattr(stage.backend, "serving", None)
    if executor is None or getattr(executor, "numba_dispatcher", None) is None:
        return ["  (no compiled kernel: nothing to read)"], []
    kernels = [(f"N{k}", source, load_kernel(source)) for k, source in enumerate(stage.nests)] or \
        [("kernel", executor.source, executor.numba_dispatcher)]
    lines, found = [], []
    for name, source, dispatcher in kernels:
        if not dispatcher.signatures:
            lines.append(f"  {name}: not called yet")
            continue
        verdict = {True: "vectorised", False: "NOT vectorised", None: "no loop, or on threads (parfors: not read)"}
        for comment, vectorized in vectorized_loops(source, dispatcher):
            found.append((name, comment, vectorized))
            lines.append(f"  {name} {comment}: {verdict.get(vectorized, vectorized)}")
    return lines, found


def _loop_memory(graph):
    """What the reverse pass keeps of the traced graph's straight-line part (jitad.transforms.ad) and
    of each of its scans (jitad.primitives.control)."""
    from jitad.primitives import control  # noqa: PLC0415
    from jitad.transforms import ad  # noqa: PLC0415
    number, lines = graph.numbering(), []
    straight = ad.describe_memory(graph)
    if straight is not None:
        lines.append(f"  {straight}")
    for node in graph.nodes:
        if node.prim is control.scan_p:
            body, length = node.params["body"], node.params["length"]
            schedule = body.checkpointed(length, node.params["reverse"])
            lines.append(f"  %{number[node.id]} scan of {length} steps: "
                         f"{control.describe(schedule, length, control.carry_bytes(body), control.product_bytes(body), len(body.residuals()))}")
    return lines


def explain(fun, *args, transform=None, argnums=0, print_report=True, timings=False, vectorization=False):
    """Report how jitad runs `fun` at `args`: print it and return an `Explanation`.

    `fun` is a jitad transform (`jitad.value_and_grad(f)`, `jitad.grad(f)`, `jitad.jit(f)`,
    `jitad.jacobian(f)`, `jitad.hessian(f)`, ...) or a plain function, explained under
    `transform`: "value_and_grad" (with `argnums`; the default when `fun` returns a float
    scalar) or "jit". The report reads what the transform ran at this signature (running it
    once if it has not): the traced IR, the transform and its mode (for a Jacobian, the plan:
    the chosen mode and each candidate's estimated cost), each pass by name with the graph
    after it, the fusion plan (loop nests and library calls), the generated kernel source and
    what answers calls now. With `timings=True` it also builds and compiles the transform
    afresh in this process (compile="eager", the usual disk cache: a kernel already there
    loads instead of compiling) and appends the per-phase compile profile (`jitad.profiling`).
    The "target" section says whether loop nests run on threads and why (target "auto" decides
    by the nests' sizes). With `vectorization=True` it compiles the kernels once more to read
    their LLVM IR and says, per loop nest, whether LLVM vectorised it (`vectorized_loops`).

    >>> import numpy as np, jitad
    >>> report = jitad.explain(jitad.grad(lambda x: np.sum(np.sin(x))), np.ones(3), print_report=False)
    >>> report.transform, report.mode
    ('grad', 'reverse')
    """
    target, name = _explained(fun, args, transform, argnums)
    staged = target.jitad_transform
    per_memory = getattr(target, "_jitad_transform_for", None)  # grad, value_and_grad: one transform per policy
    if per_memory is not None and any(t is staged for t in per_memory.made.values()):  # not copied by wraps
        staged = per_memory()  # the policy a call would use now
    stage = staged.stage_for(args)
    if stage is None:
        target(*args)
        stage = staged.latest
    stage.complete()
    meta = stage.meta
    jacobian_plan = meta[0] if isinstance(meta, tuple) and meta and hasattr(meta[0], "num_sweeps") else None
    if jacobian_plan is not None and all(c is None for c in jacobian_plan.costs.values()) and hasattr(target, "plan"):
        jacobian_plan = target.plan(*args)  # a forced mode ran without estimates: show them
    mode = stage.mode
    graph = stage.graph
    sections = [f"== traced IR of {stage.function} ==", graph_text(graph)]
    number = graph.numbering()
    draws = [f"%{number[graph.inputs[stage.n_traced + k].id]} = {d.source.label}.{d.method}(...)"
             for k, d in enumerate(d for d in getattr(graph, "draws", ()) if hasattr(d, "shape"))]
    if draws:  # jitad.frontend.rng: inputs after the arguments' that each call draws
        sections.append("random draws made at each call: " + ", ".join(draws))
    why = _MODES.get(name)
    sections.append(f"== {name}, {mode}" + (f" ({why})" if why else "") + " ==")
    loops = _loop_memory(graph) if getattr(staged, "memory", None) is not None else []
    if loops:  # reverse mode through loops
        sections += [f"== memory: {staged.memory!r} =="] + loops
    if jacobian_plan is not None:
        sections += ["== Jacobian plan ==", repr(jacobian_plan), "== sweep graph =="]
    sections.append(graph_text(stage.transformed))
    for pass_name, g in stage.passes:
        sections += [f"== after pass {pass_name} ==", graph_text(g)]
    plan, source, nests, nest_numbers = _generated(stage)
    sections += ["== fusion plan ==", plan_text(plan, stage.optimized) if plan is not None else "  (none)",
                 "== generated source ==", source.rstrip()]
    for k, nest in enumerate(nests):
        sections += [f"== nest kernel N{k} (its own node numbers) ==", nest.rstrip()]
        for call, (index, numbers) in enumerate(nest_numbers):
            if index == k:  # identical nests share the kernel: each call's numbers
                sections.append(f"  its numbers at the driver's call {call} of N{k}: "
                                + ", ".join(f"%{mine} = %{theirs}" for mine, theirs in sorted(numbers.items())))
    sections += ["== target ==", _target_text(stage, plan, [source, *nests])]
    vectorized = None
    if vectorization:
        text, vectorized = _vectorization(stage)
        sections += ["== vectorisation (LLVM IR, per loop nest) =="] + text
    sections += ["== calls answered by ==", f"  {stage.tier}",
                 "== stage timings (this process) ==",
                 "  " + ", ".join(f"{phase} {seconds * 1e3:.1f} ms" for phase, seconds in stage.timings.items())]
    profile = None
    if timings:
        profile = _profile(stage, staged, args)
        sections += ["== compile profile ==", profile]
    report = Explanation(
        "\n".join(sections), transform=name, mode=mode, function=stage.function, stage=stage, graph=graph,
        draws=draws, transformed=stage.transformed, passes=list(stage.passes), optimized=stage.optimized,
        plan=plan, jacobian_plan=jacobian_plan, source=source, nests=nests, nest_numbers=nest_numbers, tier=stage.tier,
        timings=dict(stage.timings), profile=profile, vectorized=vectorized)
    if print_report:
        print(report)
    return report
