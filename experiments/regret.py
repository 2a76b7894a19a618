"""Exact regret of every learner on iid, drifting and adversarial streams.

    python -m experiments.regret --dataset=covtype --stream=adv
    python -m experiments.regret --sweep

For each (dataset, stream, algorithm) all seeds run in one ``vmap`` inside one
compiled program; regret is exact at every step (``mpjax.regret``) and
reported at logged steps with a 95% band over seeds, a fitted log-log slope
and a verdict. Outputs (atomic): ``{dataset}_{stream}_{algo}.{csv,npz,json,png}``
and ``{dataset}_{stream}.png`` under ``--workdir``; ``--sweep`` adds
``summary.md`` and ``summary_grid.png``.
"""

from __future__ import annotations

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
_NON_RESULT_FIELDS = ("workdir", "commit_results", "overwrite", "sweep", "shard_seeds", "distributed")


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


def _seeds_for(cfg, algo, dim):
    if algo in ("ons", "rls") and cfg.d2_max_seeds and dim > cfg.d2_dim_threshold:
        return min(cfg.num_seeds, cfg.d2_max_seeds)
    return cfg.num_seeds


def _place(cfg, keys, table, targets):
    """Device-resident inputs; with --shard_seeds the seed axis spans every device."""
    if not cfg.shard_seeds:
        return jax.device_put(keys), jax.device_put(table), jax.device_put(targets)
    from jax.sharding import NamedSharding, PartitionSpec

    n_dev = jax.device_count()
    if keys.shape[0] % n_dev:
        raise app.UsageError(f"--shard_seeds needs num_seeds divisible by the {n_dev} devices, got {keys.shape[0]}")
    # Auto axes: XLA propagates the seed sharding through the vmapped scan (no explicit collectives).
    mesh = jax.make_mesh((n_dev,), ("seeds",), axis_types=(jax.sharding.AxisType.Auto,))
    seeds = NamedSharding(mesh, PartitionSpec("seeds"))
    rep = NamedSharding(mesh, PartitionSpec())
    return jax.device_put(keys, seeds), jax.device_put(table, rep), jax.device_put(targets, rep)


def run_learner(cfg, data, stream_kind, algo, num_seeds):
    """Runs one learner over every seed; returns the traces, stream params and timings."""
    k = data.num_classes
    table = np.asarray(streams.stream_table(data, stream_kind), np.float32)
    targets = np.asarray(data.y, np.float32)
    run_lib.validate_data(table, targets, name=data.name)
    transform = streams.make_transform(data, stream_kind)
    opts = dict(cfg.stream_opts)
    is_image, raw_dim = data.image_shape is not None, data.raw.shape[1]
    hyper = dict(cfg.learners[algo])
    if algo != "rls":
        hyper["loss"] = cfg.loss
    learner = learners.multi_output(learners.get(algo, **hyper), k)

    def program(keys, table, targets, labels):
        # Labels are an argument, not a closure constant: XLA would constant-fold the schedule.
        def make_stream(key):
            return streams.make_stream(stream_kind, key, labels, cfg.T, num_classes=k, is_image=is_image,
                                       raw_dim=raw_dim, **opts)

        runner = run_lib.make_runner(learner, data.x.shape[1], make_stream, transform, cfg.unroll)
        trace = jax.vmap(runner, in_axes=(0, None, None))(keys, table, targets)
        sched = jax.vmap(lambda key: make_stream(run_lib.purpose_key(key, run_lib.TAG_STREAM)))(keys)
        return trace, sched.aux, sched.direction

    keys, table_d, targets_d = _place(cfg, run_lib.seed_keys(cfg.seed, num_seeds), table, targets)
    labels_d = jax.device_put(np.asarray(data.labels, np.int32), getattr(table_d, "sharding", None))
    with common.Stopwatch() as compile_time:
        compiled = jax.jit(program).lower(keys, table_d, targets_d, labels_d).compile()
    with common.Stopwatch() as run_time:
        with jax.transfer_guard("disallow"):
            out = compiled(keys, table_d, targets_d, labels_d)
        out = jax.block_until_ready(out)
    trace, aux, direction = jax.device_get(out)
    return {
        "trace": trace, "aux": aux, "direction": direction, "table": table, "targets": targets,
        "transform": transform, "compile_s": compile_time.seconds, "run_s": run_time.seconds,
    }


def comparators(cfg, data, stream_kind, rows, aux, direction, table, targets, transform):
    """Exact comparator increments per seed (float64): static, and dynamic for drift."""
    d, k = data.x.shape[1], data.num_classes
    with jax.enable_x64(True):
        table_j = jnp.asarray(table)
        targets_j = jnp.asarray(targets)

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

        with common.Stopwatch() as sw:
            out = jax.jit(jax.vmap(one))(jnp.asarray(rows), jnp.asarray(aux), jnp.asarray(direction))
            out = jax.device_get(jax.block_until_ready(out))
    return (*out, sw.seconds)


def logistic_comparator_at(cfg, data, steps_all, rows, aux, direction, table, targets, transform):
    """Logistic comparator at log-spaced checkpoints (Newton, tol 1e-8), per seed."""
    checkpoints = np.unique(np.round(np.geomspace(10, cfg.T, cfg.logistic_checkpoints)).astype(int))
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


def verdict(slope_mean, slope_lo, slope_hi, final_regret=np.nan) -> str:
    if not np.isfinite(slope_mean):
        if final_regret < 0:
            return ("regret <= 0 in the fit range: the learner beats the best fixed comparator "
                    "(it tracks the stream); no log-log slope")
        return "undetermined (regret <= 0 somewhere in the fit range, or too few points)"
    if slope_lo <= 0.5:
        return "consistent with O(sqrt T)"
    return f"not O(sqrt T): slope {slope_mean:.3f} > 0.5 (95% CI lower bound {slope_lo:.3f})"


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
    ax.set_title(title + "\nmean over seeds, 95% band; below 0 = better than the best fixed model", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    common.save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def _cell_config(cfg, dataset, stream_kind, algo, num_seeds):
    d = cfg.to_dict()
    for f in _NON_RESULT_FIELDS:
        d.pop(f, None)
    d.update(dataset=dataset, stream=stream_kind, algo=algo, num_seeds_run=num_seeds)
    d["learners"] = {algo: d["learners"][algo]}
    return d


def run_cell(cfg, data, stream_kind, algos, workdir, progress):
    """Runs every algorithm of one (dataset, stream) and writes all its outputs."""
    steps = regret.log_steps(cfg.T)
    curves, dyn_curves, rows_out = {}, {}, []
    shared_comp = None
    dim = data.x.shape[1]
    for algo in algos:
        num_seeds = _seeds_for(cfg, algo, dim)
        name = f"{data.name}_{stream_kind}_{algo}"
        cell_cfg = _cell_config(cfg, data.name, stream_kind, algo, num_seeds)
        chash = common.config_hash(cell_cfg)
        common.guard_existing(workdir / f"{name}.json", chash, cfg.overwrite)
        progress.set_postfix_str(f"{name} ({num_seeds} seeds)")
        res = run_learner(cfg, data, stream_kind, algo, num_seeds)
        trace = res["trace"]
        rows = np.asarray(trace.row)
        key = (num_seeds,)
        if stream_kind == "adaptive" or shared_comp is None or shared_comp[0] != key:
            comp = comparators(cfg, data, stream_kind, rows, res["aux"], res["direction"],
                               res["table"], res["targets"], res["transform"])
            if stream_kind != "adaptive":
                shared_comp = (key, comp)
        else:
            comp = shared_comp[1]
        comp_incr, dyn_incr, path_len, comp_s = comp
        stats = summarize(cfg, steps, np.asarray(trace.loss), comp_incr, dyn_incr, np.asarray(trace.correct))
        if cfg.loss == "logistic":
            ck, logi = logistic_comparator_at(cfg, data, steps, rows, res["aux"], res["direction"],
                                              res["table"], res["targets"], res["transform"])
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
        s_mean, s_lo, s_hi = common.mean_ci(stats["slopes"])
        s_mean, s_lo, s_hi = float(s_mean), float(s_lo), float(s_hi)
        v = verdict(s_mean, s_lo, s_hi, float(mean[-1]))
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
            "dim": dim,
            "num_outputs": data.num_classes,
            "data_provenance": data.provenance,
            "data_source": data.source,
            "compile_seconds": res["compile_s"],
            "run_seconds": res["run_s"],
            "comparator_seconds": comp_s,
            "sample_steps_per_second": num_seeds * cfg.T / res["run_s"],
            "slope_fit_range": [cfg.slope_t_min, cfg.T],
            "slopes": stats["slopes"],
            "slope_mean": s_mean, "slope_ci95": [s_lo, s_hi],
            "verdict": v,
            "final_regret_mean": float(mean[-1]), "final_regret_ci95": [float(lo[-1]), float(hi[-1])],
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
                 f"T={cfg.T:,}, {num_seeds} seeds, slope {s_mean:.3f} [{s_lo:.3f}, {s_hi:.3f}]")
        plot_cell(workdir / f"{name}.png", title, csv_steps, {algo: stats["regret"]},
                  {algo: stats["dynamic_regret"]} if "dynamic_regret" in frame else None)
        curves[algo] = stats["regret"]
        if "dynamic_regret" in frame:
            dyn_curves[algo] = stats["dynamic_regret"]
        rows_out.append({
            "dataset": data.name, "stream": stream_kind, "algo": algo, "provenance": data.provenance,
            "seeds": num_seeds, "slope": s_mean, "slope_lo": s_lo, "slope_hi": s_hi,
            "final_regret": float(mean[-1]), "final_regret_lo": float(lo[-1]), "final_regret_hi": float(hi[-1]),
            "accuracy": float(stats["accuracy"][:, -1].mean()),
            "compile_s": res["compile_s"], "run_s": res["run_s"], "verdict": v, "steps": csv_steps,
        })
        if cfg.commit_results:
            _commit(workdir, name)
        progress.update(1)
    if len(curves) > 1 and cfg.loss == "squared":
        plot_cell(workdir / f"{data.name}_{stream_kind}.png",
                  f"{data.name} ({data.provenance}), {stream_kind} stream, T={cfg.T:,}", steps, curves)
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
             "| dataset | stream | algo | provenance | seeds | slope [95% CI] | final regret [95% CI] | accuracy | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['stream']} | {r['algo']} | {r['provenance']} | {r['seeds']} | "
            f"{r['slope']:.3f} [{r['slope_lo']:.3f}, {r['slope_hi']:.3f}] | "
            f"{r['final_regret']:.4g} [{r['final_regret_lo']:.4g}, {r['final_regret_hi']:.4g}] | "
            f"{r['accuracy']:.3f} | {r['verdict']} |"
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


def banner(cfg, data, kinds, algos):
    seeds = {a: _seeds_for(cfg, a, data.x.shape[1]) for a in algos}
    lines = [
        "=" * 78,
        f"mpjax regret | dataset {data.name} | provenance: {data.provenance.upper()}",
        f"  source: {data.source}",
        f"  n={data.x.shape[0]:,} d={data.x.shape[1]} K={data.num_classes} | streams {', '.join(kinds)} | T={cfg.T:,}",
        f"  seeds: {', '.join(f'{a}={s}' for a, s in seeds.items())} | backend {jax.default_backend()} "
        f"({jax.device_count()} device(s)) | {'float64' if cfg.float64 else 'float32'}",
    ]
    if data.image_shape is not None and cfg.image_size:
        lines.append(f"  CPU setting: images downsampled to {cfg.image_size}x{cfg.image_size} (config.image_size=0 for full size)")
    if data.provenance != "real":
        lines.append(f"  NOTE: {data.provenance} data, not the full real data set (see source above)")
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from configs.regret import get_config

    cfg = common.resolve_config(FLAGS.config, {n: getattr(FLAGS, n) for n in _NAMED}, get_config())
    _check_config(cfg)
    if cfg.distributed:
        jax.distributed.initialize()
    if cfg.float64:
        jax.config.update("jax_enable_x64", True)
    workdir = common.resolve_workdir(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    datasets = list(DATASETS) if cfg.sweep else [cfg.dataset]
    kinds = list(streams.STREAMS) if cfg.sweep else [cfg.stream]
    algos = list(ALGOS) if (cfg.sweep or cfg.algo == "all") else [cfg.algo]
    if cfg.loss == "logistic":
        algos = [a for a in algos if a != "rls"]
    rows, grid = [], {}
    t0 = time.perf_counter()
    with tqdm(total=len(datasets) * len(kinds) * len(algos), desc="regret", unit="run",
              file=sys.stderr, dynamic_ncols=True) as progress:
        for dataset in datasets:
            data = _load(cfg, dataset)
            banner(cfg, data, kinds, algos)
            for kind in kinds:
                cell_rows, curves = run_cell(cfg, data, kind, algos, workdir, progress)
                rows.extend(cell_rows)
                grid[(dataset, kind)] = (cell_rows[0]["steps"], curves)
    if cfg.sweep:
        write_summary(workdir, rows, grid)
    print()
    print(common.format_table(rows, ["dataset", "stream", "algo", "seeds", "slope", "slope_lo", "slope_hi",
                                     "final_regret", "accuracy", "compile_s", "run_s"]))
    for r in rows:
        print(f"  {r['dataset']}/{r['stream']}/{r['algo']}: {r['verdict']}")
    print(f"\nwall time {time.perf_counter() - t0:.1f} s; results in {workdir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
