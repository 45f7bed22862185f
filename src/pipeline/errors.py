"""Errors the user can fix: reported as one line and a non-zero exit, never a traceback."""


class PipelineError(Exception):
    """Base for every error caused by input (config, data, store), not by a bug."""


class ConfigError(PipelineError):
    """A config key or value is wrong; the message starts with the key."""


class DataError(PipelineError):
    """A data set cannot be found or read; the message says where it was looked for."""


class RunInterrupted(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt so the run can be marked KILLED."""
