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
    "Stage",
    "eval_mask",
    "fresh_stage",
    "schedule_stage",
    "injection_stage",
    "learn_length",
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


class Stage(NamedTuple):
    """The events of one stage (host-side NumPy)."""

    ops: np.ndarray  # i32[E] operations, shared by every seed
    pos: np.ndarray  # i32[S, E] stream positions per seed
    evaluate: np.ndarray  # bool[E] evaluate the held-out accuracy after these events
    start: int  # global index of the stage's first event


def eval_mask(n_events: int, every: int) -> np.ndarray:
    """bool[n_events]: every ``every``-th event and the last one."""
    out = (np.arange(n_events) + 1) % every == 0
    out[-1:] = True
    return out


def fresh_stage(op: int, first_pos: int, n_events: int, num_seeds: int, eval_every: int, start: int) -> Stage:
    """``n_events`` events of ``op`` (OP_CALIBRATE or OP_INSERT) at the fresh positions ``first_pos, ...``."""
    return Stage(np.full(n_events, op, np.int32),
                 np.tile(np.arange(first_pos, first_pos + n_events, dtype=np.int32), (num_seeds, 1)),
                 eval_mask(n_events, eval_every), start)


def schedule_stage(keys: jax.Array, ops: np.ndarray, first_pos: int, num_positions: int, eval_every: int,
                   start: int) -> Stage:
    """A schedule of inserts and deletes; the delete targets of seed ``i`` come from :func:`deletion_targets`
    with ``keys[i]`` (give each key its own purpose tag)."""
    pos = np.asarray(jax.vmap(lambda key: deletion_targets(key, ops, first_pos, num_positions))(keys), np.int32)
    return Stage(np.asarray(ops, np.int32), pos, eval_mask(len(ops), eval_every), start)


def injection_stage(first_pos: int, n_rows: int, inserts_between: int, num_seeds: int,
                    start: int) -> tuple[Stage, np.ndarray]:
    """The feature-injection test's events, and the injected positions.

    ``n_rows * (inserts_between + 1)`` inserts at fresh positions from ``first_pos``, every
    ``(inserts_between + 1)``-th being an injected row, then one delete of each injected row
    in insertion order. The held-out accuracy is evaluated after the last insert and at the end.
    """
    n_ins = n_rows * (inserts_between + 1)
    injected = first_pos + np.arange(n_rows) * (inserts_between + 1) + inserts_between
    ops = np.concatenate([np.full(n_ins, core.OP_INSERT), np.full(n_rows, core.OP_DELETE)]).astype(np.int32)
    pos = np.concatenate([first_pos + np.arange(n_ins), injected]).astype(np.int32)
    evaluate = np.zeros(ops.size, bool)
    evaluate[[n_ins - 1, -1]] = True
    return Stage(ops, np.tile(pos, (num_seeds, 1)), evaluate, start), injected


def learn_length(n_learn: int, n_star, n_calibration: int, max_length: int) -> int:
    """L = max(n_learn, max over seeds of N* - n_calibration), at most ``max_length``: the learning
    stage then brings every seed to INTERLEAVING when the data allow it."""
    return int(min(max(n_learn, int(np.max(n_star)) - n_calibration), max_length))


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
            new, _ = memory_pair.insert(hyper, state, x, y, p)
            return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, state), None

        state, _ = lax.scan(body, state, (jnp.arange(mask.shape[0], dtype=jnp.int32), mask))
        return state.w

    return replay
