"""jitad: automatic differentiation of plain NumPy functions, compiled with Numba."""
from .api import grad, jit, jvp, value_and_grad, vjp
from .backend import config
from .cache import cache_info
from .checks import check_grads
from .custom import checkpoint, custom_jvp, custom_vjp
from .explain import explain
from .jacobians import hessian, hutchinson_trace, hvp, jacfwd, jacobian, jacrev
from .errors import (AxisError, ConcretizationError, InPlaceUpdateError, InputDtypeError, JitadError, LeafTypeError,
                     NonDifferentiableError, NonScalarOutputError, ShapeError, UnsupportedOperationError)

__version__ = "0.1.0"

__all__ = [
    "grad", "value_and_grad", "vjp", "jvp", "jit", "explain", "cache_info", "check_grads", "config", "custom_vjp", "custom_jvp", "checkpoint",
    "jacfwd", "jacrev", "jacobian", "hessian", "hvp", "hutchinson_trace",
    "JitadError", "UnsupportedOperationError", "ConcretizationError", "InPlaceUpdateError",
    "NonScalarOutputError", "InputDtypeError", "LeafTypeError", "ShapeError", "AxisError", "NonDifferentiableError",
]
