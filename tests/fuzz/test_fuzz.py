"""The differential fuzzer as tests.

Default (fast profile, ~1 min): a few hundred random programs checked on the reference
backend against NumPy and finite differences (first and second order, errors where NumPy
raises), a dozen of them compiled in small batches against the reference, plus unit
tests of the generator and the shrinker.

    python -m pytest tests/fuzz --fuzz-long            # the long profile (thousands)
    python -m pytest tests/fuzz --fuzz-count 2000 --fuzz-seed 7
    python -m tests.fuzz.run --programs 10000 --seed 7 --log fuzz.log   # the standalone runner

A failure is printed as a runnable, shrunk repro. Failures matching tests/fuzz/known.py
(known, being fixed) are reported as xfail; anything else fails the test.
"""
import time

import numpy as np
import pytest

from . import checks, gen, known, run, shrink


@pytest.fixture
def fuzz_opts(request):
    long = request.config.getoption("--fuzz-long", default=False)
    count = request.config.getoption("--fuzz-count", default=None)
    seed = request.config.getoption("--fuzz-seed", default=None)
    return {"long": long, "count": count, "seed": seed}


def _outcome(res, what):
    """Fail on unknown failures (with their repros), xfail when all of them are known."""
    lines, known_ids, unknown = [], set(), []
    for fd in res.findings.values():
        if fd.failure.unsupported:
            continue
        k = known.match(fd.failure)
        if k:
            known_ids.add(k)
        else:
            unknown.append(fd)
    for key, n in res.unshrunk.items():
        if key[1] == "UnsupportedOperationError":
            continue
        probe = checks.Failure(key[0], key[2], exc=key[1] or None)
        k = known.match(probe)
        if k:
            known_ids.add(k)
    print(res.summary())
    if res.fuzzer_errors:
        lines.append(f"{res.fuzzer_errors} errors of the fuzzer itself (see the captured log)")
    if unknown or res.fuzzer_errors:
        for fd in unknown:
            lines.append(f"--- {fd.count} program(s), seeds {fd.seeds[:5]}")
            lines.append(fd.failure.report())
        pytest.fail(f"{what}: {len(unknown)} distinct unknown failure(s)\n" + "\n".join(lines), pytrace=False)
    if known_ids:
        pytest.xfail(f"{what}: only known bugs: {', '.join(sorted(known_ids))}")


def test_fuzz_reference(fuzz_opts, capsys):
    """Programs on the reference backend: forward values vs NumPy, derivatives vs finite
    differences (grad, jvp, vjp, jacfwd, jacrev; hessian, hvp, jacobian on every third),
    autograd when installed, and errors where NumPy raises."""
    n = fuzz_opts["count"] or (3000 if fuzz_opts["long"] else 170)
    seed = 0 if fuzz_opts["seed"] is None else fuzz_opts["seed"]
    t = time.time()
    res = run.fuzz(n, seed=seed, compiled=False, shrink_budget=8.0, max_shrinks_per_key=1, log=_log,
                   progress_every=10 ** 9, skip_shrink=lambda f: known.match(f) is not None,
                   profile="long" if fuzz_opts["long"] else "full")
    print(f"reference fuzz: {res.programs} programs, {res.checks} checks in {time.time() - t:.1f} s")
    _outcome(res, "reference fuzz")


def test_fuzz_reference_new_features(fuzz_opts):
    """The features of session 3 (in-place writes, views, np.add.at, out=; numpy_extra's
    functions; scipy.special/stats) on the reference backend, every check; pytree arguments
    of value_and_grad on every third program; the caller's arrays are never modified."""
    n = (fuzz_opts["count"] or 1000) if fuzz_opts["long"] else 50
    seed = 3 if fuzz_opts["seed"] is None else fuzz_opts["seed"] + 3
    t = time.time()
    res = run.fuzz(n, seed=seed, compiled=False, shrink_budget=8.0, max_shrinks_per_key=1, log=_log,
                   progress_every=10 ** 9, skip_shrink=lambda f: known.match(f) is not None, profile="new")
    print(f"reference fuzz (new features): {res.programs} programs, {res.checks} checks in {time.time() - t:.1f} s")
    _outcome(res, "reference fuzz (new features)")


def test_fuzz_compiled(fuzz_opts):
    """Programs compiled in small batches (one Numba compile per batch and transform)
    against the reference backend's results, bisecting when a batch fails."""
    long = fuzz_opts["long"]
    n = 100 if long else 8
    seed = 1 if fuzz_opts["seed"] is None else fuzz_opts["seed"] + 1
    stages = checks.COMPILED_STAGES if long else checks.FAST_STAGES
    t = time.time()
    res = run.fuzz(n, seed=seed, compiled=True, compiled_every=1, batch=4, stages=stages, shrink_budget=8.0,
                   compiled_shrink_budget=30.0, max_shrinks_per_key=1, log=_log, progress_every=10 ** 9,
                   second_order_every=1, error_every=10 ** 9, use_autograd=False,
                   skip_shrink=lambda f: known.match(f) is not None, profile="long" if long else "full")
    print(f"compiled fuzz: {res.programs} programs, {res.checks} checks ({res.compiled_checks} compiled) "
          f"in {time.time() - t:.1f} s")
    _outcome(res, "compiled fuzz")


def test_fuzz_compiled_structural(fuzz_opts):
    """Index-map programs only (slices, reshapes, transposes, diag, flips, pads, ...: what the
    code generator's index arithmetic is made of), compiled forward in batches of 8: cheap
    kernels, so many more programs per second of compiling."""
    long = fuzz_opts["long"]
    n = 400 if long else 16
    seed = 2 if fuzz_opts["seed"] is None else fuzz_opts["seed"] + 2
    t = time.time()
    res = run.fuzz(n, seed=seed, compiled=True, compiled_every=1, batch=8, stages=("jit",), shrink_budget=8.0,
                   compiled_shrink_budget=30.0, max_shrinks_per_key=1, log=_log, progress_every=10 ** 9,
                   second_order_every=10 ** 9, use_autograd=False, profile="structural",
                   skip_shrink=lambda f: known.match(f) is not None)
    print(f"compiled structural fuzz: {res.programs} programs, {res.checks} checks ({res.compiled_checks} compiled) "
          f"in {time.time() - t:.1f} s")
    _outcome(res, "compiled structural fuzz")


def _log(msg):
    print(msg)


# --- the machinery itself ----------------------------------------------------------------------
def test_generated_programs_are_valid_numpy():
    """The printed source is the program: executing it gives what the op-by-op evaluation gave."""
    for s in range(40):
        p = gen.generate(s)
        ns = {"np": np}
        exec(p.repro(), ns)
        out = ns["f"](*ns["args"])
        ref = gen.run_numpy(p)
        for a, b in zip(out if isinstance(out, tuple) else (out,), ref if isinstance(ref, tuple) else (ref,)):
            np.testing.assert_array_equal(a, b)
        gen.validate(p)


def test_a_write_into_an_operand_is_checked_like_a_result():
    """An in-place op that writes a huge value into its operand (np.exp of an intermediate near 71,
    then np.sin of it) is rejected as its result would be: finite differences of sin(1e31) are noise
    (long seed 515151, program 515151000007, reported AD ~1e31 against FD ~1e4: a false positive)."""
    x = np.full((3, 2, 3), 0.5)
    ops = [gen.Op("v8", "{0}[2, 1, 2] = np.exp(np.ravel({1})[5:][:1]).reshape(())\n{out} = np.sin({0})",
                  ("x0", "x1"), "inplace:arg", block=True)]
    big = gen.Program(["x0", "x1"], {"x0": x, "x1": np.full(6, 71.7)}, ops, ["v8"], seed=1)
    with pytest.raises(gen.Reject, match="too large a write"):
        gen.validate(big)
    gen.validate(big.copy(values={"x0": x, "x1": np.full(6, 0.7)}))


def test_error_programs_raise_in_numpy():
    for s in range(20):
        p = gen.generate(s, error=True)
        assert p.expect_error and gen.numpy_raises(p) is not None


def test_generator_covers_the_surface():
    kinds = set()
    for s in range(400):
        kinds.update(k.split("/")[0] for k in gen.generate(s).kinds())
    families = {k.split(":")[0] for k in kinds}
    assert {"unary", "binary", "reduce", "index", "struct", "matmul", "linalg", "loop"} <= families
    for k in ["index:mixed", "index:mask_full", "index:adv", "struct:diag1d", "struct:diagonal", "struct:pad",
              "struct:concatenate", "struct:stack", "struct:cumsum", "struct:diff", "matmul:einsum", "linalg:solve",
              "linalg:cholesky", "linalg:det", "reduce:max", "reduce:std"]:
        assert k in kinds, k


def test_generator_covers_the_new_features():
    """In-place writes (copies, augmented, into arguments, through views, loops, np.add.at, out=,
    aliases), numpy_extra's functions and scipy.special/stats all appear, and the programs are
    valid NumPy that leave their inputs alone."""
    kinds = set()
    for s in range(400):
        p = gen.generate(s, profile="new")
        kinds.update(k.split("/")[0] for k in p.kinds())
        before = {n: gen._copy(v) for n, v in p.values.items()}
        gen.run_numpy(p)
        for n, v in p.values.items():
            np.testing.assert_array_equal(v, before[n])
    for k in ["inplace:copy", "inplace:aug", "inplace:arg", "inplace:view", "inplace:loop", "inplace:add_at",
              "inplace:out", "inplace:alias", "extra:linspace", "extra:gradient", "extra:interp", "extra:quantile",
              "extra:cov", "extra:convolve", "extra:einsum", "extra:einsum3", "extra:r_", "extra:cumprod",
              "extra:trapezoid", "extra:select", "special:logsumexp", "special:softmax", "special:log_softmax"]:
        assert k in kinds, k
    assert any(k.startswith("special:stats.") for k in kinds)
    assert any(k.startswith("extra:nan") for k in kinds)
    # issue 11's functions and the other covered ones (gen.b_recent)
    recent = {k for k in kinds if k.startswith("recent:")}
    for k in ["recent:special.betaincinv", "recent:special.zeta", "recent:linalg.lu", "recent:linalg.logm",
              "recent:ufunc_where", "recent:stats.multinomial.logpmf", "recent:integrate.simpson"]:
        assert k in recent, k
    assert len({k.split(".")[1] for k in recent if k.startswith("recent:stats.")}) >= 15


def test_checks_catch_a_modified_argument(monkeypatch):
    """A jitad that wrote into the caller's array would be reported (inputs.unmodified), and an
    in-place program is checked against NumPy run on copies of the inputs."""
    x = np.array([0.3, -0.7, 1.1])
    p = gen.Program(["x0"], {"x0": x}, [gen.Op("v0", "{0}[1] = 2.0 * {0}[0]\n{out} = np.sin({0})", ("x0",),
                                               "inplace:arg", block=True)], ["v0"], seed=1)
    fails, _ = checks.check_program(p)
    assert not fails, "\n".join(f.report() for f in fails)
    np.testing.assert_array_equal(x, [0.3, -0.7, 1.1])
    real_jit = checks.jitad.jit

    def leaky_jit(f, *a, **k):
        def call(*args):
            args[0][1] = 0.0
            return real_jit(f, *a, **k)(*args)
        return call
    monkeypatch.setattr(checks.jitad, "jit", leaky_jit)
    fails, _ = checks.check_program(p.copy(values={"x0": x.copy()}), only={"forward.jit", "inputs.unmodified"})
    assert "inputs.unmodified" in {f.check for f in fails}


def test_pytree_check_compares_every_structure():
    """The pytree check packs the inputs as dict, list, nested and registered dataclass, and
    reports gradients that differ from the positional ones."""
    p = gen.Program(["x0", "x1"], {"x0": np.array([0.3, -0.7]), "x1": 0.4},
                    [gen.Op("v0", "np.sin({0}) * {1}", ("x0", "x1"), "binary:*")], ["v0"], seed=1)
    _, g = checks.make_functions(p)
    xs = [p.values["x0"], p.values["x1"]]
    value, grads = checks.jitad.value_and_grad(g, argnums=(0, 1))(*xs)
    for seed in (1, 4, 7, 10):   # the four kinds
        q = p.copy(seed=seed)
        checks._pytree_check(q, g, xs, value, grads)
        with pytest.raises(checks.Mismatch):
            checks._pytree_check(q, g, xs, value, (grads[0] * 1.001, grads[1]))


def test_shrinker_finds_the_culprit():
    """Shrinking with a synthetic predicate ('contains np.diag') ends at a one-op program."""
    p = None
    for s in range(2000):
        q = gen.generate(s)
        if any("np.diag(" in op.template for op in q.ops) and len(q.ops) >= 4:
            p = q
            break
    assert p is not None
    small = shrink.shrink(p, lambda c: any("np.diag(" in op.template for op in c.ops), budget=20)
    assert len(small.ops) == 1 and "np.diag(" in small.ops[0].template
    assert shrink.valid(small)


def test_checks_catch_a_wrong_derivative():
    """A program whose jitad result is tampered with is reported (the checks are not vacuous)."""
    p = gen.Program(["x0"], {"x0": np.array([0.3, -0.7, 1.1])}, [gen.Op("v0", "np.sin({0})", ("x0",), "unary:sin")],
                    ["v0"], seed=5)
    fails, ref = checks.check_program(p)
    assert not fails
    J, E = checks.fd_jacobian(checks.Flat(p).f, checks.Flat(p).x, checks.FD_STEP)
    np.testing.assert_allclose(J, np.diag(np.cos(p.values["x0"])), atol=1e-9)
    with pytest.raises(checks.Mismatch):
        checks.compare_fd("tampered", np.diag(np.cos(p.values["x0"])).ravel() * 1.001, J.ravel(), E.ravel())


def test_finite_differences_step_down_past_a_nearby_nan():
    """f(x) is finite but f(x + h) is not (log of an iterated sin of x^-2, which changes sign within
    1e-5 of x; long profile seed 202020003307): the column is taken again with smaller steps, so the
    check compares the derivative instead of reporting AD against NaN. Where f(x) itself is NaN,
    NaN stays (a finite AD derivative there is reported)."""
    def f(x):
        v2 = x ** -2
        v4 = v2
        for _ in range(4):
            v4 = np.sin(v4) * v2 + 0.5 * v4
        with np.errstate(all="ignore"):
            return np.log(v4)
    x = np.array([-1.2508401292936824, -0.27317733105977443])
    J, E = checks.fd_jacobian(f, x, checks.FD_STEP)
    assert np.all(np.isfinite(J)) and abs(J[1, 1] / 12742.21847557 - 1) < 1e-6, J  # mpmath: 12742.2184755698
    with np.errstate(invalid="ignore"):
        J, E = checks.fd_jacobian(lambda x: np.sqrt(x - 1.0), np.array([0.5]), checks.FD_STEP)
    assert np.isnan(J).all()


def test_float32_derivatives_are_not_judged_by_a_float64_program_that_parts_from_them():
    """sin(3e6 x) in float32 rounds its argument by up to 0.125: the float64 program the differences are
    taken of is another function, and jitad's float32 derivative (along NumPy's float32 values) cannot
    match its differences (loops profile seed 303030001322). Such a program's derivative checks are
    skipped (counted); a float32 program that agrees with its float64 one is still checked."""
    x = np.array([0.3, -0.7, 1.1], dtype=np.float32)
    ill = gen.Program(["x0"], {"x0": x}, [gen.Op("v0", "np.sin({0} * 3e6)", ("x0",), "unary:sin")], ["v0"],
                      seed=5, dtype="float32")
    stats = checks.Stats()
    fails, _ = checks.check_program(ill, stats=stats, second_order=False, use_autograd=False)
    assert not fails and stats.skipped == 1, [f.message for f in fails]
    fine = ill.copy(ops=[gen.Op("v0", "np.sin({0} * 3.0)", ("x0",), "unary:sin")])
    stats = checks.Stats()
    fails, _ = checks.check_program(fine, stats=stats, second_order=False, use_autograd=False)
    assert not fails and stats.skipped == 0 and stats.counts.get("grad.fd") == 1


def test_a_second_call_numpy_refuses_is_not_a_failure():
    """The second-call check runs the program again on inputs * 1.01; where NumPy itself refuses those
    values (a mask's count no longer broadcasts: profile 'shapes', seeds 303030000520 and ...622) the
    check has nothing to compare, and is not reported as jitad's failure."""
    x = np.array([0.995, 1.5, 2.0])
    p = gen.Program(["x0"], {"x0": x}, [gen.Op("v0", "np.maximum(np.linspace(0.0, 1.0, 2), {0}[{0} > 1.0])", ("x0",),
                                               "index:mask_full")], ["v0"], seed=7)
    with pytest.raises(gen.Reject):
        gen.run_numpy(p.perturbed())
    fails, _ = checks.check_program(p, only={"forward.jit", "forward.recall"})
    assert not fails, [f.message for f in fails]


KNOWN_BUG_PROGRAMS = [  # the bugs issue 8 listed; the fuzzer's generator writes these programs too
    ("diag-then-reverse", [("v0", "np.diag({0})", ("x0",), "struct:diag1d"), ("v1", "{0}[::-1]", ("v0",),
                                                                                "index:basic")], (4,)),
    ("mixed-advanced-index", [("v0", "{0}[3, 2:, [1, 3]]", ("x0",), "index:mixed")], (5, 4, 5)),
    ("max-of-tanh", [("v0", "np.max(np.tanh({0}))", ("x0",), "reduce:max")], (3, 2)),
]


@pytest.mark.parametrize("name,ops,shape", KNOWN_BUG_PROGRAMS, ids=[k[0] for k in KNOWN_BUG_PROGRAMS])
def test_issue_8_programs(name, ops, shape):
    """The programs of the bugs issue 8 lists, through every reference check and compiled."""
    rng = np.random.default_rng(3)
    x = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 1.3, size=shape)
    p = gen.Program(["x0"], {"x0": x}, [gen.Op(*o) for o in ops], [ops[-1][0]], seed=11)
    gen.validate(p)
    fails, ref = checks.check_program(p)
    fails += checks.check_batch([p], [ref], stages=checks.FAST_STAGES)
    assert not fails, "\n".join(f.report() for f in fails)


@pytest.mark.parametrize("template", ["np.diff({0}, axis=3)", "np.cumsum({0}, axis=3)", "np.sort({0}, axis=-4)",
                                      "np.sum({0}, axis=(0, 0))"])
def test_issue_8_invalid_axes(template):
    """Where NumPy raises (an out-of-range axis), jitad must raise too, not return a value."""
    p = gen.Program(["x0"], {"x0": np.ones((2, 3, 2))}, [gen.Op("v0", template, ("x0",), "error:axis")], ["v0"],
                    expect_error=True)
    assert gen.numpy_raises(p) is not None
    fails, _ = checks.check_program(p)
    assert not fails, "\n".join(f.report() for f in fails)


def test_checks_detect_mutated_primitives(monkeypatch):
    """Mutation test of the checks themselves: a primitive whose NumPy implementation is off by
    1e-6 (forward) or whose adjoint is off by 0.1% (reverse only) is caught."""
    from jitad.primitives import REGISTRY
    cumsum, scatter = REGISTRY.get("cumsum"), REGISTRY.get("scatter_add")
    assert cumsum is not None and scatter is not None, "the mutated primitives were renamed: update this test"
    x = np.random.default_rng(0).uniform(0.2, 1.3, size=(3, 4))
    fwd = gen.Program(["x0"], {"x0": x}, [gen.Op("v0", "np.cumsum({0}, axis=1)", ("x0",), "struct:cumsum")], ["v0"])
    rev = gen.Program(["x0"], {"x0": x}, [gen.Op("v0", "{0}[[0, 2, 2], 1:]", ("x0",), "index:adv")], ["v0"])
    assert not checks.check_program(fwd)[0] and not checks.check_program(rev)[0]
    impl = cumsum.impl
    monkeypatch.setattr(cumsum, "impl", lambda *a, **k: impl(*a, **k) * (1 + 1e-6))
    assert "forward.jit" in {f.check for f in checks.check_program(fwd)[0]}
    monkeypatch.setattr(cumsum, "impl", impl)
    sc = scatter.impl
    monkeypatch.setattr(scatter, "impl", lambda *a, **k: sc(*a, **k) * 1.001)
    found = {f.check for f in checks.check_program(rev)[0]}
    assert {"grad.fd", "vjp.fd", "jacrev.fd"} <= found and "jvp.fd" not in found, found


# --- bugs the fuzzer found that were not fixed when it was written (see /work/fuzz_findings.md) ---
def test_found_hvp_kernel_statement_order():
    """Fuzz finding (fixed): a compiled hvp kernel used a value before the loop that defines it
    (a pad, the adjoint of x[1:], placed in the inner loop of a reduction instead of where its
    condition's indices and its value are available)."""
    C = np.cos(np.arange(9.0) * 1.7).reshape(3, 3)
    x, t = np.array([0.4, -0.9, 0.7]), np.array([0.3, 0.7, -0.2])
    p = gen.Program(["x0"], {"x0": x}, [
        gen.Op("v0", "np.sum(np.outer(np.sin({0}), np.sin({0})) * np.cos(np.arange(9.0) * 1.7).reshape(3, 3))",
               ("x0",), "matmul:outer"),
        gen.Op("v1", "{0} + np.sum(np.tanh({1}[1:]))", ("v0", "x0"), "index:basic")], ["v1"], seed=0)
    fails, ref = checks.check_program(p)
    assert not fails
    fails = checks.check_batch([p], [ref], stages=("hvp",))
    assert not fails, "\n".join(f.report() for f in fails)


def test_found_clip_scalar_first_argument_dtype():
    """Fuzz finding (fixed since): np.clip(python float, float32, float32) is float64 in NumPy
    (clip converts its first argument with asarray); jitad gave float32."""
    p = gen.Program(["x0"], {"x0": np.array([[2.4]], dtype=np.float32)},
                    [gen.Op("v0", "np.clip(-0.84, {0} - 0.3, {0} + 0.3)", ("x0",), "binary:clip")], ["v0"],
                    dtype="float32")
    fails, _ = checks.check_program(p, only={"forward.jit"})
    assert not fails, "\n".join(f.report() for f in fails)


def test_a_crashing_peer_is_a_recorded_skip_not_the_end_of_the_run(monkeypatch):
    """autograd itself segfaults on one structural program, which killed the whole run (structural runs
    needed --no-autograd). The comparison runs in a forked child: a child killed by a signal (or hung)
    is a recorded 'peer crashed' skip, and the checks of jitad go on; a peer that answers is compared."""
    import os
    import signal

    assert checks.in_child(lambda: [np.arange(3.0)])[0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(checks.PeerCrashed, match="SIGSEGV"):
        checks.in_child(lambda: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(checks.PeerCrashed, match="no answer"):
        checks.in_child(lambda: time.sleep(30), timeout=0.5)

    if checks._autograd is None:
        pytest.skip("autograd is not installed")
    p = gen.Program(["x0"], {"x0": np.array([0.3, -0.7, 1.1])}, [gen.Op("v0", "np.sin({0})", ("x0",), "unary:sin")],
                    ["v0"], seed=5)
    stats = checks.Stats()
    fails, _ = checks.check_program(p, stats=stats, second_order=False)
    assert not fails and stats.counts.get("autograd.grad") == 1 and not stats.peer_crashes

    monkeypatch.setattr(checks, "_autograd_grads_here", lambda program, xs: os.kill(os.getpid(), signal.SIGSEGV))
    stats = checks.Stats()
    fails, _ = checks.check_program(p, stats=stats, second_order=False)
    assert not fails and "autograd.grad" not in stats.counts and stats.counts.get("grad.fd") == 1
    assert stats.peer_crashes == [(5, stats.peer_crashes[0][1])] and "SIGSEGV" in stats.peer_crashes[0][1]
    res = run.fuzz(1, seeds=[p.seed], compiled=False, log=lambda *a: None)   # the runner reports it
    assert res.programs == 1 and res.fuzzer_errors == 0


def test_differences_of_a_function_that_oscillates_within_the_step_take_smaller_steps():
    """An iterated sin(v) x at x = 195: its derivative is 3.28e8 (mpmath 328008179.0594), the
    differences at the default step gave -7.6e6 and failed jitad's exact gradient (loops profile,
    seed 181818001333). Where a column's two estimates disagree, smaller steps are tried."""
    def f(x):
        v = x
        for _ in range(4):
            v = np.sin(v) * x + 0.5 * v
        return v * np.cos(0.3)
    J, E = checks.fd_jacobian(f, np.array([195.15768074204442]), checks.FD_STEP)
    assert abs(J[0, 0] / 328008179.0594 - 1) < 1e-3, J  # (the differences were -7.6e6)
    checks.compare_fd("grad", np.array([328008179.0594]), J.ravel(), E.ravel())  # the exact derivative passes
    with pytest.raises(checks.Mismatch):
        checks.compare_fd("grad", np.array([-7598560.3]), J.ravel(), E.ravel())  # the old differences do not
    smooth = checks.fd_jacobian(np.exp, np.array([0.5]), checks.FD_STEP)[0]
    assert abs(smooth[0, 0] / np.exp(0.5) - 1) < 1e-9
