"""Rebuild a stored run, train it again, and compare every final metric (`pipeline-rerun RUN_ID`).

The stored config is validated against the schema and builds only built-in or trusted targets
like any other; the code version (commit and uncommitted diff) and the data digest must
match the original's, and the torch thread count is pinned to the original's, because each
of them changes the numbers. The exit code says whether the run reproduced.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path

from pipeline.config.compose import store_location, stored_config
from pipeline.provenance import GitState, git_state, runtime_versions
from pipeline.tracking.store import resolve_tracking_uri
from pipeline.tracking.stored_runs import fetch_run
from pipeline.tracking.system_metrics import PREFIX as SYSTEM_METRICS
from pipeline.workflows.train import train

CODE_CHANGED_EXIT = 3
NOT_REPRODUCED_EXIT = 1
# Measurements of the machine, not results: wall-clock (compressed variants' latency and speed-up)
# and system metrics (CPU, memory, disk, network) differ from run to run by nature.
TIMING_MARKERS = ("latency_", "speedup_")


def code_differences(stored_tags: Mapping[str, str], stored_diff: str, current: GitState) -> list[str]:
    """What differs between the code of the stored run and the code here, one phrase per difference."""
    differences = []
    stored_commit = stored_tags.get("git.commit")
    if stored_commit != current.commit:
        differences.append(f"commit {stored_commit or 'unknown'} (original) vs {current.commit or 'unknown'} (here)")
    if stored_diff != current.diff:
        differences.append(
            f"uncommitted changes differ ({len(stored_diff.splitlines())} diff lines in the original, "
            f"{len(current.diff.splitlines())} here)"
        )
    return differences


def compare_metrics(original: Mapping[str, float], rerun: Mapping[str, float], tolerance: float) -> tuple[str, bool]:
    """A table of every final metric (original, rerun, difference) and whether all are within tolerance.

    Timing metrics are listed but not compared: no rerun reproduces a wall-clock measurement.
    """
    rows, reproduced = [("metric", "original", "rerun", "difference")], True
    names = sorted(set(original) | set(rerun))
    timings = [
        name for name in names if name.startswith(SYSTEM_METRICS) or any(marker in name for marker in TIMING_MARKERS)
    ]
    for name in (name for name in names if name not in timings):
        before, after = original.get(name, math.nan), rerun.get(name, math.nan)
        difference = after - before
        same = math.isfinite(difference) and abs(difference) <= tolerance
        reproduced &= same
        rows.append((name, f"{before:.6g}", f"{after:.6g}", f"{difference:+.3g}" + ("" if same else "  <- differs")))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    if timings:
        lines.append(
            f"({len(timings)} timing and system metrics not compared: {', '.join(timings[:3])}{', ...' if len(timings) > 3 else ''})"
        )
    return "\n".join(lines), reproduced


def rerun(run_id: str, overrides: list[str], allow_code_change: bool, tolerance: float) -> int:
    """Train the stored run again and print the comparison; the exit code says whether it reproduced."""
    uri = resolve_tracking_uri(*store_location(overrides))
    stored = fetch_run(uri, run_id)

    stored_diff = stored.artifact_text(uri, "code/git.diff") if stored.tags.get("git.dirty") == "true" else ""
    differences = code_differences(stored.tags, stored_diff, git_state(Path(__file__).resolve().parent))
    if differences and not allow_code_change:
        print(
            f"error: the code differs from run {run_id}'s: {'; '.join(differences)} (pass --allow-code-change to rerun anyway)",
            file=sys.stderr,
        )
        return CODE_CHANGED_EXIT
    for difference in differences:
        print(f"warning: code differs: {difference}")

    here = runtime_versions()
    for name in ("cpu", "cpu_features"):  # bit-identical reruns hold on one kind of CPU (docs/dependencies.md)
        if (then := stored.tags.get(f"version.{name}")) is not None and then != here[name]:
            print(f"note: {name} differs ({then!r} then, {here[name]!r} here): the last digits of metrics may too")
    pinned = [f"tracking.uri={uri}"]
    if "version.torch_threads" in stored.tags:
        pinned.append(f"trainer.threads={stored.tags['version.torch_threads']}")
    config = stored_config(stored.config_yaml, [*pinned, *overrides])
    result = train(
        config,
        overrides,
        expected_data_digest=stored.tags.get("data.digest"),
        extra_tags={"rerun_of": run_id},
    )
    table, reproduced = compare_metrics(stored.metrics, fetch_run(uri, result.run_id).metrics, tolerance)
    print(f"rerun of {run_id}: run {result.run_id}")
    print(table)
    print(
        "reproduced: every metric within" if reproduced else "NOT reproduced: metrics differ beyond",
        f"tolerance {tolerance:g}",
    )
    return 0 if reproduced else NOT_REPRODUCED_EXIT
