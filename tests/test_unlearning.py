"""Phase machine, certified delete and exact references (mpjax.unlearning)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import unlearning as ul
from mpjax.privacy import accountants

K, D, N = 3, 6, 120


def _data(seed=0):  # noqa: D103
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, N)
    x = rng.normal(size=(N, D)) + np.eye(K, D)[labels] * 2
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.eye(K, dtype=np.float32)[labels]


def _gamma_for_n_star(target=80):
    """gamma_learn that puts N* = ceil((G D kappa / gamma)^2) near ``target`` for this data."""
    x, y = _data()
    u = ul.make(K, ul.Settings(min_points=8), l2=0.1, clip_norm=1.0, learning_rate=0.5, memory_size=4)
    state = u.init(D, N, jax.random.key(0))
    state, _ = _apply_all(u, state, [ul.OP_CALIBRATE] * 40, range(40), x, y)
    c = jax.jit(u.finalize)(state).calibration
    return float(c.G * c.D * c.kappa) / np.sqrt(target)


def _make(**settings):
    base = dict(horizon=10_000, gamma_learn=_GAMMA, gamma_priv=5.0, eps_total=1.0, delta_total=1e-5,
                accountant="zcdp", min_points=8)
    base.update(settings)
    return ul.make(K, ul.Settings(**base), l2=0.1, clip_norm=1.0, learning_rate=0.5, memory_size=4)


def _apply_all(u, state, ops, rows, x, y):  # noqa: D103
    step = jax.jit(u.apply)
    events = []
    for op, row in zip(ops, rows):
        state, ev = step(state, op, row, x[row], y[row])
        events.append(jax.device_get(ev))
    return state, events


def _calibrated(u, x, y, n_cal=40):
    state = u.init(D, N, jax.random.key(0))
    state, _ = _apply_all(u, state, [ul.OP_CALIBRATE] * n_cal, range(n_cal), x, y)
    return jax.jit(u.finalize)(state)


_GAMMA = _gamma_for_n_star()


def test_phases_change_exactly_at_finalize_and_at_n_star():
    x, y = _data()
    u = _make()
    state = u.init(D, N, jax.random.key(0))
    state, ev = _apply_all(u, state, [ul.OP_CALIBRATE] * 40 + [ul.OP_INSERT], list(range(40)) + [40], x, y)
    assert int(state.phase) == ul.CALIBRATION
    assert not ev[-1].applied and int(ev[-1].reason) == ul.WRONG_PHASE  # insert before finalize
    state = jax.jit(u.finalize)(state)
    n_star = int(state.calibration.N_star)
    assert int(state.phase) == ul.LEARNING and 40 < n_star < N, n_star
    ops = [ul.OP_INSERT] * (n_star - 40)
    state, ev = _apply_all(u, state, ops, range(40, n_star), x, y)
    phases = [int(e.phase) for e in ev]
    assert phases[:-1] == [ul.LEARNING] * (len(ev) - 1) and phases[-1] == ul.INTERLEAVING
    assert int(state.inserts) == n_star
    # Calibrating after CALIBRATION is refused.
    _, ev = _apply_all(u, state, [ul.OP_CALIBRATE], [n_star], x, y)
    assert int(ev[0].reason) == ul.WRONG_PHASE


def _interleaving(u, x, y):
    state = _calibrated(u, x, y)
    n_star = int(state.calibration.N_star)
    state, _ = _apply_all(u, state, [ul.OP_INSERT] * (n_star - 40), range(40, n_star), x, y)
    assert int(state.phase) == ul.INTERLEAVING
    return state, n_star


def _assert_unchanged_but_events(before, after):
    strip = lambda s: s._replace(events=0, key=0, model=s.model._replace(key=0))  # noqa: E731
    same = jax.tree_util.tree_map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f"), strip(before), strip(after))
    assert all(jax.tree_util.tree_leaves(same))
    assert int(after.events) == int(before.events) + 1


def test_refusals_leave_the_state_unchanged():
    x, y = _data()
    u = _make()
    state, n_star = _interleaving(u, x, y)
    never = N - 1  # never inserted
    for op, row, reason in [(ul.OP_DELETE, never, ul.NOT_PRESENT), (ul.OP_INSERT, 3, ul.ALREADY_PRESENT)]:
        new, ev = _apply_all(u, state, [op], [row], x, y)
        assert not ev[0].applied and int(ev[0].reason) == reason
        _assert_unchanged_but_events(state, new)
    # Deleting twice: the second is refused.
    once, ev = _apply_all(u, state, [ul.OP_DELETE, ul.OP_DELETE], [5, 5], x, y)
    assert ev[0].applied and not ev[1].applied and int(ev[1].reason) == ul.NOT_PRESENT


def test_capacity_is_at_least_one_and_the_next_delete_is_refused():
    x, y = _data()
    u = _make(gamma_priv=0.5)  # tight budget: small m
    state, n_star = _interleaving(u, x, y)
    m = int(state.odometer.m)
    assert m >= 1
    rows = list(range(m + 1))
    state2, ev = _apply_all(u, state, [ul.OP_DELETE] * (m + 1), rows, x, y)
    assert all(bool(e.applied) for e in ev[:m])
    assert not ev[m].applied and int(ev[m].reason) == ul.BUDGET
    assert int(state2.deletes) == m and int(ev[m].capacity_remaining) == 0
    assert bool(state2.present[rows[m]])  # the refused row is still in the model
    eps = [float(e.eps_spent) for e in ev]
    assert all(b >= a for a, b in zip(eps, eps[1:]))  # spending is monotone


def test_noise_scale_equals_the_formula_and_uses_the_data_independent_sensitivity():
    x, y = _data()
    u_noise, u_quiet = _make(), _make(noise=False)
    state, _ = _interleaving(u_noise, x, y)
    odo = state.odometer
    cal = state.calibration
    m = int(odo.m)
    z = accountants.noise_multiplier("zcdp", m, 1.0, 1e-5)
    # Delta = sqrt(K) clip_norm / lambda: the clipping bound, never the calibrated quantile G.
    delta = np.sqrt(K) * 1.0 / 0.1
    np.testing.assert_allclose(float(odo.sensitivity), delta, rtol=1e-6)
    np.testing.assert_allclose(float(odo.sigma), float(z) * delta, rtol=1e-4)
    assert float(cal.G) < np.sqrt(K)  # the quantile is smaller, so using it would under-noise
    noisy, ev = _apply_all(u_noise, state, [ul.OP_DELETE], [7], x, y)
    quiet, _ = _apply_all(u_quiet, state, [ul.OP_DELETE], [7], x, y)
    xi = jax.random.normal(jax.random.fold_in(state.key, state.events), state.model.w.shape)
    np.testing.assert_allclose(np.asarray(noisy.model.w - quiet.model.w), float(odo.sigma) * np.asarray(xi),
                               rtol=1e-4, atol=1e-4 * float(odo.sigma))
    np.testing.assert_allclose(float(ev[0].noise_norm), float(odo.sigma) * float(jnp.linalg.norm(xi)), rtol=1e-4)


def test_delete_purges_the_rows_curvature_pairs():
    """The pair whose block held the row, and every newer pair, leave the ring (memory_pair.purge)."""
    x, y = _data()
    u = _make(noise=False)
    state, n_star = _interleaving(u, x, y)
    tags = np.asarray(state.model.memory.tag)  # one memory shared by the K outputs (squared loss)
    kept = sorted(int(t) for t in tags if t >= 0)
    assert len(kept) >= 2
    row = kept[-2] + 1  # a row inside the block of the second newest pair
    after, ev = _apply_all(u, state, [ul.OP_DELETE], [row], x, y)
    left = sorted(int(t) for t in np.asarray(after.model.memory.tag) if t >= 0)
    assert ev[0].applied and left == kept[:-2]
    assert bool(jnp.all((after.model.memory.tag == -1) == (after.model.memory.rho == 0)))


@pytest.mark.usefixtures("x64")
def test_noiseless_delete_moves_toward_the_retrained_model():
    """Many passes make the model near the regularised ERM optimum; deleting an outlier must move toward
    the exact optimum without it."""
    rng = np.random.default_rng(3)
    n = 60
    x = rng.normal(size=(n, D))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = (x[:, 0] > 0).astype(int)
    labels[0] = 1 - labels[0]  # an influential mislabelled row
    y = np.eye(K)[labels]
    lam = 0.1
    u = ul.make(K, ul.Settings(horizon=1000, gamma_learn=1e-3, noise=False, min_points=4), l2=lam, clip_norm=10.0,
                learning_rate=0.3, memory_size=6)
    state = u.init(D, n, jax.random.key(1))
    step = jax.jit(u.apply)
    for r in range(n):
        state, _ = step(state, ul.OP_CALIBRATE, r, x[r], y[r])
    state = jax.jit(u.finalize)(state)
    state = state._replace(phase=jnp.asarray(ul.INTERLEAVING, jnp.int32))  # skip LEARNING for the test

    def erm(rows):
        xs, ys = x[rows], y[rows]
        return np.linalg.solve(xs.T @ xs + len(rows) * lam * np.eye(D), xs.T @ ys).T

    # Converge the online model toward the ERM optimum with repeated passes through the calibration data.
    for _ in range(30):
        w = state.model.w
        g = (w @ x.T - y.T) @ x / n + lam * w
        state = state._replace(model=state.model._replace(w=w - 0.5 * g))
    before = np.asarray(state.model.w)
    after_state, ev = step(state, ul.OP_DELETE, 0, x[0], y[0])
    assert bool(ev.applied)
    target = erm(np.arange(1, n))
    assert np.linalg.norm(np.asarray(after_state.model.w) - target) < np.linalg.norm(before - target)


@pytest.mark.usefixtures("x64")
def test_ridge_reference_equals_closed_form_after_inserts_and_deletes():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 4))
    y = np.eye(2)[rng.integers(0, 2, 30)]
    lam = 0.2
    ref = ul.ridge_init(4, 2, lam)
    present = []
    ops = [("i", r) for r in range(20)] + [("d", 3), ("d", 11), ("i", 20), ("d", 0)]
    for kind, r in ops:
        if kind == "i":
            ref = ul.ridge_insert(ref, jnp.asarray(x[r]), jnp.asarray(y[r]))
            present.append(r)
        else:
            ref = ul.ridge_delete(ref, jnp.asarray(x[r]), jnp.asarray(y[r]))
            present.remove(r)
        xs, ys = x[present], y[present]
        w = np.linalg.solve(lam * np.eye(4) + xs.T @ xs, xs.T @ ys)
        j = 0.5 * np.sum((xs @ w - ys) ** 2) + 0.5 * lam * np.sum(w * w)
        np.testing.assert_allclose(np.asarray(ref.w), w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(ref.j), j, rtol=1e-9)


def test_apply_scans_and_vmaps_over_seeds():
    x, y = _data()
    u = _make()
    ops = jnp.asarray([ul.OP_CALIBRATE] * 30, jnp.int32)
    rows = jnp.arange(30)

    def run(key):
        state = u.init(D, N, key)

        def body(s, e):
            op, r = e
            return u.apply(s, op, r, jnp.asarray(x)[r], jnp.asarray(y)[r])

        state, ev = jax.lax.scan(body, state, (ops, rows))
        return u.finalize(state), ev

    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(3))
    states, ev = jax.jit(jax.vmap(run))(keys)
    assert ev.loss.shape == (3, 30) and bool(jnp.all(ev.applied))
    single, _ = jax.jit(run)(keys[1])
    np.testing.assert_allclose(np.asarray(states.model.w[1]), np.asarray(single.model.w), rtol=1e-5, atol=1e-6)
    assert int(states.calibration.N_star[1]) == int(single.calibration.N_star)
