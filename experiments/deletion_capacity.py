"""Deletion capacity of the certified Memory-Pair learner: calibrate, learn, interleave.

    python -m experiments.deletion_capacity --dataset=covtype
    python -m experiments.deletion_capacity --dataset=covtype --schedule=all --accountant=all

Per (dataset, schedule, accountant), all seeds run in one ``vmap``, one compiled
program per stage (``unlearning.finalize`` runs binary searches, so it sits
between scans, never inside one):

* A: ``n_calibration`` OP_CALIBRATE events over the seed's ``iid`` stream, then
  ``jax.vmap(u.finalize)`` -> (G, D, c, C, N*, m, sigma, eps_step, delta_step).
* B: ``L = min(max_seeds(N*) - n_calibration, learn_cap)`` OP_INSERT events (0 if
  every N* <= n_calibration). A seed with a smaller N* is INTERLEAVING earlier
  and simply keeps inserting; a seed with N* > n_calibration + learn_cap stays in
  LEARNING and every delete is refused (recorded as ``n_star_exceeds_cap``).
* C: ``n_interleave`` events of a schedule: ``uniform`` (``uniform_inserts``
  inserts, 1 delete), ``burst`` (``burst_inserts`` inserts, ``burst_deletes``
  deletes), ``trickle`` (``trickle_inserts`` inserts, 1 delete), repeating. The
  op pattern is the same for every seed; the deletion targets are an oblivious,
  seeded uniform choice among the rows inserted before the request, never the
  same row twice. Requests beyond the capacity m are refused by the odometer.
* D: replays of the noise-free Memory-Pair learner (same hyper-parameters, same
  order) on the inserted rows minus the rows whose deletion was *applied*, at
  ``replay_checkpoints`` evenly spaced stage-C events (vmap over checkpoints x seeds).

Row ids. Inside the unlearner a row is a *stream position* (the p-th inserted
row of the seed), which indexes the data through the seed's permutation; the
data row of every event is saved in the npz (``row``).

Per event (every stage) the scan carries an exact float32 :class:`RidgeRef`
(ridge strength ``config.lam``), updated on every applied calibrate/insert
(``ridge_insert``) and delete (``ridge_delete``), and the host computes:

* ``regret`` = sum over applied inserts so far (calibration included) of the
  Memory-Pair loss *before* the insert (``Event.loss``), minus ``RidgeRef.j``,
  the optimal ridge objective over the rows *present* (inserted, not deleted).
  Losses paid on rows that were later deleted stay in the first sum.
* ``acc``: prequential accuracy, the running mean of ``Event.correct`` over
  applied inserts.
* ``eps_spent``, ``capacity_remaining``: the odometer's (0 before ``finalize``).
* ``dist_to_retrain`` = |W_mp - W_ridge|_F / |W_ridge|_F, W_ridge the exact
  ridge (``lam``) on the rows present.
* ``dist_to_replay`` = |W_mp - W_replay|_F / |W_replay|_F at the replay
  checkpoints only; NaN at every other event.

Outputs (atomic) under ``--workdir``: ``deletion_{dataset}_{schedule}_{accountant}``
``.csv`` (mean over seeds, then ``_lo``/``_hi`` 95% bands; ``op`` is the schedule's
op, identical for all seeds), ``.npz`` (per-seed arrays at every event),
``.json`` (theory vs empirical, config, provenance, timings) and ``.png``;
``deletion_capacity_{dataset}.{csv,json,png}``: capacity m against epsilon per
accountant at the seed-mean calibration constants of stage A, with the
binding-term analysis and what would admit ``target_deletions`` deletions.
"""

from __future__ import annotations

import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import app, flags
from ml_collections import config_flags
from tqdm import tqdm

from experiments import common
from mpjax import run as run_lib
from mpjax import streams
from mpjax import unlearning as ul
from mpjax.data import DATA_SOURCES, DATASETS, load_dataset
from mpjax.learners import base, memory_pair
from mpjax.privacy import accountants as acc_lib
from mpjax.privacy import calibrator as cal
from mpjax.privacy import odometer as odo

SCHEDULES = ("uniform", "burst", "trickle")
ACCOUNTANTS = tuple(acc_lib.ACCOUNTANTS)
CSV_COLUMNS = ("event", "op", "regret", "acc", "eps_spent", "capacity_remaining", "dist_to_retrain",
               "dist_to_replay")
_BANDED = CSV_COLUMNS[2:]
# Purpose tag of the deletion targets (beyond mpjax.run's TAG_STREAM/TAG_INIT/TAG_LEARNER). Never renumber.
TAG_DELETIONS = 101


def define_flags():
    """Defines this entry point's absl flags; called only when run as a program, so that
    importing both experiments (tests, notebooks) does not define the same flags twice."""
    config = config_flags.DEFINE_config_file("config", "configs/deletion_capacity.py", lock_config=True)
    flags.DEFINE_enum("dataset", None, list(DATASETS), "Data set.")
    flags.DEFINE_enum("schedule", None, [*SCHEDULES, "all"], "Interleaving schedule, or all of them.")
    flags.DEFINE_enum("accountant", None, [*ACCOUNTANTS, "all"], "Privacy accountant, or all of them.")
    flags.DEFINE_integer("T", None, "Horizon the odometer spreads the regret budget over (Settings.horizon).")
    flags.DEFINE_integer("seed", None, "Integer seed of the run.")
    flags.DEFINE_integer("num_seeds", None, "Replicates (one vmap).")
    flags.DEFINE_string("workdir", None, "Results folder.")
    flags.DEFINE_enum("data_source", None, list(DATA_SOURCES), "Where the data comes from.")
    flags.DEFINE_bool("require_real", None, "Refuse simulated or subset data.")
    flags.DEFINE_bool("overwrite", None, "Replace results of a different configuration.")
    return config


FLAGS = flags.FLAGS

_NAMED = ("dataset", "schedule", "accountant", "T", "seed", "num_seeds", "workdir", "data_source", "require_real",
          "overwrite")
_NON_RESULT_FIELDS = ("workdir", "overwrite")


def _check_config(cfg):
    def bad(msg):
        raise app.UsageError(msg)

    if cfg.dataset not in DATASETS:
        bad(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(DATASETS)}")
    if cfg.schedule not in (*SCHEDULES, "all"):
        bad(f"unknown schedule {cfg.schedule!r}; valid: {', '.join((*SCHEDULES, 'all'))}")
    if cfg.accountant not in (*ACCOUNTANTS, "all"):
        bad(f"unknown accountant {cfg.accountant!r}; valid: {', '.join((*ACCOUNTANTS, 'all'))}")
    for name in ("T", "num_seeds", "n_calibration", "n_interleave", "uniform_inserts", "burst_inserts",
                 "burst_deletes", "trickle_inserts", "replay_checkpoints", "log_every"):
        if cfg[name] < 1:
            bad(f"config.{name} must be >= 1, got {cfg[name]}")
    if cfg.learn_cap < 0:
        bad(f"config.learn_cap must be >= 0, got {cfg.learn_cap}")
    if not cfg.lam > 0:
        bad(f"config.lam must be > 0, got {cfg.lam}")
    if cfg.privacy.bound not in cal.BOUNDS:
        bad(f"config.privacy.bound must be one of {', '.join(cal.BOUNDS)}, got {cfg.privacy.bound!r}")


def _load(cfg, dataset):
    return load_dataset(dataset, data_source=cfg.data_source, require_real=cfg.require_real, seed=cfg.seed,
                        max_rows=cfg.max_rows, image_size=None if dataset == "covtype" else 14,
                        grayscale=dataset == "cifar10")


# --------------------------------------------------------------------------- schedules


def schedule_ops(cfg, schedule: str) -> np.ndarray:
    """i32[n_interleave]: the stage-C op pattern (OP_INSERT / OP_DELETE), the same for every seed."""
    if schedule == "uniform":
        period = [ul.OP_INSERT] * cfg.uniform_inserts + [ul.OP_DELETE]
    elif schedule == "burst":
        period = [ul.OP_INSERT] * cfg.burst_inserts + [ul.OP_DELETE] * cfg.burst_deletes
    elif schedule == "trickle":
        period = [ul.OP_INSERT] * cfg.trickle_inserts + [ul.OP_DELETE]
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    reps = -(-cfg.n_interleave // len(period))
    return np.tile(np.asarray(period, np.int32), reps)[: cfg.n_interleave]


def checkpoint_events(cfg) -> np.ndarray:
    """Stage-C event indices of the replay checkpoints: evenly spaced, the last event included."""
    n, c = cfg.n_interleave, min(cfg.replay_checkpoints, cfg.n_interleave)
    return np.unique(np.round(np.arange(1, c + 1) * n / c).astype(np.int64) - 1)


def deletion_targets(key, ops_c, first_pos: int, num_positions: int) -> jax.Array:
    """i32[n_interleave] stream positions of the stage-C events (pure; vmap over ``key``).

    Inserts take the next fresh positions ``first_pos, first_pos + 1, ...``; a delete
    takes a uniform random position among those inserted before it that no earlier
    delete request chose (oblivious: refusals do not change the schedule).
    """
    ops_c = jnp.asarray(ops_c)
    is_ins = ops_c == ul.OP_INSERT
    ins_before = first_pos + jnp.cumsum(is_ins) - is_ins.astype(jnp.int32)  # inserts before event j
    key = run_lib.purpose_key(key, TAG_DELETIONS)
    positions = jnp.arange(num_positions)

    def body(chosen, inp):
        j, ins, n_before = inp
        u = jax.random.uniform(jax.random.fold_in(key, j), (num_positions,))
        score = jnp.where((positions < n_before) & ~chosen, u, -1.0)
        pick = jnp.argmax(score).astype(jnp.int32)
        is_del = ~ins
        chosen = chosen.at[pick].set(chosen[pick] | is_del)
        return chosen, jnp.where(is_del, pick, n_before.astype(jnp.int32))

    _, pos = jax.lax.scan(body, jnp.zeros((num_positions,), bool),
                          (jnp.arange(ops_c.shape[0]), is_ins, ins_before))
    return pos


# --------------------------------------------------------------------------- the scans


class Carry(NamedTuple):
    state: ul.UnlearningState
    ref: ul.RidgeRef


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
    comparator: jax.Array  # RidgeRef.j after the event
    dist_to_retrain: jax.Array


def _event(u, carry: Carry, op, pos, rows, xs, ys):
    """One event through the unlearner and the exact reference."""
    r = rows[pos]
    x, y = xs[r], ys[r]
    state, ev = u.apply(carry.state, op, pos, x, y)
    ins = ev.applied & ((op == ul.OP_CALIBRATE) | (op == ul.OP_INSERT))
    dele = ev.applied & (op == ul.OP_DELETE)
    up, down = ul.ridge_insert(carry.ref, x, y), ul.ridge_delete(carry.ref, x, y)
    ref = jax.tree_util.tree_map(lambda a, b, c: jnp.where(ins, a, jnp.where(dele, b, c)), up, down, carry.ref)
    w_ridge = ref.w.T
    norm = jnp.linalg.norm(w_ridge)
    dist = jnp.linalg.norm(state.model.w - w_ridge) / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny)
    out = Out(ev.applied, ev.reason, ev.loss, ev.correct, ev.phase, ev.eps_spent, ev.capacity_remaining,
              ev.noise_norm, ref.j, dist)
    return Carry(state, ref), out


def make_stages(cfg, u, dim: int, num_outputs: int, num_positions: int):
    """The per-seed stage functions (vmap them over seeds, jit once each)."""
    n_cal = cfg.n_calibration

    def stage_a(key, xs, ys, labels):
        rows = streams.make_stream("iid", run_lib.purpose_key(key, run_lib.TAG_STREAM), labels, n_cal,
                                   num_classes=num_outputs, is_image=False, raw_dim=1).idx
        state = u.init(dim, num_positions, run_lib.purpose_key(key, run_lib.TAG_LEARNER))
        carry = Carry(state, ul.ridge_init(dim, num_outputs, cfg.lam, xs.dtype))
        ops = jnp.full((n_cal,), ul.OP_CALIBRATE, jnp.int32)
        carry, out = jax.lax.scan(lambda c, i: _event(u, c, i[0], i[1], rows, xs, ys), carry,
                                  (ops, jnp.arange(n_cal, dtype=jnp.int32)))
        return carry, out, rows

    def stage_b(carry, rows, xs, ys, start, length):
        ops = jnp.full((length,), ul.OP_INSERT, jnp.int32)
        pos = start + jnp.arange(length, dtype=jnp.int32)
        return jax.lax.scan(lambda c, i: _event(u, c, i[0], i[1], rows, xs, ys), carry, (ops, pos))

    def stage_c(carry, rows, ops, pos, ckpts, xs, ys):
        k = ckpts.shape[0]
        buf = (jnp.zeros((k, *carry.state.model.w.shape), xs.dtype), jnp.zeros((k, *carry.ref.w.shape), xs.dtype))

        def body(c, inp):
            (carry, (bw, br)), (j, op, p) = c, inp
            carry, out = _event(u, carry, op, p, rows, xs, ys)
            hit = (ckpts == j)[:, None, None]
            bw = jnp.where(hit, carry.state.model.w[None], bw)
            br = jnp.where(hit, carry.ref.w[None], br)
            return (carry, (bw, br)), out

        (carry, (bw, br)), out = jax.lax.scan(body, (carry, buf),
                                              (jnp.arange(ops.shape[0], dtype=jnp.int32), ops, pos))
        return carry, out, bw, br

    return stage_a, stage_b, stage_c


def make_replay(u, learner_hyper: dict, dim: int, num_outputs: int):
    """``replay(rows, mask, xs, ys) -> W f[K, d]``: the noise-free learner on the masked positions, in order.

    The same initial model as ``u.init`` (zeros, empty memory) and the same insert
    (``memory_pair.insert`` with the unlearner's hyper-parameters), skipping the
    positions whose ``mask`` is false.
    """
    hyper = u.hyper
    learner = base.multi_output(memory_pair.make(**learner_hyper), num_outputs)  # init only

    def replay(rows, mask, xs, ys):
        state = learner.init(dim, jax.random.key(0))

        def body(state, inp):
            p, keep = inp
            x, y = xs[rows[p]], ys[rows[p]]
            new, _ = memory_pair.insert(hyper, state, x, y, p)
            return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, state), None

        state, _ = jax.lax.scan(body, state, (jnp.arange(mask.shape[0], dtype=jnp.int32), mask))
        return state.w

    return replay


def settings_for(cfg, accountant: str) -> ul.Settings:
    p = cfg.privacy
    return ul.Settings(horizon=int(cfg.T), gamma_learn=float(p.gamma_learn), gamma_priv=float(p.gamma_priv),
                       eps_total=float(p.eps_total), delta_total=float(p.delta_total), delta_B=float(p.delta_B),
                       accountant=accountant, bound=str(p.bound), quantile=float(p.quantile),
                       min_points=int(p.min_points), window=int(p.window), noise=bool(p.noise),
                       max_deletions=int(p.max_deletions))


def make_unlearner(cfg, num_outputs: int, accountant: str) -> ul.Unlearner:
    return ul.make(num_outputs, settings_for(cfg, accountant), **dict(cfg.learner))


# --------------------------------------------------------------------------- stage A (shared per dataset)


def _compile_run(fn, *args):
    with common.Stopwatch() as ct:
        compiled = jax.jit(fn).lower(*args).compile()
    with common.Stopwatch() as rt:
        with jax.transfer_guard("disallow"):
            out = compiled(*args)
        out = jax.block_until_ready(out)
    return out, ct.seconds, rt.seconds


class Prepared(NamedTuple):
    data: object
    xs: jax.Array
    ys: jax.Array
    labels: jax.Array
    keys: jax.Array
    num_positions: int
    stage_a: tuple  # (carry, out, rows) device arrays, pre-finalize
    times: dict


def num_positions_for(cfg) -> int:
    n_ins_c = max(int(np.sum(schedule_ops(cfg, s) == ul.OP_INSERT)) for s in SCHEDULES)
    return cfg.n_calibration + cfg.learn_cap + n_ins_c


def prepare(cfg, data) -> Prepared:
    """Loads the data on device and runs stage A (calibration) once for every schedule x accountant."""
    xs = np.asarray(data.x, np.float32)
    ys = np.asarray(data.y, np.float32)
    run_lib.validate_data(xs, ys, name=data.name)
    num_positions = num_positions_for(cfg)
    if num_positions > xs.shape[0]:
        raise ValueError(f"{data.name}: {xs.shape[0]} rows, but the run may insert up to {num_positions} distinct "
                         "rows (n_calibration + learn_cap + stage-C inserts); lower those or load more rows")
    u = make_unlearner(cfg, data.num_classes, "basic")  # stage A does not use the accountant
    stage_a, _, _ = make_stages(cfg, u, xs.shape[1], data.num_classes, num_positions)
    keys = jax.device_put(run_lib.seed_keys(cfg.seed, cfg.num_seeds))
    xs_d, ys_d = jax.device_put(xs), jax.device_put(ys)
    labels_d = jax.device_put(np.asarray(data.labels, np.int32))
    out, c_s, r_s = _compile_run(jax.vmap(stage_a, in_axes=(0, None, None, None)), keys, xs_d, ys_d, labels_d)
    return Prepared(data, xs_d, ys_d, labels_d, keys, num_positions, out, {"stage_a": (c_s, r_s)})


# --------------------------------------------------------------------------- one cell


def _cat(*outs):
    return jax.tree_util.tree_map(lambda *a: np.concatenate([np.asarray(v) for v in a], axis=1), *outs)


def run_cell(cfg, prep: Prepared, schedule: str, accountant: str) -> dict:
    """Finalize, stage B, stage C and the replays of one (schedule, accountant), all seeds."""
    data = prep.data
    k, dim = data.num_classes, prep.xs.shape[1]
    n_cal, S = cfg.n_calibration, cfg.num_seeds
    u = make_unlearner(cfg, k, accountant)
    _, stage_b, stage_c = make_stages(cfg, u, dim, k, prep.num_positions)
    times = {"stage_a": prep.times["stage_a"]}
    carry_a, out_a, _ = prep.stage_a

    # Finalize (between scans): calibration constants, N*, capacity.
    state, c_s, r_s = _compile_run(jax.vmap(u.finalize), carry_a.state)
    times["finalize"] = (c_s, r_s)
    carry = Carry(state, carry_a.ref)
    calib = jax.device_get(state.calibration)
    odom = jax.device_get(state.odometer)
    n_star = np.asarray(calib.N_star, np.int64)
    L = int(min(max(int(n_star.max()) - n_cal, 0), cfg.learn_cap))
    exceeds = n_star > n_cal + L

    ops_c = schedule_ops(cfg, schedule)
    n_ins_c = int(np.sum(ops_c == ul.OP_INSERT))
    P = n_cal + L + n_ins_c
    # Stream rows for every position (the iid permutation; its prefix is stage A's rows).
    stream_fn = jax.vmap(lambda key, labels: streams.make_stream(
        "iid", run_lib.purpose_key(key, run_lib.TAG_STREAM), labels, P, num_classes=k, is_image=False,
        raw_dim=1).idx, in_axes=(0, None))
    rows = jax.jit(stream_fn)(prep.keys, prep.labels)
    rows = jnp.concatenate([rows, jnp.zeros((S, prep.num_positions - P), jnp.int32)], axis=1)
    if not np.array_equal(np.asarray(rows[:, :n_cal]), np.asarray(prep.stage_a[2])):
        raise AssertionError("stream prefix differs from stage A's rows")
    pos_c = jax.jit(jax.vmap(lambda key: deletion_targets(key, ops_c, n_cal + L, P)))(prep.keys)

    outs = [out_a]
    if L > 0:
        (carry, out_b), c_s, r_s = _compile_run(
            jax.vmap(lambda c, r, x, y: stage_b(c, r, x, y, n_cal, L), in_axes=(0, 0, None, None)),
            carry, rows, prep.xs, prep.ys)
        outs.append(out_b)
        times["stage_b"] = (c_s, r_s)
    ckpts = checkpoint_events(cfg)
    ops_d, ckpts_d = jax.device_put(ops_c), jax.device_put(ckpts.astype(np.int32))
    (carry, out_c, w_ck, r_ck), c_s, r_s = _compile_run(
        jax.vmap(stage_c, in_axes=(0, 0, None, 0, None, None, None)),
        carry, rows, ops_d, pos_c, ckpts_d, prep.xs, prep.ys)
    times["stage_c"] = (c_s, r_s)
    outs.append(out_c)
    out = _cat(*outs)

    # Event table (global event index g over the three stages).
    E = n_cal + L + cfg.n_interleave
    ops = np.concatenate([np.full(n_cal, ul.OP_CALIBRATE), np.full(L, ul.OP_INSERT), ops_c]).astype(np.int32)
    pos = np.concatenate([np.tile(np.arange(n_cal + L), (S, 1)), np.asarray(pos_c)], axis=1)
    rows_np = np.asarray(rows)
    data_row = np.take_along_axis(rows_np, pos, axis=1)

    # Stage D: replays at the checkpoints (insert positions kept minus applied deletes up to there).
    g_ck = n_cal + L + ckpts
    applied = np.asarray(out.applied)
    is_del = (ops == ul.OP_DELETE)[None, :] & applied
    mask = np.zeros((S, len(ckpts), prep.num_positions), bool)
    for ci, g in enumerate(g_ck):
        n_ins = int(np.sum(ops[: g + 1] != ul.OP_DELETE))
        mask[:, ci, :n_ins] = True
        for s in range(S):
            mask[s, ci, pos[s, : g + 1][is_del[s, : g + 1]]] = False
    replay = make_replay(u, dict(cfg.learner), dim, k)
    w_rep, c_s, r_s = _compile_run(
        jax.vmap(jax.vmap(replay, in_axes=(None, 0, None, None)), in_axes=(0, 0, None, None)),
        rows, jax.device_put(mask), prep.xs, prep.ys)
    times["replay"] = (c_s, r_s)
    w_ck, r_ck, w_rep = (np.asarray(a, np.float64) for a in (w_ck, r_ck, w_rep))
    dist_replay_ck = (np.linalg.norm(w_ck - w_rep, axis=(2, 3))
                      / np.maximum(np.linalg.norm(w_rep, axis=(2, 3)), np.finfo(np.float32).tiny))

    return {
        "schedule": schedule, "accountant": accountant, "L": L, "E": E, "ops": ops, "pos": pos,
        "row": data_row, "out": jax.tree_util.tree_map(np.asarray, out), "calibration": calib, "odometer": odom,
        "n_star_exceeds_cap": exceeds, "checkpoints": g_ck, "w_mp_ckpt": w_ck, "w_ridge_ckpt": r_ck,
        "w_replay_ckpt": w_rep, "dist_replay_ckpt": dist_replay_ck, "times": times, "n_interleave_inserts": n_ins_c,
    }


def per_event(res) -> dict[str, np.ndarray]:
    """Per-seed f64[S, E] metric curves from the scan outputs (host side)."""
    out = res["out"]
    loss = np.nan_to_num(np.asarray(out.loss, np.float64), nan=0.0)
    ins = np.asarray(out.applied) & (res["ops"] != ul.OP_DELETE)[None, :]
    cum_loss = np.cumsum(loss, axis=1)
    n_ins = np.cumsum(ins, axis=1)
    n_cor = np.cumsum(np.asarray(out.correct) & ins, axis=1)
    comparator = np.asarray(out.comparator, np.float64)
    dist_replay = np.full(cum_loss.shape, np.nan)
    dist_replay[:, res["checkpoints"]] = res["dist_replay_ckpt"]
    return {
        "regret": cum_loss - comparator,
        "acc": n_cor / np.maximum(n_ins, 1),
        "eps_spent": np.asarray(out.eps_spent, np.float64),
        "capacity_remaining": np.asarray(out.capacity_remaining, np.float64),
        "dist_to_retrain": np.asarray(out.dist_to_retrain, np.float64),
        "dist_to_replay": dist_replay,
        "cum_loss": cum_loss,
        "comparator": comparator,
        "inserts": n_ins,
    }


def event_frame(cfg, res, curves) -> pd.DataFrame:
    """The CSV: seed means (then 95% bands) at every ``log_every``-th event and the last."""
    E = res["E"]
    idx = np.unique(np.concatenate([np.arange(0, E, cfg.log_every), [E - 1], res["checkpoints"]]))
    frame = {"event": idx, "op": [ul.OP_NAMES[int(o)] for o in res["ops"][idx]]}
    bands = {}
    for name in _BANDED:
        v = curves[name][:, idx]
        if name == "dist_to_replay":
            mean, lo, hi = (np.full(len(idx), np.nan) for _ in range(3))
            ok = np.isfinite(v).all(axis=0)
            if ok.any():
                mean[ok], lo[ok], hi[ok] = common.mean_ci(v[:, ok])
        else:
            mean, lo, hi = common.mean_ci(v)
        frame[name] = mean
        bands[f"{name}_lo"], bands[f"{name}_hi"] = lo, hi
    frame.update(bands)
    return pd.DataFrame(frame)


# --------------------------------------------------------------------------- theory and capacity


def _calibration_mean(calib) -> cal.Calibration:
    """Seed-mean calibration constants (float32), as used for the capacity curve."""
    f = lambda a: jnp.asarray(np.mean(np.asarray(a, np.float64)), jnp.float32)  # noqa: E731
    return cal.Calibration(G=f(calib.G), D=f(calib.D), c=f(calib.c), C=f(calib.C), kappa=f(calib.kappa),
                           N_star=jnp.asarray(int(np.max(calib.N_star)), jnp.int32),
                           n_points=jnp.asarray(int(np.min(calib.n_points)), jnp.int32),
                           status=jnp.asarray(int(np.max(calib.status)), jnp.int32))


def calibration_constants(calib) -> dict:
    """The seed-mean constants as plain floats (what the capacity JSON records and tests reuse)."""
    c = _calibration_mean(calib)
    return {"G": float(c.G), "D": float(c.D), "c": float(c.c), "C": float(c.C), "kappa": float(c.kappa)}


def calibration_from_constants(const: dict) -> cal.Calibration:
    """The Calibration the odometer sees: G is the clipping bound sqrt(K) clip_norm, as in unlearning.finalize."""
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return cal.Calibration(G=f(const["G_sensitivity"]), D=f(const["D"]), c=f(const["c"]), C=f(const["C"]),
                           kappa=f(const["kappa"]), N_star=jnp.asarray(1, jnp.int32),
                           n_points=jnp.asarray(0, jnp.int32), status=jnp.asarray(0, jnp.int32))


def odometer_grid(cfg, calibration, dim: int, accountant: str, *, eps=None, gamma=None, lam=None, T=None):
    """``odometer.finalize`` vmapped over one swept argument (the others from the config); a dict of arrays."""
    p = cfg.privacy
    base_args = {"T": float(cfg.T), "gamma": float(p.gamma_priv), "eps": float(p.eps_total), "lam": float(cfg.learner.l2)}
    swept = {n: v for n, v in (("eps", eps), ("gamma", gamma), ("lam", lam), ("T", T)) if v is not None}
    (name, grid), = swept.items()

    def one(v):
        a = {**base_args, name: v}
        return odo.finalize(calibration, a["T"], a["gamma"], a["eps"], float(p.delta_total), a["lam"],
                            float(p.delta_B), accountant=accountant, dim=dim, max_deletions=int(p.max_deletions))

    out = jax.jit(jax.vmap(one))(jnp.asarray(grid, jnp.float32))
    return jax.tree_util.tree_map(np.asarray, out)


def eps_grid(cfg) -> np.ndarray:
    c = cfg.capacity
    grid = np.geomspace(c.eps_min, c.eps_max, c.eps_points)
    return np.unique(np.concatenate([grid, [cfg.privacy.eps_total]]).astype(np.float32)).astype(np.float64)


def bound_terms(cfg, calibration, m, accountant: str, dim: int) -> dict:
    """The three terms of (R_ins + R_del(m)) / (gamma_priv T) at capacity m (seed-mean constants)."""
    p = cfg.privacy
    G, D, kappa = (float(getattr(calibration, n)) for n in ("G", "D", "kappa"))
    lam, T = float(cfg.learner.l2), float(cfg.T)
    z = float(acc_lib.noise_multiplier(accountant, int(m), p.eps_total, p.delta_total))
    delta = G / lam
    beta = np.sqrt(dim) + np.sqrt(2 * np.log(max(m, 1) / p.delta_B))
    budget = p.gamma_priv * T
    terms = {
        "insert_regret": G * D * kappa * np.sqrt(T),
        "deletion_removal": m * G * delta,
        "deletion_noise": m * G * z * delta * beta,
    }
    return {
        "m": int(m), "budget_gamma_priv_T": budget, "noise_multiplier_z": z, "sensitivity_Delta": delta,
        "beta": beta, "terms": terms, "fractions_of_budget": {k: v / budget for k, v in terms.items()},
        "binding_term": max(terms, key=terms.get),
    }


def capacity_analysis(cfg, calib, dim: int, run_accountants, num_outputs: int) -> dict:
    """Capacity curve over epsilon per accountant, the binding term, and what would admit the target.

    The odometer's G is the sensitivity bound sqrt(K) clip_norm (as in ``unlearning.finalize``),
    not the calibrated quantile, so the curve agrees with the capacity the learner enforces.
    """
    constants = calibration_constants(calib)
    constants["G_sensitivity"] = float(cfg.learner.clip_norm) * float(num_outputs) ** 0.5
    calibration = calibration_from_constants(constants)
    grid = eps_grid(cfg)
    curves = {a: odometer_grid(cfg, calibration, dim, a, eps=grid) for a in ACCOUNTANTS}
    target = int(cfg.capacity.target_deletions)
    p = cfg.privacy
    i_eps = int(np.argmin(np.abs(grid - p.eps_total)))
    needed = {}
    for a in run_accountants:
        m_now = int(curves[a].m[i_eps])
        info = {"m_at_config": m_now, "bound_at_m": bound_terms(cfg, calibration, m_now, a, dim),
                "bound_at_target": bound_terms(cfg, calibration, target, a, dim)}
        for name, lo, hi, kw in (("gamma_priv", 1e-2, 1e4, "gamma"), ("lam", 1e-3, 1e4, "lam"),
                                 ("T", 1e3, 1e10, "T"), ("eps_total", 1e-2, 1e3, "eps")):
            g = np.geomspace(lo, hi, 601)
            m = odometer_grid(cfg, calibration, dim, a, **{kw: g}).m
            ok = np.nonzero(m >= target)[0]
            info[f"{name}_for_target"] = float(g[ok[0]]) if ok.size else None
        needed[a] = info
    return {"eps_grid": grid, "curves": curves, "constants": constants, "target": target,
            "analysis": needed}


# --------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cell(path, title, curves, res, n_cal, L):
    """Two panels over events: regret (log y) and epsilon spent, mean and 95% band over seeds."""
    plt = _plt()
    ev = np.arange(res["E"])
    fig, axes = plt.subplots(2, 1, figsize=(7.0, 6.4), sharex=True)
    for ax, name, ylabel, log in ((axes[0], "regret", "regret (squared loss, summed over outputs)", True),
                                  (axes[1], "eps_spent", r"$\varepsilon$ spent (total, accountant)", False)):
        mean, lo, hi = common.mean_ci(curves[name])
        ok = mean > 0 if log else np.isfinite(mean)
        ax.plot(ev[ok], mean[ok], color=common.COLORS[0], lw=1.4, label="mean over seeds")
        if curves[name].shape[0] > 1:
            ax.fill_between(ev[ok], np.maximum(lo[ok], 1e-12) if log else lo[ok], hi[ok], color=common.COLORS[0],
                            alpha=0.18, lw=0, label="95% band")
        ax.axvline(n_cal, color=common.COLORS[1], ls="--", lw=1.0, label="finalize (end of calibration)")
        ax.axvline(n_cal + L, color=common.COLORS[2], ls=":", lw=1.2, label="interleaving schedule starts")
        dels = np.nonzero(((res["ops"] == ul.OP_DELETE)[None, :] & np.asarray(res["out"].applied)).any(0))[0]
        if dels.size:
            ax.axvline(dels[0], color=common.COLORS[3], ls="-.", lw=1.0, label="first admitted deletion")
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    axes[1].set_xlabel("event (calibrate, insert and delete requests, refused ones included)")
    axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, path)
    plt.close(fig)


def plot_capacity(path, title, cap, measured, target):
    """Capacity m against epsilon (log-log) per accountant, measured capacities marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, a in enumerate(ACCOUNTANTS):
        color = common.COLORS[i % len(common.COLORS)]
        ax.plot(cap["eps_grid"], cap["curves"][a].m, color=color, lw=1.6, label=f"{a} (seed-mean constants)")
        if a in measured:
            eps, ms = measured[a]
            ax.scatter(np.full(len(ms), eps), ms, color=color, marker="o", s=22, zorder=3,
                       label=f"{a}: measured m per seed")
    ax.axhline(target, color="gray", ls="--", lw=1.0, label=f"target: {target} deletions")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"total privacy budget $\varepsilon$ (at fixed $\delta$)")
    ax.set_ylabel("deletion capacity m (deletions)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    common.save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------- writing one cell


def _cell_config(cfg, dataset, schedule, accountant):
    d = cfg.to_dict()
    for f in _NON_RESULT_FIELDS:
        d.pop(f, None)
    d.update(dataset=dataset, schedule=schedule, accountant=accountant)
    return d


def _window_acc(correct, ins, end, start=None, width=None):
    sel = np.zeros_like(ins)
    if start is not None:
        sel[start:] = ins[start:]
    else:
        idx = np.nonzero(ins[:end])[0][-width:]
        sel[idx] = True
    return float(np.mean(correct[sel])) if sel.any() else float("nan")


def summarize(cfg, res, curves) -> dict:
    """Empirical numbers of one cell (per seed, then means)."""
    out, ops = res["out"], res["ops"]
    S = curves["regret"].shape[0]
    is_del = (ops == ul.OP_DELETE)[None, :]
    applied = np.asarray(out.applied)
    reason = np.asarray(out.reason)
    ins = applied & ~is_del
    requested = int(np.sum(ops == ul.OP_DELETE))
    admitted = np.sum(applied & is_del, axis=1)
    refused = {name: np.sum(is_del & ~applied & (reason == code), axis=1) for code, name in
               ((ul.BUDGET, "budget"), (ul.WRONG_PHASE, "wrong_phase"), (ul.NOT_PRESENT, "not_present"))}
    acc_before, acc_after, preq_before, first_refusal = [], [], [], []
    for s in range(S):
        d = np.nonzero(applied[s] & is_del[0])[0]
        correct = np.asarray(out.correct[s])
        end = d[0] if d.size else res["E"]
        acc_before.append(_window_acc(correct, ins[s], end, width=500))
        acc_after.append(_window_acc(correct, ins[s], None, start=d[-1] + 1) if d.size else float("nan"))
        preq_before.append(float(curves["acc"][s, end - 1]))
        r = np.nonzero(is_del[0] & ~applied[s] & (reason[s] == ul.BUDGET))[0]
        first_refusal.append(int(r[0]) if r.size else -1)
    final_inserts = curves["inserts"][:, -1]
    avg_regret = curves["regret"][:, -1] / final_inserts
    return {
        "deletions_requested": requested,
        "deletions_admitted": admitted,
        "deletions_refused": {k: v for k, v in refused.items()},
        "first_budget_refusal_event": first_refusal,
        "inserts_total": final_inserts,
        "average_regret": avg_regret,
        "final_regret": curves["regret"][:, -1],
        "final_cum_loss": curves["cum_loss"][:, -1],
        "final_comparator": curves["comparator"][:, -1],
        "acc_before_first_deletion": np.asarray(acc_before),
        "acc_after_last_deletion": np.asarray(acc_after),
        "prequential_acc_before_first_deletion": np.asarray(preq_before),
        "prequential_acc_final": curves["acc"][:, -1],
        "final_dist_to_retrain": curves["dist_to_retrain"][:, -1],
        "final_dist_to_replay": curves["dist_to_replay"][:, -1],
        "noise_norm_mean": float(np.mean(np.asarray(out.noise_norm)[applied & is_del])) if admitted.sum() else 0.0,
    }


def _mean(v):
    v = np.asarray(v, np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def write_cell(cfg, data, res, workdir, chash, cell_cfg):
    name = f"deletion_{data.name}_{res['schedule']}_{res['accountant']}"
    curves = per_event(res)
    frame = event_frame(cfg, res, curves)
    emp = summarize(cfg, res, curves)
    calib, odom = res["calibration"], res["odometer"]
    theory_per_seed = {
        "N_star": np.asarray(calib.N_star), "m": np.asarray(odom.m), "sigma": np.asarray(odom.sigma),
        "noise_multiplier_z": np.asarray(odom.noise_multiplier), "sensitivity_Delta": np.asarray(odom.sensitivity),
        "eps_step": np.asarray(odom.eps_step), "delta_step": np.asarray(odom.delta_step),
        "G": np.asarray(calib.G), "D": np.asarray(calib.D), "c": np.asarray(calib.c), "C": np.asarray(calib.C),
        "kappa": np.asarray(calib.kappa), "regret_insert_bound": np.asarray(odom.regret_insert),
        "regret_delete_bound": np.asarray(odom.regret_delete), "odometer_status": np.asarray(odom.status),
        "calibrator_status": np.asarray(calib.status),
    }
    theory = {"per_seed": theory_per_seed, "mean": {k: _mean(v) for k, v in theory_per_seed.items()}}
    emp_mean = {k: (_mean(v) if isinstance(v, np.ndarray) else v) for k, v in emp.items()}
    emp_mean["deletions_refused"] = {k: _mean(v) for k, v in emp["deletions_refused"].items()}
    times = {k: {"compile_seconds": v[0], "run_seconds": v[1]} for k, v in res["times"].items()}
    notes = [
        f"T={cfg.T:,} is the odometer horizon (Settings.horizon); the run simulates {res['E']:,} events "
        f"({cfg.n_calibration} calibrate + {res['L']} learn + {cfg.n_interleave} interleave) per seed.",
        "regret = cumulative pre-insert loss of the Memory-Pair model over applied inserts (calibration included) "
        "minus RidgeRef.j, the exact ridge objective (lam) over the rows present.",
        f"dist_to_replay is computed at {len(res['checkpoints'])} stage-C checkpoints (events "
        f"{', '.join(map(str, res['checkpoints']))}); NaN elsewhere.",
        "op column: the schedule's op, identical for every seed; CSV bands are 95% Student-t over seeds.",
    ]
    if res["n_star_exceeds_cap"].any():
        notes.append(f"{int(res['n_star_exceeds_cap'].sum())} seed(s) have N* > n_calibration + learn_cap: they stay "
                     "in LEARNING and every delete is refused (wrong phase).")
    meta = {
        "experiment": "deletion_capacity",
        "config": cell_cfg, "config_hash": chash,
        "dataset": data.name, "schedule": res["schedule"], "accountant": res["accountant"],
        "T_horizon": cfg.T, "events_simulated": res["E"], "learn_events_L": res["L"],
        "interleave_inserts": res["n_interleave_inserts"],
        "num_seeds": cfg.num_seeds, "dim": int(data.x.shape[1]), "num_outputs": data.num_classes,
        "model_dim": int(data.x.shape[1] * data.num_classes),
        "data_provenance": data.provenance, "data_source": data.source,
        "theory": theory, "empirical": {"per_seed": emp, "mean": emp_mean},
        "n_star_exceeds_cap": res["n_star_exceeds_cap"],
        "replay_checkpoint_events": res["checkpoints"],
        "csv_stride_events": cfg.log_every,
        "timings": times,
        "compile_seconds": float(sum(v[0] for v in res["times"].values())),
        "run_seconds": float(sum(v[1] for v in res["times"].values())),
        "notes": notes,
        **common.provenance_metadata(),
    }
    common.write_csv(workdir / f"{name}.csv", frame)
    out = res["out"]
    common.write_npz(
        workdir / f"{name}.npz", event=np.arange(res["E"]), op=res["ops"], pos=res["pos"], row=res["row"],
        applied=np.asarray(out.applied), reason=np.asarray(out.reason), loss=np.asarray(out.loss),
        correct=np.asarray(out.correct), phase=np.asarray(out.phase), noise_norm=np.asarray(out.noise_norm),
        checkpoints=res["checkpoints"], w_mp_ckpt=res["w_mp_ckpt"], w_ridge_ckpt=res["w_ridge_ckpt"],
        w_replay_ckpt=res["w_replay_ckpt"], **curves, **{f"theory_{k}": v for k, v in theory_per_seed.items()})
    common.write_json(workdir / f"{name}.json", meta)
    title = (f"{data.name} ({data.provenance}), {res['schedule']} schedule, {res['accountant']} accountant\n"
             f"horizon T={cfg.T:,}, {res['E']:,} events, {cfg.num_seeds} seeds, m={theory['mean']['m']:.1f}, "
             f"admitted {emp_mean['deletions_admitted']:.1f}/{emp['deletions_requested']} deletions")
    plot_cell(workdir / f"{name}.png", title, curves, res, cfg.n_calibration, res["L"])
    return {
        "schedule": res["schedule"], "accountant": res["accountant"],
        "N*": theory["mean"]["N_star"], "m": theory["mean"]["m"], "sigma": theory["mean"]["sigma"],
        "admitted": f"{emp_mean['deletions_admitted']:.1f}/{emp['deletions_requested']}",
        "avg_regret": emp_mean["average_regret"], "acc_before": emp_mean["acc_before_first_deletion"],
        "acc_after": emp_mean["acc_after_last_deletion"], "dist_retrain": emp_mean["final_dist_to_retrain"],
        "dist_replay": emp_mean["final_dist_to_replay"], "m_per_seed": theory_per_seed["m"],
        "eps_total": float(cfg.privacy.eps_total),
    }


def write_capacity(cfg, data, cap, measured, workdir, chash, cap_cfg):
    base_name = f"deletion_capacity_{data.name}"
    frame = {"eps": cap["eps_grid"]}
    for a in ACCOUNTANTS:
        frame[f"m_{a}"] = cap["curves"][a].m
    for a in ACCOUNTANTS:
        frame[f"sigma_{a}"] = cap["curves"][a].sigma
    common.write_csv(workdir / f"{base_name}.csv", pd.DataFrame(frame))
    meta = {
        "experiment": "deletion_capacity_curve", "config": cap_cfg, "config_hash": chash, "dataset": data.name,
        "data_provenance": data.provenance, "data_source": data.source,
        "calibration_constants_seed_mean": cap["constants"], "target_deletions": cap["target"],
        "model_dim": int(data.x.shape[1] * data.num_classes), "analysis": cap["analysis"],
        "measured_m_per_seed": {a: v[1] for a, v in measured.items()},
        "notes": ["curve: one jax.vmap of mpjax.privacy.odometer.finalize over the epsilon grid at the seed-mean "
                  "(G, D, c, C, kappa) of stage A, float32",
                  "*_for_target: the smallest grid value (601 log-spaced points) of that argument alone with "
                  "m >= target; lam holds (G, D, kappa) fixed (a new lam changes the learner: rerun to confirm)"],
        **common.provenance_metadata(),
    }
    common.write_json(workdir / f"{base_name}.json", meta)
    title = (f"{data.name} ({data.provenance}): deletion capacity vs epsilon, delta={cfg.privacy.delta_total:g}\n"
             f"T={cfg.T:,}, gamma_priv={cfg.privacy.gamma_priv:g}, lambda={cfg.learner.l2:g}, "
             f"G(quantile)={cap['constants']['G']:.3g}, Delta=sqrt(K) clip/lambda={cap['constants']['G_sensitivity'] / cfg.learner.l2:.3g}, D={cap['constants']['D']:.3g}, kappa={cap['constants']['kappa']:.3g}")
    plot_capacity(workdir / f"{base_name}.png", title, cap, measured, cap["target"])


def _capacity_config(cfg, dataset):
    d = cfg.to_dict()
    for f in (*_NON_RESULT_FIELDS, "schedule", "accountant"):
        d.pop(f, None)
    d["dataset"] = dataset
    return d


def binding_lines(cap) -> list[str]:
    lines = []
    for a, info in cap["analysis"].items():
        b = info["bound_at_m"]
        fr = b["fractions_of_budget"]
        lines.append(
            f"  {a}: m={info['m_at_config']} at the config; binding term: {b['binding_term']} "
            f"(fractions of gamma_priv*T: insert {fr['insert_regret']:.3g}, removal {fr['deletion_removal']:.3g}, "
            f"noise {fr['deletion_noise']:.3g}; z={b['noise_multiplier_z']:.3g}, Delta=sqrt(K) clip/lambda="
            f"{b['sensitivity_Delta']:.3g})")
        need = ", ".join(f"{k}={info[f'{k}_for_target']:.4g}" if info[f"{k}_for_target"] is not None
                         else f"{k}=none in grid" for k in ("gamma_priv", "lam", "T", "eps_total"))
        lines.append(f"     m >= {cap['target']} needs (one knob at a time): {need}")
    return lines


def run_dataset(cfg, data, schedules, accs, workdir, progress) -> tuple[list, dict]:
    """Every schedule x accountant of one data set, then the capacity curve."""
    cells = [(s, a) for s in schedules for a in accs]
    hashes = {}
    for s, a in cells:  # refuse before any work
        cell_cfg = _cell_config(cfg, data.name, s, a)
        hashes[(s, a)] = (common.config_hash(cell_cfg), cell_cfg)
        common.guard_existing(workdir / f"deletion_{data.name}_{s}_{a}.json", hashes[(s, a)][0], cfg.overwrite)
    cap_cfg = _capacity_config(cfg, data.name)
    cap_hash = common.config_hash(cap_cfg)
    common.guard_existing(workdir / f"deletion_capacity_{data.name}.json", cap_hash, cfg.overwrite)
    progress.set_postfix_str(f"{data.name}: calibration (stage A)")
    prep = prepare(cfg, data)
    rows, measured, calib = [], {}, None
    for s, a in cells:
        progress.set_postfix_str(f"{data.name}/{s}/{a}")
        res = run_cell(cfg, prep, s, a)
        row = write_cell(cfg, data, res, workdir, *hashes[(s, a)])
        rows.append(row)
        measured[a] = (row["eps_total"], row["m_per_seed"])
        calib = res["calibration"]
        progress.update(1)
    cap = capacity_analysis(cfg, calib, int(data.x.shape[1] * data.num_classes), accs, data.num_classes)
    write_capacity(cfg, data, cap, measured, workdir, cap_hash, cap_cfg)
    return rows, cap


def banner(cfg, data, schedules, accs):
    n_int_ins = {s: int(np.sum(schedule_ops(cfg, s) == ul.OP_INSERT)) for s in schedules}
    lines = [
        "=" * 78,
        f"mpjax deletion capacity | dataset {data.name} | provenance: {data.provenance.upper()}",
        f"  source: {data.source}",
        f"  n={data.x.shape[0]:,} d={data.x.shape[1]} K={data.num_classes} | schedules {', '.join(schedules)} | "
        f"accountants {', '.join(accs)}",
        f"  horizon T={cfg.T:,} (odometer); simulated events per seed: {cfg.n_calibration} calibrate + "
        f"L<={cfg.learn_cap:,} learn + {cfg.n_interleave} interleave "
        f"({', '.join(f'{s}: {n_int_ins[s]} inserts' for s in schedules)})",
        f"  seeds {cfg.num_seeds} (one vmap) | backend {jax.default_backend()} ({jax.device_count()} device(s)) | "
        f"float32 | (eps, delta)=({cfg.privacy.eps_total:g}, {cfg.privacy.delta_total:g}) "
        f"gamma_priv={cfg.privacy.gamma_priv:g} lambda={cfg.learner.l2:g}",
    ]
    if data.provenance != "real":
        lines.append(f"  NOTE: {data.provenance} data, not the full real data set (see source above)")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)


TABLE_COLUMNS = ["schedule", "accountant", "N*", "m", "sigma", "admitted", "avg_regret", "acc_before", "acc_after",
                 "dist_retrain", "dist_replay"]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    common.default_log_level()
    from configs.deletion_capacity import get_config

    cfg = common.resolve_config(FLAGS.config, {n: getattr(FLAGS, n) for n in _NAMED}, get_config())
    _check_config(cfg)
    workdir = common.resolve_workdir(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    schedules = list(SCHEDULES) if cfg.schedule == "all" else [cfg.schedule]
    accs = list(ACCOUNTANTS) if cfg.accountant == "all" else [cfg.accountant]
    t0 = time.perf_counter()
    data = _load(cfg, cfg.dataset)
    banner(cfg, data, schedules, accs)
    with tqdm(total=len(schedules) * len(accs), desc="deletion", unit="run", file=sys.stderr,
              dynamic_ncols=True) as progress:
        rows, cap = run_dataset(cfg, data, schedules, accs, workdir, progress)
    print()
    print(common.format_table(rows, TABLE_COLUMNS))
    print("\n".join(binding_lines(cap)))
    print(f"\nwall time {time.perf_counter() - t0:.1f} s; results in {workdir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
