"""Differential fuzzer of jitad: driver and command line.

    python -m tests.fuzz.run --programs 10000 --seed 1 [--batch 4] [--compiled-every 8] [--log fuzz.log]
                             [--findings findings.md] [--no-compiled] [--time-limit 1200]

Each program is generated from its own seed (the run's seed * 1_000_000 + its index) and
checked on the reference backend against NumPy and finite differences; every n-th one is
also queued for a batched compiled-vs-reference check (Numba compiles are the cost). Every failure is shrunk (a few per distinct kind of
failure; the rest are counted) and printed as a runnable repro. Progress goes to stdout
(and --log), so the run can go to the background: `nohup python -m tests.fuzz.run ... &`.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field

if __name__ == "__main__" and not os.environ.get("JITAD_CACHE_DIR"):
    import atexit
    import shutil
    os.environ["JITAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="jitad-fuzz-cache-")
    atexit.register(shutil.rmtree, os.environ["JITAD_CACHE_DIR"], ignore_errors=True)  # the run's own kernels

from . import checks, gen, shrink  # noqa: E402

ERROR_EVERY = 12        # every 12th program (by seed) ends with an op NumPy rejects
SECOND_ORDER_EVERY = 3  # hessian / hvp / jacobian(mode=auto) on every third program


@dataclass
class Finding:
    failure: checks.Failure
    count: int = 1
    seeds: list = field(default_factory=list)


@dataclass
class Result:
    programs: int = 0
    error_programs: int = 0
    checks: int = 0
    compiled_checks: int = 0
    failures: int = 0
    findings: dict = field(default_factory=dict)      # signature -> Finding
    unshrunk: dict = field(default_factory=dict)      # pre-shrink key -> count
    seconds: float = 0.0
    batches: int = 0
    fuzzer_errors: int = 0
    counts: dict = field(default_factory=dict)
    peer_crashes: list = field(default_factory=list)   # (seed, what): autograd crashed its child process

    def summary(self):
        lines = [f"{self.programs} programs ({self.error_programs} error programs), {self.checks} checks "
                 f"({self.compiled_checks} compiled, {self.batches} batches), {self.failures} failures, "
                 f"{len(self.findings)} distinct, {self.seconds:.1f} s" +
                 (f", {self.fuzzer_errors} FUZZER ERRORS" if self.fuzzer_errors else "")]
        if self.peer_crashes:
            lines.append(f"  autograd (the peer) crashed on {len(self.peer_crashes)} program(s), comparison skipped: "
                         + ", ".join(f"seed {s_} ({what})" for s_, what in self.peer_crashes[:5]))
        for sig, fd in sorted(self.findings.items(), key=lambda kv: (kv[1].failure.unsupported, -kv[1].count)):
            tag = "[unsupported] " if fd.failure.unsupported else ""
            f = fd.failure
            tag += "" if f.shrunk else "[not shrunk] "
            kinds = ",".join(sorted({k.split("/")[0] for k in f.program.kinds()})) if f.program else ""
            lines.append(f"  {fd.count:5d} x {tag}{f.check}{' ' + f.exc if f.exc else ''}  ops={kinds}  "
                         f"| {f.message[:90]}")
        for key, n in self.unshrunk.items():
            lines.append(f"  {n:5d} x (not shrunk, like an earlier one) {key[0]} {key[1]} {key[2]}")
        return "\n".join(lines)

    def bugs(self):
        """Findings that are wrong answers or crashes (not 'unsupported operation' errors)."""
        return [fd for fd in self.findings.values() if not fd.failure.unsupported]

    def repros(self):
        out = []
        for k, (sig, fd) in enumerate(sorted(self.findings.items(),
                                             key=lambda kv: (kv[1].failure.unsupported, -kv[1].count))):
            out.append(f"===== finding {k + 1}: {fd.count} failing programs (seeds {fd.seeds[:8]}) =====")
            out.append(fd.failure.report())
            out.append("")
        return "\n".join(out)


def _pre_key(f):
    msg = re.sub(r"[-+]?\d[\d.e+-]*", "#", f.message)[:70]
    return (f.check, f.exc or "", msg)


def program_seed(run_seed, i):
    return run_seed * 1_000_000 + i


def fuzz(n_programs, seed=0, batch=4, compiled=True, compiled_every=8, stages=checks.COMPILED_STAGES, shrink_budget=20.0, compiled_shrink_budget=60.0,
         max_shrinks_per_key=2, log=print, time_limit=None, progress_every=25, use_autograd=True,
         second_order_every=SECOND_ORDER_EVERY, error_every=ERROR_EVERY, skip_shrink=None, profile="full",
         seeds=None):
    """Generate and check `n_programs` programs. Returns a Result."""
    t0 = time.time()
    res = Result()
    stats = checks.Stats()
    cstats = checks.Stats()
    pending = []
    shrinks = {}

    pre_to_sig = {}

    def record(fail):
        res.failures += 1
        key = _pre_key(fail)
        seed_ = fail.program.seed if fail.program else None
        if shrinks.get(key, 0) >= max_shrinks_per_key:
            sig = pre_to_sig.get(key)
            if sig in res.findings:   # counted with the failure it looked like (same check, message)
                res.findings[sig].count += 1
                res.findings[sig].seeds.append(seed_)
            else:
                res.unshrunk[key] = res.unshrunk.get(key, 0) + 1
            return
        if skip_shrink is not None and skip_shrink(fail):   # e.g. a known bug: keep it as found
            fail.program = gen.prune(fail.program)
            sig = ("unshrunk",) + key
            fd = res.findings.setdefault(sig, Finding(fail, 0))
            fd.count += 1
            fd.seeds.append(seed_)
            return
        shrinks[key] = shrinks.get(key, 0) + 1
        log(f"  FAIL {fail.check} {fail.exc or ''} seed={seed_}: {fail.message[:150]}")
        budget = compiled_shrink_budget if fail.check.startswith("compiled.") else shrink_budget
        small = shrink.shrink_failure(fail, budget=budget, log=log)
        sig = small.signature()
        pre_to_sig[key] = sig
        fd = res.findings.get(sig)
        if fd is None:
            fd = res.findings[sig] = Finding(small, 0)
            log("    new distinct failure:\n" + "\n".join("      " + ln for ln in small.report().split("\n")))
        fd.count += 1
        fd.seeds.append(seed_)

    def flush():
        if not pending:
            return
        res.batches += 1
        tb = time.time()
        before = checks.jitad.cache_info()
        try:
            fails = checks.check_batch([p for p, _ in pending], [r for _, r in pending], stages=stages,
                                       stats=cstats, log=log)
        except Exception as e:  # a bug of the fuzzer itself
            log(f"  FUZZER ERROR in a compiled batch: {type(e).__name__}: {e}")
            res.fuzzer_errors += 1
            fails = []
        after = checks.jitad.cache_info()
        compiled_n = after.get("numba_compilations", 0) - before.get("numba_compilations", 0)
        loaded_n = after.get("disk_loads", 0) - before.get("disk_loads", 0)
        tier = after.get("numpy_tier_calls", 0) - before.get("numpy_tier_calls", 0)
        log(f"  batch of {len(pending)} compiled in {time.time() - tb:.1f} s ({compiled_n} Numba compilations, "
            f"{loaded_n} from disk{f', {tier} calls on the NumPy tier!' if tier else ''}), {len(fails)} failures")
        pending.clear()
        for fl in fails:
            try:
                record(fl)
            except Exception as e:
                log(f"  FUZZER ERROR while shrinking a compiled failure: {type(e).__name__}: {e}")
                res.fuzzer_errors += 1

    last_progress = time.time()
    seeds = list(seeds) if seeds else [program_seed(seed, i) for i in range(n_programs)]
    n_programs = len(seeds)
    for i, s in enumerate(seeds):
        if time_limit and time.time() - t0 > time_limit:
            log(f"time limit reached after {i} programs")
            break
        error = s % error_every == error_every - 1
        try:
            program = gen.generate(s, error=error, profile=profile)
        except RuntimeError:
            continue
        res.programs += 1
        res.error_programs += int(program.expect_error)
        crashes_before = len(stats.peer_crashes)
        try:
            fails, ref = checks.check_program(program, second_order=(s % second_order_every == 0), stats=stats,
                                              use_autograd=use_autograd)
        except Exception as e:  # a bug of the fuzzer itself: say so, keep going
            log(f"  FUZZER ERROR on seed {s}: {type(e).__name__}: {e}")
            res.fuzzer_errors += 1
            continue
        finally:
            for s_, what in stats.peer_crashes[crashes_before:]:
                log(f"  PEER CRASHED: autograd on seed {s_}: {what}; its comparison is skipped")
        for fl in fails:
            try:
                record(fl)
            except Exception as e:
                log(f"  FUZZER ERROR while shrinking seed {s}: {type(e).__name__}: {e}")
                res.fuzzer_errors += 1
        if compiled and not program.expect_error and s % compiled_every == 0:
            pending.append((program, ref))
            if len(pending) >= batch:
                flush()
        if (i + 1) % progress_every == 0 or time.time() - last_progress > 60:
            last_progress = time.time()
            log(f"[{time.time() - t0:7.1f} s] {i + 1}/{n_programs} programs, {stats.checks + cstats.checks} checks, "
                f"{res.failures} failures, {len(res.findings)} distinct")
    if compiled:
        flush()
    res.checks = stats.checks + cstats.checks
    res.compiled_checks = cstats.checks
    res.counts = {**stats.counts, **cstats.counts}
    res.peer_crashes = list(stats.peer_crashes)
    res.seconds = time.time() - t0
    return res


def findings_markdown(res, title="jitad fuzz findings"):
    lines = [f"# {title}", "", "```", res.summary(), "```", ""]
    for k, (sig, fd) in enumerate(sorted(res.findings.items(),
                                         key=lambda kv: (kv[1].failure.unsupported, -kv[1].count))):
        f = fd.failure
        also = f" (also {', '.join(f.also)})" if f.also else ""
        lines += [f"## {k + 1}. `{f.check}`{' raises ' + f.exc if f.exc else ''}{also} ({fd.count} programs)", "",
                  f.message, "", f"Run: `{checks.how(f.check)}`", "", "```python", f.program.repro().rstrip(), "```", ""]
        if f.expected is not None or f.got is not None:
            lines += ["```", f"expected: {checks._show(f.expected)}", f"got:      {checks._show(f.got)}", "```", ""]
        if f.detail:
            lines += ["```", f.detail, "```", ""]
    return "\n".join(lines)


def roll_everything():
    """Rolling's thresholds down to 2 copies of 2 nodes, so the fuzzer's short loops and repeated
    ops roll, and a roll that raises fails the program (jitad itself falls back to the unrolled
    program, which is right but hides the bug)."""
    from jitad.frontend import rolling
    rolling.settings.update(min_steps=2, min_nodes=2)
    original = rolling.roll

    def strict(graph):
        before = rolling.counts["failed"]
        out = original(graph)
        if rolling.counts["failed"] != before:
            raise RuntimeError("rolling failed on this program (it would run unrolled)")
        return out
    rolling.roll = strict


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4, help="programs per compiled batch (Numba's compile time "
                    "grows faster than linearly with the kernel, so keep it small)")
    ap.add_argument("--compiled-every", type=int, default=8, help="every n-th program also runs compiled")
    ap.add_argument("--stages", default=",".join(checks.COMPILED_STAGES),
                    help="compiled transforms to check: " + ",".join(checks.COMPILED_STAGES))
    ap.add_argument("--no-compiled", action="store_true", help="reference backend only")
    ap.add_argument("--no-autograd", action="store_true")
    ap.add_argument("--profile", default="full", choices=sorted(gen.PROFILES),
                    help="op mix: full, or structural (index maps only: slices, reshapes, diag, ...)")
    ap.add_argument("--shrink-budget", type=float, default=20.0)
    ap.add_argument("--compiled-shrink-budget", type=float, default=60.0)
    ap.add_argument("--seeds", default=None, help="comma-separated program seeds to run (a repro of a batch)")
    ap.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--log", default=None, help="also append progress to this file")
    ap.add_argument("--findings", default=None, help="write the distinct failures as markdown here")
    ap.add_argument("--roll-everything", action="store_true",
                    help="roll every run of 2 or more repeated pieces into a scan (jitad.frontend.rolling), "
                         "and fail a program whose roll raises instead of running it unrolled")
    ap.add_argument("--parallel-everything", action="store_true",
                    help="compile every loop nest in its parallel form (target 'parallel', numba.prange over "
                         "chunks, partial reductions), however small: the compiled checks then cover that code")
    ap.add_argument("--split-everything", action="store_true",
                    help="compile every graph in the split form (each loop nest a kernel of its own, called from a "
                         "Python driver), however small")
    args = ap.parse_args(argv)
    if args.split_everything:
        from jitad.backend import cache
        cache.SPLIT_NODES = 0
    if args.roll_everything:
        roll_everything()
    if args.parallel_everything:
        import jitad
        from jitad.backend import codegen
        codegen.PARALLEL_ELEMENTS = 1
        jitad.config.target = "parallel"
    logf = open(args.log, "a", encoding="utf-8") if args.log else None

    def log(msg):
        print(msg, flush=True)
        if logf:
            logf.write(msg + "\n")
            logf.flush()
    log(f"jitad fuzz: {args.programs} programs, seed {args.seed}, batch {args.batch}, "
        f"cache {os.environ.get('JITAD_CACHE_DIR')}")
    res = fuzz(args.programs, seed=args.seed, batch=args.batch, compiled=not args.no_compiled,
               compiled_every=args.compiled_every, stages=tuple(args.stages.split(",")),
               shrink_budget=args.shrink_budget, compiled_shrink_budget=args.compiled_shrink_budget,
               log=log, time_limit=args.time_limit, use_autograd=not args.no_autograd, profile=args.profile,
               seeds=[int(x) for x in args.seeds.split(",")] if args.seeds else None)
    log("\n" + res.repros())
    log(res.summary())
    if args.roll_everything:
        from jitad.frontend import rolling
        log(f"rolled: {rolling.counts}")
    log("checks by kind: " + ", ".join(f"{k}={v}" for k, v in sorted(res.counts.items())))
    if args.findings:
        with open(args.findings, "w", encoding="utf-8") as f:
            f.write(findings_markdown(res))
        log(f"findings written to {args.findings}")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
