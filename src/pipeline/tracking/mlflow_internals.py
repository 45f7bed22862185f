"""Every use of MLflow's private API in one place (tests/test_mlflow_internals.py fails loudly on an upgrade that breaks it).

- The store's schema revision, to tell a finished SQLite store from one left half-migrated
  (`pipeline.tracking.store`).
- Logging a model checks its pip requirements against this environment. To do that MLflow first
  maps every file of every installed distribution to its package: ~2 s, once per process, in the
  few seconds a run spends after its test. The pipeline's requirements are this environment's
  exact versions (`pipeline.tracking.requirements`), so that check cannot find anything:
  `without_redundant_model_checks` skips it while the pipeline logs a model.
- Logging a model with an input example loads the saved model again and predicts that example
  (`_validate_serving_input`), and on failure only logs a warning: up to ~0.6 s per model, once for the
  run's model and once per compressed variant. The pipeline has just predicted the example with the
  same model to infer the signature, and the tests load every kind of logged model through pyfunc
  and check its predictions; `without_redundant_model_checks` skips that reload as well.
- Starting a run, MLflow looks up the git commit, branch and remote of the main script's
  repository (its `GitRunContext`): it imports GitPython and runs git, ~0.12 s of every process's
  start. The pipeline records its own code's git state (`pipeline.provenance`: the commit, the
  diff, and MLflow's `mlflow.source.git.commit` and `.branch` tags; not the remote's URL), so
  `without_git_lookup` leaves that provider out while the pipeline starts a run.
- A run's metric history from a SQL store without an entity per point: `get_metric_history`
  makes a `Metric` per point (4.2 s for 100,000 points of a SQLite store, against 0.11 s for the
  two columns, docs/dependencies.md); a run reads its histories after training (learning curves,
  best validation score) and when it resumes. `metric_points` reads the columns through MLflow's
  own engine and table model, in MLflow's order; a tracking server goes through the client.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow.models.utils
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version
from mlflow.store.tracking.dbmodels.models import SqlMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking.context import registry as run_context_registry
from mlflow.tracking.context.git_context import GitRunContext
from mlflow.utils import environment
from sqlalchemy import select

__all__ = [
    "latest_schema_revision",
    "metric_points",
    "schema_revision",
    "without_git_lookup",
    "without_redundant_model_checks",
]

schema_revision = _get_schema_version
latest_schema_revision = _get_latest_schema_revision


def _nothing_to_check(*args: object, **kwargs: object) -> None:
    """The requirements are pinned to what is installed here (requirements.exact_requirements); the example
    was predicted by the model that is saved."""


@contextmanager
def without_redundant_model_checks() -> Iterator[None]:
    """Within: models are logged without MLflow's check of their requirements against this environment,
    and without its reload of the saved model to predict the input example."""
    hooks = [(module, "warn_dependency_requirement_mismatches") for module in (environment, mlflow.pyfunc)]
    hooks.append((mlflow.models.utils, "_validate_serving_input"))  # imported from there at each log_model
    checks = [getattr(module, name) for module, name in hooks]
    for module, name in hooks:
        setattr(module, name, _nothing_to_check)
    try:
        yield
    finally:
        for (module, name), check in zip(hooks, checks, strict=True):
            setattr(module, name, check)


@contextmanager
def without_git_lookup() -> Iterator[None]:
    """Within: starting a run resolves MLflow's context tags without its git provider."""
    providers = run_context_registry._run_context_provider_registry
    everyone = providers._registry
    providers._registry = [provider for provider in everyone if not isinstance(provider, GitRunContext)]
    try:
        yield
    finally:
        providers._registry = everyone


def metric_points(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """Every stored (step, value) of ``key`` in ``run_id``, in the order `get_metric_history` gives them."""
    store = client._tracking_client.store
    if not isinstance(store, SqlAlchemyStore):  # a tracking server: it pages its answer itself
        return [(point.step, point.value) for point in client.get_metric_history(run_id, key)]
    query = (
        select(SqlMetric.step, SqlMetric.value, SqlMetric.is_nan)
        .where(SqlMetric.run_uuid == run_id, SqlMetric.key == key)
        .order_by(SqlMetric.timestamp, SqlMetric.step, SqlMetric.value)
    )
    with store.ManagedSessionMaker() as session:
        rows = session.execute(query).all()
    return [(int(step), math.nan if is_nan else float(value)) for step, value, is_nan in rows]
