"""The persistent Optuna study of a sweep.

A study lives in a database (SQLite under outputs/ by default, or PostgreSQL for a team) so that
the same command, run again, continues it. The sweeping process records a heartbeat for each
trial it has running; a trial whose heartbeat stops (its process was killed), or that never
recorded one (killed right after the ask), is failed once it is `2 x heartbeat_interval` old,
and Optuna's RetryHeartbeatStaleTrialCallback queues its parameters again. Trials are counted
as done when they completed, were pruned or failed for good.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from pipeline.errors import ConfigError, first_line
from pipeline.sweeps.optuna_internals import LostTrialAwareStorage, storage_of, tell, trial_id_of

# heartbeats and their retry callback are marked experimental, and meant for Study.optimize: we use them with ask/tell
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweeper logs the study's progress itself

ALLOWED_TARGETS = {"sampler": "optuna.samplers.", "pruner": "optuna.pruners."}


def study_name(
    explicit: str | None, params: Mapping[str, str], arguments: list[str], objective: str, direction: str
) -> str:
    """The configured name, or one derived from what is searched: the same command finds its study again."""
    if explicit:
        return explicit
    described = json.dumps([sorted(params.items()), sorted(arguments), objective, direction])
    return "sweep-" + hashlib.sha256(described.encode()).hexdigest()[:12]


def instantiate_optuna(node: Mapping[str, Any] | None, kind: str, **overrides: Any) -> Any:
    """A sampler or pruner from its `_target_` config; only classes of optuna.samplers / optuna.pruners."""
    if node is None:
        return None
    from hydra.utils import instantiate

    target = str(node.get("_target_", ""))
    if not target.startswith(ALLOWED_TARGETS[kind]):
        raise ConfigError(f"hydra.sweeper.{kind}._target_={target}: must be a class of {ALLOWED_TARGETS[kind][:-1]}")
    try:
        return instantiate(dict(node), **overrides)
    except Exception as err:  # a misspelled class or argument: Hydra wraps the cause
        raise ConfigError(f"hydra.sweeper.{kind}: {first_line(str(err.__cause__ or err))}") from None


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy settings of a study database: on SQLite, wait for a busy file instead of failing."""
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def _storage(url: str, heartbeat_interval: int, max_retry: int) -> LostTrialAwareStorage:
    try:
        return LostTrialAwareStorage(
            url,
            engine_kwargs=engine_kwargs(url),
            heartbeat_interval=heartbeat_interval,
            grace_period=2 * heartbeat_interval,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
        )
    except Exception as err:  # SQLAlchemy: bad URL, missing driver, server down
        raise ConfigError(f"hydra.sweeper.storage={_redacted(url)}: {str(err).splitlines()[0]}") from None


def _redacted(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (for messages and tags)."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}{at}{host}" if at else url


def open_study(
    url: str, name: str, direction: str, sampler: Mapping[str, Any] | None, heartbeat_interval: int, max_retry: int
) -> optuna.Study:
    """Create or load the study. A seeded sampler is seeded with seed + trials so far: a resumed
    study must not re-propose the start-up points it has already tried (docs/dependencies.md)."""
    instantiate_optuna(sampler, "sampler")  # a bad sampler is reported before any study is written
    storage = _storage(url, heartbeat_interval, max_retry)
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"hydra.sweeper.direction={direction}: study {name} was created to {study.direction.name.lower()}"
        )
    seed = (sampler or {}).get("seed")
    reseed = {"seed": int(seed) + len(study.trials)} if seed is not None else {}
    study.sampler = instantiate_optuna(sampler, "sampler", **reseed) or study.sampler
    return study


def trials_done(study: optuna.Study) -> int:
    """Trials that count towards n_trials: completed, pruned, or failed and not being retried."""
    trials = study.get_trials(deepcopy=False)
    again = {RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) for trial in trials}  # failed, queued again
    ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for trial in trials if trial.state in ended and trial.number not in again)


def trials_running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def fail_lost_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Fail (and queue again) the running trials whose heartbeat stopped or never started; return them."""
    running = {trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    fail_stale_trials(study)
    return [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if trial.number in running]


def fail_and_retry(study: optuna.Study, trial: optuna.Trial) -> None:
    """An interrupted trial: failed now, its parameters queued for the next run of the sweep."""
    tell(study, trial, state=TrialState.FAIL)
    storage = storage_of(study)
    callback = storage.get_heartbeat_stale_trial_callback()  # the RetryHeartbeatStaleTrialCallback above
    callback(study, storage.get_trial(trial_id_of(trial)))


class Heartbeats:
    """A thread that records a heartbeat for each trial this process has running, twice per `interval`:
    SQLite keeps heartbeats to the second and a busy machine delays a beat, either of which would
    otherwise bring a live trial near the `2 x interval` after which it counts as lost."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self._storage, self._interval = storage_of(study), interval / 2
        self._trial_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeats", daemon=True)

    def add(self, trial_id: int) -> None:
        self._storage.record_heartbeat(trial_id)  # at once: the trial is alive from now on
        self._trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        self._trial_ids.discard(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            for trial_id in list(self._trial_ids):
                self._storage.record_heartbeat(trial_id)

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
