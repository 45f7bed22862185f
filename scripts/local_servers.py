"""Local server processes for the tests and the benchmark: a free port, a server kept up for a block."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(
    command: list[str], health_url: str, log_path: Path, env: dict[str, str] | None = None, timeout_s: float = 120
) -> Iterator[None]:
    """Run a server process (in its own process group) until the block ends; enter once ``health_url`` answers 200."""
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    with urllib.request.urlopen(health_url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
                if server.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited: {log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{health_url} did not answer within {timeout_s:.0f} s: {log_path.read_text()[-2000:]}"
                    )
            yield
        finally:
            stop_group(server)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM a process started with start_new_session and everything it started; SIGKILL after 30 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
