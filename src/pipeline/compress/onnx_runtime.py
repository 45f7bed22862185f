"""Export to ONNX and run with ONNX Runtime, in fp32 or int8 (static QDQ for convolutions, dynamic otherwise).

The TorchScript-based exporter (`dynamo=False`) is used: it writes nn.LSTM / nn.GRU as ONNX
LSTM / GRU operators with their weights as initializers, which ONNX Runtime's quantizer turns
into DynamicQuantizeLSTM (the dynamo exporter's weights are computed, so they stay fp32).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.compress.variants import Variant, VariantSkipped, has_convolutions
from pipeline.errors import first_line

INPUT, OUTPUT = "images", "logits"
# the quantizer announces each shape-inference pass at INFO
logging.getLogger("onnxruntime.quantization.shape_inference").setLevel(logging.WARNING)


def export(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """The fp32 ONNX file (written once per workdir); a model the exporter cannot express is skipped."""
    if path.exists():
        return path
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")  # the exporter's own deprecation notice and tracer warnings
            torch.backends.mha.set_fastpath_enabled(False)
            torch.onnx.export(
                model.eval(),
                (example,),
                str(path),
                dynamo=False,
                opset_version=17,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            )
    except Exception as err:  # the exporter raises many types; any of them means "no ONNX for this model"
        path.unlink(missing_ok=True)
        raise VariantSkipped(f"onnx: torch.onnx.export failed: {first_line(str(err))}") from None
    return path


def session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # idle ORT threads spin for a while after each run: they would steal the CPU from the
    # torch variant timed next and flatter ORT (latencies are measured interleaved)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_variant(name: str, path: Path, threads: int) -> Variant:
    runner = session(path, threads)

    def predict(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(runner.run(None, {INPUT: images.numpy()})[0])

    return Variant(name, "onnx", predict, path)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a few training batches."""

    def __init__(self, batches: Iterable[torch.Tensor]) -> None:
        self._batches = iter([{INPUT: batch.numpy().astype(np.float32)} for batch in batches])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def quantized(model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor], workdir: Path) -> Path:
    """The int8 ONNX file, quantized from the fp32 export."""
    return quantize(model, export(model, example, workdir / "model.onnx"), calibration, workdir / "model.int8.onnx")


def quantize(model: nn.Module, fp32_path: Path, calibration: Iterable[torch.Tensor], path: Path) -> Path:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if has_convolutions(model):
        prepared = path.with_suffix(".pre.onnx")
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared),
            str(path),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
        prepared.unlink()
    else:
        quantize_dynamic(str(fp32_path), str(path), weight_type=QuantType.QInt8)
    return path
