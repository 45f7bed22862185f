"""The per-run figures: right numbers, readable labels, no crash on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
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


def test_misclassified_grid_labels_each_mistake_under_its_image_and_survives_none() -> None:
    images = torch.rand(4, 1, 8, 8)
    figure = figures.misclassified(images, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 2, 2, 1]), list("abcd"))
    (axis,) = figure.axes  # the tiles of a row are one image
    assert [label.get_text() for label in axis.get_xticklabels()] == ["pred c\ntrue b", "pred b\ntrue d"]
    (shown,) = axis.get_images()
    tiles = np.asarray(shown.get_array())
    assert np.array_equal(tiles[:, :8], images[1, 0]) and np.array_equal(tiles[:, -8:], images[3, 0])
    assert figure.get_suptitle() == "Misclassified test images: 2 of 2 shown"
    none_wrong = figures.misclassified(
        images, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), list("abcd")
    )
    assert not any(axis.get_images() for axis in none_wrong.axes)
    assert none_wrong.get_suptitle() == "Misclassified test images: 0 of 0 shown"


def test_a_100_000_step_curve_is_drawn_as_bucket_means_within_their_min_max_band() -> None:
    steps = np.arange(100_000)
    loss = 2.0 / (1 + steps / 1000) + 0.1 * np.sin(steps)  # a falling loss that wobbles from step to step
    histories = {"train/loss": list(zip(steps.tolist(), loss.tolist(), strict=True)), "val/loss": [(99_999, 0.1)]}
    loss_axis = figures.learning_curves(histories).axes[0]
    train, val = loss_axis.get_lines()
    assert train.get_label() == "train/loss (mean of ~100 steps)" and len(train.get_xdata()) == figures.BUCKETS
    assert val.get_label() == "val/loss" and len(val.get_xdata()) == 1  # short curves: every point
    first = slice(0, 100)  # the first bucket: steps 0-99
    assert train.get_xdata()[0] == pytest.approx(49.5) and train.get_ydata()[0] == pytest.approx(loss[first].mean())
    (band,) = loss_axis.collections
    vertices = band.get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(loss.min()) and vertices[:, 1].max() == pytest.approx(
        loss[first].max()
    )
    assert [text.get_text() for text in loss_axis.get_legend().get_texts()][1] == "min-max"


def test_learning_curves_plot_every_given_series() -> None:
    figure = figures.learning_curves(
        {"train/loss": [(0, 2.0), (1, 1.0)], "val/loss": [(1, 1.5)], "val/acc": [(1, 0.5)]}
    )
    labels = [line.get_label() for axis in figure.axes for line in axis.get_lines()]
    assert labels == ["train/loss", "val/loss", "val/acc"]


@pytest.mark.parametrize(
    "names", [list("0123456789"), ["airplane", "automobile", "bird", "cat"], [f"class_{i}" for i in range(30)]]
)
def test_the_fixed_margins_keep_every_label_inside_the_figure(names: list[str]) -> None:
    labels = torch.arange(len(names)).repeat(3)
    confusion = figures.confusion_matrix(labels, labels.roll(1), names)
    curves = figures.learning_curves({"train/loss": [(step, 1 / (step + 1)) for step in range(0, 100_000, 50)]})
    trials = {"optimizer.lr": [(1e-4, 0.91), (1e-2, 0.97)], "model": [(name, 0.95) for name in names[:4]]}
    objective = figures.objective_by_parameter(trials, "val/acc")
    for figure in (confusion, curves, objective):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        for axis in figure.axes:  # each one's drawn tick labels, axis labels and title (a colorbar's too)
            drawn = axis.get_tightbbox(renderer)
            assert figure.bbox.padded(1).contains(drawn.x0, drawn.y0), (names[:2], axis.get_title())
            assert figure.bbox.padded(1).contains(drawn.x1, drawn.y1), (names[:2], axis.get_title())
