"""The LightningModule: cross-entropy classification with accuracy per stage (no MLflow here).

Epoch metrics are torchmetrics states (sums of correct, of loss x samples, of samples), so under
DDP they are reduced across ranks exactly: with the DataModule's unpadded evaluation shards every
validation and test image counts once (`test/samples` records how many were seen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torchmetrics import MeanMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from pipeline.config.instantiate import safe_instantiate
from pipeline.config.schema import STEP_SCHEDULERS

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class ClassificationTask(pl.LightningModule):
    """Trains ``model``; metrics are named ``stage/metric`` (train/loss, val/acc, test/acc)."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        compile_backend: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.compile_backend = compile_backend
        self._compiled: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}  # no submodule: checkpoint keys stay
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.accuracy = nn.ModuleDict(
            {f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro") for stage in ("train", "val", "test")}
        )
        self.epoch_loss = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in ("val", "test")})
        self.test_samples = SumMetric()
        self._tested: list[tuple[torch.Tensor, torch.Tensor]] = []  # (labels, predicted classes) of each test batch

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network()(images)

    def network(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The backbone, or with `trainer.compile` its torch.compile'd forward (same weights), made on first use.

        Made in the process that trains (after a ddp_spawn), and never saved: checkpoints, the exported
        model and the compressed variants all hold the plain backbone.
        """
        if self.compile_backend is None:
            return self.model
        if "model" not in self._compiled:
            # a sweep's trials share a process: without a reset each new model is one more recompile of the same
            # code, and past torch's recompile limit (8) it would silently train uncompiled
            torch.compiler.reset()
            self._compiled["model"] = torch.compile(self.model, backend=self.compile_backend)
        return self._compiled["model"]

    def _step(self, batch: tuple[torch.Tensor, ...], stage: str) -> torch.Tensor:
        images, labels = batch[0], batch[1]
        logits = self(images)
        loss = self.training_loss(batch, logits) if stage == "train" else F.cross_entropy(logits, labels)
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(logits, labels)
        if stage == "train":  # per step, this rank's batch: the loss being optimised right now
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(labels))
        else:
            epoch_loss = self.epoch_loss[f"{stage}_loss"]
            epoch_loss(loss.detach(), len(labels))
            self.log(f"{stage}/loss", epoch_loss, on_step=False, on_epoch=True, batch_size=len(labels))
        if stage == "test":
            self._tested.append((labels.cpu(), logits.detach().argmax(dim=1).cpu()))
            self.test_samples(len(labels))
            self.log("test/samples", self.test_samples, on_step=False, on_epoch=True, batch_size=len(labels))
        if stage != "train":  # train/acc is logged with the validation metrics: see on_validation_epoch_end
            self.log(
                f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=len(labels)
            )
        return loss

    def training_loss(self, batch: tuple[torch.Tensor, ...], logits: torch.Tensor) -> torch.Tensor:
        """What training minimises: cross-entropy with the labels, ``batch[1]`` (distillation adds a teacher's outputs)."""
        return F.cross_entropy(logits, batch[1])

    def on_validation_epoch_end(self) -> None:
        """The training epoch's accuracy, logged before the epoch's checkpoints are written.

        Lightning logs training-epoch metrics only after the checkpoint callbacks ran, so a run
        killed between the two lost that point for good (its resume starts after that epoch).
        Validation metrics are logged before the checkpoints: train/acc goes with them.
        """
        if self.trainer.state.fn == "fit":
            self.log("train/acc", self.accuracy["train_acc"], on_step=False, on_epoch=True)

    def on_test_epoch_start(self) -> None:
        self._tested = []

    def tested_predictions(self, labels: torch.Tensor) -> torch.Tensor | None:
        """The predicted class of every test image from the test just run, in the order of the split's ``labels``,
        so that the figures and the accuracy's interval need no second pass over the test set (and agree with
        test/acc).

        None where the test saw other labels: part of the split (a DDP rank's shard, `trainer.limit_test_batches`)
        or the split in another order (a data module of one's own).
        """
        if not self._tested:
            return None
        tested_labels, predicted = (torch.cat(parts) for parts in zip(*self._tested, strict=True))
        return predicted if torch.equal(tested_labels, labels) else None

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        if self.scheduler_interval == "step":
            scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        else:
            scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}


def build_task(cfg: DictConfig, model: nn.Module, num_classes: int) -> ClassificationTask:
    """The task of a config: its optimizer and (per step or per epoch) learning-rate schedule."""
    scheduler = safe_instantiate(cfg.scheduler, "scheduler") if cfg.scheduler is not None else None
    interval = "step" if cfg.scheduler is not None and cfg.scheduler._target_ in STEP_SCHEDULERS else "epoch"
    return ClassificationTask(
        model,
        num_classes,
        safe_instantiate(cfg.optimizer, "optimizer"),
        scheduler,
        interval,
        cfg.trainer.compile_backend if cfg.trainer.compile else None,
    )
