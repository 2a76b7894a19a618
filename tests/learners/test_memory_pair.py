"""Memory-Pair insert against an independent float64 NumPy loop written from its docstring.

The reference builds the dense BFGS inverse H from the stored pairs every step (no
two-loop, no ring arrays), so it shares no code with mpjax.lbfgs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import lbfgs
from mpjax.learners import memory_pair
from tests.learners._ref import run_jax, stream
from tests.test_lbfgs import _dense_h


def numpy_memory_pair(x, y, *, m, lr, lam, clip, block, loss="squared", weights=None):
    """The insert of mpjax/learners/memory_pair.py's docstring, steps 1-7, one sample at a time."""
    t_total, d = x.shape
    weights = np.ones(t_total) if weights is None else weights
    w = np.zeros(d)
    pairs, tags = [], []
    probe, probe_hv, probe_tag = np.zeros(d), np.zeros(d), None
    ws, losses = [], []
    for t in range(t_total):
        xt, yt, om = x[t], y[t], weights[t]
        z = xt @ w
        if loss == "squared":
            losses.append(0.5 * (z - yt) ** 2)
            dz, h = z - yt, 1.0
        else:
            losses.append(np.logaddexp(0.0, z) - yt * z)
            sig = 1.0 / (1.0 + np.exp(-z))
            dz, h = sig - yt, sig * (1.0 - sig)
        gnorm = abs(dz) * np.linalg.norm(xt)
        a = om * dz * (min(1.0, clip / gnorm) if gnorm > 0 else 1.0)
        gamma = (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1]) if pairs else 1.0
        hmat = _dense_h(pairs, gamma, d)
        u, v = hmat @ xt, hmat @ w
        eta = lr / np.sqrt(t + 1)
        alpha = eta / (1.0 + eta * (xt @ u))
        w_new = w - alpha * (a * u + lam * v)
        if t % block == 0:
            probe, probe_hv, probe_tag = u, np.zeros(d), t
        probe_hv = probe_hv + om * h * (xt @ probe) * xt
        if (t + 1) % block == 0:
            s_pair, y_pair = probe, probe_hv / block + lam * probe
            if s_pair @ y_pair > 0:
                pairs, tags = (pairs + [(s_pair, y_pair)])[-m:], (tags + [probe_tag])[-m:]
        w = w_new
        ws.append(w.copy())
    return np.array(ws), np.array(losses), pairs, tags


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("loss,block,clip", [("squared", 5, 0.5), ("squared", 1, 10.0), ("logistic", 3, 0.3)])
def test_insert_equals_independent_numpy_loop(loss, block, clip):
    m, lr, lam = 4, 1.5, 0.05
    x, y = stream(seed=6, n=160, d=6, scale=2.0)
    learner = memory_pair.make(memory_size=m, learning_rate=lr, l2=lam, clip_norm=clip, loss=loss,
                               curvature_block=block)
    state, losses, ws = run_jax(learner, x, y)
    ref_ws, ref_losses, ref_pairs, ref_tags = numpy_memory_pair(x, y, m=m, lr=lr, lam=lam, clip=clip,
                                                                block=block, loss=loss)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ws, ref_ws, rtol=1e-9, atol=1e-12)
    # The ring holds the last m pairs, oldest first after the head, tagged with their block's first step.
    assert int(state.memory.size) == len(ref_pairs) == m
    order = (int(state.memory.head) + np.arange(m)) % m
    np.testing.assert_allclose(np.asarray(state.memory.s)[order], np.array([p[0] for p in ref_pairs]),
                               rtol=1e-9, atol=1e-12)
    assert list(np.asarray(state.memory.tag)[order]) == ref_tags


@pytest.mark.usefixtures("x64")
def test_weighted_insert_equals_numpy_loop_with_weights():
    x, y = stream(seed=8, n=120, d=5)
    omega = np.random.default_rng(0).uniform(0.0, 2.0, size=len(y))
    omega[::7] = 0.0
    learner = memory_pair.make(memory_size=3, learning_rate=1.0, l2=0.1, clip_norm=0.4, curvature_block=4)
    state = learner.init(x.shape[1], jax.random.key(0))

    def body(s, inp):
        s, loss = learner.wstep(s, *inp)
        return s, s.w

    _, ws = jax.lax.scan(body, state, (jnp.asarray(x), jnp.asarray(y), jnp.asarray(omega)))
    ref_ws, _, _, _ = numpy_memory_pair(x, y, m=3, lr=1.0, lam=0.1, clip=0.4, block=4, weights=omega)
    np.testing.assert_allclose(np.asarray(ws), ref_ws, rtol=1e-9, atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_every_pair_has_curvature_between_lambda_and_the_sampled_hessian():
    lam = 0.02
    x, y = stream(seed=9, n=400, d=8)
    learner = memory_pair.make(memory_size=6, l2=lam, curvature_block=10)
    state, _, _ = run_jax(learner, x, y)
    s, yv = np.asarray(state.memory.s), np.asarray(state.memory.y)
    ratio = np.sum(s * yv, 1) / np.sum(s * s, 1)
    assert np.all(ratio >= lam * (1 - 1e-12))
    assert np.all(ratio <= lam + np.max(np.sum(x * x, 1)) + 1e-12)


@pytest.mark.usefixtures("x64")
def test_restart_empties_the_memory_and_keeps_the_counter():
    x, y = stream(seed=10, n=90, d=5)
    learner = memory_pair.make(memory_size=3, curvature_block=4)
    state, _, _ = run_jax(learner, x, y)
    w = jnp.arange(5.0)
    fresh = memory_pair.restart(state, w)
    np.testing.assert_array_equal(fresh.w, w)
    assert int(fresh.memory.size) == 0 and int(fresh.t) == int(state.t)
    np.testing.assert_array_equal(memory_pair.precondition(learner.hyper, fresh, w), w)  # H = I
    assert not np.any(np.asarray(fresh.probe)) and not np.any(np.asarray(fresh.probe_hv))
    # The next insert is the insert from (w, empty memory): same as a learner that starts there.
    start = memory_pair.restart(learner.init(5, jax.random.key(0)), w)._replace(t=fresh.t)
    a, _ = learner.step(fresh, jnp.asarray(x[0]), y[0])
    b, _ = learner.step(start, jnp.asarray(x[0]), y[0])
    np.testing.assert_array_equal(a.w, b.w)


@pytest.mark.usefixtures("x64")
def test_purge_drops_the_rows_block_pair_and_every_later_one():
    x, y = stream(seed=11, n=5 * 4 + 2, d=5)
    learner = memory_pair.make(memory_size=8, curvature_block=4)
    state, _, _ = run_jax(learner, x, y)  # pairs of blocks starting at 0, 4, 8, 12, 16; probe at 20
    tags = sorted(int(t) for t in np.asarray(state.memory.tag) if t >= 0)
    assert tags == [0, 4, 8, 12, 16] and int(state.probe_tag) == 20
    for row, kept in [(9, [0, 4]), (8, [0, 4]), (16, [0, 4, 8, 12]), (21, [0, 4, 8, 12, 16]), (0, [])]:
        purged = memory_pair.purge(state, row)
        left = sorted(int(t) for t in np.asarray(purged.memory.tag) if t >= 0)
        assert left == kept, row
        assert int(purged.memory.size) == len(kept)
        assert not np.any(np.asarray(purged.probe))  # the pair being measured always goes
    # At a block boundary the last block's pair is stored and no pair is being measured.
    boundary, _, _ = run_jax(learner, x[:20], y[:20])
    assert int(boundary.probe_tag) == memory_pair.NO_BLOCK
    left = sorted(int(t) for t in np.asarray(memory_pair.purge(boundary, 17).memory.tag) if t >= 0)
    assert left == [0, 4, 8, 12]


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_k_output_form_equals_k_independent_learners(loss):
    """multi_output shares one memory for the squared loss (K memories for logistic): same as K learners."""
    from mpjax import learners

    rng = np.random.default_rng(12)
    n, d, k = 150, 6, 3
    x = rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.eye(k)[rng.integers(0, k, n)]
    omega = rng.uniform(0.0, 1.5, n)
    hyper = dict(memory_size=4, learning_rate=1.2, l2=0.05, clip_norm=0.6, curvature_block=5, loss=loss)
    multi = learners.multi_output(memory_pair.make(**hyper), k)
    assert (multi.init(d, jax.random.key(0)).memory.s.ndim == 2) == (loss == "squared")

    def run(learner, ys):
        def body(s, inp):
            s, loss_t = learner.wstep(s, *inp)
            return s, loss_t

        state = learner.init(d, jax.random.key(0))
        return jax.lax.scan(body, state, (jnp.asarray(x), jnp.asarray(ys), jnp.asarray(omega)))

    state, losses = run(multi, y)
    scalar = memory_pair.make(**hyper)
    total = np.zeros(n)
    for j in range(k):
        s_j, l_j = run(scalar, y[:, j])
        np.testing.assert_allclose(np.asarray(state.w)[j], np.asarray(s_j.w), rtol=1e-11, atol=1e-13)
        total += np.asarray(l_j)
    np.testing.assert_allclose(np.asarray(losses), total, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(np.asarray(multi.predict(state, jnp.asarray(x[0]))), np.asarray(state.w) @ x[0])
    g = jnp.asarray(rng.normal(size=(k, d)))
    per_output = memory_pair.precondition(multi.hyper, state, g)
    assert per_output.shape == (k, d)
    c, big_c = memory_pair.eigen_bounds(multi.hyper, state)
    assert 0 < float(c) <= float(big_c)


def test_make_validates_hyperparameters():
    for bad in ({"l2": 0.0}, {"learning_rate": 0.0}, {"memory_size": 2.5}, {"curvature_block": 0},
                {"clip_norm": -1.0}, {"loss": "hinge"}):
        with pytest.raises(ValueError):
            memory_pair.make(**bad)


def test_state_uses_ring_memory_of_fixed_shape():
    state = memory_pair.make(memory_size=7).init(11, jax.random.key(0))
    assert isinstance(state.memory, lbfgs.LbfgsMemory)
    assert state.memory.s.shape == (7, 11) and state.memory.rho.shape == (7,)
