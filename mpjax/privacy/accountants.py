"""Privacy accountants for k adaptive compositions of the Gaussian mechanism.

Every deletion releases a model perturbed by Gaussian noise of scale
``sigma = z * Delta`` (``Delta`` the L2 sensitivity, ``z`` the noise multiplier).
An accountant maps ``(k, z, delta)`` to the ``epsilon`` of the k-fold adaptive
composition, and inverts it: ``(k, epsilon, delta) -> z``. All functions are
pure JAX, jittable and vmappable over their numeric arguments; the accountant
name is a static Python string.

Accountants (``ACCOUNTANTS``):

* ``"basic"``: basic composition (Dwork & Roth 2014, Thm 3.16) of k releases,
  each ``(epsilon / k, delta / k)``-DP, as originally specified. A release uses
  the classical Gaussian calibration ``z = sqrt(2 ln(1.25 / delta_step)) /
  epsilon_step`` (Dwork & Roth 2014, Thm A.1), which is only valid for
  ``epsilon_step < 1``; for ``epsilon_step >= 1`` it uses the exact analytic
  Gaussian mechanism (Balle & Wang 2018). :func:`epsilon` always returns a
  valid guarantee: the classical one when it is ``< 1``, else the analytic one.
* ``"zcdp"``: the Gaussian mechanism is ``rho = 1 / (2 z^2)``-zCDP, k releases
  are ``k rho``-zCDP, converted with the *standard* Bun & Steinke (2016,
  Prop. 1.3) bound ``epsilon = rho_tot + 2 sqrt(rho_tot ln(1 / delta))``. Both
  directions are closed forms. (The tighter conversion of Canonne, Kamath &
  Steinke 2020 is what ``"rdp"`` applies.)
* ``"rdp"``: Renyi DP ``alpha / (2 z^2)`` per release (Mironov 2017), additive
  over k releases, converted with the *improved* conversion of Balle et al.
  (2020, Thm 21) = Canonne, Kamath & Steinke (2020, Prop. 12),
  ``epsilon = min_alpha [k alpha / (2 z^2) + ln(1 - 1/alpha)
  - (ln delta + ln alpha) / (alpha - 1)]``, over the fixed grid ``RDP_ORDERS``
  (the default orders of Google's dp-accounting ``RdpAccountant``, whose
  conversion this reproduces exactly). Inverse by bisection in ``log z``.
* ``"exact"``: tight accounting. k compositions of a Gaussian mechanism with
  multiplier ``z`` are exactly as private as one Gaussian mechanism with
  multiplier ``z / sqrt(k)`` (the privacy-loss distribution of a Gaussian is
  Gaussian, and these compose by adding means and variances; Dong, Roth & Su
  2022, Cor. 3.3), whose exact ``(epsilon, delta)`` curve is that of the
  analytic Gaussian mechanism. This is what a PLD accountant approximates.

Precision: in float32 the bisections resolve ``z`` and ``epsilon`` to about
``1e-5`` relative (``2e-5`` for the analytic GM at ``epsilon < 0.1``, where the
two terms of ``delta(epsilon)`` nearly cancel); enable x64 for ~1e-12.

Numbers at ``(epsilon, delta) = (1, 1e-5)``, ``k = 100`` (``z = sigma / Delta``):
basic 571.7, zcdp 49.0, rdp 40.5, exact 37.3 (see tests/privacy). The classical
formula is loose: the analytic GM at the same (0.01, 1e-7) split gives 362.0.

References:
  C. Dwork, A. Roth. The Algorithmic Foundations of Differential Privacy. 2014.
  M. Bun, T. Steinke. Concentrated differential privacy: simplifications,
  extensions, and lower bounds. TCC 2016.
  I. Mironov. Renyi differential privacy. CSF 2017.
  B. Balle, Y.-X. Wang. Improving the Gaussian mechanism for differential
  privacy: analytical calibration and optimal denoising. ICML 2018.
  B. Balle, G. Barthe, M. Gaboardi, J. Hsu, T. Sato. Hypothesis testing
  interpretations and Renyi differential privacy. AISTATS 2020.
  C. Canonne, G. Kamath, T. Steinke. The discrete Gaussian for differential
  privacy. NeurIPS 2020.
  J. Dong, A. Roth, W. Su. Gaussian differential privacy. JRSS-B 2022.
"""

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import log_ndtr, ndtri

__all__ = [
    "ACCOUNTANTS",
    "RDP_ORDERS",
    "accountant_index",
    "epsilon",
    "noise_multiplier",
    "gaussian_delta",
    "gaussian_epsilon",
    "gaussian_noise_multiplier",
]

ACCOUNTANTS = ("basic", "zcdp", "rdp", "exact")

# dp_accounting.rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS (dp-accounting 0.6).
RDP_ORDERS = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(11, 64)] + [128.0, 256.0, 512.0, 1024.0]
)

_BISECT_ITERS = 64  # fixed-length bisections: bracket / 2^64 is below float64 resolution.


def accountant_index(accountant: str) -> int:
    """Position of ``accountant`` in ``ACCOUNTANTS``; ValueError listing valid names otherwise."""
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; valid accountants: {', '.join(ACCOUNTANTS)}")
    return ACCOUNTANTS.index(accountant)


def _floats(*xs):
    dtype = jnp.result_type(float)  # float32, or float64 under x64
    return tuple(jnp.asarray(x, dtype) for x in xs)


# ----------------------------------------------------------------------------
# Analytic Gaussian mechanism (one release, sensitivity 1).


def _log_delta(eps, z):
    """log delta(eps) of one Gaussian release with multiplier z (Balle & Wang 2018, Thm 8).

    delta(eps) = Phi(1/(2z) - eps z) - e^eps Phi(-1/(2z) - eps z), evaluated in
    log space: log delta = x + log(1 - exp(y - x)), x = log Phi(1/(2z) - eps z),
    y = eps + log Phi(-1/(2z) - eps z); -inf when y >= x (delta = 0).
    """
    a = 0.5 / z
    x = log_ndtr(a - eps * z)
    y = eps + log_ndtr(-a - eps * z)
    pos = y < x
    diff = jnp.where(pos, y - x, -1.0)
    return jnp.where(pos, x + jnp.log(-jnp.expm1(diff)), -jnp.inf)


def gaussian_delta(eps: jax.Array | float, noise_multiplier: jax.Array | float) -> jax.Array:
    """Exact ``delta(eps)`` of one Gaussian release with ``sigma = noise_multiplier * Delta``.

    ``delta = Phi(Delta/(2 sigma) - eps sigma/Delta) - e^eps Phi(-Delta/(2 sigma) - eps sigma/Delta)``
    (Balle & Wang 2018, Thm 8), computed in log space.

    Args:
      eps: f[], epsilon >= 0.
      noise_multiplier: f[], ``z = sigma / Delta > 0``.

    Returns:
      f[], the smallest delta for which the release is (eps, delta)-DP.
    """
    eps, z = _floats(eps, noise_multiplier)
    return jnp.exp(_log_delta(eps, z))


def gaussian_noise_multiplier(eps: jax.Array | float, delta: jax.Array | float) -> jax.Array:
    """Smallest ``z = sigma / Delta`` making one Gaussian release (eps, delta)-DP (analytic GM).

    Bisection on ``log z`` of the defining equation ``delta(eps, z) = delta``
    (Balle & Wang 2018, Alg. 1 solves the same equation). The start bracket's
    upper end ``z_hi = (a + sqrt(a^2 + 2 eps)) / (2 eps)``, ``a = -Phi^{-1}(delta)``,
    solves ``Phi(1/(2z) - eps z) = delta`` and is always feasible; the returned
    value is the feasible end of the final bracket (conservative).

    Args:
      eps: f[], epsilon > 0 (0 gives inf).
      delta: f[], 0 < delta < 1/2.

    Returns:
      f[], the noise multiplier.
    """
    eps, delta = _floats(eps, delta)
    ok = eps > 0
    e = jnp.where(ok, eps, 1.0)
    a = -ndtri(delta)
    hi = (a + jnp.sqrt(a * a + 2.0 * e)) / (2.0 * e)
    log_target = jnp.log(delta)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        feasible = _log_delta(e, jnp.exp(mid)) <= log_target
        return jnp.where(feasible, lo, mid), jnp.where(feasible, mid, hi)

    _, log_hi = lax.fori_loop(0, _BISECT_ITERS, body, (jnp.log(hi) - jnp.log(1e3), jnp.log(hi)))
    return jnp.where(ok, jnp.exp(log_hi), jnp.inf)


def gaussian_epsilon(noise_multiplier: jax.Array | float, delta: jax.Array | float) -> jax.Array:
    """Smallest ``eps`` for which one Gaussian release with multiplier ``z`` is (eps, delta)-DP.

    Bisection on ``eps`` in ``[0, eps_hi]`` with ``eps_hi = (1/(2z) + a) / z``,
    ``a = -Phi^{-1}(delta)`` (where ``Phi(1/(2z) - eps z) = delta``, always
    feasible); returns the feasible end of the final bracket (conservative),
    and 0 when ``delta(0) <= delta``.

    Args:
      noise_multiplier: f[], ``z = sigma / Delta`` (0 gives inf).
      delta: f[], 0 < delta < 1/2.

    Returns:
      f[], epsilon.
    """
    z, delta = _floats(noise_multiplier, delta)
    ok = z > 0
    zs = jnp.where(ok, z, 1.0)
    a = -ndtri(delta)
    hi = jnp.maximum((0.5 / zs + a) / zs, 0.0)
    log_target = jnp.log(delta)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        feasible = _log_delta(mid, zs) <= log_target
        return jnp.where(feasible, lo, mid), jnp.where(feasible, mid, hi)

    _, eps = lax.fori_loop(0, _BISECT_ITERS, body, (jnp.zeros_like(hi), hi))
    eps = jnp.where(_log_delta(jnp.zeros_like(zs), zs) <= log_target, 0.0, eps)
    return jnp.where(ok, eps, jnp.inf)


# ----------------------------------------------------------------------------
# Per-accountant epsilon(k, z, delta) and z(k, eps, delta), for k >= 1.


def _classical_z(eps_step, delta_step):
    """Dwork & Roth (2014, Thm A.1): z = sqrt(2 ln(1.25 / delta)) / eps, valid for eps < 1."""
    return jnp.sqrt(2.0 * jnp.log(1.25 / delta_step)) / eps_step


def _basic_epsilon(k, z, delta):
    delta_step = delta / k
    classical = jnp.sqrt(2.0 * jnp.log(1.25 / delta_step)) / z
    eps_step = jnp.where(classical < 1.0, classical, gaussian_epsilon(z, delta_step))
    return k * eps_step


def _basic_z(k, eps, delta):
    eps_step, delta_step = eps / k, delta / k
    classical = _classical_z(jnp.where(eps_step < 1.0, eps_step, 1.0), delta_step)
    return jnp.where(eps_step < 1.0, classical, gaussian_noise_multiplier(eps_step, delta_step))


def _zcdp_epsilon(k, z, delta):
    rho = k / (2.0 * z * z)
    return rho + 2.0 * jnp.sqrt(rho * jnp.log(1.0 / delta))


def _zcdp_z(k, eps, delta):
    # sqrt(rho) = sqrt(L + eps) - sqrt(L), L = ln(1/delta), written without cancellation.
    log_inv = jnp.log(1.0 / delta)
    sqrt_rho = eps / (jnp.sqrt(log_inv + eps) + jnp.sqrt(log_inv))
    return jnp.sqrt(k / 2.0) / sqrt_rho


def _rdp_epsilon(k, z, delta):
    orders = jnp.asarray(RDP_ORDERS, z.dtype)
    rdp = k * orders / (2.0 * z * z)
    eps = rdp + jnp.log1p(-1.0 / orders) - (jnp.log(delta) + jnp.log(orders)) / (orders - 1.0)
    # Same special cases as dp_accounting.rdp.compute_epsilon: tiny divergence => eps = 0.
    eps = jnp.where(delta * delta + jnp.expm1(-rdp) > 0, 0.0, eps)
    eps = jnp.where(orders > 1.01, eps, jnp.inf)
    return jnp.maximum(jnp.min(eps), 0.0)


def _rdp_z(k, eps, delta):
    # rdp is never tighter than exact, so exact's z is infeasible-or-equal (lower end).
    lo = jnp.log(_exact_z(k, eps, delta))
    hi = lo + jnp.log(1e3)

    def body(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        feasible = _rdp_epsilon(k, jnp.exp(mid), delta) <= eps
        return jnp.where(feasible, lo, mid), jnp.where(feasible, mid, hi)

    hi_feasible = _rdp_epsilon(k, jnp.exp(hi), delta) <= eps
    _, log_z = lax.fori_loop(0, _BISECT_ITERS, body, (lo, hi))
    # eps below what the order grid can certify at any z (eps < ~0.004 at delta = 1e-5): inf.
    return jnp.where(hi_feasible, jnp.exp(log_z), jnp.inf)


def _exact_epsilon(k, z, delta):
    return gaussian_epsilon(z / jnp.sqrt(k), delta)


def _exact_z(k, eps, delta):
    return jnp.sqrt(k) * gaussian_noise_multiplier(eps, delta)


_EPSILON = {"basic": _basic_epsilon, "zcdp": _zcdp_epsilon, "rdp": _rdp_epsilon, "exact": _exact_epsilon}
_Z = {"basic": _basic_z, "zcdp": _zcdp_z, "rdp": _rdp_z, "exact": _exact_z}


def epsilon(
    accountant: str,
    k: jax.Array | int,
    noise_multiplier: jax.Array | float,
    delta: jax.Array | float,
) -> jax.Array:
    """Epsilon of k adaptive Gaussian releases with multiplier ``z``, at total ``delta``.

    Args:
      accountant: static, one of ``ACCOUNTANTS``.
      k: i[] or f[], number of compositions (>= 0; 0 gives 0).
      noise_multiplier: f[], ``z = sigma / Delta > 0``.
      delta: f[], total delta, 0 < delta < 1/2.

    Returns:
      f[], the total epsilon (for ``"basic"``: ``k`` times the per-release
      epsilon at ``delta / k``).

    Raises:
      ValueError: unknown accountant.
    """
    accountant_index(accountant)
    k, z, delta = _floats(k, noise_multiplier, delta)
    k_safe = jnp.maximum(k, 1.0)
    return jnp.where(k > 0, _EPSILON[accountant](k_safe, z, delta), 0.0)


def noise_multiplier(
    accountant: str,
    k: jax.Array | int,
    eps: jax.Array | float,
    delta: jax.Array | float,
) -> jax.Array:
    """Smallest ``z = sigma / Delta`` for which k adaptive releases are (eps, delta)-DP.

    For ``"basic"`` this is the per-release calibration at ``(eps/k, delta/k)``
    (classical formula if ``eps/k < 1``, analytic GM otherwise); ``"zcdp"`` is a
    closed form; ``"rdp"`` and ``"exact"`` use fixed-length bisections, so a
    capacity curve over a grid of ``(k, eps, delta)`` is one ``vmap``.

    Args:
      accountant: static, one of ``ACCOUNTANTS``.
      k: i[] or f[], number of compositions (>= 0; 0 gives 0).
      eps: f[], total epsilon > 0.
      delta: f[], total delta, 0 < delta < 1/2.

    Returns:
      f[], the noise multiplier (inf when no finite z certifies ``eps``).

    Raises:
      ValueError: unknown accountant.
    """
    accountant_index(accountant)
    k, eps, delta = _floats(k, eps, delta)
    k_safe = jnp.maximum(k, 1.0)
    return jnp.where(k > 0, _Z[accountant](k_safe, eps, delta), 0.0)
