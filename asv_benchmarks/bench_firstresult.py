"""Issue 10: time to the first result, and time until the compiled kernel serves, of real
programs (Python loops over steps, layers and components; issue 11's GP marginal likelihood
through multivariate_normal.logpdf, mixture with logsumexp, in-place fill loop), each in a fresh process with an
empty jitad cache; autograd's and JAX's first calls side by side where they are installed.
`python asv_benchmarks/firstresult.py` prints the same numbers as one table."""
from ._programs import PROGRAMS
from .firstresult import SKIP, available, run_child

IMPLS = ["jitad", "jitad_eager", "jitad_reference", "autograd", "jax"]


class FirstResult:
    params = (list(PROGRAMS), IMPLS)
    param_names = ["program", "impl"]
    number = 1
    repeat = 1
    timeout = 1500

    def setup(self, program, impl):
        if not available(impl):
            raise NotImplementedError(f"{impl} is not installed (optional peer)")
        if impl == "jitad_reference" and not program.startswith("inplace"):
            raise NotImplementedError("jitad's NumPy tier alone is measured for the in-place loops only "
                                      "(elsewhere `jitad` first result is that tier's)")
        if (program, impl) in SKIP:
            raise NotImplementedError(SKIP[program, impl])

    def _run(self, program, impl):
        result = run_child(program, impl)
        if "error" in result:
            raise RuntimeError(result["error"])
        return result

    def track_first_result(self, program, impl):
        return self._run(program, impl)["first"]
    track_first_result.unit = "seconds"

    def track_compiled_ready(self, program, impl):
        ready = self._run(program, impl)["ready"]
        return float("nan") if ready is None else ready
    track_compiled_ready.unit = "seconds"
