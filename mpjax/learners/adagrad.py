"""AdaGrad (diagonal) for online learning.

Update (Duchi, Hazan & Singer 2011, diagonal version, as optax implements it):
  g_t = omega clip(grad l_t(w_t)) + lambda w_t  (omega = 1 but in ``wstep``),  G_t = G_{t-1} + g_t^2 (G_0 = initial_accumulator),
  w_{t+1} = Pi_R(w_t - eta g_t / sqrt(G_t + eps)).

References:
  J. Duchi, E. Hazan, Y. Singer. Adaptive subgradient methods for online
  learning and stochastic optimization. JMLR 12, 2011.
"""

from typing import NamedTuple

import jax
import optax

from mpjax import losses
from mpjax.learners.base import Learner, check_nonnegative, check_positive
from mpjax.learners.sgd import _chain, _first_order_learner

__all__ = ["AdagradState", "make"]


class AdagradState(NamedTuple):
    w: jax.Array  # f[d]
    opt_state: optax.OptState  # holds the per-coordinate sum of squared gradients
    t: jax.Array  # i32[]


def make(
    learning_rate: float = 0.1,
    l2: float = 1e-3,
    loss: str = "squared",
    initial_accumulator: float = 0.1,
    eps: float = 1e-7,
    clip_norm: float | None = 10.0,
    radius: float | None = None,
) -> Learner:
    """Diagonal AdaGrad; see the module docstring for the update."""
    check_positive(learning_rate=learning_rate)
    check_nonnegative(l2=l2, initial_accumulator=initial_accumulator, eps=eps)
    if clip_norm is not None:
        check_positive(clip_norm=clip_norm)
    if radius is not None:
        check_positive(radius=radius)
    fn = losses.get(loss)
    rss = optax.scale_by_rss(initial_accumulator_value=initial_accumulator, eps=eps)
    tx = optax.chain(*_chain(l2, rss), optax.scale(-learning_rate))
    return _first_order_learner(tx, fn, clip_norm, radius, AdagradState)
