"""mpjax.unlearning.polish: the certified polishing iteration against float64 NumPy minimisers."""

import jax.numpy as jnp
import numpy as np
import pytest

from mpjax.unlearning import polish as pol

D, K, N, LAM, DELTA = 6, 3, 80, 0.1, 1e-6


def _store(n_present=60, seed=0, dtype=jnp.float64):
    """A store of N slots with rows 0..n_present-1 present (the rest zero) and the dense copies."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_present, D))
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1.0)
    y = np.eye(K)[rng.integers(0, K, n_present)]
    store = pol.store_init(N, D, K, dtype)
    for r in range(n_present):
        store = pol.store_add(store, r, jnp.asarray(x[r], dtype), jnp.asarray(y[r], dtype))
    return store, x, y


def _ridge(x, y):
    n = x.shape[0]
    return np.linalg.solve(x.T @ x + n * LAM * np.eye(D), x.T @ y).T


def _logistic(x, y):
    """Newton's method per output on sum_i [softplus(w.x_i) - y_i w.x_i] + n lam / 2 |w|^2 (float64)."""
    n = x.shape[0]
    w = np.zeros((K, D))
    for k in range(K):
        for _ in range(50):
            p = 1 / (1 + np.exp(-x @ w[k]))
            g = x.T @ (p - y[:, k]) + n * LAM * w[k]
            h = x.T @ (x * (p * (1 - p))[:, None]) + n * LAM * np.eye(D)
            w[k] -= np.linalg.solve(h, g)
    return w


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("loss, reference", [("squared", _ridge), ("logistic", _logistic)])
def test_polish_reaches_a_certified_bound_that_holds_against_the_exact_minimiser(loss, reference):
    store, x, y = _store()
    w_star = reference(x, y)
    w0 = jnp.asarray(np.random.default_rng(1).normal(size=(K, D)))
    res = pol.polish(loss, store, 60, w0, LAM, DELTA, max_passes=200)
    true = np.linalg.norm(np.asarray(res.w) - w_star)
    assert bool(res.certified) and float(res.bound) <= DELTA
    assert true <= float(res.bound), (true, float(res.bound))
    assert 1 < int(res.passes) <= 200
    # From the minimiser itself one pass certifies it.
    again = pol.polish(loss, store, 60, jnp.asarray(w_star), LAM, DELTA, max_passes=200)
    assert bool(again.certified) and int(again.passes) == 1


@pytest.mark.usefixtures("x64")
def test_certified_distance_is_never_below_the_true_distance():
    store, x, y = _store(seed=2)
    w_star = _ridge(x, y)
    rng = np.random.default_rng(3)
    for scale in (1e-10, 1e-6, 1e-2, 1.0):
        w = w_star + scale * rng.normal(size=w_star.shape)
        bound = float(pol.certified_distance("squared", store, jnp.asarray(w), 60, LAM))
        assert np.linalg.norm(w - w_star) <= bound <= 20 * np.linalg.norm(w - w_star) + 1e-11


@pytest.mark.usefixtures("x64")
def test_a_budget_too_small_is_reported_not_certified():
    store, _, _ = _store(seed=4)
    res = pol.polish("squared", store, 60, jnp.full((K, D), 3.0), LAM, 1e-12, max_passes=2)
    assert not bool(res.certified) and float(res.bound) > 1e-12 and int(res.passes) <= 2


def test_float32_never_certifies_what_its_rounding_cannot_resolve():
    """In float32 the rounding allowance (~1e-3 here) exceeds a small Delta: refused, never falsely certified."""
    store, x, y = _store(seed=5, dtype=jnp.float32)
    res = pol.polish("squared", store, 60, jnp.zeros((K, D), jnp.float32), LAM, 1e-7, max_passes=50)
    assert not bool(res.certified)
    loose = pol.polish("squared", store, 60, jnp.zeros((K, D), jnp.float32), LAM, 0.05, max_passes=50)
    assert bool(loose.certified)
    assert np.linalg.norm(np.asarray(loose.w, np.float64) - _ridge(x.astype(np.float32).astype(np.float64),
                                                                   y)) <= float(loose.bound)


@pytest.mark.usefixtures("x64")
def test_removed_rows_are_zero_and_out_of_the_objective():
    store, x, y = _store(seed=6)
    store = pol.store_remove(store, 7)
    assert not np.asarray(store.x[7]).any() and not np.asarray(store.y[7]).any()
    keep = [r for r in range(60) if r != 7]
    res = pol.polish("squared", store, 59, jnp.zeros((K, D)), LAM, DELTA, max_passes=100)
    assert np.linalg.norm(np.asarray(res.w) - _ridge(x[keep], y[keep])) <= float(res.bound) <= DELTA
    np.testing.assert_allclose(np.asarray(pol.objective_gradient("squared", store, res.w, 59, LAM)),
                               0.0, atol=DELTA * 59 * LAM)


@pytest.mark.usefixtures("x64")
def test_blocked_passes_visit_every_stored_row_up_to_the_highest_id():
    """A store larger than one block: rows scattered over three blocks, the rest never visited."""
    rng = np.random.default_rng(7)
    ids = np.sort(rng.choice(1100, 70, replace=False))
    x = rng.normal(size=(70, D))
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1.0)
    y = np.eye(K)[rng.integers(0, K, 70)]
    store = pol.store_init(1500, D, K)
    assert store.x.shape[0] == 3 * pol.BLOCK
    for i, r in enumerate(ids):
        store = pol.store_add(store, int(r), jnp.asarray(x[i]), jnp.asarray(y[i]))
    assert int(store.high) == ids[-1] + 1
    w = jnp.asarray(rng.normal(size=(K, D)))
    dense = (np.asarray(w) @ x.T - y.T) @ x + 70 * LAM * np.asarray(w)
    np.testing.assert_allclose(np.asarray(pol.objective_gradient("squared", store, w, 70, LAM)), dense, atol=1e-12)
    res = pol.polish("squared", store, 70, jnp.zeros((K, D)), LAM, DELTA, max_passes=100)
    assert bool(res.certified) and np.linalg.norm(np.asarray(res.w) - _ridge(x, y)) <= float(res.bound) <= DELTA
