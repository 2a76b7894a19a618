"""How far each learner's step is from the machine's flop floor.

    python -m benchmarks.scaling      # first: measures the rates this reads
    python -m benchmarks.flops        # seconds; prints a table, writes benchmarks/out/flops.json

For every learner (K = 7 one-hot outputs, d = 55, the regret experiment's settings) XLA's
own cost analysis of one compiled step gives the flops per sample-step, at one seed and
vmapped over ``--seeds``. Memory-Pair pushes its curvature pair and recomputes its compact
inverse once per block of L steps inside a ``lax.cond``; XLA counts that branch on every
step, so the *useful* flops per step are ``step - branch + branch / L``. The vmapped step
is measured as the experiments run it: the step counter is the same for every seed (the
scan's, not batched), so the ``cond`` stays a branch; a batched counter would turn it into
a select that recomputes the compact inverse on every step.

The floor is the time the useful flops would take at the machine's peak:
``cores x GHz x flops per cycle`` (float32 FMA: 64 with AVX-512, 32 with AVX2 + FMA, 8
otherwise; two FMA units assumed), or ``--peak_gflops``. The measured aggregate rates come
from ``benchmarks/out/scaling.json`` (its seeds axis, T = 20,000), so run that first, on the
same machine. "x floor" = floor rate / measured rate (1 would be peak; lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from typing import Any

from benchmarks.cli import LEARNERS
from benchmarks.scaling import DEFAULT_OUT as SCALING_OUT

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "out" / "flops.json"
K, D = 7, 55


def peak_gflops() -> tuple[float, str]:
    """Float32 peak of this host from /proc/cpuinfo: cores x GHz x FMA flops per cycle."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return float("nan"), "no /proc/cpuinfo: pass --peak_gflops"
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "").split()
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if "avx512f" in flags else 32 if ("avx2" in flags and "fma" in flags) else 8
    ghz = max(mhz) / 1000 if mhz else float("nan")
    return cores * ghz * per_cycle, f"{cores} cores x {ghz:.2f} GHz x {per_cycle} float32 flops/cycle"


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def step_flops(name: str, seeds: int) -> dict[str, float]:
    """XLA-counted flops per sample-step of the K-output learner (and of Memory-Pair's block branch)."""
    import jax
    import jax.numpy as jnp

    from configs.regret import learner_defaults
    from mpjax import lbfgs, learners

    hyper = dict(learner_defaults()[name])
    lrn = learners.multi_output(learners.get(name, **hyper), K)
    keys = jax.random.split(jax.random.key(0), seeds)
    state = jax.vmap(lambda k: lrn.init(D, k))(keys)
    # The step counter as in a scan over seeds: one unbatched value (the cond stays a branch).
    axes = jax.tree.map(lambda _: 0, state)
    if hasattr(state, "t"):
        state, axes = state._replace(t=state.t[0]), axes._replace(t=None)
    x = jnp.full((seeds, D), 1.0 / D**0.5, jnp.float32)
    y = jnp.zeros((seeds, K), jnp.float32).at[:, 0].set(1.0)
    counted = _flops(jax.jit(jax.vmap(lrn.step, in_axes=(axes, 0, 0))).lower(state, x, y).compile()) / seeds
    out = {"counted": counted, "useful": counted, "branch": 0.0}
    if name == "memorypair":
        one = jax.tree.map(lambda a, ax: a if ax is None else a[0], state, axes)
        branch = _flops(jax.jit(lbfgs.compact_inverse).lower(one.memory).compile())
        block = int(hyper.get("curvature_block", 20))
        out.update(branch=branch, useful=counted - branch + branch / block)
    return out


def main(argv=None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.flops", description=__doc__.splitlines()[0])
    p.add_argument("--scaling", default=str(SCALING_OUT), help="benchmarks.scaling's JSON (measured rates)")
    p.add_argument("--peak_gflops", type=float, default=0.0, help="override the peak (0: from /proc/cpuinfo)")
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    path = pathlib.Path(args.scaling)
    if not path.is_file():
        p.error(f"{path} not found: run `python -m benchmarks.scaling` first (it measures the rates)")
    scaling = json.loads(path.read_text())
    peak, how = (args.peak_gflops, "given") if args.peak_gflops > 0 else peak_gflops()
    rows = []
    for name in LEARNERS:
        rates = {r["seeds"]: r["aggregate_samples_per_s"] for r in scaling["results"]
                 if r["learner"] == name and r["axis"] == "seeds" and r["d"] == D}
        if not rates:
            continue
        one, many = step_flops(name, 1), step_flops(name, args.seeds)
        floor_rate = peak * 1e9 / one["useful"]
        row = {"learner": name, "useful_flops_per_step": one["useful"],
               "executed_flops_per_seed_step_vmapped": many["useful"]}
        for s in sorted(rates):
            row[f"rate_{s}"] = rates[s]
            row[f"gflops_{s}"] = rates[s] * one["useful"] / 1e9
            row[f"x_floor_{s}"] = floor_rate / rates[s]
        rows.append(row)
    from experiments import common

    meta = {"peak_gflops": peak, "peak_from": how, "K": K, "d": D, "scaling_json": str(path),
            "scaling_meta": scaling.get("meta", {}), **common.provenance_metadata()}
    common.write_json(args.out, {"rows": rows, "meta": meta})
    seeds = sorted({int(k.split("_")[-1]) for r in rows for k in r if k.startswith("rate_")})
    print(f"peak {peak:.0f} GFLOP/s ({how}); K = {K}, d = {D}; rates from {path}")
    head = "| learner | useful flops / step | executed / seed-step (vmapped) | " + " | ".join(
        f"{s} seeds: GFLOP/s, x floor" for s in seeds) + " |"
    print(head)
    print("|" + "---|" * (3 + len(seeds)))
    for r in rows:
        cells = [f"{r.get(f'gflops_{s}', float('nan')):.1f}, {r.get(f'x_floor_{s}', float('nan')):.1f}x" for s in seeds]
        print(f"| {r['learner']} | {r['useful_flops_per_step']:,.0f} | {r['executed_flops_per_seed_step_vmapped']:,.0f} | "
              + " | ".join(cells) + " |")
    print(f"wrote {args.out}")
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
