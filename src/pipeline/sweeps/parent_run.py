"""A Hydra multirun is one parent MLflow run; every trial is a child of it.

Grid sweeps (Hydra's basic sweeper) and Optuna searches (hydra/sweeper=optuna) alike.

`SweepParentRun` is a Hydra callback (registered in conf/train.yaml): before the first trial
it opens the parent run and hands its id to the trials through an environment variable (so
launchers that start new processes pass it on too); after the last trial it records the
number of trials, the best one by `sweep.objective` / `sweep.direction`, and a figure of the
objective against each swept parameter, then closes the parent.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.errors import PipelineError

PARENT_RUN_ENV = "PIPELINE_SWEEP_PARENT_RUN_ID"


def parent_run_id() -> str | None:
    """The sweep's parent run, when this process runs a trial of a sweep."""
    return os.environ.get(PARENT_RUN_ENV) or None


def swept_keys(sweep_overrides: list[str]) -> list[str]:
    """`optimizer.lr=1e-3,3e-3` -> `optimizer.lr`: the keys a grid varies."""
    return [override.split("=", 1)[0].lstrip("+~") for override in sweep_overrides if "," in override.split("=", 1)[-1]]


def _end_stranded_parent(uri: str, run_id: str) -> None:
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


class SweepParentRun(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline.tracking.store import resolve_tracking_uri
        from pipeline.tracking.sweep_runs import open_parent

        # HydraConfig is not set yet at this point
        output_root = Path(config.paths.output_root)
        uri = resolve_tracking_uri(config.tracking.uri, output_root)
        try:
            run_id = open_parent(
                uri,
                config.tracking.experiment,
                output_root,
                searched_overrides(config),
                config.sweep,
                optuna_study(config),
            )
        except PipelineError as err:  # no store to open the sweep in: one line, before any trial
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        os.environ[PARENT_RUN_ENV] = run_id
        atexit.register(_end_stranded_parent, uri, run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline.tracking.store import resolve_tracking_uri
        from pipeline.tracking.sweep_runs import close_parent

        run_id = os.environ.pop(PARENT_RUN_ENV, None)
        if run_id:
            uri = resolve_tracking_uri(config.tracking.uri, Path(config.paths.output_root))
            best = close_parent(uri, run_id, swept_keys(searched_overrides(config)), config.sweep)
            print(f"sweep:   parent run {run_id}; {best}")
