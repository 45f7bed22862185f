"""SIGTERM / SIGINT stop a run cleanly, and the run remembers which signal stopped it.

A signal handler that raises interrupts whatever Python was doing, such as an SQLite
transaction of the tracking store in the middle of a metrics flush. So while Lightning runs
its loops (`deferred()`), a stop signal is only recorded and `raise_if_stopped()` raises at
the next batch boundary (see `pipeline.callbacks.StopOnSignal`); a second signal raises at
once. Lightning turns KeyboardInterrupt into SystemExit(1); the remembered signal lets the
run be marked KILLED (not FAILED) whatever exception finally unwinds the stack.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from pipeline.errors import RunInterrupted

_received: list[str] = []
_deferring: list[bool] = [False]


def received_signal() -> str | None:
    """Name of the first stop signal seen inside ``signals_raise()``, if any."""
    return _received[0] if _received else None


def _exception(name: str) -> BaseException:
    return KeyboardInterrupt() if name == "SIGINT" else RunInterrupted(f"received {name}")


def raise_if_stopped() -> None:
    """Raise for a stop signal recorded while deferred: called at safe points (batch boundaries)."""
    if _received:
        raise _exception(_received[0])


def _handler(name: str):
    def handle(signum: int, frame: FrameType | None) -> None:
        _received.append(name)
        if _deferring[0] and len(_received) == 1:
            return  # raised at the next batch boundary
        raise _exception(name)

    return handle


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM raises RunInterrupted and SIGINT raises KeyboardInterrupt."""
    _received.clear()
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _handler("SIGTERM")),
        signal.SIGINT: signal.signal(signal.SIGINT, _handler("SIGINT")),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, the first stop signal waits for ``raise_if_stopped()``."""
    _deferring[0] = True
    try:
        yield
    finally:
        _deferring[0] = False
