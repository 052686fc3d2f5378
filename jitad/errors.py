"""Exception classes. Each names the cause and the way out, and points at the user's line."""
import os
import sys

import numpy as np

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep


def _library_dirs():
    """NumPy's and (once imported) SciPy's package folders: their frames are not the user's code."""
    dirs = [_PKG_DIR + os.sep, _NUMPY_DIR]
    scipy = sys.modules.get("scipy")
    if getattr(scipy, "__file__", None):
        dirs.append(os.path.dirname(os.path.abspath(scipy.__file__)) + os.sep)
    return tuple(dirs)


def _innermost_user_frame(frame=None):
    """The innermost stack frame outside jitad (and outside NumPy/SciPy, which the user called),
    from `frame` outwards (default: the caller's). Libraries are told by their package folders: a
    user's file whose name holds "numpy" (test_numpy.py, numpy_models/) is the user's."""
    frame = frame or sys._getframe(1)
    libraries = _library_dirs()
    while frame is not None:
        filename = frame.f_code.co_filename
        library = filename.startswith("<__array_function__") or os.path.abspath(filename).startswith(libraries)
        if not library:
            return frame
        frame = frame.f_back
    return None


def user_frame():
    """Return 'file:line' of the innermost stack frame outside jitad, or ''."""
    frame = _innermost_user_frame()
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""


def _where(start=None):
    """' (in `fun`, at file:line)': the user's function and line an error comes from (looked for from
    the frame `start` outwards: an error's own traceback, caught after the stack unwound)."""
    frame = _innermost_user_frame(start)
    if frame is None:
        return ""
    location = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    name = frame.f_code.co_name
    return f" (at {location})" if name.startswith("<") else f" (in `{name}`, at {location})"


class JitadError(Exception):
    """Base class of every error jitad raises on purpose."""


class UnsupportedOperationError(JitadError, TypeError):
    """A NumPy function or ufunc that jitad has no derivative rule for."""

    def __init__(self, name, detail="", frame=None):
        super().__init__(
            f"jitad does not support `{name}` on traced values{_where(frame)}. {detail}"
            "Wrap the code that calls it in a function decorated with @jitad.custom_vjp "
            "(or @jitad.custom_jvp) and give its derivative rule; the rule runs on real "
            "arrays and may call any NumPy or SciPy function.")
        self.name = name


class ConcretizationError(JitadError, TypeError):
    """Python control flow or a conversion that needs the concrete value of a traced array
    where jitad cannot take it (see `jitad.frontend.guards`)."""

    def __init__(self, what, reason=None):
        reason = reason or (
            "its value is not known here: jitad takes the values of the arguments of a call for "
            "Python `if`/`while`, but not inside a derivative rule, a value drawn at random, or "
            "a trace made without the call's arguments")
        super().__init__(
            f"{what}{_where()}: {reason}. Use np.where(cond, a, b) (or np.maximum/np.minimum/np.clip) "
            "instead of a Python `if` on a traced value, jitad.while_loop/jitad.fori_loop instead "
            "of a Python `while`; build arrays with np.array([...]), np.stack or np.concatenate "
            "instead of assigning into a NumPy array; for a value you need outside, return it "
            "from the function (or use has_aux=True).")


class SpecializationError(JitadError):
    """A function whose Python `if`/`while` on traced values took more different paths (for
    one input signature) than `jitad.config.specializations` allows."""

    def __init__(self, transform, function, variants, guards):
        lines = sorted({g.where for g in guards})
        super().__init__(
            f"{transform} of `{function}` has been traced for {len(variants)} different paths through "
            f"its Python control flow on traced values (or different boolean masks, np.nonzero or "
            f"np.unique results), and this call takes yet another one. The conditions are at "
            f"{', '.join(lines[:5])}{' ...' if len(lines) > 5 else ''}. Each path is traced and compiled "
            "for itself; a condition whose outcome (or a loop whose trip count) changes from call to "
            "call should be written without Python control flow: np.where(cond, a, b) for a branch, "
            "jitad.while_loop / jitad.fori_loop for a loop; a mask that changes, as "
            "np.sum(np.where(mask, x, 0)) instead of np.sum(x[mask]), or computed with NumPy outside "
            "the function and passed in as indices. Or raise jitad.config.specializations.")
        self.lines = lines


class InPlaceUpdateError(JitadError, TypeError):
    """An in-place write into a traced array (or of a traced value into a NumPy array)."""

    def __init__(self, what="item assignment on a traced array", way_out=None):
        super().__init__(
            f"in-place {what} is not supported{_where()}. " + (way_out or
            "jitad's graph is functional. Build the new array instead, e.g. np.where(mask, new, x), "
            "np.concatenate([x[:i], new, x[i+1:]]) or np.stack([...])."))


class NonScalarOutputError(JitadError, TypeError):
    """`grad` of a function whose output is not a scalar."""

    def __init__(self, shape):
        super().__init__(
            f"grad requires a scalar output, but the function returned shape {tuple(shape)}"
            f"{_where()}. Reduce it to a scalar (e.g. with .sum() or np.mean), or use "
            "jitad.jacobian / jacrev / jacfwd for the full Jacobian, or jitad.vjp for a "
            "vector-Jacobian product.")


class InputDtypeError(JitadError, TypeError):
    """Differentiating with respect to an integer, boolean or complex input."""

    def __init__(self, position, dtype):
        if position == "(output)":  # grad of a function returning an integer or boolean value
            super().__init__(
                f"grad requires a float output, but the function returned dtype {dtype}{_where()} (an integer "
                "or boolean result: a constant such as `return 1`, a count, a comparison). Return a float "
                "(`1.0`, `x.astype(float)`); its derivative with respect to the arguments is then zero "
                "where it does not depend on them.")
            return
        if np.dtype(dtype).kind == "c":
            super().__init__(
                f"cannot differentiate with respect to argument {position} of dtype {dtype}: jitad "
                "differentiates float32 and float64 inputs only (no complex numbers). Pass the real and "
                "imaginary parts as two float arrays (x.real, x.imag) and compute with them.")
            return
        super().__init__(
            f"cannot differentiate with respect to argument {position} of dtype {dtype}: "
            "jitad differentiates float32 and float64 inputs only. Convert it with "
            "x.astype(float) (or pass a float literal like 2.0 instead of 2), or leave the "
            "argument out of argnums.")


class LeafTypeError(JitadError, TypeError):
    """A pytree leaf that is neither an array nor a number."""

    def __init__(self, position, leaf):
        if np.iscomplexobj(leaf) and isinstance(leaf, (complex, np.ndarray, np.generic)):
            super().__init__(
                f"argument {position} holds complex values (dtype {np.asarray(leaf).dtype}): jitad traces float, "
                "integer and boolean values only. Pass the real and imaginary parts as two float arrays "
                "(x.real, x.imag) and compute with them.")
            return
        super().__init__(
            f"argument {position} contains a leaf of type {type(leaf).__name__}, which jitad "
            "cannot differentiate. Leaves must be NumPy arrays or Python/NumPy scalars; "
            "containers may be dict, list, tuple or None. For your own class, register it as a "
            "container with jitad.register_pytree_node(cls, flatten, unflatten) (a dataclass: "
            "decorate it with @jitad.register_dataclass).")


class ShapeError(JitadError, ValueError):
    """Shapes that do not fit together, or a shape that only a run-time value decides."""

    def __init__(self, message):
        super().__init__(f"{message}{_where()}")


class AxisError(ShapeError, np.exceptions.AxisError):
    """An `axis=` outside an array's dimensions; also NumPy's AxisError (an IndexError and a ValueError)."""

    def __init__(self, axis, ndim):
        self.axis, self.ndim = axis, ndim
        Exception.__init__(self, f"axis {axis} is out of bounds for array of dimension {ndim}{_where()}")

    def __str__(self):
        return str(self.args[0])


class NonDifferentiableError(JitadError):
    """A derivative jitad cannot compute; raised instead of returning a wrong value."""

    def __init__(self, message):
        super().__init__(f"{message}{_where()}")


class CompileError(JitadError, RuntimeError):
    """Numba could not compile a kernel jitad generated for a valid program (a limit of jitad's
    code generation, not of the user's code); the NumPy executor can still run it."""
