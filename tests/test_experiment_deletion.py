"""The certified-deletion experiment end to end on a small simulated data set (no network)."""

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

from configs.deletion_capacity import get_config
from experiments import common
from experiments import deletion_capacity as exp
from mpjax import unlearning as ul

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAME = "deletion_covtype_uniform_zcdp"


def _cfg(**over):
    cfg = get_config()
    cfg.num_seeds = 2
    cfg.max_rows = 3000
    cfg.n_test = 300
    cfg.n_calibration = 150
    cfg.n_learn = 250
    cfg.n_interleave = 110  # uniform 10:1 -> 10 delete requests
    cfg.chunk = 100
    cfg.eval_every = 25
    cfg.injection.rows = 8
    cfg.injection.inserts_between = 4
    cfg.privacy.min_points = 8
    cfg.privacy.gamma_learn = 2.0
    cfg.audit.trials = 2000
    for k, v in over.items():
        cfg[k] = v
    return cfg


def _run(cfg, workdir):
    with jax.enable_x64(True), common.single_threaded_blas():
        return exp.run_config(cfg, pathlib.Path(workdir))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cfg = _cfg()
    workdir = tmp_path_factory.mktemp("deletion")
    return cfg, workdir, _run(cfg, workdir)


def test_every_mechanism_deletes_as_certified_against_an_independent_retrain(small):
    cfg, workdir, out = small
    frame = pd.read_csv(workdir / f"{NAME}_deletions.csv")
    lam, delta = cfg.learner.l2, cfg.privacy.polish_delta
    exact, polish, seed = (frame[(frame.mechanism == m) & frame.applied] for m in ("exact", "polish", "seed"))
    assert len(exact) == len(polish) == 2 * 10  # every request applied, both seeds
    assert (exact.dist_to_retrain <= 1e-9).all() and (exact.bound >= exact.dist_to_retrain).all()
    assert (polish.dist_to_retrain <= polish.bound).all() and (polish.bound <= delta).all()
    assert (exact.violation == 0).all() and (polish.violation == 0).all()
    assert len(seed) < 2 * 10  # the seed mechanism's budget runs out
    refused = frame[(frame.mechanism == "seed") & ~frame.applied]
    assert (refused.reason == ul.REASONS[ul.BUDGET]).all()
    # Independent reference: replay the event log, solve the normal equations in NumPy float64, compare.
    plan, res = out["plan"], out["results"]["polish"]["res"]
    xs, ys, rows = np.asarray(plan.xs), np.asarray(plan.ys), np.asarray(plan.rows)
    present = set()
    requests = 0
    for stage in ("calibrate", "learn", "interleave"):
        ops, pos = plan.stages[stage][0], plan.stages[stage][1][1]
        for op, p, ok in zip(ops, pos, np.asarray(res["outs"][stage].applied[1])):
            if op == ul.OP_DELETE:
                present.discard(int(p)) if ok else None
                requests += 1
            elif ok:
                present.add(int(p))
    keep = rows[1, sorted(present)]
    x, y = xs[keep], ys[keep]
    w_star = np.linalg.solve(x.T @ x + len(keep) * lam * np.eye(x.shape[1]), x.T @ y).T
    last = polish[polish.seed == 1].iloc[-1]
    np.testing.assert_allclose(np.linalg.norm(res["cert"][1, requests - 1] - w_star), last.dist_to_retrain,
                               rtol=1e-6, atol=1e-13)


def test_sigma_is_fixed_and_the_model_survives(small):
    cfg, workdir, _ = small
    meta = json.loads((workdir / f"{NAME}.json").read_text())
    pol, ex, sd = (meta["mechanisms"][m] for m in ("polish", "exact", "seed"))
    check = pol["sigma_check"]
    assert check["constant_over_deletes_and_seeds"] and check["constant_over_probe_rows"]
    assert len(check["sigma_values_over_applied_deletes"]) == 1 and check["sigma_values_over_applied_deletes"][0] > 0
    assert ex["theory"]["sigma"] == [0.0, 0.0] and ex["theory"]["eps_spent_final"] == [0.0, 0.0]
    for m in (pol, ex):
        assert abs(m["test_acc_loss_vs_no_deletions_points"]) < 5.0
    assert sd["test_acc_loss_vs_no_deletions_points"] > 20.0  # the seed mechanism's noise destroys the model


def test_feature_injection_and_audit(small):
    _, workdir, _ = small
    meta = json.loads((workdir / f"{NAME}.json").read_text())
    inj = {m: meta["mechanisms"][m]["feature_injection"] for m in ("exact", "polish", "seed")}
    for m in inj.values():
        assert min(m["weight_before_deletes"]) > 1e-3  # the feature was learned
    assert max(inj["exact"]["weight_after_certified"]) < 1e-12
    assert max(inj["polish"]["weight_after_certified"]) <= meta["config"]["privacy"]["polish_delta"]
    assert inj["exact"]["retrain_weight_seed0"] == 0.0
    audit = meta["mechanisms"]["polish"]["distinguishing_audit"]
    lo, hi = audit["tpr_ci95"]
    assert lo <= audit["tpr_certified"] + 0.01 and audit["tpr"] <= 0.05
    assert meta["mechanisms"]["exact"]["distinguishing_audit"] is None


def test_outputs_columns_metadata_and_plots(small):
    _, workdir, _ = small
    frame = pd.read_csv(workdir / f"{NAME}.csv")
    assert list(frame.columns) == list(exp.EVENT_COLUMNS)
    assert set(frame.mechanism) == {"exact", "polish", "seed", "none"}
    assert set(frame.op) <= {"calibrate", "insert", "delete", "noop"}
    cap = pd.read_csv(workdir / f"{NAME}_capacity.csv")
    polish = [c for c in cap.columns if c.startswith("m_polish_delta_")]
    assert len(polish) == 3 and (np.diff(cap[polish + ["m_seed"]], axis=0) >= 0).all()
    # A looser certificate means more noise per release: never more capacity.
    assert (cap[polish].diff(axis=1).iloc[:, 1:] <= 0).all().all()
    meta = json.loads((workdir / f"{NAME}.json").read_text())
    for field in ("data_provenance", "config_hash", "git_commit", "objective", "summary", "capacity_curve"):
        assert field in meta, field
    assert meta["data_provenance"] == "simulated" and meta["float64"]
    for suffix in ("capacity", "distance", "accuracy"):
        img = matplotlib.image.imread(workdir / f"{NAME}_{suffix}.png")
        assert img.ndim == 3 and img.shape[0] > 200 and img[..., :3].std() > 0.01


def test_rerun_reproduces_and_other_configs_are_not_overwritten(tmp_path):
    cfg = _cfg(mechanism="exact")
    _run(cfg, tmp_path / "a")
    _run(cfg, tmp_path / "b")
    for suffix in (".csv", "_deletions.csv"):
        a, b = (tmp_path / w / f"{NAME}_exact{suffix}" for w in ("a", "b"))
        assert a.read_bytes() == b.read_bytes()
    other = _cfg(mechanism="exact", n_learn=260)
    with pytest.raises(common.ResultsExistError, match="--overwrite"):
        _run(other, tmp_path / "a")


def test_unknown_mechanism_gets_a_clear_error():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-m", "experiments.deletion_capacity", "--mechanism=forget"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "exact" in out.stderr and "polish" in out.stderr and "seed" in out.stderr
