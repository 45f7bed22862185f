"""Read a stored run back: its config, tags, final metrics and artifacts."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.errors import TrackingError, first_line
from pipeline.tracking.store import open_store


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    status: str
    config_yaml: str
    tags: dict[str, str]
    metrics: dict[str, float]
    experiment: str  # the name of its experiment
    run_name: str

    def artifact_text(self, uri: str, path: str) -> str:
        return read_artifact_text(uri, self.run_id, path)


def download_artifact(uri: str, run_id: str, path: str, destination: Path) -> Path:
    try:
        return Path(MlflowClient(tracking_uri=uri).download_artifacts(run_id, path, str(destination)))
    except (MlflowException, OSError) as err:
        raise TrackingError(f"run {run_id} in {uri}: cannot read artifact {path}: {first_line(str(err))}") from None


def read_artifact_text(uri: str, run_id: str, path: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        return download_artifact(uri, run_id, path, Path(scratch)).read_text()


def fetch_run(uri: str, run_id: str) -> StoredRun:
    """The run ``run_id`` in the store at ``uri``; TrackingError if it or its config is missing."""
    open_store(uri, must_exist=True)
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise TrackingError(f"run {run_id} in {uri}: {first_line(str(err))}") from None
    config_yaml = read_artifact_text(uri, run_id, "config/config.yaml")
    return StoredRun(
        run_id,
        run.info.status,
        config_yaml,
        dict(run.data.tags),
        dict(run.data.metrics),
        client.get_experiment(run.info.experiment_id).name,
        run.info.run_name,
    )
