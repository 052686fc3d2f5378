"""`python -m jitad cuda-check`: the cuda target against the reference executor, with timings.

On a machine with a CUDA GPU it runs there; otherwise on Numba's CUDA simulator (it says so: the
simulator runs every thread in Python, so its timings only show that the path works). It runs

1. the primitive table's compiled groups for the elementwise, broadcasting, indexing,
   reduction, product and float32 sections (tests/primitive_table.py, in a source checkout):
   value and vjp on the cuda target against the reference executor, with the warm time of a
   call on the cuda and the cpu target; rows the cuda target cannot compile are listed with the primitive they name;
2. value_and_grad of the issue's benchmark programs (elementwise, Rosenbrock, an MLP, MDS) on
   the cuda and the cpu target and, where JAX sees a GPU, JAX's value_and_grad on it.

With `--ptx 7.5` (on the simulator) it then compiles every kernel those runs launched, for the
argument types they were launched with, to PTX for that compute capability with the real
numba.cuda and NVVM (the CUDA toolkit; no GPU needed), in a fresh process: what the simulator
accepts but a GPU's compiler would not (types, atomics, device functions) fails there.

Exit status 1 if some cuda result disagrees with the reference (or a kernel does not compile).
"""
import contextlib
import json
import argparse
import os
import subprocess
import sys
import time

import numpy as np

GROUPS = ("unary", "binary", "predicates", "reductions", "shapes", "products", "float32")


def _gpu_present():
    """Whether numba.cuda sees a GPU, asked in a fresh process (Numba reads NUMBA_ENABLE_CUDASIM once)."""
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    try:
        out = subprocess.run([sys.executable, "-c", "from numba import cuda; print(cuda.is_available())"],
                             env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip().endswith("True")


def _best(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:9.2f}"


def _table_module():
    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tests")
    if not os.path.exists(os.path.join(tests, "primitive_table.py")):
        return None
    sys.path.insert(0, tests)
    import primitive_table
    return primitive_table


def _close(a, b):
    import optree
    la, lb = optree.tree_leaves(a), optree.tree_leaves(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        tol = dict(rtol=1e-5, atol=1e-6) if np.float32 in (x.dtype, y.dtype) else dict(rtol=1e-10, atol=1e-12)
        if x.shape != y.shape or not np.allclose(x, y, equal_nan=True, **tol):
            return False
    return True


def _run(fn, target):
    import jitad
    saved = jitad.config.target
    jitad.config.target = target
    try:
        return fn()
    finally:
        jitad.config.target = saved


def _reference(fn):
    import jitad
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    try:
        return fn()
    finally:
        jitad.config.backend = saved


def check_table(table, cpu=True, repeat=3):
    """(rows compared, rows failed, unsupported rows) of the table's cuda groups; prints a line per group."""
    import optree

    import jitad
    rows = [row for row in table.TABLE if row.group in GROUPS]
    print(f"\n== the primitive table on the cuda target ({len(rows)} rows of sections {', '.join(GROUPS)}) ==")
    supported, unsupported = [], {}
    for row in rows:  # which rows compile: tracing and codegen only, nothing runs
        fn = table.group_function([row])
        try:
            _run(lambda: _compile_only(fn, [row.compiled_args()]), "cuda")
            supported.append(row)
        except jitad.UnsupportedOperationError as exc:
            unsupported[row.name] = exc.name
    print(f"{'group':14s} {'rows':>5s} {'result':>8s} {'cuda ms':>9s} {'cpu ms':>9s}")
    failed = 0
    for name, group in table.compiled_groups(supported, 40):
        fn = table.group_function(group)
        args = [row.compiled_args() for row in group]
        expected = fn(args)
        ct = {k: optree.tree_map(lambda v: np.asarray(np.random.default_rng(2).standard_normal(np.shape(v)),
                                                      np.asarray(v).dtype)[()], out) for k, out in expected.items()}

        def call():
            value, vjp_fn = jitad.vjp(fn, args)
            return value, vjp_fn(ct)
        try:
            ok = _close(_run(call, "cuda"), _reference(call))
        except Exception as exc:  # noqa: BLE001 -- reported, counted as a failure
            print(f"{name:14s} {len(group):5d}    ERROR {type(exc).__name__}: {exc}")
            failed += len(group)
            continue
        failed += 0 if ok else len(group)
        cuda_time = _run(lambda: _best(call, repeat), "cuda")
        cpu_time = _run(lambda: _best(call, repeat), "cpu") if cpu else None
        print(f"{name:14s} {len(group):5d} {'ok' if ok else 'MISMATCH':>8s} {_ms(cuda_time)} {_ms(cpu_time)}")
    if unsupported:
        print("rows that raise UnsupportedOperationError on the cuda target (primitive named):")
        for name, prim in unsupported.items():
            print(f"  {name}: {prim}")
    return len(supported), failed, unsupported


def _compile_only(fn, args):
    """Both passes of a row's vjp on the current target (an unsupported primitive raises when compiled)."""
    import optree

    import jitad
    value, vjp_fn = jitad.vjp(fn, args)
    vjp_fn(optree.tree_map(lambda v: np.ones_like(np.asarray(v))[()], value))


def _programs(simulator):
    """(name, function of xp, args) of the issue's benchmarks, tiny on the simulator."""
    rng = np.random.default_rng(0)
    n = 64 if simulator else 10_000_000
    batch, widths = (16, (4, 8, 8, 2)) if simulator else (4096, (64, 256, 256, 10))
    N = 8 if simulator else 2000

    def elementwise(xp):
        return lambda x: xp.sum(xp.sin(x) * x + xp.exp(-x * x) + xp.log1p(x * x))

    def rosenbrock(xp):
        return lambda x: xp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    def mlp(xp):
        def loss(params, inputs, targets):
            for W, b in params:
                outputs = inputs @ W + b
                inputs = xp.tanh(outputs)
            return xp.mean((outputs - targets) ** 2)
        return loss

    def mds(xp):
        return lambda W, D: xp.sum((xp.sum((W[:, None, :] - W[None, :, :]) ** 2, -1) - D) ** 2)

    params = [(rng.standard_normal((m, k)) / np.sqrt(m), np.zeros(k)) for m, k in zip(widths[:-1], widths[1:])]
    return [
        (f"elementwise n={n}", elementwise, (rng.uniform(-1, 1, n),)),
        (f"rosenbrock n={n}", rosenbrock, (rng.uniform(-1, 1, n),)),
        (f"mlp B={batch}", mlp, (params, rng.standard_normal((batch, widths[0])),
                                 rng.standard_normal((batch, widths[-1])))),
        (f"mds N={N}", mds, (rng.standard_normal((N, 3)), np.abs(rng.standard_normal((N, N))))),
    ]


def _jax_gpu():
    try:
        import jax
        return jax if jax.devices("gpu") else None
    except Exception:  # noqa: BLE001 -- no JAX, or no GPU backend for it
        return None


def check_programs(simulator, cpu=True, repeat=3):
    import jitad
    jax = _jax_gpu()
    print("\n== value_and_grad of the benchmark programs (warm, best of "
          f"{repeat}; NumPy inputs copied to the device and back) ==")
    print(f"{'program':22s} {'result':>8s} {'cuda ms':>9s} {'cpu ms':>9s} {'jax-gpu ms':>10s}")
    failed = 0
    for name, make, args in _programs(simulator):
        fn = make(np)
        vg = jitad.value_and_grad(fn)
        try:
            ok = _close(_run(lambda: vg(*args), "cuda"), _reference(lambda: jitad.value_and_grad(fn)(*args)))
            cuda_time = _run(lambda: _best(lambda: vg(*args), repeat), "cuda")
        except Exception as exc:  # noqa: BLE001 -- reported
            print(f"{name:22s}    ERROR {type(exc).__name__}: {exc}")
            failed += 1
            continue
        failed += not ok
        cpu_time = _run(lambda: _best(lambda: vg(*args), repeat), "cpu") if cpu else None
        jax_time = None
        if jax is not None:
            import jax.numpy as jnp
            jvg = jax.jit(jax.value_and_grad(make(jnp)))
            jargs = jax.tree_util.tree_map(jnp.asarray, args)
            jax_time = _best(lambda: jax.block_until_ready(jvg(*jargs)), repeat)
        print(f"{name:22s} {'ok' if ok else 'MISMATCH':>8s} {_ms(cuda_time)} {_ms(cpu_time)} "
              f"{_ms(jax_time) if jax_time is not None else '         -':>10s}")
    if jax is None:
        print("(JAX on a GPU: not available here)")
    return failed


# --- kernels launched on the simulator, compiled to PTX for a real GPU --------------------------------
@contextlib.contextmanager
def recording_launches(records):
    """On the simulator: append (module file, kernel name, argument descriptions) of every jitad kernel
    launched meanwhile to `records` (device functions are compiled with the kernels that call them)."""
    from numba.cuda.simulator import kernel as simulated

    from jitad.backend.cache import _describe
    original = simulated.FakeCUDAKernel.__call__
    seen = set()

    def call(self, *args):
        code = getattr(self.fn, "__code__", None)
        if not self._device and code is not None and os.path.basename(code.co_filename).startswith("jitad_"):
            described = tuple(json.dumps(_describe(getattr(a, "_ary", a))) for a in args)
            key = (code.co_filename, self.fn.__name__, described)
            if key not in seen:
                seen.add(key)
                records.append([key[0], key[1], list(described)])
        return original(self, *args)
    simulated.FakeCUDAKernel.__call__ = call
    try:
        yield records
    finally:
        simulated.FakeCUDAKernel.__call__ = original


def compile_ptx(records, capability):
    """Compile each recorded launch to PTX for `capability` (a (major, minor) pair) with numba.cuda, no
    GPU needed (NVVM is). Returns (compiled, failures: list of (kernel, module, message)); raises
    RuntimeError when NVVM cannot be loaded. Run it where NUMBA_ENABLE_CUDASIM is not set."""
    import importlib.util

    import numba.cuda.compiler as compiler
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    from jitad.backend.cache import numba_type

    try:
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:  # noqa: BLE001 -- no toolkit: nothing to compile with
        raise RuntimeError(f"NVVM (the CUDA toolkit) cannot be loaded: {exc}") from exc

    class Device:  # what the compiler asks of the current device, here without a GPU
        compute_capability = tuple(capability)
    saved = dispatcher.get_current_device, compiler.get_current_device
    dispatcher.get_current_device = compiler.get_current_device = lambda: Device()
    modules, ok, failures = {}, 0, []
    try:
        for path, name, described in records:
            module = modules.get(path)
            if module is None:
                spec = importlib.util.spec_from_file_location(f"jitad_ptx_{len(modules)}", path)
                module = modules[path] = importlib.util.module_from_spec(spec)
                with open(path, encoding="utf-8") as f:
                    source = f.read().replace("SIMULATOR = True", "SIMULATOR = False").replace("TPB = 4", "TPB = 256")
                exec(compile(source, path, "exec"), module.__dict__)  # noqa: S102 -- jitad's own cached module
            types = tuple(numba_type(json.loads(d)) for d in described)
            try:
                cuda.compile_ptx(module.__dict__[name].py_func, types, cc=tuple(capability))
                ok += 1
            except Exception as exc:  # noqa: BLE001 -- reported
                failures.append((name, os.path.basename(path), f"{type(exc).__name__}: {str(exc)[:500]}"))
    finally:
        dispatcher.get_current_device, compiler.get_current_device = saved
    return ok, failures


def _ptx_in_fresh_process(records, capability):
    """compile_ptx in a process without the simulator; prints its report, returns the failures' count."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(records, f)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    try:
        proc = subprocess.run([sys.executable, "-m", "jitad.tools.cuda_check", "--compile-ptx", f.name,
                               "--cc", ".".join(map(str, capability))], env=env, capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    print(proc.stdout.rstrip())
    if proc.returncode not in (0, 1):
        print(proc.stderr[-3000:])
    return 0 if proc.returncode == 0 else 1


def _compile_ptx_main(path, cc):
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    capability = tuple(int(v) for v in cc.split("."))
    start = time.perf_counter()
    try:
        ok, failures = compile_ptx(records, capability)
    except RuntimeError as exc:
        print(f"PTX check skipped: {exc}")
        return 2
    print(f"\n== PTX for compute capability {cc} (numba.cuda + NVVM, no GPU) ==\n"
          f"{ok} of {len(records)} kernel launches compile ({time.perf_counter() - start:.0f} s)")
    for name, module, message in failures:
        print(f"  {module} {name}: {message}")
    return 1 if failures else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jitad cuda-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-cpu", action="store_true", help="skip the cpu target's timings (its compiles)")
    parser.add_argument("--no-table", action="store_true", help="skip the primitive table")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per measurement (best is shown)")
    parser.add_argument("--ptx", metavar="CC", help="on the simulator: also compile every launched kernel to PTX "
                                                    "for compute capability CC (e.g. 7.5) with NVVM, no GPU needed")
    parser.add_argument("--compile-ptx", metavar="JSON", help=argparse.SUPPRESS)  # the fresh process of --ptx
    parser.add_argument("--cc", default="7.5", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compile_ptx:
        return _compile_ptx_main(args.compile_ptx, args.cc)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and not _gpu_present():
        if "numba" in sys.modules:  # Numba read its configuration already: run again in a fresh process
            env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
            return subprocess.call([sys.executable, "-m", "jitad", "cuda-check", *(argv or sys.argv[2:])], env=env)
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        print("no CUDA GPU found: running on Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    import jitad
    from jitad.backend import cuda
    jitad.config.compile = "eager"  # the cpu target's timings are of its kernels, not its NumPy tier
    print(f"cuda target: {cuda.environment()}")
    simulator = cuda.simulator()
    if simulator:
        print("(simulator timings show the path works, not GPU speed)")
    failed = 0
    records = []
    recording = recording_launches(records) if simulator and args.ptx else contextlib.nullcontext()
    with recording:
        failed += _checks(args)
    if args.ptx and simulator:
        failed += _ptx_in_fresh_process(records, tuple(int(v) for v in args.ptx.split(".")))
    print("\nall cuda results agree with the reference" if not failed else f"\n{failed} MISMATCHES")
    return 1 if failed else 0


def _checks(args):
    from jitad.backend import cuda
    simulator = cuda.simulator()
    failed = 0
    if not args.no_table:
        table = _table_module()
        if table is None:
            print("tests/primitive_table.py not found (not a source checkout): the table is skipped")
        else:
            compared, bad, unsupported = check_table(table, cpu=not args.no_cpu, repeat=args.repeat)
            failed += bad
            print(f"table: {compared - bad} of {compared} rows agree with the reference on the cuda target, "
                  f"{len(unsupported)} rows raise UnsupportedOperationError")
    failed += check_programs(simulator, cpu=not args.no_cpu, repeat=args.repeat)
    return failed


if __name__ == "__main__":
    sys.exit(main())
