"""The typed IR: immutable nodes with static shape and dtype, graphs, and the builder.

A `Node` is one value: a primitive applied to input nodes with static parameters.
A `Builder` records nodes while a function is traced; it hash-conses them, so a node
built twice from the same inputs and parameters is the same node (CSE for free).
`bind` is the single entry point every primitive goes through.
"""
import enum
import itertools
import math
import threading

import numpy as np

from jitad.errors import JitadError, UnsupportedOperationError

_ids = itertools.count()


class Node:
    """One value in a graph: `prim(*inputs, **params)` with a static shape and dtype."""

    __slots__ = ("prim", "inputs", "params", "shape", "dtype", "value", "id", "_frozen")

    def __init__(self, prim, inputs, params, shape, dtype, value=None):
        self.prim = prim
        self.inputs = tuple(inputs)
        self.params = params
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.value = value  # the array of a constant node
        self.id = next(_ids)
        self._frozen = None

    @property
    def frozen(self):
        """`freeze(self.params)`, computed once: a node's params never change after it is made."""
        frozen = self._frozen
        if frozen is None:
            frozen = self._frozen = freeze(self.params)
        return frozen

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(math.prod(self.shape))

    def __repr__(self):
        args = ", ".join(f"%{n.id}" for n in self.inputs)
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        sep = ", " if args and params else ""
        return f"%{self.id}:{self.dtype.name}{list(self.shape)} = {self.prim.name}({args}{sep}{params})"


_PLAIN = frozenset((int, float, bool, str, type(None)))  # hashable as they are


def freeze(value):
    """A hashable stand-in for a parameter value: equal values give equal stand-ins (a dict's
    items sorted by key, lists as tuples, arrays by identity, dtypes by their `str`)."""
    if type(value) is dict:  # a node's params: most values are ints, strings or tuples of ints
        items = []
        for k, v in value.items():
            t = type(v)
            if t is tuple:
                for e in v:
                    if type(e) is not int:
                        v = freeze(v)
                        break
            elif t not in _PLAIN:
                v = freeze(v)
            items.append((k, v))
        if len(items) > 1:
            items.sort()  # keys are unique: only they are compared
        return tuple(items)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, np.ndarray):
        return ("array", id(value))
    if isinstance(value, np.dtype):
        return value.str
    return value


class Graph:
    """A function as IR: input nodes, output nodes, and everything between them."""

    guards = ()  # a traced user function's: what the trace assumed of values (frontend.guards)

    def __init__(self, inputs, outputs):
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self._nodes = None

    @property
    def nodes(self):
        """Nodes reachable from the outputs, in topological order (dead code excluded): depth first
        from the last output to the first, so a reverse pass's gradients come in the order the
        sweep makes them (the last layer's weights' first, right after its cotangent; the kernels
        run in this order, and a value is freed after its last reader)."""
        if self._nodes is None:
            order, seen = [], set()
            for out in reversed(self.outputs):
                stack = [(out, False)]
                while stack:
                    node, expanded = stack.pop()
                    if expanded:
                        order.append(node)
                        continue
                    if node.id in seen:
                        continue
                    seen.add(node.id)
                    stack.append((node, True))
                    for i in reversed(node.inputs):
                        if i.id not in seen:
                            stack.append((i, False))
            self._nodes = order
        return self._nodes

    def consumers(self):
        """Map node id -> list of nodes using it."""
        users = {n.id: [] for n in self.nodes}
        for node in self.nodes:
            for i in node.inputs:
                users[i.id].append(node)
        return users

    def numbering(self):
        """Node id -> k, the node's number in this graph: the inputs first, in order, then the
        other nodes in topological order. `explain`, the fusion plan, the Jacobian plan and the
        kernel's `# %k` comments all number nodes this way."""
        inputs = {n.id for n in self.inputs}
        order = list(self.inputs) + [n for n in self.nodes if n.id not in inputs]
        return {n.id: k for k, n in enumerate(order)}

    def text(self, number=None):
        """The graph as text; `number` maps node ids to the numbers shown (default: the ids;
        `explain` passes `self.numbering()`)."""
        def ref(node):
            return f"%{node.id if number is None else number[node.id]}"

        def typed(node):
            return f"{ref(node)}:{node.dtype.name}{list(node.shape)}"
        lines = [f"graph({', '.join(typed(n) for n in self.inputs)}):"]
        input_ids = {n.id for n in self.inputs}
        for node in self.nodes:
            if node.id in input_ids:
                continue
            if node.prim is const_p:
                value = node.value
                text = repr(value.item()) if value.size == 1 else f"<array {value.dtype.name}{list(value.shape)}>"
                lines.append(f"  {typed(node)} = const {text}")
                continue
            args = [ref(i) for i in node.inputs] + [f"{k}={v}" for k, v in node.params.items()]
            lines.append(f"  {typed(node)} = {node.prim.name}({', '.join(args)})")
        lines.append(f"  return {', '.join(ref(n) for n in self.outputs)}")
        return "\n".join(lines)

    __repr__ = text


class Builder:
    """Records the nodes of one trace. Values of outer traces become captured inputs."""

    tracer_type = None  # set by jitad.frontend.tracer: the array-like type user code sees

    def __init__(self):
        self.interned = {}
        self.inputs = []
        self.captured = {}  # id(outer tracer's node) -> (outer tracer, input node here)
        # concrete values, for Python control flow on traced values (jitad.frontend.guards):
        # input node id -> its array, or the outer tracer it stands for; None: nothing known
        self.sources = None
        self.differentiated = frozenset()  # ids of input nodes that are differentiated
        self.values = {}  # node id -> array, for the nodes evaluated so far
        self.guards = []  # what the trace assumed of concrete values (frontend.guards.Guard)

    def know(self, values, differentiated=()):
        """Give the inputs made so far concrete values (an array, or the outer tracer an input
        stands for, or None when unknown), `differentiated`: indices of differentiated inputs."""
        self.sources = {node.id: v for node, v in zip(self.inputs, values) if v is not None}
        self.differentiated = frozenset(self.inputs[i].id for i in differentiated)

    def evaluate(self, node):
        """The concrete value of `node` (an array), evaluated from the inputs' values with each
        primitive's NumPy implementation and remembered; None when some input's value is not
        known (an abstract trace, a random draw)."""
        values = self.values
        if node.id in values:
            return values[node.id]
        if self.sources is None:
            return None
        stack = [node]
        with np.errstate(all="ignore"):
            while stack:
                n = stack[-1]
                if n.id in values:
                    stack.pop()
                    continue
                missing = [i for i in n.inputs if i.id not in values]
                if missing:
                    stack.extend(missing)
                    continue
                stack.pop()
                if n.prim is const_p:
                    value = n.value
                elif n.prim is input_p:
                    value = self.sources.get(n.id)
                    if value is not None and isinstance(value, Builder.tracer_type):
                        value = value.builder.evaluate(value.node)
                    if value is None:
                        return None
                else:
                    value = n.prim.impl(*[values[i.id] for i in n.inputs], **n.params)
                values[n.id] = np.asarray(value, dtype=n.dtype)
        return values[node.id]

    def depends(self, node):
        """Whether `node` depends on a differentiated input (of this trace or an outer one)."""
        seen, stack = set(), [node]
        while stack:
            n = stack.pop()
            if n.id in seen:
                continue
            seen.add(n.id)
            if n.prim is input_p:
                if n.id in self.differentiated:
                    return True
                source = (self.sources or {}).get(n.id)
                if isinstance(source, Builder.tracer_type) and source.builder.depends(source.node):
                    return True
            stack.extend(n.inputs)
        return False

    def new_input(self, shape, dtype):
        node = Node(input_p, (), {}, shape, dtype)
        self.inputs.append(node)
        return self.wrap(node)

    def wrap(self, node):
        return Builder.tracer_type(node, self)

    def wrap_result(self, node):
        """The value a primitive computed, as user code sees it (the tracer type may mark it:
        a 0-d result is a NumPy scalar, not an array)."""
        return Builder.tracer_type.of_result(node, self)

    def add(self, prim, inputs, params, shape, dtype):
        inputs = tuple(inputs)
        frozen = freeze(params)
        key = (prim, inputs, frozen)  # nodes hash and compare by identity
        node = self.interned.get(key)
        if node is None:
            node = Node(prim, inputs, params, shape, dtype)
            node._frozen = frozen
            self.interned[key] = node
        return node

    def const(self, value):
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            raise UnsupportedOperationError(f"a {array.dtype.name} constant", "jitad traces float, integer "
                                            "and boolean values only (no complex, object or string data). ")
        if array.size == 1:  # intern small constants by value so CSE sees them as equal
            key = ("const", array.dtype.str, array.shape, array.tobytes())  # bits: -0.0 is not 0.0
        else:
            key = ("const", id(value))
        node = self.interned.get(key)
        if node is None:
            node = Node(const_p, (), {}, array.shape, array.dtype, value=array)
            self.interned[key] = node
        return node

    def capture(self, tracer):
        entry = self.captured.get(tracer.node.id)
        if entry is None:
            node = Node(input_p, (), {}, tracer.node.shape, tracer.node.dtype)
            entry = (tracer, node)
            self.captured[tracer.node.id] = entry
            if self.sources is not None:
                self.sources[node.id] = tracer
        return entry[1]


class _Builders(threading.local):
    """The builders of the traces open in this thread, innermost last. Per thread, so a
    transform traced in a background thread never records what the caller's thread runs."""

    def __init__(self):
        self.stack = []


_local = _Builders()


def builders():
    """This thread's stack of open builders (a list; empty when nothing is being traced)."""
    return _local.stack


def current_builder():
    stack = _local.stack
    return stack[-1] if stack else None


class building:
    """Context manager that makes `builder` the one new nodes go into."""

    def __init__(self, builder):
        self.builder = builder

    def __enter__(self):
        _local.stack.append(self.builder)
        return self.builder

    def __exit__(self, *exc):
        _local.stack.pop()


def build_graph(fun, avals):
    """The graph of `fun` over fresh inputs of the given (shape, dtype) pairs, built from its
    primitive binds alone (no NumPy front-end hooks): for passes and transforms that re-emit
    a graph. `fun` returns a list of values; returns (graph, captured outer tracers)."""
    builder = Builder()
    with building(builder):
        args = [builder.new_input(shape, dtype) for shape, dtype in avals]
        outputs = []
        for value in fun(*args):
            if is_tracer(value):
                outputs.append(value.node if value.builder is builder else builder.capture(value))
            else:
                outputs.append(builder.const(np.asarray(value)))
    captured = [tracer for tracer, _ in builder.captured.values()]
    return Graph(builder.inputs + [node for _, node in builder.captured.values()], outputs), captured


class LeakedTracerError(JitadError):
    def __init__(self):
        super().__init__(
            "a traced value escaped the function that created it (stored in a global or an "
            "outer variable during tracing) and was used after tracing ended. Return it "
            "from the function instead.")


def is_tracer(x):
    return isinstance(x, Builder.tracer_type)


def _weak_scalars(args):
    """Concrete arguments, Python scalars among them given the dtype of the float arrays beside them
    (NumPy 2's weak scalars: np.where(c, 0.0, x) of a float32 x is float32), as `bind` does for
    traced operands; the implementations' np.asarray would make them float64 (or int64)."""
    if not any(type(a) in (float, int) for a in args):
        return args
    dtype = None
    for a in args:
        kind = getattr(getattr(a, "dtype", None), "kind", None)
        if kind == "f" and type(a) not in (float, int):
            dtype = a.dtype if dtype is None else np.promote_types(dtype, a.dtype)
    if dtype is None:
        return args
    return [np.asarray(a, dtype) if type(a) in (float, int) else a for a in args]


def bind(prim, args, params):
    """Apply a primitive: record a node if any argument is traced, else compute with NumPy."""
    stack = _local.stack
    builder = stack[-1] if stack else None
    tracer_type = Builder.tracer_type
    for a in args:
        if isinstance(a, tracer_type):
            break
    else:  # nothing traced (the NumPy tier runs every op here): fold, unless a trace wants the node
        if prim.foldable or builder is None:
            return prim.evaluate(_weak_scalars(args), params)
    nodes = []  # the traced arguments' nodes (None for the others, made constants below)
    traced = False
    weak_dtype = None  # Python scalars take the dtype of a traced float operand (NumPy 2)
    for a in args:
        if isinstance(a, tracer_type):
            if a.builder is builder:
                node = a.node
            elif a.builder in stack:
                node = builder.capture(a)
            else:
                raise LeakedTracerError()
            if weak_dtype is None and node.dtype.kind == "f":
                weak_dtype = node.dtype
            traced = True
            nodes.append(node)
        else:
            nodes.append(None)
    if not traced:
        nodes = [builder.const(a) for a in args]
    elif None in nodes:
        for k, a in enumerate(args):
            if nodes[k] is None:
                weak = weak_dtype is not None and type(a) in (float, int)
                nodes[k] = builder.const(np.asarray(a, weak_dtype) if weak else a)
    shape, dtype = prim.shape_rule(*nodes, **params)
    return builder.wrap_result(builder.add(prim, nodes, params, shape, dtype))


class Kind(str, enum.Enum):
    """What a primitive is to the transforms and the backend.

    ELEMENTWISE: broadcasting, computed inline in a loop nest (`scalar` code per element).
    REDUCTION: an accumulator over `axes` in a loop nest (`accumulate`).
    INDEX: a pure index mapping, fused as a read through its `index_map`.
    LIBRARY: a call between loop nests (`lower` emits it).
    LEAF: a graph input or a constant. ALIAS: custom_vjp/custom_jvp/checkpoint markers,
    replaced by their first input once AD is done. CALLBACK: a Python function run on arrays.
    (A str enum: `kind == "leaf"` keeps working for code written against the strings.)
    """
    ELEMENTWISE = "elementwise"
    REDUCTION = "reduction"
    INDEX = "index"
    LIBRARY = "library"
    LEAF = "leaf"
    ALIAS = "alias"
    CALLBACK = "callback"

    def __str__(self):
        return self.value


class Leaf:
    """The two primitives every graph needs: graph inputs and constants. They compute nothing,
    so they have no rules; the fields transforms and the backend read are fixed here."""

    __slots__ = ("name",)
    kind = Kind.LEAF
    differentiable = False
    foldable = False
    impl = shape_rule = jvp_rule = vjp_rule = batch = simplify = lower = None
    scalar = accumulate = index_map = symbolic_shape = stored_operands = ufunc = domain = None
    injective = contiguous_output = False
    kernel_module = "K"
    inline_cost = 0

    def __init__(self, name):
        self.name = name

    @property
    def short(self):
        return self.name

    def cost(self, node):
        return 0

    def __repr__(self):
        return self.name


input_p = Leaf("input")
const_p = Leaf("const")
