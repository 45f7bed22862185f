"""Reruns reproduce stored runs metric for metric; killed runs resume into the same MLflow run."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from conftest import TINY_DATA, pipeline_train, run_training, start_training, store_client, with_store
from pipeline.errors import ConfigError, DataError
from pipeline.workflows.rerun import CODE_CHANGED_EXIT, NOT_REPRODUCED_EXIT, rerun


def store_uri(output_root: Path) -> str:
    return f"sqlite:///{output_root / 'mlflow.db'}"


@pytest.mark.parametrize("family", ["cnn", "rnn", "transformer"])
@pytest.mark.slow
def test_rerun_reports_every_metric_identical(family: str, tiny: list[str], output_root: Path, capsys) -> None:
    compression = ["compression=quick", "compression.variants=[pruned,int8_dynamic]"] if family == "cnn" else []
    original = run_training([*tiny, f"model={family}", "tracking.log_model=false", *compression])
    capsys.readouterr()
    assert rerun(original.run_id, [f"paths.output_root={output_root}"], allow_code_change=False, tolerance=0.0) == 0
    report = capsys.readouterr().out
    assert "reproduced: every metric within tolerance 0" in report
    assert "test/acc" in report and "train/loss" in report and "differs" not in report
    client = MlflowClient(store_uri(output_root))
    (copy,) = [r for r in client.search_runs(["1"]) if r.info.run_id != original.run_id]
    assert copy.data.tags["rerun_of"] == original.run_id
    untimed = {
        k: v
        for k, v in client.get_run(original.run_id).data.metrics.items()
        if "latency" not in k and "speedup" not in k and not k.startswith("system/")
    }
    assert untimed.items() <= copy.data.metrics.items()
    if compression:
        assert "compress/pruned80/test_acc" in untimed and "timing and system metrics not compared" in report


@pytest.mark.slow
def test_rerun_with_a_changed_value_or_on_another_cpu_reports_the_difference(
    tiny: list[str], output_root: Path, capsys
) -> None:
    original = run_training([*tiny, "tracking.log_model=false"])
    # as if it had run on a CPU with AMX (this one's features are whatever they are, but not these)
    MlflowClient(store_uri(output_root)).set_tag(original.run_id, "version.cpu_features", "avx2 amx_tile amx_bf16 x")
    assert (
        rerun(original.run_id, ["optimizer.lr=0.01", f"tracking.uri={store_uri(output_root)}"], False, 0.0)
        == NOT_REPRODUCED_EXIT
    )
    out = capsys.readouterr().out
    assert "<- differs" in out
    assert "note: cpu_features differs ('avx2 amx_tile amx_bf16 x' then" in out


@pytest.mark.slow
def test_rerun_after_a_code_change_is_refused_then_allowed(tiny: list[str], output_root: Path, capsys) -> None:
    original = run_training([*tiny, "tracking.log_model=false"])
    MlflowClient(store_uri(output_root)).set_tag(original.run_id, "git.commit", "0" * 40)
    assert rerun(original.run_id, [f"tracking.uri={store_uri(output_root)}"], False, 0.0) == CODE_CHANGED_EXIT
    error = capsys.readouterr().err
    assert f"commit {'0' * 40} (original) vs" in error and "--allow-code-change" in error
    assert rerun(original.run_id, [f"tracking.uri={store_uri(output_root)}"], True, 0.0) == 0
    assert "warning: code differs: commit" in capsys.readouterr().out


@pytest.mark.slow
def test_rerun_refuses_different_data(tiny: list[str], output_root: Path) -> None:
    original = run_training([*tiny, "tracking.log_model=false"])
    MlflowClient(store_uri(output_root)).set_tag(original.run_id, "data.digest", "f" * 64)
    with pytest.raises(DataError, match="differs from the stored run's ffffffffffff"):
        rerun(original.run_id, [f"tracking.uri={store_uri(output_root)}"], False, 0.0)


@pytest.mark.parametrize(
    ("original", "tampered", "refusal"),
    [
        ("tags: {}", "tags: {_target_: os.system, x: rm -rf /}", "tags._target_: not allowed here"),
        ("seed: 42", "seed: -1", r"seed: must be in \[0, 2\*\*32\), got -1"),
    ],
)
@pytest.mark.slow
def test_a_tampered_stored_config_is_one_clear_refusal(
    original: str, tampered: str, refusal: str, tiny: list[str], output_root: Path
) -> None:
    run = run_training([*tiny, "tracking.log_model=false", "tracking.log_checkpoint=false"])
    uri = store_uri(output_root)
    mlflow.set_tracking_uri(uri)
    config = mlflow.artifacts.load_text(f"runs:/{run.run_id}/config/config.yaml")
    assert original in config
    MlflowClient(uri).log_text(run.run_id, config.replace(original, tampered), "config/config.yaml")
    with pytest.raises(ConfigError, match=refusal):
        rerun(run.run_id, [f"tracking.uri={uri}"], False, 0.0)


@pytest.mark.slow
def test_data_loader_workers_and_augmentation_stay_deterministic(tiny: list[str]) -> None:
    overrides = [*tiny, "data.num_workers=2", "data.augment.enabled=true", "tracking.log_model=false"]
    assert run_training(overrides).test_metrics == run_training(overrides).test_metrics


def wait_for_epochs(db: Path, run_id: str, epochs: int, process: subprocess.Popen) -> None:
    """Block until the run has stored ``epochs`` validation points."""
    client, deadline = MlflowClient(f"sqlite:///{db}"), time.monotonic() + 120
    while len(client.get_metric_history(run_id, "val/acc")) < epochs:
        assert process.poll() is None, "training ended before it could be stopped"
        assert time.monotonic() < deadline, f"no {epochs} epochs within 120 s"
        time.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.slow
def test_killed_run_resumes_into_the_same_run_as_if_never_stopped(
    stop: signal.Signals, tmp_path: Path, empty_store: Path
) -> None:
    overrides = [
        *TINY_DATA,
        "data.train_size=512",
        "trainer.max_epochs=5",
        "trainer.threads=1",
        "tracking.log_model=false",
        "tracking.flush_every_s=0.1",
        "compression=none",
    ]
    reference = run_training([*overrides, f"paths.output_root={with_store(tmp_path / 'reference', empty_store)}"])

    out = with_store(tmp_path / "out", empty_store)
    process, run_id = start_training([*overrides, f"paths.output_root={out}"], tmp_path)
    try:
        wait_for_epochs(out / "mlflow.db", run_id, 2, process)
        process.send_signal(stop)
        process.wait(timeout=60)
    finally:
        process.kill()
    client = store_client(out)
    interrupted = client.get_run(run_id)
    assert interrupted.info.status == ("KILLED" if stop == signal.SIGTERM else "RUNNING")
    assert "test/acc" not in interrupted.data.metrics

    done = pipeline_train(f"resume={run_id}", f"paths.output_root={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    (resumed,) = client.search_runs([interrupted.info.experiment_id])
    assert resumed.info.run_id == run_id and resumed.info.status == "FINISHED"
    assert "failure_reason" not in resumed.data.tags  # "interrupted by SIGTERM" no longer holds
    reference_client = MlflowClient(reference.tracking_uri)
    for key in ("train/loss", "val/acc", "val/loss", "train/acc"):
        history = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        expected = [(m.step, m.value) for m in reference_client.get_metric_history(reference.run_id, key)]
        assert sorted(history) == expected, key  # every step once, each value as in the uninterrupted run
    results = {
        k: v for k, v in resumed.data.metrics.items() if not k.startswith("system/")
    }  # the machine's, not results
    expected = {
        k: v for k, v in reference_client.get_run(reference.run_id).data.metrics.items() if not k.startswith("system/")
    }
    assert results == expected
