"""Optuna search behind a Hydra sweeper (hydra_plugins.pipeline_sweeps.optuna_sweeper runs the ask / run / tell loop).

space: Hydra's sweep syntax -> Optuna distributions; study: the persistent study (heartbeats,
retries of lost trials, counting); trial: which trial a job runs; pruning: the per-epoch
reports and the pruner's stop; figures: the study's plots for the sweep's parent run.
"""
