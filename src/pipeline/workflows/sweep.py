"""A multirun's parent MLflow run, opened before the first trial and closed after the last.

`SweepParentRun` is a Hydra callback (registered in conf/train.yaml). Before the first trial it
opens the parent run and hands its id to the trials (pipeline.sweeps.parent_run); after the last
one it records the number of trials, the best one by `sweep.objective` / `sweep.direction` and a
figure of the objective against each swept parameter. With `sweep.log_models=best` the trials
export no model, build no compressed variants and draw no grid of misclassified images (most are
thrown away); the best trial gets them here, in its own run, before its model is registered as
`<experiment>-sweep@best`.

Hydra instantiates this callback for every command: the heavy imports wait for a multirun.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.errors import PipelineError
from pipeline.heap import imports_uncollected
from pipeline.sweeps.parent_run import (
    PARENT_RUN_ENV,
    end_stranded_parent,
    optuna_study,
    searched_overrides,
    swept_keys,
)
from pipeline.workflows.run_plan import MISCLASSIFIED_FIGURE

log = logging.getLogger("pipeline")


def finish_best_trial(uri: str, output_root: Path, run_id: str, deferred: list[str], compress: bool) -> None:
    """Draw the best trial's misclassified images, export (and compress) its model, from its best checkpoint,
    into its own run."""
    from pipeline import figures
    from pipeline.run_summary import run_title
    from pipeline.tracking.compressed_models import variant_rows
    from pipeline.tracking.run import TrackedRun
    from pipeline.workflows.compress import compress_and_log, load_model_of_run

    cfg, model, splits = load_model_of_run(uri, run_id, [f"paths.output_root={output_root}"])
    with TrackedRun(uri, cfg.tracking.experiment, output_root, cfg.run_name, {}, run_id, "sweep.best_trial") as run:
        log.info("best trial %s: logging what its sweep deferred (%s)", run_id, ", ".join(deferred))
        if "misclassified" in deferred:
            test = splits.test
            predicted = figures.predictions(model, test.images)
            grid = figures.misclassified(test.images, test.labels, predicted, splits.class_names)
            run.log_figure(grid, MISCLASSIFIED_FIGURE)
        model_uri = run.log_model(model, splits.test.images[:8].clone()) if "model" in deferred else None
        report = (
            compress_and_log(cfg, model, splits, model_uri, run.ledger)
            if "compression" in deferred and compress
            else None
        )
        run.describe(run_title(cfg), variant_rows(report) if report else [])


class SweepParentRun(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # HydraConfig is not set yet at this point
        output_root = Path(config.paths.output_root)
        try:
            with imports_uncollected():  # MLflow (Optuna for its sweeper): the sweep's first heavy imports
                from pipeline.tracking.store import resolve_tracking_uri
                from pipeline.tracking.sweep_runs import open_parent

                study = optuna_study(config)
            uri = resolve_tracking_uri(config.tracking.uri, output_root)
            run_id = open_parent(
                uri, config.tracking.experiment, output_root, searched_overrides(config), config.sweep, study
            )
        except PipelineError as err:  # no store to open the sweep in: one line, before any trial
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        os.environ[PARENT_RUN_ENV] = run_id
        atexit.register(end_stranded_parent, uri, run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline.tracking.store import resolve_tracking_uri
        from pipeline.tracking.sweep_runs import close_parent

        run_id = os.environ.pop(PARENT_RUN_ENV, None)
        if not run_id:
            return
        output_root = Path(config.paths.output_root)
        uri = resolve_tracking_uri(config.tracking.uri, output_root)

        def finish_best(best_run_id: str, deferred: list[str]) -> None:
            try:
                finish_best_trial(uri, output_root, best_run_id, deferred, config.sweep.compress_best)
            except PipelineError as err:  # the sweep's result stands; what it deferred is what is missing
                log.warning(
                    "what the best trial left for the sweep's end (%s) could not be logged: %s",
                    ", ".join(deferred),
                    err,
                )

        best = close_parent(uri, run_id, swept_keys(searched_overrides(config)), config.sweep, finish_best)
        print(f"sweep:   parent run {run_id}; {best}")
