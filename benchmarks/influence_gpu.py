"""CIFAR-10 ResNet-9 attribution by exact metagradients, end to end, sized for one GPU run.

    bash benchmarks/influence_gpu.sh                 # on the H200: preset h200, hard limit ~8 minutes
    python -m benchmarks.influence_gpu --preset=tiny # CPU smoke run (CI runs it as a test)

Self-contained: imports only numpy, jax, mpjax and ``experiments.common`` (standard
library and numpy: its atomic writes; no ml_collections, absl or tensorflow-datasets, so it
runs with the GPU machine's own Python) and never touches
the network: the data are simulated CIFAR-10 (``mpjax.data.simulated``; labelled
``simulated`` in every output) unless ``--data_source=real`` finds the canonical files
in the local cache.

Steps, each timed (compile and run apart): train once (the forward: the weighted scan
with every weight 1), the exact metagradient of J target losses through the whole run
(``scan_remat`` over steps, a checkpoint policy inside each step, targets in chunks),
S retrains with 0/1 masks (drop 5 %, one ``vmap`` per chunk, same order and
augmentation), central finite differences of the actual retrain for a few samples,
and the LDS with its 95 % bootstrap interval over targets. A time budget
(``--budget_s``) is checked before every retrain chunk: if the remaining chunks would
not fit, the run stops early and says how many subsets it used (never silently).

Outputs (printed and written atomically to ``$OUT`` if set, else ``benchmarks/out/``):
``influence_gpu.json`` (config, device, timings, LDS, finite differences, provenance)
and ``influence_gpu_lds_per_target.csv``.

The full-size run of the original system (not for an 8-minute slot) would be
``--preset=full``: 32x32, width 2.5, n = 25,000, batch 512, 16 epochs, J = 100, S = 100.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import common
from mpjax.influence import cnn, lds
from mpjax.influence.remat import balanced_levels

PRESETS = {
    # CPU smoke run: float64 so that the finite differences mean something.
    "tiny": dict(image_size=16, width=0.125, n=128, batch=16, epochs=2, targets=8, subsets=10, chunk=10,
                 target_chunk=8, levels=2, policy="dots", dtype="float64", budget_s=600.0, fd_samples=3,
                 peak_lr=0.2),
    # One H200, ~8 minutes in all (compile included): float32 (TF32 convolutions on the GPU).
    # Memory: a retrain chunk of 20 holds ~20 x 1.6 GB of step activations; the metagradient's reverse
    # sweep ~3 GB per target in a chunk of 10 (139 GB on the card).
    "h200": dict(image_size=32, width=1.0, n=4096, batch=256, epochs=4, targets=50, subsets=100, chunk=20,
                 target_chunk=10, levels=2, policy="dots", dtype="float32", budget_s=400.0, fd_samples=3,
                 peak_lr=0.4),
    # The original system's size: hours on one GPU; documented, not run here.
    "full": dict(image_size=32, width=2.5, n=25_000, batch=512, epochs=16, targets=100, subsets=100, chunk=10,
                 target_chunk=10, levels=3, policy="dots", dtype="float32", budget_s=1e9, fd_samples=3,
                 peak_lr=0.4),
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="h200")
    for name, kind in (("image_size", int), ("width", float), ("n", int), ("batch", int), ("epochs", int),
                       ("targets", int), ("subsets", int), ("chunk", int), ("target_chunk", int), ("levels", int),
                       ("policy", str), ("dtype", str), ("budget_s", float), ("fd_samples", int),
                       ("peak_lr", float)):
        ap.add_argument(f"--{name}", type=kind, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data_source", choices=["simulated", "real"], default="simulated")
    ap.add_argument("--out", default=None, help="output folder (default: $OUT, else benchmarks/out)")
    args = ap.parse_args(argv)
    cfg = dict(PRESETS[args.preset])
    for k in list(cfg):
        if getattr(args, k, None) is not None:
            cfg[k] = getattr(args, k)
    cfg.update(preset=args.preset, seed=args.seed, data_source=args.data_source)
    if cfg["policy"] not in cnn.POLICIES:
        ap.error(f"--policy must be one of {sorted(cnn.POLICIES)}, got {cfg['policy']!r}")
    if cfg["dtype"] not in ("float32", "float64"):
        ap.error(f"--dtype must be float32 or float64, got {cfg['dtype']!r}")
    if cfg["subsets"] < lds.MIN_SUBSETS or cfg["targets"] < 1:
        ap.error(f"need --subsets >= {lds.MIN_SUBSETS} and --targets >= 1")
    out = args.out or os.environ.get("OUT") or str(pathlib.Path(__file__).resolve().parent / "out")
    return cfg, pathlib.Path(out)


def load_images(cfg):
    """(train images f[n,H,W,3], labels, target images, target labels, provenance, source)."""
    from mpjax.data import load_dataset
    from mpjax.data.loaders import area_downsample

    total = cfg["n"] + cfg["targets"]
    if cfg["data_source"] == "real":  # only what is cached locally: the GPU machine has no network
        data = load_dataset("cifar10", data_source="real", max_rows=total, seed=cfg["seed"], progress=False,
                            timeout=5.0)
        imgs = data.raw.reshape(-1, *data.image_shape)
        labels, provenance, source = data.labels, data.provenance, data.source
    else:
        from mpjax.data import simulated

        raw, labels = simulated.simulate_cifar10(cfg["seed"], total)
        imgs = raw.astype(np.float32) / np.float32(255.0)
        provenance, source = "simulated", f"simulated CIFAR-10 from seed {cfg['seed']} ({total} images)"
    if cfg["image_size"] != imgs.shape[1]:
        imgs = area_downsample(imgs, cfg["image_size"])
    mean = imgs.mean(axis=(0, 1, 2), keepdims=True)
    std = imgs.std(axis=(0, 1, 2), keepdims=True) + 1e-6
    imgs = ((imgs - mean) / std).astype(cfg["dtype"])
    perm = np.random.default_rng([cfg["seed"], 0x1F]).permutation(total)
    tgt, tr = perm[: cfg["targets"]], perm[cfg["targets"]:]
    labels = np.asarray(labels, np.int32)
    return imgs[tr], labels[tr], imgs[tgt], labels[tgt], provenance, source


def _compile(fn, *args):
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _run(compiled, *args):
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return jax.device_get(out), time.perf_counter() - t0


def main(argv=None) -> dict:
    cfg, out = parse_args(argv)
    # float64 only inside this call (a test that runs main() leaves the process's precision alone).
    ctx = jax.enable_x64(True) if cfg["dtype"] == "float64" else contextlib.nullcontext()
    with ctx:
        return _main(cfg, out)


def _main(cfg, out) -> dict:
    start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - start:7.1f} s] {msg}", flush=True)  # noqa: E731
    log(f"preset {cfg['preset']}: {json.dumps(cfg)}")
    log(f"backend {jax.default_backend()}, devices {jax.devices()}")
    x, y, tx, ty, provenance, source = load_images(cfg)
    log(f"data: {provenance} ({source}); train {x.shape}, targets {tx.shape}")
    mcfg = cnn.ModelConfig(width=cfg["width"])
    tcfg = cnn.TrainConfig(peak_lr=cfg["peak_lr"])
    key = jax.random.key(cfg["seed"])
    params = cnn.init_params(jax.random.fold_in(key, 1), mcfg, cfg["dtype"])
    order = cnn.make_order(jax.random.fold_in(key, 2), cfg["n"], cfg["batch"], cfg["epochs"])
    aug_key = jax.random.fold_in(key, 3)
    steps = int(order.shape[0])
    levels = balanced_levels(steps, cfg["levels"])
    policy = cnn.POLICIES[cfg["policy"]]
    x, y, tx, ty = (jax.device_put(a) for a in (x, y, tx, ty))
    n = int(x.shape[0])
    result = {"config": cfg, "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
              "jax": jax.__version__, "data_provenance": provenance, "data_source": source, "steps": steps,
              "levels": list(levels), "timings": {}, "notes": []}

    def save():
        common.write_text(out / "influence_gpu.json", json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")

    # 1. The forward: one training run with every weight 1.
    def forward(p, x, y, o, k, w):
        final = cnn.train_weighted(p, x, y, o, w, k, mcfg, tcfg, levels=levels, policy=policy)
        return cnn.target_losses(final.params, tx, ty, mcfg), jnp.argmax(cnn.forward(final.params, tx, mcfg), 1)

    ones = jnp.ones((n,), x.dtype)
    compiled, c = _compile(forward, params, x, y, order, aug_key, ones)
    (phi0, pred), r = _run(compiled, params, x, y, order, aug_key, ones)
    result["timings"]["forward"] = {"compile_s": c, "run_s": r}
    result["target_accuracy"] = float(np.mean(np.asarray(pred) == np.asarray(ty)))
    log(f"forward: compile {c:.1f} s, run {r:.2f} s; target accuracy {result['target_accuracy']:.2f}")
    save()

    # 2. The exact metagradient of every target.
    def magic(p, x, y, o, k):
        return cnn.metagradients(p, x, y, o, k, tx, ty, mcfg, tcfg, levels=levels, policy=policy,
                                 target_chunk=cfg["target_chunk"])

    compiled, c = _compile(magic, params, x, y, order, aug_key)
    (phi, tau), r = _run(compiled, params, x, y, order, aug_key)
    tau = np.asarray(tau, np.float64)
    result["timings"]["metagradient"] = {"compile_s": c, "run_s": r, "ratio_to_forward": r / result["timings"]
                                         ["forward"]["run_s"], "targets": cfg["targets"]}
    result["tau_finite"] = bool(np.isfinite(tau).all())
    log(f"metagradient ({cfg['targets']} targets): compile {c:.1f} s, run {r:.2f} s "
        f"({r / result['timings']['forward']['run_s']:.1f}x the forward); finite: {result['tau_finite']}")
    save()

    # 3. Retrains (and finite differences) through one compiled vmap over a chunk of weight vectors.
    chunk = min(cfg["chunk"], cfg["subsets"])

    def retrain(p, x, y, o, k, weights):
        return cnn.retrain_outputs(p, x, y, o, k, weights, tx, ty, mcfg, tcfg)

    probe = jnp.ones((chunk, n), x.dtype)
    compiled, c = _compile(retrain, params, x, y, order, aug_key, probe)
    result["timings"]["retrain"] = {"compile_s": c, "chunk": chunk, "run_s": 0.0, "chunks": 0}
    log(f"retrain chunk of {chunk}: compile {c:.1f} s")

    # Finite differences of the actual retrain (eps relative to the weight 1).
    eps = 1e-4 if cfg["dtype"] == "float64" else 1e-2
    rng = np.random.default_rng([cfg["seed"], 0xFD])
    samples = rng.choice(n, min(cfg["fd_samples"], n, chunk // 2), replace=False)
    w = np.ones((chunk, n))
    for r_, i in enumerate(samples):
        w[2 * r_, i] += eps
        w[2 * r_ + 1, i] -= eps
    outs, r = _run(compiled, params, x, y, order, aug_key, jnp.asarray(w, x.dtype))
    outs = np.asarray(outs, np.float64)
    fd = (outs[0:2 * len(samples):2] - outs[1:2 * len(samples):2]) / (2 * eps)  # [samples, J]
    pred_fd = tau[:, samples].T
    rel = np.abs(fd - pred_fd) / np.maximum(np.abs(pred_fd), 1e-30)
    result["finite_differences"] = {"eps": eps, "samples": samples.tolist(), "median_rel_err": float(np.median(rel)),
                                    "max_rel_err": float(rel.max())}
    log(f"finite differences (eps {eps:g}, {len(samples)} samples x {cfg['targets']} targets): "
        f"median rel. err {np.median(rel):.2e}, max {rel.max():.2e}")

    masks = np.asarray(lds.make_masks(jax.random.fold_in(key, 4), n, cfg["subsets"], "drop", 0.05))
    actual = []
    chunk_time = r
    for lo in range(0, cfg["subsets"], chunk):
        elapsed = time.perf_counter() - start
        if elapsed + 1.3 * chunk_time > cfg["budget_s"]:
            result["notes"].append(f"time budget {cfg['budget_s']:.0f} s: stopped after {len(actual) * chunk} "
                                   f"of {cfg['subsets']} subsets")
            log(result["notes"][-1])
            break
        idx = np.minimum(np.arange(lo, lo + chunk), cfg["subsets"] - 1)
        res, chunk_time = _run(compiled, params, x, y, order, aug_key, jnp.asarray(masks[idx], x.dtype))
        actual.append(np.asarray(res, np.float64)[: min(chunk, cfg["subsets"] - lo)])
        result["timings"]["retrain"]["run_s"] += chunk_time
        result["timings"]["retrain"]["chunks"] += 1
        log(f"retrains {lo + len(actual[-1])}/{cfg['subsets']}: chunk {chunk_time:.2f} s")
    fwd = result["timings"]["forward"]["run_s"]
    done = sum(len(a) for a in actual)
    if done:
        per_model = result["timings"]["retrain"]["run_s"] / (result["timings"]["retrain"]["chunks"] * chunk)
        result["timings"]["retrain"]["per_model_s"] = per_model
        result["timings"]["retrain"]["per_model_ratio_to_forward"] = per_model / fwd
    result["subsets_done"] = done
    if done >= lds.MIN_SUBSETS:
        act = np.concatenate(actual)
        per = lds.lds(act, lds.predicted_outputs(masks[:done], tau))
        mean, lo_, hi_ = lds.bootstrap_ci(per, 2000, cfg["seed"])
        result["lds_drop_5pct"] = {"lds": mean, "ci_lo": lo_, "ci_hi": hi_, "n_targets": int(np.isfinite(per).sum()),
                                   "n_subsets": done}
        lines = ["target,lds"] + [f"{j},{v:.10g}" for j, v in enumerate(per)]
        common.write_text(out / "influence_gpu_lds_per_target.csv", "\n".join(lines) + "\n")
        log(f"LDS (drop 5%, exact metagradient, {done} subsets, {cfg['targets']} targets): "
            f"{mean:.3f} [{lo_:.3f}, {hi_:.3f}]")
    else:
        result["notes"].append(f"only {done} subsets: no LDS (needs >= {lds.MIN_SUBSETS})")
        log(result["notes"][-1])
    result["timings"]["total_s"] = time.perf_counter() - start
    save()
    log(f"done in {result['timings']['total_s']:.1f} s; wrote {out / 'influence_gpu.json'}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
