"""Heavy imports with the collector paused, their heap frozen (pipeline.heap), in a new interpreter each."""

from __future__ import annotations

import subprocess
import sys

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
