"""The private Optuna API the sweeper relies on (pipeline.sweeps.optuna_internals): an upgrade that changes it fails here."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from pipeline.sweeps.optuna_internals import backend_of, storage_of, study_id_of, tell, trial_id_of
from pipeline.sweeps.pruning import trial_storage
from pipeline.sweeps.study import Heartbeats, fail_lost_trials, open_study, trials_done, trials_running


def _study(tmp_path: Path, heartbeat_interval: int = 1):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    return open_study(url, "s", "maximize", None, heartbeat_interval=heartbeat_interval, max_retry=3)


def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_retried_after_the_grace_period(tmp_path: Path) -> None:
    study = _study(tmp_path)
    asked = study.ask({"x": FloatDistribution(0, 1)})  # then "killed": no heartbeat
    assert trial_id_of(asked) == storage_of(study).get_trial(trial_id_of(asked))._trial_id
    assert fail_lost_trials(study) == []  # not yet: it may still be about to record its first heartbeat
    time.sleep(2.5)  # the grace period: 2 x heartbeat_interval

    resumed = _study(tmp_path)
    (lost,) = fail_lost_trials(resumed)
    assert lost.number == asked.number and resumed.trials[asked.number].state == TrialState.FAIL
    (retry,) = [trial for trial in resumed.trials if trial.system_attrs.get("failed_trial") == asked.number]
    assert retry.state == TrialState.WAITING and retry.params == asked.params  # queued again with the same point
    assert trials_done(resumed) == 0 and trials_running(resumed) == []


def test_a_trial_with_a_live_heartbeat_is_not_lost_however_old(tmp_path: Path) -> None:
    study = _study(tmp_path, heartbeat_interval=2)
    trial = study.ask()
    with Heartbeats(study, interval=2) as heartbeats:
        heartbeats.add(trial_id_of(trial))
        time.sleep(5)
        assert fail_lost_trials(_study(tmp_path, heartbeat_interval=2)) == []
    assert backend_of(study).trials_without_heartbeat(study_id_of(study)) == []
    # its heartbeat stopped with the process's heartbeat thread: lost once the grace period passed
    deadline, lost = time.monotonic() + 30, []
    while not lost and time.monotonic() < deadline:
        time.sleep(0.5)
        lost = fail_lost_trials(_study(tmp_path, heartbeat_interval=2))
    assert [t.number for t in lost] == [trial.number]


def test_a_grid_sampler_that_stops_its_study_does_not_break_ask_and_tell(tmp_path: Path) -> None:
    """GridSampler / BruteForceSampler call study.stop() when exhausted, which raises outside optimize()."""
    study = _study(tmp_path)
    study.sampler = optuna.samplers.BruteForceSampler(seed=0)
    space = {"x": CategoricalDistribution([1, 2])}
    first, second = study.ask(space), study.ask(space)
    tell(study, first, 1.0)
    with pytest.raises(RuntimeError, match=r"Study\.stop"):  # Optuna itself: once this passes, drop the workaround
        study.tell(second, 2.0)
    assert study.trials[second.number].state == TrialState.COMPLETE  # stored before the raise
    third = study.ask(space)
    tell(study, third, 3.0)  # exhausted again: absorbed
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 3
    assert {study.trials[0].params["x"], study.trials[1].params["x"]} == {1, 2}


def test_the_trials_one_process_runs_share_a_cached_storage_that_reads_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    elsewhere = optuna.create_study(storage=url, study_name="s", direction="maximize")  # the sweeper's own connection
    for value in (0.1, 0.2, 0.3):
        elsewhere.tell(elsewhere.ask(), value)
    storage = trial_storage(url)
    assert trial_storage(url) is storage
    first = optuna.load_study(study_name="s", storage=storage)
    assert storage_of(first) is storage  # load_study does not wrap it in a new, empty cache
    backend, read = backend_of(first), []
    reads_of_backend = backend._get_trials

    def counted(*args, **kwargs):
        trials = reads_of_backend(*args, **kwargs)
        read.append(len(trials))
        return trials

    monkeypatch.setattr(backend, "_get_trials", counted)
    assert [trial.value for trial in first.get_trials()] == [0.1, 0.2, 0.3]
    elsewhere.tell(elsewhere.ask(), 0.4)  # the next trial, told by the sweeper
    second = optuna.load_study(study_name="s", storage=trial_storage(url))
    assert [trial.value for trial in second.get_trials()] == [0.1, 0.2, 0.3, 0.4]
    assert read == [3, 1]  # the second trial's pruner reads one trial, not the whole study again
