"""Exact metagradient influence through the whole training scan (MAGIC).

Training is one scan over a fixed order of training rows; step t applies
``learner.wstep(state, x, y, omega[row_t])``, which multiplies the sample's clipped
loss gradient by its weight (DESIGN.md §2). With ``phi_j`` the loss of target j
under the final model, the influence of training row i on target j is

    tau[j, i] = d phi_j / d omega_i  at omega = 1,

taken by reverse mode through every step (:func:`mpjax.influence.remat.scan_remat`
keeps the memory at O(k log_k T) states). Removing row i changes phi_j by about
``-tau[j, i]``; a row visited several times (several epochs) gets the sum over its
visits, exactly as dropping it from every epoch would.

All J targets share one forward pass: the vector-Jacobian product is ``vmap``-ed
over the J unit cotangents, so only the (linear) reverse sweep is batched.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mpjax.influence.remat import scan_remat
from mpjax.learners.base import Learner

__all__ = [
    "train_weighted",
    "target_losses",
    "metagradients",
    "vjp_rows",
    "validate_problem",
]


def train_weighted(
    learner: Learner,
    state: Any,
    table: jax.Array,
    targets: jax.Array,
    order: jax.Array,
    weights: jax.Array,
    *,
    levels: Sequence[int] | None = None,
    policy: Callable | None = None,
) -> tuple[Any, jax.Array]:
    """Trains over ``order`` with per-row sample weights; returns ``(state, losses f[T])``.

    Args:
      learner: a (multi-output) learner with ``wstep``.
      state: its initial state.
      table: f[n, d] training rows (passed once, indexed per step).
      targets: f[n, K] (or f[n]) targets.
      order: i32[T] the row seen at each step (fixed order).
      weights: f[n] the weight omega of every training row (1: kept, 0: dropped).
      levels: :func:`~mpjax.influence.remat.scan_remat` levels (None: plain scan).
      policy: optional checkpoint policy inside each step.
    """
    step_weights = weights[order].astype(jnp.asarray(state.w).dtype)

    def body(s, inp):
        row, omega = inp
        return learner.wstep(s, table[row], targets[row], omega)

    return scan_remat(body, state, (order, step_weights), levels, policy=policy)


def target_losses(learner: Learner, state: Any, test_x: jax.Array, test_y: jax.Array) -> jax.Array:
    """f[J]: ``phi_j = learner.loss(state, test_x[j], test_y[j])``."""
    return jax.vmap(learner.loss, in_axes=(None, 0, 0))(state, test_x, test_y)


def vjp_rows(fn: Callable[[jax.Array], jax.Array], weights: jax.Array, num_outputs: int,
             chunk: int | None = None) -> tuple[jax.Array, jax.Array]:
    """``(fn(weights), d fn / d weights)`` with the J outputs' cotangents ``vmap``-ed.

    Args:
      fn: ``weights f[n] -> f[J]``.
      weights: the point of linearisation.
      num_outputs: J.
      chunk: at most this many cotangents per batched reverse sweep (bounds memory).

    Returns:
      ``(values f[J], jacobian f[J, n])``.
    """
    values, vjp = jax.vjp(fn, weights)
    eye = jnp.eye(num_outputs, dtype=values.dtype)
    if chunk is None or chunk >= num_outputs:
        (jac,) = jax.vmap(vjp)(eye)
        return values, jac
    pad = (-num_outputs) % chunk
    eye = jnp.concatenate([eye, jnp.zeros((pad, num_outputs), eye.dtype)]).reshape(-1, chunk, num_outputs)
    (jac,) = jax.lax.map(jax.vmap(vjp), eye)
    return values, jac.reshape(-1, weights.shape[0])[:num_outputs]


def metagradients(
    learner: Learner,
    state: Any,
    table: jax.Array,
    targets: jax.Array,
    order: jax.Array,
    test_x: jax.Array,
    test_y: jax.Array,
    *,
    levels: Sequence[int] | None = None,
    policy: Callable | None = None,
    target_chunk: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Exact influence of every training row on every target loss.

    Args:
      learner, state, table, targets, order, levels, policy: as :func:`train_weighted`.
      test_x: f[J, d] target inputs; test_y: f[J, K] their targets.
      target_chunk: targets per batched reverse sweep (None: all J at once).

    Returns:
      ``(phi f[J], tau f[J, n])``: the target losses of the model trained on every
      row, and ``tau[j, i] = d phi_j / d omega_i`` at omega = 1.

    Raises:
      ValueError: levels invalid.
    """
    dtype = jnp.asarray(state.w).dtype

    def phi(weights):
        final, _ = train_weighted(learner, state, table, targets, order, weights, levels=levels, policy=policy)
        return target_losses(learner, final, test_x, test_y)

    return vjp_rows(phi, jnp.ones((table.shape[0],), dtype), test_x.shape[0], target_chunk)


def validate_problem(table: np.ndarray, targets: np.ndarray, train_rows: np.ndarray,
                     target_rows: np.ndarray) -> None:
    """Host-side checks before any attribution run (nothing is computed on bad input).

    Args:
      table: f[N, d] every row of the data set; targets: f[N, K].
      train_rows: i[n] dataset rows used for training.
      target_rows: i[J] dataset rows used as targets.

    Raises:
      ValueError: naming the field, the offending value and the valid range: empty or
        duplicate targets or training rows, targets that are also training rows, rows out
        of range, non-finite features or targets.
    """
    table = np.asarray(table)
    targets = np.asarray(targets)
    total = table.shape[0]
    for name, rows in (("train_rows", train_rows), ("target_rows", target_rows)):
        rows = np.asarray(rows)
        if rows.ndim != 1 or rows.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array of row ids, got shape {rows.shape}")
        if not np.issubdtype(rows.dtype, np.integer):
            raise ValueError(f"{name} must hold integer row ids, got dtype {rows.dtype}")
        if rows.min() < 0 or rows.max() >= total:
            raise ValueError(f"{name} must lie in [0, {total}), got values in [{rows.min()}, {rows.max()}]")
        uniq, counts = np.unique(rows, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{name} holds duplicate row ids, e.g. {int(uniq[counts > 1][0])} "
                             f"({int((counts > 1).sum())} duplicated); each row may appear once")
    overlap = np.intersect1d(train_rows, target_rows)
    if overlap.size:
        raise ValueError(f"target_rows overlap train_rows in {overlap.size} row(s), e.g. {int(overlap[0])}; "
                         "targets must be held out from training")
    for name, arr in (("features", table), ("targets", targets)):
        used = np.concatenate([np.asarray(train_rows), np.asarray(target_rows)])
        bad = ~np.isfinite(arr[used])
        if bad.any():
            where = np.argwhere(bad)[0]
            raise ValueError(f"{name} contain {int(bad.sum())} non-finite value(s) in the rows used; first at "
                             f"dataset row {int(used[where[0]])}; valid: finite numbers")
