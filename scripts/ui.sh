#!/usr/bin/env bash
# Open the MLflow UI on the default store (or the store URI given as the first argument) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
store=${1:-sqlite:///$PWD/outputs/mlflow.db}
port=${PORT:-5000}
# create (or check) the store under its lock first: runs starting at the same moment may be creating it too
.venv/bin/python -c 'import sys; from pipeline.tracking.store import open_store; open_store(sys.argv[1])' "$store"
echo "MLflow UI for $store at http://127.0.0.1:$port"
# without MLflow's job execution: 8 polling processes the UI of our runs never uses (docs/dependencies.md)
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
exec .venv/bin/mlflow ui --backend-store-uri "$store" --host 127.0.0.1 --port "$port"
