"""Plain Python loops rolled back into loops: repeated pieces of a trace become one `scan` node.

A Python `for` loop over traced values unrolls into the trace: T steps, T copies of the same
nodes. `roll(graph)` finds such runs and replaces each by one scan node
(jitad.primitives.control) whose body is one copy, so transforming and compiling the program
costs the same for 10 steps or 10,000 (tracing still runs the Python loop: it is the only way
to see it).

A *region* is a run of nodes (in creation order) made of r >= `settings["min_steps"]` copies
of a piece of p nodes with the same primitives, parameters, shapes and dtypes (`_signature`).
It is rolled only when every input of every node of the piece is, across the copies, one of:

    internal   the same position q < j of the same copy;
    carry      position q of the previous copy (copy 0: one node from before the region, the
               initial value);
    const      one node from outside the region, the same in every copy;
    xs         a different node from outside the region in each copy (same shape and dtype):
               stacked into a per-step input.

Nodes whose parameters differ between copies (the `slice` of `xs[t]`) must not depend on a
carry: they are *hoisted* -- left out of the body, computed before the loop as they were, and
stacked into a per-step input (consecutive slices of one array become one strided slice).
Values of the region used after it become the loop's results: the last copy's carries are the
final carry, any other value is a stacked per-step output read back by index. Consecutive rows of
a stacked output joined again after the loop (`np.stack(columns, axis=1)`, `np.concatenate`),
each maybe reshaped the same way, are read as one transpose of the stack: neither the join nor
its adjoint (one slice and one padded sum per row) is left in the graph.

Writes into an array at a place that moves with the step (`out[t] = v`) are not carried when no
other step writes the same place: the loop outputs the written values and one gather after it
writes them all (`_Write`). A slice whose place moves with the step and that reads a carried array
is a gather at per-step positions; when it reads exactly what the step before wrote (`y[i - 1]` of
`y[i] = g(y[i - 1])`, a time integration) or what this step just wrote, the loop carries or uses
that value instead, so a step costs O(1) and not O(n) (`_reads_written`).

Anything else (a value read two steps back of a carry, a node whose parameters vary and that
depends on the carry otherwise) leaves the region unrolled or the array carried: rolling changes
how a program is computed, never what it computes.
"""
import bisect
from collections import defaultdict

import numpy as np

from jitad.frontend.guards import Guard
from jitad.ir import Graph, const_p, freeze, input_p
from jitad.primitives import concatenate_p, reshape_p, slice_p, take_p
from jitad.primitives.builders import index_first

# min_steps: copies before a run is rolled; min_nodes: nodes the run covers (p * r) before a
# loop is worth it; max_period: the largest piece considered; enabled: jitad.config.roll_loops
settings = {"enabled": True, "min_steps": 4, "min_nodes": 40, "max_period": 4000}
# regions rolled (and the steps they cover) in this process; `failed`: rolls that raised (the
# program then runs unrolled, which is right but slow: the tests and the fuzzer require 0)
counts = {"regions": 0, "steps": 0, "failed": 0}
_CANDIDATES = 16  # periods tried per position: the next occurrences of the same signature
VARYING = {slice_p: ("starts",)}  # parameters that may differ between copies (the node is then hoisted)


def _signature(node):
    if node.prim.kind in ("alias", "callback"):
        return ("unique", node.id)  # user rules and Python callbacks stay where they are
    varying = VARYING.get(node.prim, ())
    params = freeze({k: v for k, v in node.params.items() if k not in varying}) if varying else node.frozen
    return hash((node.prim.name, params, node.shape, node.dtype.str,
                 tuple((i.shape, i.dtype.str) for i in node.inputs)))


class Region:
    """r copies of a piece of p nodes starting at position `start` of the node sequence, with the
    role of every input (see the module docstring) once `plan` has checked it."""

    def __init__(self, seq, start, period, steps):
        self.start, self.period, self.steps = start, period, steps
        self.copies = [seq[start + k * period:start + (k + 1) * period] for k in range(steps)]
        self.where = {node.id: (k, j) for k, copy in enumerate(self.copies) for j, node in enumerate(copy)}

    def plan(self):
        """Classify every input; False when the copies do not form a loop."""
        p, r, copies = self.period, self.steps, self.copies
        self.roles = []  # per position j: a list of roles of its inputs
        self.carry_init = {}  # carried position q -> the node before the region it starts from
        self.depends = [False] * p  # whether position j depends on a carry
        varying = []
        for j in range(p):
            column = [copies[k][j] for k in range(r)]
            params = column[0].frozen
            varying.append(any(n.frozen != params for n in column[1:]))
            roles = []
            for m in range(len(column[0].inputs)):
                role = self._role([n.inputs[m] for n in column], j)
                if role is None:
                    return False
                roles.append(role)
                if role[0] == "carry" or (role[0] == "internal" and self.depends[role[1]]):
                    self.depends[j] = True
            self.roles.append(roles)
        # a slice whose place moves with the step and that reads a carried array (y[i - 1] of an
        # array the loop writes): a gather at per-step positions (`moving`), not hoisted
        self.moving = {j: [_slice_positions(copies[k][j]) for k in range(r)] for j in range(p)
                       if varying[j] and self.depends[j] and copies[0][j].prim is slice_p}
        if any(v and d and j not in self.moving for j, (v, d) in enumerate(zip(varying, self.depends))):
            return False
        # hoisted: the varying positions and what they are computed from (none depends on a carry)
        self.hoisted = set()
        for j in reversed(range(p)):
            if j in self.moving:
                continue
            if varying[j] or j in self.hoisted:
                self.hoisted.add(j)
                self.hoisted.update(role[1] for role in self.roles[j] if role[0] == "internal")
        if any(q in self.hoisted for q in self.carry_init):
            return False  # a value carried from a hoisted position: the pieces are misaligned
        # a loop is worth it when its body computes something (not only slices and reshapes)
        return any(j not in self.hoisted and self.copies[0][j].prim.kind != "index" for j in range(p))

    def _role(self, sources, j):
        where = self.where
        inside = [where.get(s.id) for s in sources]
        k0 = inside[0]
        if k0 is not None:  # internal: the same earlier position of the same copy
            q = k0[1]
            if all(w == (k, q) for k, w in enumerate(inside)) and q < j:
                return ("internal", q)
            return None
        rest = inside[1:]
        if rest and rest[0] is not None:  # carried: position q of the copy before
            q = rest[0][1]
            if not all(w == (k, q) for k, w in enumerate(rest)):
                return None
            init = self.carry_init.setdefault(q, sources[0])
            if init is not sources[0] or (init.shape, init.dtype) != (self.copies[0][q].shape, self.copies[0][q].dtype):
                return None
            return ("carry", q)
        if any(w is not None for w in rest):
            return None
        if all(s is sources[0] for s in sources):
            return ("const", sources[0])
        if any((s.shape, s.dtype) != (sources[0].shape, sources[0].dtype) for s in sources):
            return None
        return ("xs", tuple(sources))


def _slice_positions(node):
    """The flat positions in its operand that a slice node reads, in the slice's shape."""
    starts, steps, shape = node.params["starts"], node.params["steps"], node.shape
    axes = [start + step * np.arange(n) for start, step, n in zip(starts, steps, shape)]
    return np.ravel_multi_index(np.ix_(*axes), node.inputs[0].shape).astype(np.int64).reshape(shape)


def _regions(seq):
    """Non-overlapping regions of `seq` that `Region.plan` accepts, longest first at each start."""
    sigs = [_signature(n) for n in seq]
    positions = defaultdict(list)
    for i, h in enumerate(sigs):
        positions[h].append(i)
    min_steps, min_nodes, max_period = settings["min_steps"], settings["min_nodes"], settings["max_period"]
    found, i, n = [], 0, len(seq)
    failed = {}  # period -> position up to which it was tried and failed
    ends = {}  # period -> where the latest run of that period ends
    while i < n:
        occurrences = positions[sigs[i]]
        first = bisect.bisect_right(occurrences, i)
        candidates = []
        for j in occurrences[first:first + _CANDIDATES]:
            p = j - i
            if p > max_period:
                break
            if failed.get(p, -1) > i:
                continue
            end = ends.get(p, -1)  # sigs[k] == sigs[k + p] for k from an earlier start up to `end`
            if end <= i:
                end = i
                while end + p < n and sigs[end] == sigs[end + p]:
                    end += 1
                ends[p] = end
            run = end - i
            steps = run // p + 1
            if steps >= min_steps and p * steps >= min_nodes:
                candidates.append((p * steps, p, steps))
        region = None
        # the shortest piece that covers about as much as the best one: a period that is a
        # multiple of another covers the same run, and one copy of it is a bigger body
        best = max((c[0] for c in candidates), default=0)
        for _, p, steps in sorted((c for c in candidates if 2 * c[0] >= best), key=lambda c: c[1]):
            if failed.get(p, -1) > i:
                continue
            region = Region(seq, i, p, steps)
            if region.plan():
                break
            # the first copy often differs (it computes what later copies share): one copy later
            region = Region(seq, i + p, p, steps - 1) if steps - 1 >= min_steps else None
            if region is not None and region.plan():
                break
            region = None
            failed[p] = i + p * steps  # this period fails throughout its run
        if region is None:
            i += 1
            continue
        found.append(region)
        counts["regions"] += 1
        counts["steps"] += region.steps
        i = region.start + region.period * region.steps
    return found


def roll(graph):
    """`graph` with its runs of repeated pieces rolled into scan nodes (the same graph when there
    are none). Its guards (what a trace assumed of values) are carried over to the new nodes."""
    if not settings["enabled"]:
        return graph
    roots = list(graph.outputs) + [g.node for g in graph.guards]
    whole = Graph(graph.inputs, roots)  # the guards' tests too
    seq = sorted((n for n in whole.nodes if n.prim is not input_p and n.prim is not const_p), key=lambda n: n.id)
    if len(seq) < settings["min_nodes"]:
        return graph
    regions = _regions(seq)
    if not regions:
        return graph
    from jitad.frontend.tracer import trace
    try:
        rolled, captured = trace(lambda *inputs: _Rebuild(whole, regions).run(inputs, roots),
                                 [(n.shape, n.dtype) for n in graph.inputs])
    except Exception:  # noqa: BLE001 -- a bug of rolling must not stop a program that runs unrolled
        counts["failed"] += 1
        return graph
    assert not captured
    new = Graph(rolled.inputs, rolled.outputs[:len(graph.outputs)])
    new.guards = [_moved(g, node) for g, node in zip(graph.guards, rolled.outputs[len(graph.outputs):])]
    if hasattr(graph, "draws"):
        new.draws = graph.draws
    return new


class _Write:
    """A carried array that each step only writes into, at positions no other step writes
    (`out[t] = v` in a loop, jitad.frontend.inplace's where(mask, take(v, source), old),
    where(mask, scatter_add(v, positions), old), or where(mask, broadcast_to(v), old) for one
    element): the loop outputs the written values instead of
    carrying the array, and one gather after the loop writes them all (bit for bit: -0.0 stays).
    `positions`: the body positions this replaces; `value`: the role of the written value;
    `indices`: the concrete positions of every step, (steps, k); `scatter`: the mask's scatter."""

    def __init__(self, carry, positions, value, indices, scatter, where_node, shape, forwards=None, same=()):
        self.carry, self.positions, self.value, self.indices = carry, positions, value, indices
        self.scatter, self.where_node, self.shape = scatter, where_node, shape
        # moving slices of the array that read, at each step, exactly what the step d steps before
        # wrote ({position: d}; y[i - 1] of y[i] = g(y[i - 1])): the loop carries the last d written
        # values instead of the array; `same`: those that read what this step just wrote (y[i] after
        # y[i] = v): that value
        self.forwards, self.same = dict(forwards or {}), tuple(same)

    def apply(self, initial, values):
        """The array after the loop: `initial` with each step's written `values` at its positions."""
        from jitad.primitives import greater_p, reshape_p, scatter_add_p, take_p, where_p
        flat_values = np.reshape(values, (-1,) + tuple(values.shape[2:]))
        flat_indices = self.indices.reshape(-1)
        size, axis = self.scatter.params["size"], self.scatter.params["axis"]
        source = np.zeros(size, np.int64)  # the entry of flat_values each position takes
        source[flat_indices] = np.arange(flat_indices.size)
        written = take_p(flat_values, source, axis=axis)
        ones = np.ones(flat_values.shape, np.dtype(self.scatter.dtype))
        mask = greater_p(scatter_add_p(ones, flat_indices, axis=axis, size=size), np.zeros((), ones.dtype))
        old = initial if tuple(np.shape(initial)) == self.where_node.shape else \
            reshape_p(initial, shape=self.where_node.shape)
        new = where_p(mask, written, old)
        return new if new.shape == self.shape else reshape_p(new, shape=self.shape)


def _writes(region, used_after):
    """{carried position: _Write} for the carries of `region` that are written into and never read."""
    from jitad.interpreter import evaluate
    from jitad.primitives import broadcast_to_p, greater_p, reshape_p, scatter_add_p, take_p, where_p
    p, copies = region.period, region.copies
    template = copies[0]
    users = defaultdict(list)  # position -> positions of the body that read it
    for j in range(p):
        for role in region.roles[j]:
            if role[0] in ("internal", "carry"):
                users[(role[0], role[1])].append(j)
    outside = {region.where[i] for i in used_after}
    found = {}
    for q in region.carry_init:
        readers = users[("carry", q)]
        # moving slices of the array itself (y[i - 1]): forwarded below, if each reads the last write
        moving = [j for j in readers if j in region.moving and region.roles[j][0] == ("carry", q)]
        readers = [j for j in readers if j not in moving]
        if len(readers) != 1 or q in region.hoisted:
            continue
        w, pre = readers[0], []
        if template[w].prim is reshape_p and len(users[("internal", w)]) == 1:  # where(m, s, reshape(old))
            pre, w = [w], users[("internal", w)][0]
        node = template[w]
        roles = region.roles[w]
        if node.prim is not where_p or roles[2] != (("internal", pre[0]) if pre else ("carry", q)) \
                or roles[0][0] != "internal" or roles[1][0] != "internal":
            continue
        # the chain from the where to the carried value: reshapes only (walked back from the carry)
        back, j = [q], q
        while j != w and j not in pre and template[j].prim is reshape_p and region.roles[j][0][0] == "internal":
            j = region.roles[j][0][1]
            back.append(j)
        if j != w:
            continue
        chain = pre + back[::-1]
        # read by nothing else, except the array read right after the write, in the same step (`y[i]`
        # after `y[i] = v`): moving slices of it, maybe through one reshape each, that read what this
        # step wrote
        same, bridges = [], []
        for i, c in enumerate(chain[len(pre):]):
            for u in users[("internal", c)]:
                if c != q and u == chain[len(pre) + i + 1]:
                    continue
                if u in region.moving and region.roles[u][0] == ("internal", c):
                    same.append(u)
                elif template[u].prim is reshape_p and users[("internal", u)] and u not in region.hoisted and all(
                        v in region.moving and region.roles[v][0] == ("internal", u) for v in users[("internal", u)]):
                    bridges.append(u)
                    same.extend(users[("internal", u)])
                else:
                    same = None
                    break
            if same is None:
                break
        if same is None or any(pos[1] in bridges for pos in outside):
            continue
        if any(region.hoisted & set(chain)):
            continue
        if any(pos[1] in chain and pos != (region.steps - 1, q) for pos in outside):
            continue  # the array is read between steps
        m, sc = roles[0][1], roles[1][1]
        mask, scatter = template[m], template[sc]
        # the written values: a gather or scatter of them, or one value broadcast (x[i] = v)
        one_value = scatter.prim is broadcast_to_p and scatter.inputs[0].shape == () and len(node.shape) == 1
        if mask.prim is not greater_p or (scatter.prim not in (scatter_add_p, take_p) and not one_value):
            continue
        ones_scatter = template[region.roles[m][0][1]] if region.roles[m][0][0] == "internal" else None
        if ones_scatter is None or ones_scatter.prim is not scatter_add_p or region.roles[m][1][0] != "const" or \
                (scatter.prim is scatter_add_p and ones_scatter.params != scatter.params):
            continue
        index_role = region.roles[region.roles[m][0][1]][1]  # the written positions, as the mask's scatter reads them
        if (scatter.prim is scatter_add_p and region.roles[sc][1] != index_role) or index_role[0] != "xs" or \
                any(n.prim is not const_p for n in index_role[1]) or (scatter.params.get("axis") != 0 and not one_value) or \
                ones_scatter.params.get("axis") != 0:
            continue
        try:  # the mask's zero and ones must be what inplace writes: concrete constants
            zero = evaluate(Graph([], [region.roles[m][1][1]]), [])[0]
            ones_role = region.roles[region.roles[m][0][1]][0]
            if ones_role[0] != "const":
                continue
            ones = evaluate(Graph([], [ones_role[1]]), [])[0]
        except Exception:  # noqa: BLE001 -- not constants: not a plain write
            continue
        if np.any(zero != 0) or np.any(ones != 1):
            continue
        indices = np.stack([n.value for n in index_role[1]])
        if one_value and indices.shape[1:] != (1,):
            continue
        if np.unique(indices).size != indices.size:
            continue  # some position is written twice: the last write wins, as the loop says
        value = region.roles[sc][0]
        if value[0] == "internal" and (value[1] in region.hoisted or value[1] in chain):
            continue
        positions = set(chain) | set(bridges)
        for extra in (sc, m, region.roles[m][0][1]):  # the write's own mask and scatter, if only it reads them
            if all(u in positions or u == m for u in users[("internal", extra)]) and \
                    not any(pos[1] == extra for pos in outside):
                positions.add(extra)
        backs = _reads_written(region, moving, indices, node, value, range(1, MAX_BACK + 1))
        after = _reads_written(region, same, indices, node, value, range(0, MAX_BACK + 1), after_write=True)
        if backs is None or after is None:
            continue  # a moving read of another place: the array stays carried
        backs.update((j, d) for j, d in after.items() if d)
        same = [j for j, d in after.items() if not d]
        found[q] = _Write(q, positions, value, indices, ones_scatter, node, template[q].shape, backs, same)
    return found


MAX_BACK = 8  # the most steps back a forwarded read may look (the loop carries that many values)


def _reads_written(region, moving, indices, where_node, value, backs, after_write=False):
    """{j: d} when each j of `moving` (slices of a written array) reads, at every step k >= d,
    exactly the places step k - d wrote, in the order it wrote them (d from `backs`), at the
    steps before d only places no earlier step wrote (nor this one, for a read `after_write`), and
    the written value has the slice's dtype: the loop then reads the written value itself (d = 0:
    this step's) or carries the last d of them instead of the array. None when one of them reads
    anything else."""
    template = region.copies[0]
    row = int(np.prod(where_node.shape[1:], dtype=np.int64))
    written = (indices[:, :, None] * row + np.arange(row)).reshape(indices.shape[0], -1)  # flat places, per step
    kind, what = value
    value_node = what if kind == "const" else what[0] if kind == "xs" else template[what]
    found = {}
    for j in moving:
        places = region.moving[j]
        if template[j].dtype != value_node.dtype or places[0].size != written.shape[1]:
            return None
        for d in backs:
            if d < region.steps and all(np.array_equal(places[k].ravel(), written[k - d])
                                        for k in range(d, region.steps)) and \
                    not any(np.isin(places[k], written[:k + after_write]).any() for k in range(min(d, region.steps))):
                found[j] = d
                break
        else:
            return None
    return found


def _moved(guard, node):
    return Guard(node, guard.kind, guard.expected, guard.where)


class _Rebuild:
    """Replays a graph into the current trace with each region's body nodes replaced by a scan."""

    def __init__(self, graph, regions):
        self.graph = graph
        self.regions = regions
        self.owner = {}  # id of a node in a region's body -> the region
        for region in regions:
            for k, copy in enumerate(region.copies):
                for j, node in enumerate(copy):
                    if j not in region.hoisted:
                        self.owner[node.id] = region
        self.env = {}
        self.results = {}  # id(region) -> {id of a region node used after it: its value}
        self.rows = {}  # id of a value read from a loop's stacked outputs -> (the stack, its index)

    def run(self, inputs, roots):
        env = self.env
        for node, value in zip(self.graph.inputs, inputs):
            env[node.id] = value
        for node in sorted(self.graph.nodes, key=lambda n: n.id):
            if node.id in env or node.id in self.owner:
                continue
            if node.prim is const_p:
                env[node.id] = node.value
                continue
            ins = [self.value(i) for i in node.inputs]
            joined = _joined_rows(node, ins, self.rows) if node.prim is concatenate_p else None
            env[node.id] = joined if joined is not None else node.prim.bind(*ins, **node.params)
            row = self.rows.get(id(ins[0])) if node.prim is reshape_p else None
            if row is not None:  # a row of a loop's stacked output, reshaped: still that row
                self.rows[id(env[node.id])] = row
        return [self.value(r) for r in roots]

    def value(self, node):
        if node.id in self.env:
            return self.env[node.id]
        region = self.owner[node.id]
        results = self.results.get(id(region))
        if results is None:
            results = self.results[id(region)] = self._scan(region)
        return results[node.id]

    def _scan(self, region):
        """Emit the scan of `region`; returns the values of its nodes that are used after it."""
        from jitad.frontend.tracer import trace
        from jitad.primitives.control import Body, scan_p
        p, r, copies = region.period, region.steps, region.copies
        used_after = self._used_after(region)
        writes = _writes(region, used_after)
        removed = set().union(*[w.positions for w in writes.values()]) if writes else set()
        body_positions = [j for j in range(p) if j not in region.hoisted and j not in removed]
        carried = [q for q in sorted(region.carry_init) if q not in writes]
        # moving reads of what the step d steps before wrote: the loop carries the last d written values
        # (`_reads_written`); those of what this step just wrote read it
        forwarded = {j: (write, d) for write in writes.values() for j, d in write.forwards.items()}
        just_written = {j: write for write in writes.values() for j in write.same}

        def window_aval(j):  # the carry of a forwarded read: the value, or the last d of them
            d, shape = forwarded[j][1], template[j].shape
            return (shape if d == 1 else (d,) + shape), template[j].dtype
        # per-step inputs: xs from outside, and hoisted positions the body reads
        xs_keys, consts = [], []
        for j in body_positions:
            if j in forwarded or j in just_written:
                continue
            if j in region.moving:
                xs_keys.append(("moving", j))
            for role in region.roles[j]:
                if role[0] == "xs" and ("xs", role[1]) not in xs_keys:
                    xs_keys.append(("xs", role[1]))
                elif role[0] == "internal" and role[1] in region.hoisted and ("hoisted", role[1]) not in xs_keys:
                    xs_keys.append(("hoisted", role[1]))
                elif role[0] == "const" and all(c is not role[1] for c in consts):
                    consts.append(role[1])
        for write in writes.values():  # a written value the body does not otherwise read
            kind, what = write.value
            if kind == "xs" and ("xs", what) not in xs_keys:
                xs_keys.append(("xs", what))
            elif kind == "const" and all(c is not what for c in consts):
                consts.append(what)
        ys = sorted({region.where[i][1] for i in used_after
                     if not (region.where[i][0] == r - 1 and region.where[i][1] in region.carry_init)})
        template = copies[0]

        n_carry = len(carried) + len(forwarded)

        def body_fun(index, *args):
            carry = dict(zip(carried, args[:len(carried)]))
            last = dict(zip(forwarded, args[len(carried):n_carry]))
            xs = dict(zip(xs_keys, args[n_carry:n_carry + len(xs_keys)]))
            const_values = {c.id: v for c, v in zip(consts, args[n_carry + len(xs_keys):])}
            local = {}

            def written_value(write):  # the value a step writes
                kind, what = write.value
                return (carry[what] if kind == "carry" else local[what] if kind == "internal" else
                        const_values[what.id] if kind == "const" else xs[("xs", what)])

            for j in body_positions:
                if j in forwarded:  # what the step d steps before wrote there
                    local[j] = last[j] if forwarded[j][1] == 1 else index_first(last[j], 0)
                    continue
                if j in just_written:  # what this step just wrote there
                    local[j] = reshape_p(written_value(just_written[j]), shape=template[j].shape)
                    continue
                ins = []
                for role in region.roles[j]:
                    kind = role[0]
                    if kind == "internal":
                        ins.append(xs[("hoisted", role[1])] if role[1] in region.hoisted else local[role[1]])
                    elif kind == "carry":
                        ins.append(carry[role[1]])
                    elif kind == "const":
                        ins.append(const_values[role[1].id])
                    else:
                        ins.append(xs[("xs", role[1])])
                node = template[j]
                if j in region.moving:  # the slice at this step's place: a gather of the flat array
                    flat = reshape_p(ins[0], shape=(int(np.prod(ins[0].shape, dtype=np.int64)),))
                    local[j] = take_p(flat, xs[("moving", j)], axis=0)
                else:
                    local[j] = node.prim.bind(*ins, **node.params)
            written, lasts = [], {}
            for write in writes.values():  # the value each step writes: a per-step output
                written.append(written_value(write))
                for j, d in write.forwards.items():
                    shape = template[j].shape
                    lasts[j] = reshape_p(written[-1], shape=shape) if d == 1 else concatenate_p(
                        slice_p(last[j], starts=(1,) + (0,) * len(shape), steps=(1,) * (1 + len(shape)),
                                shape=(d - 1,) + shape),
                        reshape_p(written[-1], shape=(1,) + shape), axis=0)
            return [local[q] for q in carried] + [lasts[j] for j in forwarded] + [local[j] for j in ys] + written

        x_avals = []
        for key in xs_keys:
            node = key[1][0] if key[0] == "xs" else template[key[1]]
            x_avals.append((node.shape, np.dtype(np.int64) if key[0] == "moving" else node.dtype))
        avals = [((), np.dtype(np.int64))] + [(template[q].shape, template[q].dtype) for q in carried] + \
            [window_aval(j) for j in forwarded] + x_avals + [(c.shape, c.dtype) for c in consts]
        graph, captured = trace(body_fun, avals)
        assert not captured
        # a loop inside the loop: its steps repeat within one copy
        body = Body(roll(graph), 1, n_carry, len(xs_keys), name="rolled loop")
        init = [self.value(region.carry_init[q]) for q in carried]
        for j, (write, d) in forwarded.items():  # the first d steps read the array as the loop found it
            array = self.value(region.carry_init[write.carry])
            flat = reshape_p(array, shape=(int(np.prod(np.shape(array), dtype=np.int64)),))
            init.append(take_p(flat, region.moving[j][0] if d == 1 else np.stack(region.moving[j][:d]), axis=0))
        xs_values = [self._stacked(key, region) for key in xs_keys]
        packed = scan_p(*init, *xs_values, *[self.value(c) for c in consts], body=body, length=r, reverse=False)
        outs = body.scan_layout(r).unpack(packed)
        finals, stacked = outs[:len(carried)], dict(zip(ys, outs[n_carry:n_carry + len(ys)]))
        for write, values in zip(writes.values(), outs[n_carry + len(ys):]):
            finals.append(write.apply(self.value(region.carry_init[write.carry]), values))
        carried = carried + list(writes)
        results = {}
        for node_id in used_after:
            k, j = region.where[node_id]
            if k == r - 1 and j in carried and j not in stacked:
                results[node_id] = finals[carried.index(j)]
            else:
                results[node_id] = stacked[j][k]
                self.rows[id(results[node_id])] = (stacked[j], k)
        return results

    def _used_after(self, region):
        """Ids of the region's body nodes that nodes outside the body (or the roots) use."""
        inside = {n.id for copy in region.copies for j, n in enumerate(copy) if j not in region.hoisted}
        used = set()
        for node in self.graph.nodes:
            if node.id in inside:
                continue
            used.update(i.id for i in node.inputs if i.id in inside)
        used.update(n.id for n in self.graph.outputs if n.id in inside)
        return sorted(used)

    def _stacked(self, key, region):
        """The per-step input `key` over all copies, stacked along a new leading axis."""
        if key[0] == "moving":  # the positions a moving slice reads at each step
            return np.stack(region.moving[key[1]])
        if key[0] == "xs":
            nodes = list(key[1])
        else:
            nodes = [copy[key[1]] for copy in region.copies]
        strided = _strided_slices(nodes, self)
        if strided is not None:
            return strided
        # values that are an earlier loop's outputs, step by step, are taken from its stacked
        # outputs in runs (its first step may have been computed before it: another piece)
        pieces = []  # [stack, first row, number of rows] or [value, None, 1]
        for value in (self.value(n) for n in nodes):
            row = self.rows.get(id(value))
            last = pieces[-1] if pieces else None
            if row is not None and last is not None and last[0] is row[0] and last[1] + last[2] == row[1]:
                last[2] += 1
            else:
                pieces.append([row[0], row[1], 1] if row is not None else [value, None, 1])
        shape = tuple(nodes[0].shape)
        parts = [np.expand_dims(v, 0) if first is None else
                 _rows_as(v if (first, count) == (0, v.shape[0]) else v[first:first + count], shape)
                 for v, first, count in pieces]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _rows_as(stack, shape):
    """Rows of a loop's stacked output, each reshaped to `shape` (a row read back reshaped)."""
    return stack if tuple(stack.shape[1:]) == shape else np.reshape(stack, (stack.shape[0],) + shape)


def _joined_rows(node, ins, rows):
    """`concatenate(*ins, axis)` of consecutive rows k0, k0+1, ... of one loop's stacked output
    (each the row, maybe reshaped, all to one shape S): the stack's rows k0... as (m,) + S with the
    row axis moved to `axis` and merged with the next one. None when `ins` are not such rows."""
    found = [rows.get(id(v)) for v in ins]
    if len(ins) < 2 or any(f is None or f[0] is not found[0][0] for f in found):
        return None
    stack, first = found[0]
    shape = tuple(node.inputs[0].shape)
    if any(f[1] != first + k for k, f in enumerate(found)) or any(tuple(i.shape) != shape for i in node.inputs):
        return None
    m, axis = len(ins), node.params["axis"]
    part = _rows_as(stack if (first, m) == (0, stack.shape[0]) else stack[first:first + m], shape)
    return np.reshape(np.moveaxis(part, 0, axis), node.shape)


def _strided_slices(nodes, rebuild):
    """Consecutive `slice` nodes of one array (each maybe reshaped the same way) that take one
    index along an axis, stepping by a fixed amount: as one strided slice, stacked along a new
    leading axis; else None."""
    shape = nodes[0].shape
    if all(n.prim is reshape_p and n.inputs[0].prim is slice_p for n in nodes):
        nodes = [n.inputs[0] for n in nodes]
    first = nodes[0]
    if len(nodes) < 2 or any(n.prim is not slice_p or n.inputs[0] is not first.inputs[0] for n in nodes):
        return None
    starts = [n.params["starts"] for n in nodes]
    moving = [a for a in range(len(first.shape)) if len({s[a] for s in starts}) > 1]
    if len(moving) != 1:
        return None
    axis = moving[0]
    delta = starts[1][axis] - starts[0][axis]
    if first.shape[axis] != 1 or any(s[axis] != starts[0][axis] + k * delta for k, s in enumerate(starts)) \
            or any(s[:axis] + s[axis + 1:] != starts[0][:axis] + starts[0][axis + 1:] for s in starts):
        return None
    steps = list(first.params["steps"])
    steps[axis] = delta
    whole_shape = list(first.shape)
    whole_shape[axis] = len(nodes)
    whole = slice_p(rebuild.value(first.inputs[0]), starts=tuple(starts[0]), steps=tuple(steps),
                    shape=tuple(whole_shape))
    return np.reshape(np.moveaxis(whole, axis, 0), (len(nodes),) + tuple(shape))
