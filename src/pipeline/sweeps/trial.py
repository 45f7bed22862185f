"""The trial side of an Optuna sweep: which trial this job runs (light: imported at every start).

The sweeper tells each trial's job its study and trial through `hydra.job.env_set`, so it
reaches the job in any launcher (in-process, worker pools, SLURM). Storage and pruner are
read from the job's own Hydra config (`hydra.sweeper`), which every job carries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

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
    pruner: dict[str, Any] | None

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
        sweeper_config.storage,
        os.environ[STUDY_ENV],
        int(os.environ[TRIAL_ID_ENV]),
        int(os.environ[TRIAL_NUMBER_ENV]),
        pruner,
    )
