"""Flag parsing shared by the benchmarks (no JAX import: the seed-sharding benchmarks must set
XLA's host device count before JAX loads, so they cannot take the names from ``mpjax.learners``)."""

from __future__ import annotations

import argparse
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

LEARNERS = ("memorypair", "sgd", "adagrad", "ons", "rls")  # == tuple(mpjax.learners.LEARNERS), tested


def non_negative_int(text: str) -> int:
    """An argparse ``type``: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


def add_small_loop_bytes(p: argparse.ArgumentParser) -> None:
    """``--small_loop_bytes``: the XLA CPU small-loop threshold, as the regret experiment sets it."""
    from experiments.common import SMALL_LOOP_BYTES

    p.add_argument("--small_loop_bytes", type=non_negative_int, default=SMALL_LOOP_BYTES,
                   help="XLA CPU compiles a scan whole below this many bytes per step (default "
                        f"{SMALL_LOOP_BYTES}, as the regret experiment; 0: XLA's defaults)")


def setup_small_loops(args: argparse.Namespace) -> None:
    """Sets ``--small_loop_bytes`` before JAX starts; ``args.small_loop_bytes`` becomes the threshold in effect."""
    from experiments import common

    args.small_loop_bytes, _ = common.setup_xla_cpu(args.small_loop_bytes)


def int_list(text: str) -> list[int]:
    """``"1,32,128"`` -> [1, 32, 128]: a non-empty comma list of positive ints."""
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive ints, got {text!r}")
    return out


def name_list(valid: tuple[str, ...], *, all_none: bool = False) -> Callable[[str], list[str]]:
    """An argparse ``type``: a non-empty comma list of names from ``valid``.

    With ``all_none``, ``all`` (or an empty string) means every name and ``none`` means [].
    """
    words = ", all, none" if all_none else ""

    def parse(text: str) -> list[str]:
        if all_none and text in ("all", ""):
            return list(valid)
        if all_none and text == "none":
            return []
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [n for n in names if n not in valid]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"unknown name(s) {bad or [text]}; valid: {','.join(valid)}{words}")
        return names

    return parse


def add_sharded_run_flags(p: argparse.ArgumentParser, default_out: os.PathLike) -> None:
    """``--small_loop_bytes``, ``--devices``, ``--out`` and ``--smoke``: the flags of a benchmark over sharded seeds."""
    add_small_loop_bytes(p)
    p.add_argument("--devices", type=int, default=0, help="host devices for the seeds (0: one per core)")
    p.add_argument("--out", default=str(default_out))
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")


def start_sharded_run(args: argparse.Namespace) -> tuple[list[float], float]:
    """Host devices for ``args.devices`` and the small-loop threshold, before JAX starts; returns
    ``(load average at the start, perf_counter at the start)`` for :func:`run_meta`."""
    from experiments import common

    common.configure_cpu_devices(args.devices)
    setup_small_loops(args)
    return list(os.getloadavg()), time.perf_counter()


def run_meta(load_start: list[float], t_start: float) -> dict[str, Any]:
    """What every sharded benchmark records: machine, devices, load, wall time, commit, backend, XLA flags."""
    import platform

    import jax

    from experiments import common

    return {"machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "devices": jax.device_count(),
            "loadavg_start": load_start, "loadavg_end": list(os.getloadavg()), "wall_s": time.perf_counter() - t_start,
            **{k: v for k, v in common.provenance_metadata().items()
               if k in ("git_commit", "git_dirty", "backend", "xla_flags")}}


def write_results(out: str | os.PathLike, payload: dict[str, Any], markdown: str) -> None:
    """``out`` (JSON) and its ``.md`` sibling, each written atomically; the table is also printed."""
    from experiments import common

    out = pathlib.Path(out)
    common.write_json(out, payload)
    common.write_text(out.with_suffix(".md"), markdown)
    print(markdown)
