"""Every use of MLflow's private API in one place (tests/test_mlflow_internals.py fails loudly on an upgrade that breaks it).

- The store's schema revision, to tell a finished SQLite store from one left half-migrated
  (`pipeline.tracking.store`).
- Logging a model checks its pip requirements against this environment. To do that MLflow first
  maps every file of every installed distribution to its package: ~2 s, once per process, in the
  few seconds a run spends after its test. The pipeline's requirements are this environment's
  exact versions (`pipeline.tracking.requirements`), so that check cannot find anything:
  `requirements_from_this_environment` skips it while the pipeline logs a model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import mlflow.pyfunc
from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version
from mlflow.utils import environment

__all__ = ["latest_schema_revision", "requirements_from_this_environment", "schema_revision"]

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
