#!/usr/bin/env bash
# Lint: ruff (rules and format, configured in pyproject.toml) on the Python code, shellcheck on the
# shell scripts. Each finding names the file and line; scripts/test.sh runs this before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check --quiet . || status=1
.venv/bin/ruff format --diff --quiet . || status=1  # the diff shows file and lines
.venv/bin/shellcheck scripts/*.sh .ci/run || status=1
if [ "$status" -ne 0 ]; then
    echo "lint: failed (fix the lines above; .venv/bin/ruff format . rewrites the layout)" >&2
fi
exit "$status"
