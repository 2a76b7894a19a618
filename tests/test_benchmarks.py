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


def test_scaling_benchmark_smoke_fits_exponents(tmp_path):
    import numpy as np

    from benchmarks import scaling

    out = tmp_path / "scaling.json"
    payload = scaling.main(["--smoke", "--learners", "sgd,rls", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["exponents"]) == {"sgd", "rls"}
    for name, fit in saved["exponents"].items():
        assert set(fit) == {"T", "seeds", "d"} and all(np.isfinite(v) for v in fit.values())
    assert all(r["finite"] for r in payload["results"])
    # The fit is a least-squares log-log slope: exact on a power law.
    assert abs(scaling.exponent([1, 2, 4], [3.0, 6.0, 12.0]) - 1.0) < 1e-12
    assert abs(scaling.exponent([10, 100], [1.0, 10.0 ** 0.5]) - 0.5) < 1e-12
