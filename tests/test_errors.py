"""Every error jitad raises on purpose: its class (exported from jitad) and a message that
names the cause and the way out, pointing at the user's line."""
import numpy as np
import pytest

import jitad

pytestmark = pytest.mark.usefixtures("reference_backend")
X = np.array([0.5, -1.0, 2.0])
THIS_FILE = __file__.rsplit("/", 1)[-1]


def _raises(error, fun, *args, match=()):
    with pytest.raises(error) as info:
        jitad.grad(fun)(*args)
    message = str(info.value)
    for text in match:
        assert text in message, f"{text!r} not in {message!r}"
    return message


def test_errors_are_exported_and_share_a_base():
    for name in ["UnsupportedOperationError", "ConcretizationError", "InPlaceUpdateError", "NonScalarOutputError",
                 "InputDtypeError", "LeafTypeError", "ShapeError", "NonDifferentiableError"]:
        assert issubclass(getattr(jitad, name), jitad.JitadError)
        assert name in jitad.__all__


# --- unsupported functions ---------------------------------------------------------------------
@pytest.mark.parametrize("call,name", [
    (lambda x: np.sum(np.histogramdd(x[:, None], 3)[0]), "histogramdd"),
    (lambda x: np.sum(np.fft.ifft(x).real), "ifft"),
    (lambda x: np.sum(np.fft.fft(x).real), "fft"),
    (lambda x: np.sum(np.spacing(x)), "spacing"),       # a ufunc
    (lambda x: np.sum(np.add.reduceat(x, [0, 2])), "add.reduceat"),  # a ufunc method
    (lambda x: np.sum(np.roots(x).real), "roots"),
])
def test_unsupported_numpy_function(call, name):
    message = _raises(jitad.UnsupportedOperationError, call, X, match=(name, "custom_vjp", THIS_FILE))
    assert "does not support" in message


# --- conversions on traced values ---------------------------------------------------------------
# (Python `if`/`while`/`and`/bool()/int() on traced values work: tests/test_guards.py)
@pytest.mark.parametrize("fun", [
    lambda x: float(x) * x,
    lambda x: x.item() * x,
    lambda x: float(np.sum(x)),
    lambda x: x * np.cos(float(x)),
], ids=["float", "item", "float_of_sum", "math"])
def test_float_of_a_differentiated_value(fun):
    _raises(jitad.ConcretizationError, fun, 0.5, match=("derivative", "np.where", THIS_FILE))


def test_math_module_on_traced_value():
    import math
    _raises(jitad.ConcretizationError, lambda x: math.sin(x), 0.5, match=("np.where",))


@pytest.mark.parametrize("fun", [lambda x: np.sum(x.tolist()), lambda x: np.float64(x[0]) * x[1],
                                 lambda x: [float(v) for v in x][0]], ids=["tolist", "np_float64", "float_loop"])
def test_concrete_value_of_traced_array(fun):
    _raises(jitad.ConcretizationError, fun, X, match=("traced", THIS_FILE))


def test_complex_constant():
    _raises(jitad.UnsupportedOperationError, lambda x: np.sum(x * np.array([1j])).real, X, match=("complex",))


def test_object_dtype():
    _raises(jitad.UnsupportedOperationError, lambda x: np.sum(np.asarray(x, dtype=object)), X, match=("object",))


# --- in-place writes ----------------------------------------------------------------------------
# Writes into traced arrays and into arrays made inside the function work (tests/test_inplace.py);
# these are the ones that stay errors: the caller's (or a captured) array, and traced positions.
_OUTSIDE = np.zeros(3)


def _outside_array_gets_tracer(x, a=_OUTSIDE):
    a[0] = x[0]
    return np.sum(a * x)


def _outside_slice_gets_tracer(x, a=_OUTSIDE):
    a[:2] = x[:2]
    return np.sum(a * x)


def _ufunc_out(x, out=_OUTSIDE):
    np.add(x, 1.0, out=out)
    return np.sum(out)


def _augmented_outside(x, a=_OUTSIDE):
    a += x
    return np.sum(a)


def _reduction_out(x, out=np.zeros(())):
    return np.sum(x, out=out)


@pytest.mark.parametrize("fun,cause,way_out", [
    (_outside_array_gets_tracer, "NumPy array", "np.array(a)"), (_outside_slice_gets_tracer, "NumPy array", "np.array(a)"),
    (_ufunc_out, "out=", "np.array(a)"), (_augmented_outside, "out=", "np.array(a)"), (_reduction_out, "out=", "np.array(a)"),
])
def test_in_place_writes(fun, cause, way_out):
    _raises(jitad.InPlaceUpdateError, fun, X, match=(cause, THIS_FILE, way_out))
    assert not _OUTSIDE.any()  # the caller's array is untouched


def test_augmented_assignment_to_a_traced_name_is_fine():
    def f(x):
        y = x
        y += 1.0
        y *= 2.0
        return np.sum(y)
    np.testing.assert_array_equal(jitad.grad(f)(X), 2.0)


# --- outputs and inputs -------------------------------------------------------------------------------
def test_grad_of_non_scalar_output():
    message = _raises(jitad.NonScalarOutputError, lambda x: x * 2.0, X, match=("scalar", "(3,)", "jacobian"))
    assert "sum" in message
    _raises(jitad.NonScalarOutputError, lambda x: (x[0], x[1]), X, match=("scalar",))
    with pytest.raises(jitad.NonScalarOutputError):
        jitad.value_and_grad(lambda x: (x, np.sum(x)), has_aux=True)(X)


@pytest.mark.parametrize("arg", [np.arange(3), 2, np.array(2), np.array([True, False]), True],
                         ids=["int_array", "python_int", "int_0d", "bool_array", "python_bool"])
def test_integer_inputs_to_differentiate(arg):
    _raises(jitad.InputDtypeError, lambda x: np.sum(x * 1.0), arg, match=("argument 0", "float"))


@pytest.mark.parametrize("arg", [np.ones(3, complex), 1 + 2j], ids=["complex_array", "python_complex"])
def test_complex_inputs_to_differentiate(arg):
    _raises(jitad.InputDtypeError, lambda x: np.sum(x), arg, match=("argument 0", "complex"))


def test_integer_argument_not_differentiated_is_fine():
    assert jitad.grad(lambda x, n: x * n, argnums=0)(2.0, 3) == 3.0
    with pytest.raises(jitad.InputDtypeError, match="argument 1"):
        jitad.grad(lambda x, n: x * n, argnums=(0, 1))(2.0, 3)


@pytest.mark.parametrize("leaf", ["text", object(), {1, 2}, b"bytes"], ids=["str", "object", "set", "bytes"])
def test_unsupported_leaf_type(leaf):
    message = _raises(jitad.LeafTypeError, lambda x: 1.0, leaf, match=("argument 0", type(leaf).__name__))
    assert "dict, list, tuple" in message
    with pytest.raises(jitad.LeafTypeError, match=type(leaf).__name__):
        jitad.grad(lambda x: np.sum(x[0]))([X, leaf])


def test_unsupported_output_leaf():
    with pytest.raises(jitad.LeafTypeError, match="str"):
        jitad.grad(lambda x: (np.sum(x), "aux"), has_aux=True)(X)


# --- value-dependent shapes ---------------------------------------------------------------------------------
def test_traced_boolean_mask_where_no_value_is_at_hand():
    # a mask is read from the call's values (tests/test_guards.py); a scan body is traced without them
    def f(x):
        return jitad.scan(lambda c, row: (c + np.sum(row[row > 0]), None), 0.0, np.stack([x, x]))[0]
    _raises(jitad.ConcretizationError, f, X, match=("boolean mask", "np.where", THIS_FILE))


def test_mismatched_shapes():
    _raises(jitad.ShapeError, lambda x: np.sum(x + np.ones(2)), X, match=("(3,)", "(2,)", "broadcast"))
    _raises(jitad.ShapeError, lambda x: np.sum(x @ np.ones((2, 2))), X, match=("matmul", "(3,)", "(2, 2)"))
    _raises(jitad.ShapeError, lambda x: np.sum(np.ones((2, 2)) @ x), X, match=("matmul", "(3,)", "(2, 2)"))
    _raises(jitad.ShapeError, lambda x: np.sum(np.reshape(x, (2, 2))), X, match=("reshape",))
    _raises(jitad.ShapeError, lambda x: np.sum(np.concatenate([x[:, None], np.ones((2, 2))], axis=0)), X,
            match=("concatenate",))


def test_diagonal_needs_two_axes():
    _raises(jitad.ShapeError, lambda x: np.trace(x), X, match=("two dimensions", "(3,)"))
    _raises(jitad.ShapeError, lambda x: np.sum(np.diagonal(x[None], 0, 1, -1)), X, match=("same",))


def test_vjp_cotangent_mismatch():
    _, vjp_fn = jitad.vjp(lambda x: x * 2.0, X)
    with pytest.raises(jitad.ShapeError, match=r"\(3,\)"):
        vjp_fn(np.ones(4))
    with pytest.raises(TypeError, match="structure"):
        vjp_fn((np.ones(3), np.ones(3)))


def test_leaked_tracer():
    leaked = []

    def f(x):
        leaked.append(x)
        return np.sum(x)

    jitad.grad(f)(X)
    with pytest.raises(jitad.JitadError, match="escaped"):
        jitad.grad(lambda y: np.sum(y * leaked[0]))(X)


def test_a_user_file_whose_path_holds_numpy_is_named_as_the_user_s_code(tmp_path, monkeypatch):
    """Frames were taken for NumPy's own when "numpy" appeared anywhere in their file name, so an
    error raised in a user's test_numpy.py or numpy_models/ named the caller's line instead (autograd's
    test_numpy.py run through jitad reported pytest's own frame). NumPy and SciPy are told by their
    package folders now."""
    folder = tmp_path / "numpy_models"
    folder.mkdir()
    (folder / "my_numpy_model.py").write_text(
        "import numpy as np\n"
        "def loss(x):\n"
        "    return np.sum(x) + np.int64(x[0])\n")
    monkeypatch.syspath_prepend(str(folder))
    import importlib
    model = importlib.import_module("my_numpy_model")
    with pytest.raises(jitad.ConcretizationError) as info:
        jitad.grad(model.loss)(np.ones(3))
    assert f"(in `loss`, at {folder / 'my_numpy_model.py'}:3)" in str(info.value)
