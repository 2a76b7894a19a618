"""`--dataset=fashion_mnist` is registered in experiments.regret (its choices come from
mpjax.data.DATASETS): a tiny rotating-Fashion-MNIST run end to end through the CLI."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_regret_cli_runs_rotating_fashion_mnist(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPJAX_DATA_DIR": str(tmp_path / "cache")}
    args = ["--dataset=fashion_mnist", "--stream=drift", "--algo=sgd", "--T=400", "--num_seeds=2",
            "--data_source=simulated", "--config.max_rows=500", f"--workdir={tmp_path / 'out'}"]
    out = subprocess.run([sys.executable, "-m", "experiments.regret", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "dataset fashion_mnist | provenance: SIMULATED" in out.stdout
    meta = json.loads((tmp_path / "out" / "fashion_mnist_drift_sgd.json").read_text())
    assert meta["dataset"] == "fashion_mnist" and meta["data_provenance"] == "simulated"
    assert meta["dim"] == 14 * 14 + 1 and meta["num_outputs"] == 10  # 14x14 images + bias, 10 classes
    assert meta["final_regret_mean"] is not None
