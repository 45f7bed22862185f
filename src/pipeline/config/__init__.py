"""Config schema, validation and safe instantiation; registers the `repo_root`, `run_folder`,
`throwaway_folder` and `user_cache` resolvers."""

import os
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

# src/pipeline/config/__init__.py -> the repository root (the package is installed editable).
REPO_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = REPO_ROOT / "conf"

if not OmegaConf.has_resolver("repo_root"):
    OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
if not OmegaConf.has_resolver("run_folder"):
    from pipeline.distributed import run_folder_name

    OmegaConf.register_new_resolver("run_folder", run_folder_name, use_cache=True)
if not OmegaConf.has_resolver("throwaway_folder"):
    # debug=fast: a store apart from yours, in the system's temporary folder, one per user (reused: a new
    # store costs its schema migrations, ~3 s, and the data cache lives beside it)
    OmegaConf.register_new_resolver(
        "throwaway_folder", lambda: str(Path(tempfile.gettempdir()) / f"pipeline-throwaway-{os.getuid()}")
    )

if not OmegaConf.has_resolver("user_cache"):
    # what every output root can share (the parsed data set): $XDG_CACHE_HOME/pipeline, else ~/.cache/pipeline
    OmegaConf.register_new_resolver(
        "user_cache", lambda: str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipeline")
    )


def register_schema() -> None:
    """Make `train_schema` (the first entry of conf/train.yaml's defaults) known to Hydra."""
    from hydra.core.config_store import ConfigStore

    from pipeline.config.schema import TrainConfig

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


register_schema()
