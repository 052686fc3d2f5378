"""Codegen: a fusion plan becomes the readable source of one @numba.njit kernel.

The source reads as if written by hand. A header maps each argument to what the caller
passed (`# x0: input 0 (32, 8) float64`). Every computing line carries a comment naming its
node by its number in the graph (`Graph.numbering`, the numbers `explain` uses) with the
primitive's parameters: `# %6 = power_scalar(%4, exponent=2)`. Names come from the graph:
`tanh3` is node %3's value, `matmul2_i` an element of the array `matmul2`, inputs are
`x0, x1, ...` and constants `c0, c1, ...`; a `_2` suffix appears only where one node is
computed twice (at another index, or in another nest). Loops are explicit; fused loops hold no
NumPy temporaries; a value a nest stores is written where it is computed (no copies);
outputs are allocated once; identical constants are one argument; only the modules the body
uses are imported. Sizes come from the input arrays (or the `dims` argument), never from
literals, and non-trivial constants are arguments, so the source is shared by every size and
every closure with the same structure (the disk cache keys a kernel by the hash of its code
without comments, `cache.source_hash`).

A loop nest's statements are collected first and written out once every nest is known, so the
choice of the vectorisable exp/expm1/tanh (`VECTORISABLE_CALLS`) is made while emitting, per
node for the whole kernel: a node whose inner loop can vectorise in some nest takes the fast
version in every nest (a max's tie mask compares a value recomputed in two nests), all others
libm.
"""
import hashlib
import re
import weakref

import numpy as np

from jitad.backend.fusion import LibraryCall, is_matrix_transpose, plan as make_plan
from jitad.ir import const_p
from jitad.primitives.structural import dynamic_slice_p, reshape_p, slice_p
from jitad.ixexpr import Ix, index_tuple
from jitad.profiling import phase

_LITERALS = {0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0}
# target "parallel": a loop nest of at least this many elements runs on several threads; below it
# the thread launch (~10 us) costs more than it saves (asv_benchmarks/bench_threads.py)
PARALLEL_ELEMENTS = 1 << 16
# its outer loop runs as at most this many chunks (numba.prange shares them out among the threads):
# a fixed count, so a result does not depend on the number of threads, and one that 1, 2, 3, 4, 5,
# 6, 8, 10, 12, 15, 16, 20, 24, ... threads divide evenly
PARALLEL_CHUNKS = 240
_INDEX_VAR = re.compile(r"\bi(\d+)\b")
_SUBSCRIPT = re.compile(r"\b[A-Za-z_]\w*\[")
_SHAPE = re.compile(r"\b\w+\.shape\[\d+\]")
_AFFINE_IN_I0 = re.compile(r"[\s\d+\-*/%()]*")


def unsigned_outer_index(text):
    """`text` with each subscript whose first index is arithmetic on the outer loop's `i0` (and
    shapes and integer literals, nothing read from an array) cast to np.uint64: `x0[1 + i0]` ->
    `x0[np.uint64(1 + i0)]`. In a chunk `for i0 in range(lo, hi)` of a parallel nest LLVM cannot
    prove i0 >= 0, so Numba's negative-index wraparound stays in the loop and a one-dimensional
    nest's loads and stores vectorise as gathers and scatters (a Rosenbrock gradient at 2^20: 2.9
    ms on one thread against 0.65 ms serial; 0.77 ms with the cast, /tmp/s15/patchsrc.py); an
    unsigned index has no wraparound. The generated indices are in bounds where they are read (a
    pad's reads sit under its bounds test), so none is negative."""
    out, pos = [], 0
    for m in _SUBSCRIPT.finditer(text):
        if m.start() < pos:
            continue
        depth, end = 0, m.end()
        while end < len(text):
            c = text[end]
            if c in "([":
                depth += 1
            elif c in ")]":
                if depth == 0:
                    break
                depth -= 1
            elif c == "," and depth == 0:
                break
            end += 1
        first = text[m.end():end]
        bare = _SHAPE.sub("0", first)
        if re.search(r"\bi0\b", bare) and _AFFINE_IN_I0.fullmatch(re.sub(r"\bi0\b", "0", bare)):
            out.append(text[pos:m.end()] + f"np.uint64({first})")
            pos = end
    return "".join(out) + text[pos:]
_LIBRARY_CALL = re.compile(r"\b(np|math|K)\.(\w+)\(")
# calls an inner loop may hold and still vectorise
_VECTOR_SAFE = {"sqrt", "abs", "floor", "ceil", "trunc", "rint", "sign", "copysign", "isnan", "isfinite", "isinf",
                "float64", "float32", "bool_", "int64", "exp", "expm1", "tanh", "fexp", "fexpm1", "ftanh", "radd", "rmul",
                "rmax", "rmin", "nmax", "nmin"}
# vectorisable versions of libm calls (jitad.backend.kernels_vecmath), next to the primitives' own
# VECTORISABLE_CALLS; a call with one keeps its loop vectorisable
_VECMATH_CALLS = {f"np.{name}(": f"K.f{name}(" for name in (
    "sin", "cos", "tan", "log", "log1p", "log2", "log10", "exp2", "arcsin", "arccos", "arctan", "arctan2", "sinh",
    "cosh", "arcsinh", "arccosh", "arctanh", "cbrt", "hypot")}
_VECMATH_CALLS["K.log_expit("] = "K.flog_expit("
_VECMATH_CALLS["K.erf("] = "K.ferf("
# a float32 sin/cos/tan node (its argument a float32 value) takes the cheaper reduction of K.fsin32, ...,
# and exp/expm1/tanh/log/log1p the polynomials a float32 result needs (K.fexp32, ...: 2-9x faster)
_FLOAT32_CALLS = {f"K.f{name}(": f"K.f{name}32(" for name in ("sin", "cos", "tan", "exp", "tanh", "log", "log1p")}
_FLOAT32_CALLS["K.fexpm1("] = "K.fexpm1_32("
# the templates whose one call takes the node's own float32 operand (np.sin(x), not sinc's np.sin(np.pi * x))
_FLOAT32_TEMPLATES = {f"np.{name}({{0}})" for name in ("sin", "cos", "tan", "exp", "expm1", "tanh", "log", "log1p")}
_VECTOR_SAFE |= {fast[2:-1] for fast in (*_VECMATH_CALLS.values(), *_FLOAT32_CALLS.values())} | {"fpow"}
# a float power `(a ** b)` (power, power_scalar) takes K.fpow(a, b) where its loop vectorises
_POWER = re.compile(r"^\((.+) \*\* (.+)\)$")
# the modules a kernel may use, imported only when its body does
_MODULES = (("np", "import numpy as np"), ("K", "from jitad.backend import kernels as K"),
            ("KL", "from jitad.backend import kernels_linalg as KL"),
            ("KB", "from jitad.backend import kernels_bessel as KB"))
# a compiled function's K and KL call their array-level helpers by address (jitad/backend/calls.py)
_BY_ADDRESS = {"K": 'K = calls.namespace("K", __file__)', "KL": 'KL = calls.namespace("KL", __file__)'}


def _imports(code, jit):
    """The import statements `code` needs; in a Numba-compiled module (`jit`), K and KL are the
    namespaces of jitad.backend.calls (their array-level helpers called by address, not linked)."""
    used = [(alias, statement) for alias, statement in _MODULES if re.search(rf"\b{alias}\.", code)]
    if not jit:
        return [statement for _, statement in used]
    out = [statement for alias, statement in used if alias not in _BY_ADDRESS]
    by_address = [_BY_ADDRESS[alias] for alias, _ in used if alias in _BY_ADDRESS]
    out.insert(1 if out and out[0].startswith("import numpy") else 0, "import numba")
    return out + (["from jitad.backend import calls"] + by_address if by_address else [])


def _param_text(value):
    if isinstance(value, np.ndarray):
        return f"<array {value.dtype.name}{list(value.shape)}>"
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def describe(node, number, params=True):
    """The `%3 = sin(%1)` comment of a node (`number(node)` is a node's number), with its
    parameters unless `params` is false."""
    args = [f"%{number(i)}" for i in node.inputs]
    if params:
        args += [f"{k}={_param_text(v)}" for k, v in node.params.items()]
    return f"%{number(node)} = {node.prim.name}({', '.join(args)})"


_DTYPE_CODES = {}


def _integer_bound(init, dtype):
    """A reduction's start in an integer dtype: a max/min's +-inf has no integer value (cast, it is
    garbage), so integers start from their dtype's bounds; a sum's 0.0 and a product's 1.0 are the
    integers 0 and 1 (a float start made Numba accumulate an integer sum in float64: its value then
    indexed np.take, which Numba refuses)."""
    if np.dtype(dtype).kind in "iu":
        if init in ("np.inf", "-np.inf"):
            info = np.iinfo(dtype)
            return str(int(info.max if init == "np.inf" else info.min))
        if init in ("0.0", "1.0"):
            return init[0]
    return init


def _dtype_code(dtype):
    code = _DTYPE_CODES.get(dtype)
    if code is None:
        name = np.dtype(dtype).name
        code = _DTYPE_CODES[dtype] = f"np.{name}" if name != "bool" else "np.bool_"
    return code


_FAST_CALLS = []
# a float reduction's step in the form LLVM vectorises: a sum or product through an add or multiply
# that may be reassociated (kernels_vecmath.radd; NaN and inf unchanged), a max or min through
# llvm.maximum/minimum, NaN if either operand is (Python's max/min drop a NaN operand; NumPy's don't)
_FLOAT_STEPS = {"{acc} + {x}": "K.radd({acc}, {x})", "{acc} * {x}": "K.rmul({acc}, {x})",
                "max({acc}, {x})": "K.rmax({acc}, {x})", "min({acc}, {x})": "K.rmin({acc}, {x})"}


def _vectorisable_calls():
    if not _FAST_CALLS:
        from jitad.primitives.elementwise import VECTORISABLE_CALLS
        _FAST_CALLS.extend(VECTORISABLE_CALLS.items())
        _FAST_CALLS.extend(_VECMATH_CALLS.items())
    return _FAST_CALLS


def uses_dims(source):
    """Whether the kernel in `source` takes the `dims` argument (sizes not read from any input)."""
    signature = re.search(r"^def kernel\(([^)]*)\)", source, re.M)
    return signature is not None and "dims" in signature.group(1).split(", ")


def _scalar_argument(value):
    """A 0-d constant as a kernel argument: a Python float for float64 (the cheapest to pass)."""
    return float(value) if value.dtype == np.float64 else value[()]


def _literal(value):
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (int, np.integer)):
        return repr(int(value))
    value = float(value)
    if value != value:  # a NaN constant (np.where(c, x, np.nan)): `nan` is no name in a kernel
        return "np.nan"
    if value == np.inf:
        return "np.inf"
    if value == -np.inf:
        return "-np.inf"
    return repr(value)


# a float literal in generated code (not np.pi: sinc's np.sin(np.pi * x) is a float64 on purpose)
_FLOAT_LITERAL = re.compile(r"(?<![\w.])(\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+|np\.inf|np\.nan)(?![\w.(])")


def _float32_literal(match):
    return f"np.float32({match.group(1)})"


def _is_literal_value(value):
    return value.dtype.kind in "biu" or float(value.reshape(())) in _LITERALS or not np.isfinite(value.reshape(()))


class _Constant:
    """A constant that is no node of the graph (a loop body's), as `_const_argument` reads it."""

    def __init__(self, value):
        self.value = value


class _Stmt:
    """One statement of a loop nest, `lhs = rhs` (or `rhs` alone: a branch), with its comment.
    `fast` is rhs with the vectorisable exp/expm1/tanh, taken when node `node` is in the
    kernel's fast set; `blocks`: the statement keeps its loop from vectorising (a branch, a
    scalar accumulator, a libm call)."""

    __slots__ = ("lhs", "rhs", "comment", "fast", "node", "blocks", "indent")

    def __init__(self, lhs, rhs, comment=None, fast=None, node=None, blocks=False):
        self.lhs, self.rhs, self.comment = lhs, rhs, comment
        self.fast, self.node, self.blocks, self.indent = fast, node, blocks, 0

    def code(self, fast_nodes):
        rhs = self.fast if self.fast is not None and self.node in fast_nodes else self.rhs
        return "    " * self.indent + (rhs if self.lhs is None else f"{self.lhs} = {rhs}")


class _Function:
    """The names of one generated function: the kernel (or the split form's driver), whose
    nodes are numbered as in the graph, or a split nest kernel, whose nodes are numbered by
    first use and whose arguments are the driver's names it reads, named by kind and position
    (`x0`, `c0`, `v0`, `o0`, `s0`, `k0`, `dims`): the same nest anywhere (another step of a
    loop, another program) has the same source, hence one compilation."""

    def __init__(self, numbers=None):
        self.numbers = numbers if numbers is not None else {}
        self.fixed = numbers is not None
        self.taken = set()
        self.params, self.args, self._param_of, self._counts = [], [], {}, {}
        self.uses_dims = False  # the kernel's: some function reads `dims`

    def number(self, node):
        if self.fixed:
            return self.numbers[node.id]
        return self.numbers.setdefault(node.id, len(self.numbers))

    def unique(self, base):
        """`base`, or `base_2`, `base_3`, ... when it is taken."""
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def outer(self, name, kind):
        """The driver's `name` as this function reads it (a nest kernel: its parameter)."""
        if self.fixed:
            return name
        param = self._param_of.get(name)
        if param is None:
            if kind == "dims":
                param = "dims"
            else:
                count = self._counts.get(kind, 0)
                self._counts[kind] = count + 1
                param = f"{kind}{count}"
            self._param_of[name] = param
            self.taken.add(param)
            self.params.append(param)
            self.args.append(name)
        return param


class _Nest:
    """A loop nest's statements by loop level, written out at the end (`lines`)."""

    def __init__(self, step, function, bounds, rank, header):
        self.step, self.function, self.bounds, self.rank, self.header = step, function, bounds, rank, header
        self.levels = [[] for _ in range(rank + 1)]  # statements placed inside loop a-1
        self.after = [[] for _ in range(rank + 1)]   # statements after loop a-1 closes
        self.before = []                             # allocations, before the loops
        self.roots = []                              # split: the nest kernel's names of its roots
        # parallel: the outer loop runs in chunks, one per thread (`_parallel_lines`); a reduction
        # over it (one scalar) keeps a partial result per chunk, combined afterwards in chunk order
        self.parallel = False
        self.partials = []    # (accumulator, its init statement, init, combine, dtype code)
        # a reduction over the outer loop into an array (a sum over axis 0): a copy of the array per
        # chunk, combined in chunk order: (name, init, combine, dtype code, size codes, its size)
        self.partial_arrays = []

    def vectorisable(self):
        """Nodes whose exp/expm1/tanh may take the vectorisable version: those in an inner loop
        that can vectorise at all (no other library call, no branch, no scalar accumulator)."""
        inner = self.levels[self.rank] if self.rank else []
        if not inner or any(s.blocks for s in inner):
            return set()
        return {s.node for s in inner if s.fast is not None}

    def lines(self, fast_nodes):
        """(text, comment, depth) of the nest's lines, depth relative to the nest."""
        out = [(self.header, None, 0)] if self.header else []
        out += [(s.code(fast_nodes), s.comment, 0) for s in self.before]
        if self.parallel:
            self._parallel_lines(fast_nodes, out)
        else:
            self._level(0, fast_nodes, out)
        return out

    def _parallel_lines(self, fast_nodes, out):
        """The outer loop split into PARALLEL_CHUNKS (or n) contiguous chunks run by `numba.prange`:
        every root is written at its own outer index (disjoint), each scalar reduction over the
        outer loop accumulates a partial per chunk (its inner loop vectorises as before) and each
        reduction over it into an array a copy of the array per chunk; both are combined in chunk
        order after the chunks (so NaN and inf propagate as in one loop)."""
        names = self.function
        chunk, count = names.unique("chunk"), names.unique("nchunks")
        private = {acc: (names.unique(f"{acc}_t"), names.unique(f"{acc}_p")) for acc, *_ in self.partials}
        copies = {name: names.unique(f"{name}_p") for name, *_ in self.partial_arrays}
        inits = {id(stmt) for _, stmt, *_ in self.partials}
        n = self.bounds[0]
        out += [(s.code(fast_nodes), s.comment, 0) for s in self.levels[0] if id(s) not in inits]
        out.append((f"{count} = min({n}, {PARALLEL_CHUNKS})", None, 0))
        out += [(f"{private[acc][1]} = np.empty({count}, {dtype})", None, 0) for acc, _, _, _, dtype in self.partials]
        out += [(f"{copies[name]} = np.full(({count}, {', '.join(sizes)}), {init}, {dtype})", None, 0)
                for name, init, _, dtype, sizes, _ in self.partial_arrays]
        out.append((f"for {chunk} in numba.prange({count}):", "a chunk per thread", 0))
        out += [(f"{private[acc][0]} = {init}", None, 1) for acc, _, init, _, _ in self.partials]
        out.append((f"for i0 in range({chunk} * {n} // {count}, ({chunk} + 1) * {n} // {count}):",
                    "unsigned indices: no negative-index test in the loop" if self.rank == 1 else None, 1))
        inner = []
        self._level(1, fast_nodes, inner)
        local = {acc: private[acc][0] for acc in private}
        local.update({f"{name}[": f"{copies[name]}[{chunk}, " for name in copies})
        rename = re.compile(r"\b(" + "|".join(re.escape(name) + ("" if name.endswith("[") else r"\b")
                                              for name in local) + ")") if local else None
        for text, comment, depth in inner:
            text = rename.sub(lambda m: local[m.group(1)], text) if rename else text
            out.append((unsigned_outer_index(text) if self.rank == 1 else text, comment, depth + 1))
        out += [(f"{private[acc][1]}[{chunk}] = {private[acc][0]}", None, 1) for acc, *_ in self.partials]
        for acc, _, init, combine, _ in self.partials:
            out.append((f"{acc} = {init}", None, 0))
            out.append((f"for {chunk} in range({count}):", None, 0))
            out.append((f"{acc} = {combine.format(acc=acc, x=f'{private[acc][1]}[{chunk}]')}", None, 1))
        for name, _, combine, _, sizes, _ in self.partial_arrays:
            out.append((f"for {chunk} in range({count}):", None, 0))
            for a, size in enumerate(sizes):
                out.append((f"for i{a} in range({size}):", None, a + 1))
            element = ", ".join(f"i{a}" for a in range(len(sizes)))
            out.append((f"{name}[{element}] = " + combine.format(acc=f"{name}[{element}]",
                                                                 x=f"{copies[name]}[{chunk}, {element}]"),
                        None, len(sizes) + 1))
        out += [(s.code(fast_nodes), s.comment, 0) for s in self.after[1]]

    def _level(self, level, fast_nodes, out):
        out += [(s.code(fast_nodes), s.comment, level) for s in self.levels[level]]
        if level < self.rank:
            out.append((f"for i{level} in range({self.bounds[level]}):", None, level))
            self._level(level + 1, fast_nodes, out)
            out += [(s.code(fast_nodes), s.comment, level) for s in self.after[level + 1]]


class KernelWriter:
    """Writes the kernel for one plan. Names: x* inputs, c* constants, `<prim><number>` values."""

    def __init__(self, graph, split=False, labels=None, parallel=False, donated=()):
        self.graph = graph
        # inputs (positions) the caller lends: a loop may write into them in place (`may_take`)
        self.donated = {graph.inputs[k].id for k in donated}
        self.owned = set()        # views of arrays a loop took over (`alias`): its only reader may take them
        self.aliases = {}         # library call id -> [(start, size, name)]: elements read from `name`
        self.made = set()         # library calls whose value is an array their lowering allocates (a loop's)
        self._readers = None
        self.parallel = parallel  # target "parallel": large loop nests run on several threads
        # split: each loop nest is a kernel of its own, in canonical form (its arrays, sizes and
        # slice starts are arguments), called from a plain Python driver; a nest repeated by a
        # Python loop (each step of an RNN, each mixture component) is then compiled once
        self.split = split
        self.labels = labels
        self.nests = []           # split: the distinct nest kernels' sources, in first-use order
        self.calls = []           # split: (nest index, driver names passed) per call
        self.nest_numbers = []    # split: (nest index, {its node number: the graph's}) per call
        self.argument_views = set()  # rows of an argument read in place (`_view`): of the argument's layout
        self.start_values = {}    # split: start argument name -> its code in the driver
        self._start_names = {}
        self._nest_index = {}     # split: a nest's code -> its index in `nests`
        self.numbers = graph.numbering()  # the numbers `explain` shows
        self.kernel = self.fn = _Function(self.numbers)
        self.names = {}           # node id -> the kernel's (driver's) name of its whole value
        self.kinds = {}           # node id -> kind of that name (x, c, v, o, s), for nest arguments
        for k, node in enumerate(graph.inputs):
            self.names[node.id] = self.kernel.unique(f"x{k}")
            self.kinds[node.id] = "x"
        # constants that are arguments, named (c0, c1, ...) when first read; identical ones share one
        consts = [n for n in graph.nodes if n.prim is const_p and n.id not in self.names and not self._is_literal(n)]
        self.const_ids = {n.id for n in consts}
        self.const_args, self.const_values, self._const_groups, self._const_nodes = [], {}, {}, {}
        # the plan's size codes read `<token>.shape[a]`; `dim_code` reads tokens as names
        self._tokens = {}
        arg_tokens = {}
        for node in list(graph.inputs) + consts:
            if node.ndim > 0:
                token = self.names.get(node.id) or f"C{node.id}"
                arg_tokens[node.id] = token
                self._tokens[token] = node
        with phase("fusion"):
            self.plan = make_plan(graph, arg_tokens, split)
        self.dims = self.plan.dims
        self.ready = set(self.names) | self.const_ids  # nodes whose whole value is stored and can be read
        self.contiguous = set(self.const_ids)          # of those, the ones known C-contiguous
        self.uses = {}
        self.helpers = {}         # name -> definition of a function the kernel calls (a loop's body)
        self.body = []            # the kernel's steps: (text, comment) lines and _Nest objects
        self.nest = None

    @staticmethod
    def _is_literal(node):
        return node.ndim == 0 and _is_literal_value(node.value)

    # --- names ----------------------------------------------------------------------------
    def value_name(self, node, function):
        short = node.prim.short  # declared with the primitive (`mul`, `sum`, `bcast`)
        number = function.number(node)
        return function.unique(f"{short}_{number}" if short[-1].isdigit() else f"{short}{number}")

    def describe(self, node):
        # a nest kernel's comments leave out parameters: they may differ between the calls that
        # share it (the starts of an RNN step's slice are its arguments)
        return describe(node, self.fn.number, params=self.fn.fixed)

    def whole_name(self, node):
        """The kernel's (driver's) name of node's whole value; a constant's argument is made when
        it is first read, and an identical constant's argument is reused."""
        name = self.names.get(node.id)
        if name is None:
            name = self.names[node.id] = self._const_argument(node)
            self.kinds[node.id] = "c"
            self._const_nodes.setdefault(name, []).append(self.numbers[node.id])
        return name

    def _const_argument(self, node):
        value = node.value
        group = self._const_groups.setdefault((value.dtype.str, value.shape), [])
        for other, name in group:
            if other is value or other.tobytes() == value.tobytes():
                return name
        name = self.kernel.unique(f"c{len(self.const_args)}")
        group.append((value, name))
        argument = np.ascontiguousarray(value) if value.ndim else _scalar_argument(value)
        self.const_args.append(argument)
        self.const_values[name] = argument
        return name

    def constant(self, value):
        """The argument name of a constant a library call's lowering reads (a loop body's constant)."""
        name = self._const_argument(_Constant(np.asarray(value)))
        self._const_nodes.setdefault(name, [])
        return name

    def call_subkernel(self, graph, args, donated=()):
        """Code calling `graph` compiled as an njit function of its own (a loop's body), defined once
        in this kernel's module before the kernel, on the argument codes `args` (0-d values as
        scalars); it returns the tuple of the graph's outputs. Its constants become arguments of
        this kernel. `donated`: positions of arrays the caller lends it (it reads them nowhere after
        the call): the function may write into them and return them."""
        name, definition, values, fresh = subkernel(graph, tuple(donated))
        self.helpers.setdefault(name, definition)
        extra = [self.constant(v) for v in values]
        if fresh is not None:
            extra.append(repr(tuple(int(d) for d in fresh)))
        return f"{name}({', '.join(list(args) + extra)})"

    def read_name(self, node, function=None):
        """Node's whole value as `function` (default: the one being written) reads it."""
        name = self.whole_name(node)
        return (function or self.fn).outer(name, self.kinds[node.id])

    # --- arrays a loop updates in place (jitad.primitives.control: a running sum of cotangents) ----
    def readers(self, node):
        """(consumer, position) pairs reading `node`'s value in the graph."""
        if self._readers is None:
            self._readers = {}
            for n in self.graph.nodes:
                for k, i in enumerate(n.inputs):
                    self._readers.setdefault(i.id, []).append((n, k))
        return self._readers.get(node.id, [])

    def may_take(self, node, position, start, size):
        """Whether library call `node` may take over the array of its input `position` (write into it
        in place) and leave elements start ... start + size - 1 of its own value unwritten, read from
        that array instead (`alias`). Yes when nothing else reads that array: it is an input the caller
        lent (`donated`) or a view of an array another call took over (`owned`), read by `node` alone,
        and not an output; and every read of those elements is their view, whole (`aliasable`)."""
        operand = node.inputs[position]
        if self.split or operand.id not in self.donated | self.owned:
            return False
        if [(n.id, k) for n, k in self.readers(operand)] != [(node.id, position)]:
            return False
        return all(o.id != operand.id for o in self.graph.outputs) and self.aliasable(node, start, size)

    def aliasable(self, node, start, size):
        """Whether elements start ... start + size - 1 of `node`'s flat value are read only as one
        slice of exactly them (reshaped or not), the one root of its loop nest: `_view` then writes
        it as a view of the array `alias` names."""
        outputs = {o.id for o in self.graph.outputs}
        if not self.views or node.id in outputs:
            return False
        for reader, _ in self.readers(node):
            if reader.prim is not slice_p or reader.ndim != 1 or reader.params["steps"] != (1,):
                return False
            first, n = reader.params["starts"][0], reader.shape[0]
            if first + n <= start or first >= start + size:
                continue  # other elements (another carry)
            if (first, n) != (start, size):
                return False
            root, after = reader, self.readers(reader)
            if len(after) == 1 and after[0][0].prim is reshape_p and reader.id not in outputs:
                root, after = after[0][0], []
            if after or not any(not isinstance(step, LibraryCall) and [r.id for r in step.roots] == [root.id]
                                for step in self.plan.steps):
                return False
        return True

    def alias(self, node, start, size, name):
        """Elements start ... start + size - 1 of library call `node`'s value are the array `name`
        (C-contiguous, of any shape), which the call took over (`may_take`)."""
        self.aliases.setdefault(node.id, []).append((start, size, name))

    # --- sizes ----------------------------------------------------------------------------
    def dim_code(self, dim, function=None):
        function = function or self.fn
        dim = self.dims.canon(dim)
        if isinstance(dim, int):
            return str(dim)
        root, off = dim
        code = self.dims.code[root]
        if code.startswith("dims["):
            self.kernel.uses_dims = True
            code = function.outer("dims", "dims") + code[4:]
        else:
            token, _, rest = code.partition(".")
            code = f"{self.read_name(self._tokens[token], function)}.{rest}"
        return code if off == 0 else f"({code} {'+' if off > 0 else '-'} {abs(off)})"

    def size(self, node, axis):
        return self.dim_code(self.plan.shapes[node.id][axis])

    def start(self, node, axis):
        start = self.plan.starts.get((node.id, axis), node.params["starts"][axis])
        if not self.split:
            return self.dim_code(start)
        code = self.dim_code(start, self.kernel)
        if code == "0":
            return code
        # the driver computes it and passes it: the nests of a loop's steps stay one kernel
        name = self._start_names.get((node.id, axis))
        if name is None:
            name = self._start_names[(node.id, axis)] = f"k{len(self.start_values)}"
            self.start_values[name] = code
        return self.fn.outer(name, "k")

    def is_contiguous(self, node, code):
        """Whether `code` reads `node` as an array this kernel knows is C-contiguous: a loop
        nest's output (np.empty), a constant argument (made contiguous) or a matrix product."""
        return code == self.names.get(node.id) and node.ndim > 0 and \
            (node.id in self.contiguous or (node.prim.kind != "leaf" and node.prim.contiguous_output))

    def shape_code(self, node):
        sizes = [self.size(node, a) for a in range(node.ndim)]
        return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"

    # --- the kernel -----------------------------------------------------------------------
    def write(self):
        outputs = {o.id for o in self.graph.outputs}
        for step in self.plan.steps:
            if isinstance(step, LibraryCall):
                if not (self.views and self._rows_view(step.node, outputs)):
                    self.library_call(step.node)
            elif not (self.views and self._view(step, outputs)):
                self.loop_nest(step)
        # an output that is an input or a captured constant is copied: callers own their results
        outs = [f"{self.read_whole(o)}.copy()" if o.ndim and o.prim.kind == "leaf" else self.read_whole(o)
                for o in self.graph.outputs]
        # one array returned twice is copied: a loop may lend each of its carries to the next step
        outs = [f"{o}.copy()" if o in outs[:k] and g.ndim else o for k, (o, g) in enumerate(zip(outs, self.graph.outputs))]
        # a node takes the vectorisable exp/expm1/tanh in every nest if it can in one
        fast = set()
        for item in self.body:
            if isinstance(item, _Nest):
                fast |= item.vectorisable()
        lines = []
        for item in self.body:
            if not isinstance(item, _Nest):
                lines.append((item[0], item[1], 0))
            elif self.split:
                lines.append(self._nest_call(item, fast))
            else:
                lines += item.lines(fast)
        lines.append((f"return ({', '.join(outs)},)", None, 0))
        if self.split:
            lines = _released(lines)
        params = [self.names[n.id] for n in self.graph.inputs] + list(self.const_values)
        if self.kernel.uses_dims:
            params.append("dims")
        parallel = any(isinstance(item, _Nest) and item.parallel for item in self.body)
        return _function_source(params, self._header(), lines, jit=not self.split, helpers=self.helpers,
                                parallel=parallel)

    views = True  # a nest that only copies a contiguous block of a stored array is a view of it

    def _view(self, step, outputs):
        """Write `step` as a view when all it does is copy a contiguous block of a C-contiguous
        array a library call made (a loop's packed value read back, `scan[448:4032].reshape(16,
        16, 14)`), or rows a:b of an argument (`xs[500:]`, a loop's segment of its xs): no loop,
        no new array. Such arrays are never written after they are made while another value reads
        them (a lowering writes only into arrays it allocates, or takes over from their one reader:
        `may_take`), and a view is never a kernel output (callers own their results), but for the
        array a loop took over (`alias`: this kernel's, or lent to it by its caller). True when
        written so."""
        if len(step.roots) != 1 or not step.roots[0].ndim:
            return False
        root = step.roots[0]
        chain, node = [], root
        while node.id not in self.ready:
            if node.prim is reshape_p or _leading_slice(node):
                chain.append(node)
                node = node.inputs[0]
            else:
                return False
        if chain and node.id in self.aliases and self._alias_view(root, chain, node):
            return True
        if root.id in outputs or node.dtype != root.dtype:
            return False
        of_argument = self.kinds.get(node.id) == "x" or node.id in self.argument_views - self.owned
        if of_argument:
            # rows a:b of an argument (`xs[500:]`) or of a view of one: a view of the argument's layout
            if len(chain) != 1 or chain[0].prim is not slice_p:
                return False
        elif self.kinds.get(node.id) != "v" or node.id not in self.contiguous:
            return False
        code = self.read_name(node)
        for op in reversed(chain):
            if op.prim is slice_p:
                start = self.dim_code(self.plan.starts.get((op.id, 0), op.params["starts"][0]), self.kernel)
                code = f"{code}[{start}:{start} + {self.size(op, 0)}]" if start != "0" else f"{code}[:{self.size(op, 0)}]"
            else:
                code = f"{code}.reshape({self.shape_code(op)})"
        name = self.names[root.id] = self.value_name(root, self.kernel)
        (self.argument_views if of_argument else self.contiguous).add(root.id)
        first = chain[-1]
        if node.id in self.made and first.prim is slice_p and first.ndim == 1 and \
                self.aliasable(node, first.params["starts"][0], first.shape[0]):
            self.owned.add(root.id)  # the only read of those elements of an array a loop made: takeable
        self.kinds[root.id] = "v"
        self.ready.add(root.id)
        self.body.append((f"{name} = {code}", self.describe(root) + " (a view: no copy)"))
        return True

    def _alias_view(self, root, chain, node):
        """`root`, a slice of library call `node`'s value (reshaped or not) that is an array the call
        took over (`alias`): that array, reshaped. It may be an output: the array is this kernel's
        or one its caller lent it. A read of other elements is not a view of it (False)."""
        first = chain[-1]
        for start, size, name in self.aliases[node.id]:
            if first.prim is slice_p and first.ndim == 1 and (first.params["starts"][0], first.shape[0]) == (start, size):
                break
        else:
            return False
        code = f"{name}.reshape(({size},))"
        for op in reversed(chain[:-1]):
            code = f"{code}.reshape({self.shape_code(op)})"
        name = self.names[root.id] = self.value_name(root, self.kernel)
        self.owned.add(root.id)
        self.argument_views.add(root.id)  # C-contiguous, but of a type Numba may not know as C
        self.kinds[root.id] = "v"
        self.ready.add(root.id)
        self.body.append((f"{name} = {code}", self.describe(root) + " (the array the loop updated in place)"))
        return True

    def _rows_view(self, node, outputs):
        """Write rows s:s + k at a traced start s of a stored array (`dynamic_slice` along axis 0: a
        checkpointed loop's segment of its xs) as a view of it, as `_view` does for a static start,
        under its conditions: the array is never written after it is made, and a view is never a
        kernel output. The view has the array's layout (C when the array is known C). True when
        written so."""
        if node.prim is not dynamic_slice_p or node.params["axis"] != 0 or node.id in outputs:
            return False
        x, start = node.inputs
        if x.id not in self.ready or x.prim is const_p and x.id not in self.const_ids:
            return False
        array, first = self.read_whole(x), self.read_whole(start)
        known_c = x.id in self.contiguous or self.is_contiguous(x, array)
        name = self.names[node.id] = self.value_name(node, self.kernel)
        (self.contiguous if known_c else self.argument_views).add(node.id)
        self.kinds[node.id] = "v"
        self.ready.add(node.id)
        self.body.append((f"{name} = {array}[{first}:{first} + {self.size(node, 0)}]",
                          self.describe(node) + " (a view: no copy)"))
        return True

    def _header(self):
        """Comment lines mapping the kernel's arguments to what the caller passes."""
        lines = []
        for k, node in enumerate(self.graph.inputs):
            label = self.labels[k] if self.labels is not None and k < len(self.labels) else f"input {k}"
            lines.append(f"# {self.names[node.id]}: {str(label).replace(chr(10), ' ')} "
                         f"{tuple(node.shape)} {node.dtype.name}")
        for name, value in self.const_values.items():
            numbers = ", ".join(f"%{k}" for k in self._const_nodes[name])
            shape = tuple(np.shape(value))
            dtype = np.asarray(value).dtype.name
            lines.append(f"# {name}: constant {numbers} {shape} {dtype}")
        if self.kernel.uses_dims:
            lines.append(f"# dims: sizes no argument has {tuple(self.plan.fresh)}")
        return lines

    def _nest_call(self, nest, fast):
        """Split form: the nest as a kernel of its own (shared with identical nests), and the
        driver's line calling it."""
        function = nest.function
        lines = nest.lines(fast)
        lines.append((f"return ({', '.join(nest.roots)},)", None, 0))
        code = "\n".join(text for text, _, _ in lines)  # identical code, one kernel
        index = self._nest_index.get(code)
        if index is None:
            index = self._nest_index[code] = len(self.nests)
            self.nests.append(_function_source(function.params, [], lines, jit=True, parallel=nest.parallel))
        self.calls.append((index, function.args))
        # the nest kernel numbers nodes its own way (identical nests share one kernel): its numbers
        # here, as the graph's (`explain` prints them under the nest)
        self.nest_numbers.append((index, {local: self.numbers[nid] for nid, local in function.numbers.items()
                                          if nid in self.numbers}))
        roots = [self.names[r.id] for r in nest.step.roots]
        call = f"N{index}({', '.join(self.start_values.get(a, a) for a in function.args)})"
        return (f"{', '.join(roots)}, = {call}", "loop nest: " + ", ".join(f"%{self.numbers[r.id]}"
                                                                          for r in nest.step.roots), 0)

    def read_whole(self, node):
        if node.prim is const_p and node.id not in self.const_ids:
            return _literal(node.value[()])
        if node.id not in self.ready and is_matrix_transpose(node):
            inner, operand = self.read_whole(node.inputs[0]), node.inputs[0]
            # an argument (or rows of one, `_view`) has any layout: C before it is transposed
            of_argument = operand.prim.kind == "leaf" or operand.id in self.argument_views
            return f"np.ascontiguousarray({inner}).T" if of_argument else f"{inner}.T"
        return self.whole_name(node)

    def library_call(self, node):
        out = self.names[node.id] = self.value_name(node, self.kernel)
        self.kinds[node.id] = "v"
        ins = [self.read_whole(i) for i in node.inputs]
        self.ready.add(node.id)
        if node.prim.contiguous_output and node.ndim:
            self.contiguous.add(node.id)
        if node.prim.lower is None:
            raise NotImplementedError(f"no compiled lowering for `{node.prim.name}`")
        code = node.prim.lower(node, out, ins, self)
        lines = code.strip("\n").split("\n")
        for k, text in enumerate(lines):
            self.body.append((text, self.describe(node) if k == len(lines) - 1 else None))

    # --- loop nests ----------------------------------------------------------------------
    def loop_nest(self, step):
        if self.split:
            self.fn = _Function()
        try:
            self.body.append(self._loop_nest(step))
        finally:
            self.fn = self.kernel

    def _loop_nest(self, step):
        rank = len(step.domain)
        fn = self.fn
        bounds = [self.dim_code(d) for d in step.domain]
        index = tuple(Ix.of(f"i{a}") for a in range(rank))
        header = f"# loop nest over ({', '.join(bounds)}): " + ", ".join(f"%{fn.number(r)}" for r in step.roots)
        self.nest = nest = _Nest(step, fn, bounds, rank, header)
        self.cache, self.uses, self.defines, self.element_names = {}, {}, {}, {}
        self.block = None
        names, stores = {}, []
        for root in step.roots:
            # the root's name in this function: the kernel's name, or the nest kernel's own
            name = names[root.id] = self.value_name(root, fn)
            if root.prim.kind == "reduction":
                self.reduction_root(root, name, index[:root.inputs[0].ndim])
                continue
            # a root over a prefix of the domain runs once per outer iteration
            own = index[:root.ndim]
            if root.ndim:
                nest.before.append(_Stmt(name, f"np.empty({self.shape_code(root)}, {_dtype_code(root.dtype)})"))
                self.element_names[(root.id, own)] = f"{name}_i"  # its element, if it needs a name
            value = self.operand(root, own)
            value_level = self.cache[(root.id, own)][1]
            level = max(value_level, root.ndim)
            target = f"{name}[{', '.join(own)}]" if root.ndim else name
            statements = nest.levels[int(level)] if level == int(level) else nest.after[int(level) + 1]
            last = statements[-1] if statements else None
            # a store of the root's own element computes nothing: the element's line says what it is
            store = _Stmt(target, value, None if self.defines.get(value) == root.id else self.describe(root))
            self.place(store, level)
            if level == value_level and last is not None and last.lhs == value and last.indent == 0:
                stores.append((statements, last, store))
        for statements, computed, store in stores:
            if self.uses[store.rhs] == 1:  # read by the store alone: computed into the output, no copy
                statements.remove(store)
                computed.lhs, computed.comment = store.lhs, computed.comment or store.comment
        for root in step.roots:
            kernel_name = names[root.id] if fn is self.kernel else self.value_name(root, self.kernel)
            self.names[root.id] = kernel_name
            self.kinds[root.id] = "o" if root.ndim or root.prim.kind != "reduction" else "s"
            self.ready.add(root.id)
            if root.ndim:
                self.contiguous.add(root.id)
        nest.roots = [names[r.id] for r in step.roots]
        elements = int(np.prod(step.shape))
        # a copy per chunk of an array reduced over the outer loop: only while the copies hold at
        # most 2^20 elements or a quarter of the nest's (else the nest stays serial)
        copied = min(step.shape[0], PARALLEL_CHUNKS) * sum(size for *_, size in nest.partial_arrays) if rank else 0
        nest.parallel = self.parallel and rank > 0 and elements >= PARALLEL_ELEMENTS and \
            copied <= max(elements // 4, 1 << 20)
        self.nest = None
        return nest

    def place(self, stmt, level):
        """Put a statement inside loop `level - 1` (an int), or just after loop `level - 0.5` closes."""
        if level == int(level):
            self.nest.levels[int(level)].append(stmt)
        else:
            self.nest.after[int(level) + 1].append(stmt)

    def reduction_root(self, root, name, index):
        axes = root.params["axes"]
        x = root.inputs[0]
        rank = x.ndim
        init, combine = root.prim.accumulate
        init = _integer_bound(init, root.dtype)
        combine = _FLOAT_STEPS.get(combine, combine) if np.dtype(root.dtype).kind == "f" else combine
        kept = [index[a] for a in range(rank) if a not in axes]
        suffix = tuple(range(rank - len(axes), rank)) == tuple(axes)
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
                acc = name  # a scalar root is its accumulator
            # a float32 max or min accumulates in float32 (exact); a float32 sum or product in float64,
            # rounded once at the end (tests/test_float32.py: a float32 sum is ~5e-5 off at n = 1e6)
            extremum = combine in (_FLOAT_STEPS["max({acc}, {x})"], _FLOAT_STEPS["min({acc}, {x})"])
            init = f"np.float32({init})" if root.dtype == np.float32 and extremum else init
            start = _Stmt(acc, init)
            nest.levels[outer].append(start)
            wide = root.dtype == np.float32 and not extremum  # a float64 accumulator of a float32 value
            if outer == 0 and rank:  # a scalar over the outer loop: a partial per chunk, if parallel
                nest.partials.append((acc, start, init, combine, "np.float64" if wide else dtype))
            # a float sum or product vectorises with partial sums (_FLOAT_STEPS); an integer one keeps
            # its order and its loop scalar
            self.place(_Stmt(acc, combine.format(acc=acc, x=value), self.describe(root),
                             blocks=combine.startswith("{acc} ")), level)
            if wide:  # rounded once done: what NumPy's float32 sum is, and what a stored copy holds
                nest.after[outer + 1].append(_Stmt(acc, f"np.float32({acc})"))
            if root.ndim:
                nest.after[outer + 1].append(_Stmt(f"{name}[{', '.join(kept)}]", acc))
            # later roots of this nest on the outer axes read the finished accumulator
            self.cache[(root.id, tuple(kept))] = (acc, outer + 0.5)
        else:
            if 0 in axes:  # chunks of the outer loop would add into the same elements: a copy each
                nest.partial_arrays.append((name, init, combine, dtype, [self.size(root, a) for a in range(root.ndim)],
                                            int(np.prod(root.shape))))
            nest.before.append(_Stmt(name, f"np.full({self.shape_code(root)}, {init}, {dtype})"))
            target = f"{name}[{', '.join(kept)}]"
            self.place(_Stmt(target, combine.format(acc=target, x=value), self.describe(root)), level)

    # --- one element of a node --------------------------------------------------------------
    def emit(self, stmt, level):
        # inside a guarded branch (a pad's or diagonal embedding's condition) everything stays in
        # the branch, loop-invariant or not: the guard is what keeps its reads in bounds (a read
        # of a zero-size or shorter array hoisted out of it read past the end)
        if self.block is not None:
            self.block.append(stmt)
        else:
            self.place(stmt, level)

    def operand(self, node, index):
        """`value`, counted as one use of the code it returns (a value used once, by the store
        of its nest's output, is computed into the output directly)."""
        code = self.value(node, index)
        self.uses[code] = self.uses.get(code, 0) + 1
        return code

    def value(self, node, index):
        """Code for node's element at `index` (a tuple of index code), emitting what it needs."""
        key = (node.id, index)
        found = self.cache.get(key)
        if found is not None:
            return found[0]
        result, level = self._value(node, index)
        self.cache[key] = (result, level)
        return result

    def _value(self, node, index):
        if node.prim is const_p and (node.id not in self.const_ids or
                                     (node.value.size == 1 and _is_literal_value(node.value))):
            return _literal(node.value.reshape(())[()]), 0
        if node.id in self.ready:
            name = self.read_name(node)
            if node.ndim == 0:
                return name, 0
            read = f"{name}[{', '.join(index)}]"
            found = self.cache.get(read)  # one read of an array (identical constants are one array)
            if found is not None:
                return found
            level = max((int(m) + 1 for i in index for m in _INDEX_VAR.findall(i)), default=0)
            var = self.fn.unique(f"{name}_i")
            self.emit(_Stmt(var, read), level)
            self.cache[read] = (var, level)
            return var, level
        if node.prim.kind == "elementwise":
            args, level = [], 0
            for i in node.inputs:
                sub = self._broadcast_index(i, node, index)
                args.append(self.operand(i, sub))
                level = max(level, self.cache[(i.id, sub)][1])
            template = node.prim.scalar
            if callable(template):
                template = template(**node.params)
            expr = template.format(*args, **node.params)
            fast = expr
            for call, fast_call in _vectorisable_calls():
                fast = fast.replace(call, fast_call)
            fast = fast if fast != expr else None
            power = _POWER.match(expr) if np.dtype(node.dtype).kind == "f" else None
            fast = f"K.fpow({power.group(1)}, {power.group(2)})" if power else fast
            if node.dtype == np.float32:
                # float32 literals: a float64 one makes Numba compute the node in float64 (NumPy casts
                # a Python float to float32 first: x * 0.1 is x * float32(0.1)); and rounded to
                # float32 at every node, as NumPy does (the vectorisable exp computes in float64),
                # so a value recomputed in one nest equals the one another nest stored (a max's tie mask)
                expr = f"np.float32({_FLOAT_LITERAL.sub(_float32_literal, expr)})"
                fast = fast and _FLOAT_LITERAL.sub(_float32_literal, fast)
                if node.prim.scalar in _FLOAT32_TEMPLATES:  # not sinc's np.sin(np.pi * x): a float64
                    for call, call32 in _FLOAT32_CALLS.items():
                        fast = fast and fast.replace(call, call32)
                fast = fast and f"np.float32({fast})"
            blocks = any(name not in _VECTOR_SAFE for _, name in _LIBRARY_CALL.findall(fast or expr))
            var = self.element_var(node, index)
            self.emit(_Stmt(var, expr, self.describe(node), fast, node.id, blocks), level)
            return var, level
        if node.prim.kind == "index":
            sub, cond = node.prim.index_map(node, list(index), self)
            sub = index_tuple(sub)
            (x,) = node.inputs
            if cond is None:
                code = self.value(x, sub)
                return code, self.cache[(x.id, sub)][1]
            var = self.element_var(node, index)
            zero = "False" if node.dtype == bool else "0.0"
            outer_block = self.block
            block = []
            self.block = block
            saved = self.cache
            self.cache = dict(saved)
            inner = self.operand(x, sub)
            inner_level = self.cache[(x.id, sub)][1]
            self.cache = saved
            self.block = outer_block
            # the branch runs where its condition's loop indices and its value are all available:
            # not deeper (a root over a prefix of the nest reads it once per outer iteration)
            used = _INDEX_VAR.findall(" ".join([cond, *sub]))
            level = max([inner_level, 0] + [int(m) + 1 for m in used])
            self.emit(_Stmt(var, zero), level)
            self.emit(_Stmt(None, f"if {cond}:", self.describe(node), blocks=True), level)
            if block and block[-1].lhs == inner and self.uses[inner] == 1:
                block[-1].lhs = var  # computed into the branch's value, no copy
            else:
                block.append(_Stmt(var, inner))
            for stmt in block:
                stmt.indent += 1
                self.emit(stmt, level)
            return var, level
        raise NotImplementedError(f"cannot fuse `{node.prim.name}`")

    def element_var(self, node, index):
        """The name of node's element at `index`: `tanh3`, or `mul12_i` for the element of the
        nest's output `mul12` at the output's own index."""
        base = self.element_names.get((node.id, index))
        var = self.fn.unique(base) if base else self.value_name(node, self.fn)
        self.defines[var] = node.id
        return var

    @staticmethod
    def _broadcast_index(inp, node, index):
        lead = node.ndim - inp.ndim
        return tuple(Ix.of(0) if n == 1 and node.shape[lead + a] != 1 else index[lead + a]
                     for a, n in enumerate(inp.shape))


_SUBKERNELS = weakref.WeakKeyDictionary()  # graph -> {donated: subkernel(graph, donated)}, while the graph lives


def subkernel(graph, donated=()):
    """(name, definition, constant values, fresh sizes or None) of `graph` as an njit function of its
    own (`KernelWriter.call_subkernel`), made once per graph and `donated` (the positions of inputs
    it may write into): the graph after its pass pipeline as a kernel (its constants are its
    trailing arguments), renamed `subkernel_<hash>`, without the imports."""
    made = _SUBKERNELS.setdefault(graph, {})
    info = made.get(donated)
    if info is not None:
        return info
    from jitad.errors import CompileError
    from jitad.passes import optimize
    optimized = optimize(graph)  # custom_vjp/checkpoint aliases go, as before any codegen
    if any(n.prim.kind == "callback" for n in optimized.nodes):
        raise CompileError("a loop body calls back into Python (an untraceable custom rule or an ODE solve), "
                           "which a compiled loop cannot do; jitad.config.compile = 'off' runs it on the NumPy "
                           "executor")
    source, consts, fresh, _ = generate(optimized, donated=donated)
    name = f"subkernel_{hashlib.sha256(source.encode()).hexdigest()[:12]}"
    lines = [line for line in source.splitlines()
             if not line.startswith(("import ", "from jitad.backend import", *(f"{a} = calls." for a in _BY_ADDRESS)))]
    definition = "\n".join(lines).strip("\n").replace("def kernel(", f"def {name}(", 1)
    info = (name, definition, consts, tuple(fresh) if uses_dims(source) else None)
    made[donated] = info
    return info


def _leading_slice(node):
    """Whether `node` is rows a:b (step 1) of its operand: a slice of the first axis only, which
    of a C-contiguous array is a C-contiguous block."""
    if node.prim is not slice_p or not node.ndim:
        return False
    operand = node.inputs[0]
    return (all(step == 1 for step in node.params["steps"]) and all(s == 0 for s in node.params["starts"][1:])
            and tuple(node.shape[1:]) == tuple(operand.shape[1:]))


def _function_source(params, header, lines, jit, helpers=None, parallel=False):
    """A module defining `kernel(*params)`: the imports its body uses, the header comments,
    and the body's (text, comment, depth) lines. `helpers` (name -> njit function definition
    the body calls, a loop's body) come before it; a plain-Python driver (not `jit`) loads each
    as a kernel module of its own (`cache.load_kernel`: exec'd source has no file for Numba's
    disk cache). Kernels release the GIL (`nogil`: user threads run them at the same time);
    `parallel`: the body has a `numba.prange` loop (Numba's parfors pass compiles it)."""
    body = [f"{'    ' * (depth + 1)}{text}  # {comment}" if comment else f"{'    ' * (depth + 1)}{text}"
            for text, comment, depth in lines]
    helpers = helpers or {}
    code = "\n".join([text for text, _, _ in lines] + (list(helpers.values()) if jit else []))
    out = _imports(code, jit)
    if jit:
        for definition in helpers.values():
            out += ["", "", definition]
    elif helpers:
        out.append("from jitad.backend.cache import load_kernel")
        for name, definition in helpers.items():
            module = _function_module(definition, name)
            literal = f"'''\\\n{module}'''" if "'''" not in module and "\\" not in module else repr(module)
            out += ["", f"{name} = load_kernel({literal})"]
    out += ["", ""]
    if jit:
        out.append(f'@numba.njit(cache=True, error_model="numpy", nogil=True{", parallel=True" if parallel else ""})')
    out.append(f"def kernel({', '.join(params)}):")
    out += [f"    {line}" for line in header]
    out += body
    return "\n".join(out) + "\n"


def _function_module(definition, name):
    """A module of its own for the njit function `name` (with the functions it calls), as
    `cache.load_kernel` loads one: its entry point is `kernel`."""
    return "\n".join(_imports(definition, True) + ["", "", definition, "", "", f"kernel = {name}"]) + "\n"


class SplitForm:
    """A graph as a plain-Python driver (`source`, calling nest kernel k as `N{k}`) and the
    sources of its distinct loop-nest kernels (`nests`), with what the driver passes them."""

    def __init__(self, writer, source):
        self.source, self.nests, self.calls = source, writer.nests, writer.calls
        self.nest_numbers = writer.nest_numbers  # per call: (nest index, {its node number: the graph's})
        self.consts, self.fresh, self.plan = writer.const_args, writer.plan.fresh, writer.plan
        self._const_values, self._start_values = writer.const_values, writer.start_values
        self._inputs = {name: k for k, name in enumerate(writer.names[n.id] for n in writer.graph.inputs)}
        nodes = {n.id: n for n in writer.graph.nodes}
        self._nodes = {name: nodes[nid] for nid, name in writer.names.items() if nid in nodes}

    def example_arguments(self, args):
        """For each call of a nest: (nest index, example values of the types the driver will pass
        it), given the kernel's arguments (`args`, 0-d inputs as scalars). Values computed by the
        driver are stand-ins of their type: C-contiguous arrays, Python scalars, ints."""
        out = []
        for k, names in self.calls:
            values = []
            for name in names:
                if name in self._inputs:
                    values.append(args[self._inputs[name]])
                elif name in self._const_values:
                    values.append(self._const_values[name])
                elif name in self._start_values:
                    values.append(0)
                elif name == "dims":
                    values.append(tuple(self.fresh))
                else:
                    node = self._nodes[name]
                    values.append(np.empty((1,) * node.ndim, node.dtype) if node.ndim else node.dtype.type(0).item())
            out.append((k, values))
        return out


_ASSIGNED = re.compile(r"([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*,?\s*=[^=]")
_NAME = re.compile(r"[A-Za-z_]\w*")


def _top_level(line):
    """Whether a driver line starts a statement of the function's own body (not a line of a
    loop's body: those have a depth, or their text starts indented, as a scan's rows do)."""
    text, _, depth = line
    return depth == 0 and not text[:1].isspace()


def _released(lines):
    """The split form's driver lines with `del` after the statement that last reads each value it
    assigns: a plain Python function holds its locals until it returns (a Numba kernel frees an
    array after its last use), so without them the driver holds every intermediate value at once
    (a reverse pass that recomputes values to save memory would hold more, not less)."""
    assigned, last = {}, {}
    for k, (text, _, indent) in enumerate(lines):
        for name in _NAME.findall(text):
            last[name] = k
        if indent == 0:
            for row in text.split("\n"):
                found = _ASSIGNED.match(row)
                if found:
                    for name in re.split(r"\s*,\s*", found.group(1)):
                        assigned.setdefault(name, k)
    frees = {}
    for name in assigned:
        k = last[name]
        if k < len(lines) - 1 and lines[k][2] == 0:  # not read by the return, nor last inside a block
            while k + 1 < len(lines) - 1 and not _top_level(lines[k + 1]):  # in a block: free after it
                k += 1
            frees.setdefault(k, []).append(name)
    out = []
    for k, line in enumerate(lines):
        out.append(line)
        if k in frees:
            out.append((f"del {', '.join(sorted(frees[k]))}", None, 0))
    return out


def generate_split(graph, labels=None, parallel=False):
    """The split form of `graph` (a `SplitForm`): each loop nest a kernel of its own, called
    from a plain Python driver; repeated nests (a loop's steps) share one kernel. `labels`:
    optional text per graph input for the driver's header (default `input k`); `parallel`:
    as in `generate`."""
    writer = KernelWriter(graph, split=True, labels=labels, parallel=parallel)
    return SplitForm(writer, writer.write())


def generate(graph, labels=None, parallel=False, donated=()):
    """Returns (source, constant arguments, fresh sizes, plan). `labels`: optional text per
    graph input for the kernel's header, say the caller's argument path (default `input k`).
    `parallel` (target "parallel"): loop nests of at least PARALLEL_ELEMENTS elements run their
    outer loop on several threads, where each chunk of it writes elements of its own.
    `donated`: positions of inputs the caller lends (a loop's body: `KernelWriter.may_take`)."""
    writer = KernelWriter(graph, labels=labels, parallel=parallel, donated=donated)
    source = writer.write()
    return source, writer.const_args, writer.plan.fresh, writer.plan
