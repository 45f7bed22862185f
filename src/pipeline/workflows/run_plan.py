"""What a run does after its test, read from its config alone (no torch, no MLflow).

The command line asks before its heavy imports, to start the figure worker only for a run whose
figures have other work to overlap; `train()` follows the same plan, so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from pipeline.sweeps.parent_run import parent_run_id

MISCLASSIFIED_FIGURE = "figures/misclassified.png"  # drawn by the run, or for a sweep's best trial at the sweep's end


@dataclass(frozen=True)
class RunPlan:
    deferred: tuple[str, ...]  # what a sweep's trial leaves for the best trial: "model", "compression", "misclassified"
    exports_model: bool
    compresses: bool
    attributions: bool  # attribution maps of the trained model
    draws_misclassified: bool  # the grid of misclassified test images, the costliest of the run's figures

    @property
    def figures_in_worker(self) -> bool:
        """Figures pay for a worker process (~3 CPU-seconds of imports) only while the run exports a model or
        computes attribution maps; a sweep trial that does neither draws them faster itself."""
        return self.exports_model or self.attributions


def plan_run(cfg: DictConfig, resuming: bool) -> RunPlan:
    """The plan of a run of ``cfg``; ``resuming`` a stored run does all its work itself.

    Most trials of a sweep (sweep.log_models=best) are thrown away: exporting and compressing each one
    cost more than its training, and its grid of misclassified images (~0.15 s, a tenth of a small
    trial's training) would be paid by every trial for the one that is kept. A new trial defers them to
    the sweep's end, which makes them for the best trial from its checkpoint, and records that
    (`sweep.deferred`); the light figures stay.
    """
    deferring = parent_run_id() is not None and not resuming and cfg.sweep.log_models == "best"
    wanted = {
        "model": cfg.tracking.log_model,
        "compression": cfg.compression.enabled,
        "misclassified": cfg.tracking.log_checkpoint,  # the sweep's end rebuilds the model from the checkpoint
    }
    deferred = tuple(part for part, want in wanted.items() if want and deferring)
    return RunPlan(
        deferred,
        exports_model=bool(cfg.tracking.log_model) and "model" not in deferred,
        compresses=bool(cfg.compression.enabled) and "compression" not in deferred,
        attributions=attributions_wanted(cfg),
        draws_misclassified="misclassified" not in deferred,
    )


def attributions_wanted(cfg: DictConfig) -> bool:
    """On for single runs; a sweep's trials skip them unless `interpret.in_sweep_trials` (the maps cost seconds)."""
    return bool(cfg.interpret.enabled) and (parent_run_id() is None or bool(cfg.interpret.in_sweep_trials))
