"""Baselines against plain NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import learners, losses
from mpjax.influence import baselines, metagrad
from tests.influence import _fixtures as fx


def test_tracin_equals_a_numpy_sgd_loop(x64):
    """SGD, no clip: w_{t+1} = w_t - eta_t (omega r_t x_t^T + lam w_t), so the truncated metagradient is
    d phi_j(w_{t+1}) / d omega = -eta_t (W_{t+1} x_j - y_j) . r_t (x_t . x_j)."""
    eta, lam, n = 0.7, 1e-2, 60
    x, y, tx, ty = (np.asarray(a) for a in fx.problem(n=n, j=3))
    lrn = learners.multi_output(learners.get("sgd", learning_rate=eta, l2=lam, clip_norm=None), fx.K)
    order = np.random.default_rng(2).integers(0, n, 90)  # rows repeat: their steps add up
    got = baselines.tracin(lrn, lrn.init(fx.D, jax.random.key(0)), jnp.asarray(x), jnp.asarray(y),
                           jnp.asarray(order), jnp.asarray(tx), jnp.asarray(ty))
    w = np.zeros((fx.K, fx.D))
    expected = np.zeros((3, n))
    for t, i in enumerate(order):
        step = eta / np.sqrt(t + 1)
        r = w @ x[i] - y[i]
        w = w - step * (np.outer(r, x[i]) + lam * w)
        expected[:, i] += -step * ((tx @ w.T - ty) @ r) * (tx @ x[i])
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-14)


def _final_w(n=80, j=4):
    x, y, tx, ty = (np.asarray(a) for a in fx.problem(n=n, j=j))
    w = np.random.default_rng(0).normal(size=(fx.K, fx.D)) * 0.3
    return w, x, y, tx, ty


def test_grad_dot_and_influence_function_equal_dense_numpy(x64):
    w, x, y, tx, ty = _final_w()
    for loss in (losses.squared, losses.logistic):
        dm = (lambda z, t: z - t) if loss is losses.squared else (lambda z, t: 1 / (1 + np.exp(-z)) - t)
        curv = (lambda z: np.ones_like(z)) if loss is losses.squared else (lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2)
        g_tr = [np.outer(dm(w @ x[i], y[i]), x[i]).ravel() for i in range(len(x))]
        g_te = [np.outer(dm(w @ tx[j], ty[j]), tx[j]).ravel() for j in range(len(tx))]
        g_tr, g_te = np.array(g_tr), np.array(g_te)
        np.testing.assert_allclose(baselines.grad_dot(w, loss, x, y, tx, ty), -g_te @ g_tr.T, rtol=1e-12)
        l2_total = 0.5
        h = l2_total * np.eye(fx.K * fx.D)  # the full (K d) x (K d) Hessian, block-diagonal by construction
        for i in range(len(x)):
            c = curv(w @ x[i])
            for k in range(fx.K):
                h[k * fx.D:(k + 1) * fx.D, k * fx.D:(k + 1) * fx.D] += c[k] * np.outer(x[i], x[i])
        expected = -g_te @ np.linalg.solve(h, g_tr.T)
        got = baselines.influence_function(w, loss, x, y, tx, ty, l2_total)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-13)


def test_ridge_loo_equals_explicit_retrains(x64):
    lam = 0.05
    _, x, y, tx, ty = _final_w(n=40, j=3)

    def fit(xs, ys):
        return np.linalg.solve(lam * np.eye(fx.D) + xs.T @ xs, xs.T @ ys).T

    def phi(w):
        r = tx @ w.T - ty
        return 0.5 * np.sum(r * r, axis=1)

    base = phi(fit(x, y))
    expected = np.stack([-(phi(fit(np.delete(x, i, 0), np.delete(y, i, 0))) - base) for i in range(40)], axis=1)
    np.testing.assert_allclose(baselines.ridge_loo(x, y, tx, ty, lam), expected, rtol=1e-9, atol=1e-13)


def test_rls_metagradient_is_the_influence_function(x64):
    """For exact ridge, the metagradient at omega = 1 is the influence function with H = lam I + X^T X."""
    x, y, tx, ty = fx.problem(n=100, j=3)
    lrn = fx.learner("rls")
    state = fx.init(lrn)
    _, tau = metagrad.metagradients(lrn, state, x, y, jnp.arange(100), tx, ty, levels=(10, 10))
    final, _ = metagrad.train_weighted(lrn, state, x, y, jnp.arange(100), jnp.ones(100))
    inf = baselines.influence_function(final.w, losses.squared, x, y, tx, ty, fx.HYPER["rls"]["l2"])
    np.testing.assert_allclose(tau, inf, rtol=1e-8, atol=1e-12)


def test_tracin_reverse_mode_equals_forward_mode(x64):
    x, y, tx, ty = fx.problem(n=40, j=3)
    lrn = fx.learner("ons")
    state = fx.init(lrn)
    order = jnp.arange(40, dtype=jnp.int32)
    fwd = baselines.tracin(lrn, state, x, y, order, tx, ty)
    rev = baselines.tracin(lrn, state, x, y, order, tx, ty, mode="reverse")
    np.testing.assert_allclose(rev, fwd, rtol=1e-10, atol=1e-15)
    mp = fx.learner("memorypair")
    mp_fwd = baselines.tracin(mp, fx.init(mp), x, y, order, tx, ty)
    np.testing.assert_allclose(baselines.tracin(mp, fx.init(mp), x, y, order, tx, ty, mode="reverse"), mp_fwd,
                               rtol=1e-9, atol=1e-14)
    assert np.isfinite(np.asarray(mp_fwd)).all()
