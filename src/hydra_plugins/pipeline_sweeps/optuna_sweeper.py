"""The Optuna sweeper: ask for trials, run them through Hydra's launcher, tell the results.

Selected with `hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml). Up to `n_jobs` trials
run at once: one after the other with the default launcher, in parallel worker processes with
`hydra/launcher=parallel` (a new trial as soon as one ends), as batches of SLURM jobs with
`hydra/launcher=slurm`. The study persists in `storage`, so running the same command again
continues it: trials lost with a killed process are failed, marked so in MLflow, and retried;
finished ones are not run again. Optuna and MLflow are imported only when a sweep starts: Hydra
imports every plugin module while it composes any config, a single run's too.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError, PipelineError, first_line
from pipeline.sweeps.trial import PRUNED_AT, STUDY_ENV, TRIAL_ID_ENV, TRIAL_NUMBER_ENV

log = logging.getLogger("pipeline")


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        n_trials: int,
        n_jobs: int,
        direction: str,
        storage: str | None,
        study_name: str | None,
        sampler: DictConfig | None,
        pruner: DictConfig | None,
        heartbeat_interval: int,
        max_retry: int,
        params: DictConfig | None,
    ) -> None:
        self.n_trials, self.n_jobs, self.direction = n_trials, n_jobs, direction
        self.storage, self.study_name = storage, study_name
        self.sampler = OmegaConf.to_container(sampler, resolve=True) if sampler else None
        # `pruner` is read by each trial from its own copy of this config (pipeline.sweeps.trial)
        self.heartbeat_interval, self.max_retry = heartbeat_interval, max_retry
        self.params = {str(key): str(value) for key, value in (params or {}).items()}
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _check(self) -> None:
        if self.n_trials < 1 or self.n_jobs < 1 or self.heartbeat_interval < 1:
            raise ConfigError("hydra.sweeper: n_trials, n_jobs and heartbeat_interval must be >= 1")
        if self.direction != self.config.sweep.direction:  # the parent run ranks trials by sweep.direction
            raise ConfigError(
                f"hydra.sweeper.direction={self.direction}: set sweep.direction instead (it is {self.config.sweep.direction})"
            )
        if not self.storage:
            raise ConfigError("hydra.sweeper.storage: a database URL is needed (sqlite:///path or postgresql://...)")

    def sweep(self, arguments: list[str]) -> Any:
        """Run the search; bad input ends it with one line, and its parent run FAILED with the reason."""
        from pipeline.sweeps.parent_run import abandon_parent
        from pipeline.tracking.store import resolve_tracking_uri

        assert self.config is not None
        uri = resolve_tracking_uri(self.config.tracking.uri, Path(self.config.paths.output_root))
        try:
            return self._search(arguments, uri)
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            abandon_parent(uri, "FAILED", str(err))
            raise SystemExit(2) from None

    def _search(self, arguments: list[str], uri: str) -> list[JobReturn]:
        from pipeline.sweeps.parent_run import parent_run_id
        from pipeline.sweeps.space import search_space
        from pipeline.sweeps.study import Heartbeats, open_study, study_name, trials_done

        assert self.config is not None
        self._check()
        space = search_space(self.params, arguments)
        if (
            self.n_jobs > 1
            and "trainer.threads" not in space.keys
            and not any(o.startswith("trainer.threads=") for o in space.fixed)
        ):
            # parallel trials share the cores instead of each taking all of them
            space.fixed.append(f"trainer.threads={max(1, available_cores() // self.n_jobs)}")
        name = study_name(self.study_name, self.params, arguments, self.config.sweep.objective, self.direction)
        study = open_study(self.storage, name, self.direction, self.sampler, self.heartbeat_interval, self.max_retry)
        study.set_user_attr("objective", self.config.sweep.objective)
        log.info("optuna study %s: %d of %d trials done", name, trials_done(study), self.n_trials)
        Path(self.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, Path(self.config.hydra.sweep.dir) / "multirun.yaml")
        with Heartbeats(study, self.heartbeat_interval) as heartbeats:
            search = _Search(self, study, space, name, heartbeats, uri, parent_run_id())
            returns = search.run()
        self._report(study, uri, search.parent)
        return returns

    def _report(self, study: Any, uri: str, parent: str | None) -> None:
        from optuna.trial import TrialState

        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete:
            log.info(
                "optuna study %s: best trial %d, value %.4f, %s",
                study.study_name,
                study.best_trial.number,
                study.best_value,
                study.best_params,
            )
        if parent and complete:
            from pipeline.sweeps.figures import study_figures
            from pipeline.tracking.sweep_runs import log_parent_figures

            log_parent_figures(uri, parent, study_figures(study))


class _Search:
    """The ask / launch / tell loop of one sweep process.

    With a launcher that can `submit` one job (hydra/launcher=parallel), a new trial starts as
    soon as one ends; with any other launcher, trials go in batches of `n_jobs` and the batch is
    waited for. Trials still running elsewhere (other machines, or a killed process whose
    heartbeat has not gone stale yet) are waited for, so the sweep ends with nothing RUNNING.
    """

    def __init__(
        self, sweeper: OptunaSweeper, study: Any, space: Any, name: str, heartbeats: Any, uri: str, parent: str | None
    ) -> None:
        self.sweeper, self.study, self.space, self.name = sweeper, study, space, name
        self.heartbeats, self.uri, self.parent = heartbeats, uri, parent
        self.launcher = sweeper.launcher
        self.open: dict[int, Any] = {}  # trial number -> trial asked and not yet told
        self.returns: list[JobReturn] = []
        self.waiting_for: list[int] = []  # trials running elsewhere, last reported

    def run(self) -> list[JobReturn]:
        from concurrent.futures import FIRST_COMPLETED, wait

        from pipeline.sweeps.optuna_internals import trial_id_of
        from pipeline.sweeps.study import fail_and_retry, trials_done, trials_running

        streaming = hasattr(self.launcher, "submit")
        in_flight: dict[Any, Any] = {}  # future -> trial
        try:
            while True:
                self._fail_lost()
                others = [trial for trial in trials_running(self.study) if trial.number not in self.open]
                left = self.sweeper.n_trials - trials_done(self.study) - len(others) - len(self.open)
                free = self.sweeper.n_jobs - len(self.open)
                if left > 0 and free > 0:
                    started = self._ask(min(left, free))
                    if streaming:
                        in_flight.update({self.launcher.submit(job, trial.number): trial for trial, job in started})
                    elif started:
                        results = self.launcher.launch(
                            [job for _, job in started], initial_job_idx=started[0][0].number
                        )
                        for (trial, _), result in zip(started, results, strict=True):
                            self._tell(trial, result)
                    continue
                if in_flight:
                    done, _ = wait(
                        list(in_flight), timeout=self.sweeper.heartbeat_interval, return_when=FIRST_COMPLETED
                    )
                    for future in done:
                        self._tell(in_flight.pop(future), future.result())
                    continue
                if left <= 0 and not others:
                    return self.returns
                self._say_what_it_waits_for(others)
                time.sleep(self.sweeper.heartbeat_interval)
        finally:
            if self.open and hasattr(self.launcher, "shutdown"):
                self.launcher.shutdown()
            for trial in list(
                self.open.values()
            ):  # interrupted (Ctrl-C, SIGTERM, a launcher failure): run again next time
                self.heartbeats.discard(trial_id_of(trial))
                fail_and_retry(self.study, trial)

    def _say_what_it_waits_for(self, others: list[Any]) -> None:
        """One line each time the set of trials running elsewhere changes: a wait is never silent."""
        numbers = sorted(trial.number for trial in others)
        if numbers != self.waiting_for:
            self.waiting_for = numbers
            log.info(
                "waiting for trial(s) %s, running in another process; each is failed and retried if no heartbeat "
                "arrives for %d s",
                ", ".join(map(str, numbers)),
                2 * self.sweeper.heartbeat_interval,
            )

    def _fail_lost(self) -> None:
        from pipeline.sweeps.study import fail_lost_trials
        from pipeline.tracking.sweep_runs import fail_lost_trial_runs

        lost = fail_lost_trials(self.study)
        if lost and self.parent:
            fail_lost_trial_runs(
                self.uri, self.parent, [trial.number for trial in lost], self.sweeper.heartbeat_interval
            )

    def _ask(self, count: int) -> list[tuple[Any, list[str]]]:
        """Ask for ``count`` trials; return those whose overrides compose (the others fail alone, at once)."""
        from optuna.trial import TrialState

        from pipeline.sweeps.optuna_internals import tell, trial_id_of

        started = []
        for _ in range(count):
            trial = self.study.ask(self.space.distributions)
            job = [
                *self.space.overrides(trial.params),
                f"++hydra.job.env_set.{STUDY_ENV}='{self.name}'",
                f"++hydra.job.env_set.{TRIAL_ID_ENV}={trial_id_of(trial)}",
                f"++hydra.job.env_set.{TRIAL_NUMBER_ENV}={trial.number}",
            ]
            try:  # a trial whose overrides do not compose (model=nope) fails alone, before anything runs
                self.sweeper.validate_batch_is_legal([job])
            except Exception as err:
                log.error("trial %d: %s", trial.number, first_line(str(err)))
                tell(self.study, trial, state=TrialState.FAIL)
                continue
            self.heartbeats.add(trial_id_of(trial))
            self.open[trial.number] = trial
            started.append((trial, job))
        return started

    def _tell(self, trial: Any, result: JobReturn) -> None:
        from pipeline.sweeps.optuna_internals import trial_id_of
        from pipeline.tracking.sweep_runs import tag_trial_run

        state = self._told_state(trial, result)
        self.heartbeats.discard(trial_id_of(trial))
        del self.open[trial.number]
        self.returns.append(result)
        if self.parent:
            tag_trial_run(self.uri, self.parent, trial.number, state)

    def _told_state(self, trial: Any, result: JobReturn) -> str:
        """Tell Optuna how the trial ended (pruned, failed, or its objective); return that state's name."""
        from optuna.trial import TrialState

        from pipeline.sweeps.optuna_internals import storage_of, tell, trial_id_of

        value = result._return_value if result.status == JobStatus.COMPLETED else None
        if result.status != JobStatus.COMPLETED:
            log.error("trial %d failed: %s", trial.number, result._return_value)
        if PRUNED_AT in storage_of(self.study).get_trial(trial_id_of(trial)).user_attrs:
            tell(self.study, trial, state=TrialState.PRUNED)
            return "PRUNED"
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            tell(self.study, trial, state=TrialState.FAIL)
            return "FAIL"
        tell(self.study, trial, float(value))
        return "COMPLETE"
