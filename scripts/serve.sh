#!/usr/bin/env bash
# Serve a registered model over HTTP (POST /invocations) from the default store (or MLFLOW_TRACKING_URI):
#   scripts/serve.sh models:/digits-sweep@best        then
#   curl -d '{"inputs": [[[[0.0, ...]]]]}' -H 'Content-Type: application/json' http://127.0.0.1:5001/invocations
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: scripts/serve.sh models:/<name>@<alias> (e.g. models:/digits-sweep@best)}
port=${PORT:-5001}
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/outputs/mlflow.db}
export PATH="$PWD/.venv/bin:$PATH"   # the server runs uvicorn from this environment (--env-manager local)
echo "serving $model from $MLFLOW_TRACKING_URI at http://127.0.0.1:$port/invocations"
exec mlflow models serve -m "$model" --env-manager local --host 127.0.0.1 --port "$port"
