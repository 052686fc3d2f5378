"""grad, value_and_grad, vjp and jvp: argnums, has_aux, pytrees, composition (JAX's conventions)."""
import math
import os

import numpy as np
import pytest

import jitad

pytestmark = pytest.mark.usefixtures("reference_backend")


def f3(x, y, z):
    return np.sum(x * y) + np.sin(z)


X, Y = np.array([1.0, 2.0]), np.array([3.0, -1.0])


# --- argnums ----------------------------------------------------------------------------------------
def test_argnums_int_gives_one_gradient():
    np.testing.assert_array_equal(jitad.grad(f3)(X, Y, 0.5), Y)
    np.testing.assert_array_equal(jitad.grad(f3, argnums=1)(X, Y, 0.5), X)
    assert jitad.grad(f3, argnums=2)(X, Y, 0.5) == pytest.approx(math.cos(0.5))
    np.testing.assert_array_equal(jitad.grad(f3, argnums=-2)(X, Y, 0.5), X)


def test_argnums_tuple_gives_a_tuple():
    g = jitad.grad(f3, argnums=(0, 2))(X, Y, 0.5)
    assert isinstance(g, tuple) and len(g) == 2
    np.testing.assert_array_equal(g[0], Y)
    assert g[1] == pytest.approx(math.cos(0.5))
    single = jitad.grad(f3, argnums=(1,))(X, Y, 0.5)
    assert isinstance(single, tuple) and len(single) == 1
    np.testing.assert_array_equal(single[0], X)
    gy, gx = jitad.grad(f3, argnums=(1, 0))(X, Y, 0.5)   # in the order asked for
    np.testing.assert_array_equal(gy, X)
    np.testing.assert_array_equal(gx, Y)


def test_argnum_is_autograds_spelling_of_argnums():
    # autograd's examples call grad(f, argnum=1) (its GAN and negative-binomial examples)
    np.testing.assert_array_equal(jitad.grad(f3, argnum=1)(X, Y, 0.5), X)
    assert jitad.value_and_grad(f3, argnum=2)(X, Y, 0.5)[1] == pytest.approx(math.cos(0.5))
    np.testing.assert_array_equal(jitad.jacobian(f3, argnum=1)(X, Y, 0.5), X)
    np.testing.assert_array_equal(jitad.jacrev(f3, argnum=(0, 1))(X, Y, 0.5)[1], X)
    np.testing.assert_array_equal(jitad.jacfwd(f3, argnum=0)(X, Y, 0.5), Y)
    np.testing.assert_array_equal(jitad.hessian(f3, argnum=1)(X, Y, 0.5), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="not both"):
        jitad.grad(f3, 1, argnum=1)


def test_argnums_out_of_range():
    with pytest.raises(TypeError, match="argnums"):
        jitad.grad(f3, argnums=3)(X, Y, 0.5)


def test_non_differentiated_arguments_may_be_anything():
    def f(x, label, n, table):
        assert isinstance(label, str) and isinstance(n, int)
        return np.sum(x ** n) * table[label]

    np.testing.assert_array_equal(jitad.grad(f)(X, "a", 2, {"a": 3.0}), 6.0 * X)


def test_keyword_arguments_are_not_differentiated():
    def f(x, scale=1.0):
        return np.sum(x * x) * scale

    np.testing.assert_array_equal(jitad.grad(f)(X, scale=3.0), 6.0 * X)
    np.testing.assert_array_equal(jitad.grad(f)(X, scale=1.0), 2.0 * X)  # not a stale trace


# --- has_aux -----------------------------------------------------------------------------------------
def _with_aux(x):
    y = np.sin(x)
    return np.sum(y), {"y": y, "count": 3}


def test_grad_has_aux():
    g, aux = jitad.grad(_with_aux, has_aux=True)(X)
    np.testing.assert_allclose(g, np.cos(X))
    np.testing.assert_allclose(aux["y"], np.sin(X))
    assert isinstance(aux["y"], np.ndarray)  # concrete values, not tracers
    assert aux["count"] == 3


def test_value_and_grad_has_aux():
    (value, aux), g = jitad.value_and_grad(_with_aux, has_aux=True)(X)
    assert value == pytest.approx(np.sum(np.sin(X)))
    np.testing.assert_allclose(aux["y"], np.sin(X))
    np.testing.assert_allclose(g, np.cos(X))


def test_vjp_has_aux():
    out, vjp_fn, aux = jitad.vjp(lambda x: (x * 2.0, np.sum(x)), X, has_aux=True)
    np.testing.assert_array_equal(out, 2.0 * X)
    assert aux == pytest.approx(3.0)
    (g,) = vjp_fn(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(g, [2.0, 20.0])


def test_jvp_has_aux():
    out, tangent, aux = jitad.jvp(lambda x: (x * x, x + 1.0), (3.0,), (1.0,), has_aux=True)
    assert (out, tangent, aux) == (9.0, 6.0, 4.0)


def test_has_aux_requires_a_pair():
    with pytest.raises(TypeError, match="pair"):
        jitad.grad(lambda x: np.sum(x), has_aux=True)(X)


# --- pytrees ---------------------------------------------------------------------------------------
def test_gradient_has_the_structure_of_its_argument():
    params = {"w": [X, (Y, 2.0)], "b": None, "c": {"d": np.ones((2, 2))}}

    def loss(p):
        w0, (w1, s) = p["w"]
        return np.sum(w0 * w1) * s + np.sum(p["c"]["d"] ** 2)

    g = jitad.grad(loss)(params)
    assert set(g) == {"w", "b", "c"} and g["b"] is None
    assert isinstance(g["w"], list) and isinstance(g["w"][1], tuple)
    np.testing.assert_array_equal(g["w"][0], 2.0 * Y)
    np.testing.assert_array_equal(g["w"][1][0], 2.0 * X)
    assert g["w"][1][1] == pytest.approx(np.sum(X * Y)) and isinstance(g["w"][1][1], float)
    np.testing.assert_array_equal(g["c"]["d"], 2.0 * np.ones((2, 2)))


def test_none_argument_passes_through():
    g = jitad.grad(lambda x, nothing: np.sum(x), argnums=(0, 1))(X, None)
    np.testing.assert_array_equal(g[0], 1.0)
    assert g[1] is None


def test_pytree_outputs_and_cotangents():
    def f(x, y):
        return {"sum": x + y, "prod": (x * y, np.sum(x))}

    out, vjp_fn = jitad.vjp(f, X, Y)
    np.testing.assert_array_equal(out["prod"][0], X * Y)
    gx, gy = vjp_fn({"sum": np.ones(2), "prod": (np.zeros(2), 1.0)})
    np.testing.assert_array_equal(gx, [2.0, 2.0])
    np.testing.assert_array_equal(gy, [1.0, 1.0])
    out, tangent = jitad.jvp(f, (X, Y), (np.ones(2), np.zeros(2)))
    np.testing.assert_array_equal(tangent["sum"], 1.0)
    np.testing.assert_array_equal(tangent["prod"][0], Y)
    assert tangent["prod"][1] == 2.0


def test_vjp_returns_a_tuple_per_primal():
    out, vjp_fn = jitad.vjp(lambda x: x * 3.0, X)
    grads = vjp_fn(np.ones(2))
    assert isinstance(grads, tuple) and len(grads) == 1
    out, vjp_fn = jitad.vjp(lambda x, y, p: x * y + p["s"], X, Y, {"s": 1.0})
    gx, gy, gp = vjp_fn(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(gx, [3.0, -2.0])
    np.testing.assert_array_equal(gy, [1.0, 4.0])
    assert gp == {"s": pytest.approx(3.0)}
    # a scalar output takes a scalar cotangent
    out, vjp_fn = jitad.vjp(lambda x: np.sum(x * x), X)
    np.testing.assert_array_equal(vjp_fn(2.0)[0], 4.0 * X)


def test_vjp_float32_cotangent_given_as_python_float():
    x = np.ones(2, np.float32)
    out, vjp_fn = jitad.vjp(lambda v: np.sum(v * v), x)
    (g,) = vjp_fn(1.0)
    assert g.dtype == np.float32


def test_jvp():
    out, tangent = jitad.jvp(lambda x, y: x * y + np.sin(x), (2.0, 5.0), (1.0, 0.0))
    assert out == pytest.approx(10.0 + math.sin(2.0)) and tangent == pytest.approx(5.0 + math.cos(2.0))
    out, tangent = jitad.jvp(lambda x: x @ x, (X,), (Y,))
    assert tangent == pytest.approx(2.0 * X @ Y)
    with pytest.raises(jitad.ShapeError):
        jitad.jvp(np.sin, (X,), (np.ones(3),))
    with pytest.raises(TypeError, match="same number"):
        jitad.jvp(np.sin, (X,), ())


# --- composition ---------------------------------------------------------------------------------------
def test_grad_of_grad_and_mixed_nesting():
    f = lambda x: x ** 4 + np.sin(x)  # noqa: E731
    assert jitad.grad(jitad.grad(f))(0.7) == pytest.approx(12 * 0.7 ** 2 - math.sin(0.7))
    assert jitad.grad(jitad.grad(jitad.grad(f)))(0.7) == pytest.approx(24 * 0.7 - math.cos(0.7))
    # grad of a function that calls vjp and jvp inside
    g = jitad.grad(lambda x: jitad.vjp(f, x)[1](1.0)[0])(0.7)
    h = jitad.grad(lambda x: jitad.jvp(f, (x,), (1.0,))[1])(0.7)
    assert g == pytest.approx(12 * 0.7 ** 2 - math.sin(0.7)) and h == pytest.approx(g)


def test_hessian_vector_product_by_hand():
    """hvp as in the JAX docs: grad of a closure over the traced tangent direction."""
    def f(x):
        return np.sum(np.sin(x) * x ** 2)

    def hvp(x, v):
        return jitad.grad(lambda x: np.vdot(jitad.grad(f)(x), v))(x)

    x, v = np.array([0.3, -0.8, 1.1]), np.array([1.0, 2.0, -1.0])
    hessian_diag = 2 * np.sin(x) + 4 * x * np.cos(x) - x ** 2 * np.sin(x)
    np.testing.assert_allclose(hvp(x, v), hessian_diag * v, rtol=1e-12)
    # forward over reverse gives the same
    np.testing.assert_allclose(jitad.jvp(jitad.grad(f), (x,), (v,))[1], hessian_diag * v, rtol=1e-12)


def test_closure_over_outer_traced_value():
    def outer(a):
        inner = lambda x: np.sum(a * x ** 2)  # noqa: E731  (a is traced by the outer grad)
        return np.sum(jitad.grad(inner)(X))   # = sum(2 a X)

    assert jitad.grad(outer)(1.5) == pytest.approx(2 * np.sum(X))


def test_python_loops_unroll():
    def f(x, n):
        total = 0.0
        for k in range(n):
            total = total + x ** k / math.factorial(k)
        return total

    assert jitad.grad(f)(0.5, 12) == pytest.approx(math.exp(0.5), rel=1e-8)


def test_wraps_user_function():
    def my_loss(x):
        """doc"""
        return np.sum(x)

    assert jitad.grad(my_loss).__name__ == "my_loss" and jitad.grad(my_loss).__doc__ == "doc"


# --- one cache of transforms (jitad.staging) ----------------------------------------------------------
def test_transforms_of_one_function_share_their_stages():
    """value_and_grad(f) made twice, and grad(f), find the stage the first one built: no new trace."""
    def loss(x, y):
        return np.sum(np.sin(x) * y)

    first = jitad.value_and_grad(loss)
    first(X, Y)
    stage = first.jitad_transform.stage_for((X, Y))
    assert stage.transform == "value_and_grad" and stage.mode == "reverse" and stage.function == "loss"
    assert stage.graph is not None and stage.transformed is not None and stage.passes
    before = jitad.cache_info()["traces"]
    again, gradient = jitad.value_and_grad(loss), jitad.grad(loss)
    assert again.jitad_transform is first.jitad_transform is gradient.jitad_transform
    np.testing.assert_allclose(gradient(X, Y), np.cos(X) * Y)
    assert jitad.cache_info()["traces"] == before
    # other argnums or has_aux are other transforms; other callables keep theirs on the wrapper
    assert jitad.grad(loss, argnums=1).jitad_transform is not first.jitad_transform
    assert jitad.grad(np.sin).jitad_transform is not jitad.grad(np.sin).jitad_transform


def test_a_numpy_only_stage_does_not_serve_the_compiled_backend():
    """A stage built with compile="off" answers on the NumPy tier only while compile is "off"."""
    def loss(x):
        return np.sum(np.cos(x))

    vg = jitad.value_and_grad(loss)
    saved = jitad.config.compile
    jitad.config.compile = "off"
    try:
        vg(X)
        off = vg.jitad_transform.stage_for((X,))
    finally:
        jitad.config.compile = saved
    assert off is not None and vg.jitad_transform.stage_for((X,)) is not off
    vg(X)
    assert vg.jitad_transform.stage_for((X,)) not in (None, off)


def _cubic(x):
    return np.sum(np.sin(x) * x ** 2)


def test_transformed_functions_pickle_by_reference_with_their_options():
    import pickle
    x = np.linspace(0.1, 1.0, 4)
    made = [jitad.grad(_cubic), jitad.value_and_grad(_cubic, target="cpu"), jitad.jit(_cubic),
            jitad.jacobian(_cubic, mode="reverse"), jitad.jacfwd(_cubic), jitad.jacrev(_cubic),
            jitad.hessian(_cubic), jitad.grad(jitad.grad(lambda t: t ** 3))]
    for fn in made[:-1]:
        again = pickle.loads(pickle.dumps(fn))
        assert type(again) is type(fn) and again.__name__ == "_cubic"
        first, second = fn(x), again(x)
        for a, b in zip(first if isinstance(first, tuple) else [first],
                        second if isinstance(second, tuple) else [second]):
            np.testing.assert_array_equal(a, b)
    assert pickle.loads(pickle.dumps(made[1]))._options["target"] == "cpu"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(made[-1])  # a lambda pickles by reference no better than with pickle itself


def test_target_is_checked_and_keys_the_cache(monkeypatch):
    with pytest.raises(ValueError, match="target must be one of"):
        jitad.grad(_cubic, target="gpu")
    with pytest.raises(ValueError, match="target must be one of"):
        jitad.config.target = "tpu"
    assert jitad.config.target == "auto"
    x = np.linspace(0.1, 1.0, 4)
    vg = jitad.value_and_grad(_cubic)
    vg(x)
    keys = set(vg.jitad_transform.stages)
    with jitad.backend.using_target("cuda"):
        assert jitad.backend.current_target() == "cuda"
        assert vg.jitad_transform.stage_for((x,)) is None  # a stage serves the target it was built for
    assert jitad.backend.current_target() == "auto"
    assert "auto" in {k[-1] for k in keys}  # (test_transformed_functions_pickle... added a "cpu" stage)



def _cubic_pair(x, y):
    return np.sum(x * y + np.sin(x))


def test_fast_path_one_frame_to_the_kernel_and_the_settings_it_follows(monkeypatch):
    """Calls on Python floats (and one float array) go from the user to Numba's dispatcher through
    one Python frame of jitad's; keyword arguments, another shape, a call inside a trace, another
    backend or target take the full path (Transform.run)."""
    import sys
    from jitad.staging import Transform
    monkeypatch.setattr(jitad.config, "backend", "numba")  # the module's fixture set "reference"
    g, vg, jit = jitad.grad(_cubic_pair), jitad.value_and_grad(_cubic_pair), jitad.jit(_cubic_pair)
    x, y = np.linspace(0.1, 1.0, 5), np.linspace(-1.0, 1.0, 5)
    calls = {"grad": (lambda: g(2.0, 3.0), 3.0 + math.cos(2.0)),
             "value_and_grad": (lambda: vg(2.0, 3.0), (6.0 + math.sin(2.0), 3.0 + math.cos(2.0))),
             "jit": (lambda: jit(2.0, 3.0), 6.0 + math.sin(2.0)),
             "grad of arrays": (lambda: g(x, y), y + np.cos(x))}
    for call, _ in calls.values():
        call()  # traced and compiled: the fast path is installed
    runs, run = [], Transform.run
    monkeypatch.setattr(Transform, "run", lambda self, *a, **k: runs.append(1) or run(self, *a, **k))
    frames = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(os.path.dirname(jitad.__file__)):
            frames.append(frame.f_code.co_name)
    for name, (call, expected) in calls.items():
        sys.setprofile(profile)
        try:
            got = call()
        finally:
            sys.setprofile(None)
        # api._fast_call's closure, then the kernel (the key of two arrays takes one helper more)
        assert frames == ["call"] or name == "grad of arrays" and frames == ["call", "_shapes", "<listcomp>"], frames
        frames.clear()
        np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert not runs
    assert g(2.0, y=3.0) == pytest.approx(3.0 + math.cos(2.0)) and len(runs) == 1
    np.testing.assert_allclose(g(x[:3], y[:3]), y[:3] + np.cos(x[:3]))
    assert len(runs) == 2
    # inside a trace (the values may be the trace's, as a closure's): the full path, the outer's too
    assert jitad.grad(lambda t: t * g(2.0, 3.0))(1.0) == pytest.approx(3.0 + math.cos(2.0)) and len(runs) == 4
    jitad.config.backend = "reference"
    assert g(2.0, 3.0) == pytest.approx(3.0 + math.cos(2.0)) and len(runs) == 5
    jitad.config.backend = "numba"
    assert jitad.grad(_cubic_pair, target="parallel")(2.0, 3.0) == pytest.approx(3.0 + math.cos(2.0))
    assert len(runs) == 6
    g(2.0, 3.0)
    assert len(runs) == 6
    # the settings a fast path is keyed on hold the memory policy (transforms made without memory=
    # follow jitad.config.memory at each call)
    before = jitad.backend.STATE[0]
    jitad.config.memory = "recompute"
    try:
        assert jitad.backend.STATE[0] != before and "recompute" in jitad.backend.STATE[0]
    finally:
        jitad.config.memory = "store"
    assert jitad.backend.STATE[0] == before


def test_tracing_pauses_the_garbage_collector_and_restores_it():
    """The cyclic collector is off while a graph is built (its passes over a big trace's objects cost
    30-45 % of tracing a long loop) and as the caller left it afterwards, on or off."""
    import gc
    from jitad import staging
    seen = []
    f = jitad.grad(lambda x: (seen.append(gc.isenabled()), np.sum(np.sin(x) * x))[1])
    assert gc.isenabled()
    f(np.arange(3.0))
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        jitad.grad(lambda x: np.sum(np.cos(x) ** 2))(np.arange(4.0))
        assert not gc.isenabled()
    finally:
        gc.enable()
    with staging.gc_paused():  # nested (a trace inside a trace, or two threads): on after the last
        with staging.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


BATCH = np.ones(3)
SCALE = 2.0
SETTINGS = {"power": 2.0}


def _predict(w):
    return w * BATCH  # a global read by a function the loss calls


def test_rebound_globals_and_closure_variables_are_traced_again():
    """A training loop that rebinds the global its loss reads (`X = next_batch`) got the first
    batch's gradient forever: the trace had baked the old array in (JAX's jit does the same; autograd
    sees the new one). The data a function reads from its globals, closure cells, a dict or object
    they hold, and the functions it calls is recorded at the trace and compared at every call (fast
    paths too); a change traces again. Writes into a captured array need no new trace (the kernel
    reads the array)."""
    global BATCH, SCALE
    x = np.arange(3.0)
    box = {"offset": 1.0}

    class Model:
        pass
    model = Model()
    model.w = np.full(3, 0.5)

    def loss(x):
        return SCALE * np.sum(_predict(x) ** SETTINGS["power"]) + box["offset"] * np.sum(model.w * x)

    def expected(x):
        return 2 * SCALE * x * BATCH ** 2 + box["offset"] * model.w
    saved = BATCH, SCALE
    try:
        for transform in (jitad.grad(loss), jitad.jit(jitad.grad(loss))):
            BATCH, SCALE = np.ones(3), 2.0
            box["offset"], model.w = 1.0, np.full(3, 0.5)
            np.testing.assert_allclose(transform(x), expected(x))
            traces = jitad.cache_info()["traces"]
            transform(x)
            assert jitad.cache_info()["traces"] == traces  # nothing changed: no new trace
            BATCH[1] = 4.0  # written in place: the same array, no new trace needed
            np.testing.assert_allclose(transform(x), expected(x))
            for change in (lambda: globals().__setitem__("BATCH", np.full(3, 3.0)),
                           lambda: globals().__setitem__("SCALE", 5.0),
                           lambda: box.__setitem__("offset", -2.0),
                           lambda: setattr(model, "w", np.arange(3.0))):
                change()
                np.testing.assert_allclose(transform(x), expected(x))
                np.testing.assert_allclose(transform(x), expected(x))  # and through the fast path
    finally:
        BATCH, SCALE = saved


def test_a_function_changing_its_own_globals_is_not_traced_every_call():
    """What the function changes itself while traced (a call counter, a log list) is a side effect, not
    an input: checking it would trace again at every call (test_conventions' list of traces did)."""
    calls, log = {"n": 0}, []

    def loss(x):
        calls["n"] += 1
        log.append(1.0)
        return np.sum(x ** 2)
    g = jitad.grad(loss)
    traces = jitad.cache_info()["traces"]
    for _ in range(4):
        np.testing.assert_array_equal(g(np.ones(3)), 2.0)
    assert jitad.cache_info()["traces"] == traces + 1 and calls["n"] == 1 and len(log) == 1
