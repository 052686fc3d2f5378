"""jitad: automatic differentiation of plain NumPy functions, compiled with Numba."""
from .api import grad, jvp, value_and_grad, vjp
from .backend import config
from .checks import check_grads
from .errors import (ConcretizationError, InPlaceUpdateError, InputDtypeError, JitadError, LeafTypeError,
                     NonDifferentiableError, NonScalarOutputError, ShapeError, UnsupportedOperationError)

__version__ = "0.1.0"

__all__ = [
    "grad", "value_and_grad", "vjp", "jvp", "check_grads", "config",
    "JitadError", "UnsupportedOperationError", "ConcretizationError", "InPlaceUpdateError",
    "NonScalarOutputError", "InputDtypeError", "LeafTypeError", "ShapeError", "NonDifferentiableError",
]
