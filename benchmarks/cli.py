"""Flag parsing shared by the benchmarks (no JAX import: the seed-sharding benchmarks must set
XLA's host device count before JAX loads, so they cannot take the names from ``mpjax.learners``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

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
