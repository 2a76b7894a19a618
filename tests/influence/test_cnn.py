"""The ResNet-9 path: the tiny CI run (metagradient vs finite differences, LDS), weights, augmentation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import influence_gpu
from mpjax.influence import cnn

MCFG = cnn.ModelConfig(width=1 / 16)  # widths (4, 8, 16, 32)
TCFG = cnn.TrainConfig(peak_lr=0.2, max_shift=1)


def _tiny(n=16, j=3, size=8, dtype=jnp.float64):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n + j)
    protos = rng.normal(size=(10, size, size, 3))
    x = protos[labels] + 0.5 * rng.normal(size=(n + j, size, size, 3))
    x = jnp.asarray(x, dtype)
    y = jnp.asarray(labels, jnp.int32)
    params = jax.jit(cnn.init_params, static_argnums=(1, 2))(jax.random.key(0), MCFG, dtype)  # one compile
    order = jnp.asarray(np.random.default_rng(1).permutation(np.tile(np.arange(n), 2)).reshape(-1, 4),
                        jnp.int32)  # 8 steps of 4
    return params, x[:n], y[:n], order, x[n:], y[n:]


def test_tiny_run_metagradient_matches_finite_differences_and_predicts_retrains(tmp_path):
    """The CI run of benchmarks.influence_gpu (16x16, width 0.125, n = 128, float64): the exact metagradient
    of the ResNet-9 through 8 SGD-momentum steps (scan_remat, 'dots' policy) equals central differences
    of the actual retrain (eps = 1e-4), and predicts drop-5% retrains."""
    res = influence_gpu.main(["--preset=tiny", "--targets=3", "--epochs=1", "--out", str(tmp_path)])
    assert jnp.zeros(()).dtype == jnp.float32  # the run's float64 did not leak into the process
    assert res["tau_finite"] and res["data_provenance"] == "simulated"
    assert res["finite_differences"]["max_rel_err"] < 1e-5, res["finite_differences"]
    assert res["subsets_done"] == 10 and res["lds_drop_5pct"]["lds"] > 0.5
    saved = json.loads((tmp_path / "influence_gpu.json").read_text())
    assert saved["lds_drop_5pct"] == res["lds_drop_5pct"]
    assert (tmp_path / "influence_gpu_lds_per_target.csv").read_text().startswith("target,lds")


@pytest.mark.slow
def test_remat_and_policies_match_the_plain_scan(x64):
    params, x, y, order, tx, ty = _tiny()
    key = jax.random.key(2)
    ref = jax.jit(lambda: cnn.metagradients(params, x, y, order, key, tx, ty, MCFG, TCFG))()[1]
    for levels, policy in (((2, 2, 2), None), ((3, 3), cnn.POLICIES["nothing"]), ((2, 4), cnn.POLICIES["dots"])):
        got = jax.jit(lambda: cnn.metagradients(params, x, y, order, key, tx, ty, MCFG, TCFG, levels=levels,
                                                policy=policy))()[1]
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)


def test_zero_weight_removes_a_sample_and_no_statistic_is_shared_across_the_batch(x64):
    """omega = 0: changing that sample's image changes neither the others' logits (per-example
    normalisation, no BatchNorm) nor the weighted training gradient of the batch."""
    params, x, y, _, _, _ = _tiny()
    w = jnp.ones(4).at[3].set(0.0)

    @jax.jit
    def logits_and_grad(images):
        loss = lambda p: jnp.sum(w * cnn.cross_entropy(cnn.forward(p, images, MCFG), y[:4])) / 4  # noqa: E731
        return cnn.forward(params, images, MCFG), jax.grad(loss)(params)

    (la, ga), (lb, gb) = logits_and_grad(x[:4]), logits_and_grad(x[:4].at[3].set(x[5]))
    np.testing.assert_allclose(lb[:3], la[:3], rtol=1e-12)
    assert not np.allclose(lb[3], la[3])
    for p, q in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-14)


def test_augmentation_is_keyed_by_step_and_order_is_fixed():
    x = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1)
    k = jax.random.key(4)
    a = cnn.augment(jax.random.fold_in(k, 3), x, 2, True)
    np.testing.assert_array_equal(a, cnn.augment(jax.random.fold_in(k, 3), x, 2, True))
    assert not np.array_equal(a, cnn.augment(jax.random.fold_in(k, 4), x, 2, True))
    np.testing.assert_array_equal(cnn.augment(k, x, 0, False), x)
    order = cnn.make_order(jax.random.key(0), 10, 3, 2)
    assert order.shape == (6, 3)
    assert len(set(np.asarray(order[:3]).ravel())) == 9
    with pytest.raises(ValueError, match="batch_size must be in"):
        cnn.make_order(jax.random.key(0), 10, 11, 1)
    lr = np.asarray(cnn.lr_schedule(8, cnn.TrainConfig(peak_lr=1.0, warmup_frac=0.25)))
    assert lr.max() == pytest.approx(1.0) and lr[0] > 0 and lr[-1] > 0 and lr.argmax() == 1
