"""Every use of MLflow's private API in one place (tests/test_mlflow_internals.py fails loudly on an upgrade that breaks it).

- The store's schema revision, to tell a finished SQLite store from one left half-migrated
  (`pipeline.tracking.store`).
- Logging a model checks its pip requirements against this environment. To do that MLflow first
  maps every file of every installed distribution to its package: ~2 s, once per process, in the
  few seconds a run spends after its test. The pipeline's requirements are this environment's
  exact versions (`pipeline.tracking.requirements`), so that check cannot find anything:
  `requirements_from_this_environment` skips it while the pipeline logs a model.
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

import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version
from mlflow.store.tracking.dbmodels.models import SqlMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils import environment
from sqlalchemy import select

__all__ = ["latest_schema_revision", "metric_points", "requirements_from_this_environment", "schema_revision"]

schema_revision = _get_schema_version
latest_schema_revision = _get_latest_schema_revision


def _nothing_to_check(requirements: list[str]) -> None:
    """The requirements are pinned to what is installed here (requirements.exact_requirements)."""


@contextmanager
def requirements_from_this_environment() -> Iterator[None]:
    """Within: models are logged without MLflow's check of their requirements against this environment."""
    # the writer checks, and so does the pyfunc loader with which MLflow validates the input example
    modules = (environment, mlflow.pyfunc)
    checks = [module.warn_dependency_requirement_mismatches for module in modules]
    for module in modules:
        module.warn_dependency_requirement_mismatches = _nothing_to_check
    try:
        yield
    finally:
        for module, check in zip(modules, checks, strict=True):
            module.warn_dependency_requirement_mismatches = check


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
