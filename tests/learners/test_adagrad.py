"""AdaGrad against a plain NumPy loop of the diagonal update (float64)."""

import numpy as np
import pytest

from mpjax.learners import adagrad
from tests.learners._ref import clip, run_jax, stream


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("initial_accumulator", [0.0, 0.1])
def test_adagrad_equals_numpy_loop(initial_accumulator):
    lr, l2, c, eps = 0.2, 0.01, 0.5, 1e-7
    x, y = stream(seed=2, scale=2.0)
    learner = adagrad.make(
        learning_rate=lr, l2=l2, clip_norm=c, initial_accumulator=initial_accumulator, eps=eps
    )
    _, losses, ws = run_jax(learner, x, y)
    w = np.zeros(x.shape[1])
    acc = np.full(x.shape[1], initial_accumulator)
    for t in range(len(y)):
        r = x[t] @ w - y[t]
        np.testing.assert_allclose(losses[t], 0.5 * r * r, rtol=1e-10, atol=1e-12)
        g = clip(r * x[t], c) + l2 * w
        acc = acc + g * g
        scale = np.where(acc > 0, 1 / np.sqrt(acc + eps), 0.0)
        w = w - lr * scale * g
        np.testing.assert_allclose(ws[t], w, rtol=1e-9, atol=1e-12)
