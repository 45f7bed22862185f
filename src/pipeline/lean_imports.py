"""torchmetrics without the torchvision, scipy.signal and matplotlib it imports for features this pipeline never uses.

Lightning imports torchmetrics, and torchmetrics' own import loads torchvision (for its image
metrics: LPIPS, ARNIQA, detection IoUs) and scipy.signal (for audio metrics, and to patch a
window function for SRMRpy) whenever they are installed: 2 to 2.5 s of every process's start
on the 2-core machines here, more than the rest of Lightning (docs/dependencies.md, "Start-up
and exit"); and matplotlib's pyplot for its metrics' `.plot()` (0.3-0.6 s). The pipeline only
needs torchmetrics' aggregation and classification metrics, and draws its figures with its own
modules (`pipeline.plotting`), mostly in another process.

So, while torchmetrics itself is imported (and only then), its availability checks report
torchvision, scipy and matplotlib as absent: torchmetrics takes its own "not installed" path for
those features. All stay fully importable afterwards (the pipeline's augmentation and MNIST
download use torchvision, its figures matplotlib). `install()` runs when the package `pipeline` is imported; set
`PIPELINE_FULL_TORCHMETRICS=1` to import torchmetrics whole (a custom task with an image metric).
Everything here touches lightning_utilities' private checks: tests/test_lean_imports.py fails
loudly on an upgrade that changes them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

HIDDEN = frozenset({"torchvision", "scipy", "matplotlib"})  # for torchmetrics' import only
FULL_IMPORT_ENV = "PIPELINE_FULL_TORCHMETRICS"


@contextmanager
def extras_hidden() -> Iterator[None]:
    """lightning_utilities' `package_available` and `RequirementCache` say HIDDEN packages are not installed."""
    from lightning_utilities.core import imports
    from packaging.requirements import Requirement

    original_available, original_check = imports.package_available, imports.RequirementCache._check_available

    def package_available(package_name: str) -> bool:
        return package_name.split(".")[0] not in HIDDEN and original_available(package_name)

    def check_available(self: Any) -> None:
        if not hasattr(self, "available") and self.requirement and Requirement(self.requirement).name in HIDDEN:
            self.available = False
            self.message = f"{self.requirement}: not loaded with torchmetrics here (pipeline.lean_imports)"
            return
        original_check(self)

    imports.package_available, imports.RequirementCache._check_available = package_available, check_available
    try:
        yield
    finally:
        imports.package_available, imports.RequirementCache._check_available = original_available, original_check


class _LoaderHidingExtras(importlib.abc.Loader):
    """torchmetrics' own loader, run with the extras hidden."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with extras_hidden():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # resource readers and the like: the real loader's
        return getattr(self._loader, name)


class _LeanTorchmetrics(importlib.abc.MetaPathFinder):
    """Finds torchmetrics once, as every other finder would, and hands back its spec with the hiding loader."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        if fullname != "torchmetrics":
            return None
        sys.meta_path.remove(self)  # once: this lookup is the real one
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _LoaderHidingExtras(spec.loader)
        return spec


def install() -> None:
    """Import torchmetrics lean from now on in this process (unless asked not to, or it is already imported)."""
    if os.environ.get(FULL_IMPORT_ENV) == "1" or "torchmetrics" in sys.modules:
        return
    if not any(isinstance(finder, _LeanTorchmetrics) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LeanTorchmetrics())
