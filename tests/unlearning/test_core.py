"""mpjax.unlearning.core: phase machine, refusals and the exact, polish and seed deletions.

Every deletion is checked against an independent float64 NumPy retrain of the same objective
F_S(W) = sum_{i in S} [1/2 |W x_i - y_i|^2 + lambda/2 |W|^2].
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import unlearning as ul
from mpjax.learners import memory_pair
from mpjax.unlearning import core
from mpjax.privacy import accountants

K, D, N, LAM = 3, 6, 120, 0.1
HYPER = dict(l2=LAM, clip_norm=1.0, learning_rate=0.5, memory_size=4)


def _data(seed=0):
    """N rows, |x| = 1, d = D + 1: the last feature is 0 (the feature-injection test sets it on some rows)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, N)
    x = rng.normal(size=(N, D)) + np.eye(K, D)[labels] * 2
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.concatenate([x, np.zeros((N, 1))], axis=1), np.eye(K)[labels]


def _retrain(x, y, present):
    xs, ys = x[present], y[present]
    return np.linalg.solve(xs.T @ xs + len(present) * LAM * np.eye(x.shape[1]), xs.T @ ys).T


@functools.lru_cache(maxsize=None)
def _unlearner(**settings):
    base = dict(horizon=10_000, gamma_learn=50.0, gamma_priv=5.0, eps_total=1.0, delta_total=1e-5, accountant="zcdp",
                min_points=8)
    base.update(settings)
    u = ul.make(K, ul.Settings(**base), **HYPER)
    return u, jax.jit(u.apply_detail), jax.jit(u.finalize)


def _run(step, state, ops, rows, x, y):
    events, certs = [], []
    for op, row in zip(ops, rows):
        op, row = int(op), int(row)  # Python ints: one trace, whatever the caller's integer type
        state, ev, w = step(state, op, row, x[row], y[row])
        events.append(jax.device_get(ev))
        certs.append(np.asarray(w))
    return state, events, certs


def _interleaving(mechanism, x, y, n=40, **settings):
    """A state in INTERLEAVING (N* = 1) with rows 0..n-1 calibrated."""
    u, step, fin = _unlearner(mechanism=mechanism, **settings)
    state = u.init(x.shape[1], N, jax.random.key(0))
    state, _, _ = _run(step, state, [ul.OP_CALIBRATE] * n, range(n), x, y)
    state = fin(state)
    assert int(state.phase) == ul.INTERLEAVING
    return u, step, state


def _same_but_events(before, after):
    strip = lambda s: s._replace(events=0, key=0, model=s.model._replace(key=0))  # noqa: E731
    same = jax.tree_util.tree_map(
        lambda a, b: np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f"),
        strip(before), strip(after))
    return all(jax.tree_util.tree_leaves(same)) and int(after.events) == int(before.events) + 1


@pytest.mark.usefixtures("x64")
def test_phases_change_exactly_at_finalize_and_at_n_star():
    x, y = _data()
    _, _, state = _interleaving("exact", x, y)  # the default unlearner, to read G D kappa
    c = state.calibration
    gamma = float(c.G * c.D * c.kappa) / np.sqrt(80.0)  # puts N* near 80
    u, step, fin = _unlearner(mechanism="exact", gamma_learn=gamma)
    state = u.init(x.shape[1], N, jax.random.key(0))
    state, ev, _ = _run(step, state, [ul.OP_CALIBRATE] * 40 + [ul.OP_INSERT], list(range(40)) + [40], x, y)
    assert int(state.phase) == ul.CALIBRATION
    assert not ev[-1].applied and int(ev[-1].reason) == ul.WRONG_PHASE  # insert before finalize
    state = fin(state)
    n_star = int(state.calibration.N_star)
    assert int(state.phase) == ul.LEARNING and 40 < n_star < N, n_star
    _, ev, _ = _run(step, state, [ul.OP_DELETE], [3], x, y)
    assert int(ev[0].reason) == ul.WRONG_PHASE  # no deletion while LEARNING
    state, ev, _ = _run(step, state, [ul.OP_INSERT] * (n_star - 40), range(40, n_star), x, y)
    phases = [int(e.phase) for e in ev]
    assert phases[:-1] == [ul.LEARNING] * (len(ev) - 1) and phases[-1] == ul.INTERLEAVING
    _, ev, _ = _run(step, state, [ul.OP_CALIBRATE], [n_star], x, y)
    assert int(ev[0].reason) == ul.WRONG_PHASE


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("mechanism", ul.MECHANISMS)
def test_refusals_leave_the_state_unchanged(mechanism):
    x, y = _data()
    _, step, state = _interleaving(mechanism, x, y)
    for op, row, xr, reason in [(ul.OP_DELETE, N - 1, x[N - 1], ul.NOT_PRESENT),  # never inserted
                                (ul.OP_INSERT, 3, x[3], ul.ALREADY_PRESENT),
                                (ul.OP_DELETE, 5, x[6], ul.MISMATCH),  # (x, y) of another row
                                (ul.OP_INSERT, N, x[0], ul.BAD_ROW), (ul.OP_DELETE, -1, x[0], ul.BAD_ROW)]:
        new, ev, _ = step(state, op, row, xr, y[row % N])
        assert not ev.applied and int(ev.reason) == reason, ul.REASONS[int(ev.reason)]
        assert _same_but_events(state, new)
    once, ev, _ = _run(step, state, [ul.OP_DELETE, ul.OP_DELETE], [5, 5], x, y)
    assert ev[0].applied and not ev[1].applied and int(ev[1].reason) == ul.NOT_PRESENT


@pytest.mark.usefixtures("x64")
def test_exact_deletions_equal_the_float64_retrain_and_empty_the_curvature_memory():
    x, y = _data(1)
    u, step, state = _interleaving("exact", x, y)
    present = list(range(40))
    rng = np.random.default_rng(2)
    nxt = 40
    for _ in range(12):
        for _ in range(3):
            state, ev, _ = step(state, ul.OP_INSERT, nxt, x[nxt], y[nxt])
            assert ev.applied
            present.append(nxt)
            nxt += 1
        r = int(rng.choice(present))  # a Python int keeps the jitted step's trace
        state, ev, w_cert = step(state, ul.OP_DELETE, r, x[r], y[r])
        present.remove(r)
        w_ref = _retrain(x, y, present)
        dist = np.linalg.norm(np.asarray(state.model.w) - w_ref)
        assert ev.applied and dist <= 1e-9 and dist <= float(ev.bound) <= 1e-9, (dist, float(ev.bound))
        np.testing.assert_array_equal(np.asarray(w_cert), np.asarray(state.model.w))
        assert float(ev.sigma) == 0.0 and float(ev.noise_norm) == 0.0 and float(ev.eps_spent) == 0.0
        assert not np.asarray(state.model.memory.rho).any()  # the whole ring, not only the row's pairs
    # The statistics equal those built from the rows present; later inserts continue from W*.
    np.testing.assert_allclose(np.asarray(state.suff.a), x[present].T @ x[present], atol=1e-12)
    np.testing.assert_allclose(np.asarray(state.suff.b), x[present].T @ y[present], atol=1e-12)
    w_del = np.asarray(state.model.w)
    state, ev, _ = step(state, ul.OP_INSERT, nxt, x[nxt], y[nxt])
    assert ev.applied and 0 < np.linalg.norm(np.asarray(state.model.w) - w_del) < 1.0


@pytest.mark.usefixtures("x64")
def test_polish_deletions_are_certified_and_sigma_does_not_depend_on_the_row():
    x, y = _data(3)
    u, step, state = _interleaving("polish", x, y, n=60)
    odo = state.odometer
    z = float(accountants.noise_multiplier("zcdp", u.settings.polish_capacity, 1.0, 1e-5))
    np.testing.assert_allclose(float(odo.sigma), z * u.settings.polish_delta, rtol=1e-12)
    # The same state, two different rows: the same sigma and the same noise (it depends on the key only).
    a, ev_a, cert_a = step(state, ul.OP_DELETE, 4, x[4], y[4])
    b, ev_b, cert_b = step(state, ul.OP_DELETE, 50, x[50], y[50])
    assert ev_a.applied and ev_b.applied and float(ev_a.sigma) == float(ev_b.sigma) == float(odo.sigma)
    noise_a = np.asarray(a.model.w) - np.asarray(cert_a)
    noise_b = np.asarray(b.model.w) - np.asarray(cert_b)
    xi = np.asarray(jax.random.normal(jax.random.fold_in(state.key, state.events), state.model.w.shape))
    np.testing.assert_allclose(noise_a, float(odo.sigma) * xi, atol=1e-12)
    np.testing.assert_allclose(noise_b, noise_a, atol=1e-12)
    present = [r for r in range(60) if r != 4]
    dist = np.linalg.norm(np.asarray(cert_a) - _retrain(x, y, present))
    assert dist <= float(ev_a.bound) <= u.settings.polish_delta
    assert not np.asarray(a.store.x[4]).any() and not np.asarray(a.model.memory.rho).any()
    assert int(ev_a.passes) >= 1 and float(ev_a.eps_spent) > 0


@pytest.mark.usefixtures("x64")
def test_polish_refuses_past_its_step_budget_and_past_capacity():
    x, y = _data(4)
    _, step, state = _interleaving("polish", x, y, polish_capacity=1, polish_passes=3, polish_delta=1e-9)
    new, ev, _ = step(state, ul.OP_DELETE, 1, x[1], y[1])
    assert not ev.applied and int(ev.reason) == ul.NOT_CERTIFIED and float(ev.bound) > 1e-9
    assert _same_but_events(state, new)
    # From the minimiser over the rows left, one pass certifies: applied, and the capacity (1) is used.
    present = [r for r in range(40) if r != 1]
    at_min = state._replace(model=memory_pair.restart(state.model, jnp.asarray(_retrain(x, y, present))))
    done, ev, _ = step(at_min, ul.OP_DELETE, 1, x[1], y[1])
    assert ev.applied and int(ev.passes) == 1 and int(ev.capacity_remaining) == 0
    new, ev, _ = step(done, ul.OP_DELETE, 2, x[2], y[2])
    assert not ev.applied and int(ev.reason) == ul.BUDGET and bool(new.present[2])
    assert _same_but_events(done, new)


@pytest.mark.usefixtures("x64")
def test_feature_injection_weight_vanishes_after_deleting_the_injected_rows():
    """Izzo et al. 2021: rows carrying a feature no other row has; after deleting them, a retrain puts weight 0 on it."""
    x, y = _data(5)
    inject = np.arange(40, 60)
    x[inject, :-1] *= 0.8
    x[inject, -1] = 0.6
    y[inject] = np.eye(K)[0]
    for mechanism, tol in (("exact", 1e-12), ("polish", 1e-5)):
        _, step, state = _interleaving(mechanism, x, y, n=40)
        state, _, _ = _run(step, state, [ul.OP_INSERT] * 40, range(40, 80), x, y)
        learned = np.linalg.norm(np.asarray(state.model.w)[:, -1])
        state, ev, certs = _run(step, state, [ul.OP_DELETE] * inject.size, inject, x, y)
        assert all(bool(e.applied) for e in ev)
        # The certified (pre-noise) model; polish publishes it plus sigma Xi.
        assert learned > 0.05 and np.linalg.norm(certs[-1][:, -1]) <= tol, mechanism


@pytest.mark.usefixtures("x64")
def test_seed_mechanism_noise_is_the_data_independent_formula_and_purges_the_rows_pairs():
    x, y = _data(6)
    u, step, state = _interleaving("seed", x, y)
    odo = state.odometer
    z = accountants.noise_multiplier("zcdp", int(odo.m), 1.0, 1e-5)
    delta = np.sqrt(K) * 1.0 / LAM  # sqrt(K) clip_norm / lambda, never the calibrated quantile G
    np.testing.assert_allclose(float(odo.sensitivity), delta, rtol=1e-12)
    np.testing.assert_allclose(float(odo.sigma), float(z) * delta, rtol=1e-9)
    tags = np.asarray(state.model.memory.tag)
    newest = int(tags[tags >= 0].min())  # a row whose curvature pair is in the memory (the oldest such)
    after, ev, w_cert = step(state, ul.OP_DELETE, newest, x[newest], y[newest])
    xi = np.asarray(jax.random.normal(jax.random.fold_in(state.key, state.events), state.model.w.shape))
    np.testing.assert_allclose(np.asarray(after.model.w) - np.asarray(w_cert), float(odo.sigma) * xi, atol=1e-9)
    assert ev.applied and np.isnan(float(ev.bound))
    assert not bool(jnp.any(after.model.memory.tag == newest))  # memory_pair.purge took its pair out


def test_logistic_loss_defaults_to_polish_and_exact_refuses_it():
    u = ul.make(K, ul.Settings(), loss="logistic", l2=LAM)
    assert u.settings.mechanism == "polish"
    assert ul.make(K, ul.Settings(), l2=LAM).settings.mechanism == "exact"
    with pytest.raises(ValueError, match="squared"):
        ul.make(K, ul.Settings(mechanism="exact"), loss="logistic")
    with pytest.raises(ValueError, match="mechanism"):
        ul.make(K, ul.Settings(mechanism="retrain"))
    with pytest.raises(ValueError, match="polish_passes"):
        ul.make(K, ul.Settings(polish_passes=0))


@pytest.mark.usefixtures("x64")
def test_apply_scans_and_vmaps_over_seeds():
    x, y = _data()
    u, _, _ = _unlearner(mechanism="exact")
    xs, ys = jnp.asarray(x), jnp.asarray(y)
    ops = jnp.asarray([ul.OP_CALIBRATE] * 30, jnp.int32)

    def run(key):
        state = u.init(x.shape[1], N, key)
        state, ev = jax.lax.scan(lambda s, r: u.apply(s, ops[r], r, xs[r], ys[r]), state, jnp.arange(30))
        return u.finalize(state), ev

    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(3))
    states, ev = jax.jit(jax.vmap(run))(keys)
    assert ev.loss.shape == (3, 30) and bool(jnp.all(ev.applied))
    single, _ = jax.jit(run)(keys[1])
    np.testing.assert_allclose(np.asarray(states.model.w[1]), np.asarray(single.model.w), rtol=1e-9, atol=1e-12)
    assert int(states.calibration.N_star[1]) == int(single.calibration.N_star)
