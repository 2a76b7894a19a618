"""Online (projected) gradient descent with step sizes eta / sqrt(t).

Update (Zinkevich 2003): w_{t+1} = Pi_R(w_t - eta_t (clip(grad l_t(w_t)) + lambda w_t)),
eta_t = learning_rate / sqrt(t), t = 1, 2, ... Built from optax transformations
(weight decay, schedule); the ball projection Pi_R is optional. The clip is our
own :func:`~mpjax.learners.base.grad_clip`, not ``optax.clip_by_global_norm``: it
must act on the loss gradient alone (the sample weight of ``wstep`` multiplies
the *clipped* gradient, and the ridge term is not clipped), and its reverse-mode
derivative must stay finite at a zero gradient, where optax's norm gives NaN.

References:
  M. Zinkevich. Online convex programming and generalized infinitesimal
  gradient ascent. ICML 2003.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mpjax import losses
from mpjax.learners.base import (Learner, check_nonnegative, check_positive, clip_scale, grad_clip,
                                 from_wstep, safe_norm)

__all__ = ["SgdState", "make", "project_l2_ball"]


class SgdState(NamedTuple):
    w: jax.Array  # f[d]
    opt_state: optax.OptState  # decay / schedule states (the schedule holds the step count)
    t: jax.Array  # i32[] samples seen


def _chain(l2, preconditioner=None):
    """The optax stages before the step size: ridge decay, preconditioner."""
    parts = []
    if l2:
        parts.append(optax.add_decayed_weights(l2))
    if preconditioner is not None:
        parts.append(preconditioner)
    return parts


def make(
    learning_rate: float = 0.5,
    l2: float = 1e-3,
    loss: str = "squared",
    clip_norm: float | None = 10.0,
    radius: float | None = None,
) -> Learner:
    """Online SGD.

    Args:
      learning_rate: eta in eta_t = eta / sqrt(t).
      l2: ridge strength lambda added to each gradient.
      loss: "squared" or "logistic".
      clip_norm: gradients of the loss are clipped to this norm (None: off).
        Keeps the iterates finite on unscaled features.
      radius: optional Euclidean ball the weights are projected onto.

    Returns:
      A scalar-output :class:`Learner`.
    """
    check_positive(learning_rate=learning_rate)
    check_nonnegative(l2=l2)
    if clip_norm is not None:
        check_positive(clip_norm=clip_norm)
    if radius is not None:
        check_positive(radius=radius)
    fn = losses.get(loss)
    schedule = lambda count: -learning_rate * jax.lax.rsqrt(jnp.asarray(count + 1, float))
    tx = optax.chain(*_chain(l2), optax.scale_by_schedule(schedule))
    return _first_order_learner(tx, fn, clip_norm, radius, SgdState)


def project_l2_ball(w: jax.Array, radius: float) -> jax.Array:
    """Euclidean projection onto the ball of ``radius``; finite reverse-mode derivative at 0."""
    return w * clip_scale(safe_norm(w), radius)


def _first_order_learner(tx, fn, clip_norm, radius, state_cls):
    """A Learner around an optax transformation; shared with AdaGrad.

    The optax chain receives ``weight * clip(grad l) `` and adds the ridge term itself.
    """

    def init(dim, key):
        del key
        w = jnp.zeros((dim,), float)  # float32, or float64 under jax.enable_x64
        return state_cls(w, tx.init(w), jnp.zeros((), jnp.int32))

    def wstep(state, x, y, weight):
        z = jnp.dot(state.w, x)  # w first: under a vmap the weights are the batched matrix (no transpose)
        loss = fn.margin_value(z, y)
        dz = fn.dmargin(z, y)
        # |l' x| = |l'| |x|: |x| is shared by every copy of w under a vmap (outputs, seeds, retrains).
        g = weight * grad_clip(dz * x, clip_norm, norm=jnp.abs(dz) * safe_norm(x))
        updates, opt_state = tx.update(g, state.opt_state, state.w)
        w = optax.apply_updates(state.w, updates)
        if radius is not None:
            w = project_l2_ball(w, radius)
        return state_cls(w.astype(state.w.dtype), opt_state, state.t + 1), loss

    def predict(state, x):
        return jnp.dot(state.w, x)

    def loss_fn(state, x, y):
        return fn.value(state.w, x, y)

    return from_wstep(init, wstep, predict, loss_fn)
