"""jitad: automatic differentiation of plain NumPy functions, compiled with Numba."""
from jitad.api import grad, jit, jvp, value_and_grad, vjp
from jitad.backend import config
from jitad.backend.cache import cache_info
from jitad.tools.checks import check_grads
from jitad.pytrees import register_dataclass, register_pytree_node
from jitad.transforms.custom import checkpoint, custom_jvp, custom_vjp
from jitad.tools.explain import explain
from jitad.frontend.loops import LoopCarryError, fori_loop, scan, while_loop
from jitad.jacobians import hessian, hutchinson_trace, hvp, jacfwd, jacobian, jacrev
from jitad.errors import (AxisError, CompileError, ConcretizationError, InPlaceUpdateError, InputDtypeError, JitadError, LeafTypeError,
                     NonDifferentiableError, NonScalarOutputError, ShapeError, SpecializationError,
                     UnsupportedOperationError)

__version__ = "0.1.0"

__all__ = [
    "grad", "value_and_grad", "vjp", "jvp", "jit", "explain", "cache_info", "check_grads", "config", "custom_vjp", "custom_jvp", "checkpoint",
    "register_pytree_node", "register_dataclass",
    "jacfwd", "jacrev", "jacobian", "hessian", "hvp", "hutchinson_trace",
    "JitadError", "UnsupportedOperationError", "ConcretizationError", "InPlaceUpdateError",
    "NonScalarOutputError", "InputDtypeError", "LeafTypeError", "ShapeError", "AxisError", "NonDifferentiableError",
    "CompileError", "fori_loop", "scan", "while_loop", "LoopCarryError", "SpecializationError",
]
