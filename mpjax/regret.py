"""Exact hindsight comparators for regret (DESIGN.md §2).

Regret is ``R_t = sum_{s<=t} l_s(theta_s) - J_t`` with the comparator
``J_t = min_theta [ sum_{s<=t} l_s(theta) + lambda/2 |theta|^2 ]`` over the same
samples in the order the learner saw them. Cumulative loss is not regret.

Squared loss: exact at *every* step. For ridge, sequential RLS gives the
prediction-error identity ``J_t = J_{t-1} + 1/2 e_t^2 / (1 + x_t^T P_{t-1} x_t)``
(e_t the a-priori error). We compute it B steps at a time: with the prior
``(w, P)`` before a block ``(X, Y)``, the innovations of the block are
``E = C^{-1} (Y - X w)`` where ``C C^T = I + X P X^T`` (Cholesky), so the
per-step increments are ``1/2 |E_t|^2`` and the prior moves to
``P - Z^T Z``, ``w + Z^T E`` with ``Z = C^{-1} X P``. All BLAS-3; P is shared by
the K outputs; no d x d inverse. Exact up to float64 rounding (tests check it
against a NumPy ridge solve).

Dynamic regret (drifting streams): the comparator is piecewise fixed on
windows of W steps: the same recursion restarted at every window boundary.

Logistic loss: :func:`logistic_comparator` solves the prefix problem offline by
Newton's method at given checkpoints, to a stated gradient-norm tolerance.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

__all__ = [
    "Comparator",
    "ridge_comparator",
    "logistic_comparator",
    "log_steps",
    "loglog_slope",
]


class Comparator(NamedTuple):
    increments: jax.Array  # f[T] J_t - J_{t-1} (summed over the K outputs)
    w: jax.Array  # f[d, K] the final comparator (of the last window for dynamic regret)
    path_length: jax.Array  # f[] sum of |theta*_k - theta*_{k-1}|_F over windows (0 when static)


def ridge_comparator(
    featurize: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    rows: jax.Array,
    aux: jax.Array,
    dim: int,
    num_outputs: int,
    lam: float,
    block: int = 128,
    window: int | None = None,
) -> Comparator:
    """Per-step increments of the exact ridge comparator over one stream.

    Args:
      featurize: ``featurize(rows i32[B], aux f[B]) -> (X f[B, d], Y f[B, K])``
        (vectorised over the block; padding is masked here, not by the caller).
      rows: i32[T] data rows in the order the learner saw them.
      aux: f[T] the stream's per-step transform parameters.
      dim: d.
      num_outputs: K.
      lam: ridge strength of the comparator (> 0).
      block: steps per BLAS-3 block.
      window: if given, restart the comparator every ``window`` steps (dynamic
        regret against a piecewise-fixed comparator); must be a multiple of ``block``.

    Returns:
      A :class:`Comparator`. Work in float64 (``jax.enable_x64``) for exactness.
    """
    if lam <= 0:
        raise ValueError(f"comparator ridge strength must be > 0, got {lam}")
    if window is not None and (window % block or window <= 0):
        raise ValueError(f"window ({window}) must be a positive multiple of block ({block})")
    t = rows.shape[0]
    nblocks = -(-t // block)
    pad = nblocks * block - t
    rows_b = jnp.concatenate([rows, jnp.full((pad,), -1, rows.dtype)]).reshape(nblocks, block)
    aux_b = jnp.concatenate([aux, jnp.zeros((pad,), aux.dtype)]).reshape(nblocks, block)
    per_window = None if window is None else window // block
    dtype = jnp.result_type(float)
    p0 = jnp.eye(dim, dtype=dtype) / lam
    w0 = jnp.zeros((dim, num_outputs), dtype)

    def body(carry, inp):
        w, p, w_prev, path, b = carry
        r_idx, a = inp
        if per_window is not None:
            restart = (b % per_window == 0) & (b > 0)
            moved = jnp.linalg.norm(w - w_prev)
            path = path + jnp.where(restart & (b > per_window), moved, 0.0)
            w_prev = jnp.where(restart, w, w_prev)
            w = jnp.where(restart, w0, w)
            p = jnp.where(restart, p0, p)
        x, y = featurize(jnp.maximum(r_idx, 0), a)
        real = (r_idx >= 0)[:, None]  # padded steps add nothing
        x = jnp.where(real, x.astype(dtype), 0)
        y = jnp.where(real, y.astype(dtype), 0)
        u = x @ p  # f[B, d] = X P
        m = jnp.eye(block, dtype=dtype) + u @ x.T
        c = jnp.linalg.cholesky(m)
        e = solve_triangular(c, y - x @ w, lower=True)  # innovations, f[B, K]
        z = solve_triangular(c, u, lower=True)  # f[B, d]
        p = p - z.T @ z
        p = 0.5 * (p + p.T)
        w = w + z.T @ e
        return (w, p, w_prev, path, b + 1), 0.5 * jnp.sum(e * e, axis=1)

    init = (w0, p0, w0, jnp.zeros((), dtype), jnp.zeros((), jnp.int32))
    (w, _, w_prev, path, _), incr = lax.scan(body, init, (rows_b, aux_b))
    if per_window is not None and nblocks > per_window:
        path = path + jnp.linalg.norm(w - w_prev)
    return Comparator(incr.reshape(-1)[:t], w, path)


def logistic_comparator(
    x: np.ndarray, y: np.ndarray, lam: float, checkpoints: np.ndarray, tol: float = 1e-8, max_iter: int = 50
) -> np.ndarray:
    """Exact-to-tolerance prefix optimum for the logistic loss at ``checkpoints``.

    Solves ``min_theta sum_{s<=t} softplus(x_s.theta) - y_s x_s.theta + lam/2 |theta|^2``
    per output by Newton's method (warm-started from the previous checkpoint)
    until the gradient norm is below ``tol``. Host-side NumPy, float64.

    Args:
      x: f[T, d] features in stream order; y: f[T, K] binary targets.
      lam: ridge strength; checkpoints: increasing step counts t (1-based).

    Returns:
      f[len(checkpoints)] the optimal objective J_t summed over outputs.

    Raises:
      RuntimeError: if Newton does not reach ``tol`` within ``max_iter`` steps.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if y.ndim == 1:
        y = y[:, None]
    d, k = x.shape[1], y.shape[1]
    theta = np.zeros((d, k))
    out = []
    for t in np.asarray(checkpoints, int):
        xs, ys = x[:t], y[:t]
        total = 0.0
        for j in range(k):
            th = theta[:, j]
            for _ in range(max_iter):
                z = xs @ th
                p = 1.0 / (1.0 + np.exp(-z))
                grad = xs.T @ (p - ys[:, j]) + lam * th
                if np.linalg.norm(grad) <= tol:
                    break
                hess = (xs * (p * (1 - p))[:, None]).T @ xs + lam * np.eye(d)
                th = th - np.linalg.solve(hess, grad)
            else:
                raise RuntimeError(f"logistic comparator: Newton did not reach tol={tol} at t={t}")
            theta[:, j] = th
            z = xs @ th
            total += float(np.sum(np.logaddexp(0.0, z) - ys[:, j] * z) + 0.5 * lam * th @ th)
        out.append(total)
    return np.asarray(out)


def log_steps(total: int, dense_until: int = 1000, min_rows: int = 500) -> np.ndarray:
    """Logged step counts: every step up to ``dense_until``, then log-spaced to ``total``.

    Returns at least ``min_rows`` distinct, increasing 1-based steps (all of
    them when ``total <= min_rows``), always including ``total``.
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    dense = np.arange(1, min(total, dense_until) + 1)
    if total <= dense_until:
        return dense
    extra = max(min_rows - len(dense), 200)
    tail = np.unique(np.round(np.geomspace(dense_until, total, extra + 1)).astype(np.int64))
    return np.unique(np.concatenate([dense, tail, [total]]))


def loglog_slope(steps: np.ndarray, regret: np.ndarray, t_min: int = 1000) -> np.ndarray:
    """Least-squares slope of log R_t on log t over ``t >= t_min``, per row.

    Args:
      steps: i[S] logged steps; regret: f[..., S].

    Returns:
      f[...] slopes; NaN where fewer than 3 points or any R_t <= 0 in range.
    """
    steps = np.asarray(steps)
    regret = np.asarray(regret, np.float64)
    sel = steps >= t_min
    if sel.sum() < 3:
        return np.full(regret.shape[:-1], np.nan)
    lt = np.log(steps[sel].astype(np.float64))
    r = regret[..., sel]
    positive = np.all(r > 0, axis=-1)
    lr = np.log(np.where(r > 0, r, 1.0))
    lt_c = lt - lt.mean()
    slope = ((lr - lr.mean(axis=-1, keepdims=True)) * lt_c).sum(axis=-1) / (lt_c**2).sum()
    return np.where(positive, slope, np.nan)
