"""Scores of a classifier's logits on a labelled split: accuracy with its bootstrap interval, loss, per class.

Plain torch, no MLflow: `pipeline.workflows.evaluate` logs what these return. The interval is
there because a test split is a sample: with 1,000 images, one point of accuracy is noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class ClassScores:
    name: str
    precision: float  # of the images predicted as this class, the share that are (0 if none was)
    recall: float  # of the images of this class, the share predicted as it (0 if the split has none)
    f1: float
    support: int  # images of this class in the split


@dataclass(frozen=True)
class Scores:
    samples: int
    accuracy: float
    accuracy_low: float  # bootstrap interval of the accuracy at LEVEL
    accuracy_high: float
    loss: float  # mean cross-entropy
    per_class: tuple[ClassScores, ...]

    @property
    def macro_f1(self) -> float:
        present = [scores.f1 for scores in self.per_class if scores.support]
        return sum(present) / max(len(present), 1)

    def accuracy_line(self) -> str:
        """The accuracy with its interval and what the interval means for comparisons, in one line."""
        half_width = (self.accuracy_high - self.accuracy_low) / 2 * 100
        return (
            f"accuracy {self.accuracy:.4f}, {LEVEL:.0%} interval [{self.accuracy_low:.4f}, {self.accuracy_high:.4f}] "
            f"(bootstrap over {self.samples} images: differences under about {half_width:.1f} points are noise)"
        )


def bootstrap_interval(
    correct: torch.Tensor, seed: int, resamples: int = RESAMPLES, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``correct`` (1 per right answer, 0 per wrong one).

    Seeded: the same predictions give the same interval, so a rerun reproduces it.
    """
    generator = torch.Generator().manual_seed(seed)
    values = correct.double()
    means = torch.cat(
        [
            values[torch.randint(len(values), (min(100, resamples - done), len(values)), generator=generator)].mean(1)
            for done in range(0, resamples, 100)  # 100 resamples at a time: 10,000 images stay a few MB
        ]
    )
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return low, high


def mcnemar_p(reference_correct: torch.Tensor, correct: torch.Tensor) -> float:
    """Exact two-sided McNemar test of two classifiers on the same images: the p-value of their disagreements.

    Only images where exactly one of the two is right count; under "equally accurate" each such
    image goes either way with probability 1/2 (a binomial test). A small p: the accuracies differ.
    """
    only_reference = int((reference_correct & ~correct).sum())
    only_other = int((~reference_correct & correct).sum())
    discordant = only_reference + only_other
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_reference, only_other) + 1))
    return min(1.0, 2 * tail / 2**discordant)


def class_scores(labels: torch.Tensor, predicted: torch.Tensor, class_names: Sequence[str]) -> tuple[ClassScores, ...]:
    scores = []
    for index, name in enumerate(class_names):
        true_positives = int(((predicted == index) & (labels == index)).sum())
        predicted_count, support = int((predicted == index).sum()), int((labels == index).sum())
        precision = true_positives / predicted_count if predicted_count else 0.0
        recall = true_positives / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append(ClassScores(name, precision, recall, f1, support))
    return tuple(scores)


def score(logits: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], seed: int) -> Scores:
    """Every score of ``logits`` (N x classes) against ``labels`` (N)."""
    predicted = logits.argmax(dim=1)
    correct = predicted == labels
    low, high = bootstrap_interval(correct, seed)
    return Scores(
        samples=len(labels),
        accuracy=float(correct.double().mean()),
        accuracy_low=low,
        accuracy_high=high,
        loss=float(F.cross_entropy(logits.float(), labels)),
        per_class=class_scores(labels, predicted, class_names),
    )
