"""LDS machinery: masks, retrains, Spearman against scipy, bootstrap intervals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from mpjax.influence import lds, metagrad
from tests.influence import _fixtures as fx


@pytest.mark.parametrize("name, count", [("drop_1pct", 5), ("drop_5pct", 25), ("alpha_0.5", 250)])
def test_masks_have_exact_sizes_and_are_seeded(name, count):
    kind, frac = lds.protocol_spec(name)
    masks = np.asarray(lds.make_masks(jax.random.key(3), 500, 20, kind, frac))
    kept = masks.sum(axis=1)
    expected_kept = 500 - count if kind == "drop" else count
    np.testing.assert_array_equal(kept, expected_kept)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert len({m.tobytes() for m in masks}) == 20  # independent subsets
    again = np.asarray(lds.make_masks(jax.random.key(3), 500, 20, kind, frac))
    np.testing.assert_array_equal(masks, again)
    other = np.asarray(lds.make_masks(jax.random.key(4), 500, 20, kind, frac))
    assert not np.array_equal(masks, other)


@pytest.mark.parametrize("kind, fraction, subsets, match", [
    ("drop", 0.0, 20, r"drop fraction must be in \(0, 1\), got 0.0"),
    ("drop", 1.0, 20, r"drop fraction must be in \(0, 1\), got 1.0"),
    ("keep", 1.5, 20, r"alpha must be in \(0, 1\), got 1.5"),
    ("keep", -0.1, 20, r"alpha must be in \(0, 1\)"),
    ("drop", 0.05, 9, "num_subsets must be >= 10 for a rank correlation, got 9"),
    ("drop", 0.001, 20, "selects 0; valid: between 1 and n - 1"),
    ("other", 0.5, 20, "mask kind"),
])
def test_mask_arguments_are_validated(kind, fraction, subsets, match):
    with pytest.raises(ValueError, match=match):
        lds.make_masks(jax.random.key(0), 100, subsets, kind, fraction)


def test_protocol_names():
    assert lds.protocol_spec("drop_0.1") == ("drop", 0.1)
    assert lds.protocol_spec("alpha_0.3") == ("keep", 0.3)
    with pytest.raises(ValueError, match="unknown LDS protocol 'half'"):
        lds.protocol_spec("half")


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 6))
    b = a + rng.normal(size=(40, 6))
    a[:10, 0] = 1.0  # ties
    b[5:25, 2] = np.round(b[5:25, 2])
    ours = lds.spearman(a, b)
    ref = [scipy.stats.spearmanr(a[:, j], b[:, j]).statistic for j in range(6)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert np.isnan(lds.spearman(np.ones((12, 1)), b[:12, :1]))[0]
    np.testing.assert_allclose(lds.lds(a[:20], 3.0 * a[:20] + 1.0), 1.0)
    np.testing.assert_allclose(lds.lds(a[:20], -a[:20]), -1.0)
    with pytest.raises(ValueError, match="S >= 10"):
        lds.lds(a[:5], a[:5])


def test_bootstrap_interval_over_targets():
    rng = np.random.default_rng(1)
    v = 0.9 + 0.05 * rng.normal(size=50)
    mean, lo, hi = lds.bootstrap_ci(v, seed=3)
    assert mean == pytest.approx(v.mean())
    assert lo < mean < hi
    half = 1.96 * v.std(ddof=1) / np.sqrt(50)  # the normal interval, for scale
    assert hi - lo == pytest.approx(2 * half, rel=0.25)
    assert lds.bootstrap_ci(v, seed=3) == (mean, lo, hi)
    with_nan = np.concatenate([v, [np.nan]])
    assert lds.bootstrap_ci(with_nan, seed=3)[0] == pytest.approx(mean)


def test_retrain_outputs_equal_separate_retrains_same_and_own_order(x64):
    x, y, tx, ty = fx.problem(n=50, j=3)
    lrn = fx.learner("sgd")
    state = fx.init(lrn)
    order = jnp.arange(50, dtype=jnp.int32)
    masks = lds.make_masks(jax.random.key(0), 50, 10, "drop", 0.1)
    orders = lds.make_orders(jax.random.key(1), order, 10)
    assert all(sorted(np.asarray(o).tolist()) == list(range(50)) for o in orders)
    same = np.asarray(jax.jit(lambda m: lds.retrain_outputs(lrn, state, x, y, order, m, tx, ty))(masks))
    own = np.asarray(jax.jit(lambda m, o: lds.retrain_outputs(lrn, state, x, y, o, m, tx, ty))(masks, orders))
    for s in (0, 7):
        kept = np.flatnonzero(np.asarray(masks[s]))
        for out, o in ((same, order), (own, orders[s])):
            final, _ = metagrad.train_weighted(lrn, state, x, y, o, jnp.asarray(masks[s], jnp.float64))
            np.testing.assert_allclose(out[s], metagrad.target_losses(lrn, final, tx, ty), rtol=1e-12)
        assert kept.size == 45
    assert not np.allclose(same, own)
    np.testing.assert_allclose(lds.predicted_outputs(masks, np.ones((3, 50))), np.full((10, 3), 45.0))


@pytest.mark.parametrize("name", ["sgd", "memorypair"])
def test_retrains_in_batches_equal_one_vmap(x64, name):
    """batch_size 3 over 10 subsets (the last batch short) == one vmap, to rounding, same and own order."""
    x, y, tx, ty = fx.problem(n=50, j=3)
    lrn = fx.learner(name)
    state = fx.init(lrn)
    order = jnp.arange(50, dtype=jnp.int32)
    masks = lds.make_masks(jax.random.key(0), 50, 10, "drop", 0.1)
    orders = lds.make_orders(jax.random.key(1), order, 10)
    for o in (order, orders):
        whole = np.asarray(lds.retrain_outputs(lrn, state, x, y, o, masks, tx, ty))
        batched = np.asarray(lds.retrain_outputs(lrn, state, x, y, o, masks, tx, ty, batch_size=3))
        np.testing.assert_allclose(batched, whole, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="batch_size"):
        lds.retrain_outputs(lrn, state, x, y, order, masks, tx, ty, batch_size=-1)
