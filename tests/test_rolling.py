"""Plain Python loops rolled into scan nodes (jitad.frontend.rolling): the rolled program gives
the values and derivatives of the unrolled one, and its graph does not grow with the trip count."""
import numpy as np
import pytest

import jitad
from jitad.frontend import rolling

RNG = np.random.default_rng(7)
H, B, D = 6, 4, 3
W = RNG.normal(size=(H, H)) * 0.4
U = RNG.normal(size=(H, D)) * 0.4


def rnn(W, U, xs, h0):
    h = h0
    for t in range(xs.shape[0]):
        h = np.tanh(h @ W + xs[t] @ U.T)
    return np.sum(h ** 2)


def rnn_outputs(W, U, xs, h0):
    """Every step's state is used after the loop (a stacked per-step output)."""
    h, hs = h0, []
    for t in range(xs.shape[0]):
        h = np.tanh(h @ W + xs[t] @ U.T)
        hs.append(h)
    return np.sum(np.stack(hs) * np.arange(1.0, len(hs) + 1)[:, None, None]) + np.sum(hs[2])


def backwards(W, U, xs, h0):
    h = h0
    for t in reversed(range(xs.shape[0])):
        h = np.sin(h @ W) * 0.5 + xs[t] @ U.T
    return np.sum(h * h)


def lstm(W, U, xs, h0):
    h, c = h0, h0 * 0.5
    for t in range(xs.shape[0]):
        z = h @ W + xs[t] @ U.T
        i, f = 1 / (1 + np.exp(-z)), 1 / (1 + np.exp(z * 0.5))
        c = f * c + i * np.tanh(z)
        h = np.tanh(c) * i
    return np.sum(h) + np.sum(c ** 2)


def time_dependent(W, U, xs, h0):
    """Per-step constants (t * 0.1) differ between steps: a stacked per-step input."""
    h = h0
    for t in range(xs.shape[0]):
        h = np.tanh(h @ W * (1.0 + 0.1 * t) + xs[t] @ U.T)
    return np.sum(h)


def branchy(W, U, xs, h0):
    """A Python `if` on a traced value inside the loop: its guards move into the scan."""
    h = h0
    for t in range(xs.shape[0]):
        h = np.tanh(h @ W + xs[t] @ U.T)
        if np.sum(h) > 100.0:
            h = h * 0.5
    return np.sum(h ** 2)


def written(W, U, xs, h0):
    """Each step writes row t of an array (a varying write on the carry): left unrolled."""
    out = np.zeros((xs.shape[0], B))
    h = h0
    for t in range(xs.shape[0]):
        h = np.tanh(h @ W + xs[t] @ U.T)
        out[t] = np.sum(h, axis=1)
    return np.sum(out ** 2)


PROGRAMS = [rnn, rnn_outputs, backwards, lstm, time_dependent, branchy, written]


def _inputs(T):
    return W, U, RNG.normal(size=(T, B, D)), RNG.normal(size=(B, H)) * 0.1


def _unrolled(fun, argnums=(0, 1, 2)):
    saved = jitad.config.roll_loops
    jitad.config.roll_loops = False
    try:
        return jitad.value_and_grad(lambda *a: fun(*a), argnums=argnums)
    finally:
        jitad.config.roll_loops = saved


def _rolled_as_unrolled(fun, args, argnums):
    """value_and_grad of `fun` (rolled), checked against NumPy's value and the unrolled transform's."""
    vg = jitad.value_and_grad(fun, argnums=argnums)
    value, grads = vg(*args)
    ref_value, ref_grads = _unrolled(fun, argnums)(*args)
    assert value == pytest.approx(float(fun(*args)), rel=1e-12)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
    return vg


def _scans(vg):
    return sum(n.prim.name == "scan" for n in vg.jitad_transform.latest.graph.nodes)


@pytest.fixture(autouse=True)
def rolling_never_fails():
    """A roll that raises falls back to the unrolled program (right, but slow): never here."""
    before = rolling.counts["failed"]
    yield
    assert rolling.counts["failed"] == before


@pytest.fixture
def numpy_tier():
    """The reference executor: its stages hold the rolled graph from the first call (the numba
    backend's NumPy tier runs the unrolled trace first and rolls in the background)."""
    saved = jitad.config.backend
    jitad.config.backend = "reference"
    yield
    jitad.config.backend = saved


@pytest.mark.parametrize("fun", PROGRAMS, ids=lambda f: f.__name__)
def test_rolled_equals_unrolled(fun, numpy_tier):
    args = _inputs(12)
    vg = jitad.value_and_grad(fun, argnums=(0, 1, 2))
    value, grads = vg(*args)
    saved = rolling.settings["enabled"]
    rolling.settings["enabled"] = False
    try:
        ref_value, ref_grads = jitad.value_and_grad(lambda *a: fun(*a), argnums=(0, 1, 2))(*args)
    finally:
        rolling.settings["enabled"] = saved
    assert value == pytest.approx(float(fun(*args)), rel=1e-12)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
    rolled = _scans(vg)
    assert rolled == 1, rolled  # (written: the recurrence rolls; the writes of its steps stay outside)


def test_graph_size_does_not_grow_with_the_trip_count(numpy_tier):
    sizes = []
    for T in (10, 300):
        vg = jitad.value_and_grad(lambda *a: rnn(*a), argnums=(0, 1))
        vg(*_inputs(T))
        sizes.append(len(vg.jitad_transform.latest.graph.nodes))
    assert sizes[0] == sizes[1], sizes


def test_second_order_and_forward_mode_through_a_rolled_loop(numpy_tier):
    _, _, xs, h0 = _inputs(8)

    def loss(w):
        return rnn(w.reshape(H, H), U, xs, h0)
    w = W.ravel()[:H * H]
    hess = jitad.hessian(loss)(w)
    saved = rolling.settings["enabled"]
    rolling.settings["enabled"] = False
    try:
        ref = jitad.hessian(lambda v: loss(v))(w)
    finally:
        rolling.settings["enabled"] = saved
    np.testing.assert_allclose(hess, ref, rtol=1e-9, atol=1e-12)
    v = RNG.normal(size=w.shape)
    _, tangent = jitad.jvp(loss, (w,), (v,))
    assert tangent == pytest.approx(float(jitad.grad(loss)(w) @ v), rel=1e-10)


def test_short_loops_stay_unrolled(numpy_tier):
    vg = jitad.value_and_grad(lambda *a: rnn(*a), argnums=(0,))
    vg(*_inputs(2))
    assert _scans(vg) == 0


def test_compiled_rolled_loop():
    """Compiled: one kernel for the loop body, whatever the trip count; the same values."""
    args = _inputs(40)
    vg = jitad.value_and_grad(rnn, argnums=(0, 1, 2))
    value, grads = vg(*args)
    value2, grads2 = vg(*args)
    ref_value, ref_grads = _unrolled(rnn)(*args)
    assert _scans(vg) == 1
    assert value == pytest.approx(ref_value, rel=1e-12) and value2 == value
    for g, g2, ref in zip(grads, grads2, ref_grads):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(g, g2)


def nested(W, U, xs, h0):
    """A loop inside a loop: the outer steps roll, and the inner steps inside the outer body."""
    h = h0
    for t in range(xs.shape[0]):
        for _ in range(12):
            h = np.sin(h @ W) * 0.5 + h * 0.3
        h = np.tanh(h + xs[t] @ U.T)
    return np.sum(h ** 2)


def test_nested_loops_roll_inside_the_body(numpy_tier):
    args = _inputs(9)
    vg = jitad.value_and_grad(nested, argnums=(0, 1, 2))
    value, grads = vg(*args)
    ref_value, ref_grads = _unrolled(nested)(*args)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
    # (the first outer step, which computes U.T once for all, stays unrolled with its inner loop rolled)
    scans = [n for n in vg.jitad_transform.latest.graph.nodes if n.prim.name == "scan"]
    assert any(any(n.prim.name == "scan" for n in s.params["body"].graph.nodes) for s in scans)


def stacked_layers(W, U, xs, h0):
    """Two recurrent layers, the second reading the first's outputs step by step (a language
    model's stacked LSTM/RNN), the inputs listed before the loop: both layers roll, and the
    second takes the first's stacked outputs whole."""
    inputs = [xs[t] @ U.T for t in range(xs.shape[0])]
    for layer in range(2):
        h, outputs = h0, []
        for x in inputs:
            h = np.tanh(h @ W * (1.0 + 0.5 * layer) + x)
            outputs.append(h)
        inputs = outputs
    return np.sum(inputs[-1] ** 2) + np.sum(inputs[0])


def test_stacked_layers_roll_without_growing(numpy_tier):
    sizes = []
    for T in (16, 40):  # (long enough for the 3-node loop that lists the inputs to roll too)
        args = _inputs(T)
        vg = jitad.value_and_grad(stacked_layers, argnums=(0, 1, 2))
        value, grads = vg(*args)
        ref_value, ref_grads = _unrolled(stacked_layers)(*args)
        assert value == pytest.approx(ref_value, rel=1e-12)
        for g, ref in zip(grads, ref_grads):
            np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
        assert _scans(vg) == 3
        sizes.append(len(vg.jitad_transform.latest.graph.nodes))
    assert sizes[0] == sizes[1], sizes


def filled(W, U, xs, h0):
    """`out[t] = ...` in a loop: the array is written, never read, at fresh rows each step; the
    loop outputs the rows and one scatter after it writes them (no array carried through)."""
    out = np.zeros((xs.shape[0], B, H))
    first = np.zeros(H + 1)
    h = h0
    for t in range(xs.shape[0]):
        h = np.tanh(h @ W + xs[t] @ U.T)
        out[t] = h * 2.0
        first[t % 3] = h[0, 0]  # the same three places again and again: the last write wins
    return np.sum(out ** 2) + np.sum(np.sin(out[1:-1:2])) + np.sum(first * np.arange(H + 1.0))


def test_write_only_arrays_are_not_carried(numpy_tier):
    args = _inputs(12)
    vg = jitad.value_and_grad(filled, argnums=(0, 1, 2))
    value, grads = vg(*args)
    ref_value, ref_grads = _unrolled(filled)(*args)
    assert value == pytest.approx(float(filled(*args)), rel=1e-12)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
    (scan,) = [n for n in vg.jitad_transform.latest.graph.nodes if n.prim.name == "scan"]
    body = scan.params["body"]
    # carried: h and `first` (its places repeat), not `out`: it is written after the loop
    shapes = [s for s, _ in body.carry_avals]
    assert (B, H) in shapes and (H + 1,) in shapes and (12, B, H) not in shapes, shapes


def element_filled(x, y):
    """`out[i] = v` of one element per step (inplace writes where(mask, broadcast_to(v), old)), the
    fill loop users write; also one element of a 2-D array and a write whose place repeats."""
    out = np.zeros(x.shape[0])
    grid = np.zeros((x.shape[0], 2))
    last = np.zeros(3)
    for i in range(x.shape[0]):
        out[i] = np.sin(x[i]) * x[i - 1]
        grid[i, 1] = np.cos(x[i]) * y
        last[i % 3] = x[i] ** 2
    return np.sum(out ** 2) + np.sum(grid * x[:, None]) + np.sum(last * np.arange(3.0))


def test_element_writes_are_not_carried(numpy_tier):
    x, y = RNG.normal(size=40), 0.7
    vg = _rolled_as_unrolled(element_filled, (x, y), (0, 1))
    jitad.check_grads(element_filled, (x, y), modes=("rev",))
    (scan,) = [n for n in vg.jitad_transform.latest.graph.nodes if n.prim.name == "scan"]
    # the written arrays are written after the loop from its per-step outputs: only `last` (its
    # places repeat) is carried, so a step costs O(1), not O(n)
    shapes = [s for s, _ in scan.params["body"].carry_avals]
    assert (40,) not in shapes and (80,) not in shapes and (40, 2) not in shapes, shapes


def euler(k, y0, ys):
    """A time integration written into a preallocated array: each step reads the place the step
    before wrote (y[i - 1], a slice whose place moves with the step, of the carried array)."""
    n = ys.shape[0]
    y = np.zeros((n, 2))
    y[0] = y0
    for i in range(1, n):
        y[i, 0] = y[i - 1, 0] + 0.05 * y[i - 1, 1]
        y[i, 1] = y[i - 1, 1] - 0.05 * k * np.sin(y[i - 1, 0]) + 0.01 * ys[i]
    return np.sum(y[:, 0] ** 2) + np.sum(y[-3:] * y[1:4])


def test_moving_reads_of_a_written_array_roll(numpy_tier):
    sizes = []
    for n in (30, 60):
        vg = _rolled_as_unrolled(euler, (0.8, np.array([0.3, -0.2]), RNG.normal(size=n)), (0, 1, 2))
        assert _scans(vg) == 1
        sizes.append(len(vg.jitad_transform.latest.graph.nodes))
    assert sizes[0] == sizes[1], sizes
    jitad.check_grads(euler, (0.8, np.array([0.3, -0.2]), RNG.normal(size=12)), order=2)


A_DAMPED = np.array([[0.0, 1.0], [-1.0, -0.1]])


def scalar_euler(k, y0, ys):
    y = np.zeros(ys.shape[0])
    y[0] = y0
    for i in range(1, ys.shape[0]):
        y[i] = y[i - 1] - 0.01 * k * np.sin(y[i - 1]) + 0.01 * ys[i]
    return np.sum(y ** 2)


def vector_euler(k, y0, ys):
    y = np.zeros((ys.shape[0], 2))
    y[0] = y0
    for i in range(1, ys.shape[0]):
        y[i] = y[i - 1] + 0.05 * k * (A_DAMPED @ y[i - 1]) + 0.01 * np.tanh(y[i - 1]) * ys[i]
    return np.sum(y ** 2) + np.sum(y[-2] * y[3])


def two_steps_back(k, y0, ys):
    """Reads y[i - 2] too (a Verlet-like recurrence): the loop carries the last two states."""
    y = np.zeros(ys.shape[0])
    y[0], y[1] = y0, 0.5 * y0
    for i in range(2, ys.shape[0]):
        y[i] = y[i - 1] - 0.1 * k * y[i - 2] + 0.01 * ys[i]
    return np.sum(y ** 2)


def rows_two_back(k, y0, ys):
    """Row states, two steps back: the trace's pieces read y[i - 1] and y[i - 2] after each write."""
    y = np.zeros((ys.shape[0], 2))
    y[0] = y0
    for i in range(1, ys.shape[0]):
        y[i] = 1.2 * y[i - 1] - 0.5 * k * y[max(i - 2, 0)] + 0.1 * np.tanh(ys[i])
    return np.sum(y ** 2)


def far_back(k, y0, ys):
    """Reads y[i - 1] and y[i - 12]: more than rolling.MAX_BACK = 8 states back, so the array stays carried."""
    y = np.zeros(ys.shape[0])
    y[:12] = y0 * np.arange(1.0, 13.0)
    for i in range(12, ys.shape[0]):
        y[i] = 0.9 * y[i - 1] + 0.05 * k * np.cos(y[i - 12]) + 0.01 * ys[i]
    return np.sum(y ** 2)


@pytest.mark.parametrize("fun, y0", [(scalar_euler, 0.7), (vector_euler, np.array([0.3, -0.2])),
                                     (two_steps_back, 0.7), (rows_two_back, np.array([0.3, -0.2])),
                                     (far_back, 0.3)])
def test_time_integrations_carry_the_state_not_the_array(numpy_tier, fun, y0):
    """y[i] = g(y[i - 1]) into a preallocated array: the loop carries what the step before wrote
    (O(1) a step) and writes the array once after the loop, instead of carrying it (O(n) a step,
    and a mask per step in reverse mode)."""
    sizes = []
    for n in (30, 60):
        vg = _rolled_as_unrolled(fun, (0.8, y0, RNG.normal(size=n)), (0, 1, 2))
        (scan,) = [m for m in vg.jitad_transform.latest.graph.nodes if m.prim.name == "scan"]
        carried = [s for s, _ in scan.params["body"].carry_avals]
        assert any(int(np.prod(s)) >= n for s in carried) == (fun is far_back), carried  # the array?
        sizes.append(len(vg.jitad_transform.latest.graph.nodes))
    assert sizes[0] == sizes[1], sizes
    jitad.check_grads(fun, (0.8, y0, RNG.normal(size=16)), order=2)


def test_numpy_tier_runs_the_unrolled_trace_first():
    """compile="background": the first call answers from the unrolled trace; the compiled form
    is built from the rolled one, and later calls give the same values."""
    saved = jitad.config.compile
    jitad.config.compile = "background"
    try:
        args = _inputs(30)
        vg = jitad.value_and_grad(lambda *a: rnn(*a), argnums=(0, 1))
        first = vg(*args)
        stage = vg.jitad_transform.latest
        stage.executor.wait()
        assert _scans(vg) == 1  # the stage's graph is the rolled one now
        for _ in range(3):
            again = vg(*args)
            assert again[0] == pytest.approx(first[0], rel=1e-12)
            for g, ref in zip(again[1], first[1]):
                np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-12)
    finally:
        jitad.config.compile = saved


@pytest.mark.xfail(strict=True, reason="open (fuzz16): a loop writing into np.zeros, traced twice in one "
                   "function, does not roll (rolling._Rebuild._scan: KeyError on a position _writes removed)")
def test_a_loop_function_called_twice_rolls(numpy_tier):
    """Found by the fuzzer with --roll-everything (compiled.vag, seed 848484000018; G_aux calls the
    program's f twice). One call of f rolls; two calls in one trace (g(x) + g(2x)) make the region's
    body read a position that the write collapse (_writes) removed: the roll raises, and the whole
    program runs unrolled (right values, a graph that grows with the trip count)."""
    n = 40

    def f(x):
        v = np.zeros((n,))
        for i in range(n):
            v[i] = x[i] * 0.5 + (v[i - 1] * 0.7 if i else 0.0)
        return v

    def g(x):
        return np.sum(f(x) * np.cos(np.arange(n) * 1.7 + 0.3))

    def two(x):
        return g(x) + g(x * 2.0)
    x = np.linspace(0.1, 1.0, n)
    before = rolling.counts["failed"]
    try:
        value, grad = jitad.value_and_grad(two)(x)
        assert value == pytest.approx(two(x), rel=1e-12)
        failed = rolling.counts["failed"] - before
    finally:
        rolling.counts["failed"] = before   # this test checks the failure itself (not the fixture)
    assert failed == 0, "the roll raised: the program ran unrolled"
