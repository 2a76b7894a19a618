"""Small float64 attribution problems shared by the influence tests."""

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import learners

K = 3
D = 6

# Learner settings of the influence tests: the experiment's choices (configs/influence.py);
# Memory-Pair with a shorter curvature block, so that a 200-step problem pushes pairs.
HYPER = {
    "sgd": {"learning_rate": 2.0, "l2": 1e-4},
    "adagrad": {"learning_rate": 0.1, "l2": 1e-4},
    "ons": {"l2": 1e-4},
    "rls": {"l2": 1e-3},
    "memorypair": {"memory_size": 5, "learning_rate": 1.0, "l2": 1e-4, "clip_norm": 1.0, "curvature_block": 5},
}
NAMES = tuple(HYPER)


def problem(n=200, j=4, seed=0, d=D, k=K):
    """``(train_x, train_y, test_x, test_y)``: class-dependent rows with ||x|| <= 1, float64."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n + j)
    x = rng.normal(size=(n + j, d)) + 1.5 * np.eye(k, d)[labels]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1.0)
    y = np.eye(k)[labels]
    return (jnp.asarray(x[:n]), jnp.asarray(y[:n]), jnp.asarray(x[n:]), jnp.asarray(y[n:]))


def learner(name, k=K):
    return learners.multi_output(learners.get(name, **HYPER[name]), k)


def init(lrn, d=D):
    return lrn.init(d, jax.random.key(0))
