"""The benchmark stays runnable (no timing is asserted: these machines are shared and noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COMMAND_TIMEOUT_S

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


@pytest.mark.slow
def test_quick_benchmark_prints_every_section_and_the_cpu_it_ran_on(tmp_path: Path) -> None:
    summary_file = tmp_path / "bench.json"
    done = subprocess.run(
        [
            *(sys.executable, str(BENCH), "--quick", "--models", "cnn"),  # the Transformer's path is the CNN's
            *("--precision", "32-true", "bf16-mixed", "--json", str(summary_file)),
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for heading in ("## Training throughput", "## A 1-epoch run's phases", "## Logging 50 metric points", "## Sweep"):
        assert heading in done.stdout
    phases = done.stdout.split("## A 1-epoch run's phases")[1].split("##")[0]
    for row in (
        "start-up over the reference",
        "start-up over that reference",  # the second: with torch.optim's import of torch._dynamo
        "after the test to FINISHED",
        "FINISHED to the process's exit",
    ):
        assert row in phases
    assert "## Sweeper overhead per trial, an Optuna sweep of 8 tiny trials" in done.stdout
    assert "## A sweep with models: 2 trials of 1 epoch" in done.stdout  # its store checked by the bench itself
    summary = json.loads(summary_file.read_text())  # the same numbers, machine-readable
    assert summary["sweep"]["with_models"]["best_variants"] > 0
    overhead = summary["sweep"]["sweeper_overhead"]
    assert overhead["trials"] == 8 and min(overhead["early_gap_s"], overhead["late_gap_s"]) > 0
    assert set(summary) >= {"cpu", "features", "throughput", "phases", "logging", "sweep", "scale"}
    assert summary["phases"]["reference_with_optimizer_s"] > 0
    for config in summary["phases"]["runs"].values():
        assert 0 < config["after_training"] < config["wall"] and config["exit"] > 0
        assert config["startup"] + config["training"] + config["after_training"] + config["exit"] == pytest.approx(
            config["wall"], abs=0.01
        )  # one round (--quick): the phases add up to the wall time
    scaling = done.stdout.split("## Scaling: training on 256 against 1,024")[1]
    assert "samples/s" in scaling and "peak resident memory, MB" in scaling
    assert "a SQLite store holding 10 against 40 runs" in scaling and "newest 10 runs" in scaling
    page_row = next(line for line in scaling.splitlines() if line.startswith("the UI's runs page"))
    assert page_row.startswith("the UI's runs page, shown in headless Chromium ") and len(page_row.split()) == 11
    points = scaling.split("a run with 500 against 4,000 steps of train/loss and train/acc")[1]
    assert "logging, s per 1,000 points" in points and "drawing the learning curves, s" in points
    assert set(summary["scale"]["metric_points_cost"]) == {
        "logging, s per 1,000 points",
        "reading both histories, s",
        "drawing the learning curves, s",
    }
    throughput = done.stdout.split("## Training throughput")[1].split("##")[0]
    rows = [line.split() for line in throughput.splitlines() if line.startswith("cnn")]
    assert [(row[0], row[3]) for row in rows] == [("cnn", "32-true"), ("cnn", "bf16-mixed")]  # against one bare loop
    assert " ".join(rows[0][-3:]) == "(the fp32 loop)" and len(rows[1]) == 12  # bf16 also against a bare bf16 loop
    cnn = summary["throughput"]["cnn"]
    assert (
        set(cnn["ratios_to_bare_autocast"]) == {"bf16-mixed"}
        and cnn["bare_autocast_samples_per_s"]["bf16-mixed"][0] > 0
    )
    assert "# CPU: " in done.stdout and "features: " in done.stdout  # what the numbers were measured on
