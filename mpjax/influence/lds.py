"""The linear datamodeling score (LDS): do attribution scores predict retrains?

For random subsets S_1..S_m of the training rows (0/1 weight masks), retrain on each
subset (the same scan, dropped rows weighted 0: :func:`retrain_outputs`), and for every
target j compare the actual target losses phi_j(S_s) with the additive prediction
``sum_{i in S_s} tau[j, i]`` by Spearman rank correlation. LDS is the mean over
targets; its 95 % interval is a percentile bootstrap over targets (subsets fixed:
resampling subsets as well creates ties and biased the interval low near 1).

Protocols (:data:`PROTOCOLS`): drop 1 % and drop 5 % of the rows (MAGIC's), keep a
random half (alpha = 0.5, TRAK's). With ``own_order`` every subset is also trained in
its own random order (the cross-order variant, reported separately: attribution is
for a fixed order).

References:
  S. M. Park, K. Georgiev, A. Ilyas, G. Leclerc, A. Madry. TRAK: attributing model
  behavior at scale. ICML 2023.
  A. Ilyas, L. Engstrom. MAGIC: near-optimal data attribution for deep learning. 2025.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mpjax.influence.metagrad import target_losses, train_weighted
from mpjax.learners.base import Learner

__all__ = [
    "PROTOCOLS",
    "MIN_SUBSETS",
    "protocol_spec",
    "make_masks",
    "make_orders",
    "retrain_outputs",
    "spearman",
    "lds",
    "bootstrap_ci",
    "predicted_outputs",
]

# name -> (kind, fraction): "drop" removes round(fraction n) rows, "keep" keeps round(fraction n).
PROTOCOLS = {"drop_1pct": ("drop", 0.01), "drop_5pct": ("drop", 0.05), "alpha_0.5": ("keep", 0.5)}
MIN_SUBSETS = 10


def protocol_spec(name: str) -> tuple[str, float]:
    """``(kind, fraction)`` of a protocol name: one of :data:`PROTOCOLS`, or ``drop_<f>`` /
    ``alpha_<f>`` with a fraction f in (0, 1) (e.g. ``drop_0.1``)."""
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    kind, _, frac = name.partition("_")
    if kind in ("drop", "alpha"):
        try:
            value = float(frac)
        except ValueError:
            value = None
        if value is not None:
            return ("drop" if kind == "drop" else "keep"), value
    raise ValueError(f"unknown LDS protocol {name!r}; valid: {', '.join(PROTOCOLS)}, drop_<f> or alpha_<f> "
                     "with f in (0, 1)")


def make_masks(key: jax.Array, n: int, num_subsets: int, kind: str, fraction: float) -> jax.Array:
    """f[S, n] 0/1 masks (1 = the row is kept), each an independent uniform subset.

    Args:
      key: PRNG key of this protocol; subset s uses ``fold_in(key, s)``.
      n: training rows.
      num_subsets: S >= :data:`MIN_SUBSETS`.
      kind: "drop" (remove ``round(fraction n)`` rows) or "keep" (keep that many).
      fraction: in (0, 1).

    Raises:
      ValueError: naming the field, value and valid range.
    """
    if kind not in ("drop", "keep"):
        raise ValueError(f"mask kind must be 'drop' or 'keep', got {kind!r}")
    name = "drop fraction" if kind == "drop" else "alpha"
    if not (isinstance(fraction, (int, float)) and 0.0 < float(fraction) < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {fraction!r}")
    if int(num_subsets) < MIN_SUBSETS:
        raise ValueError(f"num_subsets must be >= {MIN_SUBSETS} for a rank correlation, got {num_subsets}")
    count = int(round(float(fraction) * n))
    if not 1 <= count <= n - 1:
        raise ValueError(f"{name} {fraction} of n = {n} rows selects {count}; valid: between 1 and n - 1 rows "
                         f"(fraction in [{1 / n:.3g}, {1 - 1 / n:.3g}])")

    def one(s):
        u = jax.random.uniform(jax.random.fold_in(key, s), (n,), jnp.float32)
        chosen = jnp.zeros((n,), bool).at[jnp.argsort(u)[:count]].set(True)
        keep = ~chosen if kind == "drop" else chosen
        return keep.astype(jnp.float32)

    return jax.vmap(one)(jnp.arange(int(num_subsets)))


def make_orders(key: jax.Array, base_order: jax.Array, num_subsets: int) -> jax.Array:
    """i32[S, T]: every subset's own order, a random permutation of the base order's steps."""
    steps = base_order.shape[0]
    perms = jax.vmap(lambda s: jax.random.permutation(jax.random.fold_in(key, s), steps))(
        jnp.arange(int(num_subsets)))
    return base_order[perms]


def retrain_outputs(
    learner: Learner,
    state: Any,
    table: jax.Array,
    targets: jax.Array,
    order: jax.Array,
    masks: jax.Array,
    test_x: jax.Array,
    test_y: jax.Array,
    *,
    levels: Sequence[int] | None = None,
    batch_size: int = 0,
) -> jax.Array:
    """f[S, J]: target losses of the S retrains, a ``vmap`` over the 0/1 masks.

    ``order`` is i32[T] (every subset in the same order) or i32[S, T] (own orders).
    ``batch_size``: retrains per ``vmap``, the batches one after another (``lax.map``);
    0: all S in one. Batches of 10 kept the batched states in the core's cache and ran
    1.3-2.9x faster than one vmap of 100 on the 2-core CPU (SGD, RLS at d = 55, Memory-Pair;
    README, "Influence"); the values agree to rounding.
    """
    if batch_size < 0:
        raise ValueError(f"batch_size must be >= 0 (0: all retrains in one vmap), got {batch_size}")
    dtype = jnp.asarray(state.w).dtype

    def one(mask, order_s):
        final, _ = train_weighted(learner, state, table, targets, order_s, mask.astype(dtype), levels=levels)
        return target_losses(learner, final, test_x, test_y)

    if order.ndim == 1:
        fn, xs = (lambda mask: one(mask, order)), masks
    else:
        fn, xs = (lambda mo: one(*mo)), (masks, order)
    if not batch_size or batch_size >= masks.shape[0]:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=batch_size)


def predicted_outputs(masks: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """f[S, J]: ``sum_{i in S_s} tau[j, i]`` (float64, host)."""
    return np.asarray(masks, np.float64) @ np.asarray(tau, np.float64).T


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks along axis 0 (ties share the mean rank), per column."""
    a = np.asarray(a, np.float64)
    out = np.empty_like(a)
    for j in range(a.shape[1]):
        col = a[:, j]
        idx = np.argsort(col, kind="mergesort")
        sorted_ = col[idx]
        ranks = np.empty(col.shape[0])
        starts = np.flatnonzero(np.concatenate([[True], sorted_[1:] != sorted_[:-1]]))
        ends = np.concatenate([starts[1:], [col.shape[0]]])
        for lo, hi in zip(starts, ends):
            ranks[idx[lo:hi]] = 0.5 * (lo + hi - 1)
        out[:, j] = ranks
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation per column of ``a, b: f[S, J]`` (NaN where a column is constant)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim == 1:
        return spearman(a[:, None], b[:, None])[0]
    if a.shape != b.shape:
        raise ValueError(f"spearman needs equal shapes, got {a.shape} and {b.shape}")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(axis=0)
    rb -= rb.mean(axis=0)
    den = np.sqrt(np.sum(ra * ra, axis=0) * np.sum(rb * rb, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.sum(ra * rb, axis=0) / np.where(den > 0, den, 1.0), np.nan)


def lds(actual: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """f[J]: per-target LDS, Spearman(actual[:, j], predicted[:, j]) over the S subsets."""
    actual = np.asarray(actual)
    if actual.ndim != 2 or actual.shape[0] < MIN_SUBSETS:
        raise ValueError(f"LDS needs actual outputs f[S, J] with S >= {MIN_SUBSETS}, got shape {actual.shape}")
    return spearman(actual, predicted)


def bootstrap_ci(per_target: np.ndarray, num_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean over targets and its percentile bootstrap interval.

    Targets (not subsets) are resampled with replacement; NaN targets are dropped first.
    """
    v = np.asarray(per_target, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng([seed, 0x1D5])
    means = v[rng.integers(0, v.size, (int(num_boot), v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(v.mean()), float(lo), float(hi)
