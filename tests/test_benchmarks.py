"""The throughput benchmark still runs and writes its JSON (structure only; timings are never tested)."""

import json

from benchmarks import throughput


def test_throughput_benchmark_runs_small_and_writes_json(tmp_path):
    out = tmp_path / "tp.json"
    payload = throughput.main(["--small_loop_bytes=0", "--T", "1500", "--numpy_T", "300", "--seeds", "1,2", "--dims", "55",
                               "--learners", "memorypair,sgd", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["results"] and len(saved["results"]) == 4
    for row in saved["results"]:
        for field in ("learner", "d", "seeds", "compile_s", "run_s", "steps_per_s", "numpy_steps_per_s", "ratio"):
            assert field in row, field
        assert row["finite"] and row["numpy_losses_agree"]  # same math as the NumPy reference
    assert payload["results"][0]["learner"] == "memorypair"


def test_scaling_benchmark_smoke_fits_exponents(tmp_path):
    import numpy as np

    from benchmarks import scaling

    out = tmp_path / "scaling.json"
    payload = scaling.main(["--smoke", "--small_loop_bytes=0", "--learners", "sgd,rls", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["exponents"]) == {"sgd", "rls"}
    for name, fit in saved["exponents"].items():
        assert set(fit) == {"T", "seeds", "d"} and all(np.isfinite(v) for v in fit.values())
    assert all(r["finite"] for r in payload["results"])
    # The fit is a least-squares log-log slope: exact on a power law.
    assert abs(scaling.exponent([1, 2, 4], [3.0, 6.0, 12.0]) - 1.0) < 1e-12
    assert abs(scaling.exponent([10, 100], [1.0, 10.0 ** 0.5]) - 0.5) < 1e-12


def test_flops_reads_measured_rates_and_counts_memory_pairs_block_branch_once_per_block(tmp_path):
    import pytest

    from benchmarks import flops

    with pytest.raises(SystemExit):  # no measured rates: a clear error, nothing written
        flops.main(["--scaling", str(tmp_path / "missing.json"), "--out", str(tmp_path / "f.json")])
    assert not (tmp_path / "f.json").exists()
    rates = [{"learner": n, "axis": "seeds", "d": 55, "seeds": s, "aggregate_samples_per_s": r}
             for n in ("memorypair", "sgd") for s, r in ((1, 1e5), (32, 4e5))]
    (tmp_path / "s.json").write_text(json.dumps({"results": rates, "meta": {}}))
    payload = flops.main(["--scaling", str(tmp_path / "s.json"), "--peak_gflops", "100", "--seeds", "2",
                          "--out", str(tmp_path / "f.json")])
    rows = {r["learner"]: r for r in payload["rows"]}
    assert set(rows) == {"memorypair", "sgd"}
    mp = flops.step_flops("memorypair", 1)
    # The compact inverse runs once per block of L steps (the experiments' L, configs/regret.py);
    # XLA's count includes it on every step.
    from configs.regret import learner_defaults

    block = learner_defaults()["memorypair"]["curvature_block"]
    assert block > 1
    assert 0 < mp["branch"] < mp["counted"]
    assert abs(mp["useful"] - (mp["counted"] - mp["branch"] * (block - 1) / block)) < 1e-6 * mp["counted"]
    for r in rows.values():
        assert abs(r["x_floor_32"] * 4e5 - 100e9 / r["useful_flops_per_step"]) < 1e-6 * 100e9 / r["useful_flops_per_step"]
        assert abs(r["x_floor_1"] - 4 * r["x_floor_32"]) < 1e-9 * r["x_floor_1"]
    assert json.loads((tmp_path / "f.json").read_text())["meta"]["peak_gflops"] == 100


def test_flag_lists_are_validated_and_the_learner_names_are_mpjaxs():
    import argparse

    import pytest

    from benchmarks import cli, scaling
    from mpjax import learners

    assert cli.LEARNERS == tuple(learners.LEARNERS)
    assert cli.int_list("1, 32,128") == [1, 32, 128]
    for bad in ("", "0,4", "a,b", "-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive ints"):
            cli.int_list(bad)
    names = cli.name_list(("a", "b"))
    assert names("b,a") == ["b", "a"]
    for bad in ("c", "a,c", "", "all"):
        with pytest.raises(argparse.ArgumentTypeError, match="unknown name"):
            names(bad)
    keywords = cli.name_list(("a", "b"), all_none=True)
    assert keywords("all") == ["a", "b"] and keywords("none") == [] and keywords("a") == ["a"]
    with pytest.raises(SystemExit):
        scaling.parse_args(["--learners", "sgd,foo"])
    assert scaling.parse_args(["--learners", "rls"]).learners == ["rls"]


def test_seed_gain_compares_each_round_with_its_own_one_seed_run(tmp_path):
    import numpy as np
    import pytest

    from benchmarks import seed_gain

    out = tmp_path / "sg.json"
    payload = seed_gain.main(["--smoke", "--small_loop_bytes=0", "--learners", "sgd", "--widths", "auto,1,2",
                              "--out", str(out)])
    saved = json.loads(out.read_text())
    rows = saved["results"]
    # Kernel by kernel (threshold 0): auto = 16, in effect min(16, 2) = 2, so width 2 is the same program: timed once.
    assert [(r["width"], r["seeds"], r["seeds_per_batch"]) for r in rows] == [("auto (2)", 2, 2), ("1", 2, 1)]
    assert saved["meta"]["T_one"] == 2 * saved["meta"]["T"]  # the one-seed run does the work of the 2-seed run
    for r in rows:
        one, agg = np.asarray(r["rounds"]["one_seed"]), np.asarray(r["rounds"]["aggregate"])
        assert len(one) == len(agg) == saved["meta"]["rounds"] == 2 and (one > 0).all()
        gains = agg / one  # per round: the same round's one-seed figure
        assert r["gain_median"] == pytest.approx(float(np.median(gains)))
        assert r["gain_min"] == pytest.approx(gains.min()) and r["gain_max"] == pytest.approx(gains.max())
        assert r["devices"] >= 1 and r["gain_per_device_median"] == pytest.approx(float(np.median(gains)) / r["devices"])
    assert "| sgd | auto (2) |" in out.with_suffix(".md").read_text()
    assert payload["meta"]["widths"] == ["auto", 1, 2] and payload["meta"]["dim"] == 55
    for bad in (["--widths", "0"], ["--widths", "auto,auto"], ["--widths", "x"], ["--T", "0"], ["--T_one", "-1"],
                ["--dim", "0"]):
        with pytest.raises(SystemExit):
            seed_gain.parse_args(bad)
    assert seed_gain.parse_args(["--T", "10", "--seed_counts", "4,8"]).T_one == 40
