"""GlobalBatchNorm on two gloo processes is batch norm over the whole batch: outputs, gradients, running statistics."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pipeline.global_batchnorm import GlobalBatchNorm, GlobalBatchNormSync

WORLD = 2


def small_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))


def one_step(rank: int, port: int, images: torch.Tensor, weights: dict, out: Path) -> None:
    """One DDP process: its share of the batch through the synced model, one backward, gradients averaged."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = small_model()
        model.load_state_dict(weights)
        model = GlobalBatchNormSync().apply(model)
        assert isinstance(model[1], GlobalBatchNorm)
        logits = model(images[rank::WORLD])
        logits.square().mean().backward()
        gradients = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
        for gradient in gradients.values():  # what DDP does with them
            dist.all_reduce(gradient)
            gradient /= WORLD
        model = GlobalBatchNormSync().revert(model)
        torch.save(
            {
                "logits": logits.detach(),
                "gradients": gradients,
                "state": model.state_dict(),
                "layer": type(model[1]).__name__,
            },
            out / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.ddp
def test_two_processes_normalise_over_the_global_batch_as_one_process_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = torch.randn(16, 1, 10, 10) * 3 + 1
    reference = small_model()
    weights = {name: value.clone() for name, value in reference.state_dict().items()}
    mp.spawn(one_step, args=(free_port(), images, weights, tmp_path), nprocs=WORLD)

    logits = reference(images)
    logits.square().mean().backward()
    first, second = (torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD))
    torch.testing.assert_close(first["logits"], logits[0::WORLD].detach())
    torch.testing.assert_close(second["logits"], logits[1::WORLD].detach())
    for name, parameter in reference.named_parameters():
        torch.testing.assert_close(first["gradients"][name], parameter.grad, rtol=1e-4, atol=1e-6)
    for name, value in reference.state_dict().items():  # running mean, variance and count as one process's
        torch.testing.assert_close(first["state"][name], value)
    assert first["layer"] == "BatchNorm2d"  # reverted to the model's own class after fit


def test_outside_training_or_distributed_it_is_the_layer_it_replaced() -> None:
    torch.manual_seed(0)
    images = torch.randn(8, 1, 10, 10)
    reference = small_model()
    synced = GlobalBatchNormSync().apply(small_model())
    synced.load_state_dict(reference.state_dict())
    torch.testing.assert_close(synced(images), reference(images))  # training mode, one process
    torch.testing.assert_close(synced.eval()(images), reference.eval()(images))
