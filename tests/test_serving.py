"""A sweep registers its best model as `<experiment>-sweep@best`; `mlflow models serve` serves it by that name."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from conftest import TINY_DATA, cli_env, free_port, pipeline_train, serving
from pipeline.config import REPO_ROOT

SERVE = REPO_ROOT / "scripts" / "serve.sh"


@pytest.mark.slow
def test_the_best_model_of_a_sweep_is_registered_and_served_by_alias(tmp_path: Path, output_root: Path) -> None:
    out = output_root
    done = pipeline_train(
        "-m",
        "model=mlp",
        "optimizer.lr=0.001,0.01",
        *TINY_DATA,
        "trainer.max_epochs=2",
        "compression=quick",
        "compression.variants=[fp16]",
        f"paths.output_root={out}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("digits").experiment_id
    (parent,) = client.search_runs([experiment_id], "tags.`sweep.role` = 'parent'")
    assert parent.data.tags["sweep.best_model"] == "models:/digits-sweep@best"
    version = client.get_model_version_by_alias("digits-sweep", "best")
    best_id = parent.data.tags["sweep.best_run_id"]
    assert version.run_id == best_id

    # sweep.log_models=best (the default): only the best trial has a model and compressed variants, made at the end
    trials = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(trials) == 2
    for trial in trials:
        models = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{trial.info.run_id}'")
        is_best = trial.info.run_id == best_id
        assert sorted(model.name for model in models) == (["model", "model-fp16"] if is_best else [])
        assert ("compress/fp16/test_acc" in trial.data.metrics) is is_best
        assert trial.info.status == "FINISHED"
        assert trial.data.tags.get("sweep.deferred") == (None if is_best else "model,compression,misclassified")
        figures = {artifact.path for artifact in client.list_artifacts(trial.info.run_id, "figures")}
        assert ("figures/misclassified.png" in figures) is is_best and "figures/confusion_matrix.png" in figures
        if is_best:  # its description, rewritten once the sweep's end compressed it
            assert "| fp16 |" in trial.data.tags["mlflow.note.content"]

    mlflow.set_tracking_uri(uri)
    images = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    expected = mlflow.pyfunc.load_model("models:/digits-sweep@best").predict(images)

    port = free_port()
    env = {**cli_env(), "MLFLOW_TRACKING_URI": uri, "PORT": str(port)}
    with serving(
        ["bash", str(SERVE), "models:/digits-sweep@best"],
        f"http://127.0.0.1:{port}/ping",
        tmp_path / "serve.log",
        env=env,
    ):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": images.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.array(json.loads(response.read())["predictions"])
    assert served.shape == (4, 10)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
