"""Online Newton Step: the Sherman-Morrison inverse equals inv(A) of the explicit matrix."""

import numpy as np
import pytest

from mpjax.learners import ons
from tests.learners._ref import clip, run_jax, stream


@pytest.mark.usefixtures("x64")
def test_ons_inverse_and_weights_equal_explicit_matrix_loop():
    gamma, eps, l2, c = 0.4, 2.0, 0.01, 1.0
    x, y = stream(seed=3, n=200)
    state, losses, ws = run_jax(ons.make(gamma=gamma, epsilon=eps, l2=l2, clip_norm=c), x, y)
    d = x.shape[1]
    a = eps * np.eye(d)
    w = np.zeros(d)
    for t in range(len(y)):
        r = x[t] @ w - y[t]
        np.testing.assert_allclose(losses[t], 0.5 * r * r, rtol=1e-9, atol=1e-12)
        g = clip(r * x[t], c) + l2 * w
        a = a + np.outer(g, g)
        w = w - np.linalg.solve(a, g) / gamma  # explicit inverse, no Sherman-Morrison
        np.testing.assert_allclose(ws[t], w, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(state.a_inv), np.linalg.inv(a), rtol=1e-8, atol=1e-12)


def test_ons_default_constants_follow_hazan_et_al():
    # gamma = 1/2 min(1/(4GD), alpha), epsilon = 1/(gamma^2 D^2): with G=2, D=0.5, alpha=1 -> gamma=1/8, eps=256.
    learner = ons.make(grad_bound=2.0, diameter=0.5, alpha=1.0, l2=0.0, clip_norm=None)
    import jax

    state = learner.init(3, jax.random.key(0))
    np.testing.assert_allclose(np.asarray(state.a_inv), np.eye(3) / 256.0)
    x = np.array([1.0, 0.0, 0.0])
    new, _ = learner.step(state, x, 1.0)  # g = -x, A = 256 I + x x^T, w = A^{-1} x / gamma
    np.testing.assert_allclose(np.asarray(new.w), x / 257.0 / 0.125, rtol=1e-6)
