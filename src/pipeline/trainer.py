"""The Lightning Trainer of a config, with the pipeline's checkpoints and callbacks."""

from __future__ import annotations

import logging
import math
import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import Logger
from pytorch_lightning.profilers import AdvancedProfiler, Profiler, SimpleProfiler

from pipeline.callbacks import EarlyStop, LeaveProcessGroup, StopOnSignal
from pipeline.checkpoint_io import AtomicCheckpointIO
from pipeline.data.splits import ImageSplits
from pipeline.errors import ConfigError
from pipeline.global_batchnorm import GlobalBatchNormSync
from pipeline.sweeps.parent_run import parent_run_id


def quiet_lightning() -> None:
    """No tips, banners or warnings that say nothing about the run, in this process (training or compressing)."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    # trainer.compile on a CPU: "No CUDA runtime is found, using CUDA_HOME=..." (torch's CUDA build looking for nvcc)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*")


def check_batch_limits(cfg: DictConfig, splits: ImageSplits) -> None:
    """A batch-limit fraction that leaves a split no batch: one line, before the run opens.

    Lightning would raise it from inside `fit` with a traceback, once the run is already open.
    `trainer.overfit_batches`, when set, is the limit of the training and validation splits.
    """
    batch_sizes = {"train": cfg.data.batch_size, "val": cfg.data.eval_batch_size, "test": cfg.data.eval_batch_size}
    for stage, split in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        key = "overfit_batches" if cfg.trainer.overfit_batches and stage != "test" else f"limit_{stage}_batches"
        limit = cfg.trainer[key]
        batches = math.ceil(len(split) / batch_sizes[stage])
        if isinstance(limit, float) and int(batches * limit) < 1:
            raise ConfigError(
                f"trainer.{key}={limit}: {limit} of the {batches} {stage} batches is none; "
                f"set at least {1 / batches:.3g}, or a number of batches"
            )


def configured_callbacks(cfg: DictConfig, with_logger: bool) -> list[Callback]:
    """The `callbacks` section's Lightning callbacks (the learning-rate monitor only where a logger takes it)."""
    chosen: list[Callback] = []
    stopping = cfg.callbacks.early_stopping
    if stopping.enabled:
        chosen.append(
            EarlyStop(
                monitor=stopping.monitor, mode=stopping.mode, patience=stopping.patience, min_delta=stopping.min_delta
            )
        )
    if cfg.callbacks.lr_monitor and with_logger:
        chosen.append(LearningRateMonitor(logging_interval="step"))
    return chosen


def checkpoint_dir(output_root: Path, run_id: str) -> Path:
    """Where a run's best.ckpt and last.ckpt live (a resume reads last.ckpt from here)."""
    return output_root / "checkpoints" / run_id


def profiler(kind: str | None, folder: Path) -> Profiler | None:
    """Lightning's profiler of that kind; it writes `<stage>-profile.txt` into ``folder`` as each stage ends."""
    if kind is None:
        return None
    return (SimpleProfiler if kind == "simple" else AdvancedProfiler)(dirpath=folder, filename="profile")


def build_trainer(
    cfg: DictConfig, logger: Logger | None, output_root: Path, run_id: str, callbacks: list[Callback]
) -> tuple[pl.Trainer, ModelCheckpoint]:
    """The Trainer of ``cfg.trainer``, keeping the best (val/acc) and the last checkpoint of the run.

    Inside a sweep, `ddp` becomes `ddp_spawn`: `ddp` re-launches the command line, and a
    re-launched `-m` command would run the whole sweep again (docs/dependencies.md). Without a
    logger (a DDP rank other than the first) nothing is logged; other ranks get rank 0's
    checkpoint folder from the checkpoint callback's setup (a broadcast).
    """
    strategy = cfg.trainer.strategy
    if strategy == "ddp" and parent_run_id() is not None:
        strategy = "ddp_spawn"
    folder = checkpoint_dir(output_root, run_id)
    best = ModelCheckpoint(dirpath=folder, filename="best", monitor="val/acc", mode="max")
    # Lightning 2.6 writes `save_last` only when the best improved; a resume should lose at most one epoch
    every_epoch = ModelCheckpoint(dirpath=folder, filename="last", monitor=None, enable_version_counter=False)
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
        accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
        limit_train_batches=cfg.trainer.limit_train_batches,
        limit_val_batches=cfg.trainer.limit_val_batches,
        limit_test_batches=cfg.trainer.limit_test_batches,
        overfit_batches=cfg.trainer.overfit_batches,
        logger=logger if logger is not None else False,
        callbacks=[
            best,
            every_epoch,
            StopOnSignal(),
            LeaveProcessGroup(),
            *configured_callbacks(cfg, with_logger=logger is not None),
            *callbacks,
        ],  # the best first: ckpt_path="best"
        profiler=profiler(cfg.trainer.profiler, folder),
        # DDP strategies apply it before wrapping the model and revert it when fit ends
        plugins=[AtomicCheckpointIO(), *([GlobalBatchNormSync()] if cfg.trainer.sync_batchnorm else [])],
        default_root_dir=output_root,
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,  # the validation step is the pipeline's own, covered by its tests
        use_distributed_sampler=False,  # the DataModule shards by rank itself, without padding
    )
    return trainer, best
