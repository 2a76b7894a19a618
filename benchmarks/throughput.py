"""Throughput of the mpjax learners against plain NumPy per-step loops of the same math.

    python -m benchmarks.throughput                      # default: about 5 minutes on 2 CPU cores
    python -m benchmarks.throughput --T 2000 --numpy_T 500 --seeds 1,2 --dims 55   # smoke, ~20 s
    python -m benchmarks.throughput --float64 --learners sgd,ons --dims 55

Every learner (scalar output, squared loss, default hyper-parameters, binary 0/1
targets) runs over a stream of T samples drawn from one shared data table of n rows;
each seed has its own random order (a fresh permutation per pass, as the ``iid``
stream of the experiments), and seeds are one ``vmap``, the whole stream one
``lax.scan`` through :func:`mpjax.run.run`, emitting the per-step :class:`Trace`
the experiments use. Beside it, in the same process, a plain NumPy loop of the same
math (:mod:`benchmarks.numpy_ref`) runs one seed (seed 0's order) for a shorter
``numpy_T`` steps, best of 3 (a per-step loop has a constant cost per step, so steps/s
from a shorter run is the same number); its first losses are checked against the
JAX run's seed 0 (``numpy_losses_agree``).

Timing: the jitted function is compiled ahead of time (``compile_s``), then called
twice on the same inputs; ``first_s`` is the first call (buffer set-up included),
``run_s`` the second, and throughput is ``seeds * T / run_s`` sample-steps/s. Every
call ends with ``jax.block_until_ready``. The seeds' index streams are built (and
timed, ``stream_s``) before, as the experiments build them once per run.

Caps (after compilation, steps/s does not depend on T, so a shorter stream measures
the same rate; every capped configuration is marked in the table and listed in the
JSON):
- work: ``seeds * T * d <= --max_work`` (default 2e8, i.e. 3.6M sample-steps at
  d = 55 and 255k at d = 785); T is cut to fit, never below ``--min_T`` (1,000).
- the O(d^2) learners (ons, rls) are memory-bound at large d: one step streams the
  d x d matrix (2.5 MB at d = 785 in float32) through memory about three times, per
  seed, so batching seeds beyond the cache makes each sample slower. With
  d > ``--d2_cap_dim`` (256) they run at most ``--d2_cap_seeds`` (8) seeds and
  ``--d2_cap_T`` (2,000) steps, and their NumPy loop at most ``--d2_cap_numpy_T``
  (1,000) steps.

Timings on a shared machine: wall-clock is what is reported; the JSON also has the
process CPU time of each timed call and the load average before and after the run.

Results go to ``benchmarks/out/throughput.json`` (or ``--out``), written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks import cli

__all__ = ["main", "parse_args", "plan", "make_data", "time_jax", "time_numpy", "format_table"]

LEARNER_NAMES = cli.LEARNERS
QUADRATIC = ("ons", "rls")  # O(d^2) state and work per step
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "throughput.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.throughput",
        description="Sample-steps/s of the mpjax learners (lax.scan + vmap over seeds) vs a NumPy per-step loop.",
    )
    p.add_argument("--learners", type=cli.name_list(LEARNER_NAMES), default=list(LEARNER_NAMES),
                   help="comma list (default: all five)")
    p.add_argument("--dims", type=cli.int_list, default=[55, 785], help="feature dims incl. bias (default 55,785)")
    p.add_argument("--seeds", type=cli.int_list, default=[1, 32, 128], help="seed counts (vmap width), default 1,32,128")
    p.add_argument("--T", type=int, default=100_000, help="stream length of the JAX runs (default 100000)")
    p.add_argument("--numpy_T", type=int, default=10_000, help="steps of the NumPy loop (default 10000)")
    p.add_argument("--n", type=int, default=20_000, help="rows in the shared data table (default 20000)")
    p.add_argument("--float64", action="store_true", help="run everything in float64 (jax.enable_x64)")
    cli.add_small_loop_bytes(p)
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON result path (default benchmarks/out/throughput.json)")
    p.add_argument("--seed", type=int, default=0, help="integer seed of data and streams")
    p.add_argument("--d2_cap_dim", type=int, default=256, help="ons/rls above this d are capped (default 256)")
    p.add_argument("--max_work", type=int, default=200_000_000,
                   help="cap on seeds*T*d per JAX configuration; T is cut to fit (default 2e8)")
    p.add_argument("--min_T", type=int, default=1_000, help="the work cap never cuts T below this (default 1000)")
    p.add_argument("--d2_cap_T", type=int, default=2_000, help="T cap of capped ons/rls runs (default 2000)")
    p.add_argument("--d2_cap_seeds", type=int, default=8, help="seed cap of capped ons/rls runs (default 8)")
    p.add_argument("--d2_cap_numpy_T", type=int, default=1_000, help="NumPy steps cap of capped ons/rls (default 1000)")
    args = p.parse_args(argv)
    for name in ("T", "numpy_T", "n", "max_work", "min_T", "d2_cap_T", "d2_cap_seeds", "d2_cap_numpy_T"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if not args.dims or min(args.dims) < 2 or not args.seeds or min(args.seeds) < 1:
        p.error("--dims must be >= 2 and --seeds >= 1")
    return args


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The JAX configurations to run, with the caps applied (and said so in ``cap``).

    Two caps keep the default run near 5 minutes on 2 cores; throughput after compilation
    does not depend on T, so a shorter stream measures the same steps/s:
    - work: ``seeds * T * d <= --max_work``; T is cut (never below ``--min_T``);
    - O(d^2) learners (ons, rls) with ``d > --d2_cap_dim``: at most ``--d2_cap_seeds``
      seeds and ``--d2_cap_T`` steps (their d x d state per seed is memory-bound).
    """
    configs = []
    for d in args.dims:
        for name in args.learners:
            for seeds in args.seeds:
                eff_seeds, eff_T, notes = seeds, args.T, []
                if name in QUADRATIC and d > args.d2_cap_dim:
                    eff_seeds, eff_T = min(seeds, args.d2_cap_seeds), min(eff_T, args.d2_cap_T)
                    if eff_seeds != seeds:
                        notes.append(f"seeds {seeds}->{eff_seeds} (d^2 cap)")
                    if eff_T != args.T:
                        notes.append(f"T->{eff_T} (d^2 cap)")
                work_T = max(min(args.min_T, eff_T), args.max_work // (eff_seeds * d))
                if work_T < eff_T:
                    eff_T = work_T
                    notes.append(f"T->{eff_T} (work cap)")
                same = [c for c in configs if c["learner"] == name and c["d"] == d and c["seeds"] == eff_seeds]
                if same:  # the capped configuration is already planned; say it stands for this one too
                    same[0]["cap"] += f"; also stands for seeds={seeds}"
                    continue
                configs.append(
                    {"learner": name, "d": d, "seeds": eff_seeds, "T": eff_T, "requested_seeds": seeds,
                     "requested_T": args.T, "cap": "; ".join(notes)}
                )
    return configs


def make_data(n: int, d: int, seed: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A shared table f[n, d] (last column a bias of 1, rows scaled to norm <= 1) and 0/1 targets f[n]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[:, -1] = 1.0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w_true = rng.normal(size=d)
    noisy = x @ w_true + 0.1 * rng.normal(size=n) / math.sqrt(d)
    return x.astype(dtype), (noisy > 0).astype(dtype)


def _stream_fn(n: int, T: int):
    """``idx(key) -> i32[T]``: a fresh permutation of the n rows per pass (the iid stream)."""
    import jax
    import jax.numpy as jnp

    passes = -(-T // n)

    def idx(key):
        keys = jax.vmap(lambda p: jax.random.fold_in(key, p))(jnp.arange(passes))
        perms = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
        return perms.reshape(-1)[:T].astype(jnp.int32)

    return idx


def time_jax(
    name: str, d: int, seeds: int, T: int, table_np: np.ndarray, targets_np: np.ndarray, seed: int = 0, unroll: int = 1,
    small_loop_bytes: int = 0,
):
    """Compiles and runs learner ``name`` over ``seeds`` vmapped streams of length T; returns timings."""
    import jax
    import jax.numpy as jnp

    from mpjax import learners
    from mpjax import run as run_lib

    n = table_np.shape[0]
    learner = learners.get(name)
    table = jnp.asarray(table_np)
    targets = jnp.asarray(targets_np)
    keys = run_lib.seed_keys(seed, seeds)

    t0 = time.perf_counter()
    make_idx = jax.jit(jax.vmap(lambda k: _stream_fn(n, T)(run_lib.purpose_key(k, run_lib.TAG_STREAM))))
    idx = jax.block_until_ready(make_idx(keys))
    stream_s = time.perf_counter() - t0

    aux = jnp.zeros((T,), table.dtype)
    direction = jnp.zeros((d,), table.dtype)

    def one(key, idx, table, targets):
        final, trace = run_lib.run_seed(learner, d, key, table, targets, _Stream(idx, aux, direction), unroll=unroll)
        return final.w, trace

    from experiments import common

    whole = common.whole_scan(name, d, small_loop_bytes)
    t0 = time.perf_counter()
    compiled = common.compile_scan(jax.vmap(one, in_axes=(0, 0, None, None)), keys, idx, table, targets, fast=whole)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    w1, trace1 = jax.block_until_ready(compiled(keys, idx, table, targets))
    first_s = time.perf_counter() - t0
    del w1, trace1
    t0, c0 = time.perf_counter(), time.process_time()
    w, trace = jax.block_until_ready(compiled(keys, idx, table, targets))
    run_s = time.perf_counter() - t0
    run_cpu_s = time.process_time() - c0
    loss = np.asarray(trace.loss)
    finite = bool(np.isfinite(loss).all() and np.isfinite(np.asarray(w)).all())
    return {
        "stream_s": stream_s,
        "compile_s": compile_s,
        "first_s": first_s,
        "run_s": run_s,
        "run_cpu_s": run_cpu_s,
        "steps_per_s": seeds * T / run_s,
        "ns_per_seed_step": 1e9 * run_s / (seeds * T),
        "mean_loss": float(loss.mean()),
        "finite": finite,
        "idx0": np.asarray(idx[0]),
        "loss0": loss[0],
    }


class _Stream:
    """The three fields :func:`mpjax.run.run` reads from a stream (mirrors ``mpjax.streams.Stream``)."""

    def __init__(self, idx, aux, direction):
        self.idx, self.aux, self.direction = idx, aux, direction


def time_numpy(name: str, table: np.ndarray, targets: np.ndarray, idx: np.ndarray, repeats: int = 3):
    """Runs the NumPy reference loop over ``idx`` (best of ``repeats``); returns steps/s and its losses."""
    from benchmarks import numpy_ref

    fn = numpy_ref.REFERENCES[name]
    fn(table, targets, idx[: min(len(idx), 50)])  # warm caches and allocators
    run_s = run_cpu_s = math.inf
    for _ in range(repeats):  # best of `repeats`: the most favourable number for NumPy
        t0, c0 = time.perf_counter(), time.process_time()
        losses = fn(table, targets, idx)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < run_s:
            run_s, run_cpu_s = wall, cpu
    return {"T": len(idx), "run_s": run_s, "run_cpu_s": run_cpu_s, "steps_per_s": len(idx) / run_s, "losses": losses}


def _fmt_rate(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def format_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = (
        f"{'learner':<10} {'d':>4} {'seeds':>5} {'T':>7} {'compile s':>9} {'1st call s':>10} {'run s':>7} "
        f"{'ns/seed-step':>12} {'JAX steps/s':>11} {'NumPy st/s':>10} {'JAX/NumPy':>9}  cap"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['learner']:<10} {r['d']:>4} {r['seeds']:>5} {r['T']:>7} {r['compile_s']:>9.2f} {r['first_s']:>10.2f} "
            f"{r['run_s']:>7.2f} {r['ns_per_seed_step']:>12.0f} {_fmt_rate(r['steps_per_s']):>11} "
            f"{_fmt_rate(r['numpy_steps_per_s']):>10} {r['ratio']:>8.1f}x  {r['cap']}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{meta['dtype']}, n = {meta['n']} rows, {meta['backend']} ({meta['cpu_count']} cores), jax {meta['jax']}, "
        f"numpy {meta['numpy']}. NumPy: one seed, "
        + ", ".join(f"{k} steps" for k in sorted({str(v) for v in meta['numpy_T'].values()}))
        + " (steps/s)."
    )
    lines.append("steps/s = sample-steps per second summed over seeds; run s = second call; ratio = JAX / NumPy.")
    return "\n".join(lines)


def _write_json(path: str, payload: dict[str, Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".throughput-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _bench(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import jax
    from tqdm import tqdm

    dtype = np.float64 if args.float64 else np.float32
    load_start = list(os.getloadavg())
    configs = plan(args)
    rows: list[dict[str, Any]] = []
    numpy_rates: dict[tuple[str, int], dict[str, Any]] = {}
    numpy_T: dict[str, int] = {}
    data = {d: make_data(args.n, d, args.seed + d, dtype) for d in args.dims}
    bar = tqdm(configs, desc="throughput", unit="config", file=sys.stderr)
    for cfg in bar:
        name, d, seeds, T = cfg["learner"], cfg["d"], cfg["seeds"], cfg["T"]
        bar.set_postfix_str(f"{name} d={d} seeds={seeds} T={T}")
        table, targets = data[d]
        res = time_jax(name, d, seeds, T, table, targets, args.seed, small_loop_bytes=args.small_loop_bytes)
        if (name, d) not in numpy_rates:
            nT = args.numpy_T
            if name in QUADRATIC and d > args.d2_cap_dim:
                nT = min(nT, args.d2_cap_numpy_T)
            idx = np.resize(res["idx0"], nT)  # seed 0's order (cycled if numpy_T > T)
            ref = time_numpy(name, table, targets, idx)
            # Same math: seed 0's first losses agree with the JAX run. In float32 the
            # rounding of the two implementations slowly separates the trajectories
            # (L-BFGS most), so the check covers the first 100 steps there.
            k, rtol, atol = (min(len(idx), T, 100), 1e-2, 1e-4) if dtype == np.float32 else (min(len(idx), T, 2000), 1e-7, 1e-9)
            agree = bool(np.allclose(ref["losses"][:k], res["loss0"][:k], rtol=rtol, atol=atol))
            numpy_rates[(name, d)] = {
                "T": nT, "run_s": ref["run_s"], "run_cpu_s": ref["run_cpu_s"], "steps_per_s": ref["steps_per_s"], "agree": agree
            }
            numpy_T[f"{name}/d={d}"] = nT
        ref = numpy_rates[(name, d)]
        row = {k: v for k, v in cfg.items()}
        row.update({k: v for k, v in res.items() if k not in ("idx0", "loss0")})
        row["numpy_T"] = ref["T"]
        row["numpy_run_s"] = ref["run_s"]
        row["numpy_run_cpu_s"] = ref["run_cpu_s"]
        row["numpy_steps_per_s"] = ref["steps_per_s"]
        row["numpy_losses_agree"] = ref["agree"]
        row["ratio"] = row["steps_per_s"] / ref["steps_per_s"]
        rows.append(row)
    bar.close()
    meta = {
        "dtype": np.dtype(dtype).name,
        "n": args.n,
        "backend": jax.default_backend(),
        "devices": [str(dev) for dev in jax.devices()],
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "numpy_T": numpy_T,
        "args": {k: v for k, v in vars(args).items()},
        "caps": {
            "rule": f"work: seeds*T*d <= {args.max_work:.3g} (T cut, not below {args.min_T}); "
            f"ons/rls with d > {args.d2_cap_dim}: seeds <= {args.d2_cap_seeds}, T <= {args.d2_cap_T}, "
            f"NumPy steps <= {args.d2_cap_numpy_T} (memory-bound d x d state per seed). "
            "Steps/s after compilation does not depend on T.",
            "capped": [f"{r['learner']} d={r['d']} seeds={r['requested_seeds']}: {r['cap']}" for r in rows if r["cap"]],
        },
    }
    return rows, meta


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark; prints the table, writes the JSON and returns the payload."""
    args = parse_args(argv)
    cli.setup_small_loops(args)  # before JAX starts; the threshold in effect from here on
    import jax

    t0 = time.perf_counter()
    if args.float64:
        with jax.enable_x64(True):
            rows, meta = _bench(args)
    else:
        rows, meta = _bench(args)
    meta["wall_s"] = time.perf_counter() - t0
    payload = {"meta": meta, "results": rows}
    _write_json(args.out, payload)
    print(format_table(rows, meta))
    if meta["caps"]["capped"]:
        print("Caps: " + meta["caps"]["rule"])
    print(f"load average (1 min) at start {meta['loadavg_start'][0]:.1f}, at end {meta['loadavg_end'][0]:.1f} "
          f"(other processes on the {meta['cpu_count']} cores slow the wall-clock numbers; cpu s are in the JSON)")
    bad = [f"{r['learner']} d={r['d']}" for r in rows if not r["numpy_losses_agree"] or not r["finite"]]
    if bad:
        print("WARNING: NumPy and JAX losses disagree or are non-finite for: " + ", ".join(sorted(set(bad))))
    print(f"wall {meta['wall_s']:.0f} s; results in {args.out}")
    return payload


if __name__ == "__main__":
    main()
