#!/usr/bin/env bash
# Set up, then train the default model on the embedded MNIST subset into outputs/mlflow.db.
# Extra arguments are Hydra overrides, e.g. scripts/run.sh model=transformer trainer.max_epochs=3
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/pipeline-train "$@"
