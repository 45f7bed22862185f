"""Two ways to int8 a model on the CPU, side by side on the same model and images: torch.ao's FX graph mode
(what `int8_static` uses) and its successor, torchao's PT2E flow with the X86InductorQuantizer, eager and
under `torch.compile` (inductor), against the fp32 model eager and compiled.

torch.ao.quantization is deprecated upstream with its removal proposed: a path whose API is missing from the
installed torch / torchao is reported as skipped with its reason, never a crash (`int8_static` does the same).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.compress.measure import evaluate, latencies
from pipeline.compress.variants import VariantSkipped, quantize_static, torch_predict
from pipeline.data.splits import ImageSplits
from pipeline.errors import first_line

MAX_BATCH = 4096  # the exported graph's batch dimension is dynamic up to this


def quantize_pt2e(model: nn.Module, calibration: list[torch.Tensor]) -> nn.Module:
    """Post-training static int8 through torch.export and torchao's X86InductorQuantizer (convolutions, linear)."""
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's import: a deprecation notice
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as err:
        raise VariantSkipped(f"torchao's PT2E API is not available ({first_line(str(err))})") from None
    batch = torch.export.Dim("batch", max=MAX_BATCH)
    example = (calibration[0][:2].clone(),)
    graph = torch.export.export(copy.deepcopy(model).eval(), example, dynamic_shapes=({0: batch},)).module()
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for images in calibration:
            prepared(images)
    return convert_pt2e(prepared)


@dataclass(frozen=True)
class PathResult:
    name: str
    test_acc: float
    latency_b256_ms: float
    build_s: float  # quantizing (and compiling: the first call) on this machine
    skipped: str = ""


def _compiled(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found" on a CPU
    compiled = torch.compile(module)
    return torch_predict(compiled)  # type: ignore[arg-type]


def compare_int8_paths(
    model: nn.Module, splits: ImageSplits, calibration_batches: int, repeats: int, compile: bool
) -> list[PathResult]:
    """Accuracy and latency per batch of 256 of each path; the first row (fp32 eager) is the reference."""
    model = model.eval()
    calibration = [splits.train.images[i * 128 : (i + 1) * 128] for i in range(calibration_batches)]
    batch = splits.test.images[:256].clone()
    recipes: list[tuple[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]]] = [
        ("fp32", lambda: torch_predict(model)),
        ("int8_fx", lambda: torch_predict(quantize_static(model, calibration))),
        ("int8_pt2e", lambda: torch_predict(quantize_pt2e(model, calibration))),
    ]
    if compile:
        recipes += [
            ("fp32_compiled", lambda: _compiled(model)),
            ("int8_pt2e_compiled", lambda: _compiled(quantize_pt2e(model, calibration))),
        ]
    built, results = {}, {}
    for name, recipe in recipes:
        started = time.perf_counter()
        try:
            predict = recipe()
            predict(batch)  # compiles, where it compiles
        except VariantSkipped as reason:
            results[name] = PathResult(name, float("nan"), float("nan"), 0.0, f"{name}: {reason}")
            continue
        built[name] = (predict, time.perf_counter() - started)
    timing = latencies({name: predict for name, (predict, _) in built.items()}, batch, repeats)
    for name, (predict, build_s) in built.items():
        correct, _ = evaluate(predict, splits.test)
        results[name] = PathResult(name, float(correct.double().mean()), timing[name][0], build_s)
    return [results[name] for name, _ in recipes]
