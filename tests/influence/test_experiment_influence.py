"""The influence entry point: outputs, run ids, registry, reruns, clean confinement, bad input."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from configs.influence import get_config
from experiments import influence as exp

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _cfg(root, **overrides):
    cfg = get_config()
    cfg.root = str(root)
    cfg.n, cfg.num_targets, cfg.num_subsets = 300, 4, 10
    cfg.protocols, cfg.cross_order = "drop_5pct,alpha_0.5", "drop_5pct"
    cfg.data_source = "simulated"
    cfg.smoothness_samples, cfg.smoothness_targets = 2, 2
    cfg.retrain_chunk = 6
    cfg.num_boot = 200
    cfg.update_from_flattened_dict(overrides)
    return cfg


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    import jax

    root = tmp_path_factory.mktemp("influence")
    with jax.enable_x64(True):
        path = exp.run(_cfg(root, run_id="base"))
    return root, path


def test_full_run_writes_every_output(full_run):
    root, path = full_run
    for name in ("config.json", "lds.csv", "lds_per_target.csv", "smoothness.csv", "summary.md", "lds.png",
                 "predicted_vs_actual.png", "masks_drop_5pct.npz", "actual_alpha_0.5.npz",
                 "actual_drop_5pct_own_order.npz", *(f"scores_{m}.npz" for m in
                                                     ("metagradient", "tracin", "grad_dot", "influence_function"))):
        assert (path / name).exists(), name
    frame = pd.read_csv(path / "lds.csv")
    assert list(frame.columns[:11]) == ["learner", "protocol", "method", "lds", "ci_lo", "ci_hi", "p10", "p90",
                                        "n_targets", "n_subsets", "dtype"]
    assert set(frame.protocol) == {"drop_5pct", "alpha_0.5", "drop_5pct_own_order"}
    assert (frame.provenance == "simulated").all() and (frame.dtype == "float64").all()
    mg = frame[(frame.method == "metagradient") & (frame.protocol == "drop_5pct")].iloc[0]
    assert mg.ci_lo <= mg.lds <= mg.ci_hi and mg.lds > 0.9
    with np.load(path / "scores_metagradient.npz", allow_pickle=False) as z:
        assert z["tau"].shape == (4, 300) and z["order"].shape == (300,)
    meta = json.loads((path / "config.json").read_text())
    assert meta["problem"]["data_provenance"] == "simulated" and meta["git_commit"] is not None
    assert meta["smoothness"]["fd_1e-4_max_rel_err"] < 1e-3
    reg = json.loads((root / "registry.json").read_text())["runs"]["base"]
    assert reg["status"] == "done" and reg["config_hash"] == meta["run_hash"]


def test_same_seed_same_masks_and_scores_and_checkpoints_are_reused(full_run, x64):
    root, path = full_run
    other = exp.run(_cfg(root, run_id="again"))
    for name in ("masks_drop_5pct.npz", "scores_metagradient.npz", "scores_tracin.npz", "actual_alpha_0.5.npz"):
        with np.load(path / name) as a, np.load(other / name) as b:
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}:{k}")
    # A rerun of the same id and config reuses its checkpoints and reproduces the table.
    stamp = {p: p.stat().st_mtime_ns for p in (other / "checkpoints").iterdir()}
    exp.run(_cfg(root, run_id="again", action="lds"))
    assert {p: p.stat().st_mtime_ns for p in (other / "checkpoints").iterdir()} == stamp
    pd.testing.assert_frame_equal(pd.read_csv(path / "lds.csv"), pd.read_csv(other / "lds.csv"))


def test_reusing_an_id_with_another_config_needs_force(full_run, x64):
    root, _ = full_run
    with pytest.raises(ValueError, match="exists with another configuration.*--force"):
        exp.run(_cfg(root, run_id="base", num_subsets=11))


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "a..b", "x" * 65, "-a", "a b", "/abs"])
def test_invalid_run_ids_are_refused_before_any_path(bad):
    with pytest.raises(ValueError, match="run_id .* is invalid"):
        exp.validate_run_id(bad)
    with pytest.raises(ValueError, match="invalid"):
        exp.run_dir("/nonexistent-root", bad)


def test_generated_ids_are_valid():
    rid = exp.new_run_id()
    assert exp.validate_run_id(rid) == rid and len(rid) == len("20260101_000000_abcdef")


def test_clean_is_confined_to_runs(tmp_path, x64):
    cfg = _cfg(tmp_path, run_id="victim")
    runs = tmp_path / "runs"
    (runs / "victim" / "checkpoints").mkdir(parents=True)
    (runs / "victim" / "checkpoints" / "a.npz").write_bytes(b"x")
    (runs / "victim" / "config.json").write_text("{}")
    exp.update_registry(cfg.root, "victim", status="done")
    cfg.what = "checkpoints"
    exp.clean(cfg)
    assert not (runs / "victim" / "checkpoints").exists() and (runs / "victim" / "config.json").exists()
    outside = tmp_path / "outside"
    (outside / "checkpoints").mkdir(parents=True)
    (outside / "keep.txt").write_text("keep")
    os.symlink(outside, runs / "escape")
    cfg.run_id, cfg.what = "escape", "all"
    with pytest.raises(ValueError, match="does not resolve inside"):
        exp.clean(cfg)
    os.symlink(outside / "checkpoints", runs / "victim" / "checkpoints")
    cfg.run_id, cfg.what = "victim", "checkpoints"
    with pytest.raises(ValueError, match="does not resolve inside"):
        exp.clean(cfg)
    assert (outside / "keep.txt").exists() and (outside / "checkpoints").exists()
    (runs / "victim" / "checkpoints").unlink()
    cfg.what = "all"
    exp.clean(cfg)
    assert not (runs / "victim").exists()
    assert "victim" not in exp.read_registry(cfg.root)["runs"]


def test_lds_without_scores_names_the_action(tmp_path, x64):
    with pytest.raises(ValueError, match="needs --run_id"):
        exp.run(_cfg(tmp_path, action="lds"))
    with pytest.raises(ValueError, match="run --action=magic"):
        exp.run(_cfg(tmp_path, action="lds", run_id="empty"))


def test_scores_that_do_not_match_are_refused(full_run, x64, tmp_path):
    root, path = full_run
    import shutil

    copy = root / "runs" / "tampered"
    shutil.copytree(path, copy)
    with np.load(copy / "scores_tracin.npz") as z:
        arrays = dict(z)
    from experiments import common

    common.write_npz(copy / "scores_tracin.npz", **{**arrays, "tau": arrays["tau"][:, :-1]})
    with pytest.raises(ValueError, match=r"scores_tracin.npz: tau has shape \(4, 299\), expected \(J, n\) = \(4, 300\)"):
        exp.run(_cfg(root, action="lds", run_id="tampered"))
    rows = arrays["train_rows"].copy()
    rows[0] += 100000
    common.write_npz(copy / "scores_tracin.npz", **{**arrays, "train_rows": rows})
    with pytest.raises(ValueError, match="train_rows do not match"):
        exp.run(_cfg(root, action="lds", run_id="tampered"))


@pytest.mark.parametrize("field, value, match", [
    ("num_targets", 0, r"num_targets \(J\) must be >= 1, got 0"),
    ("num_subsets", 9, r"num_subsets \(S\) must be >= 10, got 9"),
    ("protocols", "drop_1.5", r"drop fraction must be in \(0, 1\), got 1.5"),
    ("cross_order", "alpha_0", r"alpha must be in \(0, 1\), got 0.0"),
    ("protocols", "half", "unknown LDS protocol"),
    ("methods", "magic", "methods must be a comma list"),
    ("retrain_batch", -1, r"retrain_batch must be >= 0 \(0: all at once\), got -1"),
])
def test_bad_config_is_refused_before_any_work(tmp_path, field, value, match):
    with pytest.raises(ValueError, match=match):
        exp.run(_cfg(tmp_path, **{field: value}))
    assert not (tmp_path / "runs").exists()


def test_command_line_refuses_a_bad_run_id_and_lists_runs(full_run):
    root, _ = full_run
    base = [sys.executable, "-m", "experiments.influence", f"--config.root={root}"]
    bad = subprocess.run([*base, "--action=full", "--run_id=../escape"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "run_id '../escape' is invalid" in bad.stderr
    listed = subprocess.run([*base, "--action=list"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "base" in listed.stdout and "done" in listed.stdout
