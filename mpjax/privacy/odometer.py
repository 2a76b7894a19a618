"""Privacy odometer: deletion capacity under a regret budget, and per-deletion spending.

One odometer per deletion mechanism (:mod:`mpjax.unlearning`):

* ``exact``: :func:`exact_state`, no noise and no budget (the output equals the retrain).
* ``polish``: :func:`finalize_polish`, noise ``sigma = z(m, eps, delta) Delta`` fixed by
  the configuration before any data, the accountant composing the ``m`` releases and a
  regret condition charged per prediction (:func:`polish_charge`); :func:`polish_capacity`
  gives the largest ``m`` that condition admits (the capacity curve).
* ``seed``: :func:`finalize`, the original regret-budget search, described below.

:func:`spend` is shared: it counts deletions and composes epsilon.

:func:`finalize` solves, once, for the deletion capacity ``m``: the largest
``m >= 1`` with

    (R_ins + R_del(m)) / T <= gamma_priv,

then fixes the noise of every deletion for that ``m`` and the chosen accountant.
:func:`spend` is called once per deletion request (inside the scan): it allows
deletions ``1..m`` and refuses the ``(m+1)``-th, leaving the state unchanged,
so a deletion beyond capacity is never applied.

Sensitivity. A deletion adds Gaussian noise of scale ``sigma = z Delta`` with the
data-independent sensitivity ``Delta = G / lambda``: for a lambda-strongly
convex objective whose per-sample gradients are clipped to ``G``, removing one
sample moves the minimiser by at most ``G / lambda``. Never the realised step.

Regret model (both terms are upper bounds; see Caveat).

* Insert regret: ``R_ins = G D kappa sqrt(T)`` with ``kappa`` the calibrator's
  constant (``sqrt(c C)`` as originally specified, or ``sqrt(C / c)``; see
  :mod:`mpjax.privacy.calibrator`), so both phases use the same bound.
* Deletion regret: a deletion moves the model from ``theta`` to
  ``theta' = theta + u + xi``, with removal step ``|u| <= Delta = G / lambda``
  and noise ``xi ~ N(0, sigma^2 I_d)``. ``|xi|`` is a ``sigma``-Lipschitz
  function of a standard normal vector with mean ``<= sigma sqrt(d)``, so by
  Gaussian concentration (Boucheron, Lugosi & Massart 2013, Thm 5.6)
  ``P(|xi| > sigma (sqrt(d) + t)) <= exp(-t^2 / 2)``. Taking
  ``t = sqrt(2 ln(m / delta_B))`` and a union bound over the ``m`` deletions,
  with probability ``>= 1 - delta_B`` every deletion moves the model by at most
  ``Delta + sigma (sqrt(d) + sqrt(2 ln(m / delta_B)))``. The losses are
  ``G``-Lipschitz on the clipped region, so each deletion changes the loss the
  learner pays at its next prediction by at most ``G`` times that distance:

      R_del(m) = m G (Delta + sigma(m) (sqrt(d) + sqrt(2 ln(m / delta_B)))),

  where ``sigma(m) = z(m) Delta`` grows with ``m`` (more compositions share
  the same total ``(epsilon, delta)``), so feasibility is monotone in ``m`` and
  ``m`` is found by a fixed-length binary search.

Caveat: ``R_del`` charges each displacement once (the next prediction) and
assumes the learner's insert bound, which depends on the start only through
``D``, covers the rest of the stream from the displaced model. A learner that
does not re-converge, or whose displaced model leaves the ball of radius ``D``,
is not covered; for a contractive (strongly convex, step ``eta``) learner the
effect of a displacement summed over the rest of the stream is at most
``1 / (eta lambda)`` times the one-step charge.

Failure mode: if not even ``m = 1`` fits the budget, ``m`` is set to 1 (the full
``(epsilon, delta)`` on one deletion) and ``status = STATUS_CAPACITY_ONE``: the
next deletion after that one forces a retrain.

Spending. ``eps_spent`` after ``k`` deletions is the accountant's epsilon for
``k`` compositions at the fixed noise: for ``"basic"`` exactly ``k eps_step``
and ``delta_spent = k delta_step`` with ``(eps_step, delta_step) =
(eps_total / m, delta_total / m)``; for ``"zcdp"``, ``"rdp"`` and ``"exact"``
the composed value ``epsilon(accountant, k, z, delta_total)`` (sub-additive,
not ``k eps_step``), ``delta_spent = delta_total`` once ``k >= 1``, and
``(eps_step, delta_step) = (epsilon(accountant, 1, z, delta_total),
delta_total)`` is the guarantee of one deletion alone.

References:
  C. Dwork, A. Roth. The Algorithmic Foundations of Differential Privacy. 2014.
  M. Bun, T. Steinke. Concentrated differential privacy. TCC 2016.
  I. Mironov. Renyi differential privacy. CSF 2017.
  B. Balle, Y.-X. Wang. Improving the Gaussian mechanism for differential
  privacy. ICML 2018.
  S. Boucheron, G. Lugosi, P. Massart. Concentration Inequalities. OUP 2013.
  C. Guo, T. Goldstein, A. Hannun, L. van der Maaten. Certified data removal
  from machine learning models. ICML 2020 (noise calibrated to a
  data-independent removal sensitivity).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mpjax import lbfgs
from mpjax.privacy import accountants as acc
from mpjax.privacy import calibrator as cal

__all__ = [
    "OdometerState",
    "STATUS_OK",
    "STATUS_CAPACITY_ONE",
    "STATUS_AT_MAX",
    "STATUS_EXACT",
    "STATUS_REGRET",
    "polish_charge",
    "finalize_polish",
    "polish_capacity",
    "exact_state",
    "insert_regret",
    "deletion_regret",
    "finalize",
    "spend",
]

STATUS_OK = 0
STATUS_CAPACITY_ONE = 1  # no m >= 1 fits the budget; m forced to 1, the next delete forces retrain
STATUS_AT_MAX = 2  # the search hit min(max_deletions, T); the true capacity may be larger
STATUS_EXACT = 3  # exact mechanism: no noise, no budget
STATUS_REGRET = 4  # polish: the regret condition fails at the configured noise; m = 0
_INT32_MAX = 2**31 - 1


class OdometerState(NamedTuple):
    m: jax.Array  # i32[] deletion capacity, >= 1
    used: jax.Array  # i32[] deletions applied so far, <= m
    eps_spent: jax.Array  # f[] epsilon after `used` deletions
    delta_spent: jax.Array  # f[] delta after `used` deletions
    sigma: jax.Array  # f[] noise std of every deletion, z * Delta
    noise_multiplier: jax.Array  # f[] z = sigma / Delta
    sensitivity: jax.Array  # f[] Delta = G / lambda
    eps_step: jax.Array  # f[] per-deletion epsilon (see module docstring)
    delta_step: jax.Array  # f[] per-deletion delta
    eps_total: jax.Array  # f[] total budget
    delta_total: jax.Array  # f[]
    regret_insert: jax.Array  # f[] R_ins
    regret_delete: jax.Array  # f[] R_del(m)
    accountant: jax.Array  # i32[] index into accountants.ACCOUNTANTS
    status: jax.Array  # i32[] STATUS_*


def insert_regret(G, D, kappa, T) -> jax.Array:
    """``R_ins = G D kappa sqrt(T)``, the insert-regret bound (f[])."""
    (G, D, kappa, T) = (jnp.asarray(v, jnp.result_type(float)) for v in (G, D, kappa, T))
    return G * D * kappa * jnp.sqrt(T)


def deletion_regret(m, noise_multiplier, G, lam, dim: int, delta_B) -> jax.Array:
    """``R_del(m) = m G Delta (1 + z (sqrt(d) + sqrt(2 ln(m / delta_B))))``, ``Delta = G / lam`` (f[]).

    Holds jointly for all ``m`` deletions with probability ``>= 1 - delta_B``
    (derivation in the module docstring).
    """
    dtype = jnp.result_type(float)
    m, z, G, lam, delta_B = (jnp.asarray(v, dtype) for v in (m, noise_multiplier, G, lam, delta_B))
    sens = G / lam
    beta = jnp.sqrt(float(dim)) + jnp.sqrt(2.0 * jnp.log(jnp.maximum(m, 1.0) / delta_B))
    return m * G * (sens + z * sens * beta)


def _composed(accountant_id, k, z, eps_step, delta_step, delta_total):
    """(eps, delta) after k deletions, with the accountant chosen by a traced index."""
    kf = k.astype(z.dtype)

    def basic(_):
        return kf * eps_step, kf * delta_step

    def other(name):
        return lambda _: (acc.epsilon(name, k, z, delta_total), jnp.where(k > 0, delta_total, 0.0))

    branches = [basic if name == "basic" else other(name) for name in acc.ACCOUNTANTS]
    return lax.switch(accountant_id, branches, None)


def finalize(
    calibration: "cal.Calibration | cal.CalibratorStats",
    T: jax.Array | int,
    gamma_priv: jax.Array | float,
    eps_total: jax.Array | float,
    delta_total: jax.Array | float,
    lam: jax.Array | float,
    delta_B: jax.Array | float,
    *,
    accountant: str = "basic",
    dim: int | None = None,
    memory: lbfgs.LbfgsMemory | None = None,
    bound: str = "original",
    max_deletions: int = 2**20,
) -> OdometerState:
    """Solves the deletion capacity ``m`` and fixes the per-deletion noise.

    Args:
      calibration: a :class:`~mpjax.privacy.calibrator.Calibration`, or raw
        :class:`~mpjax.privacy.calibrator.CalibratorStats` (then ``memory`` is
        required and the calibrator is finalized with its defaults and ``bound``).
      T: total stream length (number of insertions).
      gamma_priv: f[], target average regret ``(R_ins + R_del) / T``.
      eps_total: f[], total epsilon for all deletions.
      delta_total: f[], total delta for all deletions.
      lam: f[], strong-convexity (ridge) constant lambda > 0.
      delta_B: f[], failure probability of the noise-norm bound (all deletions jointly).
      accountant: static, one of ``accountants.ACCOUNTANTS``.
      dim: static model dimension ``d``; required with a ``Calibration``.
      memory: L-BFGS memory; required with ``CalibratorStats``.
      bound: static, passed to the calibrator with ``CalibratorStats``.
      max_deletions: static upper end of the binary search (also capped by ``T``).

    Returns:
      An :class:`OdometerState` with ``used = 0``.

    Raises:
      ValueError: unknown accountant, missing ``dim``/``memory``, bad ``max_deletions``.
      TypeError: ``calibration`` of another type.
    """
    acc_id = acc.accountant_index(accountant)
    if max_deletions < 1:
        raise ValueError(f"max_deletions must be >= 1, got {max_deletions}")
    if isinstance(calibration, cal.CalibratorStats):
        if memory is None:
            raise ValueError("finalize(CalibratorStats, ...) needs memory= (the L-BFGS memory)")
        dim = calibration.theta0.shape[-1] if dim is None else dim
        calibration = cal.finalize(calibration, memory, 1.0, bound=bound)
    elif isinstance(calibration, cal.Calibration):
        if dim is None:
            raise ValueError("finalize(Calibration, ...) needs dim= (the model dimension)")
    else:
        raise TypeError(f"expected Calibration or CalibratorStats, got {type(calibration).__name__}")

    dtype = jnp.result_type(float)
    T_f, gamma_priv, eps_total, delta_total, lam, delta_B = (
        jnp.asarray(v, dtype) for v in (T, gamma_priv, eps_total, delta_total, lam, delta_B)
    )
    G = calibration.G.astype(dtype)
    r_ins = insert_regret(G, calibration.D, calibration.kappa, T_f)
    budget = gamma_priv * T_f

    def fits(m):
        z = acc.noise_multiplier(accountant, m, eps_total, delta_total)
        return r_ins + deletion_regret(m, z, G, lam, dim, delta_B) <= budget

    found, m_hi = _largest_fitting(fits, T_f, max_deletions)
    status = jnp.where(found == 0, STATUS_CAPACITY_ONE, jnp.where(found >= m_hi, STATUS_AT_MAX, STATUS_OK))
    m = jnp.maximum(found, 1)

    z = acc.noise_multiplier(accountant, m, eps_total, delta_total)
    sens = G / lam
    eps_step, delta_step = _step_guarantee(accountant, m, z, eps_total, delta_total)
    zero = jnp.zeros((), dtype)
    return OdometerState(
        m=m,
        used=jnp.zeros((), jnp.int32),
        eps_spent=zero,
        delta_spent=zero,
        sigma=z * sens,
        noise_multiplier=z,
        sensitivity=sens,
        eps_step=eps_step,
        delta_step=delta_step,
        eps_total=eps_total,
        delta_total=delta_total,
        regret_insert=r_ins,
        regret_delete=deletion_regret(m, z, G, lam, dim, delta_B),
        accountant=jnp.asarray(acc_id, jnp.int32),
        status=status.astype(jnp.int32),
    )


def _largest_fitting(fits, T_f, max_deletions: int):
    """``(largest m in [0, m_hi] with fits(m), m_hi)``, ``m_hi = min(T, max_deletions)``; fits is monotone.

    A fixed-length binary search (``fits(0)`` holds by convention), so it jits and vmaps.
    """
    m_hi = jnp.minimum(jnp.floor(T_f), float(max_deletions)).astype(jnp.int32)

    def search(_, bracket):
        lo, hi = bracket
        active = lo < hi
        mid = (lo + hi + 1) // 2
        ok = fits(jnp.maximum(mid, 1))
        return jnp.where(active & ok, mid, lo), jnp.where(active & ~ok, mid - 1, hi)

    n_iter = int(max_deletions).bit_length() + 1
    found, _ = lax.fori_loop(0, n_iter, search, (jnp.zeros((), jnp.int32), m_hi))
    return found, m_hi


def _step_guarantee(accountant: str, m, z, eps_total, delta_total):
    """``(eps_step, delta_step)``: the guarantee of one deletion alone (module docstring, Spending)."""
    mf = jnp.maximum(m, 1).astype(z.dtype)
    if accountant == "basic":
        return eps_total / mf, delta_total / mf
    return acc.epsilon(accountant, 1, z, delta_total), delta_total


def polish_charge(noise_multiplier, delta_cert, lam, num_outputs: int, loss: str = "squared") -> jax.Array:
    """Expected excess loss of one prediction with a polished release over the exact minimiser (f[]).

    A ``polish`` release is ``W~ + sigma Xi`` with ``|W~ - W*|_F <= Delta``, ``sigma = z Delta``,
    ``Xi ~ N(0, I_{K x d})``. With ``|x| <= 1`` and one-hot ``y``:

    * squared loss: ``F(W*) <= F(0)`` gives ``|W*|_F <= 1 / sqrt(lambda)``, so the loss
      gradient at ``W*`` is at most ``G_b = 1 + 1 / sqrt(lambda)`` (data-independent), and
      ``E l(W~ + sigma Xi) - l(W*) <= G_b Delta + 1/2 (Delta^2 + K sigma^2)`` (the noise is
      zero-mean; its quadratic term is ``1/2 E|sigma Xi x|^2 = 1/2 K sigma^2 |x|^2``);
    * logistic loss (per output 1-Lipschitz in the margin, 1/4-smooth): ``G_b = sqrt(K)``
      and the quadratic term is ``1/8 (Delta^2 + K sigma^2)``.
    """
    if loss not in ("squared", "logistic"):
        raise ValueError(f"unknown loss {loss!r}; valid: squared, logistic")
    dtype = jnp.result_type(float)
    z, dc, lam = (jnp.asarray(v, dtype) for v in (noise_multiplier, delta_cert, lam))
    if loss == "squared":
        g_b, curv = 1.0 + 1.0 / jnp.sqrt(lam), 0.5
    else:
        g_b, curv = jnp.sqrt(float(num_outputs)), 0.125
    return g_b * dc + curv * (dc * dc + num_outputs * (z * dc) ** 2)


def _polish_condition(calibration, T, gamma_priv, eps_total, delta_total, lam, delta_cert, num_outputs, loss,
                      accountant):
    """``fits(m) -> (holds, z, R_ins, R_del)`` of the polish regret condition, arguments as floats."""
    dtype = jnp.result_type(float)
    T_f, gamma_priv, eps_total, delta_total, lam, delta_cert = (
        jnp.asarray(v, dtype) for v in (T, gamma_priv, eps_total, delta_total, lam, delta_cert))
    r_ins = insert_regret(calibration.G, calibration.D, calibration.kappa, T_f)

    def fits(m):
        z = acc.noise_multiplier(accountant, m, eps_total, delta_total)
        r_del = T_f * polish_charge(z, delta_cert, lam, num_outputs, loss)
        return r_ins + r_del <= gamma_priv * T_f, z, r_ins, r_del

    return fits, T_f, eps_total, delta_total, delta_cert


def finalize_polish(
    calibration: cal.Calibration,
    T: jax.Array | int,
    gamma_priv: jax.Array | float,
    eps_total: jax.Array | float,
    delta_total: jax.Array | float,
    lam: jax.Array | float,
    delta_cert: jax.Array | float,
    *,
    capacity: int,
    num_outputs: int,
    accountant: str = "zcdp",
    loss: str = "squared",
) -> OdometerState:
    """The odometer of the ``polish`` mechanism: noise fixed by the configuration, regret checked.

    The noise multiplier ``z = z(capacity, eps_total, delta_total)`` of the accountant and
    ``sigma = z Delta`` depend on the configuration only (never on data): ``capacity``
    releases at that ``z`` compose to ``(eps_total, delta_total)``. The regret condition,
    charged at every one of the ``T`` predictions (at most one polished displacement is in
    force at a time: each deletion re-polishes against the exact minimiser),

        R_ins + T polish_charge(z, Delta) <= gamma_priv T,

    decides whether any deletion is admitted: ``m = capacity`` if it holds, else ``m = 0``
    and ``status = STATUS_REGRET`` (every deletion is refused). ``R_ins = G D kappa sqrt(T)``
    from ``calibration`` (the caller chooses which ``G``), as for the ``seed`` mechanism.

    Args:
      calibration: the calibration constants.
      T: horizon (predictions the condition is charged over).
      gamma_priv: target average regret with deletions.
      eps_total, delta_total: total budget of all ``capacity`` releases.
      lam: ridge strength lambda.
      delta_cert: ``Delta``, the certified distance of every polished model to the minimiser.
      capacity: static, the number of deletions the configuration provisions (``m``).
      num_outputs: static K.
      accountant: static, one of ``accountants.ACCOUNTANTS``.
      loss: static, "squared" or "logistic" (:func:`polish_charge`).

    Returns:
      An :class:`OdometerState` with ``used = 0``.
    """
    acc_id = acc.accountant_index(accountant)
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    condition, T_f, eps_total, delta_total, delta_cert = _polish_condition(
        calibration, T, gamma_priv, eps_total, delta_total, lam, delta_cert, num_outputs, loss, accountant)
    dtype = T_f.dtype
    fits, z, r_ins, r_del = condition(capacity)
    m = jnp.where(fits, capacity, 0).astype(jnp.int32)
    eps_step, delta_step = _step_guarantee(accountant, jnp.asarray(capacity), z, eps_total, delta_total)
    zero = jnp.zeros((), dtype)
    return OdometerState(
        m=m, used=jnp.zeros((), jnp.int32), eps_spent=zero, delta_spent=zero, sigma=z * delta_cert,
        noise_multiplier=z, sensitivity=delta_cert, eps_step=eps_step, delta_step=delta_step,
        eps_total=eps_total, delta_total=delta_total, regret_insert=r_ins, regret_delete=r_del,
        accountant=jnp.asarray(acc_id, jnp.int32),
        status=jnp.where(fits, STATUS_OK, STATUS_REGRET).astype(jnp.int32),
    )


def polish_capacity(
    calibration: cal.Calibration,
    T: jax.Array | int,
    gamma_priv: jax.Array | float,
    eps_total: jax.Array | float,
    delta_total: jax.Array | float,
    lam: jax.Array | float,
    delta_cert: jax.Array | float,
    *,
    num_outputs: int,
    accountant: str = "zcdp",
    loss: str = "squared",
    max_deletions: int = 2**20,
) -> jax.Array:
    """The largest ``capacity`` (<= min(T, max_deletions)) that :func:`finalize_polish` would admit (i32[]).

    ``z(m)`` grows with ``m``, so the condition is monotone and a binary search finds it; 0
    when not even one release fits. This is the capacity-vs-epsilon curve of ``polish``.
    """
    acc.accountant_index(accountant)
    condition, T_f, *_ = _polish_condition(calibration, T, gamma_priv, eps_total, delta_total, lam, delta_cert,
                                           num_outputs, loss, accountant)
    found, _ = _largest_fitting(lambda m: condition(m)[0], T_f, max_deletions)
    return found


def exact_state(dtype=None) -> OdometerState:
    """The odometer of the ``exact`` mechanism: no noise, no budget (``m`` = int32 max, ``eps`` stays 0)."""
    dtype = dtype or jnp.result_type(float)
    z = jnp.zeros((), dtype)
    return OdometerState(
        m=jnp.asarray(_INT32_MAX, jnp.int32), used=jnp.zeros((), jnp.int32), eps_spent=z, delta_spent=z, sigma=z,
        noise_multiplier=z, sensitivity=z, eps_step=z, delta_step=z, eps_total=z, delta_total=z, regret_insert=z,
        regret_delete=z, accountant=jnp.zeros((), jnp.int32), status=jnp.asarray(STATUS_EXACT, jnp.int32),
    )


def spend(state: OdometerState) -> tuple[OdometerState, jax.Array]:
    """Spends one deletion if capacity remains.

    Returns:
      ``(state, allowed)``: with ``allowed`` (bool[]) true, ``used`` grows by
      one and ``(eps_spent, delta_spent)`` become the composed values for
      ``used`` deletions; with ``allowed`` false (``used == m``) the state is
      returned unchanged and the caller must not apply the deletion.
    """
    allowed = state.used < state.m
    k = state.used + 1
    eps_k, delta_k = _composed(
        state.accountant, k, state.noise_multiplier, state.eps_step, state.delta_step, state.delta_total
    )
    new = OdometerState(
        m=state.m,
        used=k,
        eps_spent=eps_k.astype(state.eps_spent.dtype),
        delta_spent=delta_k.astype(state.delta_spent.dtype),
        sigma=state.sigma,
        noise_multiplier=state.noise_multiplier,
        sensitivity=state.sensitivity,
        eps_step=state.eps_step,
        delta_step=state.delta_step,
        eps_total=state.eps_total,
        delta_total=state.delta_total,
        regret_insert=state.regret_insert,
        regret_delete=state.regret_delete,
        accountant=state.accountant,
        status=state.status,
    )
    out = jax.tree_util.tree_map(lambda a, b: jnp.where(allowed, a, b), new, state)
    return out, allowed
