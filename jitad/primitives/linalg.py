"""Linear-algebra primitives: one factor node per factorisation, differentiable parts on top.

A factorisation (LU, eigh, SVD, QR) is a single node whose value packs all its results
into one array (layouts in `jitad.backend.kernels_linalg`). It is not differentiated itself
(`differentiable=False`). The primitives that read it -- a solve, a determinant, the
eigenvalues, the singular vectors, Q or R -- take the original matrix `a` as an extra
input that their impl ignores: their rules send the cotangent to `a`. Because nodes are
hash-consed, the forward solve, the adjoint solve (with Aᵀ) and the determinant's
adjoint all read one `lu_factor` node: one factorisation, visible in the IR.

Numerical behaviour, where other libraries return NaN:
- eigh/svd values at repeated values: the cotangent (tangent) is split evenly across
  the repeated group, the tie convention of max/min. A zero singular value is a kink
  like |x| at 0 and gets derivative 0 (so ‖A‖_nuc and ‖A‖₂ have gradient 0 at A = 0). That is exact for every symmetric
  function of the group (sums, norms, traces) and a subgradient for one member of it.
- eigh/svd vectors at repeated (or, for SVD, zero) values are not unique, and the
  first-order data AD has (V, V̄) cannot determine the derivative of even a
  basis-independent function there (V diag(w) Vᵀ and V_b V_bᵀ need different limits).
  So the rules check at run time, and raise `NonDifferentiableError` when the vectors'
  cotangent reaches such a column (reverse) or the tangent splits such a value
  (forward). Elsewhere the adjoint is exact: never a silent NaN. The singular values'
  adjoint U diag(s̄) Vᵀ is its own node (svd_weighted) whose rules read only the columns
  s̄ weights, so the Hessian of ‖A‖₂ at a rank-deficient matrix is exact (see
  _svd_weighted_coefficients for what else it needs).
- det/slogdet/solve/inv at an exactly singular matrix raise `LinAlgError` (as NumPy's
  solve does); QR needs full column rank and pinv a locally constant (full) rank,
  else `NonDifferentiableError`.
"""
import warnings

import numpy as np

from jitad.primitives import builders as B
from jitad.primitives.core import NumpyOnly, library_call
from jitad.primitives.structural import shape_of, unbroadcast
from jitad.errors import NonDifferentiableError, ShapeError, UnsupportedOperationError

__all__ = ["logm_p", "schur_factor_p", "schur_part_p", "lu_rows_p", "lu_lower_p", "lu_upper_p", "sqrtm_p", "sylvester_p", "lu_factor_p", "lu_solve_p", "lu_det_p", "lu_slogdet_p", "inv_p", "expm_p", "lu_factors_p", "cholesky_p",
           "solve_triangular_p", "eigh_factor_p", "eigh_values_p", "eigh_vectors_p", "svd_factor_p",
           "svd_values_p", "svd_vectors_p", "svd_weighted_p", "svd_full_p", "qr_factor_p", "qr_q_p", "qr_r_p", "pinv_p",
           "require_small_p"]


# --- helpers: shapes, batches, and matrix algebra on traced values --------------------------
# The rules and the helpers they call run on traced values: they build IR with the builders of
# jitad.primitives.builders (B), never np.* or `@` (the NumPy front-end). Operators +, -, *, /,
# comparisons and &, |, ~ bind primitives directly when their left operand is traced; where it
# may be a NumPy array (a constant cotangent or tangent), B.add / B.multiply / ... are used.
def _matrix(name, a, square=False):
    if a.ndim < 2:
        raise ShapeError(f"{name}: {a.ndim}-dimensional array given; it needs at least two dimensions")
    if square and a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"{name}: last 2 dimensions of the array must be square, got shape {a.shape}")


def _each(fn, out_core, dtype, *arrays):
    """Apply `fn` to every matrix of the leading (batch) axes of `arrays`; stack the results."""
    batch = arrays[0].shape[:-2]
    out = np.empty(batch + tuple(out_core), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SciPy's warning on an exactly singular LU
        for index in np.ndindex(*batch):
            out[index] = fn(*[a[index] for a in arrays])
    return out


def _library(name, impl, shape_rule, jvp, vjp, lower, differentiable=True):
    """A LAPACK-backed primitive: its lowering calls jitad.backend.kernels_linalg (KL); it has
    no batching rule (k slices) and the scheduler's cost of dense linear algebra."""
    return library_call(name, impl, shape_rule, jvp, vjp, lower, kernel_module="KL", differentiable=differentiable)


def _batched_scalar(node, out, call, ctx):
    """Lowering of a helper that returns one value per matrix, flat over the batch."""
    if node.ndim == 0:
        return f"{out} = {call}[0]"
    return f"{out} = {call}.reshape({ctx.shape_code(node)})"


_T = B.matrix_transpose  # each matrix of a stack transposed
_mm = B.matmul  # _mm(a, b, c) = (a @ b) @ c


def _np_T(x):
    """_T of a NumPy array (in the implementations)."""
    return np.swapaxes(x, -1, -2)


def _rows(x, start, stop=None):
    """x[..., start:stop, :]."""
    return B.axis_range(x, -2, start, stop)


def _columns(x, start, stop=None):
    """x[..., :, start:stop]."""
    return B.axis_range(x, -1, start, stop)


def _as_column(x):
    """x[..., :, None]: a vector per matrix as a column."""
    return B.expand_dims(x, -1)


def _as_row(x):
    """x[..., None, :]: a vector per matrix as a row."""
    return B.expand_dims(x, -2)


def _per_matrix(x):
    """x[..., None, None]: one value per matrix, to scale it."""
    return B.reshape(x, shape_of(x) + (1, 1))


def _sym_from_lower(t):
    """The symmetric matrix that a routine reading only the lower triangle of `t` sees."""
    return B.tril(t) + _T(B.tril(t, -1))


def _lower_adjoint(m):
    """Transpose of _sym_from_lower: the cotangent reaches the lower triangle only."""
    return B.tril(m) + B.tril(_T(m), -1)


def _identity_like(a):
    n = a.shape[-1]
    return np.broadcast_to(np.eye(n, dtype=a.dtype), a.shape)


def _inverse_gaps(diff, bad):
    """1 / diff, and exactly 0 where `bad` (the diagonal and repeated values): no inf, no NaN."""
    return B.where(bad, 0.0, 1.0 / B.where(bad, 1.0, diff))


def _repeated(w):
    """Boolean (..., k, k): pairs i != j whose values are equal up to rounding."""
    k = shape_of(w)[-1]
    scale = _as_column(B.max(B.abs(w), -1, keepdims=True, empty=0.0))
    gap = B.abs(_as_row(w) - _as_column(w))
    return (gap <= B.multiply(16.0 * max(k, 1) * np.finfo(w.dtype).eps, scale)) & ~np.eye(k, dtype=bool)


def _share(bad, full):
    """max|bad| / max|full| per matrix: how much of `full` sits where it must not."""
    tiny = np.finfo(full.dtype).tiny
    top = B.max(B.abs(full), (-2, -1), empty=0.0)
    return B.max(B.abs(bad), (-2, -1), empty=0.0) / (top + tiny)


def _guard(x, bad, message):
    """x, checked at run time: its entries at `bad` must vanish (relative to x), else raise."""
    tol = float(np.sqrt(np.finfo(x.dtype).eps))
    return require_small_p(x, _share(B.where(bad, x, 0.0), x), tol=tol, message=message)


# --- a run-time check that keeps a derivative from being silently wrong ----------------------
def _require_small_impl(x, r, tol, message):
    if np.any(np.abs(r) > tol):
        raise NonDifferentiableError(message)
    return x


require_small_p = _library(
    "require_small", _require_small_impl, lambda x, r, tol, message: (x.shape, x.dtype),
    jvp=lambda primals, tangents, out, tol, message: (
        tangents[0] if tangents[0] is not None else B.zeros_like(out)),
    vjp=lambda g, out, x, r, tol, message: (g, None),
    lower=lambda node, out, ins, ctx: (
        f"{out} = KL.require_small({ins[0]}, {ins[1]}, {node.params['tol']!r}, {node.params['message']!r})"))


# --- LU: factor, solve with A or Aᵀ, determinant -----------------------------------------------
def _lu_factor_impl(a):
    import scipy.linalg
    n = a.shape[-1]

    def factor(m):
        packed = np.empty((n + 1, n), a.dtype)
        if n:
            lu, piv = scipy.linalg.lu_factor(m, check_finite=False)
            packed[:n], packed[n] = lu.T, piv
        return packed
    return _each(factor, (n + 1, n), a.dtype, a)


def _packed_square(name):
    """Shape rule of a factor of square matrices packed as (..., n + 1, n)."""
    def rule(a):
        _matrix(name, a, square=True)
        return a.shape[:-2] + (a.shape[-1] + 1, a.shape[-1]), a.dtype
    return rule


lu_factor_p = _library(
    "lu_factor", _lu_factor_impl, _packed_square("lu_factor"), None, None,
    lambda node, out, ins, ctx: f"{out} = KL.lu_factor({ins[0]})", differentiable=False)


def _refuse_lu(*_, **__):
    raise NonDifferentiableError(
        "scipy.linalg.lu_factor: jitad has no derivative of the LU factors themselves (their use in "
        "scipy.linalg.lu_solve is differentiable): differentiate np.linalg.solve / slogdet instead, or give "
        "your own rule with jitad.custom_vjp")


# the factors `lu` of scipy.linalg.lu_factor(a) as SciPy returns them: reading the packed factor
# node, with `a` as an operand so that differentiating them is an error, never a zero
lu_factors_p = _library(
    "lu_factors", lambda packed, a: np.ascontiguousarray(_np_T(packed[..., :-1, :])),
    lambda packed, a: (a.shape, a.dtype), _refuse_lu, _refuse_lu,
    lambda node, out, ins, ctx: f"{out} = KL.lu_factors({ins[0]})")


def _unpack_lu(packed):
    n = packed.shape[-1]
    lu, piv = packed[:n].T, packed[n].astype(np.int32)
    if np.any(np.diagonal(lu) == 0):
        raise np.linalg.LinAlgError("Singular matrix")
    return lu, piv


def _lu_solve_impl(lu, a, b, trans):
    import scipy.linalg

    def solve(packed, rhs):
        if rhs.size == 0:
            return rhs
        return scipy.linalg.lu_solve(_unpack_lu(packed), rhs, trans=trans, check_finite=False)
    return _each(solve, b.shape[-2:], b.dtype, lu, b)


def _lu_solve_shape(lu, a, b, trans):
    if b.ndim != a.ndim or b.shape[:-2] != a.shape[:-2] or b.shape[-2] != a.shape[-1]:
        raise ShapeError(f"solve: matrices of shape {a.shape} and right-hand sides of shape {b.shape} "
                         "do not fit")
    return b.shape, np.result_type(a.dtype, b.dtype)


def _lu_solve_jvp(primals, tangents, out, trans):
    lu, a, _ = primals
    _, ta, tb = tangents
    rhs = tb
    if ta is not None:  # d(op(A) x) = op(dA) x + op(A) dx
        step = _mm(_T(ta) if trans else ta, out)
        rhs = -step if rhs is None else B.subtract(rhs, step)
    return lu_solve_p(lu, a, rhs, trans=trans)


def _lu_solve_vjp(g, x, lu, a, b, trans):
    gb = lu_solve_p(lu, a, g, trans=1 - trans)  # the adjoint solve reuses the forward factors
    ga = -_mm(gb, _T(x)) if trans == 0 else -_mm(x, _T(gb))
    return None, ga, gb


lu_solve_p = _library(
    "lu_solve", _lu_solve_impl, _lu_solve_shape, _lu_solve_jvp, _lu_solve_vjp,
    lambda node, out, ins, ctx: f"{out} = KL.lu_solve({ins[0]}, {ins[2]}, {node.params['trans']})")


# --- scipy.linalg.lu: P, L, U of a square matrix from the packed LU node --------------------------
# With the pivoting fixed (it is locally constant), Pᵀ A = L U, so with F = L⁻¹ Pᵀ dA U⁻¹ (L⁻¹ dL is
# strictly lower, dU U⁻¹ upper): dL = L tril(F, -1), dU = triu(F) U. The adjoints: Ā = P L⁻ᵀ G U⁻ᵀ with
# G = tril(Lᵀ L̄, -1) (from L) and triu(Ū Uᵀ) (from U). Written on lu_lower_p / lu_upper_p themselves, so
# they differentiate again. An exactly singular U makes the triangular solves raise (LinAlgError).
def _lu_rows_impl(packed):
    n = packed.shape[-1]
    out = np.empty(packed.shape[:-2] + (n,), np.int64)
    for index in np.ndindex(*packed.shape[:-2]):
        perm = np.arange(n)
        for i, q in enumerate(packed[index][n].astype(np.int64)):
            perm[[i, q]] = perm[[q, i]]
        out[index][perm] = np.arange(n)
    return out


lu_rows_p = _library(
    "lu_rows", _lu_rows_impl, lambda packed: (packed.shape[:-2] + (packed.shape[-1],), np.dtype(np.int64)), None, None,
    lambda node, out, ins, ctx: f"{out} = KL.lu_rows({ins[0]})", differentiable=False)


def _lu_permutation(packed, a):
    """P (a = P L U) as a matrix of a's dtype: P[i, p[i]] = 1."""
    n = a.shape[-1]
    rows = lu_rows_p(packed)
    return B.astype(_as_column(rows) == np.arange(n), a.dtype)


def _lu_f(packed, a, da):
    """F = L⁻¹ Pᵀ dA U⁻¹."""
    low, up = lu_lower_p(packed, a), lu_upper_p(packed, a)
    y = solve_triangular_p(low, _mm(_T(_lu_permutation(packed, a)), da), lower=True, trans=0, unit_diagonal=True)
    return _T(solve_triangular_p(up, _T(y), lower=False, trans=1, unit_diagonal=False))


def _lu_adjoint(packed, a, g):
    """P L⁻ᵀ G U⁻ᵀ."""
    low, up = lu_lower_p(packed, a), lu_upper_p(packed, a)
    z = solve_triangular_p(low, g, lower=True, trans=1, unit_diagonal=True)
    w = _T(solve_triangular_p(up, _T(z), lower=False, trans=0, unit_diagonal=False))
    return _mm(_lu_permutation(packed, a), w)


def _lu_part(packed, a, lower):
    n = packed.shape[-1]
    lu = _np_T(packed[..., :n, :])
    return np.tril(lu, -1) + np.eye(n, dtype=lu.dtype) if lower else np.triu(lu)


lu_lower_p = _library(
    "lu_lower", lambda packed, a: _lu_part(packed, a, True), lambda packed, a: (a.shape, a.dtype),
    jvp=lambda primals, tangents, out: _mm(out, B.tril(_lu_f(primals[0], primals[1], tangents[1]), -1)),
    vjp=lambda g, out, packed, a: (None, _lu_adjoint(packed, a, B.tril(_mm(_T(out), g), -1))),
    lower=lambda node, out, ins, ctx: f"{out} = KL.lu_lower({ins[0]})")
lu_upper_p = _library(
    "lu_upper", lambda packed, a: _lu_part(packed, a, False), lambda packed, a: (a.shape, a.dtype),
    jvp=lambda primals, tangents, out: _mm(B.triu(_lu_f(primals[0], primals[1], tangents[1])), out),
    vjp=lambda g, out, packed, a: (None, _lu_adjoint(packed, a, B.triu(_mm(g, _T(out))))),
    lower=lambda node, out, ins, ctx: f"{out} = KL.lu_upper({ins[0]})")


def _inverse_transpose(lu, a):
    """A⁻ᵀ from the LU factors of A (no second factorisation)."""
    return lu_solve_p(lu, a, _identity_like(a), trans=1)


def _sign_logabs(packed):
    n = packed.shape[-1]
    d = np.diagonal(packed[:n])
    if np.any(d == 0):
        return 0.0, -np.inf
    swaps = np.count_nonzero(packed[n] != np.arange(n))
    sign = (-1.0) ** swaps * np.prod(np.sign(d))
    return sign, np.sum(np.log(np.abs(d)))


def _lu_det_impl(lu, a):
    def det(packed):
        n = packed.shape[-1]
        swaps = np.count_nonzero(packed[n] != np.arange(n))
        return (-1.0) ** swaps * np.prod(np.diagonal(packed[:n]))
    return _each(det, (), lu.dtype, lu)


def _trace_of_solve(lu, a, ta):
    return B.trace(lu_solve_p(lu, a, ta, trans=0))


# d det A = det A · tr(A⁻¹ dA);  ∂det/∂A = det A · A⁻ᵀ
lu_det_p = _library(
    "lu_det", _lu_det_impl, lambda lu, a: (a.shape[:-2], a.dtype),
    jvp=lambda primals, tangents, out: out * _trace_of_solve(primals[0], primals[1], tangents[1]),
    vjp=lambda g, out, lu, a: (None, B.multiply(_per_matrix(B.multiply(g, out)), _inverse_transpose(lu, a))),
    lower=lambda node, out, ins, ctx: _batched_scalar(node, out, f"KL.lu_det({ins[0]})", ctx))


def _lu_slogdet_impl(lu, a, part):
    index = 0 if part == "sign" else 1
    return _each(lambda packed: _sign_logabs(packed)[index], (), lu.dtype, lu)


def _slogdet_jvp(primals, tangents, out, part):
    if part == "sign":
        return B.zeros_like(out)  # piecewise constant
    return _trace_of_solve(primals[0], primals[1], tangents[1])


def _slogdet_vjp(g, out, lu, a, part):
    if part == "sign":
        return None, None
    return None, B.multiply(_per_matrix(g), _inverse_transpose(lu, a))  # ∂log|det A|/∂A = A⁻ᵀ


lu_slogdet_p = _library(
    "lu_slogdet", _lu_slogdet_impl, lambda lu, a, part: (a.shape[:-2], a.dtype), _slogdet_jvp, _slogdet_vjp,
    lambda node, out, ins, ctx: _batched_scalar(
        node, out, f"KL.lu_slogdet({ins[0]}, {node.params['part'] == 'logabsdet'})", ctx))


# --- inverse (its adjoint reuses the forward inverse) ----------------------------------------
def _square_shape(name):
    def rule(a):
        _matrix(name, a, square=True)
        return a.shape, a.dtype
    return rule


inv_p = _library(
    "inv", np.linalg.inv, _square_shape("inv"),
    jvp=lambda primals, tangents, out: -_mm(out, tangents[0], out),
    vjp=lambda g, out, a: (-_mm(_T(out), g, _T(out)),),
    lower=lambda node, out, ins, ctx: f"{out} = KL.inv({ins[0]})")


# --- matrix exponential (its derivative is itself, on a block matrix) --------------------------
def _expm_impl(a):
    import scipy.linalg
    return np.asarray(scipy.linalg.expm(a), a.dtype)


def _block_frechet(f, a, e):
    """L_f(A, E), the derivative of a primary matrix function f at A in the direction E: the top-right
    block of f([[A, E], [0, A]]) (Mathias 1996). Linear in E, and differentiable again (it is f)."""
    n = shape_of(a)[-1]
    shape = np.broadcast_shapes(shape_of(a), shape_of(e))
    a, e = B.broadcast_to(a, shape), B.broadcast_to(e, shape)
    top = B.concatenate([a, e], axis=-1)
    bottom = B.concatenate([B.full(shape, 0, a.dtype), a], axis=-1)
    return _columns(_rows(f(B.concatenate([top, bottom], axis=-2)), 0, n), n)


def _expm_frechet(a, e):
    return _block_frechet(expm_p, a, e)


# the adjoint of E -> L(A, E) is G -> L(Aᵀ, G)
expm_p = _library(
    "expm", _expm_impl, _square_shape("expm"),
    jvp=lambda primals, tangents, out: _expm_frechet(primals[0], tangents[0]),
    vjp=lambda g, out, a: (_expm_frechet(_T(a), g),),
    lower=lambda node, out, ins, ctx: f"{out} = KL.expm({ins[0]})")


# --- matrix square root and the Sylvester equation ----------------------------------------------
# Values are SciPy's (Schur-based) routines. They have no compiled lowering (Numba has no Schur
# decomposition): a graph holding one runs on the NumPy executor (jitad.backend.cache._calls_back).
def _sylvester_impl(a, b, q):
    """X with A X + X B = Q, for each matrix of the broadcast batch axes."""
    import scipy.linalg
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2], q.shape[:-2])
    a, b = np.broadcast_to(a, batch + a.shape[-2:]), np.broadcast_to(b, batch + b.shape[-2:])
    q = np.broadcast_to(q, batch + q.shape[-2:])
    dtype = np.result_type(a, b, q)
    return _each(lambda x, y, z: scipy.linalg.solve_sylvester(x, y, z), q.shape[-2:], dtype, a, b, q)


def _sylvester_shape(a, b, q):
    for name, m in (("a", a), ("b", b)):
        _matrix(f"scipy.linalg.solve_sylvester: {name}", m, square=True)
    _matrix("scipy.linalg.solve_sylvester: q", q)
    if q.shape[-2:] != (a.shape[-1], b.shape[-1]):
        raise ShapeError(f"scipy.linalg.solve_sylvester: q of shape {q.shape} does not match a {a.shape} "
                         f"and b {b.shape} (it needs {a.shape[-1]} x {b.shape[-1]})")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2], q.shape[:-2])
    return batch + q.shape[-2:], np.result_type(a.dtype, b.dtype, q.dtype)


def _sylvester_jvp(primals, tangents, out):
    """A dX + dX B = dQ - dA X - X dB."""
    (a, b, q), (da, db, dq) = primals, tangents
    rhs = [t for t in (dq, None if da is None else -_mm(da, out), None if db is None else -_mm(out, db))
           if t is not None]
    total = rhs[0]
    for term in rhs[1:]:
        total = B.add(total, term)
    return sylvester_p(a, b, total)  # (the batch axes broadcast)


def _sylvester_vjp(g, out, a, b, q):
    """Y = the solution with Aᵀ, Bᵀ and the cotangent: Q̄ = Y, Ā = -Y Xᵀ, B̄ = -Xᵀ Y."""
    y = sylvester_p(_T(a), _T(b), g)
    return (unbroadcast(-_mm(y, _T(out)), shape_of(a)), unbroadcast(-_mm(_T(out), y), shape_of(b)),
            unbroadcast(y, shape_of(q)))


_SCHUR = NumpyOnly("SciPy's Schur-based routine; Numba has no Schur decomposition")
sylvester_p = _library("solve_sylvester", _sylvester_impl, _sylvester_shape, _sylvester_jvp, _sylvester_vjp,
                       lower=_SCHUR)


def _real_matrix_function(name, what):
    """SciPy's `scipy.linalg.<name>` of each matrix of a batch, real (a complex result is a named error;
    SciPy's warnings on singular or ill-conditioned matrices are dropped: its result stands)."""
    def impl(a):
        import scipy.linalg
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = [getattr(scipy.linalg, name)(a[index]) for index in np.ndindex(*a.shape[:-2])]
        if any(np.iscomplexobj(v) and np.any(v.imag != 0) for v in values):
            raise UnsupportedOperationError(f"scipy.linalg.{name} of {what}", "jitad differentiates real values only. ")
        return np.asarray([np.real(v) for v in values], a.dtype).reshape(a.shape)
    impl.__name__ = f"_{name}_impl"
    return impl


_sqrtm_impl = _real_matrix_function("sqrtm", "a matrix with a negative real eigenvalue (its square root is complex)")


# X X = A, so X dX + dX X = dA: dX solves a Sylvester equation (its adjoint: the same with Xᵀ)
sqrtm_p = _library(
    "sqrtm", _sqrtm_impl, _square_shape("scipy.linalg.sqrtm"),
    jvp=lambda primals, tangents, out: sylvester_p(out, out, tangents[0]),
    vjp=lambda g, out, a: (sylvester_p(_T(out), _T(out), g),), lower=_SCHUR)


# --- matrix logarithm: SciPy's logm (inverse scaling and squaring, Schur-based: no compiled lowering) ---
_logm_impl = _real_matrix_function("logm", "a matrix whose logarithm is complex (a negative real eigenvalue)")


def _logm_frechet(a, e):
    """(the block matrix has A's eigenvalues, so its log is real when A's is)"""
    return _block_frechet(logm_p, a, e)


# the adjoint of E -> L(A, E) is G -> L(Aᵀ, G) (log is a real primary matrix function)
logm_p = _library(
    "logm", _logm_impl, _square_shape("scipy.linalg.logm"),
    jvp=lambda primals, tangents, out: _logm_frechet(primals[0], tangents[0]),
    vjp=lambda g, out, a: (_logm_frechet(_T(a), g),), lower=_SCHUR)


# --- the real Schur decomposition: SciPy's values; no derivative ------------------------------------
# A = Z T Zᵀ with T quasi-triangular. LAPACK's T and Z are one of many (the order of the eigenvalues,
# the signs of Schur vectors, the standardisation of 2 x 2 blocks): no derivative is defined by the
# matrix alone, so differentiating T or Z is a NonDifferentiableError.
def _schur_impl(a):
    import scipy.linalg
    n = a.shape[-1]
    out = np.empty(a.shape[:-2] + (2 * n, n), a.dtype)
    for index in np.ndindex(*a.shape[:-2]):
        t, z = scipy.linalg.schur(a[index], output="real")
        out[index] = np.concatenate([t, z])
    return out


def _refuse_schur(*_, **__):
    raise NonDifferentiableError(
        "scipy.linalg.schur: the Schur factors T and Z are not unique (the eigenvalues' order, the signs of the "
        "Schur vectors and the form of 2 x 2 blocks are LAPACK's choices), so they have no derivative; "
        "differentiate a function of the matrix instead (scipy.linalg.expm, sqrtm, logm, np.linalg.eigvalsh "
        "of a symmetric matrix), or give your own rule with jitad.custom_vjp")


schur_factor_p = _library(
    "schur_factor", _schur_impl, lambda a: (a.shape[:-2] + (2 * a.shape[-1], a.shape[-1]), a.dtype), None, None,
    lower=_SCHUR, differentiable=False)
# T (part 0) or Z (part 1) of the packed factor; `a` is an operand so that differentiating them is an error
schur_part_p = _library(
    "schur_part", lambda packed, a, part: np.ascontiguousarray(
        packed[..., :a.shape[-1], :] if part == 0 else packed[..., a.shape[-1]:, :]),
    lambda packed, a, part: (a.shape, a.dtype), _refuse_schur, _refuse_schur, lower=_SCHUR)


# --- triangular solve (reads one triangle, like SciPy) ------------------------------------------
def _triangle(x, lower, unit_diagonal):
    k = 1 if unit_diagonal else 0
    return B.tril(x, -k) if lower else B.triu(x, k)


def _solve_triangular_impl(t, b, lower, trans, unit_diagonal):
    import scipy.linalg

    def solve(m, rhs):
        if rhs.size == 0:
            return rhs
        return scipy.linalg.solve_triangular(m, rhs, trans=trans, lower=lower, unit_diagonal=unit_diagonal,
                                             check_finite=False)
    return _each(solve, b.shape[-2:], b.dtype, t, b)


def _solve_triangular_shape(t, b, lower, trans, unit_diagonal):
    _matrix("solve_triangular", t, square=True)
    if b.ndim != t.ndim or b.shape[:-2] != t.shape[:-2] or b.shape[-2] != t.shape[-1]:
        raise ShapeError(f"solve_triangular: shapes {t.shape} and {b.shape} do not fit")
    return b.shape, np.result_type(t.dtype, b.dtype)


def _solve_triangular_jvp(primals, tangents, out, lower, trans, unit_diagonal):
    t, _ = primals
    tt, tb = tangents
    rhs = tb
    if tt is not None:
        part = _triangle(tt, lower, unit_diagonal)
        step = _mm(_T(part) if trans else part, out)
        rhs = -step if rhs is None else B.subtract(rhs, step)
    return solve_triangular_p(t, rhs, lower=lower, trans=trans, unit_diagonal=unit_diagonal)


def _solve_triangular_vjp(g, x, t, b, lower, trans, unit_diagonal):
    gb = solve_triangular_p(t, g, lower=lower, trans=1 - trans, unit_diagonal=unit_diagonal)
    g_op = -_mm(gb, _T(x))
    return _triangle(_T(g_op) if trans else g_op, lower, unit_diagonal), gb


solve_triangular_p = _library(
    "solve_triangular", _solve_triangular_impl, _solve_triangular_shape, _solve_triangular_jvp,
    _solve_triangular_vjp,
    lambda node, out, ins, ctx: (f"{out} = KL.solve_triangular({ins[0]}, {ins[1]}, {node.params['lower']}, "
                                 f"{node.params['trans']}, {node.params['unit_diagonal']})"))


# --- Cholesky (reads the lower triangle, like NumPy) ----------------------------------------
def _phi(n, dtype):
    """The mask of Φ(X) = strictly-lower part of X plus half its diagonal."""
    return (np.tril(np.ones((n, n)), -1) + 0.5 * np.eye(n)).astype(dtype)


def _cholesky_jvp(primals, tangents, out):
    # L⁻¹ dS L⁻ᵀ = L⁻¹dL + (L⁻¹dL)ᵀ with L⁻¹dL lower triangular, so dL = L Φ(L⁻¹ dS L⁻ᵀ)
    L, n = out, out.shape[-1]
    y = solve_triangular_p(L, _sym_from_lower(tangents[0]), lower=True, trans=0, unit_diagonal=False)
    x = _T(solve_triangular_p(L, _T(y), lower=True, trans=0, unit_diagonal=False))
    return _mm(L, x * _phi(n, L.dtype))


def _cholesky_vjp(g, L, a):
    p = _mm(_T(L), g) * _phi(L.shape[-1], L.dtype)
    z = solve_triangular_p(L, p, lower=True, trans=1, unit_diagonal=False)            # L⁻ᵀ Φ(Lᵀ L̄)
    m = _T(solve_triangular_p(L, _T(z), lower=True, trans=1, unit_diagonal=False))    # ... L⁻¹
    return (_lower_adjoint(m),)


cholesky_p = _library(
    "cholesky", np.linalg.cholesky, _square_shape("cholesky"), _cholesky_jvp, _cholesky_vjp,
    lambda node, out, ins, ctx: f"{out} = KL.cholesky({ins[0]})")


# --- eigh (reads the lower triangle, like NumPy) ---------------------------------------------
_EIGH_REVERSE = (
    "eigh: the function uses eigenvectors of a repeated eigenvalue. They are not unique (any basis "
    "of the eigenspace is returned), and the first-order information AD sees cannot tell how the "
    "function changes when the repeated eigenvalue splits, so jitad has no derivative to give. "
    "Use eigenvalues only (np.linalg.eigvalsh), make the eigenvalues distinct, or write the rule "
    "with @jitad.custom_vjp.")
_EIGH_FORWARD = (
    "eigh: forward mode (jvp, jacfwd, hessian) cannot differentiate eigenvectors where an "
    "eigenvalue is repeated and the tangent splits it: the eigenvectors are not unique there.")


def _eigh_factor_impl(a, upper=False, driver="numpy"):
    n = a.shape[-1]
    if driver != "numpy":  # scipy.linalg.eigh's drivers (LAPACK's syevr or syevd, from SciPy's LAPACK)
        import scipy.linalg
        flat = a.reshape((-1, n, n))
        pairs = [scipy.linalg.eigh(m, lower=not upper, driver=driver) for m in flat]
        w = np.array([p[0] for p in pairs], a.dtype).reshape(a.shape[:-1])
        v = np.array([p[1] for p in pairs], a.dtype).reshape(a.shape)
    else:
        w, v = np.linalg.eigh(a, UPLO="U" if upper else "L")
    packed = np.empty(a.shape[:-2] + (n + 1, n), a.dtype)
    packed[..., 0, :], packed[..., 1:, :] = w, v
    return packed


def _eigh_factor_shape(a, upper=False, driver="numpy"):
    return _packed_square("eigh")(a)


def _eigh_factor_lowering(node, out, ins, ctx):
    upper, driver = node.params.get("upper", False), node.params.get("driver", "numpy")
    if driver == "evr":
        return f"{out} = KL.eigh_evr({ins[0]}, {upper})"
    if driver == "evd" or upper:
        return f"{out} = KL.eigh_evd({ins[0]}, {upper})"
    return f"{out} = KL.eigh({ins[0]})"  # Numba's np.linalg.eigh (LAPACK's syevd on the lower triangle)


# upper=True: LAPACK's syevd reading the upper triangle (np.linalg.eigh(a, "U")), whose eigenvectors
# may differ in sign from those of the lower triangle of aᵀ (the same matrix, reduced in another
# order); driver "evr" / "evd": scipy.linalg.eigh's (LAPACK's syevr, its default, or syevd), whose
# signs may differ too ("numpy": np.linalg.eigh's)
eigh_factor_p = _library("eigh_factor", _eigh_factor_impl, _eigh_factor_shape, None, None, _eigh_factor_lowering,
                         differentiable=False)


def _tie_average(values):
    """(..., k, k): averages over groups of repeated values (the identity when none repeat).

    The tie convention of max/min: a cotangent on one of several equal eigenvalues (or
    singular values) is split evenly among them. Exact for every symmetric function of
    a repeated group; for one member of it (which has no derivative) a subgradient.
    """
    k = shape_of(values)[-1]
    same = B.astype(_repeated(values) | np.eye(k, dtype=bool), values.dtype)
    return same / B.sum(same, -1, keepdims=True)


def _spread(values, g):
    """Σ_i B_ij g_i with B = _tie_average(values): the transpose of B applied to a cotangent."""
    return B.sum(_tie_average(values) * _as_column(g), -2)


def _gather(values, t):
    """Σ_j B_ij t_j: B applied to a tangent."""
    return B.sum(_tie_average(values) * _as_row(t), -1)


def _values_jvp_eigh(primals, tangents, w):
    f, a = primals
    v = eigh_vectors_p(f, a)
    return _gather(w, B.sum(v * _mm(_sym_from_lower(tangents[1]), v), -2))  # diag(Vᵀ dS V)


def _values_vjp_eigh(g, w, f, a):
    v = eigh_vectors_p(f, a)
    return None, _lower_adjoint(_mm(v * _as_row(_spread(w, g)), _T(v)))  # V diag(w̄) Vᵀ, lower triangle


eigh_values_p = _library(
    "eigh_values", lambda f, a: f[..., 0, :].copy(), lambda f, a: (a.shape[:-1], a.dtype),
    _values_jvp_eigh, _values_vjp_eigh, lambda node, out, ins, ctx: f"{out} = KL.first_row({ins[0]})")


def _in_repeated_group(repeated):
    """(..., 1, k): columns whose value repeats."""
    return _as_row(B.max(B.astype(repeated, np.float64), -1, empty=0.0)) > 0


def _vectors_jvp_eigh(primals, tangents, v):
    f, a = primals
    w = eigh_values_p(f, a)
    repeated = _repeated(w)
    y = _mm(_T(v), _sym_from_lower(tangents[1]), v)
    y = _guard(y, repeated, _EIGH_FORWARD)
    gaps = _inverse_gaps(_as_row(w) - _as_column(w), repeated | np.eye(shape_of(w)[-1], dtype=bool))
    return _mm(v, gaps * y)  # dV = V (F ∘ Vᵀ dS V), F_ij = 1/(w_j - w_i)


def _vectors_vjp_eigh(g, v, f, a):
    w = eigh_values_p(f, a)
    repeated = _repeated(w)
    g = _guard(g, _in_repeated_group(repeated), _EIGH_REVERSE)
    gaps = _inverse_gaps(_as_row(w) - _as_column(w), repeated | np.eye(shape_of(w)[-1], dtype=bool))
    x = _mm(_T(v), g)
    x = 0.5 * (x - _T(x))  # only the antisymmetric part of Vᵀ V̄ reaches a symmetric dS
    return None, _lower_adjoint(_mm(v, gaps * x, _T(v)))


eigh_vectors_p = _library(
    "eigh_vectors", lambda f, a: f[..., 1:, :].copy(), lambda f, a: (a.shape, a.dtype),
    _vectors_jvp_eigh, _vectors_vjp_eigh, lambda node, out, ins, ctx: f"{out} = KL.rows_after_first({ins[0]})")


# --- SVD (reduced: U is m × k, Vh is k × n, k = min(m, n)) ---------------------------------------
_SVD_REVERSE = (
    "svd: the function uses singular vectors of a repeated (or zero) singular value. They are not "
    "unique there, and the first-order information AD sees cannot tell how the function changes "
    "when that value splits, so jitad has no derivative to give. Use singular values only "
    "(compute_uv=False, np.linalg.norm(x, 'nuc') or 2), make them distinct, or write the rule "
    "with @jitad.custom_vjp.")
_SVD_FORWARD = (
    "svd: forward mode (jvp, jacfwd, hessian) cannot differentiate singular vectors where a "
    "singular value is repeated or zero and the tangent touches it: they are not unique there.")


def _svd_factor_impl(a):
    m, n = a.shape[-2:]
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    packed = np.empty(a.shape[:-2] + (1 + m + n, min(m, n)), a.dtype)
    packed[..., 0, :], packed[..., 1:1 + m, :], packed[..., 1 + m:, :] = s, u, _np_T(vh)
    return packed


def _svd_factor_shape(a):
    _matrix("svd", a)
    m, n = a.shape[-2:]
    return a.shape[:-2] + (1 + m + n, min(m, n)), a.dtype


svd_factor_p = _library(
    "svd_factor", _svd_factor_impl, _svd_factor_shape, None, None,
    lambda node, out, ins, ctx: f"{out} = KL.svd({ins[0]})", differentiable=False)


def _svd_uv(f, a):
    uv = svd_vectors_p(f, a)
    m = a.shape[-2]
    return _rows(uv, 0, m), _rows(uv, m)


def _zero_singular(s):
    """Singular values that are zero up to rounding: kinks like |x| at 0, derivative 0 by convention."""
    k = shape_of(s)[-1]
    return s <= B.multiply(16.0 * max(k, 1) * np.finfo(s.dtype).eps, B.max(s, -1, keepdims=True, empty=0.0))


def _svd_values_jvp(primals, tangents, s):
    u, v = _svd_uv(*primals)
    ds = _gather(s, B.sum(u * _mm(tangents[1], v), -2))  # diag(Uᵀ dA V)
    return B.where(_zero_singular(s), 0.0, ds)


def _svd_values_vjp(g, s, f, a):
    g = B.where(_zero_singular(s), 0.0, _spread(s, g))
    # U diag(s̄) Vᵀ, as one node whose own rules use only the columns s̄ weights (svd_weighted_p)
    return None, svd_weighted_p(f, a, g)


svd_values_p = _library(
    "svd_values", lambda f, a: f[..., 0, :].copy(), lambda f, a: (a.shape[:-2] + (min(a.shape[-2:]),), a.dtype),
    _svd_values_jvp, _svd_values_vjp, lambda node, out, ins, ctx: f"{out} = KL.first_row({ins[0]})")


def _singular_gaps(s):
    """(F, repeated, zero): F_ij = 1/(s_j² - s_i²) off the diagonal and repeated pairs, else 0."""
    repeated, zero = _repeated(s), _zero_singular(s)
    k = shape_of(s)[-1]
    diff = (_as_row(s) + _as_column(s)) * (_as_row(s) - _as_column(s))
    return _inverse_gaps(diff, repeated | np.eye(k, dtype=bool)), repeated, zero


def _reciprocal_or_zero(s, zero):
    return B.where(zero, 0.0, 1.0 / B.where(zero, 1.0, s))


def _svd_vectors_jvp(primals, tangents, uv):
    f, a = primals
    ta = tangents[1]
    m = a.shape[-2]
    u, v = _rows(uv, 0, m), _rows(uv, m)
    s = svd_values_p(f, a)
    gaps, repeated, zero = _singular_gaps(s)
    p = _mm(_T(u), ta, v)
    touches_zero = _as_column(zero) | _as_row(zero)
    p = _guard(p, repeated | touches_zero, _SVD_FORWARD)
    sinv = _as_row(_reciprocal_or_zero(s, zero))
    rest_u = _guard(_mm(ta, v) - _mm(u, p), _as_row(zero), _SVD_FORWARD)       # (I - UUᵀ) dA V
    rest_v = _guard(_mm(_T(ta), u) - _mm(v, _T(p)), _as_row(zero), _SVD_FORWARD)  # (I - VVᵀ) dAᵀ U
    col, row = _as_row(s), _as_column(s)
    du = _mm(u, gaps * (p * col + row * _T(p))) + rest_u * sinv
    dv = _mm(v, gaps * (row * p + _T(p) * col)) + rest_v * sinv
    return B.concatenate([du, dv], axis=-2)


def _svd_vectors_vjp(g, uv, f, a):
    m = a.shape[-2]
    u, v = _rows(uv, 0, m), _rows(uv, m)
    s = svd_values_p(f, a)
    gaps, repeated, zero = _singular_gaps(s)
    g = _guard(g, _in_repeated_group(repeated) | _as_row(zero), _SVD_REVERSE)
    gu, gv = _rows(g, 0, m), _rows(g, m)
    xu, xv = _mm(_T(u), gu), _mm(_T(v), gv)
    # Ā = U [F ∘ ((Xu - Xuᵀ) S + S (Xv - Xvᵀ))] Vᵀ + (I - UUᵀ) Ū S⁻¹ Vᵀ + U S⁻¹ V̄ᵀ (I - VVᵀ)
    y = (xu - _T(xu)) * _as_row(s) + _as_column(s) * (xv - _T(xv))
    sinv = _as_row(_reciprocal_or_zero(s, zero))
    return None, _mm(_mm(u, gaps * y) + (gu - _mm(u, xu)) * sinv, _T(v)) + _mm(u * sinv, _T(gv - _mm(v, xv)))


svd_vectors_p = _library(
    "svd_vectors", lambda f, a: f[..., 1:, :].copy(),
    lambda f, a: (a.shape[:-2] + (sum(a.shape[-2:]), min(a.shape[-2:])), a.dtype),
    _svd_vectors_jvp, _svd_vectors_vjp, lambda node, out, ins, ctx: f"{out} = KL.rows_after_first({ins[0]})")


def _svd_weighted_impl(f, a, w):
    m = a.shape[-2]
    u, v = f[..., 1:1 + m, :], f[..., 1 + m:, :]
    return ((u * w[..., None, :]) @ _np_T(v)).astype(a.dtype)


def _svd_weighted_shape(f, a, w):
    return a.shape, a.dtype


def _svd_weighted_coefficients(s, w):
    """(α, β, masks) of the derivative of U diag(w) Vᵀ: inside span(U) ⊗ span(V) it is U (K + dW) Vᵀ,
    K = α ∘ P + β ∘ Pᵀ with P = Uᵀ dA V.

    With dU = U Ω_U + (I - UUᵀ) dA V S⁻¹ and dV = V Ω_V + (I - VVᵀ) dAᵀ U S⁻¹ (the reduced SVD),
    K = Ω_U W - W Ω_V, K_ij = F_ij [P_ij (s_j w_j - w_i s_i) + P_ji (s_i w_j - w_i s_j)],
    F_ij = 1/(s_j² - s_i²). A pair of distinct values never needs more, even when one is zero.
    Ω_U, Ω_V are undefined where s_i = s_j, but a repeated pair of equal weights enters only
    through U_b V_bᵀ: K_ij tends to w (P_ij - P_ji)/(s_i + s_j) + c (P_ij + P_ji)/2, where c is
    the limit of (w_i - w_j)/(s_i - s_j) -- how the weights split with the values, which w alone
    does not tell (0 for ‖A‖_nuc, 6s for Σs³). Likewise a zero value of weight 0 contributes
    c_z times the block of dA between the null spaces, c_z the limit of w_z/s_z (0 for ‖A‖₂ at a
    rank-deficient matrix, 2 for Σs²). So:
    masks["bad"]: repeated pairs of unequal weights, and zero values of nonzero weight
      (`used_zero`, rows and columns): no derivative;
    masks["pair"]: repeated nonzero pairs of equal weights, masks["zero"]: zero values: exact
      when the weights do not vary with `a` (c = 0), else only if the tangent avoids them.
    """
    k = shape_of(s)[-1]
    repeated, zero = _repeated(s), _zero_singular(s)
    eye = np.eye(k, dtype=bool)
    wi, wj, si, sj = _as_column(w), _as_row(w), _as_column(s), _as_row(s)
    scale = _as_column(B.max(B.abs(w), -1, keepdims=True, empty=0.0))
    same_w = B.abs(B.subtract(wi, wj)) <= B.multiply(16.0 * max(k, 1) * np.finfo(s.dtype).eps, scale)
    used_zero = zero & (w != 0)
    zero_i, zero_j = _as_column(zero), _as_row(zero)
    gaps = _inverse_gaps((sj + si) * (sj - si), repeated | eye)
    total = si + sj
    inv_total = B.where(total > 0, 1.0 / B.where(total > 0, total, 1.0), 0.0)
    mean_w = B.multiply(0.5, B.add(wi, wj))
    equal = repeated & same_w
    alpha = B.where(equal, B.multiply(mean_w, inv_total), gaps * (sj * wj - B.multiply(wi, si)))
    beta = B.where(equal, B.multiply(-mean_w, inv_total), gaps * (si * wj - B.multiply(wi, sj)))
    masks = {"bad": (repeated & ~same_w) | _as_column(used_zero) | _as_row(used_zero),
             "pair": equal & ~zero_i & ~zero_j, "zero": zero_i & zero_j, "zero_columns": _as_row(zero)}
    return alpha, beta, masks


def _guard_all(x, checks, message):
    """x, checked at run time: for each (values, bad) of `checks`, values at `bad` must vanish
    relative to x, else NonDifferentiableError(message)."""
    tol = float(np.sqrt(np.finfo(x.dtype).eps))
    share = None
    for values, bad in checks:
        part = _share(B.where(bad, values, 0.0), x)
        share = part if share is None else B.maximum(share, part)
    return require_small_p(x, share, tol=tol, message=message)


def _split_checks(p, masks, weights_vary):
    """What of P (= Uᵀ dA V, or Uᵀ Ḡ V in reverse) must vanish: always the entries of `bad`; when
    the weights may vary with `a`, also the zero-zero block and, on repeated pairs, the part
    that splits the pair (P_ij + P_ji and P_ii - P_jj)."""
    checks = [(p, masks["bad"])]
    if weights_vary:
        diag = B.sum(p * np.eye(shape_of(p)[-1], dtype=p.dtype), -1)
        checks += [(p, masks["zero"]), (p + _T(p), masks["pair"]),
                   (_as_column(diag) - _as_row(diag), masks["pair"])]
    return checks


def _svd_weighted_jvp(primals, tangents, out):
    f, a, w = primals
    ta, tw = tangents[1], tangents[2]
    u, v = _svd_uv(f, a)
    result = None
    if tw is not None:
        result = _mm(u * _as_row(tw), _T(v))  # U diag(dw) Vᵀ
    if ta is not None:
        s = svd_values_p(f, a)
        alpha, beta, masks = _svd_weighted_coefficients(s, w)
        weights_vary = tw is not None  # None: w does not depend on the differentiated inputs (c = 0)
        p = _mm(_T(u), ta, v)
        p = _guard_all(p, _split_checks(p, masks, weights_vary), _SVD_FORWARD)
        columns = masks["zero_columns"] if weights_vary else _rows(masks["bad"], 0, 1)
        rest_u = _guard(_mm(ta, v) - _mm(u, p), columns, _SVD_FORWARD)        # (I - UUᵀ) dA V
        rest_v = _guard(_mm(_T(ta), u) - _mm(v, _T(p)), columns, _SVD_FORWARD)  # (I - VVᵀ) dAᵀ U
        d = _as_row(B.multiply(w, _reciprocal_or_zero(s, _zero_singular(s))))  # W S⁻¹
        k = alpha * p + beta * _T(p)
        da = _mm(_mm(u, k) + rest_u * d, _T(v)) + _mm(u * d, _T(rest_v))
        result = da if result is None else result + da
    return result


def _svd_weighted_vjp(g, out, f, a, w, wanted=None):
    # wanted[2] False: w does not depend on the differentiated inputs (the AD transform's activity),
    # so its weights do not vary with `a` (c = 0), as a structurally zero tangent in forward mode
    weights_vary = wanted is None or wanted[2]
    u, v = _svd_uv(f, a)
    s = svd_values_p(f, a)
    alpha, beta, masks = _svd_weighted_coefficients(s, w)
    gv, gtu = _mm(g, v), _mm(_T(g), u)
    h = _mm(_T(u), gv)                                                                  # Uᵀ Ḡ V
    gw = B.sum(u * gv, -2)                                                              # diag(Uᵀ Ḡ V)
    h = _guard_all(h, _split_checks(h, masks, weights_vary), _SVD_REVERSE)
    columns = masks["zero_columns"] if weights_vary else _rows(masks["bad"], 0, 1)
    rest_u = _guard(gv - _mm(u, h), columns, _SVD_REVERSE)                             # (I - UUᵀ) Ḡ V
    rest_v = _guard(gtu - _mm(v, _T(h)), columns, _SVD_REVERSE)                        # (I - VVᵀ) Ḡᵀ U
    d = _as_row(B.multiply(w, _reciprocal_or_zero(s, _zero_singular(s))))
    pbar = alpha * h + _T(beta * h)
    return None, _mm(_mm(u, pbar) + rest_u * d, _T(v)) + _mm(u * d, _T(rest_v)), gw


_svd_weighted_vjp.takes_wanted = True  # the AD transform passes wanted= (see jitad.transforms.ad.vjp_values)


# U diag(w) Vᵀ of the reduced SVD of `a` (its factor `f`): the adjoint of the singular values.
# Its rules differentiate only the columns that w weights (see _svd_weighted_coefficients).
svd_weighted_p = _library(
    "svd_weighted", _svd_weighted_impl, _svd_weighted_shape, _svd_weighted_jvp, _svd_weighted_vjp,
    lambda node, out, ins, ctx: f"{out} = KL.svd_weighted({ins[0]}, {ins[1]}, {ins[2]})")


def _svd_full_rule(*args, **params):
    raise NonDifferentiableError(
        "svd(full_matrices=True) of a non-square matrix: the extra columns of U (or rows of Vh) "
        "are any orthonormal completion, so they have no derivative. Call "
        "np.linalg.svd(a, full_matrices=False) (or use only the singular values).")


def _svd_full_shape(a, part):
    _matrix("svd", a)
    size = a.shape[-1] if part == "vh" else a.shape[-2]
    return a.shape[:-2] + (size, size), a.dtype


svd_full_p = _library(
    "svd_full", lambda a, part: np.linalg.svd(a, full_matrices=True)[2 if part == "vh" else 0],
    _svd_full_shape, _svd_full_rule, _svd_full_rule,
    lambda node, out, ins, ctx: f"{out} = KL.svd_full({ins[0]}, {node.params['part'] == 'vh'})")


# --- QR (reduced: Q is m × k, R is k × n) ----------------------------------------------------------
_QR_RANK = ("qr: the matrix does not have full rank (R has a zero on its diagonal), so Q is not "
            "unique and has no derivative there.")


def _qr_factor_impl(a):
    m, n = a.shape[-2:]
    q, r = np.linalg.qr(a)
    packed = np.empty(a.shape[:-2] + (m + n, min(m, n)), a.dtype)
    packed[..., :m, :], packed[..., m:, :] = q, _np_T(r)
    return packed


def _qr_factor_shape(a):
    _matrix("qr", a)
    m, n = a.shape[-2:]
    return a.shape[:-2] + (m + n, min(m, n)), a.dtype


qr_factor_p = _library(
    "qr_factor", _qr_factor_impl, _qr_factor_shape, None, None,
    lambda node, out, ins, ctx: f"{out} = KL.qr({ins[0]})", differentiable=False)


def _right_solve(x, r, transpose):
    """x R⁻¹ (transpose=False) or x R⁻ᵀ (transpose=True) for upper-triangular R."""
    return _T(solve_triangular_p(r, _T(x), lower=False, trans=0 if transpose else 1, unit_diagonal=False))


def _full_rank(r):
    d = B.abs(B.diagonal(r))
    tol = 16.0 * max(shape_of(r)[-1], 1) * np.finfo(r.dtype).eps
    deficient = d <= B.multiply(tol, B.max(d, -1, keepdims=True, empty=0.0))
    return r if shape_of(deficient)[-1] == 0 else require_small_p(
        r, B.max(B.astype(deficient, r.dtype), -1), tol=0.5, message=_QR_RANK)


def _qr_square_jvp(q, r, da):
    """(dQ, dR) for A = QR with A m × k, m >= k (R square)."""
    b = _right_solve(da, r, transpose=False)   # dA R⁻¹
    c = _mm(_T(q), b)
    low = B.tril(c, -1)
    omega = low - _T(low)                      # Qᵀ dQ, antisymmetric
    return _mm(q, omega) + b - _mm(q, c), _mm(c - omega, r)


def _qr_square_vjp(q, r, gq, gr):
    """Ā = (Q̄ + Q copyltu(M)) R⁻ᵀ with M = R R̄ᵀ - Q̄ᵀ Q, for m >= k (either cotangent may be None)."""
    terms = []
    if gr is not None:
        terms.append(_mm(r, _T(gr)))
    if gq is not None:
        terms.append(-_mm(_T(gq), q))
    m = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    b = _mm(q, _sym_from_lower(m))
    if gq is not None:
        b = b + gq
    return _right_solve(b, r, transpose=True)


def _qr_parts(f, a):
    q, r = qr_q_p(f, a), _full_rank(qr_r_p(f, a))
    k = a.shape[-2]
    wide = a.shape[-1] > k  # A = [X | Y] with X square: Q, R_X from X, and R_Y = Qᵀ Y
    return q, (_columns(r, 0, k) if wide else r), wide, k


def _qr_jvp(primals, tangents, out, want):
    f, a = primals
    ta = tangents[1]
    q, rx, wide, k = _qr_parts(f, a)
    dq, drx = _qr_square_jvp(q, rx, _columns(ta, 0, k) if wide else ta)
    if want == "q":
        return dq
    if not wide:
        return drx
    return B.concatenate([drx, _mm(_T(dq), _columns(a, k)) + _mm(_T(q), _columns(ta, k))], axis=-1)


def _qr_vjp(g, out, f, a, want):
    q, rx, wide, k = _qr_parts(f, a)
    if want == "q":
        gx = _qr_square_vjp(q, rx, g, None)
        if not wide:
            return None, gx
        return None, B.concatenate([gx, B.full(shape_of(a)[:-1] + (shape_of(a)[-1] - k,), 0, a.dtype)], axis=-1)
    if not wide:
        return None, _qr_square_vjp(q, rx, None, g)
    grx, gry = _columns(g, 0, k), _columns(g, k)
    gx = _qr_square_vjp(q, rx, _mm(_columns(a, k), _T(gry)), grx)
    return None, B.concatenate([gx, _mm(q, gry)], axis=-1)


qr_q_p = _library(
    "qr_q", lambda f, a: f[..., :a.shape[-2], :].copy(), lambda f, a: (a.shape[:-1] + (min(a.shape[-2:]),), a.dtype),
    lambda primals, tangents, out: _qr_jvp(primals, tangents, out, "q"),
    lambda g, out, f, a: _qr_vjp(g, out, f, a, "q"),
    lambda node, out, ins, ctx: f"{out} = KL.qr_q({ins[0]}, {ins[1]})")

qr_r_p = _library(
    "qr_r", lambda f, a: np.swapaxes(f[..., a.shape[-2]:, :], -1, -2).copy(),
    lambda f, a: (a.shape[:-2] + (min(a.shape[-2:]), a.shape[-1]), a.dtype),
    lambda primals, tangents, out: _qr_jvp(primals, tangents, out, "r"),
    lambda g, out, f, a: _qr_vjp(g, out, f, a, "r"),
    lambda node, out, ins, ctx: f"{out} = KL.qr_r({ins[0]}, {ins[1]})")


# --- pseudo-inverse (Golub & Pereyra: differentiable where the rank is locally constant) ---------
_PINV_RANK = ("pinv: the matrix is rank-deficient (at the pinv cutoff), where the pseudo-inverse "
              "jumps as the rank changes, so it has no derivative there.")


def _full_rank_pinv(p, a, value):
    rank = B.sum(p * _T(a), (-2, -1))  # tr(A⁺A) = rank(A)
    return require_small_p(value, min(a.shape[-2:]) - rank, tol=0.5, message=_PINV_RANK)


def _pinv_jvp(primals, tangents, p, rcond):
    (a,), (ta,) = primals, tangents
    tt = _T(ta)
    dp = -_mm(p, ta, p) + _mm(p, _T(p), B.subtract(tt, _mm(tt, a, p))) + \
        _mm(B.subtract(tt, _mm(p, _mm(a, tt))), _T(p), p)
    return _full_rank_pinv(p, a, dp)


def _pinv_vjp(g, p, a, rcond):
    gt, pt = _T(g), _T(p)
    ga = -_mm(pt, g, pt) + _mm(B.subtract(gt, _mm(a, _mm(p, gt))), p, pt) + \
        _mm(pt, p, B.subtract(gt, _mm(gt, p, a)))
    return (_full_rank_pinv(p, a, ga),)


def _pinv_shape(a, rcond):
    _matrix("pinv", a)
    return a.shape[:-2] + (a.shape[-1], a.shape[-2]), a.dtype


pinv_p = _library(
    "pinv", lambda a, rcond: np.linalg.pinv(a, rcond=rcond), _pinv_shape, _pinv_jvp, _pinv_vjp,
    lambda node, out, ins, ctx: f"{out} = KL.pinv({ins[0]}, {node.params['rcond']!r})")
