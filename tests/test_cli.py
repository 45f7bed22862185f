"""`pipeline-train` as a user runs it: a real process, real exit codes, one-line errors, signals."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import TINY_DATA, pipeline_train, start_training


def runs_in(db: Path) -> list:
    if not db.exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=nope"], "error: model=nope: no such option"),
        (["optimizer.lr=abc"], "error: optimizer.lr: Value 'abc'"),
        (["trainer.max_epochs=-1"], "error: trainer.max_epochs: must be > 0, got -1"),
        (["optimizer.lrr=1"], "error: optimizer.lrr: Key 'lrr' is not in struct"),
        # found once torch and MLflow are loaded: a process start of several seconds each
        pytest.param(
            ["data=mnist", "data.download=false"], "error: data=mnist: MNIST files not found under", marks=SLOW
        ),
        pytest.param(["tracking.uri=foo://nowhere"], "error: tracking.uri=foo://nowhere: ", marks=SLOW),
        pytest.param(
            ["tracking=server", "tracking.uri=http://127.0.0.1:9"],
            "error: tracking.uri=http://127.0.0.1:9: no MLflow server answers",
            marks=SLOW,
        ),
        (["seed=-1"], "error: seed: must be in [0, 2**32), got -1"),
        (["trainer.on_divergence=maybe"], "error: trainer.on_divergence: must be fail or stop, got 'maybe'"),
        (["trainer.divergence_factor=0.5"], "error: trainer.divergence_factor: must be > 1, got 0.5"),
        (["sweep.log_models=some"], "error: sweep.log_models: must be best or all, got 'some'"),
        (["trainer.precision=bf17"], "error: trainer.precision: must be one of 32-true, bf16-mixed, "),
        (
            ["compression.slim_fractions=[0.5,1.0]"],
            "error: compression.slim_fractions: each must be in (0, 1), got 1.0",
        ),
        (
            ["trainer.compile_backend=tvm"],
            "error: trainer.compile_backend: must be one of inductor, aot_eager, eager, ",
        ),
        # a sweep is checked before Hydra starts it: a fixed key, a swept value, an Optuna sweep's fixed key
        (["-m", "seed=1", "trainer.devices=two"], "error: trainer.devices: Value 'two' of type 'str'"),
        (["-m", "seed=1,x"], "error: seed: Value 'x' of type 'str'"),
        (["--multirun", "model=cnn,nope"], "error: model=nope: no such option"),
        (
            ["-m", "hydra/sweeper=optuna", "optimizer.lr=interval(1e-4,1e-2)", "trainer.max_epochs=0"],
            "error: trainer.max_epochs: must be > 0, got 0",
        ),
    ],
)
def test_bad_input_exits_nonzero_with_one_line_and_no_running_run(
    overrides: list[str], expected: str, tmp_path: Path
) -> None:
    done = pipeline_train(*overrides, f"paths.output_root={tmp_path / 'out'}", cwd=tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(expected)
    assert "Traceback" not in done.stdout + done.stderr
    assert [run.info.status for run in runs_in(tmp_path / "out" / "mlflow.db")] == []


@pytest.mark.slow
def test_the_issue_command_lands_everything_in_the_given_store(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    done = pipeline_train(
        "model=transformer",
        "optimizer=sgd",
        "optimizer.lr=0.05",
        "trainer.max_epochs=1",
        "compression=none",  # the default's ten variants of a transformer take minutes here: tests/test_compress.py
        f"tracking.uri=sqlite:///{db}",
        f"paths.output_root={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs_in(db)
    assert run.info.status == "FINISHED"
    assert f"run id:  {run.info.run_id}" in done.stdout
    assert f"test/acc={run.data.metrics['test/acc']:.4f}" in done.stdout
    assert run.data.params["optimizer._target_"] == "torch.optim.SGD" and run.data.params["optimizer.lr"] == "0.05"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3500 // 128 + 1
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config", "checkpoints", "environment"}
    assert len(run.inputs.dataset_inputs) == 3


@pytest.mark.parametrize(("stop", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
@pytest.mark.slow
def test_a_stopped_run_is_marked_killed_not_left_running(
    stop: signal.Signals, name: str, tmp_path: Path, output_root: Path
) -> None:
    db = output_root / "mlflow.db"
    overrides = [
        *TINY_DATA,
        "trainer.max_epochs=1000",
        "tracking.flush_every_s=0.2",
        "compression=none",
        f"paths.output_root={output_root}",
    ]
    process, run_id = start_training(overrides, tmp_path)
    try:
        client, deadline = MlflowClient(f"sqlite:///{db}"), time.monotonic() + 120
        while "train/loss" not in client.get_run(run_id).data.metrics:
            assert process.poll() is None and time.monotonic() < deadline, "training never logged a step"
            time.sleep(0.2)
        process.send_signal(stop)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + stop.value  # the shell's convention for "stopped by this signal"
    (run,) = runs_in(db)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == f"interrupted by {name}"
    assert "train/loss" in run.data.metrics


@pytest.mark.slow
def test_a_diverging_run_ends_failed_with_one_line_saying_at_which_step(tmp_path: Path, output_root: Path) -> None:
    done = pipeline_train(
        *TINY_DATA,
        "optimizer.lr=1e6",
        "trainer.max_epochs=3",
        "compression=none",
        f"paths.output_root={output_root}",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == done.stderr.splitlines()[-1], done.stderr
    assert re.fullmatch(
        r"error: training diverged: train/loss=\S+ at step \d+, over trainer.divergence_factor=100 x the first "
        r"step's \S+; lower optimizer.lr or set trainer.gradient_clip_val",
        errors[0],
    ), errors[0]
    assert "Traceback" not in done.stdout + done.stderr
    (run,) = runs_in(output_root / "mlflow.db")
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == "TrainingDiverged: " + errors[
        0
    ].removeprefix("error: ")
    assert "test/acc" not in run.data.metrics


@pytest.mark.slow
def test_on_divergence_stop_tests_the_best_epoch_and_tags_the_run(tmp_path: Path, output_root: Path) -> None:
    # SGD at lr 0.3 on the synthetic data: the loss rises above 1.01 x its first value within a few steps
    done = pipeline_train(
        *TINY_DATA,
        "optimizer=sgd",
        "optimizer.lr=0.3",
        "trainer.max_epochs=3",
        "compression=none",
        "trainer.divergence_factor=1.01",
        "trainer.on_divergence=stop",
        "tracking.log_model=false",
        f"paths.output_root={output_root}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = runs_in(output_root / "mlflow.db")
    assert run.info.status == "FINISHED" and run.data.tags["diverged"].startswith("training diverged: train/loss=")
    assert "test/acc" in run.data.metrics and "WARNING training diverged" in done.stderr
