"""The parent run of a sweep: opened before the first trial, summarised after the last."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from pipeline.run_summary import sweep_summary
from pipeline.tracking.run import DESCRIPTION_TAG
from pipeline.tracking.store import ensure_experiment, register_model

PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests runs by
# on a trial: what it left for the sweep's end, e.g. "model,compression" (sweep.log_models=best)
DEFERRED_TAG = "sweep.deferred"


def open_parent(
    uri: str, experiment: str, output_root: Path, overrides: list[str], sweep: Any, study: str | None = None
) -> str:
    """Create the sweep's parent run (also creating the store once, before any trial opens it).

    An Optuna sweep names its ``study``: running the same sweep again reopens that study's parent.
    """
    # the store first: an MlflowClient migrates a store as it is made, without the lock or the repair of
    # an interrupted creation (a sweep killed while creating it could not be resumed)
    experiment_id = ensure_experiment(uri, experiment, output_root)
    client = MlflowClient(tracking_uri=uri)
    if study is not None:
        found = client.search_runs([experiment_id], filter_string=f"tags.`sweep.study` = '{study}'", max_results=1)
        if found:
            client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
    tags = {
        "sweep.role": "parent",
        "sweep.definition": " ".join(overrides),
        "sweep.objective": sweep.objective,
        "sweep.direction": sweep.direction,
        **({"sweep.study": study} if study else {}),
    }
    run = client.create_run(experiment_id, run_name=f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}", tags=tags)
    client.log_text(run.info.run_id, "\n".join(overrides) + "\n", "sweep/definition.txt")
    return run.info.run_id


def _trial_runs(client: MlflowClient, parent_id: str, number: int) -> list[Any]:
    experiment_id = client.get_run(parent_id).info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`optuna.trial` = '{number}'"
    return client.search_runs([experiment_id], filter_string=query)


def tag_trial_run(uri: str, parent_id: str, number: int, state: str) -> None:
    """Mark a trial's run with its Optuna state (COMPLETE, PRUNED, FAIL)."""
    client = MlflowClient(tracking_uri=uri)
    for run in _trial_runs(client, parent_id, number):
        client.set_tag(run.info.run_id, "optuna.state", state)


def _end_run(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    if reason:
        client.set_tag(run_id, "failure_reason", reason[:5000])
    client.set_terminated(run_id, status)


def fail_lost_trial_runs(uri: str, parent_id: str, numbers: list[int], heartbeat_interval: int) -> None:
    """Runs of trials whose process died (no heartbeat) are FAILED with that reason, not left RUNNING."""
    client = MlflowClient(tracking_uri=uri)
    for number in numbers:
        for run in _trial_runs(client, parent_id, number):
            client.set_tag(run.info.run_id, "optuna.state", "FAIL")
            if run.info.status == "RUNNING":
                reason = f"the trial's process stopped (no heartbeat for {2 * heartbeat_interval} s); its parameters are tried again"
                _end_run(client, run.info.run_id, "FAILED", reason)


def log_parent_figures(uri: str, parent_id: str, figures: dict[str, Any]) -> None:
    _log_figures(MlflowClient(tracking_uri=uri), parent_id, figures)


def _log_figures(client: MlflowClient, run_id: str, figures: dict[str, Any]) -> None:
    from pipeline.plotting import pyplot

    for path, figure in figures.items():
        client.log_figure(run_id, figure, path)
        pyplot().close(figure)


def end_parent(uri: str, run_id: str, status: str, reason: str | None = None) -> None:
    _end_run(MlflowClient(tracking_uri=uri), run_id, status, reason)


def _as_number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _swept_value(child: Any, key: str) -> str:
    """A value override (`optimizer.lr`) is a param; a group choice (`model`) is a `choice.*` tag."""
    return child.data.params.get(key) or child.data.tags.get(f"choice.{key}", "?")


def _register_best_model(
    uri: str, client: MlflowClient, experiment_id: str, best_run_id: str, parent_id: str
) -> str | None:
    """Register the best trial's model as `<experiment>-sweep` with the alias `best`; its `models:/` URI."""
    models = client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{best_run_id}' AND name = 'model'"
    )
    if not models:
        return None
    name = f"{client.get_experiment(experiment_id).name}-sweep"
    mlflow.set_tracking_uri(uri)
    version = register_model(f"models:/{models[0].model_id}", name, {"sweep.parent_run_id": parent_id})
    client.set_registered_model_alias(name, "best", version.version)
    return f"models:/{name}@best"


def close_parent(
    uri: str, run_id: str, swept: list[str], sweep: Any, finish_best: Callable[[str, list[str]], None] | None = None
) -> str:
    """Record trial count, best trial and the objective-by-parameter figure; end the parent run.

    ``finish_best(run_id, deferred)`` does what the best trial left for the sweep's end (its
    `sweep.deferred` tag, e.g. the model export) before that model is registered.
    """
    from pipeline.figures import objective_by_parameter

    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    children = client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'")
    finished = [
        child for child in children if child.info.status == "FINISHED" and sweep.objective in child.data.metrics
    ]
    scored = [child for child in finished if child.data.tags.get("optuna.state", "COMPLETE") == "COMPLETE"]
    now = int(time.time() * 1000)
    pruned = sum(1 for child in children if child.data.tags.get("optuna.state") == "PRUNED")
    counts = {"sweep/trials": len(children), "sweep/finished": len(scored), "sweep/pruned": pruned}
    client.log_batch(run_id, metrics=[mlflow.entities.Metric(key, value, now, 0) for key, value in counts.items()])
    if not scored:
        client.set_terminated(run_id, "FAILED")
        return f"{len(children)} trials, none finished with {sweep.objective}"
    pick = max if sweep.direction == "maximize" else min
    best = pick(scored, key=lambda child: child.data.metrics[sweep.objective])
    value = best.data.metrics[sweep.objective]
    client.set_tag(run_id, "sweep.best_run_id", best.info.run_id)
    if finish_best is not None and (deferred := best.data.tags.get(DEFERRED_TAG)):
        finish_best(best.info.run_id, deferred.split(","))
        client.delete_tag(best.info.run_id, DEFERRED_TAG)
    if (version := _register_best_model(uri, client, experiment_id, best.info.run_id, run_id)) is not None:
        client.set_tag(run_id, "sweep.best_model", version)
    client.log_metric(run_id, f"sweep/best_{sweep.objective.replace('/', '_')}", value)
    best_params = {key: _swept_value(best, key) for key in swept}
    summary = sweep_summary(
        len(children), len(scored), sweep.objective, value, best.info.run_id, best_params, version, experiment_id
    )
    client.set_tag(run_id, DESCRIPTION_TAG, summary)
    points = {
        key: [(_as_number(_swept_value(child, key)), child.data.metrics[sweep.objective]) for child in scored]
        for key in swept
    }
    if points:
        _log_figures(
            client, run_id, {"sweep/objective_by_parameter.png": objective_by_parameter(points, sweep.objective)}
        )
    client.set_terminated(run_id, "FINISHED")
    return f"{len(children)} trials, best {best.info.run_id} with {sweep.objective}={value:.4f}"
