"""Recursive least squares equals the closed-form ridge solution after every step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax.learners import rls
from tests.learners._ref import run_jax, stream


def _ridge(x, y, lam):
    return np.linalg.solve(lam * np.eye(x.shape[1]) + x.T @ x, x.T @ y)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("lam", [1e-3, 1.0])
def test_rls_weights_equal_closed_form_ridge_after_every_step(lam):
    x, y = stream(seed=4, n=150, d=6)
    _, losses, ws = run_jax(rls.make(l2=lam), x, y)
    for t in range(len(y)):
        ref = _ridge(x[: t + 1], y[: t + 1], lam)
        np.testing.assert_allclose(ws[t], ref, rtol=1e-9, atol=1e-12)
        prev = _ridge(x[:t], y[:t], lam) if t else np.zeros(x.shape[1])
        np.testing.assert_allclose(losses[t], 0.5 * (x[t] @ prev - y[t]) ** 2, rtol=1e-9, atol=1e-14)


@pytest.mark.usefixtures("x64")
def test_downdate_equals_retraining_without_the_point():
    x, y = stream(seed=5, n=80, d=6)
    lam = 0.1
    state, _, _ = run_jax(rls.make(l2=lam), x, y)
    for removed in (0, 17, 79):
        after = rls.downdate(state, jnp.asarray(x[removed]), jnp.asarray(y[removed]))
        keep = np.arange(len(y)) != removed
        ref_w = _ridge(x[keep], y[keep], lam)
        rel = np.linalg.norm(np.asarray(after.w) - ref_w) / np.linalg.norm(ref_w)
        assert rel <= 1e-9
        np.testing.assert_allclose(
            np.asarray(after.p), np.linalg.inv(lam * np.eye(6) + x[keep].T @ x[keep]), rtol=1e-9, atol=1e-12
        )
        assert int(after.t) == len(y) - 1


def test_rls_refuses_logistic_loss():
    with pytest.raises(ValueError, match="squared"):
        rls.make(loss="logistic")


def test_rls_state_dtype_follows_x64_flag():
    assert rls.make().init(3, jax.random.key(0)).p.dtype == jnp.float32
    with jax.enable_x64(True):
        assert rls.make().init(3, jax.random.key(0)).p.dtype == jnp.float64


@pytest.mark.usefixtures("x64")
def test_multi_output_shares_p_and_equals_independent_learners():
    from mpjax.learners import base

    x, _ = stream(seed=8, n=100, d=5)
    y = np.eye(3)[np.random.default_rng(8).integers(0, 3, 100)]
    multi = base.multi_output(rls.make(l2=0.2), 3)
    state = multi.init(5, jax.random.key(0))
    assert state.p.shape == (5, 5) and state.w.shape == (3, 5)  # one P for all outputs
    losses = []
    for t in range(100):
        state, loss = multi.step(state, jnp.asarray(x[t]), jnp.asarray(y[t]))
        losses.append(float(loss))
    total = np.zeros(100)
    for k in range(3):
        _, lk, ws = run_jax(rls.make(l2=0.2), x, y[:, k])
        np.testing.assert_allclose(np.asarray(state.w[k]), ws[-1], rtol=1e-9, atol=1e-12)
        total += lk
    np.testing.assert_allclose(losses, total, rtol=1e-9, atol=1e-12)
