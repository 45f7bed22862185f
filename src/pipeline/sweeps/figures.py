"""The study's own figures for the sweep's parent run: optimisation history and parameter importances."""

from __future__ import annotations

import logging
import warnings
from typing import Any

log = logging.getLogger("pipeline")


def study_figures(study: Any) -> dict[str, Any]:
    """{artifact path: matplotlib figure}; importances need two or more completed trials and parameters."""
    from pipeline.plotting import pyplot

    plt = pyplot()  # on Agg before optuna imports pyplot
    from optuna.visualization import matplotlib as plots

    figures: dict[str, Any] = {}
    # optuna switches matplotlib to its ggplot style: keep that inside its own figures
    with warnings.catch_warnings(), plt.rc_context():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        history = plots.plot_optimization_history(study, target_name=study.user_attrs.get("objective", "objective"))
        figures["sweep/optimization_history.png"] = _sized(history.figure)
        try:
            importances = plots.plot_param_importances(study)
            figures["sweep/param_importances.png"] = _sized(importances.figure)
        except (RuntimeError, ValueError) as err:  # too few trials or parameters to rank
            log.info("no parameter importances: %s", err)
    return figures


def _sized(figure: Any) -> Any:
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    return figure
