"""Pruning from inside a trial: report the objective per epoch, stop when the pruner says so."""

from __future__ import annotations

import math
import os
from typing import Any

import pytorch_lightning as pl

from pipeline.sweeps.trial import PRUNED_AT, TrialLink


def per_epoch_objective(objective: str) -> tuple[str, bool]:
    """The metric each validation reports for ``objective``, and whether to keep its running best.

    `best/val_acc` is the best `val/acc` so far; any other objective is reported as logged.
    """
    if objective.startswith("best/"):
        return objective.removeprefix("best/").replace("_", "/", 1), True
    return objective, False


_trial_storages: dict[tuple[int, str], Any] = {}  # (process, database URL) -> the cached storage its trials share


def trial_storage(url: str) -> Any:
    """One storage per process and study database, shared by the trials the process runs.

    A sweep's trials run one after another in the sweeping process (or in a pool's workers):
    each loading the study afresh connected anew and read every earlier trial again for its
    pruner, a cost that grew with the study. The shared storage's cache reads only what changed.
    """
    import optuna

    from pipeline.sweeps.optuna_internals import cached
    from pipeline.sweeps.study import engine_kwargs

    key = (os.getpid(), url)  # a forked worker opens its own connections
    if key not in _trial_storages:
        _trial_storages[key] = cached(optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url)))
    return _trial_storages[key]


class ReportToOptuna(pl.Callback):
    """After each validation, report the objective to the trial; stop the run when the pruner says so.

    Rank 0 reports and asks the pruner; the decision is shared with every DDP rank. The callback
    holds plain data (ddp_spawn pickles callbacks into its workers) and opens the study lazily.
    """

    def __init__(self, link: TrialLink, objective: str, direction: str) -> None:
        self.link, self.direction = link, direction
        self.metric, self.keep_best = per_epoch_objective(objective)
        self.best: float | None = None
        self._trial: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trial": None}

    def _optuna_trial(self) -> Any:
        if self._trial is None:
            import optuna

            from pipeline.sweeps.study import instantiate_optuna

            pruner = instantiate_optuna(self.link.pruner, "pruner") or optuna.pruners.NopPruner()
            study = optuna.load_study(
                study_name=self.link.study, storage=trial_storage(self.link.storage), pruner=pruner
            )
            self._trial = optuna.Trial(study, self.link.trial_id)
        return self._trial

    def _value(self, trainer: pl.Trainer) -> float | None:
        if self.metric not in trainer.callback_metrics:
            return None
        value = float(trainer.callback_metrics[self.metric])
        if self.keep_best and self.best is not None:
            value = (max if self.direction == "maximize" else min)(value, self.best)
        self.best = value
        return value if math.isfinite(value) else None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        prune = False
        value = self._value(trainer)
        if trainer.is_global_zero and value is not None:
            trial = self._optuna_trial()
            trial.report(value, trainer.current_epoch)
            if trial.should_prune():
                trial.set_user_attr(PRUNED_AT, trainer.current_epoch)
                prune = True
        if trainer.strategy.reduce_boolean_decision(prune, all=False):
            trainer.should_stop = True
