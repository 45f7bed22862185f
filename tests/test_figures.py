"""The per-run figures: right numbers, readable labels, no crash on edge cases."""

from __future__ import annotations

import numpy as np
import torch

from pipeline import figures


def test_confusion_counts_put_true_classes_on_rows() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 2, 2, 0])
    assert np.array_equal(figures.confusion_counts(labels, predicted, 3), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_confusion_matrix_is_labelled_with_class_names() -> None:
    figure = figures.confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), ["cat", "dog"])
    axis = figure.axes[0]
    assert [tick.get_text() for tick in axis.get_xticklabels()] == ["cat", "dog"]
    assert axis.get_xlabel() == "predicted class" and axis.get_ylabel() == "true class"
    assert "accuracy 0.667" in axis.get_title()


def test_misclassified_grid_titles_each_mistake_and_survives_none() -> None:
    images = torch.rand(4, 1, 8, 8)
    figure = figures.misclassified(images, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 2, 1]), list("abcd"))
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles == ["pred c\ntrue b", "pred b\ntrue d"]
    none_wrong = figures.misclassified(
        images, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), list("abcd")
    )
    assert [axis.get_title() for axis in none_wrong.axes if axis.get_title()] == []
    assert none_wrong.get_suptitle() == "Misclassified test images: 0 of 0 shown"


def test_learning_curves_plot_every_given_series() -> None:
    figure = figures.learning_curves(
        {"train/loss": [(0, 2.0), (1, 1.0)], "val/loss": [(1, 1.5)], "val/acc": [(1, 0.5)]}
    )
    labels = [line.get_label() for axis in figure.axes for line in axis.get_lines()]
    assert labels == ["train/loss", "val/loss", "val/acc"]
