"""mpjax.privacy.accountants against dp-accounting, closed forms and scipy."""

import math

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from dp_accounting import gaussian_mechanism

from mpjax.privacy import accountants as acc

EPS, DELTA, K = 1.0, 1e-5, 100

# One compile per (function, accountant, dtype): jit caches by static name and abstract args.
_epsilon = jax.jit(acc.epsilon, static_argnums=0)
_noise_multiplier = jax.jit(acc.noise_multiplier, static_argnums=0)
_gaussian_epsilon = jax.jit(acc.gaussian_epsilon)
_gaussian_noise_multiplier = jax.jit(acc.gaussian_noise_multiplier)
_gaussian_delta = jax.jit(acc.gaussian_delta)


def _dpa_rdp_epsilon(z, k, delta):
    a = dp_accounting.rdp.RdpAccountant()
    a.compose(dp_accounting.GaussianDpEvent(float(z)), int(k))
    return a.get_epsilon(delta)


def _dpa_pld_epsilon(z, k, delta):
    a = dp_accounting.pld.PLDAccountant()
    a.compose(dp_accounting.GaussianDpEvent(float(z)), int(k))
    return a.get_epsilon(delta)


def _dpa_rdp_z(k, eps, delta):
    return scipy.optimize.brentq(lambda z: _dpa_rdp_epsilon(z, k, delta) - eps, 1e-2, 1e5, rtol=1e-10)


def _agm_delta_scipy(eps, z):
    """Balle & Wang (2018) Thm 8 for sensitivity 1, straight from scipy's normal CDF."""
    n = scipy.stats.norm
    return n.cdf(0.5 / z - eps * z) - math.exp(eps) * n.cdf(-0.5 / z - eps * z)


@pytest.fixture(scope="module")
def z_at_target():
    """z = sigma / Delta at (eps, delta) = (1, 1e-5), k = 100, for every accountant."""
    return {a: float(_noise_multiplier(a, K, EPS, DELTA)) for a in acc.ACCOUNTANTS}


def test_paper_numbers_against_references(z_at_target):
    z = z_at_target
    # basic: classical Gaussian mechanism at (eps/k, delta/k) = (0.01, 1e-7).
    np.testing.assert_allclose(z["basic"], math.sqrt(2 * math.log(1.25 / (DELTA / K))) / (EPS / K), rtol=1e-5)
    np.testing.assert_allclose(z["basic"], 571.7, rtol=1e-3)
    # zcdp: rho_tot = (sqrt(L + eps) - sqrt(L))^2, z = sqrt(k / (2 rho_tot)).
    log_inv = math.log(1 / DELTA)
    rho_tot = (math.sqrt(log_inv + EPS) - math.sqrt(log_inv)) ** 2
    np.testing.assert_allclose(z["zcdp"], math.sqrt(K / (2 * rho_tot)), rtol=1e-5)
    np.testing.assert_allclose(z["zcdp"], 49.0, rtol=1e-3)
    # rdp: Google's RdpAccountant (same orders, same improved conversion), inverted by brentq.
    np.testing.assert_allclose(z["rdp"], _dpa_rdp_z(K, EPS, DELTA), rtol=1e-4)
    # exact: the PLD accountant gives eps = 1 at our z (tight accounting), within 1%.
    np.testing.assert_allclose(_dpa_pld_epsilon(z["exact"], K, DELTA), EPS, rtol=1e-2)
    np.testing.assert_allclose(z["exact"], math.sqrt(K) * gaussian_mechanism.get_sigma_gaussian(EPS, DELTA), rtol=1e-4)
    np.testing.assert_allclose(z["exact"], 37.3, rtol=1e-3)
    assert z["basic"] > z["zcdp"] > z["rdp"] > z["exact"]


@pytest.mark.parametrize("z", [0.8, 5.0, 40.0])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_rdp_epsilon_matches_dp_accounting(k, z):
    ours = float(_epsilon("rdp", k, z, DELTA))
    np.testing.assert_allclose(ours, _dpa_rdp_epsilon(z, k, DELTA), rtol=1e-4)


@pytest.mark.parametrize("k,z", [(1, 1.0), (100, 20.0), (1000, 150.0)])
def test_exact_epsilon_matches_pld(k, z):
    np.testing.assert_allclose(float(_epsilon("exact", k, z, DELTA)), _dpa_pld_epsilon(z, k, DELTA), rtol=1e-2)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("eps,delta", [(0.05, 1e-6), (0.5, 1e-5), (1.0, 1e-5), (4.0, 1e-7), (20.0, 1e-3)])
def test_analytic_gaussian_solves_its_defining_equation(eps, delta):
    z = float(_gaussian_noise_multiplier(eps, delta))
    np.testing.assert_allclose(_agm_delta_scipy(eps, z), delta, rtol=1e-6)
    np.testing.assert_allclose(z, gaussian_mechanism.get_sigma_gaussian(eps, delta), rtol=1e-8)
    np.testing.assert_allclose(float(_gaussian_epsilon(z, delta)), eps, rtol=1e-8)
    np.testing.assert_allclose(float(_gaussian_delta(eps, z)), _agm_delta_scipy(eps, z), rtol=1e-8)


def test_basic_switches_to_analytic_at_eps_step_one():
    # eps_step = 2 >= 1: the classical formula is invalid, the analytic GM is used.
    z = float(_noise_multiplier("basic", 5, 10.0, 5e-6))
    np.testing.assert_allclose(z, gaussian_mechanism.get_sigma_gaussian(2.0, 1e-6), rtol=1e-4)
    np.testing.assert_allclose(float(_epsilon("basic", 5, z, 5e-6)), 10.0, rtol=1e-4)
    # eps_step = 0.5 < 1: classical.
    z = float(_noise_multiplier("basic", 4, 2.0, 4e-6))
    np.testing.assert_allclose(z, math.sqrt(2 * math.log(1.25e6)) / 0.5, rtol=1e-5)


def test_zcdp_epsilon_closed_form():
    for k, z, delta in [(1, 2.0, 1e-5), (50, 30.0, 1e-6), (1000, 10.0, 1e-3)]:
        rho = k / (2 * z * z)
        ref = rho + 2 * math.sqrt(rho * math.log(1 / delta))
        np.testing.assert_allclose(float(_epsilon("zcdp", k, z, delta)), ref, rtol=1e-5)


@pytest.mark.parametrize("accountant", acc.ACCOUNTANTS)
def test_capacity_curve_is_one_vmap_equal_to_loop_and_inverts(accountant):
    # 200 points at eps = 1 (k = 1..200), then 200 (k, eps) pairs over a wide grid.
    rng = np.random.default_rng(0)
    ks = np.concatenate([np.arange(1, 201), rng.integers(1, 1000, 200)]).astype(np.int32)
    eps = np.concatenate([np.ones(200), np.exp(rng.uniform(np.log(0.05), np.log(20.0), 200))]).astype(np.float32)
    zs = np.asarray(jax.jit(jax.vmap(lambda k, e: acc.noise_multiplier(accountant, k, e, DELTA)))(ks, eps))
    # vmap equals the loop of single (jitted) calls.
    idx = [0, 99, 250, 399]
    loop = np.array([float(_noise_multiplier(accountant, int(ks[i]), float(eps[i]), DELTA)) for i in idx])
    # float32 bisections resolve z to ~1e-5 relative; vmap/jit/eager may flip the last comparisons.
    np.testing.assert_allclose(zs[idx], loop, rtol=5e-5)
    # jit equals eager (op by op, no compilation of the bisection).
    with jax.disable_jit():
        eager = float(acc.noise_multiplier(accountant, int(ks[250]), float(eps[250]), DELTA))
    np.testing.assert_allclose(eager, zs[250], rtol=5e-5)
    # More compositions at the same budget need at least as much noise.
    assert np.all(np.diff(zs[:200]) >= 0)
    # Round trip, and the calibration is conservative, eps(z(eps)) <= eps, up to float32
    # resolution (~2e-5 relative for the analytic GM at eps < 0.1, where its two terms cancel).
    back = np.asarray(jax.jit(jax.vmap(lambda k, z: acc.epsilon(accountant, k, z, DELTA)))(ks, zs))
    np.testing.assert_allclose(back, eps, rtol=1e-4)
    assert np.all(back <= eps * (1 + 5e-5))
    # k = 0: no release, no noise, no epsilon.
    assert float(_noise_multiplier(accountant, 0, EPS, DELTA)) == 0.0
    assert float(_epsilon(accountant, 0, 10.0, DELTA)) == 0.0


def test_unknown_accountant_lists_valid_names():
    with pytest.raises(ValueError, match="basic, zcdp, rdp, exact"):
        acc.epsilon("moments", 1, 1.0, 1e-5)
    with pytest.raises(ValueError, match="unknown accountant"):
        acc.noise_multiplier("pld", 1, 1.0, 1e-5)


def test_rdp_orders_match_dp_accounting():
    from dp_accounting.rdp import rdp_privacy_accountant

    np.testing.assert_array_equal(np.array(acc.RDP_ORDERS), np.array(rdp_privacy_accountant.DEFAULT_RDP_ORDERS))
