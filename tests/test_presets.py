"""Scale-out presets compose as documented (no cluster or database server needed to check that)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from pipeline.config import CONF_DIR
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
