"""Compressed variants on each model family, tiny data, real MLflow store: built, measured, logged, loadable."""

from __future__ import annotations

import importlib.metadata
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from matplotlib.text import Text
from mlflow import MlflowClient
from packaging.requirements import Requirement
from scipy.stats import binomtest
from torch import nn

from conftest import COMMAND_TIMEOUT_S, cli_env, run_training
from pipeline.cli.compress import main as compression_main
from pipeline.cli.rerun import main as rerun_main
from pipeline.compress.build import Distillation, Settings, build_variants
from pipeline.compress.finetune import Training, fine_tune
from pipeline.compress.int8_paths import compare_int8_paths
from pipeline.compress.prune import prunable_weights, prune_global, sparsity_of
from pipeline.compress.tradeoff import pareto_front, tradeoff_figure
from pipeline.compress.variants import nondeterministic_kernels_allowed
from pipeline.config.compose import compose_config
from pipeline.config.instantiate import safe_instantiate
from pipeline.errors import TrackingError
from pipeline.evaluation import mcnemar_p
from pipeline.models.build import build_model
from pipeline.workflows.compress import compress_stored_run

COMPRESS = [sys.executable, "-m", "pipeline.cli.compress"]
EVERY_FAMILY = {
    "fp32",
    "fp16",
    "bf16",
    "pruned50",
    "pruned80",
    "slim50",
    "slim75",
    "distilled",
    "student_scratch",
    "int8_dynamic",
    "pruned80_int8",
    "slim75_int8",
    "slim75_onnx",
    "distilled_int8",
    "onnx",
    "onnx_int8",
}
EXPECTED = {"cnn": EVERY_FAMILY | {"int8_static"}, "rnn": EVERY_FAMILY, "transformer": EVERY_FAMILY}


def logged_variants(client: MlflowClient, run_id: str) -> dict[str, str]:
    run = client.get_run(run_id)
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'", output_format="list"
    )
    return {model.name: model.model_uri for model in models}


@pytest.mark.parametrize("family", ["cnn", "rnn", "transformer"])
@pytest.mark.slow
def test_every_variant_is_measured_logged_and_loads_with_its_logged_accuracy(
    family: str, tiny: list[str], store: MlflowClient
) -> None:
    result = run_training([*tiny, f"model={family}", "compression=quick", "compression.register=true"])
    run = store.get_run(result.run_id)
    metrics = run.data.metrics
    variants = {key.split("/")[1] for key in metrics if key.startswith("compress/")}
    assert variants == EXPECTED[family]
    if family != "cnn":
        assert "static int8 is for convolutions" in run.data.tags["compress.skipped.int8_static"]
    assert metrics["compress/fp32/test_acc"] == pytest.approx(metrics["test/acc"])
    assert metrics["compress/fp32/attribution_agreement"] == pytest.approx(1.0)
    for name in EXPECTED[family]:  # every variant, whatever its format, explained by Occlusion
        assert -1.0 <= metrics[f"compress/{name}/attribution_agreement"] <= 1.0 + 1e-9, name
    assert metrics["compress/fp16/attribution_agreement"] > 0.9  # the same model, to half precision
    description = run.data.tags["mlflow.note.content"]
    assert (
        "| variant | test acc |" in description
        and f"| int8_dynamic | {metrics['compress/int8_dynamic/test_acc']:.4f} |" in description
    )
    assert "[compression/tradeoff](" in description and "| vs fp32 (McNemar) |" in description
    assert metrics["compress/int8_dynamic/size_ratio"] > 1.5
    assert metrics["compress/pruned80/gzip_ratio"] > metrics["compress/pruned50/gzip_ratio"] > 1.0
    artifacts = {a.path for a in store.list_artifacts(result.run_id, "compression")}
    assert {"compression/variants.json", "compression/variants.txt", "compression/tradeoff.png"} <= artifacts
    assert run.data.tags["cpu.avx512_vnni"] in {"true", "false"}
    table = store.load_table(run.info.experiment_id, "compression/variants.json", [result.run_id])
    assert table["vs_fp32"].iloc[0] == "reference" and set(table["vs_fp32"].iloc[1:]) <= {"n.s."} | {
        mark for mark in table["vs_fp32"] if mark.startswith("p=")
    }
    assert (table["acc_ci95_low"] <= table["test_acc"]).all() and (table["test_acc"] <= table["acc_ci95_high"]).all()
    assert metrics["compress/fp32/mcnemar_p"] == 1.0 and 0 <= metrics["compress/fp16/mcnemar_p"] <= 1

    mlflow.set_tracking_uri(result.tracking_uri)
    uris = logged_variants(store, result.run_id)
    assert set(uris) == {"model"} | {f"model-{name}" for name in EXPECTED[family] - {"fp32"}}
    for name in EXPECTED[family]:  # each model carries its own variant's metrics, none of the others'
        logged_model = store.get_logged_model(uris["model" if name == "fp32" else f"model-{name}"].split("/")[-1])
        linked = {metric.key for metric in logged_model.metrics or []}
        assert f"compress/{name}/test_acc" in linked, name
        assert {key.split("/")[1] for key in linked if key.startswith("compress/")} == {name}, name
    splits = safe_instantiate(compose_config(tiny).data, "data", shuffle_seed=0).splits
    images, labels = splits.test.images.numpy(), splits.test.labels.numpy()
    for name in EXPECTED[family] - {"fp32"}:
        predictions = mlflow.pyfunc.load_model(uris[f"model-{name}"]).predict(images)
        if isinstance(predictions, dict):  # the onnx flavor answers {output name: array}
            predictions = predictions["logits"]
        accuracy = float((np.argmax(predictions, axis=1) == labels).mean())
        assert accuracy == pytest.approx(metrics[f"compress/{name}/test_acc"], abs=1e-6), name

    versions = MlflowClient(result.tracking_uri).search_model_versions(f"name = 'digits-{family}'")
    assert {version.tags["variant"] for version in versions} == EXPECTED[family]


@pytest.mark.slow
def test_compress_a_stored_run_without_retraining(
    tiny: list[str], store: MlflowClient, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = run_training([*tiny, "compression=none"])
    assert not any(key.startswith("compress/") for key in store.get_run(result.run_id).data.metrics)
    compress_stored_run(
        result.run_id,
        ["compression=quick", "compression.variants=[int8_static,onnx_int8]", f"tracking.uri={result.tracking_uri}"],
    )
    run = store.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {key.split("/")[1] for key in run.data.metrics if key.startswith("compress/")} == {
        "fp32",
        "int8_static",
        "onnx_int8",
    }
    assert run.data.metrics["compress/fp32/test_acc"] == pytest.approx(run.data.metrics["test/acc"])
    assert "int8_static" in capsys.readouterr().out

    # the int8 model (rebuilt by pipeline code) loads where only its logged requirements are installed
    mlflow.set_tracking_uri(result.tracking_uri)
    model_dir = Path(mlflow.artifacts.download_artifacts(logged_variants(store, result.run_id)["model-int8_static"]))
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert {line.split("==")[0] for line in requirements} == {"mlflow", "torch", "numpy", "omegaconf", "hydra-core"}
    site = environment_of(requirements, tmp_path / "site-packages")
    images = safe_instantiate(compose_config(tiny).data, "data", shuffle_seed=0).splits.test.images.numpy()
    np.save(tmp_path / "images.npy", images)
    program = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import mlflow.pyfunc, numpy\n"
        "model = mlflow.pyfunc.load_model(sys.argv[2])\n"
        "numpy.save(sys.argv[3], model.predict(numpy.load(sys.argv[4])))\n"
        "import pipeline; print(pipeline.__file__)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            program,
            str(site),
            str(model_dir),
            str(tmp_path / "out.npy"),
            str(tmp_path / "images.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip()).is_relative_to(model_dir)  # the model's own copy of the code
    expected = mlflow.pyfunc.load_model(str(model_dir)).predict(images)
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)


def environment_of(requirements: list[str], site: Path) -> Path:
    """A site-packages holding exactly the required distributions and what they depend on (linked from this venv)."""
    site.mkdir()
    pending, seen = [Requirement(line).name for line in requirements], set()
    while pending:
        distribution = importlib.metadata.distribution(pending.pop())
        name = distribution.metadata["Name"].lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for dependency in map(Requirement, distribution.requires or []):
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                pending.append(dependency.name)
        root = Path(distribution.locate_file(""))
        for file in distribution.files or []:
            parts = Path(file).parts
            if parts[0] == ".." or parts[0] == "__pycache__":
                continue
            top = (
                parts[:2]
                if (root / parts[0]).is_dir() and not (root / parts[0] / "__init__.py").exists()
                else parts[:1]
            )
            if len(top) == 2 and len(parts) == 2:
                top = parts[:1]  # a module file inside a namespace folder's root
            link = site.joinpath(*top)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(root.joinpath(*top))
    return site


@pytest.mark.slow
def test_a_stopped_compression_leaves_the_run_finished_and_can_start_again(
    tiny: list[str], store: MlflowClient
) -> None:
    """Compression adds to a FINISHED run: stopped half way (SIGTERM while the student trains), the run keeps its
    status (its training stands) and a tag says why its compression did not finish; a second try clears it."""
    result = run_training([*tiny, "compression=none"])
    store_uri = f"tracking.uri={result.tracking_uri}"
    slow_student = ["compression=quick", "compression.variants=[fp16,distilled]", "compression.distill_epochs=10000"]
    compressing = subprocess.Popen(
        [*COMPRESS, result.run_id, store_uri, *slow_student],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log = []
        for line in compressing.stderr:  # one line per variant built: after fp16's, the student trains
            log.append(line)
            if "compress: build 1/2 fp16" in line:
                compressing.send_signal(signal.SIGTERM)
                break
        log += compressing.communicate(timeout=120)[1].splitlines(keepends=True)
    finally:
        compressing.kill()
    assert compressing.returncode == 128 + signal.SIGTERM, "".join(log)[-3000:]
    assert log[-1].strip() == (
        f"stopped: received SIGTERM; run {result.run_id} stays FINISHED, tagged compression.failure_reason; "
        f"pipeline-compress {result.run_id} starts again"
    )
    run = store.get_run(result.run_id)
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
    assert run.data.tags["compression.failure_reason"] == "interrupted by SIGTERM"

    compress_stored_run(result.run_id, ["compression=quick", "compression.variants=[fp16]", store_uri])
    run = store.get_run(result.run_id)
    assert run.info.status == "FINISHED" and "compression.failure_reason" not in run.data.tags
    assert "compress/fp16/test_acc" in run.data.metrics


@pytest.mark.slow
def test_compressing_an_unfinished_run_is_refused(tiny: list[str], store: MlflowClient) -> None:
    result = run_training([*tiny, "compression=none"])
    store.set_terminated(result.run_id, "FAILED")
    with pytest.raises(TrackingError, match="is FAILED: only a FINISHED run can be compressed"):
        compress_stored_run(result.run_id, [f"tracking.uri={result.tracking_uri}"])


@pytest.mark.slow
def test_compression_benchmark_prints_the_table_of_a_stored_run(tiny: list[str]) -> None:
    result = run_training([*tiny, "compression=none"])
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_compress.py"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            result.run_id,
            "compression=quick",
            "compression.variants=[bf16,int8_static]",
            "--tracking-uri",
            result.tracking_uri,
        ],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"run {result.run_id}: 64 test images")
    assert [line.split()[0] for line in lines[2:]] == ["fp32", "bf16", "int8_static"]

    done = subprocess.run(
        [sys.executable, str(script), result.run_id, "--int8-paths", "--tracking-uri", result.tracking_uri],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "avx512_vnni=" in lines[0] and lines[1].split()[:3] == ["path", "test", "acc"]
    assert [line.split()[0] for line in lines[2:]] == ["fp32", "int8_fx", "int8_pt2e"]


def test_both_int8_paths_keep_the_accuracy_and_a_missing_api_is_a_skip_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """torch.ao FX and torchao PT2E, for real, on a trained tiny CNN; then each with its API gone."""
    cfg = compose_config(["data=synthetic", "data.train_size=256", "data.test_size=128"])
    splits = safe_instantiate(cfg.data, "data", shuffle_seed=0).splits
    torch.manual_seed(0)
    model = fine_tune(build_model(cfg, splits.image_shape, 10), splits.train, Training(2, 2e-3, 64, 0))
    with nondeterministic_kernels_allowed():
        results = {row.name: row for row in compare_int8_paths(model, splits, 2, 2, compile=False)}
        assert list(results) == ["fp32", "int8_fx", "int8_pt2e"]
        assert not any(row.skipped for row in results.values())
        for name in ("int8_fx", "int8_pt2e"):
            assert abs(results[name].test_acc - results["fp32"].test_acc) <= 0.05, name
        monkeypatch.setitem(sys.modules, "torch.ao.quantization.quantize_fx", None)  # imports now fail
        monkeypatch.setitem(sys.modules, "torchao.quantization.pt2e.quantize_pt2e", None)
        results = {row.name: row for row in compare_int8_paths(model, splits, 2, 2, compile=False)}
        variants, skipped = build_variants(model, splits, variants_only(["int8_static"]), tmp_path)
    assert results["int8_fx"].skipped.startswith("int8_fx: torch.ao.quantization's FX API is not in this torch")
    assert results["int8_pt2e"].skipped.startswith("int8_pt2e: torchao's PT2E API is not available")
    assert [variant.name for variant in variants] == ["fp32"]
    assert skipped["int8_static"].startswith("int8_static: torch.ao.quantization's FX API is not in this torch")


@pytest.mark.parametrize("family", ["cnn", "rnn", "transformer"])
def test_pruning_zeroes_the_requested_fraction_of_weights_for_good(family: str) -> None:
    cfg = compose_config([f"model={family}", "data=synthetic", "data.train_size=64"])
    splits = safe_instantiate(cfg.data, "data", shuffle_seed=0).splits
    model = build_model(cfg, splits.image_shape, 10).eval()
    pruned = prune_global(model, 0.8, splits.train, Training(epochs=1, lr=1e-3, batch_size=32, seed=0))
    assert sparsity_of(pruned) == pytest.approx(0.8, abs=0.01)
    assert sparsity_of(model) < 0.01  # the original is untouched
    assert not any(name.endswith("_orig") for name, _ in pruned.named_parameters())  # masks folded in
    assert len(prunable_weights(pruned)) == len(prunable_weights(model))
    assert pruned(splits.train.images[:4]).shape == (4, 10)


def variants_only(variants: list[str]) -> Settings:
    """Settings that build ``variants`` with one calibration batch and no training."""
    return Settings(variants, [0.5], [0.5], Training(0, 1e-3, 32, 0), Distillation(0.25, 0, 1e-3, 4.0, 0.5, 0), 1, 1, 1)


class BranchesOnItsInput(nn.Module):
    """A backbone torch.fx cannot trace: which path it takes depends on the pixel values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 4, 3), nn.Linear(4, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.conv(images).mean(dim=(2, 3))
        return self.head(features if features.sum() > 0 else -features)


def test_a_model_torch_fx_cannot_trace_gets_no_static_int8_and_says_why(tmp_path: Path) -> None:
    cfg = compose_config(["data=synthetic", "data.train_size=64"])
    splits = safe_instantiate(cfg.data, "data", shuffle_seed=0).splits
    settings = variants_only(["int8_static", "int8_dynamic"])
    variants, skipped = build_variants(BranchesOnItsInput(), splits, settings, tmp_path)
    assert [variant.name for variant in variants] == ["fp32", "int8_dynamic"]
    assert skipped["int8_static"].startswith("int8_static: torch.fx cannot trace the model (symbolically traced")


def test_a_model_the_onnx_exporter_cannot_express_is_skipped_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::strange' to ONNX opset version 17 is not supported\nmore")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    cfg = compose_config(["data=synthetic", "data.train_size=64"])
    splits = safe_instantiate(cfg.data, "data", shuffle_seed=0).splits
    model = build_model(cfg, splits.image_shape, 10)
    settings = variants_only(["onnx", "onnx_int8", "bf16"])
    variants, skipped = build_variants(model, splits, settings, tmp_path)
    assert [variant.name for variant in variants] == ["fp32", "bf16"]
    assert skipped == {
        "onnx": "onnx: torch.onnx.export failed: Exporting the operator 'aten::strange' to ONNX opset version 17 is not supported",
        "onnx_int8": "onnx: torch.onnx.export failed: Exporting the operator 'aten::strange' to ONNX opset version 17 is not supported",
    }


@pytest.mark.slow
def test_compress_takes_the_train_grammar_in_any_order(tiny: list[str], output_root: Path, capsys) -> None:
    """`paths.output_root=` and `tracking.uri=` name the store, `compression=quick` picks a group, options go anywhere."""
    result = run_training([*tiny, "compression=none", "tracking.log_model=false"])
    orders = [
        [result.run_id, f"paths.output_root={output_root}", "compression=quick", "compression.variants=[fp16]"],
        ["--tracking-uri", result.tracking_uri, result.run_id, "compression.variants=[bf16]"],
        [result.run_id, "compression.variants=[int8_dynamic]", "--tracking-uri", result.tracking_uri],
    ]
    for argv in orders:
        compression_main(argv)
    metrics = MlflowClient(result.tracking_uri).get_run(result.run_id).data.metrics
    assert {"compress/fp16/test_acc", "compress/bf16/test_acc", "compress/int8_dynamic/test_acc"} <= metrics.keys()

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        compression_main([result.run_id, f"paths.output_root={output_root}", "compression=nope"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "error: compression=nope: no such option (available: default, none, quick)\n"


@pytest.mark.parametrize("command", [compression_main, rerun_main])
def test_a_command_on_a_stored_run_checks_its_input_before_reading_a_store(
    command, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo is named before the run is looked up, and a store that is not there is not created."""
    missing = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(SystemExit) as stop:
        command(["0123abcd", f"tracking.uri=sqlite:///{missing}", "compression.variants=[int9]"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: compression.variants: unknown variant 'int9'")

    with pytest.raises(SystemExit) as stop:
        command(["0123abcd", f"tracking.uri=sqlite:///{missing}"])
    assert stop.value.code == 2
    assert (
        capsys.readouterr().err
        == f"error: tracking.uri=sqlite:///{missing}: no store there; name the store holding the run with tracking.uri= or paths.output_root=\n"
    )
    assert not missing.exists()


def test_mcnemar_is_the_exact_binomial_test_of_the_disagreements() -> None:
    reference = torch.ones(100, dtype=torch.bool)
    assert mcnemar_p(reference, reference.clone()) == 1.0  # no disagreement: nothing to tell apart
    worse = reference.clone()
    worse[:10] = False  # wrong on 10 images the reference gets right, right on none it gets wrong
    assert mcnemar_p(reference, worse) == pytest.approx(2 / 2**10)
    mixed = worse.clone()
    reference_mixed = reference.clone()
    reference_mixed[50:53] = False  # and 3 the other way
    p_value = mcnemar_p(reference_mixed, mixed)
    assert p_value == pytest.approx(binomtest(3, 13, 0.5).pvalue)
    assert p_value == pytest.approx(mcnemar_p(mixed, reference_mixed))  # symmetric


def test_the_pareto_front_keeps_what_nothing_beats_on_both_axes() -> None:
    points = [(10.0, 97.0), (5.0, 96.0), (20.0, 98.0), (12.0, 96.5), (20.0, 97.5), (40.0, 98.0)]
    assert pareto_front(points) == [(5.0, 96.0), (10.0, 97.0), (20.0, 98.0)]


def test_the_tradeoff_figure_labels_every_variant_once_without_overlap() -> None:
    """A dense cluster as real runs have it: ten variants, several at nearly the same size or latency."""
    names = ["fp32", "fp16", "bf16", "pruned50", "pruned80", "int8_static", "int8_dynamic", "pruned80_int8"]
    names += ["onnx", "onnx_int8"]
    sizes = [1.69e6, 8.5e5, 8.5e5, 1.69e6, 1.69e6, 4.36e5, 4.88e5, 4.36e5, 1.69e6, 4.35e5]
    latencies = [33.8, 264.2, 28.7, 32.5, 32.0, 9.4, 29.5, 8.4, 17.7, 13.4]
    accuracies = [0.979, 0.979, 0.979, 0.977, 0.978, 0.977, 0.979, 0.977, 0.979, 0.979]
    rows = [
        {
            "variant": name,
            "size_bytes": size,
            "latency_b256_ms": latency,
            "test_acc": accuracy,
            "acc_ci95_low": accuracy - 0.009,
            "acc_ci95_high": accuracy + 0.009,
            "vs_fp32": "reference" if name == "fp32" else "n.s.",
            "attribution_agreement": 0.99,
        }
        for name, size, latency, accuracy in zip(names, sizes, latencies, accuracies, strict=True)
    ]
    figure = tradeoff_figure(rows)
    figure.canvas.draw()  # as saving it does
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes:
        labels = [text for text in axis.texts if text.get_text()]
        named = sorted(name for text in labels for name in text.get_text().split(", "))
        assert named == sorted(names)  # each variant once (at the same point they share a label)
        boxes = [Text.get_window_extent(text, renderer) for text in labels]  # the text, not its leader line
        inside = axis.get_window_extent(renderer)
        for index, box in enumerate(boxes):
            assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), labels[index].get_text()
            for other in boxes[index + 1 :]:
                assert not box.overlaps(other), (labels[index].get_text(), [t.get_text() for t in labels])
