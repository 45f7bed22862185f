"""The pip requirements logged with a model, given explicitly: MLflow would otherwise infer them by
loading the model in a subprocess, which costs seconds per model and guesses."""

from __future__ import annotations

import importlib.metadata

TORCH_MODEL = ("torch", "numpy")
ONNX_MODEL = ("onnx", "onnxruntime", "numpy")


def exact_requirements(distributions: tuple[str, ...]) -> list[str]:
    """`name==version` for each installed distribution (a local build's `+cpu` suffix dropped)."""
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in distributions]
