"""DDP on the CPU (gloo): one MLflow run per job, every test image counted once, batch norm over the
global batch, two 'nodes' on localhost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COMMAND_TIMEOUT_S, cli_env, free_port, pipeline_train, store_client
from pipeline.data.datamodule import EpochShuffle, EvaluationShard
from pipeline.distributed import launched_rank

# no dropout, batch norm synced over the processes (trainer=ddp): then a DDP step equals a single-process
# step on the same global batch (up to summation order)
SMALL = ["model=cnn", "model.channels=[8,16]", "model.hidden=32", "model.dropout=0", "trainer.max_epochs=3"]
SMALL += ["compression=none", "tracking.log_model=false"]


def test_training_shards_are_equal_and_disjoint_and_evaluation_shards_cover_every_image_once() -> None:
    train = [list(EpochShuffle(10, seed=3, rank=rank, world_size=3)) for rank in range(3)]
    assert [len(shard) for shard in train] == [3, 3, 3]
    assert len(set().union(*map(set, train))) == 9
    evaluation = [list(EvaluationShard(10, rank, 3)) for rank in range(3)]
    assert sorted(index for shard in evaluation for index in shard) == list(range(10))


@pytest.mark.parametrize(
    ("env", "rank"),
    [
        ({}, 0),
        ({"RANK": "3"}, 3),
        ({"LOCAL_RANK": "1"}, 1),
        ({"NODE_RANK": "1", "LOCAL_RANK": "1"}, 3),
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "4"}, 2),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, 0),
    ],
)
def test_launched_rank_reads_the_launchers_environment(monkeypatch: pytest.MonkeyPatch, env: dict, rank: int) -> None:
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launched_rank(devices_per_node=2) == rank


def _runs(out: Path) -> list:
    client = store_client(out)
    return client.search_runs([client.get_experiment_by_name("digits").experiment_id])


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_on_two_cpu_processes_gives_one_run_tested_on_every_image_once_and_the_same_batch_norm_cnn(
    tmp_path: Path,
) -> None:
    results = {}
    for trainer in ("cpu", "ddp"):
        out = tmp_path / trainer
        # under DDP, the model whose batch norm was synced is compressed as the model's own (BatchNorm2d fuses)
        compressed = ["compression=quick", "compression.variants=[int8_static]"] if trainer == "ddp" else []
        done = pipeline_train(f"trainer={trainer}", *SMALL, *compressed, f"paths.output_root={out}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        (run,) = _runs(out)
        assert run.info.status == "FINISHED"
        results[trainer] = run.data.metrics
        assert len(list((out / "hydra").glob("*/*"))) == 1  # the ranks share one output folder
    assert results["ddp"]["test/samples"] == results["cpu"]["test/samples"] == 1000
    assert "compress/int8_static/test_acc" in results["ddp"]
    assert abs(results["ddp"]["test/acc"] - results["cpu"]["test/acc"]) <= 0.005
    assert abs(results["ddp"]["val/acc"] - results["cpu"]["val/acc"]) <= 0.005
    # measured: 0.00011 with trainer.sync_batchnorm (the ddp preset), 0.0018 with each process's own batch norm
    assert abs(results["ddp"]["test/loss"] - results["cpu"]["test/loss"]) <= 0.0005


@pytest.mark.slow
@pytest.mark.ddp
def test_two_nodes_started_by_torchrun_on_localhost_give_one_run(tmp_path: Path, output_root: Path) -> None:
    out, port = output_root, free_port()
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        "--rdzv-id=two-nodes",
    ]
    nodes = [
        subprocess.Popen(
            [
                *torchrun,
                f"--node-rank={node}",
                "-m",
                "pipeline.cli.train",
                "trainer=multinode",
                *SMALL,
                f"paths.output_root={out}",
            ],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    logs = [node.communicate(timeout=COMMAND_TIMEOUT_S)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    (run,) = _runs(out)
    assert run.info.status == "FINISHED" and run.data.metrics["test/samples"] == 1000
    assert run.data.params["trainer.num_nodes"] == "2"
    metrics = run.data.metrics  # each machine sampled once into the run: the first node's, then node 1's
    assert metrics["system/cpu_utilization_percentage"] >= 0 and metrics["system/node1/cpu_utilization_percentage"] >= 0
    client = store_client(out)
    steps = [
        point.step for point in client.get_metric_history(run.info.run_id, "system/node1/system_memory_usage_megabytes")
    ]
    assert steps == list(range(len(steps))) and steps
    assert f"run id:  {run.info.run_id}" in logs[0] and "run id:" not in logs[1]
    assert [path.name for path in (out / "hydra").iterdir()] == ["torchrun-two-nodes"]
