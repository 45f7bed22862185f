"""Shared fixtures: a temp output root (SQLite store, artifacts, checkpoints) and tiny-run overrides."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from local_servers import free_port, serving
from pipeline.config.compose import compose_config
from pipeline.tracking.store import open_store
from pipeline.workflows.train import TrainResult, train

TRAIN = [sys.executable, "-m", "pipeline.cli.train"]
TINY_DATA = ["data=synthetic", "data.train_size=96", "data.val_size=32", "data.test_size=64", "data.batch_size=32"]


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new SQLite store, created once per worker by the pipeline's own open_store."""
    db = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    open_store(f"sqlite:///{db}")
    return db


def with_store(output_root: Path, empty_store: Path) -> Path:
    """``output_root`` holding a copy of a new store: MLflow's schema migrations take ~2.5 s per new store.

    Tests of store creation itself (tests/test_faults.py) start from nothing instead.
    """
    output_root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, output_root / "mlflow.db")
    return output_root


@pytest.fixture
def output_root(tmp_path: Path, empty_store: Path) -> Path:
    return with_store(tmp_path / "outputs", empty_store)


@pytest.fixture
def tiny(output_root: Path) -> list[str]:
    """Overrides for a run that trains for real but takes a few seconds."""
    return [
        *TINY_DATA,
        "trainer.max_epochs=2",
        "trainer.threads=1",
        "compression=none",
        "interpret=none",
        f"paths.output_root={output_root}",
    ]


@pytest.fixture
def store(output_root: Path) -> MlflowClient:
    return store_client(output_root)


def run_training(overrides: list[str]) -> TrainResult:
    """What `pipeline-train <overrides>` does, in-process."""
    return train(compose_config(overrides), overrides)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_repo(tmp_path: Path) -> Path:
    """A throwaway git repository with one commit of one file, `train.py`."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("lr = 0.001\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return repo


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: workers take the next test as they finish one, so the long ones do not end the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# under pytest's own 600 s: a command that hangs fails with its output, not with pytest's thread dump
COMMAND_TIMEOUT_S = 540


def pipeline_train(
    *arguments: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT_S
) -> subprocess.CompletedProcess:
    """`pipeline-train <arguments>` as a user runs it: a real process, its output captured as text."""
    return subprocess.run(
        [*TRAIN, *arguments], cwd=cwd, env=env or cli_env(), capture_output=True, text=True, timeout=timeout
    )


def store_client(output_root: Path) -> MlflowClient:
    """A client of the SQLite store a run with ``paths.output_root=output_root`` wrote to."""
    return MlflowClient(tracking_uri=f"sqlite:///{output_root / 'mlflow.db'}")


def cli_env() -> dict[str, str]:
    """The environment a user's shell would give `pipeline-train`, with unbuffered output."""
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_training(overrides: list[str], cwd: Path) -> tuple[subprocess.Popen, str]:
    """Start `pipeline-train` in the background; return it and its run id once its log says the run exists.

    The rest of its log is read (and kept in ``process.log_lines``) by a thread, so a full pipe never blocks it.
    """
    process = subprocess.Popen(
        [*TRAIN, *overrides], cwd=cwd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    process.log_lines = []  # type: ignore[attr-defined]
    for line in process.stderr:
        process.log_lines.append(line)  # type: ignore[attr-defined]
        if " INFO started run " in line:
            threading.Thread(target=process.log_lines.extend, args=(process.stderr,), daemon=True).start()  # type: ignore[attr-defined]
            return process, line.split(" run ")[1].split()[0]
    process.kill()
    raise RuntimeError(f"pipeline-train exited with {process.wait()} before starting a run")


JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"


def mlflow_server_command(root: Path, port: int) -> list[str]:
    """`mlflow server` on 127.0.0.1:<port>, its SQLite store and artifacts under ``root``.

    Without MLflow's job execution, as scripts/server.sh starts it: its 8 polling processes would keep
    a core busy for as long as the server lives (the session's server: the rest of the session).
    """
    store = f"sqlite:///{root / 'server.db'}"
    artifacts = str(root / "artifacts")
    mlflow = str(Path(sys.executable).parent / "mlflow")
    where = ["--backend-store-uri", store, "--artifacts-destination", artifacts]
    serve = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return ["env", f"{JOB_EXECUTION}=false", mlflow, "server", *where, *serve]


def start_sweep(arguments: list[str], cwd: Path) -> subprocess.Popen:
    """`pipeline-train <arguments>` in the background, in its own process group (to be killed whole), output dropped."""
    return subprocess.Popen(
        [*TRAIN, *arguments],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` process on 127.0.0.1 that stores artifacts itself."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = mlflow_server_command(root, port)
    url = f"http://127.0.0.1:{port}"
    with serving(command, f"{url}/health", root / "server.log", timeout_s=90):
        yield url
