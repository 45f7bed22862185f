"""scripts/server.sh: PostgreSQL plus `mlflow server`; a run and a parallel Optuna sweep land there over HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from conftest import COMMAND_TIMEOUT_S, TINY_DATA, cli_env, free_port, pipeline_train
from pipeline.config import REPO_ROOT

SERVER = ["bash", str(REPO_ROOT / "scripts" / "server.sh")]


@pytest.fixture
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment a team member's shell has once scripts/server.sh started: server URL, study database.

    Starting PostgreSQL and `mlflow server` costs half a minute here, so one test does all that needs a server.
    """
    server_dir = tmp_path_factory.mktemp("team") / "server"
    env = {
        **cli_env(),
        "SERVER_DIR": str(server_dir),
        "PG_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
    }
    try:
        started = subprocess.run([*SERVER, "start"], env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        assert started.returncode == 0, started.stdout + started.stderr
        yield {
            **env,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{env['MLFLOW_PORT']}",
            "PGPASSFILE": str(server_dir / "pgpass"),  # as the start message says: no password in the URL
            "PIPELINE_OPTUNA_STORAGE": f"postgresql://postgres@127.0.0.1:{env['PG_PORT']}/optuna",
        }
    finally:
        subprocess.run([*SERVER, "purge"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_a_run_and_a_parallel_sweep_land_in_the_team_server_and_its_password_nowhere(
    tmp_path: Path, team_server: dict[str, str], monkeypatch
) -> None:
    common = [
        "tracking=server",
        *TINY_DATA,
        "trainer.max_epochs=2",
        "compression=none",
        f"paths.output_root={tmp_path / 'out'}",
    ]
    run = pipeline_train(*common, cwd=tmp_path, env=team_server)
    assert run.returncode == 0, run.stderr[-3000:]
    sweep = pipeline_train(
        "-m",
        "hydra/sweeper=optuna_server",
        "hydra/launcher=parallel",
        "hydra.sweeper.n_trials=2",
        "optimizer.lr=interval(1e-3, 1e-2)",
        "model=mlp",
        *common,
        cwd=tmp_path,
        env=team_server,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]

    client = MlflowClient(team_server["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)  # the run, the parent, two trials
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2 and all("test/acc" in r.data.metrics for r in trials)
    (single,) = [r for r in runs if r not in trials and r is not parent]
    assert {a.path for a in client.list_artifacts(single.info.run_id, "figures")} >= {"figures/learning_curves.png"}
    study_name = parent.data.tags["sweep.study"]
    monkeypatch.setenv("PGPASSFILE", team_server["PGPASSFILE"])  # this process reads the study as a team member would
    study = optuna.load_study(study_name=study_name, storage=team_server["PIPELINE_OPTUNA_STORAGE"])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert not (tmp_path / "out" / "mlflow.db").exists() and not (tmp_path / "out" / "optuna.db").exists()
    assert_password_on_no_command_line_and_in_no_log(team_server)
    assert_no_job_execution_processes(team_server)


def assert_no_job_execution_processes(team_server: dict[str, str]) -> None:
    """MLflow's job execution is off: its job runner and 7 polling consumers kept most of a core busy while idle."""
    group = (Path(team_server["SERVER_DIR"]) / "mlflow.pid").read_text().strip()  # setsid: the server's group
    table = subprocess.run(["ps", "-eww", "-o", "pgid=,args="], capture_output=True, text=True, check=True).stdout
    server = [line.split(None, 1)[1] for line in table.splitlines() if line.split(None, 1)[0] == group]
    assert any("uvicorn" in arguments for arguments in server), server  # the server is there
    assert not [arguments for arguments in server if "huey" in arguments or "jobs._job_runner" in arguments]


def assert_password_on_no_command_line_and_in_no_log(team_server: dict[str, str]) -> None:
    """Checked after the runs, so the server's logs hold their requests too."""
    server_dir = Path(team_server["SERVER_DIR"])
    password = (server_dir / "db-password").read_text().strip()
    assert len(password) >= 16
    arguments = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    assert f"127.0.0.1:{team_server['PG_PORT']}/mlflow" in arguments  # the server is there, its URL without a password
    assert password not in arguments
    for log in server_dir.glob("*.log"):
        assert password not in log.read_text(errors="replace"), log
    assert oct((server_dir / "pgpass").stat().st_mode & 0o777) == "0o600"


@pytest.mark.slow
def test_a_server_folder_made_anew_at_the_same_path_gets_its_own_database(tmp_path: Path) -> None:
    """As root the databases live outside the server folder; a deleted folder's old ones hold a lost password."""
    server_dir = tmp_path / "server"
    env = {**cli_env(), "SERVER_DIR": str(server_dir), "PG_PORT": str(free_port()), "MLFLOW_PORT": str(free_port())}
    homes = []
    try:
        for attempt in range(2):
            started = subprocess.run(
                [*SERVER, "start"], env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
            )
            assert started.returncode == 0, (attempt, started.stdout + started.stderr)
            homes.append(
                Path((server_dir / "pg_home").read_text().strip()) if (server_dir / "pg_home").exists() else None
            )
            subprocess.run([*SERVER, "stop"], env=env, capture_output=True, timeout=120, check=True)
            if attempt == 0:
                subprocess.run(["rm", "-rf", str(server_dir)], check=True)  # the user deletes the folder, not the data
        assert homes[0] != homes[1] or homes[0] is None  # as root, a new data folder; else the data is in the folder
    finally:
        subprocess.run([*SERVER, "purge"], env=env, capture_output=True, timeout=120)
        for home in homes:
            if home is not None:
                subprocess.run(["rm", "-rf", str(home)], check=False)
