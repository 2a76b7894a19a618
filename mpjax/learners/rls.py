"""Exact recursive least squares (online ridge regression), the exact reference learner.

After t samples the weights are exactly the ridge solution
  w_t = argmin_w 1/2 sum_{s<=t} (x_s.w - y_s)^2 + lambda/2 |w|^2 = P_t sum_s x_s y_s,
  P_t = (lambda I + sum_{s<=t} x_s x_s^T)^{-1},
kept by Sherman-Morrison (k -> gain, e -> a-priori error; Haykin 2002, ch. 13):
  u = P x,  k = u / (1 + x.u),  e = y - x.w,  w <- w + k e,  P <- P - k u^T.
The prediction at step t therefore uses the ridge fit of the first t-1
samples (follow-the-regularised-leader). ``wstep`` with weight omega adds the
sample with weight omega (rows of X and Y scaled by sqrt(omega)):
u = P x, k = omega u / (1 + omega x.u), w <- w + k e, P <- P - k u^T; omega = 0
leaves the model unchanged but for the counter. Deletion is the exact downdate
(:func:`downdate`), so no noise is needed. Squared loss only.

References:
  S. Haykin. Adaptive Filter Theory, 4th ed., 2002.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpjax import losses
from mpjax.learners.base import Learner, check_positive, from_wstep

__all__ = ["RlsState", "make", "downdate"]


class RlsState(NamedTuple):
    w: jax.Array  # f[d] ridge solution on the samples seen so far
    p: jax.Array  # f[d, d] (lambda I + X^T X)^{-1}
    t: jax.Array  # i32[] samples currently in the model


def make(l2: float = 1e-3, loss: str = "squared") -> Learner:
    """Recursive least squares with ridge strength ``l2`` (> 0)."""
    check_positive(l2=l2)
    if loss != "squared":
        raise ValueError(f"rls is exact for the squared loss only, got loss={loss!r}")
    fn = losses.squared

    def init(dim, key):
        del key
        w = jnp.zeros((dim,), float)
        return RlsState(w, jnp.eye(dim, dtype=w.dtype) / l2, jnp.zeros((), jnp.int32))

    def wstep(state, x, y, weight):
        e = y - jnp.dot(state.w, x)
        u = state.p @ x
        denom = 1.0 + weight * jnp.dot(x, u)
        w = state.w + (weight * e / denom) * u
        p = state.p - jnp.outer(weight * u, u) / denom
        return RlsState(w, p, state.t + 1), 0.5 * e * e

    def predict(state, x):
        return jnp.dot(state.w, x)

    def loss_fn(state, x, y):
        return fn.value(state.w, x, y)

    return from_wstep(init, wstep, predict, loss_fn, multi=lambda k: _make_multi(l2, k))


def _make_multi(l2: float, num_outputs: int) -> Learner:
    """K outputs at O(d^2 + K d) per step: P depends only on the x's, so one P serves all.

    The state holds ``w: f[K, d]`` (as a vmap over outputs would) and one shared
    ``p: f[d, d]``; the result equals K independent RLS learners exactly.
    """

    def init(dim, key):
        del key
        w = jnp.zeros((num_outputs, dim), float)
        return RlsState(w, jnp.eye(dim, dtype=w.dtype) / l2, jnp.zeros((), jnp.int32))

    def wstep(state, x, y, weight):
        e = y - state.w @ x  # f[K] a-priori errors
        u = state.p @ x
        denom = 1.0 + weight * jnp.dot(x, u)
        w = state.w + jnp.outer(weight * e / denom, u)
        p = state.p - jnp.outer(weight * u, u) / denom
        return RlsState(w, p, state.t + 1), 0.5 * jnp.dot(e, e)

    def predict(state, x):
        return state.w @ x

    def loss_fn(state, x, y):
        r = state.w @ x - y
        return 0.5 * jnp.dot(r, r)

    return from_wstep(init, wstep, predict, loss_fn)


def downdate(state: RlsState, x: jax.Array, y: jax.Array) -> RlsState:
    """Removes the sample ``(x, y)`` exactly: the ridge solution without it.

    Sherman-Morrison with a minus sign: u = P x, P' = P + u u^T / (1 - x.u),
    w' = w - P' x (y - x.w) ... written in the numerically equivalent form
    w' = w + u (x.w - y) / (1 - x.u). Only valid for a sample that is in the model.
    """
    u = state.p @ x
    denom = 1.0 - jnp.dot(x, u)
    safe = jnp.where(denom > 0, denom, 1.0)
    w = state.w + u * ((jnp.dot(x, state.w) - y) / safe)
    p = state.p + jnp.outer(u, u) / safe
    return RlsState(w, p, state.t - 1)
