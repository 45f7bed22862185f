"""What a run does after its test, read from its config alone (no torch, no MLflow).

The command line asks before its heavy imports, to start the figure worker only for a run whose
figures have other work to overlap; `train()` asks the same questions, so both agree.
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.sweeps.parent_run import parent_run_id


def deferred_to_sweep_end(cfg: DictConfig, resuming: bool) -> list[str]:
    """What a sweep's new trial leaves for the best trial (sweep.log_models=best): "model", "compression".

    Most trials of a sweep are thrown away: exporting and compressing each one cost more than its
    training. The run records what it deferred (`sweep.deferred`), for the sweep's end.
    """
    if parent_run_id() is None or resuming or cfg.sweep.log_models != "best":
        return []
    return [
        part for part, wanted in (("model", cfg.tracking.log_model), ("compression", cfg.compression.enabled)) if wanted
    ]


def exports_model(cfg: DictConfig, resuming: bool) -> bool:
    return bool(cfg.tracking.log_model) and "model" not in deferred_to_sweep_end(cfg, resuming)


def attributions_wanted(cfg: DictConfig) -> bool:
    """On for single runs; a sweep's trials skip them unless `interpret.in_sweep_trials` (the maps cost seconds)."""
    return bool(cfg.interpret.enabled) and (parent_run_id() is None or bool(cfg.interpret.in_sweep_trials))


def figures_in_worker(cfg: DictConfig, resuming: bool) -> bool:
    """Figures pay for a worker process (~3 CPU-seconds of imports) only while the run exports a model or
    computes attribution maps; a sweep trial that does neither draws them faster itself."""
    return exports_model(cfg, resuming) or attributions_wanted(cfg)
