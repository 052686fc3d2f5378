"""The gradient of examples/ode_fit.py's loss (an oscillator's positions from scipy.integrate.odeint,
30 time points, rtol = atol = 1e-9) through the adjoint method, with the right-hand side and the
adjoint system's graphs run at every step of SciPy's integrator

  compiled   by the kernels jitad.backend compiles for them (frontend.integrate.RHS_EXECUTOR)
  reference  by the NumPy reference executor, node by node (as before issue 11b)

    python asv_benchmarks/bench_ode.py [--rounds N]

prints both side by side in one process (per call, the best of interleaved rounds) and checks that
the gradients agree. The graph holding the solve runs on the NumPy executor in both.

Measured 2026-12-02 on the shared 2-core machine (load average ~9 from other sessions),
`python asv_benchmarks/bench_ode.py --rounds 5`:

| ode_fit gradient (adjoint, 30 points) | compiled rhs | reference rhs | ratio |
|---|---|---|---|
| per call | 46.6 ms | 562.3 ms | 12.1x |

(the same gradient to 1e-6 relative; the adjoint solve calls its graph ~1,600 times per gradient).
"""
import argparse
import os
import sys
import time

if __package__:
    from . import _common  # noqa: F401 -- the benchmarks' disk cache and compile="eager"
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from asv_benchmarks import _common  # noqa: F401 -- the benchmarks' disk cache and compile="eager"

import numpy as np  # noqa: E402
import scipy.integrate  # noqa: E402

import jitad  # noqa: E402
from jitad.frontend import integrate  # noqa: E402

TRUE = np.array([4.0, 0.5, 1.5])
TS = np.linspace(0.0, 6.0, 30)
START = np.array([2.0, 1.0, 1.0])


def _positions(params, ts):  # examples/ode_fit.py's
    k, c, x0 = params[0], params[1], params[2]
    y0 = np.array([x0, 0.0])
    ys = scipy.integrate.odeint(lambda y, t: np.array([y[1], -k * y[0] - c * y[1]]), y0, ts, rtol=1e-9, atol=1e-9)
    return ys[:, 0]


DATA = _positions(TRUE, TS)


def _loss_compiled(params):
    return np.sum((_positions(params, TS) - DATA) ** 2)


def _loss_reference(params):  # the same loss, a function of its own (its own trace and ODE systems)
    return np.sum((_positions(params, TS) - DATA) ** 2)


def make(form):
    """grad of the loss with its ODE graphs run as `form` says, called once (traced, executors made)."""
    hook = integrate.RHS_EXECUTOR[0]
    if form == "reference":
        integrate.RHS_EXECUTOR[0] = None
    try:
        g = jitad.grad(_loss_compiled if form == "compiled" else _loss_reference)
        g(START)
    finally:
        integrate.RHS_EXECUTOR[0] = hook
    return g


class OdeFitGrad:
    params = ["compiled", "reference"]
    param_names = ["rhs"]
    timeout = 300

    def setup(self, form):
        self.g = make(form)

    def time_grad(self, form):
        self.g(START)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    grads = {form: make(form) for form in OdeFitGrad.params}
    values = {form: g(START) for form, g in grads.items()}
    np.testing.assert_allclose(values["compiled"], values["reference"], rtol=1e-6)
    best = {form: np.inf for form in grads}
    for _ in range(args.rounds):
        for form, g in grads.items():
            t = time.perf_counter()
            g(START)
            best[form] = min(best[form], time.perf_counter() - t)
    print("| ode_fit gradient (adjoint, 30 points) | compiled rhs | reference rhs | ratio |")
    print("|---|---|---|---|")
    print(f"| per call | {best['compiled'] * 1e3:.1f} ms | {best['reference'] * 1e3:.1f} ms | "
          f"{best['reference'] / best['compiled']:.1f}x |")
    print(f"gradients: {values['compiled']} (compiled), {values['reference']} (reference)")


if __name__ == "__main__":
    main()
