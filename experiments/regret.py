"""Exact regret of every learner on iid, drifting and adversarial streams.

    python -m experiments.regret --dataset=covtype --stream=adv
    python -m experiments.regret --sweep

Per (dataset, stream) the seeds' stream schedules are built once, in one compiled
program, and shared by every learner; per algorithm all seeds run in one ``vmap``
inside one compiled program, sharded over the host's devices (one per core by
default; results are bit-identical to the unsharded run). Regret is exact at every
step (``mpjax.regret``) and reported at logged steps with a 95% band over seeds, a
log-log slope per seed and a verdict (:func:`slope_verdict`). The seed band covers
the stream order and the initialisation on one fixed data set. Outputs (atomic):
``{dataset}_{stream}_{algo}.{csv,npz,json,png}`` and ``{dataset}_{stream}.png``
under ``--workdir``; ``--sweep`` adds ``summary.md`` and ``summary_grid.png``.
"""

from __future__ import annotations

import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from absl import app, flags
from ml_collections import config_flags
from tqdm import tqdm

from experiments import common
from mpjax import learners, regret, streams
from mpjax import run as run_lib
from mpjax.data import DATA_SOURCES, DATASETS, load_dataset

ALGOS = tuple(learners.LEARNERS)


def define_flags():
    """Defines this entry point's absl flags; called only when run as a program, so that
    importing both experiments (tests, notebooks) does not define the same flags twice."""
    config = config_flags.DEFINE_config_file("config", "configs/regret.py", lock_config=True)
    flags.DEFINE_enum("dataset", None, list(DATASETS), "Data set.")
    flags.DEFINE_enum("stream", None, list(streams.STREAMS), "Stream kind.")
    flags.DEFINE_enum("algo", None, [*ALGOS, "all"], "Learner, or all of them.")
    flags.DEFINE_integer("T", None, "Stream length.")
    flags.DEFINE_integer("seed", None, "Integer seed of the run.")
    flags.DEFINE_integer("num_seeds", None, "Replicates (one vmap).")
    flags.DEFINE_string("workdir", None, "Results folder.")
    flags.DEFINE_enum("data_source", None, list(DATA_SOURCES), "Where the data comes from.")
    flags.DEFINE_bool("require_real", None, "Refuse simulated or subset data.")
    flags.DEFINE_bool("float64", None, "Run in float64.")
    flags.DEFINE_bool("sweep", None, "Every dataset x stream x algorithm, with a summary.")
    flags.DEFINE_bool("commit_results", None, "git-commit the result files.")
    flags.DEFINE_bool("shard_seeds", None, "Shard the seed axis over all devices.")
    flags.DEFINE_bool("overwrite", None, "Replace results of a different configuration.")
    return config


FLAGS = flags.FLAGS

_NAMED = ("dataset", "stream", "algo", "T", "seed", "num_seeds", "workdir", "data_source",
          "require_real", "float64", "sweep", "commit_results", "shard_seeds", "overwrite")

# Fields that do not change results (excluded from the rerun hash).
_NON_RESULT_FIELDS = ("workdir", "commit_results", "overwrite", "sweep", "shard_seeds", "distributed", "cpu_devices",
                      "compilation_cache")

SEED_BAND = "stream order and learner initialisation on one fixed data set (the data are not resampled)"


def _check_config(cfg):
    if cfg.T < 1:
        raise app.UsageError(f"--T must be >= 1, got {cfg.T}")
    if cfg.num_seeds < 1:
        raise app.UsageError(f"--num_seeds must be >= 1, got {cfg.num_seeds}")
    if cfg.window % cfg.comparator_block:
        raise app.UsageError("config.window must be a multiple of config.comparator_block")
    if cfg.loss not in ("squared", "logistic"):
        raise app.UsageError(f"config.loss must be squared or logistic, got {cfg.loss!r}")
    if cfg.loss == "logistic" and cfg.algo == "rls":
        raise app.UsageError("rls is exact for the squared loss only")
    unknown = sorted(set(cfg.float64_learners) - set(ALGOS))
    if unknown:
        raise app.UsageError(f"config.float64_learners: unknown learners {unknown}; valid: {', '.join(ALGOS)}")
    if cfg.cpu_devices < 0:
        raise app.UsageError(f"config.cpu_devices must be >= 0 (0: one per core), got {cfg.cpu_devices}")
    if cfg.small_loop_bytes < 0:
        raise app.UsageError(f"config.small_loop_bytes must be >= 0 (0: XLA's defaults), got {cfg.small_loop_bytes}")
    for algo in ALGOS:
        spb = cfg.seeds_per_batch.get(algo)
        if spb is None or int(spb) < common.AUTO_WIDTH:
            raise app.UsageError(f"config.seeds_per_batch.{algo} must be >= 0 (0: all seeds of a device in one vmap, "
                                 f"1: one at a time) or {common.AUTO_WIDTH} (auto: {_auto_words(algo)}), got {spb}")


# --------------------------------------------------------------------------- one cell


def _load(cfg, dataset):
    image_size = cfg.image_size or None
    return load_dataset(
        dataset,
        data_source=cfg.data_source,
        require_real=cfg.require_real,
        seed=cfg.seed,
        image_size=image_size if dataset != "covtype" else None,
        grayscale=bool(cfg.cifar_grayscale) if dataset == "cifar10" else False,
        max_rows=cfg.max_rows,
    )


def _auto_words(algo):
    pairs = common.AUTO_WHOLE.get(algo, 1)
    whole = (f"batches of {pairs} where the scan is compiled whole, up to {common.AUTO_WHOLE_MAX_DIM} features and on "
             "an even seed count per device, else 1" if pairs > 1 else "1 where the scan is compiled whole")
    return f"{whole}; {common.AUTO_WIDE} where it is not"


def _seeds_for(cfg, algo, dim):
    if algo in ("ons", "rls") and cfg.d2_max_seeds and dim > cfg.d2_dim_threshold:
        return min(cfg.num_seeds, cfg.d2_max_seeds)
    return cfg.num_seeds


def _mesh(cfg):
    """A one-axis mesh over every device when seeds are sharded, else None."""
    return common.seed_mesh() if cfg.shard_seeds else None


class Schedules:
    """Every seed's stream, built once per (dataset, stream) and shared by the learners.

    ``keys`` are the replicate keys (padded to the mesh), ``stream`` the stacked
    :class:`mpjax.streams.Stream` (device arrays, seed axis first), ``table`` and
    ``targets`` the data on the devices. The stream depends on the seed and the
    configuration only, never on a learner or the precision.
    """

    def __init__(self, cfg, data, stream_kind, num_seeds, mesh):
        self.kind, self.mesh = stream_kind, mesh
        k = data.num_classes
        table = np.asarray(streams.stream_table(data, stream_kind), np.float32)
        targets = np.asarray(data.y, np.float32)
        run_lib.validate_data(table, targets, name=data.name)
        self.table_host, self.targets_host = table, targets
        self.transform = streams.make_transform(data, stream_kind)
        opts = dict(cfg.stream_opts)
        is_image, raw_dim = data.image_shape is not None, data.raw.shape[1]
        padded = common.padded_seeds(num_seeds, mesh)
        self.keys = common.put_seeds(mesh, run_lib.seed_keys(cfg.seed, padded), True)
        self.table = common.put_seeds(mesh, table, False)
        self.targets = common.put_seeds(mesh, targets, False)
        labels = common.put_seeds(mesh, np.asarray(data.labels, np.int32), False)

        def build(keys, labels):
            # Labels are an argument, not a closure constant: XLA would constant-fold the schedule.
            return jax.vmap(lambda key: streams.make_stream(
                stream_kind, run_lib.purpose_key(key, run_lib.TAG_STREAM), labels, cfg.T, num_classes=k,
                is_image=is_image, raw_dim=raw_dim, **opts))(keys)

        with common.Stopwatch() as sw:
            self.stream = jax.block_until_ready(jax.jit(build)(self.keys, labels))
        self.seconds = sw.seconds


def run_learner(cfg, data, sched, algo, num_seeds, plan):
    """Runs one learner over the first ``num_seeds`` seeds of the shared schedules.

    Learners named in ``cfg.float64_learners`` (or all, with ``--float64``) run with
    float64 state (``jax.enable_x64``); the others in float32. ``plan`` is
    ``common.scan_plan``'s ``(whole, width)`` for this learner. Returns the traces
    (host arrays, seed axis first) and the compile and run seconds.
    """
    whole, width = plan
    k = data.num_classes
    hyper = dict(cfg.learners[algo])
    if algo != "rls":
        hyper["loss"] = cfg.loss
    x64 = bool(cfg.float64) or algo in cfg.float64_learners
    padded = common.padded_seeds(num_seeds, sched.mesh)
    with jax.enable_x64(x64):
        learner = learners.multi_output(learners.get(algo, **hyper), k)
        dim = data.x.shape[1]

        def one(key, stream, table, targets):
            return run_lib.run_seed(learner, dim, key, table, targets, stream, sched.transform, cfg.unroll)[1]

        over_seeds = common.map_seeds(one, sched.mesh, width, num_shared=2, num_seeds=num_seeds)

        def program(keys, stream, table, targets):
            return over_seeds(keys[:padded], jax.tree_util.tree_map(lambda a: a[:padded], stream), table, targets)

        args = (sched.keys, sched.stream, sched.table, sched.targets)
        with common.Stopwatch() as compile_time:
            compiled = common.compile_scan(program, *args, fast=whole)
        with common.Stopwatch() as run_time:
            with jax.transfer_guard("disallow"):
                out = compiled(*args)
            out = jax.block_until_ready(out)
    trace = jax.tree_util.tree_map(lambda a: np.asarray(a)[:num_seeds], jax.device_get(out))
    return {"trace": trace, "x64": x64, "compile_s": compile_time.seconds, "run_s": run_time.seconds}


def comparators(cfg, data, sched, rows, num_seeds):
    """Exact comparator increments per seed (float64): static, and dynamic for drift.

    All seeds in one vmap on one device, whatever the learners' sharding: the
    arithmetic (batched BLAS-3 blocks and LAPACK factorisations, which XLA runs
    multithreaded on one device) is then the same in sharded and unsharded runs, and
    LAPACK calls are kept off the multi-device CPU runtime, which deadlocked on two
    cores in a sharded version.
    """
    d, k = data.x.shape[1], data.num_classes
    stream_kind, transform = sched.kind, sched.transform
    aux = np.asarray(sched.stream.aux)[:num_seeds]
    direction = np.asarray(sched.stream.direction)[:num_seeds]
    device = jax.devices()[0]
    with jax.enable_x64(True):
        table_j = jax.device_put(np.asarray(sched.table_host, np.float64), device)
        targets_j = jax.device_put(np.asarray(sched.targets_host, np.float64), device)

        def one(rows, aux, direction):
            def featurize(r, a):
                x = table_j[r]
                if transform is not None:
                    x = jax.vmap(transform, in_axes=(0, 0, None))(x, a, direction)
                return x, targets_j[r]

            static = regret.ridge_comparator(featurize, rows, aux, d, k, cfg.lam, cfg.comparator_block)
            if stream_kind != "drift":
                return static.increments, static.increments, jnp.zeros(())
            dyn = regret.ridge_comparator(
                featurize, rows, aux, d, k, cfg.lam, cfg.comparator_block, window=cfg.window
            )
            return static.increments, dyn.increments, dyn.path_length

        # LAPACK (the blocks' Cholesky factors) on one OpenBLAS thread: multithreaded OpenBLAS
        # spins for cores it does not get when the CPU is shared, and the blocks are small.
        with common.Stopwatch() as sw, common.single_threaded_blas():
            args = [jax.device_put(np.asarray(a), device) for a in (rows, aux, direction)]
            out = jax.jit(jax.vmap(one))(*args)
            out = jax.device_get(jax.block_until_ready(out))
    return (*out, sw.seconds)


def logistic_comparator_at(cfg, sched, rows):
    """Logistic comparator at log-spaced checkpoints (Newton, tol 1e-8), per seed."""
    checkpoints = np.unique(np.round(np.geomspace(10, cfg.T, cfg.logistic_checkpoints)).astype(int))
    aux, direction = np.asarray(sched.stream.aux), np.asarray(sched.stream.direction)
    table, targets, transform = sched.table_host, sched.targets_host, sched.transform
    feats = []
    for s in range(rows.shape[0]):
        x = table[rows[s]]
        if transform is not None:
            x = np.asarray(jax.jit(jax.vmap(transform, in_axes=(0, 0, None)))(x, aux[s], direction[s]))
        feats.append(regret.logistic_comparator(x, targets[rows[s]], cfg.lam, checkpoints))
    return checkpoints, np.stack(feats)


def summarize(cfg, steps, loss, comp_incr, dyn_incr, correct):
    """Per-seed regret curves at logged steps and their statistics."""
    idx = steps - 1
    cum_loss = np.cumsum(loss.astype(np.float64), axis=1)[:, idx]
    comp = np.cumsum(comp_incr, axis=1)[:, idx]
    dyn = np.cumsum(dyn_incr, axis=1)[:, idx]
    acc = (np.cumsum(correct, axis=1)[:, idx]) / steps
    reg = cum_loss - comp
    slopes = regret.loglog_slope(steps, reg, t_min=cfg.slope_t_min)
    return {"cum_loss": cum_loss, "comparator": comp, "regret": reg, "dynamic_regret": cum_loss - dyn,
            "accuracy": acc, "slopes": slopes}


MAX_HALF_WIDTH = 0.15  # a verdict needs the slope's 95% interval within +-0.15
MIN_SLOPE_FRACTION = 2 / 3  # ... and a slope for at least this share of the seeds


def slope_verdict(slopes, final_regret_mean=math.nan) -> dict:
    """The verdict on the log-log slopes of R_t, one per seed (DESIGN.md §2, "Regret verdicts").

    A seed has a slope only if R_t > 0 over the whole fit range. A verdict is given only
    when at least 2/3 of the seeds have one and the 95% Student-t interval of their mean
    is narrower than +-0.15; otherwise it is "undetermined" with the reason. Given one:
    "O(sqrt T)" when the upper bound is below 0.5, "consistent with sqrt T" when the
    interval admits 0.5, "sublinear, faster than sqrt T" when it lies in (0.5, 1), and
    "not shown sublinear" when its upper bound reaches 1.

    Returns:
      dict with ``verdict``, ``reason``, ``n_seeds``, ``n_slopes`` and the slope ``mean``,
      ``lo``, ``hi`` (over the seeds that have one; NaN when fewer than two do).
    """
    slopes = np.asarray(slopes, np.float64).reshape(-1)
    finite = slopes[np.isfinite(slopes)]
    n, have = slopes.size, finite.size
    mean = float(finite.mean()) if have else math.nan
    lo = hi = math.nan
    if have >= 2:
        lo, hi = (float(v) for v in common.mean_ci(finite)[1:])
    out = {"n_seeds": n, "n_slopes": have, "mean": mean, "lo": lo, "hi": hi}
    beats = (f"; mean final regret {final_regret_mean:.4g} < 0: the learner beats the best fixed comparator"
             if final_regret_mean < 0 else "")
    if have < math.ceil(MIN_SLOPE_FRACTION * n) or have < 2:
        out.update(verdict="undetermined",
                   reason=f"only {have} of {n} seeds have R_t > 0 over the whole fit range (a log-log slope "
                          f"needs positive regret; at least {math.ceil(MIN_SLOPE_FRACTION * n)} and 2 are "
                          f"required){beats}")
        return out
    half = (hi - lo) / 2
    span = f"slope {mean:.3f} [{lo:.3f}, {hi:.3f}] over {have} of {n} seeds"
    if not half < MAX_HALF_WIDTH:
        out.update(verdict="undetermined",
                   reason=f"{span}: the 95% interval is wider than +-{MAX_HALF_WIDTH} (+-{half:.3f}){beats}")
    elif hi < 0.5:
        out.update(verdict="O(sqrt T)", reason=f"{span}: grows slower than sqrt T")
    elif lo <= 0.5:
        out.update(verdict="consistent with sqrt T", reason=f"{span}: the interval admits 0.5")
    elif hi < 1.0:
        out.update(verdict="sublinear, faster than sqrt T", reason=f"{span}: above 0.5, below 1")
    else:
        out.update(verdict="not shown sublinear", reason=f"{span}: the upper bound reaches 1")
    return out


# --------------------------------------------------------------------------- plots


def _plot_band(ax, steps, values, color, label, ls="-"):
    """Mean over seeds with its 95% band; every point is drawn (negative regret included)."""
    mean, lo, hi = common.mean_ci(values)
    ax.plot(steps, mean, color=color, lw=1.6, ls=ls, label=label)
    if values.shape[0] > 1:
        ax.fill_between(steps, lo, hi, color=color, alpha=0.18, lw=0)
    return mean


def _sqrt_guide(ax, steps, anchor_t, anchor_value):
    if anchor_value > 0:
        ax.plot(steps, anchor_value * np.sqrt(steps / anchor_t), color="gray", ls="--", lw=1.0,
                label=r"$\propto\sqrt{t}$ guide")


def _regret_axes(ax):
    """Log t; symmetric-log regret (log beyond |R| = 1, linear inside) so negative regret shows."""
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.axhline(0.0, color="gray", lw=0.6)
    ax.grid(True, which="major", alpha=0.3)


def plot_cell(path, title, steps, curves, dynamic=None):
    """Log-log regret with the seed band and a sqrt(t) guide; ``curves`` maps algo -> f[S, n]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    top = 0.0
    for i, (name, values) in enumerate(curves.items()):
        color = common.COLORS[i % len(common.COLORS)]
        mean = _plot_band(ax, steps, values, color, name)
        top = max(top, float(mean[-1]))
        if dynamic is not None and name in dynamic:
            _plot_band(ax, steps, dynamic[name], color, f"{name} (dynamic, per window)", ls=":")
    _sqrt_guide(ax, steps, steps[-1], top)
    _regret_axes(ax)
    ax.set_xlabel("step t (samples seen)")
    ax.set_ylabel(r"regret $R_t$ (squared loss summed over outputs; symlog)")
    ax.set_title(title + "\nmean over seeds; 95% band over stream order and initialisation; "
                 "below 0 = better than the best fixed model", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    common.save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def _cell_config(cfg, dataset, stream_kind, algo, num_seeds, plan):
    d = cfg.to_dict()
    for f in _NON_RESULT_FIELDS:
        d.pop(f, None)
    d.update(dataset=dataset, stream=stream_kind, algo=algo, num_seeds_run=num_seeds)
    d["learners"] = {algo: d["learners"][algo]}
    # What sets this learner's rounding: its batch width as used, and whether its scan is compiled
    # whole (with cfg.small_loop_bytes, the threshold in effect, which main() puts there).
    d["whole_scan"], width = plan
    d["seeds_per_batch"] = {algo: width}
    return d


def _seed_count(cfg, algos, dim):
    return max(_seeds_for(cfg, a, dim) for a in algos)


def run_cell(cfg, data, stream_kind, algos, workdir, progress, timings=None):
    """Runs every algorithm of one (dataset, stream) and writes all its outputs.

    ``timings`` (a dict) receives the seconds spent per stage: streams, compile and run
    per learner, comparator, writing.
    """
    timings = {} if timings is None else timings
    steps = regret.log_steps(cfg.T)
    curves, rows_out = {}, []
    dim = data.x.shape[1]
    mesh = _mesh(cfg)
    cells = []
    for algo in algos:
        num_seeds = _seeds_for(cfg, algo, dim)
        name = f"{data.name}_{stream_kind}_{algo}"
        plan = common.scan_plan(algo, dim, cfg.seeds_per_batch[algo], cfg.small_loop_bytes,
                                common.local_seed_count(num_seeds, mesh))
        cell_cfg = _cell_config(cfg, data.name, stream_kind, algo, num_seeds, plan)
        chash = common.config_hash(cell_cfg)
        common.guard_existing(workdir / f"{name}.json", chash, cfg.overwrite)  # refuse before any work
        cells.append((algo, num_seeds, name, cell_cfg, chash, plan))
    sched = Schedules(cfg, data, stream_kind, _seed_count(cfg, algos, dim), mesh)
    timings["streams"] = timings.get("streams", 0.0) + sched.seconds
    comp_cache = {}
    for algo, num_seeds, name, cell_cfg, chash, plan in cells:
        progress.set_postfix_str(f"{name} ({num_seeds} seeds)")
        res = run_learner(cfg, data, sched, algo, num_seeds, plan)
        timings[f"compile_{algo}"] = res["compile_s"]
        timings[f"run_{algo}"] = res["run_s"]
        trace = res["trace"]
        rows = np.asarray(trace.row)
        # The comparator depends on the rows seen: shared by every learner but on adaptive streams.
        ckey = (num_seeds, algo if stream_kind == "adaptive" else None)
        if ckey not in comp_cache:
            comp_cache[ckey] = comparators(cfg, data, sched, rows, num_seeds)
            timings["comparator"] = timings.get("comparator", 0.0) + comp_cache[ckey][-1]
        comp_incr, dyn_incr, path_len, comp_s = comp_cache[ckey]
        write_start = time.perf_counter()
        stats = summarize(cfg, steps, np.asarray(trace.loss), comp_incr, dyn_incr, np.asarray(trace.correct))
        if cfg.loss == "logistic":
            ck, logi = logistic_comparator_at(cfg, sched, rows)
            cum = np.cumsum(np.asarray(trace.loss, np.float64), axis=1)[:, ck - 1]
            keep = np.isin(steps, ck)
            stats["regret"] = (cum - logi)
            stats["comparator"] = logi
            stats["cum_loss"] = cum
            stats["accuracy"] = stats["accuracy"][:, keep]
            stats["dynamic_regret"] = stats["regret"]
            stats["slopes"] = regret.loglog_slope(ck, stats["regret"], t_min=cfg.slope_t_min)
            csv_steps = ck
        else:
            csv_steps = steps
        mean, lo, hi = common.mean_ci(stats["regret"])
        frame = pd.DataFrame({
            "step": csv_steps, "regret": mean, "regret_lo": lo, "regret_hi": hi,
            "cum_loss": stats["cum_loss"].mean(0), "comparator_loss": stats["comparator"].mean(0),
            "accuracy": stats["accuracy"].mean(0),
        })
        if stream_kind == "drift" and cfg.loss == "squared":
            dmean, dlo, dhi = common.mean_ci(stats["dynamic_regret"])
            frame["dynamic_regret"], frame["dynamic_regret_lo"], frame["dynamic_regret_hi"] = dmean, dlo, dhi
        vd = slope_verdict(stats["slopes"], float(mean[-1]))
        s_mean, s_lo, s_hi = vd["mean"], vd["lo"], vd["hi"]
        notes = []
        if data.image_shape is not None and cfg.image_size:
            notes.append(f"images downsampled to {cfg.image_size}x{cfg.image_size} for CPU cost (config.image_size)")
        if num_seeds < cfg.num_seeds:
            notes.append(f"{algo} costs O(K d^2) per step: ran {num_seeds} of {cfg.num_seeds} seeds (config.d2_max_seeds)")
        if cfg.loss == "logistic":
            notes.append(f"logistic comparator: Newton to gradient norm 1e-8 at {len(csv_steps)} checkpoints")
        meta = {
            "experiment": "sublinear_regret",
            "config": cell_cfg,
            "config_hash": chash,
            "dataset": data.name,
            "stream": stream_kind,
            "algo": algo,
            "T": cfg.T,
            "num_seeds": num_seeds,
            "seed_band_covers": SEED_BAND,
            "dim": dim,
            "num_outputs": data.num_classes,
            "precision": "float64" if res["x64"] else "float32",
            "data_provenance": data.provenance,
            "data_source": data.source,
            "compile_seconds": res["compile_s"],
            "run_seconds": res["run_s"],
            "streams_seconds": sched.seconds,
            "comparator_seconds": comp_s,
            "sample_steps_per_second": num_seeds * cfg.T / res["run_s"],
            "slope_fit_range": [cfg.slope_t_min, cfg.T],
            "slopes": stats["slopes"],
            "n_slopes": vd["n_slopes"],
            "slope_mean": s_mean, "slope_ci95": [s_lo, s_hi],
            "verdict": vd["verdict"],
            "verdict_reason": vd["reason"],
            "final_regret_mean": float(mean[-1]), "final_regret_ci95": [float(lo[-1]), float(hi[-1])],
            "final_regret_per_seed": stats["regret"][:, -1],
            "final_cum_loss_mean": float(stats["cum_loss"][:, -1].mean()),
            "final_accuracy_mean": float(stats["accuracy"][:, -1].mean()),
            "notes": notes,
            **common.provenance_metadata(),
        }
        if stream_kind == "drift" and cfg.loss == "squared":
            meta["dynamic_window"] = cfg.window
            meta["final_dynamic_regret_mean"] = float(stats["dynamic_regret"][:, -1].mean())
            meta["comparator_path_length_mean"] = float(np.mean(path_len))
        common.write_csv(workdir / f"{name}.csv", frame)
        common.write_npz(workdir / f"{name}.npz", steps=csv_steps, seeds=np.arange(num_seeds),
                         **{k: v_ for k, v_ in stats.items()})
        common.write_json(workdir / f"{name}.json", meta)
        title = (f"{data.name} ({data.provenance}), {stream_kind} stream, {algo}\n"
                 f"T={cfg.T:,}, {num_seeds} seeds; {vd['verdict']}: slope {s_mean:.3f} [{s_lo:.3f}, {s_hi:.3f}]")
        plot_cell(workdir / f"{name}.png", title, csv_steps, {algo: stats["regret"]},
                  {algo: stats["dynamic_regret"]} if "dynamic_regret" in frame else None)
        curves[algo] = stats["regret"]
        rows_out.append({
            "dataset": data.name, "stream": stream_kind, "algo": algo, "provenance": data.provenance,
            "seeds": num_seeds, "n_slopes": vd["n_slopes"], "slope": s_mean, "slope_lo": s_lo, "slope_hi": s_hi,
            "final_regret": float(mean[-1]), "final_regret_lo": float(lo[-1]), "final_regret_hi": float(hi[-1]),
            "accuracy": float(stats["accuracy"][:, -1].mean()),
            "compile_s": res["compile_s"], "run_s": res["run_s"], "verdict": vd["verdict"],
            "verdict_reason": vd["reason"], "steps": csv_steps,
        })
        if cfg.commit_results:
            _commit(workdir, name)
        timings["writing"] = timings.get("writing", 0.0) + time.perf_counter() - write_start
        progress.update(1)
    if len(curves) > 1 and cfg.loss == "squared":
        write_start = time.perf_counter()
        plot_cell(workdir / f"{data.name}_{stream_kind}.png",
                  f"{data.name} ({data.provenance}), {stream_kind} stream, T={cfg.T:,}", steps, curves)
        timings["writing"] = timings.get("writing", 0.0) + time.perf_counter() - write_start
    return rows_out, curves


def _commit(workdir, name):
    files = [str(workdir / f"{name}.{ext}") for ext in ("csv", "npz", "json", "png")]
    head = common._git("rev-parse", "--short", "HEAD") or "nohead"
    dataset, stream_kind, algo = name.split("_", 2)
    import subprocess

    subprocess.run(["git", "add", "-f", *files], check=True)
    subprocess.run(["git", "commit", "-q", "-m", f"EXP:sublinear_regret {dataset}-{stream_kind}-{algo} {head}",
                    "--", *files], check=True)


def write_summary(workdir, rows, grid):
    """summary.md (slope +- interval, final regret, verdict per cell) and the grid figure."""
    lines = ["# Regret summary", "",
             f"The 95% intervals are over seeds: {SEED_BAND}.", "",
             "| dataset | stream | algo | provenance | seeds with a slope | slope [95% CI] | final regret [95% CI] "
             "| accuracy | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['stream']} | {r['algo']} | {r['provenance']} | {r['n_slopes']}/{r['seeds']} | "
            f"{r['slope']:.3f} [{r['slope_lo']:.3f}, {r['slope_hi']:.3f}] | "
            f"{r['final_regret']:.4g} [{r['final_regret_lo']:.4g}, {r['final_regret_hi']:.4g}] | "
            f"{r['accuracy']:.3f} | {r['verdict']}: {r['verdict_reason']} |"
        )
    common.write_text(workdir / "summary.md", "\n".join(lines) + "\n")
    common.write_csv(workdir / "summary.csv", pd.DataFrame([{k: v for k, v in r.items() if k != "steps"} for r in rows]))
    if not grid:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({d for d, _ in grid})
    kinds = [s for s in streams.STREAMS if any(s == k for _, k in grid)]
    fig, axes = plt.subplots(len(datasets), len(kinds), figsize=(3.6 * len(kinds), 3.0 * len(datasets)),
                             squeeze=False)
    for i, ds in enumerate(datasets):
        for j, kind in enumerate(kinds):
            ax = axes[i][j]
            steps, curves = grid.get((ds, kind), (None, {}))
            for c, (algo, values) in enumerate(curves.items()):
                _plot_band(ax, steps, values, common.COLORS[c % len(common.COLORS)], algo)
            _regret_axes(ax)
            ax.set_title(f"{ds} / {kind}", fontsize=9)
            ax.set_xlabel("step t", fontsize=8)
            ax.set_ylabel("regret (symlog)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8)
    fig.suptitle("Regret R_t over seeds (mean, 95% band); log t, symlog R", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    common.save_figure(fig, workdir / "summary_grid.png")
    plt.close(fig)


def write_timings(workdir, name, timings):
    """``{name}_timings.json``: seconds per stage of one (dataset, stream), every learner's included."""
    common.write_json(workdir / f"{name}_timings.json", {
        "seconds": timings, "total_seconds": float(sum(timings.values())),
        "backend": jax.default_backend(), "devices": jax.device_count()})


def banner(cfg, data, kinds, algos):
    seeds = {a: _seeds_for(cfg, a, data.x.shape[1]) for a in algos}
    lines = [
        "=" * 78,
        f"mpjax regret | dataset {data.name} | provenance: {data.provenance.upper()}",
        f"  source: {data.source}",
        f"  n={data.x.shape[0]:,} d={data.x.shape[1]} K={data.num_classes} | streams {', '.join(kinds)} | T={cfg.T:,}",
        f"  seeds: {', '.join(f'{a}={s}' for a, s in seeds.items())} | backend {jax.default_backend()} "
        f"({jax.device_count()} device(s){', seeds sharded' if _mesh(cfg) is not None else ''})",
        "  precision: " + ("float64 for every learner" if cfg.float64 else
                           f"float32; float64 for {', '.join(cfg.float64_learners) or 'none'}")
        + "; exact comparator in float64",
    ]
    if data.image_shape is not None and cfg.image_size:
        lines.append(f"  CPU setting: images downsampled to {cfg.image_size}x{cfg.image_size} (config.image_size=0 for full size)")
    if data.provenance != "real":
        lines.append(f"  NOTE: {data.provenance} data, not the full real data set (see source above)")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)


def configure_devices(cfg):
    """Host devices and the compilation cache; must run before JAX first touches a device."""
    common.configure_cpu_devices(cfg.cpu_devices)
    if cfg.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(cfg.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    common.default_log_level()
    from configs.regret import get_config

    t0 = time.perf_counter()
    cfg = common.resolve_config(FLAGS.config, {n: getattr(FLAGS, n) for n in _NAMED}, get_config())
    _check_config(cfg)
    # Before any JAX backend starts; the threshold in effect is what the outputs and hashes record.
    cfg.small_loop_bytes, _ = common.setup_xla_cpu(cfg.small_loop_bytes)
    if cfg.distributed:
        jax.distributed.initialize()
    else:
        configure_devices(cfg)
    if cfg.float64:
        jax.config.update("jax_enable_x64", True)
    workdir = common.resolve_workdir(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    datasets = list(DATASETS) if cfg.sweep else [cfg.dataset]
    kinds = list(streams.STREAMS) if cfg.sweep else [cfg.stream]
    algos = list(ALGOS) if (cfg.sweep or cfg.algo == "all") else [cfg.algo]
    if cfg.loss == "logistic":
        algos = [a for a in algos if a != "rls"]
    rows, grid, timing_rows = [], {}, []
    with tqdm(total=len(datasets) * len(kinds) * len(algos), desc="regret", unit="run",
              file=sys.stderr, dynamic_ncols=True) as progress:
        for dataset in datasets:
            with common.Stopwatch() as load_time:
                data = _load(cfg, dataset)
            banner(cfg, data, kinds, algos)
            for kind in kinds:
                timings = {"data": load_time.seconds if kind == kinds[0] else 0.0}
                cell_rows, curves = run_cell(cfg, data, kind, algos, workdir, progress, timings)
                rows.extend(cell_rows)
                grid[(dataset, kind)] = (cell_rows[0]["steps"], curves)
                timing_rows.append({"dataset": dataset, "stream": kind, **timings})
                write_timings(workdir, f"{dataset}_{kind}", timings)
    if cfg.sweep:
        write_summary(workdir, rows, grid)
    print()
    print(common.format_table(rows, ["dataset", "stream", "algo", "seeds", "n_slopes", "slope", "slope_lo",
                                     "slope_hi", "final_regret", "accuracy", "compile_s", "run_s"]))
    for r in rows:
        print(f"  {r['dataset']}/{r['stream']}/{r['algo']}: {r['verdict']} ({r['verdict_reason']})")
    print(f"\n95% intervals over seeds cover the {SEED_BAND}.")
    for t in timing_rows:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in t.items() if k not in ("dataset", "stream"))
        print(f"seconds, {t['dataset']}/{t['stream']}: {parts}")
    print(f"wall time {time.perf_counter() - t0:.1f} s (from flag parsing); results in {workdir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
