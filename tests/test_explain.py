"""`pipeline-explain`: the attribution maps of a stored or registered model, logged into an evaluation run."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COMMAND_TIMEOUT_S, TINY_DATA, cli_env, run_training, store_client
from pipeline.cli.explain import main as explain_main
from pipeline.workflows.evaluate import EVALUATION_OF

GRADIENT_FIGURES = {"interpret/maps.png", "interpret/class_mean_ig.png", "interpret/misclassified.png"}
OCCLUSION_FIGURES = {"interpret/maps.png", "interpret/class_mean_occlusion.png", "interpret/misclassified.png"}
INTERPRET = ["interpret=default", "interpret.ig_steps=8", "interpret.perturbations=4"]


def explain(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    """`pipeline-explain <arguments>` in this process; the id of the evaluation run it printed."""
    explain_main(list(arguments))
    return capsys.readouterr().out.split("evaluation run ")[1].split()[0]


@pytest.mark.slow
def test_a_run_and_its_int8_and_onnx_variants_are_explained_into_evaluation_runs(
    output_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variants = "compression.variants=[int8_static,onnx]"
    overrides = [*TINY_DATA, "trainer.max_epochs=2", "trainer.threads=1", f"paths.output_root={output_root}"]
    trained = run_training([*overrides, *INTERPRET, "compression=quick", variants, "compression.register=true"])
    where = f"paths.output_root={output_root}"
    client = store_client(output_root)
    source = client.get_run(trained.run_id)

    # the trained model: every method, and the same maps the training run drew (same images, seeds, settings)
    explained = explain(capsys, trained.run_id, where)
    run = client.get_run(explained)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == source.info.experiment_id
    assert run.data.tags[EVALUATION_OF] == trained.run_id
    assert run.data.tags["interpret.methods"] == "Saliency, Integrated Gradients, Occlusion"
    assert run.data.metrics["eval/acc"] == pytest.approx(source.data.metrics["test/acc"], abs=1e-6)
    for name in ("ig_convergence_delta", "saliency_infidelity", "ig_infidelity", "occlusion_infidelity"):
        key = f"interpret/{name}"
        assert run.data.metrics[key] == pytest.approx(source.data.metrics[key], rel=1e-2, abs=1e-7), key
    assert {a.path for a in client.list_artifacts(explained, "interpret")} == GRADIENT_FIGURES
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith(f"### What `{trained.run_id}` looks at (Saliency, Integrated Gradients, Occlusion)")
    assert f"runs/{explained}/artifacts/interpret/maps.png" in description

    # int8 and ONNX run forward only: Occlusion, with other settings from the command line
    versions = {v.tags["variant"]: v.version for v in client.search_model_versions("name = 'digits-cnn'")}
    client.set_registered_model_alias("digits-cnn", "candidate", versions["onnx"])
    for variant, arguments in {
        "int8_static": [trained.run_id, "--variant", "int8_static"],
        "onnx": ["models:/digits-cnn@candidate"],
    }.items():
        explained = explain(capsys, *arguments, where, "interpret.per_class=1", "interpret.occlusion_stride=4")
        run = client.get_run(explained)
        assert run.data.tags["eval.variant"] == variant
        assert run.data.tags["interpret.methods"] == "Occlusion"
        interpret_metrics = {key for key in run.data.metrics if key.startswith("interpret/")}
        assert interpret_metrics == {"interpret/occlusion_infidelity"}, variant
        assert math.isfinite(run.data.metrics["interpret/occlusion_infidelity"])
        assert run.data.params["data.name"] == "synthetic"
        assert {a.path for a in client.list_artifacts(explained, "interpret")} == OCCLUSION_FIGURES


def test_a_model_that_is_not_there_is_one_line_and_opens_no_run(tmp_path: Path) -> None:
    run_id = "0123456789abcdef0123456789abcdef"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.explain", run_id, f"paths.output_root={tmp_path}"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 2
    store = f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"
    assert done.stderr.strip().splitlines() == [
        f"error: {store}: no store there; name the store holding the run with {store.split('=')[0]}= or paths.output_root="
    ]
