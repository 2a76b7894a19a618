"""Certified deletion on one stream: the exact, polish and seed mechanisms side by side.

    python -m experiments.deletion_capacity --dataset=covtype
    python -m experiments.deletion_capacity --dataset=rotmnist

For each mechanism (``mpjax.unlearning``), all seeds in one ``vmap`` and every stage in
chunks of one compiled scan (``mpjax.unlearning.driver``): calibrate, ``finalize``, learn,
then the interleaving schedule; from the end of learning also the feature-injection branch
and (once) a no-deletion baseline. Host-side float64 references (``mpjax.unlearning.audit``)
give, for every applied delete request, the distance of the certified model to the exact
retrain of the same objective on the rows present, beside the mechanism's certified bound.

Outputs (atomic) under ``--workdir``, ``{name} = deletion_{dataset}_{schedule}_{accountant}``
(``_{mechanism}`` appended when only one runs):
``{name}.csv`` (per event, seed means, the mechanism a column), ``{name}_deletions.csv``
(per delete request and seed), ``{name}.json`` (summary, theory, config, provenance,
timings), ``{name}.npz`` (per-seed arrays), figures ``{name}_capacity.png`` (capacity vs
epsilon per mechanism), ``{name}_distance.png`` (distance to the retrain vs Delta over
deletions), ``{name}_accuracy.png`` (held-out accuracy over events).
"""

from __future__ import annotations

import sys
import time
import warnings
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
from mpjax.privacy import accountants as acc_lib
from mpjax.privacy import calibrator as cal
from mpjax.privacy import odometer as odo
from mpjax.unlearning import audit, driver

SCHEDULES = ("uniform", "burst", "trickle")
MECHANISMS = ul.MECHANISMS
ACCOUNTANTS = tuple(acc_lib.ACCOUNTANTS)
# Purpose tags beyond mpjax.run's TAG_STREAM/TAG_INIT/TAG_LEARNER. Never renumber.
TAG_DELETIONS = 101
EVENT_COLUMNS = ("mechanism", "event", "stage", "op", "applied", "acc", "test_acc", "test_acc_lo", "test_acc_hi",
                 "eps_spent", "capacity_remaining", "sigma", "bound", "passes")
POLISH_DELTA_FACTORS = (1.0, 100.0, 1000.0)  # capacity curves of polish at Delta times these
LABELS = {"exact": "exact (sufficient statistics)", "polish": "polish (certified, noise)",
          "seed": "seed (original: removal step + noise)", "none": "no deletions (baseline)"}


def define_flags():
    """Defines this entry point's absl flags; called only when run as a program."""
    config = config_flags.DEFINE_config_file("config", "configs/deletion_capacity.py", lock_config=True)
    flags.DEFINE_enum("dataset", None, list(DATASETS), "Data set.")
    flags.DEFINE_enum("mechanism", None, [*MECHANISMS, "all"], "Deletion mechanism, or all three.")
    flags.DEFINE_enum("schedule", None, list(SCHEDULES), "Interleaving schedule.")
    flags.DEFINE_enum("accountant", None, list(ACCOUNTANTS), "Privacy accountant (polish, seed).")
    flags.DEFINE_integer("T", None, "Horizon of the regret conditions (Settings.horizon).")
    flags.DEFINE_integer("seed", None, "Integer seed of the run.")
    flags.DEFINE_integer("num_seeds", None, "Replicates (one vmap).")
    flags.DEFINE_string("workdir", None, "Results folder.")
    flags.DEFINE_enum("data_source", None, list(DATA_SOURCES), "Where the data comes from.")
    flags.DEFINE_bool("require_real", None, "Refuse simulated or subset data.")
    flags.DEFINE_bool("overwrite", None, "Replace results of a different configuration.")
    return config


FLAGS = flags.FLAGS
_NAMED = ("dataset", "mechanism", "schedule", "accountant", "T", "seed", "num_seeds", "workdir", "data_source",
          "require_real", "overwrite")
_NON_RESULT_FIELDS = ("workdir", "overwrite")


def check_config(cfg):
    """Refuses a bad configuration with a one-line usage error naming the field."""
    def bad(msg):
        raise app.UsageError(msg)

    for name, valid in (("dataset", DATASETS), ("mechanism", (*MECHANISMS, "all")), ("schedule", SCHEDULES),
                        ("accountant", ACCOUNTANTS)):
        if cfg[name] not in valid:
            bad(f"unknown {name} {cfg[name]!r}; valid: {', '.join(valid)}")
    for name in ("T", "num_seeds", "n_calibration", "n_learn", "learn_cap", "n_interleave", "uniform_inserts", "burst_inserts",
                 "burst_deletes", "trickle_inserts", "chunk", "eval_every", "n_test"):
        if cfg[name] < 1:
            bad(f"config.{name} must be >= 1, got {cfg[name]}")
    if cfg.learn_cap < cfg.n_learn:
        bad(f"config.learn_cap ({cfg.learn_cap}) must be >= config.n_learn ({cfg.n_learn})")
    if cfg.injection.rows < 1 or cfg.injection.inserts_between < 0:
        bad(f"config.injection needs rows >= 1 and inserts_between >= 0, got {cfg.injection.rows}, "
            f"{cfg.injection.inserts_between}")
    if not (cfg.injection.scale ** 2 + cfg.injection.value ** 2 <= 1.0 + 1e-12):
        bad("config.injection: scale^2 + value^2 must be <= 1 (keeps |x| <= 1)")
    if not cfg.learner.l2 > 0:
        bad(f"config.learner.l2 (lambda) must be > 0, got {cfg.learner.l2}")
    if cfg.privacy.bound not in cal.BOUNDS:
        bad(f"config.privacy.bound must be one of {', '.join(cal.BOUNDS)}, got {cfg.privacy.bound!r}")
    if not 0 < cfg.audit.fpr < 1 or cfg.audit.trials < 100:
        bad(f"config.audit needs 0 < fpr < 1 and trials >= 100, got {cfg.audit.fpr}, {cfg.audit.trials}")


def load(cfg):
    size = None if cfg.dataset == "covtype" or not cfg.image_size else int(cfg.image_size)
    return load_dataset(cfg.dataset, data_source=cfg.data_source, require_real=cfg.require_real, seed=cfg.seed,
                        max_rows=cfg.max_rows, image_size=size, grayscale=cfg.dataset == "cifar10")


def schedule_ops(cfg) -> np.ndarray:
    ins, dels = {"uniform": (cfg.uniform_inserts, 1), "burst": (cfg.burst_inserts, cfg.burst_deletes),
                 "trickle": (cfg.trickle_inserts, 1)}[cfg.schedule]
    return driver.period_ops(ins, dels, cfg.n_interleave)


def settings_for(cfg, mechanism: str) -> ul.Settings:
    p = cfg.privacy
    return ul.Settings(mechanism=mechanism, horizon=int(cfg.T), gamma_learn=float(p.gamma_learn),
                       gamma_priv=float(p.gamma_priv), eps_total=float(p.eps_total),
                       delta_total=float(p.delta_total), delta_B=float(p.delta_B), accountant=cfg.accountant,
                       bound=str(p.bound), quantile=float(p.quantile), min_points=int(p.min_points),
                       window=int(p.window), noise=bool(p.noise), max_deletions=int(p.max_deletions),
                       polish_delta=float(p.polish_delta), polish_passes=int(p.polish_passes),
                       polish_capacity=int(p.polish_capacity))


def _quiet(fn):
    """``fn`` with NumPy's all-NaN-slice warnings silenced (an all-NaN slice gives NaN, as intended)."""
    def wrapped(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(*args, **kwargs)
    return wrapped


_nanmax, _nanmean = _quiet(np.nanmax), _quiet(np.nanmean)


# --------------------------------------------------------------------------- the plan of one run


class Plan(NamedTuple):
    """Device data and the event plan shared by every mechanism."""

    data: object
    xs: jax.Array  # f[n_train + S * n_inj, d + 1]: train rows (extra feature 0), then the injected rows
    ys: jax.Array
    x_test: jax.Array
    labels_test: jax.Array
    keys: jax.Array
    dim: int
    feature: int  # index of the injected feature
    num_positions: int
    rows: jax.Array  # i32[S, N] main stream
    rows_inj: jax.Array | None  # i32[S, N] the injection branch (injected positions -> injected rows)
    stages: dict  # name -> driver.Stage
    slots: int
    learner: dict  # Memory-Pair hyper-parameters
    train: np.ndarray  # data rows of the training table
    learn_length: int | None  # L, fixed after the first finalize
    n_star_exceeds_learning: np.ndarray | None  # bool[S] seeds still in LEARNING when interleaving starts


def _injection_inserts(cfg):
    return cfg.injection.rows * (cfg.injection.inserts_between + 1)


def make_plan(cfg, data) -> Plan:
    """Splits the data and builds the per-seed streams and the calibration stage.

    The learning length L depends on N* (known after calibration): :func:`with_learning`
    completes the plan. The injected rows get placeholder slots in the table now, so that the
    table keeps one shape and every stage runs one compiled program.
    """
    x = np.asarray(data.x, np.float64)
    y = np.asarray(data.y, np.float64)
    run_lib.validate_data(x, y, name=data.name)
    n, k, S = x.shape[0], data.num_classes, cfg.num_seeds
    split = np.random.default_rng([cfg.seed, 0x7E57]).permutation(n)
    test, train = split[: cfg.n_test], split[cfg.n_test:]
    ops_c = schedule_ops(cfg)
    tail = max(int(np.sum(ops_c == ul.OP_INSERT)), _injection_inserts(cfg))
    need = cfg.n_calibration + cfg.n_learn + tail
    if need > train.size:
        raise ValueError(f"{data.name}: {train.size} training rows, but the run inserts at least {need} distinct rows "
                         "(n_calibration + n_learn + max(interleave inserts, injection inserts)); lower those or "
                         "load more rows")
    num_positions = min(train.size, cfg.n_calibration + cfg.learn_cap + tail)
    xa = np.concatenate([x, np.zeros((n, 1))], axis=1)  # the injected feature: 0 on every real row
    keys = run_lib.seed_keys(cfg.seed, S)
    rows = np.asarray(jax.jit(jax.vmap(lambda key: streams.make_stream(
        "iid", run_lib.purpose_key(key, run_lib.TAG_STREAM), jnp.asarray(np.asarray(data.labels)[train]),
        num_positions, num_classes=k, is_image=False, raw_dim=1).idx))(keys))
    n_inj = S * cfg.injection.rows
    table_x = np.concatenate([xa[train], np.zeros((n_inj, xa.shape[1]))])
    table_y = np.concatenate([y[train], np.zeros((n_inj, k))])
    stages = {"calibrate": driver.fresh_stage(ul.OP_CALIBRATE, 0, cfg.n_calibration, S, cfg.eval_every, 0)}
    slots = max(int(np.sum(ops_c == ul.OP_DELETE)), cfg.injection.rows)
    put = jax.device_put
    return Plan(data, put(table_x), put(table_y), put(xa[test]), put(np.asarray(data.labels)[test].astype(np.int32)),
                keys, xa.shape[1], xa.shape[1] - 1, num_positions, put(rows.astype(np.int32)), None, stages, slots,
                dict(cfg.learner), train, None, None)


def max_learn_length(cfg, plan: Plan) -> int:
    """The largest L: learn_cap, and no more than the positions left after calibration and the tail stages."""
    tail = max(int(np.sum(schedule_ops(cfg) == ul.OP_INSERT)), _injection_inserts(cfg))
    return int(min(cfg.learn_cap, plan.num_positions - cfg.n_calibration - tail))


def with_learning(cfg, plan: Plan, n_star) -> Plan:
    """The plan completed for the learning length set by ``n_star`` (i[S]): learning, interleaving and
    the injection branch, with its injected rows written into the table's placeholder slots."""
    L = driver.learn_length(cfg.n_learn, n_star, cfg.n_calibration, max_learn_length(cfg, plan))
    if plan.learn_length is not None:
        if L != plan.learn_length:
            raise AssertionError(f"learning length {L} differs from the first mechanism's {plan.learn_length}: "
                                 "the calibration stage should be the same for every mechanism")
        return plan
    S, inj = cfg.num_seeds, cfg.injection
    n_cal, p0 = cfg.n_calibration, cfg.n_calibration + L
    rows = np.asarray(plan.rows)
    keys = jax.vmap(lambda key: run_lib.purpose_key(key, TAG_DELETIONS))(plan.keys)
    interleave = driver.schedule_stage(keys, schedule_ops(cfg), p0, plan.num_positions, cfg.eval_every, p0)
    # Injection branch: every (inserts_between + 1)-th insert after learning carries the feature.
    injection, inj_pos = driver.injection_stage(p0, inj.rows, inj.inserts_between, S, p0)
    table_x, table_y = np.array(plan.xs), np.array(plan.ys)
    n_train = plan.train.size
    inj_x = table_x[rows[:, inj_pos]] * inj.scale  # [S, n_inj, d + 1]
    inj_x[..., plan.feature] = inj.value
    table_x[n_train:] = inj_x.reshape(-1, plan.dim)
    table_y[n_train:] = 0.0
    table_y[n_train:, inj.label] = 1.0
    rows_inj = rows.copy()
    rows_inj[:, inj_pos] = n_train + np.arange(S)[:, None] * inj.rows + np.arange(inj.rows)[None]
    stages = {**plan.stages, "learn": driver.fresh_stage(ul.OP_INSERT, n_cal, L, S, cfg.eval_every, n_cal),
              "interleave": interleave, "injection": injection}
    put = jax.device_put
    return plan._replace(xs=put(table_x), ys=put(table_y), rows_inj=put(rows_inj.astype(np.int32)), stages=stages,
                         learn_length=L, n_star_exceeds_learning=np.asarray(n_star) > p0)


# --------------------------------------------------------------------------- one mechanism


def _compile(fn, *args):
    with common.Stopwatch() as sw:
        compiled = jax.jit(fn).lower(*args).compile()
    return compiled, sw.seconds


def _cat(outs):
    return jax.tree_util.tree_map(lambda *a: np.concatenate([np.asarray(v) for v in a], axis=1), *outs)


def run_mechanism(cfg, plan: Plan, mechanism: str, baseline: bool) -> dict:
    """Every stage of one mechanism, all seeds; the no-deletion baseline too when ``baseline``."""
    k, S = plan.data.num_classes, cfg.num_seeds
    u = ul.make(k, settings_for(cfg, mechanism), **dict(cfg.learner))
    events = jax.vmap(lambda c, sch, p, r, xs, ys, xt, lt: driver.run_events(u, c, sch, p, r, xs, ys, xt, lt),
                      in_axes=(0, None, 0, 0, None, None, None, None))
    init = jax.vmap(lambda key: driver.init_carry(
        u.init(plan.dim, plan.num_positions, run_lib.purpose_key(key, run_lib.TAG_LEARNER)), plan.slots))
    carry = jax.jit(init)(plan.keys)
    chunk0 = next(driver.chunks(*plan.stages["calibrate"][:3], cfg.chunk))
    times = {}
    step, times["compile_events"] = _compile(events, carry, *jax.device_put(chunk0), plan.rows, plan.xs, plan.ys,
                                             plan.x_test, plan.labels_test)
    finalize, times["compile_finalize"] = _compile(jax.vmap(u.finalize), carry.state)

    def run_stage(carry, name, rows, ops=None):
        o, p, e, start = plan.stages[name]
        o = o if ops is None else ops
        outs = []
        with common.Stopwatch() as sw, jax.transfer_guard("disallow"):
            for sched, pc in driver.chunks(o, p, e, cfg.chunk, start):
                carry, out = step(carry, *jax.device_put((sched, pc)), rows, plan.xs, plan.ys, plan.x_test,
                                  plan.labels_test)
                outs.append(out)
            carry = jax.block_until_ready(carry)
        n = o.shape[0]
        return carry, jax.tree_util.tree_map(lambda a: a[:, :n], _cat(outs)), sw.seconds

    res = {"mechanism": mechanism, "outs": {}, "times": times}
    carry, res["outs"]["calibrate"], times["run_calibrate"] = run_stage(carry, "calibrate", plan.rows)
    with common.Stopwatch() as sw:
        carry = carry._replace(state=jax.block_until_ready(finalize(carry.state)))
    times["run_finalize"] = sw.seconds
    plan = with_learning(cfg, plan, np.asarray(carry.state.calibration.N_star))
    res["plan"] = plan
    carry_b, res["outs"]["learn"], times["run_learn"] = run_stage(carry, "learn", plan.rows)
    carry_c, res["outs"]["interleave"], times["run_interleave"] = run_stage(carry_b, "interleave", plan.rows)
    carry_i, res["outs"]["injection"], times["run_injection"] = run_stage(carry_b, "injection", plan.rows_inj)
    if baseline:
        ops = plan.stages["interleave"][0]
        _, res["outs"]["baseline"], times["run_baseline"] = run_stage(
            carry_b, "interleave", plan.rows, np.where(ops == ul.OP_DELETE, ul.OP_NOOP, ops).astype(np.int32))
    res.update(
        calibration=jax.device_get(carry_c.state.calibration), odometer=jax.device_get(carry_c.state.odometer),
        cert=np.asarray(carry_c.cert), before=np.asarray(carry_c.before), w_final=np.asarray(carry_c.state.model.w),
        present_final=np.asarray(carry_c.state.present), inj_cert=np.asarray(carry_i.cert),
        inj_before=np.asarray(carry_i.before), inj_w_final=np.asarray(carry_i.state.model.w),
        settings=u.settings)
    res["probe"] = probe_deletions(cfg, plan, step, carry_c, S)
    return res


def probe_deletions(cfg, plan: Plan, step, carry, lanes: int, per_lane: int = 20) -> dict:
    """From seed 0's final state, ``lanes`` copies (one vmap) each delete ``per_lane`` different rows.

    Time per delete request: the wall time of that chunk minus that of an all-no-op chunk,
    divided by ``lanes * per_lane`` (best of 3 each). The first request of every lane starts
    from the same state with a different row: sigma must not depend on which.
    """
    per_lane = min(per_lane, cfg.chunk)
    state0 = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a[0], a.shape), carry)
    present = np.nonzero(np.asarray(carry.state.present[0]))[0]
    picks = np.random.default_rng(cfg.seed).permutation(present)[: lanes * per_lane].reshape(lanes, per_lane)
    noop = np.full(cfg.chunk, ul.OP_NOOP, np.int32)
    dele = noop.copy()
    dele[:per_lane] = ul.OP_DELETE
    pos = np.zeros((lanes, cfg.chunk), np.int32)
    pos[:, :per_lane] = picks
    ev = np.zeros(cfg.chunk, bool)
    rows = jnp.broadcast_to(plan.rows[0], plan.rows.shape)

    def call(ops):
        (args,) = [jax.device_put(c) for c in driver.chunks(ops, pos, ev, cfg.chunk)]
        best, out = np.inf, None
        for _ in range(3):
            with common.Stopwatch() as sw:
                out = jax.block_until_ready(step(state0, *args, rows, plan.xs, plan.ys, plan.x_test,
                                                 plan.labels_test)[1])
            best = min(best, sw.seconds)
        return best, jax.device_get(out)

    t_del, out = call(dele)
    t_noop, _ = call(noop)
    return {
        "rows_first_request": picks[:, 0], "applied": out.applied[:, :per_lane], "reason": out.reason[:, 0],
        "sigma_first_request": out.sigma[:, 0], "sigma": out.sigma[:, :per_lane], "passes": out.passes[:, :per_lane],
        "lanes": lanes, "requests_per_lane": per_lane,
        "seconds_per_delete": max(t_del - t_noop, 0.0) / (lanes * per_lane), "seconds_call": t_del,
        "seconds_noop_call": t_noop,
    }


# --------------------------------------------------------------------------- host-side analysis


def analyse(cfg, plan: Plan, res: dict, cache: dict) -> dict:
    """Distances to the float64 retrain, violations, accuracy, feature injection, audit, sigma check."""
    mech, S = res["mechanism"], cfg.num_seeds
    lam = float(cfg.learner.l2)
    xs, ys = np.asarray(plan.xs), np.asarray(plan.ys)
    rows, rows_inj = np.asarray(plan.rows), np.asarray(plan.rows_inj)
    delta = float(cfg.privacy.polish_delta)

    memo = {}

    def log(stages, s):
        """``(ops, positions, applied, present set after each delete request)`` of seed ``s``."""
        key = (tuple(stages), s)
        if key not in memo:
            ops = np.concatenate([plan.stages[n][0] for n in stages])
            pos = np.concatenate([plan.stages[n][1][s] for n in stages])
            applied = np.concatenate([np.asarray(res["outs"][n].applied[s]) for n in stages])
            sets = audit.present_after_requests(ops, pos, applied, [], ul.OP_INSERT, ul.OP_DELETE, ul.OP_CALIBRATE)
            memo[key] = ops, pos, applied, sets
        return memo[key]

    def distances(stages, rows_s, cert, s):
        ops, _, applied, sets = log(stages, s)
        req_applied = applied[ops == ul.OP_DELETE]
        out, w_star = audit.retrain_distances(xs, ys, rows_s, sets, cert[s], req_applied, lam,
                                              cache.setdefault((stages[-1], s), {}))
        return out, req_applied, w_star

    out_c = res["outs"]["interleave"]
    is_del = plan.stages["interleave"][0] == ul.OP_DELETE
    per_seed, w_stars = [], []
    for s in range(S):
        dist, applied, w_star = distances(["calibrate", "learn", "interleave"], rows[s], res["cert"], s)
        w_stars.append(w_star)
        per_seed.append({"dist": dist, "applied": applied,
                         "bound": np.asarray(out_c.bound[s])[is_del], "reason": np.asarray(out_c.reason[s])[is_del],
                         "sigma": np.asarray(out_c.sigma[s])[is_del], "noise_norm": np.asarray(out_c.noise_norm[s])[is_del],
                         "passes": np.asarray(out_c.passes[s])[is_del]})
    dist = np.stack([p["dist"] for p in per_seed])
    applied = np.stack([p["applied"] for p in per_seed])
    bound = np.stack([p["bound"] for p in per_seed])
    violations = int(np.sum(applied & (dist > bound))) if mech != "seed" else None
    over_delta = int(np.sum(applied & (dist > delta))) if mech == "polish" else None

    def acc_at(out, idx):
        return np.asarray(out.test_acc)[:, idx]

    test_before = acc_at(res["outs"]["learn"], -1)
    test_after = acc_at(out_c, -1)
    # The same model class without the online learner: float64 retrains on the rows present at the
    # end, and on every row inserted (no deletion at all), on the held-out rows.
    x_test, l_test = np.asarray(plan.x_test), np.asarray(plan.labels_test)
    retrain_acc = {"rows_present_at_end": [], "all_rows_inserted": []}
    for s in range(S):
        ops, pos, app, kept = log(["calibrate", "learn", "interleave"], s)
        final = kept[-1] if ops[-1] == ul.OP_DELETE else None
        inserted = np.unique(pos[app & (ops != ul.OP_DELETE)]).astype(np.int64)  # keyed like the sets
        seed_cache = cache.setdefault(("interleave", s), {})
        for name, keep in (("rows_present_at_end", final), ("all_rows_inserted", inserted)):
            if keep is None:
                retrain_acc[name].append(float("nan"))
                continue
            if keep.tobytes() not in seed_cache:
                seed_cache[keep.tobytes()] = audit.retrain(xs[rows[s][keep]], ys[rows[s][keep]], lam)
            w = seed_cache[keep.tobytes()]
            retrain_acc[name].append(float(np.mean(np.argmax(x_test @ w.T, axis=1) == l_test)))
    sig = np.stack([p["sigma"] for p in per_seed])[applied]

    # Feature injection: the extra feature's weight before the first and after the last injected delete.
    out_i = res["outs"]["injection"]
    inj_applied = np.asarray(out_i.applied)[:, plan.stages["injection"][0] == ul.OP_DELETE]
    n_inj = cfg.injection.rows
    inj = {
        "deletes_applied": inj_applied.sum(axis=1),
        "weight_before_deletes": np.array([audit.feature_weight(res["inj_before"][s, 0], plan.feature)
                                           for s in range(S)]),
        "weight_after_certified": np.array([audit.feature_weight(res["inj_cert"][s, n_inj - 1], plan.feature)
                                            for s in range(S)]),
        "weight_after_published": np.array([audit.feature_weight(res["inj_w_final"][s], plan.feature)
                                            for s in range(S)]),
    }
    inj_dist, _, inj_star = distances(["calibrate", "learn", "injection"], rows_inj[0], res["inj_cert"], 0)
    inj["retrain_weight_seed0"] = (audit.feature_weight(inj_star[n_inj - 1], plan.feature)
                                   if inj_star[n_inj - 1] is not None else None)
    inj["dist_to_retrain_after_last_seed0"] = float(inj_dist[n_inj - 1])

    # Distinguishing audit, seed 0. polish: the applied request farthest from the retrain (the worst
    # case), against its certified reference W*_{S'} + noise. seed: the first applied request (no
    # earlier noise in the model), against the reference its Delta is meant to bound, the online
    # learner replayed without the row, + noise. exact: none (the release is the retrain, no noise).
    audit_res = None
    sigma0 = float(res["odometer"].sigma[0])
    ok0 = np.nonzero(applied[0])[0]
    if mech != "exact" and ok0.size and sigma0 > 0:
        if mech == "polish":
            i, sens, ref_name = ok0[np.nanargmax(dist[0, ok0])], delta, "exact retrain W*_{S'}"
            ref = w_stars[0][i]
        else:
            i, sens, ref_name = ok0[0], float(res["odometer"].sensitivity[0]), "online learner replayed without the row"
            keep = log(["calibrate", "learn", "interleave"], 0)[3][i]
            mask = np.zeros(plan.num_positions, bool)
            mask[keep] = True
            ref = np.asarray(replay_fn(plan)(plan.rows[0], jax.device_put(mask), plan.xs, plan.ys))
        audit_res = audit.distinguishing_audit(res["cert"][0, i], ref, sigma0, delta_cert=sens,
                                               trials=int(cfg.audit.trials), fpr=float(cfg.audit.fpr), seed=cfg.seed)
        audit_res["request"] = int(i)
        audit_res["reference"] = ref_name
        audit_res["eps_step"] = float(res["odometer"].eps_step[0])
        audit_res["delta_step"] = float(res["odometer"].delta_step[0])
        audit_res["tpr_dp_bound"] = float(min(1.0, np.exp(audit_res["eps_step"]) * cfg.audit.fpr
                                              + audit_res["delta_step"]))

    probe = res["probe"]
    sigma_check = {
        "sigma_values_over_applied_deletes": np.unique(sig).tolist(),
        "constant_over_deletes_and_seeds": bool(sig.size == 0 or np.all(sig == sig[0])),
        "probe_rows": probe["rows_first_request"], "probe_sigma": probe["sigma_first_request"],
        "constant_over_probe_rows": bool(np.all(probe["sigma"] == probe["sigma"].flat[0])),
    }
    return {
        "per_seed": per_seed, "dist": dist, "applied": applied, "bound": bound, "violations": violations,
        "over_delta": over_delta, "test_before": test_before, "test_after": test_after,
        "test_acc_retrain": {k: np.asarray(v) for k, v in retrain_acc.items()}, "injection": inj,
        "audit": audit_res, "sigma_check": sigma_check,
    }


def replay_fn(plan: Plan):
    """The jitted noise-free replay of the online learner over masked positions (one seed)."""
    return jax.jit(driver.make_replay(plan.learner, plan.data.num_classes, plan.dim))


# --------------------------------------------------------------------------- capacity curves


def capacity_curves(cfg, results: dict, num_outputs: int, dim: int) -> dict:
    """Capacity m against epsilon per mechanism at the seed-mean calibration constants.

    seed: ``odometer.finalize`` (the regret-budget search); polish: ``odometer.polish_capacity``
    (the largest m whose noise z(m, eps, delta) Delta passes the regret condition); exact:
    unlimited. One ``vmap`` over the epsilon grid each.
    """
    c = cfg.capacity
    grid = np.unique(np.concatenate([np.geomspace(c.eps_min, c.eps_max, c.eps_points), [cfg.privacy.eps_total]]))
    any_res = next(iter(results.values()))
    calib = any_res["calibration"]
    p, lam = cfg.privacy, float(cfg.learner.l2)
    g_sens = float(cfg.learner.clip_norm) * num_outputs ** 0.5
    f = lambda v: jnp.asarray(np.mean(np.asarray(v, np.float64)))  # noqa: E731
    calibration = cal.Calibration(G=f(g_sens), D=f(calib.D), c=f(calib.c), C=f(calib.C), kappa=f(calib.kappa),
                                  N_star=jnp.asarray(1, jnp.int32), n_points=jnp.asarray(0, jnp.int32),
                                  status=jnp.asarray(0, jnp.int32))

    def seed_m(eps):
        return odo.finalize(calibration, float(cfg.T), float(p.gamma_priv), eps, float(p.delta_total), lam,
                            float(p.delta_B), accountant=cfg.accountant, dim=dim,
                            max_deletions=int(p.max_deletions)).m

    def polish_m(eps, delta_cert):
        return odo.polish_capacity(calibration, float(cfg.T), float(p.gamma_priv), eps, float(p.delta_total), lam,
                                   delta_cert, num_outputs=num_outputs, accountant=cfg.accountant,
                                   max_deletions=int(p.max_deletions))

    g = jnp.asarray(grid)
    polish_grid = jax.jit(jax.vmap(polish_m, in_axes=(0, None)))
    deltas = [float(p.polish_delta) * f for f in POLISH_DELTA_FACTORS]
    return {"eps": grid, "seed": np.asarray(jax.jit(jax.vmap(seed_m))(g)),
            "polish": {dc: np.asarray(polish_grid(g, dc)) for dc in deltas}, "polish_delta": float(p.polish_delta),
            "cap": int(min(cfg.T, p.max_deletions)),
            "constants": {"G_sensitivity": g_sens, "D": float(calibration.D), "c": float(calibration.c),
                          "C": float(calibration.C), "kappa": float(calibration.kappa)}}


# --------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_capacity(path, title, cap, results, cfg):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 4.8))
    cap_m = cap["cap"]
    if "exact" in results:
        ax.axhline(3 * cap_m, color=common.COLORS[0], lw=1.6, label="exact: unlimited (no noise, no budget)")
    if "polish" in results:
        for dc, ls in zip(cap["polish"], ("-", "--", ":")):
            m = np.maximum(cap["polish"][dc], 0.5)
            note = " (the configured one)" if dc == cap["polish_delta"] else ""
            ax.plot(cap["eps"], m, color=common.COLORS[1], lw=1.6, ls=ls,
                    label=rf"polish, $\Delta$={dc:g}{note}: largest m the regret condition admits")
    if "seed" in results:
        ax.plot(cap["eps"], np.maximum(cap["seed"], 0.5), color=common.COLORS[2], lw=1.6,
                label="seed: largest m the regret-budget search admits")
    for i, mech in ((1, "polish"), (2, "seed")):
        if mech in results:
            od = results[mech]["res"]["odometer"]
            ax.scatter([cfg.privacy.eps_total], [max(float(np.mean(od.m)), 0.5)], color=common.COLORS[i],
                       marker="o", s=30, zorder=3, label=f"{mech}: capacity m of this run")
    ax.axhline(cap_m, color="gray", ls="-.", lw=0.8, label=f"upper end of the search: min(T, max_deletions) = {cap_m:,}")
    ax.axhline(100, color="gray", ls="--", lw=1.0, label="target: 100 deletions")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(0.5, 10 * cap_m)
    ax.set_xlabel(r"total privacy budget $\varepsilon$ (at fixed $\delta$)")
    ax.set_ylabel("deletion capacity m (deletions)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    common.save_figure(fig, path)
    plt.close(fig)


def plot_distance(path, title, results, delta):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for i, mech in enumerate(MECHANISMS):
        if mech not in results:
            continue
        a = results[mech]["analysis"]
        dist = np.where(a["applied"], a["dist"], np.nan)
        req = np.arange(dist.shape[1]) + 1
        color = common.COLORS[i]
        worst = _nanmax(dist, axis=0)
        ok = np.isfinite(worst)
        note = " (includes earlier releases' noise)" if mech == "seed" else ""
        ax.plot(req[ok], np.maximum(worst[ok], 1e-18), color=color, lw=1.4, marker=".", ms=3,
                label=f"{mech}: |W~ - W*| (max over seeds){note}")
        if mech != "seed":
            bound = np.where(a["applied"], a["bound"], np.nan)
            b = _nanmax(bound, axis=0)
            ok_b = np.isfinite(b)
            ax.plot(req[ok_b], b[ok_b], color=color, lw=1.0, ls=":", label=f"{mech}: certified bound (max over seeds)")
    ax.axhline(delta, color=common.COLORS[1], ls="--", lw=1.0, label=rf"polish: $\Delta$ = {delta:g}")
    if "seed" in results:
        sens = float(np.mean(results["seed"]["res"]["odometer"].sensitivity))
        ax.axhline(sens, color=common.COLORS[2], ls="--", lw=1.0, label=rf"seed: $\Delta$ = $\sqrt{{K}}$ clip/$\lambda$ = {sens:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("delete request (interleaving stage)")
    ax.set_ylabel(r"distance to the float64 retrain $\|W - W^*_{S'}\|_F$ (before noise)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    common.save_figure(fig, path)
    plt.close(fig)


def plot_accuracy(path, title, results, baseline_out, p0):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    curves = [(m, results[m]["res"]["outs"]["interleave"], common.COLORS[i]) for i, m in enumerate(MECHANISMS)
              if m in results]
    if baseline_out is not None:
        curves.append(("none", baseline_out, common.COLORS[3]))
    for mech, out, color in curves:
        acc = np.asarray(out.test_acc, np.float64)
        ok = np.isfinite(acc).all(axis=0)
        mean, lo, hi = common.mean_ci(acc[:, ok])
        ev = p0 + np.nonzero(ok)[0]
        ax.plot(ev, mean, color=color, lw=1.5, ls="--" if mech == "none" else "-", label=LABELS[mech])
        if acc.shape[0] > 1:
            ax.fill_between(ev, lo, hi, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("event (calibrate, learn, then the interleaving schedule; deletes included)")
    ax.set_ylabel("held-out accuracy of the published model")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left")
    common.save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------- outputs


def event_frame(cfg, plan: Plan, results: dict, baseline_out) -> pd.DataFrame:
    """Per event (every ``eval_every``-th and the evaluated ones), seed means, one block per mechanism."""
    frames = []
    blocks = [(m, results[m]["res"]["outs"]) for m in MECHANISMS if m in results]
    if baseline_out is not None:
        blocks.append(("none", {"interleave": baseline_out}))
    for mech, outs in blocks:
        for stage in ("calibrate", "learn", "interleave"):
            if stage not in outs:
                continue
            o = outs[stage]
            ops, _, evaluate, start = plan.stages[stage]
            if mech == "none":
                ops = np.where(ops == ul.OP_DELETE, ul.OP_NOOP, ops)
            idx = np.nonzero(evaluate | (ops == ul.OP_DELETE))[0]
            correct = np.asarray(o.correct, np.float64)
            ins = np.asarray(o.applied) & ((ops == ul.OP_INSERT) | (ops == ul.OP_CALIBRATE))[None]
            acc = np.cumsum(correct, axis=1) / np.maximum(np.cumsum(ins, axis=1), 1)
            test = np.asarray(o.test_acc, np.float64)[:, idx]
            mean, lo, hi = (np.full(idx.size, np.nan) for _ in range(3))
            fin = np.isfinite(test).all(axis=0)
            if fin.any():
                mean[fin], lo[fin], hi[fin] = common.mean_ci(test[:, fin])
            with np.errstate(all="ignore"):
                frames.append(pd.DataFrame({
                    "mechanism": mech, "event": start + idx, "stage": stage,
                    "op": [ul.OP_NAMES[int(v)] for v in ops[idx]],
                    "applied": np.asarray(o.applied, np.float64)[:, idx].mean(0), "acc": acc[:, idx].mean(0),
                    "test_acc": mean, "test_acc_lo": lo, "test_acc_hi": hi,
                    "eps_spent": np.asarray(o.eps_spent, np.float64)[:, idx].mean(0),
                    "capacity_remaining": np.asarray(o.capacity_remaining, np.float64)[:, idx].mean(0),
                    "sigma": np.asarray(o.sigma, np.float64)[:, idx].mean(0),
                    "bound": _nanmean(np.asarray(o.bound, np.float64)[:, idx], axis=0),
                    "passes": np.asarray(o.passes, np.float64)[:, idx].mean(0),
                }))
    return pd.concat(frames, ignore_index=True)[list(EVENT_COLUMNS)]


def deletion_frame(cfg, plan: Plan, results: dict) -> pd.DataFrame:
    """One row per (mechanism, seed, delete request) of the interleaving stage."""
    frames = []
    ops, pos, _, start = plan.stages["interleave"]
    events = start + np.nonzero(ops == ul.OP_DELETE)[0]
    delta = float(cfg.privacy.polish_delta)
    for mech in MECHANISMS:
        if mech not in results:
            continue
        a = results[mech]["analysis"]
        for s, p in enumerate(a["per_seed"]):
            viol = (p["dist"] > p["bound"]) if mech != "seed" else np.full(p["dist"].shape, np.nan)
            frames.append(pd.DataFrame({
                "mechanism": mech, "seed": s, "request": np.arange(events.size), "event": events,
                "position": pos[s][ops == ul.OP_DELETE], "applied": p["applied"],
                "reason": [ul.REASONS[int(r)] for r in p["reason"]],
                "dist_to_retrain": p["dist"], "bound": p["bound"],
                "delta": delta if mech == "polish" else (0.0 if mech == "exact" else np.nan),
                "violation": np.where(p["applied"], viol, np.nan), "sigma": p["sigma"],
                "noise_norm": p["noise_norm"], "passes": p["passes"],
            }))
    return pd.concat(frames, ignore_index=True)


def summary_row(cfg, mech, res, a) -> dict:
    S = cfg.num_seeds
    applied = a["applied"]
    dist = np.where(applied, a["dist"], np.nan)
    passes = np.stack([p["passes"] for p in a["per_seed"]])[applied]
    od = res["odometer"]
    audit_res = a["audit"]
    m = int(np.min(od.m))
    return {
        "mechanism": mech,
        "sigma": float(od.sigma[0]),
        "capacity_m": "unlimited" if mech == "exact" else m,
        "admitted": f"{applied.sum() / S:.0f}/{applied.shape[1]}",
        "max_dist": float(_nanmax(dist)) if np.isfinite(dist).any() else float("nan"),
        "max_bound": float(_nanmax(np.where(applied, a["bound"], np.nan))) if mech != "seed" else float("nan"),
        "violations": "n/a" if a["violations"] is None else a["violations"],
        "test_before": float(np.mean(a["test_before"])),
        "test_after": float(np.mean(a["test_after"])),
        "inj_weight": float(np.mean(a["injection"]["weight_after_certified"])),
        "audit_tpr": "n/a" if audit_res is None else f"{audit_res['tpr']:.4f} ({audit_res['tpr_certified']:.4f})",
        "ms_per_delete": 1e3 * res["probe"]["seconds_per_delete"],
        "passes": float(np.mean(passes)) if passes.size else 0.0,
    }


TABLE_COLUMNS = ["mechanism", "sigma", "capacity_m", "admitted", "max_dist", "max_bound", "violations", "test_before",
                 "test_after", "inj_weight", "audit_tpr", "ms_per_delete", "passes"]


def run_config(cfg, workdir, progress=None) -> dict:
    """The whole experiment for one resolved config; returns the summary (also written)."""
    name = f"deletion_{cfg.dataset}_{cfg.schedule}_{cfg.accountant}" + ("" if cfg.mechanism == "all" else
                                                                      f"_{cfg.mechanism}")
    result_cfg = cfg.to_dict()
    for f in _NON_RESULT_FIELDS:
        result_cfg.pop(f, None)
    chash = common.config_hash(result_cfg)
    common.guard_existing(workdir / f"{name}.json", chash, cfg.overwrite)
    mechanisms = list(MECHANISMS) if cfg.mechanism == "all" else [cfg.mechanism]
    t0 = time.perf_counter()
    data = load(cfg)
    plan = make_plan(cfg, data)
    banner(cfg, data, plan, mechanisms)
    results, cache, baseline_out = {}, {}, None
    for i, mech in enumerate(mechanisms):
        if progress is not None:
            progress.set_postfix_str(f"{data.name}/{mech}")
        res = run_mechanism(cfg, plan, mech, baseline=i == 0)
        plan = res.pop("plan")
        baseline_out = res["outs"].pop("baseline", baseline_out)
        with common.Stopwatch() as sw:
            analysis = analyse(cfg, plan, res, cache)
        res["times"]["host_analysis"] = sw.seconds
        results[mech] = {"res": res, "analysis": analysis}
        if progress is not None:
            progress.update(1)
    k = data.num_classes
    cap = capacity_curves(cfg, {m: r["res"] for m, r in results.items()}, k, plan.dim * k)
    rows = [summary_row(cfg, m, r["res"], r["analysis"]) for m, r in results.items()]
    baseline_final = np.asarray(baseline_out.test_acc)[:, -1]
    write_outputs(cfg, plan, results, baseline_out, cap, rows, workdir, name, chash, result_cfg,
                  time.perf_counter() - t0)
    print()
    print(common.format_table(rows, TABLE_COLUMNS))
    first = next(iter(results.values()))["analysis"]["test_acc_retrain"]
    print(f"no deletions, same stream: online learner {np.mean(baseline_final):.4f}, float64 retrain of the same "
          f"objective on every row inserted {np.nanmean(first['all_rows_inserted']):.4f} (held-out accuracy)")
    print(f"\nwall time {time.perf_counter() - t0:.1f} s; results in {workdir}")
    return {"rows": rows, "results": results, "baseline_final": baseline_final, "cap": cap, "plan": plan}


def write_outputs(cfg, plan, results, baseline_out, cap, rows, workdir, name, chash, result_cfg, wall):
    data = plan.data
    delta = float(cfg.privacy.polish_delta)
    common.write_csv(workdir / f"{name}.csv", event_frame(cfg, plan, results, baseline_out))
    common.write_csv(workdir / f"{name}_deletions.csv", deletion_frame(cfg, plan, results))
    cap_frame = pd.DataFrame({"eps": cap["eps"], "m_exact": np.full(cap["eps"].size, np.nan),
                              **{f"m_polish_delta_{dc:g}": m for dc, m in cap["polish"].items()},
                              "m_seed": cap["seed"]})
    common.write_csv(workdir / f"{name}_capacity.csv", cap_frame)
    baseline_final = np.asarray(baseline_out.test_acc)[:, -1]
    per_mech = {}
    arrays = {}
    for mech, r in results.items():
        res, a = r["res"], r["analysis"]
        od, calib = res["odometer"], res["calibration"]
        theory = {"N_star": calib.N_star, "m": od.m, "sigma": od.sigma, "noise_multiplier_z": od.noise_multiplier,
                  "sensitivity_Delta": od.sensitivity, "eps_step": od.eps_step, "delta_step": od.delta_step,
                  "G": calib.G, "D": calib.D, "c": calib.c, "C": calib.C, "kappa": calib.kappa,
                  "regret_insert_bound": od.regret_insert, "regret_delete_bound": od.regret_delete,
                  "odometer_status": od.status, "calibrator_status": calib.status, "eps_spent_final": od.eps_spent}
        applied = a["applied"]
        per_mech[mech] = {
            "label": LABELS[mech],
            "theory": {k: np.asarray(v).tolist() for k, v in theory.items()},
            "deletes_requested_per_seed": int(applied.shape[1]),
            "deletes_applied_per_seed": applied.sum(axis=1),
            "refusals_per_seed": {ul.REASONS[c]: np.sum(np.stack([p["reason"] for p in a["per_seed"]]) == c, axis=1)
                                  for c in range(1, len(ul.REASONS))},
            "max_dist_to_retrain": float(_nanmax(np.where(applied, a["dist"], np.nan)))
            if applied.any() else None,
            "max_certified_bound": float(_nanmax(np.where(applied, a["bound"], np.nan)))
            if applied.any() and mech != "seed" else None,
            "violations_dist_gt_bound": a["violations"], "violations_dist_gt_delta": a["over_delta"],
            "test_acc_before_first_delete": a["test_before"], "test_acc_end": a["test_after"],
            "test_acc_end_no_deletions": baseline_final,
            "test_acc_float64_retrain": a["test_acc_retrain"],
            "test_acc_loss_vs_retrain_without_deletions_points":
                100 * (np.nanmean(a["test_acc_retrain"]["all_rows_inserted"]) - np.mean(a["test_after"])),
            "test_acc_loss_vs_no_deletions_points": 100 * (np.mean(baseline_final) - np.mean(a["test_after"])),
            "noise_norm_mean": float(np.mean(np.stack([p["noise_norm"] for p in a["per_seed"]])[applied]))
            if applied.any() else 0.0,
            "polish_passes_mean": float(np.mean(np.stack([p["passes"] for p in a["per_seed"]])[applied]))
            if applied.any() else 0.0,
            "polish_passes_max": int(np.max(np.stack([p["passes"] for p in a["per_seed"]])[applied]))
            if applied.any() else 0,
            "feature_injection": a["injection"], "distinguishing_audit": a["audit"], "sigma_check": a["sigma_check"],
            "time_per_delete_probe": {k: v for k, v in res["probe"].items()},
            "timings_seconds": res["times"],
        }
        arrays.update({f"{mech}_dist": a["dist"], f"{mech}_bound": a["bound"], f"{mech}_applied": applied,
                       f"{mech}_cert": res["cert"], f"{mech}_test_acc": np.asarray(res["outs"]["interleave"].test_acc)})
    meta = {
        "experiment": "deletion_capacity", "config": result_cfg, "config_hash": chash, "dataset": data.name,
        "data_provenance": data.provenance, "data_source": data.source,
        "objective": "F_S(W) = sum_{i in S} [1/2 |W x_i - y_i|^2 + lambda/2 |W|^2], lambda = learner.l2",
        "dim_with_injected_feature": plan.dim, "num_outputs": data.num_classes, "positions": plan.num_positions,
        "learn_length": plan.learn_length, "n_star_exceeds_learning": plan.n_star_exceeds_learning,
        "summary": rows, "mechanisms": per_mech, "test_acc_end_no_deletions": baseline_final,
        "capacity_curve": {"eps": cap["eps"], "m_polish_by_delta": {f"{dc:g}": m for dc, m in cap["polish"].items()},
                           "m_seed": cap["seed"], "search_upper_end": cap["cap"], "constants": cap["constants"],
                           "m_exact": "unlimited"},
        "float64": bool(cfg.float64), "wall_seconds": wall,
        "notes": [
            "dist_to_retrain: |W~ - W*_{S'}|_F, W~ the mechanism's model before noise (exact: the published model), "
            "W*_{S'} retrained from scratch in float64 NumPy on the rows present after the request, same objective.",
            "bound: the mechanism's certified upper bound on that distance (gradient norm / (n lambda) plus a "
            "rounding allowance); the seed mechanism certifies none (NaN).",
            "time_per_delete_probe: one delete request per lane from seed 0's final state, lanes in one vmap; "
            "wall time of the call minus that of an all-no-op call, divided by the lanes; shared 2-core CPU.",
            "distinguishing_audit: simulated releases of W~ + sigma Xi (deleted) vs W* + sigma Xi' (never there), "
            "white-box Neyman-Pearson attacker; tpr_certified is Phi(Delta/sigma - Phi^-1(1 - fpr)).",
            "feature injection: weights of the injected feature (all outputs, Frobenius) before the first and after "
            "the last injected delete; the retrain's weight is exactly 0.",
        ],
        **common.provenance_metadata(),
    }
    common.write_json(workdir / f"{name}.json", meta)
    common.write_npz(workdir / f"{name}.npz", **arrays)
    prov = f"{data.name} ({data.provenance})"
    plot_capacity(workdir / f"{name}_capacity.png",
                  f"{prov}: deletion capacity vs epsilon, delta={cfg.privacy.delta_total:g}, {cfg.accountant}\n"
                  f"T={cfg.T:,}, gamma_priv={cfg.privacy.gamma_priv:g}, lambda={cfg.learner.l2:g}, "
                  f"polish Delta={delta:g}", cap, results, cfg)
    plot_distance(workdir / f"{name}_distance.png",
                  f"{prov}: distance of the certified model to the exact float64 retrain\n"
                  f"{cfg.schedule} schedule, {cfg.num_seeds} seeds, lambda={cfg.learner.l2:g}", results, delta)
    plot_accuracy(workdir / f"{name}_accuracy.png",
                  f"{prov}: held-out accuracy over the interleaving stage ({cfg.num_seeds} seeds, 95% band)\n"
                  f"deletes every {cfg.uniform_inserts + 1} events ({cfg.schedule})", results, baseline_out,
                  plan.stages["interleave"][3])


def banner(cfg, data, plan, mechanisms):
    p = cfg.privacy
    ops_c = schedule_ops(cfg)
    lines = [
        "=" * 78,
        f"mpjax certified deletion | dataset {data.name} | provenance: {data.provenance.upper()}",
        f"  source: {data.source}",
        f"  n={data.x.shape[0]:,} (held out {cfg.n_test}) d={plan.dim} (incl. bias and the injected feature) "
        f"K={data.num_classes} | mechanisms {', '.join(mechanisms)}",
        f"  events per seed: {cfg.n_calibration} calibrate + learn until max N* (>= {cfg.n_learn}, <= "
        f"{max_learn_length(cfg, plan)}) + {ops_c.size} interleave "
        f"({int(np.sum(ops_c == ul.OP_DELETE))} delete requests, {cfg.schedule}); injection branch "
        f"{cfg.injection.rows} injected rows",
        f"  seeds {cfg.num_seeds} (one vmap) | backend {jax.default_backend()} | "
        f"{'float64' if cfg.float64 else 'float32'} | (eps, delta)=({p.eps_total:g}, {p.delta_total:g}) "
        f"{cfg.accountant} | lambda={cfg.learner.l2:g} | polish Delta={p.polish_delta:g}, m={p.polish_capacity}",
    ]
    if data.provenance != "real":
        lines.append(f"  NOTE: {data.provenance} data, not the full real data set (see source above)")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    common.default_log_level()
    from configs.deletion_capacity import get_config

    cfg = common.resolve_config(FLAGS.config, {n: getattr(FLAGS, n) for n in _NAMED}, get_config())
    check_config(cfg)
    workdir = common.resolve_workdir(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n = 3 if cfg.mechanism == "all" else 1
    with jax.enable_x64(bool(cfg.float64)), common.single_threaded_blas():
        with tqdm(total=n, desc="deletion", unit="mechanism", file=sys.stderr, dynamic_ncols=True) as progress:
            run_config(cfg, workdir, progress)


if __name__ == "__main__":
    define_flags()
    app.run(main)
