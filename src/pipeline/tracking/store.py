"""Resolve where runs go, create the store and experiment once before anything logs, register models."""

from __future__ import annotations

import contextlib
import io
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import mlflow
from mlflow import MlflowClient

from pipeline.errors import TrackingError

# MLflow announces every schema migration of a new SQLite store at INFO: not news to a user.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


def resolve_tracking_uri(uri: Optional[str], output_root: Path) -> str:
    """Absolute store URI: Hydra job folders and DDP workers must all reach the same store."""
    if uri is None:
        return f"sqlite:///{(output_root / 'mlflow.db').resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_server(uri: str) -> None:
    """A tracking server that does not answer is one line now, not minutes of MLflow's retries."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10):
            return
    except urllib.error.HTTPError:
        return  # it answered (an authenticating proxy, say): MLflow's own calls will tell more
    except OSError as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(f"tracking.uri={uri}: no MLflow server answers ({reason}); start one with scripts/server.sh start") from None


def ensure_experiment(uri: str, name: str, output_root: Path) -> str:
    """Experiment id for ``name``, created if missing (with artifacts beside a local store)."""
    if is_server_uri(uri):
        check_server(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None if is_server_uri(uri) else (output_root / "artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def register_model(model_uri: str, name: str, tags: dict[str, str]) -> Any:
    """A new version of registered model ``name`` (in the current tracking URI); returns the version."""
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints two lines per version
        return mlflow.register_model(model_uri, name, tags=tags)
