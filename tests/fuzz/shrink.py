"""Delta debugging of a failing program down to a minimal one that fails the same way.

Candidates, most aggressive first: keep one output; cut the program at an earlier
variable; drop an op (its uses replaced by one of its operands or an input); rewire an
operand to an input or an earlier variable; shrink the input shapes (values are sliced,
so the rest stays the same); round the input values. A candidate is kept when it is
still a valid, kink-free NumPy program (or, for error programs, NumPy still raises only
at its last op) and the failure predicate still holds.
"""
from __future__ import annotations

import time

import numpy as np

from . import checks, gen


def size(p):
    return (len(p.ops), sum(int(np.size(v)) for v in p.values.values()), len(p.inputs),
            sum(len(op.template) for op in p.ops))


def valid(p):
    if not p.ops or not p.outputs:
        return False
    if p.expect_error:
        if len(p.ops) < 1 or p.outputs != [p.ops[-1].out]:
            return False
        head = p.copy(ops=p.ops[:-1], outputs=[p.ops[-2].out] if len(p.ops) > 1 else [], expect_error=False)
        return gen.numpy_raises(p) is not None and gen.numpy_raises(head) is None
    try:
        gen.validate(p)
    except gen.Reject:
        return False
    except Exception:
        return False
    return True


def _rename(op, mapping):
    return gen.Op(op.out, op.template, tuple(mapping.get(a, a) for a in op.args), op.kind, op.guard, op.block)


def candidates(p):
    ops = p.ops
    # 1. fewer outputs
    if len(p.outputs) > 1:
        for o in p.outputs:
            yield p.copy(outputs=[o])
    # 2. cut at an earlier variable (program prefix)
    if not p.expect_error:
        for op in ops[:-1]:
            if op.out not in p.outputs:
                yield p.copy(outputs=[op.out])
    # 3. turn an intermediate value into a new input (cuts everything upstream of it)
    if not p.expect_error or len(ops) > 1:
        env = gen.numpy_env()
        for name in p.inputs:
            env[name] = gen._copy(p.values[name])
        values = {}
        try:
            for op in ops:
                values[op.out] = gen._copy(gen.exec_op(op, env, guards=False))
        except gen.Reject:   # an error program's last op: the values before it are what counts
            pass
        used = set(p.inputs)
        k = 0
        while f"x{k}" in used:
            k += 1
        fresh = f"x{k}"
        last = len(ops) - 1 if p.expect_error else len(ops)
        for i in range(last - 1, -1, -1):
            op = ops[i]
            if op.out not in values or op.out in p.outputs:
                continue
            v = np.array(values[op.out], copy=True)
            new_ops = [_rename(o, {op.out: fresh}) for j, o in enumerate(ops) if j != i]
            yield p.copy(ops=new_ops, inputs=list(p.inputs) + [fresh], values={**p.values, fresh: v})
    # 4. drop one op, its uses going to one of its operands or to an input
    for i in range(len(ops) - 1, -1, -1):
        op = ops[i]
        if p.expect_error and i == len(ops) - 1:
            continue
        repl = list(dict.fromkeys(list(op.args) + list(p.inputs)))
        for r in repl:
            mapping = {op.out: r}
            new_ops = [_rename(o, mapping) for j, o in enumerate(ops) if j != i]
            outs = [mapping.get(o, o) for o in p.outputs]
            outs = list(dict.fromkeys(o for o in outs if o not in p.inputs)) or \
                ([new_ops[-1].out] if new_ops else [])
            yield p.copy(ops=new_ops, outputs=outs)
    # 5. rewire one operand of an op to an input or an earlier variable
    for i, op in enumerate(ops):
        earlier = list(p.inputs) + [o.out for o in ops[:i]]
        for k, a in enumerate(op.args):
            for r in earlier:
                if r == a:
                    continue
                args = list(op.args)
                args[k] = r
                new = gen.Op(op.out, op.template, tuple(args), op.kind, op.guard, op.block)
                yield p.copy(ops=ops[:i] + [new] + ops[i + 1:])
    # 6. smaller inputs: drop a dimension's last entries, or a leading dimension
    for name in p.inputs:
        v = p.values[name]
        if isinstance(v, float) or v.ndim == 0:
            continue
        for d in range(v.ndim):
            n = v.shape[d]
            for m in sorted({1, n // 2, n - 1}):
                if 1 <= m < n:
                    idx = tuple(slice(0, m) if j == d else slice(None) for j in range(v.ndim))
                    yield p.copy(values={**p.values, name: np.ascontiguousarray(v[idx])})
        if v.ndim >= 1 and v.shape[0] >= 1:
            yield p.copy(values={**p.values, name: np.ascontiguousarray(v[0])})
        if v.size == 1:
            yield p.copy(values={**p.values, name: float(v.reshape(()))})


def _rounded(p, decimals):
    vals = {}
    for n, v in p.values.items():
        if isinstance(v, float):
            vals[n] = round(v, decimals)
        else:
            vals[n] = np.round(v, decimals).astype(v.dtype)
    return p.copy(values=vals)


def shrink(program, still_fails, budget=30.0, log=None):
    """The smallest program found within `budget` seconds for which `still_fails` holds."""
    deadline = time.time() + budget
    best = gen.prune(program)
    if not (valid(best) and _safe(still_fails, best)):
        best = program
    tried = 0
    improved = True
    while improved and time.time() < deadline:
        improved = False
        for cand in _guarded(candidates(best)):
            if time.time() > deadline:
                break
            cand = gen.prune(cand)
            if size(cand) >= size(best) or not valid(cand):
                continue
            tried += 1
            if _safe(still_fails, cand):
                best = cand
                improved = True
                break
    for decimals in (1, 2):
        if time.time() > deadline:
            break
        cand = _rounded(best, decimals)
        if valid(cand) and _safe(still_fails, cand):
            best = cand
            break
    if log:
        log(f"    shrunk to {len(best.ops)} ops, {size(best)[1]} input entries ({tried} candidates tried)")
    return best


def _guarded(gen_):
    """Candidates until the generator itself fails (a shrinking step that does not apply)."""
    while True:
        try:
            yield next(gen_)
        except StopIteration:
            return
        except Exception:
            return


def _safe(pred, p):
    try:
        return bool(pred(p))
    except Exception:
        return False


def predicate_for(failure):
    """`still_fails(program)`: the same check fails the same way (same exception type, if any)."""
    check = failure.check.replace(".batch-only", "")
    exc = failure.exc
    if check.startswith("compiled."):
        stage = check.split(".")[1]

        def still_fails(p):
            return any(f.check == check and f.exc == exc for f in checks.compiled_alone(stage, p))
        return still_fails
    second = check in ("hessian.fd", "hvp.fd", "jacobian.auto")

    def still_fails(p):
        fails, _ = checks.check_program(p, only={check}, second_order=second, use_autograd=check == "autograd.grad")
        return any(f.check == check and f.exc == exc for f in fails)
    return still_fails


def shrink_failure(failure, budget=30.0, log=None):
    """A copy of `failure` whose program is shrunk (and whose values are recomputed on it)."""
    pred = predicate_for(failure)
    small = shrink(failure.program, pred, budget=budget, log=log)
    # recompute the failure on the small program, so message, expected and got match the repro
    check = failure.check.replace(".batch-only", "")
    if check.startswith("compiled."):
        found = checks.compiled_alone(check.split(".")[1], small)
    else:
        second = failure.check in ("hessian.fd", "hvp.fd", "jacobian.auto")
        found, _ = checks.check_program(small, only={failure.check}, second_order=second,
                                        use_autograd=failure.check == "autograd.grad")
    for f in found:
        if f.check == check and f.exc == failure.exc:
            f.shrunk = True
            f.also = sorted(set(f.also) | set(failure.also))
            return f
    failure.shrunk = False
    return failure
