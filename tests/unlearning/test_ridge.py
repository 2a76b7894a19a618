"""mpjax.unlearning.ridge: statistics, the exact minimiser and the certified distance vs float64 NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax.unlearning import ridge

D, K, LAM = 5, 3, 0.1


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1.0)
    return x, np.eye(K)[rng.integers(0, K, n)]


def _numpy_minimiser(x, y, lam):
    """argmin sum_i [1/2 |W x_i - y_i|^2 + lam/2 |W|^2]: the normal equations, written from the objective."""
    n = x.shape[0]
    return np.linalg.solve(x.T @ x + n * lam * np.eye(x.shape[1]), x.T @ y).T


def _objective(w, x, y, lam):
    return 0.5 * np.sum((x @ w.T - y) ** 2) + 0.5 * lam * x.shape[0] * np.sum(w * w)


def _build(x, y):
    s = ridge.init(D, K)
    for xi, yi in zip(x, y):
        s = ridge.add(s, jnp.asarray(xi), jnp.asarray(yi))
    return s


@pytest.mark.usefixtures("x64")
def test_solve_is_the_minimiser_of_the_same_objective_after_inserts_and_deletes():
    x, y = _rows(40)
    s = _build(x[:30], y[:30])
    present = list(range(30))
    for kind, r in [("d", 3), ("d", 11), ("i", 30), ("i", 31), ("d", 0), ("i", 32), ("d", 30)]:
        s = (ridge.add if kind == "i" else ridge.remove)(s, jnp.asarray(x[r]), jnp.asarray(y[r]))
        present.append(r) if kind == "i" else present.remove(r)
        w_ref = _numpy_minimiser(x[present], y[present], LAM)
        w = np.asarray(ridge.solve(s, LAM))
        np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-12)
        assert int(s.n) == len(present)
        # The minimiser: perturbing it in any direction raises F (|S| lambda, not lambda).
        f0 = _objective(w, x[present], y[present], LAM)
        assert all(_objective(w + 1e-4 * e, x[present], y[present], LAM) > f0 for e in np.eye(K * D).reshape(-1, K, D))


@pytest.mark.usefixtures("x64")
def test_inserting_a_set_then_deleting_part_equals_building_from_the_rest():
    x, y = _rows(60, seed=1)
    full = _build(x, y)
    gone = [2, 7, 19, 33, 58]
    for r in gone:
        full = ridge.remove(full, jnp.asarray(x[r]), jnp.asarray(y[r]))
    keep = [r for r in range(60) if r not in gone]
    rest = _build(x[keep], y[keep])
    np.testing.assert_allclose(np.asarray(full.a), np.asarray(rest.a), rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(full.b), np.asarray(rest.b), rtol=0, atol=1e-13)
    assert int(full.n) == int(rest.n) == 55
    np.testing.assert_allclose(np.asarray(ridge.solve(full, LAM)), np.asarray(ridge.solve(rest, LAM)), atol=1e-13)


@pytest.mark.usefixtures("x64")
def test_gradient_equals_autodiff_of_the_objective_over_rows():
    x, y = _rows(25, seed=2)
    s = _build(x, y)
    w = jnp.asarray(np.random.default_rng(3).normal(size=(K, D)))
    f = lambda w: 0.5 * jnp.sum((jnp.asarray(x) @ w.T - y) ** 2) + 0.5 * LAM * 25 * jnp.sum(w * w)  # noqa: E731
    np.testing.assert_allclose(np.asarray(ridge.gradient(s, w, LAM)), np.asarray(jax.grad(f)(w)), atol=1e-12)


@pytest.mark.usefixtures("x64")
def test_certified_distance_is_never_below_the_true_distance():
    x, y = _rows(50, seed=4)
    s = _build(x, y)
    w_star = _numpy_minimiser(x, y, LAM)
    rng = np.random.default_rng(5)
    for scale in (1e-12, 1e-8, 1e-4, 1e-1, 10.0):
        for _ in range(5):
            w = w_star + scale * rng.normal(size=w_star.shape)
            bound = float(ridge.certified_distance(s, jnp.asarray(w), LAM))
            true = np.linalg.norm(w - w_star)
            assert bound >= true, (scale, bound, true)
            assert bound <= 20 * true + 1e-11  # and not vacuous: kappa <= 1 + 1/lambda = 11
    assert float(ridge.certified_distance(s, ridge.solve(s, LAM), LAM)) < 1e-12


def test_float32_allowance_covers_rounding():
    """In float32 the certified distance of the float32 solution still bounds its distance to the exact one."""
    x, y = _rows(200, seed=6)
    s = ridge.init(D, K, jnp.float32)
    for xi, yi in zip(x, y):
        s = ridge.add(s, jnp.asarray(xi, jnp.float32), jnp.asarray(yi, jnp.float32))
    for r in range(0, 200, 3):
        s = ridge.remove(s, jnp.asarray(x[r], jnp.float32), jnp.asarray(y[r], jnp.float32))
    keep = [r for r in range(200) if r % 3]
    w32 = ridge.solve(s, LAM)
    w_ref = _numpy_minimiser(x[keep].astype(np.float32).astype(np.float64),
                             y[keep].astype(np.float32).astype(np.float64), LAM)
    bound = float(ridge.certified_distance(s, w32, LAM))
    assert bound >= np.linalg.norm(np.asarray(w32, np.float64) - w_ref)
    assert bound < 1e-2


def test_empty_set():
    s = ridge.init(D, K)
    np.testing.assert_array_equal(np.asarray(ridge.solve(s, LAM)), np.zeros((K, D)))
    w = jnp.ones((K, D))
    np.testing.assert_allclose(float(ridge.certified_distance(s, w, LAM)), np.sqrt(K * D), rtol=1e-6)
