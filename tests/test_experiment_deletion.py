"""The deletion-capacity experiment end to end on a tiny hand-made data set (no network)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from tqdm import tqdm

from configs.deletion_capacity import get_config
from experiments import common
from experiments import deletion_capacity as exp
from mpjax import unlearning as ul
from mpjax.data import Dataset
from mpjax.privacy import odometer as odo

ROOT = pathlib.Path(__file__).resolve().parents[1]
K = 3
COLUMNS = ["event", "op", "regret", "acc", "eps_spent", "capacity_remaining", "dist_to_retrain", "dist_to_replay"]


def _data(n=700, d=5):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, K, n)
    raw = rng.normal(size=(n, d)) + np.eye(K, d)[labels] * 2
    x = np.concatenate([raw, np.ones((n, 1))], axis=1)
    x /= np.linalg.norm(x, axis=1).max()
    return Dataset(name="covtype", x=x.astype(np.float32), y=np.eye(K, dtype=np.float32)[labels],
                   labels=labels.astype(np.int32), num_classes=K, raw=raw.astype(np.float32), image_shape=None,
                   provenance="simulated", source="test fixture")


def _cfg(**privacy):
    cfg = get_config()
    cfg.num_seeds = 2
    cfg.n_calibration = 60
    cfg.learn_cap = 200
    cfg.n_interleave = 220  # uniform 10:1 -> 200 inserts, 20 delete requests
    cfg.replay_checkpoints = 3
    cfg.privacy.min_points = 8
    cfg.privacy.gamma_learn = 2.0
    cfg.privacy.gamma_priv = 0.05  # tight: fewer deletions admitted than requested
    cfg.capacity.eps_points = 9
    for k, v in privacy.items():
        cfg.privacy[k] = v
    return cfg


def _run(cfg, data, workdir, schedules=("uniform",), accs=("zcdp",)):
    with tqdm(disable=True) as bar:
        return exp.run_dataset(cfg, data, list(schedules), list(accs), pathlib.Path(workdir), bar)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    data, cfg = _data(), _cfg()
    workdir = tmp_path_factory.mktemp("deletion")
    rows, cap = _run(cfg, data, workdir)
    prep = exp.prepare(cfg, data)
    res = exp.run_cell(cfg, prep, "uniform", "zcdp")
    return cfg, data, workdir, rows, cap, res


def test_csv_has_the_required_columns_and_sane_values(small):
    cfg, _, workdir, _, _, _ = small
    frame = pd.read_csv(workdir / "deletion_covtype_uniform_zcdp.csv")
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert frame["event"].is_monotonic_increasing
    assert (np.diff(frame["eps_spent"]) >= -1e-9).all()
    # Capacity is 0 until the odometer is fixed at the end of calibration, then only goes down.
    after = frame[frame["event"] >= cfg.n_calibration]["capacity_remaining"]
    assert (np.diff(after) <= 1e-9).all() and (frame["capacity_remaining"] >= 0).all() and after.iloc[0] >= 1
    for col in ("regret", "acc", "eps_spent", "capacity_remaining", "dist_to_retrain"):
        assert np.isfinite(frame[col]).all(), col
    assert np.isfinite(frame["dist_to_replay"]).sum() >= 1  # at the checkpoints, NaN elsewhere
    assert set(frame["op"]) <= {"calibrate", "insert", "delete"}


def test_admitted_deletions_never_exceed_capacity_and_extra_requests_are_refused(small):
    _, _, _, _, _, res = small
    out, ops = res["out"], res["ops"]
    m = np.asarray(res["odometer"].m)
    is_del = ops == ul.OP_DELETE
    for s in range(len(m)):
        admitted = int(np.sum(np.asarray(out.applied)[s, is_del]))
        requested = int(is_del.sum())
        assert admitted <= m[s]
        if requested > m[s]:
            assert admitted == m[s]
            refused = np.asarray(out.reason)[s, is_del & ~np.asarray(out.applied)[s]]
            assert (refused == ul.BUDGET).any()


def test_exact_reference_equals_numpy_ridge_on_the_rows_present(small):
    """RidgeRef at the checkpoints equals a float64 NumPy ridge solve on the rows still present."""
    cfg, data, _, _, _, res = small
    out, ops, rows = res["out"], res["ops"], res["row"]
    applied = np.asarray(out.applied)
    for s in range(cfg.num_seeds):
        for ci, g in enumerate(res["checkpoints"]):
            present = []
            for e in range(g + 1):
                if not applied[s, e]:
                    continue
                if ops[e] == ul.OP_DELETE:
                    present.remove(rows[s, e])
                else:
                    present.append(rows[s, e])
            xs = data.x[present].astype(np.float64)
            ys = data.y[present].astype(np.float64)
            w = np.linalg.solve(cfg.lam * np.eye(xs.shape[1]) + xs.T @ xs, xs.T @ ys)
            got = np.asarray(res["w_ridge_ckpt"][s, ci])
            got = got.T if got.shape != w.shape else got
            np.testing.assert_allclose(got, w, rtol=2e-3, atol=2e-4)
            # dist_to_retrain at that event is the relative distance of the model to this solution.
            w_mp = np.asarray(res["w_mp_ckpt"][s, ci])
            w_mp = w_mp if w_mp.shape == w.T.shape else w_mp.T
            expect = np.linalg.norm(w_mp - w.T) / np.linalg.norm(w)
            np.testing.assert_allclose(float(np.asarray(out.dist_to_retrain)[s, g]), expect, rtol=5e-3)


def test_json_has_theory_beside_empirics(small):
    _, _, workdir, _, _, _ = small
    meta = json.loads((workdir / "deletion_covtype_uniform_zcdp.json").read_text())
    text = json.dumps(meta)
    for field in ("N_star", "sigma", "eps_step", "delta_step", '"G"', '"D"', '"c"', '"C"', "config_hash",
                  "data_provenance", "git_commit", "deletions_refused"):
        assert field in text, field
    assert meta["data_provenance"] == "simulated"


def test_plots_are_real_images(small):
    _, _, workdir, _, _, _ = small
    for name in ("deletion_covtype_uniform_zcdp.png", "deletion_capacity_covtype.png"):
        img = matplotlib.image.imread(workdir / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img[..., :3].std() > 0.01


def test_capacity_curve_is_monotone_and_equals_single_finalize_calls(small):
    cfg, data, workdir, _, cap, res = small
    frame = pd.read_csv(workdir / "deletion_capacity_covtype.csv")
    for a in ("basic", "zcdp", "rdp", "exact"):
        assert (np.diff(frame[f"m_{a}"]) >= 0).all(), a
    calibration = exp.calibration_from_constants(cap["constants"])
    dim = int(data.x.shape[1] * data.num_classes)
    for eps in frame["eps"].iloc[[0, 4, 8]]:
        one = odo.finalize(calibration, float(cfg.T), float(cfg.privacy.gamma_priv), float(np.float32(eps)),
                           float(cfg.privacy.delta_total), float(cfg.learner.l2), float(cfg.privacy.delta_B),
                           accountant="zcdp", dim=dim, max_deletions=int(cfg.privacy.max_deletions))
        assert int(one.m) == int(frame.loc[frame["eps"] == eps, "m_zcdp"].iloc[0])


def test_rerun_reproduces_csv_and_other_configs_are_not_overwritten(small, tmp_path):
    cfg, data, workdir, _, _, _ = small
    _run(cfg, data, tmp_path)
    name = "deletion_covtype_uniform_zcdp.csv"
    assert (tmp_path / name).read_bytes() == (workdir / name).read_bytes()
    with pytest.raises(common.ResultsExistError, match="--overwrite"):
        _run(_cfg(gamma_priv=0.5), data, tmp_path)


def test_unknown_schedule_gets_a_clear_error():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-m", "experiments.deletion_capacity", "--schedule=storm"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "uniform" in out.stderr and "burst" in out.stderr and "trickle" in out.stderr
