"""Certified polishing: iterate on the stored rows until the distance to the minimiser is certified.

The ``polish`` mechanism (see :mod:`mpjax.unlearning.core` for its theorem) stores the rows
present, ``X: f[N, d]`` and ``Y: f[N, K]`` (a deleted or never-inserted slot is a zero row,
which contributes nothing to any sum below), so it needs O(N d) memory and no d x d matrix.
A pass over the rows goes block by block (:data:`BLOCK` rows) and stops after the block that
holds the largest row id ever stored, so its cost follows the rows inserted, not ``N``.
Its objective is that of DESIGN.md section 2, for the learner's loss ``l`` (squared or
logistic, per output), with ``n`` rows present:

    F(W) = sum_i [sum_k l(w_k . x_i, y_ik) + lambda/2 |W|^2],    grad F(W) = R^T X + n lambda W,

    R = l'(X W^T, Y)  (f[N, K]; for squared loss R = X W^T - Y).

``F`` is ``mu = n lambda`` strongly convex, so ``|W - W*|_F <= |grad F(W)|_F / (n lambda)``.
:func:`certified_distance` evaluates this with an allowance for rounding (first order in the
unit roundoff ``u``, Higham 2002, section 3.5; ``gamma_k = k u / (1 - k u)``):

    |fl(grad) - grad|_F <= gamma_{N+d+3} (|R|_F |X|_F + |W|_F |X|_F^2 + |Y|_F |X|_F + n lambda |W|_F)

(plus ``4 u sqrt(N K) |X|_F`` for the logistic sigmoid), so the certified number is an upper
bound on the distance to the minimiser over the exact rows. In float64 the allowance is
~1e-11; in float32 it is ~1e-2, too large to certify small ``Delta``: use ``jax.enable_x64``.

:func:`polish` starts from ``W0`` (the online model) and iterates until the certified bound
is ``<= delta`` or ``max_passes`` gradient evaluations (passes over the stored rows) are
spent; the caller refuses the deletion in the second case. The iteration:

* squared loss: conjugate gradients on the K systems ``W (X^T X + n lambda I) = Y^T X``
  (they share the matrix; one pass per iteration for all K). CG is the optimal Krylov
  method for an SPD quadratic and needs no step size: it converges at least at the rate
  ``(sqrt(kappa) - 1) / (sqrt(kappa) + 1)`` per pass, ``kappa <= 1 + max|x|^2 / lambda``
  (11 at lambda = 0.1, |x| <= 1), and faster when the spectrum clusters (Nocedal & Wright
  2006, Thm 5.5). The recursive residual decides when to stop; the certificate is always
  evaluated on a freshly computed gradient (residual replacement if it fails).
* logistic loss: Nesterov's accelerated gradient for strongly convex functions with the
  data-independent step ``1 / L``, ``L = n lambda + |X|_F^2 / 4`` (a valid smoothness
  constant) and momentum ``(1 - sqrt(mu/L)) / (1 + sqrt(mu/L))`` (Nesterov 2004, 2.2.19);
  the gradient at the extrapolated point certifies that point.

References:
  J. Nocedal, S. Wright. Numerical Optimization, 2nd ed. Springer, 2006, ch. 5.
  Y. Nesterov. Introductory Lectures on Convex Optimization. Kluwer, 2004, section 2.2.
  N. Higham. Accuracy and Stability of Numerical Algorithms, 2nd ed. SIAM, 2002.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mpjax import losses
from mpjax.unlearning.ridge import distance_bound, gamma

__all__ = ["RowStore", "PolishResult", "store_init", "store_update", "store_add", "store_remove", "objective_gradient",
           "certified_distance", "polish"]


BLOCK = 512  # rows per block of a pass over the store


class RowStore(NamedTuple):
    x: jax.Array  # f[N, d] rows present; zero rows elsewhere (N a multiple of BLOCK when N > BLOCK)
    y: jax.Array  # f[N, K]
    high: jax.Array  # i32[] 1 + the largest row id ever stored: passes stop at the block that holds it


class PolishResult(NamedTuple):
    w: jax.Array  # f[K, d] the polished model W~ (before any noise)
    bound: jax.Array  # f[] certified upper bound on |W~ - W*|_F
    passes: jax.Array  # i32[] gradient evaluations (passes over the stored rows) spent
    certified: jax.Array  # bool[] bound <= delta


def store_init(num_rows: int, dim: int, num_outputs: int, dtype=None) -> RowStore:
    """An empty store for row ids ``0..num_rows-1`` (padded to a multiple of :data:`BLOCK`)."""
    dtype = dtype or jnp.result_type(float)
    n = num_rows if num_rows <= BLOCK else -(-num_rows // BLOCK) * BLOCK
    return RowStore(jnp.zeros((n, dim), dtype), jnp.zeros((n, num_outputs), dtype), jnp.zeros((), jnp.int32))


def store_update(store: RowStore, row, x, y, sign) -> RowStore:
    """Writes ``(x, y)`` at ``row`` for ``sign > 0``, zeroes the row for ``sign < 0`` (nothing of a
    deleted row stays in the store), leaves it for ``sign == 0``; like :func:`ridge.update`."""
    def put(table, value):
        value = jnp.where(sign > 0, value.astype(table.dtype), jnp.where(sign < 0, 0, table[row]))
        return table.at[row].set(value.astype(table.dtype))

    high = jnp.where(sign > 0, jnp.maximum(store.high, jnp.asarray(row, jnp.int32) + 1), store.high)
    return RowStore(put(store.x, x), put(store.y, y), high)


def store_add(store: RowStore, row, x, y) -> RowStore:
    return store_update(store, row, x, y, 1)


def store_remove(store: RowStore, row) -> RowStore:
    """Zeroes the row: nothing of a deleted row stays in the store."""
    return store_update(store, row, store.x[row], store.y[row], -1)


def _blocks(store: RowStore):
    """``(block size, number of blocks to visit)``: every row id below ``high`` is visited once."""
    n = store.x.shape[0]
    block = BLOCK if n > BLOCK and n % BLOCK == 0 else n
    return block, jnp.minimum((store.high + block - 1) // block, n // block)


def _pass(store: RowStore, fn_block, init):
    """``sum`` over the visited blocks of ``fn_block(x_block, y_block)`` (a pytree), one block at a time."""
    block, count = _blocks(store)
    d, k = store.x.shape[1], store.y.shape[1]

    def body(i, acc):
        start = (i * block).astype(jnp.int32)
        zero = jnp.zeros((), jnp.int32)
        xb = lax.dynamic_slice(store.x, (start, zero), (block, d))
        yb = lax.dynamic_slice(store.y, (start, zero), (block, k))
        return jax.tree_util.tree_map(jnp.add, acc, fn_block(xb, yb))

    return lax.fori_loop(jnp.zeros((), jnp.int32), count.astype(jnp.int32), body, init)


def _norms(store: RowStore):
    """``(|X|_F, |Y|_F)`` over the visited blocks."""
    dtype = store.x.dtype
    sx, sy = _pass(store, lambda xb, yb: (jnp.sum(xb * xb), jnp.sum(yb * yb)),
                   (jnp.zeros((), dtype), jnp.zeros((), dtype)))
    return jnp.sqrt(sx), jnp.sqrt(sy)


def _mu(n, lam, dtype):
    return jnp.asarray(n, dtype) * jnp.asarray(lam, dtype)


def _gradient_and_allowance(fn: losses.Loss, store: RowStore, w, mu, x_norm, y_norm):
    """``(grad F(W), rounding allowance of its computed norm)``, one pass over the visited blocks."""
    dtype = store.x.dtype
    d = store.x.shape[1]
    block, count = _blocks(store)

    def one(xb, yb):
        r = fn.dmargin(xb @ w.T, yb)  # f[block, K]
        return r.T @ xb, jnp.sum(r * r)

    g, r2 = _pass(store, one, (jnp.zeros_like(w), jnp.zeros((), dtype)))
    g = g + mu * w
    wn = jnp.linalg.norm(w)
    rows = count * block  # terms in every sum over rows (zero rows included)
    err = gamma(rows + d + 3, dtype) * (jnp.sqrt(r2) * x_norm + wn * x_norm * x_norm + y_norm * x_norm + mu * wn)
    if fn.name != "squared":
        err = err + 4 * jnp.finfo(dtype).eps * jnp.sqrt((rows * w.shape[0]).astype(dtype)) * x_norm
    return g, err


def objective_gradient(loss: str, store: RowStore, w: jax.Array, n, lam: float) -> jax.Array:
    """``grad F(W)`` (f[K, d]) over the stored rows, ``n`` of them present."""
    g, _ = _gradient_and_allowance(losses.get(loss), store, w, _mu(n, lam, store.x.dtype), *_norms(store))
    return g


def certified_distance(loss: str, store: RowStore, w: jax.Array, n, lam: float) -> jax.Array:
    """An upper bound on ``|W - W*|_F``, ``W*`` the minimiser of ``F`` over the exact stored rows.

    ``|W|_F`` when no row is present (``W* = 0`` by convention).
    """
    dtype = store.x.dtype
    mu = _mu(n, lam, dtype)
    g, err = _gradient_and_allowance(losses.get(loss), store, w, mu, *_norms(store))
    return jnp.where(mu > 0, distance_bound(jnp.linalg.norm(g), err, mu, w.size, dtype), jnp.linalg.norm(w))


def polish(loss: str, store: RowStore, n, w0: jax.Array, lam: float, delta: float, max_passes: int) -> PolishResult:
    """Iterates from ``w0`` until the certified distance to ``W*`` is ``<= delta`` (module docstring).

    Args:
      loss: "squared" (conjugate gradients) or "logistic" (accelerated gradient).
      store: the stored rows (zero rows where no row is present).
      n: i[] number of rows present.
      w0: f[K, d] starting point (any; the certificate does not depend on it).
      lam: lambda > 0.
      delta: the certified distance to reach.
      max_passes: static budget of gradient evaluations (passes over the rows), certification included.

    Returns:
      A :class:`PolishResult`; ``certified`` is false when the budget ran out first (the
      returned ``w`` must then not be published as certified).
    """
    fn = losses.get(loss)
    dtype = store.x.dtype
    w0 = w0.astype(dtype)
    mu = _mu(n, lam, dtype)
    x_norm, y_norm = _norms(store)
    delta = jnp.asarray(delta, dtype)
    dk = w0.size

    def grad(w):
        g, err = _gradient_and_allowance(fn, store, w, mu, x_norm, y_norm)
        return g, err, distance_bound(jnp.linalg.norm(g), err, mu, dk, dtype)

    g0, err0, b0 = grad(w0)
    one = jnp.ones((), jnp.int32)
    if fn.name == "squared":
        w, bound, passes = _conjugate_gradients(store, w0, g0, err0, b0, one, mu, delta, max_passes, grad)
    else:
        w, bound, passes = _accelerated_gradient(w0, g0, b0, one, mu, x_norm, delta, max_passes, grad)
    empty = n <= 0
    w = jnp.where(empty, 0.0, w)
    bound = jnp.where(empty, 0.0, bound)
    return PolishResult(w, bound, passes, bound <= delta)


def _conjugate_gradients(store, w0, g0, err0, b0, passes0, mu, delta, max_passes, grad):
    tiny = jnp.finfo(w0.dtype).tiny

    def matvec(v):  # (X^T X + mu I) applied to each output's row of v, one pass over the blocks
        return _pass(store, lambda xb, yb: (xb @ v.T).T @ xb, jnp.zeros_like(v)) + mu * v

    def outer_cond(c):
        _, _, _, bound, passes = c
        return (bound > delta) & (passes < max_passes)

    def outer_body(c):
        w, g, err, _, passes = c
        # Stop the inner loop at half the slack the certificate leaves (the recursive residual
        # tracks the true one closely; the certificate is computed afresh below).
        target = 0.5 * (delta * mu / (1 + 1e-6) - err)
        r = -g
        rr = jnp.sum(r * r, axis=1)

        def inner_cond(ic):
            _, r, _, _, passes = ic
            return (jnp.linalg.norm(r) > target) & (passes + 1 < max_passes)

        def inner_body(ic):
            w, r, p, rr, passes = ic
            mp = matvec(p)
            pmp = jnp.sum(p * mp, axis=1)
            alpha = jnp.where(pmp > tiny, rr / jnp.where(pmp > tiny, pmp, 1.0), 0.0)[:, None]
            w = w + alpha * p
            r = r - alpha * mp
            rr_new = jnp.sum(r * r, axis=1)
            beta = jnp.where(rr > tiny, rr_new / jnp.where(rr > tiny, rr, 1.0), 0.0)[:, None]
            return w, r, r + beta * p, rr_new, passes + 1

        w, _, _, _, passes = lax.while_loop(inner_cond, inner_body, (w, r, r, rr, passes))
        g, err, bound = grad(w)
        return w, g, err, bound, passes + 1

    w, _, _, bound, passes = lax.while_loop(outer_cond, outer_body, (w0, g0, err0, b0, passes0))
    return w, bound, passes


def _accelerated_gradient(w0, g0, b0, passes0, mu, x_norm, delta, max_passes, grad):
    lip = mu + 0.25 * x_norm * x_norm
    q = mu / jnp.where(lip > 0, lip, 1.0)
    momentum = (1 - jnp.sqrt(q)) / (1 + jnp.sqrt(q))
    step = 1.0 / jnp.where(lip > 0, lip, 1.0)

    def cond(c):
        _, _, _, bound, passes = c
        return (bound > delta) & (passes < max_passes)

    def body(c):
        x, y, g, _, passes = c  # g = grad F(y); y is the point the bound certifies
        x_new = y - step * g
        y_new = x_new + momentum * (x_new - x)
        g_new, _, bound = grad(y_new)
        return x_new, y_new, g_new, bound, passes + 1

    _, y, _, bound, passes = lax.while_loop(cond, body, (w0, w0, g0, b0, passes0))
    return y, bound, passes
