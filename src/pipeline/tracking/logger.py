"""A Lightning logger that writes metrics to one MLflow run in batches.

One `log_batch` call costs about what one `log_metric` call does (docs/dependencies.md: 500 single
calls 2.5 s on SQLite, one batch 0.25 s), so metrics are buffered and flushed every
``flush_every_s`` seconds, whenever a checkpoint is saved (so the store never lags behind
a checkpoint a run could resume from), and when training ends. Each metric is written at most
once per step: a resumed run passes ``already_logged`` (the last stored step of each metric),
so points the killed process had already written are not written twice. Against a tracking
server, points that find it away wait in a spool file (`pipeline.tracking.spool`) and are
sent, in order, when it answers again; `deliver()` waits a bounded time for that at the end.

It holds the store's URI, not a client: Lightning's ``ddp_spawn`` pickles the logger into
the worker processes, and each process opens its own client on first use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities import rank_zero_only

from pipeline.errors import TrackingError
from pipeline.tracking.spool import MetricSpool, answer_quickly, is_unreachable
from pipeline.tracking.store import store_full


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}: params with their full values (no cut at 250 chars)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


log = logging.getLogger("pipeline")

RETRY_EVERY_S = 10.0  # while the server is away, how often a flush tries it again (a try costs up to a timeout)
_BATCH_LIMIT = 1000  # metrics per log_batch call (MLflow's limit)


class MlflowBatchLogger(Logger):
    def __init__(
        self,
        uri: str,
        run_id: str,
        flush_every_s: float,
        already_logged: Mapping[str, int] | None = None,
        spool: MetricSpool | None = None,
        output_root: Path | None = None,
    ) -> None:
        """``spool``: where points wait while a tracking server does not answer (None: a failure raises);
        ``output_root``: the run's, named in the command that resumes it (its job log goes there too)."""
        super().__init__()
        self._uri, self._run_id, self._flush_every_s = uri, run_id, flush_every_s
        self._output_root = output_root
        self._already_logged = dict(already_logged or {})
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()
        self._client_in_this_process: MlflowClient | None = None
        self._spool = spool
        self._offline_until: float | None = None  # set while the server is away: the next time to try it

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client_in_this_process": None}

    @property
    def _client(self) -> MlflowClient:
        if self._client_in_this_process is None:
            self._client_in_this_process = MlflowClient(tracking_uri=self._uri)
        return self._client_in_this_process

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self._run_id

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        flat = flatten(params)
        self._client.log_batch(self._run_id, params=[Param(key, value) for key, value in flat.items()])

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        timestamp, step = int(time.time() * 1000), step or 0
        for key, value in metrics.items():
            if step > self._already_logged.get(
                key, -1
            ):  # Lightning repeats `epoch` in each call of a step: once is enough
                self._pending.append(Metric(key, float(value), timestamp, step))
                self._already_logged[key] = step
        if time.monotonic() - self._last_flush >= self._flush_every_s:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        batch, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if self._spool is None:
            self.send(batch)
        elif self._offline_until is not None and time.monotonic() < self._offline_until:
            self._spool.append(batch)  # the server is away: do not stall training on a connect timeout
        else:
            self._send_or_spool(batch)

    def send(self, metrics: list[Metric]) -> None:
        """Store ``metrics`` now, in batches of MLflow's limit (no spool)."""
        for start in range(0, len(metrics), _BATCH_LIMIT):
            try:
                self._client.log_batch(self._run_id, metrics=metrics[start : start + _BATCH_LIMIT])
            except MlflowException as err:
                if (full := store_full(err, self._uri)) is not None:
                    raise full from None
                raise

    def _send_or_spool(self, batch: list[Metric]) -> None:
        """Deliver what waits in the spool (in order), then ``batch``; on a connection failure, spool ``batch``."""
        assert self._spool is not None
        waiting = self._spool.read() if self._offline_until is not None else []
        try:
            with answer_quickly():
                while waiting:
                    self.send(waiting[:_BATCH_LIMIT])
                    waiting = waiting[_BATCH_LIMIT:]
                self.send(batch)
        except MlflowException as err:
            if not is_unreachable(err):
                raise
            if self._offline_until is None:
                log.warning(
                    "tracking server %s does not answer: training goes on, metrics wait in %s",
                    self._uri,
                    self._spool.path,
                )
            else:
                self._spool.replace(waiting)  # what was delivered before the failure is not sent again
            self._spool.append(batch)
            self._offline_until = time.monotonic() + RETRY_EVERY_S
            return
        if self._offline_until is not None:
            self._offline_until = None
            self._spool.replace([])
            log.info("tracking server %s answers again: the waiting metrics are stored", self._uri)

    @rank_zero_only
    def deliver(self, wait_s: float) -> None:
        """Flush and, while the server is away, keep trying for up to ``wait_s`` s; TrackingError if it stays away."""
        if self._spool is not None and self._offline_until is None and self._spool.read():
            self._offline_until = 0.0  # ddp_spawn: a worker process spooled them; this one delivers
        self.flush()
        deadline = time.monotonic() + wait_s
        while self._offline_until is not None:
            if time.monotonic() >= deadline:
                raise TrackingError(
                    f"tracking.uri={self._uri}: no answer for {wait_s:.0f} s after training; its metrics wait in "
                    f"{self._spool.path if self._spool else '?'}: pipeline-train resume={self._run_id} "
                    f"tracking.uri={self._uri}{f' paths.output_root={self._output_root}' if self._output_root else ''} "
                    "sends them and logs the run's figures and model once the server answers"
                )
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
            self._send_or_spool([])

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.flush()

    def finalize(self, status: str) -> None:
        self.flush()
