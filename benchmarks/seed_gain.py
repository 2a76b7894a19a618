"""What running many seeds together gains over one seed: aggregate samples/s at S seeds over one seed's.

    python -m benchmarks.seed_gain                    # about 3 minutes on 2 CPU cores
    python -m benchmarks.seed_gain --widths=1,2       # seed-batch widths against each other
    python -m benchmarks.seed_gain --learners=sgd --dim=197 --widths=1,2 --seed_counts=32
    python -m benchmarks.seed_gain --smoke            # seconds (CI)

Every learner (K = 7 one-hot outputs, the regret experiment's settings, ``--dim`` features, iid streams over
``benchmarks.scaling``'s simulated rows) is compiled as the experiments run it: seeds sharded over
one host device per core (``--devices``) and vmapped in batches of ``seeds_per_batch`` on each
(``--widths``: ``auto`` is ``configs.regret``'s choice; integers are other widths, for comparison;
a width that resolves to one already timed is timed once).

The one-seed figure is measured on a stream as long as ``--T_one`` (default: ``--T`` x the first
seed count, the same work as that run), so that the fixed cost of a call (5-10 % of a 20,000-step
one-seed SGD run) does not lower it. Every timed call follows an untimed call of the same program:
timed cold, a short one-seed call right after a many-seed call ran up to 2x slower here, and after
an idle pause of 0.2 s SGD's 100,000-step call ran at 3.6M instead of 5.6M samples/s.

Timing: ``--rounds`` interleaved rounds (each round times every configuration once, starting one
configuration later each round), so that load from other processes hits all alike. The gain of a
round is its S-seed aggregate over its own one-seed figure; reported: the median over rounds, the
range, and the median over the number of host devices ("per device": 1.0 is each core running seeds
as fast as the one-seed run). With C cores and no sharing between seeds the gain is at most C (one
seed runs on one core); above C, a batch makes each core faster per seed. ``--devices=1`` measures
what batching alone gives on one core. Results: ``benchmarks/out/seed_gain.json``
and ``.md`` (written atomically).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

import numpy as np

from benchmarks import cli

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "out" / "seed_gain.json"
NAMES = cli.LEARNERS
DIM = 55  # the default --dim


def _widths(text: str) -> list[int | None]:
    """``"auto,1,2"`` -> [None, 1, 2] (None: the configured width)."""
    out: list[int | None] = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        if word == "auto":
            out.append(None)
            continue
        try:
            value = int(word)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected 'auto' or a width >= 1, got {word!r}")
        out.append(value)
    if not out or len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"expected a comma list of distinct widths ('auto', 1, 2, ...), got {text!r}")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.seed_gain", description=__doc__.splitlines()[0])
    p.add_argument("--learners", type=cli.name_list(NAMES), default=list(NAMES), help="comma list (default: all five)")
    p.add_argument("--seed_counts", type=cli.int_list, default=[32, 128], help="seed counts compared with one seed")
    p.add_argument("--T", type=int, default=20_000, help="stream length per seed of the many-seed runs")
    p.add_argument("--T_one", type=int, default=0, help="stream length of the one-seed run (0: T x first seed count)")
    p.add_argument("--widths", type=_widths, default=[None], help="seed-batch widths: 'auto' (configured) and/or ints")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dim", type=int, default=DIM, help=f"features, with the bias (default {DIM})")
    p.add_argument("--n", type=int, default=20_000, help="rows of the data table")
    cli.add_sharded_run_flags(p, DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.smoke:
        args.seed_counts, args.T, args.T_one, args.rounds, args.n = [2], 300, 0, 2, 500
    for name in ("T", "rounds", "n", "dim"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.T_one < 0:
        p.error(f"--T_one must be >= 0 (0: T x first seed count), got {args.T_one}")
    args.T_one = args.T_one or args.T * args.seed_counts[0]
    return args


def _label(width: int | None, in_effect: int) -> str:
    """The width as asked, with the one in effect for ``auto`` or where it differs."""
    return f"auto ({in_effect})" if width is None else (str(width) if width == in_effect else f"{width} ({in_effect})")


def measure(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Interleaved rounds for one learner: one row per (width, seed count), with per-round gains."""
    import jax

    from benchmarks import scaling

    configs = [("one", 1, args.T_one, 1)]  # (key, seeds, T, width)
    programs = {"one": scaling.build(name, args.T_one, 1, args.dim, args.n, args.small_loop_bytes, width=1)}
    labels, timed = {}, set()
    for width in args.widths:
        for seeds in args.seed_counts:
            key = f"w{width}-s{seeds}"
            built = scaling.build(name, args.T, seeds, args.dim, args.n, args.small_loop_bytes, width=width)
            in_effect = built[2]["seeds_per_batch"]
            if (seeds, in_effect) in timed:  # e.g. auto and its own width: the same program
                print(f"{name}: width {_label(width, in_effect)} at {seeds} seeds is timed already", file=sys.stderr)
                continue
            timed.add((seeds, in_effect))
            programs[key] = built
            labels[key] = _label(width, in_effect)
            configs.append((key, seeds, args.T, width))
    for compiled, call_args, _ in programs.values():
        out = np.asarray(jax.block_until_ready(compiled(*call_args)))
        if not np.isfinite(out).all():
            raise FloatingPointError(f"{name}: non-finite losses in the benchmark run")

    rates: dict[str, list[float]] = {key: [] for key, *_ in configs}
    for r in range(args.rounds):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for key, seeds, T, _ in order:
            compiled, call_args, _ = programs[key]
            jax.block_until_ready(compiled(*call_args))  # untimed: the same program, warm
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*call_args))
            rates[key].append(seeds * T / (time.perf_counter() - t0))

    one = np.asarray(rates["one"])
    rows = []
    for key, seeds, T, width in configs[1:]:
        agg = np.asarray(rates[key])
        gain = agg / one
        info = programs[key][2]
        rows.append({"learner": name, "width": labels[key], "seeds_per_batch": info["seeds_per_batch"],
                     "configured": width is None, "seeds": seeds, "T": T, "T_one": args.T_one,
                     "devices": info["devices"], "whole_scan": info["whole_scan"],
                     "one_seed_samples_per_s": float(np.median(one)), "aggregate_samples_per_s": float(np.median(agg)),
                     "gain_median": float(np.median(gain)), "gain_min": float(gain.min()), "gain_max": float(gain.max()),
                     "gain_per_device_median": float(np.median(gain)) / info["devices"],
                     "rounds": {"one_seed": rates["one"], "aggregate": rates[key]}})
    return rows


def _rate(v: float) -> str:
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}k"


def _markdown(rows, meta) -> str:
    lines = [f"Gain from seeds (K = 7, d = {meta['dim']}, iid; {meta['machine']}, seeds over {meta['devices']} host "
             f"device(s); {meta['rounds']} interleaved rounds; load average {meta['loadavg_start'][0]:.1f} -> "
             f"{meta['loadavg_end'][0]:.1f}). One seed: T = {meta['T_one']:,}; many: T = {meta['T']:,} per seed.", "",
             "| learner | seeds per batch | one seed, samples/s | seeds | aggregate samples/s | gain (median, range) | per device |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['learner']} | {r['width']} | {_rate(r['one_seed_samples_per_s'])} | {r['seeds']} | "
                     f"{_rate(r['aggregate_samples_per_s'])} | {r['gain_median']:.2f}x ({r['gain_min']:.2f}-"
                     f"{r['gain_max']:.2f}) | {r['gain_per_device_median']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    load_start, t_start = cli.start_sharded_run(args)  # before JAX starts: devices, small-loop threshold
    rows = []
    for name in args.learners:
        got = measure(name, args)
        rows.extend(got)
        for r in got:
            print(f"{name:<10} width {r['width']:<8} seeds {r['seeds']:<4} one {_rate(r['one_seed_samples_per_s'])}  "
                  f"aggregate {_rate(r['aggregate_samples_per_s'])}  gain {r['gain_median']:.2f}x "
                  f"({r['gain_min']:.2f}-{r['gain_max']:.2f}), {r['gain_per_device_median']:.2f}x per device", file=sys.stderr, flush=True)
    meta = {"T": args.T, "T_one": args.T_one, "dim": args.dim, "rounds": args.rounds, "warm_call": True,
            "args": {k: v for k, v in vars(args).items() if k != "widths"},
            "widths": ["auto" if w is None else w for w in args.widths], **cli.run_meta(load_start, t_start)}
    payload = {"meta": meta, "results": rows}
    cli.write_results(args.out, payload, _markdown(rows, meta))
    return payload


if __name__ == "__main__":
    main()
