"""Exact metagradients against closed forms, finite differences of the retrain, and leave-one-out."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mpjax import learners
from mpjax.influence import metagrad
from mpjax.influence.remat import balanced_levels
from tests.influence import _fixtures as fx
from tests.utils import _numeric_leaves


def _scores(name, n=200, j=4, levels="auto", **kw):
    x, y, tx, ty = fx.problem(n=n, j=j, **kw)
    lrn = fx.learner(name)
    state = fx.init(lrn)
    order = jnp.asarray(np.random.default_rng(5).permutation(n), jnp.int32)
    lv = balanced_levels(n, 2) if levels == "auto" else levels
    phi, tau = jax.jit(lambda: metagrad.metagradients(lrn, state, x, y, order, tx, ty, levels=lv))()
    return (lrn, state, x, y, tx, ty, order), np.asarray(phi), np.asarray(tau)


def _retrain(problem, weights):
    """f[R, J] target losses of retrains with the given row weights f[R, n] (the actual retrain)."""
    lrn, state, x, y, tx, ty, order = problem

    def one(w):
        final, _ = metagrad.train_weighted(lrn, state, x, y, order, w)
        return metagrad.target_losses(lrn, final, tx, ty)

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(weights)))


def test_rls_influence_equals_its_closed_form(x64):
    """RLS is exact weighted ridge: tau_ij = -(r_j . r_i) x_i^T P x_j with P = (lam I + X^T X)^{-1}."""
    problem, phi, tau = _scores("rls", n=300, j=5)
    _, _, x, y, tx, ty, _ = (np.asarray(a) if hasattr(a, "shape") else a for a in problem)
    lam = fx.HYPER["rls"]["l2"]
    p = np.linalg.inv(lam * np.eye(x.shape[1]) + x.T @ x)
    w = (p @ x.T @ y).T
    r_tr, r_te = x @ w.T - y, tx @ w.T - ty
    expected = -(r_te @ r_tr.T) * (tx @ p @ x.T)
    np.testing.assert_allclose(phi, 0.5 * np.sum(r_te**2, axis=1), rtol=1e-9)
    # atol: entries 1e-3 of the largest lose digits to cancellation in r_j . r_i (either side).
    np.testing.assert_allclose(tau, expected, rtol=1e-9, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("name", fx.NAMES)
def test_central_finite_differences_of_the_actual_retrain(x64, name):
    """(phi(omega_i = 1 + eps) - phi(1 - eps)) / 2 eps, eps = 1e-4, for 5 samples x 3 targets."""
    n, eps = 200, 1e-4
    problem, _, tau = _scores(name, n=n, j=3)
    samples = np.random.default_rng(7).choice(n, 5, replace=False)
    weights = np.ones((10, n))
    for r, i in enumerate(samples):
        weights[2 * r, i] += eps
        weights[2 * r + 1, i] -= eps
    out = _retrain(problem, weights)
    fd = (out[0::2] - out[1::2]) / (2 * eps)  # [5, J]
    got = tau[:, samples].T
    rel = np.abs(fd - got) / np.abs(got)
    assert rel.max() <= 1e-4, (rel, got)


def test_sgd_leave_one_out_matches_minus_tau(x64):
    """Dropping row i (omega_i = 0) changes phi_j by -tau_ij to 1% (median relative error)."""
    n = 400
    problem, phi, tau = _scores("sgd", n=n, j=4)
    samples = np.random.default_rng(3).choice(n, 25, replace=False)
    weights = np.ones((25, n))
    weights[np.arange(25), samples] = 0.0
    delta = _retrain(problem, weights) - phi[None, :]  # [25, J]
    rel = np.abs(delta + tau[:, samples].T) / np.abs(delta)
    assert np.median(rel) <= 1e-2, np.median(rel)


@pytest.mark.parametrize("name, loss", [(n, "squared") for n in fx.NAMES] + [("memorypair", "logistic")])
def test_finite_at_zero_weights_and_zero_model(x64, name, loss):
    """Starting at w = 0 (squared loss: residual and gradient exactly 0 for the absent classes, where a
    plain norm's derivative is 0/0) and with half the weights 0, tau is finite."""
    hyper = dict(fx.HYPER[name], **({} if name == "rls" else {"loss": loss}))
    lrn = learners.multi_output(learners.get(name, **hyper), fx.K)
    x, y, tx, ty = fx.problem(n=60, j=3)
    state = fx.init(lrn)
    order = jnp.arange(60, dtype=jnp.int32)
    weights = jnp.asarray(np.arange(60) % 2, jnp.float64)

    def phi(w):
        final, _ = metagrad.train_weighted(lrn, state, x, y, order, w, levels=(6, 10))
        return metagrad.target_losses(lrn, final, tx, ty)

    _, jac = jax.jit(jax.vmap(lambda w: metagrad.vjp_rows(phi, w, 3)))(jnp.stack([weights, jnp.ones(60)]))
    assert np.isfinite(np.asarray(jac)).all()
    assert np.abs(np.asarray(jac[1])).max() > 0


@pytest.mark.parametrize("name", fx.NAMES)
def test_unit_weights_train_exactly_like_step(x64, name):
    """train_weighted(weights = 1) equals a scan of learner.step (wstep(..., 1) == step), bit for bit
    but for Memory-Pair, where XLA contracts the literal 1.0 of ``step`` differently from a traced
    weight (1e-14 after 100 steps; the learner-level test on main is bitwise with a literal)."""
    x, y, _, _ = fx.problem(n=80)
    lrn = fx.learner(name)
    state = fx.init(lrn)
    order = jnp.asarray(np.random.default_rng(0).integers(0, 80, 100), jnp.int32)
    ref = jax.jit(lambda: lax.scan(lambda s, r: lrn.step(s, x[r], y[r]), state, order))()
    got = jax.jit(lambda: metagrad.train_weighted(lrn, state, x, y, order, jnp.ones(80), levels=(10, 10)))()
    for a, b in zip(_numeric_leaves(ref), _numeric_leaves(got)):
        if name == "memorypair":
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        else:
            np.testing.assert_array_equal(a, b)


def test_target_chunks_equal_one_batch_and_runs_repeat_bitwise(x64):
    problem, phi, tau = _scores("sgd", n=100, j=5)
    lrn, state, x, y, tx, ty, order = problem
    chunked = jax.jit(lambda: metagrad.metagradients(lrn, state, x, y, order, tx, ty, levels=(10, 10),
                                                     target_chunk=2))()
    np.testing.assert_allclose(chunked[1], tau, rtol=1e-12, atol=1e-15)
    _, _, again = _scores("sgd", n=100, j=5)
    np.testing.assert_array_equal(again, tau)


def test_float32_metagradients_agree_with_float64_for_memory_pair_and_sgd():
    """The stable Memory-Pair insert: float32 influence is as good as SGD's (the old insert's was off by 1.3-2.6)."""
    out = {}
    for name in ("memorypair", "sgd"):
        for dtype in (jnp.float64, jnp.float32):
            with jax.enable_x64(dtype == jnp.float64):
                lrn = fx.learner(name)
                x, y, tx, ty = (jnp.asarray(a, dtype) for a in fx.problem(n=200, j=4))
                _, tau = metagrad.metagradients(lrn, lrn.init(fx.D, jax.random.key(0)), x, y, jnp.arange(200), tx, ty)
                assert tau.dtype == dtype and np.isfinite(np.asarray(tau)).all()
                out[name, dtype] = np.asarray(tau, np.float64)
        ref = out[name, jnp.float64]
        assert np.linalg.norm(out[name, jnp.float32] - ref) / np.linalg.norm(ref) < 1e-4, name


def test_validate_problem_names_field_value_and_range():
    table = np.zeros((10, 3))
    targets = np.zeros((10, 2))
    ok_train, ok_test = np.arange(8), np.array([8, 9])
    metagrad.validate_problem(table, targets, ok_train, ok_test)
    cases = [
        (ok_train, np.array([], int), "target_rows must be a non-empty"),
        (ok_train, np.array([8, 8]), "target_rows holds duplicate row ids, e.g. 8"),
        (ok_train, np.array([7, 9]), "target_rows overlap train_rows in 1 row.*e.g. 7"),
        (ok_train, np.array([9, 12]), r"target_rows must lie in \[0, 10\)"),
        (np.array([0, 1, 1]), ok_test, "train_rows holds duplicate"),
    ]
    for train, test, msg in cases:
        with pytest.raises(ValueError, match=msg):
            metagrad.validate_problem(table, targets, train, test)
    bad = table.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="features contain 1 non-finite value.*dataset row 3"):
        metagrad.validate_problem(bad, targets, ok_train, ok_test)
