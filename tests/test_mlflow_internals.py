"""MLflow's private API the pipeline relies on (pipeline.tracking.mlflow_internals): an upgrade that breaks it fails here."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import mlflow.models.utils
import pytest
import sqlalchemy
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.tracking.context import registry as run_context_registry
from mlflow.tracking.context.git_context import GitRunContext
from mlflow.utils import requirements_utils

from conftest import git, make_repo
from pipeline.tracking.mlflow_internals import (
    latest_schema_revision,
    metric_points,
    schema_revision,
    without_git_lookup,
    without_redundant_model_checks,
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


def test_logging_a_model_skips_mlflows_rechecks_only_where_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requirements check's costly part (mapping installed files to packages) and the reload that predicts the
    input example run without the context and not within it."""
    scans, reloads = [], []
    monkeypatch.setattr(requirements_utils, "_init_packages_to_modules_map", lambda: scans.append(1))
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", {})
    validate = mlflow.models.utils._validate_serving_input
    monkeypatch.setattr(
        mlflow.models.utils,
        "_validate_serving_input",
        lambda *args, **kwargs: reloads.append(validate(*args, **kwargs)),
    )
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # an experiment of its own: the Default one keeps its artifacts in ./mlruns, wherever the tests run
    experiment_id = mlflow.create_experiment("checks", artifact_location=(tmp_path / "artifacts").as_uri())
    model, example = torch.nn.Linear(4, 2), torch.zeros(1, 4).numpy()
    logged = {"input_example": example, "pip_requirements": exact_requirements(TORCH_MODEL)}
    with mlflow.start_run(experiment_id=experiment_id):
        with without_redundant_model_checks():
            mlflow.pytorch.log_model(model, name="skipped", **logged)
        assert scans == [] and reloads == []
        mlflow.pytorch.log_model(model, name="checked", **logged)
        assert scans and len(reloads) == 1  # the hooks are still where MLflow checks: the context really skipped them


def test_a_run_started_without_the_git_lookup_gets_no_git_tags_from_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow looks up the repository of the main script; within the context it does not (the pipeline tags its own)."""
    repo = make_repo(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(repo / "train.py")])
    for provider in run_context_registry._run_context_provider_registry._registry:
        if isinstance(provider, GitRunContext):  # it keeps what it found for the process's main script: forget it
            monkeypatch.setattr(provider, "_cache", {})
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = mlflow.create_experiment("git", artifact_location=(tmp_path / "artifacts").as_uri())

    def git_tags() -> dict[str, str]:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            return {key: value for key, value in run.data.tags.items() if key.startswith("mlflow.source.git")}

    with without_git_lookup():
        assert git_tags() == {}
    # outside it MLflow looks again: the hook is real
    assert git_tags()["mlflow.source.git.commit"] == git(repo, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize("store", ["sqlite", "file"])
def test_metric_points_are_the_clients_history_in_its_order(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read from the SQL tables (or, elsewhere, through the client): NaN, a repeated step and the order as MLflow has them."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a store that is not SQL, without a server process
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if store == "sqlite" else (tmp_path / "mlruns").as_uri()
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("points")).info.run_id
    points = [
        (0, 2.0, 10),
        (1, float("nan"), 11),
        (1, 1.5, 12),
        (2, 0.5, 9),
        (3, float("inf"), 13),
    ]  # (step, value, ms)
    client.log_batch(run_id, metrics=[Metric("train/loss", value, ms, step) for step, value, ms in points])
    expected = [(point.step, point.value) for point in client.get_metric_history(run_id, "train/loss")]
    got = metric_points(client, run_id, "train/loss")
    assert len(got) == 5 and [step for step, _ in got] == [step for step, _ in expected]
    if store == "sqlite":
        assert [step for step, _ in got] == [2, 0, 1, 1, 3]  # by time, as MLflow's SQL store orders them
    assert str(got) == str(expected)  # NaN compares unequal to itself; its text does not
    assert metric_points(client, run_id, "val/acc") == []
