"""The entry points: `pipeline-train`, `pipeline-rerun`, `pipeline-compress`, `pipeline-eval`, `pipeline-explain`.

A thin layer: each one parses and checks its input with nothing heavier than Hydra and
OmegaConf, so a bad override is one line before torch, Lightning or MLflow is imported; then it
hands over to pipeline.workflows, which does the work.
"""

import logging
import os
import sys


def import_user_code_from_here() -> None:
    """A user's modules (a `_target_` such as `examples.resnet.ResNet8`) import from the current folder.

    Appended, not prepended: a file here never shadows an installed module. Spawned DDP workers
    inherit the path; stored configs still build only what they trust (pipeline.config.targets).
    """
    here = os.getcwd()
    if here not in sys.path:
        sys.path.append(here)


def log_to_stderr() -> None:
    """The `pipeline` logger's lines on stderr, as `pipeline-train` prints them (time, level, message): the
    progress of a long step (compression's build and evaluation, one line per variant) outside a terminal too."""
    logger = logging.getLogger("pipeline")
    if any(isinstance(handler, logging.StreamHandler) for handler in logger.handlers):
        return  # called before in this process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
