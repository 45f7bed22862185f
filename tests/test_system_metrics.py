"""`system/*` metrics: the machine sampled into a run, and a store that is away costs the run one warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from conftest import free_port, run_training, store_client
from pipeline.tracking.system_metrics import PREFIX, SystemMetrics


def test_a_run_holds_cpu_memory_disk_and_network_samples_read_back_from_its_store(
    tiny: list[str], output_root: Path
) -> None:
    result = run_training([*tiny, "trainer.max_epochs=3", "tracking.system_metrics_s=0.2"])
    client = store_client(output_root)
    metrics = client.get_run(result.run_id).data.metrics
    for name in ("cpu_utilization_percentage", "system_memory_usage_megabytes", "disk_usage_percentage"):
        assert PREFIX + name in metrics
    cpu = client.get_metric_history(result.run_id, "system/cpu_utilization_percentage")
    assert [point.step for point in cpu] == list(range(len(cpu))) and len(cpu) >= 2  # every interval, and at the end
    assert all(0.0 <= point.value <= 100.0 for point in cpu) and max(point.value for point in cpu) > 0.0
    memory = client.get_metric_history(result.run_id, "system/system_memory_usage_megabytes")
    assert len(memory) == len(cpu) and all(point.value > 0 for point in memory)
    assert "system/network_receive_megabytes" in metrics


def test_a_resumed_run_continues_the_sample_steps_after_those_it_holds() -> None:
    last_steps = {"system/cpu_utilization_percentage": 4, "system/disk_usage_percentage": 4, "train/loss": 99}
    assert SystemMetrics("sqlite:///unused.db", "run", 10.0, last_steps).step == 5
    assert SystemMetrics("sqlite:///unused.db", "run", 10.0, {"train/loss": 99}).step == 0


def test_a_store_that_does_not_answer_costs_one_warning_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    sampler = SystemMetrics(f"http://127.0.0.1:{free_port()}", "0" * 32, 0.05, {})
    with caplog.at_level(logging.WARNING):
        sampler.start()
        while not any("system metrics" in record.getMessage() for record in caplog.records):
            assert sampler._thread.is_alive()
            sampler._thread.join(0.05)
        sampler.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert sum("a sample could not be stored" in message for message in messages) == 1
    assert not any("Retrying" in message for message in messages)
