"""The throughput benchmark still runs and writes its JSON (structure only; timings are never tested)."""

import json

from benchmarks import throughput


def test_throughput_benchmark_runs_small_and_writes_json(tmp_path):
    out = tmp_path / "tp.json"
    payload = throughput.main(["--T", "1500", "--numpy_T", "300", "--seeds", "1,2", "--dims", "55",
                               "--learners", "memorypair,sgd", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["results"] and len(saved["results"]) == 4
    for row in saved["results"]:
        for field in ("learner", "d", "seeds", "compile_s", "run_s", "steps_per_s", "numpy_steps_per_s", "ratio"):
            assert field in row, field
        assert row["finite"] and row["numpy_losses_agree"]  # same math as the NumPy reference
    assert payload["results"][0]["learner"] == "memorypair"
