"""Lightning callbacks the pipeline adds to every run."""

from __future__ import annotations

import os
from typing import Any

import pytorch_lightning as pl
import torch.distributed

from pipeline.interrupts import raise_if_stopped


class StopOnSignal(pl.Callback):
    """Stop at a batch boundary when SIGTERM / SIGINT arrived (see `pipeline.interrupts.deferred`)."""

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()


class LeaveProcessGroup(pl.Callback):
    """Close this process's DDP process group once it has made its last collective call.

    A gloo rank that exits with its group alive can abort in C++ ("terminate called without an
    active exception"), and Lightning's launchers then kill the whole job. A process's last
    collective call is the end of `test` (the pipeline tests after fitting), or the end of any
    stage in a worker that `ddp_spawn` started for that stage alone (another process id).
    """

    def __init__(self) -> None:
        self.launching_process = os.getpid()  # ddp_spawn pickles the callback into its workers

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        last_stage = stage == "test" or os.getpid() != self.launching_process
        if last_stage and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
