"""mpjax.privacy.odometer: capacity vs NumPy/dp-accounting references, refusal, spending."""

import math

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from dp_accounting import gaussian_mechanism

from mpjax import lbfgs
from mpjax.privacy import accountants as acc
from mpjax.privacy import calibrator as cal
from mpjax.privacy import odometer as odo

# Covertype-shaped constants: d = 54 features + bias, |x| <= 1, G ~ 1, lambda in [1e-2, 1e-1].
DIM, T, EPS, DELTA, DELTA_B = 55, 100_000, 1.0, 1e-5, 0.05
_finalize = jax.jit(odo.finalize, static_argnames=("accountant", "dim", "bound", "max_deletions"))
_spend = jax.jit(odo.spend)


def _calibration(G=1.0, D=1.0, lam=0.1):
    """Ridge with |x| <= 1: per-sample Hessian spectrum in [lam, 1 + lam], so H in [1/(1+lam), 1/lam]."""
    c, C = 1.0 / (1.0 + lam), 1.0 / lam
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return cal.Calibration(
        G=f(G), D=f(D), c=f(c), C=f(C), kappa=f(math.sqrt(c * C)),
        N_star=jnp.asarray(1, jnp.int32), n_points=jnp.asarray(1024, jnp.int32), status=jnp.asarray(0, jnp.int32),
    )  # fmt: skip


# ---- independent references (NumPy, scipy, dp-accounting) ---------------------------------


def _z_ref(accountant, m, eps=EPS, delta=DELTA):
    if accountant == "basic":
        es, ds = eps / m, delta / m
        return math.sqrt(2 * math.log(1.25 / ds)) / es if es < 1 else gaussian_mechanism.get_sigma_gaussian(es, ds)
    if accountant == "zcdp":
        rho = (math.sqrt(math.log(1 / delta) + eps) - math.sqrt(math.log(1 / delta))) ** 2
        return math.sqrt(m / (2 * rho))
    if accountant == "exact":
        return math.sqrt(m) * gaussian_mechanism.get_sigma_gaussian(eps, delta)
    return scipy.optimize.brentq(lambda z: _rdp_eps_ref(m, z, delta) - eps, 1e-2, 1e6, rtol=1e-10)


def _rdp_eps_ref(k, z, delta=DELTA):
    a = dp_accounting.rdp.RdpAccountant()
    a.compose(dp_accounting.GaussianDpEvent(float(z)), int(k))
    return a.get_epsilon(delta)


def _eps_ref(accountant, k, z, delta=DELTA):
    if accountant == "zcdp":
        rho = k / (2 * z * z)
        return rho + 2 * math.sqrt(rho * math.log(1 / delta))
    if accountant == "rdp":
        return _rdp_eps_ref(k, z, delta)
    return gaussian_mechanism.get_epsilon_gaussian(z / math.sqrt(k), delta)  # exact


def _regret_ref(m, z, G, D, kappa, lam):
    sens = G / lam
    r_ins = G * D * kappa * math.sqrt(T)
    r_del = m * G * (sens + z * sens * (math.sqrt(DIM) + math.sqrt(2 * math.log(m / DELTA_B))))
    return r_ins, r_del


# ---- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("accountant", acc.ACCOUNTANTS)
def test_capacity_and_noise_match_references(accountant):
    lam, gamma = 0.1, 1.0
    calib = _calibration(lam=lam)
    st = _finalize(calib, T, gamma, EPS, DELTA, lam, DELTA_B, accountant=accountant, dim=DIM)
    m = int(st.m)
    assert m >= 1 and int(st.status) == odo.STATUS_OK and int(st.used) == 0
    kappa = float(calib.kappa)

    def fits(k):
        r_ins, r_del = _regret_ref(k, _z_ref(accountant, k), 1.0, 1.0, kappa, lam)
        return (r_ins + r_del) / T <= gamma

    assert fits(m) and not fits(m + 1)  # m is the largest feasible capacity
    z = _z_ref(accountant, m)
    np.testing.assert_allclose(float(st.noise_multiplier), z, rtol=1e-4)
    np.testing.assert_allclose(float(st.sensitivity), 1.0 / lam, rtol=1e-6)
    np.testing.assert_allclose(float(st.sigma), z * 1.0 / lam, rtol=1e-4)  # sigma = z G / lambda
    r_ins, r_del = _regret_ref(m, z, 1.0, 1.0, kappa, lam)
    np.testing.assert_allclose([float(st.regret_insert), float(st.regret_delete)], [r_ins, r_del], rtol=1e-4)


@pytest.mark.parametrize("accountant", acc.ACCOUNTANTS)
def test_spending_is_monotone_additive_and_refuses_beyond_capacity(accountant):
    st0 = _finalize(_calibration(lam=0.05), T, 0.5, EPS, DELTA, 0.05, DELTA_B, accountant=accountant, dim=DIM)
    m = int(st0.m)
    steps = m + 3

    def body(s, _):
        s, allowed = odo.spend(s)
        return s, (allowed, s.used, s.eps_spent, s.delta_spent)

    final, (allowed, used, eps, delta) = jax.jit(lambda s: jax.lax.scan(body, s, None, length=steps))(st0)
    allowed, used, eps, delta = (np.asarray(v) for v in (allowed, used, eps, delta))
    np.testing.assert_array_equal(allowed, [True] * m + [False] * 3)
    np.testing.assert_array_equal(used, np.minimum(np.arange(1, steps + 1), m))
    assert np.all(np.diff(eps) >= 0) and np.all(np.diff(delta) >= 0)
    # Refused spends leave the state untouched.
    st_m = jax.tree_util.tree_map(lambda x: x, final)
    again, ok = _spend(final)
    assert not bool(ok)
    for a, b in zip(again, st_m):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    z, k = float(st0.noise_multiplier), np.arange(1, m + 1)
    if accountant == "basic":
        np.testing.assert_allclose(eps[:m], k * float(st0.eps_step), rtol=1e-6)
        np.testing.assert_allclose(delta[:m], k * float(st0.delta_step), rtol=1e-6)
        np.testing.assert_allclose([float(st0.eps_step), float(st0.delta_step)], [EPS / m, DELTA / m], rtol=1e-6)
    else:
        check = sorted({1, max(1, m // 2), m})
        ref = [_eps_ref(accountant, int(i), z) for i in check]
        np.testing.assert_allclose(eps[np.array(check) - 1], ref, rtol=1e-4)
        np.testing.assert_allclose(delta[:m], DELTA, rtol=1e-6)
        np.testing.assert_allclose(float(st0.eps_step), ref[0], rtol=1e-4)
        assert eps[m - 1] < m * eps[0]  # composed, not k * eps_step
    np.testing.assert_allclose(eps[m - 1], EPS, rtol=1e-4)  # the whole budget, no more
    assert eps[m - 1] <= EPS * (1 + 5e-5)


def test_no_feasible_capacity_degrades_to_one():
    st = _finalize(_calibration(lam=0.01), T, 0.01, EPS, DELTA, 0.01, DELTA_B, accountant="zcdp", dim=DIM)
    assert int(st.m) == 1 and int(st.status) == odo.STATUS_CAPACITY_ONE
    np.testing.assert_allclose(float(st.noise_multiplier), _z_ref("zcdp", 1), rtol=1e-5)
    st, ok1 = _spend(st)
    st, ok2 = _spend(st)
    assert bool(ok1) and not bool(ok2) and int(st.used) == 1  # the next delete forces a retrain


def test_search_cap_is_reported():
    st = _finalize(_calibration(), T, 1e6, EPS, DELTA, 0.1, DELTA_B, accountant="zcdp", dim=DIM, max_deletions=64)
    assert int(st.m) == 64 and int(st.status) == odo.STATUS_AT_MAX


def test_capacity_grid_is_one_vmap_equal_to_loop_and_eager():
    calib = _calibration(lam=0.05)
    eps = jnp.array([0.5, 1.0, 2.0])
    gammas = jnp.array([0.3, 1.0, 3.0])
    ee, gg = (a.ravel() for a in jnp.meshgrid(eps, gammas, indexing="ij"))

    def one(e, g):
        return odo.finalize(calib, T, g, e, DELTA, 0.05, DELTA_B, accountant="zcdp", dim=DIM)

    grid = jax.jit(jax.vmap(one))(ee, gg)
    loop = [_finalize(calib, T, g, e, DELTA, 0.05, DELTA_B, accountant="zcdp", dim=DIM) for e, g in zip(ee, gg)]
    np.testing.assert_array_equal(np.asarray(grid.m), [int(s.m) for s in loop])
    np.testing.assert_allclose(np.asarray(grid.sigma), [float(s.sigma) for s in loop], rtol=1e-6)
    m_grid = np.asarray(grid.m).reshape(3, 3)
    assert np.all(np.diff(m_grid, axis=0) >= 0) and np.all(np.diff(m_grid, axis=1) >= 0)  # more eps or gamma: more m
    with jax.disable_jit():
        eager = one(ee[4], gg[4])
    assert int(eager.m) == int(grid.m[4])
    np.testing.assert_allclose(float(eager.sigma), float(grid.sigma[4]), rtol=1e-6)


def test_finalize_from_stats_equals_from_calibration():
    rng = np.random.default_rng(0)
    grads = jnp.asarray(rng.normal(size=(40, DIM)) / 8, jnp.float32)
    thetas = jnp.asarray(np.arange(40)[:, None] * np.ones(DIM) / 100, jnp.float32)

    def observe_all(stats):
        return jax.lax.scan(lambda s, gt: (cal.observe(s, *gt), None), stats, (grads, thetas))[0]

    stats = jax.jit(observe_all)(cal.init(DIM, 64))
    mem = lbfgs.init(4, DIM)

    @jax.jit
    def both(stats, mem):
        direct = odo.finalize(stats, T, 0.5, EPS, DELTA, 0.1, DELTA_B, accountant="zcdp", memory=mem)
        calib = cal.finalize(stats, mem, 1.0)
        via = odo.finalize(calib, T, 0.5, EPS, DELTA, 0.1, DELTA_B, accountant="zcdp", dim=DIM)
        return direct, via

    direct, via = both(stats, mem)
    for a, b in zip(direct, via):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert int(direct.m) >= 1


def test_covertype_capacities_and_binding_term():
    """At realistic constants the Gaussian noise term of R_del binds, not R_ins."""
    lam = 0.1
    calib = _calibration(lam=lam)
    ms, states = {}, {}
    for a in acc.ACCOUNTANTS:
        states[a] = _finalize(calib, T, 0.5, EPS, DELTA, lam, DELTA_B, accountant=a, dim=DIM)
        ms[a] = int(states[a].m)
    assert 1 <= ms["basic"] <= ms["zcdp"] <= ms["rdp"] <= ms["exact"] < 100
    s = states["zcdp"]
    assert float(s.regret_delete) > 20 * float(s.regret_insert)
    # Noise part of R_del vs removal-step part: z (sqrt(d) + sqrt(2 ln(m / delta_B))) to 1.
    beta = math.sqrt(DIM) + math.sqrt(2 * math.log(ms["zcdp"] / DELTA_B))
    assert float(s.noise_multiplier) * beta > 100


def test_bad_arguments():
    with pytest.raises(ValueError, match="basic, zcdp, rdp, exact"):
        odo.finalize(_calibration(), T, 1.0, EPS, DELTA, 0.1, DELTA_B, accountant="moments", dim=DIM)
    with pytest.raises(ValueError, match="dim"):
        odo.finalize(_calibration(), T, 1.0, EPS, DELTA, 0.1, DELTA_B)
    with pytest.raises(ValueError, match="memory"):
        odo.finalize(cal.init(DIM), T, 1.0, EPS, DELTA, 0.1, DELTA_B)
    with pytest.raises(TypeError):
        odo.finalize({"G": 1.0}, T, 1.0, EPS, DELTA, 0.1, DELTA_B, dim=DIM)
