"""Codegen: a fusion plan becomes the readable source of one @numba.njit kernel.

Every statement carries a `# %id = prim(...)` comment naming its node; loops are
explicit; fused loops hold no NumPy temporaries; outputs are allocated once. Sizes come
from the input arrays (or the `dims` argument), never from literals, and non-trivial
constants are arguments, so the source -- the kernel cache key -- is shared by every
size and every closure with the same structure.
"""
import re

import numpy as np

from jitad.backend.fusion import LibraryCall, is_matrix_transpose, plan as make_plan
from jitad.ir import const_p
from jitad.ixexpr import Ix, index_tuple
from jitad.profiling import phase

_LITERALS = {0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0}
_INDEX_VAR = re.compile(r"\bi(\d+)\b")


class Source:
    """An indent-aware source builder."""

    def __init__(self):
        self.lines, self.depth = [], 0

    def line(self, text="", comment=None):
        pad = "    " * self.depth
        self.lines.append(f"{pad}{text}  # {comment}" if comment else f"{pad}{text}")

    def indent(self):
        self.depth += 1

    def dedent(self):
        self.depth -= 1

    def text(self):
        return "\n".join(self.lines) + "\n"


def describe(node, local):
    """The `# %3 = sin(%1)` comment of a node, with ids local to the kernel (stable names)."""
    args = ", ".join(f"%{local[i.id]}" for i in node.inputs)
    return f"%{local[node.id]} = {node.prim.name}({args})"


def _integer_bound(init, dtype):
    """A max/min reduction's start, ±inf, has no integer value (cast, it is garbage): integers start
    from their dtype's bounds."""
    if np.dtype(dtype).kind in "iu" and init in ("np.inf", "-np.inf"):
        info = np.iinfo(dtype)
        return str(int(info.max if init == "np.inf" else info.min))
    return init


def _dtype_code(dtype):
    return f"np.{np.dtype(dtype).name}" if np.dtype(dtype).name != "bool" else "np.bool_"


_LIBRARY_CALL = re.compile(r"\b(np|math|K)\.(\w+)\(")
_VECTOR_SAFE = {"sqrt", "abs", "floor", "ceil", "trunc", "rint", "sign", "copysign", "isnan", "isfinite", "isinf",
                "float64", "float32", "bool_", "int64", "exp", "expm1", "tanh", "fexp", "fexpm1", "ftanh"}


_COMMENT_NODE = re.compile(r"^%(\d+) = ")


def _vectorisable_nodes(statements):
    """Local ids of the nodes whose exp/expm1/tanh may use the SIMD-friendly versions: those
    in an inner loop that can vectorise at all (no other library call, no branch, no scalar
    accumulator)."""
    texts = [text for text, _ in statements]
    blocked = any(text.lstrip().startswith("if ") or re.match(r"\s*(a\d+) = \1 ", text) for text in texts) or \
        any(name not in _VECTOR_SAFE for text in texts for _, name in _LIBRARY_CALL.findall(text))
    if blocked:
        return set()
    from jitad.primitives.elementwise import VECTORISABLE_CALLS
    found = set()
    for text, comment in statements:
        match = _COMMENT_NODE.match(comment or "")
        if match and any(call in text for call in VECTORISABLE_CALLS):
            found.add(int(match.group(1)))
    return found


def _fast_math(expr):
    from jitad.primitives.elementwise import VECTORISABLE_CALLS
    for call, fast in VECTORISABLE_CALLS.items():
        expr = expr.replace(call, fast)
    return expr


_DIMS = re.compile(r"\bdims\b")


def uses_dims(source):
    """Whether generated code reads the `dims` argument (sizes not read from any input)."""
    return _DIMS.search(source) is not None


_NAME = re.compile(r"(?<![.\w])([A-Za-z_]\w*)")
_ASSIGNED = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\[[^=]*\])?\s*=(?!=)")
_LOOP_VAR = re.compile(r"^\s*for (\w+) in ")
_OUTER_NAME = re.compile(r"^(?:[xcvosk]\d+|dims)$")   # names a nest reads from the driver
_LOCAL_NAME = re.compile(r"^([a-z]+)\d+(?:_\d+)?$")
_NODE_REF = re.compile(r"%(\d+)")


def _nest_kernel(lines, roots):
    """A loop nest's lines as the canonical source of a kernel of its own, and the driver's
    names it takes as arguments (in order). Names and node numbers are renumbered by first
    appearance, so the same nest anywhere (another step of a loop, another program) has the
    same source, hence one cache entry and one compilation."""
    code = [(line, "", "") if line.lstrip().startswith("#") else line.partition("  # ") for line in lines]
    defined, free = set(), []
    for text, _, _ in code:
        for match in (_ASSIGNED.match(text), _LOOP_VAR.match(text)):
            if match:
                defined.add(match.group(1))
        if text.lstrip().startswith("#"):
            continue
        for name in _NAME.findall(text):
            if _OUTER_NAME.match(name) and name not in defined and name not in free:
                free.append(name)
    rename, counts = {}, {}

    def new_name(match):
        name = match.group(1)
        local = _LOCAL_NAME.match(name)
        if name in rename or not local or name.startswith("i") and name[1:].isdigit():
            return rename.get(name, name)
        prefix = local.group(1)
        counts[prefix] = counts.get(prefix, -1) + 1
        rename[name] = f"{prefix}{counts[prefix]}"
        return rename[name]
    params = [_NAME.sub(new_name, name) for name in free]
    refs = {}

    def new_ref(match):
        return "%" + str(refs.setdefault(match.group(1), len(refs)))
    body = []
    for text, sep, comment in code:
        if text.lstrip().startswith("#"):  # a comment line (the nest's header)
            body.append(_NODE_REF.sub(new_ref, _NAME.sub(new_name, text)))
            continue
        line = _NAME.sub(new_name, text)
        body.append(f"{line}{sep}{_NODE_REF.sub(new_ref, comment)}" if sep else line)
    outs = ", ".join(rename.get(r, r) for r in roots)
    source = "\n".join([
        "import numpy as np", "import numba", "from jitad.backend import kernels as K", "", "",
        '@numba.njit(cache=True, error_model="numpy")', f"def kernel({', '.join(params)}):",
        *body, f"    return ({outs},)", ""])
    return source, free


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


class KernelWriter:
    """Writes the kernel for one plan. Names: x* inputs, c* constants, v* values, o* outputs."""

    def __init__(self, graph, fast_nodes=frozenset(), split=False, plan=None):
        self.graph = graph
        # split: each loop nest is a kernel of its own, in canonical form (its arrays, sizes and
        # slice starts are arguments), called from a plain Python driver; a nest repeated by a
        # Python loop (each step of an RNN, each mixture component) is then compiled once
        self.split = split
        self.nests = []           # split: the distinct nest kernels' sources, in first-use order
        self.calls = []           # split: (nest index, driver names passed) per call
        self.start_values = {}    # split: start argument name -> its code in the driver
        self._start_names = {}
        # nodes computed with the vectorisable exp/expm1/tanh: decided per node for the whole
        # kernel, so a value recomputed in several loop nests is bitwise the same in each
        # (a max's tie mask compares them); everywhere else libm
        self.fast_nodes = fast_nodes
        self.vectorisable = set()
        self.local = {n.id: k for k, n in enumerate(list(graph.inputs) + [n for n in graph.nodes
                                                                          if n not in graph.inputs])}
        self.names = {}
        self.args = []          # argument names in order
        self.const_args = []    # constant values passed as arguments
        for k, node in enumerate(graph.inputs):
            self.names[node.id] = f"x{k}"
        for node in graph.nodes:
            if node.prim is const_p and node.id not in self.names and not self._is_literal(node):
                self.names[node.id] = f"c{len(self.const_args)}"
                value = node.value
                self.const_args.append(np.ascontiguousarray(value) if value.ndim else _scalar_argument(value))
        self.const_values = {f"c{k}": v for k, v in enumerate(self.const_args)}
        self.arg_names = {nid: n for nid, n in self.names.items()}
        with phase("fusion"):
            self.plan = plan or make_plan(graph, {nid: n for nid, n in self.names.items()
                                                  if self._node(nid).ndim > 0}, split)
        self.dims = self.plan.dims
        self.src = Source()
        self.counter = 0
        self.ready = set(self.names)  # nodes whose whole value is stored and can be read

    def _node(self, node_id):
        if not hasattr(self, "_by_id"):
            self._by_id = {n.id: n for n in list(self.graph.inputs) + list(self.graph.nodes)}
        return self._by_id[node_id]

    @staticmethod
    def _is_literal_value(value):
        return value.dtype.kind in "biu" or float(value.reshape(())) in _LITERALS or \
            not np.isfinite(value.reshape(()))

    @staticmethod
    def _is_literal(node):
        return node.ndim == 0 and (node.value.dtype.kind in "biu" or float(node.value) in _LITERALS or
                                   not np.isfinite(node.value))

    # --- sizes ----------------------------------------------------------------------------
    def size(self, node, axis):
        dim = self.plan.shapes[node.id][axis]
        return self.dims.source(dim)

    def start(self, node, axis):
        start = self.plan.starts.get((node.id, axis), node.params["starts"][axis])
        code = self.dims.source(start)
        if self.split and code != "0":  # the driver computes it: nests of a loop's steps stay one
            name = self._start_names.get((node.id, axis))
            if name is None:
                name = self._start_names[(node.id, axis)] = f"k{len(self.start_values)}"
                self.start_values[name] = code
            return name
        return code

    def is_contiguous(self, node, code):
        """Whether `code` reads `node` as an array this kernel knows is C-contiguous: a loop
        nest's output (np.empty), a constant argument (made contiguous) or a matrix product."""
        return code == self.names.get(node.id) and node.ndim > 0 and \
            (code[0] in "oc" or node.prim.name == "matmul")

    def shape_code(self, node):
        sizes = [self.size(node, a) for a in range(node.ndim)]
        return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"

    # --- the kernel -----------------------------------------------------------------------
    def write(self):
        params = [self.names[n.id] for n in self.graph.inputs] + [f"c{k}" for k in range(len(self.const_args))]
        src = self.src
        src.line("import numpy as np")
        if not self.split:
            src.line("import numba")
        src.line("from jitad.backend import kernels as K")
        if any(getattr(s, "node", None) is not None and s.node.prim.name not in _STRUCTURAL_LIBRARY
               for s in self.plan.steps if isinstance(s, LibraryCall)):
            src.line("from jitad.backend import kernels_linalg as KL")
        src.line()
        src.line()
        if not self.split:
            src.line('@numba.njit(cache=True, error_model="numpy")')
        src.line(f"def kernel({', '.join(params)}):")
        signature_line = len(src.lines) - 1
        src.indent()
        for step in self.plan.steps:
            if isinstance(step, LibraryCall):
                self.library_call(step.node)
            else:
                self.loop_nest(step)
        # an output that is an input or a captured constant is copied: callers own their results
        outs = [f"{self.read_whole(o)}.copy()" if o.ndim and o.prim.kind == "leaf" else self.read_whole(o)
                for o in self.graph.outputs]
        src.line(f"return ({', '.join(outs)},)")
        # constants that ended up as literals (or unused) are not parameters
        body = "\n".join(src.lines[signature_line + 1:])
        used = [k for k in range(len(self.const_args)) if re.search(rf"\bc{k}\b", body)]
        self.const_args = [self.const_args[k] for k in used]
        params = [self.names[n.id] for n in self.graph.inputs] + [f"c{k}" for k in used]
        if uses_dims(body):
            params.append("dims")
        src.lines[signature_line] = f"def kernel({', '.join(params)}):"
        return src.text()

    def read_whole(self, node):
        if node.prim is const_p and node.id not in self.names:
            return _literal(node.value[()])
        if node.id not in self.ready and is_matrix_transpose(node):
            inner = self.read_whole(node.inputs[0])
            return f"np.ascontiguousarray({inner}).T" if node.inputs[0].prim.kind == "leaf" else f"{inner}.T"
        return self.names[node.id]

    def library_call(self, node):
        out = self.names[node.id] = f"v{self.local[node.id]}"
        ins = [self.read_whole(i) for i in node.inputs]
        self.ready.add(node.id)
        lower = getattr(node.prim, "lower", None) or _STRUCTURAL_LIBRARY.get(node.prim.name)
        if lower is None:
            raise NotImplementedError(f"no compiled lowering for `{node.prim.name}`")
        try:
            code = lower(node, out, ins, self)
        except TypeError:
            code = lower(node, out, ins)
        lines = code.strip("\n").split("\n")
        for k, text in enumerate(lines):
            self.src.line(text, describe(node, self.local) if k == len(lines) - 1 else None)

    # --- loop nests ----------------------------------------------------------------------
    def loop_nest(self, step):
        if not self.split:
            return self._loop_nest(step)
        driver = self.src
        self.src = Source()
        self.src.depth = 1
        self._loop_nest(step)
        lines, self.src = self.src.lines, driver
        roots = [self.root_name(r) for r in step.roots]
        source, args = _nest_kernel(lines, roots)
        if source not in self.nests:
            self.nests.append(source)
        self.calls.append((self.nests.index(source), args))
        call = f"N{self.nests.index(source)}({', '.join(self.start_values.get(a, a) for a in args)})"
        driver.line(f"{', '.join(roots)}, = {call}",
                    "loop nest: " + ", ".join(f"%{self.local[r.id]}" for r in step.roots))

    def _loop_nest(self, step):
        src = self.src
        rank = len(step.domain)
        bounds = [self.dims.source(d) for d in step.domain]
        index = tuple(Ix.of(f"i{a}") for a in range(rank))
        src.line(f"# loop nest over ({', '.join(bounds)}): " + ", ".join(f"%{self.local[r.id]}" for r in step.roots))
        self.levels = [[] for _ in range(rank + 1)]  # statements placed inside loop a-1
        self.after = [[] for _ in range(rank + 1)]   # statements after loop a-1 closes
        self.before = []
        self.cache = {}
        self.block = None
        for root in step.roots:
            name = self.root_name(root)
            if root.prim.kind == "reduction":
                self.reduction_root(root, name, index[:root.inputs[0].ndim])
            else:
                # a root over a prefix of the domain runs once per outer iteration
                own = index[:root.ndim]
                if root.ndim:
                    self.before.append((f"{name} = np.empty({self.shape_code(root)}, {_dtype_code(root.dtype)})",
                                        describe(root, self.local)))
                value = self.value(root, own)
                level = max(self.cache[(root.id, own)][1], root.ndim)
                target = f"{name}[{', '.join(own)}]" if root.ndim else name
                self.place(f"{target} = {value}", describe(root, self.local), level)
        for root in step.roots:
            self.names[root.id] = self.root_name(root)
            self.ready.add(root.id)
        if rank:
            self.vectorisable |= _vectorisable_nodes(self.levels[rank])
        for text, comment in self.before:
            src.line(text, comment)
        self._emit_level(0, rank, bounds)

    def place(self, text, comment, level):
        """Put a statement inside loop `level - 1` (an int), or just after loop `level - 0.5` closes."""
        if level == int(level):
            self.levels[int(level)].append((text, comment))
        else:
            self.after[int(level) + 1].append((text, comment))

    def root_name(self, root):
        prefix = "o" if root.ndim or root.prim.kind != "reduction" else "s"
        return f"{prefix}{self.local[root.id]}"

    def _emit_level(self, level, rank, bounds):
        for text, comment in self.levels[level]:
            self.src.line(text, comment)
        if level < rank:
            self.src.line(f"for i{level} in range({bounds[level]}):")
            self.src.indent()
            self._emit_level(level + 1, rank, bounds)
            self.src.dedent()
            for text, comment in self.after[level + 1]:
                self.src.line(text, comment)

    def reduction_root(self, root, name, index):
        axes = root.params["axes"]
        x = root.inputs[0]
        rank = x.ndim
        init, combine = root.prim.accumulate
        init = _integer_bound(init, root.dtype)
        kept = [index[a] for a in range(rank) if a not in axes]
        suffix = tuple(range(rank - len(axes), rank)) == tuple(axes)
        value = self.value(x, index)
        level = max(self.cache[(x.id, index)][1], rank)
        dtype = _dtype_code(root.dtype)
        if suffix:
            outer = rank - len(axes)
            acc = f"a{self.local[root.id]}"
            if root.ndim:
                self.before.append((f"{name} = np.empty({self.shape_code(root)}, {dtype})", describe(root, self.local)))
            self.levels[outer].append((f"{acc} = {init}", None))
            self.place(f"{acc} = {combine.format(acc=acc, x=value)}", describe(root, self.local), level)
            store = f"{name}[{', '.join(kept)}] = {acc}" if root.ndim else f"{name} = {acc}"
            self.after[outer + 1].append((store, None))
            # later roots of this nest on the outer axes read the finished accumulator
            self.cache[(root.id, tuple(kept))] = (acc, outer + 0.5)
        else:
            self.before.append((f"{name} = np.full({self.shape_code(root)}, {init}, {dtype})", describe(root, self.local)))
            target = f"{name}[{', '.join(kept)}]"
            self.place(f"{target} = {combine.format(acc=target, x=value)}", describe(root, self.local), level)

    # --- one element of a node --------------------------------------------------------------
    def emit(self, text, comment, level):
        # inside a guarded branch (a pad's or diagonal embedding's condition) everything stays in
        # the branch, loop-invariant or not: the guard is what keeps its reads in bounds (a read
        # of a zero-size or shorter array hoisted out of it read past the end)
        if self.block is not None:
            self.block.append((text, comment))
        else:
            self.place(text, comment, level)

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
        if node.prim is const_p and (node.id not in self.names or
                                     (node.value.size == 1 and self._is_literal_value(node.value))):
            return _literal(node.value.reshape(())[()]), 0
        if node.id in self.ready:
            name = self.names[node.id]
            if node.ndim == 0:
                return name, 0
            read = f"{name}[{', '.join(index)}]"
            level = max((int(m) + 1 for i in index for m in _INDEX_VAR.findall(i)), default=0)
            var = f"r{self.local[node.id]}_{self._fresh()}"
            self.emit(f"{var} = {read}", None, level)
            return var, level
        if node.prim.kind == "elementwise":
            args, level = [], 0
            for i in node.inputs:
                sub = self._broadcast_index(i, node, index)
                code = self.value(i, sub)
                args.append(code)
                level = max(level, self.cache[(i.id, sub)][1])
            template = node.prim.scalar
            if callable(template):
                template = template(**node.params)
            expr = template.format(*args, **node.params)
            if self.local[node.id] in self.fast_nodes:
                expr = _fast_math(expr)
            if node.dtype == np.float32:
                # rounded to float32 at every node, as NumPy does: Numba computes float32 with
                # float64 literals (and the vectorisable exp) in float64, and a value recomputed
                # in one nest must equal the one another nest stored (a max's tie mask)
                expr = f"np.float32({expr})"
            var = f"v{self.local[node.id]}_{self._fresh()}"
            self.emit(f"{var} = {expr}", describe(node, self.local), level)
            return var, level
        if node.prim.kind == "index":
            sub, cond = node.prim.index_map(node, list(index), self)
            sub = index_tuple(sub)
            (x,) = node.inputs
            if cond is None:
                code = self.value(x, sub)
                return code, self.cache[(x.id, sub)][1]
            var = f"v{self.local[node.id]}_{self._fresh()}"
            zero = "False" if node.dtype == bool else "0.0"
            outer_block = self.block
            block = []
            self.block = block
            saved = self.cache
            self.cache = dict(saved)
            inner = self.value(x, sub)
            inner_level = self.cache[(x.id, sub)][1]
            self.cache = saved
            self.block = outer_block
            # the branch runs where its condition's loop indices and its value are all available:
            # not deeper (a root over a prefix of the nest reads it once per outer iteration)
            used = _INDEX_VAR.findall(" ".join([cond, *sub]))
            level = max([inner_level, 0] + [int(m) + 1 for m in used])
            self.emit(f"{var} = {zero}", None, level)
            self.emit(f"if {cond}:", describe(node, self.local), level)
            for text, comment in block:
                self.emit("    " + text, comment, level)
            self.emit(f"    {var} = {inner}", None, level)
            return var, level
        raise NotImplementedError(f"cannot fuse `{node.prim.name}`")

    def _fresh(self):
        self.counter += 1
        return self.counter

    @staticmethod
    def _broadcast_index(inp, node, index):
        lead = node.ndim - inp.ndim
        return tuple(Ix.of(0) if n == 1 and node.shape[lead + a] != 1 else index[lead + a]
                     for a, n in enumerate(inp.shape))


# --- lowerings of the structural library primitives -------------------------------------------
def _three(ctx, node, axis, extent_of):
    """Code for the (before, axis, after) sizes of `node` around `axis`."""
    before = " * ".join(ctx.size(node, a) for a in range(axis)) or "1"
    after = " * ".join(ctx.size(node, a) for a in range(axis + 1, node.ndim)) or "1"
    return before, extent_of, after


def _as_dtype(code, node, dtype):
    """Operand code cast to `dtype` when it differs (BLAS and np.concatenate in Numba need one dtype)."""
    return code if node.dtype == dtype else f"{code}.astype({_dtype_code(dtype)})"


def _lower_matmul(node, out, ins, ctx):
    a, b = node.inputs
    ins = [_as_dtype(code, operand, node.dtype) for code, operand in zip(ins, node.inputs)]
    if a.ndim == 2 and b.ndim == 2:
        operands = [code if code.endswith(".T") or ctx.is_contiguous(operand, code) else f"np.ascontiguousarray({code})"
                    for code, operand in zip(ins, node.inputs)]
        # in a kernel, K.dot: Numba's np.dot would compile its BLAS call again in every process
        return f"{out} = {'np' if ctx.split else 'K'}.dot({operands[0]}, {operands[1]})"
    batch = [ctx.size(node, k) for k in range(node.ndim - 2)]
    bsize = " * ".join(batch)
    m, kk, n = ctx.size(a, a.ndim - 2), ctx.size(a, a.ndim - 1), ctx.size(b, b.ndim - 1)
    bshape = ", ".join(batch)
    return "\n".join([
        f"a3_{out} = np.ascontiguousarray(np.broadcast_to({ins[0]}, ({bshape}, {m}, {kk}))).reshape(({bsize}, {m}, {kk}))",
        f"b3_{out} = np.ascontiguousarray(np.broadcast_to({ins[1]}, ({bshape}, {kk}, {n}))).reshape(({bsize}, {kk}, {n}))",
        f"{out} = K.bmm(a3_{out}, b3_{out}).reshape({ctx.shape_code(node)})",
    ])


def _lower_take(node, out, ins, ctx):
    x, idx = node.inputs
    axis = node.params["axis"]
    before, extent, after = _three(ctx, x, axis, ctx.size(x, axis))
    idx_code = f"np.ascontiguousarray({ins[1]}).ravel()" if idx.ndim else f"np.array([{ins[1]}])"
    return (f"{out} = K.take3(np.ascontiguousarray({ins[0]}).reshape(({before}, {extent}, {after})), "
            f"{idx_code}).reshape({ctx.shape_code(node)})")


def _lower_scatter_add(node, out, ins, ctx):
    g, idx = node.inputs
    axis = node.params["axis"]
    before = " * ".join(ctx.size(g, a) for a in range(axis)) or "1"
    after = " * ".join(ctx.size(g, a) for a in range(axis + idx.ndim, g.ndim)) or "1"
    extent = " * ".join(ctx.size(idx, a) for a in range(idx.ndim)) or "1"
    idx_code = f"np.ascontiguousarray({ins[1]}).ravel()" if idx.ndim else f"np.array([{ins[1]}])"
    return (f"{out} = K.scatter_add3(np.ascontiguousarray({ins[0]}).reshape(({before}, {extent}, {after})), "
            f"{idx_code}, {ctx.size(node, axis)}).reshape({ctx.shape_code(node)})")


def _lower_concatenate(node, out, ins, ctx):
    parts = ", ".join(f"np.ascontiguousarray({_as_dtype(code, part, node.dtype)})"
                      for code, part in zip(ins, node.inputs))
    return f"{out} = np.concatenate(({parts},), axis={node.params['axis']})"


def _lower_cumsum(node, out, ins, ctx):
    (x,) = node.inputs
    axis = node.params["axis"]
    before, extent, after = _three(ctx, x, axis, ctx.size(x, axis))
    return (f"{out} = K.cumsum3(np.ascontiguousarray({ins[0]}).reshape(({before}, {extent}, {after})))"
            f".reshape({ctx.shape_code(node)})")


_STRUCTURAL_LIBRARY = {"matmul": _lower_matmul, "take": _lower_take, "scatter_add": _lower_scatter_add,
                       "concatenate": _lower_concatenate, "cumsum": _lower_cumsum}


class SplitForm:
    """A graph as a plain-Python driver (`source`, calling nest kernel k as `N{k}`) and the
    sources of its distinct loop-nest kernels (`nests`), with what the driver passes them."""

    def __init__(self, writer, source):
        self.source, self.nests, self.calls = source, writer.nests, writer.calls
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


def generate_split(graph):
    """The split form of `graph` (a `SplitForm`): each loop nest a kernel of its own, called
    from a plain Python driver; repeated nests (a loop's steps) share one kernel."""
    writer = KernelWriter(graph, split=True)
    source = writer.write()
    if writer.vectorisable:
        writer = KernelWriter(graph, frozenset(writer.vectorisable), split=True, plan=writer.plan)
        source = writer.write()
    return SplitForm(writer, source)


def generate(graph):
    """Returns (source, constant arguments, fresh sizes, plan)."""
    writer = KernelWriter(graph)
    source = writer.write()
    if writer.vectorisable:  # write again, with the nodes that vectorise somewhere fast everywhere
        writer = KernelWriter(graph, frozenset(writer.vectorisable), plan=writer.plan)
        source = writer.write()
    return source, writer.const_args, writer.plan.fresh, writer.plan
