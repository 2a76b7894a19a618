"""Exact regret comparators against NumPy ridge solves and closed forms (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import regret
from mpjax.learners import rls


def _stream(seed=0, t=300, d=5, k=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(t, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.eye(k)[rng.integers(0, k, t)]
    return x, y


def _ridge_objective(x, y, lam):
    """min_W 1/2 |X W - Y|_F^2 + lam/2 |W|_F^2 by a direct solve."""
    d = x.shape[1]
    w = np.linalg.solve(lam * np.eye(d) + x.T @ x, x.T @ y)
    return 0.5 * np.sum((x @ w - y) ** 2) + 0.5 * lam * np.sum(w * w), w


def _featurize(x, y):
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    return lambda rows, aux: (xj[rows], yj[rows])


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("block", [1, 16, 64])
def test_ridge_comparator_equals_numpy_solve_at_every_step(block):
    x, y = _stream(t=300)
    lam = 0.3
    order = np.random.default_rng(1).permutation(300)
    comp = regret.ridge_comparator(
        _featurize(x, y), jnp.asarray(order), jnp.zeros(300), 5, 3, lam, block=block
    )
    j = np.cumsum(np.asarray(comp.increments))
    assert j.shape == (300,)
    for t in [1, 2, 3, 17, 64, 65, 128, 299, 300]:
        ref, w = _ridge_objective(x[order[:t]], y[order[:t]], lam)
        np.testing.assert_allclose(j[t - 1], ref, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(comp.w), w, rtol=1e-9, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_dynamic_comparator_restarts_per_window_and_measures_path_length():
    x, y = _stream(seed=2, t=200)
    lam, window = 0.5, 64
    rows = np.arange(200)
    comp = regret.ridge_comparator(
        _featurize(x, y), jnp.asarray(rows), jnp.zeros(200), 5, 3, lam, block=16, window=window
    )
    incr = np.asarray(comp.increments)
    optima = []
    for start in range(0, 200, window):
        seg = slice(start, min(start + window, 200))
        j = np.cumsum(incr[seg])
        for t in sorted({1, min(10, j.shape[0]), j.shape[0]}):
            ref, w = _ridge_objective(x[start : start + t], y[start : start + t], lam)
            np.testing.assert_allclose(j[t - 1], ref, rtol=1e-10)
        optima.append(w)
    path = sum(np.linalg.norm(b - a) for a, b in zip(optima, optima[1:]))
    np.testing.assert_allclose(float(comp.path_length), path, rtol=1e-9)


@pytest.mark.usefixtures("x64")
def test_rls_regret_equals_its_closed_form():
    """RLS predicts with the previous ridge fit, so its regret increment is
    1/2 e_t^2 a_t/(1 + a_t), a_t = x_t^T P_{t-1} x_t; and sum log(1 + a_t) = log det(I + X^T X / lam)."""
    x, y = _stream(seed=3, t=250, d=4, k=1)
    y = y[:, 0]
    lam = 0.2
    learner = rls.make(l2=lam)

    def body(s, xy):
        return learner.step(s, *xy)

    _, losses = jax.lax.scan(body, learner.init(4, jax.random.key(0)), (jnp.asarray(x), jnp.asarray(y)))
    comp = regret.ridge_comparator(_featurize(x, y[:, None]), jnp.arange(250), jnp.zeros(250), 4, 1, lam, block=32)
    r = np.cumsum(np.asarray(losses)) - np.cumsum(np.asarray(comp.increments))
    p, w = np.eye(4) / lam, np.zeros(4)
    closed, logdet = 0.0, 0.0
    for t in range(250):
        a = x[t] @ p @ x[t]
        e = y[t] - x[t] @ w
        closed += 0.5 * e * e * a / (1 + a)
        logdet += np.log1p(a)
        u = p @ x[t]
        w = w + u * e / (1 + a)
        p = p - np.outer(u, u) / (1 + a)
    np.testing.assert_allclose(r[-1], closed, rtol=1e-9)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(np.eye(4) + x.T @ x / lam)[1], rtol=1e-10)


def test_comparator_refuses_bad_arguments():
    x, y = _stream(t=10)
    with pytest.raises(ValueError, match="> 0"):
        regret.ridge_comparator(_featurize(x, y), jnp.arange(10), jnp.zeros(10), 5, 3, 0.0)
    with pytest.raises(ValueError, match="multiple"):
        regret.ridge_comparator(_featurize(x, y), jnp.arange(10), jnp.zeros(10), 5, 3, 1.0, block=4, window=6)


@pytest.mark.usefixtures("x64")
def test_logistic_comparator_matches_independent_bfgs_solve():
    x, y = _stream(seed=4, t=120, d=4, k=2)
    lam = 0.1
    checkpoints = np.array([5, 40, 120])
    got = regret.logistic_comparator(x, y, lam, checkpoints)
    from jax.scipy.optimize import minimize

    @jax.jit
    def solve(xs, ys, mask):  # masked rows so one compile serves every prefix
        def obj(th):
            z = xs @ th
            return jnp.sum(mask * (jnp.logaddexp(0.0, z) - ys * z)) + 0.5 * lam * th @ th

        return minimize(obj, jnp.zeros(4), method="BFGS", tol=1e-12).fun

    for i, t in enumerate(checkpoints):
        mask = jnp.asarray(np.arange(120) < t, jnp.float64)
        total = sum(float(solve(jnp.asarray(x), jnp.asarray(y[:, j]), mask)) for j in range(2))
        np.testing.assert_allclose(got[i], total, rtol=1e-8)


def test_log_steps_dense_then_log_spaced():
    s = regret.log_steps(100_000)
    assert len(s) >= 500
    assert np.all(np.diff(s) > 0)
    np.testing.assert_array_equal(s[:1000], np.arange(1, 1001))
    assert s[-1] == 100_000
    np.testing.assert_array_equal(regret.log_steps(50), np.arange(1, 51))


def test_loglog_slope_recovers_power_law_and_flags_nonpositive():
    steps = regret.log_steps(100_000)
    r = np.stack([3.0 * steps**0.5, 0.1 * steps**1.0, np.where(steps > 5000, -1.0, 1.0)])
    slopes = regret.loglog_slope(steps, r)
    np.testing.assert_allclose(slopes[:2], [0.5, 1.0], rtol=1e-12)
    assert np.isnan(slopes[2])
