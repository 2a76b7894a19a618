"""Data attribution by exact metagradients (MAGIC), validated by the linear datamodeling score.

    python -m experiments.influence --action=full                       # SGD, simulated Covertype
    python -m experiments.influence --action=full --learner=rls --run_id=rls_covtype
    python -m experiments.influence --action=full --dataset=rotmnist --learner=sgd
    python -m experiments.influence --action=list
    python -m experiments.influence --action=info --run_id=rls_covtype
    python -m experiments.influence --action=clean --run_id=rls_covtype [--what=all]
    python -m experiments.influence --action=show_config --learner=ons

Actions:

* ``magic``: train once on n rows in a fixed order and compute, for J held-out targets,
  the exact metagradient tau[j, i] = d phi_j / d omega_i through the whole training
  scan (nested checkpoints), plus the baselines on the very same model (TracIn,
  gradient dot, influence function, exact ridge leave-one-out for RLS). Writes
  ``scores_<method>.npz`` and ``smoothness.csv`` (finite differences of the actual
  retrain at eps = 1e-2, 1e-4, 1e-6 and the removal itself; a warning when the
  metagradient does not predict a removal-sized change).
* ``lds``: for each protocol (drop 1 %, drop 5 %, alpha = 0.5) S random subsets,
  retrained in the same order by 0/1 weights (one vmap per chunk; chunks are
  checkpointed under ``checkpoints/`` and reused by a rerun), and the cross-order
  variant (the same subsets, each in its own order), reported separately. LDS per
  method with a 95 % bootstrap interval over targets: ``lds.csv``,
  ``lds_per_target.csv``, figures and ``summary.md``. Needs the scores of ``magic``.
* ``full``: magic, then lds.
* ``list`` / ``info`` / ``clean`` (``--what=checkpoints`` or ``all``) / ``show_config``.

Runs live in ``<root>/runs/<run_id>/`` (``root`` = ``results/influence``). A run id is
generated (``YYYYMMDD_HHMMSS_<6 hex>``) or must match ``^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$``
without ``..``; anything else is refused before a path is built. ``<root>/registry.json``
(written atomically) lists id, action, config hash, status and time of every run.
Reusing an id with a different configuration needs ``--force``. Files: NPZ
(``allow_pickle=False``), JSON, CSV and PNG only, all written atomically.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import secrets
import shutil
import sys
import time
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import app, flags
from ml_collections import config_flags
from tqdm import tqdm

from experiments import common
from mpjax import learners, losses
from mpjax.data import DATASETS, load_dataset
from mpjax.influence import baselines, lds, metagrad
from mpjax.influence.remat import balanced_levels

ACTIONS = ("magic", "lds", "full", "list", "info", "clean", "show_config")
LEARNERS = tuple(learners.LEARNERS)
METHODS = ("metagradient", "tracin", "grad_dot", "influence_function", "ridge_loo")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# Purpose tags for fold_in / default_rng. Never renumber: results depend on them.
TAG_SPLIT, TAG_INIT, TAG_ORDER, TAG_MASKS, TAG_OWN_ORDER, TAG_SMOOTH = 11, 12, 13, 14, 15, 16

_NAMED = ("action", "run_id", "force", "what", "dataset", "learner")
_NON_RESULT = ("action", "run_id", "force", "what", "root", "retrain_chunk", "retrain_batch", "target_chunk")
_LDS_ONLY = ("num_subsets", "protocols", "cross_order", "num_boot")

FLAGS = flags.FLAGS


def define_flags():
    """This entry point's absl flags (defined only when run as a program)."""
    config = config_flags.DEFINE_config_file("config", "configs/influence.py", lock_config=True)
    flags.DEFINE_enum("action", None, list(ACTIONS), "What to do.")
    flags.DEFINE_string("run_id", None, "Run id (default: a new generated one).")
    flags.DEFINE_bool("force", None, "Reuse a run id with a different configuration.")
    flags.DEFINE_enum("what", None, ["checkpoints", "all"], "clean: the checkpoints or the whole run.")
    flags.DEFINE_enum("dataset", None, [d for d in DATASETS if d != "cifar10"], "Data set.")
    flags.DEFINE_enum("learner", None, list(LEARNERS), "Learner.")
    return config


# --------------------------------------------------------------------------- runs


def validate_run_id(run_id: str) -> str:
    """The id itself, or ValueError before any path is built from it."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or ".." in run_id:
        raise ValueError(f"run_id {run_id!r} is invalid; valid: 1-64 characters from [A-Za-z0-9_.-], starting "
                         "with a letter or digit, without '..'")
    return run_id


def new_run_id() -> str:
    return time.strftime("%Y%m%d_%H%M%S") + "_" + secrets.token_hex(3)


def runs_root(root) -> pathlib.Path:
    return common.resolve_workdir(str(root)) / "runs"


def run_dir(root, run_id: str) -> pathlib.Path:
    """``<root>/runs/<run_id>``, checked to resolve inside ``runs/`` (symlinks included)."""
    validate_run_id(run_id)
    base = runs_root(root).resolve()
    path = (base / run_id).resolve()
    if path.parent != base:
        raise ValueError(f"run folder {path} does not resolve inside {base}; refusing to touch it")
    return path


def _registry_path(root) -> pathlib.Path:
    return common.resolve_workdir(str(root)) / "registry.json"


def read_registry(root) -> dict[str, Any]:
    path = _registry_path(root)
    if not path.exists():
        return {"runs": {}}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); fix or remove it") from None


def update_registry(root, run_id: str, **fields) -> None:
    reg = read_registry(root)
    entry = reg["runs"].setdefault(run_id, {"id": run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    entry.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    common.write_json(_registry_path(root), reg)


def _forget(root, run_id: str) -> None:
    reg = read_registry(root)
    if reg["runs"].pop(run_id, None) is not None:
        common.write_json(_registry_path(root), reg)


# --------------------------------------------------------------------------- config


def _split(text: str) -> list[str]:
    return [s.strip() for s in str(text).split(",") if s.strip()]


def result_config(cfg) -> dict[str, Any]:
    """The fields that determine the results (hashed to detect a reused id)."""
    d = cfg.to_dict()
    for f in _NON_RESULT:
        d.pop(f, None)
    d["learners"] = {cfg.learner: d["learners"][cfg.learner]}
    return d


def magic_hash(cfg) -> str:
    d = result_config(cfg)
    for f in _LDS_ONLY:
        d.pop(f, None)
    return common.config_hash(d)


def check_config(cfg) -> None:
    """Bad values are refused before any data is loaded (ValueError: field, value, valid range)."""
    if cfg.action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {cfg.action!r}")
    if cfg.learner not in LEARNERS:
        raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {cfg.learner!r}")
    if int(cfg.num_targets) < 1:
        raise ValueError(f"num_targets (J) must be >= 1, got {cfg.num_targets}")
    if int(cfg.n) < 2:
        raise ValueError(f"n (training rows) must be >= 2, got {cfg.n}")
    if int(cfg.num_subsets) < lds.MIN_SUBSETS:
        raise ValueError(f"num_subsets (S) must be >= {lds.MIN_SUBSETS}, got {cfg.num_subsets}")
    if int(cfg.epochs) < 1 or int(cfg.num_levels) < 1:
        raise ValueError(f"epochs and num_levels must be >= 1, got {cfg.epochs}, {cfg.num_levels}")
    for field in ("retrain_chunk", "retrain_batch", "target_chunk"):
        if int(cfg[field]) < 0:
            raise ValueError(f"{field} must be >= 0 (0: all at once), got {cfg[field]}")
    unknown = [m for m in _split(cfg.methods) if m not in METHODS]
    if unknown or not _split(cfg.methods):
        raise ValueError(f"methods must be a comma list from {', '.join(METHODS)}, got {cfg.methods!r}")
    for p in _split(cfg.protocols) + _split(cfg.cross_order):
        kind, frac = lds.protocol_spec(p)
        if not 0.0 < frac < 1.0:
            what = "drop fraction" if kind == "drop" else "alpha"
            raise ValueError(f"protocol {p!r}: {what} must be in (0, 1), got {frac}")
    if not _split(cfg.protocols):
        raise ValueError("protocols must name at least one LDS protocol")
    for e in _split(cfg.smoothness_eps):
        if not 0.0 < float(e) < 1.0:
            raise ValueError(f"smoothness_eps must hold values in (0, 1), got {e}")
    if cfg.learner == "rls" and cfg.loss != "squared":
        raise ValueError(f"rls is exact for the squared loss only, got loss={cfg.loss!r}")


# --------------------------------------------------------------------------- problem


class Problem:
    """Host and device arrays of one attribution problem (data split, order, learner)."""

    def __init__(self, cfg):
        self.cfg = cfg
        dtype = jnp.float64 if cfg.float64 else jnp.float32
        self.dtype = np.dtype(dtype)
        rows_wanted = int(cfg.n) + int(cfg.num_targets)
        data = load_dataset(cfg.dataset, data_source=cfg.data_source, require_real=cfg.require_real,
                            seed=cfg.seed, image_size=(cfg.image_size or None) if cfg.dataset != "covtype" else None,
                            max_rows=rows_wanted, progress=False)
        self.data = data
        total = data.x.shape[0]
        j = int(cfg.num_targets)
        if total < j + 2:
            raise ValueError(f"num_targets = {j} leaves fewer than 2 training rows of the {total} available")
        self.n = min(int(cfg.n), total - j)
        self.notes = []
        if self.n < int(cfg.n):
            self.notes.append(f"n capped at {self.n} (the data set has {total} rows, {j} are targets)")
        perm = np.random.default_rng([cfg.seed, TAG_SPLIT]).permutation(total)
        self.target_rows = perm[:j].astype(np.int64)
        self.train_rows = np.sort(perm[j:j + self.n]).astype(np.int64)
        metagrad.validate_problem(data.x, data.y, self.train_rows, self.target_rows)
        self.x = jnp.asarray(data.x[self.train_rows], dtype)
        self.y = jnp.asarray(data.y[self.train_rows], dtype)
        self.test_x = jnp.asarray(data.x[self.target_rows], dtype)
        self.test_y = jnp.asarray(data.y[self.target_rows], dtype)
        key = jax.random.key(int(cfg.seed))
        okey = jax.random.fold_in(key, TAG_ORDER)
        self.order = jnp.concatenate([jax.random.permutation(jax.random.fold_in(okey, e), self.n)
                                      for e in range(int(cfg.epochs))]).astype(jnp.int32)
        self.T = int(self.order.shape[0])
        self.levels = balanced_levels(self.T, int(cfg.num_levels))
        hyper = dict(cfg.learners[cfg.learner])
        if cfg.learner != "rls":
            hyper["loss"] = cfg.loss
        self.hyper = hyper
        self.learner = learners.multi_output(learners.get(cfg.learner, **hyper), data.num_classes)
        self.state = self.learner.init(data.x.shape[1], jax.random.fold_in(key, TAG_INIT))
        self.key = key

    @property
    def l2_total(self) -> float:
        """The ridge of the objective the learner tracks (influence-function damping)."""
        l2 = float(self.hyper["l2"])
        return l2 if self.cfg.learner == "rls" else l2 * self.T

    def methods(self) -> list[str]:
        chosen = _split(self.cfg.methods)
        return [m for m in chosen if m != "ridge_loo" or self.cfg.learner == "rls"]


def _timed(fn, *args):
    """``(outputs on host, compile seconds, run seconds)`` of ``jax.jit(fn)(*args)``."""
    with common.Stopwatch() as c:
        compiled = jax.jit(fn).lower(*args).compile()
    with common.Stopwatch() as r:
        out = jax.block_until_ready(compiled(*args))
    return jax.device_get(out), c.seconds, r.seconds


def compute_scores(p: Problem) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]], np.ndarray]:
    """Every method's tau[J, n] on the model trained on all n rows; timings; phi[J]."""
    cfg, lrn = p.cfg, p.learner
    chunk = int(cfg.target_chunk) or None
    args = (p.state, p.x, p.y, p.order, p.test_x, p.test_y)
    scores, timings = {}, {}
    phi = None

    def final_w(state, x, y, order):
        final, _ = metagrad.train_weighted(lrn, state, x, y, order, jnp.ones((x.shape[0],), x.dtype))
        return final.w

    w = None
    for method in p.methods():
        if method == "metagradient":
            (phi, tau), c, r = _timed(lambda *a: metagrad.metagradients(lrn, *a, levels=p.levels,
                                                                        target_chunk=chunk), *args)
        elif method == "tracin":
            tau, c, r = _timed(lambda *a: baselines.tracin(lrn, *a), *args)
        else:
            if w is None:
                w, wc, wr = _timed(final_w, *args[:4])
                timings["forward"] = {"compile_s": wc, "run_s": wr}
            fn = losses.get(cfg.loss)
            if method == "grad_dot":
                tau, c, r = _timed(lambda ww, *a: baselines.grad_dot(ww, fn, *a), w, p.x, p.y, p.test_x, p.test_y)
            elif method == "influence_function":
                tau, c, r = _timed(lambda ww, *a: baselines.influence_function(ww, fn, *a, p.l2_total),
                                   w, p.x, p.y, p.test_x, p.test_y)
            else:
                tau, c, r = _timed(lambda *a: baselines.ridge_loo(*a, float(p.hyper["l2"])),
                                   p.x, p.y, p.test_x, p.test_y)
        scores[method] = np.asarray(tau, np.float64)
        timings[method] = {"compile_s": c, "run_s": r}
    return scores, timings, (None if phi is None else np.asarray(phi))


def save_scores(path: pathlib.Path, tau, p: Problem, mhash: str) -> None:
    common.write_npz(path, tau=tau, train_rows=p.train_rows, target_rows=p.target_rows,
                     order=np.asarray(p.order), magic_hash=np.asarray(mhash))


def load_scores(path: pathlib.Path, p: Problem, mhash: str) -> np.ndarray:
    """tau of a scores file, checked against the problem (shape, row ids, configuration)."""
    with np.load(path, allow_pickle=False) as z:
        tau, train_rows, target_rows = z["tau"], z["train_rows"], z["target_rows"]
        saved_hash = str(z["magic_hash"]) if "magic_hash" in z else None
    want = (p.target_rows.shape[0], p.train_rows.shape[0])
    if tau.shape != want:
        raise ValueError(f"{path.name}: tau has shape {tau.shape}, expected (J, n) = {want}")
    if not np.array_equal(train_rows, p.train_rows):
        raise ValueError(f"{path.name}: train_rows do not match this run's {want[1]} training rows")
    if not np.array_equal(target_rows, p.target_rows):
        raise ValueError(f"{path.name}: target_rows do not match this run's {want[0]} targets")
    if saved_hash is not None and saved_hash != mhash:
        raise ValueError(f"{path.name} was computed with another configuration (hash {saved_hash}, now {mhash}); "
                         "run --action=magic (or full) for this configuration first")
    return tau


# --------------------------------------------------------------------------- retrains


def _retrain_fn(p: Problem):
    """One jitted retrain function per problem (one compile per input shape, reused across protocols)."""
    if getattr(p, "_retrain", None) is None:
        lrn = p.learner

        def fn(state, x, y, order, masks, tx, ty):
            return lds.retrain_outputs(lrn, state, x, y, order, masks, tx, ty, batch_size=int(p.cfg.retrain_batch))

        p._retrain = jax.jit(fn)
    return p._retrain


def retrain_chunked(p: Problem, masks: np.ndarray, orders: np.ndarray | None, label: str, ckpt_dir: pathlib.Path,
                    run_hash: str, progress) -> tuple[np.ndarray, float]:
    """f[S, J] actual target losses, ``retrain_chunk`` subsets per compiled call, checkpointed."""
    s_total = masks.shape[0]
    size = min(int(p.cfg.retrain_chunk) or s_total, s_total)
    fn = _retrain_fn(p)
    out = np.empty((s_total, p.test_x.shape[0]), np.float64)
    seconds = 0.0
    for c, lo in enumerate(range(0, s_total, size)):
        path = ckpt_dir / f"actual_{label}_{c:03d}.npz"
        hi = min(lo + size, s_total)
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                if str(z["run_hash"]) == run_hash and int(z["lo"]) == lo and int(z["hi"]) == hi:
                    out[lo:hi] = z["actual"]
                    progress.update(hi - lo)
                    continue
        idx = np.minimum(np.arange(lo, lo + size), s_total - 1)  # pad the last chunk: one compile
        m = jnp.asarray(masks[idx], p.dtype)
        o = p.order if orders is None else jnp.asarray(orders[idx])
        with common.Stopwatch() as sw:
            res = np.asarray(jax.block_until_ready(fn(p.state, p.x, p.y, o, m, p.test_x, p.test_y)))
        seconds += sw.seconds
        out[lo:hi] = res[: hi - lo]
        common.write_npz(path, actual=out[lo:hi], lo=np.asarray(lo), hi=np.asarray(hi), run_hash=np.asarray(run_hash))
        progress.update(hi - lo)
    return out, seconds


def _protocol_key(p: Problem, tag: int, name: str) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(p.key, tag), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def smoothness(p: Problem, tau: np.ndarray, phi: np.ndarray) -> pd.DataFrame:
    """Finite differences of the actual retrain vs tau, and the removal change vs -tau."""
    cfg = p.cfg
    rng = np.random.default_rng([cfg.seed, TAG_SMOOTH])
    samples = np.sort(rng.choice(p.n, min(int(cfg.smoothness_samples), p.n), replace=False))
    targets = np.arange(min(int(cfg.smoothness_targets), tau.shape[0]))
    eps_list = [float(e) for e in _split(cfg.smoothness_eps)]
    weights, kinds = [], []
    for i in samples:
        for e in eps_list:
            for sign in (1.0, -1.0):
                w = np.ones(p.n)
                w[i] += sign * e
                weights.append(w)
                kinds.append((i, e, sign))
        w = np.ones(p.n)
        w[i] = 0.0
        weights.append(w)
        kinds.append((i, 0.0, 0.0))
    out = np.asarray(jax.block_until_ready(_retrain_fn(p)(
        p.state, p.x, p.y, p.order, jnp.asarray(np.array(weights), p.dtype), p.test_x, p.test_y)), np.float64)
    res = {k: out[r] for r, k in enumerate(kinds)}
    rows = []
    for i in samples:
        for j in targets:
            t = float(tau[j, i])
            for e in eps_list:
                fd = (res[(i, e, 1.0)][j] - res[(i, e, -1.0)][j]) / (2 * e)
                rows.append({"sample": int(p.train_rows[i]), "target": int(p.target_rows[j]), "eps": e,
                             "kind": "central_difference", "actual": fd, "predicted": t,
                             "rel_err": abs(fd - t) / max(abs(t), 1e-300)})
            change = float(res[(i, 0.0, 0.0)][j] - phi[j])
            rows.append({"sample": int(p.train_rows[i]), "target": int(p.target_rows[j]), "eps": 1.0,
                         "kind": "removal", "actual": change, "predicted": -t,
                         "rel_err": abs(change + t) / max(abs(change), 1e-300)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- actions


def _describe(p: Problem) -> dict[str, Any]:
    d = p.data
    return {
        "dataset": d.name, "data_provenance": d.provenance, "data_source": d.source, "n": p.n,
        "num_targets": int(p.target_rows.shape[0]), "dim": int(d.x.shape[1]), "num_outputs": d.num_classes,
        "T": p.T, "levels": list(p.levels), "dtype": str(p.dtype), "learner": p.cfg.learner, "hyper": p.hyper,
        "notes": p.notes,
    }


def action_magic(cfg, path: pathlib.Path, p: Problem, meta: dict) -> None:
    mhash = magic_hash(cfg)
    scores, timings, phi = compute_scores(p)
    for method, tau in scores.items():
        if not np.isfinite(tau).all():
            meta["warnings"].append(f"{method}: {int((~np.isfinite(tau)).sum())} non-finite scores")
        save_scores(path / f"scores_{method}.npz", tau, p, mhash)
    meta["timings"]["scores"] = timings
    if "metagradient" in scores:
        with common.Stopwatch() as sw:
            frame = smoothness(p, scores["metagradient"], phi)
        frame.insert(0, "provenance", p.data.provenance)
        frame.insert(0, "learner", cfg.learner)
        common.write_csv(path / "smoothness.csv", frame)
        meta["timings"]["smoothness_s"] = sw.seconds
        removal = frame[frame.kind == "removal"].rel_err
        fd = frame[(frame.kind == "central_difference") & (frame.eps == 1e-4)].rel_err
        meta["smoothness"] = {"removal_median_rel_err": float(removal.median()),
                              "fd_1e-4_max_rel_err": float(fd.max()) if len(fd) else None}
        if removal.median() > float(cfg.removal_tolerance):
            meta["warnings"].append(
                f"the metagradient does not predict a removal-sized change: median |change + tau| / |change| = "
                f"{removal.median():.3g} > {cfg.removal_tolerance} over {len(removal)} (sample, target) pairs "
                "(smoothness.csv)")
    meta["magic_hash"] = mhash


def action_lds(cfg, path: pathlib.Path, p: Problem, meta: dict) -> list[dict]:
    mhash = magic_hash(cfg)
    available = [m for m in p.methods() if (path / f"scores_{m}.npz").exists()]
    if not available:
        raise ValueError(f"run {path.name} has no scores_<method>.npz; run --action=magic (or --action=full) "
                         f"with --run_id={path.name} first")
    scores = {m: load_scores(path / f"scores_{m}.npz", p, mhash) for m in available}
    ckpt = path / "checkpoints"
    labels = [(q, False) for q in _split(cfg.protocols)] + [(q, True) for q in _split(cfg.cross_order)]
    s = int(cfg.num_subsets)
    rows, per_target, written = [], [], {}
    meta["timings"]["retrain_s"] = {}
    with tqdm(total=s * len(labels), desc="retrains", unit="model", file=sys.stderr, dynamic_ncols=True) as bar:
        for q, own in labels:
            label = f"{q}_own_order" if own else q
            kind, frac = lds.protocol_spec(q)
            masks = np.asarray(lds.make_masks(_protocol_key(p, TAG_MASKS, q), p.n, s, kind, frac))
            orders = (np.asarray(lds.make_orders(_protocol_key(p, TAG_OWN_ORDER, q), p.order, s)) if own else None)
            actual, secs = retrain_chunked(p, masks, orders, label, ckpt, meta["run_hash"], bar)
            meta["timings"]["retrain_s"][label] = secs
            extra = {} if orders is None else {"orders": orders.astype(np.int32)}
            written[label] = masks.astype(np.uint8), actual  # what the files hold, for the figure below
            common.write_npz(path / f"masks_{label}.npz", masks=written[label][0], train_rows=p.train_rows,
                             **extra)
            common.write_npz(path / f"actual_{label}.npz", actual=actual, target_rows=p.target_rows)
            for method, tau in scores.items():
                pt = lds.lds(actual, lds.predicted_outputs(masks, tau))
                mean, lo, hi = lds.bootstrap_ci(pt, int(cfg.num_boot), int(cfg.seed))
                finite = pt[np.isfinite(pt)]
                rows.append({"learner": cfg.learner, "protocol": label, "method": method, "lds": mean,
                             "ci_lo": lo, "ci_hi": hi,
                             "p10": float(np.quantile(finite, 0.1)) if finite.size else math.nan,
                             "p90": float(np.quantile(finite, 0.9)) if finite.size else math.nan,
                             "n_targets": int(finite.size), "n_subsets": s, "dtype": str(p.dtype),
                             "provenance": p.data.provenance})
                per_target.extend({"learner": cfg.learner, "protocol": label, "method": method,
                                   "target": int(t), "lds": float(v)} for t, v in zip(p.target_rows, pt))
    common.write_csv(path / "lds.csv", pd.DataFrame(rows))
    common.write_csv(path / "lds_per_target.csv", pd.DataFrame(per_target))
    plot_lds(path / "lds.png", rows, p)
    if "metagradient" in scores:
        q = "drop_5pct" if "drop_5pct" in _split(cfg.protocols) else _split(cfg.protocols)[0]
        masks, actual = written[q]
        plot_predicted_vs_actual(path / "predicted_vs_actual.png", masks, actual, scores["metagradient"], q, p)
        if p.data.image_shape is not None:
            plot_top_influencers(path / "top_influencers.png", scores["metagradient"], p)
    return rows


# --------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(p: Problem) -> str:
    return (f"{p.data.name} ({p.data.provenance}), {p.cfg.learner}, n={p.n:,}, "
            f"J={p.target_rows.shape[0]}, {p.dtype}")


def plot_lds(path, rows, p: Problem) -> None:
    plt = _plt()
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(1.6 + 1.7 * len(protocols), 4.2))
    width = 0.8 / max(len(methods), 1)
    for k, m in enumerate(methods):
        sel = [next(r for r in rows if r["protocol"] == q and r["method"] == m) for q in protocols]
        xs = np.arange(len(protocols)) + (k - (len(methods) - 1) / 2) * width
        mean = np.array([r["lds"] for r in sel])
        err = np.array([[r["lds"] - r["ci_lo"] for r in sel], [r["ci_hi"] - r["lds"] for r in sel]])
        ax.errorbar(xs, mean, yerr=np.maximum(err, 0), fmt="o", color=common.COLORS[k % len(common.COLORS)],
                    capsize=3, label=m)
    ax.set_xticks(np.arange(len(protocols)))
    ax.set_xticklabels(protocols, fontsize=8)
    ax.axhline(0.0, color="gray", lw=0.6)
    ax.set_ylim(min(-0.1, min(r["ci_lo"] for r in rows) - 0.05), 1.05)
    ax.set_xlabel("LDS protocol (subsets retrained)")
    ax.set_ylabel("LDS (mean Spearman over targets)")
    ax.set_title(f"LDS with 95% bootstrap interval over targets\n{_title(p)}", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(True, axis="y", alpha=0.3)
    common.save_figure(fig, path)
    plt.close(fig)


def plot_predicted_vs_actual(path, masks, actual, tau, protocol, p: Problem) -> None:
    plt = _plt()
    pred = lds.predicted_outputs(masks, tau)
    per = lds.lds(actual, pred)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, j in zip(axes, range(min(3, tau.shape[0]))):
        ax.scatter(pred[:, j], actual[:, j], s=10, color=common.COLORS[j % len(common.COLORS)])
        ax.set_xlabel(r"predicted: $\sum_{i \in S} \tau_{ij}$")
        ax.set_ylabel(r"actual target loss $\phi_j(S)$ after retrain")
        ax.set_title(f"target row {p.target_rows[j]}: Spearman {per[j]:.3f}", fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Exact metagradient, {protocol}, {actual.shape[0]} subsets; {_title(p)}", fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, path)
    plt.close(fig)


def plot_top_influencers(path, tau, p: Problem, k: int = 4) -> None:
    """Per target: the image, then the k rows whose removal raises its loss most (tau < 0) and lowers it most."""
    plt = _plt()
    shape = p.data.image_shape
    raw, labels = p.data.raw, p.data.labels
    fig, axes = plt.subplots(3, 1 + 2 * k, figsize=(1.4 * (1 + 2 * k), 4.6), squeeze=False)
    for r in range(3):
        j = r
        order = np.argsort(tau[j])
        picks = [("target", p.target_rows[j])] + [("helps", p.train_rows[i]) for i in order[:k]] + \
                [("hurts", p.train_rows[i]) for i in order[::-1][:k]]
        for c, (what, row) in enumerate(picks):
            ax = axes[r][c]
            ax.imshow(raw[row].reshape(shape), cmap="gray" if len(shape) == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{what}\nrow {row}, y={labels[row]}", fontsize=7,
                         color={"target": "black", "helps": "blue", "hurts": "red"}[what])
    fig.suptitle(f"Top influencers by exact metagradient (helps: removing it raises the target loss most)\n"
                 f"{_title(p)}", fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, path)
    plt.close(fig)


def write_summary(path, cfg, p: Problem, rows, meta) -> None:
    lines = [f"# Influence run {path.name}", "",
             f"- data: {p.data.name}, provenance **{p.data.provenance}** ({p.data.source})",
             f"- learner: {cfg.learner} {p.hyper}; {p.dtype}; n = {p.n:,} training rows in one fixed order "
             f"(T = {p.T:,}, scan_remat levels {p.levels}); J = {p.target_rows.shape[0]} held-out targets; "
             f"S = {cfg.num_subsets} subsets per protocol",
             f"- created {time.strftime('%Y-%m-%d %H:%M:%S')}, commit {meta.get('git_commit')}", "",
             "| protocol | method | LDS [95% CI] | p10 | p90 |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['method']} | {r['lds']:.3f} [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}] | "
                     f"{r['p10']:.3f} | {r['p90']:.3f} |")
    lines += ["", "Protocols ending in `_own_order` train every subset in its own order (cross-order LDS); "
              "attribution is defined for the fixed order, so they are reported apart.", ""]
    if meta.get("smoothness"):
        sm = meta["smoothness"]
        lines.append(f"Smoothness: central differences at eps = 1e-4 within {sm['fd_1e-4_max_rel_err']:.2g} "
                     f"(max relative error); removal predicted by -tau to {sm['removal_median_rel_err']:.2g} "
                     "(median relative error).")
    for w in meta["warnings"]:
        lines.append(f"\n**Warning:** {w}")
    for note in p.notes:
        lines.append(f"\nNote: {note}")
    common.write_text(path / "summary.md", "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- main


def _print_registry(cfg) -> None:
    reg = read_registry(cfg.root)["runs"]
    if not reg:
        print(f"no runs under {runs_root(cfg.root)}")
        return
    rows = sorted(reg.values(), key=lambda r: r.get("updated", ""))
    print(common.format_table(rows, ["id", "action", "status", "learner", "dataset", "config_hash", "updated"]))


def _info(cfg) -> None:
    if not cfg.run_id:
        raise ValueError("--action=info needs --run_id (see --action=list)")
    path = run_dir(cfg.root, cfg.run_id)
    meta_path = path / "config.json"
    if not meta_path.exists():
        raise ValueError(f"no run {cfg.run_id!r} under {runs_root(cfg.root)} (see --action=list)")
    meta = json.loads(meta_path.read_text())
    entry = read_registry(cfg.root)["runs"].get(cfg.run_id, {})
    print(f"run {cfg.run_id}: status {entry.get('status', '?')}, learner {meta['problem']['learner']}, "
          f"data {meta['problem']['dataset']} ({meta['problem']['data_provenance']}), "
          f"n={meta['problem']['n']}, J={meta['problem']['num_targets']}, {meta['problem']['dtype']}")
    for f in sorted(path.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(path)}  {f.stat().st_size:,} B")
    if (path / "lds.csv").exists():
        print(pd.read_csv(path / "lds.csv")[["protocol", "method", "lds", "ci_lo", "ci_hi"]].to_string(index=False))


def clean(cfg) -> list[str]:
    """Removes a run's checkpoints (``what=checkpoints``) or its whole folder (``what=all``)."""
    if not cfg.run_id:
        raise ValueError("--action=clean needs --run_id (see --action=list)")
    if cfg.what not in ("checkpoints", "all"):
        raise ValueError(f"what must be 'checkpoints' or 'all', got {cfg.what!r}")
    path = run_dir(cfg.root, cfg.run_id)
    target = path if cfg.what == "all" else path / "checkpoints"
    base = runs_root(cfg.root).resolve()
    resolved = target.resolve()
    if base not in resolved.parents or target.is_symlink():
        raise ValueError(f"{target} does not resolve inside {base}; refusing to remove it")
    removed = []
    if resolved.exists():
        shutil.rmtree(resolved)
        removed.append(str(resolved))
    if cfg.what == "all":
        _forget(cfg.root, cfg.run_id)
    else:
        update_registry(cfg.root, cfg.run_id, checkpoints="removed")
    return removed


def run(cfg) -> pathlib.Path:
    """magic / lds / full for one configuration; returns the run folder."""
    check_config(cfg)
    if cfg.action == "lds" and not cfg.run_id:
        raise ValueError("--action=lds needs --run_id of a run with scores (see --action=list), "
                         "or use --action=full")
    run_id = validate_run_id(cfg.run_id) if cfg.run_id else new_run_id()
    path = run_dir(cfg.root, run_id)
    rhash = common.config_hash(result_config(cfg))
    meta_path = path / "config.json"
    old = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if old is not None and old.get("run_hash") != rhash and not cfg.force:
        raise ValueError(f"run {run_id!r} exists with another configuration (hash {old.get('run_hash')}, now {rhash}); "
                         "pass --force to reuse the id, or choose another --run_id")
    if cfg.action == "lds" and old is None:
        raise ValueError(f"run {run_id!r} has no scores; run --action=magic (or --action=full) with "
                         f"--run_id={run_id} first")
    t0 = time.perf_counter()
    with common.Stopwatch() as load_sw:
        p = Problem(cfg)  # data and precision checks before anything is written
    path.mkdir(parents=True, exist_ok=True)
    update_registry(cfg.root, run_id, action=cfg.action, config_hash=rhash, status="running",
                    learner=cfg.learner, dataset=cfg.dataset)
    try:
        meta = {"config": cfg.to_dict(), "run_id": run_id, "run_hash": rhash, "problem": _describe(p),
                "timings": {"load_s": load_sw.seconds}, "warnings": [], **common.provenance_metadata()}
        if old is not None and cfg.action == "lds":
            for k in ("magic_hash", "smoothness"):
                if k in old:
                    meta[k] = old[k]
            meta["timings"]["scores"] = old.get("timings", {}).get("scores")
            meta["warnings"] = [w for w in old.get("warnings", []) if "removal" in w]
        banner(cfg, p, run_id)
        if cfg.action in ("magic", "full"):
            action_magic(cfg, path, p, meta)
        rows = []
        if cfg.action in ("lds", "full"):
            rows = action_lds(cfg, path, p, meta)
        meta["timings"]["total_s"] = time.perf_counter() - t0
        common.write_json(meta_path, meta)
        if rows:
            write_summary(path, cfg, p, rows, meta)
    except BaseException:
        update_registry(cfg.root, run_id, status="failed")
        raise
    update_registry(cfg.root, run_id, status="done", action=cfg.action)
    report(cfg, p, path, meta, rows)
    return path


def banner(cfg, p: Problem, run_id: str) -> None:
    d = p.data
    print("=" * 78)
    print(f"mpjax influence | run {run_id} | {cfg.action} | dataset {d.name} | provenance: {d.provenance.upper()}")
    print(f"  source: {d.source}")
    print(f"  learner {cfg.learner} | n={p.n:,} d={d.x.shape[1]} K={d.num_classes} T={p.T:,} | J={p.target_rows.shape[0]} "
          f"targets | S={cfg.num_subsets} | {p.dtype} | levels {p.levels} | backend {jax.default_backend()}")
    for note in p.notes:
        print(f"  NOTE: {note}")
    print("=" * 78, flush=True)


def report(cfg, p: Problem, path, meta, rows) -> None:
    if rows:
        print(common.format_table(rows, ["protocol", "method", "lds", "ci_lo", "ci_hi", "p10", "p90"]))
    for m, t in (meta["timings"].get("scores") or {}).items():
        print(f"  {m}: compile {t['compile_s']:.2f} s, run {t['run_s']:.2f} s")
    for w in meta["warnings"]:
        print(f"WARNING: {w}")
    print(f"total {meta['timings']['total_s']:.1f} s; results in {path}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from configs.influence import get_config

    cfg = common.resolve_config(FLAGS.config, {n: getattr(FLAGS, n) for n in _NAMED}, get_config())
    try:
        if cfg.action == "show_config":
            print(cfg)
        elif cfg.action == "list":
            _print_registry(cfg)
        elif cfg.action == "info":
            _info(cfg)
        elif cfg.action == "clean":
            removed = clean(cfg)
            print("removed: " + (", ".join(removed) if removed else "nothing (already clean)"))
        else:
            if cfg.float64:
                jax.config.update("jax_enable_x64", True)
            run(cfg)
    except ValueError as e:
        raise app.UsageError(str(e)) from None


if __name__ == "__main__":
    define_flags()
    app.run(main)
