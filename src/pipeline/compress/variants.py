"""One builder per kind of compressed model. Each returns a Variant: how to run it, where it is saved.

A builder that cannot apply to a model (static conv quantization of an LSTM, say) raises
VariantSkipped with the reason, which is logged instead of a result.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.fx.proxy import TraceError

Predict = Callable[[torch.Tensor], torch.Tensor]


class VariantSkipped(Exception):
    """This variant does not apply to this model; the message says why."""


@dataclass
class Variant:
    name: str
    kind: str  # "torch" (a module MLflow can export), "torch_int8" (rebuilt from a state dict), "onnx"
    predict: Predict  # float images in [0, 1] -> float32 logits
    artifact: Path  # the serialized model whose size is reported
    module: nn.Module | None = None
    recipe: str = ""  # how to rebuild a torch_int8 module: "static" or "dynamic"
    model_section: dict | None = None  # a narrower model's `model` section (slim, students), where it is not the run's


def save_state_dict(module: nn.Module, path: Path) -> Path:
    torch.save(module.state_dict(), path)
    return path


def torch_predict(module: nn.Module) -> Predict:
    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(images)

    return predict


def fp32(model: nn.Module, workdir: Path, name: str = "fp32", model_section: dict | None = None) -> Variant:
    artifact = save_state_dict(model, workdir / f"{name}.pt")
    return Variant(name, "torch", torch_predict(model), artifact, model, model_section=model_section)


class Float32Interface(nn.Module):
    """Takes and returns float32 around a module that computes in another dtype (fp16, bf16)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module(images.to(self.dtype)).float()


def half(model: nn.Module, dtype: torch.dtype, workdir: Path, probe: torch.Tensor) -> Variant:
    """Weights and activations in fp16 or bf16 (the CPU runs both, bf16 fast where AMX/AVX512-BF16 exist)."""
    name = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    module = Float32Interface(copy.deepcopy(model).to(dtype).eval(), dtype)
    predict = torch_predict(module)
    try:
        predict(probe)
    except RuntimeError as err:  # an operator without a kernel for this dtype on this device
        raise VariantSkipped(f"{name}: {str(err).splitlines()[0]}") from None
    return Variant(name, "torch", predict, save_state_dict(module.module, workdir / f"{name}.pt"), module)


def has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(layer, nn.Conv2d) for layer in model.modules())


def dynamic_quantizable(model: nn.Module) -> set[type[nn.Module]]:
    present = {type(layer) for layer in model.modules()}
    return {kind for kind in (nn.Linear, nn.LSTM, nn.GRU) if kind in present}


@contextmanager
def _quiet_ao() -> Iterator[None]:
    """torch.ao warns about its own deprecation and its default observer settings on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        yield


def quantize_static(model: nn.Module, calibration: Iterable[torch.Tensor]) -> nn.Module:
    """Post-training static int8 (FX graph mode, x86 backend): conv, linear and activations in int8.

    torch.ao.quantization is deprecated upstream: without it this raises VariantSkipped, not ImportError.
    """
    try:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError as err:
        raise VariantSkipped(f"torch.ao.quantization's FX API is not in this torch ({err})") from None

    batches = list(calibration)
    with _quiet_ao():
        prepared = prepare_fx(
            copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), example_inputs=(batches[0][:1],)
        )
    with torch.inference_mode():
        for batch in batches:
            prepared(batch)
    with _quiet_ao():
        return convert_fx(prepared)


def rebuild_static(model: nn.Module, state_dict: dict, input_shape: tuple[int, ...]) -> nn.Module:
    """The int8 module for a saved state dict: same graph, calibrated scales come from the state dict."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    example = torch.zeros(1, *input_shape)
    with _quiet_ao():  # uncalibrated observers warn: their scales are replaced by the state dict's
        quantized = convert_fx(
            prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), example_inputs=(example,))
        )
    quantized.load_state_dict(state_dict)
    return quantized


def quantize_dynamic(model: nn.Module) -> nn.Module:
    """Dynamic int8: weights stored int8, activations quantized on the fly (Linear, LSTM, GRU)."""
    from torch.ao.quantization import quantize_dynamic as ao_quantize_dynamic

    torch.backends.mha.set_fastpath_enabled(False)  # the fast path crashes on quantized projections
    with _quiet_ao():
        return ao_quantize_dynamic(copy.deepcopy(model).eval(), dynamic_quantizable(model), dtype=torch.qint8)


def int8_static(
    model: nn.Module, calibration: Iterable[torch.Tensor], workdir: Path, name: str = "int8_static"
) -> Variant:
    if not has_convolutions(model):
        raise VariantSkipped(f"{name}: the model has no convolution layers (static int8 is for convolutions)")
    try:
        module = quantize_static(model, calibration)
    except TraceError as err:  # e.g. a user's backbone that branches on its input's values
        raise VariantSkipped(f"{name}: torch.fx cannot trace the model ({str(err).splitlines()[0]})") from None
    except VariantSkipped as reason:
        raise VariantSkipped(f"{name}: {reason}") from None
    return Variant(
        name, "torch_int8", torch_predict(module), save_state_dict(module, workdir / f"{name}.pt"), module, "static"
    )


def int8_dynamic(model: nn.Module, workdir: Path, name: str = "int8_dynamic") -> Variant:
    if not dynamic_quantizable(model):
        raise VariantSkipped(f"{name}: no Linear, LSTM or GRU layer to quantize")
    module = quantize_dynamic(model)
    return Variant(
        name, "torch_int8", torch_predict(module), save_state_dict(module, workdir / f"{name}.pt"), module, "dynamic"
    )


@contextmanager
def nondeterministic_kernels_allowed() -> Iterator[None]:
    """Lift deterministic-algorithm mode (on after training): quantized kernels have no
    deterministic implementation, and running a model for inference does not need one."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
