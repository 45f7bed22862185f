"""The trial side of an Optuna sweep: who this trial is, and the pruning callback.

The sweeper tells each trial's job its study and trial through `hydra.job.env_set`, so it
reaches the job in any launcher (in-process, joblib workers, SLURM). Storage and pruner are
read from the job's own Hydra config (`hydra.sweeper`), which every job carries.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import pytorch_lightning as pl

STUDY_ENV = "PIPELINE_OPTUNA_STUDY"
TRIAL_ID_ENV = "PIPELINE_OPTUNA_TRIAL_ID"
TRIAL_NUMBER_ENV = "PIPELINE_OPTUNA_TRIAL_NUMBER"
PRUNED_AT = "pruned_at_epoch"  # trial user attribute the sweeper reads to tell PRUNED


@dataclass(frozen=True)
class TrialLink:
    storage: str
    study: str
    trial_id: int
    number: int
    pruner: Optional[dict[str, Any]]

    @property
    def tags(self) -> dict[str, str]:
        """MLflow tags that tie the run to its Optuna trial (the sweeper finds runs by them)."""
        return {"optuna.study": self.study, "optuna.trial": str(self.number)}


def current_trial(sweeper_config: Any) -> TrialLink | None:
    """This job's trial, when it runs inside an Optuna sweep; else None."""
    if TRIAL_ID_ENV not in os.environ:
        return None
    from omegaconf import OmegaConf

    pruner = OmegaConf.to_container(sweeper_config.pruner, resolve=True) if sweeper_config.get("pruner") else None
    return TrialLink(
        sweeper_config.storage, os.environ[STUDY_ENV], int(os.environ[TRIAL_ID_ENV]), int(os.environ[TRIAL_NUMBER_ENV]), pruner
    )


def per_epoch_objective(objective: str) -> tuple[str, bool]:
    """The metric each validation reports for ``objective``, and whether to keep its running best.

    `best/val_acc` is the best `val/acc` so far; any other objective is reported as logged.
    """
    if objective.startswith("best/"):
        return objective.removeprefix("best/").replace("_", "/", 1), True
    return objective, False


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

            from pipeline.search.study import instantiate_optuna

            pruner = instantiate_optuna(self.link.pruner, "pruner") or optuna.pruners.NopPruner()
            study = optuna.load_study(study_name=self.link.study, storage=self.link.storage, pruner=pruner)
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
