"""The entry points: `pipeline-train`, `pipeline-rerun`, `pipeline-compress`, `pipeline-eval`, `pipeline-explain`.

A thin layer: each one parses and checks its input with nothing heavier than Hydra and
OmegaConf, so a bad override is one line before torch, Lightning or MLflow is imported; then it
hands over to pipeline.workflows, which does the work.
"""

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
