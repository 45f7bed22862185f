"""Lightning callbacks the pipeline adds to every run."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from pipeline.interrupts import raise_if_stopped


class StopOnSignal(pl.Callback):
    """Stop at a batch boundary when SIGTERM / SIGINT arrived (see `pipeline.interrupts.deferred`)."""

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        raise_if_stopped()
