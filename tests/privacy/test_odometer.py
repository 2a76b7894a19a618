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


# ---- polish and exact mechanisms ---------------------------------------------------------

_finalize_polish = jax.jit(odo.finalize_polish, static_argnames=("capacity", "num_outputs", "accountant", "loss"))
K_OUT, DELTA_CERT = 7, 1e-5


def _charge_ref(z, lam=0.1, k=K_OUT, dc=DELTA_CERT):
    return (1 + 1 / math.sqrt(lam)) * dc + 0.5 * (dc * dc + k * (z * dc) ** 2)


@pytest.mark.parametrize("accountant", acc.ACCOUNTANTS)
def test_polish_noise_comes_from_the_configuration_only(accountant):
    m = 100
    states = [_finalize_polish(_calibration(G=g, D=dd), T, 1.0, EPS, DELTA, 0.1, DELTA_CERT, capacity=m,
                               num_outputs=K_OUT, accountant=accountant) for g, dd in ((1.0, 1.0), (0.3, 2.5))]
    z = _z_ref(accountant, m)
    for st in states:  # different calibrations (data), the same noise
        assert int(st.m) == m and int(st.status) == odo.STATUS_OK
        np.testing.assert_allclose(float(st.noise_multiplier), z, rtol=1e-4)
        np.testing.assert_allclose(float(st.sigma), z * DELTA_CERT, rtol=1e-4)
        np.testing.assert_allclose(float(st.regret_delete), T * _charge_ref(z), rtol=1e-4)
    assert float(states[0].sigma) == float(states[1].sigma)
    # m releases at z compose to the budget, no more; the (m+1)-th is refused.
    final, (allowed, eps) = jax.lax.scan(lambda s, _: (lambda r: (r[0], (r[1], r[0].eps_spent)))(odo.spend(s)),
                                         states[0], None, length=m + 1)
    assert bool(np.all(np.asarray(allowed)[:m])) and not bool(np.asarray(allowed)[m])
    assert float(np.asarray(eps)[m - 1]) <= EPS * (1 + 5e-5) and int(final.used) == m


def test_polish_regret_condition_failure_admits_no_deletion():
    st = _finalize_polish(_calibration(), T, 1e-3, EPS, DELTA, 0.1, DELTA_CERT, capacity=100, num_outputs=K_OUT)
    assert int(st.m) == 0 and int(st.status) == odo.STATUS_REGRET
    _, ok = _spend(st)
    assert not bool(ok)
    with pytest.raises(ValueError, match="capacity"):
        odo.finalize_polish(_calibration(), T, 1.0, EPS, DELTA, 0.1, DELTA_CERT, capacity=0, num_outputs=K_OUT)


def test_polish_charge_bounds_the_expected_excess_loss():
    """Monte Carlo: E l(W~ + sigma Xi) - l(W*) <= polish_charge, at the worst admissible W*, x and W~."""
    lam, k, d, dc, z = 0.1, 3, 4, 0.05, 2.0
    sigma = z * dc
    rng = np.random.default_rng(0)
    charge = float(odo.polish_charge(z, dc, lam, k))
    np.testing.assert_allclose(charge, _charge_ref(z, lam, k, dc), rtol=1e-6)
    for _ in range(5):
        w_star = rng.normal(size=(k, d))
        w_star *= (1 / math.sqrt(lam)) / np.linalg.norm(w_star)  # the largest |W*| the argument allows
        x = rng.normal(size=d)
        x /= np.linalg.norm(x)
        y = np.eye(k)[rng.integers(k)]
        g = np.outer(w_star @ x - y, x)  # the loss gradient at W*: W~ displaced along it (the worst direction)
        w_tilde = w_star + dc * g / np.linalg.norm(g)
        xi = rng.standard_normal((200_000, k, d))
        excess = 0.5 * np.sum(((w_tilde + sigma * xi) @ x - y) ** 2, axis=1) - 0.5 * np.sum((w_star @ x - y) ** 2)
        assert excess.mean() <= charge + 4 * excess.std() / math.sqrt(excess.size), (excess.mean(), charge)


def test_polish_capacity_is_the_boundary_of_the_regret_condition():
    calib = _calibration()
    eps = jnp.asarray([0.3, 1.0, 3.0])
    caps = jax.jit(jax.vmap(lambda e: odo.polish_capacity(calib, T, 0.5, e, DELTA, 0.1, 1e-3, num_outputs=K_OUT,
                                                          max_deletions=2**20)))(eps)
    caps = np.asarray(caps)
    assert np.all(np.diff(caps) >= 0) and caps[0] >= 1
    for e, m in zip(np.asarray(eps), caps):
        if m < T:
            fit = _finalize_polish(calib, T, 0.5, float(e), DELTA, 0.1, 1e-3, capacity=int(m), num_outputs=K_OUT)
            over = _finalize_polish(calib, T, 0.5, float(e), DELTA, 0.1, 1e-3, capacity=int(m) + 1,
                                    num_outputs=K_OUT)
            assert int(fit.m) == m and int(over.m) == 0


def test_exact_odometer_never_spends():
    st0 = odo.exact_state()
    final, (allowed, eps) = jax.jit(lambda s: jax.lax.scan(
        lambda s, _: (lambda r: (r[0], (r[1], r[0].eps_spent)))(odo.spend(s)), s, None, length=500))(st0)
    assert bool(np.all(np.asarray(allowed))) and not np.asarray(eps).any()
    assert int(final.used) == 500 and int(final.status) == odo.STATUS_EXACT and float(final.sigma) == 0.0
