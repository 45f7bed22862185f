"""CPU, memory, disk and network (and GPU, with nvidia-ml-py) of the machine, sampled into a run as `system/*`.

MLflow's own monitors collect (the same metric names as `mlflow.start_run(log_system_metrics=True)`);
this thread publishes, because MLflow's does not fit a pipeline run: it logs nothing for a run shorter
than its interval (10 s), stops for good at its first failed store read, and its ``finish()`` joins
the thread without a timeout, so a tracking server that went away would hold the run's end for as
long as the client's retries last. Here a run gets a sample when it opens its monitor (a baseline for
the CPU counter), one every ``interval_s``, and one when it stops; a sample that cannot be stored is
dropped with one warning (training and the run's end never wait for it: the stop waits at most a
few seconds); a resumed run continues the step count after the steps it holds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping

import pytorch_lightning as pl
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.system_metrics.metrics.base_metrics_monitor import BaseMetricsMonitor
from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

PREFIX = "system/"
STOP_WAIT_S = 5.0  # the most a run's end waits for a sample being stored
THREAD_NAME = "pipeline-system-metrics"

log = logging.getLogger("pipeline")


class _NotFromTheSampler(logging.Filter):
    """urllib3 warns "Retrying ..." at each failed try; from the sampler, a lost sample is one warning of ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != THREAD_NAME


def _quiet_retries_from_the_sampler() -> None:
    retries = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(existing, _NotFromTheSampler) for existing in retries.filters):
        retries.addFilter(_NotFromTheSampler())


def _monitors() -> list[BaseMetricsMonitor]:
    monitors: list[BaseMetricsMonitor] = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    with contextlib.suppress(ImportError, RuntimeError):  # no nvidia-ml-py, or no NVIDIA GPU: nothing to sample
        monitors.append(GPUMonitor())
    return monitors


class SystemMetrics:
    """A daemon thread that samples the machine into run ``run_id`` every ``interval_s`` seconds."""

    def __init__(
        self, uri: str, run_id: str, interval_s: float, last_steps: Mapping[str, int], prefix: str = PREFIX
    ) -> None:
        self.uri, self.run_id, self.interval_s, self.prefix = uri, run_id, interval_s, prefix
        own = [step for key, step in last_steps.items() if key.startswith(prefix) and "/" not in key[len(prefix) :]]
        self.step = max(own, default=-1) + 1
        self.monitors = _monitors()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, name=THREAD_NAME, daemon=True)
        self._failed = False

    def start(self) -> SystemMetrics:
        _quiet_retries_from_the_sampler()
        self._collect()  # psutil's CPU counter measures from its previous call: this is the baseline
        for monitor in self.monitors:
            monitor.clear_metrics()
        self._thread.start()
        return self

    def stop(self) -> None:
        """One last sample (the time since the previous one), stored unless that takes over STOP_WAIT_S."""
        self._stop.set()
        self._thread.join(timeout=STOP_WAIT_S)

    def _collect(self) -> None:
        for monitor in self.monitors:
            monitor.collect_metrics()

    def _sample_until_stopped(self) -> None:
        client = MlflowClient(tracking_uri=self.uri)
        while True:
            stopping = self._stop.wait(self.interval_s)
            self._collect()
            self._publish(client)
            if stopping:
                return

    def _publish(self, client: MlflowClient) -> None:
        timestamp = int(time.time() * 1000)
        values: dict[str, float] = {}
        for monitor in self.monitors:
            values.update(monitor.aggregate_metrics())
            monitor.clear_metrics()
        metrics = [Metric(self.prefix + name, float(value), timestamp, self.step) for name, value in values.items()]
        self.step += 1
        try:
            client.log_batch(self.run_id, metrics=metrics)
        except Exception as err:  # a store that is away or full: the run goes on without this sample
            if not self._failed:
                log.warning(
                    "system metrics: a sample could not be stored (%s); later ones are tried", type(err).__name__
                )
            self._failed = True


class SystemMetricsOfOtherNodes(pl.Callback):
    """Under multi-node training, the first process of every other node samples its machine as `system/node<k>/*`.

    The first node's machine is the run's own `system/*`. The run's id, store and the steps it
    holds (a resumed run continues them) reach the other nodes by a broadcast when fit sets up,
    so every node's series lands once, in the one run.
    """

    def __init__(self, uri: str | None, run_id: str | None, interval_s: float, last_steps: Mapping[str, int]) -> None:
        self.run = (uri, run_id, dict(last_steps))  # the first rank's; None on the others until the broadcast
        self.interval_s = interval_s
        self.monitor: SystemMetrics | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        uri, run_id, last_steps = trainer.strategy.broadcast(self.run, src=0)  # every rank takes part
        if trainer.node_rank > 0 and trainer.local_rank == 0:
            prefix = f"{PREFIX}node{trainer.node_rank}/"
            self.monitor = SystemMetrics(uri, run_id, self.interval_s, last_steps, prefix).start()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
