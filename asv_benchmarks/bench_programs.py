"""Issue 11's benchmark programs in steady state: the time per call of value_and_grad, once
compiled and warm, of

  gp_n500         the log marginal likelihood of a Gaussian process (squared-exponential kernel,
                  traced log length scale / amplitude / noise, n = 500) through
                  scipy.stats.multivariate_normal.logpdf(y, mean, K),
  gmm_logsumexp   a 25-component diagonal Gaussian mixture, n = 10,000 points in 2-D, with
                  scipy.special.logsumexp over the components,
  inplace_n1000 / inplace_n10000
                  a loop filling an output array with in-place writes (bench_inplace.py's loop),

under jitad (compiled; and its NumPy reference executor, `jitad_reference`), autograd
(autograd.scipy's functions) and JAX (jax.scipy's, under jax.jit). The programs are
`_programs.PROGRAMS`, written once; first results are in `bench_firstresult.py`.

    python asv_benchmarks/bench_programs.py [--only NAME ...] [--impls ...] [--rounds N]

prints the same cases side by side from ONE process, timed in interleaved rounds
(`ratios.measure`), with each peer's loss and gradient checked against jitad's.

Measured 2026-12-02 on the shared 2-core development machine (load average 7-10 from other
agents: the ratios of one run are what to read, not the seconds), steady state per call:
gp_n500: jitad 52-53 ms, its NumPy tier 128-131 ms, autograd 86-87 ms, JAX 51-55 ms (jitad/JAX
0.96-1.03); gmm_logsumexp: jitad 37-40 ms, NumPy tier 99-105 ms, autograd 48-78 ms, JAX 11 ms
(jitad/JAX 3.5-3.6; 4.6 with both pinned to one core, so not JAX's threads: jitad's fused
loops recompute exp(log_sds) of the (25, 2) input in every one of the 10,000 x 25 x 2 iterations
of two nests, and the (10,000, 25) exp of the logsumexp twice -- see `jitad explain`).
All values and gradients agree with jitad's to 1e-14 relative.

The loop programs (gmm_k25: a Python loop over 25 mixture components joined with
np.stack(columns, axis=1); lstm_T8; rnn_T100), jitad/JAX in two runs at load 8-11, before -> after
the session that rolled the joined columns into a transpose, skipped unread cotangents in scan
reverse passes, stored the step's matrix products for the reverse sweep and stored transcendentals
read many times: gmm_k25 2.64 / 5.73 -> 1.64 / 1.02, lstm_T8 1.42 / 1.97 -> 1.61 / 1.76,
rnn_T100 1.69 / 1.09 -> 0.90 / 0.96 (values agree with JAX's to 1e-14).

lstm_T8, tried and taken back: the weights' cotangents as one product after the scan (the factors
x_t and dz_t stacked, one (in x T*batch) @ (T*batch x 4h) product) instead of T small products in
the reverse sweep. Interleaved in one process with and without it (best of 8 rounds, load ~5):
3.30 vs 2.93 ms, and 1.29 vs 1.25 ms when x_t is stacked untransposed -- slower both times: the
small products are already added into the running sum in place. jitad / JAX in the same runs:
2.2-3.2 (JAX timed without a block per call there); with `python -m asv_benchmarks.bench_programs
--only lstm_T8 --impls jitad,jax` (load 5-11): 1.25-2.02 at this session's start.
"""
import argparse
import os
import sys

if __package__:
    from ._common import need_jax, warmed
    from ._programs import PROGRAMS, loss_for
    from .firstresult import SKIP
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from asv_benchmarks._common import need_jax, warmed
    from asv_benchmarks._programs import PROGRAMS, loss_for
    from asv_benchmarks.firstresult import SKIP

import numpy as np  # noqa: E402

import jitad  # noqa: E402

NAMES = ["gp_n500", "gmm_logsumexp", "inplace_n1000", "inplace_n10000", "gmm_k25", "lstm_T8", "rnn_T100"]
IMPLS = ["jitad", "jitad_reference", "autograd", "jax"]


def _skip_reason(name, impl):
    # what is impractical (or impossible) for a first result is so in steady state too
    return SKIP.get((name, impl))


def prepare(name, impl):
    """(no-argument callable running value_and_grad once, its first result); warm."""
    reason = _skip_reason(name, impl)
    if reason:
        raise NotImplementedError(reason)
    args = PROGRAMS[name][1]()
    if impl in ("jitad", "jitad_reference"):
        saved = jitad.config.backend
        jitad.config.backend = "numba" if impl == "jitad" else "reference"
        try:
            fn = jitad.value_and_grad(loss_for(name, "numpy"))
            result = fn(*args)
        finally:
            jitad.config.backend = saved

        def call():
            previous = jitad.config.backend
            jitad.config.backend = "numba" if impl == "jitad" else "reference"
            try:
                return fn(*args)
            finally:
                jitad.config.backend = previous
        return call, result
    if impl == "autograd":
        try:
            import autograd
        except ImportError:
            raise NotImplementedError("autograd is not installed (optional peer)") from None
        fn = autograd.value_and_grad(loss_for(name, "autograd"))
        return warmed(fn, *args), fn(*args)
    jax, jnp = need_jax()
    jitted = jax.jit(jax.value_and_grad(loss_for(name, "jax")))
    device_args = jax.tree_util.tree_map(jnp.asarray, args)
    result = jax.block_until_ready(jitted(*device_args))  # compiles

    def call():
        return jax.block_until_ready(jitted(*device_args))
    return call, result


class ProgramSteady:
    params = (NAMES, IMPLS)
    param_names = ["program", "impl"]
    timeout = 1800  # jax.jit of the 1,000-step loop compiles for minutes

    def setup(self, program, impl):
        self.call, _ = prepare(program, impl)

    def time_value_and_grad(self, program, impl):
        self.call()


def _leaves(tree):
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in _leaves(tree[key])]
    if isinstance(tree, (tuple, list)):
        return [leaf for part in tree for leaf in _leaves(part)]
    return [np.asarray(tree, dtype=float)]


def max_rel_diff(result, reference):
    """The largest difference between two (value, grad) results, relative to the reference's size."""
    worst = 0.0
    for a, b in zip(_leaves(result), _leaves(reference)):
        scale = max(float(np.max(np.abs(b))), 1e-300)
        worst = max(worst, float(np.max(np.abs(a - b))) / scale)
    return worst


def _fmt(seconds):
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv=None):
    if __package__:
        from .ratios import measure
    else:
        from asv_benchmarks.ratios import measure
    jitad.config.compile = "eager"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-batch", type=float, default=0.2, help="seconds per timed batch")
    opts = parser.parse_args(argv)
    impls = opts.impls.split(",")
    names = [n for n in NAMES if opts.only is None or n in opts.only]
    print("| program | " + " | ".join(impls) + " | jitad / jax | jitad / autograd | max rel. diff vs jitad |")
    print("|---|" + "---|" * (len(impls) + 3))
    for name in names:
        calls, results, notes = {}, {}, {}
        for impl in impls:
            try:
                calls[impl], results[impl] = prepare(name, impl)
            except NotImplementedError as why:
                notes[impl] = f"skipped ({why})"
            except Exception as error:  # a program a library cannot run is a finding, not a crash
                notes[impl] = f"error: {type(error).__name__}: {str(error)[:80]}"
        times = measure(calls, opts.rounds, opts.min_batch) if calls else {}
        cells = [_fmt(times[i]) if i in times else notes[i] for i in impls]
        ratios = []
        for peer in ("jax", "autograd"):
            ratios.append(f"{times['jitad'] / times[peer]:.2f}" if "jitad" in times and peer in times else "—")
        base = "jitad" if "jitad" in results else "jitad_reference"
        diffs = [f"{i} {max_rel_diff(results[i], results[base]):.1e}" for i in impls if i in results and i != base]
        print(f"| {name} | " + " | ".join(cells + ratios) + " | " + (", ".join(diffs) or "—") + " |", flush=True)


if __name__ == "__main__":
    main()
