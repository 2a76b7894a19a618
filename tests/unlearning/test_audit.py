"""mpjax.unlearning.audit: the float64 references and the distinguishing audit."""

import math

import numpy as np

from mpjax.unlearning import audit


def test_retrain_is_a_stationary_point_of_the_objective():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)), np.eye(3)[rng.integers(0, 3, 50)]
    w = audit.retrain(x, y, 0.2)
    grad = (w @ x.T - y.T) @ x + 50 * 0.2 * w  # d/dW sum_i [1/2 |W x_i - y_i|^2 + lam/2 |W|^2]
    np.testing.assert_allclose(grad, 0.0, atol=1e-10)
    assert audit.retrain(x[:0], y[:0], 0.2).shape == (3, 6)


def test_present_after_requests_follows_the_log():
    ops = np.array([0, 0, 1, 2, 1, 2, 2])  # calibrate, calibrate, insert, delete, insert, delete, delete
    pos = np.array([0, 1, 2, 1, 3, 9, 0])
    applied = np.array([True, True, True, True, True, False, True])
    sets = audit.present_after_requests(ops, pos, applied, [], 1, 2, 0)
    assert [s.tolist() for s in sets] == [[0, 2], [0, 2, 3], [2, 3]]


def test_certified_tpr_is_the_gaussian_trade_off():
    assert abs(audit.certified_tpr(0.0, 0.01) - 0.01) < 1e-12
    np.testing.assert_allclose(audit.certified_tpr(2.326347874, 0.01), 0.5, atol=1e-6)
    assert audit.certified_tpr(0.1, 0.01) < audit.certified_tpr(0.2, 0.01)


def test_audit_matches_the_analytic_power_and_stays_at_fpr_without_a_gap():
    rng = np.random.default_rng(1)
    w_star = rng.normal(size=(3, 4))
    sigma = 0.01
    u = rng.normal(size=(3, 4))
    for mu in (0.0, 1.0, 2.5):
        w_tilde = w_star + mu * sigma * u / np.linalg.norm(u)
        out = audit.distinguishing_audit(w_tilde, w_star, sigma, delta_cert=mu * sigma, trials=20_000, seed=2)
        lo, hi = out["tpr_ci95"]
        expect = audit.certified_tpr(mu, 0.01)
        assert lo <= expect <= hi, (mu, out["tpr"], expect)  # the threshold is exact: no extra slack
        assert abs(out["fpr_empirical"] - 0.01) < 0.002
        np.testing.assert_allclose(out["distance"], mu * sigma, rtol=1e-12, atol=1e-15)
    assert math.isclose(out["tpr_certified"], audit.certified_tpr(2.5, 0.01))
