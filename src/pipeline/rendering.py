"""Figures drawn in a worker process while this one goes on (exports the model, computes attributions).

Drawing a run's figures with matplotlib is single-threaded Python work, about a second for the
three figures of a run and as much for its attribution maps, while after training the other
cores are idle. So a run hands each figure (a drawing function of `pipeline.figures` or
`pipeline.interpret.figures` and its arguments) to one worker process per training process,
started as the command starts (its imports overlap the command's own) and kept for the next run
of the same process (a sweep's trials). The run waits for its figures before it ends.

The worker is `python -m pipeline.rendering`: a plain new interpreter (not multiprocessing's
spawn, which runs the parent's main script again, a user's training script included). Jobs go
to it as file paths on its stdin and come back as `ok <id>` / `error <id>` lines on a pipe of
their own. It ignores Ctrl-C (the run handles that), exits when its stdin closes (this process
ended, however), and never holds a run up: a worker that cannot start, dies, or takes longer
than `FIGURE_TIMEOUT_S` for a figure is dropped and the figure is drawn here. On Linux it is
killed with its parent, even while it still imports.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.heap import imports_uncollected

log = logging.getLogger("pipeline")
FIGURE_TIMEOUT_S = 300.0  # far beyond any figure here (a few seconds at most): a stuck worker, not a slow one


class WorkerGone(Exception):
    """The worker died, was stopped or hangs; what it had not drawn is drawn in this process."""


def _draw_into(payload: bytes, path: str) -> None:
    """Draw the pickled (function, arguments) and save it as PNG at ``path``."""
    from pipeline.plotting import pyplot

    draw, args = pickle.loads(payload)
    figure = draw(*args)
    try:
        figure.savefig(path)
    finally:
        pyplot().close(figure)


class _Worker:
    """The parent's handle on one worker process."""

    def __init__(self) -> None:
        self._replies, reply_end = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}  # as this process
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.rendering", str(reply_end), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,  # it says nothing; its errors reach this process's stderr
                pass_fds=(reply_end,),
                env=env,
            )
        except OSError:
            os.close(self._replies)
            raise
        finally:
            os.close(reply_end)  # the worker's end: this process only reads
        self._pending = b""
        self._next_id = 0

    def send(self, payload_file: Path, png: Path) -> int:
        """Queue a drawing; its job id."""
        job_id, self._next_id = self._next_id, self._next_id + 1
        try:
            self.process.stdin.write(f"{job_id}\t{payload_file}\t{png}\n".encode())
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError) as err:  # the worker died (its stdin closed)
            raise WorkerGone(str(err)) from None
        return job_id

    def wait_for(self, job_id: int, timeout_s: float) -> bool:
        """True once job ``job_id`` is drawn, False if its drawing raised; WorkerGone if no answer comes."""
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                outcome, _, answered = line.decode().partition(" ")
                if int(answered) == job_id:
                    return outcome == "ok"
                # an earlier job's answer: its run stopped waiting (it failed before logging its figures)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise WorkerGone(f"no figure from the worker in {timeout_s:.0f} s")
            chunk = os.read(self._replies, 65536)
            if not chunk:
                raise WorkerGone(f"the worker ended (exit code {self.process.poll()})")
            self._pending += chunk

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self._replies)


_worker: _Worker | None = None


def start_worker() -> None:
    """Start this process's figure worker now (once), so that its imports overlap this process's own."""
    global _worker
    if _worker is None:
        try:
            _worker = _Worker()
        except OSError as err:  # no processes or file descriptors left
            log.warning("figures are drawn in this process: the figure worker did not start (%s)", err)


def _drop_worker(reason: str) -> None:
    global _worker
    if _worker is not None:
        log.warning("figure worker dropped (%s): figures are drawn in this process", reason)
        _worker.stop()
        _worker = None


@dataclass
class _Drawing:
    payload_file: Path
    artifact_file: str
    png: Path
    job_id: int | None  # None: drawn here


class Figures:
    """The figures of one run, drawn in the worker (or here: ``in_worker=False``); `drawn()` waits for them.

    Use as a context manager: the files live in a temporary folder until the block ends. A
    one-off command (pipeline-eval, pipeline-explain) draws here: a worker started for two
    figures would cost it more than it saves.
    """

    def __init__(self, in_worker: bool = True) -> None:
        self._in_worker = in_worker
        self._folder = tempfile.TemporaryDirectory(prefix="pipeline-figures-")
        self._drawings: list[_Drawing] = []

    def __enter__(self) -> Figures:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._folder.cleanup()

    def draw(self, function: Callable[..., Any], *args: Any, artifact_file: str) -> None:
        """Queue ``function(*args)`` (a matplotlib Figure) to be stored as ``artifact_file``; returns at once."""
        folder = Path(self._folder.name) / str(len(self._drawings))
        folder.mkdir()
        payload_file = folder / "drawing.pickle"
        payload_file.write_bytes(pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL))
        png = folder / Path(artifact_file).name
        job_id = None
        if self._in_worker:
            start_worker()
            if _worker is not None:
                try:
                    job_id = _worker.send(payload_file, png)
                except WorkerGone as gone:
                    _drop_worker(str(gone))
                    self._in_worker = False  # the rest of this run's figures too; its next run tries a new worker
        self._drawings.append(_Drawing(payload_file, artifact_file, png, job_id))

    def drawn(self) -> Iterator[tuple[str, Path]]:
        """(artifact file, PNG) of each figure once drawn, in the order asked for; a drawing's own error is raised."""
        drawings, self._drawings = self._drawings, []
        for drawing in drawings:
            if not self._drawn_by_worker(drawing):
                _draw_into(drawing.payload_file.read_bytes(), str(drawing.png))
            yield drawing.artifact_file, drawing.png

    def _drawn_by_worker(self, drawing: _Drawing) -> bool:
        if drawing.job_id is None or _worker is None:
            return False
        try:
            if _worker.wait_for(drawing.job_id, FIGURE_TIMEOUT_S):
                return True
        except WorkerGone as gone:
            _drop_worker(str(gone))
            self._in_worker = False
            return False
        error = Path(f"{drawing.png}.error")
        raise pickle.loads(error.read_bytes())


def _die_with(parent_pid: int) -> None:
    """On Linux, be killed the moment the parent ends, even in the middle of the imports (a run that failed at
    once must not leave a worker holding its stderr open); elsewhere the closed stdin ends the worker."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent ended before that took effect
        os._exit(0)


def _serve(reply_fd: int, parent_pid: int) -> None:
    """The worker: draw each job read from stdin, answer on ``reply_fd``; exit when stdin closes."""
    _die_with(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with imports_uncollected():  # what is imported stays: neither the imports nor the exit collect it
        import pipeline.figures
        import pipeline.interpret.figures  # noqa: F401
        from pipeline.plotting import pyplot

        pyplot()  # imported before the first job, not during it
    with os.fdopen(reply_fd, "w", buffering=1) as replies:
        for line in sys.stdin:
            job_id, payload_file, png = line.rstrip("\n").split("\t")
            try:
                _draw_into(Path(payload_file).read_bytes(), png)
                replies.write(f"ok {job_id}\n")
            except Exception as err:  # the drawing's own error, raised again in the run
                _save_error(err, Path(f"{png}.error"))
                replies.write(f"error {job_id}\n")
    os._exit(0)


def _save_error(err: Exception, path: Path) -> None:
    """The error itself, or its message where it does not pickle; nothing where its run gave up (folder gone)."""
    for error in (err, RuntimeError(f"{type(err).__name__}: {err}")):
        try:
            path.write_bytes(pickle.dumps(error))
            return
        except Exception:  # the next, plainer form is tried
            continue


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
