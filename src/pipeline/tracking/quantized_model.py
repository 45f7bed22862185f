"""The MLflow pyfunc of a statically quantized int8 model, which carries the code that rebuilds it.

torch.ao's int8 modules can be neither exported nor pickled (docs/dependencies.md): the model is
rebuilt from the run's config (the `model` and `data` sections) and its int8 state dict is loaded
into it. The logged model therefore carries the `pipeline` package (`code_paths`) and names what
that code imports (`IMPORTED_DISTRIBUTIONS`): it loads in an environment holding only those, without this
project installed. Keep this module's imports lean: a served model loads every one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch

import pipeline
from pipeline.compress.variants import nondeterministic_kernels_allowed, rebuild_static
from pipeline.config.compose import stored_config
from pipeline.config.validation import validate
from pipeline.models.build import build_model

# what the code above (and the models it builds) imports, beside mlflow itself
IMPORTED_DISTRIBUTIONS = ("torch", "numpy", "omegaconf", "hydra-core")


class QuantizedClassifier(mlflow.pyfunc.PythonModel):
    """Serves a statically quantized model: rebuilt from the run's config, then its int8 state dict."""

    def load_context(self, context: Any) -> None:
        cfg = validate(stored_config(Path(context.artifacts["config"]).read_text(), []))
        input_shape = tuple(int(size) for size in Path(context.artifacts["input_shape"]).read_text().split())
        num_classes = int(Path(context.artifacts["num_classes"]).read_text())
        model = build_model(cfg, input_shape, num_classes).eval()
        state = torch.load(context.artifacts["state_dict"], weights_only=True)
        self.model = rebuild_static(model, state, input_shape)

    def predict(self, context: Any, model_input: np.ndarray, params: dict | None = None) -> np.ndarray:
        with torch.inference_mode(), nondeterministic_kernels_allowed():
            return self.model(torch.as_tensor(np.asarray(model_input, dtype=np.float32))).numpy()


def code_paths() -> list[str]:
    """The `pipeline` package, copied into the logged model."""
    return [str(Path(pipeline.__file__).resolve().parent)]
