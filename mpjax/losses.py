"""Per-sample losses of a linear model and their gradients.

A loss is a pair of pure functions of one example, ``value(w, x, y)`` and
``grad(w, x, y)``, for a scalar target ``y`` and weights ``w: f32[d]``. They
are unregularised: the ridge term (lambda/2)||w||^2 is added by the learners
that use it, and once (not per step) by the hindsight comparator in
``mpjax.regret``.

Targets: squared loss regresses a one-hot coordinate in {0, 1}; logistic loss
takes the same coordinate as a binary label. A class index is never regressed
as a number.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Loss", "LOSSES", "get", "squared", "logistic"]


class Loss(NamedTuple):
    name: str
    value: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    grad: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    # d loss / d margin, so grad = dmargin * x; used where the margin is already known.
    dmargin: Callable[[jax.Array, jax.Array], jax.Array]
    margin_value: Callable[[jax.Array, jax.Array], jax.Array]


def _sq_margin_value(z, y):
    r = z - y
    return 0.5 * r * r


def _sq_dmargin(z, y):
    return z - y


def _log_margin_value(z, y):
    # softplus(z) - y z, stable for large |z|.
    return jnp.logaddexp(0.0, z) - y * z


def _log_dmargin(z, y):
    return jax.nn.sigmoid(z) - y


def _make(name, margin_value, dmargin):
    def value(w, x, y):
        return margin_value(jnp.dot(x, w), y)

    def grad(w, x, y):
        return dmargin(jnp.dot(x, w), y) * x

    return Loss(name, value, grad, dmargin, margin_value)


squared = _make("squared", _sq_margin_value, _sq_dmargin)
logistic = _make("logistic", _log_margin_value, _log_dmargin)

LOSSES = {"squared": squared, "logistic": logistic}


def get(name: str) -> Loss:
    """Returns the loss called ``name`` ("squared" or "logistic")."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}") from None
