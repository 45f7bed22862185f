"""Errors the user can fix: reported as one line and a non-zero exit, never a traceback."""

import errno


def first_line(text: str) -> str:
    """The first non-empty line of a (library's) error message: what a one-line report shows."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


class PipelineError(Exception):
    """Base for every error caused by input (config, data, store), not by a bug."""


class ConfigError(PipelineError):
    """A config key or value is wrong; the message starts with the key."""


class DataError(PipelineError):
    """A data set cannot be found or read; the message says where it was looked for."""


class RunInterrupted(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt so the run can be marked KILLED."""


class TrackingError(PipelineError):
    """The tracking store cannot be opened; the message names the URI."""


class CheckpointError(PipelineError):
    """A checkpoint a command needs (to resume, to compress) is not there."""


class TrainingDiverged(PipelineError):
    """The training loss became NaN / inf or exploded: a result of the config (often the learning rate), not a bug."""


class DiskFull(PipelineError):
    """A write found no space left (or the user's quota spent)."""


def disk_full(err: OSError, folder: object) -> DiskFull | None:
    """The one-line form of a write under ``folder`` that found the disk full; None for any other OS error."""
    if err.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f"writing {err.filename}" if err.filename else f"under {folder}"
    return DiskFull(
        f"no space left on the device {where}: free some, then resume=<run id> continues from the last checkpoint"
    )
