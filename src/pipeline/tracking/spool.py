"""Metrics that cannot reach a tracking server wait in a local file until it answers again.

Training must not stop because the server went away: MLflow's own HTTP client retries for
minutes with urllib3 warnings and then fails the run. The batch logger instead sends each
batch once, quickly (`answer_quickly`), and on a connection failure appends it to a spool
file beside the run's checkpoints; when the server answers again the spool is delivered
first, in order, then new points. MLflow's SQL stores ignore a metric point identical to a
stored one, so a batch re-sent after a lost reply is still stored once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

# One HTTP try, a short timeout: the logger, not MLflow's retry loop, decides what an outage means.
_QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@contextmanager
def answer_quickly() -> Iterator[None]:
    """MLflow HTTP calls in the block make one try (MLflow reads these settings at each request)."""
    saved = {name: os.environ.get(name) for name in _QUICK}
    os.environ.update(_QUICK)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_unreachable(err: MlflowException) -> bool:
    """True when the call failed because no server answered (refused, reset, timed out), not because it said no."""
    cause = err.__cause__ or err.__context__
    return isinstance(
        cause, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.RetryError)
    )


class MetricSpool:
    """An append-only JSON-lines file of metric points not yet stored."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, metrics: list[Metric]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as spool:
            for metric in metrics:
                spool.write(json.dumps([metric.key, metric.value, metric.timestamp, metric.step]) + "\n")
            spool.flush()
            os.fsync(spool.fileno())

    def read(self) -> list[Metric]:
        if not self.path.is_file():
            return []
        lines = self.path.read_text().splitlines()
        return [Metric(*json.loads(line)) for line in lines if line.strip()]

    def replace(self, metrics: list[Metric]) -> None:
        """Keep only ``metrics`` (the part of the spool not delivered yet)."""
        self.path.unlink(missing_ok=True)
        if metrics:
            self.append(metrics)
