"""The Optuna sweeper: search space syntax, a parallel study, pruning, resume after SIGKILL, DDP trials."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from conftest import TINY_DATA, pipeline_train, start_sweep, store_client
from pipeline.errors import ConfigError
from pipeline.sweeps.space import search_space
from pipeline.sweeps.study import study_name

SEARCH = ["hydra/sweeper=optuna", "optimizer.lr=tag(log, interval(1e-4, 1e-2))", "model=cnn,mlp"]
TRIAL = [*TINY_DATA, "compression=none", "tracking.log_model=false"]


def test_search_space_reads_the_stock_optuna_sweeper_syntax() -> None:
    space = search_space(
        {
            "optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
            "data.batch_size": "range(32, 129, 32)",
            "model": "choice(cnn, rnn)",
        },
        ["model=mlp,cnn", "+tags.team=vision", "optimizer.weight_decay=interval(0, 0.1)"],
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "data.batch_size": IntDistribution(32, 128, step=32),
        "model": CategoricalDistribution(["mlp", "cnn"]),  # the command line wins over hydra.sweeper.params
        "optimizer.weight_decay": FloatDistribution(0.0, 0.1),
    }
    assert space.fixed == ["+tags.team=vision"]
    assert space.overrides({"model": "cnn", "data.batch_size": 64}) == [
        "+tags.team=vision",
        "model=cnn",
        "data.batch_size=64",
    ]


def test_a_search_without_any_search_expression_is_refused() -> None:
    with pytest.raises(ConfigError, match="nothing to search"):
        search_space({}, ["model=cnn"])


def test_the_same_command_names_the_same_study_whatever_the_order_of_its_overrides() -> None:
    first = study_name(None, {"a": "choice(1, 2)"}, ["x=1", "y=2"], "best/val_acc", "maximize")
    assert first == study_name(None, {"a": "choice(1, 2)"}, ["y=2", "x=1"], "best/val_acc", "maximize")
    assert first != study_name(None, {"a": "choice(1, 3)"}, ["x=1", "y=2"], "best/val_acc", "maximize")
    assert study_name("mine", {}, [], "best/val_acc", "maximize") == "mine"


def _sweep(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return pipeline_train("-m", *args, cwd=cwd, env=env)


def _store(out: Path) -> tuple[MlflowClient, list, list]:
    """The client, the parent runs and the trial runs of the sweep in ``out``."""
    client = store_client(out)
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    parents = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    return client, parents, [run for run in runs if run.data.tags.get("sweep.role") != "parent"]


def _study(out: Path) -> optuna.Study:
    storage = f"sqlite:///{out / 'optuna.db'}"
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.slow
def test_six_trials_two_at_a_time_land_under_one_parent_with_the_best_named(tmp_path: Path, output_root: Path) -> None:
    out = output_root
    done = _sweep(
        [
            *SEARCH,
            "hydra/launcher=parallel",
            "hydra.sweeper.n_trials=6",
            *TRIAL,
            "trainer.max_epochs=3",
            f"paths.output_root={out}",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client, (parent,), children = _store(out)
    study = _study(out)
    assert len(study.trials) == 6 and len(children) == 6
    assert {run.data.tags["optuna.trial"] for run in children} == {str(trial.number) for trial in study.trials}
    for run in children:
        assert run.info.status == "FINISHED" and run.data.params["trainer.threads"] == str(
            max(1, len(os.sched_getaffinity(0)) // 2)
        )
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        trial = study.trials[int(run.data.tags["optuna.trial"])]
        assert run.data.tags["optuna.state"] == trial.state.name
        epochs = 3 if trial.state.name == "COMPLETE" else trial.user_attrs["pruned_at_epoch"] + 1
        assert len(client.get_metric_history(run.info.run_id, "val/acc")) == epochs  # nothing lost
        assert trial.intermediate_values == {
            epoch: pytest.approx(
                max(p.value for p in client.get_metric_history(run.info.run_id, "val/acc")[: epoch + 1])
            )
            for epoch in range(epochs)
        }
    best = study.best_trial
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/trials"] == 6
    (best_run,) = [run for run in children if run.data.tags["optuna.trial"] == str(best.number)]
    assert parent.data.tags["sweep.best_run_id"] == best_run.info.run_id
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")} >= {
        "sweep/objective_by_parameter.png",
        "sweep/optimization_history.png",
        "sweep/param_importances.png",
    }


@pytest.mark.slow
def test_a_pruned_trial_is_stopped_and_marked_pruned_in_optuna_and_mlflow(tmp_path: Path, output_root: Path) -> None:
    out = output_root
    # validation accuracy never reaches 1.1: the threshold pruner stops every trial after its warm-up epoch
    pruner = [
        "~hydra.sweeper.pruner",
        "+hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 1.1, n_warmup_steps: 1}",
    ]
    done = _sweep(
        [*SEARCH, "hydra.sweeper.n_trials=2", *pruner, *TRIAL, "trainer.max_epochs=5", f"paths.output_root={out}"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client, (parent,), children = _store(out)
    assert [trial.state.name for trial in _study(out).trials] == ["PRUNED", "PRUNED"]
    for run in children:
        assert run.data.tags["optuna.state"] == "PRUNED" and run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # stopped after epoch 1 of 5
    assert parent.data.metrics["sweep/pruned"] == 2 and parent.info.status == "FAILED"  # no trial completed


def _count(database: Path, query: str) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(database, timeout=10) as connection:
            return connection.execute(query).fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_finishes_only_the_remaining_trials(tmp_path: Path, output_root: Path) -> None:
    out = output_root
    arguments = [
        "-m",
        *SEARCH,
        "hydra/launcher=parallel",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.pruner=null",
        *TRIAL,
        "trainer.max_epochs=8",
        f"paths.output_root={out}",
    ]
    sweep = start_sweep(arguments, tmp_path)
    deadline = time.monotonic() + 300
    # kill once two trials are done and the next ones have opened their MLflow runs
    while not (
        _count(out / "optuna.db", "select count(*) from trials where state = 'COMPLETE'") >= 2
        and _count(out / "mlflow.db", "select count(*) from runs where status = 'RUNNING'") >= 2
    ):
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    killed_study = _study(out)
    done_before = {trial.number for trial in killed_study.trials if trial.state.name == "COMPLETE"}
    lost = {trial.number: trial.params for trial in killed_study.trials if trial.state.name == "RUNNING"}
    assert lost

    done = pipeline_train(*arguments, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    study = _study(out)
    states = {trial.number: trial.state.name for trial in study.trials}
    assert sum(state == "COMPLETE" for state in states.values()) == 6
    assert all(states[number] == "FAIL" for number in lost)  # the lost trials failed ...
    retried = {
        t.system_attrs["failed_trial"]: t.params for t in study.trials if t.system_attrs.get("failed_trial") in lost
    }
    assert set(retried) == set(lost)  # ... and ran again: with their parameters, and a trial killed inside
    assert all(retried[number] == params for number, params in lost.items() if params)  # ask (none yet) afresh
    assert done.stdout.count("run id:") == 6 - len(done_before)  # finished trials were not run again

    _client, parents, children = _store(out)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the same parent, reopened and closed
    assert [run for run in children if run.info.status == "RUNNING"] == []
    numbers = [int(run.data.tags["optuna.trial"]) for run in children]
    assert len(numbers) == len(set(numbers))  # one run per trial: no duplicates
    complete = {number for number, state in states.items() if state == "COMPLETE"}
    assert complete <= set(numbers) <= complete | set(lost)  # a lost trial may have died before opening its run
    for run in children:
        if int(run.data.tags["optuna.trial"]) in lost:
            assert run.info.status == "FAILED" and "no heartbeat" in run.data.tags["failure_reason"]
            assert run.data.tags["optuna.state"] == "FAIL"


@pytest.mark.slow
@pytest.mark.ddp
def test_a_sweep_of_two_device_ddp_trials_counts_a_diverged_one_as_failed(tmp_path: Path, output_root: Path) -> None:
    """trainer=ddp in a sweep runs as ddp_spawn: a diverged worker's verdict must reach the sweep as one line."""
    out = output_root
    done = _sweep(
        [
            "hydra/sweeper=optuna",
            "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",  # each lr once
            "hydra.sweeper.n_trials=2",
            "optimizer.lr=choice(0.002, 1000000.0)",
            "trainer=ddp",
            "model=mlp",
            *TRIAL,
            "trainer.max_epochs=2",
            f"paths.output_root={out}",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "ProcessRaisedException" not in done.stderr, done.stderr[-3000:]
    _client, (parent,), children = _store(out)
    study = _study(out)
    states = {trial.number: trial.state.name for trial in study.trials}
    assert sorted(states.values()) == ["COMPLETE", "FAIL"]  # each trial told once; the diverged one failed
    assert len(children) == 2 and parent.info.status == "FINISHED"
    for run in children:
        trial = study.trials[int(run.data.tags["optuna.trial"])]
        assert run.data.params["trainer.devices"] == "2" and run.data.params["trainer.strategy"] == "ddp"
        if float(trial.params["optimizer.lr"]) == 0.002:  # choice() values reach Optuna as strings
            assert trial.state.name == "COMPLETE" and run.info.status == "FINISHED"
            assert run.data.metrics["test/samples"] == 64 and len(trial.intermediate_values) == 2
            assert parent.data.tags["sweep.best_run_id"] == run.info.run_id
        else:
            assert trial.state.name == "FAIL" and run.info.status == "FAILED"
            reason = run.data.tags["failure_reason"]
            assert reason.startswith("TrainingDiverged: training diverged: train/loss="), reason
            assert f"error: {reason.removeprefix('TrainingDiverged: ')}" in done.stderr
            assert "test/acc" not in run.data.metrics


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model=cnn"], "error: hydra.sweeper.params: nothing to search"),
        (["model=cnn,mlp", "hydra.sweeper.storage=nosuchdb://x"], "error: hydra.sweeper.storage=nosuchdb://x: "),
        (
            ["model=cnn,mlp", "hydra.sweeper.direction=minimize"],
            "error: hydra.sweeper.direction=minimize: set sweep.direction",
        ),
        (
            ["model=cnn,mlp", "+hydra.sweeper.sampler.sed=1"],
            "error: hydra.sweeper.sampler: TPESampler.__init__() got an unexpected",
        ),
    ],
)
@pytest.mark.slow
def test_bad_search_input_is_one_line_and_a_failed_parent(
    tmp_path: Path, output_root: Path, overrides: list[str], expected: str
) -> None:
    out = output_root
    done = _sweep(["hydra/sweeper=optuna", *overrides, *TRIAL, f"paths.output_root={out}"], tmp_path)
    assert done.returncode == 2 and done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr[
        -2000:
    ]
    _, (parent,), children = _store(out)
    assert (
        parent.info.status == "FAILED" and parent.data.tags["failure_reason"] == done.stderr[len("error: ") :].strip()
    )
    assert children == []
