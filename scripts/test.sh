#!/usr/bin/env bash
# Set up, lint, then run the whole test suite. Extra arguments go to pytest (e.g. -k tracking, -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/lint.sh
scripts/test-deps.sh
exec .venv/bin/python -m pytest "$@"
