"""Attribution maps of a trained model into its run (`interpret` config section): figures under interpret/, metrics.

On for single runs; a sweep's trials skip them unless `interpret.in_sweep_trials`
(pipeline.workflows.run_plan: most trials are thrown away, and the maps cost seconds each).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
from omegaconf import DictConfig

from pipeline.data.splits import ImageSplits
from pipeline.errors import first_line
from pipeline.interpret import figures
from pipeline.interpret.attributions import Attributions, Settings, explain
from pipeline.rendering import Figures
from pipeline.tracking.run import TrackedRun

log = logging.getLogger("pipeline")


def settings_from(cfg: DictConfig) -> Settings:
    section = cfg.interpret
    return Settings(
        per_class=section.per_class,
        misclassified=section.misclassified,
        mean_per_class=section.mean_per_class,
        ig_steps=section.ig_steps,
        occlusion_window=section.occlusion_window,
        occlusion_stride=section.occlusion_stride,
        perturbations=section.perturbations,
        seed=cfg.seed,
    )


def log_maps(run: TrackedRun, attributions: Attributions, class_names: Sequence[str], drawings: Figures) -> None:
    """The attributions' quality metrics now, and their figures under interpret/ once ``drawings`` are drawn."""
    run.log_metrics(attributions.metrics, step=0)
    mean_figure = "class_mean_ig" if attributions.method == "Integrated Gradients" else "class_mean_occlusion"
    drawings.draw(figures.method_maps, attributions, class_names, artifact_file="interpret/maps.png")
    drawings.draw(figures.class_means, attributions, class_names, artifact_file=f"interpret/{mean_figure}.png")
    drawings.draw(figures.mistakes, attributions, class_names, artifact_file="interpret/misclassified.png")


def log_attributions(
    cfg: DictConfig,
    run: TrackedRun,
    model: torch.nn.Module,
    splits: ImageSplits,
    predicted: torch.Tensor,
    drawings: Figures,
) -> None:
    """Saliency, Integrated Gradients and Occlusion maps of chosen test images, class means, mistakes; their quality."""
    started = time.perf_counter()
    try:
        attributions = explain(model.eval(), splits.test, predicted, len(splits.class_names), settings_from(cfg))
    except RuntimeError as err:  # a backbone Captum cannot differentiate or perturb: the run itself stands
        reason = first_line(str(err))[:500]
        log.warning("interpret: no attribution maps: %s", reason)
        run.set_tags({"interpret.skipped": reason})
        return
    log_maps(run, attributions, splits.class_names, drawings)
    log.info("interpret: attribution maps logged under interpret/ (%.1f s)", time.perf_counter() - started)
