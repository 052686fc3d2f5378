"""The NumPy/SciPy front-end: the tracer and the builders it dispatches NumPy and SciPy calls to.

Importing the package registers every builder: `numpy_ops` holds the NumPy functions and the
registry (`FUNCTIONS`), `linalg_ops` adds `np.linalg` and `scipy.linalg`, `scipy_ops` adds
`scipy.special` and `scipy.stats`, `numpy_extra` more NumPy functions (linspace, gradient, interp,
quantiles, nan-reductions, convolutions, np.r_/np.c_) and scipy.signal's. Each imports only the ones before it.
"""
from jitad.frontend import numpy_ops, linalg_ops, scipy_ops, numpy_extra  # noqa: F401  (registration, in order)
from jitad.frontend import integrate  # noqa: F401  (scipy.integrate.odeint, solve_ivp)
from jitad.frontend import scipy_stats  # noqa: F401  (scipy.stats descriptive statistics, scipy.optimize.rosen)
