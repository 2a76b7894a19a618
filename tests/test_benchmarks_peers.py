"""benchmarks.peers runs in --smoke mode with the peers absent (as in CI) and says so; with VW
installed (not in CI) it also drives VW. Structure and internal consistency only: timings are
never asserted."""

import json
import sys

import numpy as np
import pytest

from benchmarks import peers


def _check_rows(rows):
    for r in rows:
        assert r["median_s"] > 0 and len(r["round_s"]) == 1
        np.testing.assert_allclose(r["aggregate_samples_per_s"], r["seeds"] * r["T"] / r["median_s"], rtol=1e-12)
        np.testing.assert_allclose(r["samples_per_s"], r["T"] / r["median_s"], rtol=1e-12)


def test_smoke_without_peers_skips_them_with_the_install_command(tmp_path, monkeypatch):
    for module in ("vowpalwabbit", "river", "sklearn"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError: absent
    out = tmp_path / "peers.json"
    peers.main(["--smoke", "--small_loop_bytes=0", "--learners", "sgd,rls", "--out", str(out)])
    saved = json.loads(out.read_text())
    skipped = saved["meta"]["skipped"]
    assert set(skipped) == set(peers.PEERS)
    assert all("is not installed" in why and "pip install" in why for why in skipped.values())
    rows = saved["results"]
    assert [(r["model"], r["seeds"]) for r in rows] == [
        ("numpy_sgd", 1), ("numpy_rls", 1), ("mpjax_sgd", 1), ("mpjax_sgd", 4), ("mpjax_rls", 1), ("mpjax_rls", 4)]
    _check_rows(rows)
    for r in rows:
        assert r["ratio_to_vw_cpp_csoaa"] is None  # no VW, no ratio (never a made-up one)
        if r["group"] == "mpjax":
            assert r["numpy_losses_agree"] and r["numpy_losses_checked_steps"] == 60  # same math (T_slow = 60)
            assert r["compile_s"] > 0 and 0.0 <= r["online_accuracy_seed_mean"] <= 1.0
    assert saved["meta"]["data_provenance"] == "simulated" and saved["meta"]["d"] == 55
    md = out.with_suffix(".md").read_text()
    assert md.count("| skipped: ") == len(peers.PEERS) and "| mpjax_rls | mpjax rls" in md


def test_smoke_drives_vowpal_wabbit_when_installed(tmp_path):
    pytest.importorskip("vowpalwabbit", reason="optional peer (pip install -e '.[bench]'); CI has none")
    out = tmp_path / "peers.json"
    peers.main(["--smoke", "--small_loop_bytes=0", "--peers", "vw_cpp_csoaa,vw_python", "--learners", "sgd", "--seeds", "1",
                "--no_numpy", "--out", str(out)])
    rows = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"vw_cpp_csoaa", "vw_python", "mpjax_sgd"}
    _check_rows(rows.values())
    assert rows["vw_cpp_csoaa"]["ratio_to_vw_cpp_csoaa"] == 1.0
    assert rows["vw_cpp_csoaa"]["T"] == 2000 and rows["vw_python"]["T"] == 300
    assert "--csoaa 7 --noconstant" in rows["vw_cpp_csoaa"]["vw_args"]


def test_flags_are_validated():
    with pytest.raises(SystemExit):
        peers.parse_args(["--peers", "vw"])
    with pytest.raises(SystemExit):
        peers.parse_args(["--T", "0"])
    with pytest.raises(SystemExit, match="nothing to time"):
        peers.main(["--smoke", "--small_loop_bytes=0", "--peers", "none", "--learners", "none", "--no_numpy"])
    args = peers.parse_args(["--smoke", "--T", "777"])
    assert args.T == 777 and args.T_slow == 60 and args.rounds == 1  # explicit flags win over --smoke
