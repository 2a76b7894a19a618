#!/usr/bin/env bash
# The CIFAR-10 ResNet-9 influence run for one GPU (H200), inside a hard ~8-minute limit.
#   bash benchmarks/influence_gpu.sh            # preset h200; results printed and written to $OUT
# Uses the machine's own python3 (needs jax with CUDA, numpy; no network, no ml_collections).
# The script's own budget (400 s) stops retrains early if needed; `timeout` is the backstop.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
"$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"
timeout --signal=INT 460 "$PY" -m benchmarks.influence_gpu --preset=h200 "$@"
