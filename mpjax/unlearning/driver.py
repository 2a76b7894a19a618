"""Scan drivers of a deletion experiment: schedules, deletion targets, event scans, replay.

A deletion run of one seed is a sequence of events over *stream positions*: position ``p``
is the ``p``-th distinct row the seed inserts, and ``rows[p]`` is its row in the data table
(passed once, shared by every seed). The unlearner identifies a row by its position.

Stages (scans of :func:`run_events`; the caller ``vmap``s over seeds, passing ``ops``
unbatched so that :mod:`mpjax.unlearning.core` branches on it instead of computing every
branch, and cuts every stage into equal chunks (:func:`chunks`) so that one compiled
program serves them all):

* calibration: ``n_cal`` ``OP_CALIBRATE`` events at positions ``0..n_cal-1``, then
  ``unlearner.finalize`` between scans;
* learning: inserts until N* (the phase machine opens deletions there);
* interleaving: a schedule of inserts and deletes (:func:`period_ops`) whose delete
  targets are an oblivious, seeded choice (:func:`deletion_targets`) or given explicitly.

Per event the scan emits scalars only (:class:`Out`). The models before and after each
delete request (the certified, pre-noise model of the mechanism) go into fixed buffers in
the carry, one slot per delete request, for exact host-side references.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mpjax.learners import base, memory_pair
from mpjax.unlearning import core

__all__ = [
    "Carry",
    "Schedule",
    "Out",
    "period_ops",
    "deletion_targets",
    "init_carry",
    "run_events",
    "chunks",
    "make_replay",
]


class Carry(NamedTuple):
    state: core.UnlearningState
    before: jax.Array  # f[slots, K, d] published model before each delete request
    cert: jax.Array  # f[slots, K, d] certified (pre-noise) model of each delete request


class Schedule(NamedTuple):
    """Per-event inputs shared by every seed (pass them unbatched under ``vmap``)."""

    index: jax.Array  # i32[E] global event index
    op: jax.Array  # i32[E] operation
    evaluate: jax.Array  # bool[E] evaluate the held-out accuracy after the event
    slot: jax.Array  # i32[E] buffer slot of a delete request (its rank among the stage's delete requests)


class Out(NamedTuple):
    """Per-event scalars of one seed (the scan's ys)."""

    applied: jax.Array
    reason: jax.Array
    loss: jax.Array  # NaN unless an applied insert
    correct: jax.Array
    phase: jax.Array
    eps_spent: jax.Array
    capacity_remaining: jax.Array
    noise_norm: jax.Array
    sigma: jax.Array
    bound: jax.Array
    passes: jax.Array
    test_acc: jax.Array  # held-out accuracy of the published model after the event; NaN when not evaluated


def period_ops(inserts: int, deletes: int, n_events: int) -> np.ndarray:
    """i32[n_events]: ``inserts`` OP_INSERT then ``deletes`` OP_DELETE, repeating."""
    if inserts < 0 or deletes < 0 or inserts + deletes < 1 or n_events < 0:
        raise ValueError(f"need inserts, deletes >= 0 with a positive period and n_events >= 0; got "
                         f"inserts={inserts}, deletes={deletes}, n_events={n_events}")
    period = np.asarray([core.OP_INSERT] * inserts + [core.OP_DELETE] * deletes, np.int32)
    return np.tile(period, -(-n_events // len(period)))[:n_events]


def deletion_targets(key: jax.Array, ops, first_pos: int, num_positions: int) -> jax.Array:
    """i32[E] positions of the events ``ops`` (pure; vmap over ``key``).

    Inserts take the next fresh positions ``first_pos, first_pos + 1, ...``; a delete takes
    a uniform random position among those inserted before it that no earlier delete
    request chose (oblivious: refusals do not change the schedule).
    """
    ops = jnp.asarray(ops)
    is_ins = ops == core.OP_INSERT
    ins_before = first_pos + jnp.cumsum(is_ins) - is_ins.astype(jnp.int32)  # positions inserted before event j
    positions = jnp.arange(num_positions)

    def body(chosen, inp):
        j, ins, n_before = inp
        u = jax.random.uniform(jax.random.fold_in(key, j), (num_positions,))
        score = jnp.where((positions < n_before) & ~chosen, u, -1.0)
        pick = jnp.argmax(score).astype(jnp.int32)
        is_del = ~ins
        chosen = chosen.at[pick].set(chosen[pick] | is_del)
        return chosen, jnp.where(is_del, pick, n_before.astype(jnp.int32))

    _, pos = lax.scan(body, jnp.zeros((num_positions,), bool), (jnp.arange(ops.shape[0]), is_ins, ins_before))
    return pos


def init_carry(state: core.UnlearningState, slots: int) -> Carry:
    """A carry with ``slots`` delete-request buffers (0 is allowed)."""
    z = jnp.zeros((slots, *state.model.w.shape), state.model.w.dtype)
    return Carry(state, z, z)


def run_events(u: core.Unlearner, carry: Carry, schedule: Schedule, pos, rows, xs, ys, x_test,
               labels_test) -> tuple[Carry, Out]:
    """One ``lax.scan`` over events.

    Args:
      u: the unlearner.
      carry: from :func:`init_carry` or a previous scan.
      schedule: the shared per-event inputs (unbatched: the unlearner then branches on the op,
        and the delete buffers are written in place at an unbatched slot).
      pos: i32[E] stream positions.
      rows: i32[P] data row of each position.
      xs, ys: f[n, d], f[n, K] the data table.
      x_test, labels_test: f[n_test, d], i32[n_test] held-out rows (n_test may be 0).
    """
    slots = carry.before.shape[0]

    def accuracy(w):
        if x_test.shape[0] == 0:
            return jnp.asarray(jnp.nan, w.dtype)
        return jnp.mean(jnp.argmax(x_test @ w.T, axis=1) == labels_test).astype(w.dtype)

    def body(c, inp):
        (_, op, ev_now, slot), p = inp
        r = rows[p]
        x, y = xs[r], ys[r]
        before = c.state.model.w
        state, ev, w_cert = u.apply_detail(c.state, op, p, x, y)
        is_del = op == core.OP_DELETE
        buf_b, buf_c = c.before, c.cert
        if slots:
            slot = jnp.clip(slot, 0, slots - 1)
            buf_b = lax.dynamic_update_index_in_dim(buf_b, jnp.where(is_del, before, buf_b[slot]), slot, 0)
            buf_c = lax.dynamic_update_index_in_dim(buf_c, jnp.where(is_del, w_cert, buf_c[slot]), slot, 0)
        acc = lax.cond(ev_now, accuracy, lambda w: jnp.asarray(jnp.nan, w.dtype), state.model.w)
        out = Out(ev.applied, ev.reason, ev.loss, ev.correct, ev.phase, ev.eps_spent, ev.capacity_remaining,
                  ev.noise_norm, ev.sigma, ev.bound, ev.passes, acc)
        return Carry(state, buf_b, buf_c), out

    sched = Schedule(*(jnp.asarray(a, t) for a, t in zip(schedule, (jnp.int32, jnp.int32, bool, jnp.int32))))
    return lax.scan(body, carry, (sched, jnp.asarray(pos, jnp.int32)))


def chunks(ops: np.ndarray, pos: np.ndarray, evaluate: np.ndarray, size: int, start: int = 0):
    """Host-side: a stage's events cut into chunks of ``size`` (the last padded with OP_NOOP), so
    one compiled :func:`run_events` of length ``size`` serves every stage.

    Args:
      ops: i32[E]; pos: i[S, E] (per seed) or i[E]; evaluate: bool[E].
      start: global index of the first event.

    Yields:
      ``(Schedule, pos)`` of ``size`` events each (NumPy).
    """
    ops = np.asarray(ops, np.int32)
    pos = np.asarray(pos, np.int32)
    evaluate = np.asarray(evaluate, bool)
    is_del = ops == core.OP_DELETE
    slot = (np.cumsum(is_del) - is_del).astype(np.int32)
    n = ops.shape[0]
    for lo in range(0, n, size):
        k = min(size, n - lo)
        pad = size - k

        def cut(a, fill):
            return np.concatenate([a[..., lo:lo + k], np.full((*a.shape[:-1], pad), fill, a.dtype)], axis=-1)

        yield (Schedule(np.arange(start + lo, start + lo + size, dtype=np.int32), cut(ops, core.OP_NOOP),
                        cut(evaluate, False), cut(slot, 0)), cut(pos, 0))


def make_replay(learner_hyper: dict, num_outputs: int, dim: int):
    """``replay(rows, mask, xs, ys) -> W f[K, d]``: the noise-free online learner on the masked positions.

    The unlearner's initial model (zeros, empty memory) and its insert (``memory_pair.insert``
    with the same hyper-parameters, built here, outside any trace), skipping positions whose
    ``mask`` is false: what the online learner would hold had those rows never come.
    """
    scalar = memory_pair.make(**learner_hyper)
    hyper = scalar.hyper
    learner = base.multi_output(scalar, num_outputs)

    def replay(rows, mask, xs, ys):
        state = learner.init(dim, jax.random.key(0))

        def body(state, inp):
            p, keep = inp
            x, y = xs[rows[p]], ys[rows[p]]
            new, _ = jax.vmap(lambda s, yk: memory_pair.insert(hyper, s, x, yk, p))(state, y)
            return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, state), None

        state, _ = lax.scan(body, state, (jnp.arange(mask.shape[0], dtype=jnp.int32), mask))
        return state.w

    return replay
