"""``scan_remat``: a ``lax.scan`` whose reverse mode stores O(k log_k T) states, not T.

REPLAY's k-ary tree (Ilyas & Engstrom 2025) done with ``jax.checkpoint``: the T steps
are split into ``levels = (k_1, ..., k_L)`` nested scans (outermost first), and the
body of every outer scan (a whole segment of the level below) is rematerialised.
Reverse mode then stores k_1 + ... + k_L carries (plus the residuals of the k_L
steps of one innermost segment) and recomputes one forward pass per level: with
``levels = (k,) * L`` and k^L >= T that is O(k log_k T) states for about L + 1
forward passes, instead of the T states of the plain reverse scan.

T that does not factor is padded at the end with no-op steps: their inputs repeat
the last real input (so the body stays finite on them) and their new carry is
discarded with ``jnp.where``; their outputs are dropped. The forward values equal
the plain ``lax.scan`` (tested bit for bit for SGD and RLS).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["scan_remat", "balanced_levels", "check_levels"]


def check_levels(levels: Sequence[int], length: int) -> tuple[int, ...]:
    """``levels`` as a tuple of positive ints whose product covers ``length`` steps.

    Raises:
      ValueError: naming the value and the valid range.
    """
    try:
        levels = tuple(int(k) for k in levels)
    except (TypeError, ValueError):
        raise ValueError(f"levels must be a sequence of positive ints, got {levels!r}") from None
    if not levels or any(k < 1 for k in levels):
        raise ValueError(f"levels must be a non-empty sequence of ints >= 1, got {levels}")
    if length < 1:
        raise ValueError(f"a scan needs length >= 1 steps, got {length}")
    total = math.prod(levels)
    if total < length:
        raise ValueError(
            f"levels {levels} have product {total} < T = {length}; valid: ints >= 1 whose product is >= T "
            f"(e.g. balanced_levels({length}, {len(levels)}) = {balanced_levels(length, len(levels))})"
        )
    return levels


def balanced_levels(length: int, num_levels: int) -> tuple[int, ...]:
    """The smallest near-equal ``(k_1, ..., k_L)`` with product >= ``length`` (little padding)."""
    if length < 1 or num_levels < 1:
        raise ValueError(f"need length >= 1 and num_levels >= 1, got {length}, {num_levels}")
    levels = []
    rest = length
    for i in range(num_levels, 0, -1):
        k = max(1, math.ceil(rest ** (1.0 / i) - 1e-9))
        while k ** i < rest:  # guard against rounding in the root
            k += 1
        levels.append(k)
        rest = math.ceil(rest / k)
    return tuple(levels)


def scan_remat(
    body: Callable[[Any, Any], tuple[Any, Any]],
    carry: Any,
    xs: Any,
    levels: Sequence[int] | None = None,
    *,
    policy: Callable | None = None,
) -> tuple[Any, Any]:
    """``lax.scan(body, carry, xs)`` with nested-checkpoint reverse mode.

    Args:
      body: ``(carry, x) -> (carry, y)`` as for ``lax.scan``.
      carry: the initial carry.
      xs: the per-step inputs (a pytree with leading axis T).
      levels: ``(k_1, ..., k_L)``, outermost first, product >= T. ``None`` or a single
        level ``(T,)`` is the plain scan. Use :func:`balanced_levels`.
      policy: optional ``jax.checkpoint`` policy applied to each innermost step
        (e.g. ``jax.checkpoint_policies.dots_with_no_batch_dims_saveable``), to
        rematerialise inside a step as well; None stores the step's residuals.

    Returns:
      ``(final_carry, ys)`` exactly as ``lax.scan`` returns them (ys has leading axis T).

    Raises:
      ValueError: ``levels`` invalid or with product < T.
    """
    leaves = jax.tree_util.tree_leaves(xs)
    if not leaves:
        raise ValueError("scan_remat needs per-step inputs xs with a leading axis T")
    length = int(leaves[0].shape[0])
    levels = (length,) if levels is None else check_levels(levels, length)
    step = body if policy is None else jax.checkpoint(body, policy=policy, prevent_cse=False)
    if len(levels) == 1 and levels[0] == length:
        return lax.scan(step, carry, xs)
    total = math.prod(levels)
    pad = total - length
    if pad:
        xs = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), xs)
        valid = jnp.arange(total) < length
        real_step = step

        def step(c, inp):  # noqa: F811 (the padded variant of the same step)
            x, ok = inp
            new, y = real_step(c, x)
            return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, c), y

        xs = (xs, valid)
    xs = jax.tree_util.tree_map(lambda a: a.reshape(*levels, *a.shape[1:]), xs)

    def segment(depth):
        if depth == len(levels) - 1:
            return lambda c, x: lax.scan(step, c, x)
        inner = jax.checkpoint(segment(depth + 1), prevent_cse=False)
        return lambda c, x: lax.scan(inner, c, x)

    carry, ys = segment(0)(carry, xs)
    ys = jax.tree_util.tree_map(lambda a: a.reshape(total, *a.shape[len(levels):])[:length], ys)
    return carry, ys
