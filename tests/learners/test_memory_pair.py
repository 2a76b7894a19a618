"""Memory-Pair insert against a NumPy loop that builds the dense BFGS inverse each step."""

import jax
import numpy as np
import pytest

from mpjax import lbfgs
from mpjax.learners import memory_pair
from tests.learners._ref import clip, run_jax, stream
from tests.test_lbfgs import _dense_h


def _numpy_memory_pair(x, y, m, lr, lam, c, max_step, eps=1e-8, mu=0.0):
    d = x.shape[1]
    w = np.zeros(d)
    pairs, ws, losses, skipped = [], [], [], 0
    for t in range(len(y)):
        z = x[t] @ w
        losses.append(0.5 * (z - y[t]) ** 2)
        g = clip((z - y[t]) * x[t], c) + lam * w
        gamma = (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1]) if pairs else 1.0
        step = lr / np.sqrt(t + 1) * (_dense_h(pairs, gamma, d) @ g)
        if np.linalg.norm(step) > max_step:
            step *= max_step / np.linalg.norm(step)
        w_new = w - step
        s = w_new - w
        yv = (x[t] @ w_new - z) * x[t] + lam * s
        if s @ yv > eps * np.linalg.norm(s) * np.linalg.norm(yv) and s @ yv >= mu * (s @ s):
            pairs = (pairs + [(s, yv)])[-m:]
        else:
            skipped += 1
        w = w_new
        ws.append(w.copy())
    return np.array(ws), np.array(losses), pairs


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("max_step,mu", [(10.0, 0.0), (0.05, 0.0), (10.0, 0.3)])
def test_insert_equals_dense_bfgs_numpy_loop(max_step, mu):
    m, lr, lam, c = 4, 0.9, 0.05, 0.5
    x, y = stream(seed=6, n=120, d=6, scale=2.0)
    learner = memory_pair.make(memory_size=m, learning_rate=lr, l2=lam, clip_norm=c, max_step=max_step,
                               min_curvature=mu)
    state, losses, ws = run_jax(learner, x, y)
    ref_ws, ref_losses, ref_pairs = _numpy_memory_pair(x, y, m, lr, lam, c, max_step, mu=mu)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ws, ref_ws, rtol=1e-8, atol=1e-11)
    # The ring holds the last m accepted pairs, each tagged with its insert index.
    assert int(state.memory.size) == len(ref_pairs) == m
    order = (int(state.memory.head) + np.arange(m)) % m
    np.testing.assert_allclose(np.asarray(state.memory.s)[order], np.array([p[0] for p in ref_pairs]), rtol=1e-8, atol=1e-12)
    tags = np.asarray(state.memory.tag)[order]
    assert list(tags) == sorted(tags) and tags[-1] <= len(y) - 1


@pytest.mark.usefixtures("x64")
def test_curvature_pairs_include_the_ridge_term():
    lam = 0.3
    learner = memory_pair.make(memory_size=3, l2=lam, learning_rate=1.0)
    state = learner.init(4, jax.random.key(0))
    x = np.array([0.5, 0.0, 0.5, 0.0])
    state, _ = learner.step(state, x, 1.0)
    slot = (int(state.memory.head) - 1) % 3
    s, yv = np.asarray(state.memory.s[slot]), np.asarray(state.memory.y[slot])
    np.testing.assert_allclose(yv, (np.outer(x, x) + lam * np.eye(4)) @ s, rtol=1e-12)
    assert int(state.memory.tag[slot]) == 0


def test_make_validates_hyperparameters():
    for bad in ({"l2": 0.0}, {"learning_rate": 0.0}, {"memory_size": 2.5}, {"max_step": -1.0}, {"loss": "hinge"}):
        with pytest.raises(ValueError):
            memory_pair.make(**bad)


def test_state_uses_ring_memory_of_fixed_shape():
    state = memory_pair.make(memory_size=7).init(11, jax.random.key(0))
    assert isinstance(state.memory, lbfgs.LbfgsMemory)
    assert state.memory.s.shape == (7, 11) and state.memory.rho.shape == (7,)
