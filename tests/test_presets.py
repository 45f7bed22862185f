"""Presets compose as documented: scale-out (no cluster or database server needed to check that), experiments, debug."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from conftest import TINY_DATA, cli_env, pipeline_train, run_training, store_client
from pipeline.config import CONF_DIR, REPO_ROOT
from pipeline.config.compose import compose_config
from pipeline.config.validation import validate
from pipeline.errors import ConfigError
from pipeline.models.build import build_model
from pipeline.sweeps.parent_run import OPTUNA_SWEEPER


def compose_with_hydra(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_the_example_search_on_slurm_with_a_database_study(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_OPTUNA_STORAGE", "postgresql://optuna:secret@db-host:5432/optuna")
    cfg = compose_with_hydra(
        ["search=digits", "hydra/sweeper=optuna_server", "hydra/launcher=slurm", "trainer=multinode"]
    )
    sweeper, launcher = cfg.hydra.sweeper, cfg.hydra.launcher
    assert sweeper._target_ == OPTUNA_SWEEPER
    assert sweeper.storage == "postgresql://optuna:secret@db-host:5432/optuna"
    assert set(sweeper.params) == {"model", "optimizer.lr", "optimizer.weight_decay", "data.batch_size"}
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert sweeper.n_jobs == launcher.array_parallelism == 4  # one batch of trials = the jobs queued at once
    assert (launcher.nodes, launcher.tasks_per_node) == (2, 1)  # one SLURM task per DDP process
    assert (cfg.trainer.strategy, cfg.trainer.num_nodes, cfg.optimizer._target_) == ("ddp", 2, "torch.optim.AdamW")


def test_parallel_launcher_sets_the_sweepers_batch() -> None:
    cfg = compose_with_hydra(["hydra/sweeper=optuna", "hydra/launcher=parallel"])
    assert cfg.hydra.launcher.n_jobs == cfg.hydra.sweeper.n_jobs == 2
    assert cfg.hydra.sweeper.storage.startswith("sqlite:///") and cfg.hydra.sweeper.storage.endswith(
        "/outputs/optuna.db"
    )
    assert OmegaConf.to_container(cfg.hydra.sweeper.pruner)["_target_"] == "optuna.pruners.MedianPruner"
    assert compose_with_hydra(["hydra/sweeper=optuna"]).hydra.sweeper.n_jobs == 1


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("ddp", ("cpu", 2, "ddp", 1)), ("gpu", ("gpu", 1, "auto", 1)), ("multinode", ("cpu", 1, "ddp", 2))],
)
def test_trainer_presets(preset: str, expected: tuple) -> None:
    trainer = compose_with_hydra([f"trainer={preset}"]).trainer
    assert (trainer.accelerator, trainer.devices, trainer.strategy, trainer.num_nodes) == expected


def test_the_seed_keras_recipe_is_its_architecture_layer_for_layer() -> None:
    cfg = validate(compose_config(["experiment=seed_keras_cnn"]))
    backbone = build_model(cfg, (1, 28, 28), 10)[1]
    layers = [type(layer).__name__ for layer in [*backbone.features, *backbone.head]]
    assert layers == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Dropout", "Linear"]
    conv, dense = backbone.features[0], backbone.head[-1]
    assert (conv.out_channels, conv.kernel_size, conv.padding) == (32, (3, 3), (0, 0))
    assert (dense.in_features, dense.out_features, backbone.head[1].p) == (13 * 13 * 32, 10, 0.0)
    assert sum(p.numel() for p in backbone.parameters()) == 54_410  # Keras' model.summary() of the seed's recipe
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.scheduler) == ("torch.optim.Adam", 0.001, None)
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.data.name) == (5, 128, "mnist_subset")


@pytest.mark.parametrize(
    ("preset", "backbone"), [("cnn_tuned", "CNN"), ("rnn_tuned", "RNN"), ("transformer_tuned", "Transformer")]
)
def test_each_family_has_a_tuned_experiment_and_the_command_line_still_wins(preset: str, backbone: str) -> None:
    cfg = validate(compose_config([f"experiment={preset}"]))
    assert cfg.model._target_.rsplit(".", 1)[-1] == backbone and cfg.tags.experiment == preset
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.trainer.max_epochs == 20
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) != (0.001, 0.01)  # the search's values, not AdamW's defaults
    assert validate(compose_config([f"experiment={preset}", "optimizer.lr=0.1"])).optimizer.lr == 0.1


def test_an_experiment_run_records_its_recipe(output_root: Path, store: MlflowClient) -> None:
    data = [override for override in TINY_DATA if not override.startswith("data.batch_size=")]  # the recipe's 128
    result = run_training(
        [
            "experiment=seed_keras_cnn",
            *data,
            "compression=none",
            "tracking.log_model=false",
            f"paths.output_root={output_root}",
        ]
    )
    run = store.get_run(result.run_id)
    params, tags = run.data.params, run.data.tags
    assert (params["model.channels"], params["model.padding"], params["model.hidden"]) == ("[32]", "valid", "None")
    assert (params["model.batch_norm"], params["optimizer.lr"], params["trainer.max_epochs"]) == ("False", "0.001", "5")
    assert params["data.batch_size"] == "128" and tags["experiment"] == "seed_keras_cnn"
    assert "experiment=seed_keras_cnn" in tags["overrides"] and run.info.status == "FINISHED"
    assert run.data.metrics["model/params"] == run.data.metrics["model/trainable_params"] == 54_410
    learning_rates = store.get_metric_history(result.run_id, "lr-Adam")  # the learning-rate monitor, every step
    assert {point.value for point in learning_rates} == {0.001} and len(learning_rates) == 5  # 96 images, batch 128


def test_debug_overfit_drives_the_training_loss_to_near_zero(output_root: Path, store: MlflowClient) -> None:
    data = ["data=synthetic", "data.train_size=256", "data.batch_size=32", "trainer.threads=1"]
    result = run_training(["debug=overfit", *data, f"paths.output_root={output_root}"])
    cfg = validate(compose_config(["debug=overfit"]))
    losses = [point.value for point in store.get_metric_history(result.run_id, "train/loss")]
    assert len(losses) == 2 * cfg.trainer.max_epochs  # the same 2 batches every epoch
    assert losses[-1] < 0.05 and losses[-1] < losses[0] / 20
    assert store.get_run(result.run_id).data.tags["debug"] == "overfit"


def test_debug_limit_runs_a_few_batches_of_each_split(output_root: Path, store: MlflowClient) -> None:
    data = [
        "data=synthetic",
        "data.train_size=256",
        "data.test_size=96",
        "data.batch_size=32",
        "data.eval_batch_size=32",
    ]
    quick = ["compression=none", "tracking.log_model=false", "trainer.threads=1", f"paths.output_root={output_root}"]
    result = run_training(["debug=limit", *data, *quick])
    assert len(store.get_metric_history(result.run_id, "train/loss")) == 2 * 3  # 2 epochs of 3 batches, not 8
    assert result.test_metrics["test/samples"] == 32  # one test batch

    with pytest.raises(ConfigError, match=r"^trainer.limit_train_batches=0.1: 0.1 of the 8 train batches is none"):
        run_training(["trainer.limit_train_batches=0.1", *data, *quick])
    with pytest.raises(ConfigError, match=r"^trainer.overfit_batches=0.1: 0.1 of the 8 train batches is none"):
        run_training(["trainer.overfit_batches=0.1", *data, *quick])  # overfit_batches limits train and val
    assert len(store.search_runs([result.experiment_id])) == 1  # refused before a run was opened


@pytest.mark.slow
def test_debug_fast_runs_one_batch_of_each_split_into_a_throwaway_store_and_says_where(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = pipeline_train("debug=fast", cwd=tmp_path, env={**cli_env(), "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr[-3000:]
    (throwaway,) = scratch.glob("pipeline-throwaway-*")
    assert f"note:    debug=fast: a throwaway store in {throwaway}, nothing went to yours (delete" in done.stdout
    (run,) = store_client(throwaway).search_runs(["1"])
    assert run.info.status == "FINISHED" and run.data.tags["debug"] == "fast"
    assert run.data.metrics["test/samples"] == 512  # one evaluation batch of the embedded digits
    assert len(store_client(throwaway).get_metric_history(run.info.run_id, "train/loss")) == 1
    default_store = REPO_ROOT / "outputs" / "mlflow.db"
    if default_store.exists():  # a developer's own runs: this one is not among them
        with pytest.raises(MlflowException):
            store_client(REPO_ROOT / "outputs").get_run(run.info.run_id)


def test_debug_profile_logs_where_the_time_of_fit_and_test_went(tiny: list[str], store: MlflowClient) -> None:
    result = run_training(["debug=profile", *tiny])
    reports = {Path(item.path).name for item in store.list_artifacts(result.run_id, "profile")}
    assert reports == {"fit-profile.txt", "test-profile.txt"}
    fit = store.download_artifacts(result.run_id, "profile/fit-profile.txt")
    text = Path(fit).read_text()
    assert "FIT Profiler Report" in text and "training_step" in text and "Mean duration" in text
    assert store.get_run(result.run_id).data.tags["debug"] == "profile"


def test_early_stopping_ends_a_run_that_stopped_improving_and_says_why(tiny: list[str], store: MlflowClient) -> None:
    never_enough = ["callbacks.early_stopping.min_delta=1.0", "callbacks.early_stopping.patience=2"]  # acc gains < 1
    result = run_training([*tiny, "callbacks=early_stop", *never_enough, "trainer.max_epochs=20"])
    assert len(store.get_metric_history(result.run_id, "val/acc")) == 3  # the first epoch, then 2 without a gain
    run = store.get_run(result.run_id)
    assert run.data.tags["stopped_early"] == (
        "val/acc did not improve by more than 1 in 2 epochs: stopped after epoch 3 of 20"
    )
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics  # the best epoch is tested as usual
