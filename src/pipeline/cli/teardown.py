"""How a command ends: a quick exit for processes that imported torch, Lightning and MLflow; bad input as one line.

The interpreter's last act is a full garbage collection that walks every object those imports
created: 2.7 s of a tiny run's 23 s on 2 cores (docs/dependencies.md, "Start-up and exit").
Freezing the heap once the work is done takes those objects out of that walk; a collection of
the young generations first still frees the cycles the command itself left behind, and every
atexit handler, flush and finalizer runs as usual.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.errors import PipelineError, RunInterrupted
from pipeline.interrupts import received_signal


@contextmanager
def quick_exit() -> Iterator[None]:
    """Wrap a console script's whole body: however it ends, the final collection skips the imported heap."""
    try:
        yield
    finally:
        gc.collect(1)
        gc.freeze()


@contextmanager
def bad_input_exits() -> Iterator[None]:
    """A PipelineError (bad input: a run, model, override or data that does not fit) ends the command: one line, exit 2."""
    try:
        yield
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


@contextmanager
def stop_signals_exit(consequence: str) -> Iterator[None]:
    """A stop signal (seen inside `signals_raise`) ends the command with one line saying ``consequence``, what
    became of the run, and the shell's code for that signal (128 + its number), not a traceback."""
    try:
        yield
    except (RunInterrupted, KeyboardInterrupt, SystemExit):
        # Lightning ends a loop on SIGTERM with its own SystemExit (code 0) and on Ctrl-C with SystemExit(1)
        stop = received_signal()
        if stop is None:
            raise
        print(f"stopped: received {stop}; {consequence}", file=sys.stderr)
        raise SystemExit(128 + signal.Signals[stop].value) from None
