"""Figures drawn in the worker process (pipeline.rendering): the same pixels, a dead worker costs nothing, bugs surface."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from pipeline import figures, rendering
from pipeline.config.compose import compose_config
from pipeline.rendering import Figures
from pipeline.sweeps.parent_run import PARENT_RUN_ENV
from pipeline.workflows.run_plan import RunPlan, plan_run


def _pixels(path: Path) -> np.ndarray:
    return matplotlib.image.imread(path)


def _draw_all(in_worker: bool, folder: Path) -> dict[str, np.ndarray]:
    """The confusion matrix and mistakes of a fixed prediction, copied out of the block's temporary folder."""
    labels, predicted = torch.tensor([0, 1, 2, 2, 1, 0]), torch.tensor([0, 2, 2, 1, 1, 0])
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    pixels = {}
    with Figures(in_worker=in_worker) as drawings:
        drawings.draw(figures.confusion_matrix, labels, predicted, ["a", "b", "c"], artifact_file="figures/cm.png")
        drawings.draw(figures.misclassified, images, labels, predicted, list("abc"), artifact_file="mistakes.png")
        for artifact_file, png in drawings.drawn():
            assert png.name == Path(artifact_file).name  # logged under its own name
            pixels[artifact_file] = _pixels(png)
    return pixels


def test_figures_drawn_in_the_worker_have_the_pixels_of_figures_drawn_here(tmp_path: Path) -> None:
    here, there = _draw_all(False, tmp_path), _draw_all(True, tmp_path)
    assert list(there) == ["figures/cm.png", "mistakes.png"]  # in the order asked for
    for name in here:
        assert here[name].shape == there[name].shape and np.array_equal(here[name], there[name]), name


def test_a_dead_worker_costs_no_figure_they_are_drawn_here_and_a_new_worker_starts_next_time(tmp_path: Path) -> None:
    rendering.start_worker()
    worker = rendering._worker
    assert worker is not None
    expected = _draw_all(False, tmp_path)
    os.kill(worker.process.pid, signal.SIGKILL)  # out of memory, or killed by someone
    worker.process.wait()
    assert {name: pixels.shape for name, pixels in _draw_all(True, tmp_path).items()} == {
        name: pixels.shape for name, pixels in expected.items()
    }
    assert rendering._worker is None  # dropped
    rendering.start_worker()
    assert rendering._worker is not None and rendering._worker is not worker
    assert _draw_all(True, tmp_path).keys() == expected.keys()


def _broken_figure(message: str) -> None:
    raise ValueError(message)


def test_a_drawing_that_fails_in_the_worker_raises_its_own_error_in_the_run() -> None:
    with Figures() as drawings:
        drawings.draw(_broken_figure, "no such class", artifact_file="figures/broken.png")
        with pytest.raises(ValueError, match="no such class"):
            list(drawings.drawn())


def _figure_noting_its_process(note: Path):  # a drawing function that says where it ran
    import matplotlib.pyplot as plt

    note.write_text(str(os.getpid()))
    return plt.figure(figsize=(1, 1))


@pytest.mark.parametrize("in_worker", [True, False])
def test_a_run_draws_in_the_worker_process_and_a_one_off_command_here(tmp_path: Path, in_worker: bool) -> None:
    note = tmp_path / "pid"
    with Figures(in_worker=in_worker) as drawings:
        drawings.draw(_figure_noting_its_process, note, artifact_file="figures/where.png")
        ((_, png),) = drawings.drawn()
        assert png.stat().st_size > 0
    assert (int(note.read_text()) != os.getpid()) is in_worker


def test_only_a_run_with_work_to_overlap_pays_for_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def plan(*overrides: str, resuming: bool = False) -> RunPlan:
        return plan_run(compose_config(list(overrides)), resuming=resuming)

    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    assert plan().figures_in_worker  # a single run exports its model
    assert plan("tracking.log_model=false").figures_in_worker  # attribution maps
    assert not plan("tracking.log_model=false", "interpret=none").figures_in_worker
    monkeypatch.setenv(PARENT_RUN_ENV, "0" * 32)  # a sweep's trial: its model waits for the sweep's end
    trial = plan("sweep.log_models=best")
    assert trial.deferred == ("model", "compression", "misclassified") and not trial.compresses
    assert not trial.figures_in_worker and not trial.draws_misclassified
    no_checkpoint = plan("sweep.log_models=best", "tracking.log_checkpoint=false")  # nothing to redraw it from
    assert no_checkpoint.draws_misclassified and "misclassified" not in no_checkpoint.deferred
    resumed = plan("sweep.log_models=best", resuming=True)  # a resumed trial does its own work
    assert resumed.deferred == () and resumed.compresses and resumed.figures_in_worker
    assert plan("sweep.log_models=all").figures_in_worker


def test_a_run_that_gave_up_on_its_figures_leaves_the_next_run_its_own(tmp_path: Path) -> None:
    with Figures() as abandoned:  # a run that failed after asking for its figures
        abandoned.draw(_figure_noting_its_process, tmp_path / "first", artifact_file="figures/first.png")
    with Figures() as drawings:
        drawings.draw(_figure_noting_its_process, tmp_path / "second", artifact_file="figures/second.png")
        assert [artifact for artifact, _ in drawings.drawn()] == ["figures/second.png"]
    assert (tmp_path / "second").is_file()


def _figure_stuck_outside(parent_pid: int):  # hangs in the worker only
    import matplotlib.pyplot as plt

    if os.getpid() != parent_pid:
        time.sleep(60)
    return plt.figure(figsize=(1, 1))


def test_a_worker_stuck_on_a_figure_is_dropped_and_the_figure_drawn_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rendering, "FIGURE_TIMEOUT_S", 3.0)
    rendering.start_worker()
    stuck = rendering._worker
    with Figures() as drawings:
        drawings.draw(_figure_stuck_outside, os.getpid(), artifact_file="figures/stuck.png")
        ((_, png),) = drawings.drawn()
        assert png.stat().st_size > 0
    assert rendering._worker is None and stuck.process.poll() is not None  # killed, not left behind


def _ignores_sigint(pid: int) -> bool:
    """Whether the process has set SIGINT to ignored (the worker does so right after arranging to die with its parent)."""
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return bool(ignored & (1 << (signal.SIGINT - 1)))


def _gone(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state.split()[1] in ("Z", "X")  # ended; its new parent has not reaped it yet


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_worker_still_busy_importing_is_killed_when_its_parent_ends(tmp_path: Path) -> None:
    parent = """
import os, signal, time
from pipeline import rendering
from test_rendering import _ignores_sigint
signal.signal(signal.SIGINT, signal.SIG_DFL)  # the worker ignores Ctrl-C once its parent's death would kill it
rendering.start_worker()
pid = rendering._worker.process.pid
while not _ignores_sigint(pid):
    time.sleep(0.01)
os.kill(pid, signal.SIGSTOP)  # frozen mid-import: it can never notice its stdin closing
print(pid, flush=True)
"""
    errors = tmp_path / "stderr"  # a file, not a pipe: the worker inherits it and would hold a pipe open
    with errors.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", parent],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    assert done.returncode == 0, errors.read_text()[-2000:]
    worker = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 30  # an upper bound, not a speed: without the signal it never ends
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not _gone(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its parent")
