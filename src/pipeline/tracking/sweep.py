"""The parent run of a sweep: opened before the first trial, summarised after the last."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from pipeline.tracking.store import ensure_experiment

PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests runs by


def open_parent(uri: str, experiment: str, output_root: Path, overrides: list[str], sweep: Any) -> str:
    """Create the sweep's parent run (also creating the store once, before any trial opens it)."""
    client = MlflowClient(tracking_uri=uri)
    experiment_id = ensure_experiment(uri, experiment, output_root)
    tags = {
        "sweep.role": "parent",
        "sweep.definition": " ".join(overrides),
        "sweep.objective": sweep.objective,
        "sweep.direction": sweep.direction,
    }
    run = client.create_run(experiment_id, run_name=f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}", tags=tags)
    client.log_text(run.info.run_id, "\n".join(overrides) + "\n", "sweep/definition.txt")
    return run.info.run_id


def end_parent(uri: str, run_id: str, status: str) -> None:
    MlflowClient(tracking_uri=uri).set_terminated(run_id, status)


def _as_number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _swept_value(child: Any, key: str) -> str:
    """A value override (`optimizer.lr`) is a param; a group choice (`model`) is a `choice.*` tag."""
    return child.data.params.get(key) or child.data.tags.get(f"choice.{key}", "?")


def close_parent(uri: str, run_id: str, swept: list[str], sweep: Any) -> str:
    """Record trial count, best trial and the objective-by-parameter figure; end the parent run."""
    from pipeline.figures import objective_by_parameter

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    children = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'")
    scored = [child for child in children if child.info.status == "FINISHED" and sweep.objective in child.data.metrics]
    now = int(time.time() * 1000)
    counts = {"sweep/trials": len(children), "sweep/finished": len(scored)}
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(key, value, now, 0) for key, value in counts.items()])
    if not scored:
        client.set_terminated(run_id, "FAILED")
        return f"{len(children)} trials, none finished with {sweep.objective}"
    pick = max if sweep.direction == "maximize" else min
    best = pick(scored, key=lambda child: child.data.metrics[sweep.objective])
    value = best.data.metrics[sweep.objective]
    client.set_tag(run_id, "sweep.best_run_id", best.info.run_id)
    client.log_metric(run_id, f"sweep/best_{sweep.objective.replace('/', '_')}", value)
    points = {
        key: [(_as_number(_swept_value(child, key)), child.data.metrics[sweep.objective]) for child in scored]
        for key in swept
    }
    if points:
        import matplotlib.pyplot as plt

        figure = objective_by_parameter(points, sweep.objective)
        client.log_figure(run_id, figure, "sweep/objective_by_parameter.png")
        plt.close(figure)
    client.set_terminated(run_id, "FINISHED")
    return f"{len(children)} trials, best {best.info.run_id} with {sweep.objective}={value:.4f}"
