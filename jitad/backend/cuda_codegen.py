"""CUDA codegen: a fusion plan becomes a module of `numba.cuda.jit` kernels and a plain-Python driver.

The plan is written in the split form (`codegen.KernelWriter(split=True)`): every loop nest is a
function of its own with canonical arguments, called from a driver. Here each nest becomes

- a kernel with one thread per element of the nest's outer axis (a grid-stride loop over `i0`);
  the inner axes are loops in the thread, exactly as in the CPU kernel;
- a launcher `N<k>(...)` (host Python) that allocates the nest's outputs on the device, launches
  the kernel and returns the device arrays (a 0-d value is a 1-element device array; kernels read
  it back as a scalar: `s0 = s0_ref[0]`).

Identical nests (a loop's unrolled steps) share one kernel: as in the CPU split form, a nest's
comments number its nodes by first use (`%0`, `%1`, ...); the driver's comments use the graph's
numbers (`explain`'s).

Reductions: a reduction over inner axes only is a loop in the thread (no synchronisation). A
reduction to a scalar over the outer axis is a block tree reduction in shared memory (one
partial per block) and a second one-block kernel (`F<k>`) that combines the partials and
computes what the nest reads from the finished value (`mean = sum / n`). A reduction over the
outer axis into an array (the adjoint of a broadcast: a bias's gradient) uses `cuda.atomic.add`;
a product, max or min into an array over the outer axis has no atomic that keeps NumPy's rules
(NaN), so that nest runs in one thread (its source says so).

Library calls: the gather (`take`), its adjoint scatter-add (`cuda.atomic.add`: indices may
repeat), `concatenate`, `matmul` (one thread per output element, transposed operands read in
place, batch axes equal or absent), `cumsum` (one thread per line) and `argsort` (a stable
insertion sort per row) have kernels here; every other library primitive (linear algebra,
scans and while loops, custom rules that call back into Python) raises `CudaUnsupportedError`
when the graph is compiled, naming the primitive and the way out (`target="cpu"`), never a wrong
answer.

Scalar code: the elementwise templates are the CPU ones; NumPy calls become `math` calls or small
device functions defined in the module (`_DEVICE_HELPERS`), and a template calling anything else
(scipy.special helpers without a device version) is unsupported. Nothing here imports Numba.
"""
import re

import numpy as np

from jitad.backend.codegen import KernelWriter, _dtype_code, _integer_bound, _Stmt
from jitad.errors import UnsupportedOperationError
from jitad.primitives import control
from jitad.primitives.structural import argsort_p, concatenate_p, cumsum_p, matmul_p, scatter_add_p, take_p

WAY_OUT = ("Way out: run this function on the CPU, e.g. jitad.grad(f, target='cpu') "
           "(or jitad.config.target = 'cpu').")


class CudaUnsupportedError(UnsupportedOperationError):
    """A primitive the cuda target has no kernel for (raised when the graph is compiled)."""

    def __init__(self, name, detail=""):
        Exception.__init__(self, f"the cuda target cannot compile primitive `{name}`{detail}. {WAY_OUT}")
        self.name = name


# The elementwise templates' scalar calls on the device (`device_function`): a device helper below
# named d_<name> when there is one; else NumPy's name for a function of Python's `math` module that
# Numba's CUDA target provides (libdevice) is that function; else the few NumPy names that differ
# from math's (and scipy.special's K helpers) are renamed. A primitive whose scalar code calls
# np.<f> or K.<f> for such an f needs nothing here.
_DEVICE_MATH = frozenset({
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
    "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "hypot", "isnan", "isinf", "isfinite", "fmod",
    "erf", "erfc", "gamma", "lgamma"})
_RENAMED = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2", "arcsinh": "asinh",
            "arccosh": "acosh", "arctanh": "atanh", "gammaln": "lgamma"}
# scalar type conversions stay NumPy's (Numba types them on the device)
_CONVERSIONS = frozenset({"float64", "float32", "int64", "int32", "bool_", "uint8"})
_NP_CALLS = {}  # explicit overrides: NumPy name -> device code (tests put a wrong kernel here)


def device_function(module, name):
    """The device code for the CPU templates' call `module.name` (module "np" or "K"), or None."""
    if module == "np" and name in _NP_CALLS:
        return _NP_CALLS[name]
    if module == "np" and name in _CONVERSIONS:
        return f"np.{name}"
    if f"d_{name}" in _DEVICE_HELPERS:
        return f"d_{name}"
    name = _RENAMED.get(name, name)
    return f"math.{name}" if name in _DEVICE_MATH else None


_CALL = re.compile(r"\b(np|K|KL|KB|math)\.(\w+)(\(?)")

# device functions the kernels may call, defined in the module when used
_DEVICE_HELPERS = {
    "d_nmax": '''
@cuda.jit(device=True)
def d_nmax(a, b):
    """np.maximum: NaN if either is, the second of two equal values."""
    return a if a > b or a != a else b''',
    "d_nmin": '''
@cuda.jit(device=True)
def d_nmin(a, b):
    """np.minimum: NaN if either is, the second of two equal values."""
    return a if a < b or a != a else b''',
    "d_fmax": '''
@cuda.jit(device=True)
def d_fmax(a, b):
    """np.fmax: a NaN operand is ignored."""
    return b if a != a else (a if b != b or a >= b else b)''',
    "d_fmin": '''
@cuda.jit(device=True)
def d_fmin(a, b):
    """np.fmin: a NaN operand is ignored."""
    return b if a != a else (a if b != b or a <= b else b)''',
    "d_floor": '''
@cuda.jit(device=True)
def d_floor(x):
    """np.floor as a float (math.floor is an integer, undefined for inf and NaN)."""
    if not abs(x) < 4503599627370496.0:  # NaN, inf, or already integral
        return x
    return float(math.floor(x))''',
    "d_ceil": '''
@cuda.jit(device=True)
def d_ceil(x):
    if not abs(x) < 4503599627370496.0:
        return x
    return float(math.ceil(x))''',
    "d_trunc": '''
@cuda.jit(device=True)
def d_trunc(x):
    if not abs(x) < 4503599627370496.0:
        return x
    return float(math.trunc(x))''',
    "d_rint": '''
@cuda.jit(device=True)
def d_rint(x):
    """np.rint: halves to even."""
    if not abs(x) < 4503599627370496.0:
        return x
    r = float(math.floor(x))
    d = x - r
    if d > 0.5 or (d == 0.5 and r % 2.0 != 0.0):
        r += 1.0
    return r''',
    "d_sign": '''
@cuda.jit(device=True)
def d_sign(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else (x if x != x else 0.0))''',
    "d_cbrt": '''
@cuda.jit(device=True)
def d_cbrt(x):
    return math.copysign(abs(x) ** (1.0 / 3.0), x)''',
    "d_exp2": '''
@cuda.jit(device=True)
def d_exp2(x):
    return 2.0 ** x''',
    "d_logaddexp": '''
@cuda.jit(device=True)
def d_logaddexp(a, b):
    if a == b:
        return a + 0.6931471805599453
    m = a if a > b or a != a else b
    return m + math.log1p(math.exp(-abs(a - b)))''',
    "d_logaddexp2": '''
@cuda.jit(device=True)
def d_logaddexp2(a, b):
    if a == b:
        return a + 1.0
    m = a if a > b or a != a else b
    return m + math.log1p(2.0 ** -abs(a - b)) / 0.6931471805599453''',
    "d_log_expit": '''
@cuda.jit(device=True)
def d_log_expit(x):
    """log(1 / (1 + exp(-x))) without overflow."""
    if x >= 0:
        return -math.log1p(math.exp(-x))
    return x - math.log1p(math.exp(x))''',
    "d_ndtr": '''
@cuda.jit(device=True)
def d_ndtr(x):
    return 0.5 * math.erfc(-x * 0.7071067811865476)''',
    "d_rmax": '''
@cuda.jit(device=True)
def d_rmax(a, b):
    """A max reduction's step: NaN if either is (NumPy's max)."""
    return a if a > b or a != a else b''',
    "d_rmin": '''
@cuda.jit(device=True)
def d_rmin(a, b):
    return a if a < b or a != a else b''',
}

# a reduction's combine (prim.accumulate) -> (kind, device combine)
_COMBINES = {"{acc} + {x}": "add", "{acc} * {x}": "mul", "max({acc}, {x})": "max", "min({acc}, {x})": "min"}


def _device_combine(kind, dtype):
    if kind == "add":
        return "{acc} + {x}"
    if kind == "mul":
        return "{acc} * {x}"
    if np.dtype(dtype).kind == "f":
        return f"d_r{kind}({{acc}}, {{x}})"
    return f"{kind}({{acc}}, {{x}})"


def _numba_type(dtype):
    name = np.dtype(dtype).name
    return "numba.boolean" if name == "bool" else f"numba.{name}"


class CudaWriter(KernelWriter):
    """The split form of a graph with every nest written as CUDA kernels (see the module docstring)."""

    views = False  # device arrays: every nest is a kernel launch, as before

    def __init__(self, graph, labels=None):
        super().__init__(graph, split=True, labels=labels)
        self.kernels = []          # distinct kernel modules' code (kernel + launcher), by nest index
        self._kernel_index = {}
        self.device_scalars = set()  # driver names of 0-d values held in 1-element device arrays
        self.used_helpers = set()
        self.library_kernels = set()  # names of the library kernels the module needs
        self._stmt_nodes = {}

    # --- nodes this target has no kernel for -------------------------------------------------
    def translate(self, text, node_id=None):
        """CPU scalar code -> CUDA device code; unknown calls are unsupported."""
        def repl(match):
            module, name, paren = match.groups()
            if module == "math":
                return match.group(0)
            if module == "np":
                if not paren:  # np.inf, np.nan, np.pi, np.e: constants Numba freezes
                    if name in ("inf", "nan", "pi", "e"):
                        return match.group(0)
                    self._unsupported(node_id, f"np.{name}")
                target = device_function("np", name)
            elif module == "K":
                target = device_function("K", name)
            else:
                target = None
            if target is None:
                self._unsupported(node_id, f"{module}.{name}")
            if target.startswith("d_"):
                self.used_helpers.add(target)
            return target + paren
        return _CALL.sub(repl, text)

    def _unsupported(self, node_id, call):
        node = self._node_by_id(node_id)
        name = node.prim.name if node is not None else call
        raise CudaUnsupportedError(name, f" (its scalar code calls `{call}`, which has no CUDA device version here)")

    def _node_by_id(self, node_id):
        if node_id is None:
            return None
        for node in self.graph.nodes:
            if node.id == node_id:
                return node
        return None

    def library_call(self, node):
        lower = LOWERINGS.get(node.prim)
        if lower is None:
            if node.prim.kind == "callback":
                why = " (it calls back into Python: an untraceable custom rule or an ODE solve)"
            elif node.prim in (control.scan_p, control.while_p, control.while_vjp_p):
                why = (" (a loop: jitad.scan / fori_loop / while_loop, or a Python loop jitad rolled into one; a "
                       "Python loop runs unrolled on the cuda target with jitad.config.roll_loops = False)")
            else:
                why = " (a library call: no CUDA kernel for it yet)"
            raise CudaUnsupportedError(node.prim.name, why)
        out = self.names[node.id] = self.value_name(node, self.kernel)
        self.kinds[node.id] = "v"
        ins = [self.read_whole(i) for i in node.inputs]
        self.ready.add(node.id)
        if node.ndim == 0:
            self.device_scalars.add(out)
        code = lower(node, out, ins, self)
        lines = code.strip("\n").split("\n")
        for k, text in enumerate(lines):
            self.body.append((text, self.describe(node) if k == len(lines) - 1 else None))

    # --- reductions ----------------------------------------------------------------------------
    def reduction_root(self, root, name, index):
        axes = tuple(root.params["axes"])
        x = root.inputs[0]
        rank = x.ndim
        init, combine = root.prim.accumulate
        init = _integer_bound(init, root.dtype)
        kind = _COMBINES[combine]
        combine = _device_combine(kind, root.dtype)
        self.used_helpers.update(re.findall(r"\bd_\w+", combine))
        kept = [index[a] for a in range(rank) if a not in axes]
        suffix = tuple(range(rank - len(axes), rank)) == axes
        value = self.operand(x, index)
        level = max(self.cache[(x.id, index)][1], rank)
        dtype = _dtype_code(root.dtype)
        nest = self.nest
        if suffix:
            outer = rank - len(axes)
            if root.ndim:
                nest.before.append(_Stmt(name, f"np.empty({self.shape_code(root)}, {dtype})"))
                acc = self.fn.unique(f"{name}_acc")
            else:
                acc = name
                if rank:  # over the outer axis: a block tree reduction and a second pass
                    _facts(nest).full.append((acc, kind, root.dtype, init, combine))
            nest.levels[outer].append(_Stmt(acc, init))
            self.place(_Stmt(acc, combine.format(acc=acc, x=value), self.describe(root)), level)
            if root.ndim:
                nest.after[outer + 1].append(_Stmt(f"{name}[{', '.join(kept)}]", acc))
            self.cache[(root.id, tuple(kept))] = (acc, outer + 0.5)
            return
        nest.before.append(_Stmt(name, f"np.full({self.shape_code(root)}, {init}, {dtype})"))
        target = f"{name}[{', '.join(kept)}]"
        if 0 in axes and kind == "add":  # threads of different i0 add into one element
            key = kept[0] if len(kept) == 1 else f"({', '.join(kept)})"  # a 1-tuple does not lower
            self.place(_Stmt(None, f"cuda.atomic.add({name}, {key}, {value})", self.describe(root)), level)
        else:
            if 0 in axes:
                _facts(nest).serial = f"a {kind} over the outer axis into an array (no atomic keeps NumPy's NaN rule)"
            self.place(_Stmt(target, combine.format(acc=target, x=value), self.describe(root)), level)

    # --- a nest as kernels ------------------------------------------------------------------------
    def _nest_call(self, nest, fast):
        function = nest.function
        params = list(function.params)
        scalar_params = {p for p, a in zip(function.params, function.args) if a in self.device_scalars}
        roots = list(zip(nest.roots, nest.step.roots))
        code = self._nest_module(nest, params, scalar_params, roots)
        index = self._kernel_index.get(code)
        if index is None:
            index = self._kernel_index[code] = len(self.kernels)
            self.kernels.append(code)
        self.calls.append((index, function.args))
        names = [self.names[r.id] for r in nest.step.roots]
        for r in nest.step.roots:
            if r.ndim == 0:
                self.device_scalars.add(self.names[r.id])
        call = f"N{index}({', '.join(self.start_values.get(a, a) for a in function.args)})"
        return (f"{', '.join(names)}, = {call}",
                "loop nest: " + ", ".join(f"%{self.numbers[r.id]}" for r in nest.step.roots), 0)

    def _lines(self, statements, depth):
        return [(self.translate(s.code(()), s.node), s.comment, depth) for s in statements]

    def _inner(self, nest, level, out):
        """Loop `level - 1`'s body (level >= 1) as (text, comment, depth), depth counted from the kernel body."""
        out += self._lines(nest.levels[level], level)
        if level < nest.rank:
            out.append((f"for i{level} in range({nest.bounds[level]}):", None, level))
            self._inner(nest, level + 1, out)
            out += self._lines(nest.after[level + 1], level)

    def _nest_module(self, nest, params, scalar_params, roots):
        """The kernel(s) and launcher of one nest, with `{k}` where its index goes."""
        rank = nest.rank
        _facts(nest)
        serial = nest.serial or ("a nest over no axis" if rank == 0 else None)
        outs = []  # kernel parameters of the outputs
        allocations = []
        for stmt in nest.before:
            call = stmt.rhs.replace("np.empty(", "cuda.device_array(", 1).replace("np.full(", "_full(", 1)
            allocations.append(f"{stmt.lhs} = {call}")
        scalar_roots = []
        for name, root in roots:
            if root.ndim:
                outs.append(name)
            else:
                outs.append(f"{name}_ref")
                scalar_roots.append(name)
                allocations.append(f"{name}_ref = cuda.device_array(1, {_dtype_code(root.dtype)})")
        kparams = [f"{p}_ref" if p in scalar_params else p for p in params] + outs
        largs = params + outs  # the launcher's names of the same values
        derefs = [(f"{p} = {p}_ref[0]", None, 0) for p in params if p in scalar_params]
        head = self._lines(nest.levels[0], 0)
        loop = []
        if rank:
            bound = nest.bounds[0]
            text = f"for i0 in range({bound}):" if serial else \
                f"for i0 in range(cuda.grid(1), {bound}, cuda.gridsize(1)):"
            loop.append((text, None, 0))
            self._inner(nest, 1, loop)
        after = self._lines(nest.after[1], 0) if rank else []
        writes = [(f"{name}_ref[0] = {name}", None, 1) for name in scalar_roots]
        comment = nest.header
        launch = []
        out = []
        if serial:
            body = derefs + head + loop + after
            if writes:
                body += [(text, c, 0) for text, c, _ in writes]
            out += _kernel("K{k}", kparams, [comment, f"# one thread: {serial}"], body)
            launch.append(f"K{{k}}[1, 1]({', '.join(largs)})")
        elif not nest.full:
            assert not after, "statements after the outer loop need a reduction over it"
            body = derefs + head + loop
            if writes:
                body.append(("if cuda.grid(1) == 0:", None, 0))
                body += writes
            out += _kernel("K{k}", kparams, [comment, "# one thread per i0 (grid-stride)"], body)
            launch.append(f"K{{k}}[_grid({nest.bounds[0]}), TPB]({', '.join(largs)})")
        else:
            parts = [f"_part{j}" for j in range(len(nest.full))]
            body = derefs + head + loop + [("_t = cuda.threadIdx.x", None, 0)]
            for j, (acc, kind, dtype, init, combine) in enumerate(nest.full):
                body += _tree(j, acc, dtype, combine)
                body += [("if _t == 0:", None, 0), (f"_part{j}[cuda.blockIdx.x] = _sh{j}[0]", None, 1)]
            out += _kernel("K{k}", kparams + parts,
                           [comment, "# one thread per i0 (grid-stride); each block's partial to _part"], body)
            finish = derefs + head + [("_t = cuda.threadIdx.x", None, 0)]
            for j, (acc, kind, dtype, init, combine) in enumerate(nest.full):
                finish += [(f"{acc} = {self.translate(init)}", None, 0),
                           (f"for _j in range(_t, _part{j}.shape[0], TPB):", None, 0),
                           (f"{acc} = {combine.format(acc=acc, x=f'_part{j}[_j]')}", None, 1)]
                finish += _tree(j, acc, dtype, combine)
                finish.append((f"{acc} = _sh{j}[0]", None, 0))
            finish += after
            if writes:
                finish.append(("if _t == 0:", None, 0))
                finish += writes
            out += _kernel("F{k}", kparams + parts, ["# the partials of K{k}'s blocks, combined in one block"],
                           finish)
            launch.append(f"_blocks = _grid({nest.bounds[0]})")
            for j, (acc, kind, dtype, init, combine) in enumerate(nest.full):
                launch.append(f"_part{j} = cuda.device_array(_blocks, {_dtype_code(dtype)})")
            launch.append(f"K{{k}}[_blocks, TPB]({', '.join(largs + parts)})")
            launch.append(f"F{{k}}[1, TPB]({', '.join(largs + parts)})")
        results = [name if root.ndim else f"{name}_ref" for name, root in roots]
        out += ["", "", f"def N{{k}}({', '.join(params)}):"]
        out += [f"    {line}" for line in allocations + launch]
        out.append(f"    return ({', '.join(results)},)")
        return "\n".join(out)

    # --- the module -------------------------------------------------------------------------------
    def write_module(self, target_line):
        driver = self.write()
        driver_lines = driver.splitlines()
        # callers own their results: an output that is an input or a constant is copied on the device
        for k, line in enumerate(driver_lines):
            if line.startswith("    return ("):
                driver_lines[k] = re.sub(r"\b(\w+)\.copy\(\)", r"_dcopy(\1)", line)
        driver = "\n".join(line for line in driver_lines if not line.startswith(("import ", "from ")))
        out = ["import math", "", "import numba", "import numpy as np", "from numba import cuda", "",
               target_line, "", _PRELUDE.strip("\n")]
        for name in sorted(self.used_helpers):
            out += ["", _DEVICE_HELPERS[name].strip("\n")]
        if self.library_kernels:
            for name in ["index"] + sorted(self.library_kernels):
                out += ["", "", LIBRARY_KERNELS[name].strip("\n")]
        for k, code in enumerate(self.kernels):
            out += ["", "", code.replace("{k}", str(k))]
        out += ["", "", driver.strip("\n")]
        return "\n".join(out) + "\n"


def _facts(nest):
    """The CUDA facts of a nest: its reductions over the outer axis to a scalar, and why it runs serially."""
    if not hasattr(nest, "full"):
        nest.full, nest.serial = [], None
    return nest


def _kernel(name, params, comments, body):
    out = ["", "", "@cuda.jit(cache=True)", f"def {name}({', '.join(params)}):"]
    out += [f"    {c}" for c in comments if c]
    for text, comment, depth in body:
        pad = "    " * (depth + 1)
        out.append(f"{pad}{text}  # {comment}" if comment else f"{pad}{text}")
    if not body:
        out.append("    pass")
    return out


def _tree(j, acc, dtype, combine):
    """A block's tree reduction of every thread's `acc` into shared `_sh{j}[0]`."""
    sh = f"_sh{j}"
    return [(f"{sh} = cuda.shared.array(TPB, {_numba_type(dtype)})", None, 0),
            (f"{sh}[_t] = {acc}", None, 0),
            ("cuda.syncthreads()", None, 0),
            ("_s = TPB // 2", None, 0),
            ("while _s > 0:", None, 0),
            ("if _t < _s:", None, 1),
            (f"{sh}[_t] = {combine.format(acc=f'{sh}[_t]', x=f'{sh}[_t + _s]')}", None, 2),
            ("cuda.syncthreads()", None, 1),
            ("_s //= 2", None, 1)]


_PRELUDE = '''
MAX_BLOCKS = 16 if SIMULATOR else 4096  # more elements: grid-stride loops


def _grid(n):
    """Blocks for a grid-stride loop over n elements."""
    return min(max(1, (n + TPB - 1) // TPB), MAX_BLOCKS)


@cuda.jit(cache=True)
def _fill(a, value):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


def _full(shape, value, dtype):
    a = cuda.device_array(shape, dtype)
    if a.size:
        _fill[_grid(a.size), TPB](a.reshape(a.size), value)
    return a


def _dcopy(a):
    """A device copy of a device array (an output that is an input)."""
    if not hasattr(a, "copy_to_host"):
        return a
    b = cuda.device_array(a.shape, a.dtype)
    b.copy_to_device(a)
    return b
'''


def generate(graph, labels=None, simulator=True, capability=None):
    """(module source, constant arguments, fresh sizes, plan, writer) of `graph` on the cuda target."""
    writer = CudaWriter(graph, labels=labels)
    where = "simulator" if simulator else f"cc {capability[0]}.{capability[1]}"
    target_line = (f'TARGET = "cuda {where}"  # part of the cache key: a kernel per target\n'
                   f"SIMULATOR = {bool(simulator)}\n"
                   f"TPB = {4 if simulator else 256}  # threads per block")
    source = writer.write_module(target_line)
    return source, writer.const_args, writer.plan.fresh, writer.plan, writer


# --- library calls: primitive name -> lower(node, out, ins, writer) (driver code), and the kernels
# and launchers (host functions) that code calls, defined in the module when used -------------------
def _sizes(ctx, node, axes):
    return " * ".join(ctx.size(node, a) for a in axes) or "1"


def _lower_take(node, out, ins, ctx):
    x, idx = node.inputs
    axis = node.params["axis"]
    ctx.library_kernels.add("take")
    three = f"({_sizes(ctx, x, range(axis))}, {ctx.size(x, axis)}, {_sizes(ctx, x, range(axis + 1, x.ndim))})"
    return f"{out} = _take3({ins[0]}.reshape({three}), _index({ins[1]}), {ctx.shape_code(node)})"


def _lower_scatter_add(node, out, ins, ctx):
    g, idx = node.inputs
    axis = node.params["axis"]
    ctx.library_kernels.add("scatter_add")
    three = f"({_sizes(ctx, g, range(axis))}, {_sizes(ctx, idx, range(idx.ndim))}, " \
            f"{_sizes(ctx, g, range(axis + idx.ndim, g.ndim))})"
    return (f"{out} = _scatter_add3({ins[0]}.reshape({three}), _index({ins[1]}), {ctx.size(node, axis)}, "
            f"{ctx.shape_code(node)})")


def _lower_concatenate(node, out, ins, ctx):
    axis = node.params["axis"]
    ctx.library_kernels.add("concatenate")
    return f"{out} = _concatenate(({', '.join(ins)},), {axis}, {ctx.shape_code(node)}, {_dtype_code(node.dtype)})"


def _lower_matmul(node, out, ins, ctx):
    from jitad.backend.fusion import is_matrix_transpose
    ctx.library_kernels.add("matmul")
    batch = node.shape[:-2]
    operands = []
    for operand in node.inputs:
        transposed = operand.id not in ctx.ready and is_matrix_transpose(operand)
        code = ctx.whole_name(operand.inputs[0] if transposed else operand)
        rows = ctx.size(operand, operand.ndim - 2)
        cols = ctx.size(operand, operand.ndim - 1)
        if operand.ndim == 2:
            three, batched = f"(1, {cols}, {rows})" if transposed else f"(1, {rows}, {cols})", 0
        elif tuple(operand.shape[:-2]) == tuple(batch):
            three, batched = f"({_sizes(ctx, operand, range(operand.ndim - 2))}, {rows}, {cols})", 1
        else:
            raise CudaUnsupportedError("matmul", f" (batch axes broadcast partially: {operand.shape} in a product "
                                                 f"of shape {node.shape})")
        operands.append((f"{code}.reshape({three})", batched, int(transposed)))
    (a, ab, ta), (b, bb, tb) = operands
    return (f"{out} = _matmul({a}, {b}, {ab}, {bb}, {ta}, {tb}, {_sizes(ctx, node, range(node.ndim - 2))}, "
            f"{ctx.shape_code(node)}, {_dtype_code(node.dtype)})")


def _lower_cumsum(node, out, ins, ctx):
    (x,) = node.inputs
    axis = node.params["axis"]
    ctx.library_kernels.add("cumsum")
    three = f"({_sizes(ctx, x, range(axis))}, {ctx.size(x, axis)}, {_sizes(ctx, x, range(axis + 1, x.ndim))})"
    return f"{out} = _cumsum3({ins[0]}.reshape({three}), {ctx.shape_code(node)}, {_dtype_code(node.dtype)})"


def _lower_argsort(node, out, ins, ctx):
    (x,) = node.inputs
    ctx.library_kernels.add("argsort")
    last = ctx.size(x, x.ndim - 1) if x.ndim else "1"
    rows = _sizes(ctx, x, range(x.ndim - 1))
    return f"{out} = _argsort_rows({ins[0]}.reshape(({rows}, {last})), {ctx.shape_code(node)})"


LOWERINGS = {take_p: _lower_take, scatter_add_p: _lower_scatter_add, concatenate_p: _lower_concatenate,
             matmul_p: _lower_matmul, cumsum_p: _lower_cumsum, argsort_p: _lower_argsort}

LIBRARY_KERNELS = {
    "index": '''
def _index(idx):
    """An index array on the device, 1-D (a 0-d index is one element)."""
    if hasattr(idx, "copy_to_host"):
        return idx.reshape(idx.size)
    return cuda.to_device(np.asarray(idx, np.int64).reshape(-1))''',
    "take": '''
@cuda.jit(cache=True)
def _take3_kernel(x, idx, out):
    """out[p, j, q] = x[p, idx[j], q] (negative indices wrap like NumPy): one thread per element."""
    n, J, Q = x.shape[1], idx.shape[0], x.shape[2]
    for t in range(cuda.grid(1), out.shape[0] * J * Q, cuda.gridsize(1)):
        q = t % Q
        j = (t // Q) % J
        p = t // (Q * J)
        k = idx[j]
        if k < 0:
            k += n
        out[p, j, q] = x[p, k, q]


def _take3(x3, idx, shape):
    out = cuda.device_array((x3.shape[0], idx.shape[0], x3.shape[2]), x3.dtype)
    if out.size:
        _take3_kernel[_grid(out.size), TPB](x3, idx, out)
    return out.reshape(shape)''',
    "scatter_add": '''
@cuda.jit(cache=True)
def _scatter_add3_kernel(g, idx, out):
    """out[p, idx[j], q] += g[p, j, q]: atomic, since indices may repeat."""
    n, J, Q = out.shape[1], idx.shape[0], g.shape[2]
    for t in range(cuda.grid(1), g.shape[0] * J * Q, cuda.gridsize(1)):
        q = t % Q
        j = (t // Q) % J
        p = t // (Q * J)
        k = idx[j]
        if k < 0:
            k += n
        cuda.atomic.add(out, (p, k, q), g[p, j, q])


def _scatter_add3(g3, idx, size, shape):
    out = _full((g3.shape[0], size, g3.shape[2]), 0, g3.dtype)
    if g3.size:
        _scatter_add3_kernel[_grid(g3.size), TPB](g3, idx, out)
    return out.reshape(shape)''',
    "concatenate": '''
@cuda.jit(cache=True)
def _copy_into_kernel(src, dst, offset):
    """dst[p, offset + j, q] = src[p, j, q]: one thread per element of src."""
    J, Q = src.shape[1], src.shape[2]
    for t in range(cuda.grid(1), src.shape[0] * J * Q, cuda.gridsize(1)):
        q = t % Q
        j = (t // Q) % J
        p = t // (Q * J)
        dst[p, offset + j, q] = src[p, j, q]


def _concatenate(parts, axis, shape, dtype):
    out = cuda.device_array(shape, dtype)
    before = int(np.prod(shape[:axis], dtype=np.int64))
    after = int(np.prod(shape[axis + 1:], dtype=np.int64))
    out3 = out.reshape((before, shape[axis], after))
    offset = 0
    for part in parts:
        n = part.shape[axis]
        if part.size:
            _copy_into_kernel[_grid(part.size), TPB](part.reshape((before, n, after)), out3, offset)
        offset += n
    return out''',
    "cumsum": '''
@cuda.jit(cache=True)
def _cumsum3_kernel(x, out):
    """out[p, :, q] = the running sum of x[p, :, q], in order (NumPy's): one thread per (p, q)."""
    J, Q = x.shape[1], x.shape[2]
    for t in range(cuda.grid(1), x.shape[0] * Q, cuda.gridsize(1)):
        q = t % Q
        p = t // Q
        acc = 0
        for j in range(J):
            acc += x[p, j, q]
            out[p, j, q] = acc


def _cumsum3(x3, shape, dtype):
    out = cuda.device_array(x3.shape, dtype)
    if out.size:
        _cumsum3_kernel[_grid(x3.shape[0] * x3.shape[2]), TPB](x3, out)
    return out.reshape(shape)''',
    "argsort": '''
@cuda.jit(cache=True)
def _argsort_kernel(x, out):
    """A stable argsort of each row (NaN last, as NumPy's): an insertion sort, one thread per row."""
    n = x.shape[1]
    for r in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        for i in range(n):
            v = x[r, i]
            j = i - 1
            while j >= 0:
                w = x[r, out[r, j]]
                if v < w or (w != w and v == v):  # v sorts before w (equal keys keep their order)
                    out[r, j + 1] = out[r, j]
                    j -= 1
                else:
                    break
            out[r, j + 1] = i


def _argsort_rows(x2, shape):
    out = cuda.device_array(x2.shape, np.int64)
    if out.size:
        _argsort_kernel[_grid(x2.shape[0]), TPB](x2, out)
    return out.reshape(shape)''',
    "matmul": '''
@cuda.jit(cache=True)
def _matmul_kernel(a, b, out, ab, bb, ta, tb):
    """out[r, i, j] = sum_k A[i, k] B[k, j] of batch r (A = a[r] or its transpose, batch index 0 when the
    operand has no batch axis): one thread per output element, the k loop in the thread."""
    M, N = out.shape[1], out.shape[2]
    K = a.shape[1] if ta else a.shape[2]
    for t in range(cuda.grid(1), out.shape[0] * M * N, cuda.gridsize(1)):
        j = t % N
        i = (t // N) % M
        r = t // (M * N)
        ra, rb = r * ab, r * bb
        acc = 0.0
        for k in range(K):
            x = a[ra, k, i] if ta else a[ra, i, k]
            y = b[rb, j, k] if tb else b[rb, k, j]
            acc += x * y
        out[r, i, j] = acc


def _matmul(a3, b3, ab, bb, ta, tb, batch, shape, dtype):
    M = a3.shape[2] if ta else a3.shape[1]
    N = b3.shape[1] if tb else b3.shape[2]
    out = cuda.device_array((batch, M, N), dtype)
    if out.size:
        _matmul_kernel[_grid(out.size), TPB](a3, b3, out, ab, bb, ta, tb)
    return out.reshape(shape)''',
}


__all__ = ["generate", "CudaWriter", "CudaUnsupportedError"]
