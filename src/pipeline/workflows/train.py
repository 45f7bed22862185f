"""Train, test and track one run: the pipeline's story, which `pipeline-train`, a sweep's trial,
`resume=` and `pipeline-rerun` all tell.

Read `train()` top to bottom: prepare the process, load the data, build the model and task, open
the MLflow run (on the first DDP rank; the others only train), fit and test the best checkpoint,
log the results, compress. The command line (pipeline.cli.train) checks the config before this
module, and the torch, Lightning and MLflow it imports, are loaded.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, read_write
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from pipeline import figures
from pipeline.callbacks import StopOnDivergence, early_stop_verdict
from pipeline.config.compose import stored_config
from pipeline.config.validation import validate
from pipeline.data.build import load_data
from pipeline.data.datamodule import ImageDataModule
from pipeline.data.splits import ImageSplits
from pipeline.distributed import launched_rank
from pipeline.errors import CheckpointError, TrainingDiverged, first_line
from pipeline.evaluation import bootstrap_interval
from pipeline.failpoints import failpoint
from pipeline.hardware import auto_precision, cpu_features
from pipeline.interrupts import deferred, signals_raise
from pipeline.models.build import build_model, parameter_counts
from pipeline.provenance import git_state, installed_packages, runtime_versions
from pipeline.rendering import Figures
from pipeline.run_summary import run_title
from pipeline.sweeps.parent_run import parent_run_id
from pipeline.task import ClassificationTask, build_task
from pipeline.tracking.compressed_models import variant_rows
from pipeline.tracking.run import TrackedRun
from pipeline.tracking.store import resolve_tracking_uri
from pipeline.tracking.stored_runs import fetch_run
from pipeline.tracking.sweep_runs import DEFERRED_TAG, PARENT_TAG
from pipeline.tracking.system_metrics import SystemMetricsOfOtherNodes
from pipeline.trainer import build_trainer, check_batch_limits, checkpoint_dir, quiet_lightning
from pipeline.workflows.attributions import log_attributions
from pipeline.workflows.compress import compress_and_log
from pipeline.workflows.run_plan import MISCLASSIFIED_FIGURE, RunPlan, plan_run

log = logging.getLogger("pipeline")
CURVES = ["train/loss", "train/acc", "val/loss", "val/acc"]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    tracking_uri: str
    experiment_id: str
    test_metrics: dict[str, float]
    model_uri: str | None
    metrics: dict[str, float]  # every final metric of the run, as stored


def train(
    cfg: DictConfig,
    overrides: list[str],
    *,
    resume_run_id: str | None = None,
    expected_data_digest: str | None = None,
    extra_tags: dict[str, str] | None = None,
    callbacks: list[Callback] | None = None,
) -> TrainResult | None:
    """Train, test and track one run of ``cfg`` (composed or stored); raises PipelineError on bad input.

    ``resume_run_id`` continues that run from its last checkpoint, in the same MLflow run;
    ``expected_data_digest`` refuses data that is not the stored run's; ``callbacks`` are
    extra Lightning callbacks (a sweeper's pruning). Under DDP the first rank owns the
    MLflow run and returns the result; the other ranks train and return None.
    """
    cfg = validate(cfg)
    prepare_process(cfg)
    datamodule = load_data(cfg, expected_data_digest)
    splits = datamodule.splits
    check_batch_limits(cfg, splits)
    task = build_model_and_task(cfg, splits)
    output_root = Path(cfg.paths.output_root)
    resume_checkpoint = readable_last_checkpoint(output_root, resume_run_id) if resume_run_id else None
    divergence = StopOnDivergence(cfg.trainer.divergence_factor, cfg.trainer.on_divergence)
    plan = plan_run(cfg, resuming=resume_run_id is not None)
    tags = {**(extra_tags or {}), **({DEFERRED_TAG: ",".join(plan.deferred)} if plan.deferred else {})}
    with tracked_run(cfg, overrides, splits, task.model, resume_run_id, tags) as run:
        logger = run.metrics_logger(cfg.tracking.flush_every_s) if run else None
        extra = [divergence, *every_node_sampled(cfg, run), *(callbacks or [])]
        trainer, best = build_trainer(cfg, logger, output_root, run.run_id if run else "not-rank-zero", extra)
        test_metrics = fit_and_test(trainer, task, datamodule, resume_checkpoint, divergence, run, best)
        if run is None or logger is None:
            return None  # a DDP rank other than the first: the first one logs
        logger.deliver(wait_s=cfg.tracking.outage_wait_s)  # a tracking server that went away: its metrics first
        failpoint("test")
        model_uri = log_results(cfg, run, trainer, task, splits, Path(best.best_model_path), plan)
        report = compress_and_log(cfg, task.model, splits, model_uri, run.ledger) if plan.compresses else None
        run.describe(run_title(cfg), variant_rows(report) if report else [])
        return TrainResult(run.run_id, run.uri, run.experiment_id, test_metrics, model_uri, run.final_metrics())


def resume(cfg: DictConfig, overrides: list[str]) -> TrainResult | None:
    """Continue run ``cfg.resume`` from its last checkpoint with its stored config (plus ``key=value`` overrides)."""
    uri = resolve_tracking_uri(cfg.tracking.uri, Path(cfg.paths.output_root))
    stored = fetch_run(uri, cfg.resume)
    changes = [override for override in overrides if not override.startswith("resume=")]
    config = stored_config(stored.config_yaml, [*changes, f"tracking.uri={uri}"])
    return train(config, changes, resume_run_id=cfg.resume, expected_data_digest=stored.tags.get("data.digest"))


def prepare_process(cfg: DictConfig) -> None:
    """Threads, seeds and `trainer.precision=auto`, and no tips or warnings that say nothing about this run."""
    quiet_lightning()
    # build_trainer puts the best-checkpoint callback first on purpose: ckpt_path="best" reads it
    warnings.filterwarnings("ignore", message=r".*configured with multiple `ModelCheckpoint` callbacks.*")
    # resume=: the run's own checkpoint folder, with the checkpoints it resumes from
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # debug=overfit: Lightning trains on the first batches unshuffled, as asked
    warnings.filterwarnings("ignore", message=r".*requested to overfit but enabled train dataloader shuffling.*")
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.trainer.precision == "auto":  # resolved before the config is logged: the run records what it used
        on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (
            cfg.trainer.accelerator == "auto" and torch.cuda.is_available()
        )
        features = cpu_features()
        with read_write(cfg):  # validated configs are read-only: this is the one value settled here
            cfg.trainer.precision = auto_precision(on_gpu, on_gpu and torch.cuda.is_bf16_supported(), features)
        where = "this GPU" if on_gpu else f"this CPU ({' '.join(features) or 'no SIMD features known'})"
        log.info("trainer.precision=auto: %s on %s", cfg.trainer.precision, where)


def every_node_sampled(cfg: DictConfig, run: TrackedRun | None) -> list[Callback]:
    """Under multi-node training, a callback that adds every other node's machine to the run's system metrics."""
    if cfg.trainer.num_nodes == 1 or cfg.tracking.system_metrics_s is None:
        return []
    if run is None:  # a rank after the first: the run reaches it by broadcast
        return [SystemMetricsOfOtherNodes(None, None, cfg.tracking.system_metrics_s, {})]
    last_steps = run.ledger.last_steps if run.ledger is not None else {}
    return [SystemMetricsOfOtherNodes(run.uri, run.run_id, cfg.tracking.system_metrics_s, last_steps)]


def build_model_and_task(cfg: DictConfig, splits: ImageSplits) -> ClassificationTask:
    num_classes = len(splits.class_names)
    return build_task(cfg, build_model(cfg, splits.image_shape, num_classes), num_classes)


def readable_last_checkpoint(output_root: Path, run_id: str) -> Path:
    """The run's last checkpoint, checked before the run is reopened: a bad file leaves the run as it was."""
    checkpoint = checkpoint_dir(output_root, run_id) / "last.ckpt"
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


@contextmanager
def tracked_run(
    cfg: DictConfig,
    overrides: list[str],
    splits: ImageSplits,
    model: torch.nn.Module,
    resume_run_id: str | None,
    extra_tags: dict[str, str],
) -> Iterator[TrackedRun | None]:
    """The run's MLflow run, new (config, provenance, data and model size logged) or reopened; None on DDP ranks after the first."""
    if launched_rank(cfg.trainer.devices) != 0:
        yield None
        return
    output_root = Path(cfg.paths.output_root)
    uri = resolve_tracking_uri(cfg.tracking.uri, output_root)
    tags = {"model": cfg.model._target_.rsplit(".", 1)[-1].lower(), **cfg.tags, **extra_tags}
    if (parent := parent_run_id()) is not None and resume_run_id is None:
        tags[PARENT_TAG] = parent
    # MLflow's own name generator draws from `random`, seeded above: every run would get the same name
    run_name = cfg.run_name or f"{tags['model']}-{cfg.data.name}-{uuid.uuid4().hex[:6]}"
    with (
        signals_raise(),
        TrackedRun(uri, cfg.tracking.experiment, output_root, run_name, tags, resume_run_id) as run,
        run.system_metrics(cfg.tracking.system_metrics_s),
    ):
        log.info("%s run %s in %s", "resuming" if resume_run_id else "started", run.run_id, uri)
        if resume_run_id is None:
            run.log_config(OmegaConf.to_container(cfg), OmegaConf.to_yaml(cfg), overrides)
            run.log_provenance(git_state(Path(__file__).resolve().parent), runtime_versions(), installed_packages())
            run.log_dataset(cfg.data.name, splits)
            run.log_metrics(parameter_counts(model), step=0)
        yield run


def fit_and_test(
    trainer: pl.Trainer,
    task: ClassificationTask,
    datamodule: ImageDataModule,
    resume_checkpoint: Path | None,
    divergence: StopOnDivergence,
    run: TrackedRun | None,
    best: ModelCheckpoint,
) -> dict[str, float]:
    """Fit (from the resume checkpoint, if any), then test the best checkpoint; the test metrics.

    A stop signal ends the loop at the next batch, never inside a store write. A diverged loss
    with `trainer.on_divergence=stop` tests the best epoch before it and says so on the run.
    """
    with deferred():
        trainer.fit(task, datamodule=datamodule, ckpt_path=resume_checkpoint, weights_only=True)
        if (diverged := divergence.verdict(trainer)) and run is not None:
            if not best.best_model_path:
                raise TrainingDiverged(f"{diverged}; no epoch had ended, so there is no checkpoint to test")
            log.warning("%s: stopped there; testing the best epoch before it", diverged)
            run.set_tags({"diverged": diverged})
        if (stopped := early_stop_verdict(trainer)) and run is not None:
            log.info("early stopping: %s", stopped)
            run.set_tags({"stopped_early": stopped})
        failpoint("fit")
        tested = trainer.test(task, datamodule=datamodule, ckpt_path="best", verbose=False, weights_only=True)
    return {name: float(value) for name, value in tested[0].items()}


def log_results(
    cfg: DictConfig,
    run: TrackedRun,
    trainer: pl.Trainer,
    task: ClassificationTask,
    splits: ImageSplits,
    best_checkpoint: Path,
    plan: RunPlan,
) -> str | None:
    """The best validation accuracy, the figures and attribution maps, the checkpoint, the profiler's reports and
    the model; its URI if logged."""
    histories = run.metric_histories(CURVES)
    test, names = splits.test, splits.class_names
    predicted = task.tested_predictions(test.labels)
    if predicted is None:  # a DDP rank's shard, a partial or reordered test: every test image again, here
        predicted = figures.predictions(task.model, test.images)
    low, high = bootstrap_interval(predicted == test.labels, cfg.seed)  # what test/acc is worth on this many images
    # the checkpoint's monitor; read from the store because ddp_spawn leaves the score in its workers
    best = {"best/val_acc": max(value for _, value in histories["val/acc"])}
    run.log_metrics({**best, "test/acc_ci95_low": low, "test/acc_ci95_high": high}, step=trainer.global_step)
    # drawn in the figure worker while this process exports the model or computes attribution maps
    with Figures(in_worker=plan.figures_in_worker) as drawings:
        drawings.draw(figures.learning_curves, histories, artifact_file="figures/learning_curves.png")
        drawings.draw(
            figures.confusion_matrix, test.labels, predicted, names, artifact_file="figures/confusion_matrix.png"
        )
        if plan.draws_misclassified:
            drawings.draw(
                figures.misclassified, test.images, test.labels, predicted, names, artifact_file=MISCLASSIFIED_FIGURE
            )
        if plan.attributions:
            log_attributions(cfg, run, task.model, splits, predicted, drawings)
        if cfg.tracking.log_checkpoint:
            run.log_checkpoint(best_checkpoint)
        for report in sorted(best_checkpoint.parent.glob("*-profile.txt")):  # trainer.profiler's, one per stage
            run.log_profile(report)
        model_uri = run.log_model(task.model, splits.test.images[:8].clone()) if plan.exports_model else None
        failpoint("model")
        run.log_drawn_figures(drawings)
        failpoint("figures")
    return model_uri
