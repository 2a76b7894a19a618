"""Sufficient statistics of the deletion objective, its exact minimiser and a certified distance.

The one objective of everything about deletion (DESIGN.md section 2), over the rows ``S``
present, with ``W: f[K, d]`` (K one-hot outputs) and ``n = |S|``:

    F_S(W) = sum_{i in S} [1/2 |W x_i - y_i|^2 + lambda/2 |W|^2]
           = 1/2 tr(W A W^T) - tr(W B) + 1/2 sum |y_i|^2 + n lambda/2 |W|^2,

    A = sum_{i in S} x_i x_i^T  (f[d, d]),   B = sum_{i in S} x_i y_i^T  (f[d, K]),

    grad F_S(W) = W (A + n lambda I) - B^T,    W*_S = B^T (A + n lambda I)^{-1}.

``F_S`` is ``mu = n lambda`` strongly convex, so for every ``W``

    |W - W*_S|_F <= |grad F_S(W)|_F / (n lambda).                                 (1)

:class:`RidgeStats` carries ``(A, B, n)``: :func:`add` and :func:`remove` are rank-one
updates (O(d^2 + dK)), :func:`solve` is a Cholesky solve (O(d^3)), :func:`certified_distance`
evaluates (1) with an allowance for floating-point rounding, so that the number it returns
is an upper bound on the distance of ``W`` to the minimiser over the *exact* rows (to first
order in the unit roundoff ``u``; standard bounds, Higham 2002, sections 3.1 and 3.5):

* the statistics are sums of ``U`` signed rank-one terms (every insert and delete ever
  applied), so ``|A_fl - A|_F <= gamma_{U+1} sum_t |x_t|^2`` and
  ``|B_fl - B|_F <= gamma_{U+1} sum_t |x_t| |y_t|`` (``gamma_k = k u / (1 - k u)``);
* the product ``W A_fl`` adds ``gamma_{d+3} (|W|_F (|A_fl|_F + n lambda) + |B_fl|_F)``.

In float64 with ``|x| <= 1`` both are ~1e-12 of ``|W|`` or less; in float32 they are ~1e-4,
which is why the exactness claims of :mod:`mpjax.unlearning` are made under ``jax.enable_x64``.

References:
  N. Higham. Accuracy and Stability of Numerical Algorithms, 2nd ed. SIAM, 2002.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve

__all__ = ["RidgeStats", "init", "update", "add", "remove", "solve", "gradient", "certified_distance", "distance_bound", "gamma"]


class RidgeStats(NamedTuple):
    a: jax.Array  # f[d, d] sum of x x^T over the rows present
    b: jax.Array  # f[d, K] sum of x y^T over the rows present
    n: jax.Array  # i32[] rows present
    updates: jax.Array  # i32[] rank-one updates ever applied (inserts + deletes): rounding allowance
    mass_xx: jax.Array  # f[] sum over every update of |x|^2: rounding allowance
    mass_xy: jax.Array  # f[] sum over every update of |x| |y|: rounding allowance


def gamma(k, dtype) -> jax.Array:
    """``gamma_k = k u / (1 - k u)``, ``u`` the unit roundoff of ``dtype`` (Higham 2002, Lemma 3.1)."""
    u = jnp.finfo(dtype).eps / 2
    ku = jnp.asarray(k, dtype) * u
    return ku / (1 - ku)


def init(dim: int, num_outputs: int, dtype=None) -> RidgeStats:
    """Statistics of the empty set."""
    dtype = dtype or jnp.result_type(float)
    z = jnp.zeros((), dtype)
    i = jnp.zeros((), jnp.int32)
    return RidgeStats(jnp.zeros((dim, dim), dtype), jnp.zeros((dim, num_outputs), dtype), i, i, z, z)


def update(stats: RidgeStats, x: jax.Array, y: jax.Array, sign) -> RidgeStats:
    """``sign = +1`` adds the row ``(x f[d], y f[K])``, ``-1`` removes it, ``0`` leaves the statistics as they are.

    ``sign`` may be traced (one fused pass over ``A`` either way; a non-finite row with
    ``sign = 0`` cannot leak into the statistics).
    """
    dtype = stats.a.dtype
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(y, dtype)
    sign = jnp.asarray(sign, jnp.int32)
    on = sign != 0
    s = sign.astype(dtype)
    nx, ny = jnp.linalg.norm(x), jnp.linalg.norm(y)
    return RidgeStats(
        a=jnp.where(on, stats.a + s * jnp.outer(x, x), stats.a),
        b=jnp.where(on, stats.b + s * jnp.outer(x, y), stats.b),
        n=stats.n + sign,
        updates=stats.updates + on.astype(jnp.int32),
        mass_xx=jnp.where(on, stats.mass_xx + nx * nx, stats.mass_xx),
        mass_xy=jnp.where(on, stats.mass_xy + nx * ny, stats.mass_xy),
    )


def add(stats: RidgeStats, x: jax.Array, y: jax.Array) -> RidgeStats:
    """The statistics with the row ``(x f[d], y f[K])`` added."""
    return update(stats, x, y, 1)


def remove(stats: RidgeStats, x: jax.Array, y: jax.Array) -> RidgeStats:
    """The statistics with a present row removed (an exact downdate, up to rounding)."""
    return update(stats, x, y, -1)


def _shifted(stats: RidgeStats, lam):
    d = stats.a.shape[0]
    mu = stats.n.astype(stats.a.dtype) * jnp.asarray(lam, stats.a.dtype)
    return stats.a + mu * jnp.eye(d, dtype=stats.a.dtype), mu


def solve(stats: RidgeStats, lam: float) -> jax.Array:
    """``W*_S = B^T (A + n lambda I)^{-1}`` (f[K, d]) by Cholesky; zeros for the empty set."""
    m, mu = _shifted(stats, lam)
    empty = stats.n <= 0
    m = jnp.where(empty, jnp.eye(m.shape[0], dtype=m.dtype), m)
    w_t = cho_solve(cho_factor(m, lower=True), stats.b)
    return jnp.where(empty, 0.0, w_t.T)


def gradient(stats: RidgeStats, w: jax.Array, lam: float) -> jax.Array:
    """``grad F_S(W) = W (A + n lambda I) - B^T`` (f[K, d]) from the statistics."""
    m, _ = _shifted(stats, lam)
    return w @ m - stats.b.T


def certified_distance(stats: RidgeStats, w: jax.Array, lam: float) -> jax.Array:
    """An upper bound on ``|W - W*_S|_F`` over the exact rows: (1) plus the rounding allowance.

    For the empty set (every ``W`` minimises ``F = 0``; ``W* = 0`` by convention) it is ``|W|_F``.
    """
    dtype = stats.a.dtype
    d, k = stats.b.shape
    g = gradient(stats, w, lam)
    _, mu = _shifted(stats, lam)
    wn = jnp.linalg.norm(w)
    err = (gamma(stats.updates + 1, dtype) * (wn * stats.mass_xx + stats.mass_xy)
           + gamma(d + 3, dtype) * (wn * (jnp.linalg.norm(stats.a) + mu) + jnp.linalg.norm(stats.b)))
    return jnp.where(stats.n > 0, distance_bound(jnp.linalg.norm(g), err, mu, d * k, dtype), wn)


def distance_bound(g_norm, err, mu, dk, dtype):
    """``(|grad F| + err) / mu``, rounded up for the ``dk`` (= K d) terms of the norm: a bound on
    ``|W - W*|_F`` for a ``mu``-strongly convex ``F`` (``mu = 0``: the caller's convention applies)."""
    return (g_norm + err) / jnp.where(mu > 0, mu, 1.0) * (1 + gamma(dk + 4, dtype))
