"""The learner protocol shared by every online learner.

``make(**hyper) -> Learner``; ``init(dim, key) -> State``;
``step(state, x, y) -> (state, loss)`` with ``loss`` measured *before* the
update (predict, then learn); ``predict(state, x) -> score``;
``loss(state, x, y) -> loss`` of the current model without learning (used by
the adaptive adversary and by evaluations). A learner is scalar-output; a
K-class problem runs K independent copies through :func:`multi_output`.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Learner", "multi_output", "check_positive", "check_nonnegative", "grad_clip"]


class Learner(NamedTuple):
    init: Callable[[int, jax.Array], Any]
    step: Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array]]
    predict: Callable[[Any, jax.Array], jax.Array]
    loss: Callable[[Any, jax.Array, jax.Array], jax.Array]
    hyper: Any = None  # static hyper-parameters a learner exposes to other layers (unlearning)
    # Optional native K-output form (e.g. RLS shares one P across outputs); multi_output uses it.
    multi: Callable[[int], "Learner"] | None = None


def multi_output(learner: Learner, num_outputs: int) -> Learner:
    """K independent scalar learners sharing x: a ``vmap`` over outputs.

    The state gains a leading axis of size K (a learner may provide a native
    K-output form with shared statistics instead, as RLS does); ``y`` is f[K] (one-hot);
    the loss is the sum over outputs; ``predict`` returns the K scores, whose
    arg-max is the predicted class.
    """
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    if learner.multi is not None:
        return learner.multi(num_outputs)
    step_k = jax.vmap(learner.step, in_axes=(0, None, 0))
    predict_k = jax.vmap(learner.predict, in_axes=(0, None))
    loss_k = jax.vmap(learner.loss, in_axes=(0, None, 0))

    def init(dim, key):
        return jax.vmap(learner.init, in_axes=(None, 0))(dim, jax.random.split(key, num_outputs))

    def step(state, x, y):
        state, losses = step_k(state, x, y)
        return state, jnp.sum(losses)

    def loss(state, x, y):
        return jnp.sum(loss_k(state, x, y))

    return Learner(init, step, predict_k, loss, learner.hyper)


def check_positive(**kwargs):
    for name, value in kwargs.items():
        if value is None or not (float(value) > 0) or not jnp.isfinite(value):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_nonnegative(**kwargs):
    for name, value in kwargs.items():
        if value is None or not (float(value) >= 0) or not jnp.isfinite(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def grad_clip(g: jax.Array, clip_norm: float | None) -> jax.Array:
    """Scales ``g`` down to norm ``clip_norm`` (no-op when ``clip_norm`` is None)."""
    if clip_norm is None:
        return g
    norm = jnp.linalg.norm(g)
    return g * jnp.minimum(1.0, clip_norm / jnp.maximum(norm, jnp.finfo(g.dtype).tiny))
