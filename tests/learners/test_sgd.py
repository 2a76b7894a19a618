"""OnlineSGD against a plain NumPy loop of the same update (float64)."""

import numpy as np
import pytest

from mpjax.learners import sgd
from tests.learners._ref import clip, run_jax, stream


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("radius", [None, 0.7])
def test_sgd_equals_numpy_loop(loss, radius):
    lr, l2, c = 0.8, 0.05, 0.3  # small clip so clipping is exercised
    x, y = stream(seed=1, scale=3.0)
    _, losses, ws = run_jax(sgd.make(learning_rate=lr, l2=l2, loss=loss, clip_norm=c, radius=radius), x, y)
    w = np.zeros(x.shape[1])
    for t in range(len(y)):
        z = x[t] @ w
        if loss == "squared":
            ref_loss, dz = 0.5 * (z - y[t]) ** 2, z - y[t]
        else:
            ref_loss, dz = np.logaddexp(0, z) - y[t] * z, 1 / (1 + np.exp(-z)) - y[t]
        np.testing.assert_allclose(losses[t], ref_loss, rtol=1e-10, atol=1e-12)
        g = clip(dz * x[t], c) + l2 * w
        w = w - lr / np.sqrt(t + 1) * g
        if radius is not None and np.linalg.norm(w) > radius:
            w = w * radius / np.linalg.norm(w)
        np.testing.assert_allclose(ws[t], w, rtol=1e-10, atol=1e-12)
