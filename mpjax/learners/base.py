"""The learner protocol shared by every online learner.

``make(**hyper) -> Learner``; ``init(dim, key) -> State``;
``step(state, x, y) -> (state, loss)`` with ``loss`` measured *before* the
update (predict, then learn); ``wstep(state, x, y, weight) -> (state, loss)``,
the same step with the sample's (clipped) loss gradient multiplied by
``weight`` (``step`` is ``wstep(..., 1.0)``, bit for bit; ``weight = 0`` keeps the
ridge decay and the step counter, exactly as a retrain without the sample
would; metagradients in :mod:`mpjax.influence` differentiate with respect to
it); ``predict(state, x) -> score``;
``loss(state, x, y) -> loss`` of the current model without learning (used by
the adaptive adversary and by evaluations). A learner is scalar-output; a
K-class problem runs K independent copies through :func:`multi_output`.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Learner", "from_wstep", "multi_output", "check_positive", "check_nonnegative", "safe_norm", "clip_scale", "clipped_coefficient",
           "grad_clip"]


class Learner(NamedTuple):
    init: Callable[[int, jax.Array], Any]
    step: Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array]]
    predict: Callable[[Any, jax.Array], jax.Array]
    loss: Callable[[Any, jax.Array, jax.Array], jax.Array]
    wstep: Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[Any, jax.Array]]
    hyper: Any = None  # static hyper-parameters a learner exposes to other layers (unlearning)
    # Optional native K-output form (e.g. RLS shares one P across outputs); multi_output uses it.
    multi: Callable[[int], "Learner"] | None = None


def from_wstep(init, wstep, predict, loss, hyper=None, multi=None) -> Learner:
    """A :class:`Learner` whose ``step`` is ``wstep(state, x, y, 1.0)``.

    Multiplying by the literal 1.0 is exact in IEEE arithmetic, so ``step`` is
    bit-identical to an unweighted implementation of the same update.
    """

    def step(state, x, y):
        return wstep(state, x, y, 1.0)

    return Learner(init, step, predict, loss, wstep, hyper, multi)


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
    wstep_k = jax.vmap(learner.wstep, in_axes=(0, None, 0, None))
    predict_k = jax.vmap(learner.predict, in_axes=(0, None))
    loss_k = jax.vmap(learner.loss, in_axes=(0, None, 0))

    def init(dim, key):
        return jax.vmap(learner.init, in_axes=(None, 0))(dim, jax.random.split(key, num_outputs))

    def wstep(state, x, y, weight):
        state, losses = wstep_k(state, x, y, weight)
        return state, jnp.sum(losses)

    def loss(state, x, y):
        return jnp.sum(loss_k(state, x, y))

    return from_wstep(init, wstep, predict_k, loss, learner.hyper)


def check_positive(**kwargs):
    for name, value in kwargs.items():
        if value is None or not (float(value) > 0) or not jnp.isfinite(value):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_nonnegative(**kwargs):
    for name, value in kwargs.items():
        if value is None or not (float(value) >= 0) or not jnp.isfinite(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def safe_norm(v: jax.Array) -> jax.Array:
    """``|v|_2`` whose reverse-mode derivative is finite (0) at ``v = 0``.

    ``jnp.linalg.norm`` differentiates to 0/0 = NaN at the origin, which a model
    meets until an output's class first appears (w = 0 gives residual 0). The
    double ``where`` keeps the NaN out of both branches of the derivative.
    """
    sq = jnp.sum(v * v)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def grad_clip(g: jax.Array, clip_norm: float | None, norm: jax.Array | None = None) -> jax.Array:
    """Scales ``g`` down to norm ``clip_norm`` (no-op when ``clip_norm`` is None).

    ``norm``: |g| when the caller has it more cheaply (a linear model's ``|l'| |x|``, see
    :func:`clipped_coefficient`); default :func:`safe_norm` of ``g``. Differentiable
    everywhere in reverse mode, the origin included, as long as ``norm`` is (build it from
    :func:`safe_norm`, never ``jnp.linalg.norm``).
    """
    if clip_norm is None:
        return g
    return g * clip_scale(safe_norm(g) if norm is None else norm, clip_norm)


def clipped_coefficient(dmargin: jax.Array, x: jax.Array, clip_norm: float | None) -> jax.Array:
    """``a`` with ``a x = grad_clip(dmargin x, clip_norm)``: a linear model's clipped loss gradient.

    The norm is taken as ``|dmargin| |x|`` (the same up to rounding, NaN-safe at 0), and
    ``dmargin`` may have any shape (one per output). |x| does not depend on the model, so
    under a ``vmap`` over outputs, seeds or retrains it is computed once per sample instead
    of once per copy of the weights.
    """
    if clip_norm is None:
        return dmargin
    return dmargin * clip_scale(jnp.abs(dmargin) * safe_norm(x), clip_norm)


def clip_scale(norm: jax.Array, clip_norm: float) -> jax.Array:
    """``min(1, clip_norm / norm)`` with a finite reverse-mode derivative everywhere, 0 included.

    The division only sees norms above the clip (double ``where``), so no ``c / 0`` or
    ``c / tiny^2`` enters the derivative of the branch that is not taken.
    """
    over = norm > clip_norm
    return jnp.where(over, clip_norm / jnp.where(over, norm, 1.0), 1.0)
