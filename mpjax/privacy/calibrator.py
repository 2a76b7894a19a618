"""Calibrator: estimates G, D, (c, C) and the learning horizon N* from a stream.

During the CALIBRATION phase the learner calls :func:`observe` once per step
(inside its ``lax.scan``) with the gradient it used and the model ``theta_t`` at
which that gradient was taken. The stats are a pytree of fixed shape: a ring of
the last ``window`` gradient norms, the step count, ``theta_0`` (the ``theta``
of the first observation) and the running maximum of ``|theta_t - theta_0|``.
:func:`finalize` turns them, with the L-BFGS memory, into a :class:`Calibration`:

* ``G``: the ``quantile`` (default 0.95) of the finite gradient norms in the
  ring; the quantile discards the extreme tail, non-finite norms are ignored.
* ``D``: ``max_t |theta_t - theta_0|`` over finite iterates, capped by ``D_cap``.
* ``(c, C)``: the exact min/max eigenvalues of the L-BFGS inverse-Hessian
  operator ``H`` from its compact form (:func:`mpjax.lbfgs.eigen_bounds`;
  ``(1, 1)`` when the memory is empty).
* ``N_star = ceil((G D kappa / gamma_learn)^2)``, the number of steps after which
  the insert-regret bound ``G D kappa sqrt(N)`` averages below ``gamma_learn``.

The constant ``kappa``. ``bound="original"`` uses ``kappa = sqrt(c C)`` as
originally specified; ``bound="corrected"`` uses ``kappa = sqrt(C / c)``, which
is what preconditioned online gradient descent actually guarantees. For
``theta_{t+1} = Pi(theta_t - eta H g_t)`` with a fixed ``H`` whose eigenvalues
lie in ``[c, C]`` (projection in the ``H^{-1}``-norm), the usual potential
argument in the ``H^{-1}``-norm (Zinkevich 2003, Thm 1; Duchi, Hazan & Singer
2011, Sec. 1.1 / Prop. 2 for general fixed proximal terms) gives

    |theta_{t+1} - u|^2_{H^-1} <= |theta_t - u|^2_{H^-1} - 2 eta g_t.(theta_t - u) + eta^2 |g_t|^2_H,

so, summing, with ``|v|^2_{H^-1} <= |v|^2 / c`` and ``|g|^2_H <= C |g|^2``,

    R_T <= D^2 / (2 eta c) + eta C G^2 T / 2 = G D sqrt(C / c) sqrt(T)

at the best step ``eta = D / (G sqrt(c C T))``. The tuned bound must be
invariant under ``H -> s H`` (the step size absorbs the scale), and
``sqrt(C / c)`` is while ``sqrt(c C)`` is not: it scales like ``s``. The two
agree exactly when ``c = 1`` (not when ``c = C``); ``sqrt(C/c) >= sqrt(c C)``
iff ``c <= 1``. With the default L-BFGS scaling and ``|x| <= 1`` the true
per-sample Hessian has eigenvalues in ``[lambda, 1 + lambda]``, so ``c`` is
near ``1 / (1 + lambda)`` and both constants are near ``1 / sqrt(lambda)``.

Too few points: when fewer than ``min_points`` finite gradient norms were
observed, ``G = default_G`` and ``D = min(default_D, D_cap)`` (both default 1,
the values implied by ``|x| <= 1`` and unit-scale residuals) and ``status`` is
``STATUS_TOO_FEW_POINTS``.

References:
  M. Zinkevich. Online convex programming and generalized infinitesimal
  gradient ascent. ICML 2003.
  J. Duchi, E. Hazan, Y. Singer. Adaptive subgradient methods for online
  learning and stochastic optimization. JMLR 12, 2011.
  J. Nocedal, S. Wright. Numerical Optimization, 2nd ed., 2006, ch. 7.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpjax import lbfgs

__all__ = [
    "CalibratorStats",
    "Calibration",
    "STATUS_OK",
    "STATUS_TOO_FEW_POINTS",
    "BOUNDS",
    "init",
    "observe",
    "finalize",
    "kappa",
]

STATUS_OK = 0
STATUS_TOO_FEW_POINTS = 1
BOUNDS = ("original", "corrected")
_INT32_MAX = 2**31 - 1


class CalibratorStats(NamedTuple):
    grad_norms: jax.Array  # f[window] ring of recent |g_t|; NaN = empty or non-finite
    count: jax.Array  # i32[] observations so far (ring head is count % window)
    theta0: jax.Array  # f[d] theta of the first observation
    max_dist: jax.Array  # f[] running max over finite theta_t of |theta_t - theta0|


class Calibration(NamedTuple):
    G: jax.Array  # f[] gradient-norm bound (quantile)
    D: jax.Array  # f[] distance bound, capped
    c: jax.Array  # f[] lambda_min of the L-BFGS operator H
    C: jax.Array  # f[] lambda_max of H
    kappa: jax.Array  # f[] regret constant: sqrt(c C) (original) or sqrt(C / c) (corrected)
    N_star: jax.Array  # i32[] learning horizon, >= 1, saturates at 2^31 - 1
    n_points: jax.Array  # i32[] finite gradient norms used for G
    status: jax.Array  # i32[] STATUS_OK or STATUS_TOO_FEW_POINTS


def init(dim: int, window: int = 1024, dtype=jnp.float32) -> CalibratorStats:
    """Empty stats for a ``dim``-dimensional model and a ring of ``window`` norms."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return CalibratorStats(
        grad_norms=jnp.full((window,), jnp.nan, dtype),
        count=jnp.zeros((), jnp.int32),
        theta0=jnp.zeros((dim,), dtype),
        max_dist=jnp.zeros((), dtype),
    )


def observe(stats: CalibratorStats, grad: jax.Array, theta: jax.Array) -> CalibratorStats:
    """Records one step: the gradient ``grad`` (f[d]) taken at the model ``theta`` (f[d]).

    The first call fixes ``theta_0 = theta``; pass the pre-update model, so
    that ``theta_0`` is the initial model. Non-finite gradients are stored as
    NaN (ignored by :func:`finalize`); non-finite iterates do not move ``D``.
    """
    dtype = stats.grad_norms.dtype
    window = stats.grad_norms.shape[0]
    grad = jnp.asarray(grad, dtype)
    theta = jnp.asarray(theta, dtype)
    norm = jnp.linalg.norm(grad)
    norm = jnp.where(jnp.isfinite(norm), norm, jnp.nan)
    first = stats.count == 0
    theta0 = jnp.where(first, theta, stats.theta0)
    dist = jnp.linalg.norm(theta - theta0)
    dist = jnp.where(jnp.isfinite(dist), dist, 0.0)
    return CalibratorStats(
        grad_norms=stats.grad_norms.at[stats.count % window].set(norm),
        count=stats.count + 1,
        theta0=theta0,
        max_dist=jnp.maximum(stats.max_dist, dist),
    )


def _quantile(values, q):
    """np.quantile(values[isfinite], q) (linear interpolation) with a fixed shape; 0 if none."""
    valid = jnp.isfinite(values)
    n = jnp.sum(valid).astype(jnp.int32)
    ordered = jnp.sort(jnp.where(valid, values, jnp.inf))
    pos = q * (jnp.maximum(n, 1) - 1).astype(values.dtype)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, jnp.maximum(n - 1, 0))
    frac = pos - lo.astype(values.dtype)
    v_lo, v_hi = ordered[lo], ordered[hi]
    out = v_lo + frac * jnp.where(hi > lo, v_hi - v_lo, 0.0)
    return jnp.where(n > 0, out, 0.0), n


def kappa(c: jax.Array, C: jax.Array, bound: str = "original") -> jax.Array:
    """The regret constant: ``sqrt(c C)`` (``"original"``) or ``sqrt(C / c)`` (``"corrected"``)."""
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; valid bounds: {', '.join(BOUNDS)}")
    return jnp.sqrt(c * C) if bound == "original" else jnp.sqrt(C / c)


def finalize(
    stats: CalibratorStats,
    memory: lbfgs.LbfgsMemory,
    gamma_learn: jax.Array | float,
    *,
    quantile: float = 0.95,
    D_cap: jax.Array | float = jnp.inf,
    bound: str = "original",
    min_points: int = 32,
    default_G: float = 1.0,
    default_D: float = 1.0,
) -> Calibration:
    """Turns the stats and the L-BFGS memory into ``(G, D, c, C, N_star)``.

    Args:
      stats: the calibrator stats after the CALIBRATION phase.
      memory: the learner's L-BFGS memory (its ``H`` gives ``c`` and ``C``).
      gamma_learn: f[], target average regret of the LEARNING phase (> 0).
      quantile: which quantile of the gradient norms is ``G`` (0 < q <= 1).
      D_cap: upper cap on ``D`` (e.g. ``2 G / lambda``); default no cap.
      bound: static, ``"original"`` (``kappa = sqrt(c C)``) or ``"corrected"``
        (``kappa = sqrt(C / c)``, the preconditioned-OGD constant; see the
        module docstring).
      min_points: fewer finite gradient norms than this -> documented defaults.
      default_G: ``G`` used when there are too few points.
      default_D: ``D`` (before the cap) used when there are too few points.

    Returns:
      A :class:`Calibration` of scalars.

    Raises:
      ValueError: unknown ``bound``, or ``quantile`` outside (0, 1].
    """
    if bound not in BOUNDS:
        raise ValueError(f"unknown bound {bound!r}; valid bounds: {', '.join(BOUNDS)}")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    dtype = stats.grad_norms.dtype
    g_q, n = _quantile(stats.grad_norms, quantile)
    too_few = n < min_points
    G = jnp.where(too_few, jnp.asarray(default_G, dtype), g_q)
    D_raw = jnp.where(too_few, jnp.asarray(default_D, dtype), stats.max_dist)
    D = jnp.minimum(D_raw, jnp.asarray(D_cap, dtype))
    c, C = lbfgs.eigen_bounds(memory)
    c, C = c.astype(dtype), C.astype(dtype)
    k = kappa(c, C, bound)
    ratio = G * D * k / jnp.asarray(gamma_learn, dtype)
    n_star = jnp.ceil(ratio * ratio)
    n_star = jnp.where(jnp.isnan(n_star), float(_INT32_MAX), jnp.maximum(n_star, 1.0))
    return Calibration(
        G=G,
        D=D,
        c=c,
        C=C,
        kappa=k,
        N_star=_to_int32(n_star),
        n_points=n,
        status=jnp.where(too_few, STATUS_TOO_FEW_POINTS, STATUS_OK).astype(jnp.int32),
    )


def _to_int32(x):
    """Saturating float -> int32 (float32 cannot hold 2^31 - 1 exactly)."""
    big = x >= 2.0**31 - 128
    return jnp.where(big, _INT32_MAX, jnp.where(big, 0.0, x).astype(jnp.int32)).astype(jnp.int32)
