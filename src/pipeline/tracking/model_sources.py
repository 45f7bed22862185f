"""A stored model named the way a user names it, found in the store and loaded as images -> logits.

SOURCE is a run id (its trained model, or a compressed variant of it), `runs:/<run id>/<model
name>`, `models:/<registered name>@<alias>`, `models:/<registered name>/<version>` or
`models:/m-<id>`. Every flavor the pipeline logs (exported fp32 / fp16 / bf16 / pruned modules,
pickled dynamic int8, the static int8 pyfunc, ONNX) loads through MLflow's pyfunc interface, so
one code path scores them all.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import LoggedModel
from mlflow.exceptions import MlflowException

from pipeline.compress.variants import nondeterministic_kernels_allowed
from pipeline.errors import TrackingError, first_line
from pipeline.tracking.run import quiet_export_warnings
from pipeline.tracking.store import open_store

TRAINED_MODEL = "model"  # the name of the model a training run logs; a variant's is `model-<variant>`


@dataclass(frozen=True)
class ModelSource:
    given: str  # as the user wrote it
    tracking_uri: str  # the store holding it
    uri: str  # `models:/m-<id>`: what MLflow loads
    run_id: str  # the run that logged the model: its config, data and experiment
    variant: str  # fp32 for the trained model, else the compressed variant's name


def variant_of(model_name: str) -> str:
    return "fp32" if model_name == TRAINED_MODEL else model_name.removeprefix(f"{TRAINED_MODEL}-")


def model_name_of(variant: str) -> str:
    return TRAINED_MODEL if variant == "fp32" else f"{TRAINED_MODEL}-{variant}"


def _logged_in_run(client: MlflowClient, given: str, run_id: str, name: str) -> ModelSource:
    run = client.get_run(run_id)
    models: dict[str, LoggedModel] = {}
    for model in client.search_logged_models([run.info.experiment_id], f"source_run_id = '{run_id}'"):
        if model.name not in models or model.creation_timestamp > models[model.name].creation_timestamp:
            models[model.name] = model
    if name not in models:
        logged = ", ".join(sorted(variant_of(model) for model in models)) or "none"
        raise TrackingError(f"{given}: run {run_id} has no model {name!r} (variants logged: {logged})")
    return ModelSource(given, client.tracking_uri, models[name].model_uri, run_id, variant_of(name))


def _from_logged_model(client: MlflowClient, given: str, model_id: str) -> ModelSource:
    model = client.get_logged_model(model_id)
    if not model.source_run_id:
        raise TrackingError(f"{given}: the model was not logged by a run, so its data and config are unknown")
    return ModelSource(given, client.tracking_uri, model.model_uri, model.source_run_id, variant_of(model.name))


def _registered(client: MlflowClient, given: str, reference: str) -> ModelSource:
    if "@" in reference:
        name, alias = reference.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
    elif "/" in reference:
        name, number = reference.split("/", 1)
        version = client.get_model_version(name, number)
    elif reference.startswith("m-"):
        return _from_logged_model(client, given, reference)
    else:
        raise TrackingError(f"{given}: name a version or an alias (models:/{reference}/1, models:/{reference}@best)")
    if version.model_id:
        return _from_logged_model(client, given, version.model_id)
    if not version.run_id:
        raise TrackingError(f"{given}: the version was not logged by a run, so its data and config are unknown")
    return ModelSource(given, client.tracking_uri, version.source, version.run_id, version.tags.get("variant", "fp32"))


def find_model(tracking_uri: str, source: str, variant: str | None = None) -> ModelSource:
    """The model ``source`` names in the store at ``tracking_uri``; TrackingError (one line) if there is none.

    ``variant`` picks a compressed variant of a run (`int8_static`, `onnx`, ...) for a run id.
    """
    open_store(tracking_uri, must_exist=True)
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        if source.startswith("models:/"):
            if variant:
                raise TrackingError(f"--variant {variant}: {source} names one model already (drop --variant)")
            return _registered(client, source, source.removeprefix("models:/"))
        if source.startswith("runs:/"):
            if variant:
                raise TrackingError(f"--variant {variant}: {source} names one model already (drop --variant)")
            run_id, _, name = source.removeprefix("runs:/").partition("/")
            return _logged_in_run(client, source, run_id, name or TRAINED_MODEL)
        return _logged_in_run(client, source, source, model_name_of(variant or "fp32"))
    except MlflowException as err:
        raise TrackingError(f"{source} in {tracking_uri}: {first_line(str(err))}") from None


class StoredClassifier:
    """A stored model of any flavor the pipeline logs, as a function from images to logits."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        try:
            mlflow.set_tracking_uri(source.tracking_uri)  # where `models:/` URIs resolve
            with quiet_export_warnings(), warnings.catch_warnings():
                # torch marks the quantized tensors that int8 weights load into as deprecated: nothing to act on here
                warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
                self._model = mlflow.pyfunc.load_model(source.uri)
        except (MlflowException, OSError, ImportError, RuntimeError, ValueError) as err:
            raise TrackingError(f"{source.given}: the model cannot be loaded here: {first_line(str(err))}") from None
        inputs, outputs = self._model.metadata.get_input_schema(), self._model.metadata.get_output_schema()
        if inputs is None or outputs is None:
            raise TrackingError(f"{source.given}: the model has no signature, so its input shape is unknown")
        self.input_shape = tuple(int(size) for size in inputs.inputs[0].shape[1:])
        self.num_classes = int(outputs.inputs[0].shape[-1])

    def logits(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Float32 logits of float images in [0, 1]; TrackingError if the model cannot run on this machine."""
        batches = []
        try:
            with nondeterministic_kernels_allowed():
                for start in range(0, len(images), batch_size):
                    output = self._model.predict(images[start : start + batch_size].numpy())
                    if isinstance(output, dict):  # the onnx flavor answers {output name: array}
                        (output,) = output.values()
                    batches.append(torch.as_tensor(np.asarray(output, dtype=np.float32)))
        except (MlflowException, RuntimeError, ValueError) as err:
            logging.getLogger("pipeline").debug("prediction failed", exc_info=True)
            raise TrackingError(f"{self.source.given}: the model cannot run here: {first_line(str(err))}") from None
        return torch.cat(batches)

    def differentiable(self) -> torch.nn.Module | None:
        """The model as a torch module that gradients flow through, or None (int8, ONNX: forward passes only).

        Asked, not assumed from the variant's name: the torch module the pyfunc loaded (torch.export's
        `pt2`, or pickled) differentiates one image's logit; a module whose input gets no finite
        gradient (dynamically quantized layers have no backward) counts as forward-only.
        """
        if "pytorch" not in self._model.metadata.flavors:
            return None
        module = self._model.get_raw_model()  # loaded once, with the pyfunc
        probe = torch.rand(1, *self.input_shape, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        try:
            with warnings.catch_warnings(), torch.enable_grad():
                warnings.simplefilter("ignore")  # backward through layers without gradients warns before it fails
                module(probe)[0].sum().backward()
        except RuntimeError as err:
            logging.getLogger("pipeline").debug("no gradients: %s", first_line(str(err)))
            return None
        usable = probe.grad is not None and bool(torch.isfinite(probe.grad).all()) and bool(probe.grad.any())
        return module if usable else None
