"""Figures a reviewer looks at instead of reading numbers: learning curves, confusion matrix, mistakes.

Plain matplotlib (Agg backend), no MLflow: `pipeline.tracking.run` logs what these return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.plotting import pyplot
from pipeline.tile_grid import grid, pictures

if TYPE_CHECKING:
    from matplotlib.figure import Figure

History = Sequence[tuple[int, float]]  # (step, value)
# per curve: a 100,000-step history is drawn as 1,000 buckets (mean, and a min-max band) in the time of a short one
MAX_DRAWN_POINTS = 2000
BUCKETS = 1000
# FIXED_LAYOUT: margins set here, not by matplotlib's constrained layout, which measures every label
# in an extra draw before the real one (0.1-0.3 s a figure, and every run draws two of them)


def predictions(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted class of every image, in evaluation mode."""
    model.eval()
    with torch.inference_mode():
        return torch.cat(
            [model(images[start : start + batch_size]).argmax(dim=1) for start in range(0, len(images), batch_size)]
        )


def bucketed(points: History, buckets: int) -> tuple[np.ndarray, ...]:
    """(mean step, mean, min, max) of ``buckets`` runs of consecutive points, of near-equal length."""
    steps, values = np.asarray(points, dtype=np.float64).T
    starts = np.linspace(0, len(values), buckets + 1).astype(int)[:-1]
    counts = np.diff(np.append(starts, len(values)))
    return (
        np.add.reduceat(steps, starts) / counts,
        np.add.reduceat(values, starts) / counts,
        np.minimum.reduceat(values, starts),
        np.maximum.reduceat(values, starts),
    )


def learning_curves(histories: Mapping[str, History]) -> Figure:
    """Loss and accuracy against the optimizer step: training (per step or epoch) and validation (per epoch).

    A curve of more than MAX_DRAWN_POINTS points is drawn as the means of BUCKETS runs of steps with
    their min-max band: the same picture, without drawing (and storing in the PNG's time) every step.
    """
    figure, (loss_axis, acc_axis) = pyplot().subplots(1, 2, figsize=(11, 4))
    figure.subplots_adjust(left=0.065, right=0.99, bottom=0.12, top=0.92, wspace=0.2)  # fixed: see FIXED_LAYOUT
    for axis, metric, title in ((loss_axis, "loss", "Cross-entropy loss"), (acc_axis, "acc", "Accuracy")):
        for stage, style in (("train", {"alpha": 0.5, "linewidth": 1}), ("val", {"marker": "o", "linewidth": 2})):
            points = histories.get(f"{stage}/{metric}", [])
            if len(points) > MAX_DRAWN_POINTS:
                steps, mean, low, high = bucketed(points, BUCKETS)
                every = len(points) / BUCKETS
                line = axis.plot(steps, mean, label=f"{stage}/{metric} (mean of ~{every:.0f} steps)", linewidth=1)[0]
                axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.25, linewidth=0, label="min-max")
            elif points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, label=f"{stage}/{metric}", **style)
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel(metric)
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:  # a metric the run did not log: an empty axis, no empty legend
            axis.legend()
    return figure


def confusion_counts(labels: torch.Tensor, predicted: torch.Tensor, classes: int) -> np.ndarray:
    """counts[true, predicted] over all images."""
    return torch.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes).numpy()


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, class_names: Sequence[str]) -> Figure:
    """Counts of (true, predicted) pairs on the test split, with the class names on both axes."""
    classes = len(class_names)
    counts = confusion_counts(labels, predicted, classes)
    size = max(5.0, 0.55 * classes + 2)
    longest = max(map(len, class_names))
    below, beside = 0.8 + 0.06 * longest, 0.7 + 0.07 * longest  # inches for the (slanted) class names; FIXED_LAYOUT
    width, height = size + 1 + beside - 0.8, size + below - 0.8
    figure, axis = pyplot().subplots(figsize=(width, height))
    figure.subplots_adjust(left=beside / width, right=1 - 0.3 / width, bottom=below / height, top=1 - 0.45 / height)
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis, shrink=0.8, label="test images")
    axis.set_xticks(range(classes), class_names, rotation=45 if longest > 2 else 0, ha="right")
    axis.set_yticks(range(classes), class_names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axis.set_title(f"Confusion matrix on {counts.sum()} test images (accuracy {accuracy:.3f})")
    threshold = counts.max() / 2
    for true in range(classes):
        for guess in range(classes):
            if counts[true, guess]:
                color = "white" if counts[true, guess] > threshold else "black"
                axis.text(guess, true, str(counts[true, guess]), ha="center", va="center", fontsize=8, color=color)
    return figure


def misclassified(
    images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor, class_names: Sequence[str], limit: int = 25
) -> Figure:
    """Up to ``limit`` misclassified test images, each labelled with its predicted and true class."""
    wrong = torch.nonzero(predicted != labels).flatten()[:limit].tolist()
    names = [f"pred {class_names[predicted[index]]}\ntrue {class_names[labels[index]]}" for index in wrong]
    total = int((predicted != labels).sum())
    return grid(
        [("", pictures(images[wrong]), False)], names, f"Misclassified test images: {len(wrong)} of {total} shown"
    )


def objective_by_parameter(points: Mapping[str, Sequence[tuple[float | str, float]]], objective: str) -> Figure:
    """One panel per swept parameter: the objective of each trial against that parameter's value."""
    width = 4.5 * len(points)
    figure, axes = pyplot().subplots(1, len(points), figsize=(width, 4), squeeze=False)
    figure.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width, bottom=0.15, top=0.88, wspace=0.35)  # FIXED_LAYOUT
    for axis, (parameter, trials) in zip(axes[0], points.items(), strict=True):
        values = [value for value, _ in trials]
        numeric = all(isinstance(value, float) for value in values)
        categories = sorted({str(value) for value in values})
        xs = values if numeric else [categories.index(str(value)) for value in values]
        axis.scatter(xs, [score for _, score in trials], s=45)
        if numeric and min(values) > 0 and max(values) / min(values) >= 10:
            axis.set_xscale("log")
        if not numeric:
            axis.set_xticks(range(len(categories)), categories)
        elif len(set(values)) <= 8:  # a grid: label exactly the values tried
            axis.set_xticks(sorted(set(values)), [f"{value:g}" for value in sorted(set(values))])
            axis.minorticks_off()
        axis.set_xlabel(parameter)
        axis.set_ylabel(objective)
        axis.grid(True, alpha=0.3)
    figure.suptitle(f"{objective} of each trial against each swept parameter")
    return figure
