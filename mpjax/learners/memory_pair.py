"""Memory-Pair learner: online L-BFGS insert on a linear model.

Each sample is one quasi-Newton step on the regularised per-sample objective
f_t(w) = l_t(w) + lambda/2 |w|^2 (lambda-strongly convex):

  g   = clip(grad l_t(w), G) + lambda w
  p   = H g                      (two-loop product over the ring memory)
  w'  = w - step,  step = eta_t p, shrunk to norm <= max_step
  s   = w' - w,  y = grad f_t(w') - grad f_t(w) = (l'(x.w') - l'(x.w)) x + lambda s
  push (s, y) unless s.y <= eps |s||y|   (curvature pair of the same sample, ridge included)

with eta_t = learning_rate / sqrt(t), t = 1, 2, ... The decaying step and the
step-norm cap keep the iterates bounded on bounded features; the gradient clip
at G is what the deletion's sensitivity bound G/lambda relies on.

Each pair is tagged with the id of the sample that produced it, so a deletion
can purge it (see :mod:`mpjax.unlearning`).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpjax import lbfgs, losses
from mpjax.learners.base import Learner, check_nonnegative, check_positive, from_wstep, grad_clip, safe_norm

__all__ = ["MemoryPairState", "make", "insert", "restart", "purge", "precondition", "eigen_bounds"]


class MemoryPairState(NamedTuple):
    w: jax.Array  # f[d]
    memory: lbfgs.LbfgsMemory  # ring of curvature pairs
    t: jax.Array  # i32[] insert steps taken
    key: jax.Array  # PRNG key (deletion noise)


class _Hyper(NamedTuple):
    fn: losses.Loss
    learning_rate: float
    l2: float
    clip_norm: float | None
    max_step: float | None
    curvature_eps: float
    min_curvature: float


def make(
    memory_size: int = 10,
    learning_rate: float = 0.5,
    l2: float = 1e-2,
    loss: str = "squared",
    clip_norm: float | None = 1.0,
    max_step: float | None = 1.0,
    curvature_eps: float = 1e-8,
    min_curvature: float = 0.0,
) -> Learner:
    """The Memory-Pair insert learner.

    Args:
      memory_size: m, the number of curvature pairs in the ring.
      learning_rate: eta in eta_t = eta / sqrt(t).
      l2: ridge strength lambda (> 0); also the strong-convexity constant.
      loss: "squared" or "logistic".
      clip_norm: G, loss gradients are clipped to this norm (None: off).
      max_step: cap on the norm of one update (None: off).
      curvature_eps: pairs with s.y <= eps |s||y| are skipped.
      min_curvature: pairs with s.y < min_curvature |s|^2 are skipped as well
        (0: off). A single-sample pair has curvature only lambda orthogonal to
        x; skipping those keeps H_0 = gamma I below 1 / min_curvature.
    """
    if not isinstance(memory_size, int) or memory_size < 1:
        raise ValueError(f"memory_size must be a positive int, got {memory_size!r}")
    check_positive(learning_rate=learning_rate, l2=l2)
    check_nonnegative(curvature_eps=curvature_eps, min_curvature=min_curvature)
    for name, value in (("clip_norm", clip_norm), ("max_step", max_step)):
        if value is not None:
            check_positive(**{name: value})
    hyper = _Hyper(losses.get(loss), learning_rate, l2, clip_norm, max_step, curvature_eps, min_curvature)

    def init(dim, key):
        w = jnp.zeros((dim,), float)
        return MemoryPairState(
            w, lbfgs.init(memory_size, dim, w.dtype), jnp.zeros((), jnp.int32), key
        )

    def wstep(state, x, y, weight):
        return insert(hyper, state, x, y, state.t, weight)

    def predict(state, x):
        return jnp.dot(x, state.w)

    def loss_fn(state, x, y):
        return hyper.fn.value(state.w, x, y)

    return from_wstep(init, wstep, predict, loss_fn, hyper)


def insert(hyper: _Hyper, state: MemoryPairState, x, y, tag, weight=1.0):
    """One insert step; returns ``(state, loss before the update)``.

    ``weight`` multiplies the sample's clipped loss gradient and the loss part of
    its curvature pair (the ridge part stays), as :mod:`mpjax.learners.base` defines.
    """
    fn = hyper.fn
    z = jnp.dot(x, state.w)
    loss = fn.margin_value(z, y)
    g_loss = weight * grad_clip(fn.dmargin(z, y) * x, hyper.clip_norm)
    g = g_loss + hyper.l2 * state.w
    p = lbfgs.two_loop(state.memory, g)
    eta = hyper.learning_rate * jax.lax.rsqrt(jnp.asarray(state.t + 1, g.dtype))
    step = eta * p
    if hyper.max_step is not None:
        norm = safe_norm(step)
        step = step * jnp.minimum(1.0, hyper.max_step / jnp.maximum(norm, jnp.finfo(g.dtype).tiny))
    w = state.w - step
    s = w - state.w
    # The pair records the true curvature of f_t along s (unclipped gradients).
    y_pair = weight * (fn.dmargin(jnp.dot(x, w), y) - fn.dmargin(z, y)) * x + hyper.l2 * s
    memory, _ = lbfgs.push(state.memory, s, y_pair, tag, hyper.curvature_eps, hyper.min_curvature)
    return MemoryPairState(w, memory, state.t + 1, state.key), loss


def restart(state: MemoryPairState, w: jax.Array) -> MemoryPairState:
    """The state with weights ``w`` and an empty curvature memory (counter and key kept).

    Used after an exact deletion: every stored pair is a difference of iterates
    that depended on the deleted row, so the whole memory goes, not only the row's
    own pairs. Later inserts continue the online learner from ``w``.
    """
    m, d = state.memory.s.shape
    return MemoryPairState(w.astype(state.w.dtype), lbfgs.init(m, d, state.w.dtype), state.t, state.key)


def precondition(hyper: _Hyper, state: MemoryPairState, g: jax.Array) -> jax.Array:
    """``H g``: the learner's current inverse-Hessian approximation applied to ``g`` (f[d])."""
    del hyper
    return lbfgs.two_loop(state.memory, g)


def eigen_bounds(hyper: _Hyper, state: MemoryPairState) -> tuple[jax.Array, jax.Array]:
    """``(c, C)``: the extreme eigenvalues of the operator :func:`precondition` applies."""
    del hyper
    return lbfgs.eigen_bounds(state.memory)


def purge(state: MemoryPairState, tag: jax.Array | int) -> MemoryPairState:
    """The state without the curvature pairs that sample ``tag`` contributed to."""
    return MemoryPairState(state.w, lbfgs.purge(state.memory, tag), state.t, state.key)
