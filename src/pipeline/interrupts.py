"""Turn SIGTERM into an exception and remember which signal stopped a run.

Lightning catches KeyboardInterrupt and exits with SystemExit(1); remembering the signal
lets the run be marked KILLED (not FAILED) whatever exception finally unwinds the stack.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Optional

from pipeline.errors import RunInterrupted

_received: list[str] = []


def received_signal() -> Optional[str]:
    """Name of the first stop signal seen inside ``signals_raise()``, if any."""
    return _received[0] if _received else None


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    _received.append("SIGTERM")
    raise RunInterrupted("received SIGTERM")


def _on_sigint(signum: int, frame: Optional[FrameType]) -> None:
    _received.append("SIGINT")
    raise KeyboardInterrupt


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM raises RunInterrupted and SIGINT raises KeyboardInterrupt."""
    _received.clear()
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_sigterm), signal.SIGINT: signal.signal(signal.SIGINT, _on_sigint)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
