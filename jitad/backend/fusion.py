"""Fusion: plan a graph as a sequence of loop nests and library calls.

Elementwise and index nodes are computed inline, element by element, inside the loop
nest of whatever consumes them (so cheap forward values needed by the adjoint are
recomputed there instead of stored). A node is *materialized* (stored in an array or
a scalar) only when it must be: a graph output, a reduction, a library call or its
operand, a value read under broadcasting that is not trivially cheap, or an
expensive value that several loop nests would otherwise recompute. Materialized
fusible nodes with the same iteration domain share one loop nest when their
dependencies allow.

Sizes are symbolic: every dimension is a `Dim` — a size the kernel reads from an
input array at run time, or a fresh size passed in, plus a constant offset — so a
kernel does not embed the sizes it was traced at and is reused for new sizes.
"""
from dataclasses import dataclass, field

from jitad.ir import Kind, const_p
from jitad.primitives.core import EXPENSIVE, own_inline_cost
from jitad.primitives.elementwise import add_p
from jitad.primitives.structural import is_matrix_transpose

# the relative cost of recomputing one element of a node inline is its primitive's `inline_cost`
RECOMPUTE_LIMIT = 12  # materialize a value several nests need once recomputing it costs more
INLINE_LIMIT = 48     # materialize a value whose inline recomputation would cost more than this
# a transcendental that two loop nests read is stored (not recomputed in each) while its array is at
# most SMALL_STORE elements (it stays in cache; a recomputation in a nest with pad branches, as an
# LSTM step's adjoint has, is a scalar libm-style call per element). Measured side by side
# (/tmp/s12/ab.py, loaded 2-core host): LSTM 2 x 14, 64 steps, value_and_grad 11.3 -> 6.9 ms,
# 1,024 steps 219 -> 148 ms; the other asv cases within noise (0.97-1.01).
SMALL_STORE = 1 << 16


class Dims:
    """Symbolic sizes: a weighted union-find over size symbols (value = root + offset)."""

    def __init__(self):
        self.parent, self.offset, self.code, self.value = [], [], [], []

    def new(self, code, value):
        self.parent.append(len(self.parent))
        self.offset.append(0)
        self.code.append(code)
        self.value.append(value)
        return (len(self.parent) - 1, 0)

    def find(self, sym):
        total = 0
        while self.parent[sym] != sym:
            total += self.offset[sym]
            sym = self.parent[sym]
        return sym, total

    def canon(self, dim):
        if isinstance(dim, int):
            return dim
        root, off = self.find(dim[0])
        return (root, off + dim[1])

    def unify(self, a, b):
        a, b = self.canon(a), self.canon(b)
        if isinstance(a, int) or isinstance(b, int) or a[0] == b[0]:
            return
        (ra, oa), (rb, ob) = a, b
        # value(ra) + oa == value(rb) + ob; keep the root whose code reads an input
        if self.code[rb] is not None and self.code[rb].startswith("dims[") and not self.code[ra].startswith("dims["):
            self.parent[rb], self.offset[rb] = ra, oa - ob
        else:
            self.parent[ra], self.offset[ra] = rb, ob - oa

    def source(self, dim):
        dim = self.canon(dim)
        if isinstance(dim, int):
            return str(dim)
        root, off = dim
        code = self.code[root]
        return code if off == 0 else f"({code} {'+' if off > 0 else '-'} {abs(off)})"

    def equal(self, a, b):
        return self.canon(a) == self.canon(b)


@dataclass
class LoopNest:
    domain: tuple               # symbolic dims of the iteration space
    shape: tuple                # its concrete shape (for explain)
    roots: list = field(default_factory=list)
    isolated: bool = False      # split form: a running sum's link, in a nest of its own


@dataclass
class LibraryCall:
    node: object


@dataclass
class Plan:
    graph: object
    dims: Dims
    shapes: dict                # node id -> tuple of Dim
    materialized: set
    steps: list
    fresh: list                 # concrete values of the dims[k] sizes, in order
    starts: dict                # (node id, axis) -> Dim or int: slice / pad starts


def is_fusible(node):
    return node.prim.kind in (Kind.ELEMENTWISE, Kind.INDEX, Kind.REDUCTION)


def is_pointwise(node):
    return node.prim.kind in (Kind.ELEMENTWISE, Kind.INDEX)


class _ShapeInference:
    """Assign a symbolic Dim to every axis of every node."""

    def __init__(self, graph, arg_names):
        self.dims = Dims()
        self.shapes = {}
        self.starts = {}
        self.fresh = []
        for node in graph.nodes:
            if node.id in arg_names:
                name = arg_names[node.id]
                self.shapes[node.id] = tuple(
                    1 if n == 1 else self.dims.new(f"{name}.shape[{a}]", n) for a, n in enumerate(node.shape))
            elif node.prim is const_p:
                self.shapes[node.id] = tuple(node.shape)  # inline literal scalars
            else:
                self.shapes[node.id] = self.infer(node)

    def fresh_dim(self, value):
        if value == 1:
            return 1
        code = f"dims[{len(self.fresh)}]"
        self.fresh.append(value)
        return self.dims.new(code, value)

    def near(self, base, value):
        """`value` as base + small offset when it is close to a symbolic size, else a fresh size."""
        if value == 1:
            return 1
        if not isinstance(base, int):
            base_value = self.dims.value[self.dims.canon(base)[0]] + self.dims.canon(base)[1]
            if abs(value - base_value) <= 4:
                return (base[0], base[1] + value - base_value)
        return self.fresh_dim(value)

    def matching(self, value, candidates):
        for dim in candidates:
            if not isinstance(dim, int) and self.value_of(dim) == value:
                return dim
        return self.fresh_dim(value)

    def value_of(self, dim):
        if isinstance(dim, int):
            return dim
        root, off = self.dims.canon(dim)
        return self.dims.value[root] + off

    def infer(self, node):
        kind = node.prim.kind
        ins = [self.shapes[i.id] for i in node.inputs]
        if kind is Kind.ELEMENTWISE:
            out = []
            for axis in range(node.ndim):
                chosen = 1
                for i, shape in zip(node.inputs, ins):
                    k = axis - (node.ndim - i.ndim)
                    if k >= 0 and i.shape[k] != 1:
                        if chosen == 1:
                            chosen = shape[k]
                        else:
                            self.dims.unify(chosen, shape[k])
                out.append(chosen)
            return tuple(out)
        if kind is Kind.REDUCTION:
            axes = node.params["axes"]
            return tuple(d for a, d in enumerate(ins[0]) if a not in axes)
        if node.prim.symbolic_shape is not None:
            return node.prim.symbolic_shape(node, ins, self)
        candidates = [d for shape in ins for d in shape]
        return tuple(self.matching(n, candidates) if n != 1 else 1 for n in node.shape)

    def record_start(self, node, axis, size_dim, size, start):
        """Record the start of a slice or pad along `axis` (code read at run time when near the end)."""
        self.starts[(node.id, axis)] = self._start(size_dim, size, start)

    def _start(self, size_dim, size, start):
        """A slice start as code-able Dim: literal when small, size - c when near the end."""
        if start <= 4 or isinstance(size_dim, int):
            return start
        if size - start <= 4:
            return (size_dim[0], size_dim[1] - (size - start)) if not isinstance(size_dim, int) else start
        return start


def inline_cost(node, materialized, memo):
    """Cost of recomputing one element of `node` inline (up to materialized values)."""
    if node.id in memo:
        return memo[node.id]
    if node.id in materialized or node.prim.kind is Kind.LEAF:
        cost = 0
    else:
        cost = own_inline_cost(node) + sum(inline_cost(i, materialized, memo) for i in node.inputs)
    memo[node.id] = cost
    return cost


def _expands(node, consumer):
    """Whether `consumer` reads `node` at more points than `node` has (broadcast/index reuse)."""
    if consumer.prim.kind is Kind.REDUCTION or consumer.prim.injective:
        return False
    return node.size < consumer.size and node.size > 1


def plan(graph, arg_names, split=False):
    """Plan `graph`: symbolic shapes, which nodes to store, and the ordered steps.

    With `split` (each nest becomes a kernel of its own), a node joins a nest only when it
    shares work with it (reads one of its values, or an inline value one of its roots
    computes): unrelated values in separate nests keep each nest's source independent of
    how many such values a program has (an unrolled loop's steps)."""
    shapes = _ShapeInference(graph, arg_names)
    users = graph.consumers()
    materialized = {o.id for o in graph.outputs if o.prim.kind is not Kind.LEAF}
    for node in graph.nodes:
        if node.prim.kind is Kind.LEAF:
            continue
        if not is_fusible(node) or node.prim.kind is Kind.REDUCTION:
            materialized.add(node.id)
            if not is_fusible(node):
                materialized.update(i.id for i in _library_operands(node) if i.prim.kind is not Kind.LEAF)
    isolated = _store_accumulations(graph, materialized) if split else set()
    memo = {}
    for node in graph.nodes:  # in topological order: each cost is computed from its inputs' memos
        if is_pointwise(node) and node.id not in materialized:
            cost = inline_cost(node, materialized, memo)
            # stored when read under broadcasting, or when recomputing it inline would be a long
            # chain (a sum accumulated over a loop's steps): the chain is computed once, not per read
            # (one transcendental of a small value read at every point of a big one: exp(log_sd) in
            # (X - mu) / exp(log_sd) is computed once per element of log_sd, not per element of X)
            if cost > INLINE_LIMIT or (cost >= EXPENSIVE and any(_expands(node, u) for u in users[node.id])):
                materialized.add(node.id)
                memo[node.id] = 0
    while True:
        steps, owner = _schedule(graph, shapes, materialized, split, isolated)
        extra = _shared_expensive(graph, materialized, steps, owner)
        if not extra:
            break
        materialized |= extra
    return Plan(graph, shapes.dims, shapes.shapes, materialized, steps, shapes.fresh, shapes.starts)


def _store_accumulations(graph, materialized):
    """Split form: a running sum of stored values (the adjoint of a weight summed over a
    loop's steps, `((m0 + m1) + m2) + ...`) is stored link by link, so each link is the same
    small nest whatever the number of steps, instead of one nest whose size grows with it."""
    links = set()
    for node in graph.nodes:
        if node.prim is not add_p:
            continue
        for inner, other in (node.inputs, node.inputs[::-1]):
            if inner.prim is add_p and other.id in materialized and other.prim.kind is not Kind.LEAF:
                links.add(inner.id)
    materialized |= links
    return links  # each in a nest of its own: a chain does not gather into one growing nest


def _library_operands(node):
    """The values a library call needs stored (its primitive may read some through views)."""
    if node.prim.stored_operands is not None:
        return node.prim.stored_operands(node)
    return list(node.inputs)


def _domain(node, shapes):
    if node.prim.kind is Kind.REDUCTION:
        return shapes.shapes[node.inputs[0].id], node.inputs[0].shape
    return shapes.shapes[node.id], node.shape


def _reads(node, materialized):
    """Materialized nodes and leaves read when computing `node` inline: id -> aligned.

    A read is aligned when it reaches the stored value only through elementwise ops of
    the same shape (or as a reduction's input): in a loop nest over the same domain the
    value is then computed in the same iteration, so it need not be finished first.
    """
    out = {}
    aligned_root = node.prim.kind in (Kind.ELEMENTWISE, Kind.REDUCTION)
    stack = [(i, aligned_root and (node.prim.kind is Kind.REDUCTION or i.shape == node.shape)) for i in node.inputs]
    seen = {}
    while stack:
        n, aligned = stack.pop()
        if seen.get(n.id) is False or seen.get(n.id) == aligned:
            continue
        seen[n.id] = aligned and seen.get(n.id, True)
        if n.id in materialized or n.prim.kind is Kind.LEAF:
            out[n.id] = out.get(n.id, True) and aligned
        else:
            stack.extend((i, aligned and n.prim.kind is Kind.ELEMENTWISE and i.shape == n.shape) for i in n.inputs)
    return out


def _joinable(node, domain, step, index, deps, owner, by_id, shapes):
    """Whether fusible `node` (iterating over `domain`) can be computed in loop nest `step`.

    Its domain must be the nest's domain or a prefix of it (then it is computed once per
    outer iteration). Values it reads from the same nest must be ready where it runs: an
    aligned elementwise value of the same domain, or -- for a node on a prefix -- an
    aligned reduction of this nest over exactly the remaining inner axes.
    """
    rank = len(step.domain)
    if len(domain) > rank or not all(shapes.dims.equal(a, b) for a, b in zip(step.domain, domain)):
        return False
    for d, aligned in deps.items():
        where = owner.get(d)
        if where is None or where < index:
            continue
        if where > index or not aligned:
            return False
        dep = by_id[d]
        if is_pointwise(dep):
            if dep.ndim != len(domain):
                return False
        elif dep.prim.kind is Kind.REDUCTION:
            inner = tuple(range(len(domain), rank))
            if len(domain) == rank or dep.inputs[0].ndim != rank or tuple(dep.params["axes"]) != inner:
                return False
        else:
            return False
    return True


def _inline_set(node, materialized):
    """Ids of the non-stored nodes computed inline for `node` (itself included)."""
    out, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n.id in out or n.prim.kind is Kind.LEAF or (n.id in materialized and n is not node):
            continue
        out.add(n.id)
        stack.extend(n.inputs)
    return out


def _schedule(graph, shapes, materialized, split=False, isolated=frozenset()):
    steps, owner = [], {}  # owner: materialized node id -> step index
    sharing = {}  # split: inline node id -> indices of the nests whose roots compute it
    by_id = {n.id: n for n in graph.nodes}
    for node in graph.nodes:
        if node.id not in materialized:
            continue
        if not is_fusible(node):
            owner[node.id] = len(steps)
            steps.append(LibraryCall(node))
            continue
        deps = _reads(node, materialized)
        earliest = max((owner[d] for d in deps if d in owner), default=0)
        domain, concrete = _domain(node, shapes)
        if split:  # only nests it shares work with: ones whose values it reads or recomputes
            mine = _inline_set(node, materialized) - {node.id}
            related = {owner[d] for d in deps if d in owner}
            for n in mine:
                related |= sharing.get(n, set())
            candidates = [] if node.id in isolated else \
                sorted(i for i in related if i >= earliest and not getattr(steps[i], "isolated", False))
        else:
            candidates = range(earliest, len(steps))
        for index in candidates:
            step = steps[index]
            if isinstance(step, LoopNest) and _joinable(node, domain, step, index, deps, owner, by_id, shapes):
                step.roots.append(node)
                owner[node.id] = index
                break
        else:
            owner[node.id] = len(steps)
            steps.append(LoopNest(domain, concrete, [node], isolated=node.id in isolated))
        if split:
            for n in mine:
                sharing.setdefault(n, set()).add(owner[node.id])
    return steps, owner


def _shared_expensive(graph, materialized, steps, owner):
    """Pointwise values that several loop nests would each recompute at a high cost."""
    used_in = {}
    for index, step in enumerate(steps):
        roots = step.roots if isinstance(step, LoopNest) else [step.node]
        seen = set()
        for root in roots:
            stack = list(root.inputs) if isinstance(step, LoopNest) else []
            while stack:
                n = stack.pop()
                if n.id in seen or n.id in materialized or n.prim.kind is Kind.LEAF:
                    continue
                seen.add(n.id)
                used_in.setdefault(n.id, set()).add(index)
                stack.extend(n.inputs)
    memo, extra = {}, set()
    by_id = {n.id: n for n in graph.nodes}
    for node_id, where in used_in.items():
        cost = inline_cost(by_id[node_id], materialized, memo)
        # or a value costly in itself (own_inline_cost EXPENSIVE: a transcendental, a division, a
        # reshape that merges or splits axes) that three or more nests read (a softmax's exp(L - m) in
        # the forward sum and two adjoint nests), or two when its array is small: computed once, read back
        if len(where) > 1 and cost >= RECOMPUTE_LIMIT or \
                len(where) > 2 and own_inline_cost(by_id[node_id]) >= EXPENSIVE or \
                len(where) > 1 and own_inline_cost(by_id[node_id]) >= EXPENSIVE and by_id[node_id].size <= SMALL_STORE:
            extra.add(node_id)
    return extra


__all__ = ["plan", "Plan", "LoopNest", "LibraryCall", "Dims"]
