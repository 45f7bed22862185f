"""The Markdown a run's MLflow page shows as its description: the run's story in a few lines.

Plain strings, no MLflow: `pipeline.tracking.run` writes them (tag `mlflow.note.content`, shown on
the run's Overview). Figure links use the MLflow UI's own route to an artifact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def run_title(cfg: Any) -> str:
    """`CNN on mnist_subset`: the model class and the data set of a run's config."""
    return f"{cfg.model._target_.rsplit('.', 1)[-1]} on {cfg.data.name}"


def artifact_link(experiment_id: str, run_id: str, path: str) -> str:
    name = path.removesuffix(".png")  # the folder too: figures/misclassified and interpret/misclassified differ
    return f"[{name}](#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path})"


def _variants_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| variant | test acc | Δ acc (points) | vs fp32 (McNemar) | size × | b256 speed-up × | attribution agreement |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['test_acc']:.4f} | {row['acc_delta'] * 100:+.2f} | {row['vs_fp32']} "
            f"| {row['size_ratio']:.2f} "
            f"| {row['speedup_b256']:.2f} | {row['attribution_agreement']:.3f} |"
        )
    return lines


def training_summary(
    title: str,
    metrics: Mapping[str, float],
    variants: Sequence[Mapping[str, Any]],
    figures: Sequence[str],
    experiment_id: str,
    run_id: str,
) -> str:
    """The test result with its interval, the compressed variants, and links to every figure."""
    lines = [f"### {title}", ""]
    if "test/acc" in metrics:
        interval = (
            f" (95% interval {metrics['test/acc_ci95_low']:.4f} to {metrics['test/acc_ci95_high']:.4f}"
            f" over {int(metrics.get('test/samples', 0))} test images)"
            if "test/acc_ci95_low" in metrics
            else ""
        )
        lines.append(f"Test accuracy **{metrics['test/acc']:.4f}**{interval}, test loss {metrics['test/loss']:.4f}.")
    if "best/val_acc" in metrics:
        lines.append(f"Best validation accuracy {metrics['best/val_acc']:.4f}.")
    if variants:
        lines += ["", "Compressed variants (measured on the same test split, fp32 first):", ""]
        lines += _variants_table(variants)
    if figures:
        lines += ["", "Figures: " + " · ".join(artifact_link(experiment_id, run_id, path) for path in figures)]
    return "\n".join(lines) + "\n"


def evaluation_summary(title: str, report: str, figures: Sequence[str], experiment_id: str, run_id: str) -> str:
    """An evaluation run's report (accuracy with its interval, per-class table) and links to its figures."""
    lines = [f"### {title}", "", "```", report, "```"]
    if figures:
        lines += ["", "Figures: " + " · ".join(artifact_link(experiment_id, run_id, path) for path in figures)]
    return "\n".join(lines) + "\n"


def sweep_summary(
    trials: int,
    finished: int,
    objective: str,
    best_value: float,
    best_run_id: str,
    best_params: Mapping[str, str],
    best_model: str | None,
    experiment_id: str,
) -> str:
    """The sweep's best trial, its value and parameters, and where its model is registered."""
    lines = [
        f"### Sweep of {trials} trials ({finished} finished)",
        "",
        f"Best trial: [{best_run_id}](#/experiments/{experiment_id}/runs/{best_run_id}) with "
        f"{objective} = **{best_value:.4f}**.",
    ]
    if best_params:
        lines += ["", "| parameter | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in best_params.items()]
    if best_model:
        lines += ["", f"Its model: `{best_model}`."]
    return "\n".join(lines) + "\n"
