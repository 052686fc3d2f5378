"""User classes as pytrees (issue 11, item 5): registered classes and dataclasses differentiate
like tuples, their gradients come back as instances of the class, and an unregistered object
gets a LeafTypeError that names the way out."""
import dataclasses

import numpy as np
import pytest

import jitad

# pytrees are flattened before any kernel sees them: the reference executor tests them without
# spending Numba compile time (tests/test_compiled.py covers the kernels)
pytestmark = pytest.mark.usefixtures("reference_backend")


class Kernel:
    """A kernel-function class holding coefficient arrays, as in a GP program."""

    def __init__(self, log_scale, weights, name="rbf"):
        self.log_scale, self.weights, self.name = log_scale, weights, name

    def __call__(self, x):
        return np.exp(self.log_scale) * np.sum(self.weights * np.sin(x))


jitad.register_pytree_node(Kernel, lambda k: ((k.log_scale, k.weights), k.name),
                           lambda name, kids: Kernel(*kids, name=name))


@jitad.register_dataclass
@dataclasses.dataclass
class Layer:
    w: np.ndarray
    b: np.ndarray


@dataclasses.dataclass
class Scaled:
    coef: np.ndarray
    power: int


jitad.register_dataclass(Scaled, meta_fields=["power"])


def _kernel_loss(k, x):
    return k(x) ** 2


def _kernel_loss_tuple(t, x):
    return (np.exp(t[0]) * np.sum(t[1] * np.sin(x))) ** 2


def test_registered_class_grad_is_instance_and_matches_tuple():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(5), rng.standard_normal(5)
    k = Kernel(0.3, w, name="mine")
    g = jitad.grad(_kernel_loss)(k, x)
    assert isinstance(g, Kernel) and g.name == "mine"
    ref = jitad.grad(_kernel_loss_tuple)((0.3, w), x)
    np.testing.assert_allclose(g.log_scale, ref[0], rtol=1e-12)
    np.testing.assert_allclose(g.weights, ref[1], rtol=1e-12)
    # analytic: d/dw (s * sum(w sin x))^2 = 2 s^2 sum(w sin x) sin x
    s = np.exp(0.3)
    np.testing.assert_allclose(g.weights, 2 * s * s * np.sum(w * np.sin(x)) * np.sin(x), rtol=1e-12)
    jitad.check_grads(_kernel_loss, (k, x), order=2)


def test_static_aux_data_is_in_the_cache_key():
    def f(k, x):
        return np.sum(k.weights * x) * (2.0 if k.name == "double" else 1.0)

    x = np.ones(3)
    a = jitad.grad(f)(Kernel(0.0, np.ones(3), "double"), x)
    b = jitad.grad(f)(Kernel(0.0, np.ones(3), "single"), x)
    np.testing.assert_allclose(a.weights, 2 * x)
    np.testing.assert_allclose(b.weights, x)


def test_dataclass_nested_in_containers_both_modes():
    rng = np.random.default_rng(1)
    params = {"layers": [Layer(rng.standard_normal((3, 2)), rng.standard_normal(2)) for _ in range(2)],
              "scale": Scaled(rng.standard_normal(2), power=3)}
    x = rng.standard_normal(3)

    def loss(p, x):
        h = x
        for layer in p["layers"][:1]:
            h = np.tanh(h @ layer.w + layer.b)
        h2 = np.tanh(x @ p["layers"][1].w + p["layers"][1].b)
        return np.sum((h + h2) * p["scale"].coef ** p["scale"].power)

    g = jitad.grad(loss)(params, x)
    assert isinstance(g["layers"][0], Layer) and isinstance(g["scale"], Scaled)
    assert g["scale"].power == 3
    assert g["layers"][1].w.shape == (3, 2)
    jitad.check_grads(loss, (params, x), order=1, modes=("fwd", "rev"))
    # jvp takes tangents of the same class
    tangent = {"layers": [Layer(np.ones((3, 2)), np.zeros(2)), Layer(np.zeros((3, 2)), np.zeros(2))],
               "scale": Scaled(np.zeros(2), power=3)}
    out, tout = jitad.jvp(loss, (params, x), (tangent, np.zeros(3)))
    np.testing.assert_allclose(tout, np.sum(g["layers"][0].w), rtol=1e-10)


def test_registered_class_as_output_and_in_custom_vjp():
    def f(x):
        return Layer(np.sin(x), np.cos(x))

    out, vjp_fn = jitad.vjp(f, np.arange(3.0))
    assert isinstance(out, Layer)
    (ct,) = vjp_fn(Layer(np.ones(3), np.ones(3)))
    np.testing.assert_allclose(ct, np.cos(np.arange(3.0)) - np.sin(np.arange(3.0)))


def test_unregistered_object_names_the_way_out():
    class Params:
        def __init__(self, w):
            self.w = w

    with pytest.raises(jitad.LeafTypeError, match="register_pytree_node"):
        jitad.grad(lambda p: np.sum(p.w))(Params(np.ones(2)))

    @dataclasses.dataclass
    class Unregistered:
        w: np.ndarray

    with pytest.raises(jitad.LeafTypeError, match="register_dataclass"):
        jitad.grad(lambda p: np.sum(p.w))(Unregistered(np.ones(2)))


def test_register_dataclass_rejects_bad_fields():
    with pytest.raises(TypeError, match="dataclass"):
        jitad.register_dataclass(Kernel)
    with pytest.raises(ValueError, match="split the init fields"):
        jitad.register_dataclass(Layer, meta_fields=["nope"])
