"""`pipeline-train`: compose the config, train, test and log one run to MLflow.

Read `train()` top to bottom: validate, seed, load data, build model and task, open the
MLflow run, fit, test the best checkpoint, log checkpoint and model. Heavy imports
(torch, Lightning, MLflow) happen inside functions so that a bad override is reported
before any of them is paid for.
"""

from __future__ import annotations

import logging
import signal
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from pipeline.config import CONF_DIR
from pipeline.config.compose import compose_config, stored_config
from pipeline.config.instantiate import safe_instantiate
from pipeline.config.schema import STEP_SCHEDULERS
from pipeline.config.validation import validate
from pipeline.distributed import launched_rank
from pipeline.errors import CheckpointError, ConfigError, PipelineError, RunInterrupted, TrainingDiverged, disk_full, first_line
from pipeline.failpoints import failpoint
from pipeline.interrupts import received_signal
from pipeline.search.trial import current_trial
from pipeline.sweep import parent_run_id

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    tracking_uri: str
    experiment_id: str
    test_metrics: dict[str, float]
    model_uri: str | None
    metrics: dict[str, float]  # every final metric of the run, as stored


def quiet_known_noise() -> None:
    """Silence tips and warnings that say nothing about this run."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*")


def build_model(cfg: DictConfig, image_shape: tuple[int, ...], num_classes: int) -> Any:
    from pipeline.models.normalize import Classifier

    backbone = safe_instantiate(cfg.model, "model", input_shape=list(image_shape), num_classes=num_classes)
    return Classifier(backbone, mean=list(cfg.data.mean), std=list(cfg.data.std))


def build_task(cfg: DictConfig, model: Any, num_classes: int) -> Any:
    from pipeline.task import ClassificationTask

    scheduler = safe_instantiate(cfg.scheduler, "scheduler") if cfg.scheduler is not None else None
    interval = "step" if cfg.scheduler is not None and cfg.scheduler._target_ in STEP_SCHEDULERS else "epoch"
    return ClassificationTask(model, num_classes, safe_instantiate(cfg.optimizer, "optimizer"), scheduler, interval)


def build_trainer(cfg: DictConfig, logger: Any, output_root: Path, run_id: str, callbacks: list[Any]) -> tuple[Any, Any]:
    """The Lightning Trainer of ``cfg.trainer``, keeping the best (val/acc) and the last checkpoint of the run.

    Inside a sweep, `ddp` becomes `ddp_spawn`: `ddp` re-launches the command line, and a
    re-launched `-m` command would run the whole sweep again (docs/dependencies.md).
    """
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from pipeline.callbacks import LeaveProcessGroup, StopOnSignal
    from pipeline.checkpoint_io import AtomicCheckpointIO

    strategy = cfg.trainer.strategy
    if strategy == "ddp" and parent_run_id() is not None:
        strategy = "ddp_spawn"
    # other DDP ranks get rank 0's folder from the checkpoint callback's setup (a broadcast)
    checkpoint_dir = output_root / "checkpoints" / run_id
    checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor="val/acc", mode="max")
    # Lightning 2.6 writes `save_last` only when the best improved; a resume should lose at most one epoch
    every_epoch = ModelCheckpoint(dirpath=checkpoint_dir, filename="last", monitor=None, enable_version_counter=False)
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        strategy=strategy,
        num_nodes=cfg.trainer.num_nodes,
        precision=cfg.trainer.precision,
        max_epochs=cfg.trainer.max_epochs,
        deterministic=cfg.trainer.deterministic,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        logger=logger,
        callbacks=[checkpoint, every_epoch, StopOnSignal(), LeaveProcessGroup(), *callbacks],  # the best first: ckpt_path="best"
        plugins=[AtomicCheckpointIO()],
        default_root_dir=output_root,
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,  # the validation step is the pipeline's own, covered by its tests
        use_distributed_sampler=False,  # the DataModule shards by rank itself, without padding
    )
    return trainer, checkpoint


def readable_last_checkpoint(output_root: Path, run_id: str) -> Path:
    """The run's last checkpoint, checked before the run is reopened: a bad file leaves the run as it was."""
    import torch

    checkpoint = output_root / "checkpoints" / run_id / "last.ckpt"
    if not checkpoint.is_file():
        raise CheckpointError(f"resume={run_id}: no checkpoint at {checkpoint}")
    try:
        torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a checkpoint, pickled code refused by weights_only
        raise CheckpointError(
            f"resume={run_id}: {checkpoint} cannot be read ({first_line(str(err))[:200]}); the run is unchanged: "
            f"train it again with `pipeline-rerun {run_id}`"
        ) from None
    return checkpoint


def report_divergence(run: Any, reason: str, best_checkpoint: str) -> None:
    """Training stopped early on a diverged loss: say so, in the log and on the run."""
    if not best_checkpoint:
        raise TrainingDiverged(f"{reason}; no epoch had ended, so there is no checkpoint to test")
    log.warning("%s: stopped there; testing the best epoch before it", reason)
    run.set_tags({"diverged": reason})


def log_figures(run: Any, histories: dict[str, list[tuple[int, float]]], model: Any, splits: Any) -> None:
    """Learning curves, confusion matrix and misclassified test images of the tested model."""
    from pipeline import figures

    run.log_figure(figures.learning_curves(histories), "figures/learning_curves.png")
    test = splits.test
    predicted = figures.predictions(model, test.images)
    run.log_figure(figures.confusion_matrix(test.labels, predicted, splits.class_names), "figures/confusion_matrix.png")
    run.log_figure(figures.misclassified(test.images, test.labels, predicted, splits.class_names), "figures/misclassified.png")


def train(
    cfg: DictConfig,
    overrides: list[str],
    *,
    resume_run_id: str | None = None,
    expected_data_digest: str | None = None,
    extra_tags: dict[str, str] | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult | None:
    """Train, test and track one run of ``cfg`` (composed or stored); raises PipelineError on bad input.

    ``resume_run_id`` continues that run from its last checkpoint, in the same MLflow run;
    ``expected_data_digest`` refuses data that is not the stored run's; ``callbacks`` are
    extra Lightning callbacks (a sweeper's pruning). Under DDP the first rank owns the
    MLflow run and returns the result; the other ranks train and return None.
    """
    cfg = validate(cfg)
    quiet_known_noise()
    import pytorch_lightning as pl
    import torch

    from pipeline.callbacks import StopOnDivergence
    from pipeline.interrupts import deferred, signals_raise
    from pipeline.provenance import git_state, installed_packages, runtime_versions
    from pipeline.tracking.run import TrackedRun
    from pipeline.tracking.store import resolve_tracking_uri
    from pipeline.tracking.sweep import PARENT_TAG

    output_root = Path(cfg.paths.output_root)
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = safe_instantiate(cfg.data, "data", shuffle_seed=cfg.seed)
    splits = datamodule.splits
    splits.check_digest(expected_data_digest)
    num_classes = len(splits.class_names)
    task = build_task(cfg, build_model(cfg, splits.image_shape, num_classes), num_classes)

    resume_checkpoint = readable_last_checkpoint(output_root, resume_run_id) if resume_run_id else None
    world_size = cfg.trainer.devices * cfg.trainer.num_nodes
    if cfg.data.batch_size % world_size:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size}: must divide evenly over the {world_size} DDP processes")
    divergence = StopOnDivergence(cfg.trainer.divergence_factor, cfg.trainer.on_divergence)
    callbacks = [divergence, *(callbacks or [])]
    if launched_rank(cfg.trainer.devices) != 0:
        trainer, _ = build_trainer(cfg, False, output_root, "not-rank-zero", callbacks)
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint, weights_only=True)
        trainer.test(task, datamodule=datamodule, ckpt_path="best", verbose=False, weights_only=True)
        return None

    uri = resolve_tracking_uri(cfg.tracking.uri, output_root)
    tags = {"model": cfg.model._target_.rsplit(".", 1)[-1].lower(), **cfg.tags, **(extra_tags or {})}
    if (parent := parent_run_id()) is not None and resume_run_id is None:
        tags[PARENT_TAG] = parent
    # MLflow's own name generator draws from `random`, seeded above: every run would get the same name
    run_name = cfg.run_name or f"{tags['model']}-{cfg.data.name}-{uuid.uuid4().hex[:6]}"
    with signals_raise(), TrackedRun(uri, cfg.tracking.experiment, output_root, run_name, tags, resume_run_id) as run:
        log.info("%s run %s in %s", "resuming" if resume_run_id else "started", run.run_id, uri)
        if resume_run_id is None:
            run.log_config(OmegaConf.to_container(cfg), OmegaConf.to_yaml(cfg), overrides)
            run.log_provenance(git_state(Path(__file__).resolve().parent), runtime_versions(), installed_packages())
            run.log_dataset(cfg.data.name, splits)
        logger = run.metrics_logger(cfg.tracking.flush_every_s)
        trainer, checkpoint = build_trainer(cfg, logger, output_root, run.run_id, callbacks)
        with deferred():  # a stop signal ends the loop at the next batch, never inside a store write
            trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint, weights_only=True)
            if divergence.diverged:  # trainer.on_divergence=stop: test and log what the best epoch was
                report_divergence(run, divergence.diverged, checkpoint.best_model_path)
            failpoint("fit")
            test_metrics = trainer.test(task, datamodule=datamodule, ckpt_path="best", verbose=False, weights_only=True)[0]
        logger.deliver(wait_s=cfg.tracking.outage_wait_s)  # a tracking server that went away: its metrics first
        failpoint("test")
        histories = run.metric_histories(["train/loss", "train/acc", "val/loss", "val/acc"])
        # the checkpoint's monitor; read from the store because ddp_spawn leaves the score in its workers
        run.log_metrics({"best/val_acc": max(value for _, value in histories["val/acc"])}, step=trainer.global_step)
        log_figures(run, histories, task.model, splits)
        failpoint("figures")
        if cfg.tracking.log_checkpoint:
            run.log_checkpoint(Path(checkpoint.best_model_path))
        model_uri = run.log_model(task.model, splits.test.images[:8].clone()) if cfg.tracking.log_model else None
        failpoint("model")
        if cfg.compression.enabled:
            from pipeline.compression import compress_and_log

            compress_and_log(cfg, task.model, splits, model_uri, run.ledger)
        final_metrics = run.final_metrics()
    return TrainResult(
        run.run_id, uri, run.experiment_id, {k: float(v) for k, v in test_metrics.items()}, model_uri, final_metrics
    )


def resume(cfg: DictConfig, overrides: list[str]) -> TrainResult | None:
    """Continue run ``cfg.resume`` from its last checkpoint with its stored config (plus ``key=value`` overrides)."""
    from pipeline.tracking.store import resolve_tracking_uri
    from pipeline.tracking.stored import fetch_run

    uri = resolve_tracking_uri(cfg.tracking.uri, Path(cfg.paths.output_root))
    stored = fetch_run(uri, cfg.resume)
    changes = [override for override in overrides if not override.startswith("resume=")]
    config = stored_config(stored.config_yaml, [*changes, f"tracking.uri={uri}"])
    return train(config, changes, resume_run_id=cfg.resume, expected_data_digest=stored.tags.get("data.digest"))


def print_summary(result: TrainResult) -> None:
    metrics = "  ".join(f"{name}={value:.0f}" if name.endswith("samples") else f"{name}={value:.4f}" for name, value in sorted(result.test_metrics.items()))
    print(f"run id:  {result.run_id}")
    print(f"test:    {metrics}")
    if result.model_uri:
        print(f"model:   {result.model_uri}")
    if result.tracking_uri.startswith("sqlite:///"):
        print(f"ui:      scripts/ui.sh {result.tracking_uri}   then open")
        print(f"         http://127.0.0.1:5000/#/experiments/{result.experiment_id}/runs/{result.run_id}")
    else:
        print(f"ui:      {result.tracking_uri}/#/experiments/{result.experiment_id}/runs/{result.run_id}")


def report_failure(err: PipelineError) -> float:
    """One line on stderr; a sweep's trial returns NaN (a failed trial), a single run exits 1."""
    print(f"error: {err}", file=sys.stderr)
    if parent_run_id() is not None:  # one bad trial must not end the sweep (and strand its parent run)
        return float("nan")
    raise SystemExit(1) from None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_entry(cfg: DictConfig) -> float:
    try:
        hydra_config = HydraConfig.get()
        overrides = list(hydra_config.overrides.task)
        choices = hydra_config.runtime.choices.items()
        tags = {f"choice.{group}": str(option) for group, option in choices if option is not None and not group.startswith("hydra")}
        callbacks = []
        if (trial := current_trial(hydra_config.sweeper)) is not None:  # a job of an Optuna sweep
            from pipeline.search.pruning import ReportToOptuna

            tags.update(trial.tags)
            callbacks.append(ReportToOptuna(trial, cfg.sweep.objective, cfg.sweep.direction))
        if cfg.resume is not None:
            result = resume(cfg, overrides)
        else:
            result = train(cfg, overrides, extra_tags=tags, callbacks=callbacks)
    except PipelineError as err:
        return report_failure(err)
    except OSError as err:  # a checkpoint or an artifact that found the disk full
        if (full := disk_full(err, cfg.paths.output_root)) is None:
            raise
        return report_failure(full)
    except (RunInterrupted, SystemExit):
        # Lightning ends a loop on SIGTERM with its own SystemExit (code 0) and on Ctrl-C with SystemExit(1)
        stop = received_signal()
        if stop is None:
            raise
        print(f"stopped: received {stop}; the run is marked KILLED and can be resumed with resume=<run id>", file=sys.stderr)
        raise SystemExit(128 + signal.Signals[stop].value) from None
    if result is None:  # a DDP rank other than the first: rank 0 reports
        return float("nan")
    print_summary(result)
    return result.metrics.get(cfg.sweep.objective, float("nan"))  # what a sweeper optimises


def main() -> None:
    """Console script. Plain runs are composed and validated first, so bad input costs no imports."""
    args = sys.argv[1:]
    if not any(arg.startswith("-") for arg in args):
        try:
            compose_config(args)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    _hydra_entry()


if __name__ == "__main__":
    main()
