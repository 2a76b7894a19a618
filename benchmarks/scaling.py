"""How the cost of a run grows with the stream length T, the seeds and the dimension d.

    python -m benchmarks.scaling                 # about 4 minutes on 2 CPU cores
    python -m benchmarks.scaling --smoke         # seconds

For every learner (K = 7 one-hot outputs, the regret experiment's settings, iid
streams over simulated data with unit-norm rows) the compiled run is timed along
three axes from a base point, one axis at a time:

* T in ``--Ts`` (seeds = ``--base_seeds``, d = 55),
* seeds in ``--seed_counts`` (T = ``--base_T``, d = 55),
* d in ``--dims`` (T = ``--dim_T``, seeds = ``--dim_seeds``; shorter, since ONS keeps K d x d
  inverses per seed),

with the seeds sharded over one host device per core, as the experiments run them
(``--devices``). Each point is the median of ``--repeats`` calls after one untimed
call (compilation excluded, reported apart). The exponent of each axis is the
least-squares slope of log(run seconds) on log(axis value): 1 is linear; below 1
for seeds means seeds are cheaper together than alone (today mostly the second core, since the
scans are compiled whole and run in pairs or one seed at a time on each core).
Results: ``benchmarks/out/scaling.json`` and ``.md`` (written atomically).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

import numpy as np

from benchmarks import cli

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "out" / "scaling.json"
NAMES = cli.LEARNERS
K = 7


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--learners", type=cli.name_list(NAMES), default=list(NAMES),
                   help="comma list (default: all five)")
    p.add_argument("--Ts", type=cli.int_list, default=[10_000, 30_000, 100_000])
    p.add_argument("--seed_counts", type=cli.int_list, default=[1, 8, 32, 128])
    p.add_argument("--dims", type=cli.int_list, default=[55, 197, 785])
    p.add_argument("--base_T", type=int, default=20_000)
    p.add_argument("--base_seeds", type=int, default=32)
    p.add_argument("--dim_seeds", type=int, default=4)
    p.add_argument("--dim_T", type=int, default=5_000)
    p.add_argument("--n", type=int, default=20_000, help="rows of the data table")
    p.add_argument("--repeats", type=int, default=3)
    cli.add_sharded_run_flags(p, DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.smoke:
        args.Ts, args.seed_counts, args.dims = [200, 400], [1, 2], [8, 16]
        args.base_T, args.base_seeds, args.dim_seeds, args.dim_T, args.n, args.repeats = 300, 2, 2, 300, 500, 1
    return args


def _data(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[:, -1] = 1.0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.integers(0, K, n)
    return x.astype(np.float32), np.eye(K, dtype=np.float32)[labels], labels.astype(np.int32)


def build(name: str, T: int, seeds: int, d: int, n: int, small_loop_bytes: int, width: int | None = None):
    """One configuration compiled as the experiments run it: ``(compiled, args, info)``.

    ``width``: seeds per ``vmap`` batch on each device (None: ``configs.regret``'s, resolved by
    ``common.scan_plan``). ``info`` has ``compile_s``, ``seeds_per_batch``, ``whole_scan``, ``devices``.
    """
    import jax

    from configs.regret import learner_defaults, seeds_per_batch_defaults
    from experiments import common
    from mpjax import learners, streams
    from mpjax import run as run_lib

    x, y, labels = _data(n, d)
    learner = learners.multi_output(learners.get(name, **dict(learner_defaults()[name])), K)
    mesh = common.seed_mesh(seeds)
    keys = run_lib.seed_keys(0, seeds)
    stream = jax.jit(jax.vmap(lambda k: streams.make_stream(
        "iid", run_lib.purpose_key(k, run_lib.TAG_STREAM), labels, T, num_classes=K, is_image=False,
        raw_dim=d - 1)))(keys)
    keys, stream = (common.put_seeds(mesh, a, True) for a in (keys, stream))
    table, targets = (common.put_seeds(mesh, a, False) for a in (x, y))

    def one(key, st, table, targets):
        return run_lib.run_seed(learner, d, key, table, targets, st)[1].loss

    whole, auto = common.scan_plan(name, d, seeds_per_batch_defaults()[name], small_loop_bytes,
                                   common.local_seed_count(seeds, mesh))
    width = auto if width is None else width
    program = common.map_seeds(one, mesh, width, num_shared=2, num_seeds=seeds)

    t0 = time.perf_counter()
    compiled = common.compile_scan(program, keys, stream, table, targets, fast=whole)
    info = {"compile_s": time.perf_counter() - t0, "seeds_per_batch": common.width_in_effect(width, seeds, mesh),
            "whole_scan": whole, "devices": 1 if mesh is None else int(mesh.devices.size)}
    return compiled, (keys, stream, table, targets), info


def time_run(name: str, T: int, seeds: int, d: int, n: int, repeats: int, small_loop_bytes: int) -> dict[str, Any]:
    """Compile and time one configuration: the median run seconds over ``repeats`` calls."""
    import jax

    compiled, args, info = build(name, T, seeds, d, n, small_loop_bytes)
    out = jax.block_until_ready(compiled(*args))
    finite = bool(np.isfinite(np.asarray(out)).all())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    run_s = float(np.median(times))
    return {"learner": name, "T": T, "seeds": seeds, "d": d, "compile_s": info["compile_s"], "run_s": run_s,
            "aggregate_samples_per_s": seeds * T / run_s, "devices": info["devices"],
            "finite": finite, "seeds_per_batch": info["seeds_per_batch"], "whole_scan": info["whole_scan"]}


def exponent(values, seconds) -> float:
    """Least-squares slope of log(seconds) on log(values)."""
    lv, ls = np.log(np.asarray(values, float)), np.log(np.asarray(seconds, float))
    if len(lv) < 2 or np.ptp(lv) == 0:
        return float("nan")
    return float(np.polyfit(lv, ls, 1)[0])


def _markdown(rows, fits, meta) -> str:
    lines = [f"Scaling of run time (K = {K}, iid stream, seeds sharded over {meta['devices']} host device(s); "
             f"{meta['machine']}; load average {meta['loadavg_start'][0]:.1f} -> {meta['loadavg_end'][0]:.1f}).", "",
             "| learner | exponent in T | exponent in seeds | exponent in d | aggregate samples/s at 1 / "
             f"{meta['base_seeds']} / {max(meta['seed_counts'])} seeds (T = {meta['base_T']:,}, d = 55) |",
             "|---|---|---|---|---|"]
    for name, f in fits.items():
        rate = {r["seeds"]: r["aggregate_samples_per_s"] for r in rows if r["learner"] == name and r["axis"] == "seeds"}
        picks = [rate.get(s) for s in (1, meta["base_seeds"], max(meta["seed_counts"]))]
        rates = " / ".join("—" if v is None else (f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k") for v in picks)
        lines.append(f"| {name} | {f['T']:.2f} | {f['seeds']:.2f} | {f['d']:.2f} | {rates} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    load_start, t_start = cli.start_sharded_run(args)  # before JAX starts: devices, small-loop threshold
    rows, fits = [], {}
    for name in args.learners:
        axes = {
            "T": [dict(T=t, seeds=args.base_seeds, d=args.dims[0]) for t in args.Ts],
            "seeds": [dict(T=args.base_T, seeds=s, d=args.dims[0]) for s in args.seed_counts],
            "d": [dict(T=args.dim_T, seeds=args.dim_seeds, d=dd) for dd in args.dims],
        }
        fits[name] = {}
        for axis, points in axes.items():
            got = []
            for point in points:
                r = time_run(name, n=args.n, repeats=args.repeats, small_loop_bytes=args.small_loop_bytes, **point)
                r["axis"] = axis
                rows.append(r)
                got.append(r)
                print(f"{name:<10} {axis:<5} T={r['T']:<7} seeds={r['seeds']:<4} d={r['d']:<4} "
                      f"run {r['run_s']:.3f} s  compile {r['compile_s']:.2f} s", file=sys.stderr, flush=True)
            fits[name][axis] = exponent([g[axis] for g in got], [g["run_s"] for g in got])
    meta = {"base_T": args.base_T, "base_seeds": args.base_seeds, "seed_counts": args.seed_counts, "args": vars(args),
            **cli.run_meta(load_start, t_start)}
    payload = {"meta": meta, "exponents": fits, "results": rows}
    cli.write_results(args.out, payload, _markdown(rows, fits, meta))
    return payload


if __name__ == "__main__":
    main()
