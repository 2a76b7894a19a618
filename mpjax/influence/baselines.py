"""Attribution baselines on the very same models as the exact metagradient.

Every score follows the sign of :func:`mpjax.influence.metagrad.metagradients`:
``tau[j, i]`` approximates ``d phi_j / d omega_i``, so removing row i changes the
target loss phi_j by about ``-tau[j, i]``.

- :func:`tracin`: the metagradient truncated to the step that saw i: the change of
  ``phi_j`` right after that step, ``d/d omega phi_j(wstep(state_t, x_i, y_i, omega))``
  (TracIn with every step as a checkpoint; Pruthi et al. 2020). Generic over
  learners (forward mode through one step), one scan.
- :func:`grad_dot`: ``-<grad phi_j(w_T), grad l_i(w_T)>`` at the final linear model.
- :func:`influence_function`: ``-grad phi_j^T H^{-1} grad l_i`` at the final linear
  model, ``H = sum_i hess l_i(w_T) + l2_total I`` (Koh & Liang 2017), exact (no
  iterative solver) since a linear model's Hessian is one d x d block per output.
- :func:`ridge_loo`: the exact leave-one-out change of a ridge model (squared loss),
  ``-(phi_j(w_{-i}) - phi_j(w))``, by the Sherman-Morrison downdate.

``grad_dot`` and ``influence_function`` use unclipped loss gradients (the textbook
definitions); the learners' clip (10 on features of norm <= 1) is inactive on the
data sets here.

References:
  G. Pruthi, F. Liu, S. Kale, M. Sundararajan. Estimating training data influence by
  tracing gradient descent. NeurIPS 2020.
  P. W. Koh, P. Liang. Understanding black-box predictions via influence functions.
  ICML 2017.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from mpjax import losses
from mpjax.influence.metagrad import target_losses
from mpjax.learners.base import Learner

__all__ = ["tracin", "grad_dot", "influence_function", "ridge_loo", "margin_grads"]


def tracin(
    learner: Learner,
    state: Any,
    table: jax.Array,
    targets: jax.Array,
    order: jax.Array,
    test_x: jax.Array,
    test_y: jax.Array,
    mode: str = "forward",
) -> jax.Array:
    """f[J, n]: the metagradient truncated to the step that saw each row (one scan).

    Per step t (row i = order[t]), ``d/d omega phi_j(state_{t+1}(omega))`` at omega = 1
    with ``state_t`` held fixed; a row seen several times sums its steps.

    ``mode="forward"`` takes one JVP per step (cheapest); ``"reverse"`` takes J
    batched VJPs per step (the same numbers; tested).
    """
    if mode not in ("forward", "reverse"):
        raise ValueError(f"mode must be 'forward' or 'reverse', got {mode!r}")
    dtype = jnp.asarray(state.w).dtype
    one = jnp.ones((), dtype)

    def body(s, row):
        x, y = table[row], targets[row]

        def after(omega):
            new, _ = learner.wstep(s, x, y, omega)
            return target_losses(learner, new, test_x, test_y), new

        if mode == "forward":
            (_, new), (dphi, _) = jax.jvp(after, (one,), (one,))
        else:
            dphi, new = jax.jacrev(after, has_aux=True)(one)
        return new, dphi

    _, per_step = lax.scan(body, state, order)  # f[T, J]
    tau = jnp.zeros((table.shape[0], test_x.shape[0]), dtype).at[order].add(per_step)
    return tau.T


def margin_grads(w: jax.Array, x: jax.Array, y: jax.Array, loss: losses.Loss) -> jax.Array:
    """f[N, K]: ``d loss / d margin`` of each row and output (``grad_W l = outer(., x)``)."""
    w2 = jnp.atleast_2d(w)
    z = x @ w2.T
    return loss.dmargin(z, y.reshape(z.shape))


def grad_dot(w: jax.Array, loss: losses.Loss, train_x, train_y, test_x, test_y) -> jax.Array:
    """f[J, n]: ``-<grad phi_j, grad l_i>`` at the final weights ``w`` (f[K, d] or f[d])."""
    g_tr = margin_grads(w, train_x, train_y, loss)  # [n, K]
    g_te = margin_grads(w, test_x, test_y, loss)  # [J, K]
    return -(g_te @ g_tr.T) * (test_x @ train_x.T)


def _hessian_blocks(w, loss, train_x, train_y, l2_total):
    """f[K, d, d]: ``sum_i l''(z_ik) x_i x_i^T + l2_total I`` per output k."""
    w2 = jnp.atleast_2d(w)
    z = train_x @ w2.T  # [n, K]
    curv = jax.vmap(jax.vmap(jax.grad(loss.dmargin)))(z, train_y.reshape(z.shape))  # [n, K]
    eye = jnp.eye(train_x.shape[1], dtype=train_x.dtype)
    return jnp.einsum("nk,nd,ne->kde", curv, train_x, train_x) + l2_total * eye[None]


def influence_function(w: jax.Array, loss: losses.Loss, train_x, train_y, test_x, test_y,
                       l2_total: float) -> jax.Array:
    """f[J, n]: ``-grad phi_j^T H^{-1} grad l_i`` with the exact per-output Hessian blocks.

    ``l2_total`` is the ridge of the objective the learner tracks: ``T * l2`` for the
    online learners (they add ``l2 * w`` at each of T steps), ``l2`` for RLS.
    """
    h = _hessian_blocks(w, loss, train_x, train_y, l2_total)  # [K, d, d]
    g_tr = margin_grads(w, train_x, train_y, loss)  # [n, K]
    g_te = margin_grads(w, test_x, test_y, loss)  # [J, K]
    solved = jnp.linalg.solve(h, jnp.broadcast_to(test_x.T, (h.shape[0], *test_x.T.shape)))  # [K, d, J]
    cross = jnp.einsum("kdj,nd->kjn", solved, train_x)  # x_j^T H_k^{-1} x_i
    return -jnp.einsum("jk,nk,kjn->jn", g_te, g_tr, cross)


def ridge_loo(train_x, train_y, test_x, test_y, l2: float) -> jax.Array:
    """f[J, n]: ``-(phi_j(W_{-i}) - phi_j(W))`` for exact ridge regression (squared loss).

    ``W`` minimises ``1/2 sum_i |W x_i - y_i|^2 + l2/2 |W|^2`` (what RLS computes);
    ``W_{-i}`` is the same without row i: ``W_{-i} = W + r_i (P x_i)^T / (1 - h_i)`` with
    ``P = (l2 I + X^T X)^{-1}``, ``r_i = W x_i - y_i``, ``h_i = x_i^T P x_i``.
    """
    d = train_x.shape[1]
    p = jnp.linalg.inv(l2 * jnp.eye(d, dtype=train_x.dtype) + train_x.T @ train_x)
    y2 = train_y.reshape(train_x.shape[0], -1)
    w = (p @ (train_x.T @ y2)).T  # [K, d]
    r = train_x @ w.T - y2  # [n, K]
    px = train_x @ p  # [n, d] rows P x_i
    h = jnp.sum(px * train_x, axis=1)  # [n]
    resid_te = test_x @ w.T - test_y.reshape(test_x.shape[0], -1)  # [J, K]
    cross = test_x @ px.T  # [J, n] x_j^T P x_i
    shift = (r / (1.0 - h)[:, None])[None, :, :] * cross[:, :, None]  # [J, n, K] prediction change
    new = resid_te[:, None, :] + shift
    delta = 0.5 * jnp.sum(new * new, axis=-1) - 0.5 * jnp.sum(resid_te * resid_te, axis=-1)[:, None]
    return -delta
