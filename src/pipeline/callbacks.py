"""Lightning callbacks the pipeline adds to every run."""

from __future__ import annotations

import math
import os
from typing import Any

import pytorch_lightning as pl
import torch.distributed
from pytorch_lightning.callbacks import EarlyStopping

from pipeline.errors import TrainingDiverged
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


_REASON_KEY = "diverged/reason"  # utf-8 bytes as a uint8 tensor: callback_metrics carry tensors only


class StopOnDivergence(pl.Callback):
    """End training when the loss is NaN / inf, or over ``factor`` x the first step's: a diverged run is a result, not a secret.

    ``fail`` raises TrainingDiverged (the run ends FAILED with the step, a sweep counts the trial as
    failed); ``stop`` ends the fit there and leaves the reason in ``diverged``. Under DDP the ranks
    agree (any rank diverged) so that none waits in a collective call for a rank that stopped.
    A `ddp_spawn` worker (a sweep's DDP trial) stops in both cases: an exception there would reach
    the launching process as a traceback, so its reason travels back in ``callback_metrics``
    (the one channel Lightning returns from the workers) and `verdict()` acts on it there.
    """

    def __init__(self, factor: float | None, action: str) -> None:
        self.factor, self.action = factor, action
        self.first_loss: float | None = None
        self.diverged: str | None = None  # why training stopped early
        self.launching_process = os.getpid()  # ddp_spawn pickles the callback into its workers

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.first_loss = state_dict.get("first_loss")

    def state_dict(self) -> dict[str, Any]:
        return {"first_loss": self.first_loss}  # a resumed run compares against the same first step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        value = float(loss.detach())
        if self.first_loss is None:
            self.first_loss = value
        reason = self._reason(value, trainer.global_step)
        # a collective call on every rank at every step, so it comes first
        if (
            trainer.world_size > 1
            and trainer.strategy.reduce_boolean_decision(reason is not None, all=False)
            and reason is None
        ):
            reason = f"training diverged on another DDP rank at step {trainer.global_step}"
        if reason is None:
            return
        if self.action == "fail" and os.getpid() == self.launching_process:
            raise TrainingDiverged(reason)
        self.diverged = reason
        trainer.callback_metrics[_REASON_KEY] = torch.tensor(list(reason.encode()), dtype=torch.uint8)
        trainer.should_stop = True

    def verdict(self, trainer: pl.Trainer) -> str | None:
        """After the fit, in the launching process: why training diverged, if it did (``fail``: raises)."""
        if self.diverged is None and _REASON_KEY in trainer.callback_metrics:
            self.diverged = bytes(trainer.callback_metrics[_REASON_KEY].tolist()).decode()
        if self.diverged is not None and self.action == "fail":
            raise TrainingDiverged(self.diverged)
        return self.diverged

    def _reason(self, value: float, step: int) -> str | None:
        if not math.isfinite(value):
            return f"training diverged: train/loss={value} at step {step}; lower optimizer.lr or set trainer.gradient_clip_val"
        if self.factor is not None and self.first_loss and value > self.factor * self.first_loss:
            return (
                f"training diverged: train/loss={value:.3g} at step {step}, over trainer.divergence_factor={self.factor:g} "
                f"x the first step's {self.first_loss:.3g}; lower optimizer.lr or set trainer.gradient_clip_val"
            )
        return None


_STOPPED_EPOCH_KEY = "early_stopping/stopped_epoch"


class EarlyStop(EarlyStopping):
    """Lightning's EarlyStopping that says why it stopped, also from a `ddp_spawn` worker.

    The epoch it stopped at travels back in ``callback_metrics``, as the divergence reason does.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._record(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._record(trainer)

    def _record(self, trainer: pl.Trainer) -> None:
        if self.stopped_epoch > 0:  # set by EarlyStopping when it stops the fit
            trainer.callback_metrics[_STOPPED_EPOCH_KEY] = torch.tensor(self.stopped_epoch)

    def verdict(self, trainer: pl.Trainer) -> str | None:
        """After the fit, in the launching process: why training stopped before `trainer.max_epochs`, if it did."""
        if _STOPPED_EPOCH_KEY not in trainer.callback_metrics:
            return None
        epoch = int(trainer.callback_metrics[_STOPPED_EPOCH_KEY]) + 1
        return (
            f"{self.monitor} did not improve by more than {abs(self.min_delta):g} in {self.patience} epochs: "
            f"stopped after epoch {epoch} of {trainer.max_epochs}"
        )


def early_stop_verdict(trainer: pl.Trainer) -> str | None:
    """Why early stopping ended the fit, if it did (callbacks.early_stopping)."""
    callback = trainer.early_stopping_callback
    return callback.verdict(trainer) if isinstance(callback, EarlyStop) else None
