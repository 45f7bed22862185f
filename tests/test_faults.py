"""Fault injection: processes racing on a new store, stores left half-migrated, sweeps killed at random moments.

Every test drives the real dependency (SQLite stores through MLflow, Optuna's storage, real
`pipeline-train` processes) and checks the store afterwards: nothing RUNNING, nothing lost.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient

from conftest import (
    COMMAND_TIMEOUT_S,
    TINY_DATA,
    TRAIN,
    cli_env,
    free_port,
    mlflow_server_command,
    pipeline_train,
    run_training,
    serving,
    start_sweep,
    start_training,
    store_client,
)
from pipeline.config.compose import compose_config
from pipeline.errors import CheckpointError
from pipeline.failpoints import FAILPOINT_ENV
from pipeline.tracking.store import open_store
from pipeline.workflows.train import resume

# What a run does with the store: open it (creating it if new), start a run, log, finish.
# (the store's half of pipeline.tracking.run.TrackedRun, without its torch and Lightning imports)
ONE_RUN = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient
from mlflow.entities import Metric
from pipeline.tracking.store import ensure_experiment
experiment_id = ensure_experiment(sys.argv[1], "race", Path(sys.argv[2]))
client = MlflowClient(sys.argv[1])
run_id = client.create_run(experiment_id, tags={"worker": sys.argv[3]}).info.run_id
now = int(time.time() * 1000)
client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (step + 1), now, step) for step in range(50)])
client.set_terminated(run_id, "FINISHED")
"""
ROUNDS = int(os.environ.get("PIPELINE_FAULT_ROUNDS", "5"))  # fewer (PIPELINE_FAULT_ROUNDS=1) for a quicker check


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_eight_processes_starting_together_on_a_new_store_all_finish(tmp_path: Path, round_: int) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", ONE_RUN, uri, str(tmp_path), str(n)],
            env=cli_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    errors = [worker.communicate(timeout=300)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 8, "\n".join(errors)[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(run.data.tags["worker"] for run in runs) == [str(n) for n in range(8)]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [point.step for point in client.get_metric_history(run.info.run_id, "loss")] == list(range(50))


def _new_store(path: Path, with_run: bool) -> str:
    uri = f"sqlite:///{path}"
    open_store(uri)
    if with_run:
        client = MlflowClient(uri)
        client.create_run(client.create_experiment("kept"))
    return uri


def _open_in_new_process(uri: str) -> subprocess.CompletedProcess:
    """open_store in a process that has not opened ``uri`` yet, reporting a PipelineError as the commands do."""
    script = (
        "import sys\nfrom pipeline.errors import PipelineError\nfrom pipeline.tracking.store import open_store\n"
        "try:\n    open_store(sys.argv[1])\nexcept PipelineError as err:\n    sys.exit(print(f'error: {err}', file=sys.stderr) or 2)"
    )
    return subprocess.run(
        [sys.executable, "-c", script, uri], env=cli_env(), capture_output=True, text=True, timeout=120
    )


def _sql(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as connection:
        for statement in statements:
            connection.execute(statement)


@pytest.mark.slow
def test_an_empty_store_left_half_migrated_is_created_anew(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = _new_store(db, with_run=False)
    # what a creation race left behind: alembic's scratch copy and a version stuck half way
    _sql(
        db,
        "create table _alembic_tmp_runs (run_uuid varchar)",
        "update alembic_version set version_num = 'a8c4a736bde6'",
    )
    unreadable = subprocess.run(
        [sys.executable, "-c", f"import mlflow; mlflow.MlflowClient({uri!r}).search_experiments()"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unreadable.returncode != 0  # MLflow itself cannot open it
    assert _open_in_new_process(uri).returncode == 0
    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["Default"]


@pytest.mark.slow
def test_a_sweep_killed_while_creating_its_store_opens_it_again(tmp_path: Path) -> None:
    """The sweep's parent run is the first to open a new store: it repairs an interrupted creation first."""
    db = tmp_path / "mlflow.db"
    uri = _new_store(db, with_run=False)
    _sql(db, "create table _alembic_tmp_jobs (id varchar)", "update alembic_version set version_num = 'a8c4a736bde6'")
    script = (
        "import sys\nfrom pathlib import Path\nfrom omegaconf import OmegaConf\n"
        "from pipeline.tracking.sweep_runs import open_parent\n"
        "sweep = OmegaConf.create({'objective': 'best/val_acc', 'direction': 'maximize'})\n"
        "print(open_parent(sys.argv[1], 'digits', Path(sys.argv[2]), ['model=cnn,mlp'], sweep))"
    )
    opened = subprocess.run(
        [sys.executable, "-c", script, uri, str(tmp_path)], env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert opened.returncode == 0, opened.stderr[-3000:]
    with sqlite3.connect(db) as store:  # this process's MlflowClient would still read the store it replaced
        role = store.execute(
            "select value from tags where key = 'sweep.role' and run_uuid = ?", (opened.stdout.split()[-1],)
        )
        assert role.fetchall() == [("parent",)]


@pytest.mark.slow
def test_leftover_scratch_tables_of_a_finished_migration_are_dropped_and_the_runs_kept(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = _new_store(db, with_run=True)
    _sql(db, "create table _alembic_tmp_runs (run_uuid varchar)")
    assert _open_in_new_process(uri).returncode == 0
    with sqlite3.connect(db) as connection:
        assert connection.execute("select count(*) from sqlite_master where name like '_alembic_tmp_%'").fetchone() == (
            0,
        )
    client = MlflowClient(uri)
    assert len(client.search_runs([client.get_experiment_by_name("kept").experiment_id])) == 1


@pytest.mark.slow
def test_a_store_with_runs_stuck_mid_migration_is_one_line_with_the_fix(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = _new_store(db, with_run=True)
    _sql(db, "create table _alembic_tmp_nothing (x int)", "update alembic_version set version_num = 'a8c4a736bde6'")
    done = _open_in_new_process(uri)
    assert done.returncode == 2
    assert done.stderr == (
        f"error: tracking.uri={uri}: the store's schema migration was interrupted (version a8c4a736bde6, scratch tables "
        f"_alembic_tmp_nothing); back up {db}, then run `mlflow db upgrade {uri}`\n"
    )


# the failpoints of pipeline.workflows.train / tracking.compressed_models
PHASES = ["fit", "test", "figures", "model", "compression", "registry"]


def _histories(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    return {
        key: sorted(p.step for p in client.get_metric_history(run_id, key))
        for key in client.get_run(run_id).data.metrics
    }


@pytest.mark.slow
def test_a_run_killed_in_every_phase_after_training_resumes_each_time_with_nothing_written_twice(
    tmp_path: Path,
) -> None:
    """Killed in the first phase, then each resume killed in the next one: the last resume finishes the run."""
    out = tmp_path / "out"
    overrides = [
        *TINY_DATA,
        "model=mlp",
        "trainer.max_epochs=2",
        "trainer.threads=1",
        "compression=quick",
        "compression.variants=[int8_dynamic,fp16]",
        "compression.register=true",
        f"paths.output_root={out}",
    ]
    client, run_id = store_client(out), None
    scratch = tmp_path / "tmp"  # what a SIGKILL leaves of a process's temporary folders (its figures) stays here
    scratch.mkdir()
    for phase in PHASES:
        arguments = [f"resume={run_id}", f"paths.output_root={out}"] if run_id else overrides
        env = {**cli_env(), FAILPOINT_ENV: phase, "TMPDIR": str(scratch)}
        killed = pipeline_train(*arguments, cwd=tmp_path, env=env)
        assert killed.returncode == -signal.SIGKILL, f"{phase}: {killed.stderr[-3000:]}"
        (run,) = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
        assert run.info.status == "RUNNING", phase  # as a power cut leaves it
        assert f"run {run.info.run_id}" in killed.stderr  # the log reached stderr before the kill
        run_id = run.info.run_id

    resumed = pipeline_train(f"resume={run_id}", f"paths.output_root={out}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
    for key, steps in _histories(client, run.info.run_id).items():
        assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {steps}"
    assert {
        "test/acc",
        "best/val_acc",
        "compress/int8_dynamic/test_acc",
        "compress/fp16/test_acc",
    } <= run.data.metrics.keys()
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    ready = sorted(model.name for model in models if str(model.status).endswith("READY"))
    assert ready == ["model", "model-fp16", "model-int8_dynamic"]  # each model once
    versions = client.search_model_versions("name = 'digits-mlp'")
    assert sorted(version.tags["variant"] for version in versions) == [
        "fp16",
        "fp32",
        "int8_dynamic",
    ]  # each version once
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "compression/variants.json", str(tmp_path))).read_text()
    )
    assert [row[0] for row in table["data"]] == ["fp32", "int8_dynamic", "fp16"]  # one row per variant
    logs = [
        Path(client.download_artifacts(run.info.run_id, info.path, str(tmp_path / "logs"))).read_text()
        for info in client.list_artifacts(run.info.run_id, "logs")
    ]  # every process's log, uploaded by the next one
    assert len(logs) == len(PHASES) + 1
    assert sum(f"started run {run.info.run_id}" in log for log in logs) == 1
    assert sum(f"resuming run {run.info.run_id}" in log for log in logs) == len(PHASES)


# a race shows in some rounds only; fewer (PIPELINE_SWEEP_FAULT_ROUNDS=1) for a quicker check
SWEEP_ROUNDS = int(os.environ.get("PIPELINE_SWEEP_FAULT_ROUNDS", "6"))
KILL_WINDOW_S = (8.0, 40.0)  # seconds: start-up, an ask, a trial, a tell, ... up to the sweep's end


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(SWEEP_ROUNDS))
def test_a_sweep_killed_at_a_random_moment_resumes_and_finishes(round_: int, tmp_path: Path) -> None:
    out = tmp_path / "out"
    arguments = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.heartbeat_interval=1",
        "optimizer.lr=interval(1e-4, 1e-2)",
        "model=mlp",
        *TINY_DATA,
        "trainer.max_epochs=1",
        "trainer.threads=1",
        "compression=none",
        "tracking.log_model=false",
        f"paths.output_root={out}",
    ]
    sweep = start_sweep(arguments, tmp_path)
    # each round in its own slice of the window, so a few rounds still cover all of it (seeded: replayable)
    low, high = KILL_WINDOW_S
    width = (high - low) / SWEEP_ROUNDS
    moment = low + width * (round_ + random.Random(round_).random())
    try:
        sweep.wait(timeout=moment)
    except subprocess.TimeoutExpired:
        os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()

    resumed = pipeline_train(*arguments, cwd=tmp_path)
    assert resumed.returncode == 0, f"killed at {moment:.1f} s: {resumed.stderr[-3000:]}"
    storage = f"sqlite:///{out / 'optuna.db'}"
    (name,) = optuna.get_all_study_names(storage)
    states = [trial.state.name for trial in optuna.load_study(study_name=name, storage=storage).trials]
    assert states.count("COMPLETE") == 3 and "RUNNING" not in states, f"killed at {moment:.1f} s: {states}"
    client = store_client(out)
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert [run.info.status for run in runs if run.info.status == "RUNNING"] == []
    (parent,) = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    assert parent.info.status == "FINISHED"


# six of the spool's 10 s retries, and MLflow's own retry budget (2 tries, 1 s apart) many times over
OUTAGE_S = float(os.environ.get("PIPELINE_OUTAGE_S", "60"))


@dataclass
class Outage:
    """A `pipeline-train` process whose tracking server (``server``, at ``url``) was stopped mid-training."""

    training: subprocess.Popen
    client: MlflowClient
    run_id: str
    url: str
    server: list[str]  # the command that starts the server again


def train_through_an_outage(tmp_path: Path, *more: str) -> Outage:
    """Start `pipeline-train` of an MLP against a new `mlflow server`; return once 5 steps are stored and it is stopped.

    MLflow's own retry budget is made small (2 tries, 1 s apart): any outage outlasts it many times over.
    """
    port = free_port()
    url, server = f"http://127.0.0.1:{port}", mlflow_server_command(tmp_path, port)
    env = {**cli_env(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    overrides = [
        *TINY_DATA,
        "data.train_size=2048",
        "model=mlp",
        "trainer.threads=1",
        "tracking.flush_every_s=0.2",
        "compression=none",
        "interpret=none",
        f"tracking.uri={url}",
        f"paths.output_root={tmp_path / 'out'}",
        *more,
    ]
    with serving(server, f"{url}/health", tmp_path / "server-1.log"):
        training = subprocess.Popen(
            [*TRAIN, *overrides], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        client, deadline = MlflowClient(url), time.monotonic() + 180
        while (
            not (runs := client.search_runs([e.experiment_id for e in client.search_experiments()]))
            or len(client.get_metric_history(runs[0].info.run_id, "train/loss")) < 5
        ):
            assert training.poll() is None and time.monotonic() < deadline, "training never logged a step"
            time.sleep(0.2)
    return Outage(training, client, runs[0].info.run_id, url, server)


def assert_every_step_stored_once(client: MlflowClient, run_id: str, epochs: int) -> None:
    steps = [point.step for point in client.get_metric_history(run_id, "train/loss")]
    assert len(steps) == epochs * (2048 // 32) and len(set(steps)) == len(steps)
    assert len(client.get_metric_history(run_id, "val/acc")) == epochs


@pytest.mark.slow
def test_a_tracking_server_outage_loses_no_metric_point_and_stores_none_twice(tmp_path: Path) -> None:
    outage = train_through_an_outage(tmp_path, "trainer.max_epochs=30", "tracking.log_model=false")
    training, client, run_id, url = outage.training, outage.client, outage.run_id, outage.url
    time.sleep(OUTAGE_S)  # the server is down; training goes on (and may end and wait for it)
    assert training.poll() is None, training.communicate()[1][-3000:]  # waiting for the server, not failed
    with serving(outage.server, f"{url}/health", tmp_path / "server-2.log"):
        _, err = training.communicate(timeout=COMMAND_TIMEOUT_S)
        assert training.returncode == 0, err[-3000:]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
        assert_every_step_stored_once(client, run_id, epochs=30)
    assert err.count("does not answer: training goes on") == 1 and err.count("answers again") == 1, err[-3000:]
    assert "Retrying" not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "checkpoints" / run_id / "metrics-spool.jsonl").exists()


@pytest.mark.slow
def test_a_server_away_past_the_wait_stops_the_run_in_one_line_and_resume_uploads_everything(tmp_path: Path) -> None:
    """The run's metrics wait in the spool and its checkpoint on disk; `resume=` is the sync that sends them all."""
    outage = train_through_an_outage(tmp_path, "trainer.max_epochs=3", "tracking.outage_wait_s=2")
    training, client, run_id, url = outage.training, outage.client, outage.run_id, outage.url
    _, err = training.communicate(timeout=COMMAND_TIMEOUT_S)  # the server stays away
    spool = tmp_path / "out" / "checkpoints" / run_id / "metrics-spool.jsonl"
    assert training.returncode != 0 and spool.exists()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: tracking.uri={url}: no answer for 2 s after training; its metrics wait in {spool}: "
        f"pipeline-train resume={run_id} tracking.uri={url} paths.output_root={tmp_path / 'out'} sends them and "
        "logs the run's figures and model once the server answers"
    ], err[-3000:]
    assert "Traceback" not in err and "Retrying" not in err, err
    assert f"run {run_id} stays RUNNING: {url} does not answer (resume={run_id} ends it)" in err

    with serving(outage.server, f"{url}/health", tmp_path / "server-2.log"):
        resumed = pipeline_train(
            f"resume={run_id}", f"tracking.uri={url}", f"paths.output_root={tmp_path / 'out'}", cwd=tmp_path
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
        assert_every_step_stored_once(client, run_id, epochs=3)
        figures = {artifact.path for artifact in client.list_artifacts(run_id, "figures")}
        assert "figures/confusion_matrix.png" in figures
        assert [model.name for model in client.search_logged_models([run.info.experiment_id])] == ["model"]
    assert not spool.exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs (mounting needs root, which CI has): a disk the test can fill."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
# which write finds it full: a metric or a checkpoint
@pytest.mark.parametrize("store_on", ["the full disk", "another disk"])
def test_a_run_that_fills_its_disk_ends_failed_with_one_line_and_its_last_checkpoint_intact(
    store_on: str, tmp_path: Path, small_disk: Path
) -> None:
    out = small_disk / "out"
    db = out / "mlflow.db" if store_on == "the full disk" else tmp_path / "mlflow.db"
    overrides = [
        *TINY_DATA,
        "data.train_size=2048",
        "trainer.max_epochs=50",
        "trainer.threads=1",
        "tracking.log_model=false",
        "compression=none",
        f"paths.output_root={out}",
        f"tracking.uri=sqlite:///{db}",
    ]
    process, run_id = start_training(overrides, tmp_path)
    last = out / "checkpoints" / run_id / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.is_file():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.2)
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    assert last.stat().st_size > 64 * 1024
    (small_disk / "filler").write_bytes(b"\0" * (free - 16 * 1024))  # 16 KB left: less than a checkpoint
    process.wait(timeout=300)
    log = "".join(process.log_lines)  # type: ignore[attr-defined]

    assert process.returncode == 1, log[-3000:]
    (error,) = [line for line in log.splitlines() if line.startswith("error:")] or [
        log[-4000:]
    ]  # the checkpoint or the store finds it full
    where = f"of the store {db}" if store_on == "the full disk" else f"writing {last}"
    assert (
        error
        == f"error: no space left on the device {where}: free some, then resume=<run id> continues from the last checkpoint"
    ), log[-4000:]
    assert "Traceback" not in log, log
    client = MlflowClient(f"sqlite:///{db}")  # the store is readable
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == "DiskFull: " + error.removeprefix(
        "error: "
    )
    torch.load(last, map_location="cpu", weights_only=True)  # the last good checkpoint loads
    assert [path.name for path in last.parent.iterdir() if path.name.endswith(".partial")] == []


@pytest.mark.slow
def test_a_corrupt_last_checkpoint_is_one_line_and_leaves_the_run_as_it_was(
    tiny: list[str], output_root: Path, store: MlflowClient
) -> None:
    result = run_training([*tiny, "tracking.log_model=false"])
    store.set_terminated(result.run_id, "KILLED")  # as a stopped run is left
    last = output_root / "checkpoints" / result.run_id / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as a copy cut short leaves it
    with pytest.raises(CheckpointError) as refused:
        resume(
            compose_config([f"resume={result.run_id}", f"paths.output_root={output_root}"]), [f"resume={result.run_id}"]
        )
    assert str(refused.value).startswith(f"resume={result.run_id}: {last} cannot be read (")
    assert str(refused.value).endswith(f"the run is unchanged: train it again with `pipeline-rerun {result.run_id}`")
    assert "\n" not in str(refused.value)
    assert store.get_run(result.run_id).info.status == "KILLED"  # not reopened, not FAILED: still resumable once mended
