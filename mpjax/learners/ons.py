"""Online Newton Step with a Sherman-Morrison inverse update.

Update (Hazan, Agarwal & Kale 2007, Alg. 2), with g_t = omega clip(grad l_t(w_t)) + lambda w_t
(omega = 1 but in ``wstep``):
  A_t = A_{t-1} + g_t g_t^T,  A_0 = epsilon I,
  w_{t+1} = Pi_R(w_t - (1/gamma) A_t^{-1} g_t),
where A_t^{-1} is kept directly by Sherman-Morrison (never a per-step inverse):
  v = A_{t-1}^{-1} g,  A_t^{-1} = A_{t-1}^{-1} - v v^T / (1 + g.v),  A_t^{-1} g = v / (1 + g.v).
Defaults follow the paper: gamma = 1/2 min(1/(4 G D), alpha), epsilon = 1/(gamma^2 D^2).
The optional projection is Euclidean onto the ball of radius R (the paper's
A_t-norm projection needs an eigendecomposition per step; this is a documented
simplification).

References:
  E. Hazan, A. Agarwal, S. Kale. Logarithmic regret algorithms for online
  convex optimization. Machine Learning 69, 2007.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from mpjax import losses
from mpjax.learners.base import Learner, check_nonnegative, check_positive, clipped_coefficient, from_wstep
from mpjax.learners.sgd import project_l2_ball

__all__ = ["OnsState", "make"]


class OnsState(NamedTuple):
    w: jax.Array  # f[d]
    a_inv: jax.Array  # f[d, d] inverse of A_t
    t: jax.Array  # i32[]


def make(
    gamma: float | None = None,
    epsilon: float | None = None,
    grad_bound: float = 1.0,
    diameter: float = 1.0,
    alpha: float = 1.0,
    l2: float = 1e-3,
    loss: str = "squared",
    clip_norm: float | None = 10.0,
    radius: float | None = None,
) -> Learner:
    """Online Newton Step.

    Args:
      gamma: step parameter; default 1/2 min(1/(4 G D), alpha).
      epsilon: A_0 = epsilon I; default 1/(gamma^2 D^2).
      grad_bound: G, the gradient bound used for the default gamma.
      diameter: D, the domain diameter used for the defaults.
      alpha: exp-concavity of the losses, used for the default gamma.
      l2: ridge strength lambda added to each gradient.
      loss: "squared" or "logistic".
      clip_norm: loss gradients are clipped to this norm (None: off).
      radius: optional Euclidean ball for the weights.
    """
    check_positive(grad_bound=grad_bound, diameter=diameter, alpha=alpha)
    check_nonnegative(l2=l2)
    if gamma is None:
        gamma = 0.5 * min(1.0 / (4.0 * grad_bound * diameter), alpha)
    if epsilon is None:
        epsilon = 1.0 / (gamma**2 * diameter**2)
    check_positive(gamma=gamma, epsilon=epsilon)
    if clip_norm is not None:
        check_positive(clip_norm=clip_norm)
    if radius is not None:
        check_positive(radius=radius)
    fn = losses.get(loss)
    inv_gamma = 1.0 / gamma

    def init(dim, key):
        del key
        w = jnp.zeros((dim,), float)
        return OnsState(w, jnp.eye(dim, dtype=w.dtype) / epsilon, jnp.zeros((), jnp.int32))

    def wstep(state, x, y, weight):
        z = jnp.dot(state.w, x)  # w first: under a vmap the weights are the batched matrix (no transpose)
        loss = fn.margin_value(z, y)
        g = (weight * clipped_coefficient(fn.dmargin(z, y), x, clip_norm)) * x + l2 * state.w
        v = state.a_inv @ g
        denom = 1.0 + jnp.dot(g, v)
        a_inv = state.a_inv - jnp.outer(v, v) / denom
        w = state.w - (inv_gamma / denom) * v
        if radius is not None:
            w = project_l2_ball(w, radius)
        return OnsState(w, a_inv, state.t + 1), loss

    def predict(state, x):
        return jnp.dot(state.w, x)

    def loss_fn(state, x, y):
        return fn.value(state.w, x, y)

    return from_wstep(init, wstep, predict, loss_fn)
