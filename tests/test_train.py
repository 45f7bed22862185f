"""End to end, in-process: real Lightning training on tiny data into a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from mlflow import MlflowClient
from torch._dynamo.utils import counters
from torch.utils.data import DataLoader

from conftest import run_training
from pipeline import figures
from pipeline.config.compose import compose_config
from pipeline.config.instantiate import safe_instantiate
from pipeline.data.datamodule import InMemoryImages, keep_batch
from pipeline.hardware import NUMERIC_CPU_FEATURES, auto_precision, cpu_features, cpu_model
from pipeline.task import ClassificationTask
from pipeline.workflows.train import build_model_and_task, train

FAMILIES = ("cnn", "rnn", "transformer", "mlp")


def only_run(store: MlflowClient):
    experiment = store.get_experiment_by_name("digits")
    runs = store.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "exactly one MLflow run per training run"
    return runs[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_model_family_trains_and_lands_whole_in_the_store(
    family: str, tiny: list[str], store: MlflowClient
) -> None:
    long_note = "n" * 300  # Lightning's MLFlowLogger would cut this at 250 characters
    overrides = [*tiny, f"model={family}", "run_name=tiny-" + family, f"+tags.note={long_note}"]
    result = run_training(overrides)
    run = only_run(store)
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
    assert run.info.run_name == f"tiny-{family}"

    # the resolved config as params, with full values, and as artifacts
    params = run.data.params
    assert params["model._target_"].endswith(family.upper() if family != "transformer" else "Transformer")
    assert params["trainer.max_epochs"] == "2" and params["seed"] == "42"
    assert params["tags.note"] == long_note and run.data.tags["note"] == long_note
    run_id = run.info.run_id
    stored = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run_id}/config/config.yaml"))
    assert stored["model"]["_target_"] == params["model._target_"]
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/config/overrides.txt").split() == overrides
    assert "torch==2.14.1" in mlflow.artifacts.load_text(f"runs:/{run_id}/environment/requirements.lock")

    # per-step training loss, per-epoch validation, final test metrics
    steps_per_epoch = 96 // 32
    losses = store.get_metric_history(run_id, "train/loss")
    assert [m.step for m in losses] == list(range(2 * steps_per_epoch))
    assert [m.step for m in store.get_metric_history(run_id, "val/acc")] == [
        steps_per_epoch - 1,
        2 * steps_per_epoch - 1,
    ]
    assert run.data.metrics["test/acc"] == pytest.approx(result.test_metrics["test/acc"])
    assert {"val/loss", "train/acc", "test/loss", "best/val_acc"} <= set(run.data.metrics)
    metrics = run.data.metrics
    assert metrics["test/acc_ci95_low"] <= metrics["test/acc"] <= metrics["test/acc_ci95_high"]
    if 0 < metrics["test/acc"] < 1:  # 64 test images: a wide interval
        assert metrics["test/acc_ci95_high"] - metrics["test/acc_ci95_low"] > 0.05
    description = run.data.tags["mlflow.note.content"]  # the run's Overview in the MLflow UI
    assert (
        f"Test accuracy **{metrics['test/acc']:.4f}** (95% interval {metrics['test/acc_ci95_low']:.4f}" in description
    )
    figure_route = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifacts/figures"
    assert f"[figures/learning_curves]({figure_route}/learning_curves.png)" in description

    # data set inputs with content digests
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"synthetic-train", "synthetic-val", "synthetic-test"}
    assert len(run.data.tags["data.digest"]) == 64
    assert run.data.tags["git.dirty"] in {"true", "false"}

    # the figures, the best checkpoint, and the model as an MLflow model that predicts
    figures = {a.path for a in store.list_artifacts(run_id, "figures")}
    assert figures == {f"figures/{name}.png" for name in ("learning_curves", "confusion_matrix", "misclassified")}
    assert [a.path for a in store.list_artifacts(run_id, "checkpoints")] == ["checkpoints/best.ckpt"]
    assert result.model_uri and result.model_uri.startswith("models:/")


@pytest.mark.parametrize("family", ["cnn", "rnn", "transformer"])
@pytest.mark.slow
def test_logged_model_predicts_with_the_logged_test_accuracy(family: str, tiny: list[str], store: MlflowClient) -> None:
    result = run_training([*tiny, "trainer.max_epochs=3", f"model={family}"])
    mlflow.set_tracking_uri(result.tracking_uri)
    model = mlflow.pyfunc.load_model(result.model_uri)
    splits = safe_instantiate(compose_config(tiny).data, "data", shuffle_seed=0).splits
    predictions = model.predict(splits.test.images.numpy())
    accuracy = float((np.argmax(predictions, axis=1) == splits.test.labels.numpy()).mean())
    assert accuracy == pytest.approx(only_run(store).data.metrics["test/acc"], abs=1e-6)
    signature = model.metadata.get_input_schema().inputs[0]
    assert tuple(signature.shape) == (-1, 1, 28, 28)


@pytest.mark.parametrize("seen", ["whole", "part", "reversed"])
def test_the_tests_own_predictions_are_kept_only_when_it_saw_the_whole_split_in_order(
    seen: str, tiny: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config([*tiny, "data.eval_batch_size=24"])  # 64 test images: batches of 24, 24, 16
    datamodule = safe_instantiate(cfg.data, "data", shuffle_seed=0)
    test = datamodule.splits.test
    if seen == "reversed":  # a data module of one's own whose test loader has another order
        order = list(reversed(range(len(test))))
        loader = DataLoader(InMemoryImages(test), batch_size=24, sampler=order, collate_fn=keep_batch)
        monkeypatch.setattr(datamodule, "test_dataloader", lambda: loader)
    task = build_model_and_task(cfg, datamodule.splits)
    trainer = pl.Trainer(
        accelerator="cpu", limit_test_batches=2 if seen == "part" else 1.0, logger=False, enable_progress_bar=False
    )
    trainer.test(task, datamodule=datamodule, verbose=False)
    kept = task.tested_predictions(test.labels)
    if seen == "whole":  # what the figures and the accuracy's interval use: the classes a separate pass gives
        assert torch.equal(kept, figures.predictions(task.model, test.images))
        assert len(set(kept.tolist())) > 1  # an untrained model, but not one constant answer
    else:  # two batches of three, or every image in another order: the figures predict the split themselves
        assert kept is None


def test_learns_the_synthetic_task(tiny: list[str]) -> None:
    result = run_training([*tiny, "trainer.max_epochs=4", "tracking.log_model=false"])
    assert result.test_metrics["test/acc"] > 0.5  # chance is 0.1


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.slow
def test_same_config_and_seed_give_identical_metrics(threads: int, tiny: list[str], store: MlflowClient) -> None:
    overrides = [*tiny, f"trainer.threads={threads}", "tracking.log_model=false", "tracking.log_checkpoint=false"]
    first, second = run_training(overrides), run_training(overrides)
    assert first.test_metrics == second.test_metrics
    history = [[m.value for m in store.get_metric_history(r.run_id, "train/loss")] for r in (first, second)]
    assert history[0] == history[1]
    third = run_training([*overrides, "seed=7"])
    assert third.test_metrics != first.test_metrics


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_schedulers_drive_the_learning_rate(scheduler: str, tiny: list[str], store: MlflowClient) -> None:
    class RecordLearningRate(pl.Callback):
        def __init__(self) -> None:
            self.rates: list[float] = []

        def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
            self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    recorder = RecordLearningRate()
    overrides = [*tiny, f"scheduler={scheduler}", "optimizer=sgd", "optimizer.lr=0.1", "trainer.max_epochs=4"]
    result = train(compose_config(overrides), overrides, callbacks=[recorder])
    assert store.get_run(result.run_id).info.status == "FINISHED"
    rates, steps_per_epoch = recorder.rates, len(recorder.rates) // 4
    assert len(rates) == 4 * steps_per_epoch
    if scheduler == "cosine":  # per epoch, from optimizer.lr down towards eta_min=0
        per_epoch = rates[::steps_per_epoch]
        assert per_epoch[0] == pytest.approx(0.1) and per_epoch == sorted(per_epoch, reverse=True)
        assert rates[:steps_per_epoch] == [0.1] * steps_per_epoch and per_epoch[-1] < 0.02
    else:  # per step: a warm-up to max_lr (optimizer.lr) over 30 % of the run, then down below the start
        peak = rates.index(max(rates))
        assert max(rates) == pytest.approx(0.1, rel=0.05) and 0 < peak < len(rates) - 1
        assert rates[: peak + 1] == sorted(rates[: peak + 1]) and rates[peak:] == sorted(rates[peak:], reverse=True)
        assert rates[0] < 0.01 and rates[-1] < rates[0]


def test_exception_during_training_marks_the_run_failed_and_keeps_metrics(
    tiny: list[str], store: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = ClassificationTask.training_step

    def failing_step(self, batch, batch_idx):
        if self.current_epoch == 1:
            raise RuntimeError("disk full\nsecond line")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(ClassificationTask, "training_step", failing_step)
    with pytest.raises(RuntimeError, match="disk full"):
        run_training(tiny)
    run = only_run(store)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "RuntimeError: disk full"
    assert len(store.get_metric_history(run.info.run_id, "train/loss")) == 3  # epoch 0 survived


@pytest.mark.slow
def test_http_tracking_uri_goes_through_a_real_server(tiny: list[str], mlflow_server: str) -> None:
    result = run_training([*tiny, f"tracking.uri={mlflow_server}", "tracking.log_model=false"])
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    assert [a.path for a in client.list_artifacts(result.run_id, "config")] == [
        "config/config.yaml",
        "config/overrides.txt",
    ]
    assert [a.path for a in client.list_artifacts(result.run_id, "checkpoints")] == ["checkpoints/best.ckpt"]


@pytest.mark.parametrize(
    ("on_gpu", "gpu_has_bf16", "features", "expected"),
    [
        (False, False, ["avx2", "fma"], "32-true"),  # bf16 emulated: slower than fp32
        (False, False, ["avx2", "avx512f", "avx512_bf16"], "32-true"),  # bf16 dot products, no matrix units: unmeasured
        (False, False, ["avx512f", "amx_tile", "amx_bf16"], "bf16-mixed"),
        (True, True, [], "bf16-mixed"),
        (True, False, ["amx_bf16"], "32-true"),  # a GPU without bf16 trains, not the CPU
    ],
)
def test_auto_precision_is_bf16_only_where_hardware_has_it(
    on_gpu: bool, gpu_has_bf16: bool, features: list[str], expected: str
) -> None:
    assert auto_precision(on_gpu, gpu_has_bf16, features) == expected


def test_a_run_records_the_precision_auto_chose_and_the_cpu_it_ran_on(tiny: list[str], store: MlflowClient) -> None:
    run_training([*tiny, "model=mlp", "trainer.precision=auto"])
    run = only_run(store)
    assert set(cpu_features()) <= set(NUMERIC_CPU_FEATURES)
    assert run.data.params["trainer.precision"] == auto_precision(False, False, cpu_features())  # never "auto"
    assert run.data.tags["version.cpu_features"] == " ".join(cpu_features())
    assert run.data.tags["version.cpu"] == cpu_model() != ""


def test_bf16_mixed_trains_to_a_finite_loss_with_an_fp32_model_for_what_follows(
    tiny: list[str], store: MlflowClient
) -> None:
    result = run_training(
        [*tiny, "model=cnn", "trainer.precision=bf16-mixed", "compression=quick", "compression.variants=[fp16]"]
    )
    run = only_run(store)
    assert run.data.params["trainer.precision"] == "bf16-mixed"
    assert np.isfinite(run.data.metrics["train/loss"]) and 0 <= run.data.metrics["test/acc"] <= 1
    # the exported model and the variants start from fp32 weights (autocast computes in bf16, stores fp32)
    model = mlflow.pytorch.load_model(result.model_uri)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
    assert "compress/fp16/test_acc" in run.data.metrics


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_under_bf16_autocast(family: str, tiny: list[str], store: MlflowClient) -> None:
    data = ["trainer.max_epochs=1", "tracking.log_model=false"]
    result = run_training([*tiny, *data, f"model={family}", "trainer.precision=bf16-mixed"])
    assert np.isfinite(result.metrics["train/loss"]) and result.metrics["test/samples"] == 64
    assert store.get_run(result.run_id).data.params["trainer.precision"] == "bf16-mixed"


def compiled_graphs() -> int:
    """Graphs torch.compile has captured in this process so far (dynamo's own counter)."""
    return counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_compiled_and_checkpoints_the_plain_backbone(
    family: str, tiny: list[str], output_root: Path
) -> None:
    """Graph capture of forward and backward (aot_eager); the CNN's test below pays for inductor's code generation."""
    before = compiled_graphs()
    data = ["trainer.max_epochs=1", "tracking.log_model=false"]
    result = run_training(
        [*tiny, *data, f"model={family}", "trainer.compile=true", "trainer.compile_backend=aot_eager"]
    )
    assert compiled_graphs() > before  # the backbone ran through torch.compile
    assert np.isfinite(result.metrics["train/loss"]) and result.metrics["test/samples"] == 64
    checkpoint = torch.load(output_root / "checkpoints" / result.run_id / "best.ckpt", weights_only=True)
    assert checkpoint["state_dict"] and not [key for key in checkpoint["state_dict"] if "_orig_mod" in key]


@pytest.mark.slow
def test_a_model_compiled_by_inductor_trains_exports_and_compresses_as_a_plain_module(
    tiny: list[str], store: MlflowClient
) -> None:
    before = compiled_graphs()
    variants = ["compression=quick", "compression.variants=[int8_dynamic]"]
    result = run_training([*tiny, "trainer.max_epochs=1", "model=mlp", "trainer.compile=true", *variants])
    assert compiled_graphs() > before
    run = only_run(store)
    assert run.data.params["trainer.compile"] == "True" and run.data.params["trainer.compile_backend"] == "inductor"
    assert run.data.metrics["compress/int8_dynamic/test_acc"] >= run.data.metrics["test/acc"] - 0.1
    model = mlflow.pytorch.load_model(result.model_uri)  # the exported model is the backbone, not a compiled wrapper
    assert not [name for name, _ in model.named_parameters() if "_orig_mod" in name]
    assert model(torch.rand(64, 1, 28, 28)).shape == (64, 10)


@pytest.mark.parametrize("family", FAMILIES)
def test_accumulated_gradients_take_one_optimizer_step_per_four_batches(
    family: str, tiny: list[str], store: MlflowClient
) -> None:
    data = ["data.train_size=256", "trainer.max_epochs=1", "tracking.log_model=false"]  # 8 batches of 32
    result = run_training([*tiny, *data, f"model={family}", "trainer.accumulate_grad_batches=4"])
    (validation,) = store.get_metric_history(result.run_id, "val/acc")
    assert validation.step == 8 // 4 - 1  # the last optimizer step's index: two steps, not eight
    assert [point.step for point in store.get_metric_history(result.run_id, "train/loss")] == [0, 1]
    assert np.isfinite(result.metrics["train/loss"]) and result.metrics["test/samples"] == 64
