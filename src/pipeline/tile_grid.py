"""Image tiles drawn as rows of one image each, labelled per tile: a figure of dozens of small images.

One `imshow` per row of tiles (not one axis per tile): a figure of 80 tiles draws in a fraction of
a second instead of seconds, and 25 titled axes (the old grid of misclassified images) took 0.7 s
of every run. Used by the run's grid of misclassified images (`pipeline.figures`) and by the
attribution maps (`pipeline.interpret.figures`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

GAP = 3  # pixels between tiles
COLUMNS = 10  # tiles per row at most


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
