"""Shared fixtures for learner reference tests: a small float64 stream and a scan helper."""

import jax
import jax.numpy as jnp
import numpy as np


def stream(seed=0, n=300, d=5, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x = scale * x / np.linalg.norm(x, axis=1, keepdims=True)
    w_true = rng.normal(size=d)
    y = (x @ w_true > 0).astype(np.float64)
    return x, y


def run_jax(learner, x, y):
    """Runs the learner over the rows in order; returns (final state, losses, all states' w)."""
    state = learner.init(x.shape[1], jax.random.key(0))

    def body(state, xy):
        state, loss = learner.step(state, *xy)
        return state, (loss, state.w)

    state, (loss, ws) = jax.lax.scan(body, state, (jnp.asarray(x), jnp.asarray(y)))
    return state, np.asarray(loss), np.asarray(ws)


def clip(g, c):
    n = np.linalg.norm(g)
    return g if c is None or n <= c else g * (c / n)
