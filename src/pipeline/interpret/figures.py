"""Figures of attribution maps: red pixels raise the explained class's logit, blue ones lower it.

Each map is summed over channels and scaled to its own largest magnitude, so every map uses the
whole colour range and maps of different methods sit side by side, in rows of tiles
(`pipeline.tile_grid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.interpret.attributions import Attributions, Examples
from pipeline.tile_grid import grid, pictures

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SHORT = {"Integrated Gradients": "IG", "Occlusion": "Occlusion"}  # row labels of a method
SCALE_NOTE = "red raises the class's logit, blue lowers it; each map scaled to its largest magnitude"


def scaled(maps: torch.Tensor) -> np.ndarray:
    """K x C x H x W attributions -> K x H x W, summed over channels, each in [-1, 1]."""
    summed = maps.float().sum(1)
    peak = summed.abs().flatten(1).max(1).values.clamp_min(1e-12) if len(summed) else torch.ones(0)
    return (summed / peak[:, None, None]).numpy()


def _names(examples: Examples, class_names: Sequence[str]) -> list[str]:
    return [
        f"{class_names[int(true)]}" if true == guess else f"{class_names[int(true)]}→{class_names[int(guess)]}"
        for true, guess in zip(examples.labels, examples.predicted, strict=True)
    ]


def method_maps(attributions: Attributions, class_names: Sequence[str]) -> Figure:
    """Each chosen test image and its maps (Saliency, Integrated Gradients, Occlusion), toward the predicted class."""
    examples = attributions.examples
    rows = [("input", pictures(examples.images), False)]
    rows += [(name, scaled(maps), True) for name, maps in attributions.maps.items()]
    return grid(
        rows,
        _names(examples, class_names),
        f"What the model looks at, toward the class it predicted (true→predicted where wrong)\n{SCALE_NOTE}",
    )


def class_means(attributions: Attributions, class_names: Sequence[str]) -> Figure:
    """The mean map of each class (Integrated Gradients, or Occlusion), over correctly classified test images."""
    labels = [f"{name}\n({count})" for name, count in zip(class_names, attributions.class_counts, strict=True)]
    method = attributions.method
    return grid(
        [(f"mean\n{SHORT[method]}", scaled(attributions.class_means), True)],
        labels,
        f"Mean {method} per class over correctly classified test images (in brackets: how many)\n{SCALE_NOTE}",
    )


def mistakes(attributions: Attributions, class_names: Sequence[str]) -> Figure:
    """Each misclassified image with its map (Integrated Gradients, or Occlusion) toward the predicted and the true class."""
    wrong = attributions.mistakes
    labels = [
        f"true {class_names[int(true)]}\npred {class_names[int(guess)]}"
        for true, guess in zip(wrong.labels, wrong.predicted, strict=True)
    ]
    rows = [
        ("input", pictures(wrong.images), False),
        ("toward\npredicted", scaled(attributions.toward_predicted), True),
        ("toward\ntrue", scaled(attributions.toward_true), True),
    ]
    title = (
        f"Misclassified test images: {attributions.method} toward the predicted and the true class\n{SCALE_NOTE}"
        if len(wrong.labels)
        else "No misclassified test images"
    )
    return grid(rows, labels, title)
