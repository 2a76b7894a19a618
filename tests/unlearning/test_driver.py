"""mpjax.unlearning.driver: schedules, deletion targets, chunked event scans and replay."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import unlearning as ul
from mpjax.learners import base, memory_pair
from mpjax.unlearning import driver

K, D, N, S = 3, 5, 90, 2
HYPER = dict(l2=0.1, clip_norm=1.0, learning_rate=0.5, memory_size=4)


def test_period_ops_and_chunks():
    ops = driver.period_ops(3, 2, 12)
    np.testing.assert_array_equal(ops, [1, 1, 1, 2, 2] * 2 + [1, 1])
    pos = np.arange(24).reshape(2, 12)
    got = list(driver.chunks(ops, pos, np.arange(12) % 5 == 4, 5, start=100))
    assert len(got) == 3
    sched, p = got[-1]
    np.testing.assert_array_equal(sched.index, np.arange(110, 115))
    np.testing.assert_array_equal(sched.op, [1, 1, ul.OP_NOOP, ul.OP_NOOP, ul.OP_NOOP])  # padded
    np.testing.assert_array_equal(p, [[10, 11, 0, 0, 0], [22, 23, 0, 0, 0]])
    slots = np.concatenate([s.slot[:len(ops[i * 5:(i + 1) * 5])] for i, (s, _) in enumerate(got)])
    np.testing.assert_array_equal(slots[ops == ul.OP_DELETE], [0, 1, 2, 3])  # the rank of each delete request
    with pytest.raises(ValueError, match="positive period"):
        driver.period_ops(0, 0, 5)


def test_deletion_targets_are_inserted_rows_never_chosen_twice():
    ops = driver.period_ops(4, 1, 200)
    pos = np.asarray(jax.jit(lambda k: driver.deletion_targets(k, ops, 10, 300))(jax.random.key(3)))
    ins = ops == ul.OP_INSERT
    np.testing.assert_array_equal(pos[ins], 10 + np.arange(ins.sum()))
    dels = pos[~ins]
    assert len(set(dels.tolist())) == dels.size  # never the same row twice
    inserted_before = 10 + np.cumsum(ins)[~ins]
    assert np.all(dels < inserted_before)  # only rows inserted before the request
    again = np.asarray(driver.deletion_targets(jax.random.key(3), ops, 10, 300))
    np.testing.assert_array_equal(pos, again)
    assert not np.array_equal(pos, np.asarray(driver.deletion_targets(jax.random.key(4), ops, 10, 300)))


@pytest.mark.usefixtures("x64")
def test_chunked_vmapped_scan_equals_the_event_loop_and_fills_the_delete_buffers():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, N)
    xs = rng.normal(size=(N, D)) + np.eye(K, D)[labels]
    xs /= np.linalg.norm(xs, axis=1, keepdims=True)
    ys = np.eye(K)[labels]
    u = ul.make(K, ul.Settings(mechanism="exact", gamma_learn=50.0, min_points=4), **HYPER)
    rows = np.stack([rng.permutation(N) for _ in range(S)]).astype(np.int32)
    ops = np.concatenate([np.full(20, ul.OP_CALIBRATE), driver.period_ops(3, 1, 24)]).astype(np.int32)
    pos = np.zeros((S, ops.size), np.int32)
    pos[:, :20] = np.arange(20)
    tail = np.asarray(jax.vmap(lambda k: driver.deletion_targets(k, ops[20:], 20, N))(
        jax.random.split(jax.random.key(1), S)))
    pos[:, 20:] = tail
    evaluate = np.zeros(ops.size, bool)
    evaluate[-1] = True
    x_test, l_test = jnp.asarray(xs[:30]), jnp.asarray(labels[:30], jnp.int32)
    n_del = int(np.sum(ops == ul.OP_DELETE))

    step = jax.jit(jax.vmap(lambda c, sch, p, r: driver.run_events(u, c, sch, p, r, jnp.asarray(xs), jnp.asarray(ys),
                                                                   x_test, l_test), in_axes=(0, None, 0, 0)))
    carry = jax.vmap(lambda k: driver.init_carry(u.init(D, N, k), n_del))(jax.random.split(jax.random.key(2), S))
    fin = jax.jit(jax.vmap(u.finalize))
    outs = []
    for i, (sched, p) in enumerate(driver.chunks(ops, pos, evaluate, 10)):
        carry, out = step(carry, sched, p, rows)
        outs.append(out)
        if i == 1:  # the 20 calibration events are done
            carry = carry._replace(state=fin(carry.state))
    applied = np.concatenate([np.asarray(o.applied) for o in outs], axis=1)[:, :ops.size]

    # The same events one by one, seed 0, with apply_detail.
    state = u.init(D, N, jax.random.split(jax.random.key(2), S)[0])
    certs, befores = [], []
    for e in range(ops.size):
        if e == 20:
            state = u.finalize(state)
        r = rows[0, pos[0, e]]
        before = state.model.w
        state, ev, w_cert = u.apply_detail(state, int(ops[e]), int(pos[0, e]), jnp.asarray(xs[r]), jnp.asarray(ys[r]))
        assert bool(ev.applied) == bool(applied[0, e])
        if ops[e] == ul.OP_DELETE:
            certs.append(np.asarray(w_cert))
            befores.append(np.asarray(before))
    np.testing.assert_allclose(np.asarray(carry.state.model.w[0]), np.asarray(state.model.w), atol=1e-12)
    np.testing.assert_allclose(np.asarray(carry.cert[0]), np.stack(certs), atol=1e-12)
    np.testing.assert_allclose(np.asarray(carry.before[0]), np.stack(befores), atol=1e-12)
    acc = np.concatenate([np.asarray(o.test_acc) for o in outs], axis=1)[:, :ops.size]
    assert np.isnan(acc[:, :-1]).all() and np.isfinite(acc[:, -1]).all()
    expect = np.mean(np.argmax(xs[:30] @ np.asarray(state.model.w).T, axis=1) == labels[:30])
    np.testing.assert_allclose(acc[0, -1], expect)


@pytest.mark.usefixtures("x64")
def test_replay_equals_the_learner_on_the_kept_rows_in_order():
    rng = np.random.default_rng(5)
    xs = rng.normal(size=(40, D))
    xs /= np.linalg.norm(xs, axis=1, keepdims=True)
    ys = np.eye(K)[rng.integers(0, K, 40)]
    rows = rng.permutation(40).astype(np.int32)
    mask = rng.random(40) < 0.7
    got = jax.jit(driver.make_replay(HYPER, K, D))(rows, mask, jnp.asarray(xs), jnp.asarray(ys))
    learner = base.multi_output(memory_pair.make(**HYPER), K)
    state = learner.init(D, jax.random.key(0))
    for p in np.nonzero(mask)[0]:
        state, _ = learner.step(state, jnp.asarray(xs[rows[p]]), jnp.asarray(ys[rows[p]]))
    np.testing.assert_allclose(np.asarray(got), np.asarray(state.w), atol=1e-12)


def test_stage_builders():
    cal = driver.fresh_stage(ul.OP_CALIBRATE, 0, 7, 2, 3, 0)
    np.testing.assert_array_equal(cal.pos, [np.arange(7)] * 2)
    np.testing.assert_array_equal(cal.evaluate, [0, 0, 1, 0, 0, 1, 1])
    inj, injected = driver.injection_stage(50, 3, 2, 2, 57)
    np.testing.assert_array_equal(injected, [52, 55, 58])
    assert inj.start == 57 and inj.ops.tolist() == [ul.OP_INSERT] * 9 + [ul.OP_DELETE] * 3
    np.testing.assert_array_equal(inj.pos[1], list(range(50, 59)) + [52, 55, 58])
    assert inj.evaluate.nonzero()[0].tolist() == [8, 11]
    assert driver.learn_length(100, np.array([50, 900, 300]), 200, 650) == 650  # capped
    assert driver.learn_length(100, np.array([50, 250]), 200, 650) == 100  # at least n_learn
    keys = jax.random.split(jax.random.key(0), 2)
    sched = driver.schedule_stage(keys, driver.period_ops(2, 1, 9), 10, 40, 4, 10)
    assert sched.pos.shape == (2, 9) and sched.start == 10
