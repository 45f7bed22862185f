"""How a command ends: without the interpreter's teardown for processes that imported torch, Lightning and MLflow;
bad input as one line.

After a command's work, a normal interpreter exit tears down ~950,000 objects those imports
created, module by module: 0.3-0.4 s of every command, after its run is FINISHED (and 2.7 s before
the console scripts froze the heap; docs/dependencies.md, "Start-up and exit"). A console script
therefore ends the way multiprocessing's child processes do: it waits for its other non-daemon
threads and runs every atexit handler (logging's flush, MLflow's end of an active run, temporary
folders' cleanup) as the interpreter would, flushes stdout and stderr, then `os._exit`s with the
status `sys.exit` would have given. Finalizers of objects still alive at that point do not run;
nothing here leaves data in one (files are written and closed where they are written).
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import NoReturn

from pipeline.errors import PipelineError, RunInterrupted
from pipeline.interrupts import received_signal


def exit_after(main: Callable[[], object]) -> NoReturn:
    """Run a console script's ``main``, then end the process with its exit status, skipping the interpreter's teardown.

    An exception other than SystemExit (a bug) takes the usual way out, traceback included; the
    imported heap is frozen first so that the final collection does not walk it.
    """
    try:
        main()
        status = 0
    except SystemExit as stop:
        status = exit_status(stop.code)
    except BaseException:
        gc.collect(1)
        gc.freeze()
        raise
    end_like_the_interpreter()
    os._exit(status)


def exit_status(code: object) -> int:
    """The process's status for `SystemExit(code)`, as the interpreter gives it (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def end_like_the_interpreter() -> None:
    """What a normal exit does that matters to the outside world: join non-daemon threads, run atexit, flush.

    The interpreter's own two calls (private, as in multiprocessing's child processes): `threading._shutdown`
    first tells thread pools to stop (their `threading._register_atexit` hooks), then joins every non-daemon
    thread; a plain join of a pool's idle worker would wait forever.
    """
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe or stream: what it held is lost, as in a normal exit
            stream.flush()


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
