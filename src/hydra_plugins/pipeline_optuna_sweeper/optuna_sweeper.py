"""The Optuna sweeper: ask a batch of trials, launch them through Hydra's launcher, tell the results.

Selected with `hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml). A batch holds `n_jobs`
trials; Hydra's configured launcher runs them (one after the other by default, at once with
`hydra/launcher=parallel`). The study persists in `storage`, so running the same command again
continues it: trials lost with a killed process are failed, marked so in MLflow, and retried;
finished ones are not run again. Optuna itself is imported only when a sweep starts.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError, first_line
from pipeline.search.trial import PRUNED_AT, STUDY_ENV, TRIAL_ID_ENV, TRIAL_NUMBER_ENV

log = logging.getLogger("pipeline")


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        n_trials: int,
        n_jobs: int,
        direction: str,
        storage: Optional[str],
        study_name: Optional[str],
        sampler: Optional[DictConfig],
        pruner: Optional[DictConfig],
        heartbeat_interval: int,
        max_retry: int,
        params: Optional[DictConfig],
    ) -> None:
        self.n_trials, self.n_jobs, self.direction = n_trials, n_jobs, direction
        self.storage, self.study_name = storage, study_name
        self.sampler = OmegaConf.to_container(sampler, resolve=True) if sampler else None
        self.heartbeat_interval, self.max_retry = heartbeat_interval, max_retry
        self.params = {str(key): str(value) for key, value in (params or {}).items()}
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _check(self) -> None:
        if self.n_trials < 1 or self.n_jobs < 1 or self.heartbeat_interval < 1:
            raise ConfigError("hydra.sweeper: n_trials, n_jobs and heartbeat_interval must be >= 1")
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError(f"hydra.sweeper.direction={self.direction}: must be maximize or minimize")
        if not self.storage:
            raise ConfigError("hydra.sweeper.storage: a database URL is needed (sqlite:///path or postgresql://...)")

    def sweep(self, arguments: list[str]) -> Any:
        from pipeline.search.space import search_space
        from pipeline.search.study import Heartbeats, fail_lost_trials, open_study, study_name, trials_done, trials_running
        from pipeline.sweep import parent_run_id
        from pipeline.tracking.store import resolve_tracking_uri
        from pipeline.tracking.sweep import fail_lost_trial_runs

        assert self.config is not None
        self._check()
        space = search_space(self.params, arguments)
        if self.n_jobs > 1 and "trainer.threads" not in space.keys and not any(o.startswith("trainer.threads=") for o in space.fixed):
            # parallel trials share the cores instead of each taking all of them
            space.fixed.append(f"trainer.threads={max(1, available_cores() // self.n_jobs)}")
        name = study_name(self.study_name, self.params, arguments, self.config.sweep.objective, self.direction)
        study = open_study(self.storage, name, self.direction, self.sampler, self.heartbeat_interval, self.max_retry)
        study.set_user_attr("objective", self.config.sweep.objective)
        uri = resolve_tracking_uri(self.config.tracking.uri, Path(self.config.paths.output_root))
        parent = parent_run_id()
        log.info("optuna study %s: %d of %d trials done", name, trials_done(study), self.n_trials)
        Path(self.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, Path(self.config.hydra.sweep.dir) / "multirun.yaml")

        returns: list[JobReturn] = []
        with Heartbeats(study, self.heartbeat_interval) as heartbeats:
            while True:
                lost = fail_lost_trials(study)
                if lost and parent:
                    fail_lost_trial_runs(uri, parent, [trial.number for trial in lost], self.heartbeat_interval)
                others = len(trials_running(study))  # trials of other sweep processes (or lost, not yet stale)
                left = self.n_trials - trials_done(study) - others
                if left <= 0 and others == 0:
                    break
                if left <= 0:
                    time.sleep(self.heartbeat_interval)
                    continue
                returns += self._run_batch(study, space, name, min(self.n_jobs, left), heartbeats, uri, parent)
        self._report(study, uri, parent)
        return returns

    def _run_batch(
        self, study: Any, space: Any, name: str, size: int, heartbeats: Any, uri: str, parent: Optional[str]
    ) -> list[JobReturn]:
        from optuna.trial import TrialState

        from pipeline.search.study import fail_and_retry
        from pipeline.tracking.sweep import tag_trial_run

        trials = [study.ask(space.distributions) for _ in range(size)]
        for trial in trials:
            heartbeats.add(trial._trial_id)
        jobs = [
            [*space.overrides(trial.params),
             f"++hydra.job.env_set.{STUDY_ENV}='{name}'",
             f"++hydra.job.env_set.{TRIAL_ID_ENV}={trial._trial_id}",
             f"++hydra.job.env_set.{TRIAL_NUMBER_ENV}={trial.number}"]
            for trial in trials
        ]  # fmt: skip
        told: set[int] = set()
        try:
            for trial, job in zip(list(trials), list(jobs)):
                try:  # a trial whose overrides do not compose (model=nope) fails alone, before anything runs
                    self.validate_batch_is_legal([job])
                except Exception as err:
                    log.error("trial %d: %s", trial.number, first_line(str(err)))
                    study.tell(trial, state=TrialState.FAIL)
                    told.add(trial.number)
                    trials.remove(trial), jobs.remove(job)
            results = list(self.launcher.launch(jobs, initial_job_idx=len(study.trials) - size)) if jobs else []
            for trial, result in zip(trials, results):
                state = self._tell(study, trial, result)
                told.add(trial.number)
                if parent:
                    tag_trial_run(uri, parent, trial.number, state)
        finally:
            for trial in trials:
                heartbeats.discard(trial._trial_id)
                if trial.number not in told:  # interrupted (Ctrl-C, SIGTERM, a launcher failure): run again next time
                    fail_and_retry(study, trial)
        return results

    def _tell(self, study: Any, trial: Any, result: JobReturn) -> str:
        from optuna.trial import TrialState

        value = result._return_value if result.status == JobStatus.COMPLETED else None
        if result.status != JobStatus.COMPLETED:
            log.error("trial %d failed: %s", trial.number, result._return_value)
        if PRUNED_AT in study._storage.get_trial(trial._trial_id).user_attrs:
            study.tell(trial, state=TrialState.PRUNED)
            return "PRUNED"
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            study.tell(trial, state=TrialState.FAIL)
            return "FAIL"
        study.tell(trial, float(value))
        return "COMPLETE"

    def _report(self, study: Any, uri: str, parent: Optional[str]) -> None:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete:
            log.info("optuna study %s: best trial %d, value %.4f, %s", study.study_name, study.best_trial.number, study.best_value, study.best_params)
        if parent and complete:
            from pipeline.search.figures import study_figures
            from pipeline.tracking.sweep import log_parent_figures

            log_parent_figures(uri, parent, study_figures(study))
