"""Optuna search behind a Hydra sweeper (hydra_plugins.pipeline_sweeps).

space: Hydra's sweep syntax -> Optuna distributions; study: the persistent study (heartbeats,
retries of lost trials, counting); trial: what a trial's process does (pruning reports);
and hydra_plugins.pipeline_sweeps.optuna_sweeper the ask / launch / tell loop.
"""
