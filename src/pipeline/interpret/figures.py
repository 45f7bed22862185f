"""Figures of attribution maps: red pixels raise the explained class's logit, blue ones lower it.

Each map is summed over channels and scaled to its own largest magnitude, so every map uses the
whole colour range and maps of different methods sit side by side. The tiles of a row are drawn as
one image (one `imshow` per row, not one axis per tile): a figure of 80 tiles draws in a fraction of
a second instead of seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.interpret.attributions import Attributions, Examples
from pipeline.plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

GAP = 3  # pixels between tiles
COLUMNS = 10  # tiles per row at most
SHORT = {"Integrated Gradients": "IG", "Occlusion": "Occlusion"}  # row labels of a method
SCALE_NOTE = "red raises the class's logit, blue lowers it; each map scaled to its largest magnitude"


def scaled(maps: torch.Tensor) -> np.ndarray:
    """K x C x H x W attributions -> K x H x W, summed over channels, each in [-1, 1]."""
    summed = maps.float().sum(1)
    peak = summed.abs().flatten(1).max(1).values.clamp_min(1e-12) if len(summed) else torch.ones(0)
    return (summed / peak[:, None, None]).numpy()


def pictures(images: torch.Tensor) -> np.ndarray:
    """K x C x H x W images in [0, 1] -> K x H x W (one channel) or K x H x W x 3."""
    pixels = images.permute(0, 2, 3, 1).clamp(0, 1).numpy()
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def strip(tiles: np.ndarray) -> np.ndarray:
    """Tiles side by side with a blank (NaN: drawn white) gap between them."""
    gap = np.full((tiles.shape[1], GAP, *tiles.shape[3:]), np.nan)
    parts = [part for tile in tiles for part in (tile, gap)][:-1]
    return np.concatenate(parts, axis=1)


def _row(axis: Axes, tiles: np.ndarray, label: str, cmap: Colormap, signed: bool) -> object:
    limits = {"vmin": -1, "vmax": 1} if signed else {"vmin": 0, "vmax": 1}
    shown = axis.imshow(strip(tiles), cmap=cmap, interpolation="nearest", **limits)
    axis.set_yticks([])
    axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    for side in axis.spines.values():
        side.set_visible(False)
    width = tiles.shape[2]
    axis.set_xticks([index * (width + GAP) + (width - 1) / 2 for index in range(len(tiles))], [])
    axis.tick_params(length=0)
    return shown


def _tick_labels(axis: Axes, labels: Sequence[str]) -> None:
    axis.set_xticklabels(labels, fontsize=7 if max(map(len, labels), default=0) > 8 else 8)


def grid(rows: Sequence[tuple[str, np.ndarray, bool]], labels: Sequence[str], title: str) -> Figure:
    """Rows of tiles (name, tiles, signed), cut into blocks of COLUMNS; ``labels`` name the tiles' columns."""
    count = len(labels)
    blocks = [range(start, min(start + COLUMNS, count)) for start in range(0, count, COLUMNS)] or [range(0)]
    axes_count = len(blocks) * len(rows)
    width = min(count, COLUMNS) * 1.05 + 2.6
    plt = pyplot()
    diverging, gray = (plt.colormaps[name].with_extremes(bad="white") for name in ("RdBu_r", "gray"))
    figure, axes = plt.subplots(axes_count, 1, figsize=(width, 1.25 * axes_count + 1.0), squeeze=False)
    figure.subplots_adjust(left=1.6 / width, right=1 - 0.9 / width, top=1 - 0.75 / figure.get_figheight(), hspace=0.55)
    shown = None
    for block_number, block in enumerate(blocks):
        for row_number, (name, tiles, signed) in enumerate(rows):
            axis = axes[block_number * len(rows) + row_number, 0]
            if not len(block):
                axis.axis("off")
                continue
            image = _row(axis, tiles[list(block)], name, diverging if signed else gray, signed)
            if signed:
                shown = image
            _tick_labels(axis, [labels[index] for index in block])
    if shown is not None:
        colorbar = figure.colorbar(shown, ax=axes[:, 0].tolist(), fraction=0.02, pad=0.02)
        colorbar.set_ticks([-1, 0, 1], labels=["-max", "0", "+max"])
    figure.suptitle(title, fontsize=10)
    return figure


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
