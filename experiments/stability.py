"""Stability of every learner: rounding-sized perturbations, float32 vs float64, H's spectrum.

    python -m experiments.stability
    python -m experiments.stability --T=100000 --config.cells='("covtype/adv",)'

DESIGN.md §2 "Stability": a learner's step must not amplify perturbations of its state.
Per (dataset, stream) cell and learner, on the stream of replicate 0 of ``--seed``:

* amplification: two float64 runs whose initial weights differ by ``eps`` in norm;
  ``max_t |W_t - W'_t| / eps`` and ``max_t |W_t - W'_t| / |W_t|``;
* precision: the final regret of a float32 and a float64 run on the same features
  (the float32 features of the experiment, upcast), against the exact float64 comparator;
* Memory-Pair only: the extreme eigenvalues [c, C] of H every ``spectrum_every`` steps.

Outputs (atomic): ``stability.csv`` (one row per cell and learner), ``stability.json``
(config, provenance, the rows, the spectra) and ``stability.png`` (amplification over t)
under ``--workdir``.
"""

from __future__ import annotations

import sys

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
from mpjax.data import load_dataset
from mpjax.learners import memory_pair

FLAGS = flags.FLAGS
_NAMED = ("T", "seed", "workdir")


def define_flags():
    config_flags.DEFINE_config_file("config", "configs/stability.py", lock_config=True)
    flags.DEFINE_integer("T", None, "Stream length.")
    flags.DEFINE_integer("seed", None, "Integer seed (replicate 0 of it is used).")
    flags.DEFINE_string("workdir", None, "Results folder.")


def load(name: str, image_size: int = 14):
    """The experiment's data: simulated/real Covertype, the real MNIST subset offline."""
    if name == "rotmnist":
        return load_dataset("rotmnist", image_size=image_size or None, progress=False)
    return load_dataset(name, progress=False)


def stream_features(data, kind: str, T: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (float32, as the regret experiment computes them) and targets of replicate 0's stream."""
    key = run_lib.purpose_key(run_lib.seed_keys(seed, 1)[0], run_lib.TAG_STREAM)
    st = streams.make_stream(kind, key, jnp.asarray(data.labels, jnp.int32), T, num_classes=data.num_classes,
                             is_image=data.image_shape is not None, raw_dim=data.raw.shape[1])
    rows = np.asarray(st.idx)
    x = jnp.asarray(np.asarray(streams.stream_table(data, kind), np.float32)[rows])
    transform = streams.make_transform(data, kind)
    if transform is not None:
        x = jax.jit(jax.vmap(transform, in_axes=(0, 0, None)))(x, st.aux, st.direction)
    return np.asarray(x, np.float32), np.asarray(data.y[rows], np.float32)


def perturbation_gap(learner, x, y, eps: float, seed: int = 0):
    """Per step, float64: |W_t - W'_t| / eps, |W_t - W'_t| / |W_t| for |W_0 - W'_0| = eps, and the loss
    of the unperturbed run (bitwise :func:`losses` in float64, tested; one run serves both)."""
    learner = learners.multi_output(learner, y.shape[1])
    with jax.enable_x64(True):
        state = learner.init(x.shape[1], jax.random.key(0))
        delta = np.random.default_rng(seed).normal(size=state.w.shape)
        other = state._replace(w=state.w + jnp.asarray(delta * eps / np.linalg.norm(delta)))

        def body(carry, xy):
            a, b = carry
            a, loss = learner.step(a, *xy)
            b, _ = learner.step(b, *xy)
            gap = jnp.linalg.norm(a.w - b.w)
            return (a, b), (gap / eps, gap / jnp.maximum(jnp.linalg.norm(a.w), 1e-300), loss)

        run = jax.jit(lambda s, o, x, y: jax.lax.scan(body, (s, o), (x, y))[1])
        amp, rel, loss = run(state, other, jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64))
        return np.asarray(amp), np.asarray(rel), np.asarray(loss, np.float64)


def losses(learner, x, y, x64: bool) -> np.ndarray:
    """Per-step losses of one run, in float64 or float32 (same input values)."""
    learner = learners.multi_output(learner, y.shape[1])
    dtype = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64):
        state = learner.init(x.shape[1], jax.random.key(0))
        run = jax.jit(lambda s, x, y: jax.lax.scan(lambda s, xy: learner.step(s, *xy), s, (x, y))[1])
        return np.asarray(run(state, jnp.asarray(x, dtype), jnp.asarray(y, dtype)), np.float64)


def comparator_total(x, y, lam: float) -> float:
    """J_T of the exact float64 ridge comparator on the stream (mpjax.regret)."""
    with jax.enable_x64(True):
        xs, ys = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
        comp = jax.jit(lambda r: regret.ridge_comparator(lambda i, a: (xs[i], ys[i]), r, jnp.zeros(r.shape[0]),
                                                         x.shape[1], y.shape[1], lam, block=10).increments)
        return float(np.sum(np.asarray(comp(jnp.arange(x.shape[0], dtype=jnp.int32)))))


def spectrum(hyper: dict, x, y, every: int) -> dict:
    """Memory-Pair's [c, C] every ``every`` steps (float64), from the compact form of its H."""
    learner = learners.multi_output(learners.get("memorypair", **hyper), y.shape[1])
    out = {"step": [], "c": [], "C": []}
    with jax.enable_x64(True):
        state = learner.init(x.shape[1], jax.random.key(0))
        chunk = jax.jit(lambda s, x, y: jax.lax.scan(lambda s, xy: learner.step(s, *xy), s, (x, y))[0])
        bounds = jax.jit(lambda s: memory_pair.eigen_bounds(learner.hyper, s))
        for start in range(0, x.shape[0] - every + 1, every):
            state = chunk(state, jnp.asarray(x[start:start + every], jnp.float64),
                          jnp.asarray(y[start:start + every], jnp.float64))
            c, big_c = bounds(state)
            out["step"].append(start + every)
            out["c"].append(float(c))
            out["C"].append(float(big_c))
    return out


def plot(path, curves, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(curves)
    fig, axes = plt.subplots(1, len(cells), figsize=(4.2 * len(cells), 3.6), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        for i, (algo, amp) in enumerate(curves[cell].items()):
            t = np.arange(1, amp.size + 1)
            ax.plot(t, np.maximum(amp, 1e-30), color=common.COLORS[i % len(common.COLORS)], lw=1.2, label=algo)
        ax.axhline(1.0, color="gray", lw=0.6, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(cell, fontsize=9)
        ax.set_xlabel("step t")
        ax.set_ylabel(r"amplification $|W_t - W'_t| / |W_0 - W'_0|$")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    common.save_figure(fig, path)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    common.default_log_level()
    from configs.stability import get_config

    cfg = common.resolve_config(FLAGS.config, {n: getattr(FLAGS, n) for n in _NAMED}, get_config())
    bad = [c for c in cfg.cells if c.count("/") != 1 or c.split("/")[1] not in streams.STREAMS]
    if bad:
        raise app.UsageError(f"config.cells: {bad} are not dataset/stream with stream in {streams.STREAMS}")
    unknown = sorted(set(cfg.algos) - set(learners.LEARNERS))
    if unknown:
        raise app.UsageError(f"config.algos: unknown {unknown}; valid: {', '.join(learners.LEARNERS)}")
    workdir = common.resolve_workdir(cfg.workdir)
    rows, curves, spectra, provenance = [], {}, {}, {}
    datasets = {}
    with tqdm(total=len(cfg.cells) * len(cfg.algos), desc="stability", unit="run", file=sys.stderr) as bar:
        for cell in cfg.cells:
            name, kind = cell.split("/")
            if name not in datasets:
                datasets[name] = load(name, cfg.image_size)
            data = datasets[name]
            provenance[name] = data.provenance
            x, y = stream_features(data, kind, cfg.T, cfg.seed)
            comp = comparator_total(x, y, cfg.lam)
            curves[cell] = {}
            for algo in cfg.algos:
                hyper = dict(cfg.learners[algo])
                learner = learners.get(algo, **hyper)
                amp, rel, loss64 = perturbation_gap(learner, x, y, cfg.eps)
                r32 = float(losses(learner, x, y, False).sum()) - comp
                r64 = float(loss64.sum()) - comp
                curves[cell][algo] = amp
                rows.append({"cell": cell, "algo": algo, "provenance": data.provenance, "T": cfg.T,
                             "max_amplification": float(amp.max()), "final_amplification": float(amp[-1]),
                             "max_relative_gap": float(rel[10:].max()), "regret_float32": r32,
                             "regret_float64": r64, "regret_rel_diff": abs(r32 - r64) / max(abs(r64), 1e-300)})
                if algo == "memorypair":
                    spectra[cell] = spectrum(hyper, x, y, cfg.spectrum_every)
                bar.update(1)
    frame = pd.DataFrame(rows)
    common.write_csv(workdir / "stability.csv", frame)
    common.write_json(workdir / "stability.json", {
        "experiment": "stability", "config": cfg.to_dict(), "rows": rows, "memorypair_spectrum": spectra,
        "data_provenance": provenance, **common.provenance_metadata()})
    plot(workdir / "stability.png", curves,
         f"Perturbation of W_0 by {cfg.eps:g}, float64, T={cfg.T:,} (data: "
         + ", ".join(f"{k} {v}" for k, v in provenance.items()) + ")")
    print(common.format_table(rows, ["cell", "algo", "max_amplification", "final_amplification",
                                     "max_relative_gap", "regret_float32", "regret_float64", "regret_rel_diff"]))
    for cell, sp in spectra.items():
        if sp["c"]:
            print(f"memorypair {cell}: H eigenvalues over the stream in [{min(sp['c']):.4g}, {max(sp['C']):.4g}]")
    print(f"results in {workdir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
