"""A Hydra multirun is one parent MLflow run; every trial is a child of it.

Grid sweeps (Hydra's basic sweeper) and Optuna searches (hydra/sweeper=optuna) alike. The
parent's id reaches the trials through an environment variable (so launchers that start new
processes pass it on too); the Hydra callback that opens and closes the parent is
pipeline.workflows.sweep.SweepParentRun.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig

PARENT_RUN_ENV = "PIPELINE_SWEEP_PARENT_RUN_ID"


def parent_run_id() -> str | None:
    """The sweep's parent run, when this process runs a trial of a sweep."""
    return os.environ.get(PARENT_RUN_ENV) or None


def swept_keys(sweep_overrides: list[str]) -> list[str]:
    """`optimizer.lr=1e-3,3e-3` -> `optimizer.lr`: the keys a grid varies."""
    return [override.split("=", 1)[0].lstrip("+~") for override in sweep_overrides if "," in override.split("=", 1)[-1]]


def end_stranded_parent(uri: str, run_id: str) -> None:
    """At exit, a parent that `on_multirun_end` never closed (Ctrl-C, a crashed trial) is marked KILLED."""
    if os.environ.get(PARENT_RUN_ENV) == run_id:
        abandon_parent(uri, "KILLED", "the sweep stopped before its last trial (interrupted, or the error it printed)")


def abandon_parent(uri: str, status: str, reason: str) -> None:
    """End the sweep's parent run before its last trial, with the reason (the at-exit net then leaves it alone)."""
    run_id = os.environ.pop(PARENT_RUN_ENV, None)
    if run_id:
        from pipeline.tracking.sweep_runs import end_parent

        end_parent(uri, run_id, status, reason)


OPTUNA_SWEEPER = "hydra_plugins.pipeline_sweeps.optuna_sweeper.OptunaSweeper"


def optuna_study(config: DictConfig) -> str | None:
    """The study an Optuna sweep will use (its parent run is found again by it); None for other sweepers."""
    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != OPTUNA_SWEEPER:
        return None
    from pipeline.sweeps.study import study_name

    params = {str(key): str(value) for key, value in (sweeper.params or {}).items()}
    return study_name(
        sweeper.study_name, params, list(config.hydra.overrides.task), config.sweep.objective, sweeper.direction
    )


def searched_overrides(config: DictConfig) -> list[str]:
    """The command line's overrides plus an Optuna sweeper's `params`, as `key=expression` lines."""
    params = config.hydra.sweeper.get("params") or {}
    return [*(f"{key}={value}" for key, value in params.items()), *config.hydra.overrides.task]
