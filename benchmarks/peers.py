"""mpjax against the online learners people use instead: one stream, one process, interleaved.

    python -m benchmarks.peers              # about 4-5 minutes on 2 shared CPU cores
    python -m benchmarks.peers --smoke      # seconds: tiny streams, one round (the CI test)
    python -m benchmarks.peers --peers vw_cpp_csoaa,vw_python --learners sgd,memorypair

The stream: simulated Covertype (d = 55 with the bias, K = 7 classes, one-hot targets,
``mpjax.data.load_dataset``'s features), ``--n`` rows, in the order of the ``iid``
schedule of seed 0 (``mpjax.streams``). Every model learns one sample at a time in that
order, with the squared loss and one output per class (one-vs-all, K = 7), except where a
tool can only do something else (listed in the output's ``notes``):

- Vowpal Wabbit (pip ``vowpalwabbit``). ``vw_cpp_*``: VW's own C++ parse-and-learn
  loop over a whole file, started through ``pyvw.Workspace("-d stream.vw --cache_file
  ...")`` (the pip wheel ships no ``vw`` binary; with ``-d`` the Workspace runs the
  native driver to the end, with no Python per example). The text file is written and
  turned into VW's binary cache once, untimed; every timed run reads the cache.
  ``--csoaa 7`` regresses each class's cost 1 - y_k with the squared loss (our one-hot
  targets up to an affine relabel), ``--oaa 7`` regresses +-1 per class. VW's default
  update (adaptive, normalised, invariant), ``--noconstant`` (the bias is a feature).
  ``vw_python``: the usual Python loop, ``Workspace.learn(line)`` per example.
- River: K ``linear_model.LinearRegression`` (squared loss, ``intercept_lr=0``), one per
  class, ``learn_one`` per sample and class; SGD with eta_t = 0.5/sqrt(t), AdaGrad 0.1.
- scikit-learn: K ``SGDRegressor`` (invscaling eta0 = 0.5, power 0.5), ``partial_fit``
  on one row per sample and class.
- NumPy: the per-step loops of ``benchmarks.numpy_ref`` (same math and defaults as the
  mpjax learners), once per class output, with ``OPENBLAS_NUM_THREADS=1``.
- mpjax: every learner, ``learners.multi_output(learners.get(name), 7)`` with its default
  hyper-parameters, one ``lax.scan`` per stream, seeds (1, 32, 128) sharded over one
  host device per core and run in batches of ``configs.regret.seeds_per_batch_defaults``
  on each (auto: where the scan is compiled whole, as every scan here is at d = 55, pairs
  for Memory-Pair and SGD and one seed at a time for the others; ``--small_loop_bytes``), each seed its own ``iid`` order (seed 0's is the
  peers' stream). Compiled ahead of time and
  called once untimed; the streams are built before (``stream_s``). Seed 0's first
  losses are checked against the NumPy loops (``numpy_losses_agree``).

Peers only learn; mpjax also emits each step's pre-update loss and correctness.

Timing: every model is timed ``--rounds`` times, the rounds interleaved (each round runs
every model once, starting one model later each round), so that load from other
processes on a shared machine hits all models alike; each timed call follows an untimed
call of the same model (``--no_warm_call``: not; timed cold, mpjax's one-seed SGD ran at
2.4M instead of 3.1M samples/s, a call after another model's); the median is reported, the
minimum and every round are in the JSON. samples/s = stream samples (all K outputs) per second;
aggregate = seeds x samples/s. Ratios are aggregate / VW's C++ driver (csoaa) in the same
run. Stream lengths: ``--T`` for the VW C++ driver and the mpjax runs (mpjax: at most
``--work`` sample-steps per configuration, never below ``--min_T``), ``--T_loop`` for
VW's Python loop, ``--T_slow`` for River, scikit-learn and NumPy. A per-sample loop's
rate does not depend on T, nor does a compiled scan's.

Peers are optional (``pip install -e ".[bench]"``); a missing one is skipped with a
message saying so. Results: ``benchmarks/out/peers.json`` and ``peers.md`` (or
``--out``), written atomically.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS (NumPy/SciPy refs)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import cli  # noqa: E402
from configs.regret import seeds_per_batch_defaults  # noqa: E402

__all__ = ["PEERS", "main", "parse_args"]

LEARNER_NAMES = cli.LEARNERS
PEERS = ("vw_cpp_csoaa", "vw_cpp_oaa", "vw_python", "river_sgd", "river_adagrad", "sklearn_sgd")
_PEER_MODULE = {"vw": "vowpalwabbit", "river": "river", "sklearn": "sklearn"}
_PEER_DIST = {"vowpalwabbit": "vowpalwabbit", "river": "river", "sklearn": "scikit-learn"}
REFERENCE = "vw_cpp_csoaa"
PER_BATCH = dict(seeds_per_batch_defaults())  # seeds vmapped together per device, as in the experiments
K = 7
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "out" / "peers.json"
_SMOKE = {"T": 2_000, "T_loop": 300, "T_slow": 60, "n": 5_000, "work": 8_000, "min_T": 500, "rounds": 1,
          "seeds": [1, 4]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.splitlines()[0])
    p.add_argument("--peers", type=cli.name_list(PEERS, all_none=True), default=list(PEERS),
                   help=f"comma list of {','.join(PEERS)}, or all / none (default all)")
    p.add_argument("--learners", type=cli.name_list(LEARNER_NAMES, all_none=True), default=list(LEARNER_NAMES),
                   help="mpjax learners, comma list, all or none (default all)")
    p.add_argument("--no_numpy", action="store_true", help="skip the NumPy reference loops")
    p.add_argument("--seeds", type=cli.int_list, default=[1, 32, 128], help="mpjax seed counts (default 1,32,128)")
    cli.add_small_loop_bytes(p)
    p.add_argument("--devices", type=int, default=0,
                   help="host devices the seeds are sharded over (0: one per core, as the experiments; 1: none)")
    p.add_argument("--T", type=int, default=100_000, help="stream length: VW C++ driver, mpjax (default 100000)")
    p.add_argument("--T_loop", type=int, default=20_000, help="VW Python loop steps (default 20000)")
    p.add_argument("--T_slow", type=int, default=1_000, help="River, scikit-learn, NumPy steps (default 1000)")
    p.add_argument("--work", type=int, default=200_000,
                   help="mpjax: at most this many sample-steps (seeds x T) per configuration (default 200000)")
    p.add_argument("--min_T", type=int, default=2_000, help="the work cap never cuts mpjax's T below this")
    p.add_argument("--n", type=int, default=100_000, help="rows of simulated Covertype (default 100000)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (default 3)")
    p.add_argument("--no_warm_call", dest="warm_call", action="store_false",
                   help="time each call cold (default: an untimed call of the same model right before each timed one)")
    p.add_argument("--seed", type=int, default=0, help="integer seed of data and streams")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON path; the markdown table goes beside it (.md)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, one round, seeds 1,4 (explicit flags still win)")
    raw = p.parse_args(argv)
    if raw.smoke:
        given = {a.split("=")[0].lstrip("-") for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in _SMOKE.items():
            if key not in given:
                setattr(raw, key, value)
    for name in ("T", "T_loop", "T_slow", "work", "min_T", "n", "rounds"):
        if getattr(raw, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(raw, name)}")
    if not raw.seeds or min(raw.seeds) < 1:
        p.error("--seeds must be positive integers")
    return raw


# --------------------------------------------------------------------------- helpers


def _missing(module: str) -> str | None:
    """None when ``module`` imports, else a one-line reason (with the install command)."""
    dist = _PEER_DIST.get(module, module)
    how = f"pip install {dist}, or pip install -e \".[bench]\""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError:
        return f"{dist} is not installed ({how})"
    except Exception as e:  # noqa: BLE001 (installed but broken: skipped, with the reason)
        return f"{dist} is installed but does not import ({type(e).__name__}: {e}; {how})"
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _one_thread():
    """Single-threaded BLAS for the NumPy/SciPy/scikit-learn references (also if NumPy was
    imported before OPENBLAS_NUM_THREADS could take effect)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


@dataclasses.dataclass
class Job:
    """One timed model: ``call()`` runs it over its whole stream once."""

    name: str
    group: str  # "peer" | "numpy" | "mpjax"
    runs: str  # what exactly runs, for the table
    T: int
    call: Callable[[], Any]
    seeds: int = 1
    times: list = dataclasses.field(default_factory=list)
    info: dict = dataclasses.field(default_factory=dict)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# --------------------------------------------------------------------------- the stream


def _stream(args):
    """Simulated Covertype, seed 0's iid order, and the per-seed-count mpjax inputs."""
    import jax

    from mpjax import run as run_lib
    from mpjax import streams
    from mpjax.data import load_dataset

    data = load_dataset("covtype", data_source="simulated", seed=args.seed, max_rows=args.n, progress=False)
    labels = jax.device_put(np.asarray(data.labels, np.int32))

    def build(num_seeds, T):
        def one(key):
            return streams.make_stream("iid", run_lib.purpose_key(key, run_lib.TAG_STREAM), labels, T,
                                       num_classes=K, is_image=False, raw_dim=data.raw.shape[1])

        return jax.block_until_ready(jax.jit(jax.vmap(one))(run_lib.seed_keys(args.seed, num_seeds)))

    order = np.asarray(build(1, max(args.T, args.T_loop, args.T_slow)).idx[0])
    return data, order, build


# --------------------------------------------------------------------------- peers


def _vw_line(x_row: np.ndarray, label: int, mode: str, fmt: str) -> str:
    if mode == "csoaa":  # cost 0 for the true class, 1 for the others
        head = " ".join(f"{k + 1}:{0 if k == label else 1}" for k in range(K))
    else:
        head = str(label + 1)
    return f"{head} | {fmt % tuple(x_row)}"


def _vw_lines(x: np.ndarray, labels: np.ndarray, mode: str) -> list[str]:
    fmt = " ".join(f"{j}:%.9g" for j in range(x.shape[1]))  # %.9g: float32 round-trips exactly
    return [_vw_line(row, int(c), mode, fmt) for row, c in zip(x.tolist(), labels.tolist())]


def _vw_jobs(names, x, labels, order, args, tmp: pathlib.Path) -> list[Job]:
    from vowpalwabbit import pyvw

    jobs = []
    rows = order[:args.T]
    for name in names:
        if not name.startswith("vw_cpp_"):
            continue
        mode = name.removeprefix("vw_cpp_")
        data_file, cache_file = tmp / f"stream_{mode}.vw", tmp / f"stream_{mode}.vw.cache"
        t_write, _ = _timed(lambda: data_file.write_text("\n".join(_vw_lines(x[rows], labels[rows], mode)) + "\n"))
        opts = f"--{mode} {K} --noconstant --quiet -d {data_file} --cache_file {cache_file}"

        def run(opts=opts):
            ws = pyvw.Workspace(opts)  # runs VW's C++ driver over the whole file (cache) before returning
            seen, loss = ws.get_weighted_examples(), ws.get_sum_loss()
            ws.finish()
            return seen, loss

        t_cache, (seen, _) = _timed(run)  # first run parses the text and writes the binary cache
        if int(seen) != len(rows):
            raise RuntimeError(f"{name}: VW learned {seen} examples, expected {len(rows)}")
        jobs.append(Job(name, "peer", f"VW {_version('vowpalwabbit')} C++ driver, --{mode} {K}, cache file",
                        len(rows), run, info={"vw_args": opts, "text_write_s": t_write,
                                             "text_parse_and_cache_s": t_cache}))
    if "vw_python" in names:
        rows = order[:args.T_loop]
        lines = _vw_lines(x[rows], labels[rows], "csoaa")

        def run_loop():
            ws = pyvw.Workspace(f"--csoaa {K} --noconstant --quiet")
            for line in lines:
                ws.learn(line)
            seen = ws.get_weighted_examples()
            ws.finish()
            return seen

        jobs.append(Job("vw_python", "peer", f"VW {_version('vowpalwabbit')} Python loop, Workspace.learn(line), "
                        f"--csoaa {K}", len(rows), run_loop))
    return jobs


def _river_jobs(names, x, y, order, args) -> list[Job]:
    from river import linear_model, optim

    rows = order[:args.T_slow]
    dicts = [dict(enumerate(r)) for r in x[rows].tolist()]
    targets = y[rows].tolist()
    makers = {
        "river_sgd": ("SGD, eta_t = 0.5/sqrt(t)", lambda: optim.SGD(optim.schedulers.InverseScaling(0.5, 0.5))),
        "river_adagrad": ("AdaGrad, lr 0.1", lambda: optim.AdaGrad(lr=0.1)),
    }
    jobs = []
    for name in names:
        if name not in makers:
            continue
        what, make_opt = makers[name]

        def run(make_opt=make_opt):
            models = [linear_model.LinearRegression(optimizer=make_opt(), l2=1e-3, intercept_lr=0.0)
                      for _ in range(K)]
            for xd, yt in zip(dicts, targets):
                for k, model in enumerate(models):
                    model.learn_one(xd, yt[k])
            return models

        jobs.append(Job(name, "peer", f"River {_version('river')} {K} x LinearRegression.learn_one, {what}",
                        len(rows), run))
    return jobs


def _sklearn_job(x, y, order, args) -> Job:
    from sklearn.linear_model import SGDRegressor

    rows = order[:args.T_slow]
    xs, ys = x[rows].astype(np.float64), y[rows].astype(np.float64)

    def run():
        with _one_thread():
            models = [SGDRegressor(loss="squared_error", penalty="l2", alpha=1e-3, learning_rate="invscaling",
                                   eta0=0.5, power_t=0.5, fit_intercept=False) for _ in range(K)]
            for t in range(len(rows)):
                for k, model in enumerate(models):
                    model.partial_fit(xs[t:t + 1], ys[t, k:k + 1])
        return models

    return Job("sklearn_sgd", "peer", f"scikit-learn {_version('scikit-learn')} {K} x SGDRegressor.partial_fit",
               len(rows), run)


def _peer_jobs(args, data, order, tmp, skipped: dict[str, str]) -> list[Job]:
    x, y, labels = np.asarray(data.x, np.float32), np.asarray(data.y, np.float32), np.asarray(data.labels)
    jobs = []
    by_tool: dict[str, list[str]] = {}
    for name in args.peers:
        by_tool.setdefault(name.split("_")[0], []).append(name)
    for tool, names in by_tool.items():
        reason = _missing(_PEER_MODULE[tool])
        if reason:
            for name in names:
                skipped[name] = reason
            continue
        if tool == "vw":
            jobs += _vw_jobs(names, x, labels, order, args, tmp)
        elif tool == "river":
            jobs += _river_jobs(names, x, y, order, args)
        else:
            jobs.append(_sklearn_job(x, y, order, args))
    return jobs


# --------------------------------------------------------------------------- NumPy and mpjax


def _numpy_jobs(args, data, order) -> list[Job]:
    from benchmarks import numpy_ref

    table, targets = np.asarray(data.x, np.float32), np.asarray(data.y, np.float32)
    rows = order[:args.T_slow]
    jobs = []
    for name in args.learners:
        fn = numpy_ref.REFERENCES[name]

        def run(fn=fn):
            with _one_thread():
                return np.sum([fn(table, np.ascontiguousarray(targets[:, k]), rows) for k in range(K)], axis=0)

        jobs.append(Job(f"numpy_{name}", "numpy", f"benchmarks.numpy_ref.{name}, once per output ({K} loops)",
                        len(rows), run))
    return jobs


def _mpjax_jobs(args, data, order, build) -> list[Job]:
    import jax

    from experiments import common

    from mpjax import learners
    from mpjax import run as run_lib

    table, targets = jax.device_put(np.asarray(data.x, np.float32)), jax.device_put(np.asarray(data.y, np.float32))
    d = data.x.shape[1]
    jobs, built = [], {}
    for name in args.learners:
        learner = learners.multi_output(learners.get(name), K)
        for seeds in args.seeds:
            T = min(args.T, max(args.min_T, args.work // seeds))
            if (seeds, T) not in built:  # every learner runs on the same streams
                built[seeds, T] = _timed(lambda: build(seeds, T))
                if not np.array_equal(np.asarray(built[seeds, T][1].idx[0]), order[:T]):
                    raise RuntimeError("mpjax seed 0 must see the peers' stream")
            stream_s, stream = built[seeds, T]
            keys = run_lib.seed_keys(args.seed, seeds)
            # Seeds split over the host devices (one per core) when they divide evenly, as the
            # experiments run them; one seed stays on one device.
            mesh = common.seed_mesh(seeds)
            keys, stream = (common.put_seeds(mesh, tree, True) for tree in (keys, stream))
            table_s, targets_s = (common.put_seeds(mesh, a, False) for a in (table, targets))

            def one(key, stream, table, targets, learner=learner):
                return run_lib.run_seed(learner, d, key, table, targets, stream)[1]

            # As the experiments run them: on each device, batches of seeds_per_batch seeds.
            whole, width = common.scan_plan(name, d, PER_BATCH[name], args.small_loop_bytes,
                                            common.local_seed_count(seeds, mesh))
            over_seeds = common.map_seeds(one, mesh, width, num_shared=2, num_seeds=seeds)
            compile_s, compiled = _timed(lambda: common.compile_scan(
                over_seeds, keys, stream, table_s, targets_s, fast=whole))

            def run(compiled=compiled, keys=keys, stream=stream, table=table_s, targets=targets_s):
                with jax.transfer_guard("disallow"):
                    return jax.block_until_ready(compiled(keys, stream, table, targets))

            where = f", sharded over {mesh.devices.size} devices" if mesh is not None else ""
            jobs.append(Job(f"mpjax_{name}", "mpjax", f"mpjax {name}, lax.scan, vmap over {seeds} seed(s){where}", T,
                            run, seeds=seeds, info={"compile_s": compile_s, "stream_s": stream_s,
                                                    "seeds_per_batch": common.width_in_effect(width, seeds, mesh), "whole_scan": whole,
                                                    "devices": 1 if mesh is None else int(mesh.devices.size)}))
    return jobs


def _agreement(jobs: list[Job], numpy_losses: dict[str, np.ndarray]) -> None:
    """Seed 0's first losses (summed over the K outputs) against the NumPy loops: same math."""
    for job in jobs:
        trace = job.info.pop("trace", None)
        if trace is None or job.name.removeprefix("mpjax_") not in numpy_losses:
            continue
        ref = numpy_losses[job.name.removeprefix("mpjax_")]
        got = np.asarray(trace.loss[0])
        m = min(100, len(ref), len(got))
        # float32: the two implementations' rounding slowly separates the trajectories (L-BFGS most).
        job.info["numpy_losses_agree"] = bool(np.allclose(got[:m], ref[:m], rtol=1e-2, atol=1e-4))
        job.info["numpy_losses_checked_steps"] = m


# --------------------------------------------------------------------------- report


def _rate(v: float) -> str:
    if not np.isfinite(v):
        return "—"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def _rows(jobs: list[Job]) -> list[dict[str, Any]]:
    rows = []
    for job in jobs:
        med = statistics.median(job.times)
        rows.append({"model": job.name, "group": job.group, "runs": job.runs, "seeds": job.seeds, "T": job.T,
                     "median_s": med, "min_s": min(job.times), "round_s": job.times,
                     "samples_per_s": job.T / med, "aggregate_samples_per_s": job.seeds * job.T / med,
                     **job.info})
    ref = next((r for r in rows if r["model"] == REFERENCE), None)
    for r in rows:
        r["ratio_to_vw_cpp_csoaa"] = r["aggregate_samples_per_s"] / ref["aggregate_samples_per_s"] if ref else None
    return rows


def _markdown(rows, meta) -> str:
    lines = [
        f"Peers on one stream: simulated Covertype, d = {meta['d']}, K = {K}, squared loss, one-vs-all; "
        f"{meta['rounds']} interleaved round(s), median. {meta['machine']}.",
        "",
        "| model | what runs | seeds | T | median s | samples/s per stream | aggregate samples/s | × VW C++ (csoaa) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio_to_vw_cpp_csoaa']:.3g}×" if r["ratio_to_vw_cpp_csoaa"] is not None else "—"
        flag = "" if r.get("numpy_losses_agree", True) else " (losses differ from NumPy!)"
        lines.append(f"| {r['model']}{flag} | {r['runs']} | {r['seeds']} | {r['T']:,} | {r['median_s']:.3f} | "
                     f"{_rate(r['samples_per_s'])} | {_rate(r['aggregate_samples_per_s'])} | {ratio} |")
    for name, why in meta["skipped"].items():
        lines.append(f"| {name} | skipped: {why} | | | | | | |")
    lines += ["", "Notes:"] + [f"- {n}" for n in meta["notes"]]
    return "\n".join(lines) + "\n"


_NOTES = [
    "samples/s = stream samples (all K outputs each) per second; aggregate = seeds x samples/s; "
    "ratios are aggregate / the VW C++ driver (--csoaa) measured in the same run.",
    "VW --csoaa regresses each class's cost 1 - y_k (squared loss); --oaa regresses +-1 per class; "
    "both use VW's default adaptive, normalised, invariant update and hash the 55 features into 2^18 weights.",
    "VW C++ timings include creating the Workspace and reading VW's binary cache; writing the text and "
    "building the cache are timed apart (text_write_s, text_parse_and_cache_s) and excluded.",
    "River and scikit-learn only learn (their API does not return the pre-update prediction); "
    "mpjax also emits each step's loss and correctness.",
    "River's squared loss is (y_hat - y)^2 (gradient twice ours); scikit-learn's SGDRegressor validates "
    "its input on every partial_fit call, which dominates its cost.",
    "NumPy loops run each output separately (K scalar loops), the way the earlier research code did; "
    "mpjax's RLS shares one inverse across the K outputs (its native multi-output form), the NumPy RLS keeps K.",
    "mpjax: the streams (per-seed permutations) are built before timing (stream_s) and compilation is "
    "excluded (compile_s); each seed has its own order, seed 0's is the peers' stream.",
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark; prints the table, writes JSON + markdown and returns the payload."""
    args = parse_args(argv)
    import jax

    from experiments import common

    load_start, t_start = cli.start_sharded_run(args)  # before JAX starts: devices, small-loop threshold
    data, order, build = _stream(args)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mpjax-peers-") as tmp:
        jobs = _peer_jobs(args, data, order, pathlib.Path(tmp), skipped)
        if not args.no_numpy:
            jobs += _numpy_jobs(args, data, order)
        jobs += _mpjax_jobs(args, data, order, build)
        for name, why in skipped.items():
            print(f"skipped {name}: {why}", file=sys.stderr)
        if not jobs:
            raise SystemExit("benchmarks.peers: nothing to time (every peer skipped or deselected, "
                             "--learners none, --no_numpy)")
        numpy_losses = {}
        for job in jobs:  # one untimed call each: warm caches, first-call set-up
            out = job.call()
            if job.group == "numpy":
                numpy_losses[job.name.removeprefix("numpy_")] = out
            elif job.group == "mpjax":
                job.info["trace"] = out
                job.info["online_accuracy_seed_mean"] = float(np.mean(np.asarray(out.correct)))
        _agreement(jobs, numpy_losses)
        for r in range(args.rounds):
            for job in jobs[r % len(jobs):] + jobs[:r % len(jobs)]:
                if args.warm_call:
                    job.call()
                job.times.append(_timed(job.call)[0])
                print(f"round {r + 1}/{args.rounds}  {job.name:<14} seeds={job.seeds:<4} T={job.T:<7} "
                      f"{job.times[-1]:.3f} s", file=sys.stderr, flush=True)
    rows = _rows(jobs)
    cores = os.cpu_count()
    meta = {
        "machine": f"{platform.machine()} CPU, {cores} cores, shared with other jobs",
        "d": int(data.x.shape[1]), "K": K, "n": int(data.x.shape[0]),
        "data_provenance": data.provenance, "data_source": data.source,
        "rounds": args.rounds, "args": vars(args), "skipped": skipped, "notes": _NOTES,
        "versions": {dist: _version(dist) for dist in ("jax", "jaxlib", "numpy", "vowpalwabbit", "river",
                                                       "scikit-learn")},
        "backend": jax.default_backend(), "devices": [str(dev) for dev in jax.devices()],
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "python": platform.python_version(), "platform": platform.platform(),
        "loadavg_start": load_start, "loadavg_end": list(os.getloadavg()),
        "wall_s": time.perf_counter() - t_start,
        **{k: v for k, v in common.provenance_metadata().items() if k in ("git_commit", "git_dirty", "created_unix")},
    }
    payload = {"meta": meta, "results": rows}
    out = pathlib.Path(args.out)
    cli.write_results(out, payload, _markdown(rows, meta))
    bad = [r["model"] for r in rows if r.get("numpy_losses_agree") is False]
    if bad:
        print("WARNING: mpjax and NumPy losses disagree for: " + ", ".join(sorted(set(bad))))
    print(f"load average (1 min) at start {load_start[0]:.1f}, at end {meta['loadavg_end'][0]:.1f}; "
          f"wall {meta['wall_s']:.0f} s; results in {out} and {out.with_suffix('.md')}")
    return payload


if __name__ == "__main__":
    main()
