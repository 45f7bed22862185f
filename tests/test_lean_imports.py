"""torchmetrics imported without torchvision, scipy.signal and matplotlib (pipeline.lean_imports), which stay usable.

Each check runs in a new interpreter: what a process imports is decided by its first imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pipeline.lean_imports import FULL_IMPORT_ENV

HIDDEN = ("torchvision", "scipy.signal", "matplotlib")
LOADED = f"import json, sys; print(json.dumps({{name: name in sys.modules for name in {HIDDEN}}}))"


def _python(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_training_imports_none_of_them_and_each_works_afterwards() -> None:
    """matplotlib also stays out of the training process's start (figures import it when drawn, Captum when it runs)."""
    assert json.loads(_python(f"import pipeline.workflows.train\n{LOADED}")) == dict.fromkeys(HIDDEN, False)
    code = """
import pipeline.workflows.train
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from pipeline.data.augment import build_augmentation
accuracy = MulticlassAccuracy(num_classes=3, average="micro")
accuracy.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1]))
assert abs(float(accuracy.compute()) - 0.75) < 1e-6
augmented = build_augmentation((28, 28), 10.0, 0.1, 0.9, 1.1, 2)(torch.rand(1, 28, 28))
import scipy.signal
assert augmented.shape == (1, 28, 28) and scipy.signal.windows.hamming(4).shape == (4,)
import lightning_utilities.core.imports as checks
assert checks.package_available("scipy") and checks.RequirementCache("torchvision")  # the checks are restored
from pipeline.figures import learning_curves
learning_curves({"train/loss": [(0, 1.0), (1, 0.5)]}).savefig(__import__("io").BytesIO())
import matplotlib
assert matplotlib.get_backend().lower() == "agg"
print("ok")
"""
    assert _python(code) == "ok"


def test_the_whole_torchmetrics_on_request() -> None:
    loaded = json.loads(_python(f"import pipeline.workflows.train\n{LOADED}", **{FULL_IMPORT_ENV: "1"}))
    assert loaded == {"torchvision": True, "scipy.signal": True, "matplotlib": True}
