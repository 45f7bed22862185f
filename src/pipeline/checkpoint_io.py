"""Checkpoints that are whole or absent: written to a temporary file in their folder, then renamed.

Lightning's own writer goes through fsspec, which stages the file elsewhere and, across file
systems, copies it over the old one: a full disk or a kill during that copy left a truncated
`last.ckpt`, and with it a run that could not be resumed. A rename within one folder is atomic,
so the last good checkpoint stays intact until a complete new one replaces it.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised first: a write error is then a plain OSError naming the file
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as partial:
                partial.write(buffer.getbuffer())
                partial.flush()
                os.fsync(partial.fileno())
            os.replace(temporary, target)
        except BaseException as err:
            Path(temporary).unlink(missing_ok=True)  # a full disk gets its space back
            if isinstance(err, OSError) and err.filename is None:
                err.filename = str(target)
            raise
