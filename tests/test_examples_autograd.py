"""autograd's published examples (examples/ of autograd 1.9.1), their models written small and run
through jitad with plain NumPy/SciPy, as a user switching the imports would: each gradient is
compared with autograd's at the same inputs when autograd is installed (an optional peer), else
with central finite differences (jitad.check_grads). What jitad cannot run by design raises its
named error. The full programs, shrunk, were run the same way (first-call times and agreement in
the commit message that added this file). Reference backend: no Numba compiles here."""
import types

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
import scipy.stats

import jitad

pytestmark = pytest.mark.usefixtures("reference_backend")

JITAD = types.SimpleNamespace(
    np=np, grad=jitad.grad, value_and_grad=jitad.value_and_grad, logsumexp=scipy.special.logsumexp,
    gammaln=scipy.special.gammaln, norm=scipy.stats.norm, t=scipy.stats.t, mvn=scipy.stats.multivariate_normal,
    odeint=scipy.integrate.odeint, tuple=tuple)


def _autograd():
    try:
        import autograd
        import autograd.builtins
        import autograd.numpy
        import autograd.scipy.integrate
        import autograd.scipy.special
        import autograd.scipy.stats
    except ImportError:
        return None
    return types.SimpleNamespace(
        np=autograd.numpy, grad=autograd.grad, value_and_grad=autograd.value_and_grad,
        logsumexp=autograd.scipy.special.logsumexp, gammaln=autograd.scipy.special.gammaln,
        norm=autograd.scipy.stats.norm, t=autograd.scipy.stats.t, mvn=autograd.scipy.stats.multivariate_normal,
        odeint=autograd.scipy.integrate.odeint, tuple=autograd.builtins.tuple)


AUTOGRAD = _autograd()


def _leaves(tree):
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in _leaves(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [np.asarray(tree, dtype=float)]


def _assert_same(ours, theirs, rtol=1e-8):
    ours, theirs = _leaves(ours), _leaves(theirs)
    assert len(ours) == len(theirs)
    scale = max(float(np.max(np.abs(leaf), initial=0.0)) for leaf in theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-13 * scale)


def _agree(model, transform="grad", rtol=1e-8):
    """`model(L)` builds the example with library namespace L and returns (fun, args); jitad's
    gradient in argument 0 must equal autograd's (or finite differences without autograd)."""
    fun, args = model(JITAD)
    ours = getattr(JITAD, transform)(fun)(*args)
    value = fun(*args)
    if transform == "value_and_grad":
        assert ours[0] == pytest.approx(value, rel=1e-12)
    if AUTOGRAD is None:
        jitad.check_grads(lambda first: fun(first, *args[1:]), args[:1], modes=("rev",))
        return ours
    ag_fun, ag_args = model(AUTOGRAD)
    _assert_same(ours, getattr(AUTOGRAD, transform)(ag_fun)(*ag_args), rtol)
    return ours


def _mlp_params(sizes, scale=0.3, seed=0):
    rs = np.random.RandomState(seed)
    return [(scale * rs.randn(m, n), scale * rs.randn(n)) for m, n in zip(sizes[:-1], sizes[1:])]


def test_neural_net_classifier():
    # neural_net.py: tanh layers, log-softmax by logsumexp(keepdims), L2 prior of the flattened params,
    # the batch chosen by the iteration number
    rs = np.random.RandomState(1)
    X, labels = rs.rand(12, 8), rs.randint(0, 3, 12)
    Y = np.array(labels[:, None] == np.arange(3)[None, :], dtype=int)

    def model(L):
        np_ = L.np

        def predict(params, inputs):
            for W, b in params:
                outputs = np_.dot(inputs, W) + b
                inputs = np_.tanh(outputs)
            return outputs - L.logsumexp(outputs, axis=1, keepdims=True)

        def objective(params, it):
            flat = np_.concatenate([np_.ravel(leaf) for layer in params for leaf in layer])
            batch = slice(6 * (it % 2), 6 * (it % 2) + 6)
            return -(-1.0 * np_.dot(flat, flat) + np_.sum(predict(params, X[batch]) * Y[batch]))
        return objective, (_mlp_params([8, 5, 3]), 1)
    _agree(model)


def test_neural_net_regression_and_bayesian_neural_net():
    # neural_net_regression.py: norm.logpdf likelihood and prior; bayesian_neural_net.py: weights of
    # many samples at once through einsum("mnd,mdo->mno")
    inputs = np.linspace(-1, 1, 10)[:, None]
    targets = np.cos(3 * inputs) / 2

    def regression(L):
        def objective(params, t):
            outputs = inputs
            for W, b in params:
                pre = L.np.dot(outputs, W) + b
                outputs = L.np.tanh(pre)
            flat = L.np.concatenate([L.np.ravel(leaf) for layer in params for leaf in layer])
            return -L.np.sum(L.norm.logpdf(pre, targets, 0.1)) - L.np.sum(L.norm.logpdf(flat, 0, 10.0))
        return objective, (_mlp_params([1, 4, 4, 1]), 0)
    _agree(regression)

    shapes = [(1, 5), (5, 1)]
    num_weights = sum((m + 1) * n for m, n in shapes)

    def bayesian(L):
        np_ = L.np

        def logprob(weights):
            log_prior = -0.1 * np_.sum(weights ** 2, axis=1)
            x = np_.expand_dims(inputs, 0)
            for m, n in shapes:
                W = weights[:, : m * n].reshape((len(weights), m, n))
                b = weights[:, m * n: m * n + n].reshape((len(weights), 1, n))
                weights = weights[:, (m + 1) * n:]
                outputs = np_.einsum("mnd,mdo->mno", x, W) + b
                x = np_.exp(-outputs ** 2)
            return log_prior - np_.sum((outputs - targets) ** 2, axis=1)[:, 0] / 0.01

        def objective(params, t):  # black_box_svi.py's estimate of the lower bound, reparameterised
            rs = np.random.RandomState(0)
            mean, log_std = params[:num_weights], params[num_weights:]
            samples = rs.randn(4, num_weights) * np_.exp(log_std) + mean
            entropy = 0.5 * num_weights * (1.0 + np_.log(2 * np.pi)) + np_.sum(log_std)
            return -(entropy + np_.mean(logprob(samples)))
        rs = np.random.RandomState(2)
        return objective, (np.concatenate([rs.randn(num_weights), -2 * np.ones(num_weights)]), 3)
    _agree(bayesian)


def test_gaussian_process_marginal_likelihood():
    # gaussian_process.py (and gplvm.py, deep_gaussian_process.py, bayesian_optimization.py): an RBF
    # covariance by broadcasting, multivariate_normal.logpdf of a traced covariance, minimize's
    # value_and_grad
    rs = np.random.RandomState(0)
    X = rs.randn(9, 2)
    y = np.cos(X[:, 0]) + 0.1 * rs.randn(9)
    start = 0.1 * rs.randn(5)

    def model(L):
        np_ = L.np

        def rbf(params, x, xp):
            lengthscales = np_.exp(params[1:])
            diffs = np_.expand_dims(x / lengthscales, 1) - np_.expand_dims(xp / lengthscales, 0)
            return np_.exp(params[0]) * np_.exp(-0.5 * np_.sum(diffs ** 2, axis=2))

        def objective(params):
            mean, noise = params[0], np_.exp(params[1]) + 0.0001
            cov = rbf(params[2:], X, X) + noise * np_.eye(len(y))
            return -L.mvn.logpdf(y, mean * np_.ones(len(y)), cov)
        return objective, (start,)
    _agree(model, "value_and_grad")
    # and the optimiser's steps are autograd's: scipy.optimize.minimize driven by jitad
    fun, (x0,) = model(JITAD)
    ours = scipy.optimize.minimize(jitad.value_and_grad(fun), x0, jac=True, method="CG", options={"maxiter": 5})
    if AUTOGRAD is not None:
        ag_fun, _ = model(AUTOGRAD)
        theirs = scipy.optimize.minimize(AUTOGRAD.value_and_grad(ag_fun), x0, jac=True, method="CG",
                                         options={"maxiter": 5})
        np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-7)


def test_gaussian_mixture_with_hessian_vector_products():
    # gmm.py: logsumexp over components of multivariate_normal.logpdf with covariances cov_sqrt @ cov_sqrt.T,
    # minimised by Newton-CG with hessian_vector_product (jitad.hvp)
    rs = np.random.RandomState(0)
    data = rs.randn(15, 2)
    k, d = 3, 2
    size = k + k * d + k * d * d
    start = np.concatenate([np.zeros(k), rs.randn(k * d), (np.eye(d) + 0.1 * rs.randn(k, d, d)).ravel()])

    def model(L):
        np_ = L.np

        def objective(flat):
            log_prop = flat[:k] - L.logsumexp(flat[:k])
            means = flat[k:k + k * d].reshape(k, d)
            sqrts = flat[k + k * d:].reshape(k, d, d)
            cluster = [log_prop[i] + L.mvn.logpdf(data, means[i], sqrts[i] @ sqrts[i].T) for i in range(k)]
            return -np_.sum(L.logsumexp(np_.vstack(cluster), axis=0))
        return objective, (start,)
    ours = _agree(model)
    fun, (x,) = model(JITAD)
    v = np.random.RandomState(3).randn(size)
    hv = jitad.hvp(fun, (x,), (v,))
    if AUTOGRAD is not None:
        import autograd
        ag_fun, _ = model(AUTOGRAD)
        _assert_same(hv, autograd.hessian_vector_product(ag_fun)(x, v))
    else:
        eps = 1e-6
        g = jitad.grad(fun)
        np.testing.assert_allclose(hv, (g(x + eps * v) - g(x - eps * v)) / (2 * eps), rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(ours))


def test_hmm_log_partition_function_and_em_step():
    # hmm_em.py: the forward recursion over integer observations (log_B[:, y]), value_and_grad of the
    # log partition function in a list of natural parameters gives the E step's expected counts
    rs = np.random.RandomState(0)
    n, m = 4, 6
    normalize = lambda a: a / a.sum(-1, keepdims=True)
    params = [np.log(normalize(rs.rand(n))), np.log(normalize(rs.rand(n, n))), np.log(normalize(rs.rand(n, m)))]
    sequences = [rs.randint(0, m, 7), rs.randint(0, m, 5)]

    def model(L):
        def log_partition(natural_params):
            log_pi, log_A, log_B = natural_params
            total = 0.0
            for data in sequences:
                log_alpha = log_pi
                for y in data:
                    log_alpha = L.logsumexp(log_alpha[:, None] + log_A, axis=0) + log_B[:, y]
                total = total + L.logsumexp(log_alpha)
            return total
        return log_partition, (params,)
    loglike, stats = jitad.value_and_grad(model(JITAD)[0])(params)
    _agree(model)
    # expected counts: each sequence's initial-state posterior sums to one
    assert np.sum(stats[0]) == pytest.approx(len(sequences), rel=1e-12)


def test_rnn_and_lstm_character_models():
    # rnn.py and lstm.py: concatenate-and-multiply cells over time steps, sigmoid by tanh, outputs
    # normalised by logsumexp, the loss of one-hot targets
    rs = np.random.RandomState(0)
    T, batch, vocab, state = 6, 3, 5, 4
    text = rs.randint(0, vocab, (T, batch))
    onehot = np.array(text[:, :, None] == np.arange(vocab), dtype=float)

    def cell_params(rows, cols):
        return rs.randn(rows + 1, cols) * 0.3

    rnn_params = {"init": rs.randn(1, state) * 0.3, "change": cell_params(vocab + state, state),
                  "predict": cell_params(state, vocab)}
    lstm_params = {"init_cells": rs.randn(1, state) * 0.3, "init_hiddens": rs.randn(1, state) * 0.3,
                   "change": cell_params(vocab + state, state), "forget": cell_params(vocab + state, state),
                   "ingate": cell_params(vocab + state, state), "outgate": cell_params(vocab + state, state),
                   "predict": cell_params(state, vocab)}

    def model(L, lstm):
        np_ = L.np

        def cat_mul(weights, *args):
            cat_state = np_.hstack(args + (np_.ones((args[0].shape[0], 1)),))
            return np_.dot(cat_state, weights)

        def sigmoid(x):
            return 0.5 * (np_.tanh(x) + 1.0)

        def loss(params):
            if lstm:
                hiddens = np_.repeat(params["init_hiddens"], batch, axis=0)
                cells = np_.repeat(params["init_cells"], batch, axis=0)
            else:
                hiddens = np_.repeat(params["init"], batch, axis=0)
            total = 0.0
            for t in range(T - 1):
                if lstm:
                    change = np_.tanh(cat_mul(params["change"], onehot[t], hiddens))
                    forget = sigmoid(cat_mul(params["forget"], onehot[t], hiddens))
                    ingate = sigmoid(cat_mul(params["ingate"], onehot[t], hiddens))
                    outgate = sigmoid(cat_mul(params["outgate"], onehot[t], hiddens))
                    cells = cells * forget + ingate * change
                    hiddens = outgate * np_.tanh(cells)
                else:
                    hiddens = np_.tanh(cat_mul(params["change"], onehot[t], hiddens))
                out = cat_mul(params["predict"], hiddens)
                out = out - L.logsumexp(out, axis=1, keepdims=True)
                total = total + np_.sum(out * onehot[t + 1])
            return -total / (T * batch)
        return loss, (lstm_params if lstm else rnn_params,)
    _agree(lambda L: model(L, False))
    _agree(lambda L: model(L, True))


def test_variational_autoencoder_lower_bound():
    # variational_autoencoder.py: batch normalisation (std over the batch), relu, the Bernoulli
    # log density by logaddexp, diagonal Gaussians by norm.logpdf, draws of a RandomState in the objective
    rs = np.random.RandomState(0)
    data = np.round(rs.rand(6, 10)) * 2 - 1
    enc, dec = _mlp_params([10, 7, 4], seed=1), _mlp_params([2, 7, 10], seed=2)

    def model(L):
        np_ = L.np

        def net(params, x):
            for W, b in params[:-1]:
                a = np_.dot(x, W) + b
                a = (a - np_.mean(a, axis=0, keepdims=True)) / (np_.std(a, axis=0, keepdims=True) + 1)
                x = np_.maximum(0, a)
            return np_.dot(x, params[-1][0]) + params[-1][1]

        def gauss(x, mu, log_std):
            return np_.sum(L.norm.logpdf(x, mu, np_.exp(log_std)), axis=-1)

        def objective(params, it):
            draws = np.random.RandomState(it)
            q = net(params[1], data)
            mean, log_std = q[:, :2], q[:, 2:]
            latents = draws.randn(*mean.shape) * np_.exp(log_std) + mean
            logits = net(params[0], latents)
            likelihood = np_.sum(-np_.logaddexp(0, -logits * data), axis=-1)
            return -np_.mean(gauss(latents, 0, 0) + likelihood - gauss(latents, mean, log_std))
        return objective, ((dec, enc), 4)
    _agree(model)


def test_ica_with_student_t_likelihood():
    # ica.py: scipy.stats.t.logpdf(x, df, loc, scale) with traced loc and scale
    rs = np.random.RandomState(0)
    observed = rs.randn(8, 5)
    start = rs.randn(27)

    def model(L):
        def objective(params):
            weights = L.np.reshape(params[:10], (5, 2))
            latents = L.np.reshape(params[10:26], (2, 8))
            preds = L.np.dot(weights, latents).T
            return -L.np.sum(L.t.logpdf(preds, 2.4, observed, L.np.exp(params[-1]))) / 8
        return objective, (start,)
    _agree(model, "value_and_grad")


def test_neural_ode():
    # ode_net.py: odeint of a relu network's dynamics, the network's parameters passed through args
    t = np.linspace(0.0, 1.0, 6)
    y0 = np.array([2.0, 0.0])
    target = np.stack([np.cos(2 * t), -np.sin(2 * t)], -1)

    def model(L):
        def dynamics(y, t0, params):
            for W, b in params:
                out = L.np.dot(y, W) + b
                y = L.np.maximum(0, out)
            return out

        # the name as the example binds it (`from scipy.integrate import odeint`): jitad swaps SciPy's
        # odeint where a name holds it, not through an attribute of another object (a named error)
        odeint = scipy.integrate.odeint if L is JITAD else L.odeint

        def loss(params):
            pred = odeint(dynamics, y0, t, L.tuple((params,)), rtol=1e-8, atol=1e-10)
            return L.np.mean(L.np.abs(pred - target))
        return loss, (_mlp_params([2, 6, 2], seed=4),)
    _agree(model, rtol=1e-5)  # both integrate the adjoint equations; the solver's tolerance bounds the agreement


def test_negative_binomial_newton_with_second_derivatives():
    # negative_binomial_maxlike.py: gammaln in the likelihood, scipy.optimize.newton given grad and
    # grad(grad(...)) of the profile's derivative, then the gradient in both parameters
    rs = np.random.RandomState(0)
    x = rs.poisson(rs.gamma(5, 1.0, size=200)).astype(float)

    def fit(L, argnums):
        loglike = lambda r, p: L.np.sum(L.gammaln(r + x) - L.gammaln(r) - L.gammaln(x + 1) + x * L.np.log(p)
                                        + r * L.np.log(1 - p))
        p = lambda r: L.np.sum(x) / L.np.sum(r + x)
        rprime = lambda r: L.grad(loglike)(r, p(r))
        r = scipy.optimize.newton(rprime, 1.0, fprime=L.grad(rprime), fprime2=L.grad(L.grad(rprime)))
        return r, p(r), L.grad(loglike, **argnums)(r, p(r))
    r, p, both = fit(JITAD, {"argnums": (0, 1)})
    assert abs(both[0]) < 1e-6 and abs(both[1]) < 1e-6
    if AUTOGRAD is not None:
        r_ag, p_ag, _ = fit(AUTOGRAD, {"argnum": (0, 1)})
        assert r == pytest.approx(r_ag, rel=1e-10) and p == pytest.approx(p_ag, rel=1e-10)


def test_higher_derivatives_of_tanh_and_of_a_taylor_series_with_a_break():
    # tanh.py: four nested elementwise derivatives; sinusoid.py: a Taylor series whose loop stops on a
    # traced value (a guard per path), differentiated twice
    x = np.linspace(-3, 3, 7)

    def tanh_model(L):
        def tanh(x):
            return (1.0 - L.np.exp(-2 * x)) / (1.0 + L.np.exp(-(2 * x)))
        d = tanh
        for _ in range(4):
            d = (lambda f: L.grad(lambda y: L.np.sum(f(y))))(d)  # elementwise_grad of an elementwise f
        return lambda x: L.np.sum(d(x) * L.np.linspace(1, 2, 7)), (x,)
    _agree(tanh_model, rtol=1e-7)

    def taylor_model(L):
        def sin(x):
            term = x
            total = term
            for i in range(1000):
                term = -term * x ** 2 / ((2 * i + 3) * (2 * i + 2))
                total = total + term
                if L.np.abs(term) < 0.2:
                    break
            return total
        return L.grad(sin), (1.3,)
    for point in (0.4, 1.3, 4.0):
        _agree(lambda L: (taylor_model(L)[0], (point,)))


def test_fluid_simulation_advects_a_traced_field():
    # fluidsim.py / wing.py: semi-Lagrangian advection gathering f[left_ix, top_ix] at positions made
    # from the traced velocities by floor().astype(int), np.roll stencils, in-place `vx -= ...`
    rows = cols = 6
    rs = np.random.RandomState(0)
    smoke = rs.rand(rows, cols)
    start = 0.7 * rs.randn(2 * rows * cols)

    def model(L, constant_smoke=False):
        np_ = L.np

        def project(vx, vy):
            p = np_.zeros(vx.shape)
            div = -0.5 / rows * (np_.roll(vx, -1, axis=0) - np_.roll(vx, 1, axis=0)
                                 + np_.roll(vy, -1, axis=1) - np_.roll(vy, 1, axis=1))
            for _ in range(3):
                p = (div + np_.roll(p, 1, axis=0) + np_.roll(p, -1, axis=0) + np_.roll(p, 1, axis=1)
                     + np_.roll(p, -1, axis=1)) / 4.0
            vx -= 0.5 * (np_.roll(p, -1, axis=0) - np_.roll(p, 1, axis=0)) * rows
            vy -= 0.5 * (np_.roll(p, -1, axis=1) - np_.roll(p, 1, axis=1)) * rows
            return vx, vy

        def advect(f, vx, vy):
            cell_ys, cell_xs = np_.meshgrid(np_.arange(rows), np_.arange(cols))
            center_xs, center_ys = (cell_xs - vx).ravel(), (cell_ys - vy).ravel()
            left, top = np_.floor(center_xs).astype(int), np_.floor(center_ys).astype(int)
            rw, bw = center_xs - left, center_ys - top
            left, top = np_.mod(left, rows), np_.mod(top, cols)
            right, bot = np_.mod(left + 1, rows), np_.mod(top + 1, cols)
            flat = (1 - rw) * ((1 - bw) * f[left, top] + bw * f[left, bot]) + rw * (
                (1 - bw) * f[right, top] + bw * f[right, bot])
            return np_.reshape(flat, (rows, cols))

        def objective(params):
            vx, vy = np_.reshape(params[:rows * cols], (rows, cols)), np_.reshape(params[rows * cols:], (rows, cols))
            s = smoke if constant_smoke else smoke * (1.0 + 0.0 * vx)
            for _ in range(2):
                vx, vy = project(advect(vx, vx, vy), advect(vy, vx, vy))
                s = advect(s, vx, vy)
            return np_.mean((s - 0.5) ** 2)
        return objective, (start,)
    _agree(model)
    # the program as published advects the initial smoke, a NumPy array, with traced positions: NumPy
    # needs the positions' values, so it is a ConcretizationError naming the way out (also when
    # scipy.optimize.minimize is the caller, as in the example)
    fun, (x0,) = model(JITAD, constant_smoke=True)
    with pytest.raises(jitad.ConcretizationError, match="take_along_axis"):
        scipy.optimize.minimize(jitad.value_and_grad(fun), x0, jac=True, method="CG", options={"maxiter": 1})
