"""mpjax.MemoryPair: the imperative API raises clear errors where the pure core refuses."""

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


@pytest.fixture(scope="module")
def ready():
    x, labels = _rows(200)
    mp = mpjax.MemoryPair(D, K, max_points=300, settings=ul.Settings(gamma_learn=50.0, gamma_priv=1.0, min_points=8),
                          l2=0.1, clip_norm=1.0)
    assert mp.phase == "CALIBRATION" and not mp.ready_to_predict and not mp.ready_to_delete
    with pytest.raises(RuntimeError, match="finalize_calibration"):
        mp.insert(x[0], labels[0])
    for i in range(30):
        mp.calibrate_step(x[i], labels[i])
    info = mp.finalize_calibration()
    assert info["N_star"] >= 1 and info["m"] >= 1 and info["sigma"] > 0
    i = 30
    while not mp.ready_to_predict:
        mp.insert(x[i], labels[i])
        i += 1
    assert mp.inserts == max(info["N_star"], 30) and mp.phase == "INTERLEAVING"
    for j in range(i, 190):  # every row but the last ten is in the model
        mp.insert(x[j], labels[j])
    assert info["m"] < 180, info
    return mp, x, labels, 190


def test_phase_errors_and_predict(ready):
    mp, x, labels, _ = ready
    scores = mp.predict(x[0])
    assert scores.shape == (K,) and np.isfinite(scores).all()
    with pytest.raises(RuntimeError, match="ends CALIBRATION"):
        mp.finalize_calibration()
    with pytest.raises(RuntimeError, match="refused"):
        mp.calibrate_step(x[199], labels[199])


def test_delete_rules(ready):
    mp, x, labels, nxt = ready
    with pytest.raises(RuntimeError, match="never inserted"):
        mp.delete(x[199] * 0.5, labels[199])
    noise = mp.delete(x[3], labels[3])
    assert noise > 0 and mp.deletes == 1
    with pytest.raises(RuntimeError, match="never inserted|already deleted"):
        mp.delete(x[3], labels[3])
    m = mp.calibration["m"]
    for j in range(4, 4 + m - 1):
        mp.delete(x[j], labels[j])
    assert not mp.ready_to_delete
    with pytest.raises(RuntimeError, match="budget exhausted"):
        mp.delete(x[4 + m], labels[4 + m])
    assert mp.deletes == m


def test_bad_input_is_refused_with_clear_errors():
    mp = mpjax.MemoryPair(D, K, max_points=2)
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
