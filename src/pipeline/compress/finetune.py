"""Training after compression, in the task's own Lightning loop: fine-tuning a pruned or slimmed model,
and distillation, where a small student learns from a trained teacher's softened outputs as well as the labels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline.data.splits import Split
from pipeline.task import ClassificationTask


@dataclass(frozen=True)
class Training:
    """How a compressed model is trained: epochs of Adam at ``lr`` over the run's training split."""

    epochs: int
    lr: float
    batch_size: int
    seed: int


@dataclass(frozen=True)
class Teacher:
    """A trained model whose outputs, softened by ``temperature``, make ``weight`` of the student's loss."""

    model: nn.Module
    temperature: float
    weight: float


class DistillationTask(ClassificationTask):
    """The classification task whose training loss also pulls the student's outputs toward the teacher's
    (Hinton et al. 2015: KL divergence of the softened distributions, scaled by the temperature squared)."""

    def __init__(self, model: nn.Module, num_classes: int, optimizer: partial, teacher: Teacher) -> None:
        super().__init__(model, num_classes, optimizer)
        self.teacher = teacher  # a dataclass, not a submodule: its weights are neither trained nor checkpointed
        teacher.model.eval()

    def training_loss(self, images: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        temperature, weight = self.teacher.temperature, self.teacher.weight
        with torch.no_grad():
            targets = F.log_softmax(self.teacher.model(images) / temperature, dim=1)
        softened = F.log_softmax(logits / temperature, dim=1)
        distill = F.kl_div(softened, targets, log_target=True, reduction="batchmean") * temperature**2
        return weight * distill + (1 - weight) * F.cross_entropy(logits, labels)


def fine_tune(model: nn.Module, train: Split, training: Training, teacher: Teacher | None = None) -> nn.Module:
    """``model`` trained in place (pruning masks, if any, stay applied) and returned in eval mode."""
    if training.epochs == 0:
        return model.eval()
    torch.manual_seed(training.seed)  # dropout
    with torch.no_grad():
        num_classes = model.eval()(train.images[:1]).shape[1]
    optimizer = partial(torch.optim.Adam, lr=training.lr)
    task = (
        ClassificationTask(model, num_classes, optimizer)
        if teacher is None
        else DistillationTask(model, num_classes, optimizer, teacher)
    )
    batches = DataLoader(
        TensorDataset(train.images, train.labels),
        batch_size=training.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(training.seed),
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=training.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    model.train()
    with warnings.catch_warnings():  # training only: the task's validation step is not used here
        warnings.filterwarnings("ignore", message=r".*`validation_step` but have no `val_dataloader`.*")
        trainer.fit(task, train_dataloaders=batches)
    return model.eval()
