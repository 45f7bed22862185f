"""A Hydra grid multirun lands as one parent MLflow run with one child per trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_DATA, pipeline_train, store_client
from pipeline.sweeps.parent_run import swept_keys


def test_swept_keys_are_the_overrides_with_several_values() -> None:
    assert swept_keys(["model=cnn,mlp", "optimizer.lr=1e-3,3e-3", "trainer.max_epochs=2", "+tags.x=a,b"]) == [
        "model",
        "optimizer.lr",
        "tags.x",
    ]


@pytest.mark.slow
def test_grid_multirun_of_four_trials_gives_four_children_under_one_parent(tmp_path: Path, output_root: Path) -> None:
    out = output_root
    done = pipeline_train(
        "-m",
        "model=cnn,mlp",
        "optimizer.lr=0.001,0.003",
        *TINY_DATA,
        "trainer.max_epochs=2",
        "compression=none",
        "tracking.log_model=false",
        f"paths.output_root={out}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = store_client(out)
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(children) == 4
    assert {(c.data.tags["choice.model"], c.data.params["optimizer.lr"]) for c in children} == {
        ("cnn", "0.001"),
        ("cnn", "0.003"),
        ("mlp", "0.001"),
        ("mlp", "0.003"),
    }
    assert all(run.info.status == "FINISHED" for run in runs)
    best = max(children, key=lambda child: child.data.metrics["best/val_acc"])
    assert parent.data.tags["sweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics["sweep/trials"] == 4
    assert parent.data.metrics["sweep/best_best_val_acc"] == best.data.metrics["best/val_acc"]
    assert parent.data.tags["sweep.definition"].startswith("model=cnn,mlp optimizer.lr=0.001,0.003")
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "sweep")] == [
        "sweep/definition.txt",
        "sweep/objective_by_parameter.png",
    ]
    assert f"sweep:   parent run {parent.info.run_id}; 4 trials, best {best.info.run_id}" in done.stdout
    description = parent.data.tags["mlflow.note.content"]  # the parent's Overview in the MLflow UI
    assert "### Sweep of 4 trials (4 finished)" in description
    assert f"[{best.info.run_id}](#/experiments/{parent.info.experiment_id}/runs/{best.info.run_id})" in description
    assert f"| optimizer.lr | {best.data.params['optimizer.lr']} |" in description
    assert f"| model | {best.data.tags['choice.model']} |" in description


@pytest.mark.slow
def test_a_failing_trial_is_reported_and_the_sweep_goes_on(tmp_path: Path, output_root: Path) -> None:
    out = output_root
    done = pipeline_train(
        "-m",
        "data=synthetic,mnist",
        "trainer.max_epochs=1",
        "compression=none",
        "tracking.log_model=false",
        f"paths.output_root={out}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "error: data=mnist: MNIST files not found under" in done.stderr
    client = store_client(out)
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id])
    (parent,) = [run for run in runs if run.data.tags.get("sweep.role") == "parent"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/finished"] == 1
    assert all(run.info.status == "FINISHED" for run in runs)
