"""Every use of Optuna's private API in one place (tests/test_optuna_internals.py fails loudly on an upgrade that breaks it).

Optuna's stale-trial check (`RDBStorage._get_stale_trial_ids`) only sees trials that have a
heartbeat. A sweep killed between `study.ask()` and its first heartbeat leaves a RUNNING trial
without one, which nothing would ever fail: a resumed sweep waited for it forever. The storage
here also counts such a trial as stale once it started longer ago than the grace period.

Samplers that end a study themselves (GridSampler, BruteForceSampler) call `study.stop()` from
`after_trial` once their space is exhausted; outside `study.optimize` (the sweeper asks and
tells) that raises RuntimeError after the trial's state is stored. `tell` absorbs exactly that.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState


class LostTrialAwareStorage(RDBStorage):
    """An RDBStorage whose stale trials include RUNNING trials that never recorded a heartbeat."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        return stale + [trial_id for trial_id in self.trials_without_heartbeat(study_id) if trial_id not in stale]

    def trials_without_heartbeat(self, study_id: int) -> list[int]:
        """RUNNING trials of the study with no heartbeat that started more than the grace period ago."""
        grace = timedelta(seconds=self.grace_period or 2 * (self.heartbeat_interval or 0))
        started_before = datetime.now() - grace
        session = self.scoped_session()
        try:
            running = (
                session.query(models.TrialModel)
                .outerjoin(
                    models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id
                )
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
                .all()
            )
            # the model's datetime_start reads back in local time, as optuna wrote it (datetime.now())
            return [
                trial.trial_id for trial in running if trial.datetime_start and trial.datetime_start < started_before
            ]
        finally:
            session.close()


def cached(backend: RDBStorage) -> Any:
    """``backend`` behind Optuna's cache, which reads only the trials that changed since its last read."""
    return optuna.storages.get_storage(backend)


def storage_of(study: optuna.Study) -> Any:
    """The study's storage: Optuna wraps the RDBStorage in a cache, which passes heartbeat calls on."""
    return study._storage


def backend_of(study: optuna.Study) -> LostTrialAwareStorage:
    """The RDBStorage under Optuna's cache."""
    return study._storage._backend


def study_id_of(study: optuna.Study) -> int:
    return study._study_id


def trial_id_of(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (unique across studies), which heartbeats and trial jobs refer to."""
    return trial._trial_id


def tell(study: optuna.Study, trial: optuna.Trial, value: float | None = None, state: TrialState | None = None) -> None:
    """`study.tell`, also for a sampler that stops the study when its grid is exhausted (see above)."""
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as err:
        if "Study.stop" not in str(err) or storage_of(study).get_trial(trial_id_of(trial)).state == TrialState.RUNNING:
            raise
