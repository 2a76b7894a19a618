"""mpjax.MemoryPair: the imperative API raises clear errors where the pure core refuses, for every mechanism."""

import numpy as np
import pytest

import mpjax
from mpjax import unlearning as ul

D, K = 5, 3


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, n)
    x = rng.normal(size=(n, D)) + np.eye(K, D)[labels] * 2
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def _ready(mechanism, n=60, **settings):
    """An instance past calibration (30 rows) with n rows inserted in all."""
    x, labels = _rows(200)
    base = dict(gamma_learn=50.0, gamma_priv=5.0, min_points=8)
    base.update(settings)
    mp = mpjax.MemoryPair(D, K, max_points=300, mechanism=mechanism, settings=ul.Settings(**base), l2=0.1,
                          clip_norm=1.0)
    assert mp.phase == "CALIBRATION" and not mp.ready_to_predict and not mp.ready_to_delete
    with pytest.raises(RuntimeError, match="finalize_calibration"):
        mp.insert(x[0], labels[0])
    for i in range(30):
        mp.calibrate_step(x[i], labels[i])
    info = mp.finalize_calibration()
    assert info["mechanism"] == mechanism and info["N_star"] >= 1
    for j in range(30, n):
        mp.insert(x[j], labels[j])
    assert mp.phase == "INTERLEAVING" and mp.ready_to_predict
    return mp, x, labels, info


def test_exact_deletes_without_noise_or_budget_and_refuses_bad_deletes():
    mp, x, labels, info = _ready("exact")
    assert info["m"] is None and info["sigma"] == 0.0
    scores = mp.predict(x[0])
    assert scores.shape == (K,) and np.isfinite(scores).all()
    with pytest.raises(RuntimeError, match="never inserted"):
        mp.delete(x[199] * 0.5, labels[199])
    for j in range(3, 40):  # more deletions than any budget of the noisy mechanisms
        assert mp.delete(x[j], labels[j]) == 0.0
    assert mp.deletes == 37 and mp.ready_to_delete and mp.calibration["eps_spent"] == 0.0
    with pytest.raises(RuntimeError, match="never inserted|already deleted"):
        mp.delete(x[3], labels[3])
    with pytest.raises(RuntimeError, match="ends CALIBRATION"):
        mp.finalize_calibration()
    with pytest.raises(RuntimeError, match="refused"):
        mp.calibrate_step(x[199], labels[199])
    assert mp.deletes == 37


def test_polish_deletes_with_noise_until_its_capacity():
    mp, x, labels, info = _ready("polish", polish_capacity=2, polish_delta=0.1)
    assert info["m"] == 2 and info["sigma"] > 0
    assert mp.delete(x[3], labels[3]) > 0 and mp.delete(x[4], labels[4]) > 0
    assert not mp.ready_to_delete
    with pytest.raises(RuntimeError, match="budget exhausted"):
        mp.delete(x[5], labels[5])
    assert mp.deletes == 2
    mp.insert(x[150], labels[150])  # inserting goes on


def test_polish_refuses_what_it_cannot_certify_and_changes_nothing():
    mp, x, labels, _ = _ready("polish", polish_passes=1, polish_delta=1e-9)
    w = np.asarray(mp.state.model.w).copy()
    with pytest.raises(RuntimeError, match="could not certify.*polish_passes"):
        mp.delete(x[3], labels[3])
    assert mp.deletes == 0 and np.array_equal(np.asarray(mp.state.model.w), w)
    assert bool(mp.state.present[3])


def test_seed_mechanism_still_adds_its_large_noise():
    mp, x, labels, info = _ready("seed")
    assert info["sigma"] > 1.0  # sqrt(K) clip / lambda times z: the reason it destroys the model
    assert mp.delete(x[3], labels[3]) > 1.0


def test_bad_input_is_refused_with_clear_errors():
    mp = mpjax.MemoryPair(D, K, max_points=2)
    assert mp.mechanism == "exact"
    with pytest.raises(ValueError, match="5 features"):
        mp.calibrate_step(np.ones(4), 0)
    with pytest.raises(ValueError, match="NaN"):
        mp.calibrate_step(np.full(D, np.nan), 0)
    with pytest.raises(ValueError, match="class index"):
        mp.calibrate_step(np.ones(D) / 3, 7)
    mp.calibrate_step(np.ones(D) / 3, 0)
    mp.calibrate_step(np.ones(D) / 4, 1)
    with pytest.raises(RuntimeError, match="table full"):
        mp.calibrate_step(np.ones(D) / 5, 2)
    with pytest.raises(RuntimeError, match="not ready to predict"):
        mp.predict(np.ones(D) / 3)
    with pytest.raises(ValueError, match="clip_norm"):
        mpjax.MemoryPair(D, K, clip_norm=None)
    with pytest.raises(ValueError, match="mechanism"):
        mpjax.MemoryPair(D, K, mechanism="forget")
