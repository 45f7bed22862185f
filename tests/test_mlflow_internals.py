"""MLflow's private API the pipeline relies on (pipeline.tracking.mlflow_internals): an upgrade that breaks it fails here."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import sqlalchemy
import torch
from mlflow.utils import requirements_utils

from pipeline.tracking.mlflow_internals import (
    latest_schema_revision,
    requirements_from_this_environment,
    schema_revision,
)
from pipeline.tracking.requirements import TORCH_MODEL, exact_requirements
from pipeline.tracking.store import ensure_experiment


def test_a_new_store_is_at_the_latest_schema_revision(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_experiment(uri, "digits", tmp_path)
    engine = sqlalchemy.create_engine(uri)
    try:
        assert schema_revision(engine) == latest_schema_revision() and len(latest_schema_revision()) >= 8
    finally:
        engine.dispose()


def test_logging_a_model_skips_the_environment_check_only_where_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check's costly part (mapping installed files to packages) runs without the context and not within it."""
    scans = []
    monkeypatch.setattr(requirements_utils, "_init_packages_to_modules_map", lambda: scans.append(1))
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", {})
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model, example = torch.nn.Linear(4, 2), torch.zeros(1, 4).numpy()
    logged = {"input_example": example, "pip_requirements": exact_requirements(TORCH_MODEL)}
    with mlflow.start_run():
        with requirements_from_this_environment():
            mlflow.pytorch.log_model(model, name="skipped", **logged)
        assert scans == []
        mlflow.pytorch.log_model(model, name="checked", **logged)
        assert scans  # the hook is still where MLflow checks: the context above really skipped it
