"""The regret experiment end to end: exact values, files, reruns, crashes, flags, sharding."""

import json
import os
import pathlib
import subprocess
import sys

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from tqdm import tqdm

from configs.regret import get_config
from experiments import common
from experiments import regret as exp
from mpjax.data import Dataset

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _dataset(x, labels, k, name="covtype"):
    x = np.asarray(x, np.float32)
    labels = np.asarray(labels, np.int32)
    return Dataset(name=name, x=x, y=np.eye(k, dtype=np.float32)[labels], labels=labels, num_classes=k,
                   raw=x[:, :-1].copy(), image_shape=None, provenance="simulated", source="test fixture")


def _cfg(**overrides):
    cfg = get_config()
    cfg.update_from_flattened_dict(overrides)
    return cfg


def _run(cfg, data, kind, algos, workdir):
    with tqdm(disable=True) as bar:
        return exp.run_cell(cfg, data, kind, algos, pathlib.Path(workdir), bar)


def test_hand_made_three_step_stream_gives_exact_csv_values(tmp_path):
    """Three identical samples x = 1 of class 0 (K = 2, d = 1), SGD with eta/sqrt(t), no ridge, no clip.

    Output 0 regresses 1, output 1 regresses 0 and never moves. By hand:
    theta_1 = 0; theta_{t+1} = theta_t - eta/sqrt(t) (theta_t - 1).
    Comparator: min_theta 1/2 t (theta - 1)^2 + lam/2 theta^2 = 1/2 t lam / (t + lam).
    """
    eta, lam = 0.5, 0.3
    data = _dataset([[1.0]] * 3, [0, 0, 0], 2)
    cfg = _cfg(T=3, num_seeds=2, lam=lam, **{"learners.sgd.learning_rate": eta, "learners.sgd.l2": 0.0,
                                             "learners.sgd.clip_norm": None})
    _run(cfg, data, "iid", ["sgd"], tmp_path)
    frame = pd.read_csv(tmp_path / "covtype_iid_sgd.csv")
    theta, cum, expected = 0.0, 0.0, []
    for t in (1, 2, 3):
        cum += 0.5 * (theta - 1.0) ** 2
        comp = 0.5 * t * lam / (t + lam)
        expected.append((t, cum - comp, cum, comp))
        theta -= eta / np.sqrt(t) * (theta - 1.0)
    expected = np.array(expected)
    np.testing.assert_array_equal(frame["step"], [1, 2, 3])
    np.testing.assert_allclose(frame["regret"], expected[:, 1], rtol=1e-6)
    np.testing.assert_allclose(frame["cum_loss"], expected[:, 2], rtol=1e-6)
    np.testing.assert_allclose(frame["comparator_loss"], expected[:, 3], rtol=1e-9)
    # Both seeds see the same numbers, so the band collapses onto the mean.
    np.testing.assert_allclose(frame["regret_lo"], frame["regret"], rtol=1e-6)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small real run of the pipeline (simulated covtype rows, drift stream, two learners)."""
    rng = np.random.default_rng(0)
    n, k = 400, 3
    labels = rng.integers(0, k, n)
    raw = rng.normal(size=(n, 4)) + np.eye(k, 4)[labels] * 2
    x = np.concatenate([raw, np.ones((n, 1))], axis=1)
    scale = np.linalg.norm(x, axis=1).max()
    data = Dataset(name="covtype", x=(x / scale).astype(np.float32), y=np.eye(k, dtype=np.float32)[labels],
                   labels=labels.astype(np.int32), num_classes=k, raw=raw.astype(np.float32), image_shape=None,
                   provenance="simulated", source="test fixture", feature_scale=float(scale))
    cfg = _cfg(T=2000, num_seeds=3, window=500, comparator_block=100)
    workdir = tmp_path_factory.mktemp("regret")
    rows, _ = _run(cfg, data, "drift", ["memorypair", "rls"], workdir)
    return cfg, data, workdir, rows


def test_csv_columns_rows_and_values(small_run):
    cfg, _, workdir, _ = small_run
    for algo in ("memorypair", "rls"):
        frame = pd.read_csv(workdir / f"covtype_drift_{algo}.csv")
        assert list(frame.columns[:6]) == ["step", "regret", "regret_lo", "regret_hi", "cum_loss", "comparator_loss"]
        assert "dynamic_regret" in frame.columns
        assert len(frame) >= 500 or len(frame) == cfg.T
        assert frame["step"].is_monotonic_increasing and frame["step"].iloc[-1] == cfg.T
        assert np.isfinite(frame.to_numpy(dtype=float)).all()
        assert (frame["regret_lo"] <= frame["regret"] + 1e-9).all() and (frame["regret"] <= frame["regret_hi"] + 1e-9).all()
        np.testing.assert_allclose(frame["regret"], frame["cum_loss"] - frame["comparator_loss"], rtol=1e-6, atol=1e-6)


def test_comparator_in_outputs_equals_numpy_ridge_at_random_checkpoints(small_run):
    """The per-seed comparator equals a NumPy ridge solve over the rows the learner saw."""
    import jax
    import jax.numpy as jnp

    from mpjax import run as run_lib
    from mpjax import streams

    cfg, data, workdir, _ = small_run
    z = np.load(workdir / "covtype_drift_rls.npz")
    keys = run_lib.seed_keys(cfg.seed, cfg.num_seeds)
    transform = streams.make_transform(data, "drift")
    rng = np.random.default_rng(5)
    for s in range(cfg.num_seeds):
        st = streams.make_stream("drift", run_lib.purpose_key(keys[s], run_lib.TAG_STREAM), jnp.asarray(data.labels),
                                 cfg.T, num_classes=3, is_image=False, raw_dim=4)
        feats = np.asarray(jax.vmap(transform, in_axes=(0, 0, None))(jnp.asarray(data.raw)[st.idx], st.aux, st.direction),
                           np.float64)
        y = data.y[np.asarray(st.idx)].astype(np.float64)
        for t in rng.choice(z["steps"], 4, replace=False):
            xt, yt = feats[:t], y[:t]
            w = np.linalg.solve(cfg.lam * np.eye(5) + xt.T @ xt, xt.T @ yt)
            ref = 0.5 * np.sum((xt @ w - yt) ** 2) + 0.5 * cfg.lam * np.sum(w * w)
            i = int(np.searchsorted(z["steps"], t))
            np.testing.assert_allclose(z["comparator"][s, i], ref, rtol=1e-6)


def test_json_metadata_has_every_field(small_run):
    _, _, workdir, _ = small_run
    meta = json.loads((workdir / "covtype_drift_memorypair.json").read_text())
    for field in ("config", "config_hash", "git_commit", "packages", "backend", "data_provenance", "data_source",
                  "compile_seconds", "run_seconds", "slopes", "slope_mean", "slope_ci95", "verdict",
                  "verdict_reason", "n_slopes", "seed_band_covers", "precision", "streams_seconds",
                  "final_regret_mean", "dynamic_window", "comparator_path_length_mean", "T", "num_seeds"):
        assert field in meta, field
    assert meta["data_provenance"] == "simulated"
    assert len(meta["slopes"]) == 3


def test_png_files_are_real_images(small_run):
    _, _, workdir, _ = small_run
    for name in ("covtype_drift_memorypair.png", "covtype_drift_rls.png", "covtype_drift.png"):
        path = workdir / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
        assert img[..., :3].std() > 0.01  # not blank


def test_rerun_reproduces_csv_bit_for_bit_and_guards_other_configs(small_run, tmp_path):
    cfg, data, workdir, _ = small_run
    _run(cfg, data, "drift", ["memorypair"], tmp_path)
    assert (tmp_path / "covtype_drift_memorypair.csv").read_bytes() == (workdir / "covtype_drift_memorypair.csv").read_bytes()
    # Same configuration again in the same folder: allowed, identical.
    _run(cfg, data, "drift", ["memorypair"], tmp_path)
    assert (tmp_path / "covtype_drift_memorypair.csv").read_bytes() == (workdir / "covtype_drift_memorypair.csv").read_bytes()
    # A different configuration must not silently replace it.
    other = _cfg(T=2000, num_seeds=3, window=500, comparator_block=100, lam=0.5)
    with pytest.raises(common.ResultsExistError, match="--overwrite"):
        _run(other, data, "drift", ["memorypair"], tmp_path)


def test_crash_during_write_leaves_no_partial_csv(tmp_path, monkeypatch):
    data = _dataset([[1.0]] * 3, [0, 0, 0], 2)
    cfg = _cfg(T=3, num_seeds=1)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, data, "iid", ["sgd"], tmp_path)
    assert not (tmp_path / "covtype_iid_sgd.csv").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary files left either


def test_workdir_that_escapes_its_parent_is_refused(tmp_path):
    with pytest.raises(ValueError, match="escapes"):
        common.resolve_workdir("../../elsewhere", root=tmp_path)
    assert common.resolve_workdir("results/a", root=tmp_path) == (tmp_path / "results" / "a").resolve()


def test_named_flag_and_config_override_must_agree():
    cfg = _cfg(T=500)
    with pytest.raises(Exception, match="conflicts"):
        common.resolve_config(cfg, {"T": 800}, get_config())
    assert common.resolve_config(cfg, {"T": 500}, get_config()).T == 500
    assert common.resolve_config(_cfg(), {"T": 800}, get_config()).T == 800


def test_mean_ci_matches_student_t():
    v = np.array([[1.0, 2.0], [2.0, 4.0], [4.0, 9.0]])
    mean, lo, hi = common.mean_ci(v)
    sd = v.std(axis=0, ddof=1)
    np.testing.assert_allclose(hi - mean, 4.3027 * sd / np.sqrt(3), rtol=1e-12)
    assert abs(common.t_quantile_975(31) - 2.0395) < 1e-3 and abs(common.t_quantile_975(1000) - 1.9623) < 1e-3


def _cli(*args, env=None, timeout=300):
    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run([sys.executable, "-m", "experiments.regret", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_unknown_values_get_a_one_line_error_listing_valid_ones():
    out = _cli("--dataset=imagenet")
    assert out.returncode != 0
    assert "rotmnist" in out.stderr and "covtype" in out.stderr and "cifar10" in out.stderr


def test_sharded_seeds_are_bit_identical_to_one_device(tmp_path):
    """Every learner: seeds sharded over 3 host devices (7 seeds, so padded) == one device, bit for bit.

    ONS runs one seed at a time (its default); Memory-Pair in batches of 4 (one device: 7 seeds
    padded to 2 batches; three: 3 seeds each, padded to 1 batch: a plain vmap of 3 rounds
    differently), SGD in batches of 2; AdaGrad and RLS in batches of 16, i.e. one batch of
    width 7 everywhere (a vmap of 3 against one of 7 rounded differently for Memory-Pair).
    """
    common_args = ["--dataset=covtype", "--stream=adv", "--algo=all", "--T=1200", "--num_seeds=7",
                   "--data_source=simulated", "--config.max_rows=3000", "--config.compilation_cache=",
                   "--config.seeds_per_batch.memorypair=4", "--config.seeds_per_batch.sgd=2",
                   "--config.seeds_per_batch.adagrad=16", "--config.seeds_per_batch.rls=16"]
    a = _cli(*common_args, "--config.cpu_devices=1", f"--workdir={tmp_path / 'a'}")
    assert a.returncode == 0, a.stderr[-2000:]
    b = _cli(*common_args, "--config.cpu_devices=3", f"--workdir={tmp_path / 'b'}")
    assert b.returncode == 0, b.stderr[-2000:]
    for algo in ("memorypair", "sgd", "adagrad", "ons", "rls"):
        meta = json.loads((tmp_path / "b" / f"covtype_adv_{algo}.json").read_text())
        assert len(meta["devices"]) == 3
        # The CLI compiles the scans whole (XLA_FLAGS set before JAX starts), and says so.
        assert f"xla_cpu_small_while_loop_byte_threshold={common.SMALL_LOOP_BYTES}" in meta["xla_flags"], algo
        za, zb = np.load(tmp_path / "a" / f"covtype_adv_{algo}.npz"), np.load(tmp_path / "b" / f"covtype_adv_{algo}.npz")
        for field in ("cum_loss", "regret", "accuracy"):
            np.testing.assert_array_equal(za[field], zb[field], err_msg=f"{algo} {field}")
    timings = json.loads((tmp_path / "b" / "covtype_adv_timings.json").read_text())["seconds"]
    for stage in ("data", "streams", "compile_memorypair", "run_rls", "comparator", "writing"):
        assert stage in timings, stage


def test_sweep_summary_table_and_grid_figure(small_run, tmp_path):
    _, _, _, rows = small_run
    steps = rows[0]["steps"]
    rng = np.random.default_rng(0)
    grid = {("covtype", "drift"): (steps, {r["algo"]: rng.uniform(1, 2, (3, len(steps))) * steps for r in rows})}
    exp.write_summary(tmp_path, rows, grid)
    text = (tmp_path / "summary.md").read_text()
    assert text.count("| covtype | drift |") == len(rows)
    for r in rows:
        assert f"{r['slope']:.3f} [{r['slope_lo']:.3f}, {r['slope_hi']:.3f}]" in text
        assert r["verdict"] in text and r["verdict_reason"] in text
    table = pd.read_csv(tmp_path / "summary.csv")
    assert list(table["algo"]) == [r["algo"] for r in rows]
    img = matplotlib.image.imread(tmp_path / "summary_grid.png")
    assert img.ndim == 3 and img[..., :3].std() > 0.01


def _slopes(center, spread, n=12, seed=0):
    """n slopes with the given mean and (sample) standard deviation exactly."""
    z = np.random.default_rng(seed).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return center + spread * z


def test_verdict_needs_enough_seeds_with_a_slope_and_a_narrow_interval():
    v = exp.slope_verdict(_slopes(0.5, 0.05))
    assert v["verdict"] == "consistent with sqrt T" and v["n_slopes"] == 12
    half = 2.2010 * 0.05 / np.sqrt(12)  # t_{0.975, 11} s / sqrt(n)
    np.testing.assert_allclose([v["lo"], v["hi"]], [0.5 - half, 0.5 + half], rtol=1e-4)
    assert exp.slope_verdict(_slopes(0.3, 0.05))["verdict"] == "O(sqrt T)"
    assert exp.slope_verdict(_slopes(0.75, 0.05))["verdict"] == "sublinear, faster than sqrt T"
    assert exp.slope_verdict(_slopes(1.1, 0.05))["verdict"] == "not shown sublinear"
    # Too wide: the mean's 95% interval exceeds +-0.15.
    wide = exp.slope_verdict(_slopes(0.5, 0.3))
    assert wide["verdict"] == "undetermined" and "wider than +-0.15" in wide["reason"]


def test_verdict_undetermined_for_a_nan_seed_majority_two_seeds_or_one():
    # Linear regret on two seeds: a [0.12, 2.08]-wide interval is no evidence.
    two = exp.slope_verdict([1.02, 1.18])
    assert two["verdict"] == "undetermined" and "wider" in two["reason"]
    assert exp.slope_verdict([0.5])["verdict"] == "undetermined"
    # A NaN seed is counted, not dropped silently: 1 of 3 seeds with a slope is too few.
    nan_seeds = exp.slope_verdict([0.3, np.nan, np.nan], final_regret_mean=-4.0)
    assert nan_seeds["verdict"] == "undetermined" and nan_seeds["n_slopes"] == 1
    assert "only 1 of 3 seeds" in nan_seeds["reason"] and "beats the best fixed comparator" in nan_seeds["reason"]
    # 8 of 12 seeds (2/3) with tightly clustered slopes are enough; 7 of 12 are not.
    s = _slopes(0.45, 0.02)
    assert exp.slope_verdict(np.where(np.arange(12) < 8, s, np.nan))["verdict"] in ("O(sqrt T)",
                                                                                  "consistent with sqrt T")
    assert exp.slope_verdict(np.where(np.arange(12) < 7, s, np.nan))["verdict"] == "undetermined"
    # A negative interval (regret shrinking in the fit range) that is wide is not "consistent with sqrt T".
    assert exp.slope_verdict(_slopes(-0.77, 0.8))["verdict"] == "undetermined"


def test_rls_runs_in_float64_and_its_regret_matches_a_numpy_float64_rls(tmp_path):
    """RLS is exact in the default (float32) configuration: its state is float64."""
    rng = np.random.default_rng(3)
    n, k, t = 300, 3, 1500
    labels = rng.integers(0, k, n)
    raw = rng.normal(size=(n, 4)) + np.eye(k, 4)[labels]
    x = np.concatenate([raw, np.ones((n, 1))], axis=1)
    x = x / np.linalg.norm(x, axis=1).max()
    data = _dataset(x, labels, k)
    cfg = _cfg(T=t, num_seeds=2)
    _run(cfg, data, "iid", ["rls"], tmp_path)
    meta = json.loads((tmp_path / "covtype_iid_rls.json").read_text())
    assert meta["precision"] == "float64"
    z = np.load(tmp_path / "covtype_iid_rls.npz")
    lam = cfg.learners.rls.l2
    for s in range(2):
        rows = _stream_rows(cfg, data, "iid", s)
        xs, ys = data.x[rows].astype(np.float64), data.y[rows].astype(np.float64)
        w, p, cum = np.zeros((5, k)), np.eye(5) / lam, []
        for i in range(t):
            e = ys[i] - xs[i] @ w
            cum.append(0.5 * e @ e)
            u = p @ xs[i]
            w = w + np.outer(u, e) / (1 + xs[i] @ u)
            p = p - np.outer(u, u) / (1 + xs[i] @ u)
        np.testing.assert_allclose(z["cum_loss"][s], np.cumsum(cum)[z["steps"] - 1], rtol=1e-10)


def _stream_rows(cfg, data, kind, seed):
    import jax.numpy as jnp

    from mpjax import run as run_lib
    from mpjax import streams

    key = run_lib.purpose_key(run_lib.seed_keys(cfg.seed, seed + 1)[seed], run_lib.TAG_STREAM)
    st = streams.make_stream(kind, key, jnp.asarray(data.labels), cfg.T, num_classes=data.num_classes,
                             is_image=False, raw_dim=data.raw.shape[1])
    return np.asarray(st.idx)


def test_a_small_default_style_run_prints_no_warnings(tmp_path):
    """stdout and stderr of the CLI, with Python's default warning filters as a user has them:
    no warnings and no library log lines (issue 12)."""
    out = _cli("--dataset=covtype", "--stream=drift", "--T=1100", "--num_seeds=2", "--data_source=simulated",
               "--config.max_rows=3000", "--config.compilation_cache=", f"--workdir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "Warning" not in text and "warning" not in text.lower().replace("warnings", ""), text[-3000:]
    # Only the progress bar writes to stderr.
    for line in out.stderr.replace("\r", "\n").splitlines():
        assert not line.strip() or line.startswith("regret"), line


@pytest.mark.parametrize("seeds_per_batch", [0, 1, 2, 3, 8])
def test_map_seeds_batches_equal_one_seed_at_a_time(seeds_per_batch):
    """common.map_seeds on one device: every seed's trace equals the seed run alone (7 seeds, ONS)."""
    import jax

    from mpjax import learners, streams
    from mpjax import run as run_lib

    rng = np.random.default_rng(0)
    table = rng.standard_normal((300, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 300).astype(np.int32)
    targets = np.eye(3, dtype=np.float32)[labels]
    learner = learners.multi_output(learners.get("ons"), 3)
    keys = run_lib.seed_keys(0, 7)
    stream = jax.vmap(lambda k: streams.make_stream("iid", k, labels, 200, num_classes=3, is_image=False,
                                                    raw_dim=6))(keys)

    def one(key, st, table, targets):
        return run_lib.run_seed(learner, 6, key, table, targets, st)[1].loss

    got = np.asarray(jax.jit(common.map_seeds(one, None, seeds_per_batch, num_shared=2))(keys, stream, table, targets))
    assert got.shape == (7, 200)
    alone = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))
    for s in range(7):
        want = np.asarray(alone(keys[s:s + 1], jax.tree.map(lambda a: a[s:s + 1], stream), table, targets))[0]
        if seeds_per_batch == 1:
            np.testing.assert_array_equal(got[s], want)  # the same program, seed by seed
        else:
            np.testing.assert_allclose(got[s], want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="seeds_per_batch"):
        common.map_seeds(one, None, -1)


def test_seeds_per_batch_must_be_given_and_non_negative_for_every_learner():
    from absl import app

    cfg = get_config()
    exp._check_config(cfg)
    cfg.seeds_per_batch.ons = -1  # auto
    exp._check_config(cfg)
    cfg.seeds_per_batch.ons = -2
    with pytest.raises(app.UsageError, match=r"config.seeds_per_batch.ons must be >= 0 .* or -1 \(auto"):
        exp._check_config(cfg)
    cfg = get_config()
    del cfg.seeds_per_batch["rls"]
    with pytest.raises(app.UsageError, match=r"config.seeds_per_batch.rls must be >= 0 .*got None"):
        exp._check_config(cfg)
