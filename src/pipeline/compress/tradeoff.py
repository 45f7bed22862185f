"""The trade-off figure of the compressed variants: accuracy, with its interval, against size and against latency.

Made for a reviewer: every variant is labelled beside its point without overlapping another label
or point (labels are placed after the layout is fixed, trying a ring of positions), variants the
test set cannot tell apart from fp32 are drawn hollow, fp32 is the starred reference with its
accuracy as a dotted line, and the Pareto front (no other variant both smaller or faster and more
accurate) is ringed and joined by a step line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

from pipeline.plotting import pyplot

LOOKS_ELSEWHERE = 0.95  # attribution agreement with fp32 below which a label says so
# label positions tried around a point, in points: beside it first, then ever further above and below it;
# a thin line always leads from the label to its point (in a dense cluster, nearness alone misleads)
OFFSETS = [(14, 0), (-14, 0)] + [
    (dx, dy * level) for level in range(1, 11) for dy in (14, -14) for dx in (14, -14, 0, 40, -40)
]


@dataclass(frozen=True)
class Panel:
    key: str  # the row's column on the x axis
    axis_label: str
    ticks: Callable[[float, Any], str]
    title: str


PANELS = (
    Panel(
        "size_bytes",
        "serialized size (MB, log scale)",
        lambda value, _: f"{value / 1e6:g}",
        "Accuracy against size (left is smaller)",
    ),
    Panel(
        "latency_b256_ms",
        "CPU latency per batch of 256 (ms, log scale)",
        lambda value, _: f"{value:g}",
        "Accuracy against CPU latency (left is faster)",
    ),
)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points that no other point beats on both axes (smaller x and higher y), from left to right."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda point: (point[0], -point[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def _label(row: dict[str, Any]) -> str:
    text = row["variant"]
    if row["attribution_agreement"] < LOOKS_ELSEWHERE:  # as accurate, maybe, but not for the same reasons
        text += f" (attr {row['attribution_agreement']:.2f})"
    return text


def _place_labels(axis: Axes, labelled: dict[tuple[float, float], list[str]]) -> None:
    """Each point's label at the first position of OFFSETS that overlaps no point, no label and stays inside."""
    renderer = axis.figure.canvas.get_renderer()
    inside = axis.get_window_extent(renderer)
    to_pixels = axis.transData.transform
    taken = [Bbox.from_bounds(*(to_pixels(point) - 6), 12, 12) for point in labelled]  # the markers
    for point, names in sorted(labelled.items(), key=lambda item: -item[0][1]):
        text = ", ".join(names)
        for dx, dy in OFFSETS:
            alignment = "left" if dx > 0 else "right" if dx < 0 else "center"
            style = {"textcoords": "offset points", "fontsize": 10, "ha": alignment, "va": "center"}
            annotation = axis.annotate(text, point, xytext=(dx, dy), **style)
            box = annotation.get_window_extent(renderer).padded(2)  # the text alone (a leader line would add its own)
            annotation.remove()
            fits = inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1)
            if fits and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                line = {"arrowstyle": "-", "color": "0.45", "lw": 0.7, "shrinkA": 1, "shrinkB": 5}
                axis.annotate(text, point, xytext=(dx, dy), arrowprops=line, **style)
                break
        else:  # nowhere free: beside the point, as a last resort
            axis.annotate(text, point, xytext=OFFSETS[0], textcoords="offset points", fontsize=10, va="center")


def _draw_panel(axis: Axes, rows: list[dict[str, Any]], panel: Panel) -> None:
    key, reference = panel.key, rows[0]
    axis.axhline(reference["test_acc"] * 100, color="0.3", linestyle=":", linewidth=1)
    xs = [row[key] for row in rows]
    axis.set_xscale("log")
    axis.set_xlim(min(xs) / 2.2, max(xs) * 2.2)  # room for labels on both sides
    front = pareto_front([(row[key], row["test_acc"] * 100) for row in rows])
    axis.plot(*zip(*front, strict=True), color="tab:green", linestyle="--", linewidth=1.5, drawstyle="steps-post")
    axis.scatter(*zip(*front, strict=True), s=260, facecolors="none", edgecolors="tab:green", linewidths=1.5, zorder=4)
    for index, row in enumerate(rows):
        x, y = row[key], row["test_acc"] * 100
        error = [[y - row["acc_ci95_low"] * 100], [row["acc_ci95_high"] * 100 - y]]
        hollow = index > 0 and row["vs_fp32"] == "n.s."
        axis.errorbar(
            x,
            y,
            yerr=error,
            fmt="*" if index == 0 else "o",
            markersize=13 if index == 0 else 7,
            color="black" if index == 0 else "tab:blue",
            markerfacecolor="white" if hollow else None,
            ecolor="0.6",
            capsize=3,
            zorder=3,
        )
    lows, highs = [row["acc_ci95_low"] * 100 for row in rows], [row["acc_ci95_high"] * 100 for row in rows]
    margin = max(0.5, (max(highs) - min(lows)) * 0.15)
    axis.set_ylim(min(lows) - margin, max(highs) + margin)
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(panel.ticks))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel(panel.axis_label, fontsize=11)
    axis.set_ylabel("test accuracy (%)", fontsize=11)
    axis.set_title(panel.title)
    axis.grid(True, which="both", alpha=0.3)


def tradeoff_figure(rows: list[dict[str, Any]]) -> Figure:
    """Two panels from `variant_rows` (fp32 first): accuracy against size and against latency."""
    figure, axes = pyplot().subplots(1, 2, figsize=(13, 5.6), layout="constrained")
    for axis, panel in zip(axes, PANELS, strict=True):
        _draw_panel(axis, rows, panel)
    legend = [
        Line2D([], [], marker="*", color="black", markersize=12, linestyle=":", label="fp32 (reference)"),
        Line2D([], [], marker="o", color="tab:blue", linestyle="", label="differs from fp32 (McNemar p < 0.05)"),
        Line2D(
            [],
            [],
            marker="o",
            color="tab:blue",
            markerfacecolor="white",
            linestyle="",
            label="not told apart from fp32",
        ),
        Line2D([], [], color="0.6", marker="|", markersize=12, linestyle="", label="95 % bootstrap interval"),
        Line2D(
            [],
            [],
            color="tab:green",
            marker="o",
            markerfacecolor="none",
            markersize=14,
            linestyle="--",
            label="Pareto front",
        ),
    ]
    figure.legend(handles=legend, loc="outside lower center", ncol=5, fontsize=10, frameon=False)
    figure.canvas.draw()  # the layout settles first: labels are placed in its final pixels
    figure.set_layout_engine("none")
    for axis, panel in zip(axes, PANELS, strict=True):
        _place_labels(axis, _labels_by_point(rows, panel.key))
    return figure


def _labels_by_point(rows: list[dict[str, Any]], key: str) -> dict[tuple[float, float], list[str]]:
    """Each point's labels: variants at the same point (x within 1 %, accuracy within 0.05 points) share one."""
    merged: dict[tuple[float, float], list[str]] = {}
    for row in rows:
        x, y = row[key], row["test_acc"] * 100
        point = next(
            (
                point
                for point in merged
                if math.isclose(point[0], x, rel_tol=0.01) and math.isclose(point[1], y, abs_tol=0.05)
            ),
            (x, y),
        )
        merged.setdefault(point, []).append(_label(row))
    return merged
