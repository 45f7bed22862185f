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
from pipeline.trainer import quiet_lightning


@dataclass(frozen=True)
class Training:
    """How a compressed model is trained: epochs of Adam at ``lr`` over the run's training split."""

    epochs: int
    lr: float
    batch_size: int
    seed: int


@dataclass(frozen=True)
class Teacher:
    """A trained model's logits of the training images (`teacher_logits`, computed once for every student),
    which, softened by ``temperature``, make ``weight`` of the student's loss."""

    logits: torch.Tensor
    temperature: float
    weight: float


class DistillationTask(ClassificationTask):
    """The classification task whose training loss also pulls the student's outputs toward the teacher's
    (Hinton et al. 2015: KL divergence of the softened distributions, scaled by the temperature squared).
    Its batches carry the teacher's logits of each image as a third tensor, computed once before training."""

    def __init__(self, model: nn.Module, num_classes: int, optimizer: partial, teacher: Teacher) -> None:
        super().__init__(model, num_classes, optimizer)
        self.temperature, self.weight = teacher.temperature, teacher.weight

    def training_loss(self, batch: tuple[torch.Tensor, ...], logits: torch.Tensor) -> torch.Tensor:
        _, labels, teacher_logits = batch
        temperature = self.temperature
        targets = F.log_softmax(teacher_logits / temperature, dim=1)
        softened = F.log_softmax(logits / temperature, dim=1)
        distill = F.kl_div(softened, targets, log_target=True, reduction="batchmean") * temperature**2
        return self.weight * distill + (1 - self.weight) * F.cross_entropy(logits, labels)


def teacher_logits(teacher: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The teacher's logits of every training image: fixed while the student trains (no augmentation here)."""
    with torch.inference_mode():
        return torch.cat(
            [teacher.eval()(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
        )


def fine_tune(model: nn.Module, train: Split, training: Training, teacher: Teacher | None = None) -> nn.Module:
    """``model`` trained in place (pruning masks, if any, stay applied) and returned in eval mode."""
    if training.epochs == 0:
        return model.eval()
    quiet_lightning()
    torch.manual_seed(training.seed)  # dropout
    with torch.no_grad():
        num_classes = model.eval()(train.images[:1]).shape[1]
    optimizer = partial(torch.optim.Adam, lr=training.lr)
    task = (
        ClassificationTask(model, num_classes, optimizer)
        if teacher is None
        else DistillationTask(model, num_classes, optimizer, teacher)
    )
    tensors = [train.images, train.labels] + ([teacher.logits] if teacher else [])
    batches = DataLoader(
        TensorDataset(*tensors),
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
