"""np.linalg (and a few scipy.linalg functions) on traced values, built from jitad.primitives.linalg.

Importing this module registers the builders in `jitad.frontend.numpy_ops.FUNCTIONS`, so the tracer's
`__array_function__` finds them. SciPy functions do not go through
`__array_function__` (they convert their arguments with np.asarray first), so while
jitad traces it swaps the few it implements (`SCIPY_FUNCTIONS`) on the `scipy.linalg`
module for dispatchers; see `scipy_hooks`. Code that calls `scipy.linalg.cho_solve(...)`
is traced, and so is a name bound earlier with `from scipy.linalg import cho_solve`
(`jitad.frontend.scipy_names` swaps those too); a function reached only through another
object is SciPy's own and gets an error that says so.
"""
import collections
import contextlib
import functools
import operator
import sys
import threading

import numpy as np

from jitad.frontend import inplace
from jitad.frontend import numpy_ops
from jitad.frontend import scipy_code
from jitad.frontend import scipy_names
from jitad import primitives as P
from jitad.errors import ShapeError, UnsupportedOperationError
from jitad.ir import current_builder, is_tracer

_results = np.linalg._linalg  # NumPy's named result tuples (EighResult, SVDResult, ...)


def _float(x):
    x = numpy_ops.asarray(x)
    return x if x.dtype.kind == "f" else numpy_ops.astype(x, np.float64)


def _floats(*xs):
    xs = [_float(x) for x in xs]
    dtype = np.result_type(*[x.dtype for x in xs])
    return [numpy_ops.astype(x, dtype) if x.dtype != dtype else x for x in xs]


def _square(a, name):
    if a.ndim < 2:
        raise ShapeError(f"np.linalg.{name}: {a.ndim}-dimensional array given. Array must be at least "
                         "two-dimensional")
    if a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"np.linalg.{name}: last 2 dimensions of the array must be square, got {a.shape}")


def _T(x):
    return numpy_ops.swapaxes(x, -1, -2)


def _right_hand_side(a, b, name):
    """b as stacked matrices whose batch axes match a's, and whether b was a vector."""
    vector = b.ndim == 1
    b2 = numpy_ops.reshape(b, b.shape + (1,)) if vector else b
    if b2.shape[-2] != a.shape[-1]:
        raise ShapeError(f"{name}: a of shape {a.shape} and b of shape {b.shape} do not fit "
                         f"({a.shape[-1]} != {b2.shape[-2]})")
    batch = tuple(np.broadcast_shapes(a.shape[:-2], b2.shape[:-2]))
    return batch, numpy_ops.broadcast_to(b2, batch + b2.shape[-2:]), vector


# --- solves, inverse, determinants (one LU factor node per matrix) ------------------------------
def inv(a):
    """np.linalg.inv. Its adjoint -A⁻ᵀ Ḡ A⁻ᵀ reuses the forward inverse."""
    a = _float(a)
    _square(a, "inv")
    return P.inv_p(a)


def expm(A):
    """scipy.linalg.expm: the exponential of each square matrix of the last two axes. Its
    derivative in a direction E is the top-right block of expm([[A, E], [0, A]])."""
    a = _float(A)
    _square(a, "scipy.linalg.expm")
    return P.expm_p(a)


def sqrtm(A, disp=True, blocksize=64):
    """scipy.linalg.sqrtm of a real matrix whose square root is real (the principal one); its
    derivative solves a Sylvester equation. A function calling it runs on the NumPy executor."""
    if not disp:
        raise UnsupportedOperationError("scipy.linalg.sqrtm(disp=False)", "It returns an error estimate too: "
                                        "call scipy.linalg.sqrtm(a). ")
    a = _float(A)
    _square(a, "scipy.linalg.sqrtm")
    return P.sqrtm_p(a)


def logm(A, disp=None):
    """scipy.linalg.logm of a real matrix whose logarithm is real (the principal one), differentiable to any
    order (the Fréchet derivative from the log of [[A, E], [0, A]]). A function calling it runs on the NumPy
    executor (SciPy's Schur-based routine)."""
    if disp is not None and not disp:
        raise UnsupportedOperationError("scipy.linalg.logm(disp=False)", "It returns an error estimate too: "
                                        "call scipy.linalg.logm(a). ")
    a = _float(A)
    _square(a, "scipy.linalg.logm")
    if a.dtype != np.float64:  # SciPy's logm of float32 is float64 (its triangular logarithm computes in float64)
        a = numpy_ops.astype(a, np.float64)
    return P.logm_p(a)


def schur(a, output="real", lwork=None, overwrite_a=False, sort=None, check_finite=True):
    """scipy.linalg.schur(a) of a real matrix, output='real': (T, Z), SciPy's values. They have no
    derivative (a NonDifferentiableError says why); runs on the NumPy executor."""
    if output not in ("real", "r"):
        raise UnsupportedOperationError(f"scipy.linalg.schur(output={output!r})",
                                        "jitad computes the real Schur form (output='real') of real matrices. ")
    if sort is not None:
        raise UnsupportedOperationError("scipy.linalg.schur(sort=...)",
                                        "Call it without sort= (jitad returns SciPy's unsorted (T, Z)). ")
    a = _float(a)
    _square(a, "scipy.linalg.schur")
    packed = P.schur_factor_p(a)
    return P.schur_part_p(packed, a, part=0), P.schur_part_p(packed, a, part=1)


def solve_sylvester(a, b, q):
    """scipy.linalg.solve_sylvester: X with A X + X B = Q, differentiable in A, B and Q (the
    derivative solves the same equation; the adjoint, the one with Aᵀ and Bᵀ). A function calling
    it runs on the NumPy executor."""
    return P.sylvester_p(*_floats(a, b, q))


def solve(a, b):
    """np.linalg.solve: A x = b for a vector or stacked-matrix b, batch axes broadcast.

    The forward solve and the adjoint solve with Aᵀ (∂L/∂b = A⁻ᵀ ∂L/∂x, ∂L/∂A = -∂L/∂b xᵀ)
    read one `lu_factor` node: the backward pass does not factorise again.
    """
    a, b = _floats(a, b)
    _square(a, "solve")
    batch, rhs, vector = _right_hand_side(a, b, "np.linalg.solve")
    n = a.shape[-1]
    lu = P.lu_factor_p(a)
    x = P.lu_solve_p(numpy_ops.broadcast_to(lu, batch + (n + 1, n)), numpy_ops.broadcast_to(a, batch + (n, n)), rhs,
                     trans=0)
    return x[..., 0] if vector else x


BANDED_DENSE_LIMIT = 4096  # solve_banded solves the dense matrix: above this order it would not fit


def solve_banded(l_and_u, ab, b, overwrite_ab=False, overwrite_b=False, check_finite=True):
    """scipy.linalg.solve_banded: A x = b for A given by its diagonals, ab[u + i - j, j] = A[i, j].
    The matrix is rebuilt dense (a gather from ab) and solved as np.linalg.solve does, so both the
    values and the derivatives in ab and b are those of a dense solve: O(n^3), for n up to
    BANDED_DENSE_LIMIT."""
    lower, upper = (int(k) for k in l_and_u)
    ab, b = _floats(ab, b)
    if ab.ndim != 2 or ab.shape[0] != lower + upper + 1:
        raise ShapeError(f"scipy.linalg.solve_banded: invalid values for the number of lower and upper diagonals: "
                         f"l+u+1 ({lower + upper + 1}) does not equal ab.shape[0] ({ab.shape[0]})")
    n = ab.shape[1]
    if b.ndim == 0 or b.shape[0] != n:
        raise ShapeError(f"scipy.linalg.solve_banded: shapes of ab {ab.shape} and b {b.shape} are incompatible")
    if n > BANDED_DENSE_LIMIT:
        raise UnsupportedOperationError(
            f"scipy.linalg.solve_banded of order {n} on traced values",
            f"jitad solves banded systems as dense ones, up to order {BANDED_DENSE_LIMIT}. ")
    # position in ab (raveled, then one zero appended) of each A[i, j]: the zero outside the band
    rows, cols = np.indices((n, n))
    band = upper + rows - cols
    inside = (band >= 0) & (band <= lower + upper)
    position = np.where(inside, band * n + cols, (lower + upper + 1) * n)
    flat = numpy_ops.concatenate([numpy_ops.reshape(ab, (-1,)), np.zeros(1, ab.dtype)])
    a = numpy_ops.getitem(flat, position)
    rhs = numpy_ops.reshape(b, (n, -1))
    x = solve(a, rhs)
    return numpy_ops.reshape(x, b.shape)


def det(a):
    """np.linalg.det from the LU factors; ∂det/∂A = det(A) A⁻ᵀ from the same factors."""
    a = _float(a)
    _square(a, "det")
    return P.lu_det_p(P.lu_factor_p(a), a)


def slogdet(a):
    """np.linalg.slogdet: (sign, log|det|); ∂log|det A|/∂A = A⁻ᵀ, the sign has derivative 0."""
    a = _float(a)
    _square(a, "slogdet")
    lu = P.lu_factor_p(a)
    return _results.SlogdetResult(P.lu_slogdet_p(lu, a, part="sign"), P.lu_slogdet_p(lu, a, part="logabsdet"))


def matrix_power(a, n):
    """np.linalg.matrix_power by repeated squaring (matmuls); n < 0 inverts first."""
    n = operator.index(n)
    a = numpy_ops.asarray(a)
    _square(a, "matrix_power")
    if n == 0:  # a fresh identity (per matrix), writable as NumPy's: not a view of a constant
        return inplace.own(np.broadcast_to(np.eye(a.shape[-1], dtype=a.dtype), a.shape).copy())
    if n < 0:
        a, n = inv(a), -n
    result, power = None, a
    while n:
        if n & 1:
            result = power if result is None else numpy_ops.matmul(result, power)
        n >>= 1
        if n:
            power = numpy_ops.matmul(power, power)
    return result


# --- factorisations ------------------------------------------------------------------------------
def cholesky(a, /, *, upper=False):
    """np.linalg.cholesky; like NumPy it reads only the lower (upper=True: upper) triangle."""
    a = _float(a)
    _square(a, "cholesky")
    return _T(P.cholesky_p(_T(a))) if upper else P.cholesky_p(a)


def _eigh_input(a, UPLO, name):
    a = _float(a)
    _square(a, name)
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    return _T(a) if UPLO == "U" else a  # the primitive reads the lower triangle


def _eigh_factor(a, UPLO, name, driver="numpy"):
    """(the packed factor of NumPy's own call, the matrix whose lower triangle the values and
    vectors primitives read). For UPLO="U" the factor is LAPACK's on the upper triangle of `a`, so
    its eigenvectors are NumPy's, signs included; the primitives read the lower triangle of aᵀ (the
    same matrix), through which the cotangent reaches the upper triangle of `a`. driver "evr" or
    "evd": scipy.linalg.eigh's (LAPACK's syevr or syevd, as SciPy calls them)."""
    lower = _eigh_input(a, UPLO, name)
    params = {} if driver == "numpy" else {"driver": driver}
    if UPLO == "U":
        return P.eigh_factor_p(_float(a), upper=True, **params), lower
    return P.eigh_factor_p(lower, **params), lower


def eigh(a, UPLO="L", *, _driver="numpy"):
    """np.linalg.eigh. Only the UPLO triangle is read, so only it receives a cotangent.

    Eigenvector derivatives at repeated eigenvalues: exact in reverse mode for functions
    that do not depend on the basis of the repeated eigenspace, else NonDifferentiableError.
    """
    f, a = _eigh_factor(a, UPLO, "eigh", _driver)
    return _results.EighResult(P.eigh_values_p(f, a), P.eigh_vectors_p(f, a))


def eigvalsh(a, UPLO="L", *, _driver="numpy"):
    """np.linalg.eigvalsh; the gradient of the eigenvalues is exact also when they repeat."""
    f, a = _eigh_factor(a, UPLO, "eigvalsh", _driver)
    return P.eigh_values_p(f, a)


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """np.linalg.svd. The reduced factors (or compute_uv=False) are differentiable; for a
    non-square matrix with full_matrices=True, the completed U / Vh have no derivative."""
    if hermitian:
        raise UnsupportedOperationError("np.linalg.svd(hermitian=True)",
                                        "Call it with hermitian=False (the same singular values). ")
    a = _float(a)
    if a.ndim < 2:
        raise ShapeError(f"np.linalg.svd: {a.ndim}-dimensional array given. Array must be at least "
                         "two-dimensional")
    f = P.svd_factor_p(a)
    s = P.svd_values_p(f, a)
    if not compute_uv:
        return s
    m, n = a.shape[-2:]
    if full_matrices and m != n:
        return _results.SVDResult(P.svd_full_p(a, part="u"), s, P.svd_full_p(a, part="vh"))
    uv = P.svd_vectors_p(f, a)
    return _results.SVDResult(uv[..., :m, :], s, _T(uv[..., m:, :]))


def svdvals(x, /):
    return svd(x, compute_uv=False)


def qr(a, mode="reduced"):
    """np.linalg.qr with mode 'reduced', 'r', or 'complete' for m <= n (then the same)."""
    a = _float(a)
    if a.ndim < 2:
        raise ShapeError(f"np.linalg.qr: {a.ndim}-dimensional array given. Array must be at least "
                         "two-dimensional")
    m, n = a.shape[-2:]
    if mode not in ("reduced", "r", "complete"):
        raise UnsupportedOperationError(f"np.linalg.qr(mode={mode!r})", "Use mode='reduced'. ")
    if mode == "complete" and m > n:
        raise UnsupportedOperationError(
            "np.linalg.qr(mode='complete') of a tall matrix",
            "Its extra columns of Q are any orthonormal completion and have no derivative; use mode='reduced'. ")
    f = P.qr_factor_p(a)
    r = P.qr_r_p(f, a)
    return r if mode == "r" else _results.QRResult(P.qr_q_p(f, a), r)


_UNSET = object()


def pinv(a, rcond=None, hermitian=False, *, rtol=_UNSET):
    """np.linalg.pinv (same cutoff rules); differentiable where the rank is locally constant."""
    a = _float(a)
    if a.ndim < 2:
        raise ShapeError("np.linalg.pinv: array must be at least two-dimensional")
    if rcond is None:
        rcond = 1e-15 if rtol is _UNSET else (max(a.shape[-2:]) * np.finfo(a.dtype).eps if rtol is None else rtol)
    if np.ndim(rcond) or hasattr(rcond, "node"):
        raise UnsupportedOperationError("np.linalg.pinv with an array or traced rcond", "Pass a number. ")
    return P.pinv_p(a, rcond=float(rcond))


def lstsq(a, b, rcond=None):
    """np.linalg.lstsq as pinv(a) @ b with NumPy's cutoff (rcond * largest singular value; rcond=None:
    eps * max(m, n)): (x, residuals, rank, s). NumPy's residuals are empty unless a has full column
    rank, which a traced a cannot tell in advance: here they are |b - a x|² for m > n, NaN where the
    rank is lower (empty for m <= n, like NumPy's)."""
    a, b = _floats(a, b)
    if a.ndim != 2 or b.ndim not in (1, 2):
        raise ShapeError(f"np.linalg.lstsq: a must be 2-d and b 1-d or 2-d, got shapes {a.shape} and {b.shape}")
    m, n = a.shape
    if b.shape[0] != m:
        raise ShapeError(f"np.linalg.lstsq: incompatible dimensions {a.shape} and {b.shape}")
    if rcond is None:
        rcond = np.finfo(a.dtype).eps * max(m, n)
    x = numpy_ops.matmul(pinv(a, rcond=rcond), b)
    s = svdvals(a)
    rank = numpy_ops.sum(P.greater_p(s, rcond * numpy_ops.amax(s)), dtype=np.int32) if min(m, n) else np.int32(0)
    if m > n:
        residual = b - numpy_ops.matmul(a, x)
        residuals = numpy_ops.sum(residual * residual, axis=0, keepdims=b.ndim == 1)
        residuals = np.where(P.equal_p(rank, n), residuals, np.nan)
    else:
        residuals = np.zeros((0,), a.dtype)
    return _results.LstsqResult(x, residuals, rank, s) if hasattr(_results, "LstsqResult") else (x, residuals, rank, s)


# --- norms and the NumPy 2 linalg namespace ------------------------------------------------------
def norm(x, ord=None, axis=None, keepdims=False):
    x = numpy_ops.asarray(x)
    if x.dtype.kind != "f":
        x = numpy_ops.astype(x, np.float64)
    nd = numpy_ops.ndim_of(x)
    if axis is None and (ord is None or (ord == 2 and nd == 1) or (ord == "fro" and nd == 2)):
        result = P.safe_sqrt_p(numpy_ops.sum(x * x))
        return numpy_ops.reshape(result, (1,) * nd) if keepdims else result
    if axis is None:
        axis = tuple(range(nd))
    axes = numpy_ops._axes(axis, nd)
    if len(axes) == 1:
        return _vector_norm(x, ord, axes[0], keepdims)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims)
    raise ShapeError("improper number of dimensions to norm")


def _largest(x, axis, keepdims=False):
    """np.amax over `axis` of values >= 0 (|x|, sums of |x|, singular values), 0 when the axis is empty:
    NumPy 2's norms and matrix_rank take it with initial=0, so a matrix with no entries has norm 0 and
    rank 0 (initial= only then: the graph of a non-empty one is the plain maximum)."""
    empty = numpy_ops.shape_of(x)[axis] == 0
    return numpy_ops.amax(x, axis=axis, keepdims=keepdims, initial=0.0 if empty else None)


def _vector_norm(x, ord, axis, keepdims):
    if ord is None or ord == 2:
        return P.safe_sqrt_p(numpy_ops.sum(x * x, axis=axis, keepdims=keepdims))
    if ord == np.inf:
        return _largest(numpy_ops.absolute(x), axis, keepdims)
    if ord == -np.inf:
        return numpy_ops.amin(numpy_ops.absolute(x), axis=axis, keepdims=keepdims)
    if ord == 1:
        return numpy_ops.sum(numpy_ops.absolute(x), axis=axis, keepdims=keepdims)
    if ord == 0:
        return numpy_ops.sum(numpy_ops.astype(numpy_ops.not_equal(x, 0.0), x.dtype), axis=axis, keepdims=keepdims)
    if isinstance(ord, str):
        raise ShapeError(f"invalid norm order {ord!r} for vectors")
    return numpy_ops.power(numpy_ops.sum(numpy_ops.power(numpy_ops.absolute(x), float(ord)), axis=axis, keepdims=keepdims), 1.0 / ord)


def _matrix_norm(x, ord, axes, keepdims):
    row, col = axes
    if ord in (None, "fro"):
        return P.safe_sqrt_p(numpy_ops.sum(x * x, axis=axes, keepdims=keepdims))
    if ord in (1, -1):
        col_sums = numpy_ops.sum(numpy_ops.absolute(x), axis=row, keepdims=True)
        pick = _largest if ord == 1 else numpy_ops.amin
        result = pick(col_sums, axis=col, keepdims=True)
    elif ord in (np.inf, -np.inf):
        row_sums = numpy_ops.sum(numpy_ops.absolute(x), axis=col, keepdims=True)
        pick = _largest if ord == np.inf else numpy_ops.amin
        result = pick(row_sums, axis=row, keepdims=True)
    else:
        return matrix_norm(x, ord, axes, keepdims)
    return result if keepdims else numpy_ops.squeeze(result, axis=axes)


def multi_dot(arrays, out=None):
    result = arrays[0]
    for a in arrays[1:]:
        result = numpy_ops.matmul(result, a)
    return result


def matrix_norm(x, ord, axes, keepdims):
    """Spectral (ord=2), smallest-singular-value (-2) and nuclear ("nuc") norms via the SVD.

    At ties (a repeated largest singular value) ord=2 splits the cotangent evenly, a
    subgradient; the nuclear norm's gradient is U Vᵀ.
    """
    if ord not in (2, -2, "nuc"):
        raise ShapeError(f"invalid norm order {ord!r} for matrices")
    moved = numpy_ops.moveaxis(_float(x), axes, (-2, -1))
    s = svd(moved, compute_uv=False)
    result = numpy_ops.sum(s, axis=-1) if ord == "nuc" else (_largest if ord == 2 else numpy_ops.amin)(s, axis=-1)
    return numpy_ops.expand_dims(result, axes) if keepdims else result


def _matrix_norm_api(x, /, *, keepdims=False, ord="fro"):
    return norm(x, ord, axis=(-2, -1), keepdims=keepdims)


def _vector_norm_api(x, /, *, axis=None, keepdims=False, ord=2):
    x = _float(x)
    nd = x.ndim
    axes = numpy_ops._axes(axis, nd)
    if not axes:
        return numpy_ops.absolute(x)
    moved = numpy_ops.moveaxis(x, axes, tuple(range(nd - len(axes), nd)))
    kept = nd - len(axes)
    # the reduced axes' length spelled out: -1 is ambiguous when a kept axis is empty
    flat = numpy_ops.reshape(moved, moved.shape[:kept] + (int(np.prod(moved.shape[kept:], dtype=np.int64)),))
    result = _vector_norm(flat, ord, kept, False)
    if keepdims:
        result = numpy_ops.reshape(result, tuple(1 if i in axes else n for i, n in enumerate(x.shape)))
    return result


def tensorinv(a, ind=2):
    """np.linalg.tensorinv: the inverse of `a` read as a matrix of its first `ind` axes by the rest."""
    a = _float(a)
    if ind <= 0:
        raise ValueError("Invalid ind argument.")
    old = a.shape
    rows = int(np.prod(old[:ind], dtype=np.int64))
    if rows != int(np.prod(old[ind:], dtype=np.int64)):
        raise np.linalg.LinAlgError("Last 2 dimensions of the array must be square")
    return numpy_ops.reshape(inv(numpy_ops.reshape(a, (rows, -1))), old[ind:] + old[:ind])


def tensorsolve(a, b, axes=None):
    """np.linalg.tensorsolve: x with tensordot(a, x, x.ndim) = b, solved as a square matrix system."""
    a, b = _floats(a, b)
    if axes is not None:
        moved = [k for k in range(a.ndim) if k not in [ax % a.ndim for ax in axes]]
        a = numpy_ops.transpose(a, moved + [ax % a.ndim for ax in axes])
    old = a.shape[-(a.ndim - b.ndim):]
    size = int(np.prod(old, dtype=np.int64))
    if int(np.prod(a.shape, dtype=np.int64)) != size * size:
        raise np.linalg.LinAlgError("Input arrays must satisfy the requirement prod(a.shape[b.ndim:]) == "
                                    "prod(a.shape[:b.ndim])")
    x = solve(numpy_ops.reshape(a, (size, size)), numpy_ops.reshape(b, (size,)))
    return numpy_ops.reshape(x, old)


def _linalg_cross(x1, x2, /, *, axis=-1):
    """np.linalg.cross (the array API's): 3-vectors only."""
    if numpy_ops.shape_of(x1)[axis] != 3 or numpy_ops.shape_of(x2)[axis] != 3:
        raise ShapeError("Both input arrays must be (arrays of) 3-dimensional vectors, but they are "
                         f"{numpy_ops.shape_of(x1)[axis]} and {numpy_ops.shape_of(x2)[axis]} dimensional instead.")
    return numpy_ops.cross(x1, x2, axis=axis)


numpy_ops.FUNCTIONS.update({
    np.linalg.inv: inv, np.linalg.solve: solve, np.linalg.det: det, np.linalg.slogdet: slogdet,
    np.linalg.matrix_power: matrix_power, np.linalg.cholesky: cholesky, np.linalg.eigh: eigh,
    np.linalg.eigvalsh: eigvalsh, np.linalg.svd: svd, np.linalg.svdvals: svdvals, np.linalg.qr: qr,
    np.linalg.pinv: pinv, np.linalg.lstsq: lstsq, np.linalg.norm: norm, np.linalg.multi_dot: multi_dot,
    np.linalg.matrix_norm: _matrix_norm_api, np.linalg.vector_norm: _vector_norm_api,
    np.linalg.matrix_transpose: _T,
    np.linalg.trace: lambda x, /, *, offset=0, dtype=None: numpy_ops.trace(x, offset, -2, -1),
    np.linalg.diagonal: lambda x, /, *, offset=0: numpy_ops.diagonal(x, offset, -2, -1),
    np.linalg.outer: numpy_ops.outer, np.linalg.matmul: numpy_ops.matmul, np.linalg.tensordot: numpy_ops.tensordot,
    np.linalg.vecdot: lambda x1, x2, /, *, axis=-1: numpy_ops.sum(numpy_ops.multiply(x1, x2), axis=axis),
    np.linalg.tensorinv: tensorinv, np.linalg.tensorsolve: tensorsolve, np.linalg.cross: _linalg_cross,
})


# --- SciPy ------------------------------------------------------------------------------------------
def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False, check_finite=True):
    """scipy.linalg.solve_triangular: reads only one triangle of a (strictly, if unit_diagonal)."""
    trans = {0: 0, 1: 1, 2: 1, "N": 0, "T": 1, "C": 1}[trans]
    a, b = _floats(a, b)
    _square(a, "solve_triangular")
    batch, rhs, vector = _right_hand_side(a, b, "scipy.linalg.solve_triangular")
    t = numpy_ops.broadcast_to(a, batch + a.shape[-2:])
    x = P.solve_triangular_p(t, rhs, lower=bool(lower), trans=trans, unit_diagonal=bool(unit_diagonal))
    return x[..., 0] if vector else x


def scipy_qr(a, overwrite_a=False, lwork=None, mode="full", pivoting=False, check_finite=True):
    """scipy.linalg.qr: mode 'full' (for m <= n, where Q is square), 'economic' and 'r' (R alone, in a
    1-tuple, with SciPy's zero rows below it for a tall matrix); LAPACK's geqrf signs, as SciPy's."""
    if pivoting:
        raise UnsupportedOperationError("scipy.linalg.qr(pivoting=True)",
                                        "Its column order jumps with the values; call it without pivoting. ")
    if mode not in ("full", "economic", "r"):
        raise UnsupportedOperationError(f"scipy.linalg.qr(mode={mode!r})", "Use mode 'full', 'economic' or 'r'. ")
    a = _float(a)
    if a.ndim < 2:
        raise ShapeError(f"scipy.linalg.qr: {a.ndim}-dimensional array given; it needs two dimensions")
    m, n = a.shape[-2:]
    if mode == "r":
        r = qr(a, "r")
        if m > n:
            r = numpy_ops.concatenate([r, np.zeros(a.shape[:-2] + (m - n, n), r.dtype)], axis=-2)
        return (r,)
    if mode == "full" and m > n:
        raise UnsupportedOperationError(
            "scipy.linalg.qr(mode='full') of a tall matrix",
            "Its extra columns of Q are any orthonormal completion and have no derivative; use mode='economic'. ")
    q, r = qr(a, "reduced")
    return q, r


def scipy_cholesky(a, lower=False, overwrite_a=False, check_finite=True):
    """scipy.linalg.cholesky (upper factor by default), reading that triangle only."""
    return cholesky(a, upper=not lower)


def cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    """scipy.linalg.cho_factor: (c, lower); c's other triangle holds a's entries there, as SciPy's (LAPACK's
    potrf leaves them; cho_solve reads the factor's triangle only)."""
    a = _float(a)
    other = numpy_ops.triu(a, 1) if lower else numpy_ops.tril(a, -1)
    return cholesky(a, upper=not lower) + other, lower


def cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    """scipy.linalg.cho_solve: two triangular solves with the factor (A = L Lᵀ or Uᵀ U)."""
    c, lower = c_and_lower
    y = solve_triangular(c, b, trans=0 if lower else 1, lower=lower)
    return solve_triangular(c, y, trans=1 if lower else 0, lower=lower)


# lu_factor's traced `lu` -> (lu, packed factor node, a): lu_solve reads the factors (and, for the
# derivative, the matrix) they came from; the most recent factorisations only
_LU_FACTORS = collections.OrderedDict()


def lu_factor(a, overwrite_a=False, check_finite=True):
    """scipy.linalg.lu_factor: (lu, piv) as SciPy's. The factors themselves have no derivative here
    (using `lu` in arithmetic is a NonDifferentiableError when differentiated); scipy.linalg.lu_solve
    with them is differentiable in a and b (it solves with the same factorisation)."""
    a = _float(a)
    _square(a, "scipy.linalg.lu_factor")
    if a.ndim != 2:
        raise ShapeError(f"scipy.linalg.lu_factor: a 2-D matrix, got shape {a.shape} (use np.linalg.solve for stacks)")
    n = a.shape[-1]
    packed = P.lu_factor_p(a)
    lu = P.lu_factors_p(packed, a)
    piv = numpy_ops.astype(packed[n], np.int32)
    _LU_FACTORS[id(lu)] = (lu, packed, a)
    while len(_LU_FACTORS) > 64:
        _LU_FACTORS.popitem(last=False)
    return lu, piv


def lu(a, permute_l=False, overwrite_a=False, check_finite=True, p_indices=False):
    """scipy.linalg.lu of square matrices (batched too): P, L, U with a = P L U (LAPACK's partial pivoting,
    SciPy's factors to the bit), (P L, U) with permute_l=True, (p, L, U) with p_indices=True (a = L[p] U),
    read from the one packed LU node. L and U differentiate in a to any order (the pivoting is locally
    constant); P and p are piecewise constant. A non-square matrix is an UnsupportedOperationError."""
    a = _float(a)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise UnsupportedOperationError(
            f"scipy.linalg.lu of an array of shape {numpy_ops.shape_of(a)} (traced)",
            "jitad factors square matrices (P, L, U and their derivatives); pad the matrix, or use "
            "np.linalg.qr. ")
    n = a.shape[-1]
    packed = P.lu_factor_p(a)
    low, up = P.lu_lower_p(packed, a), P.lu_upper_p(packed, a)
    rows = P.lu_rows_p(packed)
    if permute_l:
        return np.take_along_axis(low, numpy_ops.broadcast_to(rows[..., :, None], a.shape), axis=-2), up
    if p_indices:
        return numpy_ops.astype(rows, np.int32), low, up
    return numpy_ops.astype(rows[..., :, None] == np.arange(n), a.dtype), low, up


def _constant_factors(lu, piv):
    """The packed factor node and the matrix P L U of factors computed outside the traced function."""
    lu, piv = np.asarray(lu, np.result_type(lu, np.float64)), np.asarray(piv)
    n = lu.shape[-1]
    packed = np.concatenate([lu.T, piv[None, :].astype(lu.dtype)])
    perm = np.arange(n)
    for i, p in enumerate(piv):  # LAPACK's row interchanges, in order
        perm[[i, p]] = perm[[p, i]]
    a = np.empty_like(lu)
    a[perm] = np.tril(lu, -1) @ np.triu(lu) + np.triu(lu)
    return packed, a


def lu_solve(lu_and_piv, b, trans=0, overwrite_b=False, check_finite=True):
    """scipy.linalg.lu_solve with factors from scipy.linalg.lu_factor (traced in this function,
    or computed outside it)."""
    lu, piv = lu_and_piv
    trans = {0: 0, 1: 1, 2: 1, "N": 0, "T": 1, "C": 1}[trans]
    entry = _LU_FACTORS.get(id(lu))
    if entry is not None and entry[0] is lu:
        _, packed, a = entry
    elif not is_tracer(inplace.resolve(lu)) and not is_tracer(inplace.resolve(piv)):
        packed, a = _constant_factors(lu, piv)
    else:
        raise UnsupportedOperationError(
            "scipy.linalg.lu_solve: jitad solves with traced LU factors only as scipy.linalg.lu_factor "
            "returned them in the same function; pass them on unchanged, or call np.linalg.solve(a, b)")
    b = _float(b)
    batch, rhs, vector = _right_hand_side(a, b, "scipy.linalg.lu_solve")
    x = P.lu_solve_p(packed, a, rhs, trans=trans)
    return x[..., 0] if vector else x


SCIPY_FUNCTIONS = {("scipy.linalg", "solve_triangular"): solve_triangular,
                   ("scipy.linalg", "expm"): expm,
                   ("scipy.linalg", "sqrtm"): sqrtm, ("scipy.linalg", "logm"): logm,
                   ("scipy.linalg", "schur"): schur,
                   ("scipy.linalg", "solve_banded"): solve_banded,
                   ("scipy.linalg", "solve_sylvester"): solve_sylvester,
                   ("scipy.linalg", "lu_factor"): lu_factor, ("scipy.linalg", "lu"): lu,
                   ("scipy.linalg", "qr"): scipy_qr,
                   ("scipy.linalg", "lu_solve"): lu_solve,
                   ("scipy.linalg", "cholesky"): scipy_cholesky,
                   ("scipy.linalg", "cho_factor"): cho_factor,
                   ("scipy.linalg", "cho_solve"): cho_solve}
# (module, "Class.method") entries swap a method on a class of that module (jitad.frontend.scipy_ops:
# scipy.stats distributions); SCIPY_SETUP runs first at each outermost trace (it registers
# scipy.special's ufuncs once SciPy has imported them)
SCIPY_SETUP = []


def _dispatcher(original, builder):
    always = getattr(builder, "while_tracing", False)  # traced values may come only through a closure (odeint)

    @functools.wraps(original)
    def dispatch(*args, **kwargs):
        # an array written with traced values inside the function is traced (jitad.frontend.inplace)
        args, kwargs = inplace.resolve_tree(args), {k: inplace.resolve_tree(v) for k, v in kwargs.items()}
        if (always and current_builder() is not None) or numpy_ops._contains_tracer(list(args)) or \
                numpy_ops._contains_tracer(list(kwargs.values())):
            return builder(*args, **kwargs)
        return original(*args, **kwargs)
    return dispatch


def _hook_for(entry, original, builder):
    """The dispatcher that stands in for `original` under the name `entry` of SCIPY_FUNCTIONS, and the
    trampoline code its code is swapped for (None: not swapped). Made once per entry and reused by
    every later trace (making them at each trace cost ~1 ms a trace)."""
    made = _hook_made.get(entry)
    if made is None or made[0] is not original or made[1] is not builder:
        # its code too, so a call through a dict or an attribute dispatches (scipy_code); a function two
        # names hold is swapped once: the second name's dispatcher calls it, so its trampoline
        code_swap = scipy_code.swappable(original, builder) and id(original) not in _hook_swaps
        dispatcher = _dispatcher(scipy_code.copy_of(original) if code_swap else original, builder)
        made = (original, builder, dispatcher, scipy_code.trampoline_for(original) if code_swap else None)
        _hook_made[entry] = made
    return made[2], made[3]


@contextlib.contextmanager
def scipy_hooks():
    """While tracing: scipy.linalg.<name> for the names in SCIPY_FUNCTIONS dispatch traced calls to jitad.
    Counted across threads and nested traces: the originals come back when the last trace ends."""
    global _hook_depth, _hook_saved, _hook_saved_names
    with _hook_lock:
        if _hook_depth == 0:
            _hook_saved = []
            for setup in SCIPY_SETUP:
                setup()
            for entry, builder in SCIPY_FUNCTIONS.items():
                module_name, name = entry
                module = sys.modules.get(module_name)  # not imported yet: user code cannot call it
                if module is not None:
                    *path, name = name.split(".")
                    owner = functools.reduce(lambda obj, part: getattr(obj, part, None), path, module)
                    original = getattr(owner, name, None)
                    if original is not None:  # else a SciPy version without it: nothing to swap
                        dispatcher, trampoline = _hook_for(entry, original, builder)
                        _hook_saved.append((owner, name, original, name in vars(owner)))
                        setattr(owner, name, dispatcher)
                        _hook_swaps[id(original)] = (original, dispatcher)
                        if trampoline is not None:
                            _hook_code.append(scipy_code.swap(original, dispatcher, trampoline))
            _hook_saved_names = scipy_names.swap_modules(_hook_swaps)  # names bound before tracing
        _hook_depth += 1
    try:
        yield
    finally:
        with _hook_lock:
            _hook_depth -= 1
            if _hook_depth == 0:
                scipy_code.restore(_hook_code)
                _hook_code.clear()
                scipy_names.restore(_hook_saved_names)
                _hook_saved_names = []
                for owner, name, original, own in reversed(_hook_saved):
                    if own:
                        setattr(owner, name, original)
                    else:  # a method the class inherited: its base class's comes back
                        delattr(owner, name)
                _hook_saved = []
                _hook_swaps.clear()


_hook_depth, _hook_saved, _hook_saved_names, _hook_lock = 0, [], [], threading.Lock()
_hook_swaps = {}  # id(original SciPy function) -> (original, its dispatcher), while hooks are on
_hook_code = []  # the SciPy functions whose code is swapped (scipy_code.swap), while hooks are on
_hook_made = {}  # SCIPY_FUNCTIONS key -> (original, builder, dispatcher, trampoline code or None)


@contextlib.contextmanager
def bound_names(fun):
    """While tracing `fun`: the names `fun` holds itself (closure cells, default arguments) that
    are bound to a hooked SciPy function dispatch traced calls to jitad too (`scipy_names`)."""
    with _hook_lock:
        swaps = dict(_hook_swaps)
    undo = scipy_names.swap_function(fun, swaps)
    try:
        yield
    finally:
        scipy_names.restore(undo)


def foreign_call_error(frame=None):
    """An UnsupportedOperationError naming the SciPy function converting a traced array, or None.

    `frame`: the innermost frame to look from (default: the caller's).
    """
    start = frame  # an error's traceback frame: where to look for the user's line from
    frame, found, left_jitad = frame or sys._getframe(1), None, False
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == "jitad" or module.startswith("jitad."):
            if left_jitad and frame.f_code.co_name not in ("__array_function__", "__array_ufunc__"):  # back in jitad (the trace's entry): what called the traced function, such
                break       # as scipy.optimize.minimize calling value_and_grad(f), is not the culprit
        elif module == "numpy" or module.startswith("numpy."):  # NumPy's Python code that SciPy's calls
            left_jitad = True                                     # (np.apply_along_axis): look past it
        elif module.startswith("scipy."):
            left_jitad = True
            name = frame.f_code.co_name
            wrapped = frame.f_locals.get("hypotest_fun_in") if name == "axis_nan_policy_wrapper" else None
            if callable(wrapped):  # scipy.stats' axis/nan_policy decorator: the function it wraps (entropy, skew)
                found = (getattr(wrapped, "__module__", module), wrapped.__qualname__, None)
            elif not name.startswith("_") and name not in ("inner", "decorator") and not name.endswith("wrapper"):
                found = (module, frame.f_code.co_qualname, frame.f_locals.get("self"))
        else:
            left_jitad = True
            if found is not None:
                break
        frame = frame.f_back
    if found is None:
        return None
    module, qualname, owner = found
    public = ".".join(part for part in module.split(".") if not part.startswith("_"))
    name = qualname.rpartition(".")[2]
    shown = f"{public}.{name}"
    if "." in qualname and owner is not None:  # a distribution's method: scipy.stats.norm.logpdf
        label = getattr(owner, "name", None)
        if not isinstance(label, str):  # multivariate_normal_gen: its instance is scipy.stats.multivariate_normal
            label = type(owner).__name__.removesuffix("_gen").removesuffix("_frozen")
        shown = f"{public}.{label}.{name}"
    detail = ""
    if (public, name) in SCIPY_FUNCTIONS or (module, qualname) in SCIPY_FUNCTIONS:
        detail = (f"jitad implements {shown} and swaps it while tracing where a name holds it (module "
                  f"globals, closures, default arguments), but this call reached SciPy's own function "
                  f"through another object (a dict, a list, an attribute), which needs concrete arrays: "
                  f"call it as `{shown}(...)` inside the traced code. ")
    return UnsupportedOperationError(shown, detail, frame=start)
