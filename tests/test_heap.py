"""Heavy imports with the collector paused, their heap frozen (pipeline.heap), in a new interpreter each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = """
import gc, sys
from pipeline.heap import imports_uncollected

collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info["generation"]))
with imports_uncollected():
    import pipeline.workflows.train
assert gc.isenabled() and not collections, f"{len(collections)} collections"  # none while importing
frozen = gc.get_freeze_count()
assert frozen > 100_000, frozen  # torch, Lightning and MLflow's objects: out of every later collection

class Cycle:
    def __init__(self):
        self.me = self
with imports_uncollected():
    import pipeline.workflows.train  # imported already: nothing new, nothing frozen
    Cycle()
assert gc.get_freeze_count() == frozen
assert gc.collect() >= 1  # the cycle made in there is still garbage a collection frees
print("ok")
"""


def test_imports_run_without_collections_and_only_new_imports_freeze_the_heap() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


SWEEP_START = """
import gc, sys
from hydra import compose, initialize_config_dir
from pipeline.config import CONF_DIR
from pipeline.workflows.sweep import SweepParentRun

with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    config = compose("train", [f"paths.output_root={sys.argv[1]}", f"hydra.sweeper.storage=sqlite:///{sys.argv[1]}/s.db",
                               "hydra/sweeper=optuna"], return_hydra_config=True)
full = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
SweepParentRun().on_multirun_start(config)
assert "optuna" in sys.modules and "mlflow" in sys.modules
assert not full, f"{len(full)} full collections while the sweep's parent run opened"
assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()
print("ok")
"""


def test_a_sweeps_start_imports_mlflow_and_optuna_without_collections(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SWEEP_START, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
