"""Compression of a trained model, after training or later (`pipeline-compress RUN_ID`).

Builds the variants listed in the config's `compression` section (pipeline.compress), measures
them against the fp32 original on the run's test split, and logs everything into the run itself
(pipeline.tracking.compressed_models).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.compress.build import Distillation, ModelFactory, Report, Settings, compress
from pipeline.compress.finetune import Training
from pipeline.compress.variants import nondeterministic_kernels_allowed
from pipeline.config.compose import store_location, stored_config
from pipeline.config.validation import validate
from pipeline.data.build import load_data
from pipeline.data.splits import ImageSplits
from pipeline.errors import TrackingError
from pipeline.interrupts import signals_raise
from pipeline.models.build import build_model
from pipeline.run_summary import run_title
from pipeline.tracking.compressed_models import format_table, log_report, variant_rows
from pipeline.tracking.ledger import RunLedger
from pipeline.tracking.run import TrackedRun
from pipeline.tracking.store import resolve_tracking_uri
from pipeline.tracking.stored_runs import download_artifact, fetch_run


def settings_from(cfg: DictConfig) -> Settings:
    compression = cfg.compression
    return Settings(
        variants=list(compression.variants),
        sparsities=list(compression.sparsities),
        slim_fractions=list(compression.slim_fractions),
        finetune=Training(compression.finetune_epochs, compression.finetune_lr, cfg.data.batch_size, cfg.seed),
        distillation=Distillation(
            compression.student_width,
            compression.distill_epochs,
            compression.student_lr,
            compression.distill_temperature,
            compression.distill_weight,
            compression.slim_epochs,
            OmegaConf.to_container(compression.student_model, resolve=True),
        ),
        calibration_batches=compression.calibration_batches,
        latency_repeats=compression.latency_repeats,
        threads=compression.threads or cfg.trainer.threads or torch.get_num_threads(),
        model_section=OmegaConf.to_container(cfg.model, resolve=True),
    )


def model_factory(cfg: DictConfig, splits: ImageSplits) -> ModelFactory:
    """Builds a model of another `model` section (a narrower one) for the run's data, with the run's trusted targets."""

    def build(section: dict) -> torch.nn.Module:
        return build_model(OmegaConf.merge(cfg, {"model": section}), splits.image_shape, len(splits.class_names))

    return build


def registered_model_name(cfg: DictConfig) -> str:
    return f"{cfg.tracking.experiment}-{cfg.model._target_.rsplit('.', 1)[-1].lower()}"


def compress_and_log(
    cfg: DictConfig,
    model: torch.nn.Module,
    splits: ImageSplits,
    original_uri: str | None,
    ledger: RunLedger | None = None,
) -> Report:
    """Make, measure and log the variants into the open MLflow run; print the table; return the report.

    With a ``ledger`` (a resumed run), what an earlier process already logged is not logged again.
    """
    with tempfile.TemporaryDirectory() as workdir, nondeterministic_kernels_allowed():
        report = compress(model, splits, settings_from(cfg), Path(workdir), model_factory(cfg, splits))
        log_report(
            report,
            splits.test.images[:8].clone(),
            OmegaConf.to_yaml(cfg),
            len(splits.class_names),
            registered_model_name(cfg) if cfg.compression.register else None,
            original_uri,
            ledger,
        )
    print(format_table(report))
    return report


def load_trained_model(
    cfg: DictConfig, checkpoint: Path, image_shape: tuple[int, ...], num_classes: int
) -> torch.nn.Module:
    """The run's best weights, read from its Lightning checkpoint with ``weights_only=True``."""
    model = build_model(cfg, image_shape, num_classes)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(
        {key.removeprefix("model."): value for key, value in state.items() if key.startswith("model.")}
    )
    return model.eval()


def load_stored_model(run_id: str, overrides: list[str]) -> tuple[DictConfig, torch.nn.Module, ImageSplits]:
    """A FINISHED run's config (with ``key=value`` / ``group=option`` overrides), best model and data splits; the
    overrides also say which store holds the run."""
    return load_model_of_run(resolve_tracking_uri(*store_location(overrides)), run_id, overrides)


def load_model_of_run(uri: str, run_id: str, overrides: list[str]) -> tuple[DictConfig, torch.nn.Module, ImageSplits]:
    """`load_stored_model` for a caller that knows the store already (a sweep's end): no composition to find it."""
    stored = fetch_run(uri, run_id)
    if stored.status != "FINISHED":
        raise TrackingError(f"run {run_id} is {stored.status}: only a FINISHED run can be compressed")
    cfg = validate(stored_config(stored.config_yaml, [f"tracking.uri={uri}", "compression.enabled=true", *overrides]))
    splits = load_data(cfg, stored.tags.get("data.digest")).splits
    output_root = Path(cfg.paths.output_root)
    with tempfile.TemporaryDirectory() as scratch:
        local = output_root / "checkpoints" / run_id / "best.ckpt"
        checkpoint = (
            local if local.is_file() else download_artifact(uri, run_id, "checkpoints/best.ckpt", Path(scratch))
        )
        model = load_trained_model(cfg, checkpoint, splits.image_shape, len(splits.class_names))
    return cfg, model, splits


def compress_stored_run(run_id: str, overrides: list[str]) -> Report:
    """Compress a stored run's best model and log the variants into that run (reopened, then FINISHED again,
    also when compression fails or is stopped: `compression.failure_reason` says why, and it can be run again)."""
    cfg, model, splits = load_stored_model(run_id, overrides)
    output_root = Path(cfg.paths.output_root)
    with (
        signals_raise(),
        TrackedRun(
            cfg.tracking.uri, cfg.tracking.experiment, output_root, cfg.run_name, {}, run_id, addition="compression"
        ) as run,
    ):
        report = compress_and_log(cfg, model, splits, original_uri=None)
        run.describe(run_title(cfg), variant_rows(report))
        return report
