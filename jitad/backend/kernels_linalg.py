"""Numba helpers behind the linear-algebra primitives (generated kernels import this as `KL`).

Every helper takes arrays of shape (..., m, n) and loops over the leading (batch) axes,
calling LAPACK on each matrix: through Numba's own `np.linalg` where it has the routine,
and otherwise (LU factor/solve, triangular solve) through SciPy's Cython LAPACK, whose
function addresses are registered with LLVM under stable symbol names so that these
functions and the kernels calling them stay cacheable on disk.

Packed factor layouts (the values of the factor nodes, identical on both backends):
- LU:   (..., n + 1, n): rows :n hold the LAPACK LU factors in Fortran order (that is,
        the transpose of SciPy's `lu`); row n holds the 0-based pivots as floats.
- eigh: (..., n + 1, n): row 0 the eigenvalues, rows 1: the eigenvectors (as columns).
- SVD:  (..., 1 + m + n, k): row 0 the singular values, then U (m × k), then V (n × k).
- QR:   (..., m + n, k): Q (m × k), then Rᵀ (n × k).
"""
import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types
from numba.extending import get_cython_function_address

from jitad.errors import NonDifferentiableError


def _lapack(name, nargs):
    symbol = f"jitad_lapack_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_lapack", name))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * nargs)))


# every argument by pointer (Fortran convention)
_dgetrf, _sgetrf = _lapack("dgetrf", 6), _lapack("sgetrf", 6)   # m, n, a, lda, ipiv, info
_dgetrs, _sgetrs = _lapack("dgetrs", 9), _lapack("sgetrs", 9)   # trans, n, nrhs, a, lda, ipiv, b, ldb, info
_dtrtrs, _strtrs = _lapack("dtrtrs", 10), _lapack("strtrs", 10)  # uplo, trans, diag, n, nrhs, a, lda, b, ldb, info
# jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info
_dsyevd, _ssyevd = _lapack("dsyevd", 11), _lapack("ssyevd", 11)
# jobz, range, uplo, n, a, lda, vl, vu, il, iu, abstol, m, w, z, ldz, isuppz, work, lwork, iwork, liwork, info
_dsyevr, _ssyevr = _lapack("dsyevr", 21), _lapack("ssyevr", 21)


@numba.njit(cache=True, nogil=True)
def _stack(a):
    """a (..., m, n) as a C-contiguous (batch, m, n) array."""
    m, n = a.shape[-2], a.shape[-1]
    count = 1
    for k in range(a.ndim - 2):
        count *= a.shape[k]
    return np.ascontiguousarray(a).reshape((count, m, n))


@numba.njit(cache=True, nogil=True)
def _char(c):
    return np.array([ord(c)], np.uint8)


@numba.njit(cache=True, nogil=True)
def _int(k):
    return np.array([k], np.int32)


# --- LU ---------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def lu_factor(a):
    """Packed LU factors of each square matrix of `a` (see the module docstring)."""
    n = a.shape[-1]
    a3 = _stack(a)
    out = np.empty((a3.shape[0], n + 1, n), a.dtype)
    ipiv = np.empty(max(n, 1), np.int32)
    info, nn = _int(0), _int(n)
    for k in range(a3.shape[0]):
        f = a3[k].T.copy()  # C order of aᵀ is Fortran order of a
        if n:
            if a.itemsize == 8:  # float64, else float32
                _dgetrf(nn.ctypes, nn.ctypes, f.ctypes, nn.ctypes, ipiv.ctypes, info.ctypes)
            else:
                _sgetrf(nn.ctypes, nn.ctypes, f.ctypes, nn.ctypes, ipiv.ctypes, info.ctypes)
        out[k, :n, :] = f   # info > 0 (an exact zero pivot) is fine: det is 0, solves raise
        for i in range(n):
            out[k, n, i] = ipiv[i] - 1
    return out.reshape(a.shape[:-2] + (n + 1, n))


@numba.njit(cache=True, nogil=True)
def _check_pivots(f):
    n = f.shape[1]
    for i in range(n):
        if f[i, i] == 0.0:
            raise np.linalg.LinAlgError("Singular matrix")


@numba.njit(cache=True, nogil=True)
def lu_solve(lu, b, trans):
    """x with A x = b (trans=0) or Aᵀ x = b (trans=1) from packed factors; b is (..., n, k)."""
    n, nrhs = b.shape[-2], b.shape[-1]
    f3, b3 = _stack(lu), _stack(b)
    out = np.empty((b3.shape[0], n, nrhs), b.dtype)
    ipiv = np.empty(max(n, 1), np.int32)
    info, nn, kk = _int(0), _int(n), _int(nrhs)
    op = _char("T" if trans else "N")
    for k in range(b3.shape[0]):
        f = np.ascontiguousarray(f3[k, :n, :])
        _check_pivots(f)
        for i in range(n):
            ipiv[i] = np.int32(f3[k, n, i]) + 1
        x = b3[k].T.copy()  # Fortran order of b, overwritten with x
        if n and nrhs:
            if b.itemsize == 8:  # float64, else float32
                _dgetrs(op.ctypes, nn.ctypes, kk.ctypes, f.ctypes, nn.ctypes, ipiv.ctypes, x.ctypes,
                        nn.ctypes, info.ctypes)
            else:
                _sgetrs(op.ctypes, nn.ctypes, kk.ctypes, f.ctypes, nn.ctypes, ipiv.ctypes, x.ctypes,
                        nn.ctypes, info.ctypes)
        out[k] = x.T
    return out.reshape(b.shape)


@numba.njit(cache=True, nogil=True)
def _lu_sign_logabs(f3, k, n):
    sign, logabs = 1.0, 0.0
    for i in range(n):
        d = f3[k, i, i]
        if d == 0.0:
            return 0.0, -np.inf
        if d < 0.0:
            sign = -sign
        if f3[k, n, i] != i:
            sign = -sign
        logabs += np.log(abs(d))
    return sign, logabs


@numba.njit(cache=True, nogil=True)
def lu_det(lu):
    n = lu.shape[-1]
    f3 = _stack(lu)
    out = np.empty(f3.shape[0], lu.dtype)
    for k in range(f3.shape[0]):
        d = 1.0
        for i in range(n):
            d *= f3[k, i, i]
            if f3[k, n, i] != i:
                d = -d
        out[k] = d
    return out  # flat over the batch; the lowering reshapes (or takes the scalar)


@numba.njit(cache=True, nogil=True)
def lu_slogdet(lu, logabsdet):
    """The sign (logabsdet=False) or log|det| (logabsdet=True) from packed LU factors."""
    n = lu.shape[-1]
    f3 = _stack(lu)
    out = np.empty(f3.shape[0], lu.dtype)
    for k in range(f3.shape[0]):
        sign, logabs = _lu_sign_logabs(f3, k, n)
        out[k] = logabs if logabsdet else sign
    return out  # flat over the batch, like lu_det


# --- triangular solve -------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def solve_triangular(t, b, lower, trans, unit_diagonal):
    """x with op(T) x = b, op(T) = T or Tᵀ, reading one triangle of T; b is (..., n, k)."""
    n, nrhs = b.shape[-2], b.shape[-1]
    t3, b3 = _stack(t), _stack(b)
    out = np.empty((b3.shape[0], n, nrhs), b.dtype)
    # T in C order is M = Tᵀ in Fortran order: flip the triangle and the transpose flag
    uplo = _char("U" if lower else "L")
    op = _char("N" if trans else "T")
    diag = _char("U" if unit_diagonal else "N")
    info, nn, kk = _int(0), _int(n), _int(nrhs)
    for k in range(b3.shape[0]):
        m = t3[k]
        x = b3[k].T.copy()
        if n and nrhs:
            if b.itemsize == 8:  # float64, else float32
                _dtrtrs(uplo.ctypes, op.ctypes, diag.ctypes, nn.ctypes, kk.ctypes, m.ctypes, nn.ctypes,
                        x.ctypes, nn.ctypes, info.ctypes)
            else:
                _strtrs(uplo.ctypes, op.ctypes, diag.ctypes, nn.ctypes, kk.ctypes, m.ctypes, nn.ctypes,
                        x.ctypes, nn.ctypes, info.ctypes)
            if info[0] > 0:
                raise np.linalg.LinAlgError("singular matrix: a diagonal entry of the triangular matrix is zero")
        out[k] = x.T
    return out.reshape(b.shape)


# --- Numba's np.linalg, batched ----------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def lu_factors(packed):
    """scipy.linalg.lu_factor's `lu` from a packed (n + 1, n) factor: its first n rows, transposed."""
    n = packed.shape[-1]
    return np.ascontiguousarray(packed[:n].T)


@numba.njit(cache=True, nogil=True)
def lu_lower(packed):
    """scipy.linalg.lu's unit lower factor L from a packed (n + 1, n) factor (lu[i, j] = packed[j, i])."""
    n = packed.shape[-1]
    p3 = _stack(packed)
    out = np.zeros((p3.shape[0], n, n), packed.dtype)
    for k in range(p3.shape[0]):
        for i in range(n):
            out[k, i, i] = 1.0
            for j in range(i):
                out[k, i, j] = p3[k, j, i]
    return out.reshape(packed.shape[:-2] + (n, n))


@numba.njit(cache=True, nogil=True)
def lu_upper(packed):
    """scipy.linalg.lu's upper factor U from a packed (n + 1, n) factor."""
    n = packed.shape[-1]
    p3 = _stack(packed)
    out = np.zeros((p3.shape[0], n, n), packed.dtype)
    for k in range(p3.shape[0]):
        for i in range(n):
            for j in range(i, n):
                out[k, i, j] = p3[k, j, i]
    return out.reshape(packed.shape[:-2] + (n, n))


@numba.njit(cache=True, nogil=True)
def lu_rows(packed):
    """scipy.linalg.lu(p_indices=True)'s p (a = L[p] @ U): the inverse of LAPACK's row interchanges."""
    n = packed.shape[-1]
    p3 = _stack(packed)
    out = np.empty((p3.shape[0], n), np.int64)
    perm = np.empty(n, np.int64)
    for k in range(p3.shape[0]):
        for i in range(n):
            perm[i] = i
        for i in range(n):
            q = int(p3[k, n, i])
            perm[i], perm[q] = perm[q], perm[i]
        for j in range(n):
            out[k, perm[j]] = j
    return out.reshape(packed.shape[:-2] + (n,))


@numba.njit(cache=True, nogil=True)
def inv(a):
    a3 = _stack(a)
    out = np.empty_like(a3)
    for k in range(a3.shape[0]):
        out[k] = np.linalg.inv(a3[k])
    return out.reshape(a.shape)


@numba.njit(cache=True, nogil=True)
def cholesky(a):
    """Lower Cholesky factor, reading the lower triangle only (like NumPy)."""
    a3 = _stack(a)
    out = np.empty_like(a3)
    for k in range(a3.shape[0]):
        out[k] = np.linalg.cholesky(a3[k])
    return out.reshape(a.shape)


@numba.njit(cache=True, nogil=True)
def eigh(a):
    """Packed eigenvalues and eigenvectors, reading the lower triangle only (like NumPy)."""
    n = a.shape[-1]
    a3 = _stack(a)
    out = np.empty((a3.shape[0], n + 1, n), a.dtype)
    for k in range(a3.shape[0]):
        w, v = np.linalg.eigh(a3[k])
        out[k, 0, :] = w
        out[k, 1:, :] = v
    return out.reshape(a.shape[:-2] + (n + 1, n))


@numba.njit(cache=True, nogil=True)
def eigh_evd(a, upper):
    """`eigh` by LAPACK's syevd on the upper (or lower) triangle, as np.linalg.eigh(a, "U") and
    scipy.linalg.eigh(driver="evd") call it: their eigenvectors, signs included."""
    n = a.shape[-1]
    a3 = _stack(a)
    out = np.empty((a3.shape[0], n + 1, n), a.dtype)
    jobz, uplo = _char("V"), _char("U" if upper else "L")
    nn, info = _int(n), _int(0)
    w = np.empty(max(n, 1), a.dtype)
    lwork, liwork = _int(-1), _int(-1)  # workspace query first
    work, iwork = np.empty(1, a.dtype), np.empty(1, np.int32)
    if n:
        if a.itemsize == 8:
            _dsyevd(jobz.ctypes, uplo.ctypes, nn.ctypes, a3[0].T.copy().ctypes, nn.ctypes, w.ctypes, work.ctypes,
                    lwork.ctypes, iwork.ctypes, liwork.ctypes, info.ctypes)
        else:
            _ssyevd(jobz.ctypes, uplo.ctypes, nn.ctypes, a3[0].T.copy().ctypes, nn.ctypes, w.ctypes, work.ctypes,
                    lwork.ctypes, iwork.ctypes, liwork.ctypes, info.ctypes)
        lwork[0], liwork[0] = np.int32(work[0]), iwork[0]
        work, iwork = np.empty(max(lwork[0], 1), a.dtype), np.empty(max(liwork[0], 1), np.int32)
    for k in range(a3.shape[0]):
        f = a3[k].T.copy()  # C order of aᵀ is Fortran order of a (as NumPy passes it)
        if n:
            if a.itemsize == 8:
                _dsyevd(jobz.ctypes, uplo.ctypes, nn.ctypes, f.ctypes, nn.ctypes, w.ctypes, work.ctypes,
                        lwork.ctypes, iwork.ctypes, liwork.ctypes, info.ctypes)
            else:
                _ssyevd(jobz.ctypes, uplo.ctypes, nn.ctypes, f.ctypes, nn.ctypes, w.ctypes, work.ctypes,
                        lwork.ctypes, iwork.ctypes, liwork.ctypes, info.ctypes)
            if info[0] > 0:
                raise np.linalg.LinAlgError("Eigenvalues did not converge")
        out[k, 0, :] = w[:n]
        out[k, 1:, :] = f.T  # Fortran order of the eigenvectors, as columns
    return out.reshape(a.shape[:-2] + (n + 1, n))


@numba.njit(cache=True, nogil=True)
def _syevr(f, n, uplo, w, z, isuppz, work, lwork, iwork, liwork, info):
    """One call of LAPACK's syevr (all eigenpairs) on the Fortran-order matrix f (overwritten)."""
    jobz, rng, nn, il, iu, m = _char("V"), _char("A"), _int(n), _int(1), _int(n), _int(0)
    bounds, tol = np.zeros(2, f.dtype), np.zeros(1, f.dtype)
    if f.itemsize == 8:
        _dsyevr(jobz.ctypes, rng.ctypes, uplo.ctypes, nn.ctypes, f.ctypes, nn.ctypes, bounds[:1].ctypes,
                bounds[1:].ctypes, il.ctypes, iu.ctypes, tol.ctypes, m.ctypes, w.ctypes, z.ctypes, nn.ctypes,
                isuppz.ctypes, work.ctypes, lwork.ctypes, iwork.ctypes, liwork.ctypes, info.ctypes)
    else:
        _ssyevr(jobz.ctypes, rng.ctypes, uplo.ctypes, nn.ctypes, f.ctypes, nn.ctypes, bounds[:1].ctypes,
                bounds[1:].ctypes, il.ctypes, iu.ctypes, tol.ctypes, m.ctypes, w.ctypes, z.ctypes, nn.ctypes,
                isuppz.ctypes, work.ctypes, lwork.ctypes, iwork.ctypes, liwork.ctypes, info.ctypes)


@numba.njit(cache=True, nogil=True)
def eigh_evr(a, upper):
    """`eigh` by LAPACK's syevr, scipy.linalg.eigh's default driver (its eigenvectors, signs included)."""
    n = a.shape[-1]
    a3 = _stack(a)
    out = np.empty((a3.shape[0], n + 1, n), a.dtype)
    uplo, info = _char("U" if upper else "L"), _int(0)
    w, z = np.empty(max(n, 1), a.dtype), np.empty((max(n, 1), max(n, 1)), a.dtype)
    isuppz = np.empty(2 * max(n, 1), np.int32)
    lwork, liwork = _int(-1), _int(-1)  # workspace query first
    work, iwork = np.empty(1, a.dtype), np.empty(1, np.int32)
    if n:
        _syevr(a3[0].T.copy(), n, uplo, w, z, isuppz, work, lwork, iwork, liwork, info)
        lwork[0], liwork[0] = np.int32(work[0]), iwork[0]
        work, iwork = np.empty(max(lwork[0], 1), a.dtype), np.empty(max(liwork[0], 1), np.int32)
    for k in range(a3.shape[0]):
        if n:
            _syevr(a3[k].T.copy(), n, uplo, w, z, isuppz, work, lwork, iwork, liwork, info)
            if info[0] > 0:
                raise np.linalg.LinAlgError("Eigenvalues did not converge")
        out[k, 0, :] = w[:n]
        out[k, 1:, :] = z[:n, :n].T  # z in Fortran order: its transpose holds the eigenvectors as columns
    return out.reshape(a.shape[:-2] + (n + 1, n))


@numba.njit(cache=True, nogil=True)
def svd(a):
    """Packed reduced SVD: singular values, U and V = Vhᵀ."""
    m, n = a.shape[-2], a.shape[-1]
    r = min(m, n)
    a3 = _stack(a)
    out = np.empty((a3.shape[0], 1 + m + n, r), a.dtype)
    for k in range(a3.shape[0]):
        u, s, vh = np.linalg.svd(a3[k], full_matrices=False)
        out[k, 0, :] = s
        out[k, 1:1 + m, :] = u
        out[k, 1 + m:, :] = vh.T
    return out.reshape(a.shape[:-2] + (1 + m + n, r))


@numba.njit(cache=True, nogil=True)
def svd_weighted(p, a, w):
    """U diag(w) Vᵀ from the packed reduced SVD `p` of `a`."""
    m, n = a.shape[-2], a.shape[-1]
    r = p.shape[-1]
    p3 = _stack(p)
    w2 = np.ascontiguousarray(w).reshape((p3.shape[0], r))
    out = np.empty((p3.shape[0], m, n), a.dtype)
    for k in range(p3.shape[0]):
        uw = np.empty((m, r), a.dtype)
        for i in range(m):
            for j in range(r):
                uw[i, j] = p3[k, 1 + i, j] * w2[k, j]
        vt = np.ascontiguousarray(p3[k, 1 + m:, :].T)
        out[k] = uw @ vt
    return out.reshape(a.shape)


@numba.njit(cache=True, nogil=True)
def svd_full(a, vh):
    """U (vh=False) or Vh (vh=True) of the full SVD."""
    m, n = a.shape[-2], a.shape[-1]
    size = n if vh else m
    a3 = _stack(a)
    out = np.empty((a3.shape[0], size, size), a.dtype)
    for k in range(a3.shape[0]):
        u, s, v = np.linalg.svd(a3[k], full_matrices=True)
        out[k] = v if vh else u
    return out.reshape(a.shape[:-2] + (size, size))


@numba.njit(cache=True, nogil=True)
def qr(a):
    """Packed reduced QR: Q, then Rᵀ."""
    m, n = a.shape[-2], a.shape[-1]
    r = min(m, n)
    a3 = _stack(a)
    out = np.empty((a3.shape[0], m + n, r), a.dtype)
    for k in range(a3.shape[0]):
        q, rr = np.linalg.qr(a3[k])
        out[k, :m, :] = q
        out[k, m:, :] = rr.T
    return out.reshape(a.shape[:-2] + (m + n, r))


@numba.njit(cache=True, nogil=True)
def pinv(a, rcond):
    m, n = a.shape[-2], a.shape[-1]
    a3 = _stack(a)
    out = np.empty((a3.shape[0], n, m), a.dtype)
    for k in range(a3.shape[0]):
        out[k] = np.linalg.pinv(a3[k], rcond)
    return out.reshape(a.shape[:-2] + (n, m))


# --- parts of packed factors -------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def first_row(p):
    """p[..., 0, :]: eigenvalues / singular values."""
    return np.ascontiguousarray(p[..., 0, :])


@numba.njit(cache=True, nogil=True)
def rows_after_first(p):
    """p[..., 1:, :]: eigenvectors / [U; V]."""
    return np.ascontiguousarray(p[..., 1:, :])


@numba.njit(cache=True, nogil=True)
def qr_q(p, a):
    return np.ascontiguousarray(p[..., :a.shape[-2], :])


@numba.njit(cache=True, nogil=True)
def qr_r(p, a):
    rt = _stack(p[..., a.shape[-2]:, :])
    out = np.empty((rt.shape[0], rt.shape[2], rt.shape[1]), p.dtype)
    for k in range(rt.shape[0]):
        out[k] = rt[k].T
    return out.reshape(a.shape[:-2] + (rt.shape[2], rt.shape[1]))


# --- numerical guard ----------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _max_abs(x):
    top = 0.0
    for v in np.asarray(x).flat:  # x may be a scalar in generated code
        if abs(v) > top:
            top = abs(v)
    return top


@numba.njit(cache=True, nogil=True)
def require_small(x, r, tol, message):
    """x, after checking that every |r| <= tol; else NonDifferentiableError(message)."""
    if _max_abs(r) > tol:
        raise NonDifferentiableError(message)
    return x.copy()


# --- matrix exponential: Padé 13 with scaling and squaring (Higham 2005) --------------------------
_PADE13 = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0, 129060195264000.0,
           10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0, 40840800.0, 960960.0, 16380.0, 182.0,
           1.0)
_THETA13 = 5.371920351148152  # the 1-norm up to which the degree-13 approximant is accurate to unit roundoff


@numba.njit(cache=True, nogil=True)
def _expm1(a):
    """exp(a) of one float64 matrix."""
    n = a.shape[0]
    norm = 0.0
    for j in range(n):
        col = 0.0
        for i in range(n):
            col += abs(a[i, j])
        norm = max(norm, col)
    if not np.isfinite(norm):
        return np.full((n, n), np.nan)
    s = 0
    if norm > _THETA13:
        s = int(np.ceil(np.log2(norm / _THETA13)))
    x = a / 2.0 ** s
    b = _PADE13
    eye = np.eye(n)
    x2 = x @ x
    x4 = x2 @ x2
    x6 = x4 @ x2
    u = x @ (x6 @ (b[13] * x6 + b[11] * x4 + b[9] * x2) + b[7] * x6 + b[5] * x4 + b[3] * x2 + b[1] * eye)
    v = x6 @ (b[12] * x6 + b[10] * x4 + b[8] * x2) + b[6] * x6 + b[4] * x4 + b[2] * x2 + b[0] * eye
    r = np.ascontiguousarray(np.linalg.solve(v - u, v + u))
    for _ in range(s):
        r = r @ r
    return r


@numba.njit(cache=True, nogil=True)
def expm(a):
    """scipy.linalg.expm of each matrix of `a` (computed in float64, returned in a's dtype)."""
    a3 = _stack(a)
    out = np.empty_like(a3)
    for k in range(a3.shape[0]):
        out[k] = _expm1(np.ascontiguousarray(a3[k]).astype(np.float64)).astype(a.dtype)
    return out.reshape(a.shape)
