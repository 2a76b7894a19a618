"""Cost of exact metagradients, as ratios to the forward pass of the same configuration.

    python -m benchmarks.influence            # about 5-10 minutes on the shared 2-core CPU
    python -m benchmarks.influence --learners=memorypair --out=benchmarks/out/influence_mp.json

Per learner (SGD, RLS; Memory-Pair for memory and retrains), d in {55, 197}
(simulated Covertype; simulated MNIST at 14x14) and T in {10k, 50k}, float64, K
outputs, one fixed order:

* ``forward``: the weighted training scan with every weight 1 (plain ``lax.scan``).
* ``magic_1``: the exact metagradient of one target loss w.r.t. all n row weights,
  through ``scan_remat`` with 2 balanced levels; ``magic_50`` with 50 targets.
* ``temp_remat`` / ``temp_plain``: XLA temporary memory of the compiled one-target
  metagradient with and without ``scan_remat`` (``compiled.memory_analysis()``).
* ``retrain_100``: 100 retrains with 0/1 masks in one ``vmap`` (T = 10k only);
  ``retrain_100_batched``: the same in batches of ``retrain_batch`` (configs/influence.py)
  one after another, as the experiment runs them.

Times are the best of ``--repeats`` runs after compilation, on whatever else the
machine is doing (report ratios measured in the same run). Writes
``benchmarks/out/influence.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp

from benchmarks import cli
from configs.influence import get_config as influence_config
from configs.regret import learner_defaults
from experiments import common
from mpjax import learners
from mpjax.data import load_dataset
from mpjax.influence import lds, metagrad
from mpjax.influence.remat import balanced_levels

_DEFAULTS = learner_defaults()  # the regret experiment's settings (configs/regret.py)
HYPER = {name: dict(_DEFAULTS[name]) for name in ("sgd", "rls", "memorypair")}
RETRAIN_BATCH = int(influence_config().retrain_batch)  # the experiment's default batch of retrains


def _data(dim: int, rows: int):
    if dim == 55:
        d = load_dataset("covtype", data_source="simulated", max_rows=rows, seed=0, progress=False)
    else:
        d = load_dataset("rotmnist", data_source="simulated", max_rows=rows, image_size=14, seed=0, progress=False)
    return d


def _best(fn, args, repeats):
    compiled = jax.jit(fn).lower(*args).compile()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return min(times), compiled


def bench(name: str, dim: int, steps: int, repeats: int, retrains: bool, with_j50: bool) -> dict:
    data = _data(dim, steps + 50)
    x = jnp.asarray(data.x[:steps], jnp.float64)
    y = jnp.asarray(data.y[:steps], jnp.float64)
    tx, ty = jnp.asarray(data.x[steps:], jnp.float64), jnp.asarray(data.y[steps:], jnp.float64)
    lrn = learners.multi_output(learners.get(name, **HYPER[name]), data.num_classes)
    state = lrn.init(x.shape[1], jax.random.key(0))
    order = jax.random.permutation(jax.random.key(1), steps).astype(jnp.int32)
    levels = balanced_levels(steps, 2)
    ones = jnp.ones((steps,), jnp.float64)
    out = {"learner": name, "d": int(x.shape[1]), "K": data.num_classes, "T": steps, "levels": list(levels)}

    def forward(w):
        return _targets(lrn, state, x, y, order, w, tx[:1], ty[:1], None)

    def one_target(w, lv):
        return _targets(lrn, state, x, y, order, w, tx[:1], ty[:1], lv)[0]

    run_models = name != "memorypair" or steps <= 10_000
    if run_models:
        out["forward_s"], _ = _best(forward, (ones,), repeats)
        out["magic_1_s"], compiled = _best(jax.grad(lambda w: one_target(w, levels)), (ones,), repeats)
        out["magic_1_ratio"] = out["magic_1_s"] / out["forward_s"]
    else:
        compiled = jax.jit(jax.grad(lambda w: one_target(w, levels))).lower(ones).compile()
    out["temp_remat_bytes"] = int(compiled.memory_analysis().temp_size_in_bytes)
    plain = jax.jit(jax.grad(lambda w: one_target(w, None))).lower(ones).compile()
    out["temp_plain_bytes"] = int(plain.memory_analysis().temp_size_in_bytes)
    out["temp_ratio"] = out["temp_remat_bytes"] / out["temp_plain_bytes"]
    if with_j50 and run_models:
        fn = lambda w: metagrad.vjp_rows(lambda v: _targets(lrn, state, x, y, order, v, tx, ty, levels), w, 50)  # noqa
        out["magic_50_s"], _ = _best(fn, (ones,), 1)
        out["magic_50_ratio"] = out["magic_50_s"] / out["forward_s"]
    if retrains and run_models:
        masks = lds.make_masks(jax.random.key(2), steps, 100, "drop", 0.05).astype(jnp.float64)
        for batch, key in ((0, "retrain_100"), (RETRAIN_BATCH, "retrain_100_batched")):
            out[f"{key}_s"], _ = _best(lambda m, b=batch: lds.retrain_outputs(lrn, state, x, y, order, m, tx[:1], ty[:1],
                                                                              batch_size=b), (masks,), 1)
            out[f"{key}_ratio"] = out[f"{key}_s"] / out["forward_s"]
    return out


def _targets(lrn, state, x, y, order, w, tx, ty, levels):
    final, _ = metagrad.train_weighted(lrn, state, x, y, order, w, levels=levels)
    return metagrad.target_losses(lrn, final, tx, ty)


def main():
    ap = argparse.ArgumentParser(description="metagradient cost ratios")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--learners", type=cli.name_list(tuple(HYPER)), default=list(HYPER),
                    help="comma-separated subset of sgd, rls, memorypair (default: all three)")
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "out" / "influence.json"))
    args = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    rows = []
    configs = [(n, d, t) for n in ("sgd", "rls") for d in (55, 197) for t in (10_000, 50_000)]
    configs += [("memorypair", 55, 10_000), ("memorypair", 55, 50_000)]
    configs = [c for c in configs if c[0] in args.learners]
    for name, d, t in configs:
        t0 = time.perf_counter()
        r = bench(name, d, t, args.repeats, retrains=(t == 10_000), with_j50=(t == 10_000 and d == 55))
        r["wall_s"] = time.perf_counter() - t0
        rows.append(r)
        print(json.dumps(r), flush=True)
    meta = {"rows": rows, "date": time.strftime("%Y-%m-%d"), "dtype": "float64",
            "data": "simulated (covtype d=55, MNIST 14x14 d=197)", **common.provenance_metadata()}
    common.write_json(args.out, meta)
    cols = ["learner", "d", "T", "forward_s", "magic_1_ratio", "magic_50_ratio", "temp_remat_bytes",
            "temp_plain_bytes", "temp_ratio", "retrain_100_ratio", "retrain_100_batched_ratio"]
    print(common.format_table(rows, cols))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
