"""Sweeps: a Hydra multirun is one parent MLflow run with one child run per trial.

parent_run: the Hydra callback that opens and closes the parent run (its MLflow side is
pipeline.tracking.sweep_runs). The Optuna search, run by hydra_plugins.pipeline_sweeps (Hydra
finds plugins only there): space (Hydra's sweep syntax -> Optuna distributions), study (the
persistent study: heartbeats, retries of lost trials, counting), trial (which trial a job runs),
pruning (per-epoch reports and the pruner's stop), figures (the study's plots), optuna_internals
(every use of Optuna's private API).
"""
