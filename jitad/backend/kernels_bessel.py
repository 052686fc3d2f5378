"""Bessel and gamma-family functions for generated kernels (`KB.<name>`): SciPy's own routines,
called from Numba.

`scipy.special.jv`, `yv`, `iv`, `ive`, `kv`, `kve` (real order and argument), `j0`, `j1`, `y0`,
`y1`, `yn`, `rgamma`, `gammasgn`, `binom`, `gammaincinv`, `gammainccinv`, `exp1`, `expi`, `expn`,
`stdtrit`, `betaincinv`, `betainccinv`, `fdtri`, `poch`, `spence`, `ellipk`, `ellipe`, `sici`, `fresnel`,
`dawsn`, `owens_t`, `huber` and `pseudo_huber` are the C functions `scipy.special.cython_special`
exports (AMOS and Cephes, as SciPy's ufuncs run them), registered with LLVM under stable symbol names, so a compiled value is SciPy's bit for bit
and kernels calling them stay cacheable on disk. A module of its own: importing it imports
scipy.special (~0.7 s), which only kernels that use a Bessel function pay.
"""
import llvmlite.binding as llvm
import numba
import numpy as np
from numba import types
from numba.extending import get_cython_function_address

__all__ = ["jv", "yv", "iv", "ive", "kv", "kve", "j0", "j1", "y0", "y1", "yn", "rgamma", "gammasgn", "binom",
           "gammaincinv", "gammainccinv", "exp1", "expi", "expn", "stdtrit", "betaincinv", "betainccinv", "fdtri",
           "poch", "spence", "ellipk", "ellipe", "si", "ci", "fresnel_s", "fresnel_c", "dawsn", "owens_t", "huber",
           "pseudo_huber"]

_njit = numba.njit(cache=True, error_model="numpy", nogil=True)


def _special(name, nargs):
    """scipy.special.cython_special's `name` (double arguments, then Cython's skip-dispatch flag)."""
    symbol = f"jitad_cython_special_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.special.cython_special", name))
    return types.ExternalFunction(symbol, types.float64(*([types.float64] * nargs), types.intc))


def _special_pair(name):
    """A cython_special routine of one double and two outputs, void f(double x, double *a, double *b)."""
    symbol = f"jitad_cython_special_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.special.cython_special", name))
    return types.ExternalFunction(symbol, types.void(types.float64, types.voidptr, types.voidptr))


_jv, _yv = _special("__pyx_fuse_1jv", 2), _special("__pyx_fuse_1yv", 2)
_iv, _ive = _special("__pyx_fuse_1iv", 2), _special("__pyx_fuse_1ive", 2)
_kv, _kve = _special("__pyx_fuse_1kv", 2), _special("__pyx_fuse_1kve", 2)
_j0, _j1, _y0, _y1 = _special("j0", 1), _special("j1", 1), _special("y0", 1), _special("y1", 1)
_yn, _binom = _special("__pyx_fuse_0yn", 2), _special("binom", 2)
_rgamma, _gammasgn = _special("__pyx_fuse_1rgamma", 1), _special("gammasgn", 1)
_gammaincinv, _gammainccinv = _special("gammaincinv", 2), _special("gammainccinv", 2)
_exp1, _expi = _special("__pyx_fuse_1exp1", 1), _special("__pyx_fuse_1expi", 1)
_expn, _stdtrit = _special("__pyx_fuse_0expn", 2), _special("__pyx_fuse_0stdtrit", 2)
_betaincinv, _betainccinv = _special("__pyx_fuse_0betaincinv", 3), _special("__pyx_fuse_0betainccinv", 3)
_fdtri, _poch = _special("__pyx_fuse_0fdtri", 3), _special("poch", 2)
_spence, _dawsn = _special("__pyx_fuse_1spence", 1), _special("__pyx_fuse_1dawsn", 1)
_ellipk, _ellipe = _special("ellipk", 1), _special("ellipe", 1)
_owens_t, _huber, _pseudo_huber = _special("owens_t", 2), _special("huber", 2), _special("pseudo_huber", 2)
_sici, _fresnel = _special_pair("__pyx_fuse_1sici"), _special_pair("__pyx_fuse_1fresnel")


@_njit
def jv(v, x):
    return _jv(float(v), float(x), 0)


@_njit
def yv(v, x):
    return _yv(float(v), float(x), 0)


@_njit
def iv(v, x):
    return _iv(float(v), float(x), 0)


@_njit
def ive(v, x):
    return _ive(float(v), float(x), 0)


@_njit
def kv(v, x):
    return _kv(float(v), float(x), 0)


@_njit
def kve(v, x):
    return _kve(float(v), float(x), 0)


@_njit
def j0(x):
    return _j0(float(x), 0)


@_njit
def j1(x):
    return _j1(float(x), 0)


@_njit
def y0(x):
    return _y0(float(x), 0)


@_njit
def y1(x):
    return _y1(float(x), 0)


@_njit
def yn(n, x):
    return _yn(float(n), float(x), 0)


@_njit
def rgamma(x):
    return _rgamma(float(x), 0)


@_njit
def gammasgn(x):
    return _gammasgn(float(x), 0)


@_njit
def binom(n, k):
    return _binom(float(n), float(k), 0)


@_njit
def gammaincinv(a, y):
    return _gammaincinv(float(a), float(y), 0)


@_njit
def gammainccinv(a, y):
    return _gammainccinv(float(a), float(y), 0)


@_njit
def exp1(x):
    return _exp1(float(x), 0)


@_njit
def expi(x):
    return _expi(float(x), 0)


@_njit
def expn(n, x):
    return _expn(float(n), float(x), 0)


@_njit
def stdtrit(df, p):
    return _stdtrit(float(df), float(p), 0)


@_njit
def betaincinv(a, b, y):
    return _betaincinv(float(a), float(b), float(y), 0)


@_njit
def betainccinv(a, b, y):
    return _betainccinv(float(a), float(b), float(y), 0)


@_njit
def fdtri(dfn, dfd, p):
    return _fdtri(float(dfn), float(dfd), float(p), 0)


@_njit
def poch(z, m):
    return _poch(float(z), float(m), 0)


@_njit
def spence(z):
    return _spence(float(z), 0)


@_njit
def ellipk(m):
    return _ellipk(float(m), 0)


@_njit
def ellipe(m):
    return _ellipe(float(m), 0)


@_njit
def dawsn(x):
    return _dawsn(float(x), 0)


@_njit
def owens_t(h, a):
    return _owens_t(float(h), float(a), 0)


@_njit
def huber(delta, r):
    return _huber(float(delta), float(r), 0)


@_njit
def pseudo_huber(delta, r):
    return _pseudo_huber(float(delta), float(r), 0)


@_njit
def _pair(fn, x):
    out = np.empty(2)
    fn(float(x), out[:1].ctypes, out[1:].ctypes)
    return out[0], out[1]


@_njit
def si(x):
    return _pair(_sici, x)[0]


@_njit
def ci(x):
    return _pair(_sici, x)[1]


@_njit
def fresnel_s(x):
    return _pair(_fresnel, x)[0]


@_njit
def fresnel_c(x):
    return _pair(_fresnel, x)[1]
