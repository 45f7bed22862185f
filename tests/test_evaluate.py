"""`pipeline-eval`: stored and registered models (and their compressed variants) scored on data of one's choice."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from conftest import COMMAND_TIMEOUT_S, TINY_DATA, cli_env, run_training, store_client
from pipeline.cli.evaluate import main as evaluate_main
from pipeline.cli.explain import main as explain_main
from pipeline.evaluation import bootstrap_interval, score
from pipeline.workflows.evaluate import EVALUATION_OF

VARIANTS = ["int8_static", "int8_dynamic", "onnx", "fp16"]


def tiny_overrides(output_root: Path, *more: str) -> list[str]:
    return [*TINY_DATA, "trainer.max_epochs=2", "trainer.threads=1", f"paths.output_root={output_root}", *more]


def evaluate(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    """`pipeline-eval <arguments>` in this process; the id of the evaluation run it printed."""
    evaluate_main(list(arguments))
    printed = capsys.readouterr().out
    return printed.split("evaluation run ")[1].split()[0]


def evaluation_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    return client.get_run(run_id).data.metrics


@pytest.fixture
def trained(output_root: Path) -> tuple[Path, str]:
    """A tiny CNN run with compressed variants, registered as digits-cnn: its output root and run id."""
    variants = f"compression.variants=[{','.join(VARIANTS)}]"
    result = run_training(tiny_overrides(output_root, "compression=quick", variants, "compression.register=true"))
    return output_root, result.run_id


def test_scores_count_per_class_and_bound_the_accuracy() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 1, 1])
    scores = score(torch.nn.functional.one_hot(predicted, 3).float() * 5, labels, ["a", "b", "c"], seed=0)
    assert scores.accuracy == pytest.approx(4 / 6)
    a, b, c = scores.per_class
    assert (a.precision, a.recall, a.support) == (1.0, pytest.approx(2 / 3), 3)
    assert (b.precision, b.recall, b.f1) == (0.5, 1.0, pytest.approx(2 / 3))
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, 0.0, 0.0, 1)
    assert scores.macro_f1 == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert scores.accuracy_low <= scores.accuracy <= scores.accuracy_high


def test_the_bootstrap_interval_is_seeded_and_as_wide_as_the_binomial_says() -> None:
    correct = torch.zeros(1000)
    correct[:900] = 1
    low, high = bootstrap_interval(correct, seed=3)
    assert (low, high) == bootstrap_interval(correct, seed=3)
    half_width = 1.96 * (0.9 * 0.1 / 1000) ** 0.5  # the normal approximation: 1.86 points
    assert low < 0.9 < high
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.2)
    low_100, high_100 = bootstrap_interval(correct[::10], seed=3)  # 100 images: about three times as wide
    assert (high_100 - low_100) > 2.5 * (high - low)


@pytest.mark.slow
def test_a_run_its_variants_and_registered_versions_score_as_logged_and_bad_input_is_one_line(
    trained: tuple[Path, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """One test, so that the trained run is made once (pytest-xdist runs a module fixture once per worker)."""
    output_root, run_id = trained
    where = f"paths.output_root={output_root}"
    client = store_client(output_root)
    source = client.get_run(run_id)
    logged = source.data.metrics

    own = evaluate(capsys, run_id, where)
    metrics = evaluation_metrics(client, own)
    assert metrics["eval/acc"] == pytest.approx(logged["test/acc"], abs=1e-6)
    assert metrics["eval/loss"] == pytest.approx(logged["test/loss"], abs=1e-4)
    assert metrics["eval/samples"] == logged["test/samples"] == 64
    assert metrics["eval/acc_ci95_low"] <= metrics["eval/acc"] <= metrics["eval/acc_ci95_high"]
    run = client.get_run(own)
    assert run.info.experiment_id == source.info.experiment_id
    assert run.data.tags[EVALUATION_OF] == run_id
    assert run.data.tags["eval.variant"] == "fp32"
    assert run.data.tags["data.digest"] == source.data.tags["data.digest"]  # the run's own data, checked
    artifacts = {artifact.path for artifact in client.list_artifacts(own, "eval")}
    assert {
        "eval/per_class.json",
        "eval/report.txt",
        "eval/confusion_matrix.png",
        "eval/misclassified.png",
    } <= artifacts
    report = client.download_artifacts(own, "eval/report.txt", str(output_root.parent))
    assert "95% interval" in Path(report).read_text()
    assert run.data.tags["mlflow.note.content"].startswith(f"### Evaluation of `{run_id}`")

    versions = {v.tags["variant"]: v.version for v in client.search_model_versions("name = 'digits-cnn'")}
    client.set_registered_model_alias("digits-cnn", "candidate", versions["int8_static"])
    sources = {
        "int8_static": ["models:/digits-cnn@candidate"],
        "int8_dynamic": [run_id, "--variant", "int8_dynamic"],
        "onnx": [f"runs:/{run_id}/model-onnx"],
        "fp16": [f"models:/digits-cnn/{versions['fp16']}"],
    }
    for variant, arguments in sources.items():
        evaluated = evaluate(capsys, *arguments, where)
        metrics = evaluation_metrics(client, evaluated)
        assert metrics["eval/acc"] == pytest.approx(logged[f"compress/{variant}/test_acc"], abs=1e-6), variant
        assert client.get_run(evaluated).data.tags["eval.variant"] == variant

    other = evaluate(capsys, run_id, where, "data=synthetic", "data.test_size=300", "data.seed=7")
    run = client.get_run(other)
    assert run.data.metrics["eval/samples"] == 300
    assert run.data.tags["data.digest"] != source.data.tags["data.digest"]
    assert run.data.params["data.seed"] == "7"

    check_bad_input(output_root, run_id, capsys, tmp_path)


BAD_INPUT = [
    (["0123456789abcdef0123456789abcdef"], "Run with id=0123456789abcdef0123456789abcdef not found"),
    (["models:/no-such-model/1"], "models:/no-such-model/1 in sqlite:"),
    (["models:/digits-cnn"], "name a version or an alias (models:/digits-cnn/1, models:/digits-cnn@best)"),
    (["RUN", "--variant", "int4"], "has no model 'model-int4' (variants logged: fp16, fp32, int8_dynamic"),
    (["RUN", "data=synthetic", "data.num_classes=5"], "it has 5 classes but RUN predicts 10"),
    (["RUN", "data=mnist", "data.root=NOWHERE", "data.download=false"], "data=mnist: MNIST files not found"),
]


def check_bad_input(output_root: Path, run_id: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """One line and exit 2 for each kind of bad input, no run opened; in this process, and as a real one once."""
    where = f"paths.output_root={output_root}"
    client = store_client(output_root)
    runs_before = len(client.search_runs(["1"]))
    for arguments, message in BAD_INPUT:
        with pytest.raises(SystemExit) as exit_info:
            evaluate_main([a.replace("RUN", run_id).replace("NOWHERE", str(tmp_path)) for a in arguments] + [where])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2, arguments
        assert len(lines) == 1 and message.replace("RUN", run_id) in lines[0], (arguments, lines)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.evaluate", run_id, "data=synthetic", "data.image_shape=[3,32,32]", where],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: data=synthetic: its images are 3x32x32 but {run_id} takes 1x28x28"
    assert len(client.search_runs(["1"])) == runs_before


@pytest.mark.slow
@pytest.mark.parametrize("family", ["rnn", "transformer", "mlp"])
def test_every_model_family_evaluates_as_it_tested_and_explains_through_its_exported_model(
    family: str, output_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_training(tiny_overrides(output_root, f"model={family}", "compression=none"))
    client = store_client(output_root)
    evaluated = evaluate(capsys, result.run_id, f"paths.output_root={output_root}")
    metrics = evaluation_metrics(client, evaluated)
    assert metrics["eval/acc"] == pytest.approx(client.get_run(result.run_id).data.metrics["test/acc"], abs=1e-6)
    assert client.get_run(evaluated).info.status == "FINISHED"
    # gradients flow through the stored (torch.export) model: an LSTM, attention and plain layers alike
    explain_main([result.run_id, f"paths.output_root={output_root}", "interpret.ig_steps=8"])
    explained = capsys.readouterr().out.split("evaluation run ")[1].split()[0]
    run = client.get_run(explained)
    assert run.data.tags["interpret.methods"] == "Saliency, Integrated Gradients, Occlusion"
    assert math.isfinite(run.data.metrics["interpret/ig_convergence_delta"])
